//! Which page each WAL frame holds, read from SQLite's wal-index (the `-shm` file) instead of
//! from the frames themselves (docs/wal.md#finding-frames-through-the-wal-index).
//!
//! A pass needs, for every frame after the last L0 file, only its page number: the L0 file holds
//! the latest version of each page, and on a write-heavy database most frames are older versions
//! of the same few pages. Reading every frame to learn that (and to check its checksum) is most of
//! the engine's CPU per GB of WAL. SQLite's own readers never do it: they find a page's frame
//! through the wal-index, whose header says how many frames are committed (`mxFrame`) and whose
//! hash-table pages list the page number of each frame. We read the same lists, under the same
//! rule SQLite's readers use for the header (both copies equal and its checksum right), and
//! check every frame we then copy against its own header.

use crate::shm::{header_copy, ShmPeek, PEEK};
use ltx_codec::wal::checksum;

/// Bytes of one wal-index page: 4096 page numbers (u32) then 8192 hash slots (u16).
const INDEX_PAGE: u64 = 32_768;
/// Frames listed per index page; the first page gives the room of its headers to them.
const PER_PAGE: u32 = 4096;
const PER_FIRST_PAGE: u32 = PER_PAGE - (PEEK / 4) as u32;
/// The only wal-index format SQLite has written (`WALINDEX_MAX_VERSION`).
const VERSION: u32 = 3_007_000;

/// The wal-index header, as the last commit left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexHeader {
    /// Frames in the WAL up to the last commit.
    pub mx_frame: u32,
    /// Database size in pages after that commit.
    pub n_page: u32,
    /// The page size of the WAL's frames.
    pub page_size: u32,
    /// The WAL generation's salts, as the WAL header holds them (big-endian words).
    pub salts: (u32, u32),
}

/// The header now, or `None` when there is no index, it is not initialised, or it was caught
/// mid-update (copies differ or its checksum is wrong): the caller then reads the WAL itself.
pub fn header(shm: &ShmPeek) -> Option<IndexHeader> {
    parse(&shm.read_headers()?)
}

fn parse(buf: &[u8; PEEK]) -> Option<IndexHeader> {
    let a = header_copy(buf)?;
    let ne = |at: usize| u32::from_ne_bytes([a[at], a[at + 1], a[at + 2], a[at + 3]]);
    let be = |at: usize| u32::from_be_bytes([a[at], a[at + 1], a[at + 2], a[at + 3]]);
    // Beyond a consistent copy: the version, and the checksum SQLite keeps over the first 40
    // bytes of a copy, computed in the machine's byte order.
    if ne(0) != VERSION {
        return None;
    }
    if checksum(cfg!(target_endian = "big"), (0, 0), &a[..40]) != (ne(40), ne(44)) {
        return None;
    }
    // szPage keeps 65536 as 1 in its low bit.
    let sz = u32::from(u16::from_ne_bytes([a[14], a[15]]));
    let page_size = (sz & 0xfe00) + ((sz & 1) << 16);
    Some(IndexHeader {
        mx_frame: ne(16),
        n_page: ne(20),
        page_size,
        // aSalt is a byte copy of the WAL header's salts.
        salts: (be(32), be(36)),
    })
}

/// Where frame `frame`'s page number (1-based frame numbers) is kept, and the last frame the
/// same index page lists.
fn slot(frame: u32) -> (u64, u32) {
    if frame <= PER_FIRST_PAGE {
        return (PEEK as u64 + u64::from(frame - 1) * 4, PER_FIRST_PAGE);
    }
    let k = frame - PER_FIRST_PAGE - 1;
    let page = u64::from(k / PER_PAGE) + 1;
    let first = PER_FIRST_PAGE + (k / PER_PAGE) * PER_PAGE;
    (
        page * INDEX_PAGE + u64::from(k % PER_PAGE) * 4,
        first + PER_PAGE,
    )
}

/// Calls `f(frame, pgno)` for frames `from + 1 ..= to` in order, as the index lists them.
/// `None` when the index cannot be read or lists a frame as holding no page (it is not the
/// index of those frames); what `f` saw is then to be thrown away.
pub fn pages(shm: &ShmPeek, from: u32, to: u32, mut f: impl FnMut(u32, u32)) -> Option<()> {
    let mut buf = Vec::new();
    let mut frame = from.checked_add(1)?;
    while frame <= to {
        let (at, last) = slot(frame);
        let n = (to.min(last) - frame + 1) as usize;
        buf.resize(n * 4, 0);
        if shm.read_at(&mut buf, at)? != buf.len() {
            return None;
        }
        for (i, w) in buf.chunks_exact(4).enumerate() {
            let pgno = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
            if pgno == 0 {
                return None;
            }
            f(frame + i as u32, pgno);
        }
        frame += n as u32;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::HDR;
    use ltx_codec::wal::WalReader;

    /// The index lists, frame by frame, the pages the WAL's own frames hold: across the end of
    /// the first index page, with a WAL of three index pages.
    #[test]
    fn lists_the_pages_of_the_frames() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, _c) = crate::walread::tests::wal_db(dir.path(), 4000, 900);
        let shm = ShmPeek::new(&db);
        let h = header(&shm).expect("index header");
        assert!(h.mx_frame > PER_FIRST_PAGE + PER_PAGE, "{h:?}");
        assert_eq!(h.page_size, 1024);
        let wal = std::fs::read(dir.path().join("a.db-wal")).expect("read WAL");
        let mut r = WalReader::new(&wal).expect("WAL").expect("header");
        assert_eq!(h.salts, r.salts());
        let mut want = Vec::new();
        let mut last_commit = 0;
        while let Some(f) = r.next_frame() {
            want.push(f.pgno);
            if f.is_commit() {
                last_commit = f.commit;
            }
        }
        assert_eq!(want.len(), h.mx_frame as usize);
        assert_eq!(h.n_page, last_commit);
        let mut got = Vec::new();
        pages(&shm, 0, h.mx_frame, |frame, pgno| {
            assert_eq!(frame as usize, got.len() + 1);
            got.push(pgno);
        })
        .expect("pages");
        assert_eq!(got, want);
        // From the middle of an index page to the middle of another.
        let mut part = Vec::new();
        pages(&shm, 4000, 8200, |_, p| part.push(p)).expect("pages");
        assert_eq!(part, want[4000..8200]);
    }

    #[test]
    fn a_torn_or_uninitialised_header_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(header(&ShmPeek::new(&dir.path().join("none.db"))), None);
        let mut a = [0u8; PEEK];
        a[..4].copy_from_slice(&VERSION.to_ne_bytes());
        a[12] = 1;
        a[16..20].copy_from_slice(&7u32.to_ne_bytes());
        let (s0, s1) = checksum(cfg!(target_endian = "big"), (0, 0), &a[..40]);
        a[40..44].copy_from_slice(&s0.to_ne_bytes());
        a[44..48].copy_from_slice(&s1.to_ne_bytes());
        let (first, rest) = a.split_at_mut(HDR);
        rest[..HDR].copy_from_slice(first);
        assert_eq!(parse(&a).map(|h| h.mx_frame), Some(7));
        let mut torn = a;
        torn[HDR + 16] = 8;
        assert_eq!(parse(&torn), None, "copies differ");
        let mut bad = a;
        bad[16] = 8;
        bad[HDR + 16] = 8;
        assert_eq!(parse(&bad), None, "checksum");
        let mut uninit = a;
        uninit[12] = 0;
        uninit[HDR + 12] = 0;
        assert_eq!(parse(&uninit), None, "not initialised");
    }

    #[test]
    fn slots_follow_sqlites_layout() {
        assert_eq!(slot(1), (136, 4062));
        assert_eq!(slot(4062), (136 + 4061 * 4, 4062));
        assert_eq!(slot(4063), (32_768, 4062 + 4096));
        assert_eq!(slot(4062 + 4096), (32_768 + 4095 * 4, 4062 + 4096));
        assert_eq!(slot(4062 + 4097), (65_536, 4062 + 8192));
    }
}
