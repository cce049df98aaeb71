//! The two WAL inspections verify asks for (docs/wal.md#verify), read with positional reads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ltx_codec::wal::{WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE};

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
