//! Just enough of Litestream's YAML config (§6.1) for `ls-restore -config PATH DB_PATH`: the
//! `dbs` list with each database's `path` and its `replica` (`url`, or `type` + `path`).
//! The engine has the full parser; restore keeps this small reader so that it does not depend
//! on the engine.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{RestoreError, Result};

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    dbs: Vec<RawDb>,
}

#[derive(Debug, Deserialize)]
struct RawDb {
    path: Option<String>,
    replica: Option<RawReplica>,
    #[serde(default)]
    replicas: Vec<RawReplica>,
}

#[derive(Clone, Debug, Deserialize)]
struct RawReplica {
    url: Option<String>,
    path: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
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

/// `~` to the home directory and relative paths made absolute, as Litestream does for database
/// paths on both sides of the comparison.
pub fn expand_path(p: &str) -> Result<PathBuf> {
    let p = p
        .strip_prefix("sqlite3://")
        .or_else(|| p.strip_prefix("sqlite://"))
        .unwrap_or(p);
    let path = if p == "~" || p.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .ok_or_else(|| RestoreError::Config("cannot expand ~: HOME is not set".into()))?;
        PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(p)
    };
    if path.is_absolute() {
        return Ok(path);
    }
    let cwd = std::env::current_dir().map_err(|e| RestoreError::io(".", e))?;
    Ok(cwd.join(path))
}

/// Finds the replica URL configured for `db_path`.
pub fn replica_url_for(config_path: &Path, expand: bool, db_path: &Path) -> Result<String> {
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
            (Some(r), []) => r.clone(),
            (None, [r]) => r.clone(),
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
        if let Some(url) = replica.url.filter(|u| !u.is_empty()) {
            return Ok(url);
        }
        let kind = replica.kind.as_deref().unwrap_or("file");
        return match (kind, replica.path) {
            ("file" | "", Some(p)) => Ok(expand_path(&p)?.display().to_string()),
            ("file" | "", None) => Err(RestoreError::Config(
                "file replica needs a path or url".into(),
            )),
            (other, _) => Err(RestoreError::Config(format!(
                "replica type {other:?} needs a url in this config reader"
            ))),
        };
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
        std::fs::write(
            &cfg,
            "dbs:\n  - path: ${LS_RESTORE_TEST_DIR}/a.db\n    replica:\n      url: file:///r/a\n  - path: $LS_RESTORE_TEST_DIR/b.db\n    replica:\n      type: file\n      path: /r/b\n    monitor-interval: 1s\n",
        )
        .expect("write");
        let a = replica_url_for(&cfg, true, &dir.path().join("a.db")).expect("a");
        assert_eq!(a, "file:///r/a");
        let b = replica_url_for(&cfg, true, &dir.path().join("b.db")).expect("b");
        assert_eq!(b, "/r/b");
        assert!(replica_url_for(&cfg, true, &dir.path().join("c.db")).is_err());
    }
}
