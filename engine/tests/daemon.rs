//! The daemon as a library type (issue 15 item 3), driven in-process: started from a parsed
//! config, it serves metrics on the address it reports, replicates, and stops with a final
//! sync that `ls-restore` restores; a second daemon on the same metrics address does not start,
//! with an error naming the key.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::*;
use engine::daemon::{Daemon, Options, StartError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `GET /metrics` from `addr`, the whole answer.
fn metrics(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

#[test]
fn a_daemon_in_process_replicates_and_stops_with_its_final_sync() {
    let one = one_db();
    let yaml = format!(
        "addr: 127.0.0.1:0\ndbs:\n  - path: {}\n    monitor-interval: 50ms\n    replica:\n      \
         path: {}\n      sync-interval: 50ms\n",
        one.db.display(),
        one.replica.display()
    );
    let cfg = engine::config::parse(&yaml, false).expect("config");
    let rt = runtime();
    let daemon = rt
        .block_on(Daemon::start(cfg, Options::default()))
        .expect("start");
    let addr = daemon.metrics_addr().expect("metrics address");
    assert_ne!(addr.port(), 0);
    assert!(
        wait_for_l0(&one.replica, 1, Duration::from_secs(30)),
        "no first L0 file"
    );
    let m = metrics(addr);
    assert!(
        m.starts_with("HTTP/1.1 200") && m.contains("litestream_db_size"),
        "metrics: {m}"
    );

    // Another daemon on the same address does not start, and says which key.
    let taken = format!("addr: {addr}\ndbs: []\n");
    let e = rt
        .block_on(Daemon::start(
            engine::config::parse(&taken, false).expect("config"),
            Options::default(),
        ))
        .err()
        .expect("a taken address must stop start-up");
    assert!(
        matches!(e, StartError::Addr(_)) && e.to_string().contains("addr"),
        "{e}"
    );

    // Rows written just before the stop are in its final sync.
    insert_rows(&one.conn, 1_000, 40, 30);
    assert!(
        rt.block_on(daemon.stop()),
        "the daemon stopped with an error"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "metrics still served after stop"
    );
    let out = one.dir.path().join("restored.db");
    restore_file_replica(&one.replica, &out);
    assert_same_rows(&one.db, &out);
}
