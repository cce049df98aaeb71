//! The sftp backend across server restarts: a second sshd with the test server's keys (see
//! `test_support::sftp`) is killed with all its sessions and started again on the same port;
//! the next operation reconnects, and one issued while the server is down succeeds once it is
//! back. Its own test binary, so no other test shares the restarted server.

use crate::common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use storage::s3::RetryPolicy;
use storage::sftp::{SftpReplica, SftpSettings};
use storage::{Body, LtxName, ReplicaClient};

use sftp_env::{sftp_server, PrivateSshd};
use test_support::sftp as sftp_env;

async fn put(r: &SftpReplica, i: u64) -> storage::Result<storage::LtxFileInfo> {
    r.write_ltx(
        LtxName::l0(TxId(i)),
        Body::Bytes(Bytes::from(vec![i as u8; 5000])),
        UNIX_EPOCH + Duration::from_secs(1_760_000_000 + i),
    )
    .await
}

fn on_disk(root: &Path, i: u64) -> Option<Vec<u8>> {
    std::fs::read(root.join(format!("ltx/0/{i:016x}-{i:016x}.ltx"))).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the SFTP test server"]
async fn reconnects_after_the_server_restarts() {
    let srv = sftp_server();
    let Some(mut sshd) = PrivateSshd::start(&srv) else {
        panic!("LS_SFTP_SSHD_CONFIG is unset; source tests/sftp/start.sh");
    };
    let root = srv.unique_path("restart");
    let host = sshd.host();
    let pairs = srv.pairs(&root);
    let settings = SftpSettings::from_config(
        None,
        pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("host", host.as_str())]),
    )
    .expect("settings");
    let r = SftpReplica::with_retry_policy(
        settings,
        RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        },
    );
    put(&r, 1).await.expect("first write");
    assert_eq!((r.idle_connections(), r.connections_made()), (1, 1));

    // Restart between two operations: the kept connection is dead; the next write replaces it
    // without a visible error.
    sshd.restart();
    put(&r, 2).await.expect("write after restart");
    assert_eq!(r.connections_made(), 2, "the dead connection was replaced");
    r.invalidate_cache();
    assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 2);
    assert_eq!(
        common::fetch(&r, (0, 1, 1), (10, Some(5))).await,
        Bytes::from(vec![1u8; 5])
    );

    // Down while a write is issued: it is retried until the server is back.
    sshd.kill();
    let started = SystemTime::now();
    let (w, ()) = tokio::join!(put(&r, 3), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| sshd.restart());
    });
    w.expect("write while the server was down");
    assert!(started.elapsed().unwrap_or_default() >= Duration::from_millis(1500));
    assert_eq!(on_disk(&root, 3), Some(vec![3u8; 5000]));

    // Down for good: the error names the host and the file.
    sshd.kill();
    let quick = SftpReplica::with_retry_policy(
        r.settings().clone(),
        RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
    );
    let e = put(&quick, 4).await.expect_err("server gone");
    assert!(
        e.to_string().contains(&host) && e.to_string().contains("0000000000000004"),
        "{e}"
    );
    assert_eq!(on_disk(&root, 4), None);
    std::fs::remove_dir_all(&root).expect("cleanup");
}
