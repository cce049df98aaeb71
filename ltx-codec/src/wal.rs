//! The SQLite WAL as Litestream reads it (docs/wal.md#wal-format, docs/wal.md#reading-committed-frames): header, frames, both checksum byte
//! orders, salt and checksum chaining, commit frames. Zero-copy over a byte slice (an mmap).

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Size of the WAL header in bytes.
pub const WAL_HEADER_SIZE: usize = 32;
/// Size of a WAL frame header in bytes (the page follows it).
pub const WAL_FRAME_HEADER_SIZE: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const WAL_VERSION: u32 = 3_007_000;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The 32-byte WAL header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    /// Checksum words are big-endian (magic 0x377f0683).
    pub big_endian: bool,
    /// Database page size in bytes (a stored 1 means 65536).
    pub page_size: u32,
    /// Checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Salt 1; SQLite changes it each time the WAL restarts.
    pub salt1: u32,
    /// Salt 2; SQLite picks a new random value each time the WAL restarts.
    pub salt2: u32,
    /// Checksum 1 of header bytes 0..24.
    pub checksum1: u32,
    /// Checksum 2 of header bytes 0..24.
    pub checksum2: u32,
}

impl WalHeader {
    /// Parses the header. `Ok(None)` when the WAL is shorter than a header or the header checksum
    /// is wrong: SQLite treats such a WAL as empty, and so does Litestream.
    pub fn parse(bytes: &[u8]) -> Result<Option<WalHeader>> {
        if bytes.len() < WAL_HEADER_SIZE {
            return Ok(None);
        }
        let magic = be32(bytes, 0);
        let big_endian = match magic {
            MAGIC_LE => false,
            MAGIC_BE => true,
            _ => return Err(Error::Wal(format!("bad magic {magic:#010x} at offset 0"))),
        };
        let version = be32(bytes, 4);
        if version != WAL_VERSION {
            return Err(Error::Wal(format!(
                "unsupported version {version} at offset 4"
            )));
        }
        let raw_size = be32(bytes, 8);
        let page_size = if raw_size == 1 { 65536 } else { raw_size };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(Error::Wal(format!("bad page size {raw_size} at offset 8")));
        }
        let h = WalHeader {
            big_endian,
            page_size,
            checkpoint_seq: be32(bytes, 12),
            salt1: be32(bytes, 16),
            salt2: be32(bytes, 20),
            checksum1: be32(bytes, 24),
            checksum2: be32(bytes, 28),
        };
        let (c1, c2) = checksum(big_endian, (0, 0), &bytes[..24]);
        Ok(((c1, c2) == (h.checksum1, h.checksum2)).then_some(h))
    }

    /// Size of one frame in bytes: its 24-byte header plus one page.
    pub fn frame_size(&self) -> usize {
        WAL_FRAME_HEADER_SIZE + self.page_size as usize
    }

    /// Byte offset of frame `k` (0-based).
    pub fn frame_offset(&self, k: u64) -> u64 {
        WAL_HEADER_SIZE as u64 + k * self.frame_size() as u64
    }

    /// The WAL size that holds `n` frames: `32 + n * (24 + PageSize)`.
    pub fn wal_bytes(&self, n: u64) -> u64 {
        self.frame_offset(n)
    }
}

/// SQLite's WAL checksum, continuing from `seed`. `data.len()` must be a multiple of 8.
pub fn checksum(big_endian: bool, seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    let words = |c: &[u8]| -> (u32, u32) {
        let a = [c[0], c[1], c[2], c[3]];
        let b = [c[4], c[5], c[6], c[7]];
        if big_endian {
            (u32::from_be_bytes(a), u32::from_be_bytes(b))
        } else {
            (u32::from_le_bytes(a), u32::from_le_bytes(b))
        }
    };
    for c in data.chunks_exact(8) {
        let (x0, x1) = words(c);
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

/// One valid WAL frame, borrowed from the WAL bytes.
#[derive(Clone, Copy, Debug)]
pub struct WalFrame<'a> {
    /// Byte offset of the frame header in the WAL.
    pub offset: u64,
    /// Page number the frame holds.
    pub pgno: u32,
    /// Database size in pages for a commit frame, 0 otherwise.
    pub commit: u32,
    /// The page bytes (PageSize long).
    pub data: &'a [u8],
}

impl WalFrame<'_> {
    /// True for a commit frame, the last frame of a SQLite transaction.
    pub fn is_commit(&self) -> bool {
        self.commit != 0
    }
}

/// The state of a walk over valid frames (right salts, unbroken checksum chain), apart from where
/// the bytes live: a reader over a slice ([`WalReader`]) or one that reads the WAL in bounded
/// chunks feeds it one frame at a time.
#[derive(Clone, Copy, Debug)]
pub struct FrameCursor {
    header: WalHeader,
    offset: u64,
    sum: (u32, u32),
    salt1: u32,
    salt2: u32,
}

impl FrameCursor {
    /// At the first frame. `Ok(None)` when `hdr` (the WAL's first 32 bytes, or fewer if the file
    /// is shorter) is no valid header: the WAL is empty.
    pub fn new(hdr: &[u8]) -> Result<Option<Self>> {
        let Some(header) = WalHeader::parse(hdr)? else {
            return Ok(None);
        };
        Ok(Some(FrameCursor {
            offset: WAL_HEADER_SIZE as u64,
            sum: (header.checksum1, header.checksum2),
            salt1: header.salt1,
            salt2: header.salt2,
            header,
        }))
    }

    /// At `offset` (a frame boundary after the first frame), seeded from the header of the frame
    /// just before it (`prev`, `None` when it could not be read), which must carry `salts` (those
    /// of the last LTX file). `wal_len` is the WAL's size. Fails with a "previous frame mismatch"
    /// when that frame is missing or salted differently.
    pub fn resume(
        hdr: &[u8],
        offset: u64,
        prev: Option<&[u8]>,
        wal_len: u64,
        salts: (u32, u32),
    ) -> Result<Option<Self>> {
        let Some(mut c) = Self::new(hdr)? else {
            return Ok(None);
        };
        let fs = c.header.frame_size() as u64;
        if offset <= WAL_HEADER_SIZE as u64 || !(offset - WAL_HEADER_SIZE as u64).is_multiple_of(fs)
        {
            return Err(Error::Wal(format!(
                "offset {offset} is not a frame boundary after the first frame"
            )));
        }
        let Some(fh) = prev.filter(|p| p.len() >= WAL_FRAME_HEADER_SIZE) else {
            return Err(prev_mismatch(offset));
        };
        if offset > wal_len || (be32(fh, 8), be32(fh, 12)) != salts {
            return Err(prev_mismatch(offset));
        }
        c.offset = offset;
        c.sum = (be32(fh, 16), be32(fh, 20));
        (c.salt1, c.salt2) = salts;
        Ok(Some(c))
    }

    /// The WAL header.
    pub fn header(&self) -> &WalHeader {
        &self.header
    }

    /// Offset of the next frame to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Salts frames must carry to be read: the header's, or those given to `resume`.
    pub fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }

    /// Checks `frame`, the bytes of the frame at [`FrameCursor::offset`] (exactly one frame;
    /// anything shorter is the end of the file), and moves past it if it is valid. `None` where
    /// the valid WAL ends.
    pub fn next_frame<'a>(&mut self, frame: &'a [u8]) -> Option<WalFrame<'a>> {
        let fs = self.header.frame_size();
        let frame = frame.get(..fs)?;
        let (pgno, commit) = (be32(frame, 0), be32(frame, 4));
        if (be32(frame, 8), be32(frame, 12)) != (self.salt1, self.salt2) || pgno == 0 {
            return None;
        }
        let sum = checksum(self.header.big_endian, self.sum, &frame[..8]);
        let sum = checksum(self.header.big_endian, sum, &frame[WAL_FRAME_HEADER_SIZE..]);
        if sum != (be32(frame, 16), be32(frame, 20)) {
            return None;
        }
        self.sum = sum;
        let offset = self.offset;
        self.offset += fs as u64;
        Some(WalFrame {
            offset,
            pgno,
            commit,
            data: &frame[WAL_FRAME_HEADER_SIZE..],
        })
    }
}

/// Walks valid frames of a WAL held in one byte slice (see [`FrameCursor`]). Stops at the first
/// frame that is short, salted for another generation, or fails its checksum (the rest is stale).
pub struct WalReader<'a> {
    data: &'a [u8],
    cursor: FrameCursor,
}

impl<'a> WalReader<'a> {
    /// Reads from the first frame. `Ok(None)` when the WAL has no valid header (it is empty).
    pub fn new(data: &'a [u8]) -> Result<Option<Self>> {
        Ok(FrameCursor::new(data)?.map(|cursor| WalReader { data, cursor }))
    }

    /// Resumes at `offset` (a frame boundary after the first frame), seeding the checksum from
    /// the frame just before it, which must carry `salts` (those of the last LTX file). Fails with
    /// a "previous frame mismatch" when that frame is missing or salted differently.
    pub fn with_offset(data: &'a [u8], offset: u64, salts: (u32, u32)) -> Result<Option<Self>> {
        let prev = WalHeader::parse(data)?.and_then(|h| {
            let at = usize::try_from(offset.checked_sub(h.frame_size() as u64)?).ok()?;
            data.get(at..at.checked_add(WAL_FRAME_HEADER_SIZE)?)
        });
        Ok(
            FrameCursor::resume(data, offset, prev, data.len() as u64, salts)?
                .map(|cursor| WalReader { data, cursor }),
        )
    }

    /// The WAL header.
    pub fn header(&self) -> &WalHeader {
        self.cursor.header()
    }

    /// Offset of the next frame to read.
    pub fn offset(&self) -> u64 {
        self.cursor.offset()
    }

    /// Salts frames must carry to be read: the header's, or those given to `with_offset`.
    pub fn salts(&self) -> (u32, u32) {
        self.cursor.salts()
    }

    /// The next valid frame, or `None` where the valid WAL ends.
    pub fn next_frame(&mut self) -> Option<WalFrame<'a>> {
        let at = usize::try_from(self.cursor.offset()).ok()?;
        let data: &'a [u8] = self.data;
        self.cursor.next_frame(data.get(at..)?)
    }
}

fn prev_mismatch(offset: u64) -> Error {
    Error::Wal(format!("previous frame mismatch: frame before offset {offset} is missing or from another WAL generation"))
}

/// What one pass over the WAL found: the latest committed version of each page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// pgno -> WAL offset of the frame holding its latest committed version, ascending pgno.
    pub pages: BTreeMap<u32, u64>,
    /// Database size in pages at the last commit read; 0 when no commit frame was read.
    pub commit: u32,
    /// End of the highest frame in `pages` (Litestream's `maxOffset`); the start offset when
    /// nothing was committed.
    pub end_offset: u64,
    /// End of the last commit frame read.
    pub last_commit_end: u64,
    /// Number of SQLite transactions (commit frames) read.
    pub transactions: u64,
}

/// Collects committed frames as they are read (docs/wal.md#reading-committed-frames): the pages of a transaction count once its
/// commit frame is seen. With `max_bytes`, asks to stop after the first commit at which at least
/// that many bytes were read; a single transaction may go over.
#[derive(Debug)]
pub struct CommittedBuilder {
    out: Committed,
    pending: Vec<(u32, u64)>,
    start: u64,
    frame_size: u64,
    max_bytes: Option<u64>,
}

impl CommittedBuilder {
    /// Starts collecting at WAL offset `start`; `frame_size` is the WAL's frame size and
    /// `max_bytes` the optional byte limit described above.
    pub fn new(start: u64, frame_size: u64, max_bytes: Option<u64>) -> Self {
        CommittedBuilder {
            out: Committed {
                end_offset: start,
                last_commit_end: start,
                ..Committed::default()
            },
            pending: Vec::new(),
            start,
            frame_size,
            max_bytes,
        }
    }

    /// Adds the next valid frame. `false` once the byte limit is reached: read no further.
    pub fn push(&mut self, f: &WalFrame<'_>) -> bool {
        self.pending.push((f.pgno, f.offset));
        if f.is_commit() {
            self.out.pages.extend(self.pending.drain(..));
            self.out.commit = f.commit;
            self.out.last_commit_end = f.offset + self.frame_size;
            self.out.transactions += 1;
            if self
                .max_bytes
                .is_some_and(|m| self.out.last_commit_end - self.start >= m)
            {
                return false;
            }
        }
        true
    }

    /// The committed pages, without those past the last commit's database size.
    pub fn finish(self) -> Committed {
        let mut out = self.out;
        let commit = out.commit;
        out.pages.retain(|&pgno, _| pgno <= commit);
        if let Some(max) = out.pages.values().max() {
            out.end_offset = max + self.frame_size;
        }
        out
    }
}

/// Reads committed frames from `reader`'s position (docs/wal.md#reading-committed-frames). With `max_bytes`, stops after the
/// first commit at which at least that many bytes were read; a single transaction may go over.
pub fn read_committed(reader: &mut WalReader<'_>, max_bytes: Option<u64>) -> Committed {
    let fs = reader.header().frame_size() as u64;
    let mut b = CommittedBuilder::new(reader.offset(), fs, max_bytes);
    while let Some(f) = reader.next_frame() {
        if !b.push(&f) {
            break;
        }
    }
    b.finish()
}

/// Offset just past the last valid commit frame of the whole WAL (32 when none; 0 when the WAL
/// has no valid header).
pub fn last_commit_end(data: &[u8]) -> Result<u64> {
    Ok(match WalReader::new(data)? {
        Some(mut r) => read_committed(&mut r, None).last_commit_end,
        None => 0,
    })
}
