//! Engine errors. Each says what was being done, so a log line is enough to act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Sqlite {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Ltx {
        what: String,
        #[source]
        source: ltx_codec::Error,
    },
    #[error("replica: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("verify: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn sqlite(what: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            what: what.into(),
            source,
        }
    }

    pub fn ltx(what: impl Into<String>, source: ltx_codec::Error) -> Self {
        Error::Ltx {
            what: what.into(),
            source,
        }
    }

    /// SQLITE_BUSY / SQLITE_LOCKED: another connection holds a lock; retry later.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
