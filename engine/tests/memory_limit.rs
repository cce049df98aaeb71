//! Issue 13 item 2: the engine replicates a 4 GB WAL inside a 64 MiB memory limit, as a
//! container would give it. A reader holds one read transaction for the whole run, so neither
//! the application's checkpoints nor the engine's can restart the WAL: it grows to 4 GB while
//! the engine follows it (every checkpoint threshold it has is crossed, the truncate one
//! included). The engine runs in a memory cgroup of its own (cgroup v2 `memory.max`, or v1
//! `memory.limit_in_bytes` with swap off); the kernel counts its page cache there too, and
//! kills it if it cannot stay within the limit. The writer's commits must not wait on the
//! engine (a generous bound here; `benches/results/e2e-write.md` holds the real figures), and
//! the replica must restore to the same rows.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common;
use common::*;

/// The WAL the writer grows while the reader holds it.
const WAL_BYTES: u64 = 4 << 30;
/// The engine's memory limit.
const LIMIT: u64 = 64 << 20;
/// Longest a commit may take: a bound for a shared, loaded machine, not the figure. Measured
/// longest commits: 232 ms here alone, 834 ms in a CI run beside the other tests (the engine
/// held to 64 MiB reads the WAL back from disk); Litestream 0.5.17 stalls 3.7-5.3 s on the
/// same kind of run. The benchmark (`1row-off-4GB` in `benches/results/e2e-write*.md`) holds
/// the real figures; this catches a stall of the kind that once lasted many seconds.
const MAX_COMMIT: Duration = Duration::from_secs(2);
/// Rows per transaction: a 200-byte random head and zeros, so LTX files compress and the
/// replica stays small beside the 4 GB WAL and database.
const ROWS_PER_TXN: usize = 10;

/// A memory cgroup made for one process, removed when dropped (once that process has exited).
struct MemCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemCgroup {
    /// A new cgroup limited to `limit` bytes, without swap; an error says why there is none.
    fn new(limit: u64) -> Result<MemCgroup, String> {
        let name = format!("ls-engine-test-{}", std::process::id());
        let v2_root = Path::new("/sys/fs/cgroup");
        let v2 = fs::read_to_string(v2_root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"));
        let (dir, limit_file) = if v2 {
            (v2_root.join(&name), "memory.max")
        } else {
            (v2_root.join("memory").join(&name), "memory.limit_in_bytes")
        };
        fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let cg = MemCgroup { dir, v2 };
        cg.write(limit_file, &limit.to_string())?;
        if v2 {
            // Absent when the kernel has no swap accounting; there is no swap to use then.
            let _ = cg.write("memory.swap.max", "0");
        }
        Ok(cg)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let p = self.dir.join(file);
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|e| format!("write {value} to {}: {e}", p.display()))
    }

    fn add(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// Processes the kernel killed in this cgroup for want of memory.
    fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Anonymous, page cache, and dirty or in-write-back bytes the cgroup holds now.
    fn usage(&self) -> Usage {
        let stat = fs::read_to_string(self.dir.join("memory.stat")).unwrap_or_default();
        let get = |key: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0u64)
        };
        if self.v2 {
            Usage {
                anon: get("anon"),
                file: get("file"),
                dirty: get("file_dirty") + get("file_writeback"),
            }
        } else {
            Usage {
                anon: get("rss"),
                file: get("cache"),
                dirty: get("dirty") + get("writeback"),
            }
        }
    }

    /// The most memory the cgroup held (page cache included), where the kernel tells.
    fn peak(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// What a cgroup holds, in bytes (see [`MemCgroup::usage`]).
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    anon: u64,
    file: u64,
    dirty: u64,
}

impl Usage {
    fn max(self, o: Usage) -> Usage {
        Usage {
            anon: self.anon.max(o.anon),
            file: self.file.max(o.file),
            dirty: self.dirty.max(o.dirty),
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "anonymous {} MiB, page cache {} MiB, dirty or in write-back {} MiB",
            self.anon >> 20,
            self.file >> 20,
            self.dirty >> 20
        )
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

fn alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|c| c != 'Z')
}

/// What the rows hold, cheaply enough for 4 GB: their number, the sum of their keys and sizes,
/// and the last rows' bytes.
fn summary(db: &Path) -> (i64, i64, i64, Vec<Vec<u8>>) {
    let c = rusqlite::Connection::open(db).expect("open");
    let (n, keys, bytes) = c
        .query_row("SELECT count(*), sum(k), sum(length(v)) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("sums");
    let mut st = c
        .prepare("SELECT v FROM t ORDER BY id DESC LIMIT 200")
        .expect("prepare");
    let last = st
        .query_map([], |r| r.get(0))
        .expect("last rows")
        .collect::<Result<Vec<Vec<u8>>, _>>()
        .expect("last rows");
    (n, keys, bytes, last)
}

#[test]
#[ignore = "slow suite; writes a 4 GB WAL"]
fn issue13_2_a_4_gb_wal_with_a_long_reader_in_64_mib() {
    let one = OneDb::bare();
    let (app, db, replica, cfg) = (&one.conn, &one.db, &one.replica, &one.cfg);
    app.execute_batch(
        "PRAGMA synchronous = NORMAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);",
    )
    .expect("setup");
    write_config(cfg, &[(db.clone(), replica.clone())], "");
    let log = one.dir.path().join("engine.log");
    let eng = Engine::start_env(cfg, &log, &[("LOG_LEVEL", "info")]);
    let cg = match MemCgroup::new(LIMIT).and_then(|cg| cg.add(eng.pid()).map(|()| cg)) {
        Ok(cg) => Some(cg),
        Err(e) => {
            // Still a test of the 4 GB WAL and the long reader, not of the limit: said
            // plainly, never passed off as the limit holding.
            eprintln!("NOT CHECKED: the 64 MiB limit (no memory cgroup to put the engine in: {e})");
            None
        }
    };
    assert!(
        wait_for_l0(replica, 1, Duration::from_secs(30)),
        "no first L0 file; log:\n{}",
        eng.tail()
    );

    let reader = rusqlite::Connection::open(db).expect("reader");
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM t;")
        .expect("long read transaction");
    let wal = one.dir.path().join("app.db-wal");
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut k: i64 = 0;
    let mut txns = 0u64;
    let mut wal_peak = 0;
    // Sampled while the WAL grows, to say what a kill was for.
    let mut held = Usage::default();
    while wal_peak < WAL_BYTES {
        let t = Instant::now();
        app.execute_batch("BEGIN").expect("begin");
        for _ in 0..ROWS_PER_TXN {
            k += 1;
            app.execute(
                "INSERT INTO t(k, v) VALUES (?1, CAST(randomblob(200) || zeroblob(3000) AS BLOB))",
                [k],
            )
            .expect("insert");
        }
        app.execute_batch("COMMIT").expect("commit");
        worst = worst.max(t.elapsed());
        txns += 1;
        if txns.is_multiple_of(100) {
            wal_peak = wal_peak.max(fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        if txns.is_multiple_of(1000) {
            if let Some(cg) = &cg {
                held = held.max(cg.usage());
            }
            assert!(
                alive(eng.pid()),
                "the engine died at {} MB of WAL (OOM kills in its cgroup: {:?}; most held: \
                 {held}); log:\n{}",
                fs::metadata(&wal).map_or(0, |m| m.len()) >> 20,
                cg.as_ref().map(MemCgroup::oom_kills),
                eng.tail()
            );
        }
    }
    let wrote = started.elapsed();
    reader.execute_batch("ROLLBACK").expect("end the read");
    drop(reader);

    // Everything reaches the replica: its L0 files stop changing.
    let settled = wait_until(Duration::from_secs(600), || {
        let n = l0_names(replica);
        std::thread::sleep(Duration::from_secs(3));
        n == l0_names(replica)
    });
    assert!(
        settled,
        "the replica kept changing for 10 minutes; log:\n{}",
        eng.tail()
    );
    let pid = eng.pid();
    assert!(alive(pid), "the engine died; log:\n{}", eng.tail());
    eng.stop();
    if let Some(cg) = &cg {
        assert_eq!(
            cg.oom_kills(),
            0,
            "the kernel killed in the engine's cgroup"
        );
        eprintln!(
            "engine cgroup peak {} MiB (limit {} MiB, page cache included); sampled while \
             writing: {held}",
            cg.peak().map_or(-1, |p| (p >> 20) as i64),
            LIMIT >> 20
        );
    }
    eprintln!(
        "{txns} transactions, a {} MB WAL in {wrote:?}; longest commit {worst:?}",
        wal_peak >> 20
    );
    assert!(
        worst < MAX_COMMIT,
        "a commit took {worst:?} while the engine followed a 4 GB WAL"
    );

    let out = one.dir.path().join("restored.db");
    restore_file_replica(replica, &out);
    let (got, want) = (summary(&out), summary(db));
    assert_eq!(got.0, want.0, "rows");
    assert!(got == want, "restored rows differ from the source");
}
