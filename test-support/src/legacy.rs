//! A Litestream 0.3.x replica (`generations/` tree) built by hand the way 0.3.13 laid it out:
//! each object one LZ4 frame, the snapshot the raw database, WAL segments raw WAL bytes, file
//! times spaced so that `-timestamp` can pick a point between them.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

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
pub fn build_v3(root: &Path, work: &Path) -> (i64, SystemTime) {
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
