use std::io;

/// Everything that can be wrong with LTX or WAL bytes. Offsets are byte offsets in the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file does not start with the magic `LTX1`.
    #[error("invalid LTX magic at offset 0: expected \"LTX1\"")]
    BadMagic,
    /// The header breaks a validation rule (docs/ltx.md#header-validation); holds which one.
    #[error("invalid LTX header: {0}")]
    InvalidHeader(String),
    /// A page frame header is malformed: unknown flags, a bad end marker, an impossible
    /// compressed size, or a page out of order.
    #[error("invalid page header at offset {offset}: {reason}")]
    InvalidPageHeader {
        /// File offset of the page frame header.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A page's LZ4 data is corrupt or does not decompress to exactly one page.
    #[error("LZ4 data for page {pgno} at offset {offset} is corrupt: {reason}")]
    Decompress {
        /// Page number of the frame.
        pgno: u32,
        /// File offset of the page frame header.
        offset: u64,
        /// What the LZ4 decoder found wrong.
        reason: String,
    },
    /// A page decompressed to a length other than the page size.
    #[error("page {pgno} at offset {offset} decompressed to {got} bytes, page size is {want}")]
    PageLength {
        /// Page number of the frame.
        pgno: u32,
        /// File offset of the page frame header.
        offset: u64,
        /// Bytes the page decompressed to.
        got: usize,
        /// The page size, in bytes.
        want: usize,
    },
    /// The page index is malformed or does not match the page frames.
    #[error("invalid page index at offset {offset}: {reason}")]
    InvalidIndex {
        /// File offset of the bad index bytes or of the frame that disagrees with them.
        offset: u64,
        /// What is wrong with the index.
        reason: String,
    },
    /// The input ended before a part of the file was complete.
    #[error("file truncated at offset {offset}: needed {needed} more bytes for the {what}")]
    Truncated {
        /// File offset where the input ran out.
        offset: u64,
        /// How many more bytes were needed (at least).
        needed: u64,
        /// Which part of the file was being read, e.g. "header" or "page data".
        what: &'static str,
    },
    /// The file checksum in the trailer differs from the one computed over the contents.
    #[error("file checksum mismatch: trailer says {stored:016x}, contents give {computed:016x}")]
    ChecksumMismatch {
        /// File checksum stored in the trailer.
        stored: u64,
        /// File checksum computed over the file's bytes.
        computed: u64,
    },
    /// Bytes follow the trailer of a streamed file; holds how many (counted up to 1 MiB).
    #[error("{0} bytes of trailing data after the trailer")]
    TrailingData(u64),
    /// The page index has no entry for this page number.
    #[error("page {0} not found in the page index")]
    PageNotFound(u32),
    /// The encoder refused a header or page (or a page buffer has the wrong size); holds why.
    #[error("encoder: {0}")]
    Encode(String),
    /// The compaction inputs cannot be merged (none given, page sizes differ, or TXIDs not
    /// contiguous); holds why.
    #[error("compaction: {0}")]
    Compact(String),
    /// An error in one of the compaction inputs.
    #[error("input {index}: {source}")]
    Input {
        /// Position of the input in the list given to the compactor, from 0.
        index: usize,
        /// The error found in that input.
        #[source]
        source: Box<Error>,
    },
    /// The SQLite WAL is malformed (bad magic, version or page size) or cannot be resumed at the
    /// given offset; holds what is wrong.
    #[error("invalid WAL: {0}")]
    Wal(String),
    /// An I/O error from the underlying reader or writer.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// `std::result::Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn truncated(offset: u64, needed: u64, what: &'static str) -> Self {
        Error::Truncated {
            offset,
            needed,
            what,
        }
    }
}

/// Maps an I/O `UnexpectedEof` to a typed truncation error so callers can tell corrupt input
/// from a failing disk.
pub(crate) fn eof_as_truncated(err: io::Error, offset: u64, what: &'static str) -> Error {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        Error::truncated(offset, 1, what)
    } else {
        Error::Io(err)
    }
}
