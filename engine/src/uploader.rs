//! Uploads local L0 files to the replica in TXID order (§4.7). The replica position is cached
//! in memory, so an idle database costs no listings; it is re-read only at start and after an
//! error.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ltx_codec::{Header, Level, TxId};
use storage::{Body, LtxFileInfo, SharedReplica};
use tracing::info;

use crate::error::{Error, Result};
use crate::meta::MetaDir;

pub struct Uploader {
    replica: SharedReplica,
    meta: MetaDir,
    db: PathBuf,
    pos: Option<TxId>,
}

/// The newest L0 file of a replica, if any.
pub async fn replica_max_l0(replica: &SharedReplica) -> Result<Option<LtxFileInfo>> {
    let files = replica.ltx_files(Level(0)).await?;
    Ok(files.into_iter().max_by_key(|f| f.max_txid))
}

impl Uploader {
    pub fn new(replica: SharedReplica, meta: MetaDir, db: PathBuf) -> Self {
        Uploader {
            replica,
            meta,
            db,
            pos: None,
        }
    }

    /// Replica position if known.
    pub fn pos(&self) -> Option<TxId> {
        self.pos
    }

    /// Uploads every local L0 file after the replica position up to `local_max`.
    pub async fn sync(&mut self, local_max: TxId) -> Result<usize> {
        let r = self.sync_inner(local_max).await;
        if r.is_err() {
            // Unknown again: the next attempt re-reads it from the replica.
            self.pos = None;
        }
        r
    }

    async fn sync_inner(&mut self, local_max: TxId) -> Result<usize> {
        let mut pos = match self.pos {
            Some(p) => p,
            None => {
                let p = replica_max_l0(&self.replica)
                    .await?
                    .map_or(TxId::ZERO, |f| f.max_txid);
                self.pos = Some(p);
                p
            }
        };
        let mut n = 0;
        while pos < local_max {
            let txid = pos.next();
            let path = self.meta.l0_path(txid);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| Error::io("read local L0 file for upload", &path, e))?;
            let header = Header::decode(&bytes).map_err(|e| Error::ltx(format!("L0 {txid}"), e))?;
            let created = SystemTime::UNIX_EPOCH
                + Duration::from_millis(u64::try_from(header.timestamp).unwrap_or(0));
            let size = bytes.len();
            self.replica
                .write_ltx(
                    Level(0),
                    txid,
                    txid,
                    Body::Bytes(Bytes::from(bytes)),
                    created,
                )
                .await?;
            pos = txid;
            self.pos = Some(pos);
            n += 1;
            tracing::debug!(db = %self.db.display(), txid = %txid, size, "ltx file uploaded");
        }
        if n > 0 {
            info!(db = %self.db.display(), replica = self.replica.kind(), txid = %pos, files = n, "replica sync");
        }
        Ok(n)
    }
}
