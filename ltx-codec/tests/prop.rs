//! Properties of the codec on random input: round trips through every reader, compaction as
//! page-by-page replay, rejection of every single-bit flip and truncation, and the WAL reader
//! against a synthetic WAL.

use std::collections::BTreeMap;

use ltx_codec::wal::{read_committed, WalReader};
use ltx_codec::{
    compact, lock_pgno, CompactOptions, Encoder, Error, Header, LtxFile, PageReader, StreamDecoder,
    TxId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use test_support::synth::{make_page, PageKind, Rng, WalBuilder};

/// `cases` by default; `PROPTEST_CASES` overrides it for a longer hunt.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// An LTX file to build: header and pages (pgno, content kind, content seed) in pgno order.
#[derive(Clone, Debug)]
struct FileSpec {
    header: Header,
    pages: Vec<(u32, PageKind, u64)>,
}

impl FileSpec {
    fn page_data(&self) -> BTreeMap<u32, Vec<u8>> {
        let ps = self.header.page_size as usize;
        self.pages
            .iter()
            .map(|&(pgno, kind, seed)| (pgno, make_page(kind, seed, ps)))
            .collect()
    }

    fn encode(&self) -> (Vec<u8>, u64) {
        encode(self.header, &self.page_data())
    }
}

fn encode(header: Header, pages: &BTreeMap<u32, Vec<u8>>) -> (Vec<u8>, u64) {
    let mut enc = Encoder::new(Vec::new(), header).expect("encoder");
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).expect("encode page");
    }
    enc.finish().expect("finish")
}

fn page_kind() -> impl Strategy<Value = PageKind> {
    prop_oneof![
        Just(PageKind::Zero),
        any::<u8>().prop_map(PageKind::Byte),
        Just(PageKind::Random),
        (0u8..=100).prop_map(|fill| PageKind::Leaf { fill }),
        Just(PageKind::HalfRandom),
    ]
}

/// The header fields a writer may set freely (within validation).
#[derive(Clone, Debug)]
struct Extras {
    min_txid: u64,
    span: u64,
    timestamp: i64,
    wal: Option<(i64, i64, u32, u32)>,
    node_id: u64,
}

fn extras() -> impl Strategy<Value = Extras> {
    (
        prop_oneof![2u64..100, 2u64..=u64::MAX - 1000],
        0u64..1000,
        any::<i64>(),
        proptest::option::of((1i64..=i64::MAX, 0i64..=i64::MAX, any::<u32>(), any::<u32>())),
        any::<u64>(),
    )
        .prop_map(|(min_txid, span, timestamp, wal, node_id)| Extras {
            min_txid,
            span,
            timestamp,
            wal,
            node_id,
        })
}

/// A random valid file whose page data stays under about `max_bytes`.
fn file_spec(
    page_sizes: std::ops::RangeInclusive<u32>,
    max_bytes: usize,
) -> BoxedStrategy<FileSpec> {
    (page_sizes, any::<bool>())
        .prop_flat_map(move |(log, snapshot)| {
            let ps = 1u32 << log;
            let max_pages = (max_bytes / ps as usize).clamp(1, 12) as u32;
            let commit = if snapshot {
                (1..=max_pages).boxed()
            } else {
                // Large commits give page numbers that take multi-byte varints, and room for
                // pages around the lock page.
                prop_oneof![1..=2 * max_pages, 1..=u32::MAX].boxed()
            };
            (
                Just(ps),
                Just(snapshot),
                commit,
                extras(),
                proptest::collection::vec(
                    (any::<u32>(), page_kind(), any::<u64>()),
                    0..=max_pages as usize,
                ),
            )
        })
        .prop_map(|(ps, snapshot, commit, x, raw)| {
            let min = if snapshot { 1 } else { x.min_txid };
            let mut h = Header::new(ps, commit, TxId(min), TxId(min + x.span), x.timestamp);
            if let Some((off, size, s1, s2)) = x.wal {
                (h.wal_offset, h.wal_size, h.wal_salt1, h.wal_salt2) = (off, size, s1, s2);
            }
            h.node_id = x.node_id;
            let lock = lock_pgno(ps);
            let pages = if snapshot {
                (1..=commit)
                    .filter(|&p| p != lock)
                    .enumerate()
                    .map(|(i, p)| {
                        let (_, kind, seed) = raw.get(i).copied().unwrap_or((0, PageKind::Zero, 0));
                        (p, kind, seed)
                    })
                    .collect()
            } else {
                let mut v: Vec<(u32, PageKind, u64)> = raw
                    .iter()
                    .map(|&(r, kind, seed)| {
                        let near_lock = lock - 1 + r / 4 % 3;
                        let p = if r % 4 == 0 && commit > lock {
                            near_lock
                        } else {
                            1 + r % commit
                        };
                        (p, kind, seed)
                    })
                    .filter(|&(p, _, _)| p != lock)
                    .collect();
                v.sort_by_key(|&(p, _, _)| p);
                v.dedup_by_key(|&mut (p, _, _)| p);
                v
            };
            FileSpec { header: h, pages }
        })
        .boxed()
}

/// What a decoder saw: header, pages by pgno, stored file checksum.
type Decoded = (Header, BTreeMap<u32, Vec<u8>>, u64);

fn stream_all(bytes: &[u8]) -> Result<Decoded, Error> {
    let mut d = StreamDecoder::new(bytes)?;
    let mut page = vec![0u8; d.header().page_size as usize];
    let mut out = BTreeMap::new();
    let mut order = Vec::new();
    while let Some(pgno) = d.next_page(&mut page)? {
        order.push(pgno);
        out.insert(pgno, page.clone());
    }
    assert!(order.windows(2).all(|w| w[0] < w[1]), "pages out of order");
    let checksum = d
        .trailer()
        .expect("trailer after the last page")
        .file_checksum;
    Ok((*d.header(), out, checksum))
}

fn slice_all(bytes: &[u8]) -> Result<Decoded, Error> {
    let f = LtxFile::open_verified(bytes)?;
    let mut out = BTreeMap::new();
    for e in &f.index().entries {
        let mut page = vec![0u8; f.header().page_size as usize];
        f.read_page(e.pgno, &mut page)?;
        out.insert(e.pgno, page);
    }
    Ok((*f.header(), out, f.trailer().file_checksum))
}

fn check_round_trip(spec: &FileSpec) {
    let want = spec.page_data();
    let (bytes, checksum) = encode(spec.header, &want);

    let (h, pages, sum) = slice_all(&bytes).expect("LtxFile");
    assert_eq!(h, spec.header);
    assert_eq!(sum, checksum);
    assert!(pages == want, "LtxFile pages differ");
    let f = LtxFile::open(&bytes).expect("open");
    let mut page = vec![0u8; h.page_size as usize];
    for (frame, (pgno, data)) in f.frames().zip(&want) {
        let frame = frame.expect("frame");
        assert!(frame.is_block_format());
        assert_eq!(frame.pgno, *pgno);
        frame.decompress(&mut page).expect("decompress");
        assert!(&page == data);
    }
    assert_eq!(f.frames().count(), want.len());

    let (h, pages, sum) = stream_all(&bytes).expect("StreamDecoder");
    assert_eq!((h, sum), (spec.header, checksum));
    assert!(pages == want, "StreamDecoder pages differ");

    let pr = PageReader::open(&bytes[..], bytes.len() as u64).expect("PageReader");
    assert_eq!(*pr.header(), spec.header);
    assert_eq!(pr.trailer().file_checksum, checksum);
    assert_eq!(pr.index(), f.index());
    let mut frame = Vec::new();
    for (pgno, data) in &want {
        pr.read_page(*pgno, &mut page, &mut frame)
            .expect("read_page");
        assert!(&page == data, "PageReader page {pgno} differs");
    }
    let absent = (1..=spec.header.commit).find(|p| !want.contains_key(p));
    if let Some(p) = absent {
        assert!(matches!(
            pr.read_page(p, &mut page, &mut frame),
            Err(Error::PageNotFound(_))
        ));
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn round_trip_through_every_reader(spec in file_spec(9..=16, 256 * 1024)) {
        check_round_trip(&spec);
    }
}

/// Contiguous inputs that a real database could produce: a grown database rewrites its new
/// pages, so a chain starting with a snapshot always compacts to a complete snapshot.
fn chain(page_size: u32, n: usize, first_snapshot: bool, seed: u64) -> Vec<FileSpec> {
    let mut rng = Rng(seed);
    let mut next_txid = if first_snapshot {
        1
    } else {
        2 + rng.below(1 << 40)
    };
    let mut prev_commit = 0u32;
    let kinds = [
        PageKind::Zero,
        PageKind::Random,
        PageKind::Leaf { fill: 70 },
        PageKind::HalfRandom,
        PageKind::Byte(0x5a),
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let commit = 1 + rng.below(12) as u32;
        let min = next_txid;
        let max = min + rng.below(3);
        next_txid = max + 1;
        let mut header = Header::new(
            page_size,
            commit,
            TxId(min),
            TxId(max),
            rng.next_u64() as i64 >> 1,
        );
        // L0 files carry their WAL position; a compaction must not.
        header.wal_offset = 32 + rng.below(1 << 20) as i64;
        header.wal_size = rng.below(1 << 20) as i64;
        (header.wal_salt1, header.wal_salt2) = (rng.next_u64() as u32, rng.next_u64() as u32);
        header.node_id = rng.next_u64();
        let snapshot = i == 0 && first_snapshot;
        let mut pages = Vec::new();
        for p in 1..=commit {
            if snapshot || p > prev_commit || rng.below(3) == 0 {
                let kind = kinds[rng.below(kinds.len() as u64) as usize];
                pages.push((p, kind, rng.next_u64()));
            }
        }
        prev_commit = commit;
        out.push(FileSpec { header, pages });
    }
    out
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn compaction_equals_replay(
        ps in prop::sample::select(vec![512u32, 1024, 4096]),
        n in 1usize..=5,
        first_snapshot in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let inputs = chain(ps, n, first_snapshot, seed);
        let files: Vec<Vec<u8>> = inputs.iter().map(|s| s.encode().0).collect();
        let decoders = files
            .iter()
            .map(|f| StreamDecoder::new(&f[..]).expect("input"))
            .collect();
        let (out, h, sum) = compact(decoders, Vec::new(), CompactOptions::default())
            .expect("compact");

        let (first, last) = (&inputs[0].header, &inputs[n - 1].header);
        let mut model = BTreeMap::new();
        for s in &inputs {
            model.extend(s.page_data());
        }
        model.retain(|&p, _| p <= last.commit);

        prop_assert_eq!((h.min_txid, h.max_txid), (first.min_txid, last.max_txid));
        prop_assert_eq!((h.commit, h.timestamp), (last.commit, last.timestamp));
        prop_assert_eq!((h.wal_offset, h.wal_size, h.node_id), (0, 0, 0));
        prop_assert_eq!((h.wal_salt1, h.wal_salt2), (0, 0));
        let (_, pages, stored) = slice_all(&out).expect("compacted output verifies");
        prop_assert_eq!(stored, sum);
        prop_assert!(pages == model, "compacted pages differ from replay");
        // The compactor re-encodes each winning page exactly as the encoder would.
        prop_assert!(encode(h, &model).0 == out);
    }
}

/// Both decoders must refuse `bytes`; `PageReader` must at least not panic on them.
fn assert_rejected(bytes: &[u8], what: &str) {
    assert!(
        LtxFile::open_verified(bytes).is_err(),
        "LtxFile accepted {what}"
    );
    let streamed = StreamDecoder::new(bytes).and_then(|mut d| d.verify_to_end());
    assert!(streamed.is_err(), "StreamDecoder accepted {what}");
    read_with_page_reader(bytes);
}

fn read_with_page_reader(bytes: &[u8]) {
    if let Ok(pr) = PageReader::open(bytes, bytes.len() as u64) {
        let mut page = vec![0u8; pr.header().page_size as usize];
        let mut frame = Vec::new();
        for e in pr.index().entries.clone() {
            let _ = pr.read_page(e.pgno, &mut page, &mut frame);
        }
    }
}

/// Byte ranges of the LZ4 payloads: the only bytes the file checksum does not cover, because it
/// hashes each page uncompressed (docs/ltx.md#file-checksum).
fn payload_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let f = LtxFile::open(bytes).expect("open");
    f.index()
        .entries
        .iter()
        .map(|e| (e.offset + 10) as usize..(e.offset + e.size) as usize)
        .collect()
}

/// After a flip inside an LZ4 payload: either rejected, or the decoders see the original file.
fn assert_rejected_or_identical(bytes: &[u8], original: &[u8], what: &str) {
    let want = slice_all(original).expect("original");
    if let Ok(got) = slice_all(bytes) {
        assert!(
            got == want,
            "LtxFile accepted {what} with different content"
        );
    }
    if let Ok(got) = stream_all(bytes) {
        assert!(
            got == want,
            "StreamDecoder accepted {what} with different content"
        );
    }
    // PageReader checks no checksum (restores verify the file separately): it only must not
    // panic.
    read_with_page_reader(bytes);
}

proptest! {
    #![proptest_config(config(256))]

    /// A flip outside the LZ4 payloads is always caught. Inside a payload, LZ4 has redundant
    /// encodings (a match offset into a run of equal bytes, the match nibble of the final
    /// literal-only token) that decode to the same page, so the checksum cannot see them; what
    /// must hold there is that no reader ever returns different data.
    #[test]
    fn every_bit_flip_is_rejected(spec in file_spec(9..=12, 8 * 1024), bit in any::<Index>()) {
        let (original, _) = spec.encode();
        let mut bytes = original.clone();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let what = format!("bit {bit} flipped");
        if payload_ranges(&original).iter().any(|r| r.contains(&(bit / 8))) {
            assert_rejected_or_identical(&bytes, &original, &what);
        } else {
            assert_rejected(&bytes, &what);
        }
    }

    #[test]
    fn every_truncation_is_rejected(spec in file_spec(9..=12, 8 * 1024), cut in any::<Index>()) {
        let (bytes, _) = spec.encode();
        let cut = cut.index(bytes.len());
        assert_rejected(&bytes[..cut], &format!("truncation to {cut} bytes"));
    }
}

#[test]
fn reserved_header_bytes_are_checksummed() {
    let mut h = Header::new(512, 1, TxId(1), TxId(1), 0);
    h.node_id = 7;
    let (bytes, _) = encode(h, &BTreeMap::from([(1, vec![1u8; 512])]));
    for at in 80..100 {
        let mut bad = bytes.clone();
        bad[at] = 0xff;
        assert!(
            matches!(
                LtxFile::open_verified(&bad),
                Err(Error::ChecksumMismatch { .. })
            ),
            "reserved byte {at}"
        );
    }
}

#[test]
fn every_truncation_of_one_file_is_rejected() {
    let pages: BTreeMap<u32, Vec<u8>> = (1..=4u32)
        .map(|p| {
            (
                p,
                make_page(PageKind::Leaf { fill: 60 }, u64::from(p), 1024),
            )
        })
        .collect();
    let (bytes, _) = encode(Header::new(1024, 4, TxId(1), TxId(1), 1), &pages);
    for cut in 0..bytes.len() {
        assert_rejected(&bytes[..cut], &format!("truncation to {cut} bytes"));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_rejected(&longer, "a trailing byte");
}

/// One frame of a synthetic WAL as the model sees it.
#[derive(Clone, Debug)]
struct ModelFrame {
    offset: u64,
    pgno: u32,
    commit: u32,
}

/// A synthetic WAL: committed transactions, an uncommitted tail, then stale frames from an
/// older generation (other salts) that must never be read.
#[derive(Clone, Debug)]
struct WalSpec {
    page_size: u32,
    big_endian: bool,
    salts: (u32, u32),
    txns: Vec<(Vec<(u32, u64)>, u32)>,
    tail: Vec<(u32, u64)>,
    stale: usize,
}

fn wal_spec() -> impl Strategy<Value = WalSpec> {
    let frame = (1u32..=20, any::<u64>());
    (
        prop::sample::select(vec![512u32, 1024, 4096]),
        any::<bool>(),
        any::<(u32, u32)>(),
        proptest::collection::vec(
            (proptest::collection::vec(frame.clone(), 1..5), 1u32..=20),
            0..8,
        ),
        proptest::collection::vec(frame, 0..4),
        0usize..3,
    )
        .prop_map(
            |(page_size, big_endian, salts, txns, tail, stale)| WalSpec {
                page_size,
                big_endian,
                salts,
                txns,
                tail,
                stale,
            },
        )
}

fn build_wal(spec: &WalSpec) -> (Vec<u8>, Vec<ModelFrame>) {
    let ps = spec.page_size as usize;
    let mut b = WalBuilder::new(spec.page_size, spec.big_endian, spec.salts, 3);
    let mut frames = Vec::new();
    let mut push = |b: &mut WalBuilder, pgno: u32, commit: u32, seed: u64| {
        let offset = b.frame(pgno, commit, &make_page(PageKind::Random, seed, ps));
        frames.push(ModelFrame {
            offset,
            pgno,
            commit,
        });
    };
    for (writes, commit) in &spec.txns {
        for (i, &(pgno, seed)) in writes.iter().enumerate() {
            let c = if i + 1 == writes.len() { *commit } else { 0 };
            push(&mut b, pgno, c, seed);
        }
    }
    for &(pgno, seed) in &spec.tail {
        push(&mut b, pgno, 0, seed);
    }
    let mut bytes = b.bytes;
    // Frames left over from before the last WAL restart: valid checksums, old salts.
    let old_salts = (spec.salts.0.wrapping_add(1), spec.salts.1);
    let mut old = WalBuilder::new(spec.page_size, spec.big_endian, old_salts, 2);
    for k in 0..spec.stale {
        old.frame(k as u32 + 1, 1, &make_page(PageKind::Byte(9), 0, ps));
    }
    bytes.extend_from_slice(&old.bytes[32..]);
    (bytes, frames)
}

/// What `read_committed` must return.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    pages: BTreeMap<u32, u64>,
    commit: u32,
    end_offset: u64,
    last_commit_end: u64,
    transactions: u64,
}

/// The model of docs/wal.md#reading-committed-frames over the frames a reader starting at `start` can read.
fn expected(frames: &[ModelFrame], start: u64, frame_size: u64) -> Expected {
    let mut e = Expected {
        pages: BTreeMap::new(),
        commit: 0,
        end_offset: start,
        last_commit_end: start,
        transactions: 0,
    };
    let mut pending = Vec::new();
    for f in frames {
        pending.push((f.pgno, f.offset));
        if f.commit != 0 {
            e.pages.extend(pending.drain(..));
            e.commit = f.commit;
            e.last_commit_end = f.offset + frame_size;
            e.transactions += 1;
        }
    }
    let commit = e.commit;
    e.pages.retain(|&p, _| p <= commit);
    if let Some(max) = e.pages.values().max() {
        e.end_offset = max + frame_size;
    }
    e
}

fn actual(r: &mut WalReader<'_>) -> Expected {
    let c = read_committed(r, None);
    Expected {
        pages: c.pages,
        commit: c.commit,
        end_offset: c.end_offset,
        last_commit_end: c.last_commit_end,
        transactions: c.transactions,
    }
}

/// Checks the reader against the model when exactly the first `valid` frames are intact.
fn check_wal(bytes: &[u8], frames: &[ModelFrame], valid: usize, spec: &WalSpec) {
    let fs = 24 + u64::from(spec.page_size);
    let mut r = WalReader::new(bytes).expect("header").expect("non-empty");
    assert_eq!(r.header().big_endian, spec.big_endian);
    assert_eq!((r.header().salt1, r.header().salt2), spec.salts);
    let mut seen = 0;
    while let Some(f) = r.next_frame() {
        let m = &frames[seen];
        assert_eq!((f.offset, f.pgno, f.commit), (m.offset, m.pgno, m.commit));
        seen += 1;
    }
    assert_eq!(seen, valid, "valid frames");

    let mut r = WalReader::new(bytes).expect("header").expect("non-empty");
    assert_eq!(actual(&mut r), expected(&frames[..valid], 32, fs));

    // Resuming after any commit frame reads exactly the later transactions.
    for (k, f) in frames[..valid].iter().enumerate() {
        if f.commit == 0 {
            continue;
        }
        let at = f.offset + fs;
        let mut r = WalReader::with_offset(bytes, at, spec.salts)
            .expect("resume")
            .expect("non-empty");
        assert_eq!(
            actual(&mut r),
            expected(&frames[k + 1..valid], at, fs),
            "resumed at {at}"
        );
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn wal_reads_latest_committed_pages(spec in wal_spec()) {
        let (bytes, frames) = build_wal(&spec);
        check_wal(&bytes, &frames, frames.len(), &spec);
    }

    #[test]
    fn wal_flipped_byte_ends_the_valid_wal(spec in wal_spec(), at in any::<Index>(), bit in 0u8..8) {
        let (mut bytes, frames) = build_wal(&spec);
        let live_end = frames.last().map_or(32, |f| f.offset as usize + 24 + spec.page_size as usize);
        let at = at.index(live_end);
        bytes[at] ^= 1 << bit;
        if at < 32 {
            // A damaged header makes the whole WAL unreadable: empty, or an error.
            match WalReader::new(&bytes) {
                Ok(None) | Err(_) => {}
                Ok(Some(mut r)) => prop_assert!(r.next_frame().is_none(), "read a frame under a bad header"),
            }
        } else {
            let fs = 24 + spec.page_size as usize;
            let k = (at - 32) / fs;
            check_wal(&bytes, &frames, k, &spec);
        }
    }
}

/// One LZ4 sequence to write: literal bytes, then a match `offset` back of `len` bytes.
#[derive(Clone, Debug)]
struct Sequence {
    literals: Vec<u8>,
    offset: u16,
    len: usize,
}

fn lz4_length(out: &mut Vec<u8>, mut l: usize) {
    while l >= 255 {
        out.push(255);
        l -= 255;
    }
    out.push(l as u8);
}

/// Writes an LZ4 block straight from the sequences (with offsets clamped into range) and
/// returns it with the bytes it must decode to.
fn lz4_block(seqs: &[Sequence], tail: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut block, mut plain) = (Vec::new(), Vec::<u8>::new());
    for s in seqs {
        let lit = s.literals.len();
        plain.extend_from_slice(&s.literals);
        if plain.is_empty() {
            continue;
        }
        let offset = (s.offset as usize % plain.len()).max(1).min(plain.len());
        let mlen = s.len - 4;
        block.push(((lit.min(15) as u8) << 4) | mlen.min(15) as u8);
        if lit >= 15 {
            lz4_length(&mut block, lit - 15);
        }
        block.extend_from_slice(&s.literals);
        block.extend_from_slice(&(offset as u16).to_le_bytes());
        if mlen >= 15 {
            lz4_length(&mut block, mlen - 15);
        }
        for _ in 0..s.len {
            plain.push(plain[plain.len() - offset]);
        }
    }
    block.push((tail.len().min(15) as u8) << 4);
    if tail.len() >= 15 {
        lz4_length(&mut block, tail.len() - 15);
    }
    block.extend_from_slice(tail);
    plain.extend_from_slice(tail);
    (block, plain)
}

fn sequence() -> impl Strategy<Value = Sequence> {
    (
        proptest::collection::vec(any::<u8>(), 0..40),
        prop_oneof![1u16..20, any::<u16>()],
        prop_oneof![4usize..40, 4usize..3000],
    )
        .prop_map(|(literals, offset, len)| Sequence {
            literals,
            offset,
            len,
        })
}

fn flex_decode(block: &[u8], out: &mut [u8]) -> Option<()> {
    let n = lz4_flex::block::decompress_into(block, out).ok()?;
    (n == out.len()).then_some(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Our block decoder against the block's meaning and against lz4_flex, with every match
    /// offset from 1 up (the overlapping copies are where a fast decoder goes wrong).
    #[test]
    fn lz4_decoder_agrees_with_lz4_flex(
        seqs in proptest::collection::vec(sequence(), 0..12),
        tail in proptest::collection::vec(any::<u8>(), 0..30),
        flip in proptest::option::of((any::<Index>(), 0u8..8)),
    ) {
        let (mut block, plain) = lz4_block(&seqs, &tail);
        let mut ours = vec![0u8; plain.len()];
        ltx_codec::lz4::decompress_block(&block, &mut ours).expect("valid block");
        prop_assert!(ours == plain);

        if let Some((at, bit)) = flip {
            let at = at.index(block.len());
            block[at] ^= 1 << bit;
        }
        let mut ours = vec![0u8; plain.len()];
        let mut theirs = vec![0u8; plain.len()];
        let a = ltx_codec::lz4::decompress_block(&block, &mut ours).ok();
        let b = flex_decode(&block, &mut theirs);
        prop_assert_eq!(a.is_some(), b.is_some(), "acceptance differs");
        if a.is_some() {
            prop_assert!(ours == theirs);
        }
    }
}
