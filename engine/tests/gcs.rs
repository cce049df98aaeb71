//! ls-engine replicating to GCS (fake-gcs-server of `tests/gcs/start.sh`, reached through
//! `STORAGE_EMULATOR_HOST` like Litestream), restored by the real Litestream 0.5.17; and an
//! idle engine making no GCS requests.

use crate::common;

use test_support::gcs as gcs_env;

use std::time::{Duration, Instant};

use common::proxy::CountingProxy;
use common::*;
use gcs_env::gcs_server;

/// One `dbs:` entry replicating `db` to `prefix` in `bucket`, with Litestream's gs keys.
fn gs_db_entry(db: &std::path::Path, bucket: &str, prefix: &str) -> String {
    format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: gs\n      \
         bucket: {bucket}\n      path: {prefix}\n      sync-interval: 100ms\n",
        db.display()
    )
}

#[test]
#[ignore = "needs the GCS test server and the real Litestream"]
fn replicate_to_gcs_and_restore_with_litestream() {
    let srv = gcs_server();
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let prefix = srv.unique_prefix("engine");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 1s\ndbs:\n{}",
            gs_db_entry(&db, &srv.bucket, &prefix)
        ),
    )
    .expect("config");
    let app = app(&db, 4096);
    setup_table(&app);
    let env = srv.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let e = Engine::start_env(&config, &dir.path().join("engine.log"), &env);
    for round in 0..5 {
        insert_rows(&app, round * 100, 100, 100);
        app.execute("DELETE FROM t WHERE k % 7 = ?1", [round as i64])
            .expect("delete");
        std::thread::sleep(Duration::from_millis(300));
    }
    // A large transaction: an L0 file well past one upload chunk is not needed for interop,
    // but a few hundred KiB exercise more than one page of the WAL reader.
    insert_rows(&app, 10_000, 2000, 300);
    std::thread::sleep(Duration::from_millis(1500));
    e.stop();

    let out = dir.path().join("restored.db");
    let o = litestream_cmd(&ls)
        .envs(srv.env())
        .arg("restore")
        .arg("-o")
        .arg(&out)
        .arg(srv.url(&prefix))
        .output()
        .expect("litestream restore");
    assert!(
        o.status.success(),
        "litestream restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    integrity_ok(&out);
    assert_eq!(dump(&db), dump(&out), "restored dump differs");
    let count = |p: &std::path::Path| -> i64 {
        rusqlite::Connection::open(p)
            .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .expect("count")
    };
    assert_eq!(count(&db), count(&out));
    assert!(count(&out) > 2000);

    // Litestream lists the levels our engine wrote in its layout.
    let o = litestream_cmd(&ls)
        .envs(srv.env())
        .args(["ltx", "-level", "all"])
        .arg(srv.url(&prefix))
        .output()
        .expect("litestream ltx");
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let levels: Vec<&str> = listing
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|t| t.len() == 16))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        levels.contains(&"0") && levels.contains(&"1"),
        "levels 0 and 1 expected:\n{listing}"
    );
}

/// A database of ~20 MiB of incompressible rows: its snapshot and compactions go up as
/// resumable uploads in 8 MiB chunks; Litestream restores it exactly.
#[test]
#[ignore = "needs the GCS test server and the real Litestream"]
fn large_database_uses_resumable_uploads() {
    let srv = gcs_server();
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("big.db");
    let prefix = srv.unique_prefix("engine-big");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 1s\nsnapshot:\n  interval: 3s\n  retention: 1h\ndbs:\n{}",
            gs_db_entry(&db, &srv.bucket, &prefix)
        ),
    )
    .expect("config");
    let app = app(&db, 4096);
    app.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB);")
        .expect("schema");
    let env = srv.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let e = Engine::start_env(&config, &dir.path().join("engine.log"), &env);
    for _ in 0..4 {
        app.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1280)
             INSERT INTO big(b) SELECT randomblob(4000) FROM n;",
        )
        .expect("insert");
    }
    // Past the snapshot interval, so a level-9 snapshot of the whole database is written.
    let url = srv.url(&prefix);
    let has_big_snapshot = || {
        let o = litestream_cmd(&ls)
            .envs(srv.env())
            .args(["ltx", "-level", "9"])
            .arg(&url)
            .output()
            .expect("litestream ltx");
        String::from_utf8_lossy(&o.stdout).lines().any(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|size| size > 16 << 20)
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), has_big_snapshot),
        "no snapshot over 16 MiB; log:\n{}",
        e.tail()
    );
    e.stop();
    let out = dir.path().join("restored.db");
    let o = litestream_cmd(&ls)
        .envs(srv.env())
        .arg("restore")
        .arg("-o")
        .arg(&out)
        .arg(&url)
        .output()
        .expect("litestream restore");
    assert!(
        o.status.success(),
        "litestream restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    integrity_ok(&out);
    assert_eq!(dump(&db), dump(&out), "restored dump differs");
}

/// Idle databases cost no GCS requests: once start-up replication and compaction have
/// settled, five idle databases make zero requests in 30 s (counted by a proxy that
/// `STORAGE_EMULATOR_HOST` points at), and the first write after that goes out at once.
#[test]
#[ignore = "slow suite; needs the GCS test server"]
fn idle_databases_make_no_gcs_requests() {
    let srv = gcs_server();
    let upstream = srv
        .emulator_host
        .parse()
        .expect("emulator host is host:port");
    let proxy = CountingProxy::start(upstream).expect("start proxy");
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = srv.unique_prefix("idle");
    let mut cfg = String::from("levels:\n  - interval: 1s\n  - interval: 2s\ndbs:\n");
    let mut apps = Vec::new();
    for i in 0..5 {
        let db = dir.path().join(format!("db{i}.db"));
        let c = app(&db, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 50, 100);
        cfg.push_str(&gs_db_entry(&db, &srv.bucket, &format!("{prefix}/db{i}")));
        cfg.push_str("    checkpoint-interval: 3s\n");
        apps.push(c);
    }
    let config = dir.path().join("litestream.yml");
    std::fs::write(&config, cfg).expect("config");
    let host = proxy.addr.to_string();
    let e = Engine::start_env(
        &config,
        &dir.path().join("engine.log"),
        &[("STORAGE_EMULATOR_HOST", host.as_str())],
    );
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
        "the engine's traffic did not go through the proxy"
    );
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        proxy.requests() - settled,
        0,
        "requests while idle; log:\n{}",
        e.tail()
    );
    insert_rows(&apps[2], 1000, 5, 100);
    let shipped = wait_until(Duration::from_secs(10), || proxy.requests() > settled);
    assert!(
        shipped,
        "a write after idle made no request; log:\n{}",
        e.tail()
    );
    e.stop();
}
