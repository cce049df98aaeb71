//! The `s3` (and `oss`) replica: `<path>/<level %04x>/<min>-<max>.ltx` objects with
//! `litestream-timestamp` metadata (see `docs/storage.md`), spoken over the shared HTTP/1.1
//! transport with SigV4 signing instead of the AWS SDK. What is S3's own is here: addressing
//! and signing (`client`), the operations (`ops`), and multipart uploads; listings, caching,
//! metrics and ranged reads are the generic [`Replica`]'s.

mod client;
pub mod credentials;
mod ops;
pub mod settings;
mod sign;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use ltx_codec::{Level, TxId};
use tokio::task::JoinSet;

use crate::backend::{Backend, Layout, Listed, Page, Purge, Span, Stream, Upload};
use crate::replica::Replica;
use crate::transport::range;
use crate::transport::{HttpError, Payload};
use crate::{LtxFileInfo, ReplicaClient, Result, StorageError};

pub use crate::backend::ObjectInfo;
pub use crate::transport::RetryPolicy;
pub use client::S3Client;
pub use settings::{Flavor, S3Settings};

/// S3 accepts at most this many keys per DeleteObjects and this many parts per upload.
const MAX_KEYS_PER_DELETE: usize = 1000;
const MAX_PARTS: u64 = 10_000;

/// An S3 replica.
pub type S3Replica = Replica<Arc<S3Client>>;

impl Replica<Arc<S3Client>> {
    /// Builds the replica without any network traffic; the first request resolves region and
    /// credentials.
    pub fn new(settings: S3Settings) -> Result<S3Replica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    /// Builds the replica with `retry` for its requests, without any network traffic.
    pub fn with_retry_policy(settings: S3Settings, retry: RetryPolicy) -> Result<S3Replica> {
        let resolved = settings.resolve()?;
        let client = S3Client::new(resolved, retry).map_err(StorageError::config)?;
        Ok(Replica::from_backend(Arc::new(client)))
    }

    /// Builds the replica from an `s3://` or `oss://` URL (see [`S3Settings::from_url`]).
    pub fn from_url(url: &str) -> Result<S3Replica> {
        S3Replica::new(S3Settings::from_url(url)?)
    }

    /// The bucket (or access point ARN) the replica lives in.
    pub fn bucket(&self) -> &str {
        &self.backend().cfg.bucket
    }

    /// The key prefix of the replica (see [`S3Settings::path`]).
    pub fn path(&self) -> &str {
        &self.backend().cfg.path
    }

    /// `<path>/<level %04x>/`, joined as Litestream joins it (see [`S3Settings::path`]).
    pub fn level_prefix(&self, level: Level) -> String {
        self.backend().layout.level_prefix(level)
    }

    /// Key of one LTX file: `<path>/<level %04x>/<min>-<max>.ltx`.
    pub fn ltx_key(&self, level: Level, min: TxId, max: TxId) -> String {
        self.backend().layout.ltx_key(level, min, max)
    }

    /// The signing region, detected with GetBucketLocation when S3 itself is used without one.
    pub async fn region(&self) -> Result<String> {
        Ok(self.backend().region().await?)
    }

    /// Every object under `prefix` (relative to the bucket), across all pages.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.list_as(prefix).await
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
        match self.backend().head_object(&key).await? {
            Some((_, ts)) => Ok(ts),
            None => Err(StorageError::not_found(self.backend().describe(Some(&key)))),
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
                let key = self.ltx_key(level, files[next].min_txid, files[next].max_txid);
                let (i, c) = (next, self.backend().clone());
                set.spawn(async move { (i, c.head_object(&key).await) });
                next += 1;
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (i, r) = joined.map_err(|e| StorageError::fatal(format!("s3: head task: {e}")))?;
            if let Some((_, Some(ts))) = r? {
                files[i].created_at = ts;
            }
        }
        Ok(files)
    }
}

impl S3Client {
    /// Parts are read straight from the source file region by region (or sliced from memory),
    /// `concurrency` at a time, so memory stays flat whatever the snapshot size.
    async fn upload_multipart(
        self: &Arc<Self>,
        key: &str,
        up: Upload<'_>,
        headers: Vec<(&'static str, String)>,
    ) -> Result<(), HttpError> {
        let (body, size) = (up.body, up.size);
        let mut part_size = self.cfg.part_size;
        while size.div_ceil(part_size) > MAX_PARTS {
            part_size *= 2;
        }
        let parts = size.div_ceil(part_size) as usize;
        let upload_id = self.create_multipart(key, headers).await?;
        let result = async {
            let mut etags = vec![String::new(); parts];
            let mut set = JoinSet::new();
            let mut next = 0usize;
            loop {
                while set.len() < self.cfg.concurrency && next < parts {
                    let offset = next as u64 * part_size;
                    let part = Payload::region(body, offset, part_size.min(size - offset));
                    let (c, k, id, i) = (self.clone(), key.to_owned(), upload_id.clone(), next);
                    set.spawn(async move { (i, c.upload_part(&k, &id, i + 1, part).await) });
                    next += 1;
                }
                let Some(joined) = set.join_next().await else {
                    break;
                };
                let (i, r) = joined.map_err(|e| {
                    let req = client::Request::new("upload part", http::Method::PUT, None);
                    self.error(&req, None, "", format!("part task failed: {e}"))
                        .fatal()
                })?;
                etags[i] = r?;
            }
            self.complete_multipart(key, &upload_id, &etags, up.create_only())
                .await
        }
        .await;
        if result.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            if let Err(e) = self.abort_multipart(key, &upload_id).await {
                tracing::warn!(error = %e, "s3: could not abort multipart upload");
            }
        }
        result
    }
}

#[async_trait]
impl Backend for Arc<S3Client> {
    const KIND: &'static str = "s3";
    /// Keys are flat: one listing of the root returns every level, so the first look at a
    /// replica (the newest file of any level, at start) is one request, not ten, and fills
    /// every level's cached listing (docs/storage.md).
    const WHOLE_LISTING: bool = true;
    const CREATE_ONLY: bool = true;
    const DELETE_BATCH: usize = MAX_KEYS_PER_DELETE;

    /// `s3`, or `oss` for Alibaba's dialect.
    fn kind(&self) -> &'static str {
        self.cfg.flavor.kind()
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn list_page(&self, prefix: &str, token: Option<String>) -> Result<Page> {
        let page = S3Client::list_page(self, prefix, token.as_deref()).await?;
        Ok(Page {
            entries: page
                .objects
                .into_iter()
                .map(|o| Listed {
                    key: o.key,
                    size: o.size,
                    created_at: o.last_modified,
                })
                .collect(),
            next: page.next_token,
        })
    }

    async fn open_range<'a>(&'a self, key: &str, span: Span) -> Result<Stream<'a>> {
        range::stream(&**self, &self.http, key, span).await
    }

    async fn put(&self, key: &str, up: Upload<'_>) -> Result<SystemTime> {
        let headers = self.write_headers(Some(up.created_at));
        if up.size < self.cfg.part_size {
            let body = Payload::region(up.body, 0, up.size);
            self.put_object(key, body, headers, up.create_only())
                .await?;
        } else {
            self.upload_multipart(key, up, headers).await?;
        }
        Ok(up.created_at)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_batch(&[key.to_owned()]).await? == 1)
    }

    async fn delete_batch(&self, keys: &[String]) -> Result<u64> {
        let failed = self.delete_objects(keys).await?;
        let failed: Vec<_> = failed
            .into_iter()
            .filter(|(_, code, _)| code != "NoSuchKey")
            .collect();
        match failed.first() {
            None => Ok(keys.len() as u64),
            Some((key, code, msg)) => Err(StorageError::fatal(format!(
                "s3: delete objects s3://{}/{key}: {code}: {msg} ({} of {} keys failed)",
                self.cfg.bucket,
                failed.len(),
                keys.len()
            ))
            .with_code(code.clone())),
        }
    }

    /// Every object under the replica path, as Litestream's `DeleteAll` removes them.
    fn purge(&self) -> Purge {
        Purge::Prefix(format!("{}/", self.cfg.path))
    }
}

#[cfg(test)]
mod tests;
