//! Litestream 0.3.x replicas (`generations/` layout): snapshots and WAL segments as LZ4
//! frames. The replica here is built by hand the way 0.3.13 laid it out, from a real SQLite
//! database and its real WAL; `litestream restore` 0.5.17 and `ls-restore` must agree.

use crate::common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use rusqlite::Connection;

fn lz4_file(path: &Path, data: &[u8], mtime: SystemTime) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    enc.write_all(data).expect("compress");
    let bytes = enc.finish().expect("finish");
    fs::write(path, bytes).expect("write");
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("mtime");
}

fn insert(conn: &Connection, tag: &str, n: usize) {
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..n {
        conn.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{tag} {i} {}", "w".repeat(i % 50))],
        )
        .expect("insert");
    }
    conn.execute_batch("COMMIT").expect("commit");
}

/// Builds `<root>/generations/<gen>/...` with snapshot 0 and WAL indexes 0 (two segments) and
/// 1. Returns the row count after everything.
fn build_v3(root: &Path, work: &Path) -> (i64, SystemTime) {
    let db = work.join("v3src.db");
    let wal = work.join("v3src.db-wal");
    let conn = Connection::open(&db).expect("open");
    conn.execute_batch(
        "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    )
    .expect("setup");
    insert(&conn, "base", 300);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("ckpt");
    let gen = root.join("generations/0123456789abcdef");
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    lz4_file(
        &gen.join("snapshots/00000000.snapshot.lz4"),
        &fs::read(&db).expect("db"),
        t0,
    );

    insert(&conn, "a", 200);
    let first = fs::read(&wal).expect("wal");
    insert(&conn, "b", 200);
    let all = fs::read(&wal).expect("wal");
    let cut = first.len();
    lz4_file(
        &gen.join("wal/00000000_00000000.wal.lz4"),
        &all[..cut],
        t0 + Duration::from_secs(10),
    );
    lz4_file(
        &gen.join(format!("wal/00000000_{cut:08x}.wal.lz4")),
        &all[cut..],
        t0 + Duration::from_secs(20),
    );
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("ckpt");
    insert(&conn, "c", 150);
    lz4_file(
        &gen.join("wal/00000001_00000000.wal.lz4"),
        &fs::read(&wal).expect("wal"),
        t0 + Duration::from_secs(30),
    );
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    (n, t0)
}

fn count(db: &Path) -> i64 {
    Connection::open(db)
        .expect("open")
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count")
}

#[test]
#[ignore = "needs the real Litestream"]
fn restores_v03x_replica_like_litestream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("replica");
    let (rows, t0) = build_v3(&root, dir.path());
    let out = dir.path().join("ls.db");
    let mut c = ls_restore();
    c.arg("-o").arg(&out).arg(file_url(&root));
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(&out), rows);

    // Point in time: the snapshot plus WAL index 0 only.
    let ts = storage::timefmt::format_rfc3339(t0 + Duration::from_secs(25));
    let early = dir.path().join("early.db");
    let mut c = ls_restore();
    c.args(["-timestamp", &ts, "-o"])
        .arg(&early)
        .arg(file_url(&root));
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(&early), 700);

    let lit = litestream();
    for (tag, args) in [("latest", vec![]), ("ts", vec!["-timestamp", ts.as_str()])] {
        let a = dir.path().join(format!("lit-{tag}.db"));
        let b = dir.path().join(format!("ls2-{tag}.db"));
        let mut c = lit_cmd(&lit);
        c.arg("restore")
            .args(&args)
            .arg("-o")
            .arg(&a)
            .arg(file_url(&root));
        let o = run(c);
        assert!(o.status.success(), "litestream: {}", stderr(&o));
        let mut c = ls_restore();
        c.args(&args).arg("-o").arg(&b).arg(file_url(&root));
        let o = run(c);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            fs::read(&a).expect("a") == fs::read(&b).expect("b"),
            "v0.3.x {tag}: bytes differ"
        );
    }
}

#[test]
fn v03x_gap_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("replica");
    build_v3(&root, dir.path());
    let seg = root.join("generations/0123456789abcdef/wal/00000000_00000000.wal.lz4");
    fs::remove_file(seg).expect("rm");
    let out = dir.path().join("out.db");
    let mut c = ls_restore();
    c.arg("-o").arg(&out).arg(file_url(&root));
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing WAL"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// Issue 14 item 8: `<out>.tmp-wal` used to be opened with create+truncate, following a link
/// planted there, so a v0.3.x restore overwrote whatever file the link pointed to.
#[test]
fn issue14_8_tmp_wal_is_never_opened_through_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("replica");
    let (rows, _) = build_v3(&root, dir.path());
    let out = dir.path().join("out.db");
    let victim = dir.path().join("victim");
    fs::write(&victim, b"not a WAL").expect("victim");
    std::os::unix::fs::symlink(&victim, dir.path().join("out.db.tmp-wal")).expect("symlink");
    let mut c = ls_restore();
    c.arg("-o").arg(&out).arg(file_url(&root));
    let o = run(c);
    assert_eq!(fs::read(&victim).expect("victim"), b"not a WAL");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(&out), rows);
}
