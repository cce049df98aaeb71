//! The SQLite side of following a database (docs/wal.md#connections-and-locks). Litestream keeps
//! three connections open per database (the long read transaction, the `_litestream_lock` write
//! lock, checkpoints and `_litestream_seq` bumps); we keep one, which holds the read transaction,
//! and open a second only while a checkpoint or a bump needs it. The second one also lets the read
//! transaction move forward without a moment where none is held, and takes the write lock during
//! the sealed step of a checkpoint, when a third takes the read transaction over so that the first
//! can run the checkpoint itself (docs/checkpoints.md#the-procedure). An idle database thus costs one connection, with no
//! lookaside buffer and no preallocated page cache (docs/many-databases.md).

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use rusqlite::{ffi, Connection, OpenFlags};

use crate::error::{Error, Result};

/// Checkpoint modes Litestream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointMode {
    /// PASSIVE: copies the frames it can without waiting for readers or writers.
    Passive,
    /// TRUNCATE: copies every frame into the database, then restarts the WAL and truncates it.
    Truncate,
}

impl CheckpointMode {
    /// The mode as SQLite spells it in `PRAGMA wal_checkpoint(<mode>)`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "PASSIVE",
            CheckpointMode::Truncate => "TRUNCATE",
        }
    }
}

/// The SQLite connections of one followed database: one that holds the long read transaction,
/// and a spare one opened only when needed (checkpoints, `_litestream_seq` bumps, the write lock,
/// moving the read transaction).
pub struct Conns {
    path: PathBuf,
    busy: Duration,
    /// Holds the read transaction (when `in_read_txn`).
    held: Connection,
    /// Opened on demand, closed by [`Conns::release_idle`]; never holds the read transaction.
    spare: Option<Connection>,
    /// A third connection, opened on demand for the checkpoint under the write lock (which the
    /// spare one holds) and closed by [`Conns::release_idle`].
    third: Option<Connection>,
    in_read_txn: bool,
    /// The write lock is held on `spare`.
    in_lock_txn: bool,
}

/// Pages a connection may cache. Ours read a handful (the schema and `_litestream_seq`), so
/// SQLite's default of 2 MiB per connection would only be reached by accident.
const CACHE_KIB: i64 = 64;

/// Makes SQLite allocate memory only when it is used: no lookaside buffers (about 50 KiB per
/// connection) and no bulk page-cache allocation at the first read (20 pages per connection).
/// Process-wide settings, so they take effect only before SQLite is first used in the process;
/// every connection also turns its own lookaside off (`open_one`).
fn configure_sqlite() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection of this process is opened
        // (else it returns SQLITE_MISUSE and changes nothing); the arguments are the ones
        // these options document.
        unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_LOOKASIDE,
                0 as libc::c_int,
                0 as libc::c_int,
            );
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<libc::c_void>(),
                0 as libc::c_int,
                0 as libc::c_int,
            );
        }
    });
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
    configure_sqlite();
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
    // SAFETY: the handle is valid and no statement has run yet, so no lookaside slot is in
    // use; a null buffer with zero slots turns lookaside off.
    let rc = unsafe {
        ffi::sqlite3_db_config(
            c.handle(),
            ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<libc::c_void>(),
            0 as libc::c_int,
            0 as libc::c_int,
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(Error::Other(format!(
            "turn lookaside off on {}: sqlite error {rc}",
            path.display()
        )));
    }
    c.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(|e| Error::sqlite("set cache_size", e))?;
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

/// A connection of the engine's kind (busy handler, no automatic checkpoint, WAL kept on
/// close) for work off the follower's thread; the database must already be in WAL mode.
pub fn open_connection(path: &Path, busy: Duration) -> Result<Connection> {
    open_one(path, busy)
}

impl Conns {
    /// Opens the database, switches it to WAL mode, and creates Litestream's two tables.
    pub fn open(path: &Path, busy: Duration) -> Result<Conns> {
        let held = open_one(path, busy)?;
        let mode: String = held
            .query_row("PRAGMA journal_mode = wal;", [], |r| r.get(0))
            .map_err(|e| Error::sqlite("set journal_mode=wal", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Other(format!("enable wal failed, mode={mode:?}")));
        }
        held.execute_batch(
            "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);",
        )
        .map_err(|e| Error::sqlite("create _litestream_seq table", e))?;
        held.execute_batch("CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);")
            .map_err(|e| Error::sqlite("create _litestream_lock table", e))?;
        Ok(Conns {
            path: path.to_owned(),
            busy,
            held,
            spare: None,
            third: None,
            in_read_txn: false,
            in_lock_txn: false,
        })
    }

    /// `slot`'s connection, or a new one.
    fn opened(&self, slot: Option<Connection>) -> Result<Connection> {
        slot.map_or_else(|| open_one(&self.path, self.busy), Ok)
    }

    /// The second connection, opened if it is not.
    fn spare(&mut self) -> Result<&Connection> {
        if self.spare.is_none() {
            self.spare = Some(open_one(&self.path, self.busy)?);
        }
        self.spare
            .as_ref()
            .ok_or_else(|| Error::Other("no spare connection".into()))
    }

    /// Frees what only a checkpoint or a bump needed (docs/many-databases.md#memory): closes
    /// the second connection unless it holds the write lock, and drops the pages the first one
    /// cached (the schema and `_litestream_seq`: re-read from the OS's page cache when next
    /// needed; passes read the WAL, not through SQLite). SQLite keeps the second connection's
    /// database descriptor for reuse (closing it would drop the process's locks on the file),
    /// so what closing it frees is its memory and its WAL descriptor.
    pub fn release_idle(&mut self) {
        if !self.in_lock_txn {
            self.spare = None;
        }
        self.third = None;
        // SAFETY: the handle is valid and used by this thread only (the connection is owned
        // here); no statement is running, so every cached page is unpinned.
        unsafe { ffi::sqlite3_db_release_memory(self.held.handle()) };
    }

    /// The database page size in bytes (`PRAGMA page_size`); an error below 512.
    pub fn page_size(&self) -> Result<u32> {
        let n: i64 = self
            .held
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
        begin_read(&self.held)?;
        self.in_read_txn = true;
        Ok(())
    }

    /// Moves the read transaction to the WAL's current end: a new one is begun on the spare
    /// connection before the old one ends, so the frames the old one pinned stay pinned
    /// throughout (docs/checkpoints.md#what-sqlite-does); the two connections then swap roles.
    /// Call it only after syncing: the new read mark may let a checkpoint copy, and another
    /// writer then restart over, every frame up to it.
    pub fn refresh_read_lock(&mut self) -> Result<()> {
        if !self.in_read_txn {
            return self.acquire_read_lock();
        }
        if self.in_lock_txn {
            return Err(Error::Other(
                "cannot move the read transaction while holding the write lock".into(),
            ));
        }
        let slot = self.spare.take();
        let next = self.opened(slot)?;
        let (free, r) = self.move_read_to(next);
        self.spare = Some(free);
        r
    }

    /// Begins the read transaction on `next` (a connection in no transaction), then ends the
    /// one held, so that one is held at every moment. Returns the connection left without a
    /// transaction (`next` itself when it could not begin one: the old transaction is then
    /// still held) and whether it all went well.
    fn move_read_to(&mut self, next: Connection) -> (Connection, Result<()>) {
        if let Err(e) = begin_read(&next) {
            return (next, Err(e));
        }
        let old = std::mem::replace(&mut self.held, next);
        let r = old
            .execute_batch("ROLLBACK;")
            .map_err(|e| Error::sqlite("release read lock", e));
        (old, r)
    }

    /// Ends the long read transaction, if held.
    pub fn release_read_lock(&mut self) -> Result<()> {
        if !self.in_read_txn {
            return Ok(());
        }
        self.in_read_txn = false;
        self.held
            .execute_batch("ROLLBACK;")
            .map_err(|e| Error::sqlite("release read lock", e))
    }

    /// Whether the long read transaction is held.
    pub fn has_read_lock(&self) -> bool {
        self.in_read_txn
    }

    /// Whether the write lock of [`Conns::begin_write_lock`] is held.
    pub fn has_write_lock(&self) -> bool {
        self.in_lock_txn
    }

    /// Takes SQLite's write lock on the spare connection by inserting into `_litestream_lock`
    /// inside a transaction that is always rolled back.
    pub fn begin_write_lock(&mut self) -> Result<()> {
        if self.in_lock_txn {
            return Ok(());
        }
        let lock = self.spare()?;
        lock.execute_batch("BEGIN;")
            .map_err(|e| Error::sqlite("begin _litestream_lock", e))?;
        if let Err(e) = lock.execute_batch("INSERT INTO _litestream_lock (id) VALUES (1);") {
            let _ = lock.execute_batch("ROLLBACK;");
            return Err(Error::sqlite("_litestream_lock", e));
        }
        self.in_lock_txn = true;
        Ok(())
    }

    /// Releases the write lock of [`Conns::begin_write_lock`] by rolling its transaction back.
    pub fn end_write_lock(&mut self) -> Result<()> {
        if !self.in_lock_txn {
            return Ok(());
        }
        self.in_lock_txn = false;
        self.spare()?
            .execute_batch("ROLLBACK;")
            .map_err(|e| Error::sqlite("rollback _litestream_lock", e))
    }

    /// Forces a WAL write (used when the WAL is missing and after every checkpoint), on the
    /// spare connection so the read transaction stays where it is. After a checkpoint that
    /// copied every frame it is the write that restarts the WAL.
    pub fn bump_seq(&mut self) -> Result<()> {
        if self.in_lock_txn {
            return Err(Error::Other(
                "cannot bump _litestream_seq while holding the write lock".into(),
            ));
        }
        self.spare()?
            .execute_batch(
                "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) \
                 ON CONFLICT (id) DO UPDATE SET seq = seq + 1;",
            )
            .map_err(|e| Error::sqlite("bump _litestream_seq", e))
    }

    /// A PASSIVE checkpoint (on the spare connection) with our read transaction kept: it
    /// copies frames up to our read mark at most, never blocks writers, and cannot restart the
    /// WAL. Returns SQLite's (busy, log frames, checkpointed frames); busy with -1 frames when
    /// another checkpoint was running.
    pub fn checkpoint_pinned(&mut self) -> Result<(i64, i64, i64)> {
        if self.in_lock_txn {
            return Err(Error::Other(
                "cannot checkpoint on the connection holding the write lock".into(),
            ));
        }
        self.spare()?
            .query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| Error::sqlite("checkpoint PASSIVE", e))
    }

    /// Opens the connection [`Conns::checkpoint`] moves the read transaction to, and reads the
    /// schema into it, so that the work done under the write lock is only the move itself.
    pub fn prepare_checkpoint(&mut self) -> Result<()> {
        if self.third.is_none() {
            let c = open_one(&self.path, self.busy)?;
            begin_read(&c)?;
            c.execute_batch("ROLLBACK;")
                .map_err(|e| Error::sqlite("prepare checkpoint connection", e))?;
            self.third = Some(c);
        }
        Ok(())
    }

    /// Runs `PRAGMA wal_checkpoint(MODE)` under the write lock (held by the spare connection),
    /// with our read mark first moved to the WAL's end so that it does not hold the checkpoint
    /// back, and moved again afterwards so that, once every frame is copied, it no longer pins the
    /// WAL and the next write can restart it. A read transaction is held at every moment: were
    /// there a moment without one, and were the read lock then not retaken, another process's
    /// checkpoint could copy, and its next commit restart the WAL over, frames committed after
    /// the write lock is let go and not yet in an L0 file. Returns SQLite's (busy, log frames,
    /// checkpointed frames).
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<(i64, i64, i64)> {
        if !self.in_lock_txn {
            return Err(Error::Other(
                "the checkpoint that moves the read mark needs the write lock".into(),
            ));
        }
        let slot = self.third.take();
        let next = self.opened(slot)?;
        let (free, moved) = if self.in_read_txn {
            self.move_read_to(next)
        } else {
            (next, Ok(()))
        };
        if let Err(e) = moved {
            self.third = Some(free);
            return Err(e);
        }
        let sql = format!("PRAGMA wal_checkpoint({});", mode.as_str());
        let res = free
            .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| Error::sqlite(format!("checkpoint {}", mode.as_str()), e));
        // Begun on a WAL copied to its end, the read transaction takes read mark 0, which does
        // not keep the next write from restarting the WAL. Failing that, the one held stays,
        // and the WAL restarts at a later checkpoint. A WAL not copied to its end cannot be
        // restarted anyway: the mark stays where it is.
        if self.in_read_txn && !matches!(res, Ok((0, log, done)) if log == done) {
            self.third = Some(free);
            return res;
        }
        let (free, again) = if self.in_read_txn {
            self.move_read_to(free)
        } else {
            let r = begin_read(&free);
            if r.is_ok() {
                self.in_read_txn = true;
                (std::mem::replace(&mut self.held, free), Ok(()))
            } else {
                (free, r)
            }
        };
        self.third = Some(free);
        if let Err(e) = again {
            tracing::debug!(db = %self.path.display(), error = %e, "read mark not moved after the checkpoint; the WAL restarts at a later one");
        }
        res
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

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    fn salts(wal: &Path) -> Vec<u8> {
        std::fs::read(wal).expect("read WAL")[16..24].to_vec()
    }

    /// The checkpoint under the write lock copies every frame although our read transaction
    /// began before the last ones were committed, ends with a read transaction still held, and
    /// leaves the WAL for our next write to restart.
    #[test]
    fn checkpoint_under_the_write_lock_keeps_reading_and_lets_the_wal_restart() {
        let dir = tempfile::tempdir().expect("test setup");
        let db = dir.path().join("a.db");
        let wal = dir.path().join("a.db-wal");
        let app = Connection::open(&db).expect("test setup");
        app.execute_batch(
            "PRAGMA journal_mode = wal; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t(x);
             INSERT INTO t VALUES (randomblob(5000));",
        )
        .expect("test setup");
        let mut c = Conns::open(&db, Duration::from_secs(1)).expect("open");
        c.acquire_read_lock().expect("read");
        app.execute("INSERT INTO t VALUES (randomblob(5000))", [])
            .expect("test setup");
        c.begin_write_lock().expect("write lock");
        let (busy, log, done) = c.checkpoint(CheckpointMode::Passive).expect("checkpoint");
        assert_eq!((busy, done), (0, log), "not every frame was copied");
        assert!(
            c.has_read_lock() && !c.held.is_autocommit(),
            "no read transaction held"
        );
        c.end_write_lock().expect("unlock");
        let before = salts(&wal);
        c.bump_seq().expect("write");
        assert_ne!(salts(&wal), before, "the write did not restart the WAL");
        // Outside the write lock it refuses, rather than leave a moment without a read mark
        // while writers commit.
        assert!(c.checkpoint(CheckpointMode::Passive).is_err());
        assert!(c.has_read_lock());
    }
}
