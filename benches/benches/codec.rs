//! Codec throughput: CRC-64, LTX encode/decode/verify, compaction and WAL parsing, next to a
//! memcpy of the same size as the ceiling.

use std::collections::BTreeMap;
use std::hint::black_box;

use benches::synth::{make_page, sqlite_leaf_page, PageKind, Rng, WalBuilder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ltx_codec::wal::{read_committed, WalReader};
use ltx_codec::{compact, crc64, CompactOptions, Encoder, Header, LtxFile, StreamDecoder, TxId};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
/// 4 MiB of page data per file: large enough that per-file costs do not dominate.
const PAGES: u32 = 1024;

/// Pages as an application database holds them: mostly table leaves 60–95% full of text
/// records, with the unused middle zeroed, and a few random (overflow/blob) pages.
fn typical_pages(n: u32, seed: u64) -> BTreeMap<u32, Vec<u8>> {
    let mut rng = Rng(seed);
    (1..=n)
        .map(|pgno| {
            let page = if rng.below(20) == 0 {
                make_page(PageKind::Random, rng.next_u64(), PAGE)
            } else {
                let fill = 60 + rng.below(36);
                sqlite_leaf_page(&mut rng, PAGE, fill)
            };
            (pgno, page)
        })
        .collect()
}

fn random_pages(n: u32, seed: u64) -> BTreeMap<u32, Vec<u8>> {
    (1..=n)
        .map(|pgno| {
            (
                pgno,
                make_page(PageKind::Random, seed ^ u64::from(pgno), PAGE),
            )
        })
        .collect()
}

fn encode(header: Header, pages: &BTreeMap<u32, Vec<u8>>, out: Vec<u8>) -> Vec<u8> {
    let mut enc = Encoder::new(out, header).expect("encoder");
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).expect("page");
    }
    enc.finish().expect("finish").0
}

fn snapshot_header(commit: u32) -> Header {
    Header::new(PAGE as u32, commit, TxId(1), TxId(1), 1_700_000_000_000)
}

fn page_bytes(pages: &BTreeMap<u32, Vec<u8>>) -> u64 {
    (pages.len() * PAGE) as u64
}

fn baseline(c: &mut Criterion) {
    // Which SIMD path crc-fast picked at run time: the figure below depends on it.
    eprintln!(
        "crc-fast path: {}",
        crc_fast::get_calculator_target(crc_fast::CrcAlgorithm::Crc64GoIso)
    );
    let mut g = c.benchmark_group("baseline");
    let mut src = vec![0u8; MIB];
    Rng(1).fill(&mut src);
    let mut dst = vec![0u8; MIB];
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("memcpy_1MiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.bench_function("crc64_1MiB", |b| b.iter(|| crc64(black_box(&src))));
    g.finish();
}

fn ltx(c: &mut Criterion) {
    let mut g = c.benchmark_group("ltx");
    for (name, pages) in [
        ("typical", typical_pages(PAGES, 7)),
        ("incompressible", random_pages(PAGES, 7)),
    ] {
        let header = snapshot_header(PAGES);
        let file = encode(header, &pages, Vec::new());
        eprintln!(
            "{name} pages: LTX file is {:.2} of the page bytes",
            file.len() as f64 / page_bytes(&pages) as f64
        );
        g.throughput(Throughput::Bytes(page_bytes(&pages)));

        let mut out = Vec::with_capacity(file.len());
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                out = encode(header, &pages, std::mem::take(&mut out));
            })
        });
        g.bench_function(format!("open_verified_{name}"), |b| {
            b.iter(|| LtxFile::open_verified(black_box(&file)).expect("valid"))
        });
        let mut page = vec![0u8; PAGE];
        g.bench_function(format!("stream_decode_{name}"), |b| {
            b.iter(|| {
                let mut d = StreamDecoder::new(black_box(&file[..])).expect("header");
                while d.next_page(&mut page).expect("page").is_some() {}
            })
        });
    }
    g.finish();
}

/// Four L0-like files over one database: a snapshot, then three files that each rewrite a
/// quarter of the pages, as a compaction into L1 sees them.
fn compaction(c: &mut Criterion) {
    let base = typical_pages(PAGES, 11);
    let mut files = vec![encode(snapshot_header(PAGES), &base, Vec::new())];
    let mut input_bytes = page_bytes(&base);
    for i in 0..3u64 {
        let mut rng = Rng(100 + i);
        let changed: BTreeMap<u32, Vec<u8>> = (1..=PAGES)
            .filter(|_| rng.below(4) == 0)
            .map(|p| (p, sqlite_leaf_page(&mut Rng(p as u64 + i), PAGE, 80)))
            .collect();
        input_bytes += page_bytes(&changed);
        let txid = TxId(2 + i);
        let header = Header::new(PAGE as u32, PAGES, txid, txid, 1_700_000_000_000 + i as i64);
        files.push(encode(header, &changed, Vec::new()));
    }
    let mut g = c.benchmark_group("compaction");
    g.throughput(Throughput::Bytes(input_bytes));
    let mut out = Vec::new();
    g.bench_function("compact_4_files", |b| {
        b.iter(|| {
            out.clear();
            let inputs = files
                .iter()
                .map(|f| StreamDecoder::new(&f[..]).expect("input"))
                .collect();
            let res = compact(inputs, std::mem::take(&mut out), CompactOptions::default());
            out = res.expect("compact").0;
        })
    });
    g.finish();
}

/// A 4 MiB WAL of 4 KiB pages: transactions of 1–8 frames over 300 pages, then an
/// uncommitted tail.
fn wal(c: &mut Criterion) {
    let mut rng = Rng(5);
    let mut b = WalBuilder::new(PAGE as u32, false, (0x1234_5678, 0x9abc_def0), 1);
    let page = sqlite_leaf_page(&mut rng, PAGE, 80);
    let frames = 4 * MIB / (PAGE + 24);
    let mut left_in_txn = 0;
    for k in 0..frames {
        if left_in_txn == 0 {
            left_in_txn = 1 + rng.below(8);
        }
        left_in_txn -= 1;
        let commit = if left_in_txn == 0 && k + 4 < frames {
            300
        } else {
            0
        };
        b.frame(1 + rng.below(300) as u32, commit, &page);
    }
    let bytes = b.bytes;
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("read_committed_4MiB", |bch| {
        bch.iter(|| {
            let mut r = WalReader::new(black_box(&bytes))
                .expect("wal")
                .expect("header");
            read_committed(&mut r, None)
        })
    });
    g.finish();
}

criterion_group!(benches, baseline, ltx, compaction, wal);
criterion_main!(benches);
