//! Listings cached per level and kept current by our own writes and deletes, so that an idle
//! replica makes no requests. A version number, bumped by every change we start, keeps a
//! listing that raced with a change out of the cache. After a listing of the whole replica
//! (backends that list every level at once) a level missing from it is known to be empty.

use std::collections::HashMap;
use std::sync::Mutex;

use ltx_codec::Level;

use crate::LtxFileInfo;

#[derive(Default)]
struct Inner {
    levels: HashMap<Level, Vec<LtxFileInfo>>,
    /// Every level is in `levels` (absent ones are empty).
    complete: bool,
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
        match c.levels.get(&level) {
            Some(files) => Ok(files.clone()),
            None if c.complete => Ok(Vec::new()),
            None => Err(c.version),
        }
    }

    /// Keeps a listing made at `version`, unless something changed since.
    pub fn store(&self, level: Level, version: u64, files: &[LtxFileInfo]) {
        let mut c = self.lock();
        if c.version == version {
            c.levels.insert(level, files.to_vec());
        }
    }

    /// Keeps a listing of every level made at `version`, unless something changed since.
    pub fn store_all(&self, version: u64, levels: HashMap<Level, Vec<LtxFileInfo>>) {
        let mut c = self.lock();
        if c.version == version {
            c.levels = levels;
            c.complete = true;
        }
    }

    /// Called before a change: listings in flight are no longer to be trusted.
    pub fn begin_change(&self) {
        self.lock().version += 1;
    }

    /// After an upload: the file is in its level (or, when it failed, the level is unknown).
    pub fn written(&self, level: Level, info: Option<&LtxFileInfo>) {
        let mut c = self.lock();
        let Some(info) = info else {
            c.levels.remove(&level);
            c.complete = false;
            return;
        };
        let files = if c.complete {
            Some(c.levels.entry(level).or_default())
        } else {
            c.levels.get_mut(&level)
        };
        if let Some(files) = files {
            files.retain(|f| key(f) != key(info));
            let at = files.partition_point(|f| key(f) < key(info));
            files.insert(at, info.clone());
        }
    }

    /// After deletes: the files are gone (or, when some failed, their levels are unknown).
    pub fn deleted(&self, files: &[LtxFileInfo], ok: bool) {
        let mut c = self.lock();
        if !ok {
            c.complete = false;
        }
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
        c.complete = false;
    }
}
