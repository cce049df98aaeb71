//! Pacing the kernel's write-back behind a long write, so the dirty page cache it leaves is
//! bounded by a few windows, not by the file's size.
//!
//! Until its fsync, every page a write dirtied stays in memory, and it cannot be reclaimed
//! before it is written. Under a memory limit (a container's cgroup counts the page cache of
//! the files a process writes) a 40 MB L0 file or replica copy written whole and then fsynced
//! can need more memory than the limit leaves, and on a busy disk the kernel kills the process
//! rather than wait. Starting the write-back of each window as it is filled, and waiting for
//! the window before it, keeps at most [`WINDOW`] dirty and one more under write-back, and
//! moves the fsync's work forward into the write, where it costs the same disk time.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Bytes written between two starts of write-back.
pub const WINDOW: u64 = 4 << 20;

/// Starts writing `len` bytes of `file` at `offset` back to disk without waiting (`len` 0: to
/// the end of the file). A hint: a failure changes nothing, the fsync still reports errors.
pub fn start(file: &File, offset: u64, len: u64) {
    range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE);
}

/// `sync_file_range(2)` with `flags`, its result ignored: callers fsync before they rely on it.
fn range(file: &File, offset: u64, len: u64, flags: libc::c_uint) {
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor the caller keeps open; it touches no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, flags);
    }
}

/// Follows a file written from its start onwards: told how far the file is written, it starts
/// the write-back of each new [`WINDOW`] and waits until the window before it is on disk.
#[derive(Debug, Default)]
pub struct WriteBehind {
    /// Write-back was started for everything before this offset.
    started: u64,
    /// Everything before this offset was waited for.
    waited: u64,
}

impl WriteBehind {
    /// Nothing written yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The file now holds its bytes up to `end`.
    pub fn wrote(&mut self, file: &File, end: u64) {
        if end < self.started + WINDOW {
            return;
        }
        range(
            file,
            self.started,
            end - self.started,
            libc::SYNC_FILE_RANGE_WRITE,
        );
        if self.started > self.waited {
            range(
                file,
                self.waited,
                self.started - self.waited,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            self.waited = self.started;
        }
        self.started = end;
    }
}

/// A file written sequentially from its start with its write-back paced ([`WriteBehind`]):
/// for writers that take an `io::Write` (an encoder behind a `BufWriter`).
#[derive(Debug)]
pub struct PacedFile {
    file: File,
    off: u64,
    behind: WriteBehind,
}

impl PacedFile {
    /// Writes `file` from offset 0.
    pub fn new(file: File) -> Self {
        Self {
            file,
            off: 0,
            behind: WriteBehind::new(),
        }
    }

    /// The file, for its fsync.
    pub fn into_inner(self) -> File {
        self.file
    }
}

impl io::Write for PacedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        super::write_all_at(&self.file, buf, self.off)?;
        self.off += buf.len() as u64;
        self.behind.wrote(&self.file, self.off);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The paced writer leaves exactly the bytes written, across many windows and in pieces
    /// that do not line up with them.
    #[test]
    fn paced_writes_keep_every_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * WINDOW + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut w = PacedFile::new(File::create(&path).expect("create"));
        for piece in data.chunks(777_777) {
            w.write_all(piece).expect("write");
        }
        // What is neither waited for nor past the last start stays within two windows and a piece.
        assert!(w.behind.waited > 0, "never waited for a window");
        assert!(w.off - w.behind.waited <= 2 * WINDOW + 777_777);
        w.into_inner().sync_all().expect("fsync");
        let mut got = Vec::new();
        File::open(&path)
            .expect("open")
            .read_to_end(&mut got)
            .expect("read");
        assert!(got == data, "file differs from what was written");
    }
}
