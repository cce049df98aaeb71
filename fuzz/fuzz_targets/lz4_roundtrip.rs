//! Compress-then-decompress is the identity for any page-sized input, and our block decoder
//! agrees with lz4_flex on arbitrary bytes: both reject, or both give the same page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ltx_codec::lz4::{compress_bound, decompress_block, decompress_frame, Compressor};

fuzz_target!(|data: &[u8]| {
    let src = &data[..data.len().min(65536)];
    let mut c = Compressor::new();
    let mut out = vec![0xa5; 3];
    let n = c.compress(src, &mut out);
    assert_eq!(n + 3, out.len(), "compress must append, not overwrite");
    assert!(n <= compress_bound(src.len()), "{n} bytes over the bound");
    let mut back = vec![0u8; src.len()];
    decompress_block(&out[3..], &mut back).expect("own output decompresses");
    assert!(back == src, "round trip changed the data");

    // The same bytes as compressed input, into pages of a few sizes.
    for size in [512, 4096, src.len().max(1)] {
        let mut ours = vec![0u8; size];
        let mut theirs = vec![0u8; size];
        let a = decompress_block(src, &mut ours).is_ok();
        let b = lz4_flex::block::decompress_into(src, &mut theirs).is_ok_and(|n| n == size);
        assert_eq!(
            a, b,
            "decoders disagree on acceptance for a {size}-byte page"
        );
        if a {
            assert!(ours == theirs, "decoders disagree on content");
        }
    }
    let mut page = vec![0u8; 4096];
    let _ = decompress_frame(src, &mut page);
});
