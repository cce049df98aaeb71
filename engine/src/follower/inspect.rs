//! The two WAL inspections verify asks for (docs/wal.md#verify), read with positional reads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ltx_codec::wal::{FrameCursor, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE};

use super::be32;
use crate::meta::{self, LastL0};

const HDR: u64 = WAL_HEADER_SIZE as u64;

/// Does the WAL frame at `prev` still carry the last L0's salts and equal that page in it? The
/// page is the one kept in memory when we wrote the file (it is the frame just before the
/// file's end), else it is read from the file at `l0_path`.
pub(super) fn last_page_match(
    wal_path: &Path,
    l0: Option<&LastL0>,
    l0_path: &Path,
    prev: u64,
    frame_size: u64,
) -> std::result::Result<bool, String> {
    let Some(l0) = l0 else {
        return Ok(false);
    };
    let f = File::open(wal_path).map_err(|e| format!("open WAL: {e}"))?;
    let mut frame = vec![0u8; frame_size as usize];
    f.read_exact_at(&mut frame, prev)
        .map_err(|e| format!("cannot read last synced wal page at {prev}: {e}"))?;
    let h = &l0.header;
    if (be32(&frame, 8), be32(&frame, 12)) != (h.wal_salt1, h.wal_salt2) {
        return Ok(false);
    }
    let pgno = be32(&frame, 0);
    let data = &frame[WAL_FRAME_HEADER_SIZE..];
    if let Some((p, page)) = &l0.last_page {
        if *p == pgno {
            return Ok(page[..] == *data);
        }
    }
    let mut page = vec![0u8; h.page_size as usize];
    match meta::read_l0_page(l0_path, pgno, &mut page) {
        Ok(true) => Ok(page[..] == *data),
        Ok(false) => Ok(false),
        Err(e) => Err(format!("last L0 {}: {e}", l0_path.display())),
    }
}

/// Scans frame salts from the WAL start until `old` appears; any salt other than `new` and
/// `old` means a FULL/RESTART checkpoint happened that we may have missed frames of.
pub(super) fn detect_full_checkpoint(
    wal_path: &Path,
    frame_size: u64,
    new: (u32, u32),
    old: (u32, u32),
) -> std::result::Result<bool, String> {
    let f = File::open(wal_path).map_err(|e| format!("open WAL: {e}"))?;
    let mut off = HDR;
    let mut hdr = [0u8; WAL_FRAME_HEADER_SIZE];
    let mut unknown = false;
    while f.read_exact_at(&mut hdr, off).is_ok() {
        let salt = (be32(&hdr, 8), be32(&hdr, 12));
        if salt != new && salt != old {
            unknown = true;
        }
        if salt == old {
            break;
        }
        off += frame_size;
    }
    Ok(unknown)
}

/// Does the old WAL generation go on after the last L0 file's end (`prev` plus one frame) with a
/// committed transaction? Frames there that still carry the old salts and continue the checksum
/// chain of the frame at `prev` were written after it in that generation, so a commit among them
/// is a transaction no L0 file holds: another connection copied it into the database and
/// restarted the WAL before we read it. `hdr` is the current WAL header (for the byte order and
/// frame size, which a restart keeps). Frames the new generation already wrote over are not seen,
/// but then `prev` was written over too and verify has already chosen a snapshot.
pub(super) fn committed_past_end(
    wal_path: &Path,
    hdr: &[u8],
    prev: u64,
    frame_size: u64,
    old: (u32, u32),
) -> std::result::Result<bool, String> {
    let f = File::open(wal_path).map_err(|e| format!("open WAL: {e}"))?;
    let len = f.metadata().map_err(|e| format!("stat WAL: {e}"))?.len();
    let mut prev_hdr = [0u8; WAL_FRAME_HEADER_SIZE];
    f.read_exact_at(&mut prev_hdr, prev)
        .map_err(|e| format!("cannot read last synced wal frame at {prev}: {e}"))?;
    let end = prev + frame_size;
    let Some(mut cursor) = FrameCursor::resume(hdr, end, Some(&prev_hdr), len, old)
        .map_err(|e| format!("resume after last synced frame: {e}"))?
    else {
        return Ok(false);
    };
    let mut frame = vec![0u8; frame_size as usize];
    while f.read_exact_at(&mut frame, cursor.offset()).is_ok() {
        match cursor.next_frame(&frame) {
            Some(fr) if fr.is_commit() => return Ok(true),
            Some(_) => {}
            None => return Ok(false),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets just past each commit frame of the WAL at `wal`, with its salts.
    fn commit_ends(wal: &Path) -> (Vec<u64>, (u32, u32), u64) {
        let bytes = std::fs::read(wal).expect("read WAL");
        let mut c = FrameCursor::new(&bytes).expect("header").expect("a WAL");
        let fs = c.header().frame_size();
        let mut ends = Vec::new();
        while let Some(f) = bytes
            .get(c.offset() as usize..)
            .and_then(|rest| c.next_frame(rest))
        {
            if f.is_commit() {
                ends.push(f.offset + fs as u64);
            }
        }
        (ends, c.salts(), fs as u64)
    }

    /// The application's checkpoint copies commits made after our last L0 file and its next
    /// commit restarts the WAL: the old generation's frames past our end are still in the file
    /// and chain from our last frame, so the lost commit is seen; from the old generation's true
    /// end nothing is.
    #[test]
    fn a_commit_past_the_end_is_seen_after_a_restart() {
        let dir = tempfile::tempdir().expect("test setup");
        let db = dir.path().join("a.db");
        let wal = dir.path().join("a.db-wal");
        let c = rusqlite::Connection::open(&db).expect("test setup");
        c.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = wal; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t(x);",
        )
        .expect("test setup");
        for i in 0..6 {
            c.execute("INSERT INTO t VALUES (randomblob(3000 + ?1))", [i])
                .expect("test setup");
        }
        let (ends, old, fs) = commit_ends(&wal);
        assert!(ends.len() >= 7, "{ends:?}");
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .expect("test setup");
        // The next commit restarts the WAL (fully copied, no reader): one frame at offset 32.
        c.execute("INSERT INTO t VALUES (1)", [])
            .expect("test setup");
        let hdr = std::fs::read(&wal).expect("read WAL");
        let hdr = &hdr[..32];
        assert_ne!(
            (be32(hdr, 16), be32(hdr, 20)),
            old,
            "the WAL did not restart"
        );
        let synced = ends[ends.len() - 3];
        assert!(committed_past_end(&wal, hdr, synced - fs, fs, old).expect("inspect"));
        let all = ends[ends.len() - 1];
        assert!(!committed_past_end(&wal, hdr, all - fs, fs, old).expect("inspect"));
    }
}
