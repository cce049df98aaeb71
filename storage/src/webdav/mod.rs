//! WebDAV replicas (`webdav[s]://[user:pass@]host[:port]/path`, or the `webdav-url`,
//! `webdav-username`, `webdav-password` and `path` keys): Litestream 0.5.17's layout,
//! `<path>/ltx/<level>/<min>-<max>.ltx`, with the server's modification time as creation time
//! (§3.1), which is all Litestream reads too.
//!
//! Writes go to a hidden temporary name in the level directory (`.<name>.<random>.tmp`, which
//! no LTX lister takes for an LTX file) and are then MOVEd over the final name, so a reader
//! never sees a partial file and a failed upload leaves no truncated LTX file behind;
//! Litestream PUTs to the final name directly. A server without MOVE gets a direct PUT.
//! Missing directories are made (MKCOL) when a PUT says the parent is missing.
//!
//! Listings are cached per level and kept current by our own writes and deletes, so an idle
//! database costs no requests; [`ReplicaClient::invalidate_cache`] forgets them.

mod client;
mod multistatus;
mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};

use crate::metrics::{self, Operation};
use crate::s3::body::Payload;
use crate::{Body, LtxFileInfo, RangeStream, ReplicaClient, Result, SharedReplica, StorageError};
use client::{DavClient, DavError, RangeRead};

pub use crate::s3::RetryPolicy;
pub use settings::WebDavSettings;

const KIND: &str = "webdav";

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: WebDavSettings) -> Result<SharedReplica> {
    Ok(Arc::new(WebDavReplica::new(s)?))
}

fn storage_error(e: DavError) -> StorageError {
    if e.is_not_found() {
        StorageError::NotFound { key: e.url }
    } else {
        StorageError::Other(e.to_string())
    }
}

/// Times one operation and counts its outcome in the metrics.
async fn measured<T>(
    op: Operation,
    bytes: impl FnOnce(&T) -> u64,
    f: impl std::future::Future<Output = Result<T, DavError>>,
) -> Result<T> {
    let start = Instant::now();
    let r = f.await;
    metrics::observe_duration(KIND, op, start.elapsed());
    match r {
        Ok(v) => {
            metrics::record(KIND, op, 1, bytes(&v));
            Ok(v)
        }
        Err(e) => {
            metrics::record_error(KIND, op, &e.metric_code());
            Err(storage_error(e))
        }
    }
}

#[derive(Default)]
struct Listings {
    levels: HashMap<Level, Vec<LtxFileInfo>>,
    /// Bumped by every change we make, so a listing that raced with one is not kept.
    version: u64,
}

pub struct WebDavReplica {
    client: Arc<DavClient>,
    source: String,
    cache: Mutex<Listings>,
    /// Cleared when the server answered a MOVE with 405/501: PUT to the final name then.
    can_move: AtomicBool,
}

impl std::fmt::Debug for WebDavReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavReplica")
            .field("source", &self.source)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

fn level_dir(level: Level) -> [String; 2] {
    ["ltx".to_owned(), level.0.to_string()]
}

impl WebDavReplica {
    pub fn new(settings: WebDavSettings) -> Result<WebDavReplica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    pub fn with_retry_policy(
        settings: WebDavSettings,
        retry: RetryPolicy,
    ) -> Result<WebDavReplica> {
        let server = settings
            .server()
            .map_err(|reason| StorageError::InvalidUrl {
                url: settings.source.clone(),
                reason,
            })?;
        let client = DavClient::new(server, &settings.segments(), retry)
            .map_err(|e| StorageError::Other(format!("webdav: {}: {e}", settings.source)))?;
        Ok(WebDavReplica {
            client: Arc::new(client),
            source: settings.source,
            cache: Mutex::new(Listings::default()),
            can_move: AtomicBool::new(true),
        })
    }

    /// The full URL of one LTX file.
    pub fn ltx_url(&self, level: Level, min: TxId, max: TxId) -> String {
        self.client.url(&self.ltx_path(level, min, max))
    }

    /// The full URL of a level directory.
    pub fn level_url(&self, level: Level) -> String {
        let [a, b] = level_dir(level);
        self.client.url(&self.client.path(&[&a, &b], true))
    }

    fn ltx_path(&self, level: Level, min: TxId, max: TxId) -> String {
        let [a, b] = level_dir(level);
        self.client.path(&[&a, &b, &ltx_file_name(min, max)], false)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Listings> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything a level directory holds that is an LTX file directly in it.
    async fn list_level(&self, level: Level) -> Result<Vec<LtxFileInfo>, DavError> {
        let dir = {
            let [a, b] = level_dir(level);
            self.client.path(&[&a, &b], true)
        };
        let Some(entries) = self.client.list(dir.clone()).await? else {
            return Ok(Vec::new());
        };
        let want = DavClient::href_path(&dir);
        let want = want.trim_end_matches('/');
        let mut files: Vec<LtxFileInfo> = entries
            .into_iter()
            .filter(|e| !e.collection)
            .filter_map(|e| {
                let p = DavClient::href_path(&e.href);
                let (parent, name) = p.rsplit_once('/')?;
                // Only members of this very directory (a proxy may add a prefix to hrefs).
                if !parent.ends_with(want) {
                    return None;
                }
                let (min, max) = parse_ltx_file_name(name)?;
                Some(LtxFileInfo {
                    level,
                    min_txid: min,
                    max_txid: max,
                    size: e.size,
                    created_at: e.modified.unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(files)
    }

    /// PUT to a temporary name and MOVE it over `path` (or PUT to `path` when the server
    /// has no MOVE), making the level directory when the server says it is missing.
    async fn upload(
        &self,
        level: Level,
        path: &str,
        name: &str,
        payload: Payload,
    ) -> Result<(), DavError> {
        let [a, b] = level_dir(level);
        let use_move = self.can_move.load(Ordering::Relaxed);
        let tmp = if use_move {
            self.client.path(
                &[&a, &b, &format!(".{name}.{:016x}.tmp", fastrand::u64(..))],
                false,
            )
        } else {
            path.to_owned()
        };
        if !self.client.put(tmp.clone(), payload.clone()).await? {
            self.client.make_collections(&[&a, &b]).await?;
            if !self.client.put(tmp.clone(), payload.clone()).await? {
                let call = client::Call::new("put", http::Method::PUT, tmp.clone());
                let mut e = self.client.error(
                    &call,
                    Some(http::StatusCode::CONFLICT),
                    "the directory is still missing after MKCOL".to_owned(),
                );
                e.retryable = false;
                return Err(e);
            }
        }
        if !use_move {
            return Ok(());
        }
        match self.client.rename(tmp.clone(), path).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::info!(url = %self.client.url(path), "webdav server has no MOVE; writing in place");
                self.can_move.store(false, Ordering::Relaxed);
                let _ = self.client.delete(tmp).await;
                self.client.put(path.to_owned(), payload).await.map(|_| ())
            }
            Err(e) => {
                if let Err(d) = self.client.delete(tmp).await {
                    tracing::warn!(error = %d, "webdav: could not remove a temporary upload");
                }
                Err(e)
            }
        }
    }
}

/// [`ReplicaClient::read_range_stream`] over one streamed GET.
struct Streamed {
    read: RangeRead,
    bytes: u64,
    left: Bytes,
}

impl Drop for Streamed {
    fn drop(&mut self) {
        metrics::record(KIND, Operation::Get, 0, self.bytes);
    }
}

#[async_trait]
impl RangeStream for Streamed {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        let mut piece = if self.left.is_empty() {
            match self.read.next().await {
                Ok(Some(p)) => {
                    self.bytes += p.len() as u64;
                    p
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    metrics::record_error(KIND, Operation::Get, &e.metric_code());
                    return Err(storage_error(e));
                }
            }
        } else {
            std::mem::take(&mut self.left)
        };
        if piece.len() > max {
            self.left = piece.split_off(max);
        }
        Ok(Some(piece))
    }
}

#[async_trait]
impl ReplicaClient for WebDavReplica {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let version = {
            let c = self.cache();
            if let Some(files) = c.levels.get(&level) {
                return Ok(files.clone());
            }
            c.version
        };
        let files = measured(Operation::List, |_| 0, self.list_level(level)).await?;
        let mut c = self.cache();
        if c.version == version {
            c.levels.insert(level, files.clone());
        }
        Ok(files)
    }

    async fn read_range(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes> {
        let path = self.ltx_path(level, min, max);
        let read = async {
            let mut r = RangeRead::start(self.client.clone(), path, offset, len).await?;
            let mut out = BytesMut::with_capacity(len.map_or(0, |l| l.min(64 << 20) as usize));
            while let Some(p) = r.next().await? {
                if out.is_empty() && len == Some(p.len() as u64) {
                    return Ok(p);
                }
                out.extend_from_slice(&p);
            }
            Ok(out.freeze())
        };
        measured(Operation::Get, |b: &Bytes| b.len() as u64, read).await
    }

    async fn read_range_stream<'a>(
        &'a self,
        level: Level,
        min: TxId,
        max: TxId,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn RangeStream + 'a>> {
        let path = self.ltx_path(level, min, max);
        let read = measured(
            Operation::Get,
            |_| 0,
            RangeRead::start(self.client.clone(), path, offset, Some(len)),
        )
        .await?;
        Ok(Box::new(Streamed {
            read,
            bytes: 0,
            left: Bytes::new(),
        }))
    }

    async fn write_ltx(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        let (payload, size) = match body {
            Body::Bytes(b) => {
                let n = b.len() as u64;
                (Payload::Bytes(b), n)
            }
            Body::File(p) => {
                let len = tokio::fs::metadata(&p)
                    .await
                    .map_err(|e| StorageError::io(p.display().to_string(), e))?
                    .len();
                (
                    Payload::File {
                        path: p,
                        offset: 0,
                        len,
                    },
                    len,
                )
            }
        };
        let path = self.ltx_path(level, min, max);
        let name = ltx_file_name(min, max);
        self.cache().version += 1;
        let r = measured(
            Operation::Put,
            |_| size,
            self.upload(level, &path, &name, payload),
        )
        .await;
        let mut c = self.cache();
        if let Err(e) = r {
            c.levels.remove(&level);
            return Err(e);
        }
        let info = LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at,
        };
        if let Some(files) = c.levels.get_mut(&level) {
            files.retain(|f| (f.min_txid, f.max_txid) != (min, max));
            let at = files.partition_point(|f| (f.min_txid, f.max_txid) < (min, max));
            files.insert(at, info.clone());
        }
        Ok(info)
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        self.cache().version += 1;
        let mut result = Ok(());
        for f in files {
            let path = self.ltx_path(f.level, f.min_txid, f.max_txid);
            result = measured(Operation::Delete, |_| 0, self.client.delete(path)).await;
            if result.is_err() {
                break;
            }
        }
        let mut c = self.cache();
        for f in files {
            if result.is_ok() {
                if let Some(list) = c.levels.get_mut(&f.level) {
                    list.retain(|x| (x.min_txid, x.max_txid) != (f.min_txid, f.max_txid));
                }
            } else {
                c.levels.remove(&f.level);
            }
        }
        result
    }

    /// Deletes `<path>/ltx` and everything in it.
    async fn delete_all(&self) -> Result<()> {
        self.invalidate_cache();
        let path = self.client.path(&["ltx"], true);
        let r = measured(Operation::Delete, |_| 0, self.client.delete(path)).await;
        self.invalidate_cache();
        r
    }

    fn invalidate_cache(&self) {
        let mut c = self.cache();
        c.version += 1;
        c.levels.clear();
    }
}
