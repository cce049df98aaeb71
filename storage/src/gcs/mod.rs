//! Google Cloud Storage replicas (`gs://bucket/path`), laid out as Litestream lays them out:
//! `<path>/ltx/<level>/<min>-<max>.ltx` objects (the path joined as Go's `path.Join` joins it)
//! with `litestream-timestamp` metadata (RFC 3339, nanoseconds), spoken over the JSON API on our
//! own HTTP/1.1 pool. `STORAGE_EMULATOR_HOST` points it at an emulator without authentication,
//! as it does Google's Go client (and so Litestream).
//!
//! Listings carry each object's metadata, so `created_at` is the metadata timestamp (falling
//! back to the creation time), as Litestream reads it. They are cached per level and kept
//! current by our own writes and deletes, so an idle database costs no requests.

mod auth;
mod client;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};
use tokio::task::JoinSet;

use crate::metrics::{self, Operation};
use crate::s3::pool::{tls_config, Pool};
use crate::{Body, LtxFileInfo, RangeStream, ReplicaClient, Result, SharedReplica, StorageError};
use client::{ChunkSource, GcsClient, GcsError};

pub use crate::s3::RetryPolicy;

/// The object metadata key of the creation time.
pub const METADATA_TIMESTAMP: &str = "litestream-timestamp";
/// Bodies at least this long go up in resumable chunks of this size; smaller ones in one
/// multipart request.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;
const KIND: &str = "gs";
/// Deletes in flight at once (the JSON API deletes one object per request).
const DELETE_PARALLEL: usize = 8;

/// Where a gs replica lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsSettings {
    /// The URL or config entry it was made from, for messages.
    pub source: String,
    pub bucket: String,
    /// The replica path as written (Litestream joins it with `path.Join`).
    pub path: String,
    /// API root, e.g. `http://127.0.0.1:4443` for an emulator (requests then go without
    /// authentication). `None`: `STORAGE_EMULATOR_HOST` when set, else Google itself.
    pub endpoint: Option<String>,
}

fn invalid(url: &str, reason: impl Into<String>) -> StorageError {
    StorageError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Go's `path.Clean`.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl GcsSettings {
    /// Parses `gs://bucket/path` as Litestream does: the path is `path.Clean`ed without its
    /// leading slash; the query string is ignored.
    pub fn from_url(url: &str) -> Result<GcsSettings> {
        let rest = url
            .strip_prefix("gs://")
            .ok_or_else(|| invalid(url, "not a gs:// URL"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) => (h, format!("/{p}")),
            None => (rest, String::new()),
        };
        if host.contains('@') {
            return Err(invalid(url, "credentials in a gs URL are not supported"));
        }
        if host.is_empty() {
            return Err(invalid(url, "bucket required for gs replica URL"));
        }
        let bucket = percent_decode(host).ok_or_else(|| invalid(url, "bad bucket name"))?;
        let path = percent_decode(&path).ok_or_else(|| invalid(url, "bad path"))?;
        let cleaned = clean_path(&path);
        Ok(GcsSettings {
            source: url.to_owned(),
            bucket,
            path: cleaned.strip_prefix('/').unwrap_or(&cleaned).to_owned(),
            endpoint: None,
        })
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults. As
    /// in Litestream, a `url` cannot be combined with `bucket` or `path`; keys of other
    /// backends are ignored.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<GcsSettings> {
        let mut bucket = String::new();
        let mut path = String::new();
        for (k, v) in settings {
            match k {
                "bucket" => bucket = v.trim().to_owned(),
                "path" => path = v.trim().to_owned(),
                _ => tracing::debug!(key = k, "setting does not apply to a gs replica"),
            }
        }
        let config_error = |msg: &str| StorageError::Other(msg.to_owned());
        let mut s = match url.filter(|u| !u.is_empty()) {
            Some(u) => {
                if !path.is_empty() {
                    return Err(config_error("cannot specify url & path for gs replica"));
                }
                if !bucket.is_empty() {
                    return Err(config_error("cannot specify url & bucket for gs replica"));
                }
                GcsSettings::from_url(u)?
            }
            None => {
                if bucket.is_empty() {
                    return Err(config_error("bucket required for gs replica"));
                }
                GcsSettings {
                    source: format!("gs://{bucket}/{path}"),
                    bucket,
                    path,
                    endpoint: None,
                }
            }
        };
        if s.bucket.is_empty() {
            return Err(config_error("bucket required for gs replica"));
        }
        s.source = s.source.trim_end_matches('/').to_owned();
        Ok(s)
    }

    /// The endpoint requests go to, and whether they are anonymous (an emulator).
    fn resolve_endpoint(&self) -> (String, bool) {
        if let Some(e) = &self.endpoint {
            return (e.trim_end_matches('/').to_owned(), true);
        }
        match std::env::var("STORAGE_EMULATOR_HOST") {
            Ok(h) if !h.trim().is_empty() => {
                let h = h.trim().trim_end_matches('/');
                if h.contains("://") {
                    (h.to_owned(), true)
                } else {
                    (format!("http://{h}"), true)
                }
            }
            _ => (client::GOOGLE_ENDPOINT.to_owned(), false),
        }
    }
}

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: GcsSettings) -> Result<SharedReplica> {
    Ok(Arc::new(GcsReplica::new(s)?))
}

pub struct GcsReplica {
    client: Arc<GcsClient>,
    path: String,
    cache: crate::listing_cache::LevelCache,
    /// Resumable chunk size and the size from which uploads are resumable.
    chunk_size: u64,
}

impl std::fmt::Debug for GcsReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsReplica")
            .field("client", &self.client)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn storage_error(e: GcsError) -> StorageError {
    if e.is_not_found() && e.op != "list objects" {
        StorageError::NotFound { key: e.target }
    } else {
        StorageError::Other(e.to_string())
    }
}

/// Runs one request, recording its duration and count (with `bytes` of its result) or its
/// error in the metrics.
async fn measured<T>(
    op: Operation,
    fut: impl std::future::Future<Output = Result<T, GcsError>>,
    bytes: impl Fn(&T) -> u64,
) -> Result<T> {
    let start = Instant::now();
    let r = fut.await;
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

async fn body_size(body: &Body) -> Result<u64> {
    Ok(match body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(p) => tokio::fs::metadata(p)
            .await
            .map_err(|e| StorageError::io(p.display().to_string(), e))?
            .len(),
    })
}

/// One object under the replica path, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    /// The `litestream-timestamp` metadata, else the creation time.
    pub created_at: Option<SystemTime>,
    /// The `litestream-timestamp` metadata as stored.
    pub metadata_timestamp: Option<String>,
}

impl GcsReplica {
    /// Builds the replica without any network traffic.
    pub fn new(settings: GcsSettings) -> Result<GcsReplica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

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
        let tls = tls_config(false, None).map_err(StorageError::Other)?;
        let pool = Pool::new(Some(Arc::new(tls)));
        let mut client = GcsClient::new(settings.bucket.clone(), endpoint, auth, pool)
            .map_err(|e| invalid(&settings.source, e))?;
        client.retry = retry;
        Ok(GcsReplica {
            client: Arc::new(client),
            path: settings.path,
            cache: crate::listing_cache::LevelCache::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
        })
    }

    /// Objects per listing page (default 1000, the service's maximum).
    pub fn set_page_size(&mut self, n: u32) {
        if let Some(c) = Arc::get_mut(&mut self.client) {
            c.page_size = n.clamp(1, 1000);
        }
    }

    /// Resumable chunk size, rounded down to a multiple of 256 KiB (at least 256 KiB); bodies
    /// this long or longer are uploaded in chunks.
    pub fn set_chunk_size(&mut self, n: u64) {
        self.chunk_size = (n / client::CHUNK_GRANULE).max(1) * client::CHUNK_GRANULE;
    }

    pub fn bucket(&self) -> &str {
        &self.client.bucket
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// `path.Join(<path>, "ltx", <level>)` + "/", as Litestream lists a level.
    pub fn level_prefix(&self, level: Level) -> String {
        let dir = format!("ltx/{}", level.0);
        if self.path.is_empty() {
            format!("{dir}/")
        } else {
            format!("{}/", clean_path(&format!("{}/{dir}", self.path)))
        }
    }

    /// The object name of one file (Litestream's `LTXFilePath`).
    pub fn ltx_key(&self, level: Level, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), ltx_file_name(min, max))
    }

    /// Every object whose name starts with `prefix`, across all pages.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = measured(
                Operation::List,
                self.client.list_page(prefix, token.as_deref()),
                |_| 0,
            )
            .await?;
            out.extend(page.objects.into_iter().map(|o| {
                let meta = o.metadata.and_then(|mut m| m.remove(METADATA_TIMESTAMP));
                let created = meta
                    .as_deref()
                    .and_then(crate::timefmt::parse_rfc3339)
                    .or_else(|| {
                        o.time_created
                            .as_deref()
                            .and_then(crate::timefmt::parse_rfc3339)
                    });
                ObjectInfo {
                    name: o.name,
                    size: o.size,
                    created_at: created,
                    metadata_timestamp: meta,
                }
            }));
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn delete_names(&self, names: Vec<String>) -> Result<()> {
        let mut set = JoinSet::new();
        let mut iter = names.into_iter();
        let mut first_err: Option<GcsError> = None;
        loop {
            while first_err.is_none() && set.len() < DELETE_PARALLEL {
                let Some(name) = iter.next() else { break };
                let c = self.client.clone();
                set.spawn(async move {
                    let start = Instant::now();
                    let r = c.delete(&name).await;
                    (start.elapsed(), r)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (took, r) =
                joined.map_err(|e| StorageError::Other(format!("gs: delete task: {e}")))?;
            metrics::observe_duration(KIND, Operation::Delete, took);
            match r {
                Ok(true) => metrics::record(KIND, Operation::Delete, 1, 0),
                Ok(false) => {}
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

    async fn upload(
        &self,
        key: &str,
        body: &Body,
        size: u64,
        created_at: SystemTime,
    ) -> Result<()> {
        let r = if size < self.chunk_size {
            let data = match body {
                Body::Bytes(b) => b.clone(),
                // Below the chunk size, so bounded.
                Body::File(p) => Bytes::from(
                    tokio::fs::read(p)
                        .await
                        .map_err(|e| StorageError::io(p.display().to_string(), e))?,
                ),
            };
            if data.len() as u64 != size {
                return Err(StorageError::Other(format!(
                    "gs: upload of {}: source changed size while being read",
                    self.client.describe(Some(key))
                )));
            }
            self.client.upload_multipart(key, &data, created_at).await
        } else {
            let source = match body {
                Body::Bytes(b) => ChunkSource::Bytes(b.clone()),
                Body::File(p) => ChunkSource::File(Arc::new(p.clone())),
            };
            self.client
                .upload_resumable(key, &source, size, self.chunk_size, created_at)
                .await
        };
        r.map_err(|e| {
            metrics::record_error(KIND, Operation::Put, &e.metric_code());
            storage_error(e)
        })
    }
}

#[async_trait]
impl ReplicaClient for GcsReplica {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let version = match self.cache.get(level) {
            Ok(files) => return Ok(files),
            Err(version) => version,
        };
        let prefix = self.level_prefix(level);
        let objects = self.list_prefix(&prefix).await?;
        let mut files: Vec<LtxFileInfo> = objects
            .into_iter()
            .filter_map(|o| {
                // Only names directly in the level "directory": a nested name would not be the
                // object `ltx_key` reads.
                let base = o.name.strip_prefix(&prefix)?;
                let (min, max) = parse_ltx_file_name(base)?;
                Some(LtxFileInfo {
                    level,
                    min_txid: min,
                    max_txid: max,
                    size: o.size,
                    created_at: o.created_at.unwrap_or(SystemTime::UNIX_EPOCH),
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
        let key = self.ltx_key(level, min, max);
        measured(
            Operation::Get,
            self.client.get_range(&key, offset, len),
            |b| b.len() as u64,
        )
        .await
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
        let s = stream::StreamedRange::open(self.client.clone(), key, offset, len).await?;
        Ok(Box::new(s))
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
        let size = body_size(&body).await?;
        self.cache.begin_change();
        let start = Instant::now();
        let r = self.upload(&key, &body, size, created_at).await;
        metrics::observe_duration(KIND, Operation::Put, start.elapsed());
        if let Err(e) = r {
            self.cache.written(level, None);
            return Err(e);
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
        let names = files
            .iter()
            .map(|f| self.ltx_key(f.level, f.min_txid, f.max_txid))
            .collect();
        self.cache.begin_change();
        let r = self.delete_names(names).await;
        self.cache.deleted(files, r.is_ok());
        r
    }

    /// Deletes every object under `<path>/`, as Litestream's `DeleteAll` does (with an empty
    /// path: everything under `ltx/`, where such a replica's files are).
    async fn delete_all(&self) -> Result<()> {
        let root = clean_path(&self.path);
        let prefix = if root == "." {
            "ltx/".to_owned()
        } else {
            format!("{}/", root.trim_end_matches('/'))
        };
        self.invalidate_cache();
        let names = self
            .list_prefix(&prefix)
            .await?
            .into_iter()
            .map(|o| o.name)
            .collect();
        let r = self.delete_names(names).await;
        self.invalidate_cache();
        r
    }

    fn invalidate_cache(&self) {
        self.cache.clear();
    }
}
