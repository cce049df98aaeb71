//! Building one L0 file (docs/wal.md#one-l0-file) from WAL frames and database pages.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use ltx_codec::{lock_pgno, Encoder, Header, TxId};

use crate::error::{Error, Result};
use crate::walread::WalFile;

/// Where page contents come from: the latest committed WAL frame if there is one, else the DB
/// file.
pub struct PageSource<'a> {
    /// The WAL the frames are read from.
    pub wal: &'a WalFile,
    /// pgno -> WAL offset of its frame header.
    pub wal_pages: &'a BTreeMap<u32, u64>,
    /// The database file, for pages no WAL frame holds.
    pub db: &'a File,
    /// The page size in bytes.
    pub page_size: u32,
}

impl PageSource<'_> {
    fn read(&self, pgno: u32, buf: &mut [u8]) -> Result<()> {
        let ps = self.page_size as usize;
        if let Some(&off) = self.wal_pages.get(&pgno) {
            return self.wal.read_page(off, pgno, &mut buf[..ps]);
        }
        // A page inside Commit but past the end of the DB file reads as zeros in SQLite too
        // (its WAL copy was dropped by a later shrink-then-grow, or the file is sparse).
        let off = u64::from(pgno - 1) * u64::from(self.page_size);
        let mut done = 0;
        while done < ps {
            match self.db.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Other(format!("read database page {pgno}: {e}"))),
            }
        }
        buf[done..].fill(0);
        Ok(())
    }
}

/// Header values of an L0 file (docs/wal.md#one-l0-file); everything else is as Litestream writes
/// it.
#[derive(Clone, Copy, Debug)]
pub struct L0Params {
    /// The file's TXID: both its min and max TXID.
    pub txid: TxId,
    /// The database page size in bytes.
    pub page_size: u32,
    /// The database size in pages after the last commit the file holds.
    pub commit: u32,
    /// When the file was encoded, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The WAL offset this read started at (32 or later).
    pub wal_offset: u64,
    /// The WAL bytes read from `wal_offset`; 0 when nothing was read.
    pub wal_size: u64,
    /// The salts (salt 1, salt 2) of the WAL generation read.
    pub salts: (u32, u32),
}

/// Now as an LTX header timestamp: milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The LTX header of an L0 file with the values of `p`.
pub fn header(p: &L0Params) -> Header {
    let mut h = Header::new(p.page_size, p.commit, p.txid, p.txid, p.timestamp_ms);
    h.wal_offset = p.wal_offset as i64;
    h.wal_size = p.wal_size as i64;
    h.wal_salt1 = p.salts.0;
    h.wal_salt2 = p.salts.1;
    h
}

/// The page numbers an L0 file holds: every page `1..=commit` for a snapshot; otherwise the
/// WAL pages plus growth pages `prev_commit+1..=commit` absent from the WAL. Never the lock
/// page.
pub fn page_list(
    snapshot: bool,
    wal_pages: &BTreeMap<u32, u64>,
    prev_commit: u32,
    commit: u32,
    page_size: u32,
) -> Vec<u32> {
    let lock = lock_pgno(page_size);
    if snapshot {
        return (1..=commit).filter(|&p| p != lock).collect();
    }
    let mut out: Vec<u32> = wal_pages.keys().copied().filter(|&p| p != lock).collect();
    if commit > prev_commit {
        out.extend((prev_commit + 1..=commit).filter(|p| *p != lock && !wal_pages.contains_key(p)));
        out.sort_unstable();
    }
    out
}

/// Encodes an L0 file into `w`.
pub fn encode<W: Write>(p: &L0Params, pages: &[u32], src: &PageSource<'_>, w: W) -> Result<W> {
    encode_with_header(header(p), pages, src, w)
}

/// Encodes any LTX file (L0 or a level-9 snapshot) into `w`, page by page.
pub fn encode_with_header<W: Write>(
    h: Header,
    pages: &[u32],
    src: &PageSource<'_>,
    w: W,
) -> Result<W> {
    let what = || format!("encode LTX {}-{}", h.min_txid, h.max_txid);
    let mut enc = Encoder::new(w, h).map_err(|e| Error::ltx(what(), e))?;
    let mut buf = vec![0u8; h.page_size as usize];
    for &pgno in pages {
        src.read(pgno, &mut buf)?;
        enc.encode_page(pgno, &buf)
            .map_err(|e| Error::ltx(what(), e))?;
    }
    let (bytes, _) = enc.finish().map_err(|e| Error::ltx(what(), e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_lists() {
        let mut wal = BTreeMap::new();
        wal.insert(3u32, 0u64);
        wal.insert(1, 0);
        assert_eq!(page_list(false, &wal, 5, 5, 4096), vec![1, 3]);
        assert_eq!(page_list(false, &wal, 4, 7, 4096), vec![1, 3, 5, 6, 7]);
        assert_eq!(page_list(true, &wal, 0, 4, 4096), vec![1, 2, 3, 4]);
        let lock = lock_pgno(65536);
        let snap = page_list(true, &BTreeMap::new(), 0, lock + 1, 65536);
        assert!(!snap.contains(&lock));
        assert_eq!(snap.len() as u32, lock);
    }
}
