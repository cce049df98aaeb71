//! The GCS test server started by `tests/gcs/start.sh` (fake-gcs-server).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::env::{server_vars, unique_name, var};

/// The fake-gcs-server of `tests/gcs/start.sh`.
#[derive(Clone, Debug)]
pub struct GcsServer {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// `127.0.0.1:PORT`, the `STORAGE_EMULATOR_HOST` value for Litestream and our binaries.
    pub emulator_host: String,
    /// A bucket that exists (`LS_GCS_BUCKET`, default `ls-test`).
    pub bucket: String,
}

/// The server from the `LS_GCS_*` variables; panics if they are unset.
pub fn gcs_server() -> GcsServer {
    let [endpoint] = server_vars("gcs", ["LS_GCS_ENDPOINT"]);
    GcsServer {
        emulator_host: var("LS_GCS_EMULATOR_HOST")
            .unwrap_or_else(|| endpoint.trim_start_matches("http://").to_owned()),
        endpoint,
        bucket: var("LS_GCS_BUCKET").unwrap_or_else(|| "ls-test".to_owned()),
    }
}

impl GcsServer {
    /// A replica path no other test or earlier run uses.
    pub fn unique_prefix(&self, name: &str) -> String {
        unique_name(name)
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
