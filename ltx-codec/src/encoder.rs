//! Streaming LTX writer, byte-compatible with ltx v0.5.2 as Litestream 0.5.17 drives it.

use std::io::Write;

use crate::checksum::Crc64;
use crate::index::{PageIndex, PageIndexEntry};
use crate::lz4::{self, Compressor};
use crate::{Error, Header, Result, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE};

/// Writes one LTX file: header, then pages in the order docs/ltx.md#page-order-and-the-lock-page requires, then `finish`.
/// Memory is one compression buffer and 8 bytes per page written (its number and frame size;
/// frames are contiguous, so their offsets follow): 8 MB for a 4 GB snapshot of 4 KiB pages.
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    crc: Crc64,
    offset: u64,
    /// Page number and frame size of each page written, in order.
    index: Vec<(u32, u32)>,
    compressor: Compressor,
    scratch: Vec<u8>,
    lock_pgno: u32,
}

impl<W: Write> Encoder<W> {
    /// Validates and writes the header.
    pub fn new(mut w: W, header: Header) -> Result<Self> {
        header.validate()?;
        // Rolling checksums depend on the whole database; Litestream never tracks them, and
        // neither do we. ltx also refuses Commit 0 for such files.
        if !header.no_checksum() {
            return Err(Error::Encode("only NoChecksum files can be written".into()));
        }
        if header.commit == 0 {
            return Err(Error::Encode("commit must be at least 1".into()));
        }
        let bytes = header.encode();
        w.write_all(&bytes)?;
        let mut crc = Crc64::new();
        crc.update(&bytes);
        Ok(Encoder {
            w,
            lock_pgno: header.page_size().lock_pgno(),
            header,
            crc,
            offset: HEADER_SIZE as u64,
            index: Vec::new(),
            compressor: Compressor::new(),
            // Sized once for the worst case and reused, so a page costs no allocation or clear.
            scratch: vec![
                0u8;
                PAGE_HEADER_SIZE + 4 + lz4::compress_buffer_len(header.page_size as usize)
            ],
        })
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn check_order(&self, pgno: u32) -> Result<()> {
        let bad = |why: String| Err(Error::Encode(why));
        if pgno == 0 {
            return bad("page number 0".into());
        }
        if pgno > self.header.commit {
            return bad(format!("page {pgno} is past commit {}", self.header.commit));
        }
        if pgno == self.lock_pgno {
            return bad(format!("page {pgno} is the lock page"));
        }
        let prev = self.index.last().map(|e| e.0);
        if self.header.is_snapshot() {
            let want = match prev {
                None => 1,
                Some(p) if p + 1 == self.lock_pgno => p + 2,
                Some(p) => p + 1,
            };
            if pgno != want {
                return bad(format!("snapshot page {pgno} out of sequence, want {want}"));
            }
        } else if let Some(p) = prev {
            if pgno <= p {
                return bad(format!("page {pgno} not after page {p}"));
            }
        }
        Ok(())
    }

    /// Compresses and writes one page of exactly PageSize bytes.
    pub fn encode_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        if data.len() != self.header.page_size as usize {
            return Err(Error::Encode(format!(
                "page {pgno} has {} bytes, page size is {}",
                data.len(),
                self.header.page_size
            )));
        }
        self.check_order(pgno)?;
        let framed = PAGE_HEADER_SIZE + 4;
        let csize = self
            .compressor
            .compress_into(data, &mut self.scratch[framed..]);
        let csize32 = u32::try_from(csize).map_err(|_| Error::Encode("page too large".into()))?;
        self.scratch[0..4].copy_from_slice(&pgno.to_be_bytes());
        self.scratch[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        self.scratch[6..10].copy_from_slice(&csize32.to_be_bytes());
        let frame = &self.scratch[..framed + csize];
        self.w.write_all(frame)?;
        self.crc.update(&frame[..framed]);
        self.crc.update(data);
        // A frame is a header and one compressed page: far below 4 GiB.
        let size32 =
            u32::try_from(frame.len()).map_err(|_| Error::Encode("page too large".into()))?;
        self.index.push((pgno, size32));
        self.offset += u64::from(size32);
        Ok(())
    }

    /// Writes the end marker, page index and trailer. Returns the writer and the file checksum.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let post_apply = 0u64;
        if self.header.is_snapshot() {
            let last = self.index.last().map_or(0, |e| e.0);
            let complete = last == self.header.commit
                || (last + 1 == self.lock_pgno && self.header.commit == self.lock_pgno);
            if !complete {
                return Err(Error::Encode(format!(
                    "snapshot ends at page {last}, commit is {}",
                    self.header.commit
                )));
            }
        }
        let (w, crc) = (&mut self.w, &mut self.crc);
        let mut put = |b: &[u8]| -> std::io::Result<()> {
            crc.update(b);
            w.write_all(b)
        };
        put(&[0u8; PAGE_HEADER_SIZE])?;
        let mut offset = HEADER_SIZE as u64;
        let entries = self.index.iter().map(|&(pgno, size)| {
            let e = PageIndexEntry {
                pgno,
                offset,
                size: u64::from(size),
            };
            offset += u64::from(size);
            e
        });
        PageIndex::encode_to(entries, &mut put)?;
        put(&post_apply.to_be_bytes())?;
        let checksum = self.crc.file_checksum();
        self.w.write_all(&checksum.to_be_bytes())?;
        self.w.flush()?;
        Ok((self.w, checksum))
    }
}
