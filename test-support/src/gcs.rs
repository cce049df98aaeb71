//! The GCS test server started by `tests/gcs/start.sh` (fake-gcs-server), for the test suites
//! of every crate. Without it a test is skipped, unless
//! `LS_INTEROP=1` says it must run, which makes a missing server a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct GcsServer {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// `127.0.0.1:PORT`, the `STORAGE_EMULATOR_HOST` value for Litestream and our binaries.
    pub emulator_host: String,
    pub bucket: String,
}

/// The server from the `LS_GCS_*` variables, or `None` after a skip message naming `test`.
pub fn gcs_server(test: &str) -> Option<GcsServer> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match get("LS_GCS_ENDPOINT") {
        Some(endpoint) => Some(GcsServer {
            emulator_host: get("LS_GCS_EMULATOR_HOST")
                .unwrap_or_else(|| endpoint.trim_start_matches("http://").to_owned()),
            endpoint,
            bucket: get("LS_GCS_BUCKET").unwrap_or_else(|| "ls-test".to_owned()),
        }),
        None => {
            assert!(
                !std::env::var("LS_INTEROP").is_ok_and(|v| v == "1"),
                "{test}: LS_INTEROP=1 but LS_GCS_ENDPOINT is unset; source tests/gcs/start.sh first"
            );
            eprintln!("SKIP {test}: no GCS server (source tests/gcs/start.sh to run it)");
            None
        }
    }
}

impl GcsServer {
    /// A replica path no other test or earlier run uses.
    pub fn unique_prefix(&self, name: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{name}-{}-{nanos}", std::process::id())
    }

    /// The replica URL Litestream and ls-restore take.
    pub fn url(&self, prefix: &str) -> String {
        format!("gs://{}/{prefix}", self.bucket)
    }

    /// Environment for a Litestream or ls-* process: the emulator, and no stray credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("STORAGE_EMULATOR_HOST".into(), self.emulator_host.clone()),
            ("GOOGLE_APPLICATION_CREDENTIALS".into(), String::new()),
        ]
    }

    /// `GET path` on the server's HTTP API (status, body), for tests that inspect objects
    /// behind the backend's back.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).expect("connect to the GCS server");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read");
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut body = buf[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, body)
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}
