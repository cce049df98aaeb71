//! The fast compressor against a plain, line-by-line transcription of pierrec/lz4 v4's
//! `CompressBlock` (Go): both must give the same bytes for every input, with one compressor
//! reused across many inputs of mixed sizes, as the encoder reuses it across pages.

use proptest::prelude::*;

use super::{compress_buffer_len, decompress_block, Compressor, MAX_INPUT};

use test_support::synth;

/// pierrec/lz4 v4 `CompressBlock` as written in Go: a fresh table per input (Go resets its
/// `inUse` bitmap), signed positions, every test spelled out, output through `push`. Slow and
/// obviously the algorithm; nothing here is shared with the fast version.
fn reference(src: &[u8]) -> Vec<u8> {
    const WIN_SIZE: i64 = 1 << 16;
    let mut table = vec![0u16; 1 << 16];
    let mut in_use = vec![false; 1 << 16];
    let hash = |x: u64| ((x << 16).wrapping_mul(227_718_039_650_203) >> 48) as usize;
    let u64_at = |i: i64| {
        let i = i as usize;
        u64::from_le_bytes(src[i..i + 8].try_into().expect("8 bytes"))
    };
    let u32_at = |i: i64| {
        let i = i as usize;
        u32::from_le_bytes(src[i..i + 4].try_into().expect("4 bytes"))
    };
    let get = |table: &[u16], in_use: &[bool], h: usize, si: i64| -> i64 {
        let mut i = if in_use[h] { i64::from(table[h]) } else { 0 };
        i += si & !(WIN_SIZE - 1);
        if i >= si {
            i -= WIN_SIZE;
        }
        i
    };
    let put = |table: &mut [u16], in_use: &mut [bool], h: usize, si: i64| {
        table[h] = si as u16;
        in_use[h] = true;
    };
    let push_len = |dst: &mut Vec<u8>, mut l: i64| {
        while l >= 0xFF {
            dst.push(0xFF);
            l -= 0xFF;
        }
        dst.push(l as u8);
    };

    let mut dst = Vec::new();
    let (mut si, mut anchor) = (0i64, 0i64);
    let sn = src.len() as i64 - 14;
    while si < sn {
        let m = u64_at(si);
        let mut h = hash(m);
        let h2 = hash(m >> 8);
        let r = get(&table, &in_use, h, si);
        let r2 = get(&table, &in_use, h2, si + 1);
        put(&mut table, &mut in_use, h, si);
        put(&mut table, &mut in_use, h2, si + 1);
        let mut offset = si - r;
        if offset <= 0 || offset >= WIN_SIZE || m as u32 != u32_at(r) {
            h = hash(m >> 16);
            let r3 = get(&table, &in_use, h, si + 2);
            si += 1;
            offset = si - r2;
            if offset <= 0 || offset >= WIN_SIZE || (m >> 8) as u32 != u32_at(r2) {
                si += 1;
                offset = si - r3;
                put(&mut table, &mut in_use, h, si);
                if offset <= 0 || offset >= WIN_SIZE || (m >> 16) as u32 != u32_at(r3) {
                    si += 2 + ((si - anchor) >> 7);
                    continue;
                }
            }
        }
        let mut lit = si - anchor;
        let mut mlen = 4;
        let mut t = si - offset - 1;
        while lit > 0 && t >= 0 && src[(si - 1) as usize] == src[t as usize] {
            si -= 1;
            t -= 1;
            lit -= 1;
            mlen += 1;
        }
        let base = si + 4;
        si += mlen;
        while si + 8 <= sn {
            let x = u64_at(si) ^ u64_at(si - offset);
            if x == 0 {
                si += 8;
            } else {
                si += i64::from(x.trailing_zeros() >> 3);
                break;
            }
        }
        let mlen = si - base;
        dst.push(((lit.min(15) as u8) << 4) | mlen.min(15) as u8);
        if lit >= 15 {
            push_len(&mut dst, lit - 15);
        }
        dst.extend_from_slice(&src[anchor as usize..(anchor + lit) as usize]);
        dst.extend_from_slice(&(offset as u16).to_le_bytes());
        if mlen >= 15 {
            push_len(&mut dst, mlen - 15);
        }
        anchor = si;
        if si >= sn {
            break;
        }
        let h = hash(u64_at(si - 2));
        put(&mut table, &mut in_use, h, si - 2);
    }
    let lit = src.len() as i64 - anchor;
    dst.push((lit.min(15) as u8) << 4);
    if lit >= 15 {
        push_len(&mut dst, lit - 15);
    }
    dst.extend_from_slice(&src[anchor as usize..]);
    dst
}

/// Compresses every input with one compressor and checks each block against the reference
/// and against its input (through the decoder). The output buffer is filled with junk first,
/// so that bytes the compressor fails to write would show.
fn check_all<'a>(inputs: impl IntoIterator<Item = &'a [u8]>) {
    let mut c = Compressor::new();
    for (k, src) in inputs.into_iter().enumerate() {
        assert!(src.len() <= MAX_INPUT);
        let mut out = vec![0xa5; compress_buffer_len(src.len())];
        let n = c.compress_into(src, &mut out);
        let want = reference(src);
        assert!(
            out[..n] == want[..],
            "input {k} ({} bytes): {n} bytes, want {} bytes, first difference at {:?}",
            src.len(),
            want.len(),
            out.iter().zip(&want).position(|(a, b)| a != b)
        );
        let mut back = vec![0u8; src.len()];
        decompress_block(&out[..n], &mut back).expect("own block decodes");
        assert!(back == src, "input {k} does not round-trip");
    }
}

/// Words for text inputs, `|`-separated: repeated, with separators, as in rows of
/// application data.
const WORDS: &str = "the|pending|paid|alice|smith|mail.test| |, |2024-|T12:|order|\n";

/// Inputs as the encoder sees them, and shapes that stress the parser: random bytes, runs,
/// records repeated with small edits, text from a small vocabulary, SQLite leaf pages, and
/// concatenations of those.
#[derive(Clone, Debug)]
enum Piece {
    Random(usize, u64),
    Run(usize, u8),
    Records {
        record: Vec<u8>,
        copies: usize,
        edits: Vec<(usize, u8)>,
    },
    Text(Vec<u8>),
    Leaf(usize, u8, u64),
}

impl Piece {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Piece::Random(len, seed) => {
                let mut v = vec![0; *len];
                synth::Rng(*seed).fill(&mut v);
                v
            }
            Piece::Run(len, b) => vec![*b; *len],
            Piece::Records {
                record,
                copies,
                edits,
            } => {
                let mut v = record.repeat(*copies);
                for &(at, b) in edits {
                    if !v.is_empty() {
                        let i = at % v.len();
                        v[i] = b;
                    }
                }
                v
            }
            Piece::Text(words) => {
                let words_list: Vec<&str> = WORDS.split('|').collect();
                words
                    .iter()
                    .flat_map(|w| words_list[*w as usize % words_list.len()].bytes())
                    .collect()
            }
            Piece::Leaf(size, fill, seed) => {
                synth::sqlite_leaf_page(&mut synth::Rng(*seed), *size, u64::from(*fill))
            }
        }
    }
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        (0usize..3000, any::<u64>()).prop_map(|(l, s)| Piece::Random(l, s)),
        (0usize..3000, prop_oneof![Just(0u8), any::<u8>()]).prop_map(|(l, b)| Piece::Run(l, b)),
        (
            prop::collection::vec(any::<u8>(), 1..40),
            1usize..60,
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        )
            .prop_map(|(record, copies, edits)| Piece::Records {
                record,
                copies,
                edits
            }),
        prop::collection::vec(any::<u8>(), 0..600).prop_map(Piece::Text),
        (
            prop_oneof![Just(512usize), Just(1024), Just(4096), Just(8192)],
            0u8..=100,
            any::<u64>()
        )
            .prop_map(|(size, fill, seed)| Piece::Leaf(size, fill, seed)),
    ]
}

/// One input: a few pieces end to end, cut to at most 64 KiB.
fn input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 1..5).prop_map(|pieces| {
        let mut v: Vec<u8> = pieces.iter().flat_map(Piece::bytes).collect();
        v.truncate(MAX_INPUT);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Enough inputs per case that the compressor's epochs wrap (every 16 inputs of up to
    /// 4 KiB) and its slot layout changes when a longer input comes.
    #[test]
    fn matches_reference(inputs in prop::collection::vec(input(), 1..40)) {
        check_all(inputs.iter().map(Vec::as_slice));
    }
}

#[test]
fn matches_reference_on_edge_lengths_and_many_pages() {
    let mut rng = synth::Rng(42);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    // Every length around the match-search limits, zeros and text.
    for len in 0..80 {
        inputs.push(vec![0; len]);
        inputs.push(b"abcabcabcabd".iter().copied().cycle().take(len).collect());
    }
    // Enough 4 KiB pages for several epoch wraps, then longer inputs, up to the 64 KiB limit
    // (which clears the table for every input), then short ones again.
    for i in 0..40 {
        let fill = 50 + rng.below(50);
        inputs.push(synth::sqlite_leaf_page(&mut rng, 4096, fill));
        if i % 7 == 0 {
            inputs.push(synth::make_page(synth::PageKind::Random, i, 4096));
        }
    }
    for size in [8192, 32768, 65535, 65536, 65536, 4096, 1024] {
        let fill = 50 + rng.below(50);
        inputs.push(synth::sqlite_leaf_page(&mut rng, size, fill));
        inputs.push(vec![0; size]);
    }
    check_all(inputs.iter().map(Vec::as_slice));
}

#[test]
fn longer_than_64k_is_stored_as_literals() {
    let src = vec![7u8; MAX_INPUT + 1];
    let mut c = Compressor::new();
    let mut out = Vec::new();
    let n = c.compress(&src, &mut out);
    assert!(n <= super::compress_bound(src.len()));
    let mut back = vec![0u8; src.len()];
    decompress_block(&out, &mut back).expect("decodes");
    assert_eq!(back, src);
}
