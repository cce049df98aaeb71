//! The checkpoint procedure driven directly through the library: a TRUNCATE checkpoint must be
//! followed by a boundary snapshot, and the replica must still restore exactly.

use crate::common;

use common::*;
use engine::config;
use engine::follower::Follower;
use engine::sqlite::CheckpointMode;
use ltx_codec::{LtxFile, TxId};
use std::sync::Arc;

fn upload_all(meta_root: &std::path::Path, replica: &std::path::Path) {
    let l0 = meta_root.join("ltx/0");
    let dst = replica.join("ltx/0");
    std::fs::create_dir_all(&dst).expect("mkdir");
    for e in std::fs::read_dir(&l0).expect("read") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
}

/// One application database with its table, and a follower of it (opened) replicating to the
/// replica directory beside it.
fn followed() -> (OneDb, Follower) {
    let one = one_db();
    let text = format!(
        "dbs:\n  - path: {}\n    replica:\n      path: {}\n",
        one.db.display(),
        one.replica.display()
    );
    let cfg = config::parse(&text, false).expect("config");
    let mut f = Follower::new(Arc::new(cfg.dbs[0].clone()));
    assert!(f.open().expect("open"));
    (one, f)
}

#[test]
#[ignore = "needs the real Litestream"]
fn truncate_checkpoint_writes_a_boundary_snapshot() {
    let ls = litestream();
    let (one, mut f) = followed();
    let (dir, db, replica, app) = (&one.dir, &one.db, &one.replica, &one.conn);
    insert_rows(app, 0, 200, 100);
    let t1 = f.sync().expect("sync");
    assert_eq!(t1, TxId(1));

    insert_rows(app, 200, 100, 100);
    assert!(f.checkpoint(CheckpointMode::Truncate).expect("truncate"));
    let pos = f.pos();
    // Copy before TRUNCATE, then the boundary snapshot (MinTXID != 1 but every page).
    let bytes = std::fs::read(f.meta().l0_path(pos)).expect("read boundary");
    let ltx = LtxFile::open_verified(&bytes).expect("valid");
    let h = *ltx.header();
    assert_ne!(h.min_txid, TxId(1));
    assert_eq!(h.wal_offset, 32);
    assert_eq!(
        ltx.index().entries.len() as u32,
        h.commit,
        "not a full snapshot"
    );

    insert_rows(app, 300, 50, 100);
    f.sync().expect("sync after truncate");
    f.final_sync().expect("final");
    f.close();
    upload_all(f.meta().root(), replica);
    assert_restores(&ls, db, replica, dir.path());
}

/// A TRUNCATE restart gets a WAL of several cuts' size cut down to its new generation
/// (docs/checkpoints.md#cutting-the-wal-down), and what follows still restores exactly.
#[test]
fn truncate_cuts_a_large_wal_down_to_its_new_generation() {
    let (one, mut f) = followed();
    let (dir, db, replica, app) = (&one.dir, &one.db, &one.replica, &one.conn);
    app.execute_batch("PRAGMA wal_autocheckpoint = 0; BEGIN;")
        .expect("begin");
    insert_rows(app, 0, 25_000, 4000);
    app.execute_batch("COMMIT;").expect("commit");
    f.sync().expect("sync");
    let wal = dir.path().join("app.db-wal");
    let len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let before = len();
    assert!(
        before > 96 << 20,
        "WAL of {before} bytes: too small to need several cuts"
    );

    assert!(f.checkpoint(CheckpointMode::Truncate).expect("truncate"));
    // Cut in steps on a thread of its own, the write lock let go between steps.
    assert!(
        wait_until(std::time::Duration::from_secs(30), || len() < 1 << 20),
        "WAL still {} bytes 30 s after the TRUNCATE restart (was {before})",
        len()
    );

    insert_rows(app, 30_000, 100, 100);
    f.sync().expect("sync after truncate");
    f.final_sync().expect("final");
    f.close();
    upload_all(f.meta().root(), replica);
    let out = dir.path().join("restored.db");
    restore_file_replica(replica, &out);
    assert_same_rows(db, &out);
}

/// The last pass before the engine stops may checkpoint; whatever it writes to the WAL itself
/// (the `_litestream_seq` write after a checkpoint) must be in an L0 file before it returns, or
/// the replica stops one transaction short of the database. A reader keeps the WAL from being
/// restarted: begun before the last commits, it also keeps the checkpoint from copying them (no
/// write is then needed); begun after, the checkpoint copies everything and the write that would
/// restart the WAL stays in it.
#[test]
fn the_final_sync_leaves_no_write_of_ours_behind() {
    for reader_first in [true, false] {
        let (one, mut f) = followed();
        let (dir, db, replica, app) = (&one.dir, &one.db, &one.replica, &one.conn);
        app.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .expect("autocheckpoint off");
        insert_rows(app, 0, 100, 100);
        f.sync().expect("sync");
        let reader = rusqlite::Connection::open(db).expect("reader");
        let begin = || {
            reader
                .execute_batch("BEGIN; SELECT COUNT(*) FROM t;")
                .expect("read transaction");
        };
        if reader_first {
            begin();
        }
        // Over the default min-checkpoint-page-count (1,000 pages) of WAL.
        insert_rows(app, 100, 1500, 3000);
        if !reader_first {
            begin();
        }
        f.final_sync().expect("final");
        f.close();
        reader.execute_batch("COMMIT;").expect("end read");
        upload_all(f.meta().root(), replica);
        let out = dir.path().join("restored.db");
        restore_file_replica(replica, &out);
        assert_same_rows(db, &out);
    }
}
