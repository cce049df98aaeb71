//! LTX readers: zero-copy over a byte slice (an mmap), and streaming over `Read`.

use std::io::Read;

use crate::checksum::Crc64;
use crate::error::eof_as_truncated;
use crate::header::Trailer;
use crate::index::{PageIndex, PageIndexEntry};
use crate::lz4;
use crate::{Error, Header, Result, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE};

/// A page header: pgno and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    /// Page number; never 0 (a 0 marks the end of the pages and parses as `None`).
    pub pgno: u32,
    /// Page flags: 0 for a legacy LZ4 frame, [`PAGE_FLAG_SIZE`] for a size-prefixed LZ4 block.
    pub flags: u16,
}

impl PageHeader {
    /// Parses the 6 bytes of a page header found at file `offset`. Returns `None` for the
    /// end-of-pages marker, and an error for page number 0 with flags or for unknown flags.
    pub fn parse(b: &[u8; PAGE_HEADER_SIZE], offset: u64) -> Result<Option<PageHeader>> {
        let pgno = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let flags = u16::from_be_bytes([b[4], b[5]]);
        if pgno == 0 {
            if flags != 0 {
                return Err(Error::InvalidPageHeader {
                    offset,
                    reason: format!("end marker with flags {flags:#x}"),
                });
            }
            return Ok(None);
        }
        if flags & !PAGE_FLAG_SIZE != 0 {
            return Err(Error::InvalidPageHeader {
                offset,
                reason: format!("page {pgno} has unknown flags {flags:#x}"),
            });
        }
        Ok(Some(PageHeader { pgno, flags }))
    }

    /// Bytes the CRC covers before the uncompressed page: 6, or 10 with the size field.
    fn hashed_len(&self) -> usize {
        if self.flags & PAGE_FLAG_SIZE != 0 {
            PAGE_HEADER_SIZE + 4
        } else {
            PAGE_HEADER_SIZE
        }
    }
}

/// One page frame, borrowed from the file bytes: its header, the hashed prefix and payload.
#[derive(Clone, Copy, Debug)]
pub struct PageFrame<'a> {
    /// Page number of the frame.
    pub pgno: u32,
    /// File offset of the frame's header.
    pub offset: u64,
    /// The whole frame: header, size field (block format) and compressed payload.
    pub bytes: &'a [u8],
    hashed_len: usize,
}

impl<'a> PageFrame<'a> {
    /// Parses the frame at the start of `bytes` (located at `offset` in the file). Returns
    /// `None` at the end-of-pages marker.
    pub fn parse(bytes: &'a [u8], offset: u64, page_size: usize) -> Result<Option<PageFrame<'a>>> {
        let hdr: &[u8; PAGE_HEADER_SIZE] = bytes
            .get(..PAGE_HEADER_SIZE)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::truncated(offset, PAGE_HEADER_SIZE as u64, "page header"))?;
        let Some(ph) = PageHeader::parse(hdr, offset)? else {
            return Ok(None);
        };
        let len = if ph.flags & PAGE_FLAG_SIZE != 0 {
            let size = bytes
                .get(PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + 4)
                .ok_or_else(|| Error::truncated(offset + 6, 4, "page size field"))?;
            let csize = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
            if csize > lz4::compress_bound(page_size) {
                return Err(Error::InvalidPageHeader {
                    offset,
                    reason: format!("page {} compressed size {csize} is impossible", ph.pgno),
                });
            }
            PAGE_HEADER_SIZE + 4 + csize
        } else {
            // A legacy frame has no length: walk it. Its length is checked when decoded.
            let mut scratch = vec![0u8; page_size];
            PAGE_HEADER_SIZE
                + lz4::decompress_frame(&bytes[PAGE_HEADER_SIZE..], &mut scratch).map_err(
                    |reason| Error::Decompress {
                        pgno: ph.pgno,
                        offset,
                        reason,
                    },
                )?
        };
        let frame = bytes.get(..len).ok_or_else(|| {
            Error::truncated(offset, (len - bytes.len().min(len)) as u64, "page data")
        })?;
        Ok(Some(PageFrame {
            pgno: ph.pgno,
            offset,
            bytes: frame,
            hashed_len: ph.hashed_len(),
        }))
    }

    /// Parses a frame fetched by its index entry, checking that it holds the page and length the
    /// index promised.
    pub fn for_entry(
        bytes: &'a [u8],
        e: &PageIndexEntry,
        page_size: usize,
    ) -> Result<PageFrame<'a>> {
        let bad = |reason: String| Error::InvalidIndex {
            offset: e.offset,
            reason,
        };
        let frame = PageFrame::parse(bytes, e.offset, page_size)?
            .ok_or_else(|| bad(format!("page {} entry points at the end marker", e.pgno)))?;
        if frame.pgno != e.pgno || frame.bytes.len() as u64 != e.size {
            return Err(bad(format!(
                "index says page {} ({} bytes), frame holds page {} ({} bytes)",
                e.pgno,
                e.size,
                frame.pgno,
                frame.bytes.len()
            )));
        }
        Ok(frame)
    }

    /// Decompresses the page into `out`, which must be exactly PageSize long.
    pub fn decompress(&self, out: &mut [u8]) -> Result<()> {
        let payload = &self.bytes[self.hashed_len..];
        let res = if self.hashed_len == PAGE_HEADER_SIZE {
            lz4::decompress_frame(payload, out).map(|_| ())
        } else {
            lz4::decompress_block(payload, out)
        };
        res.map_err(|reason| Error::Decompress {
            pgno: self.pgno,
            offset: self.offset,
            reason,
        })
    }

    /// Feeds the frame into a file CRC: header (and size), then the uncompressed page.
    pub fn hash_into(&self, crc: &mut Crc64, page: &[u8]) {
        crc.update(&self.bytes[..self.hashed_len]);
        crc.update(page);
    }

    /// True when the payload is an LZ4 block with a size prefix (ltx >= v0.5.2).
    pub fn is_block_format(&self) -> bool {
        self.hashed_len != PAGE_HEADER_SIZE
    }
}

/// An LTX file parsed in place: header and index decoded, pages found by pgno on demand.
/// Nothing is verified until [`LtxFile::verify`] (or [`LtxFile::open_verified`]).
pub struct LtxFile<'a> {
    bytes: &'a [u8],
    header: Header,
    trailer: Trailer,
    index: PageIndex,
    /// File offset of the end-of-pages marker (= start of the index minus 6).
    pages_end: u64,
}

impl<'a> LtxFile<'a> {
    /// Parses header, trailer and page index. O(index), touches no page data.
    pub fn open(bytes: &'a [u8]) -> Result<Self> {
        let header = Header::decode(bytes)?;
        let min_len = HEADER_SIZE + PAGE_HEADER_SIZE + 1 + 8 + TRAILER_SIZE;
        if bytes.len() < min_len {
            return Err(Error::truncated(
                bytes.len() as u64,
                (min_len - bytes.len()) as u64,
                "page index and trailer",
            ));
        }
        let len = bytes.len();
        let trailer_at = len - TRAILER_SIZE;
        let trailer: &[u8; TRAILER_SIZE] = bytes[trailer_at..]
            .try_into()
            .map_err(|_| Error::truncated(trailer_at as u64, TRAILER_SIZE as u64, "trailer"))?;
        let trailer = Trailer::decode(trailer);
        let (index, index_start) = parse_tail(&bytes[..trailer_at], 0)?;
        if index_start < (HEADER_SIZE + PAGE_HEADER_SIZE) as u64 {
            return Err(Error::InvalidIndex {
                offset: index_start,
                reason: "index overlaps the header".into(),
            });
        }
        Ok(LtxFile {
            bytes,
            header,
            trailer,
            index,
            pages_end: index_start - PAGE_HEADER_SIZE as u64,
        })
    }

    /// Opens and verifies the whole file (every page decompresses, CRC matches).
    pub fn open_verified(bytes: &'a [u8]) -> Result<Self> {
        let f = Self::open(bytes)?;
        f.verify()?;
        Ok(f)
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The decoded trailer (its file checksum is not verified until [`LtxFile::verify`]).
    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }

    /// The decoded page index.
    pub fn index(&self) -> &PageIndex {
        &self.index
    }

    /// Length of the whole file in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the file has no bytes (never the case for an opened file).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The frame of `pgno`, found through the index without touching other pages.
    pub fn frame(&self, pgno: u32) -> Result<PageFrame<'a>> {
        let e = self.index.find(pgno).ok_or(Error::PageNotFound(pgno))?;
        self.frame_at(e)
    }

    fn frame_at(&self, e: &PageIndexEntry) -> Result<PageFrame<'a>> {
        e.check_within(self.pages_end)?;
        let slice = &self.bytes[e.offset as usize..(e.offset + e.size) as usize];
        PageFrame::for_entry(slice, e, self.header.page_size as usize)
    }

    /// Decompresses page `pgno` into `out` (PageSize bytes).
    pub fn read_page(&self, pgno: u32, out: &mut [u8]) -> Result<()> {
        self.frame(pgno)?.decompress(out)
    }

    /// Frames in file order, parsed lazily from the page data (not through the index).
    pub fn frames(&self) -> Frames<'a> {
        Frames {
            bytes: self.bytes,
            at: HEADER_SIZE as u64,
            page_size: self.header.page_size as usize,
            done: false,
        }
    }

    /// Decompresses every page, checks the frames against the index, and recomputes the file
    /// checksum. Fails with the first problem found.
    pub fn verify(&self) -> Result<()> {
        let mut crc = Crc64::new();
        crc.update(&self.bytes[..HEADER_SIZE]);
        let mut page = vec![0u8; self.header.page_size as usize];
        let mut n = 0usize;
        let mut frames = self.frames();
        for frame in frames.by_ref() {
            let frame = frame?;
            let e = self.index.entries.get(n);
            if e != Some(&PageIndexEntry {
                pgno: frame.pgno,
                offset: frame.offset,
                size: frame.bytes.len() as u64,
            }) {
                return Err(Error::InvalidIndex {
                    offset: frame.offset,
                    reason: format!("page {} frame does not match index entry {n}", frame.pgno),
                });
            }
            frame.decompress(&mut page)?;
            frame.hash_into(&mut crc, &page);
            n += 1;
        }
        if n != self.index.len() || frames.at != self.pages_end + PAGE_HEADER_SIZE as u64 {
            return Err(Error::InvalidIndex {
                offset: frames.at,
                reason: format!("{n} page frames, index lists {}", self.index.len()),
            });
        }
        crc.update(&self.bytes[self.pages_end as usize..self.bytes.len() - 8]);
        let computed = crc.file_checksum();
        if computed != self.trailer.file_checksum {
            return Err(Error::ChecksumMismatch {
                stored: self.trailer.file_checksum,
                computed,
            });
        }
        Ok(())
    }
}

/// Iterator over page frames in file order, ending at the end-of-pages marker.
pub struct Frames<'a> {
    bytes: &'a [u8],
    at: u64,
    page_size: usize,
    done: bool,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<PageFrame<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.bytes.get(self.at as usize..).unwrap_or(&[]);
        match PageFrame::parse(rest, self.at, self.page_size) {
            Ok(Some(f)) => {
                self.at += f.bytes.len() as u64;
                Some(Ok(f))
            }
            Ok(None) => {
                self.done = true;
                self.at += PAGE_HEADER_SIZE as u64;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses the page index from the end of `bytes`, which must end right before the trailer.
/// `base` is the file offset of `bytes[0]`. Returns the index and the file offset where the
/// index bytes start.
pub fn parse_tail(bytes: &[u8], base: u64) -> Result<(PageIndex, u64)> {
    let len = bytes.len();
    if len < 8 {
        return Err(Error::truncated(base + len as u64, 8, "page index length"));
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&bytes[len - 8..]);
    let index_len = u64::from_be_bytes(l);
    let avail = (len - 8) as u64;
    if index_len == 0 || index_len > avail {
        return Err(Error::InvalidIndex {
            offset: base + avail,
            reason: format!("index length {index_len} does not fit in the file"),
        });
    }
    let start = (avail - index_len) as usize;
    let index = PageIndex::decode(&bytes[start..len - 8], base + start as u64)?;
    Ok((index, base + start as u64))
}

/// Reads an LTX file from a stream (a network body), decompressing each page into the caller's
/// buffer and verifying the file checksum when the pages end.
///
/// Memory does not grow with the file: the page index at the end is checked against the frames
/// through a running digest of their (pgno, offset, size) triplets and a count, never held
/// whole, so a file of millions of pages streams in a few page buffers.
pub struct StreamDecoder<R: Read> {
    r: R,
    header: Header,
    crc: Crc64,
    offset: u64,
    /// The last frame seen: pages must come in ascending order.
    last_pgno: Option<u32>,
    frame_count: u64,
    frames_digest: Crc64,
    compressed: Vec<u8>,
    trailer: Option<Trailer>,
}

/// Feeds one index triplet to a digest; frames and index entries must give the same digests.
fn digest_entry(d: &mut Crc64, e: &PageIndexEntry) {
    d.update(&e.pgno.to_le_bytes());
    d.update(&e.offset.to_le_bytes());
    d.update(&e.size.to_le_bytes());
}

impl<R: Read> StreamDecoder<R> {
    /// Reads and validates the header.
    pub fn new(mut r: R) -> Result<Self> {
        let mut hdr = [0u8; HEADER_SIZE];
        r.read_exact(&mut hdr)
            .map_err(|e| eof_as_truncated(e, 0, "header"))?;
        let header = Header::decode(&hdr)?;
        let mut crc = Crc64::new();
        crc.update(&hdr);
        Ok(StreamDecoder {
            r,
            header,
            crc,
            offset: HEADER_SIZE as u64,
            last_pgno: None,
            frame_count: 0,
            frames_digest: Crc64::new(),
            compressed: Vec::new(),
            trailer: None,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The trailer, once [`StreamDecoder::next_page`] has returned `None`.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    fn read_exact(&mut self, len: usize, what: &'static str) -> Result<()> {
        let start = self.compressed.len();
        self.compressed.resize(start + len, 0);
        let at = self.offset;
        self.r
            .read_exact(&mut self.compressed[start..])
            .map_err(|e| eof_as_truncated(e, at, what))?;
        self.offset += len as u64;
        Ok(())
    }

    /// Decodes the next page into `out` (exactly PageSize bytes) and returns its pgno, or
    /// `None` after the last page, once the index and checksum have been verified.
    pub fn next_page(&mut self, out: &mut [u8]) -> Result<Option<u32>> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        if out.len() != self.header.page_size as usize {
            return Err(Error::Encode(format!(
                "page buffer of {} bytes for page size {}",
                out.len(),
                self.header.page_size
            )));
        }
        let frame_at = self.offset;
        self.compressed.clear();
        self.read_exact(PAGE_HEADER_SIZE, "page header")?;
        let mut hb = [0u8; PAGE_HEADER_SIZE];
        hb.copy_from_slice(&self.compressed);
        let Some(ph) = PageHeader::parse(&hb, frame_at)? else {
            self.crc.update(&hb);
            self.finish_tail()?;
            return Ok(None);
        };
        // The index check at the end would reject this file anyway, but callers act on each page
        // as it arrives (the compactor merges, a restore writes), so a repeated or backward page
        // must fail here, before it is handed out.
        if let Some(prev) = self.last_pgno.filter(|&p| p >= ph.pgno) {
            return Err(Error::InvalidPageHeader {
                offset: frame_at,
                reason: format!("page {} follows page {prev}", ph.pgno),
            });
        }
        let dec_err = |reason: String| Error::Decompress {
            pgno: ph.pgno,
            offset: frame_at,
            reason,
        };
        if ph.flags & PAGE_FLAG_SIZE != 0 {
            self.read_exact(4, "page size field")?;
            let s = &self.compressed[PAGE_HEADER_SIZE..];
            let csize = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
            if csize > lz4::compress_bound(out.len()) {
                return Err(Error::InvalidPageHeader {
                    offset: frame_at,
                    reason: format!("page {} compressed size {csize} is impossible", ph.pgno),
                });
            }
            self.read_exact(csize, "page data")?;
            lz4::decompress_block(&self.compressed[PAGE_HEADER_SIZE + 4..], out)
                .map_err(dec_err)?;
        } else {
            let mut frame = Vec::new();
            let walked = lz4::read_frame_bytes(
                |b, n| {
                    let s = b.len();
                    b.resize(s + n, 0);
                    let at = self.offset;
                    self.r
                        .read_exact(&mut b[s..])
                        .map_err(|e| eof_as_truncated(e, at, "LZ4 frame").to_string())?;
                    self.offset += n as u64;
                    Ok(())
                },
                &mut frame,
            );
            walked.map_err(dec_err)?;
            self.compressed.extend_from_slice(&frame);
            lz4::decompress_frame(&self.compressed[PAGE_HEADER_SIZE..], out).map_err(dec_err)?;
        }
        self.crc.update(&self.compressed[..ph.hashed_len()]);
        self.crc.update(out);
        let entry = PageIndexEntry {
            pgno: ph.pgno,
            offset: frame_at,
            size: self.offset - frame_at,
        };
        digest_entry(&mut self.frames_digest, &entry);
        self.frame_count += 1;
        self.last_pgno = Some(ph.pgno);
        Ok(Some(ph.pgno))
    }

    /// Reads the index, its length and the trailer, streaming; checks the index against the
    /// frames seen and the file checksum; and requires the stream to end there.
    fn finish_tail(&mut self) -> Result<()> {
        let at = self.offset;
        let mut t = TailReader {
            r: &mut self.r,
            crc: &mut self.crc,
            pending: Vec::with_capacity(TAIL_CHUNK),
            read: 0,
            at,
        };
        let bad = |offset: u64, reason: &str| Error::InvalidIndex {
            offset,
            reason: reason.to_owned(),
        };
        let mismatch = || bad(at, "page index does not match the page frames");
        let mut digest = Crc64::new();
        let mut count = 0u64;
        let mut prev: Option<u32> = None;
        loop {
            let entry_at = at + t.read;
            let pgno = t.uvarint("page index")?;
            if pgno == 0 {
                break;
            }
            let pgno =
                u32::try_from(pgno).map_err(|_| bad(entry_at, "page number over 32 bits"))?;
            let offset = t.uvarint("page index")?;
            let size = t.uvarint("page index")?;
            if prev.is_some_and(|p| pgno <= p) {
                return Err(bad(entry_at, "page numbers not ascending"));
            }
            prev = Some(pgno);
            count += 1;
            if count > self.frame_count {
                return Err(mismatch());
            }
            digest_entry(&mut digest, &PageIndexEntry { pgno, offset, size });
        }
        let index_len = t.read;
        let mut l = [0u8; 8];
        t.exact(&mut l, "page index length")?;
        let stated = u64::from_be_bytes(l);
        if stated != index_len {
            return Err(bad(
                at + index_len,
                &format!("index length {stated} does not match the {index_len} index bytes"),
            ));
        }
        if count != self.frame_count || digest.value() != self.frames_digest.value() {
            return Err(mismatch());
        }
        let mut post = [0u8; 8];
        t.exact(&mut post, "trailer")?;
        t.flush();
        let mut sum = [0u8; 8];
        self.r
            .read_exact(&mut sum)
            .map_err(|e| eof_as_truncated(e, at + index_len + 16, "trailer"))?;
        let mut raw = [0u8; TRAILER_SIZE];
        raw[..8].copy_from_slice(&post);
        raw[8..].copy_from_slice(&sum);
        let trailer = Trailer::decode(&raw);
        let extra = std::io::copy(&mut (&mut self.r).take(1 << 20), &mut std::io::sink())?;
        if extra > 0 {
            return Err(Error::TrailingData(extra));
        }
        let computed = self.crc.file_checksum();
        if computed != trailer.file_checksum {
            return Err(Error::ChecksumMismatch {
                stored: trailer.file_checksum,
                computed,
            });
        }
        self.offset = at + index_len + 8 + TRAILER_SIZE as u64;
        self.trailer = Some(trailer);
        Ok(())
    }

    /// Reads every remaining page, verifying the file; returns the trailer.
    pub fn verify_to_end(&mut self) -> Result<Trailer> {
        let mut page = vec![0u8; self.header.page_size as usize];
        while self.next_page(&mut page)?.is_some() {}
        self.trailer
            .ok_or_else(|| Error::truncated(self.offset, 1, "trailer"))
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.r
    }
}

/// Bytes hashed into the file checksum in batches of this size while the tail is read.
const TAIL_CHUNK: usize = 4096;

/// Reads the tail of a streamed file a byte at a time (uvarints), hashing what it reads.
struct TailReader<'a, R: Read> {
    r: &'a mut R,
    crc: &'a mut Crc64,
    pending: Vec<u8>,
    /// Bytes read so far, from `at`.
    read: u64,
    at: u64,
}

impl<R: Read> TailReader<'_, R> {
    fn byte(&mut self, what: &'static str) -> Result<Option<u8>> {
        let mut b = [0u8; 1];
        match self.r.read_exact(&mut b) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(eof_as_truncated(e, self.at + self.read, what)),
        }
        self.read += 1;
        self.pending.push(b[0]);
        if self.pending.len() >= TAIL_CHUNK {
            self.flush();
        }
        Ok(Some(b[0]))
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u64> {
        let at = self.at + self.read;
        crate::index::read_uvarint(|| self.byte(what))?.ok_or_else(|| Error::InvalidIndex {
            offset: at,
            reason: format!("truncated or overlong number in the {what}"),
        })
    }

    fn exact(&mut self, out: &mut [u8], what: &'static str) -> Result<()> {
        let n = out.len();
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self
                .byte(what)?
                .ok_or_else(|| Error::truncated(self.at + self.read, (n - i) as u64, what))?;
        }
        Ok(())
    }

    fn flush(&mut self) {
        self.crc.update(&self.pending);
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Encoder, TxId};

    /// Found by fuzzing: a repeated frame used to be streamed out twice, failing only at the
    /// index check after the caller had already used both copies.
    #[test]
    fn stream_rejects_a_repeated_page_when_it_arrives() {
        let mut enc =
            Encoder::new(Vec::new(), Header::new(512, 3, TxId(2), TxId(2), 0)).expect("encoder");
        enc.encode_page(2, &[7u8; 512]).expect("page");
        let (file, _) = enc.finish().expect("finish");
        let f = LtxFile::open_verified(&file).expect("valid");
        let size = f.index().entries[0].size as usize;
        let frame = &file[HEADER_SIZE..HEADER_SIZE + size];
        let bad = [
            &file[..HEADER_SIZE],
            frame,
            frame,
            &file[HEADER_SIZE + size..],
        ]
        .concat();

        let mut d = StreamDecoder::new(&bad[..]).expect("header");
        let mut page = vec![0u8; 512];
        assert_eq!(d.next_page(&mut page).expect("first copy"), Some(2));
        let err = d.next_page(&mut page).expect_err("second copy");
        assert!(
            matches!(err, Error::InvalidPageHeader { offset, .. } if offset == (HEADER_SIZE + size) as u64),
            "{err}"
        );
        assert!(LtxFile::open_verified(&bad).is_err());
    }
}
