//! One consistent state of the replicated database: where each of its pages is in the
//! replica's LTX files (docs/vfs.md#reading-pages).
//!
//! A view is built from a restore plan (the files `ls-restore` would read for the same target)
//! by reading each file's page index, later files' pages replacing earlier ones. It is never
//! changed once published: following the primary makes a new view from the last one and the
//! L0 files written since, so a read transaction keeps the view it started with.

use std::sync::Arc;
use std::time::SystemTime;

use ltx_codec::{lock_pgno, Level, TxId};
use restore::fetch::{read_layout, FileLayout};
use restore::{calc_plan, Listing, Target};
use storage::{LtxFileInfo, ReplicaClient};

/// Files referenced by a view above which following rebuilds it from the compacted levels,
/// so that a long-lived reader does not keep one entry per L0 file forever.
const MAX_FILES: usize = 4096;
/// Page indexes read at once while a view is built.
const PARALLEL_INDEXES: usize = 16;

/// Where one page's frame is: a file of [`View::files`], the frame's offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    pub file: u32,
    pub offset: u64,
    pub size: u32,
}

const ABSENT: FrameRef = FrameRef {
    file: u32::MAX,
    offset: 0,
    size: 0,
};

#[derive(Clone, Debug)]
pub struct View {
    pub txid: TxId,
    pub page_size: u32,
    /// The database's size in pages.
    pub commit: u32,
    /// When the newest file of the view was created (`litestream_time`).
    pub newest_at: SystemTime,
    pub files: Arc<Vec<LtxFileInfo>>,
    /// Indexed by page number - 1; `commit` long.
    pages: Vec<FrameRef>,
}

/// Why a view could not be built or followed; the text names the replica file.
pub type ViewError = String;

impl View {
    /// The view of `target`: the restore plan's files, their page indexes applied in order.
    pub async fn build(client: &dyn ReplicaClient, target: Target) -> Result<View, ViewError> {
        let listing = Listing::fetch(client).await.map_err(|e| e.to_string())?;
        let plan = calc_plan(&listing, target).map_err(|e| e.to_string())?;
        let layouts = layouts(client, &plan).await?;
        let mut v = View {
            txid: TxId(0),
            page_size: 0,
            commit: 0,
            newest_at: SystemTime::UNIX_EPOCH,
            files: Arc::new(Vec::with_capacity(layouts.len())),
            pages: Vec::new(),
        };
        for l in &layouts {
            v.apply(l)?;
        }
        Ok(v)
    }

    /// The view after the L0 files written since this one, `None` if there are none, or a
    /// view rebuilt from the whole replica when they do not continue this one (compacted
    /// away before they were seen, or a replica started over).
    pub async fn follow(&self, client: &dyn ReplicaClient) -> Result<Option<View>, ViewError> {
        let l0 = client
            .ltx_files(Level(0))
            .await
            .map_err(|e| e.to_string())?;
        let newest = l0.iter().map(|f| f.max_txid).max();
        let mut next: Vec<LtxFileInfo> = Vec::new();
        let mut at = self.txid;
        for f in l0.into_iter().filter(|f| f.max_txid > self.txid) {
            if f.min_txid.0 != at.0 + 1 {
                break;
            }
            at = f.max_txid;
            next.push(f);
        }
        let continues = !next.is_empty() && newest == Some(at);
        if next.is_empty() && newest.is_none_or(|n| n == self.txid) {
            return Ok(None);
        }
        if !continues || self.files.len() + next.len() > MAX_FILES {
            let v = View::build(client, Target::Latest).await?;
            return Ok((v.txid != self.txid || v.files != self.files).then_some(v));
        }
        let layouts = layouts(client, &next).await?;
        let mut v = self.clone();
        for l in &layouts {
            v.apply(l)?;
        }
        Ok(Some(v))
    }

    /// Lays one file's pages over the view.
    fn apply(&mut self, l: &FileLayout) -> Result<(), ViewError> {
        let h = &l.header;
        if self.page_size != 0 && h.page_size != self.page_size {
            return Err(format!(
                "{}: page size {} differs from the {} of the files before it",
                l.label, h.page_size, self.page_size
            ));
        }
        let file = u32::try_from(self.files.len()).map_err(|_| "too many files".to_string())?;
        Arc::make_mut(&mut self.files).push(l.info.clone());
        self.page_size = h.page_size;
        self.commit = h.commit;
        self.txid = l.info.max_txid;
        self.newest_at = self.newest_at.max(l.info.created_at);
        self.pages.resize(h.commit as usize, ABSENT);
        for e in &l.frames {
            // read_layout has checked every page is within Commit and every frame's size.
            let size =
                u32::try_from(e.size).map_err(|_| format!("{}: frame too large", l.label))?;
            self.pages[e.pgno as usize - 1] = FrameRef {
                file,
                offset: e.offset,
                size,
            };
        }
        Ok(())
    }

    /// The file and frame holding page `pgno`, `None` for the lock page (never stored; it reads
    /// as zeros) and an error for any other page the replica does not have.
    pub fn frame(&self, pgno: u32) -> Result<Option<(&LtxFileInfo, FrameRef)>, ViewError> {
        let r = self.pages.get(pgno as usize - 1).copied().unwrap_or(ABSENT);
        if r == ABSENT {
            if pgno == lock_pgno(self.page_size) {
                return Ok(None);
            }
            return Err(format!(
                "page {pgno} is in no file of the replica up to TXID {}",
                self.txid
            ));
        }
        Ok(Some((&self.files[r.file as usize], r)))
    }

    /// Every stored page: its number, the index of its file in [`View::files`], its frame.
    pub fn frames(&self) -> impl Iterator<Item = (u32, usize, FrameRef)> + '_ {
        self.pages
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != ABSENT)
            .map(|(i, r)| (i as u32 + 1, r.file as usize, *r))
    }

    /// A view of no pages at `txid`, for tests.
    #[cfg(test)]
    pub fn empty_for_test(txid: TxId) -> View {
        View {
            txid,
            page_size: 4096,
            commit: 0,
            newest_at: SystemTime::UNIX_EPOCH,
            files: Arc::new(Vec::new()),
            pages: Vec::new(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        u64::from(self.commit) * u64::from(self.page_size)
    }
}

/// The page index of every file of `files`, in order, read a few at a time.
async fn layouts(
    client: &dyn ReplicaClient,
    files: &[LtxFileInfo],
) -> Result<Vec<FileLayout>, ViewError> {
    let mut out = Vec::with_capacity(files.len());
    for chunk in files.chunks(PARALLEL_INDEXES) {
        let reads = chunk.iter().map(|f| read_layout(client, f));
        for r in futures_util::future::join_all(reads).await {
            out.push(r.map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}
