//! Local file I/O: io_uring when the kernel allows it, plain pread/pwrite otherwise.
//!
//! io_uring is probed once per process (Docker's default seccomp profile and
//! `kernel.io_uring_disabled` both make `io_uring_setup` fail); `LS_DISABLE_IO_URING=1` forces
//! the fallback. Each thread that does I/O gets its own small ring, so callers on different
//! threads never wait on each other's completions. The win is batching: a restore writes
//! hundreds of pages with one `io_uring_enter`. A call returns only once the kernel is done
//! with every entry it took, also when a push or `io_uring_enter` fails part way (the entries
//! point at the caller's buffers); completions are tagged per call, and a ring that saw an
//! error is dropped.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use io_uring::{opcode, squeue, types, IoUring};

mod writeback;
pub use writeback::{start as start_writeback, PacedFile, WriteBehind};

/// Which I/O path this process uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// io_uring, one small ring per thread.
    Uring,
    /// Plain pread/pwrite (io_uring unavailable or disabled).
    Sync,
}

impl IoKind {
    /// Name of the I/O path, for logs: "io_uring" or "pread/pwrite".
    pub fn as_str(self) -> &'static str {
        match self {
            IoKind::Uring => "io_uring",
            IoKind::Sync => "pread/pwrite",
        }
    }
}

const RING_ENTRIES: u32 = 128;
/// `user_data` is `(batch tag << TAG_SHIFT) | index in the batch`; a batch never exceeds
/// [`RING_ENTRIES`] entries.
const TAG_SHIFT: u32 = 8;
/// `IORING_ENTER_GETEVENTS` (linux/io_uring.h): wait for completions.
const ENTER_GETEVENTS: u32 = 1;

static KIND: OnceLock<IoKind> = OnceLock::new();

/// A thread's ring and the tag of its latest batch. Completions carrying another tag are stale
/// (they cannot occur while every batch is reaped before it returns, but a completion is never
/// taken for another call's).
struct Ring {
    ring: IoUring,
    tag: u64,
}

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// The I/O path, decided on first use and logged once.
pub fn io_kind() -> IoKind {
    *KIND.get_or_init(|| {
        let disabled =
            std::env::var("LS_DISABLE_IO_URING").is_ok_and(|v| !v.is_empty() && v != "0");
        let kind = if disabled {
            tracing::info!("local I/O: pread/pwrite (io_uring disabled by LS_DISABLE_IO_URING)");
            IoKind::Sync
        } else {
            match IoUring::new(RING_ENTRIES) {
                Ok(_) => {
                    tracing::info!("local I/O: io_uring");
                    IoKind::Uring
                }
                Err(e) => {
                    tracing::info!("local I/O: pread/pwrite (io_uring unavailable: {e})");
                    IoKind::Sync
                }
            }
        };
        kind
    })
}

/// Runs `f` with this thread's ring, creating it on first use; `None` means use the
/// fallback (io_uring is off for this process, or `via` asks for it).
///
/// After an error the ring is dropped (a fresh one is made on the next call): [`run_batch`]
/// has reaped every entry the kernel took by then, and entries it never took die with the
/// ring instead of being submitted by a later call.
fn with_ring<T>(via: Via, f: impl FnOnce(&mut Ring) -> io::Result<T>) -> Option<io::Result<T>> {
    let use_ring = match via {
        Via::Auto => io_kind() == IoKind::Uring,
        Via::Ring => true,
        Via::Sync => false,
    };
    if !use_ring {
        return None;
    }
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match IoUring::new(RING_ENTRIES) {
                Ok(ring) => *slot = Some(Ring { ring, tag: 0 }),
                Err(_) => return None,
            }
        }
        let r = slot.as_mut().map(f)?;
        if r.is_err() {
            *slot = None;
        }
        Some(r)
    })
}

/// Which path a call takes: the process-wide choice, or (tests) one of the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Auto,
    #[cfg_attr(not(test), allow(dead_code))]
    Ring,
    #[cfg_attr(not(test), allow(dead_code))]
    Sync,
}

/// Pushes `entries`, submits them and waits until each has completed; their results in order.
///
/// Every entry the kernel took is reaped before this returns, also when a push or
/// `io_uring_enter` fails part way: the entries point at the caller's buffers, which must
/// outlive the kernel's use of them. Entries pushed but never taken stay in the submission
/// queue; the caller's error return makes [`with_ring`] drop the ring with them.
///
/// # Safety
///
/// Every buffer an entry points at must stay valid (and, for reads, unaliased) until this
/// returns.
unsafe fn run_batch(r: &mut Ring, entries: &[squeue::Entry]) -> io::Result<Vec<i32>> {
    debug_assert!(entries.len() <= RING_ENTRIES as usize);
    r.tag = r.tag.wrapping_add(1) & (u64::MAX >> TAG_SHIFT);
    let tag = r.tag;
    let n = entries.len();
    let mut results = vec![0i32; n];
    let mut seen = 0usize;
    let mut pushed = 0usize;
    let mut failed = None;
    for (i, e) in entries.iter().enumerate() {
        let e = e.clone().user_data((tag << TAG_SHIFT) | i as u64);
        // SAFETY: the caller keeps the buffers valid until we return, and we return only
        // after the kernel is done with every entry it took (below).
        let ok = !fault::push_fails(i) && unsafe { r.ring.submission().push(&e) }.is_ok();
        if !ok {
            failed = Some(io::Error::other("io_uring submission queue full"));
            break;
        }
        pushed += 1;
    }
    if failed.is_none() {
        while seen < n {
            match fault::submit_and_wait(&r.ring, n - seen) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            reap(r, &mut results, &mut seen);
        }
    }
    match failed {
        None => Ok(results),
        Some(e) => {
            let taken = pushed - r.ring.submission().len();
            wait_for(r, taken, &mut results, &mut seen);
            Err(e)
        }
    }
}

/// Takes every available completion: those of the current batch into `results`, stale ones
/// (another tag) dropped.
fn reap(r: &mut Ring, results: &mut [i32], seen: &mut usize) {
    let tag = r.tag;
    for cqe in r.ring.completion() {
        let ud = cqe.user_data();
        match results.get_mut((ud & ((1 << TAG_SHIFT) - 1)) as usize) {
            Some(slot) if ud >> TAG_SHIFT == tag => {
                *slot = cqe.result();
                *seen += 1;
            }
            _ => tracing::debug!(user_data = ud, "dropped a stale io_uring completion"),
        }
    }
}

/// Waits, without submitting anything more, until `taken` entries of the current batch have
/// completed. An `io_uring_enter` that keeps failing leaves no safe way to return (the kernel
/// may still write into the caller's buffers), so after many failures in a row the process
/// aborts rather than risk memory corruption.
fn wait_for(r: &mut Ring, taken: usize, results: &mut [i32], seen: &mut usize) {
    let mut failures = 0u32;
    reap(r, results, seen);
    while *seen < taken {
        let want = (taken - *seen) as u32;
        // SAFETY: enter with nothing to submit only waits; no entry or argument is passed.
        match unsafe {
            r.ring
                .submitter()
                .enter::<libc::sigset_t>(0, want, ENTER_GETEVENTS, None)
        } {
            Ok(_) => failures = 0,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => {
                failures += 1;
                if failures > 1000 {
                    eprintln!("io_uring: cannot wait for in-flight I/O ({e}); aborting");
                    std::process::abort();
                }
                std::thread::yield_now();
            }
        }
        reap(r, results, seen);
    }
}

/// Test hooks that make a batch fail part way (compiled out of non-test builds).
#[cfg(not(test))]
mod fault {
    pub(super) fn push_fails(_: usize) -> bool {
        false
    }

    pub(super) fn submit_and_wait(ring: &io_uring::IoUring, want: usize) -> std::io::Result<usize> {
        ring.submit_and_wait(want)
    }
}

#[cfg(test)]
mod fault {
    use std::cell::Cell;

    /// What the next batch on this thread does wrong.
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Fault {
        None,
        /// Pushing the entry with this index fails (as if the queue were full).
        PushAt(usize),
        /// `io_uring_enter` submits the entries, then reports an error.
        EnterAfterSubmit,
    }

    thread_local! {
        static FAULT: Cell<Fault> = const { Cell::new(Fault::None) };
    }

    pub(super) fn set(f: Fault) {
        FAULT.with(|c| c.set(f));
    }

    pub(super) fn push_fails(i: usize) -> bool {
        FAULT.with(|c| match c.get() {
            Fault::PushAt(at) if at == i => {
                c.set(Fault::None);
                true
            }
            _ => false,
        })
    }

    pub(super) fn submit_and_wait(ring: &io_uring::IoUring, want: usize) -> std::io::Result<usize> {
        if let Fault::EnterAfterSubmit = FAULT.with(|c| c.replace(Fault::None)) {
            ring.submit()?;
            return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
        }
        ring.submit_and_wait(want)
    }
}

/// Writes every `(offset, bytes)` pair to `file`. With io_uring the writes go in batches of up
/// to 128 per system call; a short write is finished with pwrite.
pub fn write_batch(file: &File, writes: &[(u64, &[u8])]) -> io::Result<()> {
    write_batch_via(Via::Auto, file, writes)
}

fn write_batch_via(via: Via, file: &File, writes: &[(u64, &[u8])]) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    let done = with_ring(via, |r| {
        for chunk in writes.chunks(RING_ENTRIES as usize) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (off, buf) in chunk {
                let len =
                    u32::try_from(buf.len()).map_err(|_| io::Error::other("write over 4 GiB"))?;
                entries.push(
                    opcode::Write::new(fd, buf.as_ptr(), len)
                        .offset(*off)
                        .build(),
                );
            }
            // SAFETY: the buffers in `chunk` are borrowed for this whole call.
            let results = unsafe { run_batch(r, &entries)? };
            for ((off, buf), res) in chunk.iter().zip(results) {
                if res < 0 {
                    return Err(io::Error::from_raw_os_error(-res));
                }
                let n = res as usize;
                if n < buf.len() {
                    file.write_all_at(&buf[n..], off + n as u64)?;
                }
            }
        }
        Ok(())
    });
    match done {
        Some(r) => r,
        None => writes
            .iter()
            .try_for_each(|(off, buf)| file.write_all_at(buf, *off)),
    }
}

/// Writes `buf` at `offset`.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    write_batch(file, &[(offset, buf)])
}

/// Fills `buf` from `offset`; a short file is `UnexpectedEof`.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    read_exact_at_via(Via::Auto, file, buf, offset)
}

fn read_exact_at_via(via: Via, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    let len = buf.len();
    let ptr = buf.as_mut_ptr();
    let done = with_ring(via, |r| {
        let l = u32::try_from(len).map_err(|_| io::Error::other("read over 4 GiB"))?;
        let e = opcode::Read::new(fd, ptr, l).offset(offset).build();
        // SAFETY: `buf` is borrowed mutably for this whole call.
        let res = unsafe { run_batch(r, &[e])? }[0];
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(res as usize)
    });
    match done {
        Some(r) => {
            let n = r?;
            if n < len {
                // Short read: finish (or detect EOF) the plain way.
                file.read_exact_at(&mut buf[n..], offset + n as u64)?;
            }
            Ok(())
        }
        None => file.read_exact_at(buf, offset),
    }
}

/// fsync through the ring (or `fsync(2)`).
pub fn fsync(file: &File) -> io::Result<()> {
    fsync_via(Via::Auto, file)
}

fn fsync_via(via: Via, file: &File) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    let done = with_ring(via, |r| {
        let e = opcode::Fsync::new(fd).build();
        // SAFETY: no buffers are involved.
        let res = unsafe { run_batch(r, &[e])? }[0];
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(())
    });
    match done {
        Some(r) => r,
        None => file.sync_all(),
    }
}

/// fsyncs a directory so a rename or create in it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    fsync(&d)
}

/// `<path>.tmp`, the name a file is written under before it is renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The permission bits files derived from `reference` (a database) should get: its read and
/// write bits, never execute or set-id bits. `None` if it cannot be stat'ed (not created yet),
/// in which case callers fall back to the usual 0666 minus umask.
pub fn file_mode_like(reference: &Path) -> Option<u32> {
    fs::metadata(reference)
        .ok()
        .map(|m| m.permissions().mode() & 0o666)
}

/// The directory mode matching a file mode: search (x) wherever read is allowed, so a 0600
/// database gets 0700 directories and a 0644 one 0755.
pub fn dir_mode_for(file_mode: u32) -> u32 {
    let m = file_mode & 0o666;
    m | ((m & 0o444) >> 2)
}

/// `create_dir_all`, giving directories it creates the mode matching `file_mode` (umask still
/// applies, so they can only end up stricter). Existing directories are left alone: they may
/// be shared with other programs.
pub fn create_dir_all_mode(dir: &Path, file_mode: Option<u32>) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    if let Some(m) = file_mode {
        b.mode(dir_mode_for(m));
    }
    b.create(dir)
}

/// Opens `path` for writing, creating or truncating it, with at most `mode`'s permissions.
/// The create mode only applies to a new file, and umask can only remove bits; a file that
/// already existed (a stale temp file) is narrowed with fchmod, never widened.
pub fn create_file_mode(path: &Path, mode: Option<u32>) -> io::Result<File> {
    let mut o = OpenOptions::new();
    // O_NOFOLLOW: a symlink planted at a temp name must not redirect (and truncate) a file
    // elsewhere; opening it fails with ELOOP instead.
    o.write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW);
    if let Some(m) = mode {
        o.mode(m & 0o666);
    }
    let f = o.open(path)?;
    if let Some(m) = mode {
        let cur = f.metadata()?.permissions().mode() & 0o7777;
        if cur & !(m & 0o666) != 0 {
            f.set_permissions(fs::Permissions::from_mode(cur & m & 0o666))?;
        }
    }
    Ok(f)
}

/// Writes `chunks` to `path` atomically and durably: `<path>.tmp`, fsync, optional mtime,
/// rename, fsync of the directory. A crash leaves either the old file or the new one (and maybe
/// a `.tmp`, which readers ignore and writers remove). `mode` (see [`create_file_mode`]) caps
/// the new file's permissions and those of any directory created for it.
pub fn write_file_atomic(
    path: &Path,
    chunks: &[&[u8]],
    mtime: Option<SystemTime>,
    mode: Option<u32>,
) -> io::Result<()> {
    publish(path, mtime, mode, Publish::Replace, |f| {
        write_chunks(f, chunks)
    })
}

/// Copies `src` to `dst` atomically (as [`write_file_atomic`]), streaming in 1 MiB chunks.
pub fn copy_file_atomic(
    src: &Path,
    dst: &Path,
    mtime: Option<SystemTime>,
    mode: Option<u32>,
) -> io::Result<()> {
    publish(dst, mtime, mode, Publish::Replace, |to| copy_into(src, to))
}

/// Writes `chunks` one after another from the start of `f`: in one batch when they are small,
/// else a window at a time with the write-back paced behind them ([`WriteBehind`]).
pub fn write_chunks(f: &File, chunks: &[&[u8]]) -> io::Result<()> {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    if total as u64 > writeback::WINDOW {
        let mut behind = WriteBehind::new();
        let mut off = 0u64;
        for piece in chunks
            .iter()
            .flat_map(|c| c.chunks(writeback::WINDOW as usize))
        {
            write_all_at(f, piece, off)?;
            off += piece.len() as u64;
            behind.wrote(f, off);
        }
        return Ok(());
    }
    let mut off = 0u64;
    let writes: Vec<(u64, &[u8])> = chunks
        .iter()
        .map(|c| {
            let w = (off, *c);
            off += c.len() as u64;
            w
        })
        .collect();
    write_batch(f, &writes)
}

/// Copies the file `src` into `to`, in 1 MiB chunks, with the write-back paced behind them.
pub fn copy_into(src: &Path, to: &File) -> io::Result<()> {
    let from = File::open(src)?;
    let len = from.metadata()?.len();
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let mut off = 0u64;
    let mut behind = WriteBehind::new();
    while off < len {
        let n = buf.len().min((len - off) as usize);
        read_exact_at(&from, &mut buf[..n], off)?;
        write_all_at(to, &buf[..n], off)?;
        off += n as u64;
        behind.wrote(to, off);
    }
    Ok(())
}

/// How a filled temporary file takes its final name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish {
    /// `rename(2)` over whatever is there.
    Replace,
    /// `link(2)`, which refuses an existing name ([`io::ErrorKind::AlreadyExists`]), then
    /// the temporary name is removed: of two writers racing for one name exactly one wins.
    /// Each writer fills its own temporary name.
    Exclusive,
}

/// The durable-write protocol shared by every local write: `fill` writes a temporary file,
/// which is fsynced, given its mtime, published under `path`, and the directory fsynced. On
/// any error the temp file is removed and `path` is untouched. `mode` caps the permissions (see
/// [`create_file_mode`]).
pub fn publish(
    path: &Path,
    mtime: Option<SystemTime>,
    mode: Option<u32>,
    how: Publish,
    fill: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_all_mode(dir, mode)?;
    let tmp = match how {
        Publish::Replace => tmp_path(path),
        // Racing writers must not share a temporary file.
        Publish::Exclusive => {
            let mut s = path.as_os_str().to_owned();
            s.push(format!(
                ".{}.{:016x}.tmp",
                std::process::id(),
                fastrand::u64(..)
            ));
            PathBuf::from(s)
        }
    };
    let result = (|| {
        let f = create_file_mode(&tmp, mode)?;
        fill(&f)?;
        fsync(&f)?;
        if let Some(t) = mtime {
            f.set_modified(t)?;
        }
        drop(f);
        match how {
            Publish::Replace => fs::rename(&tmp, path)?,
            Publish::Exclusive => {
                fs::hard_link(&tmp, path)?;
                fs::remove_file(&tmp)?;
            }
        }
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_write_read_and_atomic_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .expect("open");
        let pages: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; 512]).collect();
        let writes: Vec<(u64, &[u8])> = pages
            .iter()
            .enumerate()
            .rev()
            .map(|(i, p)| (i as u64 * 512, p.as_slice()))
            .collect();
        write_batch(&f, &writes).expect("write");
        fsync(&f).expect("fsync");
        let mut buf = vec![0u8; 512];
        read_exact_at(&f, &mut buf, 299 * 512).expect("read");
        assert_eq!(buf, pages[299]);
        assert!(read_exact_at(&f, &mut buf, 300 * 512 - 1).is_err());

        let q = dir.path().join("sub/atomic");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_665_906_229);
        write_file_atomic(&q, &[b"abc", b"def"], Some(t), None).expect("atomic");
        assert_eq!(fs::read(&q).expect("read"), b"abcdef");
        assert_eq!(
            fs::metadata(&q).and_then(|m| m.modified()).expect("mtime"),
            t
        );
        assert!(!tmp_path(&q).exists());
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn mode_caps_new_files_stale_temps_and_new_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        fs::write(&db, b"x").expect("db");
        fs::set_permissions(&db, fs::Permissions::from_mode(0o4640)).expect("chmod");
        // Set-id bits of the reference never propagate.
        let m = file_mode_like(&db).expect("mode");
        assert_eq!(m, 0o640);
        assert_eq!(dir_mode_for(0o600), 0o700);
        assert_eq!(dir_mode_for(0o644), 0o755);
        assert_eq!(file_mode_like(&dir.path().join("missing")), None);

        let q = dir.path().join("a/b/f.ltx");
        // A stale, wide temp file from a crash must not keep its mode.
        fs::create_dir_all(q.parent().expect("parent")).expect("mkdir");
        fs::write(tmp_path(&q), b"old").expect("stale");
        fs::set_permissions(tmp_path(&q), fs::Permissions::from_mode(0o666)).expect("chmod");
        write_file_atomic(&q, &[b"new"], None, Some(0o600)).expect("write");
        assert_eq!(fs::read(&q).expect("read"), b"new");
        assert_eq!(mode_of(&q), 0o600);

        let c = dir.path().join("c/d/copy.ltx");
        copy_file_atomic(&q, &c, None, Some(m)).expect("copy");
        // umask can only remove bits: 0640 or stricter.
        assert_eq!(mode_of(&c) & !0o640, 0);
        assert_eq!(mode_of(&c) & 0o600, 0o600);
        for d in [dir.path().join("c"), dir.path().join("c/d")] {
            assert_eq!(mode_of(&d) & !0o750, 0, "{}", d.display());
        }
        // A symlink at the temp name is never written through.
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").expect("victim");
        let s = dir.path().join("s.ltx");
        std::os::unix::fs::symlink(&victim, tmp_path(&s)).expect("symlink");
        assert!(write_file_atomic(&s, &[b"evil"], None, Some(0o600)).is_err());
        assert_eq!(fs::read(&victim).expect("victim"), b"keep");
        // Without a mode nothing changes from before (0666 minus umask).
        let plain = dir.path().join("plain");
        write_file_atomic(&plain, &[b"p"], None, None).expect("plain");
        assert!(plain.exists());
    }
}

#[cfg(test)]
mod uring_tests;
