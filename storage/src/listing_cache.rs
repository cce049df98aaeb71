//! Listings cached per level and kept current by our own writes and deletes, so that an idle
//! replica makes no requests. A version number, bumped by every change we start, keeps a
//! listing that raced with a change out of the cache.
//! Shared by the backends that list over the network (`gcs`, `abs`).

use std::collections::HashMap;
use std::sync::Mutex;

use ltx_codec::Level;

use crate::LtxFileInfo;

#[derive(Default)]
struct Inner {
    levels: HashMap<Level, Vec<LtxFileInfo>>,
    version: u64,
}

#[derive(Default)]
pub(crate) struct LevelCache(Mutex<Inner>);

fn key(f: &LtxFileInfo) -> (ltx_codec::TxId, ltx_codec::TxId) {
    (f.min_txid, f.max_txid)
}

impl LevelCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached listing, or the version to hand to [`LevelCache::store`] after listing.
    pub fn get(&self, level: Level) -> Result<Vec<LtxFileInfo>, u64> {
        let c = self.lock();
        c.levels.get(&level).cloned().ok_or(c.version)
    }

    /// Keeps a listing made at `version`, unless something changed since.
    pub fn store(&self, level: Level, version: u64, files: &[LtxFileInfo]) {
        let mut c = self.lock();
        if c.version == version {
            c.levels.insert(level, files.to_vec());
        }
    }

    /// Called before a change: listings in flight are no longer to be trusted.
    pub fn begin_change(&self) {
        self.lock().version += 1;
    }

    /// After an upload: the file is in its level (or, when it failed, the level is unknown).
    pub fn written(&self, level: Level, info: Option<&LtxFileInfo>) {
        let mut c = self.lock();
        match info {
            None => {
                c.levels.remove(&level);
            }
            Some(info) => {
                if let Some(files) = c.levels.get_mut(&level) {
                    files.retain(|f| key(f) != key(info));
                    let at = files.partition_point(|f| key(f) < key(info));
                    files.insert(at, info.clone());
                }
            }
        }
    }

    /// After deletes: the files are gone (or, when some failed, their levels are unknown).
    pub fn deleted(&self, files: &[LtxFileInfo], ok: bool) {
        let mut c = self.lock();
        for f in files {
            if !ok {
                c.levels.remove(&f.level);
            } else if let Some(list) = c.levels.get_mut(&f.level) {
                list.retain(|x| key(x) != key(f));
            }
        }
    }

    pub fn clear(&self) {
        let mut c = self.lock();
        c.version += 1;
        c.levels.clear();
    }
}
