//! The MCP server on `mcp-addr` (docs/config-and-cli.md#mcp), spoken to with a small Streamable-HTTP client, and
//! compared with Litestream 0.5.17's own (`litestream replicate` with `mcp-addr`) when the
//! real Litestream is available: the protocol answers and `tools/list` are the same, the
//! tools print what Litestream's CLI prints on the same replica (and Litestream's tools what
//! ours prints), `litestream_restore` writes a sound database, and bad calls fail the same way.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One HTTP answer: status, headers (lower-case names) and the body, de-chunked.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC message: the body, or the last `data:` of an event stream.
    pub(crate) fn json(&self) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        let data = if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            text.lines()
                .rev()
                .filter_map(|l| l.strip_prefix("data:"))
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        } else {
            text.into_owned()
        };
        serde_json::from_str(&data).unwrap_or_else(|e| panic!("not JSON ({e}): {data:?}"))
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}

/// A raw HTTP/1.1 request; `Connection: close`, so the answer ends at EOF. With
/// `headers_only`, returns once the header block is in (for the never-ending GET stream).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
    headers_only: bool,
) -> Answer {
    http_at(addr, method, "/mcp", headers, body, headers_only)
}

/// [`http`] to any path.
pub(crate) fn http_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    headers_only: bool,
) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            if headers_only {
                break p;
            }
        }
        let n = s.read(&mut buf).expect("read answer");
        if n == 0 {
            break raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("header block");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        && !headers_only
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// An MCP client of one server: initialized, carrying its session (and a bearer token, if
/// set before `connect`).
pub(crate) struct Client {
    pub(crate) addr: SocketAddr,
    pub(crate) session: String,
    pub(crate) auth: Option<String>,
}

impl Client {
    pub(crate) fn post(&self, session: Option<&str>, msg: &Value) -> Answer {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(s) = session {
            h.push(("Mcp-Session-Id", s));
        }
        if let Some(a) = &self.auth {
            h.push(("Authorization", a));
        }
        http(self.addr, "POST", &h, &msg.to_string(), false)
    }

    pub(crate) fn connect(addr: SocketAddr) -> (Client, Value) {
        Client::connect_with(addr, None)
    }

    pub(crate) fn connect_with(addr: SocketAddr, auth: Option<String>) -> (Client, Value) {
        assert!(
            wait_until(Duration::from_secs(30), || TcpStream::connect(addr).is_ok()),
            "nothing listens on {addr}"
        );
        let mut c = Client {
            addr,
            session: String::new(),
            auth,
        };
        let a = c.post(
            None,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2024-11-05", "capabilities": {},
                "clientInfo": {"name": "mcp-test", "version": "1"}}}),
        );
        assert_eq!(a.status, 200);
        c.session = a.header("mcp-session-id").expect("session id").to_owned();
        let init = a.json();
        let n = c.post(
            Some(&c.session),
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        assert_eq!(n.status, 202, "notification answer");
        assert!(n.body.is_empty());
        (c, init)
    }

    pub(crate) fn rpc(&self, id: u32, method: &str, params: Value) -> Value {
        let a = self.post(
            Some(&self.session),
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        );
        assert_eq!(
            a.status,
            200,
            "{method}: {}",
            String::from_utf8_lossy(&a.body)
        );
        a.json()
    }

    /// `tools/call`: the result object.
    pub(crate) fn call(&self, tool: &str, args: Value) -> Value {
        let v = self.rpc(7, "tools/call", json!({"name": tool, "arguments": args}));
        v.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{tool}: no result: {v}"))
    }

    /// A successful call's text.
    pub(crate) fn text(&self, tool: &str, args: Value) -> String {
        let r = self.call(tool, args);
        assert_eq!(r.get("isError"), None, "{tool} failed: {r}");
        r["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{tool}: no text: {r}"))
            .to_owned()
    }
}

/// A CLI's combined output (the MCP tools answer with it).
fn cli(mut cmd: Command) -> String {
    let o = cmd.output().expect("run CLI");
    assert_ok(&o, &format!("{cmd:?}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn engine_cli(args: &[&str]) -> String {
    let mut c = Command::new(ENGINE);
    c.args(args);
    cli(c)
}

fn ls_cli(bin: &Path, args: &[&str]) -> String {
    let mut c = litestream_cmd(bin);
    c.args(args);
    cli(c)
}

/// A running `litestream replicate`, killed when dropped.
struct Litestream(Child);

impl Drop for Litestream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_litestream(bin: &Path, config: &Path, log: &Path) -> Litestream {
    let out = std::fs::File::create(log).expect("log");
    // Its tools run `litestream` from PATH.
    let dir = bin.parent().expect("bin dir").to_owned();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path)))
        .expect("PATH");
    let child = litestream_cmd(bin)
        .arg("replicate")
        .arg("-config")
        .arg(config)
        .env("PATH", path)
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start litestream");
    Litestream(child)
}

/// A database with `rows` rows, replicated by a config with `mcp-addr` on a free port.
pub(crate) fn setup(
    dir: &Path,
    name: &str,
    rows: usize,
) -> (PathBuf, PathBuf, PathBuf, SocketAddr) {
    let db = dir.join(format!("{name}.db"));
    let replica = dir.join(format!("{name}-replica"));
    let c = app(&db, 4096);
    setup_table(&c);
    insert_rows(&c, 0, rows, 20);
    drop(c);
    let cfg = dir.join(format!("{name}.yml"));
    fast_config(&cfg, &[(db.clone(), replica.clone())]);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    std::fs::write(&cfg, format!("mcp-addr: {addr}\n{text}")).expect("cfg");
    (db, replica, cfg, addr)
}

pub(crate) fn row_count(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).expect("open restored");
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count")
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Error answers that do not depend on the server's databases, as (description, answer).
/// `out` is an output path in the databases' directory (where ls-engine lets MCP restores
/// write), so both servers get as far as the command.
fn error_answers(c: &Client, out: &str) -> Vec<(String, Value)> {
    let mut v = Vec::new();
    let mut add = |what: &str, a: Answer| {
        let body = if a.body.is_empty() {
            Value::Null
        } else if a.header("content-type") == Some("application/json") {
            a.json()
        } else {
            Value::String(String::from_utf8_lossy(&a.body).into_owned())
        };
        v.push((what.to_owned(), json!({"status": a.status, "body": body})));
    };
    let sess = Some(c.session.as_str());
    for (what, msg) in [
        (
            "unknown tool",
            json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call", "params": {"name": "nope", "arguments": {}}}),
        ),
        (
            "no tool name",
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {}}),
        ),
        (
            "ltx without path",
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "litestream_ltx", "arguments": {}}}),
        ),
        (
            "ltx path of the wrong type",
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "litestream_ltx", "arguments": {"path": 5}}}),
        ),
        (
            "ltx of a database not in the config",
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "litestream_ltx", "arguments": {"path": "/nope.db"}}}),
        ),
        (
            "reset without path",
            json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "litestream_reset", "arguments": {}}}),
        ),
        (
            "reset of a missing database",
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "litestream_reset", "arguments": {"path": "/nope.db"}}}),
        ),
        (
            "restore without path",
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "litestream_restore", "arguments": {"o": out}}}),
        ),
        (
            "restore with if_db_not_exists",
            json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "litestream_restore", "arguments": {"path": "/nope.db", "o": out, "if_db_not_exists": true}}}),
        ),
        (
            "unknown method",
            json!({"jsonrpc": "2.0", "id": 11, "method": "nope"}),
        ),
        (
            "ping",
            json!({"jsonrpc": "2.0", "id": 12, "method": "ping"}),
        ),
        (
            "resources",
            json!({"jsonrpc": "2.0", "id": 13, "method": "resources/list"}),
        ),
        (
            "prompts",
            json!({"jsonrpc": "2.0", "id": 14, "method": "prompts/list"}),
        ),
        (
            "logging",
            json!({"jsonrpc": "2.0", "id": 15, "method": "logging/setLevel", "params": {"level": "info"}}),
        ),
        (
            "JSON-RPC 1.0",
            json!({"jsonrpc": "1.0", "id": 16, "method": "ping"}),
        ),
        (
            "a response",
            json!({"jsonrpc": "2.0", "id": 17, "result": {}}),
        ),
    ] {
        add(what, c.post(sess, &msg));
    }
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    add(
        "no session",
        c.post(None, &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
    );
    add(
        "malformed session",
        c.post(
            Some("mcp-session-x"),
            &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        ),
    );
    let ct = [("Content-Type", "application/json; charset=utf-8")];
    add(
        "content type with charset",
        http(c.addr, "POST", &ct, &ping, false),
    );
    let h = [
        ("Content-Type", "application/json"),
        ("Mcp-Session-Id", c.session.as_str()),
    ];
    add("not JSON", http(c.addr, "POST", &h, "{", false));
    add("an array", http(c.addr, "POST", &h, "[]", false));
    add("DELETE", http(c.addr, "DELETE", &h[1..], "", false));
    add("PUT", http(c.addr, "PUT", &[], "", false));
    let get = http(c.addr, "GET", &h[1..], "", true);
    v.push((
        "GET".to_owned(),
        json!({"status": get.status, "type": get.header("content-type")}),
    ));
    v
}

/// `r` is an error answer whose text `says` what it should.
fn error_says(r: &Value, says: impl Fn(&str) -> bool) {
    assert_eq!(r["isError"], true, "{r}");
    assert!(r["content"][0]["text"].as_str().is_some_and(says), "{r}");
}

#[test]
#[ignore = "needs the real Litestream"]
fn mcp_server_and_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let (db, replica, cfg, addr) = setup(dir, "ours", 300);
    let engine = Engine::start(&cfg, &dir.join("ours.log"));
    assert!(
        wait_for_l0(&replica, 1, Duration::from_secs(30)),
        "no L0 file; log:\n{}",
        engine.tail()
    );
    let (ours, init) = Client::connect(addr);
    assert!(ours.session.starts_with("mcp-session-"), "{}", ours.session);
    assert_eq!(
        init["result"],
        json!({"protocolVersion": "2024-11-05", "capabilities": {"logging": {}, "tools": {}},
               "serverInfo": {"name": "Litestream MCP Server", "version": "1.0.0"}})
    );
    // Versions it does not know are answered with its latest.
    let v = ours.rpc(2, "initialize", json!({"protocolVersion": "2099-01-01"}));
    assert_eq!(v["result"]["protocolVersion"], "2025-03-26");

    let list = ours.rpc(3, "tools/list", json!({}));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "litestream_databases",
            "litestream_info",
            "litestream_ltx",
            "litestream_reset",
            "litestream_restore",
            "litestream_status",
            "litestream_version"
        ]
    );

    // The tools print what this executable's commands print.
    let c = s(&cfg);
    std::thread::sleep(Duration::from_secs(1));
    let ltx = ours.text("litestream_ltx", json!({"path": s(&db)}));
    assert_eq!(ltx, engine_cli(&["ltx", "-config", c, s(&db)]));
    assert!(ltx.starts_with("level  min_txid"), "{ltx}");
    let url = format!("file://{}", replica.display());
    assert_eq!(
        ours.text("litestream_ltx", json!({"path": url})),
        engine_cli(&["ltx", &url])
    );
    let dbs = ours.text("litestream_databases", json!({}));
    assert_eq!(dbs, engine_cli(&["databases", "-config", c]));
    assert!(dbs.contains(s(&db)), "{dbs}");
    assert_eq!(
        ours.text("litestream_status", json!({})),
        engine_cli(&["status", "-config", c])
    );
    assert_eq!(
        ours.text("litestream_version", json!({})),
        engine_cli(&["version"])
    );
    let info = ours.text("litestream_info", json!({}));
    assert!(
        info.starts_with("=== Litestream Status Report ===\n\nVersion Information:\n")
            && info.contains(&format!("Current Config Path:\n{c}\n\nDatabases:\n{dbs}\n"))
            && info.contains(&format!("LTX Files:\nDatabase: {}\n", db.display())),
        "{info}"
    );

    // Restores, by database path and by replica URL.
    let out = dir.join("restored.db");
    ours.text("litestream_restore", json!({"path": s(&db), "o": s(&out)}));
    integrity_ok(&out);
    assert_eq!(row_count(&out), 300);
    let out2 = dir.join("restored-url.db");
    ours.text(
        "litestream_restore",
        json!({"path": url, "o": s(&out2), "parallelism": "2"}),
    );
    integrity_ok(&out2);
    assert_eq!(row_count(&out2), 300);
    // An existing output: refused before the command runs (Litestream's restore refuses it
    // too, as `<output>: exit status 1`).
    let r = ours.call("litestream_restore", json!({"path": s(&db), "o": s(&out)}));
    error_says(&r, |t| t.contains("MCP restores never overwrite a file"));
    // A config other than the one replicate runs with is refused unread (Litestream reads any
    // file it is given, expanding $VARS); Litestream's answer is the CLI's "config file not
    // found" error.
    let r = ours.call("litestream_databases", json!({"config": "/nope.yml"}));
    error_says(&r, |t| t.starts_with("config \"/nope.yml\" refused"));

    let never = dir.join("never.db");
    let our_errors = error_answers(&ours, s(&never));

    let bin = litestream();
    // The same kind of setup under Litestream 0.5.17, with its own database and replica.
    let (ldb, lreplica, lcfg, laddr) = setup(dir, "theirs", 200);
    let _ls = start_litestream(&bin, &lcfg, &dir.join("theirs.log"));
    assert!(
        wait_for_l0(&lreplica, 1, Duration::from_secs(30)),
        "litestream did not replicate"
    );
    let (theirs, linit) = Client::connect(laddr);
    assert_eq!(init, linit, "initialize");
    let llist = theirs.rpc(3, "tools/list", json!({}));
    assert_eq!(list, llist, "tools/list");
    std::thread::sleep(Duration::from_secs(1));

    // Our tools print what Litestream's CLI prints on our replica and config.
    assert_eq!(
        ours.text("litestream_ltx", json!({"path": s(&db)})),
        ls_cli(&bin, &["ltx", "-config", c, s(&db)])
    );
    assert_eq!(
        ours.text("litestream_ltx", json!({"path": url})),
        ls_cli(&bin, &["ltx", &url])
    );
    assert_eq!(
        ours.text("litestream_databases", json!({})),
        ls_cli(&bin, &["databases", "-config", c])
    );
    assert_eq!(
        ours.text("litestream_status", json!({"path": s(&db)})),
        ls_cli(&bin, &["status", "-config", c, s(&db)])
    );
    // And Litestream's tools print what our CLI prints on its replica and config.
    let lc = s(&lcfg);
    let lurl = format!("file://{}", lreplica.display());
    assert_eq!(
        theirs.text("litestream_ltx", json!({"path": s(&ldb)})),
        engine_cli(&["ltx", "-config", lc, s(&ldb)])
    );
    assert_eq!(
        theirs.text("litestream_ltx", json!({"path": lurl})),
        engine_cli(&["ltx", &lurl])
    );
    assert_eq!(
        theirs.text("litestream_databases", json!({})),
        engine_cli(&["databases", "-config", lc])
    );
    assert_eq!(
        theirs.text("litestream_status", json!({})),
        engine_cli(&["status", "-config", lc])
    );
    // Each restores the other's replica.
    let x = dir.join("ours-from-theirs.db");
    ours.text("litestream_restore", json!({"path": lurl, "o": s(&x)}));
    integrity_ok(&x);
    assert_eq!(row_count(&x), 200);
    let y = dir.join("theirs-from-ours.db");
    theirs.text("litestream_restore", json!({"path": url, "o": s(&y)}));
    integrity_ok(&y);
    assert_eq!(row_count(&y), 300);

    // Bad calls fail the same way, to the byte of the error text.
    let their_errors = error_answers(&theirs, s(&never));
    for ((what, a), (_, b)) in our_errors.iter().zip(&their_errors) {
        assert_eq!(a, b, "{what}");
    }
    engine.stop();
}

#[test]
fn mcp_addr_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let (_db, _replica, cfg, _) = setup(dir, "db", 1);
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    let run = |mcp: &str| {
        let body = text.lines().skip(1).collect::<Vec<_>>().join("\n");
        std::fs::write(&cfg, format!("mcp-addr: \"{mcp}\"\n{body}\n")).expect("cfg");
        let o = Command::new(ENGINE)
            .args(["replicate", "-config", s(&cfg)])
            .output()
            .expect("run");
        assert!(!o.status.success(), "{mcp}: started");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    for bad in ["localhost", "127.0.0.1:http", ":99999"] {
        let e = run(bad);
        assert!(e.contains("config key mcp-addr") && e.contains(bad), "{e}");
    }
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = taken.local_addr().expect("addr").to_string();
    let e = run(&a);
    assert!(
        e.contains("config key mcp-addr: cannot listen on") && e.contains(&a),
        "{e}"
    );
}
