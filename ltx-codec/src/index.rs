//! The page index (docs/ltx.md#page-index): LEB128 triplets `pgno, offset, size` in ascending pgno, a `0x00`
//! terminator, then the index length as a u64 BE.

use crate::{lz4, Error, Result, PAGE_HEADER_SIZE};

/// The longest one index triplet can be: three uvarints of a u32 and two u64s.
pub const MAX_ENTRY_LEN: u64 = 5 + 10 + 10;

/// The longest the page index (triplets and terminator) of a file for a database of `commit`
/// pages can be: a file holds each page at most once and none beyond Commit, so a length read
/// from a file can be checked against this before anything is allocated for it.
pub fn max_index_len(commit: u32) -> u64 {
    u64::from(commit) * MAX_ENTRY_LEN + 1
}

/// The largest a page frame of a `page_size` database can be: its header, the block size
/// field and an LZ4 encoding of a page that did not compress (with room for the legacy
/// frame format's own header and end mark).
pub fn max_frame_size(page_size: u32) -> u64 {
    (PAGE_HEADER_SIZE + 4 + 64 + lz4::compress_bound(page_size as usize)) as u64
}

/// About how many bytes of an encoded index [`PageIndex::encode_to`] hands over at a time.
pub const ENCODE_PIECE: usize = 64 << 10;

/// Where one page's frame lies in an LTX file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageIndexEntry {
    /// Page number.
    pub pgno: u32,
    /// Absolute file offset of the page's 6-byte header.
    pub offset: u64,
    /// Total frame bytes: header, size field (block format) and payload.
    pub size: u64,
}

impl PageIndexEntry {
    /// Checks that the entry lies inside the page data, `[HEADER_SIZE, pages_end)`, where
    /// `pages_end` is the offset of the end-of-pages marker.
    pub fn check_within(&self, pages_end: u64) -> Result<()> {
        let inside = self.offset >= crate::HEADER_SIZE as u64
            && self.size >= crate::PAGE_HEADER_SIZE as u64
            && self
                .offset
                .checked_add(self.size)
                .is_some_and(|end| end <= pages_end);
        if inside {
            Ok(())
        } else {
            Err(Error::InvalidIndex {
                offset: self.offset,
                reason: format!("page {} entry points outside the page data", self.pgno),
            })
        }
    }
}

/// A decoded page index, sorted by pgno.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageIndex {
    /// The entries, one per page, in ascending pgno.
    pub entries: Vec<PageIndexEntry>,
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one uvarint at `*at`, advancing it. `None` if truncated or longer than 10 bytes.
fn get_uvarint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    read_uvarint(|| {
        let b = bytes.get(*at).copied();
        *at += 1;
        Ok::<_, ()>(b)
    })
    .ok()
    .flatten()
}

/// Reads one uvarint from `next` (a byte, or `None` at the end of the input). `Ok(None)` if
/// the input ends inside it or it is longer than 10 bytes; errors of `next` pass through.
pub fn read_uvarint<E>(mut next: impl FnMut() -> Result<Option<u8>, E>) -> Result<Option<u64>, E> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(b) = next()? else {
            return Ok(None);
        };
        if i == 9 && b > 1 {
            return Ok(None);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

impl PageIndex {
    /// Encodes the triplets and terminator, followed by the u64 BE length.
    pub fn encode(entries: &[PageIndexEntry], out: &mut Vec<u8>) {
        let Ok(()) = Self::encode_to(entries.iter().copied(), |b| {
            out.extend_from_slice(b);
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// Encodes as [`PageIndex::encode`] does, handing the bytes to `sink` in pieces of about
    /// [`ENCODE_PIECE`] bytes: the index of a large snapshot is never whole in memory.
    pub fn encode_to<E>(
        entries: impl IntoIterator<Item = PageIndexEntry>,
        mut sink: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut buf = Vec::with_capacity(ENCODE_PIECE + MAX_ENTRY_LEN as usize + 9);
        let mut len = 0u64;
        for e in entries {
            put_uvarint(&mut buf, u64::from(e.pgno));
            put_uvarint(&mut buf, e.offset);
            put_uvarint(&mut buf, e.size);
            if buf.len() >= ENCODE_PIECE {
                len += buf.len() as u64;
                sink(&buf)?;
                buf.clear();
            }
        }
        put_uvarint(&mut buf, 0);
        len += buf.len() as u64;
        buf.extend_from_slice(&len.to_be_bytes());
        sink(&buf)
    }

    /// Decodes index bytes (triplets and terminator, without the u64 length). `base` is the
    /// file offset of `bytes[0]`, used in errors. Entries must be in strictly ascending pgno and
    /// the terminator must end the bytes exactly.
    pub fn decode(bytes: &[u8], base: u64) -> Result<PageIndex> {
        let bad = |at: usize, reason: &str| Error::InvalidIndex {
            offset: base + at as u64,
            reason: reason.to_owned(),
        };
        let mut entries = Vec::new();
        let mut at = 0usize;
        loop {
            let entry_at = at;
            let pgno = get_uvarint(bytes, &mut at)
                .ok_or_else(|| bad(entry_at, "truncated page number"))?;
            if pgno == 0 {
                break;
            }
            let pgno =
                u32::try_from(pgno).map_err(|_| bad(entry_at, "page number over 32 bits"))?;
            let offset =
                get_uvarint(bytes, &mut at).ok_or_else(|| bad(entry_at, "truncated offset"))?;
            let size =
                get_uvarint(bytes, &mut at).ok_or_else(|| bad(entry_at, "truncated size"))?;
            if let Some(prev) = entries.last() {
                let prev: &PageIndexEntry = prev;
                if pgno <= prev.pgno {
                    return Err(bad(entry_at, "page numbers not ascending"));
                }
            }
            entries.push(PageIndexEntry { pgno, offset, size });
        }
        if at != bytes.len() {
            return Err(bad(at, "data after the index terminator"));
        }
        Ok(PageIndex { entries })
    }

    /// The entry for `pgno`, if the index has one.
    pub fn find(&self, pgno: u32) -> Option<&PageIndexEntry> {
        self.entries
            .binary_search_by_key(&pgno, |e| e.pgno)
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_index_bytes() {
        let mut out = Vec::new();
        PageIndex::encode(
            &[PageIndexEntry {
                pgno: 2,
                offset: 100,
                size: 57,
            }],
            &mut out,
        );
        assert_eq!(out, [0x02, 0x64, 0x39, 0x00, 0, 0, 0, 0, 0, 0, 0, 4]);
        let idx = PageIndex::decode(&out[..4], 0).expect("decode");
        assert_eq!(idx.find(2).map(|e| e.size), Some(57));
    }

    #[test]
    fn rejects_garbage() {
        assert!(PageIndex::decode(&[0x80], 0).is_err());
        assert!(PageIndex::decode(&[2, 100, 57, 1, 100, 57, 0], 0).is_err());
        assert!(PageIndex::decode(&[0, 0], 0).is_err());
        assert!(PageIndex::decode(&[0xff; 12], 0).is_err());
    }

    /// An index longer than one piece comes out whole: the pieces join to the triplets and
    /// terminator, the length counts them all, and it decodes to the same entries.
    #[test]
    fn an_index_of_many_pieces_decodes_whole() {
        let mut offset = 100;
        let entries: Vec<PageIndexEntry> = (1..=40_000u32)
            .map(|pgno| {
                let e = PageIndexEntry {
                    pgno,
                    offset,
                    size: u64::from(pgno % 4000 + 10),
                };
                offset += e.size;
                e
            })
            .collect();
        let mut pieces = 0;
        let mut out = Vec::new();
        PageIndex::encode_to(entries.iter().copied(), |b| {
            pieces += 1;
            out.extend_from_slice(b);
            Ok::<(), ()>(())
        })
        .expect("encode");
        assert!(pieces > 2, "{pieces} pieces");
        let n = out.len();
        let len = u64::from_be_bytes(out[n - 8..].try_into().expect("8 bytes"));
        assert_eq!(len, (n - 8) as u64);
        let index = PageIndex::decode(&out[..n - 8], 0).expect("decode");
        assert_eq!(index.len(), entries.len());
        for e in &entries {
            assert_eq!(index.find(e.pgno), Some(e));
        }
    }
}
