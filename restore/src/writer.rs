//! The output database: Litestream's rules for an existing output, the `<out>.tmp` file that
//! pages are written into, and the fsync/rename/fsync-dir that publishes it.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage::local;

use crate::verify::PageSink;
use crate::{RestoreError, Result};

const SIDECARS: [&str; 3] = ["-wal", "-shm", "-journal"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Litestream's `prepareOutputPath`: a non-empty output or any SQLite sidecar is an error
/// unless `force`. The old files are removed only when the new database is published.
pub fn prepare_output(path: &Path, force: bool) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(RestoreError::Output(format!(
                "cannot access output path: {}: {e}",
                path.display()
            )))
        }
    };
    if let Some(meta) = meta {
        if meta.is_dir() {
            return Err(RestoreError::Output(format!(
                "cannot restore, output path is a directory: {}",
                path.display()
            )));
        }
        if meta.len() > 0 && !force {
            return Err(RestoreError::Output(format!(
                "cannot restore, output path already exists and is not empty: {}. Use -force to overwrite",
                path.display()
            )));
        }
    }
    // Unlike Litestream, sidecars are checked even when the output is absent: a stale -wal
    // next to a freshly restored database would be replayed into it by SQLite.
    for s in SIDECARS {
        let p = with_suffix(path, s);
        match fs::symlink_metadata(&p) {
            Ok(_) if !force => {
                return Err(RestoreError::Output(format!(
                "cannot restore, SQLite sidecar path already exists: {}. Use -force to overwrite",
                p.display()
            )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RestoreError::Output(format!(
                    "cannot access SQLite sidecar path: {}: {e}",
                    p.display()
                )))
            }
        }
    }
    Ok(())
}

/// Removes the output and its sidecars; done only once the new database is ready, so that a
/// failed `-force` restore leaves the old database in place.
fn remove_existing(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = with_suffix(path, suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RestoreError::io(p, e)),
        }
    }
    Ok(())
}

/// `<out>.tmp`, sized to the database; removed on drop unless published.
pub struct TempOutput {
    path: PathBuf,
    tmp: PathBuf,
    file: Arc<File>,
    published: bool,
}

impl TempOutput {
    pub fn create(path: &Path, size: u64) -> Result<TempOutput> {
        let dir = parent_dir(path);
        fs::create_dir_all(&dir).map_err(|e| RestoreError::io(&dir, e))?;
        let tmp = local::tmp_path(path);
        // A stale `<out>.tmp` (or a symlink planted there) is unlinked, never opened: with
        // create_new (O_EXCL) the open cannot follow a link to write outside the output.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RestoreError::io(&tmp, e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| RestoreError::io(&tmp, e))?;
        let out = TempOutput {
            path: path.to_owned(),
            tmp,
            file: Arc::new(file),
            published: false,
        };
        // Pages never written (the lock page) read back as zeros.
        out.file
            .set_len(size)
            .map_err(|e| RestoreError::io(&out.tmp, e))?;
        Ok(out)
    }

    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// fsync, replace the output (and its stale sidecars), rename, fsync the directory.
    pub fn publish(mut self) -> Result<()> {
        local::fsync(&self.file).map_err(|e| RestoreError::io(&self.tmp, e))?;
        remove_existing(&self.path)?;
        fs::rename(&self.tmp, &self.path).map_err(|e| RestoreError::io(&self.path, e))?;
        self.published = true;
        let dir = parent_dir(&self.path);
        local::fsync_dir(&dir).map_err(|e| RestoreError::io(&dir, e))
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

pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Collects winning pages into a buffer, merging consecutive page numbers into one write, and
/// writes a batch (io_uring, or pwrite) when the buffer is full or the chunk ends.
pub struct PageWriter<'a> {
    file: &'a File,
    page_size: usize,
    max_pages: usize,
    is_winner: &'a dyn Fn(u32) -> bool,
    buf: Vec<u8>,
    /// (file offset, buffer range) of each run of consecutive pages.
    runs: Vec<(u64, usize, usize)>,
    pending: Option<u32>,
    last_pgno: Option<u32>,
}

impl<'a> PageWriter<'a> {
    pub fn new(
        file: &'a File,
        page_size: usize,
        batch_bytes: usize,
        is_winner: &'a dyn Fn(u32) -> bool,
    ) -> Self {
        PageWriter {
            file,
            page_size,
            max_pages: (batch_bytes / page_size).max(1),
            is_winner,
            buf: Vec::new(),
            runs: Vec::new(),
            pending: None,
            last_pgno: None,
        }
    }

    fn offset_of(&self, pgno: u32) -> u64 {
        u64::from(pgno - 1) * self.page_size as u64
    }
}

impl PageSink for PageWriter<'_> {
    fn page_buf(&mut self, pgno: u32) -> Result<Option<&mut [u8]>> {
        if !(self.is_winner)(pgno) {
            return Ok(None);
        }
        if self.buf.len() / self.page_size >= self.max_pages {
            self.flush()?;
        }
        let at = self.buf.len();
        self.buf.resize(at + self.page_size, 0);
        self.pending = Some(pgno);
        Ok(Some(&mut self.buf[at..]))
    }

    fn commit(&mut self) {
        let Some(pgno) = self.pending.take() else {
            return;
        };
        let at = self.buf.len() - self.page_size;
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
        if self.runs.is_empty() {
            self.buf.clear();
            return Ok(());
        }
        let writes: Vec<(u64, &[u8])> = self
            .runs
            .iter()
            .map(|&(off, a, b)| (off, &self.buf[a..b]))
            .collect();
        local::write_batch(self.file, &writes)
            .map_err(|e| RestoreError::Output(format!("writing the restored database: {e}")))?;
        for (off, buf) in &writes {
            start_writeback(self.file, *off, buf.len());
        }
        self.runs.clear();
        self.buf.clear();
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
