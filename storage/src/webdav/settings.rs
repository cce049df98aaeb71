//! Where a WebDAV replica lives: the server URL (`webdav-url`, or `http[s]://host` from a
//! `webdav[s]://` replica URL), the credentials and the directory inside it, combined the way
//! Litestream 0.5.17 combines them (`NewReplicaClientFromURL`, `newWebDAVReplicaClientFromConfig`).

use crate::secret::redact_url as redact;
use crate::transport::encode::decode_lossy;
use crate::{Result, Secret, StorageError};

/// Where a webdav replica lives and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebDavSettings {
    /// The URL or config entry it was made from, for messages (without the password).
    pub source: String,
    /// The server: `http[s]://host[:port][/base]`, as Litestream's `URL` field holds it.
    pub url: String,
    /// User name for Basic authentication (`webdav-username`); empty for none.
    pub username: String,
    /// Password that goes with `username` (`webdav-password`).
    pub password: Secret,
    /// The replica directory below `url`, as written (`db`, `/a/b/`); cleaned when used.
    pub path: String,
}

/// By hand: `url` may carry a password (`https://user:pass@host`).
impl std::fmt::Debug for WebDavSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavSettings")
            .field("source", &self.source)
            .field("url", &redact(&self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("path", &self.path)
            .finish()
    }
}

/// The parts of a `webdav[s]://` URL Litestream uses.
struct ReplicaUrlParts {
    server: String,
    username: String,
    password: String,
    path: String,
}

fn parse_replica_url(raw: &str) -> Result<ReplicaUrlParts> {
    let bad = |reason: &str| StorageError::invalid_url(redact(raw), reason.to_owned());
    let u = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    let http = match u.scheme() {
        "webdav" => "http",
        "webdavs" => "https",
        other => return Err(bad(&format!("not a webdav URL (scheme {other:?})"))),
    };
    let host = match u.host_str() {
        Some(h) if !h.is_empty() => h,
        _ => return Err(bad("host required for webdav replica URL")),
    };
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok(ReplicaUrlParts {
        server: format!("{http}://{authority}"),
        username: decode_lossy(u.username()),
        password: u.password().map(decode_lossy).unwrap_or_default(),
        path: decode_lossy(u.path()),
    })
}

impl WebDavSettings {
    /// Parses `webdav://[user[:pass]@]host[:port]/path` (plain HTTP) or `webdavs://...`
    /// (HTTPS). The query string is ignored, as Litestream ignores it.
    pub fn from_url(url: &str) -> Result<WebDavSettings> {
        let p = parse_replica_url(url)?;
        Ok(WebDavSettings {
            source: redact(url),
            url: p.server,
            username: p.username,
            password: Secret::new(p.password),
            path: p.path,
        })
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults.
    /// `webdav-url`, `webdav-username`, `webdav-password` and `path` win over what the URL
    /// says; a URL together with `path` or `webdav-url` is refused, as Litestream refuses it.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<WebDavSettings> {
        let url = url.filter(|u| !u.is_empty());
        let (mut server, mut username, mut password, mut path) =
            (String::new(), String::new(), String::new(), String::new());
        for (k, v) in settings {
            match k {
                "webdav-url" => server = v.to_owned(),
                "webdav-username" => username = v.to_owned(),
                "webdav-password" => password = v.to_owned(),
                "path" => path = v.to_owned(),
                // Keys of other backends arrive too when written at the top level.
                _ => {}
            }
        }
        let source = match url {
            Some(u) => redact(u),
            None => format!("webdav replica ({})", redact(&server)),
        };
        let err = |m: &str| StorageError::config(format!("{source}: {m}"));
        if let Some(u) = url {
            if !path.is_empty() {
                return Err(err("cannot specify url & path for webdav replica"));
            }
            if !server.is_empty() {
                return Err(err("cannot specify url & webdav-url for webdav replica"));
            }
            let p = parse_replica_url(u)?;
            server = p.server;
            if username.is_empty() {
                username = p.username;
            }
            if password.is_empty() {
                password = p.password;
            }
            path = p.path;
        }
        if server.is_empty() {
            return Err(err("webdav-url required for webdav replica"));
        }
        let s = WebDavSettings {
            source,
            url: server,
            username,
            password: Secret::new(password),
            path,
        };
        s.server().map_err(|reason| {
            StorageError::invalid_url(redact(&s.url), format!("webdav-url: {reason}"))
        })?;
        Ok(s)
    }

    /// The server URL split into where to connect and its (still encoded) base path, without
    /// a trailing slash; plus credentials written into it, used when no keys give them.
    pub(crate) fn server(&self) -> Result<Server, String> {
        let u = url::Url::parse(&self.url).map_err(|e| e.to_string())?;
        let https = match u.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "must be an http:// or https:// URL, not {other}://"
                ))
            }
        };
        let host = match u.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err("host required".to_owned()),
        };
        let port = u
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        let (mut username, mut password) =
            (self.username.clone(), self.password.expose().to_owned());
        if username.is_empty() && !u.username().is_empty() {
            username = decode_lossy(u.username());
            password = u.password().map(decode_lossy).unwrap_or_default();
        }
        Ok(Server {
            https,
            host,
            port,
            base: u.path().trim_end_matches('/').to_owned(),
            username,
            password: Secret::new(password),
        })
    }

    /// The replica directory as path segments, cleaned as Go's `path.Clean` cleans it.
    pub(crate) fn segments(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.path.split('/') {
            match s {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s.to_owned()),
            }
        }
        out
    }
}

/// A parsed server URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Server {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Encoded path prefix of every request, `""` or `/dav`.
    pub base: String,
    pub username: String,
    pub password: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s =
            WebDavSettings::from_url("webdav://alice:s%40cret@dav.example.com:8080/a/b/../db/?x=1")
                .expect("url");
        assert_eq!(s.url, "http://dav.example.com:8080");
        assert_eq!(
            (s.username.as_str(), s.password.expose()),
            ("alice", "s@cret")
        );
        assert_eq!(s.segments(), ["a", "db"]);
        assert!(!s.source.contains("s%40cret") && !format!("{s:?}").contains("cret"));
        let srv = s.server().expect("server");
        assert_eq!((srv.https, srv.port, srv.base.as_str()), (false, 8080, ""));

        let s = WebDavSettings::from_url("webdavs://host/my%20db").expect("url");
        assert_eq!(s.url, "https://host");
        assert_eq!(s.segments(), ["my db"]);
        assert_eq!(s.server().expect("server").port, 443);
        assert!(s.username.is_empty());

        let s = WebDavSettings::from_url("webdav://[::1]:9000/x").expect("v6");
        assert_eq!(s.server().expect("server").host, "::1");
        assert!(WebDavSettings::from_url("webdav:///db").is_err());
        assert!(WebDavSettings::from_url("http://host/db").is_err());
        assert!(WebDavSettings::from_url("webdav://host")
            .expect("no path")
            .segments()
            .is_empty());
    }

    #[test]
    fn config_keys() {
        let s = WebDavSettings::from_config(
            None,
            [
                (
                    "webdav-url",
                    "https://dav.example.com/remote.php/dav/files/u/",
                ),
                ("webdav-username", "u"),
                ("webdav-password", "p"),
                ("path", "backups/app"),
                ("bucket", "ignored"),
            ],
        )
        .expect("config");
        assert_eq!((s.username.as_str(), s.password.expose()), ("u", "p"));
        assert_eq!(s.segments(), ["backups", "app"]);
        let srv = s.server().expect("server");
        assert_eq!(srv.base, "/remote.php/dav/files/u");
        assert!(srv.https);

        // The URL gives server, credentials and path; the keys win for credentials.
        let s = WebDavSettings::from_config(
            Some("webdav://a:b@h:81/p"),
            [("webdav-username", "global"), ("webdav-password", "pw")],
        )
        .expect("url + keys");
        assert_eq!(
            (s.url.as_str(), s.username.as_str(), s.password.expose()),
            ("http://h:81", "global", "pw")
        );
        assert_eq!(s.segments(), ["p"]);

        let e =
            WebDavSettings::from_config(Some("webdav://h/p"), [("path", "x")]).expect_err("both");
        assert!(e.to_string().contains("url & path"), "{e}");
        let e = WebDavSettings::from_config(Some("webdav://h/p"), [("webdav-url", "http://h")])
            .expect_err("both");
        assert!(e.to_string().contains("url & webdav-url"), "{e}");
        let e = WebDavSettings::from_config(None, [("path", "x")]).expect_err("no server");
        assert!(e.to_string().contains("webdav-url required"), "{e}");
        let e = WebDavSettings::from_config(None, [("webdav-url", "ftp://h/")]).expect_err("ftp");
        assert!(e.to_string().contains("webdav-url"), "{e}");
        // Credentials in webdav-url are used when no keys give them.
        let s = WebDavSettings::from_config(None, [("webdav-url", "http://x:y%21@h:8/")])
            .expect("userinfo");
        let srv = s.server().expect("server");
        assert_eq!((srv.username.as_str(), srv.password.expose()), ("x", "y!"));
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_lossy("a%20b%2Fc%zz%4"), "a b/c%zz%4");
    }
}
