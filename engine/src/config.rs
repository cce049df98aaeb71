//! The Litestream YAML config (§6.1), read key by key so that every key is either used, stored
//! for later work, refused with an error that names it, or reported as unknown with its line.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use storage::value::{parse_byte_size, parse_duration as parse_go_duration};

/// Defaults from Litestream 0.5.17 (`db.go`, `replica.go`, `cmd/litestream/main.go`).
pub mod defaults {
    use std::time::Duration;
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);
    pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
    pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
    pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
    pub const MIN_CHECKPOINT_PAGE_N: u64 = 1000;
    pub const TRUNCATE_PAGE_N: i64 = 121_359;
    pub const MAX_SYNC_WAL_BYTES: u64 = 64 << 20;
    pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
    pub const MAX_SYNC_LTX_FILES: u64 = 256;
    pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
    pub const SNAPSHOT_RETENTION: Duration = Duration::from_secs(24 * 3600);
    pub const L0_RETENTION: Duration = Duration::from_secs(300);
    pub const L0_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(15);
    pub const SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
    pub const SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
    pub const LEVELS: [Duration; 3] = [
        Duration::from_secs(30),
        Duration::from_secs(300),
        Duration::from_secs(3600),
    ];
}

/// A config problem, always naming the key it is about (`dbs[0].replica.type`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config key {key}: {msg}")]
    Key { key: String, msg: String },
    #[error("config: {0}")]
    Yaml(String),
    #[error("config file not found: {}", path.display())]
    NotFound { path: PathBuf },
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn key_err(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        msg: msg.into(),
    }
}

/// The whole file, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    /// Databases listed with `path`.
    pub dbs: Vec<DbConfig>,
    /// `dir` + `pattern` entries; [`crate::dirs`] turns them into databases at start-up (and,
    /// with `watch`, while running).
    pub dirs: Vec<crate::dirs::DirConfig>,
    /// `addr`: where to serve `/metrics` (`:9090`, `127.0.0.1:9090`); checked, not yet bound.
    pub addr: Option<String>,
    /// `mcp-addr`: where `replicate` serves MCP (§7.2); checked, not yet bound.
    pub mcp_addr: Option<String>,
    /// `mcp-token`, `mcp-restore-dir`, `mcp-allowed-hosts`.
    pub mcp: crate::mcp::McpConfig,
    /// Compaction intervals of levels 1..=n (`levels:`); stored for the compactor.
    pub levels: Vec<Duration>,
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    /// Zero disables L0 retention.
    pub l0_retention: Duration,
    pub l0_retention_check_interval: Duration,
    pub retention_enabled: bool,
    pub verify_compaction: bool,
    pub shutdown_sync_timeout: Duration,
    pub shutdown_sync_interval: Duration,
    pub exec: Option<String>,
    pub logging: LoggingConfig,
    /// `socket:` with `enabled: true`: where to serve the control socket.
    pub socket: Option<SocketConfig>,
    /// `heartbeat-url` (with `heartbeat-interval`).
    pub heartbeat: Option<HeartbeatConfig>,
    /// Unknown keys, with their line, for the caller to log once logging is set up.
    pub warnings: Vec<String>,
}

/// The control socket (`socket.path`, `socket.permissions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// File mode of the socket (default 0600).
    pub permissions: u32,
}

/// Litestream's default `socket.path`.
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/litestream.sock";

/// Heartbeat pings (`heartbeat-url`, `heartbeat-interval`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    pub url: String,
    /// At least one minute (default five).
    pub interval: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct LoggingConfig {
    pub level: Option<String>,
    pub json: bool,
    pub stderr: bool,
}

/// One database and its replica.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub path: PathBuf,
    /// The local meta directory (`<dir>/.<name>-litestream` unless `meta-path` is set).
    pub meta_path: PathBuf,
    pub monitor_interval: Duration,
    pub checkpoint_interval: Duration,
    pub busy_timeout: Duration,
    pub min_checkpoint_page_n: u64,
    /// 0 means the default; negative disables the emergency TRUNCATE.
    pub truncate_page_n: i64,
    pub max_sync_wal_bytes: u64,
    /// `restore-if-db-not-exists`: restore from the replica before replicating when the
    /// database file is missing.
    pub restore_if_missing: bool,
    pub replica: ReplicaConfig,
}

/// One replica. For `file`, `url` is the absolute directory; for `s3`/`oss` it is the URL if
/// one was given (else empty) and `settings` holds the backend keys, `path` included.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub kind: String,
    pub url: String,
    pub sync_interval: Duration,
    pub max_sync_ltx_files: u64,
    pub auto_recover: bool,
    /// Backend settings (`region`, `endpoint`, ...), passed through unchanged.
    pub settings: BTreeMap<String, String>,
}

/// Expands `$VAR` and `${VAR}` as Go's `os.Expand` does; `$PID` is this process's PID.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let get = |name: &str| -> String {
        match lookup(name) {
            Some(v) => v,
            None if name == "PID" => std::process::id().to_string(),
            None => String::new(),
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('{') => match after.find('}') {
                Some(end) if end > 1 => {
                    out.push_str(&get(&after[1..end]));
                    rest = &after[end + 1..];
                }
                // `${}` or an unclosed `${` is invalid syntax; Go eats it.
                Some(end) => rest = &after[end + 1..],
                None => rest = "",
            },
            Some(c) if "*#$@!?-".contains(c) || c.is_ascii_digit() => {
                out.push_str(&get(&after[..c.len_utf8()]));
                rest = &after[c.len_utf8()..];
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let end = after
                    .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                    .unwrap_or(after.len());
                out.push_str(&get(&after[..end]));
                rest = &after[end..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Strips `sqlite://`/`sqlite3://`, expands `~`, and makes the path absolute.
pub fn expand_path(s: &str) -> Result<PathBuf, String> {
    let s = s
        .strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s);
    if s.is_empty() {
        return Err("empty path".into());
    }
    let p = if s == "~" || s.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("cannot expand {s}: no home directory"))?;
        let home = PathBuf::from(home);
        match s.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => home,
        }
    } else {
        PathBuf::from(s)
    };
    let abs = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot make {s} absolute: {e}"))?
            .join(p)
    };
    Ok(normalize(&abs))
}

/// Lexical cleanup (`a/./b/../c` → `a/c`), like Go's `filepath.Abs` does.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `<dir>/.<file>-litestream`, Litestream's default meta directory.
pub fn default_meta_path(db: &Path) -> PathBuf {
    let dir = db.parent().unwrap_or(Path::new("/"));
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}-litestream"))
}

/// A YAML mapping being read, which remembers which keys were looked at.
struct Node<'a> {
    map: Option<&'a Mapping>,
    path: String,
    seen: HashSet<String>,
}

impl<'a> Node<'a> {
    fn new(v: &'a Value, path: &str) -> Result<Self, ConfigError> {
        let map = match v {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            _ => return Err(key_err(path, "expected a mapping")),
        };
        Ok(Node {
            map,
            path: path.to_owned(),
            seen: HashSet::new(),
        })
    }

    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn get(&mut self, k: &str) -> Option<&'a Value> {
        self.seen.insert(k.to_owned());
        let v = self.map?.get(k)?;
        (!v.is_null()).then_some(v)
    }

    fn scalar(&mut self, k: &str) -> Result<Option<String>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(key_err(&self.key(k), "expected a scalar value")),
        }
    }

    fn string(&mut self, k: &str) -> Result<Option<String>, ConfigError> {
        self.scalar(k)
    }

    fn duration(&mut self, k: &str) -> Result<Option<Duration>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => parse_go_duration(s)
                .map(Some)
                .map_err(|e| key_err(&self.key(k), e.to_string())),
            // yaml.v2 decodes a bare integer into time.Duration as nanoseconds.
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|ns| Some(Duration::from_nanos(ns)))
                .ok_or_else(|| key_err(&self.key(k), "expected a duration such as 10s")),
            Some(_) => Err(key_err(&self.key(k), "expected a duration such as 10s")),
        }
    }

    fn bool(&mut self, k: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => storage::value::parse_config_bool(s)
                .map(Some)
                .ok_or_else(|| key_err(&self.key(k), "expected true or false")),
            Some(_) => Err(key_err(&self.key(k), "expected true or false")),
        }
    }

    fn int(&mut self, k: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| key_err(&self.key(k), "expected an integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| key_err(&self.key(k), "expected an integer")),
            Some(_) => Err(key_err(&self.key(k), "expected an integer")),
        }
    }

    fn uint(&mut self, k: &str) -> Result<Option<u64>, ConfigError> {
        match self.int(k)? {
            Some(v) if v < 0 => Err(key_err(&self.key(k), "must not be negative")),
            v => Ok(v.map(|v| v as u64)),
        }
    }

    fn bytes(&mut self, k: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| key_err(&self.key(k), "expected a byte size")),
            Some(Value::String(s)) => parse_byte_size(s)
                .map(Some)
                .map_err(|e| key_err(&self.key(k), e.to_string())),
            Some(_) => Err(key_err(&self.key(k), "expected a byte size such as 64MiB")),
        }
    }

    fn child(&mut self, k: &str) -> Result<Option<Node<'a>>, ConfigError> {
        let key = self.key(k);
        match self.get(k) {
            None => Ok(None),
            Some(v) => Node::new(v, &key).map(Some),
        }
    }

    /// Keys present in the mapping that nobody asked for.
    fn unknown(&self) -> Vec<String> {
        let Some(m) = self.map else {
            return Vec::new();
        };
        m.keys()
            .filter_map(|k| match k {
                Value::String(s) => Some(s.clone()),
                other => serde_yaml_ng::to_string(other)
                    .ok()
                    .map(|s| s.trim().to_owned()),
            })
            .filter(|k| !self.seen.contains(k))
            .map(|k| self.key(&k))
            .collect()
    }
}

/// 1-based line of the first line that defines `key` (last path component), for warnings.
fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let last = dotted.rsplit('.').next().unwrap_or(dotted);
    let last = last.split('[').next().unwrap_or(last);
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix(last)
                .is_some_and(|r| r.trim_start().starts_with(':'))
                || t.strip_prefix(&format!("\"{last}\""))
                    .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// A file mode as yaml.v2 reads it into a uint32: `0600` (a leading zero) is octal, `384` is
/// decimal (serde gives `0o600` as the number 384 already).
fn parse_mode(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?}: expected a file mode such as 0600");
    let v = if s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()) {
        u32::from_str_radix(&s[1..], 8).map_err(|_| bad())?
    } else {
        s.parse::<u32>().map_err(|_| bad())?
    };
    if v > 0o7777 {
        return Err(bad());
    }
    Ok(v)
}

/// Reads a config file. `expand_env` follows `-no-expand-env`.
pub fn load(path: &Path, expand: bool) -> Result<Config, ConfigError> {
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

/// Parses config text.
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

    let addr = top.string("addr")?.filter(|a| !a.is_empty());
    if let Some(a) = &addr {
        // Checked now so a bad address stops start-up before any database is touched.
        crate::http::parse_addr(a).map_err(|msg| key_err("addr", format!("{a:?}: {msg}")))?;
    }
    let mcp_addr = top.string("mcp-addr")?.filter(|a| !a.is_empty());
    if let Some(a) = &mcp_addr {
        crate::http::parse_addr(a).map_err(|msg| key_err("mcp-addr", format!("{a:?}: {msg}")))?;
    }
    let mcp = read_mcp(&mut top)?;
    let heartbeat_url = top.string("heartbeat-url")?.filter(|v| !v.is_empty());
    if let Some(u) = &heartbeat_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(key_err(
                "heartbeat-url",
                format!("{u:?}: heartbeat URL must be a valid HTTP or HTTPS URL"),
            ));
        }
    }
    let heartbeat_interval = top.duration("heartbeat-interval")?;
    if heartbeat_interval.is_some_and(|d| d < defaults::MIN_HEARTBEAT_INTERVAL) {
        return Err(key_err(
            "heartbeat-interval",
            "heartbeat interval must be at least 1 minute",
        ));
    }
    let heartbeat = heartbeat_url.map(|url| HeartbeatConfig {
        url,
        interval: heartbeat_interval.unwrap_or(defaults::HEARTBEAT_INTERVAL),
    });
    let mut socket = None;
    if let Some(mut sock) = top.child("socket")? {
        let enabled = sock.bool("enabled")?.unwrap_or(false);
        let path = sock
            .string("path")?
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_SOCKET_PATH.to_owned());
        let permissions = match sock.scalar("permissions")? {
            None => 0o600,
            Some(p) => parse_mode(&p).map_err(|e| key_err("socket.permissions", e))?,
        };
        unknown.extend(sock.unknown());
        if enabled {
            let path = expand_path(&path).map_err(|e| key_err("socket.path", e))?;
            socket = Some(SocketConfig { path, permissions });
        }
    }
    if let Some(mut v) = top.child("validation")? {
        if v.duration("interval")?.is_some_and(|d| !d.is_zero()) {
            return Err(key_err(
                "validation.interval",
                "periodic validation is not supported yet",
            ));
        }
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
    let mut logging = LoggingConfig::default();
    if let Some(mut l) = top.child("logging")? {
        logging.level = l.string("level")?.filter(|s| !s.is_empty());
        logging.json = match l.string("type")?.as_deref() {
            None | Some("") | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(key_err(
                    "logging.type",
                    format!("unknown log type {other:?}, want text or json"),
                ))
            }
        };
        logging.stderr = l.bool("stderr")?.unwrap_or(false);
        l.bool("source")?;
        unknown.extend(l.unknown());
    }
    if let Some(level) = &logging.level {
        check_log_level(level).map_err(|e| key_err("logging.level", e))?;
    }

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
                let (db, db_unknown, snap) = read_db(&mut n, &global_replica)?;
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
        shutdown_sync_timeout,
        shutdown_sync_interval,
        exec,
        socket,
        heartbeat,
        logging,
        warnings,
    })
}

/// The MCP server's keys besides `mcp-addr`. An empty `mcp-token` (an unset variable in
/// `${VAR}`, usually) is an error rather than silently no token.
fn read_mcp(top: &mut Node<'_>) -> Result<crate::mcp::McpConfig, ConfigError> {
    let token = match top.string("mcp-token")? {
        None => None,
        Some(t) => Some(
            crate::mcp::Token::new(t)
                .ok_or_else(|| key_err("mcp-token", "empty (an unset environment variable?)"))?,
        ),
    };
    let restore_dir = match top.string("mcp-restore-dir")?.filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => Some(expand_path(&d).map_err(|e| key_err("mcp-restore-dir", e))?),
    };
    let allowed_hosts = match top.get("mcp-allowed-hosts") {
        None => Vec::new(),
        Some(Value::Sequence(seq)) => seq
            .iter()
            .map(|v| match v {
                Value::String(h) if !h.is_empty() && !h.contains([':', '/']) => Ok(h.clone()),
                _ => Err(key_err(
                    "mcp-allowed-hosts",
                    "expected a list of host names (without a port)",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(key_err("mcp-allowed-hosts", "expected a list")),
    };
    Ok(crate::mcp::McpConfig {
        token,
        restore_dir,
        allowed_hosts,
    })
}

pub fn check_log_level(level: &str) -> Result<(), String> {
    match level.to_ascii_lowercase().as_str() {
        "trace" | "debug" | "info" | "warn" | "warning" | "error" => Ok(()),
        other => Err(format!(
            "unknown log level {other:?}, want trace, debug, info, warn or error"
        )),
    }
}

/// Replica fields that may appear at top level, per replica, or both.
#[derive(Clone, Debug, Default)]
struct ReplicaFields {
    sync_interval: Option<Duration>,
    max_sync_ltx_files: Option<u64>,
    auto_recover: Option<bool>,
    settings: BTreeMap<String, (String, String)>,
}

fn read_replica_fields(n: &mut Node<'_>) -> Result<ReplicaFields, ConfigError> {
    let mut f = ReplicaFields {
        sync_interval: n.duration("sync-interval")?,
        max_sync_ltx_files: n.uint("max-sync-ltx-files")?,
        auto_recover: n.bool("auto-recover")?,
        ..Default::default()
    };
    // Parsed but unused by Litestream too.
    n.duration("validation-interval")?;
    if let Some(mut age) = n.child("age")? {
        let set =
            |v: Option<&Value>| v.is_some_and(|v| !matches!(v, Value::Sequence(s) if s.is_empty()));
        if set(age.get("identities")) || set(age.get("recipients")) {
            return Err(key_err(
                &n.key("age"),
                "age encryption is not currently supported, if you need encryption please \
                 revert back to Litestream v0.3.x",
            ));
        }
    }
    for k in storage::BACKEND_KEYS {
        // `root-cas` is a list in Litestream; backends take it one path per line.
        if *k == "root-cas" {
            if let Some(Value::Sequence(items)) = n.get(k) {
                let mut paths = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => paths.push(s.clone()),
                        _ => return Err(key_err(&n.key(k), "expected a list of file paths")),
                    }
                }
                f.settings
                    .insert((*k).to_owned(), (n.key(k), paths.join("\n")));
                continue;
            }
        }
        if let Some(v) = n.scalar(k)? {
            f.settings.insert((*k).to_owned(), (n.key(k), v));
        }
    }
    Ok(f)
}

type DbSnapshot = (Option<Duration>, Option<Duration>);

fn read_db(
    n: &mut Node<'_>,
    global: &ReplicaFields,
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
            crate::dirs::check_pattern(&pattern)
                .map_err(|e| key_err(&n.key("pattern"), format!("{pattern:?}: {e}")))?;
            let base = match (&raw_meta_path, &raw_meta_dir) {
                (Some(p), _) => crate::dirs::MetaBase::MetaPath(
                    expand_path(p).map_err(|e| key_err(&n.key("meta-path"), e))?,
                ),
                (None, Some(p)) => crate::dirs::MetaBase::MetaDir(
                    expand_path(p).map_err(|e| key_err(&n.key("meta-dir"), e))?,
                ),
                (None, None) => crate::dirs::MetaBase::Default,
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
    let replica = read_replica(&mut rn, global)?;
    unknown.extend(rn.unknown());

    let mut out = db(replica)?;
    if let Some(v) = monitor {
        if v.is_zero() {
            return Err(key_err(
                &n.key("monitor-interval"),
                "must be greater than 0",
            ));
        }
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
            Entry::Dir(crate::dirs::DirConfig {
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
enum Entry {
    Db(DbConfig),
    Dir(crate::dirs::DirConfig),
}

fn read_replica(n: &mut Node<'_>, global: &ReplicaFields) -> Result<ReplicaConfig, ConfigError> {
    let ty = n.string("type")?.filter(|s| !s.is_empty());
    let url = n.string("url")?.filter(|s| !s.is_empty());
    let path = n.string("path")?.filter(|s| !s.is_empty());
    n.string("name")?;
    let own = read_replica_fields(n)?;
    let scheme = url
        .as_deref()
        .and_then(|u| u.split_once("://").map(|(s, _)| s.to_owned()));
    let kind = ty
        .clone()
        .or(scheme.clone())
        .unwrap_or_else(|| "file".into());
    let kind_key = if ty.is_some() {
        n.key("type")
    } else {
        n.key("url")
    };
    if let (Some(t), Some(s)) = (&ty, &scheme) {
        if t != s {
            return Err(key_err(
                &n.key("type"),
                format!("type {t:?} does not match the URL scheme {s:?}"),
            ));
        }
    }
    let own_settings = own.settings.clone();
    let mut settings: BTreeMap<String, (String, String)> = global
        .settings
        .iter()
        .filter(|(k, _)| storage::inherited_from_top_level(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    settings.extend(own.settings);
    let url = match kind.as_str() {
        "file" => {
            let p = match (url, path) {
                (Some(_), Some(_)) => {
                    return Err(key_err(
                        &n.key("path"),
                        "cannot specify url & path for file replica",
                    ))
                }
                (Some(u), None) => {
                    // Litestream drops the query string of file URLs.
                    let rest = u.strip_prefix("file://").unwrap_or(&u);
                    let p = rest.split(['?', '#']).next().unwrap_or_default();
                    if !p.starts_with('/') {
                        return Err(key_err(
                            &n.key("url"),
                            "file URLs need an absolute path (file:///path)",
                        ));
                    }
                    p.to_owned()
                }
                (None, Some(p)) => {
                    if p.contains("://") {
                        return Err(key_err(&n.key("path"), "a replica path must not be a URL"));
                    }
                    p
                }
                (None, None) => return Err(key_err(&n.key("path"), "file replica path required")),
            };
            let abs = expand_path(&p).map_err(|e| key_err(&n.key("path"), e))?;
            // Top-level backend keys are defaults for the replicas they apply to; only a key
            // written on this file replica itself is a mistake worth reporting.
            if let Some((_, (key, _))) = own_settings.iter().next() {
                return Err(key_err(
                    key,
                    "this setting does not apply to a file replica",
                ));
            }
            settings.clear();
            abs.to_string_lossy().into_owned()
        }
        "s3" | "oss" | "gs" | "abs" | "sftp" | "webdav" | "webdavs" | "nats" => {
            // The YAML `path` of a remote replica is the key prefix (or directory) inside it.
            if let Some(p) = path {
                settings.insert("path".into(), (n.key("path"), p));
            }
            let pairs: Vec<(&str, &str)> = settings
                .iter()
                .map(|(k, (_, v))| (k.as_str(), v.as_str()))
                .collect();
            // Parse now so a bad setting stops start-up with the key named, not later.
            storage::ReplicaUrl::from_config(&kind, url.as_deref(), pairs).map_err(|e| {
                let key = if url.is_some() {
                    kind_key.clone()
                } else {
                    n.path.clone()
                };
                key_err(&key, e.to_string())
            })?;
            url.unwrap_or_default()
        }
        other => {
            return Err(key_err(
                &kind_key,
                format!("unknown replica type {other:?}"),
            ))
        }
    };
    let sync_interval = own
        .sync_interval
        .or(global.sync_interval)
        .unwrap_or(defaults::SYNC_INTERVAL);
    if sync_interval.is_zero() {
        return Err(key_err(&n.key("sync-interval"), "must be greater than 0"));
    }
    let auto_recover = own.auto_recover.or(global.auto_recover).unwrap_or(false);
    if auto_recover {
        return Err(key_err(
            &n.key("auto-recover"),
            "automatic recovery of local state is not supported yet",
        ));
    }
    Ok(ReplicaConfig {
        kind,
        url,
        sync_interval,
        max_sync_ltx_files: own
            .max_sync_ltx_files
            .or(global.max_sync_ltx_files)
            .unwrap_or(defaults::MAX_SYNC_LTX_FILES),
        auto_recover,
        settings: settings.into_iter().map(|(k, (_, v))| (k, v)).collect(),
    })
}

/// The config for `replicate DB_PATH REPLICA_URL`: defaults everywhere.
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
mod tests {
    use super::*;

    fn must(text: &str) -> Config {
        match parse(text, false) {
            Ok(c) => c,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn root_cas_is_a_list() {
        let c = parse(
            "dbs:\n  - path: /a.db\n    replica:\n      url: nats://127.0.0.1:4222/b\n      root-cas: [/ca1.pem, /ca2.pem]\n",
            false,
        )
        .expect("config");
        assert_eq!(
            c.dbs[0]
                .replica
                .settings
                .get("root-cas")
                .map(String::as_str),
            Some("/ca1.pem\n/ca2.pem")
        );
        let e = err("dbs:\n  - path: /a.db\n    replica:\n      url: nats://h:4222/b\n      root-cas: [{a: 1}]\n");
        assert!(e.contains("dbs[0].replica.root-cas"), "{e}");
    }

    fn err(text: &str) -> String {
        match parse(text, false) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn full_config() {
        let c = must(
            r#"
addr: :9090
levels:
  - interval: 10s
  - interval: 1m
snapshot:
  interval: 20s
  retention: 1h
l0-retention: 0
retention:
  enabled: false
sync-interval: 2s
logging:
  level: debug
  type: json
dbs:
  - path: sqlite:///tmp/a.db
    monitor-interval: 100ms
    checkpoint-interval: 0
    busy-timeout: 5s
    min-checkpoint-page-count: 10
    truncate-page-n: -1
    max-sync-wal-bytes: 1MiB
    replica:
      url: file:///tmp/replica-a
      max-sync-ltx-files: 7
  - path: /tmp/b.db
    meta-path: /tmp/meta-b
    replicas:
      - path: /tmp/replica-b
        sync-interval: 250ms
"#,
        );
        assert_eq!(
            c.levels,
            vec![Duration::from_secs(10), Duration::from_secs(60)]
        );
        assert_eq!(c.addr.as_deref(), Some(":9090"));
        assert_eq!(c.snapshot_interval, Duration::from_secs(20));
        assert_eq!(c.l0_retention, Duration::ZERO);
        assert!(!c.retention_enabled);
        assert!(c.logging.json);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let a = &c.dbs[0];
        assert_eq!(a.path, PathBuf::from("/tmp/a.db"));
        assert_eq!(a.meta_path, PathBuf::from("/tmp/.a.db-litestream"));
        assert_eq!(a.monitor_interval, Duration::from_millis(100));
        assert_eq!(a.checkpoint_interval, Duration::ZERO);
        assert_eq!(a.min_checkpoint_page_n, 10);
        assert_eq!(a.truncate_page_n, -1);
        assert_eq!(a.max_sync_wal_bytes, 1 << 20);
        assert_eq!(a.replica.url, "/tmp/replica-a");
        assert_eq!(a.replica.kind, "file");
        assert_eq!(a.replica.sync_interval, Duration::from_secs(2));
        assert_eq!(a.replica.max_sync_ltx_files, 7);
        let b = &c.dbs[1];
        assert_eq!(b.meta_path, PathBuf::from("/tmp/meta-b"));
        assert_eq!(b.replica.sync_interval, Duration::from_millis(250));
        assert_eq!(b.busy_timeout, defaults::BUSY_TIMEOUT);
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| match k {
            "DIR" => Some("/data".to_owned()),
            "X" => Some("x".to_owned()),
            _ => None,
        };
        assert_eq!(expand_env("$DIR/a.db", env), "/data/a.db");
        assert_eq!(expand_env("${DIR}/a.db", env), "/data/a.db");
        assert_eq!(expand_env("a${X}b$X.c", env), "axbx.c");
        assert_eq!(expand_env("$UNSET/a", env), "/a");
        assert_eq!(expand_env("cost: 5$ ", env), "cost: 5$ ");
        assert_eq!(expand_env("$PID", env), std::process::id().to_string());
        assert_eq!(expand_env("${unclosed", env), "");
    }

    #[test]
    fn env_expansion_is_applied_before_yaml_unless_disabled() {
        std::env::set_var("LS_ENGINE_TEST_REPLICA_DIR", "/tmp/from-env");
        let text =
            "dbs:\n  - path: /tmp/x.db\n    replica:\n      path: $LS_ENGINE_TEST_REPLICA_DIR\n";
        let c = parse(text, true).expect("parse");
        assert_eq!(c.dbs[0].replica.url, "/tmp/from-env");
        let c = parse(text, false).expect("parse");
        assert!(c.dbs[0]
            .replica
            .url
            .ends_with("$LS_ENGINE_TEST_REPLICA_DIR"));
    }

    #[test]
    fn paths() {
        assert_eq!(
            expand_path("sqlite3:///var/x.db").ok(),
            Some(PathBuf::from("/var/x.db"))
        );
        assert_eq!(
            expand_path("sqlite:///var/./y/../x.db").ok(),
            Some(PathBuf::from("/var/x.db"))
        );
        let home = std::env::var("HOME").expect("HOME");
        assert_eq!(
            expand_path("~/x.db").ok(),
            Some(PathBuf::from(home).join("x.db"))
        );
        let rel = expand_path("rel.db").expect("relative");
        assert!(rel.is_absolute() && rel.ends_with("rel.db"));
    }

    #[test]
    fn socket_and_heartbeat_keys() {
        let c = must("socket:\n  enabled: true\n  permissions: 0660\n");
        let sc = c.socket.expect("socket");
        assert_eq!(sc.path, PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(sc.permissions, 0o660);
        let c = must("socket:\n  enabled: true\n  path: /tmp/x.sock\n");
        assert_eq!(c.socket.map(|s| s.permissions), Some(0o600));
        assert!(must("socket:\n  path: /tmp/x.sock\n").socket.is_none());
        assert_eq!(
            must("socket:\n  enabled: true\n  permissions: 384\n")
                .socket
                .map(|s| s.permissions),
            Some(0o600)
        );
        assert!(
            err("socket:\n  enabled: true\n  permissions: 0999\n").contains("socket.permissions")
        );
        assert!(
            err("socket:\n  enabled: true\n  path: ''\n  permissions: abc\n")
                .contains("socket.permissions")
        );

        let c = must("heartbeat-url: http://h/ping\n");
        let hb = c.heartbeat.expect("heartbeat");
        assert_eq!(hb.interval, Duration::from_secs(300));
        let c = must("heartbeat-url: https://h/ping\nheartbeat-interval: 2m\n");
        assert_eq!(
            c.heartbeat.map(|h| h.interval),
            Some(Duration::from_secs(120))
        );
        assert!(must("heartbeat-interval: 2m\n").heartbeat.is_none());
        assert!(err("heartbeat-url: ftp://h\n").contains("heartbeat-url"));
        assert!(err("heartbeat-url: http://h\nheartbeat-interval: 30s\n")
            .contains("heartbeat-interval"));
    }

    #[test]
    fn unknown_keys_warn_with_line() {
        let c = must(
            "dbs:\n  - path: /tmp/a.db\n    colour: blue\n    replica:\n      path: /tmp/r\n      bogus: 1\nwhatever: 2\n",
        );
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("dbs[0].colour") && w.contains("line 3")));
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("dbs[0].replica.bogus") && w.contains("line 6")));
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("whatever") && w.contains("line 7")));
    }

    #[test]
    fn errors_name_the_key() {
        let e = err("dbs:\n  - path: /a.db\n    monitor-interval: 5x\n    replica: {path: /r}\n");
        assert!(e.contains("dbs[0].monitor-interval"), "{e}");
        let e = err("dbs:\n  - path: /a.db\n    replica: {url: \"ftp://h:4222/b\"}\n");
        assert!(
            e.contains("dbs[0].replica.url") && e.contains("unknown replica type"),
            "{e}"
        );
        let e =
            err("dbs:\n  - path: /a.db\n    replica: {url: \"s3://bucket/db\", part-size: lots}\n");
        assert!(e.contains("dbs[0].replica.url"), "{e}");
        let e = err("dbs:\n  - path: /a.db\n    replica: {type: s3, path: db}\n");
        assert!(e.contains("dbs[0].replica") && e.contains("bucket"), "{e}");
        let e = err("dbs:\n  - path: /a.db\n    replica: {type: ftp, bucket: b}\n");
        assert!(e.contains("dbs[0].replica.type"), "{e}");
        let e = err("addr: \"9090\"\n");
        assert!(e.contains("config key addr") && e.contains("port"), "{e}");
        let e = err("mcp-addr: localhost\n");
        assert!(
            e.contains("config key mcp-addr") && e.contains("port"),
            "{e}"
        );
        let c = parse("mcp-addr: 127.0.0.1:3001\n", false).expect("mcp-addr");
        assert_eq!(c.mcp_addr.as_deref(), Some("127.0.0.1:3001"));
        assert_eq!(
            parse("mcp-addr: ''\n", false).expect("empty").mcp_addr,
            None
        );
        let e = err("dbs:\n  - path: /a.db\n    replica: {path: /r, age: {recipients: [x]}}\n");
        assert!(e.contains("age encryption"), "{e}");
        let e = err("dbs:\n  - path: /a.db\n");
        assert!(e.contains("dbs[0].replica"), "{e}");
        let e = err("dbs:\n  - path: /a.db\n    replica: {path: /r, region: us-east-1}\n");
        assert!(e.contains("dbs[0].replica.region"), "{e}");
        let e =
            err("dbs:\n  - path: /a.db\n    max-sync-wal-bytes: lots\n    replica: {path: /r}\n");
        assert!(e.contains("dbs[0].max-sync-wal-bytes"), "{e}");
        let e = err("dbs:\n  - path: /a.db\n    replica: {path: /r, auto-recover: true}\n");
        assert!(e.contains("dbs[0].replica.auto-recover"), "{e}");
        let e = err("snapshot:\n  interval: 0s\n");
        assert!(e.contains("snapshot.interval"), "{e}");
        let e = err("levels:\n  - interval: 0s\n");
        assert!(e.contains("levels[0].interval"), "{e}");
    }

    #[test]
    fn directory_entries() {
        let c = must(
            "dbs:\n  - path: /a.db\n    replica: {path: /r/a}\n  - dir: /data\n    pattern: '*.db'\n    recursive: true\n    watch: true\n    meta-dir: /meta\n    monitor-interval: 250ms\n    restore-if-db-not-exists: true\n    replica: {url: 's3://bkt/pre?region=x'}\n",
        );
        assert_eq!(c.dbs.len(), 1);
        let d = &c.dirs[0];
        assert_eq!(d.key, "dbs[1]");
        assert_eq!(d.dir, PathBuf::from("/data"));
        assert_eq!(d.pattern, "*.db");
        assert!(d.recursive && d.watch && d.restore_if_missing);
        assert!(!d.template.restore_if_missing);
        assert_eq!(d.template.monitor_interval, Duration::from_millis(250));
        let db = d.db_for(Path::new("/data/sub/b.db")).expect("db_for");
        assert_eq!(db.path, PathBuf::from("/data/sub/b.db"));
        assert_eq!(db.meta_path, PathBuf::from("/meta/sub/b.db-litestream"));
        assert_eq!(db.replica.url, "s3://bkt/pre/sub/b.db?region=x");
        assert_eq!(db.monitor_interval, Duration::from_millis(250));

        // A file replica gets `<path>/<rel>`; meta-path gives `<meta-path>/<reldir>/.<file>-litestream`.
        let c = must(
            "dbs:\n  - dir: /data\n    pattern: '*'\n    meta-path: /m\n    replica: {url: 'file:///r'}\n",
        );
        let db = c.dirs[0]
            .db_for(Path::new("/data/x/y.sqlite"))
            .expect("db_for");
        assert_eq!(db.replica.url, "/r/x/y.sqlite");
        assert_eq!(db.meta_path, PathBuf::from("/m/x/.y.sqlite-litestream"));
        let db = c.dirs[0]
            .db_for(Path::new("/data/y.sqlite"))
            .expect("db_for");
        assert_eq!(db.meta_path, PathBuf::from("/m/.y.sqlite-litestream"));

        // Default meta directory beside the database; `path` key of a remote replica.
        let c = must(
            "bucket: b\ndbs:\n  - dir: /data\n    pattern: '*.db'\n    replica: {type: s3, path: backups/}\n",
        );
        let d = &c.dirs[0];
        assert!(!d.recursive && !d.watch);
        assert_eq!(d.meta, crate::dirs::MetaBase::Default);
        let db = d.db_for(Path::new("/data/s/a.db")).expect("db_for");
        assert_eq!(db.meta_path, PathBuf::from("/data/s/.a.db-litestream"));
        assert_eq!(
            db.replica.settings.get("path").map(String::as_str),
            Some("backups/s/a.db")
        );
        assert_eq!(
            db.replica.settings.get("bucket").map(String::as_str),
            Some("b")
        );
        let c =
            must("bucket: b\ndbs:\n  - dir: /data\n    pattern: '*.db'\n    replica: {type: s3}\n");
        let db = c.dirs[0].db_for(Path::new("/data/a.db")).expect("db_for");
        assert_eq!(
            db.replica.settings.get("path").map(String::as_str),
            Some("a.db")
        );
    }

    #[test]
    fn directory_entry_errors_name_the_key() {
        let r = "    replica: {path: /r}\n";
        for (entry, key, text) in [
            ("  - dir: /d\n", "dbs[0].pattern", "'pattern' is required"),
            (
                "  - dir: /d\n    path: /a.db\n    pattern: '*'\n",
                "dbs[0].dir",
                "both 'path' and 'dir'",
            ),
            (
                "  - pattern: '*.db'\n",
                "dbs[0].path",
                "either 'path' or 'dir'",
            ),
            (
                "  - path: /a.db\n    watch: true\n",
                "dbs[0].watch",
                "only be enabled with a directory",
            ),
            (
                "  - path: /a.db\n    meta-dir: /m\n",
                "dbs[0].meta-dir",
                "only be used with a directory",
            ),
            (
                "  - dir: /d\n    pattern: '*'\n    meta-dir: /m\n    meta-path: /p\n",
                "dbs[0].meta-dir",
                "both 'meta-path' and 'meta-dir'",
            ),
            (
                "  - dir: /d\n    pattern: '[x'\n",
                "dbs[0].pattern",
                "syntax error in pattern",
            ),
            (
                "  - dir: /d\n    pattern: '*'\n    recursive: maybe\n",
                "dbs[0].recursive",
                "true or false",
            ),
            (
                "  - dir: /d\n    pattern: '*'\n    watch: 3\n",
                "dbs[0].watch",
                "true or false",
            ),
        ] {
            let e = err(&format!("dbs:\n{entry}{r}"));
            assert!(e.contains(key) && e.contains(text), "{entry}: {e}");
        }
        let e = err("dbs:\n  - dir: /d\n    pattern: '*'\n");
        assert!(e.contains("dbs[0].replica"), "{e}");
    }

    #[test]
    fn s3_replicas_pass_settings_through() {
        let c = must(
            "access-key-id: AK\nregion: eu-west-1\npart-size: 64MiB\nwebdav-url: http://dav\ndbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: b\n      path: db/a\n      endpoint: http://localhost:9000\n  - path: /b.db\n    replica: {url: \"s3://b2/p?region=us-east-1\"}\n  - path: /c.db\n    replica: {path: /r}\n",
        );
        let a = &c.dbs[0].replica;
        assert_eq!(a.kind, "s3");
        assert_eq!(a.url, "");
        assert_eq!(a.settings.get("bucket").map(String::as_str), Some("b"));
        assert_eq!(a.settings.get("path").map(String::as_str), Some("db/a"));
        assert_eq!(
            a.settings.get("access-key-id").map(String::as_str),
            Some("AK")
        );
        // As in Litestream, a top-level part-size or webdav-url is no default.
        assert_eq!(a.settings.get("part-size"), None);
        assert_eq!(a.settings.get("webdav-url"), None);
        let b = &c.dbs[1].replica;
        assert_eq!(b.url, "s3://b2/p?region=us-east-1");
        // Global S3 keys do not leak into a file replica.
        assert!(c.dbs[2].replica.settings.is_empty());
    }

    #[test]
    fn args_config() {
        let c = from_args("/tmp/db.sqlite", "file:///tmp/rep").expect("args");
        assert_eq!(c.dbs[0].replica.url, "/tmp/rep");
        assert_eq!(c.dbs[0].monitor_interval, defaults::MONITOR_INTERVAL);
        let e = from_args("/tmp/db.sqlite", "ftp://b/p").expect_err("ftp");
        assert!(e.to_string().contains("REPLICA_URL"));
        let c = from_args("/tmp/db.sqlite", "gs://b/p").expect("gs");
        assert_eq!(c.dbs[0].replica.kind, "gs");
        let c = from_args("/tmp/db.sqlite", "s3://b/p").expect("s3");
        assert_eq!(c.dbs[0].replica.kind, "s3");
    }
}
