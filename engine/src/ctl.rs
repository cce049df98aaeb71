//! The control socket's client commands (`sync`, `start`, `stop`, `register`, `unregister`,
//! `info`, `list`), printing what Litestream 0.5.17's commands print. Each sends one HTTP/1.1
//! request to `http://localhost/<endpoint>` over the Unix socket (`-socket`) and waits at most
//! `-timeout` seconds; they work against Litestream's socket as well as ours.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use storage::value::format_duration;

/// A failure, printed as `Error: <msg>` (and `Try: <hint>` for usage errors).
#[derive(Debug)]
pub struct CtlError {
    /// The message printed after `Error: `.
    pub msg: String,
    /// For usage errors, the command printed after `Try: `.
    pub hint: Option<String>,
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CtlError {}

fn fail(msg: impl Into<String>) -> CtlError {
    CtlError {
        msg: msg.into(),
        hint: None,
    }
}

fn usage(msg: &str, hint: &str) -> CtlError {
    CtlError {
        msg: msg.into(),
        hint: Some(hint.into()),
    }
}

type Result<T> = std::result::Result<T, CtlError>;

/// `-socket`, `-timeout` (seconds) and `-json`.
#[derive(Clone, Copy, Debug)]
pub struct Opts<'a> {
    /// Path to the control socket.
    pub socket: &'a str,
    /// Maximum time to wait for the answer, in seconds.
    pub timeout: i64,
    /// Print raw JSON instead of human-readable text.
    pub json: bool,
}

/// The most of an answer the commands read: far more than any daemon's `list` of thousands of
/// databases, and a bound on what a process posing as the daemon can make them hold.
const MAX_RESPONSE: usize = 16 << 20;

/// One request over the socket: the status code and body of the answer.
fn request(
    socket: &str,
    timeout: Duration,
    method: &str,
    endpoint: &str,
    body: Option<&Value>,
) -> std::result::Result<(u16, Vec<u8>), String> {
    let url = format!("http://localhost{endpoint}");
    let verb = if method == "GET" { "Get" } else { "Post" };
    let io = |what: &str, e: std::io::Error| format!("{verb} \"{url}\": {what}{e}");
    let deadline = Instant::now() + timeout;
    let mut s = UnixStream::connect(socket)
        .map_err(|e| io(&format!("dial unix {socket}: connect: "), e))?;
    s.set_write_timeout(Some(timeout)).ok();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {endpoint} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ls-engine\r\nConnection: close\r\n");
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).map_err(|e| io("", e))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{verb} \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ));
        }
        s.set_read_timeout(Some(left)).ok();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE {
                    return Err(format!(
                        "{verb} \"{url}\": response larger than {} MiB",
                        MAX_RESPONSE >> 20
                    ));
                }
                if let Some(r) = parse_response(&raw) {
                    return Ok(r);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("", e)),
        }
    }
    parse_response(&raw).ok_or_else(|| format!("{verb} \"{url}\": EOF"))
}

/// A complete HTTP/1.1 response in `raw` (Content-Length or chunked), else `None`.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut len = None;
    let mut chunked = false;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = v.parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_txt = std::str::from_utf8(&rest[..nl]).ok()?;
            let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[nl + 2..];
            if size == 0 {
                return Some((status, out));
            }
            if rest.len() < size + 2 {
                return None;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    match len {
        Some(n) if body.len() >= n => Some((status, body[..n].to_vec())),
        Some(_) => None,
        None => Some((status, body.to_vec())),
    }
}

/// Sends the request and returns the JSON answer of a 200; anything else is `<what> failed:
/// <error>`.
fn call(
    what: &str,
    socket: &str,
    timeout: Duration,
    method: &str,
    endpoint: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let (status, body) = request(socket, timeout, method, endpoint, body)
        .map_err(|e| fail(format!("failed to connect to control socket: {e}")))?;
    if status != 200 {
        let err = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .filter(|e| !e.is_empty());
        return Err(fail(match err {
            Some(e) => format!("{what} failed: {e}"),
            None => format!("{what} failed: {}", String::from_utf8_lossy(&body)),
        }));
    }
    serde_json::from_slice(&body).map_err(|e| fail(format!("failed to parse response: {e}")))
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn u64_of(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn pretty(v: &impl Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn one_path(args: &[String], hint: &str) -> Result<String> {
    match args {
        [] => Err(usage("database path required", hint)),
        [p] => Ok(p.clone()),
        _ => Err(fail("too many arguments")),
    }
}

fn positive(timeout: i64) -> Result<Duration> {
    if timeout <= 0 {
        return Err(fail("timeout must be greater than 0"));
    }
    Ok(Duration::from_secs(timeout as u64))
}

/// `sync [-wait] [-timeout N] [-socket P] [-json] DB_PATH`.
pub fn sync(o: Opts<'_>, args: &[String], wait: bool, out: &mut impl Write) -> Result<()> {
    let (socket, timeout, json_out) = (o.socket, o.timeout, o.json);
    let db = one_path(args, "litestream sync /path/to/db")?;
    let t = positive(timeout)?;
    let start = Instant::now();
    let req = json!({ "path": db, "wait": wait, "timeout": timeout });
    let r = call("sync", socket, t, "POST", "/sync", Some(&req))?;
    let ms = start.elapsed().as_millis() as u64;
    #[derive(Serialize)]
    struct Res<'a> {
        db_path: &'a str,
        txid: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        replica_txid: Option<u64>,
        duration_ms: u64,
    }
    let o = Res {
        db_path: str_of(&r, "path"),
        txid: u64_of(&r, "txid"),
        replica_txid: wait.then(|| u64_of(&r, "replicated_txid")),
        duration_ms: ms,
    };
    let text = if json_out {
        format!("{}\n", pretty(&o))
    } else {
        let mut s = format!(
            "db_path: {}\ntxid: {}\n",
            str_of(&r, "path"),
            u64_of(&r, "txid")
        );
        if wait {
            s.push_str(&format!(
                "replica_txid: {}\n",
                u64_of(&r, "replicated_txid")
            ));
        }
        s.push_str(&format!("duration_ms: {ms}\n"));
        s
    };
    emit(out, &text)
}

fn emit(out: &mut impl Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(|e| fail(format!("write to stdout: {e}")))
}

/// `start` / `stop` (`stop` is `start == false`).
pub fn start_stop(o: Opts<'_>, start: bool, args: &[String], out: &mut impl Write) -> Result<()> {
    let (socket, timeout, json_out) = (o.socket, o.timeout, o.json);
    let (what, hint, state) = if start {
        ("start", "litestream start /path/to/db", "running")
    } else {
        ("stop", "litestream stop /path/to/db", "stopped")
    };
    let db = one_path(args, hint)?;
    // Litestream does not check this timeout; a non-positive one means no client limit.
    let t = u64::try_from(timeout)
        .ok()
        .filter(|&t| t > 0)
        .map_or(Duration::from_secs(u32::MAX as u64), Duration::from_secs);
    let req = json!({ "path": db, "timeout": timeout });
    let r = call(what, socket, t, "POST", &format!("/{what}"), Some(&req))?;
    #[derive(Serialize)]
    struct Res<'a> {
        status: &'a str,
        db_path: &'a str,
        state: &'a str,
        txid: u64,
        socket: &'a str,
    }
    let res = Res {
        status: str_of(&r, "status"),
        db_path: str_of(&r, "path"),
        state,
        txid: u64_of(&r, "txid"),
        socket,
    };
    let text = if json_out {
        format!("{}\n", pretty(&res))
    } else {
        format!(
            "status: {}\ndb_path: {}\nstate: {}\ntxid: {}\nsocket: {}\n",
            res.status, res.db_path, res.state, res.txid, res.socket
        )
    };
    emit(out, &text)
}

/// `register -replica URL DB_PATH`.
pub fn register(
    o: Opts<'_>,
    args: &[String],
    replica: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    let (socket, timeout, json_out) = (o.socket, o.timeout, o.json);
    const HINT: &str = "litestream register -replica s3://bucket/prefix /path/to/db";
    let db = one_path(args, HINT)?;
    let replica = replica
        .filter(|r| !r.is_empty())
        .ok_or_else(|| usage("-replica is required", HINT))?;
    let t = positive(timeout)?;
    let req = json!({ "path": db, "replica_url": replica });
    let r = call("register", socket, t, "POST", "/register", Some(&req))?;
    #[derive(Serialize)]
    struct Res<'a> {
        status: &'a str,
        db_path: &'a str,
        replica: String,
        socket: &'a str,
    }
    let res = Res {
        status: str_of(&r, "status"),
        db_path: str_of(&r, "path"),
        // Unlike Litestream, never with the URL's password.
        replica: storage::redact_url(replica),
        socket,
    };
    let text = if json_out {
        format!("{}\n", pretty(&res))
    } else {
        let status = if res.status == "already_registered" {
            "already registered"
        } else {
            res.status
        };
        format!(
            "status: {status}\ndb_path: {}\nreplica: {}\nsocket: {}\n",
            res.db_path, res.replica, res.socket
        )
    };
    emit(out, &text)
}

/// `unregister [-dry-run] DB_PATH`.
pub fn unregister(o: Opts<'_>, args: &[String], dry_run: bool, out: &mut impl Write) -> Result<()> {
    let (socket, timeout, json_out) = (o.socket, o.timeout, o.json);
    let db = one_path(args, "litestream unregister /path/to/db")?;
    let t = positive(timeout)?;
    if dry_run {
        let text = format!(
            "Dry run: unregister request preview\n  database: {db}\n  socket: {socket}\n  replicas: daemon-managed replica for this database\n  final sync: daemon close will sync the database and replica before the command completes\n  timeout: {timeout}s\nNo unregister request was sent.\n"
        );
        return emit(out, &text);
    }
    let req = json!({ "path": db, "timeout": timeout });
    let r = call("unregister", socket, t, "POST", "/unregister", Some(&req))?;
    #[derive(Serialize)]
    struct Res<'a> {
        status: &'a str,
        db_path: &'a str,
        final_txid: u64,
        socket: &'a str,
    }
    let res = Res {
        status: str_of(&r, "status"),
        db_path: str_of(&r, "path"),
        final_txid: u64_of(&r, "txid"),
        socket,
    };
    let text = if json_out {
        format!("{}\n", pretty(&res))
    } else {
        format!(
            "status: {}\ndb_path: {}\nfinal_txid: {}\nsocket: {}\n",
            res.status, res.db_path, res.final_txid, res.socket
        )
    };
    emit(out, &text)
}

/// `info` and `list`: no arguments, a GET of `/<what>`.
fn query(o: Opts<'_>, args: &[String], what: &str) -> Result<Value> {
    if !args.is_empty() {
        return Err(fail("too many arguments"));
    }
    let t = positive(o.timeout)?;
    call(what, o.socket, t, "GET", &format!("/{what}"), None)
}

fn rfc3339(s: &str) -> String {
    storage::timefmt::parse_rfc3339(s)
        .map(storage::timefmt::format_rfc3339)
        .unwrap_or_else(|| s.to_owned())
}

/// `info`.
pub fn info(o: Opts<'_>, args: &[String], out: &mut impl Write) -> Result<()> {
    let json_out = o.json;
    let r = query(o, args, "info")?;
    let text = if json_out {
        #[derive(Serialize)]
        struct Res<'a> {
            version: &'a str,
            pid: u64,
            uptime_seconds: u64,
            started_at: &'a str,
            database_count: u64,
        }
        let res = Res {
            version: str_of(&r, "version"),
            pid: u64_of(&r, "pid"),
            uptime_seconds: u64_of(&r, "uptime_seconds"),
            started_at: str_of(&r, "started_at"),
            database_count: u64_of(&r, "database_count"),
        };
        format!("{}\n", pretty(&res))
    } else {
        format!(
            "Litestream {}\n  PID:        {}\n  Uptime:     {}\n  Started at: {}\n  Databases:  {}\n",
            str_of(&r, "version"),
            u64_of(&r, "pid"),
            format_duration(Duration::from_secs(u64_of(&r, "uptime_seconds"))),
            rfc3339(str_of(&r, "started_at")),
            u64_of(&r, "database_count"),
        )
    };
    emit(out, &text)
}

/// `list`.
pub fn list(o: Opts<'_>, args: &[String], out: &mut impl Write) -> Result<()> {
    let json_out = o.json;
    let r = query(o, args, "list")?;
    let dbs = r
        .get("databases")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = if json_out {
        #[derive(Serialize)]
        struct Summary<'a> {
            path: &'a str,
            status: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            last_sync_at: Option<&'a Value>,
        }
        #[derive(Serialize)]
        struct Res<'a> {
            databases: Vec<Summary<'a>>,
        }
        let databases = dbs
            .iter()
            .map(|d| Summary {
                path: str_of(d, "path"),
                status: str_of(d, "status"),
                last_sync_at: d.get("last_sync_at").filter(|t| !t.is_null()),
            })
            .collect();
        format!("{}\n", pretty(&Res { databases }))
    } else if dbs.is_empty() {
        "No databases configured\n".to_owned()
    } else {
        dbs.iter()
            .map(|d| {
                let sync = d
                    .get("last_sync_at")
                    .and_then(Value::as_str)
                    .map_or_else(|| "never".to_owned(), rfc3339);
                format!(
                    "{} [{}] (last sync: {sync})\n",
                    str_of(d, "path"),
                    str_of(d, "status")
                )
            })
            .collect()
    };
    emit(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\n";
        assert_eq!(parse_response(r), Some((200, b"{}\n".to_vec())));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"),
            None
        );
        let c = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_response(c), Some((404, b"{}".to_vec())));
    }
}
