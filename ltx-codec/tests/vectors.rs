//! Decodes every Litestream 0.5.17 vector (copied into tests/vectors) and checks it against the
//! decoded JSON next to it, then rebuilds vectors from their parts, byte for byte.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ltx_codec::wal::{read_committed, WalReader};
use ltx_codec::{
    compact, CompactOptions, Encoder, Header, LtxFile, PageReader, StreamDecoder, TxId,
};
use serde_json::Value;

fn vector(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&vector(&format!("{name}.decoded.json"))).expect("json")
}

const LTX: [&str; 6] = [
    "v1_L0_incremental_txid2",
    "v2_L0_snapshot_txid1",
    "v3_L2_compacted_1-5",
    "v4_L9_snapshot_1-5",
    "v5_legacy_frame_0.5.15_txid2",
    "v6_L0_from_wal_txid2",
];

fn hex(v: &Value) -> u64 {
    match v {
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex"),
        other => other.as_u64().expect("number"),
    }
}

/// Every page of a file, decompressed, by pgno.
fn pages(bytes: &[u8]) -> BTreeMap<u32, Vec<u8>> {
    let f = LtxFile::open_verified(bytes).expect("open");
    let ps = f.header().page_size as usize;
    f.index()
        .entries
        .iter()
        .map(|e| {
            let mut p = vec![0u8; ps];
            f.read_page(e.pgno, &mut p).expect("page");
            (e.pgno, p)
        })
        .collect()
}

fn encode(header: Header, pages: &BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new(), header).expect("encoder");
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).expect("encode page");
    }
    enc.finish().expect("finish").0
}

#[test]
fn every_vector_decodes_and_matches_its_json() {
    for name in LTX {
        let bytes = vector(&format!("{name}.ltx"));
        let j = json(name);
        let f = LtxFile::open_verified(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let h = f.header();
        let jh = &j["header"];
        assert_eq!(u64::from(h.flags), hex(&jh["flags"]), "{name}");
        assert_eq!(u64::from(h.page_size), hex(&jh["page_size"]), "{name}");
        assert_eq!(u64::from(h.commit), hex(&jh["commit"]), "{name}");
        assert_eq!(h.min_txid.0, hex(&jh["min_txid"]), "{name}");
        assert_eq!(h.max_txid.0, hex(&jh["max_txid"]), "{name}");
        assert_eq!(h.timestamp as u64, hex(&jh["timestamp_ms"]), "{name}");
        assert_eq!(h.wal_offset as u64, hex(&jh["wal_offset"]), "{name}");
        assert_eq!(h.wal_size as u64, hex(&jh["wal_size"]), "{name}");
        assert_eq!(u64::from(h.wal_salt1), hex(&jh["wal_salt1"]), "{name}");
        assert_eq!(u64::from(h.wal_salt2), hex(&jh["wal_salt2"]), "{name}");
        assert_eq!(
            f.trailer().file_checksum,
            hex(&j["trailer"]["file_checksum"]),
            "{name}"
        );
        assert_eq!(f.trailer().post_apply_checksum, 0, "{name}");
        let idx: Vec<(u64, u64, u64)> = f
            .index()
            .entries
            .iter()
            .map(|e| (u64::from(e.pgno), e.offset, e.size))
            .collect();
        let jidx: Vec<(u64, u64, u64)> = j["index"]
            .as_array()
            .expect("index")
            .iter()
            .map(|t| (hex(&t[0]), hex(&t[1]), hex(&t[2])))
            .collect();
        assert_eq!(idx, jidx, "{name}");
        let kinds: Vec<bool> = f
            .frames()
            .map(|fr| fr.expect("frame").is_block_format())
            .collect();
        let jkinds: Vec<bool> = j["pages"]
            .as_array()
            .expect("pages")
            .iter()
            .map(|p| p[1] == "block")
            .collect();
        assert_eq!(kinds, jkinds, "{name}");

        // The streaming decoder and the random-access reader agree with the slice decoder.
        let mut sd = StreamDecoder::new(&bytes[..]).expect("stream");
        let mut page = vec![0u8; h.page_size as usize];
        let mut streamed = BTreeMap::new();
        while let Some(pgno) = sd
            .next_page(&mut page)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
        {
            streamed.insert(pgno, page.clone());
        }
        assert_eq!(
            sd.trailer().map(|t| t.file_checksum),
            Some(f.trailer().file_checksum)
        );
        let all = pages(&bytes);
        assert_eq!(streamed, all, "{name}");
        let pr = PageReader::open(&bytes[..], bytes.len() as u64).expect("page reader");
        let mut frame = Vec::new();
        for (pgno, want) in &all {
            pr.read_page(*pgno, &mut page, &mut frame)
                .expect("read_page");
            assert_eq!(&page, want, "{name} page {pgno}");
        }
    }
}

#[test]
fn re_encoding_block_vectors_is_byte_identical() {
    for name in LTX.iter().filter(|n| !n.contains("legacy")) {
        let bytes = vector(&format!("{name}.ltx"));
        let header = *LtxFile::open(&bytes).expect("open").header();
        assert_eq!(encode(header, &pages(&bytes)), bytes, "{name}");
    }
}

#[test]
fn legacy_frame_file_reads_and_converts() {
    let bytes = vector("v5_legacy_frame_0.5.15_txid2.ltx");
    let all = pages(&bytes);
    assert_eq!(all.keys().copied().collect::<Vec<_>>(), vec![2]);
    let page = &all[&2];
    // A b-tree leaf with one cell whose record ends in "format".
    assert_eq!(page[0], 0x0d);
    assert!(page.windows(6).any(|w| w == b"format"));
    // Re-encoded in the current block format, the same page comes back.
    let header = *LtxFile::open(&bytes).expect("open").header();
    assert_eq!(pages(&encode(header, &all)), all);
}

#[test]
fn wal_rebuilds_v6_l0_file() {
    let wal = vector("v6_wal_run2.wal");
    let ltx = vector("v6_L0_from_wal_txid2.ltx");
    let want = LtxFile::open_verified(&ltx).expect("open");
    let h = *want.header();
    // The WAL was captured later; at sync time it ended where this file's frames end.
    let end = (h.wal_offset + h.wal_size) as usize;
    let mut r =
        WalReader::with_offset(&wal[..end], h.wal_offset as u64, (h.wal_salt1, h.wal_salt2))
            .expect("reader")
            .expect("non-empty wal");
    let c = read_committed(&mut r, None);
    assert_eq!(c.commit, h.commit);
    assert_eq!(c.transactions, 5, "five SQLite commits in one L0 file");
    assert_eq!(c.end_offset - h.wal_offset as u64, h.wal_size as u64);
    assert_eq!(
        c.pages.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 6, 7]
    );
    let ps = h.page_size as usize;
    let rebuilt: BTreeMap<u32, Vec<u8>> = c
        .pages
        .iter()
        .map(|(&pgno, &off)| {
            let at = off as usize + 24;
            (pgno, wal[at..at + ps].to_vec())
        })
        .collect();
    assert_eq!(encode(h, &rebuilt), ltx, "byte-identical L0 from the WAL");
}

#[test]
fn wal_full_scan_is_consistent() {
    let wal = vector("v6_wal_run2.wal");
    let mut r = WalReader::new(&wal).expect("header").expect("non-empty");
    assert_eq!(r.header().page_size, 1024);
    let mut frames = 0;
    let mut last_commit_end = 32;
    while let Some(f) = r.next_frame() {
        frames += 1;
        if f.is_commit() {
            last_commit_end = f.offset + 24 + 1024;
        }
    }
    assert!(frames > 0);
    assert_eq!(
        ltx_codec::wal::last_commit_end(&wal).expect("scan"),
        last_commit_end
    );
    // A stale tail past the valid frames is ignored, and a flipped byte in a frame ends the WAL
    // there.
    let mut bad = wal.clone();
    bad[32 + 24 + 100] ^= 1;
    assert_eq!(ltx_codec::wal::last_commit_end(&bad).expect("scan"), 32);
}

#[test]
fn snapshot_materialises_to_the_restored_database() {
    let l9 = vector("v4_L9_snapshot_1-5.ltx");
    let db = vector("v7_restored_run1_latest.db");
    let f = LtxFile::open_verified(&l9).expect("open");
    let ps = f.header().page_size as usize;
    let mut out = vec![0u8; f.header().commit as usize * ps];
    for (pgno, page) in pages(&l9) {
        let at = (pgno as usize - 1) * ps;
        out[at..at + ps].copy_from_slice(&page);
    }
    assert_eq!(out.len(), db.len());
    let differing: Vec<usize> = (0..db.len() / ps)
        .filter(|i| out[i * ps..(i + 1) * ps] != db[i * ps..(i + 1) * ps])
        .map(|i| i + 1)
        .collect();
    // v7 was restored at TXID 6, the `_litestream_seq` bump after a checkpoint, which is not
    // among the vectors: it changed page 3 only, the table's leaf, from empty to the row
    // (id 1, seq 1). Every other page is the snapshot's.
    assert_eq!(differing, vec![3]);
    let (before, after) = (&out[2 * ps..3 * ps], &db[2 * ps..3 * ps]);
    assert_eq!(
        (before[0], before[3..5].to_vec()),
        (0x0d, vec![0, 0]),
        "empty leaf at TXID 5"
    );
    assert_eq!(
        (after[0], after[3..5].to_vec()),
        (0x0d, vec![0, 1]),
        "one cell at TXID 6"
    );
    assert_eq!(&after[ps - 5..], &[3, 1, 3, 0, 9], "record (id 1, seq 1)");
}

#[test]
fn compaction_reproduces_l2_and_replays_pages() {
    // A single-input compaction re-emits the same bytes.
    let l2 = vector("v3_L2_compacted_1-5.ltx");
    let inputs = vec![StreamDecoder::new(&l2[..]).expect("open")];
    let (out, h, _) = compact(inputs, Vec::new(), CompactOptions::default()).expect("compact");
    assert_eq!(out, l2);
    assert_eq!((h.min_txid, h.max_txid), (TxId(1), TxId(5)));

    // L0 snapshot (TXID 1) + L0 incremental (TXID 2) of the same run: newest page wins.
    let (s, i) = (
        vector("v2_L0_snapshot_txid1.ltx"),
        vector("v1_L0_incremental_txid2.ltx"),
    );
    let inputs = vec![
        StreamDecoder::new(&s[..]).expect("open"),
        StreamDecoder::new(&i[..]).expect("open"),
    ];
    let (out, h, _) = compact(inputs, Vec::new(), CompactOptions::default()).expect("compact");
    let mut want = pages(&s);
    want.extend(pages(&i));
    assert_eq!(pages(&out), want);
    assert_eq!(
        h.timestamp,
        LtxFile::open(&i).expect("open").header().timestamp
    );
    assert_eq!((h.wal_offset, h.wal_size, h.wal_salt1), (0, 0, 0));
}
