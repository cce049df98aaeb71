//! Hydration (`LITESTREAM_HYDRATION_ENABLED`): a local copy of the database, filled in the
//! background and kept at the latest view, from which reads are served once their page is
//! there (docs/vfs.md#hydration).
//!
//! Each page of the copy remembers which frame of the replica it holds. A read takes the page
//! from the copy only if that is the frame its own view points at, so a read transaction on an
//! older view (or a time-travel view) never sees a newer page: it falls back to the replica for
//! the pages that changed since.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use storage::{LtxFileInfo, ReplicaClient};

use crate::view::{FrameRef, View, ViewError};

mod saved;

/// A frame of the replica, independent of any view: the level, last TXID and size of its file
/// (the size tells a file apart from one written again under the same name), and its offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameKey {
    level: u8,
    max_txid: u64,
    file_size: u64,
    offset: u64,
}

impl FrameKey {
    /// The key of `frame` of the file `info`.
    pub fn of(info: &LtxFileInfo, frame: FrameRef) -> FrameKey {
        FrameKey {
            level: info.level.0,
            max_txid: info.max_txid.0,
            file_size: info.size,
            offset: frame.offset,
        }
    }

    const NONE: FrameKey = FrameKey {
        level: u8::MAX,
        max_txid: u64::MAX,
        file_size: u64::MAX,
        offset: u64::MAX,
    };

    /// Bytes of [`FrameKey::encode`].
    const ENCODED: usize = 25;

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.level);
        out.extend_from_slice(&self.max_txid.to_le_bytes());
        out.extend_from_slice(&self.file_size.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
    }

    fn decode(b: &[u8]) -> FrameKey {
        let u = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        FrameKey {
            level: b[0],
            max_txid: u(1),
            file_size: u(9),
            offset: u(17),
        }
    }
}

/// Bytes of consecutive frames fetched with one ranged read while hydrating.
const RUN_BYTES: u64 = 4 << 20;

pub struct Hydration {
    /// What `litestream_hydration_file` answers.
    pub path: PathBuf,
    file: File,
    /// A copy at a path the user gave, resumed by the next process (see [`saved`]).
    persistent: bool,
    /// The replica the copy is of, recorded with it.
    replica_url: String,
    state: RwLock<State>,
}

struct State {
    page_size: u32,
    /// Indexed by page number - 1: the frame each page of the copy holds.
    keys: Vec<FrameKey>,
    /// Pages of the latest view the copy holds, and how many it has.
    have: u64,
    total: u64,
}

impl Hydration {
    /// Opens the copy at `path` (its directory must exist) and resumes it if the record
    /// beside it says which frames it holds and that it is of `replica_url`; otherwise starts
    /// it over. Without a path, the copy is a file in the temporary directory unlinked at once,
    /// so that nothing is left behind. Readable by its owner only.
    pub fn create(path: Option<&Path>, replica_url: &str) -> Result<Hydration, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let (path, persistent) = match path {
            Some(p) => (p.to_owned(), true),
            None => (
                std::env::temp_dir().join(format!("ls-vfs-{}-hydration.db", std::process::id())),
                false,
            ),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!persistent)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot create hydration file {}: {e}", path.display()))?;
        let fail = |e: std::io::Error| format!("hydration file {}: {e}", path.display());
        let mut state = State {
            page_size: 0,
            keys: Vec::new(),
            have: 0,
            total: 0,
        };
        if persistent {
            let len = file.metadata().map_err(fail)?.len();
            match saved::load(&path, replica_url, len) {
                Some((page_size, keys)) => {
                    crate::log::debug(&format!(
                        "resuming the hydration copy {} ({} pages)",
                        path.display(),
                        keys.len()
                    ));
                    state.page_size = page_size;
                    state.keys = keys;
                }
                None => {
                    saved::remove(&path);
                    file.set_len(0).map_err(fail)?;
                }
            }
        } else {
            let _ = std::fs::remove_file(&path);
        }
        Ok(Hydration {
            path,
            file,
            persistent,
            replica_url: replica_url.to_owned(),
            state: RwLock::new(state),
        })
    }

    /// Fills `out` from page `pgno` of the copy, from byte `in_page` of the page, if the copy
    /// holds `key` there; false (nothing read) otherwise.
    pub fn read_into(&self, pgno: u32, key: FrameKey, in_page: usize, out: &mut [u8]) -> bool {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        if s.keys.get(pgno as usize - 1) != Some(&key) {
            return false;
        }
        let at = u64::from(pgno - 1) * u64::from(s.page_size) + in_page as u64;
        // Read under the lock: the page cannot be overwritten meanwhile.
        self.file.read_exact_at(out, at).is_ok()
    }

    /// Percent of the latest view's pages the copy holds, one decimal (`100.0` when done).
    pub fn progress(&self) -> String {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        let pct = if s.total == 0 {
            0.0
        } else {
            s.have as f64 * 100.0 / s.total as f64
        };
        format!("{pct:.1}")
    }

    /// Brings the copy to `view`: the pages whose frame differs are fetched (consecutive frames
    /// of a file in one ranged read) and written; the file takes the view's size. Returns how
    /// many pages were fetched.
    pub async fn catch_up(
        &self,
        client: &dyn ReplicaClient,
        view: &View,
    ) -> Result<usize, ViewError> {
        let fail = |e: std::io::Error| format!("{}: {e}", self.path.display());
        let want: Vec<(u32, usize, FrameRef)> = {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            let resized = s.page_size != view.page_size || s.keys.len() != view.commit as usize;
            let mut total = 0u64;
            let want: Vec<_> = view
                .frames()
                .inspect(|_| total += 1)
                .filter(|&(pgno, file, f)| {
                    s.page_size != view.page_size
                        || s.keys.get(pgno as usize - 1)
                            != Some(&FrameKey::of(&view.files[file], f))
                })
                .collect();
            if self.persistent && (resized || !want.is_empty()) {
                // The record must never describe a copy being rewritten.
                saved::remove(&self.path);
            }
            if s.page_size != view.page_size {
                s.keys.clear();
                s.page_size = view.page_size;
            }
            s.keys.resize(view.commit as usize, FrameKey::NONE);
            self.file.set_len(view.size_bytes()).map_err(fail)?;
            s.total = total;
            s.have = s.total - want.len() as u64;
            want
        };
        let mut i = 0;
        while i < want.len() {
            // A run: frames of one file that follow each other, up to RUN_BYTES.
            let (_, file, first) = want[i];
            let mut end = i + 1;
            let mut len = u64::from(first.size);
            while end < want.len() {
                let (_, f, fr) = want[end];
                if f != file || fr.offset != first.offset + len || len >= RUN_BYTES {
                    break;
                }
                len += u64::from(fr.size);
                end += 1;
            }
            self.fetch_run(client, view, &view.files[file], &want[i..end], len)
                .await?;
            i = end;
        }
        if self.persistent && !saved::exists(&self.path) {
            // Everything written is on disk before the record says so.
            self.file.sync_data().map_err(fail)?;
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            saved::store(&self.path, &self.replica_url, s.page_size, &s.keys).map_err(fail)?;
        }
        Ok(want.len())
    }

    async fn fetch_run(
        &self,
        client: &dyn ReplicaClient,
        view: &View,
        info: &LtxFileInfo,
        run: &[(u32, usize, FrameRef)],
        len: u64,
    ) -> Result<(), ViewError> {
        let start = run[0].2.offset;
        let label = restore::fetch::file_label(info);
        let bytes = client
            .read_range(info.ltx_name(), start, Some(len))
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        let mut page = vec![0u8; view.page_size as usize];
        for &(pgno, _, f) in run {
            let at = (f.offset - start) as usize;
            let frame = bytes
                .get(at..at + f.size as usize)
                .ok_or_else(|| format!("{label}: short read at {}", f.offset))?;
            crate::cache::decode(frame, pgno, f, view.page_size, &mut page)
                .map_err(|e| format!("{label}: {e}"))?;
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            self.file
                .write_all_at(&page, u64::from(pgno - 1) * u64::from(view.page_size))
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            if let Some(k) = s.keys.get_mut(pgno as usize - 1) {
                *k = FrameKey::of(info, f);
                s.have += 1;
            }
        }
        Ok(())
    }
}
