//! ls-engine replicating to WebDAV (`rclone serve webdav` of `tests/webdav/start.sh`) with the
//! YAML keys Litestream uses, restored by the real Litestream 0.5.17; and an idle replica
//! costs no requests.

use crate::common;
use test_support::webdav as webdav_env;

use std::path::Path;
use std::time::{Duration, Instant};

use common::proxy::CountingProxy;
use common::*;
use webdav_env::{webdav_server, WebDavServer};

/// One `dbs:` entry replicating `db` to `path` on the WebDAV server at `url`.
fn db_entry(db: &Path, srv: &WebDavServer, url: &str, path: &str) -> String {
    format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: webdav\n      \
         webdav-url: {url}\n      webdav-username: {}\n      webdav-password: {}\n      \
         path: {path}\n      sync-interval: 100ms\n",
        db.display(),
        srv.user,
        srv.pass
    )
}

#[test]
#[ignore = "needs the WebDAV test server and the real Litestream"]
fn replicate_to_webdav_and_restore_with_litestream() {
    let srv = webdav_server();
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let path = srv.unique_path("engine");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 2s\nsnapshot:\n  interval: 5s\ndbs:\n{}",
            db_entry(&db, &srv, &srv.url, &path)
        ),
    )
    .expect("config");
    let app = app(&db, 4096);
    setup_table(&app);
    let e = Engine::start(&config, &dir.path().join("engine.log"));
    let started = Instant::now();
    for round in 0..8 {
        insert_rows(&app, round * 100, 100, 100);
        std::thread::sleep(Duration::from_millis(300));
        app.execute(
            "DELETE FROM t WHERE k % 7 = 0 AND k / 100 = ?1",
            [round as i64],
        )
        .expect("delete");
    }
    // Long enough for L1 compaction and a snapshot to be shipped too.
    if let Some(rest) = Duration::from_secs(7).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    e.stop();

    if let Some(data) = &srv.data_dir {
        let root = data.join(&path);
        assert!(
            !l0_names(&root).is_empty(),
            "no L0 files under {}",
            root.display()
        );
        for level in ["1", "9"] {
            let n = std::fs::read_dir(root.join("ltx").join(level))
                .map(|d| d.count())
                .unwrap_or(0);
            assert!(n > 0, "no files at level {level}");
        }
    }

    let out = dir.path().join("restored.db");
    let o = litestream_cmd(&ls)
        .arg("restore")
        .arg("-o")
        .arg(&out)
        .arg(srv.replica_url(&path))
        .output()
        .expect("litestream restore");
    assert!(
        o.status.success(),
        "litestream restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    integrity_ok(&out);
    assert_eq!(dump(&db), dump(&out), "restored dump differs");
    let count = |p: &Path| -> i64 {
        rusqlite::Connection::open(p)
            .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .expect("count")
    };
    assert_eq!(count(&out), count(&db));
    assert!(count(&out) > 600);

    // The same replica through the config file, as `litestream restore -config` reads it.
    let out2 = dir.path().join("restored2.db");
    let o = litestream_cmd(&ls)
        .arg("restore")
        .arg("-config")
        .arg(&config)
        .arg("-o")
        .arg(&out2)
        .arg(&db)
        .output()
        .expect("litestream restore -config");
    assert!(
        o.status.success(),
        "litestream restore -config failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(dump(&out2), dump(&db), "restore -config dump differs");
}

/// Idle databases cost no WebDAV requests once start-up replication and compaction settled,
/// and the first write after the idle window is shipped through the same proxy.
#[test]
#[ignore = "slow suite; needs the WebDAV test server"]
fn idle_databases_make_no_webdav_requests() {
    let srv = webdav_server();
    let upstream = srv
        .authority()
        .parse()
        .expect("WebDAV URL is http://ip:port");
    let proxy = CountingProxy::start(upstream).expect("start proxy");
    let url = format!("http://{}", proxy.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = srv.unique_path("idle");
    let mut cfg = String::from("levels:\n  - interval: 1s\n  - interval: 2s\ndbs:\n");
    let mut apps = Vec::new();
    for i in 0..3 {
        let db = dir.path().join(format!("db{i}.db"));
        let c = app(&db, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 50, 100);
        cfg.push_str(&db_entry(&db, &srv, &url, &format!("{path}/db{i}")));
        cfg.push_str("    checkpoint-interval: 3s\n");
        apps.push(c);
    }
    let config = dir.path().join("litestream.yml");
    std::fs::write(&config, cfg).expect("config");
    let e = Engine::start(&config, &dir.path().join("engine.log"));

    // Settled: no request for 8 s in a row.
    let quiet = wait_until(Duration::from_secs(90), || {
        let n = proxy.requests();
        std::thread::sleep(Duration::from_secs(8));
        n > 0 && proxy.requests() == n
    });
    assert!(quiet, "requests never stopped; log:\n{}", e.tail());
    // Three databases, each with at least its first upload: the traffic went through us.
    let settled = proxy.requests();
    assert!(settled >= 3, "only {settled} requests through the proxy");
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        proxy.requests(),
        settled,
        "requests in 30 s of idle; log:\n{}",
        e.tail()
    );

    // The proxy still sees the engine: a write is shipped at once.
    insert_rows(&apps[1], 1000, 5, 100);
    let shipped = wait_until(Duration::from_secs(10), || proxy.requests() > settled);
    assert!(
        shipped,
        "a write after idle made no request; log:\n{}",
        e.tail()
    );
    e.stop();
}
