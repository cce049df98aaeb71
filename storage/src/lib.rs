//! Replica storage: one [`ReplicaClient`] trait that every backend implements, so the engine and
//! restore never know which backend they hold; plus [`local`], the local file I/O both use
//! (io_uring with a pread/pwrite fallback). Backends: [`file`] and [`s3`] (also `oss://`).

pub mod file;
pub mod local;
pub mod metrics;
mod replica_url;
pub mod s3;
pub mod timefmt;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::{Level, TxId};

pub use replica_url::{open_replica, open_replica_from_config, ReplicaUrl};

/// One LTX file in a replica level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LtxFileInfo {
    pub level: Level,
    pub min_txid: TxId,
    pub max_txid: TxId,
    pub size: u64,
    /// Creation time as the backend stores it (file mtime, object metadata), which Litestream
    /// sets from the LTX header timestamp.
    pub created_at: SystemTime,
}

impl LtxFileInfo {
    pub fn name(&self) -> String {
        ltx_codec::types::ltx_file_name(self.min_txid, self.max_txid)
    }
}

/// What to upload: bytes in memory (small L0 files) or a local file streamed from disk
/// (snapshots and compactions, which must not be held in memory whole).
#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Bytes),
    File(PathBuf),
}

/// Errors from a replica backend. Every variant names the object it is about.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid replica URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{0}")]
    Other(String),
}

impl StorageError {
    pub fn io(key: impl Into<String>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound { key: key.into() }
        } else {
            StorageError::Io {
                key: key.into(),
                source,
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

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
    async fn read_range(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes>;

    /// Stores a file atomically (a reader never sees a partial file) and records `created_at`
    /// as its creation time.
    async fn write_ltx(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo>;

    /// Deletes files; files already gone are not an error.
    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()>;

    /// Deletes every LTX file of the replica.
    async fn delete_all(&self) -> Result<()>;

    /// Forgets cached listings, for callers that expect files written by someone else (restore
    /// in follow mode). Backends that do not cache (`file`) ignore it.
    fn invalidate_cache(&self) {}
}

pub type SharedReplica = Arc<dyn ReplicaClient>;
