//! The SFTP test server of `tests/sftp/start.sh` (a private OpenSSH sshd on 127.0.0.1), for the
//! test suites of every crate. Without its `LS_SFTP_*` variables a test is
//! skipped, unless `LS_INTEROP=1` says it must run, which makes a missing server a failure.
//! Also: a second sshd with the same keys that a test may kill and restart on the same port,
//! and a TCP proxy that counts the bytes a client sends.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server from the `LS_SFTP_*` variables.
#[derive(Clone, Debug)]
pub struct SftpServer {
    /// `127.0.0.1:port`
    pub host: String,
    pub user: String,
    /// The client's private key (authorized on the server).
    pub key: PathBuf,
    /// The server's public host key, authorized_keys format.
    pub host_key: String,
    /// An absolute directory on the server (and, the server being local, on this machine)
    /// that tests use for replicas.
    pub root: PathBuf,
    /// The server's sshd_config, for a second instance.
    pub sshd_config: Option<PathBuf>,
}

fn interop_required() -> bool {
    std::env::var("LS_INTEROP").is_ok_and(|v| v == "1")
}

/// The server, or `None` after a skip message naming `test` (a failure under `LS_INTEROP=1`).
pub fn sftp_server(test: &str) -> Option<SftpServer> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("LS_SFTP_HOST"),
        get("LS_SFTP_USER"),
        get("LS_SFTP_KEY"),
        get("LS_SFTP_HOST_KEY"),
        get("LS_SFTP_ROOT"),
    ) {
        (Some(host), Some(user), Some(key), Some(host_key), Some(root)) => Some(SftpServer {
            host,
            user,
            key: PathBuf::from(key),
            host_key,
            root: PathBuf::from(root),
            sshd_config: get("LS_SFTP_SSHD_CONFIG").map(PathBuf::from),
        }),
        _ => {
            assert!(
                !interop_required(),
                "{test}: LS_INTEROP=1 but LS_SFTP_HOST/LS_SFTP_USER/LS_SFTP_KEY/LS_SFTP_HOST_KEY/\
                 LS_SFTP_ROOT are unset; source tests/sftp/start.sh first"
            );
            eprintln!("SKIP {test}: no SFTP server (source tests/sftp/start.sh to run it)");
            None
        }
    }
}

impl SftpServer {
    /// A fresh absolute replica directory under the server root (not created).
    pub fn unique_path(&self, name: &str) -> PathBuf {
        self.root.join(unique_name(name))
    }

    /// The `replica:` keys of a litestream.yml for `path` on this server (key auth, verified
    /// host key), one per line without indentation.
    pub fn yaml(&self, path: &Path) -> Vec<String> {
        vec![
            "type: sftp".into(),
            format!("host: {}", self.host),
            format!("user: {}", self.user),
            format!("key-path: {}", self.key.display()),
            format!("host-key: {}", self.host_key),
            format!("path: {}", path.display()),
        ]
    }

    /// The same keys as `(key, value)` pairs, as a config hands them to the backend.
    pub fn pairs(&self, path: &Path) -> Vec<(String, String)> {
        self.yaml(path)
            .into_iter()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect()
    }
}

/// The password login of `tests/sftp/start.sh` (`LS_SFTP_PW_*`, set when it runs as root):
/// `(user, password, home directory)`, or `None` after a skip message (a failure under
/// `LS_INTEROP=1`).
pub fn password_login(test: &str) -> Option<(String, String, PathBuf)> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("LS_SFTP_PW_USER"),
        get("LS_SFTP_PASSWORD"),
        get("LS_SFTP_PW_HOME"),
    ) {
        (Some(u), Some(p), Some(h)) => Some((u, p, PathBuf::from(h))),
        _ => {
            assert!(
                !interop_required(),
                "{test}: LS_INTEROP=1 but LS_SFTP_PW_USER/LS_SFTP_PASSWORD/LS_SFTP_PW_HOME are \
                 unset; run tests/sftp/install.sh and source tests/sftp/start.sh as root"
            );
            eprintln!("SKIP {test}: no password login (tests/sftp/start.sh as root sets one)");
            None
        }
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique_name(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// A second sshd with the test server's config and keys on its own port, which a test may
/// kill (with every session it forked) and start again on the same port.
pub struct PrivateSshd {
    config: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateSshd {
    pub fn start(srv: &SftpServer) -> Option<PrivateSshd> {
        let config = srv.sshd_config.clone()?;
        let mut s = PrivateSshd {
            config,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        s.spawn();
        Some(s)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&self.config)
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-o")
                .arg(format!("PidFile={}", self.dir.path().join("pid").display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sshd");
            self.child = Some(child);
            let up = Instant::now() + Duration::from_secs(5);
            while Instant::now() < up {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                if let Some(c) = self.child.as_mut() {
                    if let Ok(Some(_)) = c.try_wait() {
                        break; // port still held by the previous one: try again
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.kill();
            assert!(
                Instant::now() < deadline,
                "sshd did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the listener and the session processes it forked, so every connection drops.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Every descendant, found before the listener dies and they are reparented.
            let mut sessions = children_of(c.id());
            let mut i = 0;
            while i < sessions.len() {
                let more = children_of(sessions[i]);
                sessions.extend(more);
                i += 1;
            }
            let _ = c.kill();
            let _ = c.wait();
            for pid in sessions {
                // SAFETY: kill(2) on session processes our own sshd forked.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }

    /// Kill, then start again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateSshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy on 127.0.0.1 that counts the connections and the bytes clients send to
/// `upstream`.
pub struct ByteCountingProxy {
    pub addr: SocketAddr,
    sent: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl ByteCountingProxy {
    pub fn start(upstream: &str) -> ByteCountingProxy {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let sent = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let conns = accepted.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                conns.fetch_add(1, Ordering::Relaxed);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let n = counter.clone();
                std::thread::spawn(move || pipe(client, server, Some(n)));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        ByteCountingProxy {
            addr,
            sent,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Bytes clients have sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(c) = &count {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
