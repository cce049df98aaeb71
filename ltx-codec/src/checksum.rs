//! CRC-64/GO-ISO (Go's `crc64.ISO` table), the LTX file checksum, and the rolling database
//! checksum of docs/ltx.md#rolling-checksum (which Litestream never stores, but a reader may compute).

use crc_fast::{CrcAlgorithm, Digest};

use crate::CHECKSUM_FLAG;

/// A streaming CRC-64/GO-ISO digest (SIMD-accelerated by `crc-fast`).
#[derive(Clone)]
pub struct Crc64(Digest);

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    /// A digest with nothing fed yet.
    pub fn new() -> Self {
        Crc64(Digest::new(CrcAlgorithm::Crc64GoIso))
    }

    /// Feeds `bytes` into the CRC.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The CRC of everything fed so far (without bit 63 forced).
    pub fn value(&self) -> u64 {
        self.0.finalize()
    }

    /// The value as stored in an LTX trailer: bit 63 set.
    pub fn file_checksum(&self) -> u64 {
        CHECKSUM_FLAG | self.value()
    }
}

/// One-shot CRC-64/GO-ISO.
pub fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64GoIso, bytes)
}

/// `ChecksumPage`: CRC over the big-endian pgno and the page bytes, with bit 63 set.
pub fn page_checksum(pgno: u32, data: &[u8]) -> u64 {
    let mut d = Crc64::new();
    d.update(&pgno.to_be_bytes());
    d.update(data);
    d.file_checksum()
}

/// Folds one page into a rolling database checksum.
pub fn fold_page(db_checksum: u64, page_checksum: u64) -> u64 {
    CHECKSUM_FLAG | (db_checksum ^ page_checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc64(b"123456789"), 0xB909_56C7_75A4_1001);
        let mut d = Crc64::new();
        d.update(b"1234");
        d.update(b"56789");
        assert_eq!(d.value(), 0xB909_56C7_75A4_1001);
    }

    fn db_checksum(pages: &[Vec<u8>]) -> u64 {
        pages.iter().enumerate().fold(CHECKSUM_FLAG, |c, (i, p)| {
            fold_page(c, page_checksum(i as u32 + 1, p))
        })
    }

    #[test]
    fn rolling_golden_values() {
        let pages: Vec<Vec<u8>> = (1..=3u8).map(|b| vec![b; 512]).collect();
        assert_eq!(db_checksum(&pages), 0xefff_ffff_ecd9_9000);
        assert_eq!(db_checksum(&[vec![b'1'; 512]]), 0xeb1a_9992_3104_4ddd);
        let pages: Vec<Vec<u8>> = (0x81..=0x83u8).map(|b| vec![b; 1024]).collect();
        assert_eq!(db_checksum(&pages), 0x8a24_9272_ad9f_7dea);
    }
}
