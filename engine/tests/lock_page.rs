//! Databases over 1 GiB, where SQLite's lock page (the page holding byte offset 2^30) is never
//! written: pages on both sides of it must replicate and restore byte-identically, in our
//! restore and in Litestream's. Page sizes 1024, 4096 and 65536 (slow: ignored unless asked for).
//!
//! The bulk is zeroblob overflow pages (LZ4 squeezes them to almost nothing), built before
//! the engine starts so the first sync is one snapshot; then rows whose overflow chains lie
//! before, across and after the lock page are rewritten with random bytes while it runs.

use crate::common;
use crate::harden;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use harden::*;
use rusqlite::Connection;

const GIB: u64 = 1 << 30;
const ROW: u64 = 1 << 20;

fn lock_page_case(ps: u32) {
    let ls = litestream();
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("big.db");
    let replica = dir.path().join("replica");
    let rows = GIB / ROW + 40;
    {
        let c = Connection::open(&db).expect("open");
        c.execute_batch(&format!(
            "PRAGMA page_size = {ps}; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB);
             WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {rows})
             INSERT INTO big(id, b) SELECT x, zeroblob({ROW}) FROM s;
             PRAGMA journal_mode = WAL;"
        ))
        .expect("build");
    }
    let size = std::fs::metadata(&db).expect("stat").len();
    assert!(size > GIB + 8 * ROW, "database only {size} bytes");
    let built = t0.elapsed();

    let cfg = dir.path().join("ls.yml");
    fast_config(&cfg, &[(db.clone(), replica.clone())]);
    let e = Engine::start(&cfg, &dir.path().join("engine.log"));
    let c = app(&db, ps);
    // Rows around the lock page: ~1 MiB each, so row GIB/ROW straddles it.
    let mid = (GIB / ROW) as i64;
    let targets: Vec<i64> = [
        1,
        2,
        mid - 2,
        mid - 1,
        mid,
        mid + 1,
        mid + 2,
        rows as i64 - 1,
    ]
    .into_iter()
    .collect();
    for (round, ids) in targets.chunks(3).enumerate() {
        let tx = c.unchecked_transaction().expect("begin");
        for id in ids {
            tx.execute(
                "UPDATE big SET b = randomblob(?1) WHERE id = ?2",
                rusqlite::params![(ROW - 4096 * round as u64) as i64, id],
            )
            .expect("update");
        }
        tx.commit().expect("commit");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Grow past the end too, then let the engine checkpoint it all into the file.
    c.execute(
        "INSERT INTO big(id, b) VALUES (?1, randomblob(300000))",
        [rows as i64 + 1],
    )
    .expect("append");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut n = l0_names(&replica).len();
    std::thread::sleep(Duration::from_millis(500));
    while l0_names(&replica).len() != n {
        n = l0_names(&replica).len();
        assert!(Instant::now() < deadline, "engine never settled");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(c);
    e.stop();
    let replicated = t0.elapsed() - built;
    assert_chain(&replica);

    let ours = dir.path().join("ours.db");
    let t = Instant::now();
    let o = restore_to(&replica, &ours);
    assert!(o.status.success(), "ls-restore: {}", text(&o));
    let ours_time = t.elapsed();
    let theirs = dir.path().join("theirs.db");
    let t = Instant::now();
    litestream_restore(&ls, &replica, &theirs);
    let theirs_time = t.elapsed();
    let (a, b) = (
        std::fs::read(&ours).expect("ours"),
        std::fs::read(&theirs).expect("theirs"),
    );
    assert_eq!(a.len(), b.len(), "page size {ps}: restored sizes differ");
    if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
        panic!(
            "page size {ps}: restores differ at byte {i} (page {})",
            i as u64 / u64::from(ps) + 1
        );
    }
    assert!(
        a.len() as u64 > GIB + u64::from(ps),
        "restore not past the lock page"
    );
    drop((a, b));
    let lock_pgno = GIB / u64::from(ps) + 1;
    check_same_rows(&db, &ours, &targets);
    integrity_ok(&ours);
    eprintln!(
        "lock page {ps}: {size} bytes, lock page {lock_pgno}; build {:.1}s, replicate {:.1}s, \
         ls-restore {:.1}s, litestream {:.1}s, total {:.1}s",
        built.as_secs_f64(),
        replicated.as_secs_f64(),
        ours_time.as_secs_f64(),
        theirs_time.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    if std::env::var("LS_KEEP").is_ok() {
        let _ = dir.keep();
    }
}

/// The rewritten rows and the row count agree between source and restore (a full `.dump`
/// of 1 GiB of blobs would take longer than the rest of the test).
fn check_same_rows(src: &Path, out: &Path, ids: &[i64]) {
    let digest = |p: &Path| -> Vec<(i64, i64, String)> {
        let c = Connection::open(p).expect("open");
        let mut v: Vec<(i64, i64, String)> = Vec::new();
        let n: i64 = c
            .query_row("SELECT count(*) FROM big", [], |r| r.get(0))
            .expect("count");
        v.push((n, 0, String::new()));
        for id in ids.iter().copied().chain([ids[ids.len() - 1] + 2]) {
            let row = c
                .query_row(
                    "SELECT length(b), hex(substr(b, 1, 64)) || hex(substr(b, -64)) FROM big WHERE id = ?1",
                    [id],
                    |r| Ok((id, r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .expect("row");
            v.push(row);
        }
        v
    };
    assert_eq!(
        digest(src),
        digest(out),
        "restored rows differ from the source"
    );
}

#[test]
#[ignore = "slow suite; needs the real Litestream"]
fn lock_page_1024() {
    lock_page_case(1024);
}

#[test]
#[ignore = "slow suite; needs the real Litestream"]
fn lock_page_4096() {
    lock_page_case(4096);
}

#[test]
#[ignore = "slow suite; needs the real Litestream"]
fn lock_page_65536() {
    lock_page_case(65536);
}
