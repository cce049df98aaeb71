//! The Litestream 0.5.17 YAML config, read once for both binaries (`ls-engine` and
//! `ls-restore`), so that one file cannot mean two things. See docs/config-and-cli.md.
//!
//! Two layers, as in ripgrep's low-level/high-level split: [`node`] reads the raw YAML key by
//! key (every key is used, or reported as unknown with its line), and the readers here and in
//! [`daemon`], [`database`], [`directory`] and [`replica`] resolve it into a [`Config`]: paths
//! expanded ([`env`]), values parsed with the one duration, size and boolean parser
//! ([`storage::value`]), defaults applied ([`defaults`]) and every check done, each error naming
//! its key path ([`ConfigError`]). The command-line form (`DB_PATH REPLICA_URL`) goes through
//! the same reader ([`from_args`]).

#![deny(missing_docs)]

pub mod daemon;
pub mod database;
pub mod defaults;
pub mod directory;
pub mod env;
pub mod error;
pub mod logfmt;
pub(crate) mod node;
pub mod replica;

use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value;

pub use daemon::{
    check_log_level, parse_addr, HeartbeatConfig, LoggingConfig, McpConfig, SocketConfig, Token,
    DEFAULT_SOCKET_PATH,
};
pub use database::DbConfig;
pub use directory::{check_pattern, DirConfig, MetaBase};
pub use env::{default_meta_path, expand_env, expand_path, home_dir};
pub use error::ConfigError;
pub use replica::{ReplicaConfig, ReplicaKind};
pub use storage::value;

use daemon::{read_addr, read_heartbeat, read_logging, read_mcp, read_socket};
use database::{read_db, Entry};
use error::key_err;
use node::{line_of, Node};
use replica::read_replica_fields;

/// The default config path: `$LITESTREAM_CONFIG`, else `/etc/litestream.yml`.
pub fn default_config_path() -> std::path::PathBuf {
    std::env::var_os("LITESTREAM_CONFIG")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/etc/litestream.yml"))
}

/// The whole file, resolved.
#[derive(Debug)]
pub struct Config {
    /// Databases listed with `path`.
    pub dbs: Vec<DbConfig>,
    /// `dir` + `pattern` entries; the engine turns them into databases at start-up (and, with
    /// `watch`, while running).
    pub dirs: Vec<DirConfig>,
    /// `addr`: where to serve `/metrics` (`:9090`, `127.0.0.1:9090`); checked, not yet bound.
    pub addr: Option<String>,
    /// `mcp-addr`: where `replicate` serves MCP (docs/config-and-cli.md#control-socket); checked,
    /// not yet bound.
    pub mcp_addr: Option<String>,
    /// `mcp-token`, `mcp-restore-dir`, `mcp-allowed-hosts`.
    pub mcp: McpConfig,
    /// Compaction intervals of levels 1..=n (`levels:`); stored for the compactor.
    pub levels: Vec<Duration>,
    /// `snapshot.interval`: how often a full snapshot is taken (default 24h, must be > 0).
    pub snapshot_interval: Duration,
    /// `snapshot.retention`: how long snapshots are kept (default 24h, must be > 0).
    pub snapshot_retention: Duration,
    /// `l0-retention`: how long an L0 file is kept once L1 covers it (default 5m).
    /// Zero disables L0 retention.
    pub l0_retention: Duration,
    /// `l0-retention-check-interval`: how often L0 retention is enforced (default 15s).
    pub l0_retention_check_interval: Duration,
    /// `retention.enabled`: whether old files are deleted from replicas (default true).
    pub retention_enabled: bool,
    /// `verify-compaction`: check a level's TXID chain after each compaction (default false).
    pub verify_compaction: bool,
    /// `validation.interval`: how often every level's TXID chain is checked (logging only).
    pub validation_interval: Option<Duration>,
    /// `shutdown-sync-timeout`: how long the final upload at shutdown is retried (default 30s).
    pub shutdown_sync_timeout: Duration,
    /// `shutdown-sync-interval`: the wait between those retries (default 500ms).
    pub shutdown_sync_interval: Duration,
    /// `exec`: a command to run; replication stops when it exits (`None` when unset or empty).
    pub exec: Option<String>,
    /// `logging.level`, `.type`, `.stderr` and `.source`.
    pub logging: LoggingConfig,
    /// `socket:` with `enabled: true`: where to serve the control socket.
    pub socket: Option<SocketConfig>,
    /// `heartbeat-url` (with `heartbeat-interval`).
    pub heartbeat: Option<HeartbeatConfig>,
    /// Unknown keys, with their line, for the caller to log once logging is set up.
    pub warnings: Vec<String>,
    /// Problems that stop `replicate` but not a restore: an `age` block `replicate` cannot use,
    /// listen addresses that cannot be bound, and an empty `mcp-token`. Kept apart so that
    /// `ls-restore -config` reads every config Litestream's restore reads; `ls-engine` refuses
    /// the config on the first one.
    pub replicate_errors: Vec<ConfigError>,
}

/// Reads a config file. `expand_env` follows `-no-expand-env`. A leading `~/` in `path` is the
/// home directory, from `-config` or `$LITESTREAM_CONFIG` alike, as in Litestream.
pub fn load(path: &Path, expand: bool) -> Result<Config, ConfigError> {
    let expanded = path
        .to_str()
        .filter(|s| s.starts_with('~'))
        .and_then(|s| expand_path(s).ok());
    let path = expanded.as_deref().unwrap_or(path);
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        // Litestream's wording.
        std::io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_owned(),
        },
        _ => ConfigError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    parse(&text, expand)
}

/// Resolves config text: expands the environment (unless `expand` is false, for
/// `-no-expand-env`), reads the YAML, applies defaults and checks every value.
pub fn parse(text: &str, expand: bool) -> Result<Config, ConfigError> {
    let text = if expand {
        expand_env(text, |k| std::env::var(k).ok())
    } else {
        text.to_owned()
    };
    let root: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Yaml(e.to_string()))?
    };
    let mut top = Node::new(&root, "")?;
    let mut unknown = Vec::new();

    let mut replicate_errors = Vec::new();
    let addr = read_addr(&mut top, "addr", &mut replicate_errors)?;
    let mcp_addr = read_addr(&mut top, "mcp-addr", &mut replicate_errors)?;
    let mcp = read_mcp(&mut top, &mut replicate_errors)?;
    let heartbeat = read_heartbeat(&mut top)?;
    let socket = read_socket(&mut top, &mut unknown)?;
    let mut validation_interval = None;
    if let Some(mut v) = top.child("validation")? {
        validation_interval = v.duration("interval")?.filter(|d| !d.is_zero());
        unknown.extend(v.unknown());
    }

    let levels = match top.get("levels") {
        None => defaults::LEVELS.to_vec(),
        Some(Value::Sequence(seq)) => {
            let mut out = Vec::new();
            for (i, item) in seq.iter().enumerate() {
                let mut n = Node::new(item, &format!("levels[{i}]"))?;
                let interval = n
                    .duration("interval")?
                    .ok_or_else(|| key_err(&n.key("interval"), "required"))?;
                if interval.is_zero() {
                    return Err(key_err(&n.key("interval"), "must be greater than 0"));
                }
                unknown.extend(n.unknown());
                out.push(interval);
            }
            out
        }
        Some(_) => return Err(key_err("levels", "expected a list")),
    };

    let mut snapshot_interval = None;
    let mut snapshot_retention = None;
    if let Some(mut s) = top.child("snapshot")? {
        snapshot_interval = s.duration("interval")?;
        snapshot_retention = s.duration("retention")?;
        unknown.extend(s.unknown());
    }
    let l0_retention = top
        .duration("l0-retention")?
        .unwrap_or(defaults::L0_RETENTION);
    let l0_retention_check_interval = top
        .duration("l0-retention-check-interval")?
        .unwrap_or(defaults::L0_RETENTION_CHECK_INTERVAL);
    let mut retention_enabled = true;
    if let Some(mut r) = top.child("retention")? {
        retention_enabled = r.bool("enabled")?.unwrap_or(true);
        unknown.extend(r.unknown());
    }
    let verify_compaction = top.bool("verify-compaction")?.unwrap_or(false);
    let shutdown_sync_timeout = top
        .duration("shutdown-sync-timeout")?
        .unwrap_or(defaults::SHUTDOWN_SYNC_TIMEOUT);
    let shutdown_sync_interval = top
        .duration("shutdown-sync-interval")?
        .unwrap_or(defaults::SHUTDOWN_SYNC_INTERVAL);
    let exec = top.string("exec")?.filter(|s| !s.is_empty());
    let logging = read_logging(&mut top, &mut unknown)?;

    // Top-level replica keys are defaults inherited by every replica.
    let global_replica = read_replica_fields(&mut top)?;

    let mut dbs = Vec::new();
    let mut dirs = Vec::new();
    match top.get("dbs") {
        None => {}
        Some(Value::Sequence(seq)) => {
            for (i, item) in seq.iter().enumerate() {
                let key = format!("dbs[{i}]");
                let mut n = Node::new(item, &key)?;
                let (db, db_unknown, snap) =
                    read_db(&mut n, &global_replica, &mut replicate_errors)?;
                // There is a single snapshot schedule: a per-DB value fills an unset global
                // one; two different per-DB values conflict.
                for (slot, val, name) in [
                    (&mut snapshot_interval, snap.0, "interval"),
                    (&mut snapshot_retention, snap.1, "retention"),
                ] {
                    if let Some(v) = val {
                        match slot {
                            Some(cur) if *cur != v => {
                                return Err(key_err(
                                    &format!("{key}.snapshot.{name}"),
                                    "conflicts with another snapshot setting",
                                ))
                            }
                            _ => *slot = Some(v),
                        }
                    }
                }
                unknown.extend(db_unknown);
                match db {
                    Entry::Db(db) => dbs.push(db),
                    Entry::Dir(d) => dirs.push(d),
                }
            }
        }
        Some(_) => return Err(key_err("dbs", "expected a list")),
    }
    let snapshot_interval = snapshot_interval.unwrap_or(defaults::SNAPSHOT_INTERVAL);
    let snapshot_retention = snapshot_retention.unwrap_or(defaults::SNAPSHOT_RETENTION);
    if snapshot_interval.is_zero() {
        return Err(key_err("snapshot.interval", "must be greater than 0"));
    }
    if snapshot_retention.is_zero() {
        return Err(key_err("snapshot.retention", "must be greater than 0"));
    }

    unknown.extend(top.unknown());
    let warnings = unknown
        .into_iter()
        .map(|k| match line_of(&text, &k) {
            Some(line) => format!("unknown config key {k} (line {line}), ignored"),
            None => format!("unknown config key {k}, ignored"),
        })
        .collect();

    Ok(Config {
        dbs,
        dirs,
        addr,
        mcp_addr,
        mcp,
        levels,
        snapshot_interval,
        snapshot_retention,
        l0_retention,
        l0_retention_check_interval,
        retention_enabled,
        verify_compaction,
        validation_interval,
        shutdown_sync_timeout,
        shutdown_sync_interval,
        exec,
        socket,
        heartbeat,
        logging,
        warnings,
        replicate_errors,
    })
}

/// The config for `replicate DB_PATH REPLICA_URL`: defaults everywhere, read by the same
/// reader as a file (errors name `DB_PATH` or `REPLICA_URL`).
pub fn from_args(db: &str, url: &str) -> Result<Config, ConfigError> {
    let path = expand_path(db).map_err(|e| key_err("DB_PATH", e))?;
    let mut top_text = String::new();
    top_text.push_str("dbs:\n  - path: ");
    top_text.push_str(&yaml_quote(&path.to_string_lossy()));
    top_text.push_str("\n    replica:\n      url: ");
    top_text.push_str(&yaml_quote(url));
    top_text.push('\n');
    parse(&top_text, false).map_err(|e| match e {
        ConfigError::Key { msg, .. } => key_err("REPLICA_URL", msg),
        other => other,
    })
}

fn yaml_quote(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests;
