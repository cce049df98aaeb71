//! Reading the WAL through positional reads in bounded chunks, so the memory a pass uses does not
//! grow with the WAL (a mapping of the whole file would put every page the pass touches in our
//! resident set: hundreds of MiB on a write-heavy database).
//!
//! Frames are found either by reading them, validated by their salts and checksum chain
//! ([`ltx_codec::wal::FrameCursor`]), or through SQLite's wal-index as its own readers find them
//! ([`WalFile::scan_indexed`]). Each page copied out is checked against its frame's header, and
//! all of them afterwards by [`WalFile::unchanged`], which re-reads the WAL header. SQLite
//! rewrites that header with a new salt whenever it restarts or truncates the WAL, before any
//! frame of the new generation, while committed frames of one generation are never rewritten; so
//! an unchanged header after the copy means every frame read was still the one found
//! (docs/checkpoints.md#reading-the-wal).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ltx_codec::wal::{
    Committed, CommittedBuilder, FrameCursor, WalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};

use crate::error::{Error, Result};
use crate::shm::ShmPeek;
use crate::walindex;

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
    /// SQLite transactions read; `None` when the frames were found through the wal-index,
    /// which does not say where each transaction ended.
    pub transactions: Option<u64>,
}

/// What a frame's header says, its checksum apart.
struct FrameHeader {
    pgno: u32,
    commit: u32,
    salts: (u32, u32),
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
                transactions: Some(0),
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
        let committed = b.finish();
        Ok(Scan {
            transactions: Some(committed.transactions),
            committed,
            salts: cursor.salts(),
            start,
            header_valid: true,
        })
    }

    /// The committed frames from `offset`, as [`WalFile::scan`] finds them, found through the
    /// wal-index of `index` when it stands for this WAL, else by reading the frames.
    pub fn scan_using(
        &self,
        offset: u64,
        salts: (u32, u32),
        max_bytes: Option<u64>,
        index: &ShmPeek,
    ) -> Result<Scan> {
        match self.scan_indexed(offset, salts, max_bytes, index)? {
            Some(scan) => Ok(scan),
            None => self.scan(offset, salts, max_bytes),
        }
    }

    /// [`WalFile::scan`] through the wal-index (docs/wal.md#finding-frames-through-the-wal-index):
    /// the same committed pages, found without reading the frames. `None` whenever the index
    /// cannot stand for this WAL (none, another generation or page size, past the bound opened,
    /// changed while read); the caller then scans. A frame the index names is checked against
    /// its own header when its page is copied ([`WalFile::read_page`]).
    fn scan_indexed(
        &self,
        offset: u64,
        salts: (u32, u32),
        max_bytes: Option<u64>,
        shm: &ShmPeek,
    ) -> Result<Option<Scan>> {
        let Some(h) = WalHeader::parse(self.hdr_bytes()).ok().flatten() else {
            return Ok(None);
        };
        let Some(ix) = walindex::header(shm) else {
            return Ok(None);
        };
        let fs = h.frame_size() as u64;
        if ix.salts != (h.salt1, h.salt2) || ix.page_size != h.page_size {
            return Ok(None);
        }
        // Go on from the last L0 file if it is of this generation, else from the start (what
        // `scan` does when the frame before `offset` is not of the last file's generation).
        let resumes = offset > HDR && salts == ix.salts && (offset - HDR).is_multiple_of(fs);
        let start = if resumes { offset } else { HDR };
        let Ok(from) = u32::try_from((start - HDR) / fs) else {
            return Ok(None);
        };
        let end_of = |frame: u32| HDR + u64::from(frame) * fs;
        if from > ix.mx_frame || end_of(ix.mx_frame) > self.len {
            return Ok(None);
        }
        let mut committed = Committed {
            end_offset: start,
            last_commit_end: start,
            ..Committed::default()
        };
        // With a limit, stop at the first commit at or past it, as `scan` does.
        let to = match max_bytes {
            Some(m) if end_of(ix.mx_frame) - start > m => {
                let first = u32::try_from((start + m - HDR).div_ceil(fs)).unwrap_or(u32::MAX);
                match self.first_commit(first.max(from + 1), ix.mx_frame, ix.salts, fs)? {
                    Some(f) => f,
                    None => return Ok(None),
                }
            }
            _ => ix.mx_frame,
        };
        if to > from {
            let mut last = 0;
            let listed = walindex::pages(shm, from, to, |frame, pgno| {
                committed.pages.insert(pgno, end_of(frame - 1));
                last = pgno;
            });
            // The frame ending the read must be a commit of this generation holding what the
            // index says, and the index must still be of this generation (not restarted while
            // read).
            let commit = self.commit_at(end_of(to - 1), last, ix.salts)?;
            let still = walindex::header(shm).is_some_and(|now| now.salts == ix.salts);
            let (Some(()), Some(commit), true) = (listed, commit, still) else {
                return Ok(None);
            };
            committed.commit = commit;
            committed.last_commit_end = end_of(to);
        }
        // SQLite writes a transaction's frames, and only then moves the index's last commit
        // past them: a pass woken by that write can find the index one commit behind. The few
        // frames past the index's end are read as the frame scan reads them (their checksums
        // chained from the last indexed frame's), so no commit in the file waits for a later
        // wake-up.
        if to == ix.mx_frame && end_of(to) < self.len {
            let rest = max_bytes.map(|m| m.saturating_sub(end_of(to) - start).max(1));
            let tail = self.scan(end_of(to), ix.salts, rest)?;
            if tail.start != end_of(to) {
                return Ok(None);
            }
            if tail.committed.last_commit_end > end_of(to) {
                committed.pages.extend(tail.committed.pages);
                committed.commit = tail.committed.commit;
                committed.last_commit_end = tail.committed.last_commit_end;
            }
        }
        // As the frame scan ends: pages past the last commit's size are gone (the database
        // shrank), and the read ends after the last frame kept.
        let commit = committed.commit;
        committed.pages.retain(|&pgno, _| pgno <= commit);
        if let Some(last) = committed.pages.values().max() {
            committed.end_offset = last + fs;
        }
        Ok(Some(Scan {
            committed,
            salts: ix.salts,
            start,
            header_valid: true,
            transactions: None,
        }))
    }

    /// The header of the frame at `at`, if the WAL holds one there.
    fn frame_header(&self, at: u64) -> Result<Option<FrameHeader>> {
        let mut b = [0u8; WAL_FRAME_HEADER_SIZE];
        let n = read_full(&self.file, &mut b, at)
            .map_err(|e| Error::io("read WAL frame", &self.path, e))?;
        Ok((n == b.len()).then(|| FrameHeader {
            pgno: be32(&b, 0),
            commit: be32(&b, 4),
            salts: (be32(&b, 8), be32(&b, 12)),
        }))
    }

    /// The database size the commit frame at `at` records, if it is a commit frame of the
    /// generation with `salts` holding page `pgno`.
    fn commit_at(&self, at: u64, pgno: u32, salts: (u32, u32)) -> Result<Option<u32>> {
        Ok(self.frame_header(at)?.and_then(|h| {
            (h.pgno == pgno && h.salts == salts && h.commit != 0).then_some(h.commit)
        }))
    }

    /// The first commit frame among frames `first..=last` (1-based, `fs` bytes each), reading
    /// only their headers; frames up to the index's last commit are all committed, so their
    /// headers can be taken as they are. `None` if one is not of this generation.
    fn first_commit(
        &self,
        first: u32,
        last: u32,
        salts: (u32, u32),
        fs: u64,
    ) -> Result<Option<u32>> {
        for frame in first..=last {
            match self.frame_header(HDR + u64::from(frame - 1) * fs)? {
                Some(h) if h.salts == salts && h.pgno != 0 => {
                    if h.commit != 0 {
                        return Ok(Some(frame));
                    }
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The frame size the header announces, if the header is valid.
    fn frame_size_hint(&self) -> Option<u64> {
        ltx_codec::wal::WalHeader::parse(self.hdr_bytes())
            .ok()
            .flatten()
            .map(|h| h.frame_size() as u64)
    }

    /// Copies the page of the frame whose header is at `frame_offset` into `buf`, after checking
    /// that the frame's own header names page `pgno` and carries the salts of the generation
    /// this pass opened: a frame found through the wal-index is thereby checked against the
    /// WAL, and one found by the scan is read again as it was validated.
    pub fn read_page(&self, frame_offset: u64, pgno: u32, buf: &mut [u8]) -> Result<()> {
        let end = frame_offset + (WAL_FRAME_HEADER_SIZE + buf.len()) as u64;
        let mut head = [0u8; WAL_FRAME_HEADER_SIZE];
        if end > self.len || self.read_frame(frame_offset, &mut head, buf)? < end - frame_offset {
            return Err(self.changed());
        }
        let salts = (be32(&self.hdr, 16), be32(&self.hdr, 20));
        if be32(&head, 0) != pgno || (be32(&head, 8), be32(&head, 12)) != salts {
            return Err(self.changed());
        }
        Ok(())
    }

    /// Reads a frame's header and page with one call (`preadv`); the count read.
    fn read_frame(&self, at: u64, head: &mut [u8], page: &mut [u8]) -> Result<u64> {
        use std::os::fd::AsRawFd;
        let want = (head.len() + page.len()) as u64;
        let off = libc::off_t::try_from(at).map_err(|_| self.changed())?;
        let iov = [
            libc::iovec {
                iov_base: head.as_mut_ptr().cast(),
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: page.as_mut_ptr().cast(),
                iov_len: page.len(),
            },
        ];
        loop {
            // SAFETY: both buffers outlive the call and the iovecs give their exact lengths.
            let n = unsafe { libc::preadv(self.file.as_raw_fd(), iov.as_ptr(), 2, off) };
            if n >= 0 && n as u64 == want {
                return Ok(want);
            }
            if n >= 0 {
                // Short (the end of the file, or a rare partial read): read both plainly.
                let io = |e| Error::io("read WAL", &self.path, e);
                let h = read_full(&self.file, head, at).map_err(io)?;
                if h < head.len() {
                    return Ok(h as u64);
                }
                let p = read_full(&self.file, page, at + h as u64).map_err(io)?;
                return Ok((h + p) as u64);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("read WAL", &self.path, e));
            }
        }
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
        storage::local::start_writeback(&self.file, offset, len);
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
pub(crate) mod tests {
    use super::*;
    use ltx_codec::wal::{read_committed, WalReader};

    /// `dir/a.db` with 1 KiB pages in WAL mode, no auto-checkpoint, and `rows` one-row
    /// transactions of blobs from 100 bytes to 100 + `spread`.
    pub(crate) fn wal_db(
        dir: &Path,
        rows: usize,
        spread: usize,
    ) -> (PathBuf, rusqlite::Connection) {
        let db = dir.join("a.db");
        let c = rusqlite::Connection::open(&db).expect("open");
        c.execute_batch(
            "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x BLOB);",
        )
        .expect("setup");
        for i in 0..rows {
            c.execute(
                "INSERT INTO t VALUES (randomblob(?1))",
                [(100 + (i * 7) % spread) as i64],
            )
            .expect("insert");
        }
        (db, c)
    }

    /// A WAL made by SQLite itself: several transactions, one spanning many frames.
    fn sqlite_wal(dir: &Path) -> PathBuf {
        let (_, c) = wal_db(dir, 600, 900);
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
        w.read_page(off, pgno, &mut page).expect("page");
        assert!(
            w.read_page(off, pgno + 1, &mut page).is_err(),
            "another page's frame"
        );
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
        assert!(w.read_page(bound, 1, &mut page).is_err(), "past the bound");
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
        assert!(w.read_page(HDR, 1, &mut page).is_err());
    }

    /// Through the wal-index, a scan finds what reading the frames finds: from the start, from
    /// the middle with the last file's salts, with a limit, and from the start again when the
    /// salts are another generation's.
    #[test]
    fn an_indexed_scan_equals_the_frame_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, c) = wal_db(dir.path(), 1500, 2500);
        let shm = ShmPeek::new(&db);
        let w = WalFile::open(&dir.path().join("a.db-wal"), None).expect("open");
        let full = w.scan(HDR, (0, 0), None).expect("scan");
        let ix = w
            .scan_indexed(HDR, (0, 0), None, &shm)
            .expect("indexed")
            .expect("the index stands for the WAL");
        assert_eq!(ix.committed.pages, full.committed.pages);
        assert_eq!(ix.committed.commit, full.committed.commit);
        assert_eq!(ix.committed.end_offset, full.committed.end_offset);
        assert_eq!(
            (ix.salts, ix.start, ix.transactions),
            (full.salts, HDR, None)
        );
        let mid = *full
            .committed
            .pages
            .values()
            .nth(full.committed.pages.len() / 3)
            .expect("page");
        for limit in [None, Some(1), Some(50_000), Some(400_000)] {
            let a = w.scan(mid, full.salts, limit).expect("scan");
            let b = w
                .scan_indexed(mid, full.salts, limit, &shm)
                .expect("indexed")
                .expect("index");
            assert_eq!(b.committed.pages, a.committed.pages, "{limit:?}");
            assert_eq!(b.committed.end_offset, a.committed.end_offset, "{limit:?}");
            assert_eq!(b.committed.last_commit_end, a.committed.last_commit_end);
            assert_eq!(b.committed.commit, a.committed.commit, "{limit:?}");
            assert_eq!(b.start, mid);
        }
        let other = w
            .scan_indexed(mid, (1, 2), None, &shm)
            .expect("indexed")
            .expect("index");
        assert_eq!(
            (other.start, &other.committed.pages),
            (HDR, &full.committed.pages)
        );
        // Every page the index names is the one its frame holds.
        let mut page = vec![0u8; 1024];
        for (&pgno, &off) in &ix.committed.pages {
            w.read_page(off, pgno, &mut page).expect("page");
        }
        // An index a few commits behind the WAL (caught between SQLite's frame writes and its
        // index update): the frames past its end are read, from the start and from its end.
        std::fs::copy(dir.path().join("a.db-shm"), dir.path().join("b.db-shm")).expect("copy");
        let lagging = ShmPeek::new(&dir.path().join("b.db"));
        let old_end = ix.committed.end_offset;
        for i in 0..5 {
            c.execute("INSERT INTO t VALUES (randomblob(?1))", [3000 + i])
                .expect("insert");
        }
        // From `at`, the indexed scan finds what the frame scan finds; returns the latter.
        let same = |shm: &ShmPeek, at: u64| -> Committed {
            let w = WalFile::open(&dir.path().join("a.db-wal"), None).expect("open");
            let a = w.scan(at, full.salts, None).expect("scan").committed;
            let b = w
                .scan_indexed(at, full.salts, None, shm)
                .expect("indexed")
                .expect("index")
                .committed;
            assert_eq!(b.pages, a.pages, "from {at}");
            assert_eq!(
                (b.end_offset, b.commit),
                (a.end_offset, a.commit),
                "from {at}"
            );
            a
        };
        for at in [HDR, old_end] {
            assert!(same(&lagging, at).end_offset > old_end);
        }
        // A transaction that shrinks the database: pages past its size are dropped, as the
        // frame scan drops them, from the start and from the middle.
        c.execute_batch("DELETE FROM t WHERE rowid > 20; VACUUM;")
            .expect("shrink");
        for at in [HDR, old_end] {
            assert!(same(&shm, at).commit < full.committed.commit, "it shrank");
        }
        // A WAL that is not the index's generation is left to the frame scan.
        let copy = dir.path().join("other-wal");
        let mut bytes = std::fs::read(dir.path().join("a.db-wal")).expect("read");
        bytes[16] ^= 1;
        std::fs::write(&copy, &bytes).expect("write");
        let stale = WalFile::open(&copy, None).expect("open");
        assert!(stale
            .scan_indexed(HDR, (0, 0), None, &shm)
            .expect("indexed")
            .is_none());
        // Nor does it stand for more than the pass opened.
        let short = WalFile::open(
            &dir.path().join("a.db-wal"),
            Some(full.committed.end_offset / 2),
        )
        .expect("open");
        assert!(short
            .scan_indexed(HDR, (0, 0), None, &shm)
            .expect("indexed")
            .is_none());
    }
}
