//! The `s3` (and `oss`) replica: `<path>/<level %04x>/<min>-<max>.ltx` objects with
//! `litestream-timestamp` metadata (§3.1), spoken over our own small HTTP/1.1 client with SigV4
//! signing instead of the AWS SDK.
//!
//! Listings are cached per level and kept current by our own writes and deletes, so an idle
//! database costs no requests: S3 is only asked when something is shipped, deleted, or a level
//! is listed for the first time. A reader that expects another writer calls
//! [`ReplicaClient::invalidate_cache`] before listing.

pub(crate) mod body;
mod client;
pub mod credentials;
pub(crate) mod pool;
pub(crate) mod retry;
pub mod settings;
mod sign;
#[cfg(test)]
mod test_server;
pub(crate) mod xml;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};
use tokio::task::JoinSet;

use crate::metrics::{self, Operation};
use crate::{Body, LtxFileInfo, RangeStream, ReplicaClient, Result, StorageError};
use body::Payload;
use client::{S3Client, S3Error};

pub use retry::RetryPolicy;
pub use settings::{Flavor, S3Settings};

/// S3 accepts at most this many keys per DeleteObjects and this many parts per upload.
const MAX_KEYS_PER_DELETE: usize = 1000;
const MAX_PARTS: u64 = 10_000;

/// One object under the replica path, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

#[derive(Default)]
struct ListCache {
    levels: HashMap<Level, Vec<LtxFileInfo>>,
    /// Bumped by every change we make, so a listing that raced with one is not cached.
    version: u64,
}

pub struct S3Replica {
    client: Arc<S3Client>,
    cache: Mutex<ListCache>,
}

impl std::fmt::Debug for S3Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Replica")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

fn storage_error(e: S3Error) -> StorageError {
    if e.is_no_such_key() {
        StorageError::NotFound { key: e.target }
    } else {
        StorageError::Other(e.to_string())
    }
}

impl S3Replica {
    /// Builds the replica without any network traffic; the first request resolves region and
    /// credentials.
    pub fn new(settings: S3Settings) -> Result<S3Replica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    pub fn with_retry_policy(settings: S3Settings, retry: RetryPolicy) -> Result<S3Replica> {
        let resolved = settings.resolve()?;
        let mut client = S3Client::new(resolved).map_err(StorageError::Other)?;
        client.retry = retry;
        Ok(S3Replica {
            client: Arc::new(client),
            cache: Mutex::new(ListCache::default()),
        })
    }

    pub fn from_url(url: &str) -> Result<S3Replica> {
        S3Replica::new(S3Settings::from_url(url)?)
    }

    pub fn bucket(&self) -> &str {
        &self.client.cfg.bucket
    }

    pub fn path(&self) -> &str {
        &self.client.cfg.path
    }

    fn kind_str(&self) -> &'static str {
        self.client.cfg.flavor.kind()
    }

    /// `<path>/<level %04x>/`, joined as Litestream joins it (see [`S3Settings::path`]).
    pub fn level_prefix(&self, level: Level) -> String {
        format!("{}/{:04x}/", self.client.cfg.path, level.0)
    }

    pub fn ltx_key(&self, level: Level, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), ltx_file_name(min, max))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ListCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The signing region, detected with GetBucketLocation when S3 itself is used without one.
    pub async fn region(&self) -> Result<String> {
        self.client.region().await.map_err(storage_error)
    }

    /// Every object under `prefix` (relative to the bucket), across all pages.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let start = Instant::now();
            let page = self.client.list_page(prefix, token.as_deref()).await;
            metrics::observe_duration(self.kind_str(), Operation::List, start.elapsed());
            let page = page.map_err(|e| {
                metrics::record_error(self.kind_str(), Operation::List, &e.metric_code());
                storage_error(e)
            })?;
            metrics::record(self.kind_str(), Operation::List, 1, 0);
            out.extend(page.objects.into_iter().map(|o| ObjectInfo {
                key: o.key,
                size: o.size,
                last_modified: o.last_modified,
            }));
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// The `litestream-timestamp` metadata of one file (what `-timestamp` restores need; plain
    /// listings only carry LastModified). `None` when the object has no such metadata.
    pub async fn metadata_timestamp(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
    ) -> Result<Option<SystemTime>> {
        let key = self.ltx_key(level, min, max);
        match self.client.head_object(&key).await.map_err(storage_error)? {
            Some((_, ts)) => Ok(ts),
            None => Err(StorageError::NotFound {
                key: self.client.describe(Some(&key)),
            }),
        }
    }

    /// [`ReplicaClient::ltx_files`] with `created_at` taken from each object's metadata, fetched
    /// with bounded parallel HEADs.
    pub async fn ltx_files_with_metadata(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let mut files = self.ltx_files(level).await?;
        let mut set = JoinSet::new();
        let mut next = 0;
        const PARALLEL: usize = 16;
        loop {
            while set.len() < PARALLEL && next < files.len() {
                let c = self.client.clone();
                let key = self.ltx_key(level, files[next].min_txid, files[next].max_txid);
                let i = next;
                set.spawn(async move { (i, c.head_object(&key).await) });
                next += 1;
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (i, r) = joined.map_err(|e| StorageError::Other(format!("s3: head task: {e}")))?;
            if let Some((_, Some(ts))) = r.map_err(storage_error)? {
                files[i].created_at = ts;
            }
        }
        Ok(files)
    }

    async fn upload(
        &self,
        key: &str,
        body: &Body,
        size: u64,
        created_at: SystemTime,
    ) -> Result<(), S3Error> {
        let headers = self.client.write_headers(Some(created_at));
        if size < self.client.cfg.part_size {
            let payload = match body {
                Body::Bytes(b) => Payload::Bytes(b.clone()),
                Body::File(p) => Payload::File {
                    path: p.clone(),
                    offset: 0,
                    len: size,
                },
            };
            return self.client.put_object(key, payload, headers).await;
        }
        self.upload_multipart(key, body, size, headers).await
    }

    /// Parts are read straight from the source file region by region (or sliced from memory),
    /// `concurrency` at a time, so memory stays flat whatever the snapshot size.
    async fn upload_multipart(
        &self,
        key: &str,
        body: &Body,
        size: u64,
        headers: Vec<(&'static str, String)>,
    ) -> Result<(), S3Error> {
        let mut part_size = self.client.cfg.part_size;
        while size.div_ceil(part_size) > MAX_PARTS {
            part_size *= 2;
        }
        let parts = size.div_ceil(part_size) as usize;
        let upload_id = self.client.create_multipart(key, headers).await?;
        let result = async {
            let mut etags = vec![String::new(); parts];
            let mut set = JoinSet::new();
            let mut next = 0usize;
            loop {
                while set.len() < self.client.cfg.concurrency && next < parts {
                    let offset = next as u64 * part_size;
                    let len = part_size.min(size - offset);
                    let payload = match body {
                        Body::Bytes(b) => {
                            Payload::Bytes(b.slice(offset as usize..(offset + len) as usize))
                        }
                        Body::File(p) => Payload::File {
                            path: p.clone(),
                            offset,
                            len,
                        },
                    };
                    let (c, k, id, i) =
                        (self.client.clone(), key.to_owned(), upload_id.clone(), next);
                    set.spawn(async move { (i, c.upload_part(&k, &id, i + 1, payload).await) });
                    next += 1;
                }
                let Some(joined) = set.join_next().await else {
                    break;
                };
                let (i, r) = joined.map_err(|e| S3Error {
                    op: "upload part",
                    target: self.client.describe(Some(key)),
                    status: None,
                    code: String::new(),
                    message: format!("part task failed: {e}"),
                    retryable: false,
                })?;
                etags[i] = r?;
            }
            self.client
                .complete_multipart(key, &upload_id, &etags)
                .await
        }
        .await;
        if result.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            if let Err(e) = self.client.abort_multipart(key, &upload_id).await {
                tracing::warn!(error = %e, "s3: could not abort multipart upload");
            }
        }
        result
    }

    async fn delete_keys(&self, keys: Vec<String>) -> Result<()> {
        for batch in keys.chunks(MAX_KEYS_PER_DELETE) {
            let start = Instant::now();
            let r = self.client.delete_objects(batch).await;
            metrics::observe_duration(self.kind_str(), Operation::Delete, start.elapsed());
            let failed = r.map_err(|e| {
                metrics::record_error(self.kind_str(), Operation::Delete, &e.metric_code());
                storage_error(e)
            })?;
            let failed: Vec<_> = failed
                .into_iter()
                .filter(|(_, code, _)| code != "NoSuchKey")
                .collect();
            metrics::record(
                self.kind_str(),
                Operation::Delete,
                (batch.len() - failed.len()) as u64,
                0,
            );
            for (_, code, _) in &failed {
                metrics::record_error(self.kind_str(), Operation::Delete, code);
            }
            if let Some((key, code, msg)) = failed.first() {
                return Err(StorageError::Other(format!(
                    "s3: delete objects s3://{}/{key}: {code}: {msg} ({} of {} keys failed)",
                    self.bucket(),
                    failed.len(),
                    batch.len()
                )));
            }
        }
        Ok(())
    }
}

/// [`ReplicaClient::read_range_stream`] over one streamed GET; its bytes are added to the
/// metrics when it is dropped.
struct StreamedRange {
    body: client::RangeBody,
    kind: &'static str,
    bytes: u64,
    /// The rest of a piece that was longer than the caller wanted.
    left: Bytes,
}

impl Drop for StreamedRange {
    fn drop(&mut self) {
        metrics::record(self.kind, Operation::Get, 0, self.bytes);
    }
}

#[async_trait]
impl RangeStream for StreamedRange {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        let mut piece = if self.left.is_empty() {
            match self.body.next_piece().await {
                Ok(Some(p)) => {
                    self.bytes += p.len() as u64;
                    p
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    metrics::record_error(self.kind, Operation::Get, &e.metric_code());
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
impl ReplicaClient for S3Replica {
    fn kind(&self) -> &'static str {
        self.kind_str()
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let version = {
            let c = self.cache();
            if let Some(files) = c.levels.get(&level) {
                return Ok(files.clone());
            }
            c.version
        };
        let prefix = self.level_prefix(level);
        let objects = self.list_prefix(&prefix).await?;
        let mut files: Vec<LtxFileInfo> = objects
            .into_iter()
            .filter_map(|o| {
                // Only keys directly in the level "directory": a nested or dot-dot key such as
                // `<level>/../../<name>.ltx` names a different object than the `ltx_key` we
                // would read, so listing it would make reads hit the wrong object.
                let base = o.key.strip_prefix(&prefix)?;
                let (min, max) = parse_ltx_file_name(base)?;
                Some(LtxFileInfo {
                    level,
                    min_txid: min,
                    max_txid: max,
                    size: o.size,
                    created_at: o.last_modified.unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
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
        let key = self.ltx_key(level, min, max);
        let start = Instant::now();
        let r = self.client.get_range(&key, offset, len).await;
        metrics::observe_duration(self.kind_str(), Operation::Get, start.elapsed());
        match r {
            Ok(b) => {
                metrics::record(self.kind_str(), Operation::Get, 1, b.len() as u64);
                Ok(b)
            }
            Err(e) => {
                metrics::record_error(self.kind_str(), Operation::Get, &e.metric_code());
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
        let key = self.ltx_key(level, min, max);
        let start = Instant::now();
        let r = self.client.get_range_stream(&key, offset, Some(len)).await;
        metrics::observe_duration(self.kind_str(), Operation::Get, start.elapsed());
        match r {
            Ok(body) => {
                metrics::record(self.kind_str(), Operation::Get, 1, 0);
                Ok(Box::new(StreamedRange {
                    body,
                    kind: self.kind_str(),
                    bytes: 0,
                    left: Bytes::new(),
                }))
            }
            Err(e) => {
                metrics::record_error(self.kind_str(), Operation::Get, &e.metric_code());
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
        let key = self.ltx_key(level, min, max);
        let size = match &body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(p) => tokio::fs::metadata(p)
                .await
                .map_err(|e| StorageError::io(p.display().to_string(), e))?
                .len(),
        };
        {
            // Whatever happens next, a cached listing of this level may be wrong.
            let mut c = self.cache();
            c.version += 1;
        }
        let start = Instant::now();
        let r = self.upload(&key, &body, size, created_at).await;
        metrics::observe_duration(self.kind_str(), Operation::Put, start.elapsed());
        if let Err(e) = r {
            metrics::record_error(self.kind_str(), Operation::Put, &e.metric_code());
            self.cache().levels.remove(&level);
            return Err(storage_error(e));
        }
        metrics::record(self.kind_str(), Operation::Put, 1, size);
        let info = LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at,
        };
        let mut c = self.cache();
        if let Some(files) = c.levels.get_mut(&level) {
            files.retain(|f| (f.min_txid, f.max_txid) != (min, max));
            let at = files.partition_point(|f| (f.min_txid, f.max_txid) < (min, max));
            files.insert(at, info.clone());
        }
        Ok(info)
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let keys = files
            .iter()
            .map(|f| self.ltx_key(f.level, f.min_txid, f.max_txid))
            .collect();
        self.cache().version += 1;
        let r = self.delete_keys(keys).await;
        let mut c = self.cache();
        for f in files {
            if r.is_ok() {
                if let Some(list) = c.levels.get_mut(&f.level) {
                    list.retain(|x| (x.min_txid, x.max_txid) != (f.min_txid, f.max_txid));
                }
            } else {
                c.levels.remove(&f.level);
            }
        }
        r
    }

    /// Deletes every object under the replica path, as Litestream's `DeleteAll` does.
    async fn delete_all(&self) -> Result<()> {
        let prefix = format!("{}/", self.path());
        {
            let mut c = self.cache();
            c.version += 1;
            c.levels.clear();
        }
        let keys = self
            .list_prefix(&prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        let r = self.delete_keys(keys).await;
        let mut c = self.cache();
        c.version += 1;
        c.levels.clear();
        r
    }

    fn invalidate_cache(&self) {
        let mut c = self.cache();
        c.version += 1;
        c.levels.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica of `s3://bkt/db` at a local test server, with keys (never the metadata service).
    fn replica_at(url: &str) -> S3Replica {
        let mut s = S3Settings::from_url(&format!("s3://bkt/db?endpoint={url}&region=us-east-1"))
            .expect("url");
        s.access_key_id = Some("AKIDTEST".into());
        s.secret_access_key = Some("secret".into());
        S3Replica::new(s).expect("replica")
    }

    #[tokio::test]
    async fn listing_ignores_keys_outside_the_level_and_non_ltx_names() {
        let good = "db/0000/0000000000000001-0000000000000001.ltx";
        let keys = [
            good,
            "db/0000/../../0000000000000002-0000000000000002.ltx",
            "db/0000/..%2f..%2f0000000000000003-0000000000000003.ltx",
            "db/0000/sub/0000000000000004-0000000000000004.ltx",
            "db/0000/../../evil.ltx",
            "db/0000/0000000000000005-0000000000000005.ltx.tmp",
            "db/0000/00000000000000AA-00000000000000AA.ltx",
            "db/0000/readme",
        ];
        let contents: String = keys
            .iter()
            .map(|k| {
                format!(
                    "<Contents><Key>{k}</Key><Size>10</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"
                )
            })
            .collect();
        let body = format!(
            "<?xml version=\"1.0\"?><ListBucketResult><Name>bkt</Name><Prefix>db/0000/</Prefix><KeyCount>{}</KeyCount><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>",
            keys.len()
        );
        let (url, _seen) = test_server::serve(1, move |_| (200, body.clone())).await;
        let r = replica_at(&url);
        let files = r.ltx_files(Level(0)).await.expect("list");
        let names: Vec<String> = files.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["0000000000000001-0000000000000001.ltx"]);
        assert_eq!(r.ltx_key(Level(0), TxId(1), TxId(1)), good);
    }

    #[tokio::test]
    async fn an_unreadable_last_modified_is_an_error_naming_the_object() {
        let key = "db/0000/0000000000000001-0000000000000001.ltx";
        let body = format!(
            "<?xml version=\"1.0\"?><ListBucketResult><Name>bkt</Name><KeyCount>1</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>{key}</Key><Size>10</Size><LastModified>yesterday</LastModified></Contents></ListBucketResult>"
        );
        let (url, _seen) = test_server::serve(1, move |_| (200, body.clone())).await;
        let r = replica_at(&url);
        let e = r.ltx_files(Level(0)).await.expect_err("not 1970");
        assert!(e.to_string().contains(key), "{e}");
        assert!(e.to_string().contains("yesterday"), "{e}");
    }
}
