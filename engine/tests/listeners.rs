//! Issue 14 item 2: the metrics server and the control socket. Request bodies are bounded;
//! the socket file only ever appears with its configured mode (it is bound elsewhere,
//! chmod'ed, then renamed into place); a peer of another user is refused unless the mode lets
//! that user in.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

struct Setup {
    dir: tempfile::TempDir,
    sock: PathBuf,
    cfg: PathBuf,
}

/// One database, the control socket with `perms`, and `top` config lines.
fn setup(perms: &str, top: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let c = app(&db, 4096);
    setup_table(&c);
    drop(c);
    let cfg = dir.path().join("ls.yml");
    fast_config(&cfg, &[(db, dir.path().join("replica"))]);
    let sock = dir.path().join("ls.sock");
    let text = fs::read_to_string(&cfg).expect("cfg");
    fs::write(
        &cfg,
        format!(
            "{top}socket:\n  enabled: true\n  path: {}\n  permissions: {perms}\n{text}",
            sock.display()
        ),
    )
    .expect("cfg");
    Setup { dir, sock, cfg }
}

fn wait_socket(sock: &Path, e: &Engine) {
    assert!(
        wait_until(Duration::from_secs(30), || UnixStream::connect(sock)
            .is_ok()),
        "no socket at {}; log:\n{}",
        sock.display(),
        e.tail()
    );
}

/// Sends `head` and then `body_len` zero bytes on `w` (as far as the server lets us) while
/// reading the answer from `r` (the same connection), and returns the answer's status.
fn send_big(
    mut w: impl Write,
    mut r: impl Read + Send + 'static,
    head: &str,
    body_len: usize,
) -> u16 {
    // Read as it comes: the server answers early and may reset the connection after.
    let reader = std::thread::spawn(move || {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        raw
    });
    w.write_all(head.as_bytes()).expect("head");
    let chunk = vec![0u8; 64 << 10];
    let mut sent = 0;
    while sent < body_len {
        // The server may answer and close before taking it all.
        if w.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let raw = reader.join().expect("reader");
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}

#[test]
fn issue14_2_socket_and_metrics_request_bodies_are_bounded() {
    let s = setup("0600", "addr: 127.0.0.1:0\n");
    let e = Engine::start(&s.cfg, &s.dir.path().join("engine.log"));
    let port = e.logged_addr("serving metrics on", "url").port();
    wait_socket(&s.sock, &e);
    let len = 32 << 20;
    let head = format!(
        "POST /sync HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let sock = UnixStream::connect(&s.sock).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let r = sock.try_clone().expect("clone");
    assert_eq!(send_big(sock, r, &head, len), 413, "control socket");
    let head = format!(
        "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let r = tcp.try_clone().expect("clone");
    assert_eq!(send_big(tcp, r, &head, len), 413, "metrics");
    // Both still answer ordinary requests.
    let mut sock = UnixStream::connect(&s.sock).expect("connect");
    sock.write_all(b"GET /list HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("list");
    let mut out = String::new();
    let _ = sock.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    e.stop();
}

#[test]
fn issue14_2_socket_appears_only_with_its_mode() {
    use inotify::{EventMask, Inotify, WatchMask};
    let s = setup("0600", "");
    let mut ino = Inotify::init().expect("inotify");
    ino.watches()
        .add(s.dir.path(), WatchMask::CREATE | WatchMask::MOVED_TO)
        .expect("watch");
    // With umask 0 the socket would be created 0777 and only then narrowed.
    let log = s.dir.path().join("engine.log");
    let out = fs::File::create(&log).expect("log");
    let mut cmd = std::process::Command::new(ENGINE);
    cmd.args(["replicate", "-config"])
        .arg(&s.cfg)
        .stdout(out.try_clone().expect("log"))
        .stderr(out);
    // SAFETY: umask(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::umask(0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start");
    let ok = wait_until(Duration::from_secs(30), || {
        UnixStream::connect(&s.sock).is_ok()
    });
    let mut buf = [0u8; 4096];
    let mut events = Vec::new();
    while let Ok(evs) = ino.read_events(&mut buf) {
        let mut any = false;
        for e in evs {
            any = true;
            if e.name.is_some_and(|n| n == "ls.sock") {
                events.push(if e.mask.contains(EventMask::MOVED_TO) {
                    "MOVED_TO"
                } else {
                    "CREATE"
                });
            }
        }
        if !any {
            break;
        }
    }
    let mode = fs::metadata(&s.sock).map(|m| m.permissions().mode() & 0o7777);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    assert!(
        ok,
        "no socket; log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(mode.ok(), Some(0o600));
    assert_eq!(
        events,
        ["MOVED_TO"],
        "the socket file must appear by a rename of a ready socket, never be created in place"
    );
    let leftovers: Vec<_> = fs::read_dir(s.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ls-sock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `capget`/`capset` arguments (linux/capability.h, version 3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `GET /list` on `sock` from a thread running as user 65534 that keeps CAP_DAC_OVERRIDE, so
/// the file mode does not stop it: only the server's own check can. The status.
fn list_as_other_user(sock: &Path) -> u16 {
    let sock = sock.to_owned();
    std::thread::spawn(move || {
        // SAFETY: raw syscalls change this thread's credentials only (glibc's wrappers would
        // change every thread's); the thread ends after the request.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setresuid, -1i32, 65534i32, -1i32),
                0,
                "setresuid"
            );
            let mut h = CapHeader {
                version: 0x2008_0522,
                pid: 0,
            };
            let mut d = [CapData::default(); 2];
            assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0);
            // CAP_DAC_OVERRIDE is capability 1.
            d[0].effective |= 1 << 1;
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()),
                0,
                "capset"
            );
            assert_eq!(libc::geteuid(), 65534);
        }
        let mut s = UnixStream::connect(&sock).expect("connect as another user");
        s.write_all(b"GET /list HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {out:?}"))
    })
    .join()
    .expect("thread")
}

#[test]
#[ignore = "needs root (acts as another user)"]
fn issue14_2_socket_refuses_other_users_unless_the_mode_allows() {
    for (perms, want) in [("0600", 403), ("0666", 200)] {
        let s = setup(perms, "");
        let e = Engine::start(&s.cfg, &s.dir.path().join("engine.log"));
        wait_socket(&s.sock, &e);
        assert_eq!(
            list_as_other_user(&s.sock),
            want,
            "socket.permissions {perms}"
        );
        if want == 403 {
            let log = fs::read_to_string(&e.log).expect("log");
            assert!(
                log.contains("refused a connection from another user") && log.contains("65534"),
                "{log}"
            );
        }
        e.stop();
    }
}
