//! The SQLite side of following a database (§4.2): Litestream's three connections — one holds
//! the long read transaction, one takes the write lock through `_litestream_lock`, one runs
//! checkpoints and `_litestream_seq` bumps — and a second read connection, so the read
//! transaction can be moved forward without a moment where none is held.

use std::path::Path;
use std::time::Duration;

use rusqlite::{ffi, Connection, OpenFlags};

use crate::error::{Error, Result};

/// Checkpoint modes Litestream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointMode {
    Passive,
    Truncate,
}

impl CheckpointMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "PASSIVE",
            CheckpointMode::Truncate => "TRUNCATE",
        }
    }
}

pub struct Conns {
    /// The read transaction is held on `reads[cur]`.
    reads: [Connection; 2],
    cur: usize,
    lock: Connection,
    exec: Connection,
    in_read_txn: bool,
    in_lock_txn: bool,
}

/// How long our busy handler sleeps between tries of a lock.
const BUSY_STEP: Duration = Duration::from_micros(200);

/// SQLite busy handler: `ctx` is the number of tries allowed (busy_timeout / BUSY_STEP).
unsafe extern "C" fn busy_wait(ctx: *mut libc::c_void, n: libc::c_int) -> libc::c_int {
    if usize::try_from(n).unwrap_or(usize::MAX) >= ctx as usize {
        return 0;
    }
    std::thread::sleep(BUSY_STEP);
    1
}

fn open_one(path: &Path, busy: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::sqlite(format!("open {}", path.display()), e))?;
    // `busy_timeout`, waited in short steps: SQLite's own handler sleeps up to 100 ms between
    // tries, which against a writer committing back to back almost never finds the write lock
    // free, so our checkpoints would fail as busy under exactly the load that needs them.
    let tries = (busy.as_micros() / BUSY_STEP.as_micros()).max(1) as usize;
    // SAFETY: the handle is valid for the connection's lifetime; the context is a plain count
    // carried in the pointer value, never dereferenced.
    let rc = unsafe {
        ffi::sqlite3_busy_handler(c.handle(), Some(busy_wait), tries as *mut libc::c_void)
    };
    if rc != ffi::SQLITE_OK {
        return Err(Error::Other(format!(
            "set busy handler on {}: sqlite error {rc}",
            path.display()
        )));
    }
    // Only Litestream's own policy checkpoints; SQLite must not do it behind our back.
    c.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| Error::sqlite("set wal_autocheckpoint", e))?;
    // Keep the WAL file when our connections close so its salts and frames survive for the
    // next verify, as Litestream does.
    let mut on: libc::c_int = 1;
    // SAFETY: the handle is valid for the connection's lifetime; PERSIST_WAL takes an int*.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            c.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut libc::c_int).cast(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(Error::Other(format!(
            "set PERSIST_WAL on {}: sqlite error {rc}",
            path.display()
        )));
    }
    Ok(c)
}

impl Conns {
    /// Opens the database, switches it to WAL mode, and creates Litestream's two tables.
    pub fn open(path: &Path, busy: Duration) -> Result<Conns> {
        let exec = open_one(path, busy)?;
        let mode: String = exec
            .query_row("PRAGMA journal_mode = wal;", [], |r| r.get(0))
            .map_err(|e| Error::sqlite("set journal_mode=wal", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Other(format!("enable wal failed, mode={mode:?}")));
        }
        exec.execute_batch(
            "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);",
        )
        .map_err(|e| Error::sqlite("create _litestream_seq table", e))?;
        exec.execute_batch("CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);")
            .map_err(|e| Error::sqlite("create _litestream_lock table", e))?;
        Ok(Conns {
            reads: [open_one(path, busy)?, open_one(path, busy)?],
            cur: 0,
            lock: open_one(path, busy)?,
            exec,
            in_read_txn: false,
            in_lock_txn: false,
        })
    }

    pub fn page_size(&self) -> Result<u32> {
        let n: i64 = self.reads[self.cur]
            .query_row("PRAGMA page_size;", [], |r| r.get(0))
            .map_err(|e| Error::sqlite("read page size", e))?;
        u32::try_from(n)
            .ok()
            .filter(|&n| n >= 512)
            .ok_or_else(|| Error::Other(format!("invalid db page size: {n}")))
    }

    /// Starts (if not held) the long read transaction that keeps other processes'
    /// checkpoints from moving past what we have not yet copied.
    pub fn acquire_read_lock(&mut self) -> Result<()> {
        if self.in_read_txn {
            return Ok(());
        }
        begin_read(&self.reads[self.cur])?;
        self.in_read_txn = true;
        Ok(())
    }

    /// Moves the read transaction to the WAL's current end: a new one is begun on the other
    /// read connection before the old one ends, so the frames the old one pinned stay pinned
    /// throughout (docs/checkpoints.md#what-sqlite-does). Call it only after syncing: the new read mark may let a
    /// checkpoint copy, and another writer then restart over, every frame up to it.
    pub fn refresh_read_lock(&mut self) -> Result<()> {
        if !self.in_read_txn {
            return self.acquire_read_lock();
        }
        let next = 1 - self.cur;
        begin_read(&self.reads[next])?;
        let old = std::mem::replace(&mut self.cur, next);
        self.reads[old]
            .execute_batch("ROLLBACK;")
            .map_err(|e| Error::sqlite("release read lock", e))
    }

    pub fn release_read_lock(&mut self) -> Result<()> {
        if !self.in_read_txn {
            return Ok(());
        }
        self.in_read_txn = false;
        self.reads[self.cur]
            .execute_batch("ROLLBACK;")
            .map_err(|e| Error::sqlite("release read lock", e))
    }

    pub fn has_read_lock(&self) -> bool {
        self.in_read_txn
    }

    /// Takes SQLite's write lock by inserting into `_litestream_lock` inside a transaction that
    /// is always rolled back.
    pub fn begin_write_lock(&mut self) -> Result<()> {
        if self.in_lock_txn {
            return Ok(());
        }
        self.lock
            .execute_batch("BEGIN;")
            .map_err(|e| Error::sqlite("begin _litestream_lock", e))?;
        if let Err(e) = self
            .lock
            .execute_batch("INSERT INTO _litestream_lock (id) VALUES (1);")
        {
            let _ = self.lock.execute_batch("ROLLBACK;");
            return Err(Error::sqlite("_litestream_lock", e));
        }
        self.in_lock_txn = true;
        Ok(())
    }

    pub fn end_write_lock(&mut self) -> Result<()> {
        if !self.in_lock_txn {
            return Ok(());
        }
        self.in_lock_txn = false;
        self.lock
            .execute_batch("ROLLBACK;")
            .map_err(|e| Error::sqlite("rollback _litestream_lock", e))
    }

    /// Forces a WAL write (used when the WAL is missing and after every checkpoint). With
    /// `truncate`, a write that restarts the WAL also cuts the file down to the frames it wrote
    /// (SQLite's `journal_size_limit` applied by the connection that restarts the WAL).
    pub fn bump_seq(&self, truncate: bool) -> Result<()> {
        let limit = |n: i64| {
            self.exec
                .pragma_update(None, "journal_size_limit", n)
                .map_err(|e| Error::sqlite("set journal_size_limit", e))
        };
        if truncate {
            limit(0)?;
        }
        let r = self
            .exec
            .execute_batch(
                "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) \
                 ON CONFLICT (id) DO UPDATE SET seq = seq + 1;",
            )
            .map_err(|e| Error::sqlite("bump _litestream_seq", e));
        if truncate {
            limit(-1)?;
        }
        r
    }

    /// A PASSIVE checkpoint with our read transaction kept: it copies frames up to our read
    /// mark at most, never blocks writers, and cannot restart the WAL. Returns SQLite's (busy,
    /// log frames, checkpointed frames); busy with -1 frames when another checkpoint was
    /// running.
    pub fn checkpoint_pinned(&self) -> Result<(i64, i64, i64)> {
        self.exec
            .query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| Error::sqlite("checkpoint PASSIVE", e))
    }

    /// Runs `PRAGMA wal_checkpoint(MODE)` with our read lock released (it would block the
    /// checkpoint), re-acquiring it afterwards even on failure. Returns SQLite's
    /// (busy, log frames, checkpointed frames).
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<(i64, i64, i64)> {
        self.release_read_lock()?;
        let sql = format!("PRAGMA wal_checkpoint({});", mode.as_str());
        let res = self
            .exec
            .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| Error::sqlite(format!("checkpoint {}", mode.as_str()), e));
        let relock = self.acquire_read_lock();
        let res = res?;
        relock?;
        Ok(res)
    }
}

/// `BEGIN` and a first read, which is when SQLite takes the read mark.
fn begin_read(c: &Connection) -> Result<()> {
    c.execute_batch("BEGIN;")
        .map_err(|e| Error::sqlite("acquire read lock", e))?;
    if let Err(e) = c.query_row("SELECT COUNT(1) FROM _litestream_seq;", [], |r| {
        r.get::<_, i64>(0)
    }) {
        let _ = c.execute_batch("ROLLBACK;");
        return Err(Error::sqlite("acquire read lock", e));
    }
    Ok(())
}

/// The SQLite library version linked in (the bundled one).
pub fn sqlite_version() -> String {
    rusqlite::version().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bundled_sqlite_is_recent_enough() {
        // The project's minimum: the engine is only validated with SQLite 3.51.3 or later.
        let c = rusqlite::Connection::open_in_memory().expect("open");
        let v: String = c
            .query_row("SELECT sqlite_version()", [], |r| r.get(0))
            .expect("version");
        let parts: Vec<u32> = v.split('.').filter_map(|p| p.parse().ok()).collect();
        assert!(
            parts >= vec![3, 51, 3],
            "bundled SQLite {v} is older than 3.51.3"
        );
        assert_eq!(v, super::sqlite_version());
    }
}
