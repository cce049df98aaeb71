//! A read-only mapping of the WAL that survives the file being truncated under it.
//!
//! Touching a mapped page past the end of a file raises SIGBUS. Another process's
//! `wal_checkpoint(TRUNCATE)` can shrink the WAL while we read it (our read transaction pins the
//! WAL only when it holds a read mark above 0). So every mapping is registered in a small table,
//! and a SIGBUS handler that finds the faulting address in that table replaces the page with
//! zeros and marks the mapping as faulted. The reader sees zeros (which fail the WAL checksum,
//! so no stale frame is ever accepted) and the caller throws the pass away when
//! [`WalMap::faulted`] says so.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};

const SLOTS: usize = 256;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
static INSTALL: Once = Once::new();
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in TABLE.iter() {
        let start = slot.start.load(Ordering::Acquire);
        let len = slot.len.load(Ordering::Acquire);
        if start != 0 && addr >= start && addr < start + len {
            let page = PAGE_SIZE.load(Ordering::Relaxed);
            let base = addr & !(page - 1);
            // SAFETY: `base` lies inside a live mapping we own; replacing one page of it with
            // anonymous zeros keeps the address range valid until the owner unmaps it.
            let r = unsafe {
                libc::mmap(
                    base as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                slot.faulted.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Not ours: fall back to the default action, which the re-executed access triggers.
    // SAFETY: resetting a signal disposition is async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf is always safe to call.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE_SIZE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: a zeroed sigaction with a valid handler and flags is a legal argument.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    });
}

/// The WAL, mapped read-only up to the length observed while holding the read transaction.
pub struct WalMap {
    map: Option<Mmap>,
    slot: Option<usize>,
}

impl WalMap {
    /// Opens the WAL at `path` and maps it up to its current size, or `limit` if smaller.
    pub fn open(path: &Path, limit: Option<u64>) -> Result<WalMap> {
        let file = File::open(path).map_err(|e| Error::io("open WAL", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat WAL", path, e))?
            .len();
        WalMap::new(&file, limit.map_or(len, |l| l.min(len)), path)
    }

    /// Maps `len` bytes of `file` (the size seen with the read lock held). Nothing past `len` is
    /// ever read, even if the file has grown since.
    pub fn new(file: &File, len: u64, path: &Path) -> Result<WalMap> {
        if len == 0 {
            return Ok(WalMap {
                map: None,
                slot: None,
            });
        }
        install_handler();
        let len_usize = usize::try_from(len)
            .map_err(|_| Error::Other(format!("WAL {} too large to map", path.display())))?;
        // SAFETY: the mapping is read-only and private to this struct; concurrent truncation,
        // the one hazard of file mappings, is handled by the SIGBUS handler above, and every
        // byte read from it is validated (salts and checksum chain) before use.
        let map = unsafe { MmapOptions::new().len(len_usize).map(file) }
            .map_err(|e| Error::io("map WAL", path, e))?;
        let start = map.as_ptr() as usize;
        let mut slot = None;
        for (i, s) in TABLE.iter().enumerate() {
            if s.start
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                s.faulted.store(false, Ordering::Release);
                s.len.store(len_usize, Ordering::Release);
                s.start.store(start, Ordering::Release);
                slot = Some(i);
                break;
            }
        }
        if slot.is_none() {
            return Err(Error::Other(
                "too many WAL mappings open at once".to_owned(),
            ));
        }
        Ok(WalMap {
            map: Some(map),
            slot,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// True if the file was truncated under the mapping while it was being read: whatever was
    /// read from it must be discarded.
    pub fn faulted(&self) -> bool {
        self.slot
            .is_some_and(|i| TABLE[i].faulted.load(Ordering::Acquire))
    }
}

impl Drop for WalMap {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // Unregister before unmapping so the handler never touches a dead range.
            TABLE[i].len.store(0, Ordering::Release);
            TABLE[i].start.store(0, Ordering::Release);
        }
        self.map.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn truncation_under_the_mapping_reads_zeros_and_is_flagged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("wal");
        let mut f = File::create(&p).expect("create");
        f.write_all(&vec![7u8; 64 * 1024]).expect("write");
        f.sync_all().expect("sync");
        let r = File::open(&p).expect("open");
        let m = WalMap::new(&r, 64 * 1024, &p).expect("map");
        assert_eq!(m.bytes()[60_000], 7);
        assert!(!m.faulted());
        f.set_len(4096).expect("truncate");
        // Past the new end of file: without the handler this access would kill the process.
        let v = std::hint::black_box(m.bytes())[40_000];
        assert_eq!(v, 0);
        assert!(m.faulted());
        assert_eq!(m.bytes()[100], 7);
        drop(m);
        let m2 = WalMap::new(&r, 4096, &p).expect("map again");
        assert!(!m2.faulted());
    }
}
