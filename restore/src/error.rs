use std::path::PathBuf;

use ltx_codec::TxId;

/// Every way a restore can fail. Messages name the replica file (as `<level>/<name>`) and, for
/// bad bytes, the offset in that file, so an operator can find the damage.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No plan reaches the target. The text is Litestream's, which scripts grep for.
    #[error("no matching backup files available")]
    TxNotAvailable,
    #[error("cannot calc restore plan: non-contiguous ltx files: have up to {have} but next file starts at {next}")]
    NonContiguous { have: TxId, next: TxId },
    #[error("{file}: {source}")]
    Ltx {
        file: String,
        #[source]
        source: ltx_codec::Error,
    },
    #[error("{file}: at offset {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "{file}: file checksum mismatch: trailer says {stored:016x}, contents give {computed:016x}"
    )]
    Checksum {
        file: String,
        stored: u64,
        computed: u64,
    },
    #[error("invalid restore plan: {0}")]
    Plan(String),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Output(String),
    #[error("post-restore integrity check: {0}")]
    Integrity(String),
    #[error("config: {0}")]
    Config(String),
    /// The config file, as the shared reader reports it (naming the key or the file).
    #[error(transparent)]
    ConfigFile(#[from] ls_config::ConfigError),
    #[error("v0.3.x restore: {0}")]
    V3(String),
    #[error("{0}")]
    Usage(String),
}

impl RestoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RestoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(file: &str, offset: u64, reason: impl Into<String>) -> Self {
        RestoreError::Corrupt {
            file: file.to_owned(),
            offset,
            reason: reason.into(),
        }
    }

    pub fn ltx(file: &str, source: ltx_codec::Error) -> Self {
        RestoreError::Ltx {
            file: file.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = RestoreError> = std::result::Result<T, E>;
