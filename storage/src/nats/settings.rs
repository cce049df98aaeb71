//! Where a NATS replica lives and how to connect: `nats://[user:pass@]host[:port]/bucket`, or
//! the YAML keys of a `type: nats` entry, combined the way Litestream 0.5.17 combines them
//! (`nats.NewReplicaClientFromURL`, `newNATSReplicaClientFromConfig`).
//!
//! Litestream keeps no path inside the bucket: objects are `ltx/<level>/<min>-<max>.ltx` at
//! its root, and a YAML `path` is ignored. The bucket must exist; it is never created.

use std::time::Duration;

use crate::secret::redact_url as redact;
use crate::{Result, Secret, StorageError};

/// Litestream's server when neither a URL nor a host is given (`nats.DefaultURL`).
pub const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";

/// Connection and bucket settings of one NATS replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSettings {
    /// The URL or config entry it was made from, for messages (without secrets).
    pub source: String,
    /// `nats://host[:port]`: where to connect.
    pub server: String,
    /// The object store bucket (JetStream stream `OBJ_<bucket>`).
    pub bucket: String,
    /// User JWT; used with `seed` as inline credentials.
    pub jwt: Secret,
    /// NKey seed that signs for `jwt`.
    pub seed: Secret,
    /// Path of a `.creds` file.
    pub creds: String,
    /// An NKey seed (`SU...`).
    pub nkey: Secret,
    /// User name for user/password authentication.
    pub username: String,
    /// Password that goes with `username`.
    pub password: Secret,
    /// Authentication token.
    pub token: Secret,
    /// Whether TLS is required.
    pub tls: bool,
    /// PEM files of the CAs the server certificate must chain to.
    pub root_cas: Vec<String>,
    /// Path of a PEM client certificate (with `client_key`).
    pub client_cert: String,
    /// Path of the PEM private key of `client_cert`.
    pub client_key: String,
    /// Reconnect attempts after a lost connection; negative is unlimited (Litestream's -1).
    pub max_reconnects: i64,
    /// Wait between reconnect attempts.
    pub reconnect_wait: Duration,
    /// Connect timeout.
    pub timeout: Duration,
    /// A YAML `path`, kept only to say that it is ignored.
    pub ignored_path: String,
}

impl Default for NatsSettings {
    /// Litestream's `NewReplicaClient` defaults.
    fn default() -> Self {
        NatsSettings {
            source: String::new(),
            server: String::new(),
            bucket: String::new(),
            jwt: Secret::default(),
            seed: Secret::default(),
            creds: String::new(),
            nkey: Secret::default(),
            username: String::new(),
            password: Secret::default(),
            token: Secret::default(),
            tls: false,
            root_cas: Vec::new(),
            client_cert: String::new(),
            client_key: String::new(),
            max_reconnects: -1,
            reconnect_wait: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            ignored_path: String::new(),
        }
    }
}

/// `%XX` escapes undone, as Go's `url.Userinfo` gives user names and passwords.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&c, tail)) = rest.split_first() {
        let hex = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                rest = &tail[2..];
            }
            _ => {
                out.push(c);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a `nats://` URL says: server, bucket and user info.
struct UrlParts {
    server: String,
    bucket: String,
    username: String,
    password: String,
}

fn parse_url(raw: &str) -> Result<UrlParts> {
    let bad = |reason: String| StorageError::invalid_url(redact(raw), reason);
    let u = url::Url::parse(raw).map_err(|e| bad(e.to_string()))?;
    if u.scheme() != "nats" {
        return Err(bad(format!(
            "invalid scheme for NATS replica: {}",
            u.scheme()
        )));
    }
    let server = match u.host_str() {
        Some(h) if !h.is_empty() => match u.port() {
            Some(p) => format!("nats://{h}:{p}"),
            None => format!("nats://{h}"),
        },
        _ => String::new(),
    };
    // Litestream: path.Clean, then the bucket is the path without its slashes.
    let mut segs: Vec<&str> = Vec::new();
    for s in u.path().split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    Ok(UrlParts {
        server,
        bucket: unescape(&segs.join("/")),
        username: unescape(u.username()),
        password: u.password().map(unescape).unwrap_or_default(),
    })
}

/// A Go duration ([`crate::value::parse_duration`]), or a bare integer of nanoseconds as
/// yaml.v2 reads an unquoted integer into a `time.Duration`.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    match s.parse::<u64>() {
        Ok(ns) => Some(Duration::from_nanos(ns)),
        Err(_) => crate::value::parse_duration(s).ok(),
    }
}

impl NatsSettings {
    /// Parses `nats://[user:pass@]host[:port]/bucket` the way Litestream's URL factory does:
    /// the bucket is the whole path; the query string is ignored; the other settings keep
    /// Litestream's defaults.
    pub fn from_url(url: &str) -> Result<NatsSettings> {
        let p = parse_url(url)?;
        if p.bucket.is_empty() {
            return Err(StorageError::invalid_url(
                redact(url),
                "bucket required for nats replica URL",
            ));
        }
        Ok(NatsSettings {
            source: redact(url),
            server: p.server,
            bucket: p.bucket,
            username: p.username,
            password: Secret::new(p.password),
            ..NatsSettings::default()
        })
    }

    /// Builds the settings from a YAML replica entry: its optional `url` (server and bucket)
    /// and the NATS keys, the entry's own after the global defaults. The bucket of the URL wins
    /// over `bucket`. Credentials written into the URL are used when no key gives them
    /// (Litestream drops them from a YAML `url`). `root-cas` is a list of PEM files, one per line.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<NatsSettings> {
        let url = url.filter(|u| !u.is_empty());
        let mut s = NatsSettings {
            source: url.map_or_else(|| "nats replica".to_owned(), redact),
            ..NatsSettings::default()
        };
        let source = s.source.clone();
        let bad = |key: &str, v: &str, what: &str| {
            StorageError::config(format!("{source}: {key}: invalid value {v:?}: {what}"))
        };
        let mut bucket_key = String::new();
        for (k, v) in settings {
            let v = v.trim();
            match k {
                "bucket" => bucket_key = v.to_owned(),
                "path" => s.ignored_path = v.to_owned(),
                "jwt" => s.jwt = Secret::new(v),
                "seed" => s.seed = Secret::new(v),
                "creds" => s.creds = v.to_owned(),
                "nkey" => s.nkey = Secret::new(v),
                "username" => s.username = v.to_owned(),
                "password" => s.password = Secret::new(v),
                "token" => s.token = Secret::new(v),
                "tls" => {
                    s.tls = crate::value::parse_config_bool(v)
                        .ok_or_else(|| bad(k, v, "expected true or false"))?
                }
                // One path per line: the YAML list, as the configs pass it.
                "root-cas" => {
                    s.root_cas = v
                        .lines()
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "client-cert" => s.client_cert = v.to_owned(),
                "client-key" => s.client_key = v.to_owned(),
                "max-reconnects" => {
                    s.max_reconnects = v
                        .parse()
                        .map_err(|_| bad(k, v, "expected an integer (-1 for unlimited)"))?
                }
                "reconnect-wait" => {
                    s.reconnect_wait = parse_go_duration(v)
                        .ok_or_else(|| bad(k, v, "expected a duration such as 2s"))?
                }
                "timeout" => {
                    s.timeout = parse_go_duration(v)
                        .ok_or_else(|| bad(k, v, "expected a duration such as 10s"))?
                }
                // Keys of other backends arrive too when written at the top level.
                _ => {}
            }
        }
        if let Some(u) = url {
            let p = parse_url(u)?;
            s.server = p.server;
            s.bucket = p.bucket;
            if s.username.is_empty() && s.password.is_empty() {
                s.username = p.username;
                s.password = Secret::new(p.password);
            }
        }
        if s.bucket.is_empty() {
            s.bucket = bucket_key;
        }
        let err = |m: &str| StorageError::config(format!("{source}: {m}"));
        if s.bucket.is_empty() {
            return Err(err("bucket required for NATS replica"));
        }
        if s.client_cert.is_empty() != s.client_key.is_empty() {
            return Err(err(
                "client-cert and client-key must both be specified for mutual TLS authentication",
            ));
        }
        if url.is_none() {
            s.source = format!("nats replica (bucket {:?})", s.bucket);
        }
        Ok(s)
    }

    /// Where to connect: the URL's server, else Litestream's default.
    pub fn server_url(&self) -> &str {
        if self.server.is_empty() {
            DEFAULT_SERVER
        } else {
            &self.server
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = NatsSettings::from_url("nats://alice:s%40cret@nats.example.com:4333/backups?x=1")
            .expect("url");
        assert_eq!(s.server, "nats://nats.example.com:4333");
        assert_eq!(s.bucket, "backups");
        assert_eq!(
            (s.username.as_str(), s.password.expose()),
            ("alice", "s@cret")
        );
        assert!(!s.source.contains("cret") && !format!("{s:?}").contains("cret"));
        assert_eq!((s.max_reconnects, s.timeout), (-1, Duration::from_secs(10)));
        assert_eq!(s.reconnect_wait, Duration::from_secs(2));

        let s = NatsSettings::from_url("nats://host/b/").expect("no port");
        assert_eq!((s.server.as_str(), s.bucket.as_str()), ("nats://host", "b"));
        let s = NatsSettings::from_url("nats:///b").expect("no host");
        assert_eq!(s.server_url(), DEFAULT_SERVER);

        let e = NatsSettings::from_url("nats://host:4222").expect_err("no bucket");
        assert!(e.to_string().contains("bucket required"), "{e}");
        let e = NatsSettings::from_url("nats://host:4222/").expect_err("no bucket");
        assert!(e.to_string().contains("nats://host:4222"), "{e}");
        assert!(NatsSettings::from_url("s3://host/b").is_err());
    }

    #[test]
    fn config_keys() {
        let s = NatsSettings::from_config(
            None,
            [
                ("bucket", "global"),
                ("username", "u"),
                ("password", "p"),
                ("bucket", "mine"),
                ("path", "ignored/by/litestream"),
                ("tls", "true"),
                ("root-cas", "/etc/ca.pem\n/etc/other.pem\n"),
                ("client-cert", "/c.pem"),
                ("client-key", "/k.pem"),
                ("max-reconnects", "5"),
                ("reconnect-wait", "1m30s"),
                ("timeout", "250ms"),
                ("region", "other backends' keys are ignored"),
            ],
        )
        .expect("config");
        assert_eq!(s.bucket, "mine");
        assert_eq!(s.server_url(), DEFAULT_SERVER);
        assert!(s.tls);
        assert_eq!(s.root_cas, ["/etc/ca.pem", "/etc/other.pem"]);
        assert_eq!(s.max_reconnects, 5);
        assert_eq!(s.reconnect_wait, Duration::from_secs(90));
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.ignored_path, "ignored/by/litestream");

        // The URL gives the server and the bucket, which wins over `bucket`.
        let s = NatsSettings::from_config(
            Some("nats://x:y@h:4222/from-url"),
            [("bucket", "key"), ("token", "t")],
        )
        .expect("url + keys");
        assert_eq!(
            (s.server.as_str(), s.bucket.as_str(), s.token.expose()),
            ("nats://h:4222", "from-url", "t")
        );
        assert_eq!((s.username.as_str(), s.password.expose()), ("x", "y"));
        let s = NatsSettings::from_config(Some("nats://h:1"), [("bucket", "key")]).expect("bucket");
        assert_eq!(s.bucket, "key");
        let s = NatsSettings::from_config(
            Some("nats://x:y@h:1/b"),
            [("username", "k"), ("password", "kp")],
        )
        .expect("keys win");
        assert_eq!((s.username.as_str(), s.password.expose()), ("k", "kp"));

        let e = NatsSettings::from_config(None, [("username", "u")]).expect_err("no bucket");
        assert!(e.to_string().contains("bucket required"), "{e}");
        let e = NatsSettings::from_config(None, [("bucket", "b"), ("client-cert", "/c")])
            .expect_err("cert without key");
        assert!(e.to_string().contains("client-key"), "{e}");
        let e = NatsSettings::from_config(None, [("bucket", "b"), ("timeout", "soon")])
            .expect_err("timeout");
        assert!(e.to_string().contains("timeout"), "{e}");
        let e = NatsSettings::from_config(None, [("bucket", "b"), ("max-reconnects", "many")])
            .expect_err("max-reconnects");
        assert!(e.to_string().contains("max-reconnects"), "{e}");
        let e =
            NatsSettings::from_config(None, [("bucket", "b"), ("tls", "maybe")]).expect_err("tls");
        assert!(e.to_string().contains("tls"), "{e}");
        let e = NatsSettings::from_config(Some("s3://h/b"), [("bucket", "b")]).expect_err("s3");
        assert!(e.to_string().contains("scheme"), "{e}");
    }

    #[test]
    fn durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("2s"), Some(Duration::from_secs(2)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("1h2m3s4ms"), Some(Duration::from_millis(3_723_004)));
        assert_eq!(d("1500000000"), Some(Duration::from_millis(1500)));
        assert_eq!(d("10us"), Some(Duration::from_micros(10)));
        assert_eq!(d(""), None);
        assert_eq!(d("5"), Some(Duration::from_nanos(5)));
        assert_eq!(d("5x"), None);
        assert_eq!(d("s"), None);
        assert_eq!(d("-1s"), None);
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape("a%20b%2Fc%zz%4"), "a b/c%zz%4");
    }
}
