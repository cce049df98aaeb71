//! Random access to the pages of an LTX file through positional reads: a local file, an mmap, or
//! ranged GETs against a replica. Parallel restore is built on this.

use std::io;

use crate::decoder::{parse_tail, PageFrame};
use crate::header::Trailer;
use crate::index::{PageIndex, PageIndexEntry};
use crate::{Error, Header, Result, HEADER_SIZE, TRAILER_SIZE};

/// "Read these bytes at this offset". Implementations fill `buf` completely or fail.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// How much of the tail to read first: Litestream reads the last 32 KiB too.
const TAIL_READ: u64 = 32 * 1024;

fn read_at<S: ReadAt + ?Sized>(
    src: &S,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<()> {
    src.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::truncated(offset, buf.len() as u64, what)
        } else {
            Error::Io(e)
        }
    })
}

/// An LTX file's header, trailer and page index, read with at most three positional reads;
/// pages are then fetched one frame at a time. The file checksum is not verified here (it needs
/// every byte): callers that restore must verify it separately.
pub struct PageReader<S> {
    src: S,
    size: u64,
    header: Header,
    trailer: Trailer,
    index: PageIndex,
    pages_end: u64,
}

impl<S: ReadAt> PageReader<S> {
    /// Reads the header and the tail of a file of `size` bytes.
    pub fn open(src: S, size: u64) -> Result<Self> {
        let min = (HEADER_SIZE + 6 + 1 + 8 + TRAILER_SIZE) as u64;
        if size < min {
            return Err(Error::truncated(size, min - size, "LTX file"));
        }
        let mut hdr = [0u8; HEADER_SIZE];
        read_at(&src, &mut hdr, 0, "header")?;
        let header = Header::decode(&hdr)?;
        let tail_len = size.min(TAIL_READ).max(TRAILER_SIZE as u64 + 8);
        let mut tail = vec![0u8; tail_len as usize];
        read_at(&src, &mut tail, size - tail_len, "page index")?;
        let trailer_at = tail.len() - TRAILER_SIZE;
        let mut t = [0u8; TRAILER_SIZE];
        t.copy_from_slice(&tail[trailer_at..]);
        let trailer = Trailer::decode(&t);
        let mut l = [0u8; 8];
        l.copy_from_slice(&tail[trailer_at - 8..trailer_at]);
        let index_len = u64::from_be_bytes(l);
        let need = index_len.saturating_add(8 + TRAILER_SIZE as u64);
        if need > size - HEADER_SIZE as u64 {
            return Err(Error::InvalidIndex {
                offset: size - TRAILER_SIZE as u64 - 8,
                reason: format!("index length {index_len} does not fit in the file"),
            });
        }
        if need > tail_len {
            tail = vec![0u8; need as usize];
            read_at(&src, &mut tail, size - need, "page index")?;
        }
        let trailer_at = tail.len() - TRAILER_SIZE;
        let base = size - tail.len() as u64;
        let (index, index_start) = parse_tail(&tail[..trailer_at], base)?;
        if index_start < (HEADER_SIZE + 6) as u64 {
            return Err(Error::InvalidIndex {
                offset: index_start,
                reason: "index overlaps the header".into(),
            });
        }
        Ok(PageReader {
            src,
            size,
            header,
            trailer,
            index,
            pages_end: index_start - 6,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }

    pub fn index(&self) -> &PageIndex {
        &self.index
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn source(&self) -> &S {
        &self.src
    }

    /// Checks that an index entry lies inside the page data.
    pub fn check_entry(&self, e: &PageIndexEntry) -> Result<()> {
        e.check_within(self.pages_end)
    }

    /// Fetches and decompresses page `pgno` into `out` (PageSize bytes). `frame_buf` is reused
    /// between calls to avoid an allocation per page.
    pub fn read_page(&self, pgno: u32, out: &mut [u8], frame_buf: &mut Vec<u8>) -> Result<()> {
        let e = *self.index.find(pgno).ok_or(Error::PageNotFound(pgno))?;
        self.check_entry(&e)?;
        frame_buf.resize(e.size as usize, 0);
        read_at(&self.src, frame_buf, e.offset, "page frame")?;
        decode_frame(frame_buf, &e, self.header.page_size as usize, out)
    }
}

/// Decodes a frame fetched on its own (by index entry) into `out`, checking that it is the page
/// and length the index promised.
pub fn decode_frame(
    bytes: &[u8],
    e: &PageIndexEntry,
    page_size: usize,
    out: &mut [u8],
) -> Result<()> {
    PageFrame::for_entry(bytes, e, page_size)?.decompress(out)
}
