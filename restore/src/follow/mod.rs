//! Follow mode (`-f`, Litestream's `Replica.follow`): after the restore, keep polling the
//! replica and apply each new LTX file's pages to the restored database in place, so that it
//! serves as a read replica; after a restart, resume from the `<db>-txid` file.
//!
//! Each file is verified whole before any of its pages touches the database, so a damaged
//! file never leaves a half-applied transaction behind (Litestream decodes as it writes and
//! finds a bad CRC only at the end), and memory does not grow with the file ([`apply`]).

mod apply;
mod resume;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ltx_codec::{Level, TxId, SNAPSHOT_LEVEL};
use storage::{local, LtxFileInfo, SharedReplica};

use crate::{RestoreError, Result};
use apply::Target;
pub use apply::MAX_PAGE_COUNT;
pub use resume::resume_point;

/// Litestream's `DefaultFollowInterval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// `<out>-txid`, where follow mode records the TXID the database is at.
pub fn txid_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push("-txid");
    PathBuf::from(s)
}

/// Writes `<out>-txid` atomically: 16 hex digits and a newline (Litestream's `WriteTXIDFile`).
pub fn write_txid_file(out: &Path, txid: TxId) -> Result<()> {
    let p = txid_path(out);
    // The TXID file says how far the restored database is: no more readable than it.
    let mode = local::file_mode_like(out);
    local::write_file_atomic(&p, &[format!("{txid}\n").as_bytes()], None, mode)
        .map_err(|e| RestoreError::io(p, e))
}

/// Litestream's `applyNewLTXFiles`: the L0 files after `after`, with gaps bridged from levels
/// 1..8. Returns the TXID reached, which on error is where the database stands.
async fn apply_new(client: &SharedReplica, db: &Arc<Target>, after: TxId) -> (TxId, Result<()>) {
    let mut current = after;
    let l0 = match client.ltx_files(Level(0)).await {
        Ok(f) => f,
        Err(e) => return (current, Err(e.into())),
    };
    let newer: Vec<&LtxFileInfo> = l0.iter().filter(|f| f.max_txid > current).collect();
    if newer.is_empty() {
        return fill_gap(client, db, current, current.next()).await;
    }
    for info in newer {
        if info.min_txid.0 > current.0 + 1 {
            let (bridged, r) = fill_gap(client, db, current, info.min_txid).await;
            current = bridged;
            if r.is_err() {
                return (current, r);
            }
            if info.max_txid <= current {
                continue;
            }
            if info.min_txid.0 > current.0 + 1 {
                return (current, Ok(()));
            }
        }
        if info.max_txid <= current {
            continue;
        }
        if let Err(e) = db.apply(client, info).await {
            return (current, Err(e));
        }
        current = info.max_txid;
    }
    (current, Ok(()))
}

/// Litestream's `fillFollowGap`: walks levels 1..8 for files continuing `after`, applying them
/// until the gap before `gap_min` is bridged; stops at the first level that made progress.
async fn fill_gap(
    client: &SharedReplica,
    db: &Arc<Target>,
    after: TxId,
    gap_min: TxId,
) -> (TxId, Result<()>) {
    let mut current = after;
    for level in 1..SNAPSHOT_LEVEL.0 {
        let files = match client.ltx_files(Level(level)).await {
            Ok(f) => f,
            Err(e) => return (current, Err(e.into())),
        };
        for info in &files {
            if info.min_txid.0 > current.0 + 1 {
                break;
            }
            if info.max_txid <= current {
                continue;
            }
            if let Err(e) = db.apply(client, info).await {
                return (current, Err(e));
            }
            current = info.max_txid;
            if current.0 + 1 >= gap_min.0 {
                return (current, Ok(()));
            }
        }
        if current > after {
            return (current, Ok(()));
        }
    }
    (current, Ok(()))
}

/// Follows the replica into the restored database at `out` (pages of `page_size` bytes),
/// which is at `txid`, until `stop`
/// completes. Errors while polling are reported on stderr and retried at the next tick, as
/// Litestream does; only failing to record the TXID ends the loop with an error.
pub async fn follow(
    client: &SharedReplica,
    out: &Path,
    txid: TxId,
    page_size: u32,
    interval: Duration,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    write_txid_file(out, txid)?;
    let db = Arc::new(Target::open(out, page_size)?);
    let interval = if interval.is_zero() {
        DEFAULT_INTERVAL
    } else {
        interval
    };
    let mut ticker = tokio::time::interval(interval);
    // The first tick of a tokio interval fires at once; Litestream's ticker waits a period.
    ticker.reset();
    tokio::pin!(stop);
    let mut last = txid;
    let mut errors = 0u64;
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            _ = ticker.tick() => {}
        }
        // Files written by the replicating process since the last poll are unknown to any
        // cached listing.
        client.invalidate_cache();
        let (reached, res) = apply_new(client, &db, last).await;
        if let Err(e) = res {
            errors += 1;
            tracing::warn!(
                consecutive_errors = errors,
                "follow: error applying updates: {e}"
            );
        }
        if reached > last {
            write_txid_file(out, reached)?;
            last = reached;
            // Progress resets the error count, as in Litestream.
            errors = 0;
        }
    }
}
