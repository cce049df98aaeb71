//! The 100-byte LTX header and the 16-byte trailer (docs/ltx.md#header, docs/ltx.md#header-validation, docs/ltx.md#trailer).

use zerocopy::byteorder::big_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::types::{PageSize, TxId};
use crate::{Error, Result, CHECKSUM_FLAG, HEADER_FLAG_NO_CHECKSUM, HEADER_SIZE, TRAILER_SIZE};

const MAGIC: [u8; 4] = *b"LTX1";

/// The header as it lies on disk, parsed in place from an mmap or buffer.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawHeader {
    /// The magic, `LTX1`.
    pub magic: [u8; 4],
    /// Header flags; only `0x2` (NoChecksum) is defined.
    pub flags: U32,
    /// SQLite page size in bytes.
    pub page_size: U32,
    /// Database size in pages after this file is applied.
    pub commit: U32,
    /// First TXID the file covers; 1 for a snapshot.
    pub min_txid: U64,
    /// Last TXID the file covers.
    pub max_txid: U64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: I64,
    /// Rolling database checksum before this file is applied; 0 with NoChecksum.
    pub pre_apply_checksum: U64,
    /// Byte offset in the SQLite WAL where this file's frames start; 0 for compacted files.
    pub wal_offset: I64,
    /// Number of WAL bytes this file covers; 0 for compacted files.
    pub wal_size: I64,
    /// Salt 1 of the WAL header that was read; 0 for compacted files.
    pub wal_salt1: U32,
    /// Salt 2 of the WAL header that was read; 0 for compacted files.
    pub wal_salt2: U32,
    /// Node ID; Litestream writes 0.
    pub node_id: U64,
    /// 20 reserved bytes at offset 80, written as zeros.
    pub reserved: [u8; 20],
}

/// The trailer as it lies on disk.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawTrailer {
    /// Rolling database checksum after this file is applied; 0 with NoChecksum.
    pub post_apply_checksum: U64,
    /// CRC-64/GO-ISO of everything before it, pages taken uncompressed, with bit 63 set
    /// (docs/ltx.md#file-checksum).
    pub file_checksum: U64,
}

/// A decoded, validated LTX header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header flags; only [`HEADER_FLAG_NO_CHECKSUM`] is defined.
    pub flags: u32,
    /// SQLite page size in bytes.
    pub page_size: u32,
    /// Database size in pages after this file is applied.
    pub commit: u32,
    /// First TXID the file covers; 1 marks a snapshot.
    pub min_txid: TxId,
    /// Last TXID the file covers.
    pub max_txid: TxId,
    /// Unix epoch milliseconds.
    pub timestamp: i64,
    /// Rolling database checksum before this file is applied; 0 for a snapshot or with NoChecksum.
    pub pre_apply_checksum: u64,
    /// Byte offset in the SQLite WAL where this file's frames start; 0 for compacted files.
    pub wal_offset: i64,
    /// Number of WAL bytes this file covers (whole frames); 0 for compacted files.
    pub wal_size: i64,
    /// Salt 1 of the WAL header that was read; 0 for compacted files.
    pub wal_salt1: u32,
    /// Salt 2 of the WAL header that was read; 0 for compacted files.
    pub wal_salt2: u32,
    /// Node ID; Litestream writes 0.
    pub node_id: u64,
}

impl Header {
    /// A header as Litestream writes it: NoChecksum, zero checksums, no WAL fields.
    pub fn new(
        page_size: u32,
        commit: u32,
        min_txid: TxId,
        max_txid: TxId,
        timestamp: i64,
    ) -> Self {
        Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp,
            pre_apply_checksum: 0,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        }
    }

    /// `MinTXID == 1` marks a full snapshot of pages `1..=Commit`.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == TxId(1)
    }

    /// True when the NoChecksum flag is set (rolling database checksums are not tracked).
    pub fn no_checksum(&self) -> bool {
        self.flags & HEADER_FLAG_NO_CHECKSUM != 0
    }

    /// The page size as a [`PageSize`].
    pub fn page_size(&self) -> PageSize {
        // Validation guarantees a legal size; fall back to the minimum rather than panic.
        PageSize::new(self.page_size).unwrap_or(PageSize::MIN)
    }

    /// Applies the rules of `Header.Validate` (docs/ltx.md#header-validation).
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidHeader(why));
        if self.flags & !HEADER_FLAG_NO_CHECKSUM != 0 {
            return bad(format!("unknown flags {:#x}", self.flags));
        }
        if PageSize::new(self.page_size).is_none() {
            return bad(format!(
                "page size {} is not a power of two from 512 to 65536",
                self.page_size
            ));
        }
        if self.min_txid.0 == 0 || self.max_txid.0 == 0 {
            return bad("TXIDs must be non-zero".into());
        }
        if self.min_txid > self.max_txid {
            return bad(format!(
                "min TXID {} is after max TXID {}",
                self.min_txid, self.max_txid
            ));
        }
        if self.wal_offset < 0 || self.wal_size < 0 {
            return bad(format!(
                "negative WAL offset {} or size {}",
                self.wal_offset, self.wal_size
            ));
        }
        if self.wal_offset == 0 && (self.wal_salt1 != 0 || self.wal_salt2 != 0) {
            return bad("WAL salts set without a WAL offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return bad("WAL size set without a WAL offset".into());
        }
        if self.is_snapshot() {
            if self.pre_apply_checksum != 0 {
                return bad("snapshot with a pre-apply checksum".into());
            }
        } else if self.no_checksum() {
            if self.pre_apply_checksum != 0 {
                return bad("pre-apply checksum set on a no-checksum file".into());
            }
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad("pre-apply checksum without bit 63".into());
        }
        Ok(())
    }

    /// Parses and validates the first 100 bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Header> {
        let (raw, _) = RawHeader::ref_from_prefix(bytes).map_err(|_| {
            Error::truncated(
                bytes.len() as u64,
                (HEADER_SIZE - bytes.len()) as u64,
                "header",
            )
        })?;
        let h = Header::from_raw(raw)?;
        h.validate()?;
        Ok(h)
    }

    fn from_raw(raw: &RawHeader) -> Result<Header> {
        if raw.magic != MAGIC {
            return Err(Error::BadMagic);
        }
        Ok(Header {
            flags: raw.flags.get(),
            page_size: raw.page_size.get(),
            commit: raw.commit.get(),
            min_txid: TxId(raw.min_txid.get()),
            max_txid: TxId(raw.max_txid.get()),
            timestamp: raw.timestamp.get(),
            pre_apply_checksum: raw.pre_apply_checksum.get(),
            wal_offset: raw.wal_offset.get(),
            wal_size: raw.wal_size.get(),
            wal_salt1: raw.wal_salt1.get(),
            wal_salt2: raw.wal_salt2.get(),
            node_id: raw.node_id.get(),
        })
    }

    /// The 100 on-disk bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let raw = RawHeader {
            magic: MAGIC,
            flags: self.flags.into(),
            page_size: self.page_size.into(),
            commit: self.commit.into(),
            min_txid: self.min_txid.0.into(),
            max_txid: self.max_txid.0.into(),
            timestamp: self.timestamp.into(),
            pre_apply_checksum: self.pre_apply_checksum.into(),
            wal_offset: self.wal_offset.into(),
            wal_size: self.wal_size.into(),
            wal_salt1: self.wal_salt1.into(),
            wal_salt2: self.wal_salt2.into(),
            node_id: self.node_id.into(),
            reserved: [0; 20],
        };
        let mut out = [0u8; HEADER_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// The decoded trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Rolling database checksum after this file is applied; 0 with NoChecksum.
    pub post_apply_checksum: u64,
    /// CRC-64/GO-ISO of everything before it, pages taken uncompressed, with bit 63 set
    /// (docs/ltx.md#file-checksum).
    pub file_checksum: u64,
}

impl Trailer {
    /// Decodes the 16 on-disk bytes.
    pub fn decode(bytes: &[u8; TRAILER_SIZE]) -> Trailer {
        let raw = RawTrailer::ref_from_bytes(&bytes[..]).unwrap_or_else(|_| unreachable!());
        Trailer {
            post_apply_checksum: raw.post_apply_checksum.get(),
            file_checksum: raw.file_checksum.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let mut h = Header::new(4096, 4, TxId(2), TxId(2), 1_795_665_906_229);
        h.wal_offset = 16512;
        h.wal_size = 4120;
        h.wal_salt1 = 0xa0c5cdcb;
        h.wal_salt2 = 0x24a162f5;
        h
    }

    #[test]
    fn round_trip() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()).ok(), Some(h));
    }

    #[test]
    fn validation_rules() {
        type Mutation = Box<dyn Fn(&mut Header)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("unknown flag", Box::new(|h| h.flags |= 4)),
            ("page size", Box::new(|h| h.page_size = 1000)),
            ("zero min", Box::new(|h| h.min_txid = TxId(0))),
            ("min > max", Box::new(|h| h.min_txid = TxId(3))),
            ("neg offset", Box::new(|h| h.wal_offset = -1)),
            ("salt w/o offset", Box::new(|h| h.wal_offset = 0)),
            ("preapply", Box::new(|h| h.pre_apply_checksum = 5)),
        ];
        for (name, mutate) in cases {
            let mut h = sample();
            mutate(&mut h);
            assert!(h.validate().is_err(), "{name} accepted");
            assert!(Header::decode(&h.encode()).is_err(), "{name} decoded");
        }
        let mut bytes = sample().encode();
        bytes[0] = b'X';
        assert!(matches!(Header::decode(&bytes), Err(Error::BadMagic)));
        assert!(matches!(
            Header::decode(&bytes[..50]),
            Err(Error::Truncated { .. })
        ));
    }
}
