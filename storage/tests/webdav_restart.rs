//! A WebDAV server going away and coming back on the same port (a private `rclone serve webdav`
//! from `tests/webdav/start.sh`, restarted): a read cut by it resumes, requests made while it is
//! down are retried, and the pooled connections it closed are replaced. The server is the test's
//! own, so no other test sees the restart.

use crate::common;
use test_support::webdav as webdav_env;

use std::time::{Duration, SystemTime};

use ltx_codec::{Level, TxId};
use storage::webdav::{RetryPolicy, WebDavReplica, WebDavSettings};
use storage::{Body, LtxName, ReplicaClient};
use webdav_env::webdav_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn server_restart_mid_read_and_while_idle() {
    webdav_server();
    // A server of this test's own: the restarts must not reach tests running beside it.
    let (_own, srv) = webdav_env::private_webdav_server();
    let path = srv.unique_path("restart");
    let s = WebDavSettings::from_config(
        None,
        [
            ("webdav-url", srv.url.as_str()),
            ("webdav-username", srv.user.as_str()),
            ("webdav-password", srv.pass.as_str()),
            ("path", path.as_str()),
        ],
    )
    .expect("settings");
    // Enough patience for a restart of a second or two.
    let retry = RetryPolicy {
        max_attempts: 30,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
    };
    let r = WebDavReplica::with_retry_policy(s, retry).expect("replica");
    // Larger than what the socket buffers hold, so the restart cuts the body for real.
    let data: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.ltx");
    std::fs::write(&file, &data).expect("write");
    r.write_ltx(
        LtxName::new(Level(9), TxId(1), TxId(9)),
        Body::File(file),
        SystemTime::now(),
    )
    .await
    .expect("upload");

    let len = data.len() as u64 - 10;
    let mut s = r
        .read_range_stream(LtxName::new(Level(9), TxId(1), TxId(9)), 10, len)
        .await
        .expect("stream");
    let mut got = Vec::with_capacity(data.len());
    let first = s.next_piece(64 * 1024).await.expect("piece").expect("data");
    got.extend_from_slice(&first);
    let srv2 = srv.clone();
    tokio::task::spawn_blocking(move || assert!(srv2.restart(Duration::from_millis(1500))))
        .await
        .expect("restart");
    while let Some(p) = s.next_piece(1 << 20).await.expect("piece after restart") {
        got.extend_from_slice(&p);
    }
    assert_eq!(got.len() as u64, len);
    assert!(got[..] == data[10..], "bytes differ after the resumed read");
    drop(s);

    // The server goes away while the replica idles with pooled connections; the next
    // requests, made while it is still down, succeed once it is back.
    r.ltx_files(Level(9)).await.expect("list");
    let srv3 = srv.clone();
    let restart =
        tokio::task::spawn_blocking(move || assert!(srv3.restart(Duration::from_millis(2000))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.invalidate_cache();
    let files = r
        .ltx_files(Level(9))
        .await
        .expect("list across the restart");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size, data.len() as u64);
    common::write(&r, 0, (10, 10), b"after", SystemTime::now())
        .await
        .expect("write after the restart");
    restart.await.expect("restart");
    let b = common::fetch(&r, (0, 10, 10), (0, None)).await;
    assert_eq!(&b[..], b"after");
    r.delete_all().await.expect("clean up");
}
