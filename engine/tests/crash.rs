//! Crash suites. The engine is SIGKILLed at random moments under a heavy write load with
//! application checkpoints mixed in, and restarted; whatever the replica held when the engine
//! reported it synced must survive, the chain must have no gaps and our restore and
//! Litestream's must give the same bytes. And an application killed mid-transaction must
//! never get its uncommitted frames replicated.
//!
//! `LS_SLOW=1` runs the long kill loop (60 kills); by default 8.

use crate::common;
use crate::harden;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use harden::*;
use rusqlite::Connection;

/// xorshift64*: enough randomness for kill timing, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("LS_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("crash seed: LS_CRASH_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The application: appends to `log` (ids 1, 2, 3, … each committed once) and rewrites rows of
/// `hot` in the same transactions; every so often a PASSIVE, RESTART or TRUNCATE checkpoint.
struct Writer {
    committed: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl Writer {
    fn start(db: &Path) -> Writer {
        let c = app(db, 4096);
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, v BLOB);
             CREATE TABLE IF NOT EXISTS hot(k INTEGER PRIMARY KEY, v BLOB);
             INSERT OR IGNORE INTO hot(k, v) SELECT value, randomblob(300)
               FROM generate_series(1, 2000);",
        )
        .or_else(|_| {
            // Without the series extension.
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, v BLOB);
                 CREATE TABLE IF NOT EXISTS hot(k INTEGER PRIMARY KEY, v BLOB);
                 WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 2000)
                 INSERT OR IGNORE INTO hot(k, v) SELECT x, randomblob(300) FROM s;",
            )
        })
        .expect("schema");
        let committed = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (cm, st) = (committed.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut c = c;
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut id: i64 = 0;
            let (mut txns, mut checkpoints) = (0u64, 0u64);
            while !st.load(Ordering::Relaxed) {
                let tx = c.transaction().expect("begin");
                for _ in 0..1 + rng.below(5) {
                    id += 1;
                    tx.execute("INSERT INTO log(id, v) VALUES (?1, randomblob(100))", [id])
                        .expect("insert");
                }
                for _ in 0..1 + rng.below(30) {
                    tx.execute(
                        "UPDATE hot SET v = randomblob(300) WHERE k = ?1",
                        [1 + rng.below(2000) as i64],
                    )
                    .expect("update");
                }
                tx.commit().expect("commit");
                cm.store(id, Ordering::SeqCst);
                txns += 1;
                if txns % 97 == 0 {
                    let mode = ["PASSIVE", "RESTART", "TRUNCATE"][rng.below(3) as usize];
                    // The engine holds a read transaction, so RESTART/TRUNCATE mostly come back
                    // busy; a short busy timeout keeps the load going.
                    c.busy_timeout(Duration::from_millis(50)).expect("busy");
                    let _ = c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                        r.get::<_, i64>(0)
                    });
                    c.busy_timeout(Duration::from_secs(10)).expect("busy");
                    checkpoints += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            (txns, checkpoints)
        });
        Writer {
            committed,
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("handle")
            .join()
            .expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn meta_root(db: &Path) -> PathBuf {
    let name = db.file_name().expect("name").to_string_lossy();
    db.with_file_name(format!(".{name}-litestream"))
}

/// `ls-restore -o out file://replica`, which must succeed.
fn our_restore(replica: &Path, out: &Path) {
    let _ = std::fs::remove_file(out);
    let o = restore_to(replica, out);
    assert!(o.status.success(), "ls-restore failed: {}", text(&o));
}

/// (count, max) of `log` ids; a consistent snapshot has count == max.
fn log_ids(db: &Path) -> (i64, i64) {
    let c = Connection::open(db).expect("open restored");
    c.query_row("SELECT count(*), coalesce(max(id), 0) FROM log", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .expect("count")
}

#[test]
#[ignore = "needs the real Litestream"]
fn sigkill_loop_loses_nothing_synced() {
    let ls = litestream();
    let kills = if std::env::var("LS_SLOW").is_ok_and(|v| v == "1") {
        60
    } else {
        8
    };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let config = dir.path().join("litestream.yml");
    fast_config(&config, &[(db.clone(), replica.clone())]);
    let log = dir.path().join("engine.log");
    let writer = Writer::start(&db);
    let mut rng = Rng::new();
    let meta = meta_root(&db);
    let out = dir.path().join("check.db");
    let mut durable: i64 = 0;
    let mut checked = 0;
    for k in 0..kills {
        let e = Engine::start(&config, &log);
        if rng.below(4) == 0 {
            // Early: during startup, recovery of the previous run or its first sync.
            std::thread::sleep(Duration::from_millis(rng.below(150)));
            e.kill9();
            continue;
        }
        std::thread::sleep(Duration::from_millis(50 + rng.below(350)));
        // A commit is durable once the replica holds an L0 file made by a sync pass that
        // started after the commit: two TXIDs past the newest file that existed (locally or
        // in the replica) when the commit returned.
        let c = writer.committed.load(Ordering::SeqCst);
        let m0 = max_l0(&meta).max(max_l0(&replica));
        let deadline = Instant::now() + Duration::from_secs(30);
        while max_l0(&replica) < m0 + 2 {
            assert!(
                Instant::now() < deadline,
                "kill {k}: replica stuck at TXID {} (waiting for {}); log:\n{}",
                max_l0(&replica),
                m0 + 2,
                e.tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        durable = durable.max(c);
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        e.kill9();
        // The replica as the dead engine left it restores and holds every durable commit.
        our_restore(&replica, &out);
        integrity_ok(&out);
        let (n, max) = log_ids(&out);
        if n != max {
            let theirs = dir.path().join("litestream-check.db");
            litestream_restore(&ls, &replica, &theirs);
            let t = log_ids(&theirs);
            let kept = dir.keep();
            panic!(
                "kill {k}: restored log has holes ({n} rows, max id {max}; litestream: {t:?}); \
                 files kept in {}",
                kept.display()
            );
        }
        assert!(
            max >= durable,
            "kill {k}: commit {durable} was synced but the restore ends at {max}"
        );
        checked += 1;
    }
    let (txns, checkpoints) = writer.finish();
    let last = log_ids(&db).1;
    let e = Engine::start(&config, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        our_restore(&replica, &out);
        if log_ids(&out).1 == last {
            break;
        }
        assert!(Instant::now() < deadline, "final state never replicated");
        std::thread::sleep(Duration::from_millis(200));
    }
    e.stop();
    let l0 = assert_chain(&replica);
    our_restore(&replica, &out);
    integrity_ok(&out);
    assert_eq!(
        dump(&db),
        dump(&out),
        "final restore differs from the source"
    );
    let theirs = dir.path().join("litestream.db");
    litestream_restore(&ls, &replica, &theirs);
    assert!(
        std::fs::read(&out).expect("ours") == std::fs::read(&theirs).expect("theirs"),
        "ls-restore and litestream restore differ"
    );
    eprintln!(
        "sigkill loop: {kills} kills survived ({checked} with a durability check), {txns} \
         transactions, {last} log rows, {checkpoints} application checkpoints, {l0} L0 files, \
         last durable id {durable}, {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

/// The child half of `writer_killed_mid_transaction`, which runs this test binary again with
/// `--ignored --exact crash::writer_child` and `LS_CRASH_WRITER_DB` set. Not a test of its own.
#[test]
#[ignore = "the child process of crash::writer_killed_mid_transaction, not a test"]
fn writer_child() {
    let db = std::env::var("LS_CRASH_WRITER_DB")
        .expect("LS_CRASH_WRITER_DB (set by crash::writer_killed_mid_transaction)");
    let c = app(Path::new(&db), 4096);
    c.execute_batch("CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
        .expect("schema");
    let base: i64 = c
        .query_row("SELECT coalesce(max(id), 0) FROM w", [], |r| r.get(0))
        .expect("max");
    for i in 1..=200 {
        c.execute(
            "INSERT INTO w(id, tag, v) VALUES (?1, 'committed', randomblob(200))",
            [base + i],
        )
        .expect("insert");
    }
    let mut out = std::io::stdout();
    writeln!(out, "COMMITTED {}", base + 200).expect("stdout");
    out.flush().expect("flush");
    let wal = format!("{db}-wal");
    let before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // A tiny page cache makes SQLite spill uncommitted pages into the WAL.
    c.execute_batch("PRAGMA cache_size = 5; BEGIN")
        .expect("begin");
    let mut i = base + 200;
    loop {
        i += 1;
        c.execute(
            "INSERT INTO w(id, tag, v) VALUES (?1, 'UNCOMMITTED', randomblob(500))",
            [i],
        )
        .expect("insert");
        if i % 100 == 0 {
            let now = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            if now > before + (2 << 20) {
                break;
            }
        }
    }
    writeln!(out, "SPILLED").expect("stdout");
    out.flush().expect("flush");
    std::thread::sleep(Duration::from_secs(600));
}

fn count_tag(db: &Path, tag: &str) -> i64 {
    let c = Connection::open(db).expect("open");
    c.query_row("SELECT count(*) FROM w WHERE tag = ?1", [tag], |r| r.get(0))
        .expect("count")
}

#[test]
#[ignore = "needs the real Litestream"]
fn writer_killed_mid_transaction() {
    let ls = litestream();
    let k = case_with("");
    drop(app(&k.db, 4096));
    let e = Engine::start(&k.config, &k.log);
    let out = k.root.join("check.db");
    let rounds = 3;
    for round in 1..=rounds {
        let mut child = Command::new(std::env::current_exe().expect("test exe"))
            .args([
                "--ignored",
                "--exact",
                "crash::writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LS_CRASH_WRITER_DB", &k.db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut committed = 0i64;
        for l in lines.by_ref() {
            let l = l.expect("line");
            // The harness prints "test writer_child ... " before the child's first line.
            if let Some(i) = l.find("COMMITTED ") {
                committed = l[i + 10..].trim().parse().expect("n");
            }
            if l.ends_with("SPILLED") {
                break;
            }
        }
        assert_eq!(committed, 200 * round, "writer child did not get going");
        // Let the engine see the spilled frames (several passes), then kill the writer.
        std::thread::sleep(Duration::from_millis(700));
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(500));
        our_restore(&k.replica, &out);
        integrity_ok(&out);
        assert_eq!(count_tag(&out, "UNCOMMITTED"), 0, "round {round}");
        assert_eq!(count_tag(&out, "committed"), committed, "round {round}");
    }
    // The next writer recovers the WAL (dropping the torn transaction) and carries on.
    let c = app(&k.db, 4096);
    c.execute("INSERT INTO w(tag, v) VALUES ('after', randomblob(10))", [])
        .expect("insert after");
    drop(c);
    std::thread::sleep(Duration::from_millis(500));
    e.stop();
    our_restore(&k.replica, &out);
    integrity_ok(&out);
    assert_eq!(count_tag(&out, "UNCOMMITTED"), 0);
    assert_eq!(count_tag(&out, "after"), 1);
    assert_same_rows(&out, &k.db);
    let theirs = k.root.join("litestream.db");
    litestream_restore(&ls, &k.replica, &theirs);
    assert_same_rows(&out, &theirs);
    assert_chain(&k.replica);
}
