//! Level-9 snapshots (§4.10). The follower builds the file (it owns the read transaction that
//! holds checkpoints off while the database and WAL are read); uploading and the decision
//! whether one is due happen off the follower's task.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ltx_codec::{TxId, SNAPSHOT_LEVEL};
use storage::{LtxFileInfo, SharedReplica};
use tokio::sync::oneshot;

use crate::compactor::newest;
use crate::error::Result;
use crate::schedule::prev_at;

/// A built snapshot staged on disk: its MaxTXID, header timestamp (ms) and path.
pub type Built = Option<(TxId, i64, PathBuf)>;

/// A request to the database task to build a snapshot; the reply carries the staged file.
pub type Request = oneshot::Sender<Result<Built>>;

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
            SNAPSHOT_LEVEL,
            TxId(1),
            txid,
            storage::Body::File(path.clone()),
            created,
        )
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(r?)
}
