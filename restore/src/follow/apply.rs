//! Applying one LTX file to the followed database in place, in bounded memory whatever the
//! file's size: the file is streamed to a spool file next to the database, verified whole from
//! there (frames, page index, checksum, and the bounds below), and only then decoded a second
//! time into the database under the lock. So a damaged or hostile file never leaves half a
//! transaction behind, and neither pass holds more than a few pages and one write batch.
//!
//! Bounds a file must meet before any of its pages is written (see docs/restore.md#follow-mode):
//! its page size is the database's; no page is beyond its Commit; Commit is at least 1
//! and at most SQLite's largest page count; and a Commit that grows the database is backed by
//! every new page (the lock page excepted), so the database grows only by pages the file holds
//! and never into a sparse file. The lock page, if a file holds one, is not written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ltx_codec::{lock_pgno, Header, StreamDecoder};
use storage::{local, LtxFileInfo, SharedReplica};

use crate::checksum::PageSink;
use crate::fetch::file_label;
use crate::output::{create_private, with_suffix};
use crate::writer::{OutputFile, PageWriter};
use crate::{RestoreError, Result};

/// SQLite's largest page count (`SQLITE_MAX_PAGE_COUNT`): no database has more pages.
pub const MAX_PAGE_COUNT: u32 = 0xFFFF_FFFE;

/// Where Commit is in an LTX header: errors about it point there.
const COMMIT_OFFSET: u64 = 12;

/// Bytes asked of the replica per piece while spooling.
const SPOOL_PIECE: u64 = 1 << 20;
/// Read buffer over the spool file.
const SPOOL_READ: usize = 256 << 10;
/// Pages written to the database per batch.
const WRITE_BATCH: usize = 2 << 20;

/// The followed database, open for in-place updates.
pub(crate) struct Target {
    out: OutputFile,
    path: PathBuf,
    page_size: u32,
}

/// Holds `flock(LOCK_EX)` on the database while a file's pages are written, as Litestream
/// does, so that cooperating readers do not see half a transaction.
struct FlockGuard<'a>(&'a File);

impl<'a> FlockGuard<'a> {
    fn lock(f: &'a File, path: &Path) -> Result<Self> {
        // SAFETY: flock on a descriptor we own for the guard's lifetime.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(RestoreError::io(path, io::Error::last_os_error()));
        }
        Ok(FlockGuard(f))
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking a lock we hold.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Four random bytes for the change counter, so that other connections drop cached schema
/// and pages. Not security sensitive; the clock is the fallback if getrandom fails.
fn random4() -> [u8; 4] {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        b = t.to_le_bytes();
    }
    b
}

/// `<db>.follow-tmp`: one replica file, as downloaded. Created 0600, exclusively and without
/// following links; removed when dropped.
struct Spool {
    file: File,
    path: PathBuf,
}

impl Spool {
    fn create(db: &Path) -> Result<Spool> {
        let path = with_suffix(db, ".follow-tmp");
        let file = create_private(&path)?;
        Ok(Spool { file, path })
    }

    /// A reader over the whole spool from its start, with its own position.
    fn reader(&self) -> BufReader<ReadFrom<'_>> {
        BufReader::with_capacity(
            SPOOL_READ,
            ReadFrom {
                file: &self.file,
                pos: 0,
            },
        )
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Sequential reads of a file through positional reads, so that each pass has its own
/// position on one descriptor.
struct ReadFrom<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadFrom<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Target {
    /// `page_size` comes from the restore's LTX headers (or, when resuming, the database
    /// header), and every file applied must have the same.
    pub(crate) fn open(path: &Path, page_size: u32) -> Result<Target> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| RestoreError::io(path, e))?;
        Ok(Target {
            out: OutputFile::new(file, None),
            path: path.to_owned(),
            page_size,
        })
    }

    fn io(&self, e: io::Error) -> RestoreError {
        RestoreError::io(&self.path, e)
    }

    /// The database's size in pages, as it is on disk.
    fn pages(&self) -> Result<u64> {
        let len = self.out.file().metadata().map_err(|e| self.io(e))?.len();
        Ok(len / u64::from(self.page_size))
    }

    /// Downloads, verifies, then applies one file (see the module documentation).
    pub(crate) async fn apply(
        self: &Arc<Self>,
        client: &SharedReplica,
        info: &LtxFileInfo,
    ) -> Result<()> {
        let label = file_label(info);
        let spool = Spool::create(&self.path)?;
        let mut stream = client
            .read_range_stream(info.ltx_name(), 0, info.size)
            .await?;
        let mut at = 0u64;
        while let Some(piece) = stream.next_piece(SPOOL_PIECE).await? {
            if piece.is_empty() {
                break;
            }
            local::write_all_at(&spool.file, &piece, at)
                .map_err(|e| RestoreError::io(&spool.path, e))?;
            at += piece.len() as u64;
        }
        drop(stream);
        if at != info.size {
            return Err(RestoreError::corrupt(
                &label,
                at,
                format!("short read: {at} of {} bytes", info.size),
            ));
        }
        let (db, info) = (Arc::clone(self), info.clone());
        tokio::task::spawn_blocking(move || {
            let commit = db.verify(&spool, &label, &info)?;
            db.write(&spool, &label, commit)
        })
        .await
        .map_err(|e| RestoreError::Plan(format!("apply task failed: {e}")))?
    }

    /// The first pass: decodes the whole spooled file, checking everything the module
    /// documentation lists. Returns the file's Commit.
    fn verify(&self, spool: &Spool, label: &str, info: &LtxFileInfo) -> Result<u32> {
        let ltx = |e| RestoreError::ltx(label, e);
        let mut d = StreamDecoder::new(spool.reader()).map_err(ltx)?;
        let h = *d.header();
        self.check_header(&h, label, info)?;
        let cur = self.pages()?;
        let lock = lock_pgno(self.page_size);
        let mut page = vec![0u8; self.page_size as usize];
        let mut new_pages = 0u64;
        while let Some(pgno) = d.next_page(&mut page).map_err(ltx)? {
            if pgno > h.commit {
                return Err(RestoreError::corrupt(
                    label,
                    COMMIT_OFFSET,
                    format!("page {pgno} is beyond Commit {}", h.commit),
                ));
            }
            if u64::from(pgno) > cur && pgno != lock {
                new_pages += 1;
            }
        }
        let commit = u64::from(h.commit);
        if commit > cur {
            let needed = commit - cur - u64::from((cur + 1..=commit).contains(&u64::from(lock)));
            if new_pages < needed {
                return Err(RestoreError::corrupt(
                    label,
                    COMMIT_OFFSET,
                    format!(
                        "Commit {commit} would grow the database from {cur} pages, but the file holds only {new_pages} of the {needed} new pages"
                    ),
                ));
            }
        }
        Ok(h.commit)
    }

    fn check_header(&self, h: &Header, label: &str, info: &LtxFileInfo) -> Result<()> {
        if h.page_size != self.page_size {
            return Err(RestoreError::Plan(format!(
                "{label}: page size {} differs from the database's {}",
                h.page_size, self.page_size
            )));
        }
        if h.min_txid != info.min_txid || h.max_txid != info.max_txid {
            return Err(RestoreError::corrupt(
                label,
                16,
                "header TXIDs differ from the file name",
            ));
        }
        if h.commit == 0 || h.commit > MAX_PAGE_COUNT {
            return Err(RestoreError::corrupt(
                label,
                COMMIT_OFFSET,
                format!(
                    "Commit {} is not a database size (1 to {MAX_PAGE_COUNT} pages)",
                    h.commit
                ),
            ));
        }
        Ok(())
    }

    /// The second pass: writes the verified file's pages under the lock, shrinks or grows the
    /// database to its Commit and fsyncs.
    fn write(&self, spool: &Spool, label: &str, commit: u32) -> Result<()> {
        let ltx = |e| RestoreError::ltx(label, e);
        let ps = self.page_size as usize;
        let lock = lock_pgno(self.page_size);
        let mut d = StreamDecoder::new(spool.reader()).map_err(ltx)?;
        let _lock = FlockGuard::lock(self.out.file(), &self.path)?;
        let is_winner = |pgno: u32| pgno != lock;
        let mut w = PageWriter::new(&self.out, ps, WRITE_BATCH, &is_winner);
        let mut page = vec![0u8; ps];
        while let Some(pgno) = d.next_page(&mut page).map_err(ltx)? {
            if pgno == 1 && page.len() >= 28 {
                // Rollback-journal mode: the replica has no WAL, and readers must not look for
                // one. A new change counter invalidates their caches.
                page[18] = 1;
                page[19] = 1;
                page[24..28].copy_from_slice(&random4());
            }
            if let Some(buf) = w.page_buf(pgno)? {
                buf.copy_from_slice(&page);
                w.commit();
            }
        }
        w.flush()?;
        drop(w);
        let f = self.out.file();
        local::fsync(f).map_err(|e| self.io(e))?;
        f.set_len(u64::from(commit) * ps as u64)
            .map_err(|e| self.io(e))?;
        local::fsync(f).map_err(|e| self.io(e))
    }
}
