//! The S3 backend against a real S3-compatible server that checks SigV4 (s3s-fs, started by
//! `tests/s3/start.sh`), with a fault-injecting proxy in front where a test needs one.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use storage::s3::{S3Replica, S3Settings};
use storage::{open_replica, Body, LtxName, ReplicaClient};

use common::{fast_retry, proxy, replica, server, settings, unique_prefix};

fn ts(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u32::from(seed)) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn write_list_read_delete() {
    let srv = server();
    let prefix = unique_prefix("basic");
    let r = replica(&srv, &prefix);
    assert_eq!(r.kind(), "s3");
    assert!(r.ltx_files(Level(0)).await.expect("empty level").is_empty());

    let created = ts(1_795_665_906_229);
    for i in [3u64, 1, 2] {
        let info = common::write(&r, 0, (i, i), pattern(100 + i as usize, i as u8), created)
            .await
            .expect("write");
        assert_eq!(info.size, 100 + i);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = dir.path().join("snap.ltx");
    std::fs::write(&snap, pattern(70_000, 9)).expect("write file");
    common::write_body(&r, 9, (1, 3), Body::File(snap), created)
        .await
        .expect("write file body");

    // Layout (docs/replica-layout.md#paths-and-timestamps-per-backend):
    // <path>/<level %04x>/<min>-<max>.ltx
    let fresh = replica(&srv, &prefix);
    let keys = common::listed!(fresh, prefix);
    assert_eq!(
        keys,
        vec![
            format!("{prefix}/0000/0000000000000001-0000000000000001.ltx"),
            format!("{prefix}/0000/0000000000000002-0000000000000002.ltx"),
            format!("{prefix}/0000/0000000000000003-0000000000000003.ltx"),
            format!("{prefix}/0009/0000000000000001-0000000000000003.ltx"),
        ]
    );
    let files = fresh.ltx_files(Level(0)).await.expect("list level");
    assert_eq!(common::sizes(&files), vec![(1, 101), (2, 102), (3, 103)]);
    let l9 = fresh.ltx_files(Level(9)).await.expect("list l9");
    assert_eq!(l9.len(), 1);
    assert_eq!(l9[0].size, 70_000);

    // Metadata carries the creation time; the listing carries LastModified.
    assert_eq!(
        fresh
            .metadata_timestamp(Level(0), TxId(2), TxId(2))
            .await
            .expect("head"),
        Some(created)
    );
    let with_meta = fresh.ltx_files_with_metadata(Level(0)).await.expect("meta");
    assert!(with_meta.iter().all(|f| f.created_at == created));

    let whole = common::fetch(&fresh, (9, 1, 3), (0, None)).await;
    assert_eq!(&whole[..], &pattern(70_000, 9)[..]);
    let part = common::fetch(&fresh, (9, 1, 3), (1000, Some(50))).await;
    assert_eq!(&part[..], &pattern(70_000, 9)[1000..1050]);
    let tail = common::fetch(&fresh, (9, 1, 3), (69_990, None)).await;
    assert_eq!(tail.len(), 10);
    let at_end = common::fetch(&fresh, (9, 1, 3), (70_000, None)).await;
    assert!(at_end.is_empty());
    assert!(fresh
        .read_range(LtxName::new(Level(9), TxId(1), TxId(3)), 69_990, Some(20))
        .await
        .is_err());
    assert!(fresh
        .read_range(LtxName::new(Level(9), TxId(1), TxId(3)), 80_000, None)
        .await
        .is_err());
    let missing = fresh.read_range(LtxName::l0(TxId(7)), 0, None).await;
    assert!(missing.is_err_and(|e| e.is_not_found()));

    fresh.delete_ltx(&files[..2]).await.expect("delete");
    assert_eq!(fresh.ltx_files(Level(0)).await.expect("cached").len(), 1);
    fresh.invalidate_cache();
    assert_eq!(fresh.ltx_files(Level(0)).await.expect("relist").len(), 1);
    // Deleting what is already gone is fine.
    fresh.delete_ltx(&files[..2]).await.expect("delete again");

    fresh.delete_all().await.expect("delete all");
    fresh.invalidate_cache();
    assert!(fresh.ltx_files(Level(0)).await.expect("l0").is_empty());
    assert!(fresh.ltx_files(Level(9)).await.expect("l9").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn idle_replica_sends_no_requests() {
    let srv = server();
    let p = proxy(&srv).await;
    let prefix = unique_prefix("idle");
    let r = S3Replica::with_retry_policy(settings(&srv, &p.endpoint, &prefix), fast_retry())
        .expect("replica");
    assert_eq!(p.state.request_count(), 0, "building a replica is free");
    r.ltx_files(Level(0)).await.expect("list");
    let after_first_list = p.state.request_count();
    assert_eq!(after_first_list, 1);
    for _ in 0..5 {
        r.ltx_files(Level(0)).await.expect("list again");
    }
    assert_eq!(
        p.state.request_count(),
        after_first_list,
        "listing is cached"
    );
    let t = ts(1_700_000_000_000);
    common::write(&r, 0, (1, 1), b"x", t).await.expect("write");
    assert_eq!(p.state.request_count(), after_first_list + 1, "one PUT");
    let files = r.ltx_files(Level(0)).await.expect("list after write");
    assert_eq!(files.len(), 1, "our own write is in the cached listing");
    assert_eq!(p.state.request_count(), after_first_list + 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        p.state.request_count(),
        after_first_list + 1,
        "no background traffic"
    );
    r.delete_all().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn multipart_upload_above_part_size() {
    let srv = server();
    let p = proxy(&srv).await;
    let prefix = unique_prefix("multipart");
    let mut s = settings(&srv, &p.endpoint, &prefix);
    s.part_size = Some(5 * 1024 * 1024);
    s.concurrency = Some(2);
    let r = S3Replica::with_retry_policy(s, fast_retry()).expect("replica");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot.ltx");
    let size = 12 * 1024 * 1024 + 12_345;
    let data = pattern(size, 3);
    std::fs::write(&path, &data).expect("write");
    let created = ts(1_700_000_123_456);
    let info = r
        .write_ltx(
            LtxName::new(Level(9), TxId(1), TxId(42)),
            Body::File(path),
            created,
        )
        .await
        .expect("multipart upload");
    assert_eq!(info.size, size as u64);
    let heads = p.state.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("POST") && h.contains("?uploads")),
        "{heads:?}"
    );
    let parts = heads
        .iter()
        .filter(|h| h.starts_with("PUT") && h.contains("partNumber="))
        .count();
    assert_eq!(parts, 3, "{heads:?}");
    assert!(heads
        .iter()
        .any(|h| h.starts_with("POST") && h.contains("uploadId=")));

    let fresh = replica(&srv, &prefix);
    let l9 = fresh.ltx_files(Level(9)).await.expect("list");
    assert_eq!(l9.len(), 1);
    assert_eq!(l9[0].size, size as u64);
    let back = common::fetch(&fresh, (9, 1, 42), (0, None)).await;
    assert!(back[..] == data[..], "multipart object differs");
    assert_eq!(
        fresh
            .metadata_timestamp(Level(9), TxId(1), TxId(42))
            .await
            .expect("meta"),
        Some(created)
    );

    // The same from memory.
    let info = common::write(&r, 9, (1, 43), data.clone(), created)
        .await
        .expect("multipart from bytes");
    assert_eq!(info.size, size as u64);
    let back = common::fetch(&fresh, (9, 1, 43), (size as u64 - 100, None)).await;
    assert_eq!(&back[..], &data[size - 100..]);
    fresh.delete_all().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn listing_and_deleting_more_than_1000_objects() {
    let srv = server();
    let p = proxy(&srv).await;
    let prefix = unique_prefix("many");
    let r = Arc::new(
        S3Replica::with_retry_policy(settings(&srv, &p.endpoint, &prefix), fast_retry())
            .expect("replica"),
    );
    let n = 1100u64;
    let mut set = tokio::task::JoinSet::new();
    let mut next = 1u64;
    while next <= n || !set.is_empty() {
        while set.len() < 16 && next <= n {
            let r = r.clone();
            let i = next;
            set.spawn(async move {
                r.write_ltx(
                    LtxName::new(Level(1), TxId(i), TxId(i)),
                    Body::Bytes(Bytes::from(vec![i as u8; 8])),
                    ts(1_700_000_000_000),
                )
                .await
            });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            done.expect("task").expect("write");
        }
    }
    r.invalidate_cache();
    let before = p.state.request_count();
    let files = r.ltx_files(Level(1)).await.expect("list");
    assert_eq!(files.len(), n as usize);
    assert!(files.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    let lists: Vec<String> = p.state.heads()[before..].to_vec();
    assert!(lists.len() >= 2, "expected several pages: {lists:?}");
    assert!(
        lists.iter().any(|h| h.contains("continuation-token=")),
        "{lists:?}"
    );

    let before = p.state.request_count();
    r.delete_ltx(&files).await.expect("delete 1100");
    let deletes: Vec<String> = p.state.heads()[before..]
        .iter()
        .filter(|h| h.starts_with("POST") && h.contains("?delete"))
        .cloned()
        .collect();
    assert_eq!(deletes.len(), 2, "1000 + 100: {deletes:?}");
    r.invalidate_cache();
    assert!(r.ltx_files(Level(1)).await.expect("relist").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn ranged_reads_resume_after_dropped_connection() {
    let srv = server();
    let p = proxy(&srv).await;
    let prefix = unique_prefix("resume");
    let r = S3Replica::with_retry_policy(settings(&srv, &p.endpoint, &prefix), fast_retry())
        .expect("replica");
    let data = pattern(600_000, 5);
    common::write(&r, 0, (5, 5), data.clone(), ts(1_700_000_000_000))
        .await
        .expect("write");

    // Whole-file read, cut after ~200 KB of the response.
    let before = p.state.request_count();
    p.state.cut_next_response(200_000);
    let got = common::fetch(&r, (0, 5, 5), (0, None)).await;
    assert!(got[..] == data[..], "resumed read differs");
    let gets: Vec<String> = p.state.heads()[before..].to_vec();
    assert_eq!(gets.len(), 2, "{gets:?}");
    let resume = gets[1].to_ascii_lowercase();
    assert!(resume.contains("range: bytes="), "{resume}");
    assert!(resume.contains("if-match:"), "{resume}");

    // A bounded range, cut in the middle too.
    let before = p.state.request_count();
    p.state.cut_next_response(50_000);
    let got = common::fetch(&r, (0, 5, 5), (100_000, Some(300_000))).await;
    assert!(got[..] == data[100_000..400_000], "resumed range differs");
    assert_eq!(p.state.request_count() - before, 2);

    // Streamed: one GET, handed over in pieces no larger than asked for.
    let before = p.state.request_count();
    let got = drain(&r, (Level(0), 5), 1_000, 500_000, 7_000)
        .await
        .expect("stream");
    assert!(got[..] == data[1_000..501_000], "streamed range differs");
    assert_eq!(p.state.request_count() - before, 1);

    // Cut mid-body: resumed from the last byte received, pinned to the ETag.
    let before = p.state.request_count();
    p.state.cut_next_response(100_000);
    let got = drain(&r, (Level(0), 5), 0, 600_000, 1 << 20)
        .await
        .expect("resumed stream");
    assert!(got[..] == data[..], "resumed stream differs");
    let gets: Vec<String> = p.state.heads()[before..].to_vec();
    assert_eq!(gets.len(), 2, "{gets:?}");
    let resume = gets[1].to_ascii_lowercase();
    assert!(resume.contains("if-match:"), "{resume}");
    assert!(!resume.contains("range: bytes=0-"), "{resume}");

    // Past the end, and empty.
    let err = drain(&r, (Level(0), 5), 599_000, 2_000, 1 << 20)
        .await
        .expect_err("past the end");
    assert!(err.to_string().contains("past the end"), "{err}");
    assert!(drain(&r, (Level(0), 5), 600_000, 0, 10)
        .await
        .expect("empty")
        .is_empty());
    r.delete_all().await.expect("cleanup");
}

/// Reads a whole stream with pieces of at most `max` bytes.
async fn drain(
    r: &dyn ReplicaClient,
    file: (Level, u64),
    offset: u64,
    len: u64,
    max: u64,
) -> storage::Result<Vec<u8>> {
    let mut s = r
        .read_range_stream(
            LtxName::new(file.0, TxId(file.1), TxId(file.1)),
            offset,
            len,
        )
        .await?;
    let mut out = Vec::new();
    while let Some(p) = s.next_piece(max).await? {
        assert!(
            !p.is_empty() && p.len() as u64 <= max,
            "piece of {}",
            p.len()
        );
        out.extend_from_slice(&p);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn slowdown_is_retried() {
    let srv = server();
    let p = proxy(&srv).await;
    let prefix = unique_prefix("slowdown");
    let r = S3Replica::with_retry_policy(settings(&srv, &p.endpoint, &prefix), fast_retry())
        .expect("replica");
    p.state.fail_next(2);
    assert!(r
        .ltx_files(Level(0))
        .await
        .expect("list after 2x 503")
        .is_empty());
    assert_eq!(p.state.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn non_retryable_errors_are_reported_once_and_clearly() {
    let srv = server();
    let p = proxy(&srv).await;
    let mut s = settings(&srv, &p.endpoint, "db");
    s.secret_access_key = Some("wrong-secret".into());
    let r = S3Replica::with_retry_policy(s, fast_retry()).expect("replica");
    let err = common::fetch_err(&r, (0, 1, 1), (0, None)).await;
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "s3://{}/db/0000/0000000000000001-0000000000000001.ltx",
            srv.bucket
        )),
        "{msg}"
    );
    assert!(msg.contains("403"), "{msg}");
    assert_eq!(p.state.request_count(), 1, "a bad signature is not retried");

    let mut s = settings(&srv, &p.endpoint, "db");
    s.bucket = "no-such-bucket-here".to_owned();
    let r = S3Replica::with_retry_policy(s, fast_retry()).expect("replica");
    let before = p.state.request_count();
    let err = r.ltx_files(Level(0)).await.expect_err("missing bucket");
    let msg = err.to_string();
    assert!(msg.contains("no-such-bucket-here"), "{msg}");
    assert!(msg.contains("NoSuchBucket"), "{msg}");
    assert_eq!(p.state.request_count() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn open_replica_from_url_with_env_credentials() {
    let srv = server();
    let prefix = unique_prefix("url");
    // Only this test relies on variables; the others pass keys explicitly.
    std::env::set_var("LITESTREAM_ACCESS_KEY_ID", &srv.access_key);
    std::env::set_var("LITESTREAM_SECRET_ACCESS_KEY", &srv.secret_key);
    let url = format!(
        "s3://{}/{prefix}?endpoint={}&region=us-east-1&partSize=5MiB&concurrency=2",
        srv.bucket, srv.endpoint
    );
    let r = open_replica(&url).expect("open");
    assert_eq!(r.kind(), "s3");
    common::write(&*r, 0, (1, 1), b"hello", ts(1_700_000_000_000))
        .await
        .expect("write via URL replica");
    let again = open_replica(&url).expect("open");
    let files = again.ltx_files(Level(0)).await.expect("list");
    assert_eq!(files.len(), 1);
    assert_eq!(
        &common::fetch(&*again, (0, 1, 1), (0, None)).await[..],
        b"hello"
    );
    again.delete_all().await.expect("cleanup");

    let s = S3Settings::from_url(&url).expect("settings");
    assert_eq!(s.part_size, Some(5 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn unsigned_payload_and_no_md5_also_work() {
    let srv = server();
    let prefix = unique_prefix("unsigned");
    let mut s = settings(&srv, &srv.endpoint, &prefix);
    s.sign_payload = Some(false);
    s.require_content_md5 = Some(false);
    let r = S3Replica::with_retry_policy(s, fast_retry()).expect("replica");
    common::write(&r, 2, (1, 9), pattern(1000, 1), ts(1_700_000_000_000))
        .await
        .expect("unsigned put");
    assert_eq!(r.ltx_files(Level(2)).await.expect("list").len(), 1);
    r.delete_all().await.expect("delete without md5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn https_endpoint_with_ca_file_and_skip_verify() {
    let srv = server();
    let (_dir, ca, cert, key) = common::test_certificates();
    let port = common::tls_proxy(&srv, &cert, &key).await;
    let endpoint = format!("https://localhost:{port}");
    let prefix = unique_prefix("tls");

    // Trusted through the configured CA file.
    let mut s = settings(&srv, &endpoint, &prefix);
    s.ca_file = Some(ca);
    let r = S3Replica::with_retry_policy(s, fast_retry()).expect("replica");
    common::write(&r, 0, (1, 1), pattern(5000, 2), ts(1_700_000_000_000))
        .await
        .expect("write over TLS");
    let back = common::fetch(&r, (0, 1, 1), (0, None)).await;
    assert_eq!(&back[..], &pattern(5000, 2)[..]);

    // Unknown issuer (the test CA is not trusted here): refused, verified by default, and reported without retrying.
    let untrusted = S3Replica::with_retry_policy(settings(&srv, &endpoint, &prefix), fast_retry())
        .expect("replica");
    let started = std::time::Instant::now();
    let err = untrusted
        .ltx_files(Level(0))
        .await
        .expect_err("self-signed certificate must be rejected");
    assert!(
        err.to_string().to_ascii_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // skipVerify opts out.
    let url = format!(
        "s3://{}/{prefix}?endpoint={endpoint}&region=us-east-1&skipVerify=true",
        srv.bucket
    );
    let mut s = S3Settings::from_url(&url).expect("url");
    s.access_key_id = Some(srv.access_key.clone());
    s.secret_access_key = Some(srv.secret_key.clone().into());
    let insecure = S3Replica::with_retry_policy(s, fast_retry()).expect("replica");
    assert_eq!(insecure.ltx_files(Level(0)).await.expect("list").len(), 1);
    insecure.delete_all().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server"]
async fn open_from_yaml_style_settings() {
    let srv = server();
    let prefix = unique_prefix("yaml");
    let r = storage::open_replica_from_config(
        "s3",
        None,
        [
            ("bucket", srv.bucket.as_str()),
            ("path", prefix.as_str()),
            ("endpoint", srv.endpoint.as_str()),
            ("region", "us-east-1"),
            ("access-key-id", srv.access_key.as_str()),
            ("secret-access-key", srv.secret_key.as_str()),
            ("part-size", "5MiB"),
            ("concurrency", "3"),
            ("storage-class", "STANDARD"),
        ],
    )
    .expect("open from settings");
    common::write(&*r, 3, (1, 2), b"yaml", ts(1_700_000_000_000))
        .await
        .expect("write");
    let fresh = replica(&srv, &prefix);
    assert_eq!(fresh.ltx_files(Level(3)).await.expect("list").len(), 1);
    fresh.delete_all().await.expect("cleanup");
}
