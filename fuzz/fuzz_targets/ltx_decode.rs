//! Arbitrary bytes through every LTX reader. None may panic, and the two verifying readers must
//! agree: a file one accepts, the other accepts with the same pages and trailer.
//!
//! A mutated file almost never keeps a valid checksum, which would leave the agreement check to
//! the seeds alone; so each input is also tried with its checksum recomputed.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use ltx_codec::{Crc64, Header, LtxFile, PageReader, StreamDecoder, Trailer, HEADER_SIZE};

type Seen = (Header, Trailer, BTreeMap<u32, Vec<u8>>);

fn slice(data: &[u8]) -> Option<Seen> {
    let f = LtxFile::open(data).ok()?;
    // Random access and the frame walk run whether or not the file verifies.
    let mut page = vec![0u8; f.header().page_size as usize];
    let mut pages = BTreeMap::new();
    for e in &f.index().entries {
        if f.read_page(e.pgno, &mut page).is_ok() {
            pages.insert(e.pgno, page.clone());
        }
    }
    for frame in f.frames() {
        match frame {
            Ok(fr) => {
                let _ = fr.decompress(&mut page);
            }
            Err(_) => break,
        }
    }
    f.verify().ok()?;
    assert_eq!(
        pages.len(),
        f.index().len(),
        "verified file with unreadable pages"
    );
    Some((*f.header(), *f.trailer(), pages))
}

fn stream(data: &[u8]) -> Option<Seen> {
    let mut d = StreamDecoder::new(data).ok()?;
    let mut page = vec![0u8; d.header().page_size as usize];
    let mut pages = BTreeMap::new();
    while let Some(pgno) = d.next_page(&mut page).ok()? {
        // Callers act on pages as they arrive, before the checksum is known: they must at least
        // come in ascending order, each once.
        if let Some((&prev, _)) = pages.last_key_value() {
            assert!(pgno > prev, "page {pgno} streamed after page {prev}");
        }
        pages.insert(pgno, page.clone());
    }
    let trailer = *d.trailer().expect("trailer once the pages end");
    Some((*d.header(), trailer, pages))
}

fn random_access(data: &[u8]) {
    let Ok(pr) = PageReader::open(data, data.len() as u64) else {
        return;
    };
    let mut page = vec![0u8; pr.header().page_size as usize];
    let mut frame = Vec::new();
    for e in &pr.index().entries {
        let _ = pr.read_page(e.pgno, &mut page, &mut frame);
    }
}

/// The input with its trailer checksum recomputed from its frames, when they all decode.
fn with_valid_checksum(data: &[u8]) -> Option<Vec<u8>> {
    let f = LtxFile::open(data).ok()?;
    let mut crc = Crc64::new();
    crc.update(&data[..HEADER_SIZE]);
    let mut page = vec![0u8; f.header().page_size as usize];
    let mut end = HEADER_SIZE;
    for frame in f.frames() {
        let frame = frame.ok()?;
        frame.decompress(&mut page).ok()?;
        let prefix = if frame.is_block_format() { 10 } else { 6 };
        crc.update(&frame.bytes[..prefix]);
        crc.update(&page);
        end = frame.offset as usize + frame.bytes.len();
    }
    let sum_at = data.len() - 8;
    crc.update(data.get(end..sum_at)?);
    let mut out = data.to_vec();
    out[sum_at..].copy_from_slice(&crc.file_checksum().to_be_bytes());
    Some(out)
}

fn check(data: &[u8]) {
    let a = slice(data);
    let b = stream(data);
    random_access(data);
    match (&a, &b) {
        (Some(x), Some(y)) => assert!(x == y, "readers disagree on a valid file"),
        (None, None) => {}
        _ => panic!(
            "LtxFile verified: {}, StreamDecoder verified: {}",
            a.is_some(),
            b.is_some()
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(fixed) = with_valid_checksum(data) {
        check(&fixed);
    }
});
