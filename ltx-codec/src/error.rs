use std::io;

/// Everything that can be wrong with LTX or WAL bytes. Offsets are byte offsets in the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid LTX magic at offset 0: expected \"LTX1\"")]
    BadMagic,
    #[error("invalid LTX header: {0}")]
    InvalidHeader(String),
    #[error("invalid page header at offset {offset}: {reason}")]
    InvalidPageHeader { offset: u64, reason: String },
    #[error("LZ4 data for page {pgno} at offset {offset} is corrupt: {reason}")]
    Decompress {
        pgno: u32,
        offset: u64,
        reason: String,
    },
    #[error("page {pgno} at offset {offset} decompressed to {got} bytes, page size is {want}")]
    PageLength {
        pgno: u32,
        offset: u64,
        got: usize,
        want: usize,
    },
    #[error("invalid page index at offset {offset}: {reason}")]
    InvalidIndex { offset: u64, reason: String },
    #[error("file truncated at offset {offset}: needed {needed} more bytes for the {what}")]
    Truncated {
        offset: u64,
        needed: u64,
        what: &'static str,
    },
    #[error("file checksum mismatch: trailer says {stored:016x}, contents give {computed:016x}")]
    ChecksumMismatch { stored: u64, computed: u64 },
    #[error("{0} bytes of trailing data after the trailer")]
    TrailingData(u64),
    #[error("page {0} not found in the page index")]
    PageNotFound(u32),
    #[error("encoder: {0}")]
    Encode(String),
    #[error("compaction: {0}")]
    Compact(String),
    #[error("input {index}: {source}")]
    Input {
        index: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("invalid WAL: {0}")]
    Wal(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

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
