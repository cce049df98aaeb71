use std::path::PathBuf;

use ltx_codec::TxId;

/// Every way a restore can fail. Messages name the replica file (as `<level>/<name>`) and, for
/// bad bytes, the offset in that file, so an operator can find the damage.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No plan reaches the target. The text is Litestream's, which scripts grep for.
    #[error("no matching backup files available")]
    TxNotAvailable,
    /// The listed LTX files leave a gap in the TXID chain, so no plan can be built.
    #[error("cannot calc restore plan: non-contiguous ltx files: have up to {have} but next file starts at {next}")]
    NonContiguous {
        /// The last TXID the files chained so far reach.
        have: TxId,
        /// The first TXID of the file that should have continued the chain.
        next: TxId,
    },
    /// An LTX file that the codec could not read or decode.
    #[error("{file}: {source}")]
    Ltx {
        /// The replica file, as `<level>/<name>`.
        file: String,
        /// The codec's error.
        #[source]
        source: ltx_codec::Error,
    },
    /// Bad bytes in a replica file, at a known offset.
    #[error("{file}: at offset {offset}: {reason}")]
    Corrupt {
        /// The replica file, as `<level>/<name>`.
        file: String,
        /// Byte offset in that file where the damage was found.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A file's contents do not match the checksum stored in its trailer.
    #[error(
        "{file}: file checksum mismatch: trailer says {stored:016x}, contents give {computed:016x}"
    )]
    Checksum {
        /// The replica file, as `<level>/<name>`.
        file: String,
        /// The checksum recorded in the file's trailer.
        stored: u64,
        /// The checksum computed from the file's contents.
        computed: u64,
    },
    /// The planned files do not form a restorable chain (or a restore task failed).
    #[error("invalid restore plan: {0}")]
    Plan(String),
    /// Listing or reading the replica storage failed.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The local path being accessed.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The output path cannot be used or written, or a result cannot be reported.
    #[error("{0}")]
    Output(String),
    /// The post-restore SQLite integrity check failed or could not run.
    #[error("post-restore integrity check: {0}")]
    Integrity(String),
    /// A configuration problem: a path that does not expand, a database missing from the
    /// config, or an age-encrypted file with no identity given.
    #[error("config: {0}")]
    Config(String),
    /// The config file, as the shared reader reports it (naming the key or the file).
    #[error(transparent)]
    ConfigFile(#[from] ls_config::ConfigError),
    /// A restore from a Litestream v0.3.x replica failed.
    #[error("v0.3.x restore: {0}")]
    V3(String),
    /// Bad command-line usage.
    #[error("{0}")]
    Usage(String),
}

impl RestoreError {
    /// An [`RestoreError::Io`] error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RestoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`RestoreError::Corrupt`] error for `file` at `offset`.
    pub fn corrupt(file: &str, offset: u64, reason: impl Into<String>) -> Self {
        RestoreError::Corrupt {
            file: file.to_owned(),
            offset,
            reason: reason.into(),
        }
    }

    /// A [`RestoreError::Ltx`] error for `file`.
    pub fn ltx(file: &str, source: ltx_codec::Error) -> Self {
        RestoreError::Ltx {
            file: file.to_owned(),
            source,
        }
    }
}

/// A result whose error defaults to [`RestoreError`].
pub type Result<T, E = RestoreError> = std::result::Result<T, E>;
