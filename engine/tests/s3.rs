//! ls-engine replicating to S3 (the s3s-fs server of `tests/s3/start.sh`), restored by the real
//! Litestream. Skipped without `LS_S3_ENDPOINT`/`LS_S3_ACCESS_KEY`/`LS_S3_SECRET_KEY`, unless
//! `LS_INTEROP=1` says it must run.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

#[test]
fn replicate_to_s3_and_restore_with_litestream() {
    let Some(srv) = s3_server("engine s3") else {
        return;
    };
    let Some(ls) = litestream() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let prefix = format!("engine-{}-{nanos}", std::process::id());
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
