//! Heartbeats (`heartbeat-url`, `heartbeat-interval`): a local HTTP server counts the GETs.
//! They arrive at the interval while every database syncs, stop while a replica fails, come
//! back when it recovers, and none is sent without `heartbeat-url`. The interval is shortened
//! through the `LS_TEST_HEARTBEAT_INTERVAL` hook; the config itself refuses less than 1m.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// A server answering every request with 200 and counting `GET /ping`s.
struct Pings {
    url: String,
    count: Arc<AtomicUsize>,
}

impl Pings {
    fn start() -> Pings {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/ping", l.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                if buf.starts_with(b"GET /ping ") {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Pings { url, count }
    }

    fn n(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn config(path: &Path, dbs: &[(PathBuf, PathBuf)], top: &str) {
    fast_config(path, dbs);
    let s = format!("{top}{}", fs::read_to_string(path).expect("read"));
    fs::write(path, s).expect("write");
}

const HOOK: (&str, &str) = ("LS_TEST_HEARTBEAT_INTERVAL", "1s");

#[test]
fn heartbeats_follow_sync_health() {
    let (tmp, pings) = (tempfile::tempdir().expect("tempdir"), Pings::start());
    let d = tmp.path();
    let (a, rep_a) = (d.join("a.db"), d.join("rep-a"));
    let (b, rep_b) = (d.join("b.db"), d.join("rep-b"));
    let cfg = d.join("c.yml");
    config(
        &cfg,
        &[(a.clone(), rep_a.clone()), (b.clone(), rep_b.clone())],
        &format!("heartbeat-url: {}\nheartbeat-interval: 1m\n", pings.url),
    );
    let (ca, cb) = (app(&a, 4096), app(&b, 4096));
    setup_table(&ca);
    setup_table(&cb);
    let engine = Engine::start_env(&cfg, &d.join("log"), &[HOOK]);
    assert!(wait_for_l0(&rep_a, 1, Duration::from_secs(20)));
    assert!(wait_for_l0(&rep_b, 1, Duration::from_secs(20)));

    // Healthy: about one per second (idle databases whose replicas hold everything count).
    let start = pings.n();
    std::thread::sleep(Duration::from_millis(4500));
    let got = pings.n() - start;
    assert!(
        (3..=6).contains(&got),
        "{got} heartbeats in 4.5 s; log:\n{}",
        engine.tail()
    );

    // b's replica breaks (a file where its directory was): writes to b fail to upload, and the
    // heartbeats stop although a is fine.
    let moved = d.join("rep-b.moved");
    fs::rename(&rep_b, &moved).expect("move replica");
    fs::write(&rep_b, b"in the way").expect("block replica");
    insert_rows(&cb, 0, 10, 100);
    assert!(
        wait_until(Duration::from_secs(20), || fs::read_to_string(&engine.log)
            .unwrap_or_default()
            .contains("replica sync error")),
        "no replica error; log:\n{}",
        engine.tail()
    );
    std::thread::sleep(Duration::from_millis(1200));
    let before = pings.n();
    insert_rows(&ca, 0, 10, 100);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(pings.n(), before, "heartbeat sent while a replica fails");

    // Repaired: the upload retries succeed and the heartbeats resume.
    fs::remove_file(&rep_b).expect("unblock");
    fs::rename(&moved, &rep_b).expect("restore replica");
    assert!(
        wait_until(Duration::from_secs(30), || pings.n() >= before + 2),
        "heartbeats did not resume; log:\n{}",
        engine.tail()
    );
    engine.stop();
}

#[test]
fn no_heartbeat_without_url_and_config_limits() {
    let (tmp, pings) = (tempfile::tempdir().expect("tempdir"), Pings::start());
    let d = tmp.path();
    let (a, rep_a) = (d.join("a.db"), d.join("rep-a"));
    let cfg = d.join("c.yml");
    // heartbeat-interval alone sends nothing.
    config(
        &cfg,
        &[(a.clone(), rep_a.clone())],
        "heartbeat-interval: 1m\n",
    );
    let ca = app(&a, 4096);
    setup_table(&ca);
    let engine = Engine::start_env(&cfg, &d.join("log"), &[HOOK]);
    assert!(wait_for_l0(&rep_a, 1, Duration::from_secs(20)));
    insert_rows(&ca, 0, 10, 100);
    std::thread::sleep(Duration::from_secs(3));
    engine.stop();
    assert_eq!(pings.n(), 0);

    // The config refuses an interval under a minute and a URL that is not http(s).
    for (top, key) in [
        (
            format!("heartbeat-url: {}\nheartbeat-interval: 30s\n", pings.url),
            "heartbeat-interval",
        ),
        (
            "heartbeat-url: ftp://example.com/x\n".to_owned(),
            "heartbeat-url",
        ),
    ] {
        config(&cfg, &[(a.clone(), rep_a.clone())], &top);
        let o = Command::new(ENGINE)
            .args(["replicate", "-config"])
            .arg(&cfg)
            .output()
            .expect("run");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(key), "{top}: {e}");
    }
    drop(ca);
}
