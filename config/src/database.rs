//! Database entries of `dbs`: one database (`path`) or a directory of them (`dir` +
//! `pattern`), each with exactly one replica. Checks follow Litestream's `Config.Validate`, in
//! its order, each naming its key.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::defaults;
use crate::directory::{check_pattern, DirConfig, MetaBase};
use crate::env::{default_meta_path, expand_path};
use crate::error::{key_err, ConfigError};
use crate::node::Node;
use crate::replica::{read_replica, ReplicaConfig, ReplicaFields};

/// One database and its replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbConfig {
    /// `path`: the database file, expanded and made absolute.
    pub path: PathBuf,
    /// The local meta directory (`<dir>/.<name>-litestream` unless `meta-path` is set).
    pub meta_path: PathBuf,
    /// `monitor-interval`: the fallback timer for checking the database for changes (default 1s;
    /// 0 turns monitoring off).
    pub monitor_interval: Duration,
    /// `checkpoint-interval`: how often a checkpoint is attempted (default 1m).
    pub checkpoint_interval: Duration,
    /// `busy-timeout`: SQLite's busy timeout on the database connection (default 1s).
    pub busy_timeout: Duration,
    /// `min-checkpoint-page-count`: WAL size in pages that triggers a PASSIVE checkpoint (default
    /// 1000, must be > 0).
    pub min_checkpoint_page_n: u64,
    /// 0 means the default; negative disables the emergency TRUNCATE.
    pub truncate_page_n: i64,
    /// `max-sync-wal-bytes`: a pass stops reading the WAL at the first commit past this (default
    /// 64 MiB).
    pub max_sync_wal_bytes: u64,
    /// `restore-if-db-not-exists`: restore from the replica before replicating when the
    /// database file is missing.
    pub restore_if_missing: bool,
    /// `replica` (or the one entry of the deprecated `replicas` list).
    pub replica: ReplicaConfig,
}

/// A database entry's own `snapshot.interval` and `snapshot.retention`.
pub(crate) type DbSnapshot = (Option<Duration>, Option<Duration>);

/// One `dbs` entry; returns it with its unknown keys and its snapshot settings. Settings that
/// stop `replicate` but not a restore go to `unsupported`.
pub(crate) fn read_db(
    n: &mut Node<'_>,
    global: &ReplicaFields,
    unsupported: &mut Vec<ConfigError>,
) -> Result<(Entry, Vec<String>, DbSnapshot), ConfigError> {
    let mut unknown = Vec::new();
    let restore_if_missing = n.bool("restore-if-db-not-exists")? == Some(true);
    let raw_path = n.string("path")?.filter(|s| !s.is_empty());
    let raw_dir = n.string("dir")?.filter(|s| !s.is_empty());
    let pattern = n.string("pattern")?.filter(|s| !s.is_empty());
    let recursive = n.bool("recursive")?.unwrap_or(false);
    let watch = n.bool("watch")?.unwrap_or(false);
    let raw_meta_path = n.string("meta-path")?;
    let raw_meta_dir = n.string("meta-dir")?;
    // Litestream's `Config.Validate` checks, in its order, each naming its key here.
    match (&raw_path, &raw_dir) {
        (Some(_), Some(_)) => {
            return Err(key_err(
                &n.key("dir"),
                "cannot specify both 'path' and 'dir'",
            ))
        }
        (None, None) => {
            return Err(key_err(
                &n.key("path"),
                "must specify either 'path' or 'dir'",
            ))
        }
        _ => {}
    }
    if raw_dir.is_some() && pattern.is_none() {
        return Err(key_err(
            &n.key("pattern"),
            "'pattern' is required when using 'dir'",
        ));
    }
    if watch && raw_dir.is_none() {
        return Err(key_err(
            &n.key("watch"),
            "'watch' can only be enabled with a directory",
        ));
    }
    if raw_meta_dir.is_some() && raw_dir.is_none() {
        return Err(key_err(
            &n.key("meta-dir"),
            "'meta-dir' can only be used with a directory",
        ));
    }
    if raw_meta_path.is_some() && raw_meta_dir.is_some() {
        return Err(key_err(
            &n.key("meta-dir"),
            "cannot specify both 'meta-path' and 'meta-dir'",
        ));
    }
    let dir = match &raw_dir {
        Some(d) => {
            let pattern = pattern.clone().unwrap_or_default();
            check_pattern(&pattern)
                .map_err(|e| key_err(&n.key("pattern"), format!("{pattern:?}: {e}")))?;
            let base = match (&raw_meta_path, &raw_meta_dir) {
                (Some(p), _) => {
                    MetaBase::MetaPath(expand_path(p).map_err(|e| key_err(&n.key("meta-path"), e))?)
                }
                (None, Some(p)) => {
                    MetaBase::MetaDir(expand_path(p).map_err(|e| key_err(&n.key("meta-dir"), e))?)
                }
                (None, None) => MetaBase::Default,
            };
            Some((
                expand_path(d).map_err(|e| key_err(&n.key("dir"), e))?,
                pattern,
                base,
            ))
        }
        None => None,
    };
    let path = match (&raw_path, &dir) {
        (Some(p), _) => expand_path(p).map_err(|e| key_err(&n.key("path"), e))?,
        // A directory entry's own settings are a template; each database found gets its
        // path, meta directory and replica location from `dirs`.
        (None, Some((d, _, _))) => d.clone(),
        (None, None) => return Err(key_err(&n.key("path"), "required")),
    };
    let meta_path = match raw_meta_path.as_deref().filter(|_| dir.is_none()) {
        Some(p) => expand_path(p).map_err(|e| key_err(&n.key("meta-path"), e))?,
        None => default_meta_path(&path),
    };
    let mut snap = (None, None);
    if let Some(mut s) = n.child("snapshot")? {
        snap = (s.duration("interval")?, s.duration("retention")?);
        unknown.extend(s.unknown());
    }
    let db = |replica| -> Result<DbConfig, ConfigError> {
        Ok(DbConfig {
            path: path.clone(),
            meta_path: meta_path.clone(),
            monitor_interval: defaults::MONITOR_INTERVAL,
            checkpoint_interval: defaults::CHECKPOINT_INTERVAL,
            busy_timeout: defaults::BUSY_TIMEOUT,
            min_checkpoint_page_n: defaults::MIN_CHECKPOINT_PAGE_N,
            truncate_page_n: defaults::TRUNCATE_PAGE_N,
            max_sync_wal_bytes: defaults::MAX_SYNC_WAL_BYTES,
            restore_if_missing,
            replica,
        })
    };
    let monitor = n.duration("monitor-interval")?;
    let checkpoint = n.duration("checkpoint-interval")?;
    let busy = n.duration("busy-timeout")?;
    let min_ckpt = n.uint("min-checkpoint-page-count")?;
    let trunc = n.int("truncate-page-n")?;
    let max_wal = n.bytes("max-sync-wal-bytes")?;

    let replica_value = match (n.get("replica"), n.get("replicas")) {
        (Some(_), Some(_)) => {
            return Err(key_err(
                &n.key("replicas"),
                "cannot specify 'replica' and 'replicas' on a database",
            ))
        }
        (Some(r), None) => (r, n.key("replica")),
        (None, Some(Value::Sequence(seq))) => match seq.as_slice() {
            [one] => (one, n.key("replicas[0]")),
            [] => return Err(key_err(&n.key("replicas"), "must specify replica")),
            _ => {
                return Err(key_err(
                    &n.key("replicas"),
                    "multiple replicas on a single database are no longer supported",
                ))
            }
        },
        (None, Some(_)) => return Err(key_err(&n.key("replicas"), "expected a list")),
        (None, None) => {
            return Err(key_err(
                &n.key("replica"),
                "must specify replica for database",
            ))
        }
    };
    let mut rn = Node::new(replica_value.0, &replica_value.1)?;
    let replica = read_replica(&mut rn, global, unsupported)?;
    unknown.extend(rn.unknown());

    let mut out = db(replica)?;
    // Zero is allowed, as in Litestream: the database is then not monitored.
    if let Some(v) = monitor {
        out.monitor_interval = v;
    }
    if let Some(v) = checkpoint {
        out.checkpoint_interval = v;
    }
    if let Some(v) = busy {
        out.busy_timeout = v;
    }
    if let Some(v) = min_ckpt {
        if v == 0 {
            return Err(key_err(
                &n.key("min-checkpoint-page-count"),
                "minimum checkpoint page count required",
            ));
        }
        out.min_checkpoint_page_n = v;
    }
    if let Some(v) = trunc {
        out.truncate_page_n = v;
    }
    if let Some(v) = max_wal {
        out.max_sync_wal_bytes = v;
    }
    unknown.extend(n.unknown());
    let entry = match dir {
        Some((dir, pattern, meta)) => {
            out.restore_if_missing = false;
            Entry::Dir(DirConfig {
                key: n.path.clone(),
                dir,
                pattern,
                recursive,
                watch,
                meta,
                restore_if_missing,
                template: out,
                found: Vec::new(),
            })
        }
        None => Entry::Db(out),
    };
    Ok((entry, unknown, snap))
}

/// One `dbs` entry: a database, or a directory of them.
pub(crate) enum Entry {
    Db(DbConfig),
    Dir(DirConfig),
}
