//! Create-only writes (`ReplicaClient::create_ltx`), on every backend: the first create of a
//! name succeeds, a second one fails with an error for which `is_already_exists` holds, and
//! the first file's bytes stay. Backends that cannot promise it (NATS) refuse, writing nothing.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use storage::{
    open_replica, open_replica_from_config, Body, LtxName, ReplicaClient, SharedReplica,
};
use test_support::abs::abs_server;
use test_support::gcs::gcs_server;
use test_support::sftp::sftp_server;
use test_support::webdav::webdav_server;
use test_support::{s3_server, unique_name};

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)
}

/// Creates (or, with `overwrite`, writes) `<level>/1-<max>` from `body`.
async fn put(
    r: &dyn ReplicaClient,
    level: u8,
    max: u64,
    body: Body,
    overwrite: bool,
) -> storage::Result<storage::LtxFileInfo> {
    let (level, min, max) = (Level(level), TxId(1), TxId(max));
    if overwrite {
        r.write_ltx(LtxName::new(level, min, max), body, t0()).await
    } else {
        r.create_ltx(LtxName::new(level, min, max), body, t0())
            .await
    }
}

/// The bytes of L0 file 1-1.
async fn read_l0(r: &dyn ReplicaClient) -> Bytes {
    let read = r.read_range(LtxName::l0(TxId(1)), 0, None);
    read.await.expect("read")
}

/// The same L0 name created twice: the second create fails as "already exists", the first
/// file's bytes stay, and an ordinary write still replaces them.
async fn second_create_fails(r: &dyn ReplicaClient) {
    assert!(r.supports_create_only(), "{}", r.kind());
    let (first, second) = (
        Bytes::from_static(b"first writer"),
        Bytes::from_static(b"second"),
    );
    let info = put(r, 0, 1, Body::Bytes(first.clone()), false).await;
    assert_eq!(info.expect("first create").size, first.len() as u64);
    let e = put(r, 0, 1, Body::Bytes(second.clone()), false).await;
    let e = e.expect_err("second create of the same name");
    assert!(e.is_already_exists(), "{}: {e} ({e:?})", r.kind());
    let name = "0000000000000001-0000000000000001.ltx";
    assert!(e.to_string().contains(name), "{e}");
    r.invalidate_cache();
    let files = r.ltx_files(Level(0)).await.expect("list");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].size, first.len() as u64);
    assert_eq!(
        read_l0(r).await,
        first,
        "{}: the first file was replaced",
        r.kind()
    );
    // A file streamed from disk takes the same path.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l1.ltx");
    std::fs::write(&path, b"from disk").expect("write");
    put(r, 1, 2, Body::File(path.clone()), false)
        .await
        .expect("create from a file");
    let e = put(r, 1, 2, Body::File(path), false).await;
    assert!(e
        .expect_err("second create from a file")
        .is_already_exists());
    // Overwriting writes are unchanged.
    put(r, 0, 1, Body::Bytes(second.clone()), true)
        .await
        .expect("overwrite");
    assert_eq!(read_l0(r).await, second);
    r.delete_all().await.expect("clean up");
}

/// [`second_create_fails`] on the replica a config entry of `kind` opens.
async fn check_config(kind: &str, pairs: &[(String, String)]) {
    let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let r = open_replica_from_config(kind, None, pairs).expect("replica");
    second_create_fails(r.as_ref()).await;
}

#[tokio::test]
async fn file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = storage::file::FileReplica::new(dir.path());
    second_create_fails(&r).await;
    // No temporary file is left behind by the refused create.
    let l0 = r.level_dir(Level(0));
    let names: Vec<String> = std::fs::read_dir(&l0)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// Racing creates of one name on a local directory: exactly one wins.
#[tokio::test]
async fn file_race_has_one_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Arc::new(storage::file::FileReplica::new(dir.path()));
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let body = Body::Bytes(Bytes::from(vec![i; 4096]));
            r.create_ltx(LtxName::l0(TxId(7)), body, t0()).await
        }));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Ok(_) => winners.push(i as u8),
            Err(e) => assert!(e.is_already_exists(), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let got = common::fetch(&*r, (0, 7, 7), (0, None)).await;
    assert_eq!(got, vec![winners[0]; 4096]);
}

#[tokio::test]
#[ignore = "needs the S3 test server"]
async fn s3() {
    let srv = s3_server();
    check_config("s3", &srv.pairs(&unique_name("create-only"))).await;
}

#[tokio::test]
#[ignore = "needs the GCS test server"]
async fn gcs() {
    let srv = gcs_server();
    let mut s = storage::gcs::GcsSettings::from_url(&srv.url(&unique_name("create-only")))
        .expect("settings");
    s.endpoint = Some(srv.endpoint.clone());
    let r: SharedReplica = Arc::new(storage::gcs::GcsReplica::new(s).expect("replica"));
    second_create_fails(r.as_ref()).await;
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn abs() {
    let srv = abs_server();
    check_config("abs", &srv.pairs(&srv.unique_prefix("create-only"))).await;
}

#[tokio::test]
#[ignore = "needs the SFTP test server"]
async fn sftp() {
    let srv = sftp_server();
    check_config("sftp", &srv.pairs(&srv.unique_path("create-only"))).await;
}

#[tokio::test]
#[ignore = "needs the WebDAV test server"]
async fn webdav() {
    let srv = webdav_server();
    let pairs = [
        ("webdav-url", srv.url.as_str()),
        ("webdav-username", srv.user.as_str()),
        ("webdav-password", srv.pass.as_str()),
    ];
    let path = srv.unique_path("create-only");
    let pairs = pairs.into_iter().chain([("path", path.as_str())]);
    let r = open_replica_from_config("webdav", None, pairs).expect("replica");
    second_create_fails(r.as_ref()).await;
}

/// The NATS object store has no conditional put: a create is refused before anything is
/// sent (no server is needed to show it).
#[tokio::test]
async fn nats_refuses() {
    let r = open_replica("nats://127.0.0.1:9/no-bucket").expect("replica");
    assert!(!r.supports_create_only());
    let e = r
        .create_ltx(
            LtxName::l0(TxId(1)),
            Body::Bytes(Bytes::from_static(b"x")),
            t0(),
        )
        .await
        .expect_err("refused");
    assert!(!e.is_already_exists() && e.is_fatal(), "{e}");
    assert!(e.to_string().contains("create-only"), "{e}");
}
