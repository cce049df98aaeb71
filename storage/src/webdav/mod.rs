//! WebDAV replicas (`webdav[s]://[user:pass@]host[:port]/path`, or the `webdav-url`,
//! `webdav-username`, `webdav-password` and `path` keys): Litestream 0.5.17's layout,
//! `<path>/ltx/<level>/<min>-<max>.ltx`, with the server's modification time as creation time,
//! which is all Litestream reads too. Keys are the encoded paths requests use.
//!
//! Writes go to a hidden temporary name in the level directory (`.<name>.<random>.tmp`, which
//! no LTX lister takes for an LTX file) and are then MOVEd over the final name, so a reader
//! never sees a partial file and a failed upload leaves no truncated LTX file behind;
//! Litestream PUTs to the final name directly. A server without MOVE gets a direct PUT.
//! Missing directories are made (MKCOL) when a PUT says the parent is missing. A create-only
//! write MOVEs with `Overwrite: F`, which the server refuses when the name is taken.

mod client;
mod multistatus;
mod settings;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use ltx_codec::{Level, TxId};

use crate::backend::{Backend, Layout, Listed, Page, Purge, PutMode, Span, Stream, Upload};
use crate::replica::Replica;
use crate::transport::encode::segment;
use crate::transport::range;
use crate::transport::{HttpError, Payload};
use crate::{Body, Result, SharedReplica, StorageError};
use client::{Call, DavClient};

pub use crate::transport::RetryPolicy;
pub use settings::WebDavSettings;

/// A `webdav` replica.
pub type WebDavReplica = Replica<DavClient>;

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: WebDavSettings) -> Result<SharedReplica> {
    Ok(Arc::new(WebDavReplica::new(s)?))
}

impl Replica<DavClient> {
    /// Builds the replica with the default retry policy, without any network traffic.
    pub fn new(settings: WebDavSettings) -> Result<WebDavReplica> {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    /// Builds the replica with `retry` for its requests, without any network traffic.
    pub fn with_retry_policy(
        settings: WebDavSettings,
        retry: RetryPolicy,
    ) -> Result<WebDavReplica> {
        let server = settings
            .server()
            .map_err(|reason| StorageError::invalid_url(&settings.source, reason))?;
        let client = DavClient::new(server, &settings.segments(), retry)
            .map_err(|e| StorageError::config(format!("webdav: {}: {e}", settings.source)))?;
        Ok(Replica::from_backend(client))
    }

    /// The full URL of one LTX file.
    pub fn ltx_url(&self, level: Level, min: TxId, max: TxId) -> String {
        let c = self.backend();
        c.url(&c.layout.ltx_key(level, min, max))
    }

    /// The full URL of a level directory.
    pub fn level_url(&self, level: Level) -> String {
        let c = self.backend();
        c.url(&c.layout.level_prefix(level))
    }
}

impl DavClient {
    /// PUTs, making the directory `dir` when the server says it is missing.
    async fn put_in(&self, dir: &str, path: &str, payload: &Payload) -> Result<(), HttpError> {
        if self.put(path.to_owned(), payload.clone()).await? {
            return Ok(());
        }
        self.make_collections(dir).await?;
        if self.put(path.to_owned(), payload.clone()).await? {
            return Ok(());
        }
        let call = Call::new("put", http::Method::PUT, path.to_owned());
        let e = self.error(
            &call,
            Some(http::StatusCode::CONFLICT),
            "the directory is still missing after MKCOL".to_owned(),
        );
        Err(e.fatal())
    }

    /// PUT to a temporary name and MOVE it over `path` (or PUT to `path` when the server has
    /// no MOVE), making the directory when the server says it is missing.
    async fn upload(&self, path: &str, payload: Payload, mode: PutMode) -> Result<(), HttpError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = format!("{dir}/");
        let use_move = mode == PutMode::CreateOnly || self.can_move.load(Ordering::Relaxed);
        if !use_move {
            return self.put_in(&dir, path, &payload).await;
        }
        let tmp = format!(
            "{dir}{}",
            segment(&format!(".{name}.{:016x}.tmp", fastrand::u64(..)))
        );
        self.put_in(&dir, &tmp, &payload).await?;
        let overwrite = mode == PutMode::Overwrite;
        match self.rename(tmp.clone(), path, overwrite).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                let _ = self.delete(tmp).await;
                if !overwrite {
                    let call = Call::new("move", http::Method::PUT, path.to_owned());
                    let msg = "create-only writes need MOVE, which this server lacks".to_owned();
                    return Err(self.error(&call, None, msg).fatal());
                }
                tracing::info!(url = %self.url(path), "webdav server has no MOVE; writing in place");
                self.can_move.store(false, Ordering::Relaxed);
                self.put(path.to_owned(), payload).await.map(|_| ())
            }
            Err(e) => {
                if let Err(d) = self.delete(tmp).await {
                    tracing::warn!(error = %d, "webdav: could not remove a temporary upload");
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Backend for DavClient {
    const KIND: &'static str = "webdav";
    const CREATE_ONLY: bool = true;

    fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A PROPFIND of the directory `prefix`; only files directly in it are listed.
    async fn list_page(&self, prefix: &str, _token: Option<String>) -> Result<Page> {
        let Some(entries) = self.list(prefix.to_owned()).await? else {
            return Ok(Page::default());
        };
        let want = DavClient::href_path(prefix);
        let want = want.trim_end_matches('/');
        let entries = entries
            .into_iter()
            .filter(|e| !e.collection)
            .filter_map(|e| {
                let p = DavClient::href_path(&e.href);
                let (parent, name) = p.rsplit_once('/')?;
                // Only members of this very directory (a proxy may add a prefix to hrefs).
                parent.ends_with(want).then(|| Listed {
                    key: format!("{prefix}{}", segment(name)),
                    size: e.size,
                    created_at: e.modified,
                })
            })
            .collect();
        Ok(Page {
            entries,
            next: None,
        })
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        let Some(entries) = self.list(prefix.to_owned()).await? else {
            return Ok(Some(Vec::new()));
        };
        let want = DavClient::href_path(prefix);
        let want = want.trim_end_matches('/');
        let names = entries
            .into_iter()
            .filter(|e| e.collection)
            .filter_map(|e| {
                let p = DavClient::href_path(&e.href);
                let (parent, name) = p.trim_end_matches('/').rsplit_once('/')?;
                // Members only: the listing also names the collection itself.
                (parent.ends_with(want) && !name.is_empty()).then(|| segment(name))
            })
            .collect();
        Ok(Some(names))
    }

    async fn open_range<'a>(&'a self, key: &str, span: Span) -> Result<Stream<'a>> {
        range::stream(self, &self.http, key, span).await
    }

    async fn put(&self, key: &str, up: Upload<'_>) -> Result<SystemTime> {
        let payload = match up.body {
            Body::Bytes(b) => Payload::Bytes(b.clone()),
            Body::File(p) => Payload::File {
                path: p.clone(),
                offset: 0,
                len: up.size,
            },
        };
        self.upload(key, payload, up.mode).await?;
        Ok(up.created_at)
    }

    /// A missing file is already deleted.
    async fn delete(&self, key: &str) -> Result<bool> {
        DavClient::delete(self, key.to_owned()).await?;
        Ok(true)
    }

    fn purge(&self) -> Purge {
        Purge::Tree
    }

    /// Deletes `<path>/ltx` and everything in it.
    async fn delete_tree(&self) -> Result<u64> {
        DavClient::delete(self, self.layout.root().to_owned()).await?;
        Ok(1)
    }
}
