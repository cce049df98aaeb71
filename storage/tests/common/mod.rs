//! Shared pieces of the S3 tests: the s3s-fs server from `tests/s3/start.sh`, a replica on a
//! fresh prefix, and a TCP proxy that counts requests and injects faults.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use storage::s3::{RetryPolicy, S3Replica, S3Settings};
use storage::{Body, LtxFileInfo, LtxName, ReplicaClient, StorageError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use test_support::env;
// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use env::{s3_server as server, S3Server as Server};

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    test_support::unique_name(name)
}

/// `r.read_range` of file `(level, min, max)`.
pub async fn read(
    r: &dyn ReplicaClient,
    level: u8,
    min: u64,
    max: u64,
    offset: u64,
    len: Option<u64>,
) -> Result<Bytes, StorageError> {
    r.read_range(
        LtxName::new(Level(level), TxId(min), TxId(max)),
        offset,
        len,
    )
    .await
}

/// Bytes `offset..` (`len` of them, or to the end) of the file `(level, min, max)`; panics on
/// an error.
pub async fn fetch(
    r: &dyn ReplicaClient,
    (level, min, max): (u8, u64, u64),
    (offset, len): (u64, Option<u64>),
) -> Bytes {
    let got = read(r, level, min, max, offset, len).await;
    got.unwrap_or_else(|e| panic!("read {level}/{min}-{max} at {offset}+{len:?}: {e}"))
}

/// The error of [`fetch`]ing what is not there; panics if the read succeeds.
pub async fn fetch_err(
    r: &dyn ReplicaClient,
    key: (u8, u64, u64),
    range: (u64, Option<u64>),
) -> StorageError {
    let ((level, min, max), (offset, len)) = (key, range);
    let got = read(r, level, min, max, offset, len).await;
    got.expect_err("a read that must fail")
}

/// `r.write_ltx` of `body` (copied) as file `(level, min, max)`, created at `at`.
pub async fn write(
    r: &dyn ReplicaClient,
    level: u8,
    (min, max): (u64, u64),
    body: impl AsRef<[u8]>,
    at: SystemTime,
) -> Result<LtxFileInfo, StorageError> {
    let body = Body::Bytes(Bytes::copy_from_slice(body.as_ref()));
    write_body(r, level, (min, max), body, at).await
}

/// `r.write_ltx` of `body` (bytes or a file) as file `(level, min, max)`, created at `at`.
pub async fn write_body(
    r: &dyn ReplicaClient,
    level: u8,
    (min, max): (u64, u64),
    body: Body,
    at: SystemTime,
) -> Result<LtxFileInfo, StorageError> {
    r.write_ltx(LtxName::new(Level(level), TxId(min), TxId(max)), body, at)
        .await
}

/// Writes the L0 files 3-3, 1-1 and 2-2 (in that order, so a listing must sort them), each
/// `body(txid)` created at `t + txid` seconds.
pub async fn write_l0s<B: AsRef<[u8]>>(
    r: &dyn ReplicaClient,
    t: SystemTime,
    body: impl Fn(u64) -> B,
) {
    for i in [3u64, 1, 2] {
        let at = t + Duration::from_secs(i);
        write(r, 0, (i, i), body(i), at).await.expect("write");
    }
}

/// The names that the replica `$r` lists under `$prefix/`, with its backend's own
/// `list_prefix`.
macro_rules! listed {
    ($r:expr, $prefix:expr) => {
        $r.list_prefix(&format!("{}/", $prefix))
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.name)
            .collect::<Vec<String>>()
    };
}
pub(crate) use listed;

/// What listing `r` fails with (a certificate it does not trust), which must come at once
/// (within 5 s: not retried).
pub async fn refused_at_once(r: &dyn ReplicaClient) -> String {
    let start = std::time::Instant::now();
    let e = r.ltx_files(Level(0)).await.expect_err("unknown issuer");
    assert!(start.elapsed() < Duration::from_secs(5), "retried: {e}");
    e.to_string()
}

/// Writes L0 1-2 ("over tls") through `r`, which must then list that one L0 file and read it
/// back from `offset`.
pub async fn round_trip_over_tls(r: &dyn ReplicaClient, offset: u64) {
    let body = b"over tls";
    write(r, 0, (1, 2), body, SystemTime::now())
        .await
        .expect("write over TLS");
    let files = r.ltx_files(Level(0)).await.expect("list over TLS");
    assert_eq!(files.len(), 1);
    let got = read(r, 0, 1, 2, offset, None).await.expect("read over TLS");
    assert_eq!(&got[..], &body[offset as usize..]);
}

/// `(min TXID, size)` of each file, in order.
pub fn sizes(files: &[LtxFileInfo]) -> Vec<(u64, u64)> {
    files.iter().map(|f| (f.min_txid.0, f.size)).collect()
}

pub fn settings(s: &Server, endpoint: &str, path: &str) -> S3Settings {
    S3Settings {
        bucket: s.bucket.clone(),
        path: path.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".to_owned()),
        access_key_id: Some(s.access_key.clone()),
        secret_access_key: Some(s.secret_key.clone().into()),
        ..S3Settings::default()
    }
}

/// Quick retries so fault tests stay fast.
pub fn fast_retry() -> RetryPolicy {
    retry(5, 100)
}

/// `max_attempts` attempts, 10 ms to `max_delay_ms` apart.
pub fn retry(max_attempts: u32, max_delay_ms: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(max_delay_ms),
    }
}

pub fn replica(s: &Server, path: &str) -> S3Replica {
    S3Replica::with_retry_policy(settings(s, &s.endpoint, path), fast_retry()).expect("replica")
}

/// What the proxy saw and what it is told to break.
#[derive(Default)]
pub struct ProxyState {
    /// Request heads seen (request line and headers), in order.
    pub requests: Mutex<Vec<String>>,
    /// Cut the next response after this many bytes (0 = off); fires once.
    pub cut_next_response_after: AtomicUsize,
    /// Answer this many next requests with 503 SlowDown.
    pub fail_next_with_503: AtomicUsize,
}

impl ProxyState {
    pub fn request_count(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Cuts the next response after `bytes` bytes.
    pub fn cut_next_response(&self, bytes: usize) {
        self.cut_next_response_after.store(bytes, Ordering::SeqCst);
    }

    /// Answers the next `n` requests with 503 SlowDown (0: stops doing so).
    pub fn fail_next(&self, n: usize) {
        self.fail_next_with_503.store(n, Ordering::SeqCst);
    }

    /// How many of the 503s asked for are still to be sent.
    pub fn failures_left(&self) -> usize {
        self.fail_next_with_503.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

pub struct Proxy {
    pub endpoint: String,
    pub state: Arc<ProxyState>,
}

fn upstream_addr(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Starts a proxy on 127.0.0.1 in front of the (loopback) S3 server.
pub async fn proxy(s: &Server) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(ProxyState::default());
    let upstream = upstream_addr(&s.endpoint);
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let st = st.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let _ = handle(client, &upstream, st).await;
            });
        }
    });
    Proxy {
        endpoint: format!("http://{addr}"),
        state,
    }
}

const SLOWDOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

async fn handle(client: TcpStream, upstream: &str, st: Arc<ProxyState>) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (mut cr, cw) = client.into_split();
    let cw = tokio::sync::Mutex::new(cw);
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                sw.shutdown().await?;
                return Ok::<_, std::io::Error>(false);
            }
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let mut new_request = false;
            for (i, _) in text.match_indices(" HTTP/1.1\r\n") {
                let start = text[..i].rfind("\r\n").map_or(0, |p| p + 2);
                let end = text[i..].find("\r\n\r\n").map_or(text.len(), |p| i + p);
                if let Ok(mut r) = st.requests.lock() {
                    r.push(text[start..end].to_owned());
                }
                new_request = true;
            }
            if new_request
                && st
                    .fail_next_with_503
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                    .is_ok()
            {
                let resp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{SLOWDOWN}",
                    SLOWDOWN.len()
                );
                cw.lock().await.write_all(resp.as_bytes()).await?;
                return Ok(true);
            }
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut cut: Option<usize> = None;
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if cut.is_none() {
                let armed = st.cut_next_response_after.swap(0, Ordering::SeqCst);
                if armed > 0 {
                    cut = Some(armed);
                }
            }
            match cut.as_mut() {
                Some(left) if *left <= n => {
                    let mut w = cw.lock().await;
                    w.write_all(&buf[..*left]).await?;
                    w.flush().await?;
                    // Drop the connection mid-body.
                    return Ok(());
                }
                Some(left) => {
                    *left -= n;
                    cw.lock().await.write_all(&buf[..n]).await?;
                }
                None => cw.lock().await.write_all(&buf[..n]).await?,
            }
        }
    };
    // Either direction ending (or a fault) ends the connection, as a real drop would.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    Ok(())
}

/// A test CA and a `localhost`/127.0.0.1 server certificate it signed, made with the
/// `openssl` CLI in a new temporary directory: `(dir, ca, cert, key)`. Panics where there is
/// no openssl.
pub fn test_certificates() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let p = |n: &str| dir.join(n);
    let ext = p("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write leaf.ext");
    let run = |args: &[std::ffi::OsString]| {
        std::process::Command::new("openssl")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    // `-keyout <dir>/<key> -out <dir>/<out>`
    let key_and_out =
        |key: &str, out: &str| [os("-keyout"), p(key).into(), os("-out"), p(out).into()];
    let ec = [
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:prime256v1"),
        os("-nodes"),
    ];
    let mut ca_args = vec![
        os("req"),
        os("-x509"),
        os("-days"),
        os("2"),
        os("-subj"),
        os("/CN=ls-test-ca"),
    ];
    ca_args.extend(ec.iter().cloned());
    ca_args.extend(key_and_out("ca.key", "ca.pem"));
    let mut csr_args = vec![os("req"), os("-subj"), os("/CN=localhost")];
    csr_args.extend(ec.iter().cloned());
    csr_args.extend(key_and_out("key.pem", "leaf.csr"));
    let sign_args = vec![
        os("x509"),
        os("-req"),
        os("-days"),
        os("2"),
        os("-in"),
        p("leaf.csr").into(),
        os("-CA"),
        p("ca.pem").into(),
        os("-CAkey"),
        p("ca.key").into(),
        os("-CAcreateserial"),
        os("-extfile"),
        ext.into(),
        os("-out"),
        p("cert.pem").into(),
    ];
    assert!(
        run(&ca_args) && run(&csr_args) && run(&sign_args),
        "openssl could not make the test certificates"
    );
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    (tmp, ca, cert, key)
}

/// A TLS-terminating proxy on 127.0.0.1 in front of the plain-HTTP server.
pub async fn tls_proxy(s: &Server, cert: &std::path::Path, key: &std::path::Path) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let upstream = upstream_addr(&s.endpoint);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    port
}
