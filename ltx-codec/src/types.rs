//! One type per concept: TXID, page number, page size, level, position, checksum.

use std::fmt;
use std::str::FromStr;

/// A Litestream transaction ID: one per L0 file, not one per SQLite transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u64);

impl TxId {
    /// TXID 0, which no LTX file carries (TXIDs start at 1).
    pub const ZERO: TxId = TxId(0);

    /// The TXID after this one.
    pub fn next(self) -> TxId {
        TxId(self.0 + 1)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Error for a TXID that is not exactly 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid TXID {0:?}: want exactly 16 hex digits")]
pub struct ParseTxIdError(pub String);

impl FromStr for TxId {
    type Err = ParseTxIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex16(s)
            .map(TxId)
            .ok_or_else(|| ParseTxIdError(s.to_owned()))
    }
}

fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// A 1-based SQLite page number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageNo(pub u32);

impl fmt::Display for PageNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A SQLite page size: a power of two from 512 to 65536.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageSize(u32);

impl PageSize {
    /// The smallest page size, 512 bytes.
    pub const MIN: PageSize = PageSize(512);

    /// `Some` when `size` is a power of two from 512 to 65536.
    pub fn new(size: u32) -> Option<PageSize> {
        ((512..=65536).contains(&size) && size.is_power_of_two()).then_some(PageSize(size))
    }

    /// The size in bytes.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The size in bytes, as a `usize`.
    pub fn bytes(self) -> usize {
        self.0 as usize
    }

    /// The page that holds byte offset 1 GiB (SQLite's PENDING_BYTE); never stored in LTX.
    pub fn lock_pgno(self) -> u32 {
        lock_pgno(self.0)
    }

    /// Byte offset of a page in the database file.
    pub fn offset_of(self, pgno: u32) -> u64 {
        u64::from(pgno - 1) * u64::from(self.0)
    }
}

/// The lock page for a page size: `0x40000000 / page_size + 1`.
pub fn lock_pgno(page_size: u32) -> u32 {
    0x4000_0000 / page_size + 1
}

/// A compaction level: 0 for per-sync files, 1..=8 for compactions, 9 for snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(pub u8);

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 64-bit checksum, printed as 16 hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checksum(pub u64);

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A replication position: TXID plus the post-apply checksum (`<txid>/<checksum>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// The last TXID reached.
    pub txid: TxId,
    /// Post-apply checksum at that TXID.
    pub post_apply_checksum: Checksum,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.txid, self.post_apply_checksum)
    }
}

/// The name of an LTX file: `%016x-%016x.ltx`.
pub fn ltx_file_name(min: TxId, max: TxId) -> String {
    format!("{min}-{max}.ltx")
}

/// Parses `%016x-%016x.ltx`; any other name is not an LTX file and yields `None`.
pub fn parse_ltx_file_name(name: &str) -> Option<(TxId, TxId)> {
    let stem = name.strip_suffix(".ltx")?;
    let (min, max) = stem.split_once('-')?;
    if !is_lower_hex16(min) || !is_lower_hex16(max) {
        return None;
    }
    Some((TxId(parse_hex16(min)?), TxId(parse_hex16(max)?)))
}

fn is_lower_hex16(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txid_text_form() {
        assert_eq!(TxId(0x2a).to_string(), "000000000000002a");
        assert_eq!("000000000000002a".parse::<TxId>(), Ok(TxId(42)));
        assert!("2a".parse::<TxId>().is_err());
        assert!("000000000000002g".parse::<TxId>().is_err());
    }

    #[test]
    fn file_names() {
        assert_eq!(
            ltx_file_name(TxId(1), TxId(5)),
            "0000000000000001-0000000000000005.ltx"
        );
        assert_eq!(
            parse_ltx_file_name("0000000000000001-0000000000000005.ltx"),
            Some((TxId(1), TxId(5)))
        );
        assert_eq!(
            parse_ltx_file_name("0000000000000001-000000000000000A.ltx"),
            None
        );
        assert_eq!(
            parse_ltx_file_name("0000000000000001-0000000000000005.ltx.tmp"),
            None
        );
    }

    #[test]
    fn lock_pages() {
        assert_eq!(lock_pgno(4096), 262145);
        assert_eq!(lock_pgno(512), 2097153);
        assert_eq!(lock_pgno(65536), 16385);
        assert!(PageSize::new(1000).is_none());
        assert!(PageSize::new(256).is_none());
        assert!(PageSize::new(131072).is_none());
    }
}
