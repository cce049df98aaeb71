//! [`Replica`]: the one implementation of [`ReplicaClient`], on top of any [`Backend`]. It owns
//! what every replica does the same way: the key layout of LTX files, the listing cache
//! ([`cache`]), metrics, and the ranged-read stream handed to callers ([`stream`]).

mod cache;
mod legacy;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::{Level, TxId};
use tokio::task::JoinSet;

use crate::backend::{Backend, Listed, Purge, PutMode, Span, Upload};
use crate::metrics::{self, Operation};
use crate::{Body, LtxFileInfo, LtxName, RangeStream, Ranged, ReplicaClient, Result, StorageError};
use cache::LevelCache;

pub(crate) use stream::{collect, piecewise, Piecewise};

/// A replica in a [`Backend`].
pub struct Replica<B> {
    backend: Arc<B>,
    cache: LevelCache,
}

impl<B: Backend> std::fmt::Debug for Replica<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The size of what an upload sends.
async fn body_size(body: &Body) -> Result<u64> {
    Ok(match body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(p) => tokio::fs::metadata(p)
            .await
            .map_err(|e| StorageError::io(p.display().to_string(), e))?
            .len(),
    })
}

impl<B: Backend> Replica<B> {
    /// A replica in `backend`, with an empty listing cache.
    pub fn from_backend(backend: B) -> Replica<B> {
        Replica {
            backend: Arc::new(backend),
            cache: LevelCache::default(),
        }
    }

    /// The backend the replica lives in.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Mutable access to a backend not yet shared (builder-style settings).
    pub(crate) fn backend_mut(&mut self) -> Option<&mut B> {
        Arc::get_mut(&mut self.backend)
    }

    /// Runs one operation, recording its duration and its count and bytes (`counted` of its
    /// result) or its error in the metrics.
    async fn measured<T>(
        &self,
        op: Operation,
        fut: impl std::future::Future<Output = Result<T>>,
        counted: impl FnOnce(&T) -> (u64, u64),
    ) -> Result<T> {
        let start = Instant::now();
        let r = fut.await;
        if B::METRICS {
            let kind = self.backend.kind();
            metrics::observe_duration(kind, op, start.elapsed());
            match &r {
                Ok(v) => {
                    let (n, bytes) = counted(v);
                    metrics::record(kind, op, n, bytes);
                }
                Err(e) => metrics::record_error(kind, op, e.metric_code()),
            }
        }
        r
    }

    /// Every object whose key starts with `prefix`, across all pages (each page counted).
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let list = self.backend.list_page(prefix, token.take());
            let page = self.measured(Operation::List, list, |_| (1, 0)).await?;
            out.extend(page.entries);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// [`Replica::list_all`] as the listing type a backend's `list_prefix` returns.
    pub(crate) async fn list_as<T: From<Listed>>(&self, prefix: &str) -> Result<Vec<T>> {
        Ok(self
            .list_all(prefix)
            .await?
            .into_iter()
            .map(T::from)
            .collect())
    }

    /// Deletes `keys` in batches, some at once; the first failure is returned once the
    /// batches in flight are done.
    async fn delete_keys(&self, keys: Vec<String>) -> Result<()> {
        let mut batches = keys.chunks(B::DELETE_BATCH.max(1)).map(<[String]>::to_vec);
        let mut set = JoinSet::new();
        let mut first_err = None;
        loop {
            while first_err.is_none() && set.len() < B::DELETE_PARALLEL.max(1) {
                let Some(batch) = batches.next() else { break };
                let b = self.backend.clone();
                set.spawn(async move {
                    let start = Instant::now();
                    let r = b.delete_batch(&batch).await;
                    (start.elapsed(), r)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (took, r) = joined.map_err(|e| {
                StorageError::fatal(format!("{}: delete task: {e}", self.backend.kind()))
            })?;
            if B::METRICS {
                let kind = self.backend.kind();
                metrics::observe_duration(kind, Operation::Delete, took);
                match &r {
                    Ok(n) => metrics::record(kind, Operation::Delete, *n, 0),
                    Err(e) => metrics::record_error(kind, Operation::Delete, e.metric_code()),
                }
            }
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Lists one level, or every level at once for backends that list the whole replica.
    async fn list_level(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let layout = self.backend.layout();
        let file = |level: Level, min: TxId, max: TxId, o: &Listed| LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size: o.size,
            created_at: o.created_at.unwrap_or(SystemTime::UNIX_EPOCH),
        };
        let version = self.cache.get(level);
        if let Ok(files) = version {
            return Ok(files);
        }
        let version = version.err().unwrap_or_default();
        if B::WHOLE_LISTING {
            let mut levels: HashMap<Level, Vec<LtxFileInfo>> = HashMap::new();
            for o in self.list_all(layout.root()).await? {
                if let Some((lv, min, max)) = layout.parse(&o.key) {
                    levels.entry(lv).or_default().push(file(lv, min, max, &o));
                }
            }
            for files in levels.values_mut() {
                files.sort_by_key(|f| (f.min_txid, f.max_txid));
            }
            let files = levels.get(&level).cloned().unwrap_or_default();
            if B::CACHE_LISTINGS {
                self.cache.store_all(version, levels);
            }
            return Ok(files);
        }
        let mut files: Vec<LtxFileInfo> = self
            .list_all(&layout.level_prefix(level))
            .await?
            .iter()
            .filter_map(|o| {
                let (min, max) = layout.parse_in_level(level, &o.key)?;
                Some(file(level, min, max, o))
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        if B::CACHE_LISTINGS {
            self.cache.store(level, version, &files);
        }
        Ok(files)
    }

    /// One measured PUT of `body` (`size` bytes) under `key`; returns the stored creation time.
    async fn put_measured(
        &self,
        key: &str,
        body: &Body,
        size: u64,
        created_at: SystemTime,
        mode: PutMode,
    ) -> Result<SystemTime> {
        let up = Upload {
            body,
            size,
            created_at,
            mode,
        };
        let put = self.backend.put(key, up);
        self.measured(Operation::Put, put, |_| (1, size)).await
    }

    /// One measured ranged GET of `key`, handed out piece by piece and counted as it arrives.
    async fn open_measured(&self, key: &str, span: Span) -> Result<Box<dyn RangeStream + '_>> {
        let open = self.backend.open_range(key, span);
        let inner = self.measured(Operation::Get, open, |_| (1, 0)).await?;
        Ok(stream::metered(inner, self.backend.kind(), B::METRICS))
    }

    /// The backend's key of file `name`.
    fn key(&self, name: LtxName) -> String {
        self.backend
            .layout()
            .ltx_key(name.level, name.min, name.max)
    }

    async fn write(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
        mode: PutMode,
    ) -> Result<LtxFileInfo> {
        let LtxName { level, min, max } = name;
        let key = self.key(name);
        let size = body_size(&body).await?;
        // Whatever happens next, a cached listing of this level may be wrong.
        self.cache.begin_change();
        let stored = match self.put_measured(&key, &body, size, created_at, mode).await {
            Ok(t) => t,
            Err(e) => {
                self.cache.written(level, None);
                return Err(e);
            }
        };
        let info = LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at: stored,
        };
        self.cache.written(level, Some(&info));
        Ok(info)
    }
}

#[async_trait]
impl<B: Backend> ReplicaClient for Replica<B> {
    fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        self.list_level(level).await
    }

    async fn read_range(&self, name: LtxName, offset: u64, len: Option<u64>) -> Result<Bytes> {
        let key = self.key(name);
        let read = self.backend.read(&key, Span { offset, len });
        self.measured(Operation::Get, read, |b| (1, b.len() as u64))
            .await
    }

    async fn read_range_stream<'a>(&'a self, name: LtxName, offset: u64, len: u64) -> Ranged<'a> {
        offset
            .checked_add(len)
            .ok_or_else(|| StorageError::fatal(format!("range {offset}+{len} overflows")))?;
        let key = self.key(name);
        let span = Span {
            offset,
            len: Some(len),
        };
        self.open_measured(&key, span).await
    }

    async fn write_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        self.write(name, body, created_at, PutMode::Overwrite).await
    }

    async fn create_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        if !B::CREATE_ONLY {
            return Err(StorageError::fatal(format!(
                "{}: {}: create-only writes are not supported by this backend",
                self.backend.kind(),
                self.key(name)
            )));
        }
        self.write(name, body, created_at, PutMode::CreateOnly)
            .await
    }

    fn supports_create_only(&self) -> bool {
        B::CREATE_ONLY
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let layout = self.backend.layout();
        let keys = files
            .iter()
            .map(|f| layout.ltx_key(f.level, f.min_txid, f.max_txid))
            .collect();
        self.cache.begin_change();
        let r = self.delete_keys(keys).await;
        self.cache.deleted(files, r.is_ok());
        r
    }

    /// Deletes every object of the replica, as Litestream's `DeleteAll` does.
    async fn delete_all(&self) -> Result<()> {
        self.cache.clear();
        let r = match self.backend.purge() {
            Purge::Prefix(prefix) => {
                let keys = self.list_all(&prefix).await?;
                self.delete_keys(keys.into_iter().map(|o| o.key).collect())
                    .await
            }
            Purge::Tree => {
                let tree = self.backend.delete_tree();
                self.measured(Operation::Delete, tree, |n| (*n, 0))
                    .await
                    .map(|_| ())
            }
        };
        self.cache.clear();
        r
    }

    async fn legacy_objects(&self) -> Result<Vec<crate::backend::ObjectInfo>> {
        self.list_legacy().await
    }

    async fn open_legacy<'a>(&'a self, name: &str) -> Ranged<'a> {
        let key = self.legacy_key(name)?;
        let whole = Span {
            offset: 0,
            len: None,
        };
        self.open_measured(&key, whole).await
    }

    async fn write_legacy(&self, name: &str, body: Body, created_at: SystemTime) -> Result<()> {
        let key = self.legacy_key(name)?;
        let size = body_size(&body).await?;
        let mode = PutMode::Overwrite;
        self.put_measured(&key, &body, size, created_at, mode)
            .await
            .map(|_| ())
    }

    fn invalidate_cache(&self) {
        self.cache.clear();
    }
}
