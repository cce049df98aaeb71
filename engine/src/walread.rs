//! Reading the WAL through positional reads in bounded chunks, so the memory a pass uses does not
//! grow with the WAL (a mapping of the whole file would put every page the pass touches in our
//! resident set: hundreds of MiB on a write-heavy database).
//!
//! Nothing read here is trusted before it is validated: frames by their salts and checksum chain
//! ([`ltx_codec::wal::FrameCursor`]); pages copied out afterwards by [`WalFile::unchanged`], which
//! re-reads the header. SQLite rewrites the WAL header with a new salt whenever it restarts or
//! truncates the WAL, and that header is written before any frame of the new generation, while
//! committed frames of one generation are never rewritten; so an unchanged header after the
//! copy means every frame read was still the one validated (docs/checkpoints.md#reading-the-wal).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ltx_codec::wal::{
    Committed, CommittedBuilder, FrameCursor, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};

use crate::error::{Error, Result};

const HDR: u64 = WAL_HEADER_SIZE as u64;

/// Bytes read per system call while scanning (rounded down to whole frames).
const CHUNK: usize = 1 << 20;

/// The WAL opened for one pass, bounded by the size it had when opened (taken with our read
/// transaction held): nothing past that size is ever read, even if the file has grown since.
pub struct WalFile {
    file: File,
    path: PathBuf,
    len: u64,
    hdr: [u8; 32],
}

/// Reads as much of `buf` as the file holds at `off`; returns the count (short at end of file).
fn read_full(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The outcome of a scan: the committed pages and the salts of the generation read.
pub struct Scan {
    /// The latest committed frame of each page read, the last commit and where the read ended.
    pub committed: Committed,
    /// The salts (salt 1, salt 2) of the WAL generation read.
    pub salts: (u32, u32),
    /// The offset the scan really started at (the WAL start when resuming failed).
    pub start: u64,
    /// The WAL header was valid (else the WAL is empty and `salts` are its raw bytes').
    pub header_valid: bool,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl WalFile {
    /// Opens the WAL at `path`, bounded by its current size or `limit` if smaller.
    pub fn open(path: &Path, limit: Option<u64>) -> Result<WalFile> {
        let file = File::open(path).map_err(|e| Error::io("open WAL", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat WAL", path, e))?
            .len();
        let len = limit.map_or(size, |l| l.min(size));
        let mut hdr = [0u8; 32];
        let n = read_full(&file, &mut hdr[..len.min(32) as usize], 0)
            .map_err(|e| Error::io("read WAL header", path, e))?;
        hdr[n..].fill(0);
        Ok(WalFile {
            file,
            path: path.to_owned(),
            len,
            hdr,
        })
    }

    /// The bytes of the WAL this pass may read: its size when opened, or the limit if smaller.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there is nothing to read (a WAL of zero bytes, or a limit of 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hdr_bytes(&self) -> &[u8] {
        &self.hdr[..self.len.min(32) as usize]
    }

    fn corrupt(&self, e: ltx_codec::Error) -> Error {
        Error::ltx(format!("read WAL {}", self.path.display()), e)
    }

    /// Reads the committed frames from `offset` (resuming with the last L0 file's `salts` unless
    /// `offset` is the WAL start; when the frame before `offset` no longer matches, reading starts
    /// over from the WAL start, as Litestream does), stopping after `max_bytes` if given.
    pub fn scan(&self, offset: u64, salts: (u32, u32), max_bytes: Option<u64>) -> Result<Scan> {
        let mut start = offset;
        let cursor = if start == HDR {
            FrameCursor::new(self.hdr_bytes()).map_err(|e| self.corrupt(e))?
        } else {
            let fs = self.frame_size_hint();
            let mut prev = [0u8; WAL_FRAME_HEADER_SIZE];
            let prev = match fs.and_then(|fs| start.checked_sub(fs)) {
                Some(at) if at + WAL_FRAME_HEADER_SIZE as u64 <= self.len => {
                    let n = read_full(&self.file, &mut prev, at)
                        .map_err(|e| Error::io("read WAL frame", &self.path, e))?;
                    (n == prev.len()).then_some(&prev[..])
                }
                _ => None,
            };
            match FrameCursor::resume(self.hdr_bytes(), start, prev, self.len, salts) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(wal = %self.path.display(), error = %e, "prev frame mismatch, reading from the WAL start");
                    start = HDR;
                    FrameCursor::new(self.hdr_bytes()).map_err(|e| self.corrupt(e))?
                }
            }
        };
        let Some(mut cursor) = cursor else {
            // An invalid header means an empty WAL, as SQLite sees it.
            let salts = if self.len >= 24 {
                (be32(&self.hdr, 16), be32(&self.hdr, 20))
            } else {
                (0, 0)
            };
            return Ok(Scan {
                committed: Committed {
                    end_offset: start,
                    last_commit_end: start,
                    ..Committed::default()
                },
                salts,
                start,
                header_valid: false,
            });
        };
        let fs = cursor.header().frame_size();
        let mut b = CommittedBuilder::new(cursor.offset(), fs as u64, max_bytes);
        // No larger than what is there to read: most passes read a few frames, and a 1 MiB
        // buffer zeroed for each of them would cost more than the frames.
        let frames = (self.len.saturating_sub(cursor.offset()) / fs as u64) as usize;
        let mut buf = vec![0u8; (CHUNK / fs).max(1).min(frames.max(1)) * fs];
        'read: loop {
            let off = cursor.offset();
            let want = (self.len.saturating_sub(off) as usize).min(buf.len()) / fs * fs;
            if want == 0 {
                break;
            }
            let got = read_full(&self.file, &mut buf[..want], off)
                .map_err(|e| Error::io("read WAL", &self.path, e))?;
            for frame in buf[..got].chunks_exact(fs) {
                match cursor.next_frame(frame) {
                    Some(f) if b.push(&f) => {}
                    _ => break 'read,
                }
            }
            if got < want {
                break;
            }
        }
        Ok(Scan {
            committed: b.finish(),
            salts: cursor.salts(),
            start,
            header_valid: true,
        })
    }

    /// The frame size the header announces, if the header is valid.
    fn frame_size_hint(&self) -> Option<u64> {
        ltx_codec::wal::WalHeader::parse(self.hdr_bytes())
            .ok()
            .flatten()
            .map(|h| h.frame_size() as u64)
    }

    /// Copies the page of the frame whose header is at `frame_offset` into `buf`.
    pub fn read_page(&self, frame_offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = frame_offset + WAL_FRAME_HEADER_SIZE as u64;
        let n = if at + buf.len() as u64 <= self.len {
            read_full(&self.file, buf, at).map_err(|e| Error::io("read WAL", &self.path, e))?
        } else {
            0
        };
        if n < buf.len() {
            return Err(self.changed());
        }
        Ok(())
    }

    /// Whether the WAL still has the header it had when opened (see the module comment): if so,
    /// every frame validated and every page copied since came from the generation we validated.
    pub fn unchanged(&self) -> Result<bool> {
        let mut now = [0u8; 32];
        let n = read_full(&self.file, &mut now[..self.len.min(32) as usize], 0)
            .map_err(|e| Error::io("read WAL header", &self.path, e))?;
        Ok(n as u64 == self.len.min(32) && now[..n] == self.hdr[..n])
    }

    /// Starts writing `len` bytes at `offset` back to disk without waiting (the frames a pass
    /// just copied): the application's commits at `synchronous=NORMAL` leave the WAL to the
    /// kernel, which on a large machine lets gigabytes of it pile up dirty; the next fsync (a
    /// checkpoint's, ours or the application's) then writes them all at once and the writer's
    /// own writes wait behind that burst (docs/checkpoints.md#writing-the-wal-back-early). A
    /// hint only: failure changes nothing.
    pub fn start_writeback(&self, offset: u64, len: u64) {
        crate::writeback::start(&self.file, offset, len);
    }

    /// The error a pass reports when the WAL changed under it (it is retried).
    pub fn changed(&self) -> Error {
        Error::Other(format!(
            "WAL {} changed while it was being read; retrying",
            self.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx_codec::wal::{read_committed, WalReader};

    /// A WAL made by SQLite itself: several transactions, one spanning many frames.
    fn sqlite_wal(dir: &Path) -> PathBuf {
        let db = dir.join("a.db");
        let c = rusqlite::Connection::open(&db).expect("open");
        c.execute_batch(
            "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x BLOB);",
        )
        .expect("setup");
        for i in 0..600 {
            c.execute(
                "INSERT INTO t VALUES (randomblob(?1))",
                [100 + (i * 7) % 900],
            )
            .expect("insert");
        }
        c.execute_batch(
            "BEGIN; INSERT INTO t SELECT randomblob(900) FROM t;
             INSERT INTO t SELECT randomblob(900) FROM t; COMMIT;",
        )
        .expect("big txn");
        let wal = dir.join("a.db-wal");
        let copy = dir.join("copy-wal");
        std::fs::copy(&wal, &copy).expect("copy");
        copy
    }

    #[test]
    fn chunked_scan_equals_the_slice_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = sqlite_wal(dir.path());
        let bytes = std::fs::read(&p).expect("read");
        assert!(bytes.len() > 2 * CHUNK, "the WAL must span several chunks");
        let w = WalFile::open(&p, None).expect("open");
        let expect = read_committed(
            &mut WalReader::new(&bytes).expect("hdr").expect("valid"),
            None,
        );
        let got = w.scan(HDR, (0, 0), None).expect("scan");
        assert_eq!(got.committed, expect);
        assert!(got.committed.transactions > 600);
        // Resuming in the middle with the right salts reads the same as the slice reader.
        let mid = *expect
            .pages
            .values()
            .nth(expect.pages.len() / 2)
            .expect("a page");
        let salts = got.salts;
        let expect_mid = read_committed(
            &mut WalReader::with_offset(&bytes, mid, salts)
                .expect("resume")
                .expect("valid"),
            Some(100_000),
        );
        let got_mid = w.scan(mid, salts, Some(100_000)).expect("scan mid");
        assert_eq!(got_mid.committed, expect_mid);
        assert_eq!(got_mid.start, mid);
        // Wrong salts: start over from the header, as the slice reader's caller does.
        let over = w.scan(mid, (1, 2), None).expect("scan over");
        assert_eq!(over.start, HDR);
        assert_eq!(over.committed, expect);
        // Pages come back as the frames hold them.
        let (&pgno, &off) = expect.pages.iter().next().expect("page");
        let mut page = vec![0u8; 1024];
        w.read_page(off, &mut page).expect("page");
        let at = off as usize + WAL_FRAME_HEADER_SIZE;
        assert_eq!(page[..], bytes[at..at + 1024], "page {pgno}");
        assert!(w.unchanged().expect("header"));
    }

    #[test]
    fn a_bounded_scan_ignores_what_lies_past_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = sqlite_wal(dir.path());
        let bytes = std::fs::read(&p).expect("read");
        let bound = (bytes.len() / 3) as u64;
        let w = WalFile::open(&p, Some(bound)).expect("open");
        let expect = read_committed(
            &mut WalReader::new(&bytes[..bound as usize])
                .expect("hdr")
                .expect("valid"),
            None,
        );
        assert_eq!(w.scan(HDR, (0, 0), None).expect("scan").committed, expect);
        let mut page = vec![0u8; 1024];
        assert!(w.read_page(bound, &mut page).is_err(), "past the bound");
    }

    #[test]
    fn a_new_header_or_a_truncation_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = sqlite_wal(dir.path());
        let w = WalFile::open(&p, None).expect("open");
        assert!(w.unchanged().expect("same"));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .expect("open rw");
        // A restart: salt-1 incremented in a rewritten header.
        let mut hdr = [0u8; 4];
        f.read_exact_at(&mut hdr, 16).expect("salt");
        let salt = u32::from_be_bytes(hdr).wrapping_add(1);
        f.write_all_at(&salt.to_be_bytes(), 16).expect("write salt");
        assert!(!w.unchanged().expect("changed"));
        f.set_len(0).expect("truncate");
        assert!(!w.unchanged().expect("truncated"));
        let mut page = vec![0u8; 1024];
        assert!(w.read_page(HDR, &mut page).is_err());
    }
}
