//! Level-9 snapshots (docs/wal.md#level-9-snapshots). The follower hands out a [`Job`] that shares
//! its read transaction (so checkpoints stay held off while the database and WAL are read) and goes
//! on syncing; the job is built on another thread, and uploading and the decision whether one is
//! due happen off the follower's task too.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ltx_codec::wal::{WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE};
use ltx_codec::{Header, TxId, SNAPSHOT_LEVEL};
use storage::{LtxFileInfo, LtxName, SharedReplica};
use tokio::sync::oneshot;
use tracing::debug;

use crate::compactor::newest;
use crate::error::{Error, Result};
use crate::l0::{self, PageSource};
use crate::meta::MetaDir;
use crate::schedule::prev_at;
use crate::walread::WalFile;

/// A built snapshot staged on disk: its MaxTXID, header timestamp (ms) and path.
pub type Built = Option<(TxId, i64, PathBuf)>;

/// A request to the database task for a snapshot job; the reply carries the job, which the
/// caller builds off the follower's thread.
pub type Request = oneshot::Sender<Result<Option<Job>>>;

/// A claim on the follower's read transaction. While a clone of it is alive the follower does
/// not checkpoint, so WAL frames up to the synced offset stay where they are and no later frame
/// is copied into the database file. If the follower loses the transaction anyway (an error
/// closed its connections) the claim is marked broken and the snapshot is thrown away.
#[derive(Debug, Default)]
pub struct ReadHold {
    broken: AtomicBool,
}

impl ReadHold {
    /// Records that the follower lost its read transaction: a snapshot read under it is thrown
    /// away.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

/// Everything needed to write `9/1-<txid>` from the database file and the WAL up to the offset
/// the follower had synced when it was taken.
pub struct Job {
    /// The database path.
    pub db_path: PathBuf,
    /// The database's WAL path.
    pub wal_path: PathBuf,
    /// The follower's own handle on the database file, shared rather than duplicated: closing
    /// any descriptor of the file would drop the locks SQLite holds on it for this process.
    pub db: Arc<File>,
    /// The database page size in bytes.
    pub page_size: u32,
    /// The follower's position, which becomes the snapshot's max TXID.
    pub txid: TxId,
    /// End of the WAL bytes `txid` covers.
    pub wal_end: u64,
    /// The meta directory the snapshot is staged in.
    pub meta: MetaDir,
    /// The claim on the follower's read transaction that holds checkpoints off while the job
    /// lives.
    pub hold: Arc<ReadHold>,
}

/// Test hook: how long a snapshot build pauses after reading the WAL index and before reading
/// any page, so that a test can make the follower sync (and want to checkpoint) meanwhile.
/// Unset, the default, means no pause.
fn test_pause() -> Option<Duration> {
    std::env::var("LS_TEST_SNAPSHOT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

impl Job {
    /// Builds the snapshot into a staged file in the meta directory (a snapshot of a large
    /// database is never held in memory whole). Blocking.
    pub fn build(self) -> Result<Built> {
        let hdr = WAL_HEADER_SIZE as u64;
        let frame_size = u64::from(self.page_size) + WAL_FRAME_HEADER_SIZE as u64;
        let wal = WalFile::open(&self.wal_path, Some(self.wal_end))?;
        let scan = wal.scan(hdr, (0, 0), None)?;
        // Litestream writes zero salts when the WAL has no valid header.
        let salts = if scan.header_valid {
            scan.salts
        } else {
            (0, 0)
        };
        let committed = scan.committed;
        debug!(db = %self.db_path.display(), txid = %self.txid, wal_end = self.wal_end, "building snapshot");
        if let Some(d) = test_pause() {
            std::thread::sleep(d);
        }
        let db_len = self
            .db
            .metadata()
            .map_err(|e| Error::io("stat database", &self.db_path, e))?
            .len();
        let (commit, wal_offset, wal_size) = if committed.pages.is_empty() {
            ((db_len / u64::from(self.page_size)) as u32, hdr, 0)
        } else {
            (
                committed.commit,
                committed.end_offset - frame_size,
                frame_size,
            )
        };
        let ts = crate::l0::now_ms();
        let mut h = Header::new(self.page_size, commit, TxId(1), self.txid, ts);
        h.wal_offset = wal_offset as i64;
        h.wal_size = wal_size as i64;
        h.wal_salt1 = salts.0;
        h.wal_salt2 = salts.1;
        let pages = l0::page_list(true, &committed.pages, 0, commit, self.page_size);
        let src = PageSource {
            wal: &wal,
            wal_pages: &committed.pages,
            db: &self.db,
            page_size: self.page_size,
        };
        let path = self
            .meta
            .level_dir(SNAPSHOT_LEVEL)
            .join(ltx_codec::types::ltx_file_name(TxId(1), self.txid));
        let staged = self.meta.stage(path.clone())?;
        let staged = l0::encode_with_header(h, &pages, &src, staged)?;
        if !wal.unchanged()? || self.hold.is_broken() {
            return Err(Error::Other(format!(
                "{}: the read transaction was lost while snapshotting; will retry",
                self.db_path.display()
            )));
        }
        staged.commit()?;
        Ok(Some((self.txid, ts, path)))
    }
}

/// Whether a scheduled snapshot is due at period boundary `at`: not if one was already made in
/// this period, and not if the newest snapshot already covers `pos`.
pub async fn due(
    replica: &SharedReplica,
    interval: Duration,
    at: SystemTime,
    pos: TxId,
) -> Result<bool> {
    if pos == TxId::ZERO {
        return Ok(false);
    }
    let l9 = replica.ltx_files(SNAPSHOT_LEVEL).await?;
    Ok(match newest(&l9) {
        Some(n) => n.created_at <= prev_at(at, interval) && n.max_txid < pos,
        None => true,
    })
}

/// Builds `job` on a blocking thread.
pub async fn build(job: Job) -> Result<Built> {
    tokio::task::spawn_blocking(move || job.build())
        .await
        .map_err(|e| Error::Other(format!("snapshot thread failed: {e}")))?
}

/// Uploads a staged snapshot as `9/1-<txid>` with its header time as creation time, then
/// removes the staging file: Litestream keeps no local level 9.
pub async fn upload(
    replica: &SharedReplica,
    txid: TxId,
    ts_ms: i64,
    path: PathBuf,
) -> Result<LtxFileInfo> {
    let created = UNIX_EPOCH + Duration::from_millis(u64::try_from(ts_ms).unwrap_or(0));
    let r = replica
        .write_ltx(
            LtxName::new(SNAPSHOT_LEVEL, TxId(1), txid),
            storage::Body::File(path.clone()),
            created,
        )
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(r?)
}
