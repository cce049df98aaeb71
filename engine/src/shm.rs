//! A peek at SQLite's wal-index (the `-shm` file) without taking any of its locks
//! (docs/checkpoints.md#the-wal-index). Only a hint for when to run the next pass: every pass
//! still validates the WAL itself, so a torn or stale read costs at most an early or a late
//! pass, never a wrong byte.
//!
//! The descriptor is the one thing here that can do harm. POSIX record locks belong to a process
//! and an inode, not to a descriptor, and closing *any* descriptor of a file drops every lock the
//! process holds on it. SQLite's connections in this process hold their read marks as such locks
//! on the `-shm` file, so closing a descriptor we opened on it would silently end the read mark
//! that keeps other processes' checkpoints from copying, and their next commit from restarting
//! the WAL over, frames we have not read yet (docs/checkpoints.md#never-close-the-wal-index).
//! So a [`ShmPeek`] takes the process's one descriptor of the file ([`crate::held`]) and keeps it
//! for as long as it lives, and the follower's threads share that peek ([`ShmPeek`] is `Clone`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The bytes read: both copies of the index header and the checkpoint info up to
/// `nBackfillAttempted`.
pub(crate) const PEEK: usize = 136;
/// One copy of the index header.
pub(crate) const HDR: usize = 48;
/// Offsets inside a header copy, and of the checkpoint info.
const MX_FRAME: usize = 16;
const IS_INIT: usize = 12;
const N_BACKFILL: usize = 96;

/// What the wal-index says about the WAL right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalIndex {
    /// Frames in the WAL up to its last commit.
    pub mx_frame: u32,
    /// Frames already copied into the database file.
    pub n_backfill: u32,
}

/// The `-shm` file of one database, opened on first use and never closed before the last clone
/// is dropped (see the module's comment for why).
#[derive(Clone)]
pub struct ShmPeek {
    path: Arc<PathBuf>,
    file: Arc<Mutex<Option<Arc<File>>>>,
}

impl ShmPeek {
    /// The peek at `<db>-shm` for database `db`; the file is not opened yet.
    pub fn new(db: &Path) -> ShmPeek {
        let mut p = db.as_os_str().to_owned();
        p.push("-shm");
        ShmPeek {
            path: Arc::new(PathBuf::from(p)),
            file: Arc::default(),
        }
    }

    /// Runs `f` on the descriptor, opened if it is not yet (the file may not exist yet); `None`
    /// when it cannot be opened. Once open it is kept even when a read fails: the `-shm` file is
    /// only removed when every connection to the database has closed, ours included, and the
    /// follower that owns this peek is then done. Opened under the lock, so no clone ever opens
    /// a second descriptor it would then have to close.
    fn with_file<T>(&self, f: impl FnOnce(&File) -> Option<T>) -> Option<T> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = crate::held::open(self.path.as_ref()).ok();
        }
        f(slot.as_ref()?)
    }

    /// Reads as much of `buf` as the file holds at `offset` (one call: the wal-index is a local
    /// file in the page cache); `None` when it cannot be opened or read.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Option<usize> {
        self.with_file(|f| f.read_at(buf, offset).ok())
    }

    /// The index now, or `None` when there is none to read (no `-shm` file, not yet
    /// initialised, or caught mid-update).
    pub fn read(&self) -> Option<WalIndex> {
        parse(&self.read_headers()?)
    }

    /// The first [`PEEK`] bytes of the file: both header copies and the checkpoint info.
    pub(crate) fn read_headers(&self) -> Option<[u8; PEEK]> {
        let mut buf = [0u8; PEEK];
        (self.read_at(&mut buf, 0)? == PEEK).then_some(buf)
    }
}

/// SQLite's Unix VFS takes its wal-index locks as POSIX byte-range locks on the `-shm` file,
/// from byte 120: the write lock, the checkpointer lock, the recovery lock, then one per read
/// mark. A reader whose snapshot needs the WAL holds a shared lock on the byte of mark 1 to 4.
const READ_MARK_1_LOCK: i64 = 120 + 3 + 1;
const READ_MARKS_AFTER_0: i64 = 4;

impl ShmPeek {
    /// Whether a connection of another process is in a read transaction that needs the WAL
    /// (holds read mark 1 or up), by asking the kernel whether an exclusive lock on those
    /// bytes would conflict; nothing is locked. Our own connections are not seen (POSIX locks
    /// do not conflict within a process), which is what the caller wants: such a reader is what
    /// keeps a checkpoint from copying everything and the WAL from restarting. `None` when
    /// there is no `-shm` file to ask.
    pub fn readers_elsewhere(&self) -> Option<bool> {
        use std::os::fd::AsRawFd;
        self.with_file(|f| {
            // SAFETY: `flock` is a plain C struct for which all zeroes is a valid value.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            fl.l_start = READ_MARK_1_LOCK;
            fl.l_len = READ_MARKS_AFTER_0;
            // SAFETY: F_GETLK only fills `fl`, which lives for the call, on a descriptor we own.
            if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) } != 0 {
                return None;
            }
            Some(fl.l_type != libc::F_UNLCK as libc::c_short)
        })
    }
}

/// The header, if its two copies are equal (a consistent header, see [`parse`]) and it is
/// initialised.
pub(crate) fn header_copy(buf: &[u8; PEEK]) -> Option<&[u8]> {
    let (a, b) = (&buf[..HDR], &buf[HDR..2 * HDR]);
    (a == b && a[IS_INIT] != 0).then_some(a)
}

/// The wal-index is in the machine's own byte order. A writer updates the second header copy
/// and then the first, so two equal copies are a consistent header.
fn parse(buf: &[u8; PEEK]) -> Option<WalIndex> {
    header_copy(buf)?;
    let u32_at = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    Some(WalIndex {
        mx_frame: u32_at(MX_FRAME),
        n_backfill: u32_at(N_BACKFILL),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_sqlite_keeps() {
        let dir = tempfile::tempdir().expect("test setup");
        let db = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&db).expect("test setup");
        c.pragma_update(None, "journal_mode", "wal")
            .expect("test setup");
        c.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("test setup");
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .expect("test setup");
        let peek = ShmPeek::new(&db);
        let before = peek.read().expect("index");
        assert!(before.mx_frame >= 2, "{before:?}");
        assert_eq!(before.n_backfill, 0);
        c.execute("INSERT INTO t VALUES (2)", [])
            .expect("test setup");
        let after = peek.read().expect("index");
        assert_eq!(after.mx_frame, before.mx_frame + 1);
        let (_, _, done): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("test setup");
        let ck = peek.read().expect("index");
        assert_eq!(ck.n_backfill as i64, done);
        assert_eq!(ck.n_backfill, after.mx_frame);
    }

    /// A reader in another process (the `sqlite3` shell) is seen while its read transaction
    /// needs the WAL, and no longer once it ends; our own are never seen.
    #[test]
    fn readers_of_other_processes_are_seen() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("test setup");
        let db = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&db).expect("test setup");
        c.execute_batch(
            "PRAGMA journal_mode = wal; PRAGMA wal_autocheckpoint = 0; \
             CREATE TABLE t(x); INSERT INTO t VALUES (1);",
        )
        .expect("test setup");
        let peek = ShmPeek::new(&db);
        c.execute_batch("BEGIN; SELECT COUNT(*) FROM t;")
            .expect("our read transaction");
        assert_eq!(
            peek.readers_elsewhere(),
            Some(false),
            "our own reader was seen"
        );
        c.execute_batch("COMMIT;").expect("test setup");
        let Ok(mut shell) = Command::new("sqlite3")
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("SKIPPED: no sqlite3 shell");
            return;
        };
        let mut input = shell.stdin.take().expect("stdin");
        writeln!(input, "BEGIN; SELECT COUNT(*) FROM t;").expect("write");
        let seen = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            peek.readers_elsewhere() == Some(true)
        });
        assert!(seen, "the shell's read transaction was not seen");
        writeln!(input, "COMMIT;").expect("write");
        let gone = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            peek.readers_elsewhere() == Some(false)
        });
        drop(input);
        let _ = shell.wait();
        assert!(
            gone,
            "the shell's read transaction was still seen after COMMIT"
        );
    }

    #[test]
    fn torn_or_missing_is_none() {
        let dir = tempfile::tempdir().expect("test setup");
        assert_eq!(ShmPeek::new(&dir.path().join("none.db")).read(), None);
        let mut buf = [0u8; PEEK];
        buf[IS_INIT] = 1;
        buf[MX_FRAME] = 5;
        buf[HDR + IS_INIT] = 1;
        assert_eq!(parse(&buf), None);
        buf[HDR + MX_FRAME] = 5;
        assert_eq!(
            parse(&buf),
            Some(WalIndex {
                mx_frame: 5,
                n_backfill: 0
            })
        );
    }
}
