//! Arbitrary bytes as a SQLite WAL. The first input byte picks whether checksums are repaired
//! before parsing: random bytes almost never carry a valid checksum chain, and repairing them
//! lets the fuzzer reach frame, commit and resume logic instead of stopping at the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ltx_codec::wal::{checksum, read_committed, WalHeader, WalReader};

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Rewrites the header checksum and every whole frame's checksum so the chain is valid.
fn repair(wal: &mut [u8]) {
    if wal.len() < 32 {
        return;
    }
    let big_endian = wal[3] & 1 == 1;
    let mut sum = checksum(big_endian, (0, 0), &wal[..24]);
    wal[24..28].copy_from_slice(&sum.0.to_be_bytes());
    wal[28..32].copy_from_slice(&sum.1.to_be_bytes());
    let raw_size = be32(wal, 8);
    let page_size = if raw_size == 1 {
        65536
    } else {
        raw_size as usize
    };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return;
    }
    let fs = 24 + page_size;
    let mut at = 32;
    while at + fs <= wal.len() {
        sum = checksum(big_endian, sum, &wal[at..at + 8]);
        sum = checksum(big_endian, sum, &wal[at + 24..at + fs]);
        wal[at + 16..at + 20].copy_from_slice(&sum.0.to_be_bytes());
        wal[at + 20..at + 24].copy_from_slice(&sum.1.to_be_bytes());
        at += fs;
    }
}

fn walk(data: &[u8], header: &WalHeader) -> usize {
    let Ok(Some(mut r)) = WalReader::new(data) else {
        panic!("header parsed once, not twice");
    };
    let mut frames = 0;
    let mut last = None;
    while let Some(f) = r.next_frame() {
        assert_eq!(f.data.len(), header.page_size as usize);
        assert!(f.pgno != 0);
        assert!(last.is_none_or(|o| f.offset > o));
        last = Some(f.offset);
        frames += 1;
    }
    frames
}

fn check_committed(data: &[u8], mut r: WalReader<'_>, max: Option<u64>) {
    let start = r.offset();
    let fs = r.header().frame_size() as u64;
    let c = read_committed(&mut r, max);
    assert!(c.pages.keys().all(|&p| p != 0 && p <= c.commit));
    assert!(c
        .pages
        .values()
        .all(|&o| o >= start && o + fs <= data.len() as u64));
    if c.transactions == 0 {
        assert_eq!(
            (c.commit, c.end_offset, c.last_commit_end),
            (0, start, start)
        );
        assert!(c.pages.is_empty());
    } else {
        assert!(c.commit != 0);
        assert!(c.end_offset <= c.last_commit_end);
        assert!(c.last_commit_end <= data.len() as u64);
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut owned = rest.to_vec();
    if mode & 1 == 1 {
        repair(&mut owned);
    }
    let data = &owned[..];
    let header = match WalHeader::parse(data) {
        Ok(Some(h)) => h,
        _ => {
            assert!(matches!(WalReader::new(data), Ok(None) | Err(_)));
            return;
        }
    };
    let frames = walk(data, &header);
    if let Ok(Some(r)) = WalReader::new(data) {
        check_committed(data, r, None);
    }
    if let Ok(Some(r)) = WalReader::new(data) {
        check_committed(
            data,
            r,
            Some(u64::from(mode >> 1) * header.frame_size() as u64),
        );
    }

    // Resume at every frame boundary that exists, plus a few that do not, with the header's
    // salts and with salts taken from the input.
    let fs = header.frame_size() as u64;
    let alt = (be32(data, 16) ^ u32::from(mode), be32(data, 20));
    for k in 0..(frames as u64 + 3).min(16) {
        for offset in [32 + k * fs, 32 + k * fs + u64::from(mode), u64::MAX - k] {
            for salts in [(header.salt1, header.salt2), alt] {
                if let Ok(Some(r)) = WalReader::with_offset(data, offset, salts) {
                    assert_eq!(r.offset(), offset);
                    check_committed(data, r, None);
                }
            }
        }
    }
});
