//! LTX and SQLite WAL formats, byte-compatible with Litestream 0.5.17 (superfly/ltx v0.5.2).
//!
//! Everything here is pure: no async, no network, no file handles beyond `Read`/`Write` and the
//! [`ReadAt`] positional-read trait. Every malformed input is a typed [`Error`] that names what is
//! wrong and at which byte offset; nothing panics on input.

#![deny(missing_docs)]

pub mod checksum;
pub mod compactor;
pub mod decoder;
pub mod encoder;
mod error;
pub mod header;
pub mod index;
pub mod lz4;
pub mod page_reader;
pub mod types;
pub mod wal;

pub use checksum::{crc64, Crc64};
pub use compactor::{compact, CompactOptions};
pub use decoder::{LtxFile, StreamDecoder};
pub use encoder::Encoder;
pub use error::{Error, Result};
pub use header::{Header, Trailer};
pub use index::{PageIndex, PageIndexEntry};
pub use page_reader::{PageReader, ReadAt};
pub use types::{lock_pgno, Checksum, Level, PageNo, PageSize, Pos, TxId};

/// Size of the LTX header in bytes.
pub const HEADER_SIZE: usize = 100;
/// Size of a page frame header (pgno u32 + flags u16).
pub const PAGE_HEADER_SIZE: usize = 6;
/// Size of the trailer (PostApplyChecksum u64 + FileChecksum u64).
pub const TRAILER_SIZE: usize = 16;
/// Header flag: the rolling database checksums are not tracked. Litestream always sets it.
pub const HEADER_FLAG_NO_CHECKSUM: u32 = 0x2;
/// Page-header flag: a u32 compressed size and an LZ4 block follow (ltx >= v0.5.2).
pub const PAGE_FLAG_SIZE: u16 = 0x1;
/// Bit 63, set on every checksum so that a valid checksum is never zero.
pub const CHECKSUM_FLAG: u64 = 1 << 63;
/// The database level that holds full snapshots.
pub const SNAPSHOT_LEVEL: Level = Level(9);
