//! Resuming follow mode after a restart or a crash: the database is where `<db>-txid` says,
//! because that file is written only after every file up to its TXID was applied and fsynced
//! (a file applied after it is applied again: page writes and the final truncate are
//! idempotent). Like Litestream 0.5.17, the saved TXID is checked against the replica before
//! following resumes; the checks differ where Litestream's would refuse a normal restart (see
//! docs/restore.md#follow-mode).

use std::io;
use std::path::Path;

use ltx_codec::{Header, Level, TxId, HEADER_SIZE, SNAPSHOT_LEVEL};
use storage::{LtxFileInfo, SharedReplica};

use super::txid_path;
use crate::fetch::file_label;
use crate::{RestoreError, Result};

/// The TXID in `<out>-txid`, or `None` if there is no such file.
pub fn read_txid_file(out: &Path) -> Result<Option<TxId>> {
    let p = txid_path(out);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RestoreError::io(p, e)),
    };
    text.trim().parse().map(Some).map_err(|_| {
        RestoreError::Output(format!(
            "{}: not a TXID (16 hex digits): {:?}",
            p.display(),
            text.trim()
        ))
    })
}

/// Where a follower whose database `out` already exists resumes: the TXID of `<out>-txid` and
/// the database's page size, once the replica shows it can continue from there.
pub async fn resume_point(client: &SharedReplica, out: &Path) -> Result<(TxId, u32)> {
    let Some(txid) = read_txid_file(out)? else {
        return Err(RestoreError::Output(format!(
            "cannot resume follow mode: database exists but no -txid file found; delete the database to re-restore: {}",
            out.display()
        )));
    };
    let redo = || format!("delete {0} and {0}-txid to re-restore", out.display());
    let mut newest: Option<LtxFileInfo> = None;
    let mut next: Option<LtxFileInfo> = None;
    for level in 0..=SNAPSHOT_LEVEL.0 {
        for f in client.ltx_files(Level(level)).await? {
            // Follow mode applies files from levels 0-8 only; one must start at or before
            // the next TXID and end after the saved one.
            if level < SNAPSHOT_LEVEL.0
                && next.is_none()
                && f.min_txid.0 <= txid.0.saturating_add(1)
                && f.max_txid > txid
            {
                next = Some(f.clone());
            }
            if newest.as_ref().is_none_or(|n| f.max_txid > n.max_txid) {
                newest = Some(f);
            }
        }
    }
    let Some(newest) = newest else {
        return Err(RestoreError::Output(format!(
            "cannot resume follow mode: the replica is empty; {}",
            redo()
        )));
    };
    if txid > newest.max_txid {
        return Err(RestoreError::Output(format!(
            "cannot resume follow mode: saved TXID {txid} is ahead of the replica (newest TXID {}); {}",
            newest.max_txid,
            redo()
        )));
    }
    let from = match next {
        Some(f) => f,
        None if txid == newest.max_txid => newest,
        None => {
            return Err(RestoreError::Output(format!(
                "cannot resume follow mode: no replica file continues from saved TXID {txid} (newest {}); replica history has been pruned -- {}",
                newest.max_txid,
                redo()
            )))
        }
    };
    // The page size from the replica, as a fresh follower takes it from the files it
    // restores (page 1 need not be a valid SQLite header); the database must hold whole
    // pages of it.
    let head = client
        .read_range(from.ltx_name(), 0, Some(HEADER_SIZE as u64))
        .await?;
    let page_size = Header::decode(&head)
        .map_err(|e| RestoreError::ltx(&file_label(&from), e))?
        .page_size;
    let len = std::fs::metadata(out)
        .map_err(|e| RestoreError::io(out, e))?
        .len();
    if len % u64::from(page_size) != 0 {
        return Err(RestoreError::Output(format!(
            "cannot resume follow mode: {} ({len} bytes) is not made of {page_size}-byte pages like the replica; {}",
            out.display(),
            redo()
        )));
    }
    Ok((txid, page_size))
}
