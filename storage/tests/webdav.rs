//! The WebDAV backend against a real server (`rclone serve webdav`, started by
//! `tests/webdav/start.sh`), with the fault-injecting proxy of the S3 tests in front where a
//! test needs to count requests or break them.

use crate::common;
use test_support::webdav as webdav_env;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use storage::webdav::{WebDavReplica, WebDavSettings};
use storage::{open_replica, open_replica_from_config, Body, LtxName, ReplicaClient};
use webdav_env::{webdav_server, WebDavServer};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u32::from(seed))
                >> 7) as u8
        })
        .collect()
}

fn settings(srv: &WebDavServer, url: &str, path: &str) -> WebDavSettings {
    WebDavSettings::from_config(
        None,
        [
            ("webdav-url", url),
            ("webdav-username", srv.user.as_str()),
            ("webdav-password", srv.pass.as_str()),
            ("path", path),
        ],
    )
    .expect("settings")
}

fn replica(srv: &WebDavServer, path: &str) -> WebDavReplica {
    WebDavReplica::with_retry_policy(settings(srv, &srv.url, path), common::fast_retry())
        .expect("replica")
}

/// A proxy in front of the server (the S3 tests' one: it counts requests, answers 503 and
/// cuts responses on demand).
async fn proxy(srv: &WebDavServer) -> common::Proxy {
    common::proxy(&common::Server {
        endpoint: srv.url.clone(),
        access_key: String::new(),
        secret_key: String::new(),
        bucket: String::new(),
        data_dir: None,
    })
    .await
}

/// Every file below `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

async fn write(r: &WebDavReplica, level: u8, min: u64, max: u64, data: Vec<u8>) {
    let info = common::write(
        r,
        level,
        (min, max),
        data,
        UNIX_EPOCH + Duration::from_millis(1_795_665_906_229),
    )
    .await
    .expect("write");
    assert_eq!((info.min_txid, info.max_txid), (TxId(min), TxId(max)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn write_list_read_delete() {
    let srv = webdav_server();
    let path = format!("nested/{}/db", srv.unique_path("basic"));
    let r = replica(&srv, &path);
    assert_eq!(r.kind(), "webdav");
    assert!(r.ltx_files(Level(0)).await.expect("empty level").is_empty());

    let before = SystemTime::now();
    for i in [3u64, 1, 2] {
        write(&r, 0, i, i, pattern(100 + i as usize, i as u8)).await;
    }
    // A snapshot streamed from a file (3 MiB: several request body frames).
    let dir = tempfile::tempdir().expect("tempdir");
    let snap_path = dir.path().join("snap.ltx");
    let snap = pattern(3 << 20, 9);
    std::fs::write(&snap_path, &snap).expect("write file");
    let info = r
        .write_ltx(
            LtxName::new(Level(9), TxId(1), TxId(3)),
            Body::File(snap_path),
            UNIX_EPOCH,
        )
        .await
        .expect("write file body");
    assert_eq!(info.size, snap.len() as u64);
    let after = SystemTime::now();

    // Layout (docs/replica-layout.md#paths-and-timestamps-per-backend):
    // <path>/ltx/<level decimal>/<min>-<max>.ltx, and nothing else (no temporary upload left behind).
    if let Some(data) = &srv.data_dir {
        assert_eq!(
            tree(&data.join(&path)),
            vec![
                "ltx/0/0000000000000001-0000000000000001.ltx",
                "ltx/0/0000000000000002-0000000000000002.ltx",
                "ltx/0/0000000000000003-0000000000000003.ltx",
                "ltx/9/0000000000000001-0000000000000003.ltx",
            ]
        );
        let on_disk = std::fs::read(
            data.join(&path)
                .join("ltx/9/0000000000000001-0000000000000003.ltx"),
        )
        .expect("read");
        assert!(on_disk == snap, "snapshot bytes differ on the server");
    }
    assert_eq!(
        r.ltx_url(Level(9), TxId(1), TxId(3)),
        format!(
            "{}/{path}/ltx/9/0000000000000001-0000000000000003.ltx",
            srv.url
        )
    );

    // A fresh replica lists what the server says.
    let fresh = replica(&srv, &path);
    let files = fresh.ltx_files(Level(0)).await.expect("list level");
    assert_eq!(common::sizes(&files), vec![(1, 101), (2, 102), (3, 103)]);
    // created_at is the server's modification time, as Litestream reads it (getlastmodified,
    // whole seconds), not the header timestamp we passed.
    for f in &files {
        let t = secs(f.created_at);
        assert!(
            t >= secs(before) && t <= secs(after) + 1,
            "created_at {t} outside [{}, {}]",
            secs(before),
            secs(after)
        );
        if let Some(data) = &srv.data_dir {
            let m = std::fs::metadata(data.join(&path).join("ltx/0").join(f.name()))
                .and_then(|m| m.modified())
                .expect("mtime");
            assert_eq!(t, secs(m), "created_at is not the file's mtime");
        }
    }

    // Reads: ranges, to the end, whole, and past the end (an error, not a short read).
    let b = common::fetch(&fresh, (0, 2, 2), (10, Some(20))).await;
    assert_eq!(&b[..], &pattern(102, 2)[10..30]);
    let b = common::fetch(&fresh, (0, 2, 2), (90, None)).await;
    assert_eq!(&b[..], &pattern(102, 2)[90..]);
    let b = common::fetch(&fresh, (0, 2, 2), (102, None)).await;
    assert!(b.is_empty());
    for (off, len) in [
        (100u64, Some(5u64)),
        (102, Some(1)),
        (500, Some(1)),
        (500, None),
    ] {
        let e = common::fetch_err(&fresh, (0, 2, 2), (off, len)).await;
        assert!(e.to_string().contains("past the end"), "{off}+{len:?}: {e}");
    }
    let b = common::fetch(&fresh, (9, 1, 3), (0, None)).await;
    assert!(b[..] == snap[..], "snapshot read back differs");
    let mut s = fresh
        .read_range_stream(LtxName::new(Level(9), TxId(1), TxId(3)), 1000, 2_000_000)
        .await
        .expect("stream");
    let mut got = Vec::new();
    while let Some(p) = s.next_piece(300_000).await.expect("piece") {
        assert!(p.len() <= 300_000);
        got.extend_from_slice(&p);
    }
    assert!(got[..] == snap[1000..2_001_000], "streamed range differs");
    // Past the end: refused when the answer's size shows it, or at the latest when the body
    // ends early.
    let err = match fresh.read_range_stream(LtxName::l0(TxId(1)), 50, 100).await {
        Err(e) => Some(e),
        Ok(mut s) => loop {
            match s.next_piece(1000).await {
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        },
    };
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("past the end")),
        "{err:?}"
    );
    let missing = common::fetch_err(&fresh, (0, 9, 9), (0, None)).await;
    assert!(missing.is_not_found(), "{missing}");
    assert!(missing
        .to_string()
        .contains("0000000000000009-0000000000000009.ltx"));

    // Deletes: files already gone are fine; delete_all removes <path>/ltx.
    fresh.delete_ltx(&files[..2]).await.expect("delete");
    fresh.delete_ltx(&files[..2]).await.expect("delete again");
    assert_eq!(fresh.ltx_files(Level(0)).await.expect("list").len(), 1);
    assert_eq!(
        replica(&srv, &path)
            .ltx_files(Level(0))
            .await
            .expect("list")
            .len(),
        1
    );
    fresh.delete_all().await.expect("delete all");
    fresh.delete_all().await.expect("delete all again");
    let again = replica(&srv, &path);
    for level in [0u8, 9] {
        assert!(again
            .ltx_files(Level(level))
            .await
            .expect("list")
            .is_empty());
    }
    if let Some(data) = &srv.data_dir {
        assert!(!data.join(&path).join("ltx").exists());
    }
}

/// Names in a level directory that are not LTX files, or not directly in it, are not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn listing_ignores_other_names() {
    let srv = webdav_server();
    let data = srv
        .data_dir
        .clone()
        .expect("LS_WEBDAV_DATA_DIR (tests/webdav/start.sh sets it)");
    let path = srv.unique_path("names");
    let level = data.join(&path).join("ltx/0");
    std::fs::create_dir_all(level.join("0000000000000005-0000000000000005.ltx")).expect("mkdir");
    std::fs::create_dir_all(level.join("sub")).expect("mkdir");
    for name in [
        "0000000000000001-0000000000000001.ltx",
        ".0000000000000002-0000000000000002.ltx.0123456789abcdef.tmp",
        "0000000000000003-0000000000000003.ltx.tmp",
        "00000000000000AA-00000000000000AA.ltx",
        "sub/0000000000000004-0000000000000004.ltx",
        "readme",
    ] {
        std::fs::write(level.join(name), b"x").expect("write");
    }
    srv.settle();
    let r = replica(&srv, &path);
    let names: Vec<String> = r
        .ltx_files(Level(0))
        .await
        .expect("list")
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(names, ["0000000000000001-0000000000000001.ltx"]);
}

/// WebDAV has no paged listings: one PROPFIND returns the whole level, however long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn long_listing_in_one_request() {
    let srv = webdav_server();
    let data = srv
        .data_dir
        .clone()
        .expect("LS_WEBDAV_DATA_DIR (tests/webdav/start.sh sets it)");
    let path = srv.unique_path("long");
    let level = data.join(&path).join("ltx/1");
    std::fs::create_dir_all(&level).expect("mkdir");
    for i in 1..=1500u64 {
        let name = format!("{i:016x}-{i:016x}.ltx");
        std::fs::write(level.join(name), vec![b'x'; (i % 7) as usize]).expect("write");
    }
    srv.settle();
    let p = proxy(&srv).await;
    let r =
        WebDavReplica::with_retry_policy(settings(&srv, &p.endpoint, &path), common::fast_retry())
            .expect("replica");
    let files = r.ltx_files(Level(1)).await.expect("list");
    assert_eq!(files.len(), 1500);
    for (k, f) in files.iter().enumerate() {
        let i = k as u64 + 1;
        assert_eq!((f.min_txid.0, f.max_txid.0, f.size), (i, i, i % 7));
    }
    assert_eq!(p.state.request_count(), 1);
}

/// The replica URL and the YAML keys reach the same files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn url_and_config_keys_open_the_same_replica() {
    let srv = webdav_server();
    let path = srv.unique_path("urls");
    let by_url = open_replica(&srv.replica_url(&path)).expect("open url");
    write_via(&*by_url, 7, b"hello webdav").await;
    let keys = srv.yaml(&path);
    let pairs: Vec<(&str, &str)> = keys
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .collect();
    let by_keys = open_replica_from_config("webdav", None, pairs).expect("open keys");
    // `url` for the server and path, credentials from the keys (as global defaults would be).
    let bare_url = format!("webdav://{}/{path}", srv.authority());
    let mixed = open_replica_from_config(
        "webdav",
        Some(&bare_url),
        [
            ("webdav-username", srv.user.as_str()),
            ("webdav-password", srv.pass.as_str()),
        ],
    )
    .expect("open url + keys");
    for r in [&by_keys, &mixed] {
        let files = r.ltx_files(Level(0)).await.expect("list");
        assert_eq!(files.len(), 1, "{r:?}");
        let b = common::fetch(r.as_ref(), (0, 7, 7), (0, None)).await;
        assert_eq!(&b[..], b"hello webdav");
    }
    // Without credentials the server refuses, and the error says where and what to check.
    let anon = open_replica(&bare_url).expect("open");
    let e = anon.ltx_files(Level(0)).await.expect_err("401");
    let s = e.to_string();
    assert!(
        s.contains("401") && s.contains(&bare_url.replace("webdav://", "http://")),
        "{s}"
    );
}

async fn try_write(
    r: &dyn ReplicaClient,
    txid: u64,
    data: &'static [u8],
) -> storage::Result<storage::LtxFileInfo> {
    r.write_ltx(
        LtxName::l0(TxId(txid)),
        Body::Bytes(Bytes::from_static(data)),
        SystemTime::now(),
    )
    .await
}

async fn write_via(r: &dyn ReplicaClient, txid: u64, data: &'static [u8]) {
    try_write(r, txid, data).await.expect("write");
}

/// A wrong password is reported at once (no retries), naming the URL and the keys to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn wrong_password_is_a_clear_error() {
    let srv = webdav_server();
    let p = proxy(&srv).await;
    let path = srv.unique_path("badpass");
    let mut s = settings(&srv, &p.endpoint, &path);
    s.password = "wrong".into();
    let r = WebDavReplica::with_retry_policy(s, common::fast_retry()).expect("replica");
    let e = r.ltx_files(Level(0)).await.expect_err("401");
    let msg = e.to_string();
    assert!(
        msg.contains("HTTP 401")
            && msg.contains(&format!("{}/{path}/ltx/0/", p.endpoint))
            && msg.contains("webdav-password"),
        "{msg}"
    );
    assert!(!msg.contains("wrong"), "the password leaked: {msg}");
    assert_eq!(p.state.request_count(), 1, "a 401 must not be retried");
    let e = try_write(&r, 1, b"x").await.expect_err("401");
    assert!(e.is_auth() && e.to_string().contains("401"), "{e}");
}

/// A server URL whose base directory does not exist: listings are empty (as Litestream's
/// are), and the first write fails once, naming the directory it could not make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn missing_base_directory_is_reported() {
    let srv = webdav_server();
    let p = proxy(&srv).await;
    let base = format!("{}/{}", p.endpoint, srv.unique_path("no-such-dir"));
    let r = WebDavReplica::with_retry_policy(settings(&srv, &base, "db"), common::fast_retry())
        .expect("replica");
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
    let e = try_write(&r, 1, b"x").await.expect_err("no base directory");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{base}/db/")) && msg.contains("409") && msg.contains("webdav-url"),
        "{msg}"
    );
    // list, PUT, MKCOL of the level, MKCOL of <path>: each once.
    assert_eq!(p.state.request_count(), 4, "{:?}", p.state.heads());
}

/// 503s are retried with backoff; a response cut mid-body is resumed where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn transient_failures_are_retried() {
    let srv = webdav_server();
    let p = proxy(&srv).await;
    let path = srv.unique_path("retry");
    let r =
        WebDavReplica::with_retry_policy(settings(&srv, &p.endpoint, &path), common::fast_retry())
            .expect("replica");
    p.state.fail_next(2);
    let data = pattern(600_000, 3);
    write(&r, 0, 1, 1, data.clone()).await;
    assert_eq!(p.state.failures_left(), 0);
    let before = p.state.request_count();
    p.state.cut_next_response(100_000);
    let b = common::fetch(&r, (0, 1, 1), (5, Some(590_000))).await;
    assert!(b[..] == data[5..590_005], "resumed read differs");
    let heads = p.state.heads();
    let gets: Vec<&String> = heads[before..]
        .iter()
        .filter(|h| h.starts_with("GET "))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    let resumed = gets[1].to_ascii_lowercase();
    assert!(
        resumed.contains("if-match") && !resumed.contains("range: bytes=5-"),
        "the second GET must resume where the first stopped: {resumed}"
    );

    // A 503 that never ends is reported after the retries, naming the file.
    p.state.fail_next(100);
    let e = common::fetch_err(&r, (0, 1, 1), (0, Some(10))).await;
    assert!(
        e.to_string().contains("503")
            && e.to_string()
                .contains("0000000000000001-0000000000000001.ltx"),
        "{e}"
    );
    p.state.fail_next(0);
}

/// Listings are cached and kept current by our own changes: repeating them costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn idle_replica_makes_no_requests() {
    let srv = webdav_server();
    let p = proxy(&srv).await;
    let path = srv.unique_path("idle");
    let r =
        WebDavReplica::with_retry_policy(settings(&srv, &p.endpoint, &path), common::fast_retry())
            .expect("replica");
    for level in [0u8, 1, 9] {
        r.ltx_files(Level(level)).await.expect("list");
    }
    write(&r, 0, 1, 1, vec![1; 10]).await;
    let n = p.state.request_count();
    for _ in 0..5 {
        for level in [0u8, 1, 9] {
            r.ltx_files(Level(level)).await.expect("list");
        }
    }
    assert_eq!(
        r.ltx_files(Level(0)).await.expect("list").len(),
        1,
        "the cache missed our write"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        p.state.request_count(),
        n,
        "requests while idle: {:?}",
        &p.state.heads()[n..]
    );
    r.invalidate_cache();
    assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 1);
    assert_eq!(p.state.request_count(), n + 1);
}
