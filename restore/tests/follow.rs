//! Follow mode against the real Litestream: `litestream replicate` keeps shipping a database
//! that is being written (inserts, updates, deletes, a VACUUM that shrinks it) while
//! `ls-restore -f` follows the file replica; once writes stop, the followed database holds
//! the same rows and schema as the source, passes integrity_check, is in rollback-journal mode,
//! and SIGTERM ends ls-restore with status 0.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use rusqlite::{Connection, OpenFlags};

fn max_txid(replica: &Path) -> u64 {
    (0..=9)
        .flat_map(|l| ltx_names(&replica.join("ltx").join(l.to_string())))
        .map(|(_, max)| max)
        .max()
        .unwrap_or(0)
}

/// Schema and every row, in a form two databases can be compared by.
fn contents(path: &Path) -> Vec<String> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut out = strings(
        &c,
        "SELECT type, name, sql FROM sqlite_master ORDER BY name",
        |r| {
            let sql: Option<String> = r.get(2)?;
            Ok(format!(
                "{}|{}|{sql:?}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?
            ))
        },
    );
    out.extend(strings(
        &c,
        "SELECT id, v, hex(b) FROM t ORDER BY id",
        |r| {
            let id: i64 = r.get(0)?;
            Ok(format!(
                "{id}|{}|{}",
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        },
    ));
    out
}

/// Every row `sql` gives, each as `row` formats it.
fn strings(
    c: &Connection,
    sql: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<String>,
) -> Vec<String> {
    let mut st = c.prepare(sql).expect("prepare");
    let rows = st.query_map([], row).expect("query");
    rows.map(|r| r.expect("row")).collect()
}

#[test]
#[ignore = "needs the real Litestream"]
fn follow_tracks_litestream_replicate() {
    let lit = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let [db, replica, out] = ["src.db", "replica", "follower.db"].map(|n| dir.path().join(n));
    let conn = Connection::open(&db).expect("open");
    conn.execute_batch(
        "PRAGMA page_size=4096; PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);
         CREATE INDEX t_v ON t(v);",
    )
    .expect("schema");
    let insert = |n: usize, tag: &str| {
        let mut st = conn
            .prepare("INSERT INTO t(v, b) VALUES (?1, randomblob(?2))")
            .expect("prepare");
        for i in 0..n {
            st.execute(rusqlite::params![
                format!("{tag} {i}"),
                (i * 13 % 1500) as i64
            ])
            .expect("insert");
        }
    };
    insert(200, "initial");
    let cfg = dir.path().join("litestream.yml");
    fs::write(
        &cfg,
        format!(
            "levels:\n  - interval: 2s\ndbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: file\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("config");
    let _rep = lit_replicate(&lit, &cfg, &dir.path().join("litestream.log"), &[]);
    wait_for("the first L0 file", Duration::from_secs(120), || {
        max_txid(&replica) >= 1
    });

    // Follow mode cannot be combined with a point in time.
    let mut c = ls_restore();
    c.args(["-f", "-txid", "0000000000000001", "-o"])
        .arg(dir.path().join("x.db"))
        .arg(file_url(&replica));
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot use follow mode with -txid"));

    let flog = fs::File::create(dir.path().join("follow.log")).expect("log");
    let mut follower = Proc(
        ls_restore()
            .args(["-f", "-follow-interval", "200ms", "-o"])
            .arg(&out)
            .arg(file_url(&replica))
            .stdout(flog.try_clone().expect("log"))
            .stderr(flog)
            .stdin(Stdio::null())
            .spawn()
            .expect("ls-restore -f"),
    );
    let txid_file = dir.path().join("follower.db-txid");
    wait_for("the follower's -txid file", Duration::from_secs(30), || {
        txid_file.exists()
    });

    for round in 0..8 {
        conn.execute_batch("BEGIN").expect("begin");
        insert(60 + 20 * round, &format!("round {round}"));
        conn.execute(
            "UPDATE t SET v = v || '+' WHERE id % 7 = ?1",
            [round as i64],
        )
        .expect("update");
        if round == 5 {
            conn.execute("DELETE FROM t WHERE id % 2 = 0", [])
                .expect("delete");
        }
        conn.execute_batch("COMMIT").expect("commit");
        if round == 5 {
            // A smaller database: the follower must truncate to the new Commit.
            conn.execute_batch("VACUUM").expect("vacuum");
        }
        std::thread::sleep(Duration::from_millis(700));
    }

    // Writes have stopped: wait until the replica is quiet and the follower has caught up.
    let mut last = (0, Instant::now());
    wait_for("the follower to catch up", Duration::from_secs(60), || {
        let m = max_txid(&replica);
        if m != last.0 {
            last = (m, Instant::now());
        }
        let have = fs::read_to_string(&txid_file).unwrap_or_default();
        last.1.elapsed() > Duration::from_secs(3) && have.trim() == format!("{m:016x}")
    });
    // A few more intervals with nothing new must change nothing.
    std::thread::sleep(Duration::from_millis(800));

    let flog = || fs::read_to_string(dir.path().join("follow.log")).unwrap_or_default();
    let want = contents(&db);
    let got = contents(&out);
    assert_eq!(
        want.len(),
        got.len(),
        "row counts; follower log:\n{}",
        flog()
    );
    assert!(want == got, "followed database differs; log:\n{}", flog());
    let c = Connection::open_with_flags(&out, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok");
    drop(c);
    let bytes = fs::read(&out).expect("read");
    assert_eq!(
        &bytes[18..20],
        &[1, 1],
        "rollback-journal mode after follow"
    );
    let page_count: u32 = u32::from_be_bytes(bytes[28..32].try_into().expect("4 bytes"));
    assert_eq!(
        bytes.len() as u64,
        u64::from(page_count) * 4096,
        "truncated to Commit"
    );

    let status = follower
        .term(Duration::from_secs(10))
        .expect("ls-restore exits on SIGTERM");
    assert!(status.success(), "exit status {status}; log:\n{}", flog());
}

/// On a synthetic replica: a gap at L0 is bridged from L1, and a file whose checksum fails is
/// not applied at all (the database and the -txid file stay put) until a good copy appears.
#[test]
fn follow_fills_gaps_and_skips_corrupt_files() {
    use ltx_codec::{Header, TxId};
    let (dir, replica, out) = replica_and_output("f.db");
    let ps = 4096u32;
    let mut want = synthetic_replica(&replica, ps);
    let mut follower = Proc(
        ls_restore()
            .args(["-f", "-follow-interval", "100ms", "-o"])
            .arg(&out)
            .arg(file_url(&replica))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ls-restore -f"),
    );
    let txid_file = dir.path().join("f.db-txid");
    let at = |t: u64| {
        let want = format!("{t:016x}\n");
        wait_for(&format!("txid {t}"), Duration::from_secs(20), || {
            fs::read_to_string(&txid_file).is_ok_and(|s| s == want)
        })
    };
    at(6);
    assert!(fs::read(&out).expect("read") == want);

    let t0 = 1_795_665_990_000i64;
    let set = |want: &mut Vec<u8>, pgno: u32, version: u8| {
        let p = page(ps, pgno, version);
        let at = (pgno as usize - 1) * ps as usize;
        want[at..at + ps as usize].copy_from_slice(&p);
        (pgno, p)
    };
    // L0 jumps from 6 to 9; 7-8 exists only at L1.
    let l1 = [set(&mut want, 2, 70), set(&mut want, 8, 70)];
    let l0 = [set(&mut want, 3, 90)];
    put_ltx(&replica, 1, Header::new(ps, 8, TxId(7), TxId(8), t0), &l1);
    put_ltx(
        &replica,
        0,
        Header::new(ps, 8, TxId(9), TxId(9), t0 + 1),
        &l0,
    );
    at(9);
    assert!(fs::read(&out).expect("read") == want, "after gap fill");

    // A damaged TXID 10 changes nothing, however often it is polled.
    let good_pages = [(4u32, page(ps, 4, 100))];
    let path = put_ltx(
        &replica,
        0,
        Header::new(ps, 8, TxId(10), TxId(10), t0 + 2),
        &good_pages,
    );
    let good = fs::read(&path).expect("read ltx");
    let mut bad = good.clone();
    bad[100 + 6 + 20] ^= 0xff;
    fs::write(&path, &bad).expect("corrupt");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        fs::read_to_string(&txid_file).expect("txid"),
        format!("{:016x}\n", 9)
    );
    assert!(
        fs::read(&out).expect("read") == want,
        "corrupt file was applied"
    );
    fs::write(&path, &good).expect("repair");
    set(&mut want, 4, 100);
    at(10);
    assert!(fs::read(&out).expect("read") == want, "after repair");

    let status = follower
        .term(Duration::from_secs(10))
        .expect("exit on SIGTERM");
    assert!(status.success());
}
