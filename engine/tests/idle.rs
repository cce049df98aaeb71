//! An idle database costs nothing: with 50 idle databases the engine writes nothing and uses
//! (almost) no CPU. `LS_IDLE_SECS` sets the measurement window (default 10 s).

use crate::common;

use std::time::Duration;

use common::*;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).expect("stat format");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f[11].parse().expect("utime");
    let stime: u64 = f[12].parse().expect("stime");
    utime + stime
}

/// Every file under `dir` with its size and mtime, to prove nothing was written.
fn tree_state(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let m = e.metadata().expect("meta");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let name = e.path().display().to_string();
                // SQLite's shared-memory index is updated through mmap by readers; it is not data.
                if name.ends_with("-shm") {
                    continue;
                }
                out.push((name, m.len(), m.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

#[test]
#[ignore = "slow suite"]
fn fifty_idle_databases() {
    let secs: u64 = std::env::var("LS_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = small_dbs(dir.path(), 50, 20, 50);
    let config = dir.path().join("litestream.yml");
    // Default intervals (monitor-interval 1s is the fallback timer), except a short
    // checkpoint-interval: the one time-based checkpoint Litestream's policy makes after the
    // last write then happens before the measurement instead of inside it.
    write_config(&config, &dbs, "checkpoint-interval: 4s\n");
    let log = dir.path().join("engine.log");
    let e = Engine::start(&config, &log);
    let ready = dbs
        .iter()
        .all(|(_, r)| wait_for_l0(r, 1, Duration::from_secs(30)));
    assert!(
        ready,
        "not every database got its first snapshot; log:\n{}",
        e.tail()
    );
    // Let start-up bookkeeping and the deferred time-based checkpoint settle.
    std::thread::sleep(Duration::from_secs(8));
    // Compaction levels wake at wall-clock multiples of their intervals (30 s and 5 min by
    // default), and their first run compacts the start-up data: real work, not idle work. The
    // window is placed where it holds no such wake-up.
    let window = secs + 2;
    // A window of 25 s or more always holds a 30 s wake-up; it is then measured as it falls.
    while window < 25 && !quiet_moment(window) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = tree_state(dir.path());
    let t0 = cpu_ticks(e.pid());
    std::thread::sleep(Duration::from_secs(secs));
    let t1 = cpu_ticks(e.pid());
    let after = tree_state(dir.path());
    // SAFETY: sysconf is always safe.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_secs = (t1 - t0) as f64 / hz;
    let pct = 100.0 * cpu_secs / secs as f64;
    eprintln!("50 idle databases: {cpu_secs:.3} s CPU over {secs} s ({pct:.3}% of one core)");
    e.stop();
    let changed: Vec<_> = after
        .iter()
        .filter(|a| !before.contains(a))
        .map(|a| &a.0)
        .collect();
    assert!(changed.is_empty(), "files written while idle: {changed:?}");
    assert!(pct < 1.0, "idle CPU {pct:.3}% is too high");
}

/// Whether a window of `window` seconds starting now holds no compaction wake-up: it starts at
/// least 5 s after a 30 s wall-clock multiple, ends before the next one, and holds no 5 min one.
fn quiet_moment(window: u64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (5..30 - window).contains(&(now % 30)) && (now % 300) + window < 300
}

/// Issue 18 item 5: `monitor-interval: 0` is accepted, and, as in Litestream 0.5.17, such a
/// database is not monitored: a commit while the tool runs, and its shutdown, leave no LTX file
/// on the replica. Both tools run the same config, one after the other, and exit 0.
#[test]
#[ignore = "needs the real Litestream"]
fn monitor_interval_zero_is_not_monitored_as_in_litestream() {
    let ls = litestream();
    for ours in [false, true] {
        let one = one_db();
        let (dir, cfg, replica) = (&one.dir, &one.cfg, &one.replica);
        write_config(
            cfg,
            &[(one.db.clone(), replica.clone())],
            "monitor-interval: 0s\n",
        );
        let mut cmd = if ours {
            std::process::Command::new(ENGINE)
        } else {
            litestream_cmd(&ls)
        };
        let log = dir.path().join("out.log");
        let out = std::fs::File::create(&log).expect("log");
        let mut child = cmd
            .args(["replicate", "-config"])
            .arg(cfg)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start");
        std::thread::sleep(Duration::from_millis(1500));
        insert_rows(&one.conn, 0, 10, 100);
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = child.wait().expect("wait");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tool = if ours { "ls-engine" } else { "Litestream" };
        assert!(status.success(), "{tool} exited with {status}:\n{text}");
        let ltx = if replica.exists() {
            tree_state(replica)
                .into_iter()
                .filter(|(n, _, _)| n.ends_with(".ltx"))
                .count()
        } else {
            0
        };
        assert_eq!(ltx, 0, "{tool} replicated:\n{text}");
        if ours {
            assert!(
                text.contains("monitor-interval is 0"),
                "no warning:\n{text}"
            );
        }
    }
}
