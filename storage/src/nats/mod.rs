//! NATS JetStream object store replicas (`nats://[user:pass@]host[:port]/bucket`, or a
//! `type: nats` entry with `bucket` and the NATS keys): Litestream 0.5.17's layout, objects
//! named `ltx/<level>/<min>-<max>.ltx` at the root of the bucket, each with a
//! `Litestream-Timestamp` header (RFC 3339, milliseconds, UTC) holding its creation time.
//! The bucket must exist: like Litestream, the replica never creates it.
//!
//! The connection is made on first use and closed after [`IDLE_CLOSE`] without use, before
//! the client's first PING ([`PING_INTERVAL`]), so an idle replica sends nothing. Listings read
//! the metadata of the whole bucket at once (one ordered consumer), which the generic
//! [`Replica`] caches for every level. The object store has no ranged GET: a read at an offset
//! streams the object from its start and drops what comes before the offset. Nor has it a
//! conditional put, so create-only writes are refused.

mod conn;
mod settings;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::object_store::{Object, ObjectInfo, ObjectMetadata, ObjectStore};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use ltx_codec::{Level, TxId};
use tokio::io::AsyncReadExt;

use crate::backend::{self, Backend, Layout, Listed, Page, Purge, Span, Upload};
use crate::replica::Replica;
use crate::timefmt::{format_rfc3339_nano, parse_rfc3339};
use crate::{Body, RangeStream, Result, SharedReplica, StorageError};
use conn::{chain, kind_name, Conn, InUse, NatsError};

pub use crate::transport::RetryPolicy;
pub use conn::{IDLE_CLOSE, PING_INTERVAL};
pub use settings::{NatsSettings, DEFAULT_SERVER};

const KIND: &str = "nats";

/// The object header Litestream keeps the creation time in.
pub const HEADER_TIMESTAMP: &str = "Litestream-Timestamp";

/// A `nats` replica.
pub type NatsReplica = Replica<NatsBackend>;

/// Opens the replica. Must not block or touch the network: the connection is made on first use.
pub fn open(s: NatsSettings) -> Result<SharedReplica> {
    Ok(std::sync::Arc::new(NatsReplica::new(s)))
}

/// The object name of an LTX file: `ltx/<level>/<min>-<max>.ltx`.
pub fn object_name(level: Level, min: TxId, max: TxId) -> String {
    crate::ltx_relative_path(level, min, max)
}

/// A JetStream object store bucket: the `nats` [`Backend`].
pub struct NatsBackend {
    conn: Conn,
    retry: RetryPolicy,
    layout: Layout,
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
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
async fn open_at(store: &ObjectStore, name: &str, span: Span) -> Result<(Object, u64), NatsError> {
    let Span { offset, len } = span;
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

impl Replica<NatsBackend> {
    /// A replica with the default retry policy and idle close; it connects on first use.
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
        Replica::from_backend(NatsBackend {
            conn: Conn::new(settings, idle_close),
            retry,
            layout: Layout::decimal("ltx/").with_base(""),
        })
    }

    /// The settings the replica was made from.
    pub fn settings(&self) -> &NatsSettings {
        self.backend().conn.settings()
    }

    /// Connections made so far (each first use after an idle close makes one).
    pub fn connects(&self) -> usize {
        self.backend().conn.connects()
    }

    /// Whether the replica holds an open connection now.
    pub async fn is_connected(&self) -> bool {
        self.backend().conn.is_open().await
    }
}

impl NatsBackend {
    fn error(&self, key: &str, e: NatsError) -> StorageError {
        let bucket = &self.conn.settings().bucket;
        if e.not_found {
            return StorageError::not_found(format!("nats bucket {bucket:?}: {key}"))
                .with_code(e.code);
        }
        StorageError::new(
            e.kind(),
            format!("nats bucket {bucket:?}: {key}: {}", e.msg),
        )
        .with_code(e.code)
    }

    /// Runs `f` on the bucket, trying again after transient errors with backoff (on a fresh
    /// connection when the last one is gone). Errors name `key`.
    async fn run<T, F, Fut>(&self, key: &str, f: F) -> Result<(T, InUse)>
    where
        F: Fn(ObjectStore) -> Fut,
        Fut: Future<Output = Result<T, NatsError>>,
    {
        let f = &f;
        let first = AtomicBool::new(true);
        let first = &first;
        let r = self
            .retry
            .run(KIND, key, || async move {
                if !first.swap(false, Ordering::Relaxed) {
                    self.conn.reset_if_disconnected().await;
                }
                let (store, in_use) = self.conn.store().await?;
                f(store).await.map(|v| (v, in_use))
            })
            .await;
        r.map_err(|e| self.error(key, e))
    }
}

/// [`ReplicaClient::read_range_stream`](crate::ReplicaClient::read_range_stream) over one
/// object read.
struct Streamed {
    obj: Object,
    left: u64,
    name: String,
    bucket: String,
    _in_use: InUse,
}

#[async_trait]
impl RangeStream for Streamed {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        if self.left == 0 {
            return Ok(None);
        }
        let max = usize::try_from(max).unwrap_or(usize::MAX).clamp(1, 4 << 20);
        read_piece(&mut self.obj, &mut self.left, max)
            .await
            .map(Some)
            .map_err(|e| {
                let msg = format!("nats bucket {:?}: {}: {}", self.bucket, self.name, e.msg);
                StorageError::new(e.kind(), msg).with_code(e.code)
            })
    }
}

#[async_trait]
impl Backend for NatsBackend {
    /// One listing of the bucket covers every level.
    const WHOLE_LISTING: bool = true;
    const KIND: &'static str = KIND;

    fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every object of the bucket whose name starts with `prefix` (one ordered consumer
    /// reads the metadata of the whole bucket).
    async fn list_page(&self, prefix: &str, _token: Option<String>) -> Result<Page> {
        let (objects, _) = self
            .run("list", |store| async move { list_objects(&store).await })
            .await?;
        let entries = objects
            .iter()
            .filter(|o| o.name.starts_with(prefix))
            .map(|o| Listed {
                key: o.name.clone(),
                size: o.size as u64,
                created_at: Some(created_at(o)),
            })
            .collect();
        Ok(Page {
            entries,
            next: None,
        })
    }

    /// The whole range in one try, retried as a whole.
    async fn read(&self, key: &str, span: Span) -> Result<Bytes> {
        let (data, _) = self
            .run(key, |store| async move {
                let (mut obj, mut left) = open_at(&store, key, span).await?;
                let mut out = BytesMut::with_capacity(left.min(64 << 20) as usize);
                while left > 0 {
                    let p = read_piece(&mut obj, &mut left, 1 << 20).await?;
                    out.extend_from_slice(&p);
                }
                Ok(out.freeze())
            })
            .await?;
        Ok(data)
    }

    async fn open_range<'a>(&'a self, key: &str, span: Span) -> Result<backend::Stream<'a>> {
        let ((obj, left), in_use) = self
            .run(key, |store| async move { open_at(&store, key, span).await })
            .await?;
        Ok(Box::new(Streamed {
            obj,
            left,
            name: key.to_owned(),
            bucket: self.conn.settings().bucket.clone(),
            _in_use: in_use,
        }))
    }

    /// Stores the object with its creation time to the millisecond, as Litestream writes it.
    async fn put(&self, key: &str, up: Upload<'_>) -> Result<SystemTime> {
        let (body, created_at) = (up.body, up.created_at);
        let stamp = timestamp_header(created_at);
        let meta = || {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER_TIMESTAMP, stamp.as_str());
            ObjectMetadata {
                name: key.to_owned(),
                headers: Some(headers),
                ..Default::default()
            }
        };
        let put_error = |e: async_nats::jetstream::object_store::PutError| {
            NatsError::classify(&kind_name(e.kind()), &chain(&e))
        };
        self.run(key, |store| {
            let meta = meta();
            async move {
                match body {
                    Body::Bytes(b) => store.put(meta, &mut &b[..]).await.map_err(put_error)?,
                    Body::File(p) => {
                        let mut f = tokio::fs::File::open(p).await.map_err(|e| {
                            NatsError::fatal(format!("{}: {e}", p.display()), "LocalFile")
                        })?;
                        store.put(meta, &mut f).await.map_err(put_error)?
                    }
                };
                Ok(())
            }
        })
        .await?;
        Ok(parse_rfc3339(&stamp).unwrap_or(created_at))
    }

    /// One object; one already gone is not an error. (The object store has no conditional
    /// put, so `CREATE_ONLY` stays false: its metadata goes through a rollup publish the
    /// client does not let us condition.)
    async fn delete(&self, key: &str) -> Result<bool> {
        self.run(key, |store| async move {
            match store.delete(key).await {
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
        })
        .await?;
        Ok(true)
    }

    /// Every object of the bucket, as Litestream deletes them.
    fn purge(&self) -> Purge {
        Purge::Prefix(String::new())
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
}
