//! The restored database being written: the `<out>.tmp` file that pages are written into (0600,
//! never through a planted link), published through its [`PreparedOutput`].

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use storage::local;

use crate::checksum::PageSink;
use crate::output::{
    create_private, parent_dir, remove_if_present, with_suffix, PreparedOutput, SIDECARS,
};
use crate::{RestoreError, Result};

/// `<out>.tmp`, sized to the database; removed on drop unless published.
pub struct TempOutput {
    out: PreparedOutput,
    tmp: PathBuf,
    file: Arc<OutputFile>,
    published: bool,
}

impl TempOutput {
    /// Creates `<out>.tmp` of `size` bytes, written through the page cache.
    pub fn create(out: &PreparedOutput, size: u64) -> Result<TempOutput> {
        Self::create_with(out, size, None)
    }

    /// Like [`TempOutput::create`], for a database of `page_size` pages: whole aligned pages
    /// are written with direct I/O where the file system takes it (see [`OutputFile`]).
    pub fn create_for_pages(out: &PreparedOutput, size: u64, page_size: u32) -> Result<TempOutput> {
        Self::create_with(out, size, Some(page_size))
    }

    fn create_with(
        prepared: &PreparedOutput,
        size: u64,
        page_size: Option<u32>,
    ) -> Result<TempOutput> {
        let path = prepared.path();
        let dir = parent_dir(path);
        fs::create_dir_all(&dir).map_err(|e| RestoreError::io(&dir, e))?;
        let tmp = local::tmp_path(path);
        // A stale `<out>.tmp` and its sidecars (or links planted there) are unlinked, never
        // opened, so SQLite (v0.3.x restores, the integrity check) finds no stale WAL. The file
        // is 0600 until published: the restored bytes are no one else's business before the
        // final mode is set.
        for s in SIDECARS {
            remove_if_present(&with_suffix(&tmp, s))?;
        }
        let file = create_private(&tmp)?;
        let direct = page_size
            .filter(|&ps| (ps as usize).is_multiple_of(DIRECT_ALIGN) && direct_io_allowed())
            .and_then(|_| reopen_direct(&file));
        let out = TempOutput {
            out: prepared.clone(),
            tmp,
            file: Arc::new(OutputFile::new(file, direct)),
            published: false,
        };
        // Pages never written (the lock page) read back as zeros.
        out.file
            .file
            .set_len(size)
            .map_err(|e| RestoreError::io(&out.tmp, e))?;
        Ok(out)
    }

    /// A shared handle to the file being written.
    pub fn file(&self) -> Arc<OutputFile> {
        Arc::clone(&self.file)
    }

    /// The temporary file's path, `<out>.tmp`.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Final mode, fsync, rename into place (see [`PreparedOutput`]), fsync the directory.
    /// On error the temporary file is removed and the output path is as it was.
    pub fn publish(mut self) -> Result<()> {
        let res = self.out.publish(&self.file.file, &self.tmp);
        // Once renamed, the file is the output's: even a failing directory fsync must not
        // make the drop remove a name that is no longer ours.
        self.published = !self.tmp.exists();
        res
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.tmp);
            for s in SIDECARS {
                let _ = fs::remove_file(with_suffix(&self.tmp, s));
            }
        }
    }
}

/// Alignment of direct-I/O writes (file offset, length and buffer address). 4096 covers the
/// logical block size of common disks; a device that wants more fails the write with EINVAL
/// and the restore carries on through the page cache.
pub const DIRECT_ALIGN: usize = 4096;

/// `LS_RESTORE_DIRECT_IO=0` keeps every write in the page cache.
fn direct_io_allowed() -> bool {
    std::env::var("LS_RESTORE_DIRECT_IO").map_or(true, |v| v != "0")
}

/// A second descriptor of the same file, opened with `O_DIRECT` through `/proc/self/fd` (so
/// it is the same inode, whatever happens to the name). `None` where that is not possible.
fn reopen_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// The restored database being written. Runs of whole pages that are aligned for direct I/O
/// go through an `O_DIRECT` descriptor when there is one: a restore writes every byte once
/// and never reads it back, so copying it into the page cache only costs CPU (on the project
/// machine that copy was most of a 1 GiB restore's system time) and memory that writeback
/// must then drain. Anything else, or everything after a direct write is refused with
/// EINVAL, goes through the page cache with early writeback. Both end in the same fsync.
pub struct OutputFile {
    file: File,
    direct: Option<File>,
    direct_ok: AtomicBool,
    bufs: Mutex<Vec<PageBuf>>,
}

impl OutputFile {
    /// Wraps `file`, with `direct` as its `O_DIRECT` descriptor if there is one.
    pub fn new(file: File, direct: Option<File>) -> OutputFile {
        OutputFile {
            file,
            direct,
            direct_ok: AtomicBool::new(true),
            bufs: Mutex::new(Vec::new()),
        }
    }

    /// The buffered descriptor (reads, fsync, set_len).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether writes currently go through direct I/O.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some() && self.direct_ok.load(Ordering::Relaxed)
    }

    /// Writes every `(offset, bytes)` pair.
    pub fn write_runs(&self, runs: &[(u64, &[u8])]) -> std::io::Result<()> {
        if let Some(d) = self.direct.as_ref().filter(|_| self.is_direct()) {
            let aligned = |v: usize| v.is_multiple_of(DIRECT_ALIGN);
            if runs.iter().all(|(off, b)| {
                aligned(*off as usize) && aligned(b.len()) && aligned(b.as_ptr() as usize)
            }) {
                match local::write_batch(d, runs) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        // Not for this file system or device after all: the same bytes go
                        // through the page cache instead, now and from here on.
                        self.direct_ok.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        local::write_batch(&self.file, runs)?;
        for (off, buf) in runs {
            start_writeback(&self.file, *off, buf.len());
        }
        Ok(())
    }

    /// A write buffer of at least `len` bytes (aligned for direct I/O), reused across chunks
    /// so that its memory is faulted in once.
    fn take_buf(&self, len: usize) -> PageBuf {
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        match bufs.iter().position(|b| b.len() >= len) {
            Some(i) => bufs.swap_remove(i),
            None => PageBuf::new(len),
        }
    }

    fn give_buf(&self, buf: PageBuf) {
        self.bufs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
    }
}

/// One aligned block of a [`PageBuf`].
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Block([u8; DIRECT_ALIGN]);

/// A zero-initialised byte buffer whose start is aligned to [`DIRECT_ALIGN`].
pub struct PageBuf {
    blocks: Vec<Block>,
}

impl PageBuf {
    fn new(len: usize) -> PageBuf {
        PageBuf {
            blocks: vec![Block([0; DIRECT_ALIGN]); len.div_ceil(DIRECT_ALIGN)],
        }
    }

    fn len(&self) -> usize {
        self.blocks.len() * DIRECT_ALIGN
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `Block` is a plain byte array with no padding (size == align == 4096), so
        // the blocks are `len()` initialised, contiguous bytes borrowed for as long as `self`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as in `as_slice`, with the unique borrow of `self`.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// Collects winning pages into an aligned buffer, merging consecutive page numbers into one
/// write, and writes a batch when the buffer is full or the chunk ends.
pub struct PageWriter<'a> {
    out: &'a OutputFile,
    page_size: usize,
    is_winner: &'a dyn Fn(u32) -> bool,
    buf: Option<PageBuf>,
    cap: usize,
    used: usize,
    /// (file offset, buffer range) of each run of consecutive pages.
    runs: Vec<(u64, usize, usize)>,
    pending: Option<u32>,
    last_pgno: Option<u32>,
}

impl<'a> PageWriter<'a> {
    /// A writer into `out` for pages of `page_size` bytes that keeps the pages `is_winner`
    /// accepts, buffering about `batch_bytes` (at least one page) before each write.
    pub fn new(
        out: &'a OutputFile,
        page_size: usize,
        batch_bytes: usize,
        is_winner: &'a dyn Fn(u32) -> bool,
    ) -> Self {
        PageWriter {
            out,
            page_size,
            is_winner,
            buf: None,
            cap: (batch_bytes / page_size).max(1) * page_size,
            used: 0,
            runs: Vec::new(),
            pending: None,
            last_pgno: None,
        }
    }

    fn offset_of(&self, pgno: u32) -> u64 {
        u64::from(pgno - 1) * self.page_size as u64
    }
}

impl Drop for PageWriter<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.out.give_buf(b);
        }
    }
}

impl PageSink for PageWriter<'_> {
    fn page_buf(&mut self, pgno: u32) -> Result<Option<&mut [u8]>> {
        if !(self.is_winner)(pgno) {
            return Ok(None);
        }
        if self.used + self.page_size > self.cap {
            self.flush()?;
        }
        let (at, ps, cap) = (self.used, self.page_size, self.cap);
        let out = self.out;
        let buf = self.buf.get_or_insert_with(|| out.take_buf(cap));
        self.pending = Some(pgno);
        // Stale bytes from an earlier chunk are fine: a page is decompressed over all of
        // `page_size` bytes or the restore fails.
        Ok(Some(&mut buf.as_mut_slice()[at..at + ps]))
    }

    fn commit(&mut self) {
        let Some(pgno) = self.pending.take() else {
            return;
        };
        let at = self.used;
        self.used += self.page_size;
        match self.runs.last_mut() {
            Some(run) if self.last_pgno.is_some_and(|p| p + 1 == pgno) && run.2 == at => {
                run.2 += self.page_size;
            }
            _ => {
                let off = self.offset_of(pgno);
                self.runs.push((off, at, at + self.page_size));
            }
        }
        self.last_pgno = Some(pgno);
    }

    fn flush(&mut self) -> Result<()> {
        if let (Some(buf), false) = (&self.buf, self.runs.is_empty()) {
            let bytes = buf.as_slice();
            let writes: Vec<(u64, &[u8])> = self
                .runs
                .iter()
                .map(|&(off, a, b)| (off, &bytes[a..b]))
                .collect();
            self.out
                .write_runs(&writes)
                .map_err(|e| RestoreError::Output(format!("writing the restored database: {e}")))?;
        }
        self.runs.clear();
        self.used = 0;
        self.pending = None;
        self.last_pgno = None;
        Ok(())
    }
}

/// Starts writeback of a just-written range without waiting for it. The dirty pages would
/// otherwise sit in the page cache until the final fsync (a 1 GiB restore is far below the
/// kernel's background threshold), so the disk would idle while pages are decoded and then do
/// all the work at the end. Best effort: an error here only loses the overlap.
fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the fd is open for the call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(seed: u8, len: usize) -> PageBuf {
        let mut b = PageBuf::new(len);
        for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(13) ^ seed;
        }
        b
    }

    #[test]
    fn direct_and_buffered_writes_land_alike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("db");
        let prepared = crate::output::prepare_output(&out, false).expect("prepare");
        let tmp = TempOutput::create_for_pages(&prepared, 8 * 4096, 4096).expect("create");
        let f = tmp.file();
        assert_eq!(f.file().metadata().expect("stat").len(), 8 * 4096);
        let a = block(1, 2 * 4096);
        let b = block(2, 4096);
        assert_eq!(a.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
        // Aligned runs (direct I/O where the file system takes it).
        f.write_runs(&[(0, a.as_slice()), (5 * 4096, b.as_slice())])
            .expect("aligned");
        // An unaligned run always goes through the page cache.
        f.write_runs(&[(3 * 4096 + 10, &b.as_slice()[..100])])
            .expect("unaligned");
        tmp.publish().expect("publish");
        let got = std::fs::read(&out).expect("read");
        let mut want = vec![0u8; 8 * 4096];
        want[..2 * 4096].copy_from_slice(a.as_slice());
        want[5 * 4096..6 * 4096].copy_from_slice(b.as_slice());
        want[3 * 4096 + 10..3 * 4096 + 110].copy_from_slice(&b.as_slice()[..100]);
        assert!(got == want, "file content differs");
    }

    #[test]
    fn small_pages_are_buffered_and_buffers_are_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prepared =
            crate::output::prepare_output(&dir.path().join("db"), false).expect("prepare");
        let tmp = TempOutput::create_for_pages(&prepared, 4096, 1024).expect("create");
        let f = tmp.file();
        assert!(!f.is_direct());
        let b = f.take_buf(5000);
        assert!(b.len() >= 5000);
        let p = b.as_slice().as_ptr();
        f.give_buf(b);
        assert_eq!(f.take_buf(4096).as_slice().as_ptr(), p);
    }
}
