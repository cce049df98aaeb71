//! The NATS backend against a real nats-server with JetStream (started by
//! `tests/nats/start.sh`), with a small TCP proxy in front where a test needs to count
//! connections and bytes or refuse connections.

use crate::common;
use test_support::nats as nats_env;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::object_store::ObjectStore;
use ltx_codec::{Level, TxId};
use nats_env::{nats_server, NatsServer};
use sha2::{Digest, Sha256};
use storage::nats::{NatsReplica, NatsSettings, RetryPolicy, HEADER_TIMESTAMP};
use storage::{open_replica, open_replica_from_config, Body, LtxName, ReplicaClient};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// `len` bytes that differ with `seed` and do not repeat within a 128 KiB chunk.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let step = |x: u64| {
        let x = x ^ (x << 13);
        let x = x ^ (x >> 7);
        x ^ (x << 17)
    };
    std::iter::successors(Some(step(u64::from(seed) | 1)), |&x| Some(step(x)))
        .take(len)
        .map(|x| x as u8)
        .collect()
}

fn settings(srv: &NatsServer, url: &str, bucket: &str) -> NatsSettings {
    NatsSettings::from_config(
        Some(&format!("{url}/{bucket}")),
        [
            ("username", srv.user.as_str()),
            ("password", srv.pass.as_str()),
            ("timeout", "2s"),
        ],
    )
    .expect("settings")
}

fn replica(srv: &NatsServer, bucket: &str) -> NatsReplica {
    NatsReplica::with_options(
        settings(srv, &srv.url, bucket),
        common::fast_retry(),
        Duration::from_secs(60),
    )
}

/// The bucket seen by a plain async-nats client, to check what the backend wrote.
async fn raw_store(srv: &NatsServer, bucket: &str) -> ObjectStore {
    let client = async_nats::ConnectOptions::new()
        .user_and_password(srv.user.clone(), srv.pass.clone())
        .connect(srv.url.as_str())
        .await
        .expect("connect");
    async_nats::jetstream::new(client)
        .get_object_store(bucket)
        .await
        .expect("bucket")
}

async fn raw_names(store: &ObjectStore) -> Vec<String> {
    let mut list = store.list().await.expect("list");
    let mut names = Vec::new();
    while let Some(o) = std::future::poll_fn(|cx| {
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut list), cx)
    })
    .await
    {
        names.push(o.expect("object").name);
    }
    names.sort();
    names
}

async fn write(r: &NatsReplica, level: u8, min: u64, max: u64, data: Vec<u8>, at: SystemTime) {
    common::write(r, level, (min, max), data, at)
        .await
        .expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn write_list_read_delete() {
    let srv = nats_server();
    let bucket = srv.new_bucket("rw");
    let r = replica(&srv, &bucket);
    assert!(r.ltx_files(Level(0)).await.expect("empty").is_empty());

    let t1 = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let small = pattern(1000, 1);
    write(&r, 0, 1, 1, small.clone(), t1).await;
    write(&r, 0, 2, 5, pattern(10, 2), t1 + Duration::from_secs(1)).await;
    // A snapshot from disk, several 128 KiB chunks long.
    let big = pattern(700_001, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snap.ltx");
    std::fs::write(&path, &big).expect("file");
    let t2 = UNIX_EPOCH + Duration::from_nanos(1_700_000_100_456_789_123);
    let info = r
        .write_ltx(
            LtxName::new(Level(9), TxId(1), TxId(5)),
            Body::File(path),
            t2,
        )
        .await
        .expect("write file");
    assert_eq!(info.size, big.len() as u64);

    // Object names are Litestream's, at the root of the bucket.
    let raw = raw_store(&srv, &bucket).await;
    assert_eq!(
        raw_names(&raw).await,
        [
            "ltx/0/0000000000000001-0000000000000001.ltx",
            "ltx/0/0000000000000002-0000000000000005.ltx",
            "ltx/9/0000000000000001-0000000000000005.ltx",
        ]
    );
    // The creation time is the Litestream-Timestamp header, RFC 3339 to the millisecond.
    let obj = raw
        .info("ltx/9/0000000000000001-0000000000000005.ltx")
        .await
        .expect("info");
    let stamp = obj
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_TIMESTAMP))
        .map(|v| v.as_str().to_owned());
    assert_eq!(stamp.as_deref(), Some("2023-11-14T22:15:00.456Z"));
    assert_eq!(obj.size, big.len());
    let mut whole = Vec::new();
    raw.get("ltx/9/0000000000000001-0000000000000005.ltx")
        .await
        .expect("get")
        .read_to_end(&mut whole)
        .await
        .expect("read");
    assert_eq!(Sha256::digest(&whole), Sha256::digest(&big));

    // A fresh replica lists from the server, with the same creation times.
    let fresh = replica(&srv, &bucket);
    let l0 = fresh.ltx_files(Level(0)).await.expect("list");
    assert_eq!(l0.len(), 2);
    assert_eq!(
        (l0[0].min_txid, l0[0].max_txid, l0[0].size),
        (TxId(1), TxId(1), 1000)
    );
    assert_eq!(
        (l0[1].min_txid, l0[1].max_txid, l0[1].size),
        (TxId(2), TxId(5), 10)
    );
    assert_eq!(l0[0].created_at, t1);
    assert_eq!(l0[1].created_at, t1 + Duration::from_secs(1));
    let l9 = fresh.ltx_files(Level(9)).await.expect("list");
    assert_eq!(l9.len(), 1);
    assert_eq!(
        l9[0].created_at,
        UNIX_EPOCH + Duration::from_millis(1_700_000_100_456)
    );
    assert!(fresh.ltx_files(Level(1)).await.expect("l1").is_empty());
    // Our own replica's cache agrees with the server.
    assert_eq!(r.ltx_files(Level(0)).await.expect("cached"), l0);

    // Ranges: whole, inside, across chunk boundaries, to the end, empty at the end.
    let rd = |off: u64, len: Option<u64>| {
        fresh.read_range(LtxName::new(Level(9), TxId(1), TxId(5)), off, len)
    };
    assert_eq!(rd(0, None).await.expect("all"), big[..]);
    assert_eq!(rd(5, Some(10)).await.expect("inside"), big[5..15]);
    assert_eq!(
        rd(131_000, Some(140_000)).await.expect("across"),
        big[131_000..271_000]
    );
    assert_eq!(rd(600_000, None).await.expect("tail"), big[600_000..]);
    assert!(rd(700_001, None).await.expect("at end").is_empty());
    // Past the end is an error that names the object.
    for (off, len) in [(700_000, Some(2)), (700_002, None), (800_000, Some(1))] {
        let e = rd(off, len).await.expect_err("past the end");
        let msg = e.to_string();
        assert!(
            msg.contains("ltx/9/0000000000000001-0000000000000005.ltx") && msg.contains(&bucket),
            "{msg}"
        );
    }
    let small_read = common::fetch(&fresh, (0, 1, 1), (0, None)).await;
    assert_eq!(small_read, small[..]);

    // Streamed reads hand over bounded pieces of one object read.
    let mut s = fresh
        .read_range_stream(LtxName::new(Level(9), TxId(1), TxId(5)), 100_000, 500_000)
        .await
        .expect("stream");
    let mut got = Vec::new();
    let mut pieces = 0;
    while let Some(p) = s.next_piece(70_000).await.expect("piece") {
        assert!(!p.is_empty() && p.len() <= 70_000);
        got.extend_from_slice(&p);
        pieces += 1;
    }
    assert_eq!(got, big[100_000..600_000]);
    assert!(pieces >= 8, "{pieces} pieces");
    drop(s);
    assert!(fresh
        .read_range_stream(LtxName::new(Level(9), TxId(1), TxId(5)), 700_000, 2)
        .await
        .is_err());

    // A missing object is NotFound, naming it.
    let e = common::fetch_err(&fresh, (0, 7, 7), (0, None)).await;
    assert!(e.is_not_found(), "{e}");
    assert!(
        e.to_string()
            .contains("ltx/0/0000000000000007-0000000000000007.ltx"),
        "{e}"
    );

    // Overwrites replace the object.
    write(&r, 0, 1, 1, pattern(33, 9), t1).await;
    assert_eq!(
        common::fetch(&fresh, (0, 1, 1), (0, None)).await,
        pattern(33, 9)[..]
    );

    // Deletes: one file (twice: gone is not an error), then everything.
    let first = l0[0].clone();
    r.delete_ltx(std::slice::from_ref(&first))
        .await
        .expect("delete");
    r.delete_ltx(&[first]).await.expect("delete again");
    let l0 = r.ltx_files(Level(0)).await.expect("list");
    assert_eq!(l0.len(), 1);
    assert_eq!(l0[0].min_txid, TxId(2));
    fresh.invalidate_cache();
    assert_eq!(fresh.ltx_files(Level(0)).await.expect("list"), l0);
    assert_eq!(raw_names(&raw).await.len(), 2);

    r.delete_all().await.expect("delete all");
    assert!(raw_names(&raw).await.is_empty());
    assert!(r.ltx_files(Level(9)).await.expect("l9").is_empty());
    fresh.invalidate_cache();
    assert!(fresh.ltx_files(Level(0)).await.expect("l0").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn long_listing_is_complete_and_ignores_other_names() {
    let srv = nats_server();
    let bucket = srv.new_bucket("many");
    let raw = raw_store(&srv, &bucket).await;
    const N: u64 = 1100;
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let raw = raw.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..N).step_by(8) {
                let name = format!("ltx/1/{:016x}-{:016x}.ltx", i + 1, i + 1);
                raw.put(name.as_str(), &mut &b"x"[..]).await.expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for other in [
        "ltx/1/notes.txt",
        "ltx/01/0000000000000001-0000000000000001.ltx",
        "db/ltx/1/0000000000000001-0000000000000001.ltx",
        "ltx/1/sub/0000000000000001-0000000000000001.ltx",
        "ltx/0/0000000000000001-0000000000000001.ltx",
    ] {
        raw.put(other, &mut &b"y"[..]).await.expect("put");
    }
    let r = replica(&srv, &bucket);
    let files = r.ltx_files(Level(1)).await.expect("list");
    assert_eq!(files.len(), N as usize);
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f.min_txid, TxId(i as u64 + 1));
        assert_eq!(f.size, 1);
    }
    // Without our header, the creation time is the object's modification time.
    let now = SystemTime::now();
    let age = now.duration_since(files[0].created_at).unwrap_or_default();
    assert!(age < Duration::from_secs(600), "{:?}", files[0].created_at);
    assert_eq!(r.ltx_files(Level(0)).await.expect("l0").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn url_and_config_keys_open_the_same_replica() {
    let srv = nats_server();
    let bucket = srv.new_bucket("url");
    let by_url = open_replica(&srv.replica_url(&bucket)).expect("url");
    assert_eq!(by_url.kind(), "nats");
    common::write(&*by_url, 0, (1, 1), b"hello", SystemTime::now())
        .await
        .expect("write");
    let by_keys = open_replica_from_config(
        "nats",
        Some(&srv.url),
        [
            ("bucket", bucket.as_str()),
            ("username", srv.user.as_str()),
            ("password", srv.pass.as_str()),
            ("path", "ignored"),
        ],
    )
    .expect("keys");
    let got = common::fetch(&*by_keys, (0, 1, 1), (0, None)).await;
    assert_eq!(&got[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn wrong_credentials_and_missing_bucket_are_clear_errors() {
    let srv = nats_server();
    let bucket = srv.new_bucket("auth");
    let proxy = Proxy::start(srv.authority()).await;
    let url = format!("nats://127.0.0.1:{}", proxy.addr.port());
    let bad = NatsSettings::from_config(
        Some(&format!("{url}/{bucket}")),
        [("username", srv.user.as_str()), ("password", "wrong")],
    )
    .expect("settings");
    let r = NatsReplica::with_options(bad, common::fast_retry(), Duration::from_secs(60));
    let start = Instant::now();
    let e = r.ltx_files(Level(0)).await.expect_err("bad password");
    let msg = e.to_string();
    assert!(
        msg.contains("authorization violation") && msg.contains(&bucket) && msg.contains(&url),
        "{msg}"
    );
    // Not retried: one connection, at once.
    assert_eq!(proxy.connections(), 1, "{msg}");
    assert!(start.elapsed() < Duration::from_secs(2));

    let r = replica(&srv, "no-such-bucket");
    let e = common::write(&r, 0, (1, 1), b"x", SystemTime::now())
        .await
        .expect_err("missing bucket");
    let msg = e.to_string();
    assert!(
        msg.contains("\"no-such-bucket\"") && msg.contains("created beforehand"),
        "{msg}"
    );
    assert!(!e.is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn open_is_lazy_and_refused_connections_are_retried() {
    let srv = nats_server();
    let bucket = srv.new_bucket("lazy");
    let proxy = Proxy::start(srv.authority()).await;
    proxy.refuse.store(true, Ordering::SeqCst);
    let url = format!("nats://127.0.0.1:{}", proxy.addr.port());
    let r = NatsReplica::with_options(
        settings(&srv, &url, &bucket),
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(400),
        },
        Duration::from_secs(60),
    );
    assert_eq!(proxy.connections(), 0, "open must not connect");
    // The server refuses connections for a while, then accepts them: the write succeeds.
    let p = proxy.refuse.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        p.store(false, Ordering::SeqCst);
    });
    write(&r, 0, 1, 1, pattern(5000, 4), SystemTime::now()).await;
    assert!(proxy.refused() >= 1, "no connection was refused");
    assert_eq!(
        common::fetch(&r, (0, 1, 1), (0, None)).await,
        pattern(5000, 4)[..]
    );
    assert_eq!(r.connects(), 1);

    // A server that stays away: the error names the object after the retries.
    proxy.refuse.store(true, Ordering::SeqCst);
    let r = NatsReplica::with_options(
        settings(&srv, &url, &bucket),
        common::fast_retry(),
        Duration::from_secs(60),
    );
    let e = common::fetch_err(&r, (0, 1, 1), (0, None)).await;
    let msg = e.to_string();
    assert!(
        msg.contains("ltx/0/0000000000000001-0000000000000001.ltx"),
        "{msg}"
    );
    assert!(
        proxy.refused() > common::fast_retry().max_attempts as u64,
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn idle_replica_closes_its_connection_and_sends_nothing() {
    let srv = nats_server();
    let bucket = srv.new_bucket("idle");
    let proxy = Proxy::start(srv.authority()).await;
    let url = format!("nats://127.0.0.1:{}", proxy.addr.port());
    let r = NatsReplica::with_options(
        settings(&srv, &url, &bucket),
        common::fast_retry(),
        Duration::from_secs(2),
    );
    write(&r, 0, 1, 1, pattern(100, 5), SystemTime::now()).await;
    assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 1);
    assert!(r.is_connected().await);
    // Listings are cached: asking again costs nothing (once the UNSUB of the listing's
    // consumer has gone out).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proxy.bytes();
    assert_eq!(r.ltx_files(Level(0)).await.expect("cached").len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.bytes(), before, "a cached listing went to the server");

    // Without use the connection is closed, and nothing crosses the wire after that.
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.is_connected().await {
        assert!(
            Instant::now() < deadline,
            "the idle connection was not closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.open(), 0, "the proxy still has an open connection");
    let idle_from = proxy.bytes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(proxy.bytes(), idle_from, "bytes moved while idle");

    // The next use connects again.
    write(&r, 0, 2, 2, pattern(100, 6), SystemTime::now()).await;
    assert_eq!(r.connects(), 2);
    assert_eq!(
        common::fetch(&r, (0, 2, 2), (0, None)).await,
        pattern(100, 6)[..]
    );
}

/// Copies one direction, counting bytes as they pass.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    bytes: &AtomicU64,
) {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        bytes.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP proxy that counts connections and bytes and can refuse connections.
struct Proxy {
    addr: SocketAddr,
    refuse: Arc<AtomicBool>,
    conns: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let p = Proxy {
            addr,
            refuse: Arc::default(),
            conns: Arc::default(),
            refused: Arc::default(),
            open: Arc::default(),
            bytes: Arc::default(),
        };
        let (refuse, conns, refused, open, bytes) = (
            p.refuse.clone(),
            p.conns.clone(),
            p.refused.clone(),
            p.open.clone(),
            p.bytes.clone(),
        );
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                conns.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (open, bytes) = (open.clone(), bytes.clone());
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, &bytes), pipe(sr, cw, &bytes));
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        p
    }

    fn connections(&self) -> u64 {
        self.conns.load(Ordering::SeqCst)
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}
