//! The NATS backend while its server restarts (a server of the test's own: the other NATS tests
//! share theirs and must not see it go away).

use crate::common;
use test_support::nats as nats_env;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use nats_env::nats_server;
use storage::nats::{NatsReplica, NatsSettings, RetryPolicy};
use storage::{Body, LtxName, ReplicaClient};

fn data(txid: u64) -> Bytes {
    Bytes::from(format!("ltx file {txid} ").repeat(5000))
}

async fn write(r: &NatsReplica, txid: u64) {
    r.write_ltx(
        LtxName::l0(TxId(txid)),
        Body::Bytes(data(txid)),
        SystemTime::now(),
    )
    .await
    .unwrap_or_else(|e| panic!("write {txid}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn writes_and_reads_survive_server_restarts() {
    nats_server();
    // A server of this test's own: the restarts must not reach tests running beside it.
    let (_own, srv) = nats_env::private_nats_server();
    let bucket = srv.new_bucket("restart");
    let settings = NatsSettings::from_config(
        Some(&srv.replica_url(&bucket)),
        [("reconnect-wait", "200ms"), ("timeout", "2s")],
    )
    .expect("settings");
    let r = NatsReplica::with_options(
        settings,
        RetryPolicy {
            max_attempts: 12,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
        },
        Duration::from_secs(600),
    );
    write(&r, 1).await;

    // Restarted between two operations: the next one works on the same replica.
    let s = srv.clone();
    tokio::task::spawn_blocking(move || assert!(s.restart(Duration::from_millis(500))))
        .await
        .expect("restart");
    write(&r, 2).await;

    // Down while an operation runs: it is retried until the server is back.
    let s = srv.clone();
    tokio::task::spawn_blocking(move || assert!(s.stop()))
        .await
        .expect("stop");
    let s = srv.clone();
    let back = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1500));
        s.start();
    });
    write(&r, 3).await;
    back.await.expect("start");

    r.invalidate_cache();
    let files = r.ltx_files(Level(0)).await.expect("list");
    assert_eq!(
        files.iter().map(|f| f.min_txid.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for txid in 1..=3 {
        let got = common::fetch(&r, (0, txid, txid), (0, None)).await;
        assert_eq!(got, data(txid));
    }
}
