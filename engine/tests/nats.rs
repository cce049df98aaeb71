//! ls-engine and a NATS JetStream object store (nats-server of `tests/nats/start.sh`): an idle
//! engine sends nothing to the server, then closes its connection. Replication restored by the
//! real Litestream is the shared scenario in `conformance.rs`.

use crate::common;
use test_support::nats as nats_env;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nats_env::{nats_server, NatsServer};

/// One `dbs:` entry replicating `db` to `bucket` on the server at `url` (`nats://host:port`).
fn db_entry(db: &Path, srv: &NatsServer, url: &str, bucket: &str) -> String {
    format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: nats\n      \
         url: {url}/{bucket}\n      username: {}\n      password: {}\n      \
         sync-interval: 100ms\n",
        db.display(),
        srv.user,
        srv.pass
    )
}

/// A TCP proxy counting the bytes that cross it and the connections open through it.
struct ByteProxy {
    port: u16,
    bytes: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
}

impl ByteProxy {
    fn start(upstream: &str) -> ByteProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (bytes, open) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (b, o, up) = (bytes.clone(), open.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&up) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                o.fetch_add(1, Ordering::SeqCst);
                let (b1, b2, o2) = (b.clone(), b.clone(), o.clone());
                std::thread::spawn(move || copy_counting(client, server, &b1));
                std::thread::spawn(move || {
                    copy_counting(s2, c2, &b2);
                    o2.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ByteProxy { port, bytes, open }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }
}

fn copy_counting(mut from: TcpStream, mut to: TcpStream, n: &AtomicU64) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(k) = from.read(&mut buf) {
        if k == 0 || to.write_all(&buf[..k]).is_err() {
            break;
        }
        n.fetch_add(k as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// Idle databases cost no NATS traffic once start-up replication and compaction settled; the
/// connection is closed after 90 s without use (before the client's first PING at 120 s),
/// and the first write after that connects again and is shipped.
#[test]
#[ignore = "slow suite; needs the NATS test server"]
fn idle_engine_sends_nothing_and_closes_its_connection() {
    let srv = nats_server();
    let proxy = ByteProxy::start(srv.authority());
    let url = format!("nats://127.0.0.1:{}", proxy.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, apps) = idle_dbs(dir.path(), "", 2, |i, db| {
        let bucket = srv.new_bucket(&format!("idle{i}"));
        db_entry(db, &srv, &url, &bucket) + "    checkpoint-interval: 3s\n"
    });
    let e = Engine::start(&config, &dir.path().join("engine.log"));

    // Settled: no byte for 8 s in a row.
    let quiet = wait_until(Duration::from_secs(90), || {
        let n = proxy.bytes();
        std::thread::sleep(Duration::from_secs(8));
        n > 0 && proxy.bytes() == n
    });
    assert!(quiet, "traffic never stopped; log:\n{}", e.tail());
    let settled = proxy.bytes();
    assert!(proxy.open() >= 2, "{} connections open", proxy.open());
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        proxy.bytes(),
        settled,
        "bytes in 30 s of idle; log:\n{}",
        e.tail()
    );

    // The connections close on their own, and nothing moves after that.
    let closed = wait_until(Duration::from_secs(120), || proxy.open() == 0);
    assert!(closed, "idle connections stayed open; log:\n{}", e.tail());
    let after_close = proxy.bytes();
    eprintln!(
        "nats idle: {settled} bytes to settle, 0 in 30 s idle, {} for the idle close",
        after_close - settled
    );
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(proxy.bytes(), after_close, "bytes after the idle close");

    // A write is shipped at once over a new connection.
    write_ships_at_once(&apps[1], e, "sent nothing", || proxy.bytes() > after_close);
}
