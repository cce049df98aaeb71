//! `ls-restore -config PATH DB_PATH`: the database's replica as the shared config reader
//! (`ls-config`, docs/config-and-cli.md#config-file) resolves it, the same reader and the same
//! resolution `ls-engine` uses, so one file cannot name two different replicas. What only
//! `replicate` refuses (settings not supported yet, unbindable addresses) does not stop a
//! restore, as Litestream's restore reads those configs too.

use std::path::{Path, PathBuf};

use ls_config::ReplicaConfig;

use crate::{RestoreError, Result};

pub use ls_config::default_config_path;

/// A database path from the command line, expanded by the config's rule (`~`, `sqlite://`,
/// absolute and clean).
pub fn expand_path(p: &str) -> Result<PathBuf> {
    ls_config::expand_path(p).map_err(|e| RestoreError::Config(format!("{p:?}: {e}")))
}

/// The replica configured for `db_path` (a `path` entry; Litestream's restore does not look
/// inside directory entries).
pub fn replica_for(config_path: &Path, expand: bool, db_path: &Path) -> Result<ReplicaConfig> {
    let cfg = ls_config::load(config_path, expand)?;
    for w in &cfg.warnings {
        tracing::warn!(config = %config_path.display(), "{w}");
    }
    cfg.dbs
        .into_iter()
        .find(|db| db.path == db_path)
        .map(|db| db.replica)
        .ok_or_else(|| {
            RestoreError::Config(format!(
                "database not found in config: {}",
                db_path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ls_config::ReplicaKind;

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
        let get = |r: &ReplicaConfig, k: &str| r.settings.get(k).cloned();
        let a = replica_for(&cfg, true, &dir.path().join("a.db")).expect("a");
        assert_eq!((a.kind, a.url.as_str()), (ReplicaKind::File, "/r/a"));
        let b = replica_for(&cfg, true, &dir.path().join("b.db")).expect("b");
        assert_eq!((b.kind, b.url.as_str()), (ReplicaKind::File, "/r/b"));
        let c = replica_for(&cfg, true, &dir.path().join("c.db")).expect("c");
        assert_eq!(c.kind, ReplicaKind::S3);
        assert_eq!(get(&c, "endpoint").as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(get(&c, "force-path-style").as_deref(), Some("true"));
        assert_eq!(get(&c, "concurrency").as_deref(), Some("3"));
        // Litestream does not pass a top-level `concurrency` on to replicas.
        let n = replica_for(&cfg, true, &dir.path().join("n.db")).expect("n");
        assert_eq!(get(&n, "concurrency"), None);
        assert_eq!(get(&n, "region").as_deref(), Some("eu-west-1"));
        // The replica's key overrides the global one; globals fill the rest.
        assert_eq!(get(&c, "access-key-id").as_deref(), Some("mine"));
        assert_eq!(get(&c, "region").as_deref(), Some("eu-west-1"));
        let src = crate::source::Source::open(c.location().expect("location")).expect("open s3");
        assert_eq!(src.kind, "s3");
        let s3 = src.s3.expect("s3 client");
        assert_eq!((s3.bucket(), s3.path()), ("bk", "pre/fix"));
        // Without expansion the `sqlite://$VAR` path names no database of the file.
        assert!(replica_for(&cfg, false, &dir.path().join("c.db")).is_err());
        assert!(replica_for(&cfg, true, &dir.path().join("d.db")).is_err());
        // A YAML list (NATS `root-cas`) reaches the backend one item per line.
        assert_eq!(get(&n, "root-cas").as_deref(), Some("/ca1.pem\n/ca2.pem"));
    }

    #[test]
    fn age_block_is_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("l.yml");
        std::fs::write(
            &cfg,
            "age: {identities: [/top.txt]}\ndbs:\n  - path: /x/a.db\n    replica:\n      path: /r\n      age:\n        identities: [/k.txt]\n  - path: /x/b.db\n    replica: {path: /r}\n",
        )
        .expect("write");
        let a = replica_for(&cfg, true, Path::new("/x/a.db")).expect("a");
        assert_eq!(a.age.identities, ["/k.txt"]);
        assert!(a.settings.iter().all(|(k, _)| k != "age"), "{a:?}");
        let b = replica_for(&cfg, true, Path::new("/x/b.db")).expect("b");
        assert_eq!(b.age.identities, ["/top.txt"]);
        // A misspelt key is an error for the whole file, whichever database is asked for.
        std::fs::write(
            &cfg,
            "dbs:\n  - path: /x/a.db\n    replica: {path: /r}\n  - path: /x/c.db\n    replica: {path: /r, age: {identity: [/k.txt]}}\n",
        )
        .expect("write");
        let e = replica_for(&cfg, true, Path::new("/x/a.db")).expect_err("misspelt");
        assert!(
            e.to_string().contains("dbs[1].replica.age") && e.to_string().contains("identity"),
            "{e}"
        );
    }

    #[test]
    fn what_only_replicate_refuses_does_not_stop_a_restore() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("l.yml");
        std::fs::write(
            &cfg,
            "addr: \"9090\"\ndbs:\n  - path: /x/a.db\n    replica: {path: /r, auto-recover: true}\n",
        )
        .expect("write");
        let r = replica_for(&cfg, true, Path::new("/x/a.db")).expect("restore reads it");
        assert_eq!(r.url, "/r");
    }
}
