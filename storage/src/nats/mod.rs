//! NATS JetStream object store replicas (`nats://[user:pass@]host[:port]/bucket`, or a
//! `type: nats` entry with `bucket` and the NATS keys): Litestream 0.5.17's layout, objects
//! named `ltx/<level>/<min>-<max>.ltx` at the root of the bucket, each with a
//! `Litestream-Timestamp` header (RFC 3339, milliseconds, UTC) holding its creation time (§3.1).
//! The bucket must exist: like Litestream, the replica never creates it.
//!
//! The connection is made on first use and closed after [`IDLE_CLOSE`] without use, before
//! the client's first PING ([`PING_INTERVAL`]), so an idle replica sends nothing. Listings read
//! the metadata of the whole bucket at once (one ordered consumer); they are cached per level
//! and kept current by our own writes and deletes. The object store has no ranged GET: a read
//! at an offset streams the object from its start and drops what comes before the offset.

mod conn;
mod settings;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::object_store::{Object, ObjectInfo, ObjectMetadata, ObjectStore};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};
use tokio::io::AsyncReadExt;

use crate::metrics::{self, Operation};
use crate::timefmt::{format_rfc3339_nano, parse_rfc3339};
use crate::{Body, LtxFileInfo, RangeStream, ReplicaClient, Result, SharedReplica, StorageError};
use conn::{chain, kind_name, Conn, InUse, NatsError};

pub use crate::s3::RetryPolicy;
pub use conn::{IDLE_CLOSE, PING_INTERVAL};
pub use settings::{NatsSettings, DEFAULT_SERVER};

const KIND: &str = "nats";

/// The object header Litestream keeps the creation time in.
pub const HEADER_TIMESTAMP: &str = "Litestream-Timestamp";

/// Opens the replica. Must not block or touch the network: the connection is made on first use.
pub fn open(s: NatsSettings) -> Result<SharedReplica> {
    Ok(Arc::new(NatsReplica::new(s)))
}

/// The object name of an LTX file: `ltx/<level>/<min>-<max>.ltx`.
pub fn object_name(level: Level, min: TxId, max: TxId) -> String {
    format!("ltx/{}/{}", level.0, ltx_file_name(min, max))
}

#[derive(Default)]
struct Listings {
    /// Every level of the bucket, from one listing; `None` until listed.
    levels: Option<HashMap<Level, Vec<LtxFileInfo>>>,
    /// Bumped by every change we make, so a listing that raced with one is not kept.
    version: u64,
}

pub struct NatsReplica {
    conn: Conn,
    retry: RetryPolicy,
    cache: Mutex<Listings>,
}

impl std::fmt::Debug for NatsReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsReplica")
            .field("settings", self.conn.settings())
            .finish_non_exhaustive()
    }
}

/// The creation time of an object: its `Litestream-Timestamp` header, else its mtime.
fn created_at(info: &ObjectInfo) -> SystemTime {
    let from_header = info
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_TIMESTAMP))
        .and_then(|v| parse_rfc3339(v.as_str()));
    from_header.unwrap_or_else(|| {
        let nanos = info
            .modified
            .map(|m| m.unix_timestamp_nanos())
            .unwrap_or_default();
        let d = Duration::from_nanos(nanos.unsigned_abs().min(u128::from(u64::MAX)) as u64);
        if nanos >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    })
}

/// `created_at` to the millisecond, as Litestream writes it from the LTX header.
fn timestamp_header(t: SystemTime) -> String {
    let t = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_millis(d.as_millis() as u64),
        Err(_) => t,
    };
    format_rfc3339_nano(t)
}

/// The LTX files of the bucket by level; objects that are not LTX files are left out.
fn group_levels(objects: &[ObjectInfo]) -> HashMap<Level, Vec<LtxFileInfo>> {
    let mut levels: HashMap<Level, Vec<LtxFileInfo>> = HashMap::new();
    for o in objects {
        let Some(rest) = o.name.strip_prefix("ltx/") else {
            continue;
        };
        let Some((level, name)) = rest.split_once('/') else {
            continue;
        };
        // Litestream matches the prefix `ltx/<level>/` with the level written in decimal.
        let Ok(n) = level.parse::<u32>() else {
            continue;
        };
        let Ok(lv) = u8::try_from(n) else { continue };
        if level != n.to_string() {
            continue;
        }
        let Some((min, max)) = parse_ltx_file_name(name) else {
            continue;
        };
        levels.entry(Level(lv)).or_default().push(LtxFileInfo {
            level: Level(lv),
            min_txid: min,
            max_txid: max,
            size: o.size as u64,
            created_at: created_at(o),
        });
    }
    for files in levels.values_mut() {
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
    }
    levels
}

/// Every object of the bucket, deleted ones left out.
async fn list_objects(store: &ObjectStore) -> Result<Vec<ObjectInfo>, NatsError> {
    let mut list = store
        .list()
        .await
        .map_err(|e| NatsError::classify(&kind_name(e.kind()), &chain(&e)))?;
    let mut out = Vec::new();
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut list).poll_next(cx)).await;
        match next {
            Some(Ok(info)) => out.push(info),
            Some(Err(e)) => return Err(NatsError::classify(&kind_name(e.kind()), &chain(&e))),
            None => return Ok(out),
        }
    }
}

/// Opens `name` and reads past its first `offset` bytes, checking that `offset + len` is
/// within it. Returns the object and the bytes left to read.
async fn open_at(
    store: &ObjectStore,
    name: &str,
    offset: u64,
    len: Option<u64>,
) -> Result<(Object, u64), NatsError> {
    let mut obj = store
        .get(name)
        .await
        .map_err(|e| NatsError::classify(&kind_name(e.kind()), &chain(&e)))?;
    let size = obj.info.size as u64;
    let end = match len {
        Some(l) => offset.checked_add(l),
        None => Some(size),
    };
    let end = match end {
        Some(end) if offset <= size && end <= size => end,
        _ => {
            return Err(NatsError::fatal(
                format!(
                    "range {offset}+{} is past the end of the object ({size} bytes)",
                    len.map_or_else(|| "rest".to_owned(), |l| l.to_string())
                ),
                "Range",
            ))
        }
    };
    let mut skip = offset;
    let mut sink = vec![0u8; 64 << 10];
    while skip > 0 {
        let n = (skip as usize).min(sink.len());
        let got = obj.read(&mut sink[..n]).await.map_err(read_error)?;
        if got == 0 {
            return Err(NatsError::transient("object ended early", "ShortRead"));
        }
        skip -= got as u64;
    }
    Ok((obj, end - offset))
}

fn read_error(e: std::io::Error) -> NatsError {
    let kind = if e.kind() == std::io::ErrorKind::TimedOut {
        "TimedOut"
    } else {
        "Other"
    };
    NatsError::classify(kind, &chain(&e))
}

/// Up to `max` of the `left` bytes of `obj`, as they arrive.
async fn read_piece(obj: &mut Object, left: &mut u64, max: usize) -> Result<Bytes, NatsError> {
    let want = (*left).min(max as u64) as usize;
    let mut buf = BytesMut::with_capacity(want);
    while buf.is_empty() {
        let mut limited = (&mut *obj).take(want as u64);
        let n = limited.read_buf(&mut buf).await.map_err(read_error)?;
        if n == 0 {
            return Err(NatsError::transient("object ended early", "ShortRead"));
        }
    }
    *left -= buf.len() as u64;
    Ok(buf.freeze())
}

impl NatsReplica {
    pub fn new(settings: NatsSettings) -> NatsReplica {
        Self::with_options(settings, RetryPolicy::default(), IDLE_CLOSE)
    }

    /// A replica with its own retry policy and idle time before the connection is closed.
    pub fn with_options(
        settings: NatsSettings,
        retry: RetryPolicy,
        idle_close: Duration,
    ) -> NatsReplica {
        if !settings.ignored_path.is_empty() {
            tracing::warn!(
                path = %settings.ignored_path,
                bucket = %settings.bucket,
                "nats replicas keep their files at the root of the bucket; `path` is ignored, as Litestream ignores it"
            );
        }
        NatsReplica {
            conn: Conn::new(settings, idle_close),
            retry,
            cache: Mutex::new(Listings::default()),
        }
    }

    pub fn settings(&self) -> &NatsSettings {
        self.conn.settings()
    }

    /// Connections made so far (each first use after an idle close makes one).
    pub fn connects(&self) -> usize {
        self.conn.connects()
    }

    /// Whether the replica holds an open connection now.
    pub async fn is_connected(&self) -> bool {
        self.conn.is_open().await
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Listings> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, key: &str, e: NatsError) -> StorageError {
        if e.not_found {
            return StorageError::NotFound {
                key: format!("nats bucket {:?}: {key}", self.settings().bucket),
            };
        }
        StorageError::Other(format!(
            "nats bucket {:?}: {key}: {}",
            self.settings().bucket,
            e.msg
        ))
    }

    /// Runs `f` on the bucket, trying again after transient errors with backoff. Counts the
    /// operation (and `bytes` of its result) in the metrics; errors name `key`.
    async fn run<T, F, Fut>(
        &self,
        op: Operation,
        key: &str,
        bytes: impl Fn(&T) -> u64,
        mut f: F,
    ) -> Result<(T, InUse)>
    where
        F: FnMut(ObjectStore) -> Fut,
        Fut: Future<Output = Result<T, NatsError>>,
    {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            let r = match self.conn.store().await {
                Ok((store, in_use)) => f(store).await.map(|v| (v, in_use)),
                Err(e) => Err(e),
            };
            match r {
                Ok((v, in_use)) => {
                    metrics::observe_duration(KIND, op, start.elapsed());
                    metrics::record(KIND, op, 1, bytes(&v));
                    return Ok((v, in_use));
                }
                Err(e) if e.retryable && attempt + 1 < self.retry.max_attempts => {
                    metrics::record_error(KIND, op, e.code);
                    let delay = self.retry.delay(attempt);
                    tracing::warn!(key, error = %e, attempt = attempt + 1, ?delay, "nats: retrying");
                    self.conn.reset_if_disconnected().await;
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    metrics::observe_duration(KIND, op, start.elapsed());
                    metrics::record_error(KIND, op, e.code);
                    return Err(self.error(key, e));
                }
            }
        }
    }

    /// Every object in the bucket.
    async fn objects(&self) -> Result<Vec<ObjectInfo>> {
        let (objects, _) = self
            .run(
                Operation::List,
                "list",
                |_| 0,
                |store| async move { list_objects(&store).await },
            )
            .await?;
        Ok(objects)
    }

    async fn put(&self, name: &str, body: &Body, created_at: SystemTime) -> Result<u64> {
        let stamp = timestamp_header(created_at);
        let meta = || {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER_TIMESTAMP, stamp.as_str());
            ObjectMetadata {
                name: name.to_owned(),
                headers: Some(headers),
                ..Default::default()
            }
        };
        let put_error = |e: async_nats::jetstream::object_store::PutError| {
            NatsError::classify(&kind_name(e.kind()), &chain(&e))
        };
        let (size, _) = self
            .run(
                Operation::Put,
                name,
                |n| *n,
                |store| {
                    let meta = meta();
                    async move {
                        let info = match body {
                            Body::Bytes(b) => {
                                store.put(meta, &mut &b[..]).await.map_err(put_error)?
                            }
                            Body::File(p) => {
                                let mut f = tokio::fs::File::open(p).await.map_err(|e| {
                                    NatsError::fatal(format!("{}: {e}", p.display()), "LocalFile")
                                })?;
                                store.put(meta, &mut f).await.map_err(put_error)?
                            }
                        };
                        Ok(info.size as u64)
                    }
                },
            )
            .await?;
        Ok(size)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.run(
            Operation::Delete,
            name,
            |_| 0,
            |store| async move {
                match store.delete(name).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let e = NatsError::classify(&kind_name(e.kind()), &chain(&e));
                        if e.not_found {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }
                }
            },
        )
        .await?;
        Ok(())
    }
}

/// [`ReplicaClient::read_range_stream`] over one object read.
struct Streamed {
    obj: Object,
    left: u64,
    bytes: u64,
    name: String,
    bucket: String,
    _in_use: InUse,
}

impl Drop for Streamed {
    fn drop(&mut self) {
        metrics::record(KIND, Operation::Get, 0, self.bytes);
    }
}

#[async_trait]
impl RangeStream for Streamed {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        if self.left == 0 {
            return Ok(None);
        }
        let max = usize::try_from(max).unwrap_or(usize::MAX).clamp(1, 4 << 20);
        match read_piece(&mut self.obj, &mut self.left, max).await {
            Ok(p) => {
                self.bytes += p.len() as u64;
                Ok(Some(p))
            }
            Err(e) => {
                metrics::record_error(KIND, Operation::Get, e.code);
                Err(StorageError::Other(format!(
                    "nats bucket {:?}: {}: {}",
                    self.bucket, self.name, e.msg
                )))
            }
        }
    }
}

#[async_trait]
impl ReplicaClient for NatsReplica {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let version = {
            let c = self.cache();
            if let Some(levels) = &c.levels {
                return Ok(levels.get(&level).cloned().unwrap_or_default());
            }
            c.version
        };
        let levels = group_levels(&self.objects().await?);
        let files = levels.get(&level).cloned().unwrap_or_default();
        let mut c = self.cache();
        if c.version == version {
            c.levels = Some(levels);
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
        let name = object_name(level, min, max);
        let (data, _) = self
            .run(
                Operation::Get,
                &name,
                |b: &Bytes| b.len() as u64,
                |store| {
                    let name = name.clone();
                    async move {
                        let (mut obj, mut left) = open_at(&store, &name, offset, len).await?;
                        let mut out = BytesMut::with_capacity(left.min(64 << 20) as usize);
                        while left > 0 {
                            let p = read_piece(&mut obj, &mut left, 1 << 20).await?;
                            out.extend_from_slice(&p);
                        }
                        Ok(out.freeze())
                    }
                },
            )
            .await?;
        Ok(data)
    }

    async fn read_range_stream<'a>(
        &'a self,
        level: Level,
        min: TxId,
        max: TxId,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn RangeStream + 'a>> {
        let name = object_name(level, min, max);
        let ((obj, left), in_use) = self
            .run(
                Operation::Get,
                &name,
                |_| 0,
                |store| {
                    let name = name.clone();
                    async move { open_at(&store, &name, offset, Some(len)).await }
                },
            )
            .await?;
        Ok(Box::new(Streamed {
            obj,
            left,
            bytes: 0,
            name,
            bucket: self.settings().bucket.clone(),
            _in_use: in_use,
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
        let name = object_name(level, min, max);
        self.cache().version += 1;
        let r = self.put(&name, &body, created_at).await;
        let mut c = self.cache();
        let size = match r {
            Ok(size) => size,
            Err(e) => {
                c.levels = None;
                return Err(e);
            }
        };
        let info = LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at: parse_rfc3339(&timestamp_header(created_at)).unwrap_or(created_at),
        };
        if let Some(levels) = c.levels.as_mut() {
            let files = levels.entry(level).or_default();
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
            result = self
                .delete(&object_name(f.level, f.min_txid, f.max_txid))
                .await;
            if result.is_err() {
                break;
            }
        }
        let mut c = self.cache();
        if result.is_err() {
            c.levels = None;
        } else if let Some(levels) = c.levels.as_mut() {
            for f in files {
                if let Some(list) = levels.get_mut(&f.level) {
                    list.retain(|x| (x.min_txid, x.max_txid) != (f.min_txid, f.max_txid));
                }
            }
        }
        result
    }

    /// Deletes every object of the bucket, as Litestream does.
    async fn delete_all(&self) -> Result<()> {
        self.invalidate_cache();
        let mut result = Ok(());
        for o in self.objects().await? {
            result = self.delete(&o.name).await;
            if result.is_err() {
                break;
            }
        }
        self.invalidate_cache();
        result
    }

    fn invalidate_cache(&self) {
        let mut c = self.cache();
        c.version += 1;
        c.levels = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_timestamps() {
        assert_eq!(
            object_name(Level(9), TxId(1), TxId(0x2a)),
            "ltx/9/0000000000000001-000000000000002a.ltx"
        );
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(timestamp_header(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            timestamp_header(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }

    fn info(name: &str, stamp: Option<&str>) -> ObjectInfo {
        let headers = stamp.map(|s| {
            let mut h = HeaderMap::new();
            h.insert(HEADER_TIMESTAMP, s);
            h
        });
        ObjectInfo {
            name: name.to_owned(),
            description: None,
            metadata: HashMap::new(),
            headers,
            options: None,
            bucket: "b".into(),
            nuid: String::new(),
            size: 7,
            chunks: 1,
            modified: None,
            digest: None,
            deleted: false,
        }
    }

    #[test]
    fn grouping() {
        let a = "0000000000000001-0000000000000002.ltx";
        let b = "0000000000000003-0000000000000003.ltx";
        let levels = group_levels(&[
            info(&format!("ltx/0/{b}"), Some("2024-01-02T03:04:05.5Z")),
            info(&format!("ltx/0/{a}"), None),
            info(&format!("ltx/01/{a}"), None),
            info(&format!("ltx/1/x/{a}"), None),
            info(&format!("db/ltx/1/{a}"), None),
            info("ltx/2/notes.txt", None),
            info(&format!("ltx/9/{a}"), None),
        ]);
        let l0 = &levels[&Level(0)];
        assert_eq!(l0.len(), 2);
        assert_eq!((l0[0].min_txid, l0[1].min_txid), (TxId(1), TxId(3)));
        assert_eq!(l0[0].created_at, UNIX_EPOCH);
        assert_eq!(
            l0[1].created_at,
            UNIX_EPOCH + Duration::from_millis(1_704_164_645_500)
        );
        assert!(!levels.contains_key(&Level(1)) && !levels.contains_key(&Level(2)));
        assert_eq!(levels[&Level(9)].len(), 1);
    }
}
