//! The io_uring path against the pread/pwrite one, and batches that fail part way (issue 14
//! item 4): every entry the kernel took is reaped before the call returns.

use super::*;
use std::os::fd::FromRawFd;

fn ring_available() {
    assert!(
        IoUring::new(RING_ENTRIES).is_ok(),
        "io_uring is unavailable on this machine (seccomp, kernel.io_uring_disabled): \
         these tests compare it with the fallback and cannot run"
    );
}

fn rw(p: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)
        .expect("open")
}

/// `(offset, page)` for 300 pages of 4 KiB with distinct bytes, out of order, plus one
/// 1 MiB write past them.
fn pattern() -> Vec<(u64, Vec<u8>)> {
    let mut v: Vec<(u64, Vec<u8>)> = (0..300u64)
        .map(|i| {
            let page = (0..4096u64)
                .map(|j| ((i * 31 + j * 7) % 251) as u8)
                .collect();
            (((i * 37) % 300) * 4096, page)
        })
        .collect();
    v.push((300 * 4096, (0..1 << 20).map(|j| (j % 253) as u8).collect()));
    v
}

#[test]
fn fallback_path_matches_uring_path() {
    ring_available();
    eprintln!("io kind: {}", io_kind().as_str());
    let dir = tempfile::tempdir().expect("tempdir");
    let pages = pattern();
    let writes: Vec<(u64, &[u8])> = pages.iter().map(|(o, p)| (*o, p.as_slice())).collect();
    let mut files = Vec::new();
    for (name, via) in [("ring", Via::Ring), ("sync", Via::Sync)] {
        let f = rw(&dir.path().join(name));
        write_batch_via(via, &f, &writes).expect("write_batch");
        fsync_via(via, &f).expect("fsync");
        files.push(f);
    }
    let (a, b) = (
        fs::read(dir.path().join("ring")).expect("read"),
        fs::read(dir.path().join("sync")).expect("read"),
    );
    assert_eq!(a.len(), 301 * 4096 + (1 << 20) - 4096);
    assert!(a == b, "the io_uring and pread/pwrite files differ");
    // Each path reads back what the other wrote, also across a short final read.
    for (f, via) in [(&files[0], Via::Sync), (&files[1], Via::Ring)] {
        for (off, page) in &pages {
            let mut buf = vec![0u8; page.len()];
            read_exact_at_via(via, f, &mut buf, *off).expect("read");
            assert!(&buf == page, "{via:?} read at {off} differs");
        }
        let mut past = vec![0u8; 8192];
        let e = read_exact_at_via(via, f, &mut past, a.len() as u64 - 4096);
        assert_eq!(e.map_err(|e| e.kind()), Err(io::ErrorKind::UnexpectedEof));
    }
}

/// A push that fails part way through a batch: the call fails, and the entries pushed
/// before it are never submitted by a later call (they would write whatever the caller
/// has since put in its buffers).
#[test]
fn issue14_4_push_failure_mid_batch_leaves_nothing_for_later_calls() {
    ring_available();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = rw(&dir.path().join("a"));
    let mut bufs: Vec<Vec<u8>> = (0..100).map(|_| vec![0xAA; 512]).collect();
    {
        let writes: Vec<(u64, &[u8])> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u64 * 512, b.as_slice()))
            .collect();
        fault::set(fault::Fault::PushAt(50));
        assert!(write_batch_via(Via::Ring, &a, &writes).is_err());
    }
    // The caller owns its buffers again and reuses them.
    for b in &mut bufs {
        b.fill(0xEE);
    }
    let b = rw(&dir.path().join("b"));
    write_batch_via(Via::Ring, &b, &[(0, b"next call")]).expect("next write");
    fsync_via(Via::Ring, &b).expect("fsync");
    let got = fs::read(dir.path().join("a")).expect("read a");
    assert!(
        !got.contains(&0xEE),
        "a later call submitted the failed call's entries ({} bytes of a)",
        got.len()
    );
    assert!(got.iter().all(|&x| x == 0xAA));
    assert_eq!(
        fs::read(dir.path().join("b")).expect("read b"),
        b"next call"
    );
}

/// `io_uring_enter` fails after the kernel took the entries: the call reaps them all
/// before returning, so the next call on the thread never takes one of their completions
/// for its own. The next call here is a read from an empty pipe: taking a stale
/// completion would return at once, before any data exists.
#[test]
fn issue14_4_enter_failure_reaps_before_returning() {
    ring_available();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = rw(&dir.path().join("a"));
    let bufs: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 4096]).collect();
    let writes: Vec<(u64, &[u8])> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u64 * 4096, b.as_slice()))
        .collect();
    fault::set(fault::Fault::EnterAfterSubmit);
    let e = write_batch_via(Via::Ring, &a, &writes).expect_err("injected failure");
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    // Everything the kernel took was done when the call returned.
    let got = fs::read(dir.path().join("a")).expect("read a");
    assert_eq!(got.len(), 64 * 4096);
    assert!(got
        .chunks(4096)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&x| x == i as u8)));

    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) fills the two descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, mut w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        // Written once the read returned, or after a while if it is (rightly) waiting.
        let _ = rx.recv_timeout(std::time::Duration::from_millis(500));
        std::io::Write::write_all(&mut w, b"fresh data").expect("pipe write");
    });
    let mut buf = [0u8; 10];
    let res = read_exact_at_via(Via::Ring, &r, &mut buf, 0);
    // What the call left in `buf` when it returned (the kernel must not write it later).
    let got = buf;
    let _ = tx.send(());
    writer.join().expect("writer");
    assert_eq!(
        (res.map_err(|e| e.to_string()), &got),
        (Ok(()), b"fresh data"),
        "the read returned before its data existed (a stale completion)"
    );
}
