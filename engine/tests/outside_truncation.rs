//! Issue 14 item 5: files the engine reads (the WAL, its own L0 files, large ones included)
//! truncated from outside while it runs never kill the process. The engine maps no file (it
//! reads with positional reads), so a truncation is a short read and an error, not a SIGBUS.

use crate::common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;

#[test]
fn issue14_5_truncating_its_files_from_outside_never_kills_the_engine() {
    let k = Case::empty();
    write_config(&k.config, &[(k.db.clone(), k.replica.clone())], FAST);
    let app = app(&k.db, 4096);
    setup_table(&app);
    let e = Engine::start(&k.config, &k.log);

    // One transaction of ~12 MiB that does not compress: an L0 file over 8 MiB (the size the
    // old mapping began at).
    app.execute_batch(
        "CREATE TABLE big(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
         INSERT INTO big SELECT randomblob(65536) FROM n;",
    )
    .expect("big transaction");
    let l0_dir = k.root.join(".app.db-litestream/ltx/0");
    let big = || {
        fs::read_dir(&l0_dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .find(|f| f.metadata().is_ok_and(|m| m.len() > 8 << 20))
                .map(|f| f.path())
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || big().is_some()),
        "no L0 file over 8 MiB; log:\n{}",
        e.tail()
    );
    let big = big().expect("big L0 file");

    // Cut the big L0 file and the WAL under the engine, then make it read both again.
    fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .and_then(|f| f.set_len(100))
        .expect("truncate the L0 file");
    let wal = k.root.join("app.db-wal");
    let wal_len = fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .and_then(|f| f.set_len(wal_len / 3))
        .expect("truncate the WAL");
    // The application may now see a damaged WAL; only the engine's survival is the point.
    let _ = app.execute_batch("BEGIN; INSERT INTO t(k, v) VALUES (-1, 'after'); COMMIT;");
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !matches!(process_state(e.pid()), Some('Z') | None),
            "ls-engine died; log:\n{}",
            e.tail()
        );
    }
    let log = e.log.clone();
    let st = e.stop_status().expect("exit status");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let tail = tail.join("\n");
    assert_eq!(
        st.signal(),
        None,
        "ls-engine was killed by a signal ({st}); log:\n{tail}"
    );
}
