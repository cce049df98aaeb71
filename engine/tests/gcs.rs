//! ls-engine and GCS (fake-gcs-server of `tests/gcs/start.sh`, reached through
//! `STORAGE_EMULATOR_HOST` like Litestream): large files go up as resumable uploads. Replication
//! restored by the real Litestream, and idle costs, are the shared scenarios in `conformance.rs`.

use crate::common;

use test_support::gcs as gcs_env;

use std::time::Duration;

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
    litestream_restore_from(&ls, &srv.env(), &[url.as_ref()], &out);
    assert_eq!(dump(&db), dump(&out), "restored dump differs");
}
