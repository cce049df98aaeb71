//! The keys of the `replicate` daemon: listen addresses, the control socket, heartbeat pings,
//! logging and the MCP server. `ls-restore` reads them too (a config is one file) but acts on
//! none.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::defaults;
use crate::env::expand_path;
use crate::error::{key_err, ConfigError};
use crate::node::Node;

/// The control socket (`socket.path`, `socket.permissions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// `socket.path`, expanded (default [`DEFAULT_SOCKET_PATH`]).
    pub path: PathBuf,
    /// File mode of the socket (default 0600).
    pub permissions: u32,
}

/// Litestream's default `socket.path`.
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/litestream.sock";

/// Heartbeat pings (`heartbeat-url`, `heartbeat-interval`).
#[derive(Clone, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// `heartbeat-url`: the HTTP or HTTPS URL to send a GET to.
    pub url: String,
    /// At least one minute (default five).
    pub interval: Duration,
}

/// By hand: the URL may hold a password or a token ([`storage::redact_url`]).
impl std::fmt::Debug for HeartbeatConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatConfig")
            .field("url", &storage::redact_url(&self.url))
            .field("interval", &self.interval)
            .finish()
    }
}

/// The `logging:` section (docs/config-and-cli.md#top-level-keys).
#[derive(Clone, Debug, Default)]
pub struct LoggingConfig {
    /// `level`: `trace`, `debug`, `info`, `warn` or `error`, checked (`None` when unset or empty).
    pub level: Option<String>,
    /// `type`: `text`, `json` or `pretty`.
    pub format: crate::logfmt::LogFormat,
    /// `stderr`: log to standard error instead of standard output (default false).
    pub stderr: bool,
    /// `source`: each line says where it was logged.
    pub source: bool,
}

/// A bearer token: the shared secret type, never printed (`Debug` shows `[redacted]`).
pub type Token = storage::Secret;

/// The MCP keys of the config besides `mcp-addr`.
#[derive(Clone, Debug, Default)]
pub struct McpConfig {
    /// `mcp-token`.
    pub token: Option<Token>,
    /// `mcp-restore-dir`: where `litestream_restore` may write (and below); by default the
    /// directories of the configured databases.
    pub restore_dir: Option<std::path::PathBuf>,
    /// `mcp-allowed-hosts`: more names accepted in `Host` and `Origin`.
    pub allowed_hosts: Vec<String>,
}

/// Splits `host:port` as Go's `net.SplitHostPort` does (`[v6]:port`, `:port` for every
/// interface) and requires a numeric port, which Litestream also insists on. The error says
/// what is wrong with the address.
pub fn parse_addr(addr: &str) -> Result<(String, u16), &'static str> {
    const NO_PORT: &str = "must specify a port";
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing ']'")?;
        (host, after.strip_prefix(':').ok_or(NO_PORT)?)
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or(NO_PORT)?;
        if host.contains(':') {
            return Err("too many colons; write an IPv6 address as [addr]:port");
        }
        (host, port)
    };
    if port.is_empty() {
        return Err(NO_PORT);
    }
    let port = port
        .parse()
        .map_err(|_| "the port must be a number from 0 to 65535")?;
    Ok((host.to_owned(), port))
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

/// `socket:`; `None` unless `enabled`.
pub(crate) fn read_socket(
    top: &mut Node<'_>,
    unknown: &mut Vec<String>,
) -> Result<Option<SocketConfig>, ConfigError> {
    let Some(mut sock) = top.child("socket")? else {
        return Ok(None);
    };
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
    if !enabled {
        return Ok(None);
    }
    let path = expand_path(&path).map_err(|e| key_err("socket.path", e))?;
    Ok(Some(SocketConfig { path, permissions }))
}

/// `heartbeat-url` and `heartbeat-interval`.
pub(crate) fn read_heartbeat(top: &mut Node<'_>) -> Result<Option<HeartbeatConfig>, ConfigError> {
    let url = top.string("heartbeat-url")?.filter(|v| !v.is_empty());
    if let Some(u) = &url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(key_err(
                "heartbeat-url",
                format!(
                    "{:?}: heartbeat URL must be a valid HTTP or HTTPS URL",
                    storage::redact_url(u)
                ),
            ));
        }
    }
    let interval = top.duration("heartbeat-interval")?;
    if interval.is_some_and(|d| d < defaults::MIN_HEARTBEAT_INTERVAL) {
        return Err(key_err(
            "heartbeat-interval",
            "heartbeat interval must be at least 1 minute",
        ));
    }
    Ok(url.map(|url| HeartbeatConfig {
        url,
        interval: interval.unwrap_or(defaults::HEARTBEAT_INTERVAL),
    }))
}

/// `logging:`.
pub(crate) fn read_logging(
    top: &mut Node<'_>,
    unknown: &mut Vec<String>,
) -> Result<LoggingConfig, ConfigError> {
    let mut logging = LoggingConfig::default();
    if let Some(mut l) = top.child("logging")? {
        logging.level = l.string("level")?.filter(|s| !s.is_empty());
        let ty = l.string("type")?.unwrap_or_default();
        logging.format = crate::logfmt::LogFormat::parse(&ty).ok_or_else(|| {
            key_err(
                "logging.type",
                format!("unknown log type {ty:?}, want text, json or pretty"),
            )
        })?;
        logging.stderr = l.bool("stderr")?.unwrap_or(false);
        logging.source = l.bool("source")?.unwrap_or(false);
        unknown.extend(l.unknown());
    }
    if let Some(level) = &logging.level {
        check_log_level(level).map_err(|e| key_err("logging.level", e))?;
    }
    Ok(logging)
}

/// A listen address (`addr`, `mcp-addr`). One that cannot be bound is a problem for
/// `replicate` only, so it goes to `unsupported` rather than failing the read.
pub(crate) fn read_addr(
    top: &mut Node<'_>,
    key: &str,
    unsupported: &mut Vec<ConfigError>,
) -> Result<Option<String>, ConfigError> {
    let addr = top.string(key)?.filter(|a| !a.is_empty());
    if let Some(a) = &addr {
        if let Err(msg) = parse_addr(a) {
            unsupported.push(key_err(key, format!("{a:?}: {msg}")));
        }
    }
    Ok(addr)
}

/// The MCP server's keys besides `mcp-addr`. An empty `mcp-token` (an unset variable in
/// `${VAR}`, usually) stops `replicate` rather than silently serving without a token.
pub(crate) fn read_mcp(
    top: &mut Node<'_>,
    replicate_errors: &mut Vec<ConfigError>,
) -> Result<McpConfig, ConfigError> {
    let token = match top.string("mcp-token")? {
        None => None,
        Some(t) => {
            let token = Token::non_empty(t);
            if token.is_none() {
                replicate_errors.push(key_err(
                    "mcp-token",
                    "empty (an unset environment variable?)",
                ));
            }
            token
        }
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
    Ok(McpConfig {
        token,
        restore_dir,
        allowed_hosts,
    })
}

/// One of the levels Litestream accepts (`logging.level`, `LOG_LEVEL`).
pub fn check_log_level(level: &str) -> Result<(), String> {
    match level.to_ascii_lowercase().as_str() {
        "trace" | "debug" | "info" | "warn" | "warning" | "error" => Ok(()),
        other => Err(format!(
            "unknown log level {other:?}, want trace, debug, info, warn or error"
        )),
    }
}
