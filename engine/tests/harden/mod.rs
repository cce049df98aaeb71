//! Helpers shared by the hardening suites (crash, faults, bad inputs, disk full, lock page,
//! security): the `ls-restore` binary next to `ls-engine`, the S3 test server, replica chain
//! checks and a fault-injecting HTTP proxy.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::common::ls_restore_bin;

pub fn ls_restore() -> Command {
    let mut c = Command::new(ls_restore_bin());
    c.env_remove("LOG_LEVEL");
    c
}

/// `ls-restore -o <out> <url>` for an S3 `url`, with the keys `ak`/`sk` in the variables
/// Litestream's and the AWS SDKs' readers take, no instance metadata, and few retries.
pub fn restore_s3_cmd(url: &str, out: &Path, ak: &str, sk: &str) -> Command {
    let mut c = ls_restore();
    c.env("LITESTREAM_ACCESS_KEY_ID", ak)
        .env("LITESTREAM_SECRET_ACCESS_KEY", sk)
        .env("AWS_ACCESS_KEY_ID", ak)
        .env("AWS_SECRET_ACCESS_KEY", sk)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LS_S3_RETRY_MAX", "2")
        .arg("-o")
        .arg(out)
        .arg(url);
    c
}

/// `ls-restore -o <out> file://<replica>`: what it printed and how it exited.
pub fn restore_to(replica: &Path, out: &Path) -> Output {
    let mut c = ls_restore();
    c.arg("-o")
        .arg(out)
        .arg(format!("file://{}", replica.display()));
    run(c)
}

pub fn run(mut c: Command) -> Output {
    c.output().expect("run command")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use crate::common::{s3_server, S3Server as S3};

pub fn unique(tag: &str) -> String {
    test_support::unique_name(tag)
}

/// An `s3` replica block (indented for `write_s3_config`).
pub fn s3_config(
    db: &Path,
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    ak: &str,
    sk: &str,
) -> String {
    format!(
        "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: s3\n      \
         bucket: {bucket}\n      path: {prefix}\n      endpoint: {endpoint}\n      \
         region: us-east-1\n      force-path-style: true\n      access-key-id: {ak}\n      \
         secret-access-key: {sk}\n      sync-interval: 100ms\n",
        db.display()
    )
}

/// [`s3_config`] for `db` on the test server `srv` (its bucket and keys), reached at `endpoint`,
/// under `prefix`.
pub fn srv_config(srv: &S3, db: &Path, endpoint: &str, prefix: &str) -> String {
    s3_config(
        db,
        endpoint,
        &srv.bucket,
        prefix,
        &srv.access_key,
        &srv.secret_key,
    )
}

/// The S3 URL `litestream restore` and `ls-restore` take.
pub fn s3_url(endpoint: &str, bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1&forcePathStyle=true")
}

/// A tmpfs mounted for one test, unmounted when dropped (also on panic).
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Panics when the mount fails (it needs root, as `tests/run-all.sh` has in CI).
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("mount point");
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(dir)
            .output();
        match o {
            Ok(o) if o.status.success() => Tmpfs(dir.to_owned()),
            Ok(o) => panic!("this test needs to mount a tmpfs (root): {}", text(&o)),
            Err(e) => panic!("this test needs to mount a tmpfs (root): {e}"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Linux's errno for "No space left on device" (no libc dependency in the tests for one
/// constant).
pub const ENOSPC: i32 = 28;

/// Fills the file system holding `dir` with `dir/filler` until ENOSPC.
pub fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).expect("filler");
    let chunk = vec![0xa5u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", p.display()),
        }
    }
    let _ = f.sync_all();
    p
}

/// (level, min, max) of every `.ltx` file under `root/ltx/<level>/`.
pub fn ltx_files(root: &Path) -> Vec<(u32, u64, u64)> {
    let mut v = Vec::new();
    let Ok(levels) = fs::read_dir(root.join("ltx")) else {
        return v;
    };
    for l in levels.flatten() {
        let Ok(level) = l.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for f in fs::read_dir(l.path()).into_iter().flatten().flatten() {
            if let Some(r) = parse_ltx_name(&f.file_name().to_string_lossy()) {
                v.push((level, r.0, r.1));
            }
        }
    }
    v.sort_unstable();
    v
}

pub fn parse_ltx_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".ltx")?;
    let (a, b) = stem.split_once('-')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// Highest L0 TXID in a replica or meta root.
pub fn max_l0(root: &Path) -> u64 {
    ltx_files(root)
        .into_iter()
        .filter(|f| f.0 == 0)
        .map(|f| f.2)
        .max()
        .unwrap_or(0)
}

/// Every level's files form a chain without gaps or overlaps; level 0 starts at TXID 1.
/// Returns the number of L0 files.
pub fn assert_chain(root: &Path) -> usize {
    let files = ltx_files(root);
    let mut l0 = 0;
    let levels: std::collections::BTreeSet<u32> = files.iter().map(|f| f.0).collect();
    for level in levels {
        if level == 9 {
            continue;
        }
        let mut prev: Option<u64> = None;
        for &(_, min, max) in files.iter().filter(|f| f.0 == level) {
            assert!(min <= max, "level {level}: bad range {min}-{max}");
            match prev {
                None if level == 0 => assert_eq!(min, 1, "level 0 does not start at TXID 1"),
                None => {}
                Some(p) => assert_eq!(
                    min,
                    p + 1,
                    "level {level}: gap or overlap after TXID {p} (next file {min}-{max})"
                ),
            }
            prev = Some(max);
            if level == 0 {
                l0 += 1;
            }
        }
    }
    l0
}

/// What the proxy does to the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the client connection without an answer.
    Reset,
    /// Answer `500 InternalError` without forwarding.
    Status500,
    /// Answer `503 SlowDown` without forwarding.
    SlowDown,
    /// Forward after a delay.
    Delay,
    /// Forward, then cut the response body in half (the headers promise all of it).
    Truncate,
    /// Forward nothing and answer nothing for a while, then close.
    Stall,
}

pub const FAULTS: [Fault; 6] = [
    Fault::Reset,
    Fault::Status500,
    Fault::SlowDown,
    Fault::Delay,
    Fault::Truncate,
    Fault::Stall,
];

/// A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of an upstream `host:port`. Each
/// connection serves one request (the proxy answers with `Connection: close`). Every
/// `every`-th request (when enabled) gets the next fault of the rotation.
pub struct Proxy {
    pub port: u16,
    pub enabled: Arc<AtomicBool>,
    pub requests: Arc<AtomicU64>,
    pub injected: Arc<Mutex<Vec<Fault>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: &str, every: u64, faults: &[Fault], stall: Duration) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let enabled = Arc::new(AtomicBool::new(true));
        let requests = Arc::new(AtomicU64::new(0));
        let injected = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let faults = faults.to_vec();
        let (en, rq, inj, st) = (
            enabled.clone(),
            requests.clone(),
            injected.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut rot = 0usize;
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let n = rq.fetch_add(1, Ordering::Relaxed) + 1;
                        let fault = if en.load(Ordering::Relaxed) && n % every == 0 {
                            let f = faults[rot % faults.len()];
                            rot += 1;
                            inj.lock().unwrap_or_else(|e| e.into_inner()).push(f);
                            Some(f)
                        } else {
                            None
                        };
                        let up = upstream.clone();
                        std::thread::spawn(move || {
                            let _ = serve(c, &up, fault, stall);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Proxy {
            port,
            enabled,
            requests,
            injected,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn injected(&self) -> Vec<Fault> {
        self.injected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP message head (and returns it with whatever body bytes came along).
fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok((buf, rest));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header_value(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Copies exactly `len` bytes (after `already`) from `from` to `to`.
fn copy_exact(
    from: &mut TcpStream,
    to: &mut TcpStream,
    already: &[u8],
    len: u64,
) -> std::io::Result<()> {
    to.write_all(already)?;
    let mut left = len.saturating_sub(already.len() as u64);
    let mut chunk = vec![0u8; 65536];
    while left > 0 {
        let want = chunk.len().min(left as usize);
        let n = from.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        to.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// With `Connection: close` forced on the request, the header is replaced.
fn close_request(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for l in text.split("\r\n") {
        if l.is_empty() {
            continue;
        }
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn serve(
    mut c: TcpStream,
    upstream: &str,
    fault: Option<Fault>,
    stall: Duration,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (head, body_start) = read_head(&mut c)?;
    let req_len: u64 = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // A chunked (aws-chunked streaming) upload is relayed until the client half-closes; the
    // test configuration does not produce one, so treat it as a plain body of known length.
    let canned = |c: &mut TcpStream, code: &str, err: &str| -> std::io::Result<()> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{err}</Code><Message>injected</Message></Error>"
        );
        let r = format!(
            "HTTP/1.1 {code}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        c.write_all(r.as_bytes())
    };
    match fault {
        Some(Fault::Reset) => {
            // SO_LINGER 0 would be a true RST; a plain close mid-exchange is what clients see
            // most often and must retry as well.
            let _ = c.shutdown(Shutdown::Both);
            return Ok(());
        }
        Some(Fault::Status500) => {
            return canned(&mut c, "500 Internal Server Error", "InternalError")
        }
        Some(Fault::SlowDown) => return canned(&mut c, "503 Slow Down", "SlowDown"),
        Some(Fault::Stall) => {
            std::thread::sleep(stall);
            let _ = c.shutdown(Shutdown::Both);
            return Ok(());
        }
        Some(Fault::Delay) => std::thread::sleep(Duration::from_millis(300)),
        _ => {}
    }
    let mut u = TcpStream::connect(upstream)?;
    u.set_read_timeout(Some(Duration::from_secs(60)))?;
    u.write_all(&close_request(&head))?;
    copy_exact(&mut c, &mut u, &body_start, req_len)?;
    let (rhead, rbody) = read_head(&mut u)?;
    let resp_len: Option<u64> = header_value(&rhead, "content-length").and_then(|v| v.parse().ok());
    c.write_all(&rhead)?;
    let is_head = head.starts_with(b"HEAD ");
    let status_no_body = rhead.starts_with(b"HTTP/1.1 204") || rhead.starts_with(b"HTTP/1.1 304");
    let resp_len = if is_head || status_no_body {
        Some(0)
    } else {
        resp_len
    };
    match (fault, resp_len) {
        (Some(Fault::Truncate), Some(len)) if len > 1 => {
            let half = len / 2;
            let first = &rbody[..rbody.len().min(half as usize)];
            copy_exact(&mut u, &mut c, first, half)?;
            let _ = c.shutdown(Shutdown::Both);
        }
        (_, Some(len)) => copy_exact(&mut u, &mut c, &rbody, len)?,
        (_, None) => {
            c.write_all(&rbody)?;
            std::io::copy(&mut u, &mut c)?;
        }
    }
    Ok(())
}
