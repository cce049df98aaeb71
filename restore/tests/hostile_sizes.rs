//! Issue 14 item 10: sizes read from a replica (a page index length, a Commit) are checked
//! against what the file itself allows before anything is allocated for them. The test binary
//! counts allocated bytes (a pass-through global allocator); each case runs alone in a child
//! process of it, so that no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ltx_codec::{Encoder, Header, Level, TxId, HEADER_SIZE};
use restore::execute::winners;
use restore::fetch::read_layout;
use storage::file::FileReplica;
use storage::{LtxFileInfo, ReplicaClient};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller upholds the allocator contract; passed through as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller upholds the allocator contract; passed through as is.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds the allocator contract; passed through as is.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds the allocator contract; passed through as is.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f` and returns its result and the most memory it held at once beyond what was live
/// when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    (r, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

const MIB: usize = 1 << 20;

/// A snapshot claiming 50 million pages while holding one used to allocate 200 MB for the
/// winner table before finding the first missing page.
#[test]
fn issue14_10_winners_bound_commit_by_the_frames() {
    in_child("winners_child");
}

/// Runs `name`, an ignored test of this module, alone in a child process of this test binary.
fn in_child(name: &str) {
    let o = Command::new(std::env::current_exe().expect("test exe"))
        .args(["--ignored", "--exact", "--test-threads=1", "--nocapture"])
        .arg(format!("hostile_sizes::{name}"))
        .output()
        .expect("run the child");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{name}:\n{out}");
    assert!(out.contains("1 passed"), "{name} did not run:\n{out}");
}

#[test]
#[ignore = "the child process of hostile_sizes::issue14_10_winners_bound_commit_by_the_frames, not a test"]
fn winners_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut enc =
        Encoder::new(Vec::new(), Header::new(4096, 1, TxId(1), TxId(1), 0)).expect("encoder");
    enc.encode_page(1, &[0u8; 4096]).expect("page");
    let (mut bytes, _) = enc.finish().expect("finish");
    // A one-page snapshot whose header claims 50 million pages (Commit is at offset 12; the
    // checksum is only checked once pages are fetched).
    bytes[12..16].copy_from_slice(&50_000_000u32.to_be_bytes());
    write_ltx(dir.path(), &bytes);
    let (replica, rt, info) = open(dir.path());
    let layouts = [rt.block_on(read_layout(&replica, &info)).expect("layout")];
    let (r, peak) = peak_of(|| winners(&layouts));
    assert!(peak < MIB, "allocated {peak} bytes for a one-page file");
    let e = r.expect_err("a Commit no file covers");
    assert!(e.to_string().contains("9/"), "names the file: {e}");
}

fn open(root: &Path) -> (FileReplica, tokio::runtime::Runtime, LtxFileInfo) {
    let replica = FileReplica::new(root);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let info = rt
        .block_on(replica.ltx_files(Level(9)))
        .expect("list")
        .remove(0);
    (replica, rt, info)
}

/// A file whose trailer claims an index of nearly the whole file, for a database of one page,
/// used to be read whole (and allocated) before the index was parsed.
#[test]
fn issue14_10_read_layout_bounds_the_index_by_commit() {
    in_child("read_layout_child");
}

#[test]
#[ignore = "the child process of hostile_sizes::issue14_10_read_layout_bounds_the_index_by_commit, not a test"]
fn read_layout_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 8 * MIB;
    let mut bytes = vec![0u8; size];
    bytes[..HEADER_SIZE].copy_from_slice(&Header::new(4096, 1, TxId(1), TxId(1), 0).encode());
    let index_len = (size - HEADER_SIZE - 6 - 8 - 16) as u64;
    bytes[size - 24..size - 16].copy_from_slice(&index_len.to_be_bytes());
    write_ltx(dir.path(), &bytes);
    drop(bytes);
    let (replica, rt, info) = open(dir.path());
    let (r, peak) = peak_of(|| rt.block_on(read_layout(&replica, &info)));
    let e = r.expect_err("an index longer than one page needs");
    assert!(
        e.to_string()
            .contains("9/0000000000000001-0000000000000001.ltx"),
        "{e}"
    );
    assert!(
        peak < 2 * MIB,
        "allocated {peak} bytes for a one-page index"
    );
}

fn write_ltx(root: &Path, bytes: &[u8]) {
    let d = root.join("ltx/9");
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join("0000000000000001-0000000000000001.ltx"), bytes).expect("write");
}
