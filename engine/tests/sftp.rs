//! ls-engine replicating to SFTP (the OpenSSH server of `tests/sftp/start.sh`) with a
//! `type: sftp` config, restored by the real Litestream 0.5.17 from the same config; and an
//! idle engine sends the server nothing.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::*;

use sftp_env::{sftp_server, ByteCountingProxy, SftpServer};
use test_support::sftp as sftp_env;

/// One `dbs:` entry replicating `db` to `path` on the server, reached at `host`.
fn db_entry(db: &Path, srv: &SftpServer, host: &str, path: &Path) -> String {
    let mut s = format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n",
        db.display()
    );
    for line in srv.yaml(path) {
        let line = match line.strip_prefix("host: ") {
            Some(_) => format!("host: {host}"),
            None => line,
        };
        s.push_str(&format!("      {line}\n"));
    }
    s.push_str("      sync-interval: 100ms\n");
    s
}

/// Every LTX file under `root` has Litestream's name and its header time as mtime; no temp
/// file is left. Returns how many there are per level.
fn check_layout(root: &Path) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    for level in 0..=9u8 {
        let dir = root.join("ltx").join(level.to_string());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut n = 0;
        for e in entries {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                ltx_codec::types::parse_ltx_file_name(&name).is_some(),
                "unexpected {name} in {}",
                dir.display()
            );
            let bytes = std::fs::read(e.path()).expect("read");
            let h = ltx_codec::Header::decode(&bytes).expect("header");
            let secs = e
                .metadata()
                .and_then(|m| m.modified())
                .expect("mtime")
                .duration_since(UNIX_EPOCH)
                .expect("epoch")
                .as_secs();
            assert_eq!(secs, h.timestamp as u64 / 1000, "mtime of {name}");
            n += 1;
        }
        out.push((level, n));
    }
    out
}

#[test]
#[ignore = "needs the SFTP test server and the real Litestream"]
fn replicate_to_sftp_and_restore_with_litestream() {
    let srv = sftp_server();
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let path = srv.unique_path("engine");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 1s\nsnapshot:\n  interval: 3s\ndbs:\n{}",
            db_entry(&db, &srv, &srv.host, &path)
        ),
    )
    .expect("config");
    let app = app(&db, 4096);
    setup_table(&app);
    let e = Engine::start(&config, &dir.path().join("engine.log"));
    for round in 0..8 {
        insert_rows(&app, round * 100, 100, 100);
        app.execute("UPDATE t SET v = v || 'u' WHERE k % 7 = ?1", [round as i64])
            .expect("update");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Let compaction and a snapshot run.
    std::thread::sleep(Duration::from_secs(4));
    e.stop();

    let levels = check_layout(&path);
    for want in [0u8, 1, 9] {
        assert!(
            levels.iter().any(|(l, n)| *l == want && *n > 0),
            "no files at level {want}: {levels:?}"
        );
    }

    let out = dir.path().join("restored.db");
    let o = litestream_cmd(&ls)
        .args(["restore", "-config"])
        .arg(&config)
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
    assert_eq!(dump(&db), dump(&out), "restored dump differs");
    let n: i64 = rusqlite::Connection::open(&out)
        .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
        .expect("count");
    assert_eq!(n, 800);
    std::fs::remove_dir_all(&path).expect("cleanup");
}

/// Idle databases send the SFTP server nothing: once start-up replication and compaction have
/// settled, three idle databases send zero bytes in 45 s (counted by a proxy in front of
/// sshd), and the first write after that is shipped through the same proxy.
#[test]
#[ignore = "slow suite; needs the SFTP test server"]
fn idle_databases_send_nothing_over_sftp() {
    let srv = sftp_server();
    let proxy = ByteCountingProxy::start(&srv.host);
    let host = proxy.addr.to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = srv.unique_path("idle");
    let mut cfg = String::from("levels:\n  - interval: 1s\n  - interval: 2s\ndbs:\n");
    let mut apps = Vec::new();
    for i in 0..3 {
        let db = dir.path().join(format!("db{i}.db"));
        let c = app(&db, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 50, 100);
        cfg.push_str(&db_entry(&db, &srv, &host, &path.join(format!("db{i}"))));
        cfg.push_str("    checkpoint-interval: 3s\n");
        apps.push(c);
    }
    let config = dir.path().join("litestream.yml");
    std::fs::write(&config, cfg).expect("config");
    let e = Engine::start(&config, &dir.path().join("engine.log"));

    // Settled: nothing sent for 8 s in a row (within 90 s).
    let mut quiet = (proxy.sent(), Instant::now());
    let settled_in_time = wait_until(Duration::from_secs(90), || {
        let n = proxy.sent();
        if n != quiet.0 {
            quiet = (n, Instant::now());
        }
        n > 0 && quiet.1.elapsed() >= Duration::from_secs(8)
    });
    assert!(settled_in_time, "traffic never stopped; log:\n{}", e.tail());
    let settled = proxy.sent();
    std::thread::sleep(Duration::from_secs(45));
    assert_eq!(
        proxy.sent() - settled,
        0,
        "bytes sent in 45 s of idle; log:\n{}",
        e.tail()
    );

    insert_rows(&apps[1], 1000, 5, 100);
    assert!(
        wait_until(Duration::from_secs(10), || proxy.sent() > settled),
        "a write after idle sent nothing; log:\n{}",
        e.tail()
    );
    e.stop();
    std::fs::remove_dir_all(&path).expect("cleanup");
}
