//! Shipping L0 files: `max-sync-ltx-files` uploads a backlog in batches of that many files,
//! each logged as Litestream logs it, and `auto-recover` resets a damaged local state (issue 18
//! item 5); the replica still restores exactly.

use std::time::Duration;

use crate::common;
use common::*;

/// A replica that starts empty while the meta directory holds several L0 files: the engine
/// uploads them two at a time.
#[test]
fn max_sync_ltx_files_uploads_a_backlog_in_batches() {
    let one = one_db();
    let (db, cfg) = (&one.db, &one.cfg);
    let first = one.dir.path().join("first");
    fast_config(cfg, &[(db.clone(), first.clone())]);
    let e = Engine::start(cfg, &one.dir.path().join("first.log"));
    for i in 0..6 {
        insert_rows(&one.conn, i * 10, 10, 100);
        let n = l0_names(&first).len();
        assert!(
            wait_until(Duration::from_secs(20), || l0_names(&first).len() > n),
            "no new L0 file; log:\n{}",
            e.tail()
        );
    }
    e.stop();
    let local = l0_names(&one.dir.path().join(".app.db-litestream"));
    assert!(local.len() >= 7, "{local:?}");

    // The same database to an empty replica, two files per batch.
    write_config(cfg, &[(db.clone(), one.replica.clone())], FAST);
    let text = std::fs::read_to_string(cfg).expect("config");
    let text = text.replace(
        "    replica:\n",
        "    replica:\n      sync-interval: 100ms\n      max-sync-ltx-files: 2\n",
    );
    std::fs::write(cfg, text).expect("config");
    let log = one.dir.path().join("second.log");
    let e = Engine::start(cfg, &log);
    assert!(
        wait_until(Duration::from_secs(20), || l0_names(&one.replica).len()
            >= local.len()),
        "backlog not uploaded; log:\n{}",
        e.tail()
    );
    e.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let batches: Vec<u64> = text
        .lines()
        .filter(|l| l.contains("replica sync"))
        .filter_map(|l| l.split("files=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        batches.len() >= local.len() / 2 && batches.iter().all(|&n| n <= 2),
        "not in batches of at most 2: {batches:?}"
    );
    assert!(text.contains("replica sync limited"), "{text}");
    let out = one.dir.path().join("restored.db");
    restore_file_replica(&one.replica, &out);
    assert_same_rows(db, &out);
}

/// `auto-recover` (issue 18 item 5): the last local L0 file is corrupt, so the database cannot
/// verify its position. Without the option that is a sync error until someone repairs it (as
/// in Litestream); with it the engine removes its local L0 files, adopts the replica's position
/// and snapshots, and the replica restores to the database, rows written meanwhile included.
#[test]
fn auto_recover_resets_a_corrupt_local_state() {
    let one = one_db();
    let (db, cfg) = (&one.db, &one.cfg);
    fast_config(cfg, &[(db.clone(), one.replica.clone())]);
    let e = Engine::start(cfg, &one.dir.path().join("first.log"));
    insert_rows(&one.conn, 0, 20, 100);
    assert!(
        wait_for_l0(&one.replica, 1, Duration::from_secs(20)),
        "{}",
        e.tail()
    );
    e.stop();
    let meta = one.dir.path().join(".app.db-litestream");
    let last = l0_names(&meta).pop().expect("a local L0 file");
    std::fs::write(meta.join("ltx/0").join(&last), b"not an ltx file").expect("corrupt it");
    insert_rows(&one.conn, 100, 20, 100);

    let text = std::fs::read_to_string(cfg).expect("config");
    std::fs::write(cfg, format!("auto-recover: true\n{text}")).expect("config");
    let log = one.dir.path().join("second.log");
    let e = Engine::start(cfg, &log);
    let recovered = || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("auto-recovery complete, resuming replication"))
    };
    assert!(
        wait_until(Duration::from_secs(20), recovered),
        "no auto-recovery:\n{}",
        e.tail()
    );
    insert_rows(&one.conn, 200, 20, 100);
    let newest = || l0_names(&one.replica).last().cloned();
    let before = newest();
    assert!(
        wait_until(Duration::from_secs(20), || newest() != before),
        "nothing replicated after the recovery:\n{}",
        e.tail()
    );
    e.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("auto-recovery enabled, resetting local state")
            && text.contains(&last)
            && text.contains("corrupt"),
        "the error did not name the corrupt file:\n{text}"
    );
    let out = one.dir.path().join("restored.db");
    restore_file_replica(&one.replica, &out);
    assert_same_rows(db, &out);
}
