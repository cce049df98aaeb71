//! Azure Blob Storage replicas (`abs://[account@]container/path`), laid out as Litestream 0.5.17
//! lays them out (see `docs/storage.md`): blobs `<path>/ltx/<level decimal>/<min>-<max>.ltx`
//! with the LTX header timestamp in the `litestreamtimestamp` metadata (RFC 3339,
//! nanoseconds), which List Blobs returns with `include=metadata`, so listings carry exact
//! creation times at no extra cost.
//!
//! What is Azure's own: settings (`settings`), Shared Key or SAS authentication (`sign`), the
//! REST operations (`client`) and block uploads (here); the rest is the generic [`Replica`].

mod client;
mod identity;
pub mod settings;
mod sign;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use ltx_codec::{Level, TxId};
use tokio::task::JoinSet;

use crate::backend::{Backend, Layout, Listed, Page, Purge, Span, Stream, Upload};
use crate::replica::Replica;
use crate::transport::range;
use crate::transport::{HttpError, Payload};
use crate::{Result, SharedReplica};

/// One blob under the replica path, as listed.
pub use crate::backend::ObjectInfo as BlobInfo;
pub use crate::transport::RetryPolicy;
pub use client::AbsClient;
pub use settings::AbsSettings;

/// Bodies up to this size go up in one Put Blob; larger ones in blocks of this size.
const DEFAULT_BLOCK_SIZE: u64 = 8 * 1024 * 1024;
/// Azure's limit of blocks per blob.
const MAX_BLOCKS: u64 = 50_000;
const UPLOAD_CONCURRENCY: usize = 4;

/// An `abs` replica.
pub type AbsReplica = Replica<Arc<AbsClient>>;

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: AbsSettings) -> Result<SharedReplica> {
    Ok(Arc::new(AbsReplica::new(s)?))
}

impl Replica<Arc<AbsClient>> {
    /// Builds the replica without any network traffic.
    pub fn new(settings: AbsSettings) -> Result<AbsReplica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    /// Builds the replica with `retry` for its requests, without any network traffic.
    pub fn with_retry_policy(settings: AbsSettings, retry: RetryPolicy) -> Result<AbsReplica> {
        let client = AbsClient::new(&settings, retry, DEFAULT_BLOCK_SIZE)?;
        Ok(Replica::from_backend(Arc::new(client)))
    }

    fn client_mut(&mut self) -> Option<&mut AbsClient> {
        self.backend_mut().and_then(Arc::get_mut)
    }

    /// Bodies larger than this go up as blocks of this size (tests use small ones).
    pub fn with_block_size(mut self, bytes: u64) -> Self {
        if let Some(c) = self.client_mut() {
            c.block_size = bytes.max(1);
        }
        self
    }

    /// `maxresults` of List Blobs (the service's default, 5000, when unset).
    pub fn with_list_page_size(mut self, n: u32) -> Self {
        if let Some(c) = self.client_mut() {
            c.page_size = Some(n.max(1));
        }
        self
    }

    /// The container the replica lives in.
    pub fn container(&self) -> &str {
        &self.backend().container
    }

    /// Blob name prefix of the replica ("" for the container's root).
    pub fn path(&self) -> &str {
        &self.backend().path
    }

    /// `<path>/ltx/<level>/`, as Go's `path.Join` makes it (no leading slash for an empty path).
    pub fn level_prefix(&self, level: Level) -> String {
        self.backend().layout.level_prefix(level)
    }

    /// Blob name of one LTX file: `<path>/ltx/<level>/<min>-<max>.ltx`.
    pub fn ltx_blob(&self, level: Level, min: TxId, max: TxId) -> String {
        self.backend().layout.ltx_key(level, min, max)
    }

    /// Every blob whose name starts with `prefix`, across all pages.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        self.list_as(prefix).await
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
        Ok(self.backend().blob_properties(&blob).await?)
    }

    /// Creates the container if it does not exist (for tests and tooling; Litestream expects
    /// it to exist).
    pub async fn create_container(&self) -> Result<()> {
        Ok(self.backend().create_container().await?)
    }
}

/// Uploads a body larger than one block: blocks `UPLOAD_CONCURRENCY` at a time, then the
/// block list that commits them.
async fn upload_blocks(
    client: &Arc<AbsClient>,
    blob: &str,
    up: Upload<'_>,
) -> Result<(), HttpError> {
    let (body, size) = (up.body, up.size);
    let mut block = client.block_size;
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
            let part = Payload::region(body, offset, block.min(size - offset));
            let (c, b, id) = (client.clone(), blob.to_owned(), ids[next].clone());
            set.spawn(async move { c.put_block(&b, &id, part).await });
            next += 1;
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        joined.map_err(|e| {
            let req = client::Request::new("put block", http::Method::PUT, Some(blob));
            client
                .error(&req, None, "", format!("block task failed: {e}"))
                .fatal()
        })??;
    }
    // Uncommitted blocks of a failed upload are discarded by the service after a week.
    client
        .put_block_list(blob, &ids, up.created_at, up.create_only())
        .await
}

#[async_trait]
impl Backend for Arc<AbsClient> {
    const KIND: &'static str = "abs";
    const CREATE_ONLY: bool = true;
    /// Delete Blob removes one blob per request; this many go at once.
    const DELETE_PARALLEL: usize = 16;

    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn list_page(&self, prefix: &str, token: Option<String>) -> Result<Page> {
        let (blobs, next) = AbsClient::list_page(self, prefix, token.as_deref()).await?;
        let entries = blobs
            .into_iter()
            .map(|b| Listed {
                key: b.name,
                size: b.size,
                created_at: b.created_at,
            })
            .collect();
        Ok(Page { entries, next })
    }

    async fn open_range<'a>(&'a self, key: &str, span: Span) -> Result<Stream<'a>> {
        range::stream(&**self, &self.http, key, span).await
    }

    async fn put(&self, key: &str, up: Upload<'_>) -> Result<SystemTime> {
        if up.size > self.block_size {
            upload_blocks(self, key, up).await?;
        } else {
            let body = Payload::region(up.body, 0, up.size);
            self.put_blob(key, body, up.created_at, up.create_only())
                .await?;
        }
        Ok(up.created_at)
    }

    /// Gone already (blob or container) is not an error, as in Litestream.
    async fn delete(&self, key: &str) -> Result<bool> {
        self.delete_blob(key).await?;
        Ok(true)
    }

    /// Every blob under the replica path, as Litestream's `DeleteAll` removes them (only the
    /// `ltx/` tree when the path is the container's root).
    fn purge(&self) -> Purge {
        Purge::Prefix(if self.path.is_empty() {
            "ltx/".to_owned()
        } else {
            format!("{}/", self.path)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaClient;

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
