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
use crate::meta::{MetaDir, KEEP_IN_MEMORY};

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

/// The header bytes and an upload body: small files in memory, large ones streamed from disk.
async fn read_for_upload(path: &std::path::Path) -> Result<(Vec<u8>, Body)> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io("stat local L0 file for upload", path, e))?
        .len();
    if len <= KEEP_IN_MEMORY as u64 {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| Error::io("read local L0 file for upload", path, e))?;
        let head = bytes[..bytes.len().min(ltx_codec::HEADER_SIZE)].to_vec();
        return Ok((head, Body::Bytes(Bytes::from(bytes))));
    }
    let p = path.to_owned();
    let head = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut head = vec![0u8; ltx_codec::HEADER_SIZE];
        std::fs::File::open(&p)?.read_exact(&mut head)?;
        Ok(head)
    })
    .await
    .map_err(|e| Error::Other(format!("read L0 header: {e}")))?
    .map_err(|e| Error::io("read local L0 header", path, e))?;
    Ok((head, Body::File(path.to_owned())))
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
            let (head, body) = read_for_upload(&path).await?;
            let header = Header::decode(&head).map_err(|e| Error::ltx(format!("L0 {txid}"), e))?;
            let created = SystemTime::UNIX_EPOCH
                + Duration::from_millis(u64::try_from(header.timestamp).unwrap_or(0));
            let info = self
                .replica
                .write_ltx(Level(0), txid, txid, body, created)
                .await?;
            let size = info.size;
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
