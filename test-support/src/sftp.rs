//! The SFTP test server of `tests/sftp/start.sh` (a private OpenSSH sshd on 127.0.0.1).
//! Also: a second sshd with the same keys that a test may kill and restart on the same port,
//! and a TCP proxy that counts the bytes a client sends.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::env::unique_name;
use crate::env::{server_vars, var, yaml_pairs};

/// The server from the `LS_SFTP_*` variables.
#[derive(Clone, Debug)]
pub struct SftpServer {
    /// `127.0.0.1:port`
    pub host: String,
    /// The login user (`LS_SFTP_USER`).
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

/// The server from the `LS_SFTP_*` variables; panics if they are unset.
pub fn sftp_server() -> SftpServer {
    let [host, user, key, host_key, root] = server_vars(
        "sftp",
        [
            "LS_SFTP_HOST",
            "LS_SFTP_USER",
            "LS_SFTP_KEY",
            "LS_SFTP_HOST_KEY",
            "LS_SFTP_ROOT",
        ],
    );
    SftpServer {
        host,
        user,
        key: PathBuf::from(key),
        host_key,
        root: PathBuf::from(root),
        sshd_config: var("LS_SFTP_SSHD_CONFIG").map(PathBuf::from),
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
        yaml_pairs(self.yaml(path))
    }
}

/// The password login of `tests/sftp/start.sh` (`LS_SFTP_PW_*`, set when it runs as root):
/// `(user, password, home directory)`; panics if it is unset.
pub fn password_login() -> (String, String, PathBuf) {
    let [user, password, home] = server_vars(
        "sftp",
        ["LS_SFTP_PW_USER", "LS_SFTP_PASSWORD", "LS_SFTP_PW_HOME"],
    );
    (user, password, PathBuf::from(home))
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
    /// The port this sshd listens on, kept across restarts.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateSshd {
    /// Starts a second sshd for `srv`; `None` if `srv` has no `sshd_config`.
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

    /// `127.0.0.1:<port>`, the `host` for a replica on this sshd.
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
    /// Where the proxy listens (`127.0.0.1:<ephemeral port>`).
    pub addr: SocketAddr,
    sent: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl ByteCountingProxy {
    /// Listens on an ephemeral port and forwards every connection to `upstream` (`host:port`).
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
