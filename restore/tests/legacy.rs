//! Files written by Litestream 0.5.0–0.5.15 store each page as a bare LZ4 frame (page flag 0)
//! instead of a size-prefixed block. A replica mixing both formats restores correctly, and the
//! same way as `litestream restore` 0.5.17.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use ltx_codec::{Header, LtxFile, TxId};

const V5: &str = "../ltx-codec/tests/vectors/v5_legacy_frame_0.5.15_txid2.ltx";

#[test]
#[ignore = "needs the real Litestream"]
fn restores_legacy_frame_pages() {
    let legacy = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(V5)).expect("vector");
    let file = LtxFile::open_verified(&legacy).expect("v5 verifies");
    let h = *file.header();
    assert_eq!((h.page_size, h.commit, h.min_txid.0), (4096, 4, 2));

    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("replica");
    let mut pages: Vec<Vec<u8>> = (1..=4).map(|p| page(4096, p, 1)).collect();
    put_ltx(
        &replica,
        0,
        Header::new(4096, 4, TxId(1), TxId(1), h.timestamp - 1000),
        &pages
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u32 + 1, d.clone()))
            .collect::<Vec<_>>(),
    );
    let dst = replica.join("ltx/0/0000000000000002-0000000000000002.ltx");
    fs::write(&dst, &legacy).expect("copy");
    fs::File::options()
        .write(true)
        .open(&dst)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_millis(h.timestamp as u64)))
        .expect("mtime");
    for e in &file.index().entries {
        file.read_page(e.pgno, &mut pages[e.pgno as usize - 1])
            .expect("page");
    }
    let expected = pages.concat();

    let out = dir.path().join("out.db");
    let mut c = ls_restore();
    c.arg("-o").arg(&out).arg(file_url(&replica));
    run_ok(c, "");
    assert_eq!(fs::read(&out).expect("read"), expected);

    // Damage inside the legacy LZ4 frame is caught and named.
    let mut bad = legacy.clone();
    bad[0x75] ^= 0x20;
    fs::write(&dst, &bad).expect("write");
    let out2 = dir.path().join("out2.db");
    let mut c = ls_restore();
    c.arg("-o").arg(&out2).arg(file_url(&replica));
    let o = run(c);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("0/0000000000000002-0000000000000002.ltx"),
        "{}",
        stderr(&o)
    );
    assert!(!out2.exists());
    fs::write(&dst, &legacy).expect("restore vector");

    let lit = litestream();
    let a = dir.path().join("lit.db");
    let mut c = lit_cmd(&lit);
    c.arg("restore").arg("-o").arg(&a).arg(file_url(&replica));
    run_ok(c, "");
    assert_eq!(fs::read(&a).expect("read"), expected);
}
