//! Cutting the WAL file down after a TRUNCATE restart (or an emergency one by PASSIVE), in
//! steps, on a thread of its own
//! (docs/checkpoints.md#cutting-the-wal-down).
//!
//! Cutting a large file at once makes the file system free all its blocks while the caller
//! waits (0.8 s for 2.4 GB here), and SQLite cuts the WAL inside the write transaction that
//! restarts it, so every writer waited that long. Each cut here removes [`STEP`] bytes from
//! the end under the write lock, taken by a connection of its own, and the lock is let go for
//! [`PAUSE`] between cuts: longer than SQLite's default busy handler ever sleeps, so a writer
//! that found the lock taken gets it at its next try, a cut's length after it asked.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::config::DbConfig;
use crate::error::{Error, Result};
use crate::shm::ShmPeek;

/// What one cut removes: 8 MiB took up to 90 ms of the file system's time under the write load of
/// the 4 GB benchmark, 32 MiB up to 117 ms.
const STEP: u64 = 8 << 20;
/// The lock is let go this long between cuts (SQLite's default busy handler sleeps at most
/// 100 ms between its tries).
const PAUSE: Duration = Duration::from_millis(120);

/// At most one cutting thread per database.
#[derive(Default)]
pub(super) struct Shrink {
    running: Arc<AtomicBool>,
}

impl Shrink {
    /// Starts cutting `wal` down to its frames, unless a cut is already going on (it reads
    /// the WAL's end afresh at each step, so it also covers this restart).
    pub(super) fn start(&self, cfg: &DbConfig, wal: &Path, frame: u64, shm: &ShmPeek) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let running = self.running.clone();
        let (db, wal, busy) = (cfg.path.clone(), wal.to_owned(), cfg.busy_timeout);
        // The follower's own peek: a descriptor of our own on the `-shm` file would drop the
        // follower's read mark when closed (crate::shm).
        let shm = shm.clone();
        let spawned = std::thread::Builder::new()
            .name("wal-shrink".into())
            .spawn(move || {
                match shrink(&db, &wal, frame, busy, &shm) {
                    Ok(Shrunk {
                        cuts,
                        from,
                        to,
                        longest,
                    }) if cuts > 0 => {
                        let longest_ms = longest.as_secs_f64() * 1e3;
                        debug!(db = %db.display(), cuts, from, to, longest_ms, "wal cut down");
                    }
                    Ok(_) => {}
                    Err(e) => warn!(db = %db.display(), error = %e, "cutting the wal down"),
                }
                running.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.running.store(false, Ordering::Release);
            warn!(db = %cfg.path.display(), error = %e, "cannot start the thread that cuts the wal down");
        }
    }
}

/// What [`shrink`] did: its cuts, the WAL's size before and after, and the longest time the
/// write lock was held for a cut.
struct Shrunk {
    cuts: u32,
    from: u64,
    to: u64,
    longest: Duration,
}

/// Cuts `wal` down to the frames the wal-index says it holds, [`STEP`] at a time.
fn shrink(db: &Path, wal: &Path, frame: u64, busy: Duration, shm: &ShmPeek) -> Result<Shrunk> {
    let conn = crate::sqlite::open_connection(db, busy)?;
    let from = super::file_size(wal)?;
    let mut cuts = 0;
    let mut longest = Duration::ZERO;
    loop {
        conn.execute_batch("BEGIN IMMEDIATE;")
            .map_err(|e| Error::sqlite("take the write lock to cut the wal", e))?;
        let held = std::time::Instant::now();
        let cut = cut(shm, wal, frame);
        let end = conn
            .execute_batch("ROLLBACK;")
            .map_err(|e| Error::sqlite("let go of the write lock", e));
        longest = longest.max(held.elapsed());
        let more = cut?;
        end?;
        match more {
            Some(more) => {
                cuts += 1;
                if !more {
                    break;
                }
                std::thread::sleep(PAUSE);
            }
            None => break,
        }
    }
    Ok(Shrunk {
        cuts,
        from,
        to: super::file_size(wal)?,
        longest,
    })
}

/// One cut, with the write lock held: no writer appends meanwhile, and everything past the
/// wal-index's `mxFrame` is an earlier generation's. None when there is nothing to cut (or the
/// wal-index is unreadable); else whether more is left.
fn cut(shm: &ShmPeek, wal: &Path, frame: u64) -> Result<Option<bool>> {
    let Some(idx) = shm.read() else {
        return Ok(None);
    };
    let end = super::HDR + u64::from(idx.mx_frame) * frame;
    let size = super::file_size(wal)?;
    if size <= end {
        return Ok(None);
    }
    let target = end.max(size.saturating_sub(STEP));
    File::options()
        .write(true)
        .open(wal)
        .and_then(|f| f.set_len(target))
        .map_err(|e| Error::io("cut the WAL down", wal, e))?;
    Ok(Some(target > end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Whether this process holds a lock on one of the read-mark bytes of the `-shm` file
    /// (bytes 123 to 127: SQLite's Unix VFS), as the kernel lists it in /proc/locks.
    fn holds_read_mark(shm: &Path) -> bool {
        let ino = std::fs::metadata(shm).expect("stat -shm").ino().to_string();
        let pid = std::process::id().to_string();
        let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
        locks.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().filter(|w| *w != "->").collect();
            f.len() >= 8
                && f[4] == pid
                && f[5].rsplit(':').next() == Some(ino.as_str())
                && f[6].parse::<u64>().is_ok_and(|b| (123..=127).contains(&b))
        })
    }

    /// Regression: the cut opened a descriptor of its own on the `-shm` file and closed it when
    /// done, which dropped every lock of the process on that file, the follower's read mark
    /// among them, so another process could then checkpoint and restart the WAL over frames not
    /// yet in an L0 file.
    #[test]
    fn cutting_keeps_the_read_mark_of_the_process() {
        let dir = tempfile::tempdir().expect("test setup");
        let db = dir.path().join("a.db");
        let wal = dir.path().join("a.db-wal");
        let app = rusqlite::Connection::open(&db).expect("test setup");
        app.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = wal; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t(x);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT randomblob(3500) FROM n;",
        )
        .expect("test setup");
        app.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .expect("test setup");
        // Restarts the WAL: a few frames at its start, megabytes of the old generation after.
        app.execute("INSERT INTO t VALUES (1)", [])
            .expect("test setup");
        let held = crate::sqlite::open_connection(&db, Duration::from_secs(1)).expect("open");
        held.execute_batch("BEGIN; SELECT COUNT(*) FROM t;")
            .expect("read transaction");
        let shm = dir.path().join("a.db-shm");
        assert!(
            holds_read_mark(&shm),
            "the read transaction holds no read mark"
        );
        let peek = ShmPeek::new(&db);
        assert!(peek.read().is_some(), "the follower's peek reads the index");
        let frame = 24 + 4096;
        let before = super::super::file_size(&wal).expect("size");
        let done = shrink(&db, &wal, frame, Duration::from_secs(1), &peek).expect("shrink");
        assert!(done.cuts > 0 && done.to < before, "nothing was cut");
        assert!(
            holds_read_mark(&shm),
            "cutting the WAL dropped the read mark of the follower's connection"
        );
        held.execute_batch("COMMIT;").expect("end read");
    }
}
