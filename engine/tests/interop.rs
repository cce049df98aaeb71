//! End to end: `ls-engine replicate` writes a file replica, the real Litestream 0.5.17 restores
//! it, and the restored database equals the source.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
#[ignore = "needs the real Litestream"]
fn many_small_transactions() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    for round in 0..20 {
        for i in 0..25 {
            insert_rows(&app, round * 25 + i, 1, 50);
        }
        sleep_ms(30);
    }
    app.execute("UPDATE t SET v = 'updated' WHERE k % 7 = 0", [])
        .expect("update");
    app.execute("DELETE FROM t WHERE k % 11 = 0", [])
        .expect("delete");
    e.stop();
    assert!(l0_names(&c.replica).len() > 1);
    // Replica files carry the header timestamp as their mtime (CreatedAt, docs/replica-layout.md#paths-and-timestamps-per-backend), and are
    // byte-identical to the local copies.
    for n in l0_names(&c.replica) {
        let p = c.replica.join("ltx/0").join(&n);
        let bytes = std::fs::read(&p).expect("read");
        let h = ltx_codec::Header::decode(&bytes).expect("header");
        let mtime = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .expect("mtime")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch");
        assert_eq!(mtime.as_millis() as i64, h.timestamp, "{n}");
        let local = std::fs::read(c.root.join(".app.db-litestream/ltx/0").join(&n)).expect("local");
        assert_eq!(local, bytes, "{n}");
    }
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn restart_engine() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 0, 100, 100);
    sleep_ms(300);
    e.stop();
    // Writes while nothing replicates; SQLite may checkpoint them on its own.
    insert_rows(&app, 100, 100, 100);
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 200, 100, 100);
    sleep_ms(300);
    e.stop();
    let local = l0_names(&c.root.join(".app.db-litestream"));
    assert_eq!(
        local,
        l0_names(&c.replica),
        "local and replica L0 trees differ"
    );
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn sigkill_mid_write_then_restart() {
    let ls = litestream();
    let c = case_with("");
    let db = c.db.clone();
    let app0 = app(&c.db, 4096);
    setup_table(&app0);
    let e = Engine::start(&c.config, &c.log);
    let writer = std::thread::spawn(move || {
        let app = app(&db, 4096);
        for i in 0..60 {
            app.execute_batch("BEGIN").expect("begin");
            insert_rows(&app, i * 50, 50, 200);
            app.execute_batch("COMMIT").expect("commit");
            sleep_ms(10);
        }
    });
    sleep_ms(400);
    e.kill9();
    writer.join().expect("writer");
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app0, 10_000, 20, 10);
    sleep_ms(300);
    e.stop();
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn application_truncate_checkpoint() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    // TRUNCATE waits for readers through the busy handler, and the engine's long read
    // transaction is one (as Litestream's is): keep the wait short.
    app.busy_timeout(Duration::from_millis(200)).expect("busy");
    let e = Engine::start(&c.config, &c.log);
    for round in 0..4 {
        insert_rows(&app, round * 100, 100, 300);
        sleep_ms(250);
        let _: (i64, i64, i64) = app
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("checkpoint");
        insert_rows(&app, 10_000 + round * 10, 10, 10);
        sleep_ms(250);
    }
    e.stop();
    assert_restores(&ls, &c.db, &c.replica, &c.root);

    // With the engine stopped nothing holds the WAL, so the application's TRUNCATE really
    // empties it; the engine must notice on start-up and snapshot.
    insert_rows(&app, 20_000, 50, 100);
    let (busy, _, _): (i64, i64, i64) = app
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("checkpoint");
    assert_eq!(busy, 0, "TRUNCATE should succeed with no reader");
    let wal = c.root.join("app.db-wal");
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    insert_rows(&app, 30_000, 5, 5);
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 40_000, 50, 100);
    sleep_ms(400);
    e.stop();
    let log = std::fs::read_to_string(&c.log).expect("log");
    assert!(
        log.contains("snapshot"),
        "no snapshot after the WAL was truncated"
    );
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

fn page_size_case(ps: u32) {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, ps);
    setup_table(&app);
    let got: u32 = app
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .expect("page size");
    assert_eq!(got, ps);
    let e = Engine::start(&c.config, &c.log);
    for round in 0..5 {
        insert_rows(&app, round * 200, 200, 120);
        sleep_ms(150);
    }
    e.stop();
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn page_size_512() {
    page_size_case(512);
}

#[test]
#[ignore = "needs the real Litestream"]
fn page_size_4096() {
    page_size_case(4096);
}

#[test]
#[ignore = "needs the real Litestream"]
fn page_size_65536() {
    page_size_case(65536);
}

#[test]
#[ignore = "needs the real Litestream"]
fn vacuum_shrinks_file() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    app.execute_batch("BEGIN").expect("begin");
    insert_rows(&app, 0, 3000, 200);
    app.execute_batch("COMMIT").expect("commit");
    sleep_ms(300);
    app.execute("DELETE FROM t WHERE k > 100", [])
        .expect("delete");
    sleep_ms(300);
    app.execute_batch("VACUUM").expect("vacuum");
    sleep_ms(300);
    insert_rows(&app, 5000, 10, 10);
    sleep_ms(300);
    e.stop();
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

/// A running `litestream replicate`, killed if the test fails before stopping it.
struct LsChild(Option<std::process::Child>);

impl Drop for LsChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn litestream_replicate(ls: &Path, config: &Path, log: &Path) -> LsChild {
    let mut cmd = litestream_cmd(ls);
    LsChild(Some(spawn_replicate(
        &mut cmd,
        config,
        log,
        false,
        "start litestream",
    )))
}

fn stop_child(mut l: LsChild) {
    let Some(mut c) = l.0.take() else { return };
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
    let st = c.wait().expect("wait");
    assert!(st.success(), "litestream exited with {st}");
}

#[test]
#[ignore = "needs the real Litestream"]
fn takeover_from_litestream_and_back() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);

    let ls_log = c.root.join("litestream.log");
    let l = litestream_replicate(&ls, &c.config, &ls_log);
    insert_rows(&app, 0, 100, 100);
    assert!(
        wait_for_l0(&c.replica, 1, Duration::from_secs(20)),
        "litestream made no L0 files; log:\n{}",
        std::fs::read_to_string(&ls_log).unwrap_or_default()
    );
    sleep_ms(500);
    stop_child(l);
    let n_ls = l0_names(&c.replica).len();

    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 100, 100, 100);
    sleep_ms(400);
    e.stop();
    let n_engine = l0_names(&c.replica).len();
    assert!(n_engine > n_ls, "ls-engine did not continue the replica");
    assert_restores(&ls, &c.db, &c.replica, &c.root);

    let l = litestream_replicate(&ls, &c.config, &ls_log);
    sleep_ms(300);
    insert_rows(&app, 200, 100, 100);
    assert!(
        wait_for_l0(&c.replica, n_engine + 1, Duration::from_secs(20)),
        "litestream did not continue after ls-engine"
    );
    sleep_ms(1500);
    stop_child(l);
    assert_restores(&ls, &c.db, &c.replica, &c.root);
    // The TXID sequence has no holes: each file follows the previous one.
    let names = l0_names(&c.replica);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(n, &format!("{0:016x}-{0:016x}.ltx", i + 1), "{names:?}");
    }
}

#[test]
#[ignore = "slow suite; needs the real Litestream"]
fn large_transaction_over_64mib() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 0, 10, 10);
    sleep_ms(300);
    app.execute_batch("BEGIN").expect("begin");
    // ~80 MiB of row data in one transaction.
    for chunk in 0..80 {
        insert_rows(&app, 1000 + chunk * 1000, 1000, 1000);
    }
    app.execute_batch("COMMIT").expect("commit");
    insert_rows(&app, 999_999, 5, 10);
    sleep_ms(2000);
    e.stop();
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

/// Header fields and page numbers of each L0 file, timestamps and salts aside (salt2 is random
/// per WAL generation).
fn l0_shape(root: &Path) -> Vec<(String, u32, i64, i64, Vec<u32>)> {
    l0_names(root)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(root.join("ltx/0").join(&n)).expect("read L0");
            let f = ltx_codec::LtxFile::open_verified(&bytes).expect("valid L0");
            let h = *f.header();
            assert_eq!(h.flags, 2);
            assert_eq!(h.min_txid, h.max_txid);
            let pages = f.index().entries.iter().map(|e| e.pgno).collect();
            (n, h.commit, h.wal_offset, h.wal_size, pages)
        })
        .collect()
}

/// One scripted history, each step a single SQLite transaction well apart from the next, so
/// both programs make one L0 file per step.
/// Waits until the tool has written a new local L0 file (more than `before`) and then written no
/// other for two monitor ticks, so the next step's commit cannot share an L0 file with this
/// one's (or with the checkpoint's `_litestream_seq` file that may follow it). Returns the count.
fn settled_l0(meta_l0: &Path, before: usize) -> usize {
    let count = || std::fs::read_dir(meta_l0).map_or(0, |d| d.count());
    assert!(
        wait_until(Duration::from_secs(60), || count() > before),
        "no new L0 file in {} after {before}",
        meta_l0.display()
    );
    let mut n = count();
    let mut since = std::time::Instant::now();
    while since.elapsed() < Duration::from_millis(2200) {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != n {
            n = now;
            since = std::time::Instant::now();
        }
    }
    n
}

fn scripted_history(db: &Path, start: &dyn Fn(), stop: &dyn Fn()) {
    let meta_l0 = db
        .parent()
        .expect("db dir")
        .join(".app.db-litestream/ltx/0");
    start();
    let mut l0 = settled_l0(&meta_l0, 0);
    let app = app(db, 4096);
    let steps: [&dyn Fn(&rusqlite::Connection); 5] = [
        &|c| {
            c.execute("INSERT INTO t(k, v) VALUES (1, 'hello')", [])
                .map(|_| ())
                .expect("insert")
        },
        &|c| {
            c.execute_batch("BEGIN").expect("begin");
            insert_rows(c, 10, 300, 100);
            c.execute_batch("COMMIT").expect("commit");
        },
        &|c| {
            c.execute("UPDATE t SET v = 'changed' WHERE k < 50", [])
                .map(|_| ())
                .expect("update")
        },
        &|c| {
            c.execute("DELETE FROM t WHERE k > 200", [])
                .map(|_| ())
                .expect("delete")
        },
        &|c| {
            c.execute("INSERT INTO t(k, v) VALUES (2, 'bye')", [])
                .map(|_| ())
                .expect("insert")
        },
    ];
    for step in steps {
        step(&app);
        // Litestream looks once per 1 s monitor tick: wait for the step's own L0 file rather
        // than for a fixed time, which a busy machine can outlast.
        l0 = settled_l0(&meta_l0, l0);
    }
    drop(app);
    stop();
}

#[test]
#[ignore = "needs the real Litestream"]
fn same_l0_tree_as_litestream() {
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = dir.path().join("seed.db");
    setup_table(&app(&seed, 4096));
    let mut shapes = Vec::new();
    for who in ["litestream", "ls-engine"] {
        let root = dir.path().join(who);
        std::fs::create_dir_all(&root).expect("mkdir");
        let db = root.join("app.db");
        std::fs::copy(&seed, &db).expect("copy seed");
        let replica = root.join("replica");
        let config = root.join("litestream.yml");
        // Same settings for both; a low checkpoint threshold puts a PASSIVE checkpoint (and
        // its WAL restart) into the history.
        write_config(
            &config,
            &[(db.clone(), replica.clone())],
            "min-checkpoint-page-count: 20\n",
        );
        let log = root.join("log");
        let running = std::cell::RefCell::new(None);
        if who == "litestream" {
            scripted_history(
                &db,
                &|| *running.borrow_mut() = Some(litestream_replicate(&ls, &config, &log)),
                &|| stop_child(running.borrow_mut().take().expect("running")),
            );
        } else {
            let running = std::cell::RefCell::new(None);
            scripted_history(
                &db,
                &|| *running.borrow_mut() = Some(Engine::start(&config, &log)),
                &|| running.borrow_mut().take().expect("running").stop(),
            );
        }
        let local = l0_shape(&root.join(".app.db-litestream"));
        let remote = l0_shape(&replica);
        assert_eq!(local, remote, "{who}: local and replica L0 files differ");
        shapes.push(remote);
        assert_restores(&ls, &db, &replica, &root);
    }
    assert!(
        shapes[1].len() >= 7 && shapes[1].iter().skip(1).any(|s| s.2 == 32),
        "history too short to compare: {:?}",
        shapes[1]
    );
    if shapes[0] != shapes[1] {
        let first = shapes[0]
            .iter()
            .zip(&shapes[1])
            .position(|(a, b)| a != b)
            .unwrap_or(shapes[0].len().min(shapes[1].len()));
        panic!(
            "L0 trees differ at file {first}: Litestream {:?}, ls-engine {:?} ({} vs {} files)",
            shapes[0].get(first),
            shapes[1].get(first),
            shapes[0].len(),
            shapes[1].len()
        );
    }
}

#[test]
#[ignore = "needs the real Litestream"]
fn database_behind_replica_continues_numbering() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 0, 50, 100);
    sleep_ms(300);
    insert_rows(&app, 50, 50, 100);
    sleep_ms(300);
    e.stop();
    let before = l0_names(&c.replica);
    // Local state lost (docs/wal.md#database-behind-replica): the engine must adopt the replica's newest L0 and go on from it.
    std::fs::remove_dir_all(c.root.join(".app.db-litestream")).expect("remove meta");
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 100, 50, 100);
    sleep_ms(400);
    e.stop();
    let after = l0_names(&c.replica);
    assert!(after.len() > before.len(), "{before:?} -> {after:?}");
    assert_eq!(&after[..before.len()], &before[..]);
    let log = std::fs::read_to_string(&c.log).expect("log");
    assert!(log.contains("detected database behind replica"), "{log}");
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn one_failing_database_does_not_stop_the_others() {
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = (dir.path().join("good.db"), dir.path().join("good-replica"));
    let bad = (dir.path().join("bad.db"), dir.path().join("bad-replica"));
    let config = dir.path().join("litestream.yml");
    fast_config(&config, &[bad.clone(), good.clone()]);
    let ga = app(&good.0, 4096);
    setup_table(&ga);
    let ba = app(&bad.0, 4096);
    setup_table(&ba);
    // A corrupt last local L0 file: the bad database cannot verify its position.
    let corrupt = dir
        .path()
        .join(".bad.db-litestream/ltx/0/0000000000000005-0000000000000005.ltx");
    std::fs::create_dir_all(corrupt.parent().expect("parent")).expect("mkdir");
    std::fs::write(&corrupt, b"not an ltx file").expect("corrupt");

    let log = dir.path().join("engine.log");
    let e = Engine::start(&config, &log);
    for i in 0..5 {
        insert_rows(&ga, i * 20, 20, 50);
        insert_rows(&ba, i * 20, 20, 50);
        sleep_ms(200);
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("sync error") && text.contains("bad.db"),
        "bad database error not reported:\n{text}"
    );
    // Repair it: the engine retries with backoff and picks it up.
    std::fs::remove_file(&corrupt).expect("repair");
    sleep_ms(3000);
    insert_rows(&ba, 1000, 5, 5);
    sleep_ms(500);
    e.stop();
    std::fs::create_dir_all(dir.path().join("g")).expect("mkdir");
    assert_restores(&ls, &good.0, &good.1, &dir.path().join("g"));
    std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
    assert_restores(&ls, &bad.0, &bad.1, &dir.path().join("b"));
}

#[test]
#[ignore = "needs the real Litestream"]
fn once_flag_and_args_form() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    insert_rows(&app, 0, 100, 100);
    let st = std::process::Command::new(ENGINE)
        .args(["replicate", "-once"])
        .arg(&c.db)
        .arg(format!("file://{}", c.replica.display()))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run");
    assert!(st.success());
    assert_eq!(l0_names(&c.replica).len(), 1);
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn once_force_snapshot_writes_level_9() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    insert_rows(&app, 0, 300, 100);
    let run = || {
        let st = std::process::Command::new(ENGINE)
            .args(["replicate", "-once", "-force-snapshot", "-config"])
            .arg(&c.config)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run");
        assert!(st.success());
    };
    run();
    insert_rows(&app, 300, 10, 10);
    run();
    let l9: Vec<String> = std::fs::read_dir(c.replica.join("ltx/9"))
        .expect("level 9")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        l9.iter()
            .any(|n| n == "0000000000000001-0000000000000002.ltx"),
        "{l9:?}"
    );
    // Restore from the snapshot alone: drop the L0 files.
    std::fs::remove_dir_all(c.replica.join("ltx/0")).expect("remove L0");
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn deleted_database_is_reported_and_picked_up_again() {
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = (dir.path().join("a.db"), dir.path().join("a-replica"));
    let b = (dir.path().join("b.db"), dir.path().join("b-replica"));
    let config = dir.path().join("litestream.yml");
    fast_config(&config, &[a.clone(), b.clone()]);
    let aa = app(&a.0, 4096);
    setup_table(&aa);
    let ba = app(&b.0, 4096);
    setup_table(&ba);
    let log = dir.path().join("engine.log");
    let e = Engine::start(&config, &log);
    insert_rows(&aa, 0, 20, 20);
    insert_rows(&ba, 0, 20, 20);
    sleep_ms(400);
    drop(aa);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = a.0.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    insert_rows(&ba, 20, 20, 20);
    sleep_ms(600);
    // A new database at the same path: the engine reopens it and snapshots it.
    let aa = app(&a.0, 4096);
    setup_table(&aa);
    insert_rows(&aa, 500, 30, 30);
    sleep_ms(2500);
    insert_rows(&ba, 40, 5, 5);
    sleep_ms(400);
    e.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("a.db"), "{text}");
    for l in text
        .lines()
        .filter(|l| l.contains("a.db") && !l.contains("upload"))
    {
        eprintln!("{}", l.get(28..).unwrap_or(l));
    }
    for (name, (db, rep)) in [("a", &a), ("b", &b)] {
        let out = dir.path().join(name);
        std::fs::create_dir_all(&out).expect("mkdir");
        assert_restores(&ls, db, rep, &out);
    }
}

#[test]
#[ignore = "needs the real Litestream"]
fn emergency_truncate_threshold() {
    let ls = litestream();
    let c = case_with("");
    // Regular checkpoints off in effect; the emergency threshold at 30 pages does the work.
    write_config(
        &c.config,
        &[(c.db.clone(), c.replica.clone())],
        "monitor-interval: 100ms\nmin-checkpoint-page-count: 100000\ntruncate-page-n: 30\n",
    );
    let app = app(&c.db, 4096);
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    for round in 0..6 {
        insert_rows(&app, round * 100, 100, 200);
        sleep_ms(1200);
    }
    e.stop();
    let log = std::fs::read_to_string(&c.log).expect("log");
    assert!(log.contains("checkpoint"), "no checkpoint ran:\n{log}");
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn first_write_after_idle_ships_at_once_and_bursts_are_batched() {
    let ls = litestream();
    let c = case_with("");
    // Litestream's defaults: 1 s monitor and sync intervals.
    write_config(&c.config, &[(c.db.clone(), c.replica.clone())], "");
    let app = app(&c.db, 4096);
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    assert!(wait_for_l0(&c.replica, 1, Duration::from_secs(10)));
    sleep_ms(2500);
    let n0 = l0_names(&c.replica).len();
    let t = std::time::Instant::now();
    insert_rows(&app, 0, 1, 10);
    assert!(wait_for_l0(&c.replica, n0 + 1, Duration::from_secs(5)));
    let latency = t.elapsed();
    eprintln!("first write after idle reached the replica in {latency:?}");
    assert!(
        latency < Duration::from_millis(500),
        "took {latency:?}: looks like polling, not inotify"
    );
    // A burst of 200 transactions over ~2 s makes a handful of files, not 200.
    let n1 = l0_names(&c.replica).len();
    for i in 0..200 {
        insert_rows(&app, 100 + i, 1, 10);
        sleep_ms(10);
    }
    sleep_ms(1500);
    e.stop();
    let made = l0_names(&c.replica).len() - n1;
    eprintln!("200 transactions in ~2 s made {made} L0 files");
    assert!((1..=6).contains(&made), "{made} L0 files for the burst");
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn catch_up_in_max_sync_wal_bytes_chunks() {
    let ls = litestream();
    let c = case_with("");
    write_config(
        &c.config,
        &[(c.db.clone(), c.replica.clone())],
        "monitor-interval: 100ms\nmax-sync-wal-bytes: 64KiB\nmin-checkpoint-page-count: 100000\n",
    );
    let app = app(&c.db, 4096);
    // Keep SQLite from checkpointing on its own while the engine is away.
    app.execute_batch("PRAGMA wal_autocheckpoint = 0")
        .expect("pragma");
    setup_table(&app);
    let e = Engine::start(&c.config, &c.log);
    insert_rows(&app, 0, 5, 5);
    sleep_ms(300);
    e.stop();
    let before = l0_names(&c.replica).len();
    // ~60 transactions of ~16 KiB of WAL each, written while nothing replicates.
    for i in 0..60 {
        app.execute_batch("BEGIN").expect("begin");
        insert_rows(&app, 1000 + i * 30, 30, 300);
        app.execute_batch("COMMIT").expect("commit");
    }
    let e = Engine::start(&c.config, &c.log);
    sleep_ms(800);
    e.stop();
    let made = l0_names(&c.replica).len() - before;
    assert!(
        made >= 5,
        "catch-up made only {made} L0 files; limit not applied"
    );
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}

#[test]
#[ignore = "needs the real Litestream"]
fn exec_subprocess_stops_replication_with_its_exit_code() {
    let ls = litestream();
    let c = case_with("");
    let app = app(&c.db, 4096);
    setup_table(&app);
    insert_rows(&app, 0, 50, 50);
    let o = std::process::Command::new(ENGINE)
        .args(["replicate", "-exec", "sh -c 'sleep 0.5; exit 3'", "-config"])
        .arg(&c.config)
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run");
    // Litestream 0.5.17: status 1 and the child's failure as the error.
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "Error: exit status 3\n");
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}
