//! Replica storage: one [`ReplicaClient`] trait, so the engine and restore never know which
//! backend they hold; plus [`local`], the local file I/O both use (io_uring with a
//! pread/pwrite fallback).
//!
//! Layers, bottom up (see `docs/storage.md`): [`transport`] is the HTTP client the object
//! stores share (pool, bodies, retries, errors, resumable ranged GET); [`backend::Backend`] is
//! the small trait a backend implements (list, ranged read, put, delete); [`replica::Replica`]
//! implements [`ReplicaClient`] once on top of any backend. Backends: [`file`], [`s3`] (also
//! `oss://`), [`gcs`], [`abs`], [`sftp`], [`webdav`] and [`nats`].

#![deny(missing_docs)]

pub mod abs;
pub mod age;
pub mod backend;
mod error;
pub mod file;
pub mod gcs;
pub mod gopath;
pub mod http;
pub mod local;
pub mod metrics;
pub mod nats;
pub mod replica;
mod replica_url;
pub mod s3;
pub mod secret;
pub mod sftp;
pub mod timefmt;
pub mod transport;
pub mod value;
pub mod webdav;
pub(crate) mod xml;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::{Level, TxId};

pub use replica_url::{open_replica, open_replica_from_config, ReplicaUrl};
pub use secret::{redact_setting, redact_url, Secret};

/// Backend keys of a replica entry that Litestream knows besides S3's ([`s3::settings::S3_KEYS`]): ABS,
/// SFTP, WebDAV and NATS.
const OTHER_BACKEND_KEYS: &[&str] = &[
    "account-name",
    "account-key",
    "sas-token",
    "host",
    "user",
    "password",
    "key-path",
    "host-key",
    "concurrent-writes",
    "webdav-url",
    "webdav-username",
    "webdav-password",
    "jwt",
    "seed",
    "creds",
    "nkey",
    "username",
    "token",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
];

/// Backend keys of a replica entry that Litestream knows (S3, ABS, SFTP, WebDAV, NATS, OSS), `path`
/// aside. Written at the top level of a config, they are defaults for every replica.
pub fn backend_keys() -> impl Iterator<Item = &'static str> {
    s3::settings::S3_KEYS
        .iter()
        .chain(OTHER_BACKEND_KEYS)
        .copied()
        .filter(|k| *k != "path")
}

/// Backend keys that a top-level value does NOT set for every replica: Litestream 0.5.17's
/// `ReplicaSettings.SetDefaults` leaves them out, so a top-level `part-size` or `webdav-url` is
/// parsed and ignored there, and must be here too.
pub const NOT_INHERITED_KEYS: &[&str] = &[
    "part-size",
    "concurrency",
    "host-key",
    "webdav-url",
    "webdav-username",
    "webdav-password",
];

/// Whether a top-level `key` is a default for every replica (see [`NOT_INHERITED_KEYS`]).
pub fn inherited_from_top_level(key: &str) -> bool {
    backend_keys().any(|k| k == key) && !NOT_INHERITED_KEYS.contains(&key)
}

/// One LTX file in a replica level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LtxFileInfo {
    /// Compaction level the file sits in.
    pub level: Level,
    /// First transaction ID the file covers.
    pub min_txid: TxId,
    /// Last transaction ID the file covers.
    pub max_txid: TxId,
    /// File size in bytes.
    pub size: u64,
    /// Creation time as the backend stores it (file mtime, object metadata), which Litestream
    /// sets from the LTX header timestamp.
    pub created_at: SystemTime,
}

impl LtxFileInfo {
    /// File name within its level: `<min>-<max>.ltx`.
    pub fn name(&self) -> String {
        ltx_codec::types::ltx_file_name(self.min_txid, self.max_txid)
    }

    /// Where the file sits under a replica's root: `ltx/<level>/<min>-<max>.ltx`.
    pub fn relative_path(&self) -> String {
        self.ltx_name().relative_path()
    }

    /// Which file this is.
    pub fn ltx_name(&self) -> LtxName {
        LtxName::new(self.level, self.min_txid, self.max_txid)
    }
}

/// Which LTX file of a replica: its level and TXID range. On a replica it is
/// `ltx/<level>/<min>-<max>.ltx` ([`LtxName::relative_path`]); shown as `<level>/<min>-<max>.ltx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LtxName {
    /// Compaction level the file sits in.
    pub level: Level,
    /// First transaction ID the file covers.
    pub min: TxId,
    /// Last transaction ID the file covers.
    pub max: TxId,
}

impl LtxName {
    /// The file of `level` covering `min..=max`.
    pub fn new(level: Level, min: TxId, max: TxId) -> LtxName {
        LtxName { level, min, max }
    }

    /// The L0 file of transaction `txid` (the engine writes one per sync).
    pub fn l0(txid: TxId) -> LtxName {
        LtxName::new(Level(0), txid, txid)
    }

    /// Where the file sits under a replica's root: `ltx/<level>/<min>-<max>.ltx`.
    pub fn relative_path(&self) -> String {
        ltx_relative_path(self.level, self.min, self.max)
    }
}

impl std::fmt::Display for LtxName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = ltx_codec::types::ltx_file_name(self.min, self.max);
        write!(f, "{}/{name}", self.level.0)
    }
}

/// Where an LTX file sits under a replica's root: `ltx/<level>/<min>-<max>.ltx`.
pub fn ltx_relative_path(level: Level, min: TxId, max: TxId) -> String {
    format!(
        "ltx/{}/{}",
        level.0,
        ltx_codec::types::ltx_file_name(min, max)
    )
}

/// What to upload: bytes in memory (small L0 files) or a local file streamed from disk
/// (snapshots and compactions, which must not be held in memory whole).
#[derive(Clone, Debug)]
pub enum Body {
    /// The whole file, already in memory.
    Bytes(Bytes),
    /// Path of a local file to stream from disk.
    File(PathBuf),
}

pub use error::{ErrorKind, Result, StorageError};

/// A replica: a place that holds LTX files by level. Implementations must be cheap to share
/// (`Arc`) and safe to call from many tasks at once.
#[async_trait]
pub trait ReplicaClient: Send + Sync + std::fmt::Debug {
    /// Backend name as Litestream reports it: "file", "s3", "gs", "abs", "sftp", "nats", "webdav".
    fn kind(&self) -> &'static str;

    /// Every LTX file at `level`, in name (MinTXID) order. An absent level is empty, not an
    /// error. Names that are not LTX file names are ignored.
    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>>;

    /// `len` bytes at `offset` of one file, or to its end with `None`. A range past the end is
    /// an error, not a short read.
    async fn read_range(&self, name: LtxName, offset: u64, len: Option<u64>) -> Result<Bytes>;

    /// `len` bytes at `offset` of one file, handed over piece by piece as they arrive, so a
    /// long range can be consumed in bounded memory. A range past the end is an error. The
    /// default makes one `read_range` per piece; the object stores stream one GET.
    async fn read_range_stream<'a>(&'a self, name: LtxName, offset: u64, len: u64) -> Ranged<'a> {
        let s =
            replica::Piecewise::new(offset, len, move |at, n| self.read_range(name, at, Some(n)))?;
        Ok(Box::new(s))
    }

    /// Stores a file atomically (a reader never sees a partial file) and records `created_at`
    /// as its creation time.
    async fn write_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo>;

    /// Stores a file only if no file of that name exists: of two writers racing for one
    /// name, exactly one succeeds and the other gets an error for which
    /// [`StorageError::is_already_exists`] holds. Backends that cannot promise it refuse
    /// (see [`ReplicaClient::supports_create_only`]).
    async fn create_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        let _ = (name, body, created_at);
        Err(StorageError::fatal(format!(
            "{}: create-only writes are not supported by this backend",
            self.kind()
        )))
    }

    /// Whether [`ReplicaClient::create_ltx`] is supported.
    fn supports_create_only(&self) -> bool {
        false
    }

    /// Deletes files; files already gone are not an error.
    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()>;

    /// Deletes every LTX file of the replica.
    async fn delete_all(&self) -> Result<()>;

    /// Forgets cached listings, for callers that expect files written by someone else (restore
    /// in follow mode). Backends that do not cache (`file`) ignore it.
    fn invalidate_cache(&self) {}

    /// Every object of Litestream 0.3.x's `generations/` tree beside the LTX levels
    /// (docs/replica-layout.md#legacy-generations-layout), named by its key below the
    /// replica's directory (`generations/<gen>/snapshots/...`). None is an empty list.
    async fn legacy_objects(&self) -> Result<Vec<backend::ObjectInfo>> {
        Err(legacy_unsupported(self.kind()))
    }

    /// Reads a whole object [`ReplicaClient::legacy_objects`] listed, piece by piece.
    async fn open_legacy<'a>(&'a self, name: &str) -> Ranged<'a> {
        let _ = name;
        Err(legacy_unsupported(self.kind()))
    }

    /// Stores an object of the 0.3.x tree. Nothing here writes that layout for a database;
    /// it is how a legacy replica is built on any backend (tests, migrations).
    async fn write_legacy(&self, name: &str, body: Body, created_at: SystemTime) -> Result<()> {
        let _ = (name, body, created_at);
        Err(legacy_unsupported(self.kind()))
    }
}

fn legacy_unsupported(kind: &str) -> StorageError {
    StorageError::fatal(format!(
        "{kind}: Litestream 0.3.x objects are not supported"
    ))
}

/// A replica client shared between tasks.
pub type SharedReplica = Arc<dyn ReplicaClient>;

/// What [`ReplicaClient::read_range_stream`] and [`ReplicaClient::open_legacy`] give: a ranged
/// read in progress, which may borrow the client, or why it could not begin.
pub type Ranged<'a> = Result<Box<dyn RangeStream + 'a>>;

/// A ranged read in progress (see [`ReplicaClient::read_range_stream`]).
#[async_trait]
pub trait RangeStream: Send {
    /// The next bytes of the range, at most `max` (> 0) of them, or `None` once all of it
    /// has been returned. A backend that reads on demand returns exactly `max` bytes (or what
    /// is left); one that streams returns what has arrived.
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn default_stream_reads_pieces_on_demand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = file::FileReplica::new(dir.path());
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        r.write_ltx(
            LtxName::l0(TxId(1)),
            Body::Bytes(Bytes::from(data.clone())),
            SystemTime::UNIX_EPOCH,
        )
        .await
        .expect("write");
        let mut s = r
            .read_range_stream(LtxName::l0(TxId(1)), 100, 850)
            .await
            .expect("stream");
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        for max in [300u64, 1, 1000, 1000] {
            match s.next_piece(max).await.expect("piece") {
                Some(p) => {
                    sizes.push(p.len());
                    got.extend_from_slice(&p);
                }
                None => sizes.push(0),
            }
        }
        assert_eq!(sizes, vec![300, 1, 549, 0]);
        assert_eq!(got[..], data[100..950]);
        let mut past = r
            .read_range_stream(LtxName::l0(TxId(1)), 900, 200)
            .await
            .expect("stream");
        assert!(past.next_piece(1000).await.is_err());
    }
}
