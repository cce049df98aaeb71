//! Random access to the pages of an LTX file through positional reads: a local file, an mmap, or
//! ranged GETs against a replica. Parallel restore is built on this.

use std::io;

use crate::decoder::{parse_tail, PageFrame};
use crate::header::Trailer;
use crate::index::{max_frame_size, max_index_len, PageIndex, PageIndexEntry};
use crate::{Error, Header, Result, HEADER_SIZE, TRAILER_SIZE};

/// "Read these bytes at this offset". Implementations fill `buf` completely or fail.
pub trait ReadAt {
    /// Fills `buf` with the bytes at `offset`; a read past the end fails with `UnexpectedEof`.
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
        // Bounded by the file's size and by the header's Commit (one entry per page at most)
        // before the buffer for it is allocated.
        if need > size - HEADER_SIZE as u64 || index_len > max_index_len(header.commit) {
            return Err(Error::InvalidIndex {
                offset: size - TRAILER_SIZE as u64 - 8,
                reason: format!(
                    "index length {index_len} does not fit in the file (or in {} pages)",
                    header.commit
                ),
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

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The decoded trailer (its file checksum is not verified).
    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }

    /// The decoded page index.
    pub fn index(&self) -> &PageIndex {
        &self.index
    }

    /// Size of the file in bytes, as given to [`PageReader::open`].
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The source the file is read from.
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
        if e.size > max_frame_size(self.header.page_size) {
            return Err(Error::InvalidIndex {
                offset: e.offset,
                reason: format!(
                    "page {pgno} frame of {} bytes is larger than any page can encode to",
                    e.size
                ),
            });
        }
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::TxId;

    /// A file of `size` bytes that exists only as its first and last bytes (zeros between),
    /// remembering the largest read asked of it and refusing reads over 1 MiB.
    struct Virtual {
        size: u64,
        head: Vec<u8>,
        tail: Vec<u8>,
        largest: Cell<usize>,
    }

    impl ReadAt for Virtual {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.largest.set(self.largest.get().max(buf.len()));
            if buf.len() > 1 << 20 {
                return Err(io::Error::other("read too large"));
            }
            let tail_at = self.size - self.tail.len() as u64;
            for (i, b) in buf.iter_mut().enumerate() {
                let at = offset + i as u64;
                *b = if at < self.head.len() as u64 {
                    self.head[at as usize]
                } else if at >= tail_at {
                    self.tail[(at - tail_at) as usize]
                } else {
                    0
                };
            }
            Ok(())
        }
    }

    fn virtual_file(commit: u32, size: u64, tail: Vec<u8>) -> Virtual {
        Virtual {
            size,
            head: Header::new(4096, commit, TxId(1), TxId(1), 0)
                .encode()
                .to_vec(),
            tail,
            largest: Cell::new(0),
        }
    }

    /// Issue 14 item 10: an index length claimed by the trailer used to size a buffer (and a
    /// read) before anything checked it against the header's Commit; an index entry's frame
    /// size did the same for one page.
    #[test]
    fn issue14_10_page_reader_bounds_index_and_frame_reads() {
        let size = 1u64 << 30;
        let mut tail = vec![0u8; 24];
        tail[..8].copy_from_slice(&(size - 200).to_be_bytes());
        let f = virtual_file(1, size, tail);
        let e = PageReader::open(&f, size)
            .err()
            .expect("index longer than 1 page needs");
        assert!(e.to_string().contains("index length"), "{e}");
        assert!(
            f.largest.get() <= TAIL_READ as usize,
            "read {}",
            f.largest.get()
        );

        // One page whose frame is said to be 64 MiB long.
        let frame = 64u64 << 20;
        let mut tail = vec![0u8; 6];
        let entry = PageIndexEntry {
            pgno: 1,
            offset: HEADER_SIZE as u64,
            size: frame,
        };
        PageIndex::encode(&[entry], &mut tail);
        tail.extend_from_slice(&[0u8; TRAILER_SIZE]);
        let size = HEADER_SIZE as u64 + frame + tail.len() as u64;
        let f = virtual_file(1, size, tail);
        let r = PageReader::open(&f, size).expect("open");
        let mut page = vec![0u8; 4096];
        let e = r
            .read_page(1, &mut page, &mut Vec::new())
            .expect_err("a frame no page encodes to");
        assert!(e.to_string().contains("frame"), "{e}");
        assert!(
            f.largest.get() <= TAIL_READ as usize,
            "read {}",
            f.largest.get()
        );
    }
}
