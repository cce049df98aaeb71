//! Where an SFTP replica lives and how to log in, from a `sftp://` URL or a YAML replica entry,
//! with Litestream 0.5.17's rules (`sftp/replica_client.go` `NewReplicaClientFromURL`,
//! `cmd/litestream/main.go` `newSFTPReplicaClientFromConfig`).

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use crate::gopath::join;
use crate::s3::settings::parse_bool;
use crate::secret::redact_url as redact;
use crate::transport::encode::decode_lossy;
use crate::{Result, Secret, StorageError};

/// Litestream's dial timeout.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one blocking libssh2 call may wait for the server before the connection is given
/// up (libssh2 otherwise waits forever on a silent peer).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// SFTP connection and replica settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftpSettings {
    /// The URL or config entry it was made from, for messages (never with the password).
    pub source: String,
    /// `host` or `host:port` as written; port 22 when none is given.
    pub host: String,
    /// User name to log in as.
    pub user: String,
    /// Password for password authentication.
    pub password: Option<Secret>,
    /// The replica directory, relative to the login directory unless absolute.
    pub path: String,
    /// Private key file for public-key authentication.
    pub key_path: Option<PathBuf>,
    /// The server's public key in authorized_keys format; when absent the host key is not
    /// verified (Litestream logs a warning and accepts any key).
    pub host_key: Option<String>,
    /// Litestream's `concurrent-writes`: pipelined writes and several connections at once.
    pub concurrent_writes: bool,
    /// Longest wait for the TCP connection to the server.
    pub dial_timeout: Duration,
    /// Longest wait for the server within one operation (handshake included).
    pub io_timeout: Duration,
}

/// The pieces of a `sftp://` URL, decoded.
struct UrlParts {
    host: String,
    user: Option<String>,
    password: Option<String>,
    /// Go's `url.URL.Path`: decoded, as written.
    path: String,
}

fn invalid(url: &str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::invalid_url(redact(url), reason)
}

fn config_error(msg: impl Into<String>) -> StorageError {
    StorageError::config(format!("sftp: {}", msg.into()))
}

fn parse_url(url: &str) -> Result<UrlParts> {
    let u = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
    if u.scheme() != "sftp" {
        return Err(invalid(url, format!("not an sftp URL ({})", u.scheme())));
    }
    let host = match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    };
    let user = Some(decode_lossy(u.username())).filter(|s| !s.is_empty());
    let password = u.password().map(decode_lossy);
    Ok(UrlParts {
        host,
        user,
        password,
        path: decode_lossy(u.path()),
    })
}

impl SftpSettings {
    fn new(source: String, host: String, user: String, password: Option<String>) -> Self {
        SftpSettings {
            source,
            host,
            user,
            password: password.and_then(Secret::non_empty),
            path: String::new(),
            key_path: None,
            host_key: None,
            concurrent_writes: true,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }

    /// Parses `sftp://user[:password]@host[:port]/path` as `litestream restore URL` (and
    /// `replicate`) do: through the config path, so the path is absolute as written
    /// (`/backups/db`), and the query is ignored.
    pub fn from_url(url: &str) -> Result<SftpSettings> {
        let p = parse_url(url)?;
        if p.host.is_empty() {
            return Err(invalid(url, "host required for sftp replica"));
        }
        let Some(user) = p.user else {
            return Err(invalid(url, "user required for sftp replica"));
        };
        let mut s = SftpSettings::new(redact(url), p.host, user, p.password);
        s.path = p.path;
        Ok(s)
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults.
    /// As in Litestream, `url` may not come with `path` or `host`; the URL's user and password
    /// are used only when the keys do not give them, and its path is taken as written.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<SftpSettings> {
        let url = url.filter(|u| !u.is_empty());
        let mut host = String::new();
        let mut user = String::new();
        let mut password = String::new();
        let mut path = String::new();
        let mut key_path = String::new();
        let mut host_key = String::new();
        let mut concurrent_writes = true;
        // Later (the entry's own) non-empty values win over earlier (global) ones.
        let set = |slot: &mut String, v: &str| {
            if !v.trim().is_empty() {
                *slot = v.trim().to_owned();
            }
        };
        for (k, v) in settings {
            match k {
                "host" => set(&mut host, v),
                "user" => set(&mut user, v),
                "password" => {
                    if !v.is_empty() {
                        password = v.to_owned();
                    }
                }
                "path" => set(&mut path, v),
                "key-path" => set(&mut key_path, v),
                "host-key" => set(&mut host_key, v),
                "concurrent-writes" => concurrent_writes = parse_bool(k, v.trim())?,
                other => tracing::debug!(key = other, "setting does not apply to an sftp replica"),
            }
        }
        let source = match url {
            Some(u) => {
                if !path.is_empty() {
                    return Err(config_error("cannot specify url & path for sftp replica"));
                }
                if !host.is_empty() {
                    return Err(config_error("cannot specify url & host for sftp replica"));
                }
                let p = parse_url(u)?;
                host = p.host;
                if user.is_empty() {
                    user = p.user.unwrap_or_default();
                }
                if password.is_empty() {
                    password = p.password.unwrap_or_default();
                }
                path = p.path;
                redact(u)
            }
            None => format!("sftp replica {user}@{host}:{path}"),
        };
        if host.is_empty() {
            return Err(config_error("host required for sftp replica"));
        }
        if user.is_empty() {
            return Err(config_error("user required for sftp replica"));
        }
        let mut s = SftpSettings::new(source, host, user, Some(password));
        s.path = path;
        s.key_path = Some(key_path).filter(|k| !k.is_empty()).map(PathBuf::from);
        s.host_key = Some(host_key).filter(|k| !k.is_empty());
        s.concurrent_writes = concurrent_writes;
        Ok(s)
    }

    /// `host:port` to dial: the host as written with `:22` added when it has no port.
    pub fn address(&self) -> String {
        let h = self.host.as_str();
        let has_port = if let Some(rest) = h.strip_prefix('[') {
            rest.split_once(']')
                .is_some_and(|(_, tail)| tail.starts_with(':'))
        } else {
            h.matches(':').count() == 1
        };
        if has_port {
            h.to_owned()
        } else if h.contains(':') && !h.starts_with('[') {
            format!("[{h}]:22")
        } else {
            format!("{h}:22")
        }
    }

    /// `<path>/ltx/<level>`, joined as Litestream's `LTXLevelDir` joins it.
    pub fn level_dir(&self, level: u8) -> String {
        join(&[&self.path, "ltx", &level.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_path_is_taken_as_written_like_litestream_restore() {
        let s = SftpSettings::from_url("sftp://bob:s%40cret@example.com:2222/backups//db/?x=1")
            .expect("url");
        assert_eq!(s.host, "example.com:2222");
        assert_eq!(s.user, "bob");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s@cret"));
        // `litestream restore URL` goes through the config code: `u.Path`, not trimmed.
        assert_eq!(s.path, "/backups//db/");
        assert!(s.concurrent_writes);
        assert!(!s.source.contains("s%40cret") && !s.source.contains("s@cret"));
        assert!(!format!("{s:?}").contains("cret"));
        assert_eq!(s.address(), "example.com:2222");
        assert_eq!(s.level_dir(0), "/backups/db/ltx/0");
        assert_eq!(s.level_dir(9), "/backups/db/ltx/9");

        let s = SftpSettings::from_url("sftp://bob@example.com").expect("no path");
        assert_eq!(s.path, "");
        assert_eq!(s.password, None);
        assert_eq!(s.address(), "example.com:22");
        assert_eq!(s.level_dir(1), "ltx/1");

        let e = SftpSettings::from_url("sftp://example.com/db").expect_err("no user");
        assert!(e.to_string().contains("user required"), "{e}");
        let e = SftpSettings::from_url("sftp:///db").expect_err("no host");
        assert!(e.to_string().contains("host required"), "{e}");
        assert!(SftpSettings::from_url("sftp://u@[::1]:2022/x")
            .is_ok_and(|s| s.address() == "[::1]:2022"));
        assert!(SftpSettings::from_url("sftp://u@[::1]/x").is_ok_and(|s| s.address() == "[::1]:22"));
    }

    #[test]
    fn config_keys_and_url_combine_like_litestream() {
        let s = SftpSettings::from_config(
            None,
            [
                ("host", "global:22"),
                ("user", "g"),
                ("access-key-id", "ignored"),
                ("host", "h.example:2200"),
                ("user", "alice"),
                ("user", ""),
                ("path", "/srv/replicas/db"),
                ("key-path", "/home/alice/.ssh/id_ed25519"),
                ("host-key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJiV x"),
                ("concurrent-writes", "false"),
            ],
        )
        .expect("config");
        assert_eq!(s.host, "h.example:2200");
        assert_eq!(s.user, "alice");
        assert_eq!(s.password, None);
        assert_eq!(s.path, "/srv/replicas/db");
        assert_eq!(s.level_dir(0), "/srv/replicas/db/ltx/0");
        assert_eq!(
            s.key_path.as_deref(),
            Some(std::path::Path::new("/home/alice/.ssh/id_ed25519"))
        );
        assert!(s
            .host_key
            .as_deref()
            .is_some_and(|k| k.starts_with("ssh-ed25519 ")));
        assert!(!s.concurrent_writes);

        // A URL in the entry: its path is used as written (absolute), user and password only
        // where the keys leave them empty.
        let s = SftpSettings::from_config(
            Some("sftp://bob:pw@h:2022/srv/db"),
            [("user", "carol"), ("key-path", "/k")],
        )
        .expect("url config");
        assert_eq!((s.host.as_str(), s.user.as_str()), ("h:2022", "carol"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(s.path, "/srv/db");
        assert!(s.concurrent_writes);

        let e = SftpSettings::from_config(Some("sftp://u@h/db"), [("path", "x")])
            .expect_err("url & path");
        assert!(e.to_string().contains("url & path"), "{e}");
        let e = SftpSettings::from_config(Some("sftp://u@h/db"), [("host", "x")])
            .expect_err("url & host");
        assert!(e.to_string().contains("url & host"), "{e}");
        let e = SftpSettings::from_config(None, [("user", "u")]).expect_err("no host");
        assert!(e.to_string().contains("host required"), "{e}");
        let e = SftpSettings::from_config(None, [("host", "h")]).expect_err("no user");
        assert!(e.to_string().contains("user required"), "{e}");
        let e = SftpSettings::from_config(None, [("host", "h"), ("concurrent-writes", "maybe")])
            .expect_err("bad bool");
        assert!(e.to_string().contains("concurrent-writes"), "{e}");
    }

    #[test]
    fn go_path_clean_and_join() {
        for (i, o) in [
            ("", "."),
            ("/", "/"),
            ("a//b/", "a/b"),
            ("/a/../../b", "/b"),
            ("../a/./b/..", "../a"),
            ("./", "."),
        ] {
            assert_eq!(crate::gopath::clean(i), o, "clean({i:?})");
        }
        assert_eq!(join(&["", "ltx", "0"]), "ltx/0");
        assert_eq!(join(&["/", "ltx"]), "/ltx");
        assert_eq!(join(&["db/", "ltx", "1"]), "db/ltx/1");
    }
}
