//! Retention end to end: `-once -enforce-retention` deletes what Litestream deletes, scheduled
//! retention deletes on time and every restore that should still work does, and disabled
//! retention deletes nothing remote. The replica helpers are `compaction.rs`'s.

use crate::common;
use crate::compaction::{
    capture_l0, files, levels_case, path_of, replay, replicate_workload, restore, try_restore,
    workload,
};

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
/// Every file name at levels 0..=9 of a file replica or meta directory.
fn all_files(root: &Path) -> BTreeMap<u8, Vec<(u64, u64)>> {
    (0u8..=9).map(|l| (l, files(root, l))).collect()
}

/// `replicate -once -enforce-retention` on two identical copies of a replica, its meta directory
/// and database: ls-engine and the real Litestream delete exactly the same files (old
/// snapshots, and level 1+ files below the oldest kept snapshot; L0 is left to its own
/// schedule), something is deleted, the newest file of every level stays, and both tools still
/// restore the latest state.
#[test]
#[ignore = "needs the real Litestream"]
fn once_enforce_retention_matches_litestream() {
    let (ls, lsr) = (litestream(), ls_restore_bin());
    let c = levels_case("snapshot:\n  interval: 2s\n  retention: 1h\nl0-retention: 1h\n");
    drop(replicate_workload(&c, 8));
    let before = all_files(&c.replica);
    assert!(before[&9].len() >= 2, "need several snapshots: {before:?}");
    // Everything written so far is older than the 1 s retention used below.
    std::thread::sleep(Duration::from_secs(2));

    let twin = tempfile::tempdir().expect("tempdir");
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", c.root.display()))
        .arg(twin.path())
        .status()
        .expect("cp");
    assert!(st.success(), "copy the case directory");
    let retain = |root: &Path| {
        let cfg = fs::read_to_string(&c.config).expect("read config");
        let cfg = cfg
            .replace("retention: 1h", "retention: 1s")
            .replace(&c.root.display().to_string(), &root.display().to_string());
        let path = root.join("retain.yml");
        fs::write(&path, cfg).expect("write config");
        path
    };
    let ours_cfg = retain(&c.root);
    let theirs_cfg = retain(twin.path());

    let o = Command::new(ENGINE)
        .args(["replicate", "-once", "-enforce-retention", "-config"])
        .arg(&ours_cfg)
        .output()
        .expect("run ls-engine");
    assert_ok(&o, "ls-engine -once -enforce-retention");
    let o = litestream_cmd(&ls)
        .args(["replicate", "-once", "-enforce-retention", "-config"])
        .arg(&theirs_cfg)
        .output()
        .expect("run litestream");
    assert_ok(&o, "litestream -once -enforce-retention");

    let ours = all_files(&c.replica);
    let theirs = all_files(&twin.path().join("replica"));
    assert_eq!(ours, theirs, "remote files left by ls-engine vs Litestream");
    let meta = |root: &Path| files(&root.join(".app.db-litestream"), 0);
    assert_eq!(
        meta(&c.root),
        meta(twin.path()),
        "local L0 files left by ls-engine vs Litestream"
    );
    assert!(
        ours[&9].len() < before[&9].len() && ours[&1].len() < before[&1].len(),
        "nothing was deleted: before {before:?}, after {ours:?}"
    );
    for (l, fs_) in &before {
        if let Some(last) = fs_.last() {
            assert!(
                ours[l].contains(last),
                "level {l}: newest file {last:?} deleted"
            );
        }
    }
    let out = c.root.join("out.db");
    for bin in [&ls, &lsr] {
        restore(bin, &c.replica, &out, None);
        assert_eq!(dump(&out), dump(&c.db), "{} latest", bin.display());
    }
}

#[test]
#[ignore = "needs the real Litestream"]
fn retention_deletes_on_schedule_and_keeps_restores() {
    let (ls, lsr) = (litestream(), ls_restore_bin());
    let c = levels_case(
        "snapshot:\n  interval: 2s\n  retention: 3s\nl0-retention: 2s\nl0-retention-check-interval: 1s\n",
    );
    let keep = c.root.join("l0-copy");
    let app = app(&c.db, 4096);
    let e = Engine::start(&c.config, &c.log);
    let mut seen_l9 = BTreeSet::new();
    workload(&app, 12, || {
        capture_l0(&c.replica, &keep);
        seen_l9.extend(files(&c.replica, 9));
    });
    let ok = wait_until(Duration::from_secs(45), || {
        capture_l0(&c.replica, &keep);
        let m = files(&keep, 0).last().map_or(0, |f| f.1);
        files(&c.replica, 9).last().is_some_and(|f| f.1 == m)
            && files(&c.replica, 2).last().is_some_and(|f| f.1 == m)
    });
    assert!(ok, "snapshot did not catch up; log:\n{}", e.tail());
    e.stop();
    capture_l0(&c.replica, &keep);

    let all_l0 = files(&keep, 0);
    let l0 = files(&c.replica, 0);
    let l9 = files(&c.replica, 9);
    seen_l9.extend(l9.iter().copied());
    assert!(
        l0.len() < all_l0.len() && l0.first() != all_l0.first(),
        "old L0 files were not deleted: {} of {}",
        l0.len(),
        all_l0.len()
    );
    let meta_l0 = files(&c.db.with_file_name(".app.db-litestream"), 0);
    assert!(
        meta_l0.len() < all_l0.len(),
        "local L0 files were not cleaned up"
    );
    assert!(
        l9.len() < seen_l9.len(),
        "old snapshots were not deleted: {l9:?} of {seen_l9:?}"
    );

    // Every level boundary from the oldest retained snapshot on restores exactly with both
    // tools. An L0 file's TXID can stop being a reachable target once retention deletes the L0
    // files before it that L1 covers (the L1 file then ends past it): Litestream refuses such a
    // target, and so must we. Both tools must agree on every point either way.
    let rp = replay(&keep);
    let floor = l9.first().map_or(0, |f| f.1);
    let mut points = BTreeSet::new();
    let mut boundaries = BTreeSet::new();
    for level in [0u8, 1, 2, 9] {
        for f in files(&c.replica, level) {
            if f.1 >= floor {
                points.insert(f.1);
                if level != 0 {
                    boundaries.insert(f.1);
                }
            }
        }
    }
    let out = c.root.join("out.db");
    for bin in [&ls, &lsr] {
        restore(bin, &c.replica, &out, None);
        assert_eq!(dump(&out), dump(&c.db), "{} latest", bin.display());
    }
    for t in &points {
        let theirs =
            try_restore(&ls, &c.replica, &out, Some(*t)).map(|()| fs::read(&out).expect("read"));
        let ours =
            try_restore(&lsr, &c.replica, &out, Some(*t)).map(|()| fs::read(&out).expect("read"));
        match (&theirs, &ours) {
            (Ok(a), Ok(b)) => {
                assert!(
                    *a == rp.image(*t),
                    "litestream -txid {t:x} differs from the L0 replay"
                );
                assert!(
                    *b == rp.image(*t),
                    "ls-restore -txid {t:x} differs from the L0 replay"
                );
            }
            (Err(a), Err(b)) => {
                assert!(
                    !boundaries.contains(t),
                    "level boundary {t:x} not restorable: {a}"
                );
                assert!(
                    a.contains("no matching backup files")
                        && b.contains("no matching backup files"),
                    "-txid {t:x}: litestream said {a:?}, ls-restore said {b:?}"
                );
            }
            _ => panic!(
                "-txid {t:x}: litestream {theirs:?} vs ls-restore {ours:?}",
                theirs = theirs.as_ref().map(|_| "ok"),
                ours = ours.as_ref().map(|_| "ok")
            ),
        }
    }
}

#[test]
#[ignore = "needs the real Litestream"]
fn retention_disabled_deletes_nothing_remote() {
    let ls = litestream();
    let c = levels_case(
        "snapshot:\n  interval: 2s\n  retention: 2s\nl0-retention: 1s\nl0-retention-check-interval: 1s\nretention:\n  enabled: false\n",
    );
    let app = app(&c.db, 4096);
    let e = Engine::start(&c.config, &c.log);
    let mut seen: BTreeSet<(u8, (u64, u64))> = BTreeSet::new();
    let look = |seen: &mut BTreeSet<(u8, (u64, u64))>| {
        for l in [0u8, 1, 2, 9] {
            seen.extend(files(&c.replica, l).into_iter().map(|f| (l, f)));
        }
    };
    workload(&app, 8, || look(&mut seen));
    std::thread::sleep(Duration::from_secs(3));
    e.stop();
    look(&mut seen);
    for (l, f) in &seen {
        assert!(
            path_of(&c.replica, *l, *f).exists(),
            "L{l} {f:?} was deleted with retention disabled"
        );
    }
    assert!(
        seen.iter().filter(|(l, _)| *l == 9).count() >= 2,
        "expected several snapshots"
    );
    let meta_l0 = files(&c.db.with_file_name(".app.db-litestream"), 0);
    let remote_l0 = files(&c.replica, 0);
    assert!(
        meta_l0.len() < remote_l0.len(),
        "local L0 cleanup must still run ({} local, {} remote)",
        meta_l0.len(),
        remote_l0.len()
    );
    assert_restores(&ls, &c.db, &c.replica, &c.root);
}
