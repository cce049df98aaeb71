//! ls-engine replicating to S3 (the s3s-fs server of `tests/s3/start.sh`), restored by the real
//! Litestream.

use crate::common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::proxy::CountingProxy;
use common::*;

fn unique_prefix(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// One `dbs:` entry replicating `db` to `prefix` on the S3 server at `endpoint`.
fn s3_db_entry(db: &std::path::Path, srv: &S3Server, endpoint: &str, prefix: &str) -> String {
    format!(
        "  - path: {}\n    replica:\n      type: s3\n      bucket: {}\n      path: {prefix}\n      \
         endpoint: {endpoint}\n      region: us-east-1\n      force-path-style: true\n      \
         access-key-id: {}\n      secret-access-key: {}\n",
        db.display(),
        srv.bucket,
        srv.access_key,
        srv.secret_key
    )
}

#[test]
#[ignore = "needs the S3 test server and the real Litestream"]
fn replicate_to_s3_and_restore_with_litestream() {
    let srv = s3_server();
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let prefix = unique_prefix("engine");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: s3\n      \
             bucket: {}\n      path: {prefix}\n      endpoint: {}\n      region: us-east-1\n      \
             force-path-style: true\n      access-key-id: {}\n      secret-access-key: {}\n      \
             sync-interval: 100ms\n",
            db.display(),
            srv.bucket,
            srv.endpoint,
            srv.access_key,
            srv.secret_key
        ),
    )
    .expect("config");
    let app = app(&db, 4096);
    setup_table(&app);
    let e = Engine::start(&config, &dir.path().join("engine.log"));
    for round in 0..5 {
        insert_rows(&app, round * 100, 100, 100);
        std::thread::sleep(Duration::from_millis(200));
    }
    e.stop();

    let out = dir.path().join("restored.db");
    let o = litestream_cmd(&ls)
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .arg("restore")
        .arg("-o")
        .arg(&out)
        .arg(format!(
            "s3://{}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true",
            srv.bucket, srv.endpoint
        ))
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

/// Idle databases cost no S3 requests: once start-up replication and compaction have settled,
/// ten idle databases make zero requests in 60 s (counted by a proxy in front of the server),
/// and the first write after that is shipped through the same proxy.
#[test]
#[ignore = "slow suite; needs the S3 test server"]
fn idle_databases_make_no_s3_requests() {
    let srv = s3_server();
    let upstream = srv
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("S3 endpoint is http://host:port");
    let proxy = CountingProxy::start(upstream).expect("start proxy");
    let endpoint = format!("http://{}", proxy.addr);
    let mut dir = tempfile::tempdir().expect("tempdir");
    if std::env::var("LS_KEEP").is_ok_and(|v| v == "1") {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    let prefix = unique_prefix("idle");
    // Short levels so compaction of the start-up data finishes before the window; a short
    // checkpoint-interval so the one time-based checkpoint after the last write does too.
    let mut cfg = String::from("levels:\n  - interval: 1s\n  - interval: 2s\ndbs:\n");
    let mut apps = Vec::new();
    for i in 0..10 {
        let db = dir.path().join(format!("db{i}.db"));
        let c = app(&db, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 50, 100);
        cfg.push_str(&s3_db_entry(
            &db,
            &srv,
            &endpoint,
            &format!("{prefix}/db{i}"),
        ));
        cfg.push_str("    checkpoint-interval: 3s\n");
        apps.push(c);
    }
    let config = dir.path().join("litestream.yml");
    std::fs::write(&config, cfg).expect("config");
    let e = Engine::start(&config, &dir.path().join("engine.log"));

    // Settled: no request for 8 s in a row.
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
        settled >= 10,
        "the engine's traffic did not go through the proxy"
    );
    std::thread::sleep(Duration::from_secs(60));
    let idle = proxy.requests() - settled;
    assert_eq!(idle, 0, "requests in 60 s of idle; log:\n{}", e.tail());

    // The proxy still sees the engine: a write is shipped at once.
    insert_rows(&apps[3], 1000, 5, 100);
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
