//! The application side: a SQLite writer whose WAL traffic is counted exactly.
//!
//! WAL bytes are counted with a WAL hook: after each commit SQLite reports how many frames the
//! WAL holds; the growth since the previous commit (or the whole count when the WAL was
//! restarted, seen as a new salt in the WAL header) is the number of frames that commit wrote.
//! Bytes = frames x (24 + page size). Setting a WAL hook replaces SQLite's auto-checkpoint, so the
//! hook does what the default one does: a PASSIVE checkpoint once the WAL holds 1000 frames.

use std::ffi::{c_char, c_int, c_void};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{ffi, Connection};

pub const PAGE_SIZE: u64 = 4096;
const FRAME_HEADER: u64 = 24;

/// Frames in the WAL after the last commit of the hooked connection (one writer at a time).
static WAL_FRAMES: AtomicI64 = AtomicI64::new(0);

/// The hook's checkpoint threshold in frames (SQLite's default 1000); 0 turns it off.
static AUTOCHECKPOINT: AtomicI64 = AtomicI64::new(1000);

/// Sets the writer's auto-checkpoint threshold (`PRAGMA wal_autocheckpoint`'s meaning: 0 = off).
pub fn set_autocheckpoint(frames: i64) {
    AUTOCHECKPOINT.store(frames, Ordering::Relaxed);
}

unsafe extern "C" fn wal_hook(
    _ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    WAL_FRAMES.store(i64::from(frames), Ordering::Relaxed);
    let limit = AUTOCHECKPOINT.load(Ordering::Relaxed);
    if limit > 0 && i64::from(frames) >= limit {
        // SAFETY: called by SQLite with its own valid handle and schema name.
        unsafe { ffi::sqlite3_wal_checkpoint(db, name) };
    }
    ffi::SQLITE_OK
}

pub struct Writer {
    pub conn: Connection,
    wal: PathBuf,
    last_frames: i64,
    last_salt: [u8; 8],
    /// WAL bytes written by commits so far.
    pub wal_bytes: u64,
    pub commits: u64,
}

/// Opens (creating) a database in WAL mode with 4 KiB pages and `synchronous=NORMAL`.
pub fn open_db(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(&format!(
        "PRAGMA page_size={PAGE_SIZE}; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, seq INTEGER, v BLOB);"
    ))?;
    Ok(conn)
}

impl Writer {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_db(path)?;
        // SAFETY: the handle is valid while `conn` lives; the hook keeps no pointer to it.
        unsafe {
            ffi::sqlite3_wal_hook(conn.handle(), Some(wal_hook), std::ptr::null_mut());
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let mut w = Self {
            conn,
            wal: PathBuf::from(wal),
            last_frames: 0,
            last_salt: [0; 8],
            wal_bytes: 0,
            commits: 0,
        };
        w.conn
            .execute("INSERT INTO t(seq, v) VALUES(0, x'00')", [])?;
        w.account()?;
        w.wal_bytes = 0;
        w.commits = 0;
        Ok(w)
    }

    fn salt(&self) -> [u8; 8] {
        let mut h = [0u8; 32];
        let mut s = [0u8; 8];
        if let Ok(mut f) = std::fs::File::open(&self.wal) {
            if f.read_exact(&mut h).is_ok() {
                s.copy_from_slice(&h[16..24]);
            }
        }
        s
    }

    /// Adds the frames of the commit that just finished.
    fn account(&mut self) -> Result<()> {
        let frames = WAL_FRAMES.load(Ordering::Relaxed);
        let salt = self.salt();
        let new = if salt != self.last_salt || frames < self.last_frames {
            frames
        } else {
            frames - self.last_frames
        };
        self.wal_bytes += new.max(0) as u64 * (FRAME_HEADER + PAGE_SIZE);
        self.last_frames = frames;
        self.last_salt = salt;
        self.commits += 1;
        Ok(())
    }

    /// One transaction of `rows` inserts of `bytes`-byte values (half random, half zeros, so
    /// pages compress about 2:1 like typical data).
    pub fn txn(&mut self, seq: i64, rows: usize, bytes: usize) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO t(seq, v) VALUES(?1, randomblob(?2) || zeroblob(?3))",
            )?;
            let r = (bytes / 2) as i64;
            let z = (bytes - bytes / 2) as i64;
            for _ in 0..rows {
                st.execute((seq, r, z))?;
            }
        }
        tx.commit().context("commit")?;
        self.account()
    }

    /// Runs `txns` transactions of `rows` x `bytes`; returns the wall time.
    pub fn run(&mut self, txns: usize, rows: usize, bytes: usize) -> Result<Duration> {
        let start = Instant::now();
        for i in 0..txns {
            self.txn(i as i64 + 1, rows, bytes)?;
        }
        Ok(start.elapsed())
    }
}

/// Builds a database of about `mib` MiB of incompressible rows (one 4000-byte random row per
/// page), checkpointed and with an empty WAL. Skips the work when `path` already has that size.
pub fn make_big_db(path: &Path, mib: u64) -> Result<u64> {
    let pages = mib * 1024 * 1024 / PAGE_SIZE;
    if let Ok(m) = std::fs::metadata(path) {
        if m.len() >= pages * PAGE_SIZE && m.len() < (pages + pages / 50 + 64) * PAGE_SIZE {
            return Ok(m.len());
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
         CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);",
    )?;
    let rows = pages;
    let mut done = 0u64;
    while done < rows {
        let n = (rows - done).min(10_000);
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1)
             INSERT INTO t(b) SELECT randomblob(4000) FROM c",
            [n as i64],
        )?;
        done += n;
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    drop(conn);
    Ok(std::fs::metadata(path)?.len())
}
