//! Decompressing and checksumming a chunk of frames, and combining chunk CRCs into a file CRC.
//!
//! The LTX file checksum covers the *uncompressed* pages, so every frame of every planned file
//! is decompressed, winner or not. Each chunk's CRC is computed from the initial state on its
//! own (so chunks run on any core in any order) and the pieces are joined with CRC combination.

use bytes::Bytes;
use crc_fast::CrcAlgorithm;
use ltx_codec::decoder::PageHeader;
use ltx_codec::{lz4, Crc64, PageIndexEntry, CHECKSUM_FLAG, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE};

use crate::fetch::FileLayout;
use crate::{RestoreError, Result};

/// Where winning pages go.
pub trait PageSink {
    /// A PageSize buffer to decompress page `pgno` into, or `None` if the page is not wanted.
    fn page_buf(&mut self, pgno: u32) -> Result<Option<&mut [u8]>>;
    /// Called after the page returned by `page_buf` is complete.
    fn commit(&mut self);
    /// Writes out any pages still buffered; called once the chunk is done.
    fn flush(&mut self) -> Result<()>;
}

/// A sink that keeps nothing (verification only).
pub struct Discard;

impl PageSink for Discard {
    fn page_buf(&mut self, _pgno: u32) -> Result<Option<&mut [u8]>> {
        Ok(None)
    }
    fn commit(&mut self) {}
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// CRC of one chunk's share of the hashed stream, and that share's length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkCrc {
    /// CRC-64 of the chunk's share, computed from the initial state.
    pub crc: u64,
    /// Length of the chunk's share of the hashed stream, in bytes.
    pub len: u64,
    /// How many pages of the chunk were handed to the sink.
    pub pages: u64,
}

/// Consecutive pieces of a fetched range, read front to back. A frame that lies in one piece
/// is borrowed from it; one that straddles pieces is copied into `joined`.
struct Pieces<'a> {
    pieces: &'a [Bytes],
    idx: usize,
    at: usize,
    joined: Vec<u8>,
}

impl<'a> Pieces<'a> {
    fn new(pieces: &'a [Bytes]) -> Self {
        Pieces {
            pieces,
            idx: 0,
            at: 0,
            joined: Vec::new(),
        }
    }

    /// The next `n` bytes, or `None` if fewer are left.
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        while self.idx < self.pieces.len() && self.at == self.pieces[self.idx].len() {
            self.idx += 1;
            self.at = 0;
        }
        let first = self.pieces.get(self.idx)?;
        if first.len() - self.at >= n {
            let s = &first[self.at..self.at + n];
            self.at += n;
            return Some(s);
        }
        self.joined.clear();
        while self.joined.len() < n {
            let p = self.pieces.get(self.idx)?;
            let k = (n - self.joined.len()).min(p.len() - self.at);
            self.joined.extend_from_slice(&p[self.at..self.at + k]);
            self.at += k;
            if self.at == p.len() {
                self.idx += 1;
                self.at = 0;
            }
        }
        Some(&self.joined)
    }
}

/// Decodes the frames `entries` held in `pieces` (consecutive, starting at file offset
/// `start`), feeds the CRC and hands wanted pages to `sink`.
pub fn process_chunk(
    label: &str,
    pieces: &[Bytes],
    start: u64,
    entries: &[PageIndexEntry],
    page_size: usize,
    sink: &mut dyn PageSink,
    scratch: &mut Vec<u8>,
) -> Result<ChunkCrc> {
    scratch.resize(page_size, 0);
    let mut crc = Crc64::new();
    let mut len = 0u64;
    let mut pages = 0u64;
    let mut data = Pieces::new(pieces);
    let mut at = start;
    for e in entries {
        let frame = (e.offset == at)
            .then(|| data.take(e.size as usize))
            .flatten()
            .ok_or_else(|| {
                RestoreError::corrupt(
                    label,
                    e.offset,
                    "short read: frame outside the fetched range",
                )
            })?;
        at += e.size;
        let prefix = decode_frame(label, frame, e, |f, payload, block| {
            let decode = |out: &mut [u8]| {
                if block {
                    lz4::decompress_block(payload, out)
                } else {
                    lz4::decompress_frame(payload, out).and_then(|n| {
                        if n == payload.len() {
                            Ok(())
                        } else {
                            Err(format!(
                                "LZ4 frame ends after {n} of {} bytes",
                                payload.len()
                            ))
                        }
                    })
                }
            };
            let bad = |reason: String| {
                RestoreError::corrupt(
                    label,
                    e.offset,
                    format!("page {}: bad LZ4 data: {reason}", e.pgno),
                )
            };
            crc.update(f);
            match sink.page_buf(e.pgno)? {
                Some(out) => {
                    decode(out).map_err(bad)?;
                    crc.update(out);
                    sink.commit();
                    pages += 1;
                }
                None => {
                    decode(scratch).map_err(bad)?;
                    crc.update(scratch);
                }
            }
            Ok(())
        })?;
        len += (prefix + page_size) as u64;
    }
    Ok(ChunkCrc {
        crc: crc.value(),
        len,
        pages,
    })
}

/// Checks a frame's header against its index entry and calls `f(hashed_prefix, payload,
/// is_block)`. Returns the length of the hashed prefix.
fn decode_frame(
    label: &str,
    frame: &[u8],
    e: &PageIndexEntry,
    f: impl FnOnce(&[u8], &[u8], bool) -> Result<()>,
) -> Result<usize> {
    let hdr: &[u8; PAGE_HEADER_SIZE] = frame
        .get(..PAGE_HEADER_SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| RestoreError::corrupt(label, e.offset, "frame shorter than its header"))?;
    let ph = PageHeader::parse(hdr, e.offset)
        .map_err(|err| RestoreError::ltx(label, err))?
        .ok_or_else(|| {
            RestoreError::corrupt(
                label,
                e.offset,
                format!("index entry for page {} points at the end marker", e.pgno),
            )
        })?;
    if ph.pgno != e.pgno {
        return Err(RestoreError::corrupt(
            label,
            e.offset,
            format!("index says page {}, frame holds page {}", e.pgno, ph.pgno),
        ));
    }
    if ph.flags & PAGE_FLAG_SIZE != 0 {
        let s = frame
            .get(PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + 4)
            .ok_or_else(|| {
                RestoreError::corrupt(label, e.offset, "frame shorter than its size field")
            })?;
        let csize = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
        if PAGE_HEADER_SIZE + 4 + csize != frame.len() {
            return Err(RestoreError::corrupt(
                label,
                e.offset,
                format!(
                    "page {} frame says {csize} compressed bytes, index says {}",
                    e.pgno,
                    frame.len() - PAGE_HEADER_SIZE - 4
                ),
            ));
        }
        f(
            &frame[..PAGE_HEADER_SIZE + 4],
            &frame[PAGE_HEADER_SIZE + 4..],
            true,
        )?;
        Ok(PAGE_HEADER_SIZE + 4)
    } else {
        f(
            &frame[..PAGE_HEADER_SIZE],
            &frame[PAGE_HEADER_SIZE..],
            false,
        )?;
        Ok(PAGE_HEADER_SIZE)
    }
}

/// Joins `crc(A)` and `crc(B)` into `crc(A ‖ B)`, where `len_b = |B|`.
pub fn combine(a: u64, b: u64, len_b: u64) -> u64 {
    crc_fast::checksum_combine(CrcAlgorithm::Crc64GoIso, a, b, len_b)
}

/// Checks a file's checksum from its chunk CRCs (in file order).
pub fn check_file(layout: &FileLayout, chunks: &[ChunkCrc]) -> Result<()> {
    let mut crc = layout.header_crc;
    for c in chunks {
        crc = combine(crc, c.crc, c.len);
    }
    crc = combine(crc, layout.tail_crc, layout.tail_len);
    let computed = CHECKSUM_FLAG | crc;
    if computed != layout.file_checksum {
        return Err(RestoreError::Checksum {
            file: layout.label.clone(),
            stored: layout.file_checksum,
            computed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_borrow_or_join() {
        let data: Vec<u8> = (0..100u8).collect();
        let pieces = [
            Bytes::copy_from_slice(&data[..10]),
            Bytes::new(),
            Bytes::copy_from_slice(&data[10..13]),
            Bytes::copy_from_slice(&data[13..]),
        ];
        let mut p = Pieces::new(&pieces);
        assert_eq!(p.take(4), Some(&data[..4]));
        assert_eq!(p.take(6), Some(&data[4..10]));
        assert_eq!(p.take(8), Some(&data[10..18]));
        assert_eq!(p.take(80), Some(&data[18..98]));
        assert_eq!(p.take(3), None);
        let mut p = Pieces::new(&pieces);
        assert_eq!(p.take(100), Some(&data[..]));
        assert_eq!(p.take(1), None);
    }

    #[test]
    fn combine_matches_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = ltx_codec::crc64(&data);
        for cut in [0usize, 1, 100, 4096, 9999, 10_000] {
            let (a, b) = data.split_at(cut);
            let c = combine(ltx_codec::crc64(a), ltx_codec::crc64(b), b.len() as u64);
            assert_eq!(c, whole, "cut at {cut}");
        }
    }
}
