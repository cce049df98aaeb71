//! Google Cloud Storage replicas (`gs://bucket/path`), laid out as Litestream lays them out:
//! `<path>/ltx/<level>/<min>-<max>.ltx` objects (the path joined as Go's `path.Join` joins it)
//! with `litestream-timestamp` metadata (RFC 3339, nanoseconds), spoken over the JSON API on
//! the shared HTTP/1.1 transport. What is GCS's own: settings and endpoints (`settings`),
//! tokens (`auth`), requests (`client`) and uploads (`upload`).
//!
//! Listings carry each object's metadata, so `created_at` is the metadata timestamp (falling
//! back to the creation time), as Litestream reads it.

mod auth;
mod client;
mod federation;
mod settings;
#[cfg(test)]
mod tests;
mod upload;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::{Level, TxId};

use crate::backend::{Backend, Layout, Listed, Page, Purge, Span, Stream, Upload};
use crate::replica::Replica;
use crate::transport::range;
use crate::transport::HttpPool;
use crate::transport::Trust;
use crate::{Body, Result, SharedReplica, StorageError};

pub use crate::backend::ObjectInfo;
pub use crate::transport::RetryPolicy;
pub use client::{GcsClient, DEFAULT_CHUNK_SIZE};
pub use settings::{clean_path, GcsSettings};
pub use upload::METADATA_TIMESTAMP;

/// A `gs` replica.
pub type GcsReplica = Replica<Arc<GcsClient>>;

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: GcsSettings) -> Result<SharedReplica> {
    Ok(Arc::new(GcsReplica::new(s)?))
}

impl Replica<Arc<GcsClient>> {
    /// Builds the replica without any network traffic.
    pub fn new(settings: GcsSettings) -> Result<GcsReplica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    /// Builds the replica with `retry` for its requests, without any network traffic.
    pub fn with_retry_policy(settings: GcsSettings, retry: RetryPolicy) -> Result<GcsReplica> {
        let (endpoint, anonymous) = settings.resolve_endpoint();
        let auth = if anonymous {
            auth::TokenSource::anonymous()
        } else {
            auth::TokenSource::default_credentials()
        };
        Self::build(settings, &endpoint, auth, retry)
    }

    fn build(
        settings: GcsSettings,
        endpoint: &str,
        auth: auth::TokenSource,
        retry: RetryPolicy,
    ) -> Result<GcsReplica> {
        // Token endpoints are https even when the API endpoint is not.
        let pool = HttpPool::shared(Trust::Roots(None)).map_err(StorageError::config)?;
        let client = GcsClient::new(
            settings.bucket.clone(),
            settings.path,
            endpoint,
            auth,
            pool,
            retry,
        )
        .map_err(|e| StorageError::invalid_url(&settings.source, e))?;
        Ok(Replica::from_backend(Arc::new(client)))
    }

    fn client_mut(&mut self) -> Option<&mut GcsClient> {
        self.backend_mut().and_then(Arc::get_mut)
    }

    /// Objects per listing page (default 1000, the service's maximum).
    pub fn set_page_size(&mut self, n: u32) {
        if let Some(c) = self.client_mut() {
            c.page_size = n.clamp(1, 1000);
        }
    }

    /// Resumable chunk size, rounded down to a multiple of 256 KiB (at least 256 KiB); bodies
    /// this long or longer are uploaded in chunks.
    pub fn set_chunk_size(&mut self, n: u64) {
        if let Some(c) = self.client_mut() {
            c.chunk_size = (n / client::CHUNK_GRANULE).max(1) * client::CHUNK_GRANULE;
        }
    }

    /// The bucket the replica lives in.
    pub fn bucket(&self) -> &str {
        &self.backend().bucket
    }

    /// The replica path as written in its settings.
    pub fn path(&self) -> &str {
        &self.backend().path
    }

    /// `path.Join(<path>, "ltx", <level>)` + "/", as Litestream lists a level.
    pub fn level_prefix(&self, level: Level) -> String {
        self.backend().layout.level_prefix(level)
    }

    /// The object name of one file (Litestream's `LTXFilePath`).
    pub fn ltx_key(&self, level: Level, min: TxId, max: TxId) -> String {
        self.backend().layout.ltx_key(level, min, max)
    }

    /// Every object whose name starts with `prefix`, across all pages.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.list_as(prefix).await
    }
}

#[async_trait]
impl Backend for Arc<GcsClient> {
    const KIND: &'static str = "gs";
    const CREATE_ONLY: bool = true;
    /// The JSON API deletes one object per request; this many go at once.
    const DELETE_PARALLEL: usize = 8;

    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn list_page(&self, prefix: &str, token: Option<String>) -> Result<Page> {
        let page = GcsClient::list_page(self, prefix, token.as_deref()).await?;
        let entries = page
            .objects
            .into_iter()
            .map(|o| {
                let parse = |t: Option<&str>| t.and_then(crate::timefmt::parse_rfc3339);
                let meta = o.metadata.and_then(|mut m| m.remove(METADATA_TIMESTAMP));
                Listed {
                    created_at: parse(meta.as_deref()).or_else(|| parse(o.time_created.as_deref())),
                    key: o.name,
                    size: o.size,
                }
            })
            .collect();
        Ok(Page {
            entries,
            next: page.next_token,
        })
    }

    async fn open_range<'a>(&'a self, key: &str, span: Span) -> Result<Stream<'a>> {
        range::stream(&**self, &self.http, key, span).await
    }

    async fn put(&self, key: &str, up: Upload<'_>) -> Result<SystemTime> {
        if up.size >= self.chunk_size {
            self.upload_resumable(key, up).await?;
            return Ok(up.created_at);
        }
        let data = match up.body {
            Body::Bytes(b) => b.clone(),
            // Below the chunk size, so bounded.
            Body::File(p) => Bytes::from(
                tokio::fs::read(p)
                    .await
                    .map_err(|e| StorageError::io(p.display().to_string(), e))?,
            ),
        };
        if data.len() as u64 != up.size {
            return Err(StorageError::fatal(format!(
                "gs: upload of {}: source changed size while being read",
                self.describe(Some(key))
            )));
        }
        self.upload_multipart(key, &data, up).await?;
        Ok(up.created_at)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(GcsClient::delete(self, key).await?)
    }

    /// Every object under `<path>/`, as Litestream's `DeleteAll` removes them (with an empty
    /// path: everything under `ltx/`, where such a replica's files are).
    fn purge(&self) -> Purge {
        let root = clean_path(&self.path);
        Purge::Prefix(if root == "." {
            "ltx/".to_owned()
        } else {
            format!("{}/", root.trim_end_matches('/'))
        })
    }
}
