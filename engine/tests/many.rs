//! One process replicating 1,000 databases with default settings (issue 13, item 4): every
//! database gets its first sync, and writes to a sample of them reach the replica (restored
//! with `ls-restore`, rows and `PRAGMA integrity_check` compared). How fast and how much memory
//! is measured by `benches` (`many_dbs`), not asserted here.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const DBS: usize = 1000;

/// Databases written after start-up: every 50th.
const SAMPLE_EVERY: usize = 50;

/// Restores `replica` with `ls-restore` into `out`; None if it fails (not replicated yet).
fn restore(replica: &Path, out: &Path) -> Option<String> {
    let _ = std::fs::remove_file(out);
    let o = std::process::Command::new(ls_restore_bin())
        .arg("-o")
        .arg(out)
        .arg(format!("file://{}", replica.display()))
        .output()
        .expect("run ls-restore");
    o.status.success().then(|| dump(out))
}

#[test]
#[ignore = "slow suite"]
fn many_databases_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = small_dbs(dir.path(), DBS, 3, 20);
    let config = dir.path().join("litestream.yml");
    write_config(&config, &dbs, "");
    let log = dir.path().join("engine.log");
    let e = Engine::start_env(&config, &log, &[("LOG_LEVEL", "info")]);

    let missing =
        |dbs: &[(PathBuf, PathBuf)]| dbs.iter().filter(|(_, r)| l0_names(r).is_empty()).count();
    assert!(
        wait_until(Duration::from_secs(120), || missing(&dbs) == 0),
        "{} of {DBS} databases have no L0 file on the replica; log:\n{}",
        missing(&dbs),
        e.tail()
    );

    // Distinct rows in each sampled database, written while all the others stay idle.
    let sample: Vec<usize> = (0..DBS).step_by(SAMPLE_EVERY).collect();
    for &i in &sample {
        let c = app(&dbs[i].0, 4096);
        insert_rows(&c, 1000 + i * 10, 40 + i % 7, 30);
    }
    let out_dir = dir.path().join("restored");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    for &i in &sample {
        let (db, replica) = &dbs[i];
        let want = dump(db);
        let out = out_dir.join(format!("db{i:04}.db"));
        let reached = wait_until(Duration::from_secs(60), || {
            restore(replica, &out).is_some_and(|got| got == want)
        });
        assert!(
            reached,
            "database {i}: the replica does not restore to the written rows; log:\n{}",
            e.tail()
        );
        integrity_ok(&out);
        let c = rusqlite::Connection::open(&out).expect("open restored");
        let rows: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows as usize, 3 + 40 + i % 7, "database {i}: rows restored");
    }
    e.stop();
}

/// A hard open-file limit too low for the configured databases stops start-up with an error
/// naming the limit, instead of a failing `open` later. As root the engine could raise the hard
/// limit itself, so it runs without `CAP_SYS_RESOURCE` (`setpriv`) there.
#[test]
fn an_open_file_limit_too_low_stops_start_up() {
    use std::os::unix::process::CommandExt;
    const LIMIT: u64 = 260;
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = small_dbs(dir.path(), 2, 1, 10);
    let config = dir.path().join("litestream.yml");
    write_config(&config, &dbs, "");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--bounding-set=-sys_resource", "--"]).arg(ENGINE);
        c
    } else {
        std::process::Command::new(ENGINE)
    };
    cmd.arg("replicate").arg("-config").arg(&config);
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ls-engine");
    let exited = wait_until(Duration::from_secs(30), || {
        child.try_wait().expect("wait").is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ls-engine started with 2 databases under a limit of {LIMIT} descriptors");
    }
    let o = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "exit status: {}; {err}", o.status);
    assert!(err.contains("RLIMIT_NOFILE"), "{err}");
    assert!(err.contains("2 databases"), "{err}");
    assert!(err.contains(&format!("limit is {LIMIT}")), "{err}");
    assert!(l0_names(&dbs[0].1).is_empty(), "a database was replicated");
}
