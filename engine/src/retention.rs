//! Retention (docs/replica-layout.md#retention): which files may go, with the two invariants a
//! restore depends on: the newest file of a level is never deleted, and nothing is deleted that the
//! chain from a retained snapshot (or from L1) still needs.

use std::time::{Duration, SystemTime};

use ltx_codec::{Level, TxId, SNAPSHOT_LEVEL};
use storage::{LtxFileInfo, SharedReplica};
use tracing::{info, warn};

use crate::compactor::newest;
use crate::error::{Error, Result};
use crate::meta::MetaDir;

/// L0 files to delete (`EnforceL0Retention`): in name order, stop at the first file newer than
/// `threshold`; take those covered by L1 (`MaxTXID <= max_l1`); if the scan reached the end,
/// never take the last file.
pub fn l0_victims(l0: &[LtxFileInfo], max_l1: TxId, threshold: SystemTime) -> Vec<LtxFileInfo> {
    if max_l1 == TxId::ZERO {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut all = true;
    for f in l0 {
        if f.created_at > threshold {
            all = false;
            break;
        }
        if f.max_txid <= max_l1 {
            out.push(f.clone());
        }
    }
    if all && out.last().is_some() && out.last() == l0.last() {
        out.pop();
    }
    out
}

/// Snapshots to delete and the TXID floor for levels 1..n: snapshots created before
/// `threshold`, keeping the newest; the floor is the MaxTXID of the newest deleted one.
pub fn snapshot_victims(l9: &[LtxFileInfo], threshold: SystemTime) -> (Vec<LtxFileInfo>, TxId) {
    let mut out: Vec<LtxFileInfo> = l9
        .iter()
        .filter(|f| f.created_at < threshold)
        .cloned()
        .collect();
    if out.last().is_some() && out.last() == l9.last() {
        out.pop();
    }
    let floor = out.iter().map(|f| f.max_txid).max().unwrap_or(TxId::ZERO);
    (out, floor)
}

/// Files of one level with `MaxTXID < floor`, keeping the level's newest file.
pub fn level_victims(files: &[LtxFileInfo], floor: TxId) -> Vec<LtxFileInfo> {
    let mut out: Vec<LtxFileInfo> = files
        .iter()
        .filter(|f| f.max_txid < floor)
        .cloned()
        .collect();
    if out.last().is_some() && out.last() == files.last() {
        out.pop();
    }
    out
}

/// What retention may touch.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// `l0-retention`: how old an L0 file covered by L1 must be before it is deleted (0 turns L0
    /// retention off).
    pub l0_retention: Duration,
    /// `snapshot.retention`: how long level-9 snapshots are kept (the newest always is).
    pub snapshot_retention: Duration,
    /// `retention.enabled`; false skips every remote deletion, local cleanup still runs.
    pub remote: bool,
    /// Highest configured compaction level (levels 1..=max get the snapshot floor).
    pub max_level: u8,
}

/// What one L0 retention scan found, by Litestream's `litestream_l0_retention_files_total`
/// statuses: files it deletes, files not yet covered by L1, and files from the first one newer
/// than the retention period on (where the scan stops).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L0Scan {
    /// L0 files old enough and covered by L1: the ones deleted (status `eligible`).
    pub eligible: usize,
    /// L0 files old enough but not yet covered by L1 (status `not_compacted`).
    pub not_compacted: usize,
    /// L0 files from the first one newer than the retention period on (status `too_recent`).
    pub too_recent: usize,
    /// When the first too-recent file gets old enough (its creation + the retention period):
    /// until then, and unless L0 or L1 change, another scan would find the same.
    pub ages_out: Option<SystemTime>,
}

/// Counts for [`L0Scan`]; `eligible` is the victims' count. All zero before L1 has anything,
/// as Litestream reports it.
pub fn l0_scan(
    l0: &[LtxFileInfo],
    max_l1: TxId,
    threshold: SystemTime,
    retention: Duration,
    eligible: usize,
) -> L0Scan {
    if max_l1 == TxId::ZERO {
        return L0Scan::default();
    }
    let recent = l0
        .iter()
        .position(|f| f.created_at > threshold)
        .unwrap_or(l0.len());
    L0Scan {
        eligible,
        not_compacted: l0[..recent].iter().filter(|f| f.max_txid > max_l1).count(),
        too_recent: l0.len() - recent,
        ages_out: l0.get(recent).map(|f| f.created_at + retention),
    }
}

/// L0 retention, remote and local. Runs on its check interval and after each L1 compaction.
/// `None` when L0 retention is off (`l0-retention: 0`).
pub async fn enforce_l0(
    replica: &SharedReplica,
    meta: &MetaDir,
    db: &str,
    policy: Policy,
    now: SystemTime,
) -> Result<Option<L0Scan>> {
    if policy.l0_retention.is_zero() {
        return Ok(None);
    }
    let l1 = replica.ltx_files(Level(1)).await?;
    let max_l1 = newest(&l1).map_or(TxId::ZERO, |f| f.max_txid);
    let l0 = replica.ltx_files(Level(0)).await?;
    let threshold = now.checked_sub(policy.l0_retention).unwrap_or(now);
    let victims = l0_victims(&l0, max_l1, threshold);
    let scan = l0_scan(&l0, max_l1, threshold, policy.l0_retention, victims.len());
    let Some(cutoff) = victims.iter().map(|f| f.max_txid).max() else {
        return Ok(Some(scan));
    };
    if policy.remote {
        replica.delete_ltx(&victims).await?;
    }
    let n = delete_local_l0(meta, cutoff)?;
    // Litestream's keys first (`deleted_count`, `max_l1_txid`), then ours.
    info!(system = "store", db = %db, deleted_count = victims.len(), max_l1_txid = %max_l1, local_deleted = n, remote = policy.remote, "l0 retention enforced");
    Ok(Some(scan))
}

/// Deletes local L0 files with `MaxTXID <= cutoff`, never the newest local one: the follower
/// derives its position from it and verifies against it.
fn delete_local_l0(meta: &MetaDir, cutoff: TxId) -> Result<usize> {
    let dir = meta.level_dir(Level(0));
    let files = storage::file::list_level_dir(&dir, Level(0))?;
    let newest_local = files.iter().map(|f| f.max_txid).max();
    let mut n = 0;
    for f in &files {
        if f.max_txid > cutoff || Some(f.max_txid) == newest_local {
            continue;
        }
        let p = dir.join(f.name());
        match std::fs::remove_file(&p) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove local L0 file", p, e)),
        }
    }
    Ok(n)
}

/// Snapshot retention, then the floor applied to levels 1..=max. Runs after each L9 attempt.
pub async fn enforce_snapshots(
    replica: &SharedReplica,
    policy: Policy,
    now: SystemTime,
) -> Result<usize> {
    if !policy.remote {
        // Litestream keeps no local snapshot or L1+ copies, so there is nothing local to do.
        return Ok(0);
    }
    let l9 = replica.ltx_files(SNAPSHOT_LEVEL).await?;
    let threshold = now.checked_sub(policy.snapshot_retention).unwrap_or(now);
    let (victims, floor) = snapshot_victims(&l9, threshold);
    let mut total = victims.len();
    if !victims.is_empty() {
        replica.delete_ltx(&victims).await?;
    }
    for lvl in 1..=policy.max_level {
        let files = replica.ltx_files(Level(lvl)).await?;
        let v = level_victims(&files, floor);
        if !v.is_empty() {
            if let Err(e) = replica.delete_ltx(&v).await {
                warn!(level = lvl, error = %e, "level retention failed");
                return Err(e.into());
            }
            total += v.len();
        }
    }
    if total > 0 {
        info!(deleted = total, floor = %floor, "snapshot retention enforced");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn f(level: u8, min: u64, max: u64, secs: u64) -> LtxFileInfo {
        LtxFileInfo {
            level: Level(level),
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 200,
            created_at: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn l0_rules() {
        let t = UNIX_EPOCH + Duration::from_secs(100);
        let l0 = vec![f(0, 1, 1, 10), f(0, 2, 2, 20), f(0, 3, 3, 30)];
        // All old, all covered: the newest stays.
        let v = l0_victims(&l0, TxId(3), t);
        assert_eq!(v.iter().map(|x| x.max_txid.0).collect::<Vec<_>>(), [1, 2]);
        // Only covered files go.
        assert_eq!(l0_victims(&l0, TxId(1), t).len(), 1);
        // The scan stops at the first recent file, and then the last taken file may go.
        let t2 = UNIX_EPOCH + Duration::from_secs(25);
        let v = l0_victims(&l0, TxId(3), t2);
        assert_eq!(v.iter().map(|x| x.max_txid.0).collect::<Vec<_>>(), [1, 2]);
        assert!(l0_victims(&l0, TxId(0), t).is_empty());
    }

    #[test]
    fn l0_scan_counts() {
        let l0 = vec![
            f(0, 1, 1, 10),
            f(0, 2, 2, 20),
            f(0, 3, 3, 30),
            f(0, 4, 4, 40),
        ];
        let t = UNIX_EPOCH + Duration::from_secs(25);
        // Files 1-2 are old enough, file 2 is not in L1 yet, files 3-4 are too recent.
        let v = l0_victims(&l0, TxId(1), t);
        let keep = Duration::from_secs(100);
        let scan = l0_scan(&l0, TxId(1), t, keep, v.len());
        assert_eq!(
            scan,
            L0Scan {
                eligible: 1,
                not_compacted: 1,
                too_recent: 2,
                // File 3, created at 30 s, is old enough at 130 s.
                ages_out: Some(UNIX_EPOCH + Duration::from_secs(130)),
            }
        );
        assert_eq!(l0_scan(&l0, TxId(0), t, keep, 0), L0Scan::default());
        // Nothing too recent: nothing to wait for.
        let later = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(l0_scan(&l0, TxId(4), later, keep, 3).ages_out, None);
    }

    #[test]
    fn snapshot_rules() {
        let l9 = vec![f(9, 1, 5, 10), f(9, 1, 9, 20), f(9, 1, 12, 30)];
        let (v, floor) = snapshot_victims(&l9, UNIX_EPOCH + Duration::from_secs(25));
        assert_eq!(v.len(), 2);
        assert_eq!(floor, TxId(9));
        // Everything old: the newest is kept.
        let (v, floor) = snapshot_victims(&l9, UNIX_EPOCH + Duration::from_secs(99));
        assert_eq!((v.len(), floor), (2, TxId(9)));
        let l1 = vec![f(1, 1, 3, 0), f(1, 4, 8, 0), f(1, 9, 9, 0), f(1, 10, 12, 0)];
        let v = level_victims(&l1, TxId(9));
        assert_eq!(v.iter().map(|x| x.max_txid.0).collect::<Vec<_>>(), [3, 8]);
        let only = vec![f(1, 1, 3, 0)];
        assert!(level_victims(&only, TxId(9)).is_empty());
    }
}
