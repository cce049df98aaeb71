//! Issue 14 item 3: no secret ever leaves the process. One engine replicates to every backend
//! with known secrets in the config, in replica URLs and in the environment; every command runs
//! against it (`replicate` at debug level, the socket's `list`/`info`/`register`, the MCP
//! tools, `/metrics`, `databases`, `ltx`, `status`, `restore`, `ls-restore` with `-json` and
//! `-dry-run`, by config and by URL), and so do the error paths (wrong passwords, bad URLs).
//! Every byte they print is searched for the secrets. `storage/tests/secrets.rs` checks the
//! settings' `Debug` and errors directly.

use crate::common::*;
use crate::harden::{ls_restore, text};
use crate::mcp::{row_count, s, Client};

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use age::secrecy::ExposeSecret;
use serde_json::json;
use test_support::abs::abs_server;
use test_support::gcs::gcs_server;
use test_support::nats::{nats_server, NatsServer};
use test_support::sftp::password_login;
use test_support::webdav::{webdav_server, WebDavServer};
use test_support::{s3_server, unique_name};

/// Everything the commands printed, by what printed it.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: &str, text: String) {
        self.0.push((what.to_owned(), text));
    }

    /// Runs `c` and keeps its stdout and stderr; returns them and whether it succeeded.
    fn run(&mut self, what: &str, mut c: Command) -> (bool, String) {
        let o = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        let t = text(&o);
        self.add(what, t.clone());
        (o.status.success(), t)
    }

    fn ok(&mut self, what: &str, c: Command) -> String {
        let (ok, t) = self.run(what, c);
        assert!(ok, "{what} failed:\n{t}");
        t
    }

    fn fails(&mut self, what: &str, c: Command) -> String {
        let (ok, t) = self.run(what, c);
        assert!(!ok, "{what} succeeded:\n{t}");
        t
    }
}

fn engine(args: &[&str], env: &[(String, String)]) -> Command {
    let mut c = Command::new(ENGINE);
    c.args(args)
        .env("LOG_LEVEL", "debug")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

fn restore_cmd(args: &[&str], env: &[(String, String)]) -> Command {
    let mut c = ls_restore();
    c.args(args)
        .env("LOG_LEVEL", "debug")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

/// One plain HTTP GET on 127.0.0.1:`port`: the whole answer.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// One database of the test: its file and its replica block (YAML lines, indented under
/// `replica:`).
struct Db {
    name: &'static str,
    path: PathBuf,
    replica: Vec<String>,
}

#[test]
#[ignore = "needs every test server: s3, gcs, abs, sftp (with its password login), webdav, nats"]
fn issue14_3_secrets_never_leave_the_process() {
    let s3 = s3_server();
    let gcs = gcs_server();
    let abs = abs_server();
    let (sftp_user, sftp_pw, sftp_home) = password_login();
    let sftp_host = test_support::sftp::sftp_server().host;
    let dav = webdav_server();
    let nats = nats_server();
    let bucket = nats.new_bucket("secrets");
    let tag = unique_name("secrets");

    let wrong = format!("WRONGpw{}", std::process::id());
    let mcp_token = format!("MCPtok{}", std::process::id());
    let hb_pw = format!("HBpw{}", std::process::id());
    let hb_token = format!("HBtok{}", std::process::id());
    let env_secret = format!("ENVsecret{}", std::process::id());
    let env_token = format!("ENVtoken{}", std::process::id());
    // age identities (files the config names): the right one, and one that opens nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let age_key = |name: &str| {
        let id = age::x25519::Identity::generate();
        let secret = id.to_string().expose_secret().to_owned();
        let path = root.join(format!("{name}.txt"));
        fs::write(&path, format!("# test key\n{secret}\n")).expect("age key file");
        (path, id.to_public().to_string(), secret)
    };
    let (age_id, age_rcpt, age_secret) = age_key("age-identity");
    let (wrong_age_id, _, wrong_age_secret) = age_key("wrong-age-identity");
    let age_replica = |identity: &std::path::Path| {
        vec![
            format!("path: {}", root.join("age-replica").display()),
            "age:".into(),
            format!("  recipients: [{age_rcpt}]"),
            format!("  identities: [{}]", identity.display()),
        ]
    };
    let secrets: Vec<(&str, String)> = vec![
        ("s3 secret key", s3.secret_key.clone()),
        ("abs account key", abs.key.clone()),
        ("sftp password", sftp_pw.clone()),
        ("webdav password", dav.pass.clone()),
        ("nats password", nats.pass.clone()),
        ("wrong password", wrong.clone()),
        ("mcp token", mcp_token.clone()),
        ("heartbeat password", hb_pw.clone()),
        ("heartbeat token", hb_token.clone()),
        ("environment secret", env_secret.clone()),
        ("environment token", env_token.clone()),
        ("age identity", age_secret.clone()),
        ("wrong age identity", wrong_age_secret.clone()),
    ];

    // Secrets in the environment: expanded into the config, read by the backends, or unused.
    let env: Vec<(String, String)> = [
        ("LITESTREAM_AZURE_ACCOUNT_KEY", abs.key.as_str()),
        ("H8_MCP_TOKEN", mcp_token.as_str()),
        ("H8_S3_SECRET", s3.secret_key.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDUNUSED"),
        ("AWS_SECRET_ACCESS_KEY", env_secret.as_str()),
        ("AWS_SESSION_TOKEN", env_token.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("RUST_LOG", "trace"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(gcs.env())
    .collect();

    let s3_query = |prefix: &str, secret: &str| {
        format!(
            "s3://{}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true\
             &access-key-id={}&secret-access-key={secret}",
            s3.bucket, s3.endpoint, s3.access_key
        )
    };
    let sftp_url = |pw: &str, name: &str| {
        format!(
            "sftp://{sftp_user}:{pw}@{sftp_host}{}",
            sftp_home.join(format!("{tag}-{name}")).display()
        )
    };
    let dav_url = |pw: &str, name: &str| {
        format!(
            "webdav://{}:{pw}@{}/{tag}-{name}",
            dav.user,
            dav.authority()
        )
    };
    let nats_url = |pw: &str| format!("nats://{}:{pw}@{}/{bucket}", nats.user, nats.authority());

    // The `abs` replica keys, with the credentials `auth` after the account name.
    let abs_keys = |auth: &[String]| {
        let mut keys = vec![
            "type: abs".to_owned(),
            format!("account-name: {}", abs.account),
        ];
        keys.extend_from_slice(auth);
        keys.push(format!("bucket: {}", abs.container));
        keys.push(format!("path: {tag}-abs"));
        keys.push(format!("endpoint: {}", abs.endpoint));
        keys
    };
    let db = |name: &'static str, replica: Vec<String>| Db {
        name,
        path: root.join(format!("{name}.db")),
        replica,
    };
    let dbs = vec![
        db(
            "file",
            vec![format!("path: {}", root.join("file-replica").display())],
        ),
        db(
            "s3keys",
            s3.yaml_with_keys(&format!("{tag}-s3keys"), "${H8_S3_SECRET}"),
        ),
        db(
            "s3url",
            vec![format!(
                "url: {}",
                s3_query(&format!("{tag}-s3url"), &s3.secret_key)
            )],
        ),
        db(
            "gs",
            vec![format!(
                "url: gs://{}/{tag}-gs?token={env_token}",
                gcs.bucket
            )],
        ),
        db("abs", abs_keys(&[])),
        db("sftp", vec![format!("url: {}", sftp_url(&sftp_pw, "sftp"))]),
        db(
            "webdav",
            vec![format!("url: {}", dav_url(&dav.pass, "webdav"))],
        ),
        db("nats", vec![format!("url: {}", nats_url(&nats.pass))]),
        db("age", age_replica(&age_id)),
    ];
    for d in &dbs {
        let c = app(&d.path, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 40, 50);
    }

    // Both listeners on ports the system picks; the engine logs where they are.
    const LISTENERS: &str = "addr: 127.0.0.1:0\nmcp-addr: 127.0.0.1:0\n";
    let sock = root.join("ctl.sock");
    let config = |dbs: &[Db]| {
        let mut y = format!(
            "{LISTENERS}mcp-token: ${{H8_MCP_TOKEN}}\nsocket:\n  enabled: true\n  path: {}\n\
             heartbeat-url: http://hb:{hb_pw}@127.0.0.1:9/ping?token={hb_token}\n\
             shutdown-sync-timeout: 2s\ndbs:\n",
            sock.display()
        );
        for d in dbs {
            let _ = writeln!(
                y,
                "  - path: {}\n    monitor-interval: 100ms\n    replica:\n      \
                 sync-interval: 100ms",
                d.path.display()
            );
            for l in &d.replica {
                let _ = writeln!(y, "      {l}");
            }
        }
        y
    };
    let cfg = root.join("ls.yml");
    fs::write(&cfg, config(&dbs)).expect("config");
    let cfg_s = s(&cfg).to_owned();
    let mut seen = Seen::default();

    // --- replicate, at debug level, with the socket, MCP and metrics ---
    let log = root.join("engine.log");
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let e = Engine::start_env(&cfg, &log, &envs);
    let metrics_port = e.logged_addr("serving metrics on", "url").port();
    let mcp_addr = e.logged_addr("starting MCP Streamable HTTP server", "addr");
    let sock_s = s(&sock).to_owned();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let o = engine(&["list", "-socket", &sock_s, "-json"], &env)
                .output()
                .expect("list");
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success()
                && t.matches("\"last_sync_at\"").count() >= dbs.len()
                && !t.contains("\"last_sync_at\": null")
        }),
        "not every database replicated; log:\n{}",
        e.tail()
    );
    for args in [
        vec!["list", "-socket", &sock_s],
        vec!["list", "-socket", &sock_s, "-json"],
        vec!["info", "-socket", &sock_s],
        vec!["info", "-socket", &sock_s, "-json"],
    ] {
        seen.ok(&args.join(" "), engine(&args, &env));
    }
    // `/register` with a password in the URL, then a URL that cannot be used.
    let extra = root.join("registered.db");
    setup_table(&app(&extra, 4096));
    let reg_url = dav_url(&dav.pass, "registered");
    seen.ok(
        "register",
        engine(
            &[
                "register",
                "-socket",
                &sock_s,
                "-replica",
                &reg_url,
                s(&extra),
            ],
            &env,
        ),
    );
    seen.ok(
        "register -json",
        engine(
            &[
                "register",
                "-socket",
                &sock_s,
                "-json",
                "-replica",
                &reg_url,
                s(&extra),
            ],
            &env,
        ),
    );
    let bad_reg = format!("sftp://{sftp_user}:{wrong}@/no-host");
    seen.fails(
        "register (bad URL)",
        engine(
            &[
                "register",
                "-socket",
                &sock_s,
                "-replica",
                &bad_reg,
                s(&root.join("bad.db")),
            ],
            &env,
        ),
    );

    // MCP: every tool, by config and by URL, with the token.
    let (mcp, init) = Client::connect_with(mcp_addr, Some(format!("Bearer {mcp_token}")));
    seen.add("mcp initialize", init.to_string());
    seen.add(
        "mcp tools/list",
        mcp.rpc(2, "tools/list", json!({})).to_string(),
    );
    for (tool, args) in [
        ("litestream_info", json!({})),
        ("litestream_databases", json!({})),
        ("litestream_status", json!({})),
    ] {
        seen.add(tool, mcp.call(tool, args).to_string());
    }
    for d in &dbs {
        let r = mcp.call("litestream_ltx", json!({"path": s(&d.path)}));
        seen.add(&format!("mcp ltx {}", d.name), r.to_string());
        let out = root.join(format!("mcp-{}.db", d.name));
        let r = mcp.call(
            "litestream_restore",
            json!({"path": s(&d.path), "o": s(&out)}),
        );
        seen.add(&format!("mcp restore {}", d.name), r.to_string());
        assert_eq!(row_count(&out), 40, "mcp restore {}: {r}", d.name);
    }
    for (name, url) in [
        ("sftp", sftp_url(&sftp_pw, "sftp")),
        ("webdav", dav_url(&dav.pass, "webdav")),
        ("nats", nats_url(&nats.pass)),
        ("s3", s3_query(&format!("{tag}-s3url"), &s3.secret_key)),
    ] {
        let r = mcp.call("litestream_ltx", json!({"path": url}));
        seen.add(&format!("mcp ltx {name} URL"), r.to_string());
        let out = root.join(format!("mcp-url-{name}.db"));
        let r = mcp.call("litestream_restore", json!({"path": url, "o": s(&out)}));
        seen.add(&format!("mcp restore {name} URL"), r.to_string());
        assert_eq!(row_count(&out), 40, "mcp restore {name} URL: {r}");
    }
    for (name, url) in [
        ("sftp", sftp_url(&wrong, "sftp")),
        ("webdav", dav_url(&wrong, "webdav")),
        ("nats", nats_url(&wrong)),
        ("s3", s3_query(&format!("{tag}-s3url"), &wrong)),
    ] {
        let out = root.join(format!("mcp-wrong-{name}.db"));
        let r = mcp.call("litestream_restore", json!({"path": url, "o": s(&out)}));
        seen.add(
            &format!("mcp restore {name} URL, wrong password"),
            r.to_string(),
        );
        assert_eq!(r["isError"], true, "{name} with a wrong password: {r}");
    }
    seen.add("GET /metrics", http_get(metrics_port, "/metrics"));
    e.stop();
    seen.add("replicate log", fs::read_to_string(&log).expect("log"));

    // --- the one-shot commands, by config ---
    for args in [
        vec!["databases", "-config", &cfg_s],
        vec!["status", "-config", &cfg_s],
    ] {
        seen.ok(&args.join(" "), engine(&args, &env));
    }
    for d in &dbs {
        let p = s(&d.path);
        seen.ok(
            &format!("ltx {}", d.name),
            engine(&["ltx", "-config", &cfg_s, p], &env),
        );
        seen.ok(
            &format!("ltx -json {}", d.name),
            engine(
                &["ltx", "-json", "-level", "all", "-config", &cfg_s, p],
                &env,
            ),
        );
        let out = root.join(format!("engine-{}.db", d.name));
        seen.ok(
            &format!("ls-engine restore {}", d.name),
            engine(&["restore", "-config", &cfg_s, "-o", s(&out), p], &env),
        );
        assert_eq!(row_count(&out), 40, "{}", d.name);
        for flags in [&[][..], &["-json"], &["-dry-run"], &["-dry-run", "-json"]] {
            let out = root.join(format!("ls-{}-{}.db", d.name, flags.join("")));
            let mut args = vec!["-config", &cfg_s, "-o", s(&out)];
            args.extend_from_slice(flags);
            args.push(p);
            seen.ok(
                &format!("ls-restore {} {flags:?}", d.name),
                restore_cmd(&args, &env),
            );
        }
    }
    // ... and by URL, with the password or secret key in it.
    for (name, url) in [
        ("sftp", sftp_url(&sftp_pw, "sftp")),
        ("webdav", dav_url(&dav.pass, "webdav")),
        ("nats", nats_url(&nats.pass)),
        ("s3", s3_query(&format!("{tag}-s3url"), &s3.secret_key)),
    ] {
        seen.ok(&format!("ltx {name} URL"), engine(&["ltx", &url], &env));
        seen.ok(
            &format!("ltx -json {name} URL"),
            engine(&["ltx", "-json", &url], &env),
        );
        for flags in [&[][..], &["-json"], &["-dry-run"], &["-dry-run", "-json"]] {
            let out = root.join(format!("url-{name}-{}.db", flags.join("")));
            let mut args = vec!["-o", s(&out)];
            args.extend_from_slice(flags);
            args.push(&url);
            seen.ok(
                &format!("ls-restore {name} URL {flags:?}"),
                restore_cmd(&args, &env),
            );
        }
        let out = root.join(format!("url-engine-{name}.db"));
        seen.ok(
            &format!("ls-engine restore {name} URL"),
            engine(&["restore", "-o", s(&out), &url], &env),
        );
    }

    // --- error paths: wrong passwords and URLs that cannot be used ---
    for (name, url) in [
        ("sftp", sftp_url(&wrong, "sftp")),
        ("webdav", dav_url(&wrong, "webdav")),
        ("nats", nats_url(&wrong)),
        ("s3", s3_query(&format!("{tag}-s3url"), &wrong)),
        ("sftp without host", format!("sftp://u:{wrong}@/p")),
        ("webdav without host", format!("webdavs://u:{wrong}@/p")),
        (
            "nats without bucket",
            format!("nats://u:{wrong}@127.0.0.1:9"),
        ),
        (
            "s3 bad part size",
            format!("s3://b/p?secret-access-key={wrong}&partSize=lots"),
        ),
        ("abs", format!("abs://acct:{wrong}@/p?sig={wrong}")),
    ] {
        let out = root.join(format!("wrong-{}.db", name.replace(' ', "-")));
        seen.fails(
            &format!("ls-restore {name}, wrong"),
            restore_cmd(&["-o", s(&out), &url], &env),
        );
        seen.fails(&format!("ltx {name}, wrong"), engine(&["ltx", &url], &env));
    }
    // A config whose every secret is wrong: replicate once, restore, ltx.
    // The WebDAV and NATS servers' keys, with the wrong password.
    let wrong_dav = WebDavServer {
        pass: wrong.clone(),
        ..dav.clone()
    };
    let wrong_nats = NatsServer {
        pass: wrong.clone(),
        ..nats.clone()
    };
    let wrong_dbs: Vec<Db> = vec![
        db(
            "s3keys",
            vec![format!(
                "url: {}",
                s3_query(&format!("{tag}-s3keys"), &wrong)
            )],
        ),
        db(
            "abs",
            abs_keys(&[
                "account-key: V1JPTkc=".into(),
                format!("sas-token: sv=2021&sig={wrong}"),
            ]),
        ),
        db("sftp", vec![format!("url: {}", sftp_url(&wrong, "sftp"))]),
        db("webdav", wrong_dav.yaml(&format!("{tag}-webdav"))),
        db("nats", wrong_nats.yaml(&bucket)),
        db("age", age_replica(&wrong_age_id)),
    ];
    let wrong_cfg = root.join("wrong.yml");
    let text_cfg = config(&wrong_dbs)
        .replace(LISTENERS, "")
        .replace("  enabled: true", "  enabled: false");
    fs::write(&wrong_cfg, text_cfg).expect("wrong config");
    let wrong_s = s(&wrong_cfg).to_owned();
    seen.fails(
        "replicate -once, wrong secrets",
        engine(&["replicate", "-once", "-config", &wrong_s], &env),
    );
    for d in &wrong_dbs {
        let p = s(&d.path);
        seen.fails(
            &format!("ltx {}, wrong secrets", d.name),
            engine(&["ltx", "-config", &wrong_s, p], &env),
        );
        let out = root.join(format!("wrongcfg-{}.db", d.name));
        seen.fails(
            &format!("ls-restore {}, wrong secrets", d.name),
            restore_cmd(&["-config", &wrong_s, "-o", s(&out), p], &env),
        );
    }

    // The searched output is real: every database was named, and something was redacted.
    let all: String = seen.0.iter().map(|(_, t)| t.as_str()).collect();
    assert!(all.contains("initialized db"), "no start-up lines seen");
    assert!(
        all.contains("[redacted]"),
        "nothing redacted: was any URL shown at all?"
    );
    let mut leaks = Vec::new();
    for (what, t) in &seen.0 {
        for (name, secret) in &secrets {
            if let Some(i) = t.find(secret.as_str()) {
                let from = t[..i].rfind('\n').map_or(0, |n| n + 1);
                let to = t[i..].find('\n').map_or(t.len(), |n| i + n);
                leaks.push(format!("{name} in {what}: {}", &t[from..to]));
            }
        }
    }
    eprintln!(
        "searched {} outputs ({} bytes) for {} secrets",
        seen.0.len(),
        all.len(),
        secrets.len()
    );
    assert!(leaks.is_empty(), "secrets shown:\n{}", leaks.join("\n"));
}
