//! Azure Blob Storage replicas (`abs://[account@]container/path`), laid out as Litestream 0.5.17
//! lays them out (§3.1): blobs `<path>/ltx/<level decimal>/<min>-<max>.ltx` with the LTX header
//! timestamp in the `litestreamtimestamp` metadata (RFC 3339, nanoseconds), which List Blobs
//! returns with `include=metadata`, so listings carry exact creation times at no extra cost.
//!
//! Spoken over the S3 backend's small HTTP/1.1 client (keep-alive pool, rustls); Shared Key
//! or SAS authentication (`client`). Listings are cached per level and kept current by our own
//! writes and deletes, so an idle database costs no requests; a reader that expects another
//! writer calls [`ReplicaClient::invalidate_cache`] before listing.

mod client;
pub mod settings;
mod stream;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};
use tokio::task::JoinSet;

use crate::listing_cache::LevelCache;
use crate::metrics::{self, Operation};
use crate::s3::body::Payload;
use crate::{Body, LtxFileInfo, RangeStream, ReplicaClient, Result, SharedReplica, StorageError};
use client::{AbsClient, AbsError};
use stream::BlobStream;

pub use crate::s3::RetryPolicy;
pub use settings::AbsSettings;

const KIND: &str = "abs";
/// Bodies up to this size go up in one Put Blob; larger ones in blocks of this size.
const DEFAULT_BLOCK_SIZE: u64 = 8 * 1024 * 1024;
/// Azure's limit of blocks per blob.
const MAX_BLOCKS: u64 = 50_000;
const UPLOAD_CONCURRENCY: usize = 4;
const DELETE_CONCURRENCY: usize = 16;

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: AbsSettings) -> Result<SharedReplica> {
    Ok(Arc::new(AbsReplica::new(s)?))
}

/// One blob under the replica path, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub name: String,
    pub size: u64,
    /// `litestreamtimestamp` metadata, else the blob's creation time.
    pub created_at: Option<SystemTime>,
}

pub struct AbsReplica {
    client: Arc<AbsClient>,
    path: String,
    block_size: u64,
    page_size: Option<u32>,
    cache: LevelCache,
}

impl std::fmt::Debug for AbsReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsReplica")
            .field("client", &self.client)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn storage_error(e: AbsError) -> StorageError {
    if e.is_blob_not_found() {
        StorageError::NotFound { key: e.target }
    } else {
        StorageError::Other(e.to_string())
    }
}

impl AbsReplica {
    /// Builds the replica without any network traffic.
    pub fn new(settings: AbsSettings) -> Result<AbsReplica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    pub fn with_retry_policy(settings: AbsSettings, retry: RetryPolicy) -> Result<AbsReplica> {
        let mut client = AbsClient::new(&settings)?;
        client.retry = retry;
        Ok(AbsReplica {
            client: Arc::new(client),
            path: settings.path,
            block_size: DEFAULT_BLOCK_SIZE,
            page_size: None,
            cache: LevelCache::default(),
        })
    }

    /// Bodies larger than this go up as blocks of this size (tests use small ones).
    pub fn with_block_size(mut self, bytes: u64) -> Self {
        self.block_size = bytes.max(1);
        self
    }

    /// `maxresults` of List Blobs (the service's default, 5000, when unset).
    pub fn with_list_page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n.max(1));
        self
    }

    pub fn container(&self) -> &str {
        &self.client.container
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// `<path>/ltx/<level>/`, as Go's `path.Join` makes it (no leading slash for an empty path).
    pub fn level_prefix(&self, level: Level) -> String {
        if self.path.is_empty() {
            format!("ltx/{}/", level.0)
        } else {
            format!("{}/ltx/{}/", self.path, level.0)
        }
    }

    pub fn ltx_blob(&self, level: Level, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), ltx_file_name(min, max))
    }

    /// Creates the container if it does not exist (for tests and tooling; Litestream expects
    /// it to exist).
    pub async fn create_container(&self) -> Result<()> {
        self.client.create_container().await.map_err(storage_error)
    }

    /// Every blob whose name starts with `prefix`, across all pages.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let start = Instant::now();
            let page = self
                .client
                .list_page(prefix, marker.as_deref(), self.page_size)
                .await;
            metrics::observe_duration(KIND, Operation::List, start.elapsed());
            let (blobs, next) = page.map_err(|e| {
                metrics::record_error(KIND, Operation::List, &e.metric_code());
                storage_error(e)
            })?;
            metrics::record(KIND, Operation::List, 1, 0);
            out.extend(blobs.into_iter().map(|b| BlobInfo {
                name: b.name,
                size: b.size,
                created_at: b.created_at,
            }));
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    /// Size and `litestreamtimestamp` metadata of one file (Get Blob Properties), or `None`
    /// when it does not exist.
    pub async fn blob_properties(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
    ) -> Result<Option<(u64, Option<SystemTime>)>> {
        let blob = self.ltx_blob(level, min, max);
        self.client
            .blob_properties(&blob)
            .await
            .map_err(storage_error)
    }

    async fn upload(
        &self,
        blob: &str,
        body: &Body,
        size: u64,
        created_at: SystemTime,
    ) -> Result<(), AbsError> {
        let region = |offset: u64, len: u64| match body {
            Body::Bytes(b) => Payload::Bytes(b.slice(offset as usize..(offset + len) as usize)),
            Body::File(p) => Payload::File {
                path: p.clone(),
                offset,
                len,
            },
        };
        if size <= self.block_size {
            return self
                .client
                .put_blob(blob, region(0, size), created_at)
                .await;
        }
        let mut block = self.block_size;
        while size.div_ceil(block) > MAX_BLOCKS {
            block *= 2;
        }
        let count = size.div_ceil(block) as usize;
        // Every ID of a blob must have the same length.
        let ids: Vec<String> = (0..count)
            .map(|i| base64::engine::general_purpose::STANDARD.encode(format!("block-{i:08}")))
            .collect();
        let mut set = JoinSet::new();
        let mut next = 0usize;
        loop {
            while set.len() < UPLOAD_CONCURRENCY && next < count {
                let offset = next as u64 * block;
                let payload = region(offset, block.min(size - offset));
                let (c, b, id) = (self.client.clone(), blob.to_owned(), ids[next].clone());
                set.spawn(async move { c.put_block(&b, &id, payload).await });
                next += 1;
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            joined.map_err(|e| AbsError {
                op: "put block",
                target: self.client.describe(Some(blob)),
                status: None,
                code: String::new(),
                message: format!("block task failed: {e}"),
                retryable: false,
            })??;
        }
        // Uncommitted blocks of a failed upload are discarded by the service after a week.
        self.client.put_block_list(blob, &ids, created_at).await
    }

    async fn delete_blobs(&self, blobs: Vec<String>) -> Result<()> {
        let mut set = JoinSet::new();
        let mut it = blobs.into_iter();
        let mut first_err: Option<AbsError> = None;
        loop {
            while set.len() < DELETE_CONCURRENCY {
                let Some(b) = it.next() else { break };
                let c = self.client.clone();
                set.spawn(async move {
                    let start = Instant::now();
                    let r = c.delete_blob(&b).await;
                    (start.elapsed(), r)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (took, r) =
                joined.map_err(|e| StorageError::Other(format!("abs: delete task: {e}")))?;
            metrics::observe_duration(KIND, Operation::Delete, took);
            match r {
                Ok(()) => metrics::record(KIND, Operation::Delete, 1, 0),
                Err(e) => {
                    metrics::record_error(KIND, Operation::Delete, &e.metric_code());
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(storage_error(e)),
            None => Ok(()),
        }
    }
}

/// [`ReplicaClient::read_range_stream`] over one streamed Get Blob; its bytes are added to the
/// metrics when it is dropped.
struct StreamedRange {
    stream: BlobStream,
    bytes: u64,
    /// The rest of a piece that was longer than the caller wanted.
    left: Bytes,
}

impl Drop for StreamedRange {
    fn drop(&mut self) {
        metrics::record(KIND, Operation::Get, 0, self.bytes);
    }
}

#[async_trait]
impl RangeStream for StreamedRange {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        let mut piece = if self.left.is_empty() {
            match self.stream.next_piece().await {
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
impl ReplicaClient for AbsReplica {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let version = match self.cache.get(level) {
            Ok(files) => return Ok(files),
            Err(version) => version,
        };
        let prefix = self.level_prefix(level);
        let mut files: Vec<LtxFileInfo> = self
            .list_prefix(&prefix)
            .await?
            .into_iter()
            .filter_map(|b| {
                // Only names directly in the level "directory": a nested name is not the blob
                // `ltx_blob` would read.
                let (min, max) = parse_ltx_file_name(b.name.strip_prefix(&prefix)?)?;
                Some(LtxFileInfo {
                    level,
                    min_txid: min,
                    max_txid: max,
                    size: b.size,
                    created_at: b.created_at.unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        self.cache.store(level, version, &files);
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
        let blob = self.ltx_blob(level, min, max);
        let start = Instant::now();
        let r = self.client.get_range(&blob, offset, len).await;
        metrics::observe_duration(KIND, Operation::Get, start.elapsed());
        match r {
            Ok(b) => {
                metrics::record(KIND, Operation::Get, 1, b.len() as u64);
                Ok(b)
            }
            Err(e) => {
                metrics::record_error(KIND, Operation::Get, &e.metric_code());
                Err(storage_error(e))
            }
        }
    }

    async fn read_range_stream<'a>(
        &'a self,
        level: Level,
        min: TxId,
        max: TxId,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn RangeStream + 'a>> {
        let blob = self.ltx_blob(level, min, max);
        let start = Instant::now();
        let r = BlobStream::open(self.client.clone(), &blob, offset, len).await;
        metrics::observe_duration(KIND, Operation::Get, start.elapsed());
        match r {
            Ok(stream) => {
                metrics::record(KIND, Operation::Get, 1, 0);
                Ok(Box::new(StreamedRange {
                    stream,
                    bytes: 0,
                    left: Bytes::new(),
                }))
            }
            Err(e) => {
                metrics::record_error(KIND, Operation::Get, &e.metric_code());
                Err(storage_error(e))
            }
        }
    }

    async fn write_ltx(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        let blob = self.ltx_blob(level, min, max);
        let size = match &body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(p) => tokio::fs::metadata(p)
                .await
                .map_err(|e| StorageError::io(p.display().to_string(), e))?
                .len(),
        };
        self.cache.begin_change();
        let start = Instant::now();
        let r = self.upload(&blob, &body, size, created_at).await;
        metrics::observe_duration(KIND, Operation::Put, start.elapsed());
        if let Err(e) = r {
            metrics::record_error(KIND, Operation::Put, &e.metric_code());
            self.cache.written(level, None);
            return Err(storage_error(e));
        }
        metrics::record(KIND, Operation::Put, 1, size);
        let info = LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at,
        };
        self.cache.written(level, Some(&info));
        Ok(info)
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let blobs = files
            .iter()
            .map(|f| self.ltx_blob(f.level, f.min_txid, f.max_txid))
            .collect();
        self.cache.begin_change();
        let r = self.delete_blobs(blobs).await;
        self.cache.deleted(files, r.is_ok());
        r
    }

    /// Deletes every blob under the replica path, as Litestream's `DeleteAll` does (only the
    /// `ltx/` tree when the path is the container's root).
    async fn delete_all(&self) -> Result<()> {
        let prefix = if self.path.is_empty() {
            "ltx/".to_owned()
        } else {
            format!("{}/", self.path)
        };
        self.invalidate_cache();
        let blobs = self
            .list_prefix(&prefix)
            .await?
            .into_iter()
            .map(|b| b.name)
            .collect();
        let r = self.delete_blobs(blobs).await;
        self.invalidate_cache();
        r
    }

    fn invalidate_cache(&self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(path: &str) -> AbsReplica {
        let s = AbsSettings::from_config(
            None,
            [
                ("account-name", "acct"),
                ("account-key", "a2V5"),
                ("bucket", "cont"),
                ("path", path),
            ],
        )
        .expect("settings");
        AbsReplica::new(s).expect("replica")
    }

    #[test]
    fn blob_names_match_litestream() {
        let r = replica("db/x");
        assert_eq!(
            r.ltx_blob(Level(0), TxId(1), TxId(0x2a)),
            "db/x/ltx/0/0000000000000001-000000000000002a.ltx"
        );
        assert_eq!(r.level_prefix(Level(9)), "db/x/ltx/9/");
        let r = replica("");
        assert_eq!(
            r.ltx_blob(Level(1), TxId(3), TxId(3)),
            "ltx/1/0000000000000003-0000000000000003.ltx"
        );
        assert_eq!(r.kind(), "abs");
    }
}
