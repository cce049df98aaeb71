//! Issue 14 item 1: what a client of the MCP server can no longer do. Its arguments never
//! become flags, restores write only a new file where the operator allowed, the `config`
//! argument names only the running config, `Host`/`Origin` are checked against DNS rebinding,
//! a bearer token is enforced when set, and `mcp-addr` without a host listens on loopback.

use crate::common;
use crate::mcp::{http, s, setup, Client};

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A replicated database whose config (with `top` prepended and `mcp-addr` replaced by
/// `mcp_addr`, if given) serves MCP; the engine runs with `env`.
struct Server {
    dir: tempfile::TempDir,
    db: PathBuf,
    replica: PathBuf,
    cfg: PathBuf,
    addr: SocketAddr,
    engine: Engine,
}

fn serve(top: &str, mcp_addr: Option<&str>, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, replica, cfg, mut addr) = setup(dir.path(), "app", 50);
    let text = fs::read_to_string(&cfg).expect("cfg");
    let rest: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let first = match mcp_addr {
        Some(a) => format!("mcp-addr: \"{a}\"\n"),
        None => format!("mcp-addr: {addr}\n"),
    };
    fs::write(&cfg, format!("{top}{first}{rest}")).expect("cfg");
    let engine = Engine::start_env(&cfg, &dir.path().join("engine.log"), env);
    if mcp_addr.is_some() {
        // Port 0: the engine binds a free port and logs it (no other test can take it first).
        addr = engine.logged_addr("starting MCP Streamable HTTP server", "addr");
    }
    assert!(
        wait_until(Duration::from_secs(30), || TcpStream::connect(addr).is_ok()),
        "MCP not listening; log:\n{}",
        engine.tail()
    );
    assert!(
        wait_for_l0(&replica, 1, Duration::from_secs(30)),
        "no L0 file; log:\n{}",
        engine.tail()
    );
    Server {
        dir,
        db,
        replica,
        cfg,
        addr,
        engine,
    }
}

fn error_text(r: &Value) -> &str {
    assert_eq!(r["isError"], true, "expected an error result: {r}");
    r["content"][0]["text"].as_str().unwrap_or("")
}

#[test]
fn issue14_1_mcp_restore_writes_only_a_new_file_where_allowed() {
    let srv = serve("", None, &[]);
    let (c, _) = Client::connect(srv.addr);
    let url = format!("file://{}", srv.replica.display());
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let outside = elsewhere.path().join("evil.db");
    let e = error_text(&c.call("litestream_restore", json!({"path": url, "o": s(&outside)})))
        .to_owned();
    assert!(e.contains("outside the directories"), "{e}");
    assert!(
        !outside.exists(),
        "restored outside the allowed directories"
    );

    let victim = srv.dir.path().join("victim.db");
    fs::write(&victim, b"keep me").expect("victim");
    let e =
        error_text(&c.call("litestream_restore", json!({"path": url, "o": s(&victim)}))).to_owned();
    assert!(e.contains("never overwrite"), "{e}");
    assert_eq!(fs::read(&victim).expect("victim"), b"keep me");
    // A sidecar of the output counts as an existing file too.
    fs::write(srv.dir.path().join("side.db-wal"), b"x").expect("wal");
    let side = srv.dir.path().join("side.db");
    error_text(&c.call("litestream_restore", json!({"path": url, "o": s(&side)})));
    assert!(!side.exists());

    // Arguments never become flags: `-help` is a (missing) database, not the usage text.
    for path in ["-help", "-force", "-o=/tmp/x"] {
        let r = c.call("litestream_restore", json!({"path": path}));
        let e = error_text(&r);
        assert!(!e.contains("Usage") && !e.contains("flag"), "{path}: {e}");
    }
    let r = c.call("litestream_ltx", json!({"path": "-h"}));
    assert!(!error_text(&r).contains("Usage"), "{r}");

    // A new file beside the database is fine.
    let ok = srv.dir.path().join("copy.db");
    c.text("litestream_restore", json!({"path": url, "o": s(&ok)}));
    integrity_ok(&ok);
    assert_eq!(crate::mcp::row_count(&ok), 50);
    srv.engine.stop();

    // `mcp-restore-dir` moves the allowed place: there and below, nowhere else.
    let allowed = elsewhere.path().join("restores");
    fs::create_dir_all(allowed.join("sub")).expect("mkdir");
    let srv = serve(
        &format!("mcp-restore-dir: {}\n", allowed.display()),
        None,
        &[],
    );
    let (c, _) = Client::connect(srv.addr);
    let url = format!("file://{}", srv.replica.display());
    let o = allowed.join("sub/x.db");
    c.text("litestream_restore", json!({"path": url, "o": s(&o)}));
    integrity_ok(&o);
    let beside = srv.dir.path().join("copy.db");
    error_text(&c.call("litestream_restore", json!({"path": url, "o": s(&beside)})));
    assert!(!beside.exists());
    srv.engine.stop();
}

#[test]
fn issue14_1_mcp_config_argument_names_only_the_running_config() {
    let srv = serve("", None, &[("LS_TEST_MCP_SECRET", "hush-4711")]);
    let (c, _) = Client::connect(srv.addr);
    let other = srv.dir.path().join("other.yml");
    fs::write(
        &other,
        "dbs:\n  - path: /data/${LS_TEST_MCP_SECRET}/app.db\n    replica:\n      url: file:///tmp/r\n",
    )
    .expect("other config");
    for tool in [
        "litestream_databases",
        "litestream_status",
        "litestream_info",
    ] {
        let r = c.call(tool, json!({"config": s(&other)}));
        let e = error_text(&r);
        assert!(
            e.contains("refused") && !e.contains("hush-4711"),
            "{tool}: {e}"
        );
    }
    let r = c.call(
        "litestream_ltx",
        json!({"path": s(&srv.db), "config": s(&other)}),
    );
    error_text(&r);
    // The running config, by its path, is fine.
    let dbs = c.text("litestream_databases", json!({"config": s(&srv.cfg)}));
    assert!(dbs.contains(s(&srv.db)), "{dbs}");
    srv.engine.stop();
}

/// `initialize` with these extra headers: the status.
fn init_status(addr: SocketAddr, headers: &[(&str, &str)]) -> u16 {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}});
    http(addr, "POST", &h, &body.to_string(), false).status
}

#[test]
fn issue14_1_mcp_checks_host_origin_and_bearer_token() {
    let srv = serve(
        "mcp-token: from-config-41\nmcp-allowed-hosts: [mcp.example]\n",
        Some("127.0.0.1:0"),
        &[("LS_MCP_TOKEN", "from-env-42")],
    );
    let a = srv.addr;
    let port = a.port();
    let auth = ("Authorization", "Bearer from-env-42");
    // DNS rebinding: a name the operator did not allow, in Host or Origin.
    assert_eq!(init_status(a, &[("Host", "evil.example:80"), auth]), 403);
    assert_eq!(
        init_status(a, &[("Origin", "http://evil.example:8080"), auth]),
        403
    );
    assert_eq!(init_status(a, &[("Origin", "null"), auth]), 403);
    for host in ["localhost", "127.0.0.1", "mcp.example"] {
        let h = format!("{host}:{port}");
        assert_eq!(init_status(a, &[("Host", &h), auth]), 200, "{h}");
    }
    assert_eq!(
        init_status(a, &[("Origin", &format!("http://localhost:{port}")), auth]),
        200
    );
    // The token: the environment's wins over the config's.
    assert_eq!(init_status(a, &[]), 401);
    assert_eq!(
        init_status(a, &[("Authorization", "Bearer from-config-41")]),
        401
    );
    assert_eq!(
        init_status(a, &[("Authorization", "Bearer from-env-4")]),
        401
    );
    let get = http(a, "GET", &[], "", true);
    assert_eq!(get.status, 401);
    assert_eq!(get.header("www-authenticate"), Some("Bearer"));
    let (c, _) = Client::connect_with(a, Some("Bearer from-env-42".into()));
    assert!(c
        .text("litestream_version", json!({}))
        .starts_with("ls-engine "));
    let log = fs::read_to_string(&srv.engine.log).expect("log");
    assert!(
        !log.contains("from-env-42") && !log.contains("from-config-41"),
        "a token is in the log"
    );
    srv.engine.stop();
}

/// A local address other than loopback, if this machine has one (the source address of the
/// default route; nothing is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn issue14_1_mcp_addr_without_host_listens_on_loopback_only() {
    let srv = serve("", Some(":0"), &[]);
    let port = srv.addr.port();
    let (c, _) = Client::connect(srv.addr);
    assert!(c
        .text("litestream_version", json!({}))
        .starts_with("ls-engine "));
    let log = fs::read_to_string(&srv.engine.log).expect("log");
    assert!(
        log.contains("mcp-addr has no host: MCP listens on loopback (127.0.0.1) only"),
        "{log}"
    );
    match non_loopback_ip() {
        Some(ip) => assert!(
            TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(5)).is_err(),
            "MCP answers on {ip}:{port}"
        ),
        None => eprintln!("no non-loopback address here: only the loopback half is checked"),
    }
    srv.engine.stop();
}
