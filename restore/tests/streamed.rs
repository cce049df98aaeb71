//! The fetch path with many segments and chunks: `execute` with small chunks and a few
//! streams, so that one ranged read carries many chunks, chunks straddle the pieces a stream
//! hands over, and files are split into several segments. Page sizes 1024 (written through
//! the page cache), 4096 and 65536 (direct I/O where the file system takes it); a file
//! replica always, and S3 when the test server is there.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use ltx_codec::{Header, TxId};
use restore::progress::Progress;
use restore::{calc_plan, execute, ExecOptions, Listing, Target};
use storage::{Body, LtxName, ReplicaClient, SharedReplica};

/// Page content that compresses to varying sizes, so frames do not line up with anything.
fn varied_page(ps: u32, pgno: u32, version: u8) -> Vec<u8> {
    let mut x = u64::from(pgno).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(version);
    (0..ps)
        .map(|i| {
            if (i / 64) % (pgno % 5 + 1) == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                (i as u8).wrapping_add(version)
            }
        })
        .collect()
}

/// A snapshot of `pages` pages (TXID 1-2) and three L0 files rewriting some pages; returns
/// the expected database.
fn build(replica: &Path, ps: u32, pages: u32) -> Vec<u8> {
    let mut db: Vec<Vec<u8>> = (1..=pages).map(|p| varied_page(ps, p, 0)).collect();
    let lock = ltx_codec::lock_pgno(ps);
    let t0 = 1_795_665_900_000i64;
    let snap: Vec<(u32, Vec<u8>)> = (1..=pages)
        .filter(|&p| p != lock)
        .map(|p| (p, db[p as usize - 1].clone()))
        .collect();
    put_ltx(
        replica,
        9,
        Header::new(ps, pages, TxId(1), TxId(2), t0),
        &snap,
    );
    for txid in 3u64..=5 {
        let changed: Vec<(u32, Vec<u8>)> = (1..=pages)
            .filter(|p| p % (txid as u32 + 4) == 1)
            .map(|p| (p, varied_page(ps, p, txid as u8)))
            .collect();
        for (p, d) in &changed {
            db[*p as usize - 1] = d.clone();
        }
        put_ltx(
            replica,
            0,
            Header::new(ps, pages, TxId(txid), TxId(txid), t0 + 1000 * txid as i64),
            &changed,
        );
    }
    db.concat()
}

async fn restore_with(client: &SharedReplica, out: &Path, opts: &ExecOptions) -> Vec<u8> {
    let listing = Listing::fetch(client.as_ref()).await.expect("list");
    let plan = calc_plan(&listing, Target::Latest).expect("plan");
    let _ = std::fs::remove_file(out);
    let out_path = restore::prepare_output(out, false).expect("output");
    execute(client, &plan, out_path, opts, &Arc::new(Progress::hidden()))
        .await
        .expect("restore");
    std::fs::read(out).expect("read output")
}

fn small(parallelism: usize, chunk_size: u64) -> ExecOptions {
    ExecOptions {
        parallelism,
        chunk_size,
        write_batch: 3 * 4096,
        ..ExecOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_replica_many_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (ps, pages) in [(1024u32, 700u32), (4096, 300), (65536, 12)] {
        let replica = dir.path().join(format!("r{ps}"));
        let want = build(&replica, ps, pages);
        let client: SharedReplica = Arc::new(storage::file::FileReplica::new(replica.clone()));
        let out = dir.path().join(format!("out{ps}.db"));
        for opts in [small(3, 10_000), small(1, 7_777), small(8, 1 << 20)] {
            let got = restore_with(&client, &out, &opts).await;
            assert!(got == want, "page size {ps}, {opts:?}: output differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn s3_replica_many_segments() {
    let srv = s3_server();
    let dir = tempfile::tempdir().expect("tempdir");
    for (ps, pages) in [(1024u32, 700u32), (4096, 300)] {
        let local = dir.path().join(format!("r{ps}"));
        let want = build(&local, ps, pages);
        let prefix = srv.unique_prefix(&format!("streamed-{ps}"));
        let s3 = storage::s3::S3Replica::new(srv.settings(&prefix)).expect("s3 replica");
        let file = storage::file::FileReplica::new(local.clone());
        for level in [0u8, 9] {
            let lv = ltx_codec::Level(level);
            for f in file.ltx_files(lv).await.expect("list local") {
                let bytes = file
                    .read_range(LtxName::new(lv, f.min_txid, f.max_txid), 0, None)
                    .await
                    .expect("read local");
                s3.write_ltx(
                    LtxName::new(lv, f.min_txid, f.max_txid),
                    Body::Bytes(bytes),
                    f.created_at,
                )
                .await
                .expect("upload");
            }
        }
        let client: SharedReplica = Arc::new(s3);
        let out = dir.path().join(format!("out{ps}.db"));
        for opts in [small(3, 10_000), small(1, 7_777)] {
            let got = restore_with(&client, &out, &opts).await;
            assert!(got == want, "page size {ps}, {opts:?}: output differs");
        }
        client.delete_all().await.expect("cleanup");
    }
}
