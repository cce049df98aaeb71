//! Just enough of Litestream's YAML config (docs/config-and-cli.md#config-file) for `ls-restore -config PATH DB_PATH`: the
//! `dbs` list with each database's `path` and its `replica`, whose keys are handed as written
//! to the storage crate (which owns the meaning of `bucket`, `endpoint`, `part-size`, ...).
//! Top-level replica keys act as defaults, as in Litestream. The engine has the full parser;
//! restore keeps this small reader so that it does not depend on the engine.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use storage::s3::{Flavor, S3Replica, S3Settings};

use crate::cli::{open_source, Source};
use crate::{RestoreError, Result};

// No `Debug` on the raw config: it holds secrets as written.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    dbs: Vec<RawDb>,
    /// Everything else at the top level: replica keys there are defaults for every replica.
    #[serde(flatten)]
    globals: Mapping,
}

#[derive(Deserialize)]
struct RawDb {
    path: Option<String>,
    replica: Option<Mapping>,
    #[serde(default)]
    replicas: Vec<Mapping>,
}

/// One database's replica as configured: its backend type, optional URL, and every other key
/// as a string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ReplicaEntry {
    pub kind: String,
    pub url: Option<String>,
    pub settings: Vec<(String, String)>,
    /// The replica's `age` block (or the top-level one): its identities decrypt.
    pub age: storage::age::AgeConfig,
}

/// By hand: the URL and settings may hold secrets ([`storage::secret`]).
impl std::fmt::Debug for ReplicaEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaEntry")
            .field("kind", &self.kind)
            .field("url", &self.url.as_deref().map(storage::redact_url))
            .field(
                "settings",
                &storage::secret::debug_settings(
                    self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            )
            .finish()
    }
}

impl ReplicaEntry {
    fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rfind(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Opens the replica: file replicas by path or URL, S3/OSS through the storage crate's
    /// settings with the URL (if any) and every key layered as Litestream layers them.
    pub(crate) fn open(&self) -> Result<Source> {
        match self.kind.as_str() {
            "file" => match (&self.url, self.get("path")) {
                (Some(u), _) => open_source(u),
                (None, Some(p)) => Ok(Source::file(expand_path(p)?)),
                (None, None) => Err(RestoreError::Config(
                    "file replica needs a path or url".into(),
                )),
            },
            "s3" | "oss" => {
                let flavor = if self.kind == "s3" {
                    Flavor::S3
                } else {
                    Flavor::Oss
                };
                let settings = S3Settings::from_config(
                    flavor,
                    self.url.as_deref(),
                    self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )?;
                Ok(Source::s3(S3Replica::new(settings)?))
            }
            "gs" | "abs" | "sftp" | "webdav" | "webdavs" | "nats" => {
                let r = storage::ReplicaUrl::from_config(
                    &self.kind,
                    self.url.as_deref(),
                    self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )?;
                Ok(Source::remote(r.open()?))
            }
            other => Err(RestoreError::Config(format!(
                "replica type {other:?} is not supported by ls-restore"
            ))),
        }
    }
}

/// A YAML scalar as the string Litestream's typed config would have parsed; `None` for nulls
/// and nested values (which no S3 or file key has).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Keys of a replica section that describe the replica itself rather than its backend.
const NOT_BACKEND_KEYS: &[&str] = &[
    "type",
    "url",
    "name",
    "sync-interval",
    "max-sync-ltx-files",
    "auto-recover",
    "validation-interval",
    "age",
];

fn replica_entry(globals: &Mapping, replica: &Mapping) -> Result<ReplicaEntry> {
    // As in the engine: unknown keys in the block are errors (docs/encryption.md#configuration).
    let age = match replica.get("age").or_else(|| globals.get("age")) {
        Some(v) if !v.is_null() => serde_yaml_ng::from_value::<storage::age::AgeConfig>(v.clone())
            .map_err(|e| RestoreError::Config(format!("age: {e}")))?,
        _ => storage::age::AgeConfig::default(),
    };
    let text = |m: &Mapping, k: &str| m.get(k).and_then(scalar).filter(|v| !v.is_empty());
    let url = text(replica, "url");
    let kind = match (&url, text(replica, "type")) {
        (Some(u), _) if u.contains("://") => u.split("://").next().unwrap_or("file").to_owned(),
        (_, Some(t)) => t,
        _ => "file".to_owned(),
    };
    let mut settings = Vec::new();
    // Globals first so that the replica's own keys, pushed later, win. A global `path` is
    // never a replica key.
    for (m, is_global) in [(globals, true), (replica, false)] {
        for (k, v) in m {
            let Some(k) = k.as_str() else { continue };
            // `root-cas` is a list in Litestream; backends take it one path per line.
            let v = match v {
                Value::Sequence(items) if k == "root-cas" => Some(
                    items
                        .iter()
                        .filter_map(scalar)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                v => scalar(v),
            };
            let Some(v) = v else { continue };
            if NOT_BACKEND_KEYS.contains(&k) || (is_global && !storage::inherited_from_top_level(k))
            {
                continue;
            }
            settings.push((k.to_owned(), v));
        }
    }
    Ok(ReplicaEntry {
        kind,
        url,
        settings,
        age,
    })
}

/// The config path when `-config` is not given.
pub fn default_config_path() -> PathBuf {
    std::env::var_os("LITESTREAM_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/litestream.yml"))
}

/// Go's `os.Expand` over the environment: `$VAR` and `${VAR}`; unset variables become empty.
pub fn expand_env(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' || i + 1 >= b.len() {
            let ch = s[i..].chars().next().unwrap_or('$');
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let (name, next) = if b[i + 1] == b'{' {
            match s[i + 2..].find('}') {
                Some(end) => (&s[i + 2..i + 2 + end], i + 3 + end),
                None => {
                    out.push('$');
                    i += 1;
                    continue;
                }
            }
        } else {
            let end = s[i + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(s.len(), |e| i + 1 + e);
            (&s[i + 1..end], end)
        };
        if name.is_empty() {
            out.push('$');
            i += 1;
            continue;
        }
        if name == "PID" {
            out.push_str(&std::process::id().to_string());
        } else {
            out.push_str(&std::env::var(name).unwrap_or_default());
        }
        i = next;
    }
    out
}

/// The home directory as Go's `user.Current()` gives it to Litestream: the password database
/// entry of the real user, not `$HOME` (checked on the 0.5.17 binary: with `HOME` pointing
/// elsewhere, `~/db` still means `/root/db` for root). `$HOME` only when there is no entry.
pub fn home_dir() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes only into `pw` and `buf` (whose length it is told) and points
    // `out` at `pw` on success; the strings it returns live in `buf`, read before it is freed.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        );
        if rc == 0 && !out.is_null() && !pw.pw_dir.is_null() {
            let dir = CStr::from_ptr(pw.pw_dir).to_bytes();
            if !dir.is_empty() {
                return Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir)));
            }
        }
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~` to the home directory and relative paths made absolute, as Litestream does for database
/// paths on both sides of the comparison.
pub fn expand_path(p: &str) -> Result<PathBuf> {
    let p = p
        .strip_prefix("sqlite3://")
        .or_else(|| p.strip_prefix("sqlite://"))
        .unwrap_or(p);
    let path = if p == "~" || p.starts_with("~/") {
        let home = home_dir()
            .ok_or_else(|| RestoreError::Config("cannot expand ~: no home directory".into()))?;
        home.join(p.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(p)
    };
    if path.is_absolute() {
        return Ok(path);
    }
    let cwd = std::env::current_dir().map_err(|e| RestoreError::io(".", e))?;
    Ok(cwd.join(path))
}

/// Finds the replica configured for `db_path`.
pub fn replica_for(config_path: &Path, expand: bool, db_path: &Path) -> Result<ReplicaEntry> {
    let text = std::fs::read_to_string(config_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            RestoreError::Config(format!("config file not found: {}", config_path.display()))
        } else {
            RestoreError::io(config_path, e)
        }
    })?;
    let text = if expand { expand_env(&text) } else { text };
    let cfg: RawConfig =
        serde_yaml_ng::from_str(&text).map_err(|e| RestoreError::Config(e.to_string()))?;
    for db in &cfg.dbs {
        let Some(p) = &db.path else { continue };
        if expand_path(p)? != db_path {
            continue;
        }
        let replica = match (&db.replica, db.replicas.as_slice()) {
            (Some(r), []) => r,
            (None, [r]) => r,
            (None, []) => {
                return Err(RestoreError::Config(format!(
                    "database has no replica: {}",
                    db_path.display()
                )))
            }
            _ => {
                return Err(RestoreError::Config(
                    "only one replica per database is supported".into(),
                ))
            }
        };
        return replica_entry(&cfg.globals, replica);
    }
    Err(RestoreError::Config(format!(
        "database not found in config: {}",
        db_path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        std::env::set_var("LS_RESTORE_TEST_X", "abc");
        assert_eq!(expand_env("a $LS_RESTORE_TEST_X b"), "a abc b");
        assert_eq!(expand_env("${LS_RESTORE_TEST_X}/y"), "abc/y");
        assert_eq!(expand_env("$LS_RESTORE_TEST_UNSET_Q."), ".");
        assert_eq!(expand_env("cost $"), "cost $");
        assert_eq!(expand_env("é$"), "é$");
    }

    #[test]
    fn finds_replica() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("l.yml");
        std::env::set_var("LS_RESTORE_TEST_DIR", dir.path());
        std::env::set_var("LS_RESTORE_TEST_EP", "http://127.0.0.1:9");
        std::fs::write(
            &cfg,
            "region: eu-west-1\naccess-key-id: global\nconcurrency: 9\ndbs:\n  - path: ${LS_RESTORE_TEST_DIR}/a.db\n    replica:\n      url: file:///r/a\n  - path: $LS_RESTORE_TEST_DIR/b.db\n    replica:\n      type: file\n      path: /r/b\n    monitor-interval: 1s\n  - path: sqlite://$LS_RESTORE_TEST_DIR/c.db\n    replica:\n      type: s3\n      bucket: bk\n      path: pre/fix\n      endpoint: $LS_RESTORE_TEST_EP\n      force-path-style: true\n      part-size: 5MiB\n      concurrency: 3\n      access-key-id: mine\n      sync-interval: 1s\n  - path: $LS_RESTORE_TEST_DIR/n.db\n    replica:\n      url: nats://127.0.0.1:9/bk\n      root-cas: [/ca1.pem, /ca2.pem]\n",
        )
        .expect("write");
        let a = replica_for(&cfg, true, &dir.path().join("a.db")).expect("a");
        assert_eq!(
            (a.kind.as_str(), a.url.as_deref()),
            ("file", Some("file:///r/a"))
        );
        let b = replica_for(&cfg, true, &dir.path().join("b.db")).expect("b");
        assert_eq!((b.kind.as_str(), b.get("path")), ("file", Some("/r/b")));
        let c = replica_for(&cfg, true, &dir.path().join("c.db")).expect("c");
        assert_eq!(c.kind, "s3");
        assert_eq!(c.get("endpoint"), Some("http://127.0.0.1:9"));
        assert_eq!(c.get("force-path-style"), Some("true"));
        assert_eq!(c.get("concurrency"), Some("3"));
        // Litestream does not pass a top-level `concurrency` on to replicas.
        let n = replica_for(&cfg, true, &dir.path().join("n.db")).expect("n");
        assert_eq!(n.get("concurrency"), None);
        assert_eq!(n.get("region"), Some("eu-west-1"));
        // The replica's key overrides the global one; globals fill the rest.
        assert_eq!(c.get("access-key-id"), Some("mine"));
        assert_eq!(c.get("region"), Some("eu-west-1"));
        assert_eq!(c.get("sync-interval"), None);
        let src = c.open().expect("open s3");
        assert_eq!(src.kind, "s3");
        let s3 = src.s3.expect("s3 client");
        assert_eq!((s3.bucket(), s3.path()), ("bk", "pre/fix"));
        // Without expansion the endpoint is the literal text.
        let c = replica_for(&cfg, false, &dir.path().join("c.db"));
        assert!(
            c.is_err(),
            "sqlite://$VAR path cannot match without expansion"
        );
        assert!(replica_for(&cfg, true, &dir.path().join("d.db")).is_err());
        // A YAML list (NATS `root-cas`) reaches the backend one item per line.
        let n = replica_for(&cfg, true, &dir.path().join("n.db")).expect("n");
        assert_eq!(n.get("root-cas"), Some("/ca1.pem\n/ca2.pem"));
    }

    #[test]
    fn tilde_is_the_passwd_home() {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() }.to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let Some(home) = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[2] == uid)
            .map(|f| PathBuf::from(f[5]))
        else {
            return;
        };
        assert_eq!(home_dir().as_deref(), Some(home.as_path()));
        assert_eq!(expand_path("sqlite://~/x.db").ok(), Some(home.join("x.db")));
        assert_eq!(expand_path("~").ok(), Some(home));
    }

    #[test]
    fn age_block_is_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("l.yml");
        std::fs::write(
            &cfg,
            "age: {identities: [/top.txt]}\ndbs:\n  - path: /x/a.db\n    replica:\n      path: /r\n      age:\n        identities: [/k.txt]\n  - path: /x/b.db\n    replica: {path: /r}\n  - path: /x/c.db\n    replica: {path: /r, age: {identity: [/k.txt]}}\n",
        )
        .expect("write");
        let a = replica_for(&cfg, true, Path::new("/x/a.db")).expect("a");
        assert_eq!(a.age.identities, ["/k.txt"]);
        assert!(a.settings.iter().all(|(k, _)| k != "age"), "{a:?}");
        let b = replica_for(&cfg, true, Path::new("/x/b.db")).expect("b");
        assert_eq!(b.age.identities, ["/top.txt"]);
        let e = replica_for(&cfg, true, Path::new("/x/c.db")).expect_err("misspelt");
        assert!(e.to_string().contains("identity"), "{e}");
    }
}
