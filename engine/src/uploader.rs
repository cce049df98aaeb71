//! Uploads local L0 files to the replica in TXID order (docs/wal.md#uploading). The replica
//! position is cached in memory, so an idle database costs no listings; it is re-read only at start
//! and after an error.
//!
//! L0 files are written create-only where the backend can (every one but NATS), so two writers
//! on one replica, or an engine that lost its local state, never overwrite each other's files:
//! finding a file of ours already there and different from ours is a [`Error::Conflict`], and
//! the database stops replicating to that replica (docs/replica-layout.md#one-writer-per-replica).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ltx_codec::{Header, Level, TxId, HEADER_SIZE, SNAPSHOT_LEVEL, TRAILER_SIZE};
use storage::{Body, LtxFileInfo, LtxName, SharedReplica};
use tokio::sync::watch;
use tracing::{debug, error, warn};

use crate::error::{Error, Result};
use crate::meta::{MetaDir, KEEP_IN_MEMORY};
use crate::replicate::{next_backoff, DbHandle};
use storage::value::format_duration;

/// Copies one database's local L0 files to its replica in TXID order, remembering the replica
/// position between uploads (docs/wal.md#uploading).
pub struct Uploader {
    replica: SharedReplica,
    meta: MetaDir,
    db: PathBuf,
    pos: Option<TxId>,
    /// Files uploaded per batch at most (`max-sync-ltx-files`; 0 for no limit): the position
    /// and the `replica sync` log line follow each batch, as in Litestream.
    batch: u64,
}

/// The replica's newest file over every level, if any: the highest MaxTXID and, among the
/// files that end there, the smallest (an L0 file before a compacted one before a snapshot).
/// Every level counts: after L0 retention the newest TXID may be only in L1..L9, and numbering
/// must continue after it, not restart under it.
pub async fn replica_newest(replica: &SharedReplica) -> Result<Option<LtxFileInfo>> {
    let mut best: Option<LtxFileInfo> = None;
    for level in 0..=SNAPSHOT_LEVEL.0 {
        for f in replica.ltx_files(Level(level)).await? {
            if best.as_ref().is_none_or(|b| {
                (f.max_txid, std::cmp::Reverse(f.size)) > (b.max_txid, std::cmp::Reverse(b.size))
            }) {
                best = Some(f);
            }
        }
    }
    Ok(best)
}

/// The first and last bytes of the local file `path` of `len` bytes: its header and its
/// trailer, whose file checksum covers every byte before it.
async fn local_ends(path: &std::path::Path, len: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&p)?;
        let mut head = vec![0u8; HEADER_SIZE];
        let mut tail = vec![0u8; TRAILER_SIZE];
        f.read_exact_at(&mut head, 0)?;
        f.read_exact_at(&mut tail, len - TRAILER_SIZE as u64)?;
        Ok((head, tail))
    })
    .await
    .map_err(|e| Error::Other(format!("read L0 header and trailer: {e}")))?
    .map_err(|e| Error::io("read local L0 header and trailer", path, e))
}

/// Whether the replica's L0 file `txid` is the local file `path`: same size, same header and
/// same trailer (its CRC-64 covers the whole file, so equal trailers mean equal files but
/// for a collision).
async fn same_as_local(
    replica: &SharedReplica,
    path: &std::path::Path,
    txid: TxId,
) -> Result<bool> {
    let len = match tokio::fs::metadata(path).await {
        Ok(m) => m.len(),
        Err(e) => return Err(Error::io("stat local L0 file", path, e)),
    };
    if len < (HEADER_SIZE + TRAILER_SIZE) as u64 {
        return Ok(false);
    }
    replica.invalidate_cache();
    let remote = replica.ltx_files(Level(0)).await?;
    let Some(r) = remote
        .iter()
        .find(|f| f.min_txid == txid && f.max_txid == txid)
    else {
        return Ok(false);
    };
    if r.size != len {
        return Ok(false);
    }
    let (head, tail) = local_ends(path, len).await?;
    let rhead = replica
        .read_range(LtxName::l0(txid), 0, Some(HEADER_SIZE as u64))
        .await?;
    let rtail = replica
        .read_range(
            LtxName::l0(txid),
            len - TRAILER_SIZE as u64,
            Some(TRAILER_SIZE as u64),
        )
        .await?;
    Ok(rhead[..] == head[..] && rtail[..] == tail[..])
}

/// The header bytes and an upload body: small files in memory, large ones streamed from disk.
async fn read_for_upload(path: &std::path::Path) -> Result<(Vec<u8>, Body)> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::local_l0_io("stat for upload", path, e))?
        .len();
    if len <= KEEP_IN_MEMORY as u64 {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| Error::local_l0_io("read for upload", path, e))?;
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
    .map_err(|e| Error::local_l0_io("read header", path, e))?;
    Ok((head, Body::File(path.to_owned())))
}

impl Uploader {
    /// An uploader from the meta directory `meta` of database `db` to `replica`, with the replica
    /// position not yet known and no batch limit.
    pub fn new(replica: SharedReplica, meta: MetaDir, db: PathBuf) -> Self {
        Uploader {
            replica,
            meta,
            db,
            pos: None,
            batch: 0,
        }
    }

    /// Uploads in batches of at most `n` files (`max-sync-ltx-files`; 0 for no limit).
    pub fn with_batch(mut self, n: u64) -> Self {
        self.batch = n;
        self
    }

    /// Replica position if known.
    pub fn pos(&self) -> Option<TxId> {
        self.pos
    }

    /// Uploads every local L0 file after the replica position up to `local_max`, batch after
    /// batch.
    pub async fn sync(&mut self, local_max: TxId) -> Result<usize> {
        let mut total = 0;
        loop {
            let r = self.sync_batch(local_max).await;
            if r.is_err() {
                // Unknown again: the next attempt re-reads it from the replica.
                self.pos = None;
            }
            let (n, limited) = r?;
            total += n;
            if !limited {
                return Ok(total);
            }
        }
    }

    /// One batch; true when it stopped at the batch size before `local_max`.
    async fn sync_batch(&mut self, local_max: TxId) -> Result<(usize, bool)> {
        let mut pos = match self.pos {
            Some(p) => p,
            None => {
                let newest = replica_newest(&self.replica).await?;
                let p = newest.as_ref().map_or(TxId::ZERO, |f| f.max_txid);
                // The replica's newest L0 file must be ours if we still have our copy of it:
                // another writer may have moved the replica on under our numbering.
                if let Some(f) = newest.filter(|f| f.level == Level(0) && f.min_txid == p) {
                    let local = self.meta.l0_path(p);
                    if local.exists() && !same_as_local(&self.replica, &local, p).await? {
                        return Err(self.conflict(&f, local_max));
                    }
                }
                self.pos = Some(p);
                p
            }
        };
        let before = pos;
        let mut n = 0;
        let mut limited = false;
        while pos < local_max {
            if self.batch > 0 && n as u64 >= self.batch {
                limited = true;
                debug!(db = %self.db.display(), synced_files = n, db_txid = %local_max, replica_txid = %pos, "replica sync limited");
                break;
            }
            let txid = pos.next();
            let path = self.meta.l0_path(txid);
            let (head, body) = read_for_upload(&path).await?;
            let header = Header::decode(&head).map_err(|e| Error::local_l0_corrupt(&path, e))?;
            let created = SystemTime::UNIX_EPOCH
                + Duration::from_millis(u64::try_from(header.timestamp).unwrap_or(0));
            let written = if self.replica.supports_create_only() {
                self.replica
                    .create_ltx(LtxName::l0(txid), body, created)
                    .await
            } else {
                self.replica
                    .write_ltx(LtxName::l0(txid), body, created)
                    .await
            };
            let size = match written {
                Ok(info) => info.size,
                // Ours after all when an earlier attempt stored it but its answer was lost.
                Err(e) if e.is_already_exists() => {
                    if !same_as_local(&self.replica, &path, txid).await? {
                        let theirs = LtxFileInfo {
                            level: Level(0),
                            min_txid: txid,
                            max_txid: txid,
                            size: 0,
                            created_at: created,
                        };
                        return Err(self.conflict(&theirs, local_max));
                    }
                    tokio::fs::metadata(&path).await.map_or(0, |m| m.len())
                }
                Err(e) => return Err(e.into()),
            };
            pos = txid;
            self.pos = Some(pos);
            n += 1;
            debug!(system = "store", db = %self.db.display(), replica = self.replica.kind(), level = 0, minTXID = %txid, maxTXID = %txid, size, "ltx file uploaded");
        }
        if n > 0 {
            // Litestream's `txid` group: where the replica was, and the database's position it
            // was synced to; then ours.
            debug!(system = "store", db = %self.db.display(), replica = self.replica.kind(), txid.replica = %before, txid.db = %pos, files = n, "replica sync");
        }
        Ok((n, limited))
    }

    fn conflict(&self, theirs: &LtxFileInfo, local: TxId) -> Error {
        Error::Conflict {
            db: self.db.clone(),
            file: theirs.relative_path(),
            local,
            replica: theirs.max_txid,
        }
    }
}

/// Uploads whenever the follower publishes a new position; on an error, retries with backoff.
/// When the follower drops its sender (shutdown), the upload in flight and then a final attempt
/// for the last position get `shutdown-sync-timeout` in all (`shutdown_sync` is that timeout
/// and the interval between attempts): a server that stops answering cannot hold the exit (a
/// timeout of 0 is one final attempt without a bound, as in Litestream). On
/// a [`Error::Conflict`] it gives up at once and turns `stop` on, which ends the database's
/// task.
pub(crate) async fn upload_loop(
    mut up: Uploader,
    mut rx: watch::Receiver<TxId>,
    base: Duration,
    shutdown_sync: (Duration, Duration),
    handle: DbHandle,
    stop: watch::Sender<bool>,
) -> bool {
    let (sync_timeout, sync_interval) = shutdown_sync;
    // `shutdown-sync-timeout: 0` is one attempt without a bound, as in Litestream.
    let unbounded = sync_timeout.is_zero();
    let window = if unbounded {
        Duration::from_secs(30 * 365 * 86_400)
    } else {
        sync_timeout
    };
    let mut backoff = Duration::ZERO;
    // Set when the follower's sender is dropped: the end of the shutdown window.
    let mut deadline: Option<tokio::time::Instant> = None;
    while deadline.is_none() {
        let target = *rx.borrow_and_update();
        let behind = match up.pos() {
            Some(p) => p < target,
            None => target > TxId::ZERO,
        };
        if behind {
            // The upload goes on when shutdown starts, within the shutdown window.
            let r = {
                let sync = up.sync(target);
                tokio::pin!(sync);
                loop {
                    match deadline {
                        None => tokio::select! {
                            r = &mut sync => break Some(r),
                            c = rx.changed() => if c.is_err() {
                                deadline = Some(tokio::time::Instant::now() + window);
                            },
                        },
                        Some(d) => break tokio::time::timeout_at(d, &mut sync).await.ok(),
                    }
                }
            };
            match r {
                None => {
                    error!(timeout = %format_duration(sync_timeout), "shutdown sync failed: upload unfinished at shutdown-sync-timeout");
                    return false;
                }
                Some(Ok(_)) => {
                    backoff = Duration::ZERO;
                    handle.upload_ok(up.pos());
                }
                Some(Err(e)) => {
                    handle.upload_failed();
                    if matches!(e, Error::LocalL0 { .. }) {
                        handle.note_local_damage();
                    }
                    if matches!(e, Error::Conflict { .. }) {
                        handle.note_conflict();
                        error!(error = %e, "replica sync stopped");
                        stop.send_replace(true);
                        return false;
                    }
                    if deadline.is_some() {
                        break;
                    }
                    backoff = next_backoff(backoff, base);
                    error!(error = %e, backoff = %format_duration(backoff), "replica sync error");
                    let until = tokio::time::Instant::now() + backoff;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            r = rx.changed() => if r.is_err() {
                                deadline = Some(tokio::time::Instant::now() + window);
                                break;
                            },
                        }
                    }
                    continue;
                }
            }
        }
        // A position published while the upload ran was marked seen by `changed` above.
        let pending = up
            .pos()
            .map_or(*rx.borrow() > TxId::ZERO, |p| p < *rx.borrow());
        if deadline.is_none() && !pending && rx.changed().await.is_err() {
            deadline = Some(tokio::time::Instant::now() + window);
        }
    }
    let Some(deadline) = deadline else {
        return false;
    };
    let target = *rx.borrow();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match tokio::time::timeout_at(deadline, up.sync(target)).await {
            Ok(Ok(_)) => {
                handle.upload_ok(up.pos());
                return true;
            }
            Ok(Err(e @ Error::Conflict { .. })) => {
                handle.note_conflict();
                error!(error = %e, "replica sync stopped");
                return false;
            }
            Ok(Err(e)) if !unbounded && tokio::time::Instant::now() + sync_interval < deadline => {
                warn!(error = %e, attempt, "shutdown sync failed, retrying");
                tokio::time::sleep(sync_interval).await;
            }
            Ok(Err(e)) => {
                error!(error = %e, attempts = attempt, "shutdown sync failed after timeout");
                return false;
            }
            Err(_) => {
                error!(timeout = %format_duration(sync_timeout), attempts = attempt, "shutdown sync failed: upload unfinished at shutdown-sync-timeout");
                return false;
            }
        }
    }
}
