//! Decompressed pages, shared by every database the process has open, within one byte budget
//! (docs/vfs.md#page-cache).
//!
//! A page is keyed by where its frame is in the replica, not by its page number: LTX files are
//! never rewritten, so an entry can never go stale and a new view needs no invalidation. The
//! file's size and creation time are part of the key, for a replica deleted and written again
//! under the same names.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hashlink::LruCache;
use ltx_codec::decoder::PageFrame;
use ltx_codec::PageIndexEntry;
use storage::{LtxFileInfo, ReplicaClient};

use crate::view::{FrameRef, ViewError};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    level: u8,
    min: u64,
    max: u64,
    file_size: u64,
    created_ns: u128,
    offset: u64,
}

pub struct PageCache {
    budget: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    pages: LruCache<Key, Arc<[u8]>>,
    bytes: u64,
}

impl PageCache {
    pub fn new(budget: u64) -> PageCache {
        PageCache {
            budget,
            inner: Mutex::new(Inner {
                pages: LruCache::new_unbounded(),
                bytes: 0,
            }),
        }
    }

    /// Page `pgno`, from the cache or with one ranged read of its frame.
    pub async fn page(
        &self,
        client: &dyn ReplicaClient,
        info: &LtxFileInfo,
        frame: FrameRef,
        pgno: u32,
        page_size: u32,
    ) -> Result<Arc<[u8]>, ViewError> {
        let key = Key {
            level: info.level.0,
            min: info.min_txid.0,
            max: info.max_txid.0,
            file_size: info.size,
            created_ns: info
                .created_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            offset: frame.offset,
        };
        if let Some(p) = self.lock().pages.get(&key) {
            return Ok(Arc::clone(p));
        }
        let label = restore::fetch::file_label(info);
        let bytes = client
            .read_range(info.ltx_name(), frame.offset, Some(u64::from(frame.size)))
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        let mut page = vec![0u8; page_size as usize];
        decode(&bytes, pgno, frame, page_size, &mut page).map_err(|e| format!("{label}: {e}"))?;
        let page: Arc<[u8]> = page.into();
        self.insert(key, Arc::clone(&page));
        Ok(page)
    }

    fn insert(&self, key: Key, page: Arc<[u8]>) {
        let len = page.len() as u64;
        if len > self.budget {
            return;
        }
        let mut g = self.lock();
        if let Some(old) = g.pages.insert(key, page) {
            g.bytes -= old.len() as u64;
        }
        g.bytes += len;
        while g.bytes > self.budget {
            match g.pages.remove_lru() {
                Some((_, p)) => g.bytes -= p.len() as u64,
                None => break,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while the lock was held cannot leave the cache inconsistent in a way that
        // matters: at worst the byte count is off until entries are evicted.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Decodes the frame `bytes` (exactly the frame `frame` points at) into `page`, checking that
/// it holds page `pgno` at the length the page index gave.
pub fn decode(
    bytes: &[u8],
    pgno: u32,
    frame: FrameRef,
    page_size: u32,
    page: &mut [u8],
) -> ltx_codec::Result<()> {
    let entry = PageIndexEntry {
        pgno,
        offset: frame.offset,
        size: u64::from(frame.size),
    };
    PageFrame::for_entry(bytes, &entry, page_size as usize)?.decompress(page)
}
