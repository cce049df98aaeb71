//! Shipping L0 files: `max-sync-ltx-files` uploads a backlog in batches of that many files
//! (issue 18 item 5), each logged as Litestream logs it, and the replica still restores exactly.

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
