//! ls-engine replicating to Azure Blob Storage (Azurite, `tests/abs/start.sh`) with Litestream's
//! `type: abs` config keys, restored by the real Litestream 0.5.17 from the same config; and an
//! idle engine making no requests.

use crate::common;
use test_support::abs as support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::proxy::CountingProxy;
use common::*;
use support::{abs_server, AbsServer};

/// A litestream.yml for `dbs` replicating under `prefix/<name>`: the account key as a global
/// default (as users share it between replicas), the rest in each replica entry.
fn config(srv: &AbsServer, endpoint: &str, prefix: &str, dbs: &[&Path], extra: &str) -> String {
    let mut s = format!("account-key: {}\n{extra}dbs:\n", srv.key);
    for db in dbs {
        let name = db.file_stem().and_then(|n| n.to_str()).unwrap_or("db");
        s.push_str(&format!(
            "  - path: {}\n    monitor-interval: 100ms\n    checkpoint-interval: 3s\n    replica:\n      \
             type: abs\n      account-name: {}\n      bucket: {}\n      path: {prefix}/{name}\n      \
             endpoint: {endpoint}\n      sync-interval: 100ms\n",
            db.display(),
            srv.account,
            srv.container
        ));
    }
    s
}

#[test]
#[ignore = "needs the Azurite test server and the real Litestream"]
fn replicate_to_abs_and_restore_with_litestream() {
    let srv = abs_server();
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let prefix = srv.unique_prefix("engine-abs");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(&cfg, config(&srv, &srv.endpoint, &prefix, &[&db], "")).expect("config");
    let app = app(&db, 4096);
    setup_table(&app);
    let e = Engine::start(&cfg, &dir.path().join("engine.log"));
    for round in 0..5 {
        insert_rows(&app, round * 100, 100, 100);
        std::thread::sleep(Duration::from_millis(200));
    }
    // About 10 MiB that does not compress: an LTX file above the 8 MiB block size, uploaded
    // as Put Block + Put Block List.
    app.execute_batch(
        "CREATE TABLE big(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 160)
         INSERT INTO big SELECT randomblob(65536) FROM n;",
    )
    .expect("big rows");
    std::thread::sleep(Duration::from_millis(500));
    insert_rows(&app, 1000, 10, 10);
    std::thread::sleep(Duration::from_millis(500));
    e.stop();

    let out = dir.path().join("restored.db");
    let o = litestream_cmd(&ls)
        .env_remove("LITESTREAM_AZURE_ACCOUNT_KEY")
        .env_remove("LITESTREAM_AZURE_SAS_TOKEN")
        .arg("restore")
        .arg("-config")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(&db)
        .output()
        .expect("litestream restore");
    assert!(
        o.status.success(),
        "litestream restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    integrity_ok(&out);
    let c = rusqlite::Connection::open(&out).expect("open restored");
    let (rows, big): (i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM big)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counts");
    assert_eq!((rows, big), (510, 160));
    assert_eq!(dump(&db), dump(&out), "restored dump differs");
}

/// Idle databases cost no requests: once start-up replication and compaction have settled,
/// three idle databases make zero requests in 30 s (counted by a proxy in front of Azurite),
/// and the first write after that is shipped through the same proxy.
#[test]
#[ignore = "slow suite; needs the Azurite test server"]
fn idle_databases_make_no_abs_requests() {
    let srv = abs_server();
    let rest = srv.endpoint.trim_start_matches("http://");
    let (hostport, account_path) = rest.split_once('/').expect("endpoint has the account");
    let proxy = CountingProxy::start(hostport.parse().expect("host:port")).expect("proxy");
    let endpoint = format!("http://{}/{account_path}", proxy.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = srv.unique_prefix("engine-abs-idle");
    let mut dbs = Vec::new();
    let mut apps = Vec::new();
    for i in 0..3 {
        let db = dir.path().join(format!("db{i}.db"));
        let c = app(&db, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 50, 100);
        apps.push(c);
        dbs.push(db);
    }
    let refs: Vec<&Path> = dbs.iter().map(|p| p.as_path()).collect();
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        config(
            &srv,
            &endpoint,
            &prefix,
            &refs,
            "levels:\n  - interval: 1s\n  - interval: 2s\n",
        ),
    )
    .expect("config");
    let e = Engine::start(&cfg, &dir.path().join("engine.log"));
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
        settled >= 3,
        "the engine's traffic did not go through the proxy"
    );
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        proxy.requests() - settled,
        0,
        "requests in 30 s of idle; log:\n{}",
        e.tail()
    );
    insert_rows(&apps[1], 1000, 5, 100);
    let shipped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        proxy.requests() > settled
    });
    assert!(
        shipped,
        "a write after idle made no request; log:\n{}",
        e.tail()
    );
    e.stop();
}
