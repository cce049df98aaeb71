//! Disk full: the meta directory (or the file replica) lives on a 2 MiB tmpfs that is then
//! filled. The engine must log ENOSPC with the path, never rename a partial LTX file into
//! place, keep the replica chain valid, and catch up on its own once space returns; then
//! `ls-restore` and Litestream both restore the source exactly.
//!
//! Needs `mount` (root), so the tests are ignored without `--include-ignored`.

use crate::common;
use crate::harden;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use harden::*;

/// Every `.ltx` file under `root/ltx/*/` decodes and verifies: nothing partial was renamed in.
fn assert_all_ltx_valid(root: &Path) -> usize {
    let mut n = 0;
    for (level, min, max) in ltx_files(root) {
        let p = root
            .join("ltx")
            .join(level.to_string())
            .join(format!("{min:016x}-{max:016x}.ltx"));
        let bytes = fs::read(&p).expect("read ltx");
        if let Err(e) = ltx_codec::LtxFile::open_verified(&bytes) {
            panic!("{} is not a valid LTX file: {e}", p.display());
        }
        n += 1;
    }
    n
}

fn ls_restore_equals(replica: &Path, src_dump: &str, out: &Path) -> bool {
    let _ = fs::remove_file(out);
    restore_to(replica, out).status.success() && dump(out) == src_dump
}

fn scenario(meta_on_tmpfs: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs_guard = Tmpfs::mount(&dir.path().join("small"), "2m");
    let small = fs_guard.0.clone();
    let db = dir.path().join("app.db");
    let (meta, replica) = if meta_on_tmpfs {
        (small.join("meta"), dir.path().join("replica"))
    } else {
        (dir.path().join("meta"), small.join("replica"))
    };
    let c = app(&db, 4096);
    setup_table(&c);
    let cfg = dir.path().join("ls.yml");
    fast_config(&cfg, &[(db.clone(), replica.clone())]);
    let s = fs::read_to_string(&cfg).expect("cfg");
    let s = s.replacen(
        "    monitor-interval",
        &format!("    meta-path: {}\n    monitor-interval", meta.display()),
        1,
    );
    fs::write(&cfg, s).expect("cfg");
    let log = dir.path().join("engine.log");
    let e = Engine::start(&cfg, &log);

    insert_rows(&c, 0, 50, 100);
    assert!(
        wait_for_l0(&replica, 1, Duration::from_secs(20)),
        "no first L0 file:\n{}",
        e.tail()
    );
    let before = max_l0(&replica);

    // No space left: every further L0 write (or upload) fails.
    let filler = fill(&small);
    let t0 = Instant::now();
    for round in 0..5 {
        insert_rows(&c, 1000 + round * 100, 100, 1000);
        std::thread::sleep(Duration::from_millis(200));
    }
    let full_dir = if meta_on_tmpfs { &meta } else { &replica };
    let logged = wait_until(Duration::from_secs(20), || {
        let l = fs::read_to_string(&log).unwrap_or_default();
        l.lines().any(|line| {
            line.contains("No space left on device") && line.contains(&*full_dir.to_string_lossy())
        })
    });
    assert!(logged, "ENOSPC with the path not logged:\n{}", e.tail());
    // While full: what is in place is whole, and the replica chain is intact.
    assert_all_ltx_valid(&meta);
    assert_all_ltx_valid(&replica);
    assert_chain(&replica);
    assert!(
        max_l0(&replica) >= before,
        "replica went backwards while full"
    );

    // Space returns: the engine must catch up without a restart.
    fs::remove_file(&filler).expect("remove filler");
    let full_secs = t0.elapsed().as_secs_f64();
    insert_rows(&c, 5000, 10, 10);
    let src = dump(&db);
    let out = dir.path().join("check.db");
    let t1 = Instant::now();
    let caught_up = wait_until(Duration::from_secs(60), || {
        ls_restore_equals(&replica, &src, &out)
    });
    assert!(
        caught_up,
        "replica did not catch up after space returned:\n{}",
        e.tail()
    );
    eprintln!(
        "disk_full (meta on tmpfs: {meta_on_tmpfs}): full for {full_secs:.1} s, caught up {:.1} s after space returned",
        t1.elapsed().as_secs_f64()
    );
    e.stop();

    assert_chain(&replica);
    assert_all_ltx_valid(&meta);
    let n = assert_all_ltx_valid(&replica);
    assert!(n > 1);
    let src = dump(&db);
    assert!(
        ls_restore_equals(&replica, &src, &out),
        "ls-restore differs"
    );
    integrity_ok(&out);
    assert_restores(&litestream(), &db, &replica, dir.path());
    drop(c);
    drop(fs_guard);
}

#[test]
#[ignore = "needs the real Litestream and root (it mounts a tmpfs)"]
fn meta_dir_on_a_full_disk() {
    scenario(true);
}

#[test]
#[ignore = "needs the real Litestream and root (it mounts a tmpfs)"]
fn file_replica_on_a_full_disk() {
    scenario(false);
}
