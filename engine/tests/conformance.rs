//! What every remote backend must do with the engine, written once and run once per backend
//! by [`conformance!`]: replication that the real Litestream lists and restores, (for the
//! HTTP backends, whose requests a proxy can count) idle databases that cost no requests, and
//! (where writes can be create-only) two engines on one replica.
//! Adding a backend means one [`Remote`] (the `replica:` keys of its test server), a
//! [`Counted`] if it speaks HTTP, and one line per scenario in the macro. What only one backend
//! shows (GCS resumable uploads, the NATS and SFTP connections) stays in its own test file.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::proxy::CountingProxy;

use common::*;
use test_support::abs::{abs_server, AbsServer};
use test_support::gcs::{gcs_server, GcsServer};
use test_support::nats::{nats_server, NatsServer};
use test_support::sftp::{sftp_server, SftpServer};
use test_support::webdav::{webdav_server, WebDavServer};

/// A test server as a replica destination.
pub trait Remote {
    /// The `replica:` keys for a replica at `path` (a fresh one per call), one per line
    /// without indentation.
    fn replica_keys(&self, name: &str) -> Vec<String>;

    /// Top-level config lines (defaults shared by every replica), if the backend tests them.
    fn globals(&self) -> Vec<String> {
        Vec::new()
    }

    /// Environment the engine and Litestream both need.
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A server spoken to over HTTP, whose requests a proxy in front of it can count.
pub trait Counted: Remote {
    /// Where the server listens.
    fn upstream(&self) -> SocketAddr;

    /// The same server reached through `proxy` instead.
    fn through(&self, proxy: SocketAddr) -> Box<dyn Remote>;
}

fn host_port(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("http://");
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{url}: not http://ip:port: {e}"))
}

/// `url` (`http://ip:port[/path]` or `ip:port`) with its host and port replaced by `to`.
fn rehost(url: &str, to: SocketAddr) -> String {
    let (scheme, rest) = match url.strip_prefix("http://") {
        Some(rest) => ("http://", rest),
        None => ("", url),
    };
    match rest.split_once('/') {
        Some((_, path)) => format!("{scheme}{to}/{path}"),
        None => format!("{scheme}{to}"),
    }
}

/// [`Counted`] for the remote `$remote`, whose server listens at the address in its field
/// `$addr`.
macro_rules! counted {
    ($remote:ident, $addr:ident) => {
        impl Counted for $remote {
            fn upstream(&self) -> SocketAddr {
                host_port(&self.0.$addr)
            }

            fn through(&self, proxy: SocketAddr) -> Box<dyn Remote> {
                let mut s = self.0.clone();
                s.$addr = rehost(&s.$addr, proxy);
                Box::new($remote(s))
            }
        }
    };
}

counted!(S3, endpoint);
counted!(Gcs, emulator_host);
counted!(Abs, endpoint);
counted!(WebDav, url);

struct S3(S3Server);
impl Remote for S3 {
    fn replica_keys(&self, name: &str) -> Vec<String> {
        let s = &self.0;
        s.yaml_with_keys(&s.unique_prefix(name), &s.secret_key)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("AWS_EC2_METADATA_DISABLED".into(), "true".into())]
    }
}

/// Reached through `STORAGE_EMULATOR_HOST`, as Litestream reaches it.
struct Gcs(GcsServer);
impl Remote for Gcs {
    fn replica_keys(&self, name: &str) -> Vec<String> {
        vec![
            "type: gs".into(),
            format!("bucket: {}", self.0.bucket),
            format!("path: {}", self.0.unique_prefix(name)),
        ]
    }

    fn env(&self) -> Vec<(String, String)> {
        self.0.env()
    }
}

/// The account key as a top-level default, as users share it between replicas.
struct Abs(AbsServer);
impl Remote for Abs {
    fn replica_keys(&self, name: &str) -> Vec<String> {
        let keys = self.0.yaml(&self.0.unique_prefix(name));
        keys.into_iter()
            .filter(|l| !l.starts_with("account-key:"))
            .collect()
    }

    fn globals(&self) -> Vec<String> {
        vec![format!("account-key: {}", self.0.key)]
    }
}

struct Sftp(SftpServer);
impl Remote for Sftp {
    fn replica_keys(&self, name: &str) -> Vec<String> {
        self.0.yaml(&self.0.unique_path(name))
    }
}

struct WebDav(WebDavServer);
impl Remote for WebDav {
    fn replica_keys(&self, name: &str) -> Vec<String> {
        self.0.yaml(&self.0.unique_path(name))
    }
}

struct Nats(NatsServer);
impl Remote for Nats {
    fn replica_keys(&self, name: &str) -> Vec<String> {
        self.0.yaml(&self.0.new_bucket(name))
    }
}

/// One database replicated to `remote` with short levels and snapshots.
fn config(remote: &dyn Remote, db: &Path) -> String {
    let mut s: String = remote.globals().iter().map(|l| format!("{l}\n")).collect();
    s.push_str("levels:\n  - interval: 1s\nsnapshot:\n  interval: 4s\ndbs:\n");
    s.push_str(&format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n",
        db.display()
    ));
    for l in remote.replica_keys("engine") {
        s.push_str(&format!("      {l}\n"));
    }
    s.push_str("      sync-interval: 100ms\n");
    s
}

/// The levels `litestream ltx -level all` lists for the database of `config`.
fn litestream_levels(ls: &Path, env: &[(String, String)], config: &Path, db: &Path) -> Vec<String> {
    let o = litestream_cmd(ls)
        .envs(env.iter().cloned())
        .args(["ltx", "-level", "all", "-config"])
        .arg(config)
        .arg(db)
        .output()
        .expect("litestream ltx");
    let listing = String::from_utf8_lossy(&o.stdout);
    let mut levels: Vec<String> = listing
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|t| t.len() == 16))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    levels.dedup();
    levels
}

/// The engine replicates small and large transactions (a 10 MiB incompressible one goes up
/// as a multipart/block/resumable/chunked upload, as the backend does it), compacts to level 1
/// and snapshots to level 9 in Litestream's layout; the real Litestream lists those levels and
/// restores the database exactly from the same config.
pub fn replicate_and_restore_with_litestream(remote: &dyn Remote) {
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(&cfg, config(remote, &db)).expect("config");
    let env = remote.env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let app = app(&db, 4096);
    setup_table(&app);
    let e = Engine::start_env(&cfg, &dir.path().join("engine.log"), &env_refs);
    for round in 0..5 {
        insert_rows(&app, round * 100, 100, 100);
        app.execute("DELETE FROM t WHERE k % 7 = ?1", [round as i64])
            .expect("delete");
        std::thread::sleep(Duration::from_millis(200));
    }
    app.execute_batch(
        "CREATE TABLE big(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 160)
         INSERT INTO big SELECT randomblob(65536) FROM n;",
    )
    .expect("big rows");
    insert_rows(&app, 1000, 10, 10);
    let want = ["0", "1", "9"];
    let all_levels = wait_until(Duration::from_secs(60), || {
        let got = litestream_levels(&ls, &env, &cfg, &db);
        want.iter().all(|w| got.iter().any(|g| g == w))
    });
    assert!(
        all_levels,
        "levels {want:?} never all listed by Litestream: {:?}; log:\n{}",
        litestream_levels(&ls, &env, &cfg, &db),
        e.tail()
    );
    e.stop();

    let out = dir.path().join("restored.db");
    let source = ["-config".as_ref(), cfg.as_os_str(), db.as_os_str()];
    litestream_restore_from(&ls, &env, &source, &out);
    let counts = |p: &Path| -> (i64, i64) {
        rusqlite::Connection::open(p)
            .and_then(|c| {
                c.query_row(
                    "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM big)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .expect("counts")
    };
    assert_eq!(counts(&out), counts(&db));
    assert_eq!(counts(&out).1, 160);
    assert!(dump(&db) == dump(&out), "restored dump differs");
}

/// Idle databases cost no requests: once start-up replication, compaction and the one
/// time-based checkpoint have settled (no request for 8 s in a row), five idle databases make
/// none in 30 s, counted by a proxy in front of the server; and the first write after that is
/// shipped through the same proxy at once.
pub fn idle_databases_make_no_requests(remote: &dyn Counted) {
    let proxy = CountingProxy::start(remote.upstream()).expect("start proxy");
    let via = remote.through(proxy.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    // Short levels so compaction of the start-up data finishes before the window; a short
    // checkpoint-interval so the one time-based checkpoint after the last write does too.
    let globals: String = via.globals().iter().map(|l| format!("{l}\n")).collect();
    let (config, apps) = idle_dbs(dir.path(), &globals, 5, |_, db| {
        let mut entry = format!(
            "  - path: {}\n    checkpoint-interval: 3s\n    replica:\n",
            db.display()
        );
        for l in via.replica_keys("idle") {
            entry.push_str(&format!("      {l}\n"));
        }
        entry
    });
    let env = via.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let e = Engine::start_env(&config, &dir.path().join("engine.log"), &env);

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = (proxy.requests(), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let n = proxy.requests();
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() >= Duration::from_secs(8) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "requests never stopped ({n} so far); log:\n{}",
            e.tail()
        );
    }
    let settled = proxy.requests();
    assert!(
        settled >= 5,
        "only {settled} requests: the engine's traffic did not go through the proxy"
    );
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        proxy.requests(),
        settled,
        "requests in 30 s of idle; log:\n{}",
        e.tail()
    );

    write_ships_at_once(&apps[3], e, "made no request", || {
        proxy.requests() > settled
    });
}

/// One module per backend, each with every scenario it takes as an ignored test (they need
/// the backend's server, and the replication scenario the real Litestream too).
macro_rules! conformance {
    (
        replicate: { $($backend:ident => $remote:expr, $needs:literal;)* }
        idle: { $($idle_backend:ident => $idle_remote:expr, $idle_needs:literal;)* }
        two_writers: { $($tw_backend:ident => $tw_remote:expr, $tw_needs:literal;)* }
    ) => {
        mod replicate {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                #[ignore = $needs]
                fn $backend() {
                    super::replicate_and_restore_with_litestream(&$remote);
                }
            )*
        }
        mod idle {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                #[ignore = $idle_needs]
                fn $idle_backend() {
                    super::idle_databases_make_no_requests(&$idle_remote);
                }
            )*
        }
        mod two_writers {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                #[ignore = $tw_needs]
                fn $tw_backend() {
                    crate::two_writers::two_engines_one_replica(&$tw_remote);
                }
            )*
        }
    };
}

conformance! {
    replicate: {
        s3 => S3(s3_server()), "needs the S3 test server and the real Litestream";
        gcs => Gcs(gcs_server()), "needs the GCS test server and the real Litestream";
        abs => Abs(abs_server()), "needs the Azurite test server and the real Litestream";
        sftp => Sftp(sftp_server()), "needs the SFTP test server and the real Litestream";
        webdav => WebDav(webdav_server()), "needs the WebDAV test server and the real Litestream";
        nats => Nats(nats_server()), "needs the NATS test server and the real Litestream";
    }
    // SFTP and NATS hold one connection: sftp.rs and nats.rs count its bytes instead.
    idle: {
        s3 => S3(s3_server()), "slow suite; needs the S3 test server";
        gcs => Gcs(gcs_server()), "slow suite; needs the GCS test server";
        abs => Abs(abs_server()), "slow suite; needs the Azurite test server";
        webdav => WebDav(webdav_server()), "slow suite; needs the WebDAV test server";
    }
    // Issue 14 item 12 on every backend with create-only writes (NATS has none).
    two_writers: {
        s3 => S3(s3_server()), "needs the S3 test server";
        gcs => Gcs(gcs_server()), "needs the GCS test server";
        abs => Abs(abs_server()), "needs the Azurite test server";
        sftp => Sftp(sftp_server()), "needs the SFTP test server";
        webdav => WebDav(webdav_server()), "needs the WebDAV test server";
    }
}
