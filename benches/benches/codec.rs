//! Throughput of the hot paths: CRC-64, LTX encode/decode/verify, compaction, WAL parsing, WAL
//! frames into an L0 file (the engine's per-sync work) and the restore's decode-verify-place of
//! fetched frames, next to a memcpy of the same size as the ceiling.
//!
//! `tests/run-all.sh` runs them in a short mode and compares with `results/baseline.json`
//! (`cargo run -p benches --bin bench-report`; see `benches/README.md`).

use std::collections::BTreeMap;
use std::hint::black_box;

use benches::synth::{make_page, sqlite_leaf_page, PageKind, Rng, WalBuilder};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::l0::{self, L0Params, PageSource};
use engine::walread::WalFile;
use ltx_codec::wal::{read_committed, WalReader};
use ltx_codec::{
    compact, crc64, CompactOptions, Encoder, Header, Level, LtxFile, StreamDecoder, TxId,
};
use restore::checksum::{process_chunk, PageSink};
use storage::LtxName;

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
fn wal_bytes() -> Vec<u8> {
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
    b.bytes
}

fn wal(c: &mut Criterion) {
    let bytes = wal_bytes();
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

/// What the engine does per sync: the committed frames of a 4 MiB WAL into one L0 file
/// (parse, pick the latest version of each page, compress, index, checksum). Throughput counts
/// WAL bytes.
fn l0(c: &mut Criterion) {
    let bytes = wal_bytes();
    let dir = tempfile::tempdir().expect("tempdir");
    // The engine reads the WAL file in chunks (from the page cache, as here after the write).
    let wal_path = dir.path().join("db-wal");
    std::fs::write(&wal_path, &bytes).expect("write WAL");
    // Every page is in the WAL, so the (empty) database file is never read.
    let db = std::fs::File::create(dir.path().join("db")).expect("db file");
    let mut g = c.benchmark_group("l0");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("wal_to_l0_4MiB", |bch| {
        bch.iter(|| {
            let wal = WalFile::open(&wal_path, None).expect("open WAL");
            let scan = wal.scan(32, (0, 0), None).expect("scan");
            let committed = &scan.committed;
            let pages = l0::page_list(
                false,
                &committed.pages,
                committed.commit,
                committed.commit,
                PAGE as u32,
            );
            let params = L0Params {
                txid: TxId(2),
                page_size: PAGE as u32,
                commit: committed.commit,
                timestamp_ms: 1_700_000_000_000,
                wal_offset: 32,
                wal_size: committed.end_offset - 32,
                salts: scan.salts,
            };
            let src = PageSource {
                wal: &wal,
                wal_pages: &committed.pages,
                db: &db,
                page_size: PAGE as u32,
            };
            l0::encode(&params, &pages, &src, Vec::with_capacity(2 * MIB)).expect("encode")
        })
    });
    g.finish();
}

/// The restore's inner loop: a fetched run of page frames decompressed, checksummed and placed
/// into the output (here an in-memory image of the database). Throughput counts page bytes.
fn restore(c: &mut Criterion) {
    struct Image {
        pages: Vec<u8>,
    }
    impl PageSink for Image {
        fn page_buf(&mut self, pgno: u32) -> restore::Result<Option<&mut [u8]>> {
            let at = (pgno as usize - 1) * PAGE;
            Ok(self.pages.get_mut(at..at + PAGE))
        }
        fn commit(&mut self) {}
        fn flush(&mut self) -> restore::Result<()> {
            Ok(())
        }
    }
    let pages = typical_pages(PAGES, 11);
    let file = encode(snapshot_header(PAGES), &pages, Vec::new());
    let ltx = LtxFile::open(&file).expect("ltx");
    let entries = ltx.index().entries.clone();
    let start = entries.first().expect("pages").offset;
    let end = entries.last().map(|e| e.offset + e.size).expect("pages");
    let frames = vec![Bytes::copy_from_slice(&file[start as usize..end as usize])];
    let mut image = Image {
        pages: vec![0; PAGES as usize * PAGE],
    };
    let mut scratch = Vec::new();
    let mut g = c.benchmark_group("restore");
    g.throughput(Throughput::Bytes(page_bytes(&pages)));
    g.bench_function("place_pages_typical", |b| {
        b.iter(|| {
            process_chunk(
                "bench",
                black_box(&frames),
                start,
                &entries,
                PAGE,
                &mut image,
                &mut scratch,
            )
            .expect("chunk")
        })
    });
    g.finish();
}

/// Reading an encrypted replica: a 4 MiB file of incompressible pages written through
/// `storage::age::AgeReplica` over a file replica, read back whole, so every 64 KiB age chunk
/// is fetched, authenticated and decrypted (docs/encryption.md). Throughput counts plaintext
/// bytes.
fn age_decrypt(c: &mut Criterion) {
    use std::sync::Arc;
    use storage::age::{AgeConfig, AgeKeys, AgeReplica};
    use storage::Body;

    let dir = tempfile::tempdir().expect("tempdir");
    let identity = age::x25519::Identity::generate();
    let cfg = AgeConfig {
        recipients: vec![identity.to_public().to_string()],
        identities: vec![
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_owned(),
        ],
        ..AgeConfig::default()
    };
    let keys = AgeKeys::load(&cfg).expect("keys");
    let replica = AgeReplica::wrap(Arc::new(storage::file::FileReplica::new(dir.path())), keys);
    let pages = random_pages(PAGES, 13);
    let file = encode(snapshot_header(PAGES), &pages, Vec::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (lo, hi) = (TxId(1), TxId(1));
    rt.block_on(replica.write_ltx(
        LtxName::new(Level(9), lo, hi),
        Body::Bytes(Bytes::from(file.clone())),
        std::time::SystemTime::now(),
    ))
    .expect("write encrypted");
    let mut g = c.benchmark_group("age");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("read_decrypt_4MiB", |b| {
        b.iter(|| {
            let got = rt
                .block_on(replica.read_range(LtxName::new(Level(9), lo, hi), 0, None))
                .expect("read");
            assert_eq!(got.len(), file.len());
            got
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    baseline,
    ltx,
    compaction,
    wal,
    l0,
    restore,
    age_decrypt
);
criterion_main!(benches);
