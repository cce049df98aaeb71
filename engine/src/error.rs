//! Engine errors. Each says what was being done, so a log line is enough to act on.

use std::path::PathBuf;

/// An engine error: a failed SQLite, file, LTX or replica operation, or a replication conflict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A SQLite call failed.
    #[error("{what}: {source}")]
    Sqlite {
        /// What was being done.
        what: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The operation (`stat`, `open WAL`, ...).
        what: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding an LTX file failed.
    #[error("{what}: {source}")]
    Ltx {
        /// What was being done, naming the file.
        what: String,
        /// The LTX codec's error.
        #[source]
        source: ltx_codec::Error,
    },
    /// A replica (storage backend) operation failed.
    #[error("replica: {0}")]
    Storage(#[from] storage::StorageError),
    /// Verify could not decide how the next L0 file continues (docs/wal.md#verify).
    #[error("verify: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    /// The replica holds a file at a TXID of ours that this database did not write: another
    /// engine replicates to it, or it moved on past our own chain while we were stopped.
    #[error(
        "replica conflict for database {}: the replica's file {file} (TXID {replica}) was \
         written by another writer, this database is at TXID {local}; stopped replicating it \
         to this replica (see \"one writer per replica\" in the README)",
        db.display()
    )]
    Conflict {
        /// The database path.
        db: PathBuf,
        /// The other writer's file, as its path under the replica.
        file: String,
        /// This database's position: its highest local L0 TXID.
        local: ltx_codec::TxId,
        /// The max TXID of that file.
        replica: ltx_codec::TxId,
    },
    /// A local L0 file that is missing or does not decode: the local state is damaged, and
    /// `auto-recover` resets it (docs/wal.md#auto-recover).
    #[error("local L0 file {}: {reason}", path.display())]
    LocalL0 {
        /// The local L0 file.
        path: PathBuf,
        /// What is wrong with it: `<what>: missing` or `corrupt: <error>`.
        reason: String,
    },
    /// Any other failure, as its message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An [`Error::Io`] for `what` on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Sqlite`] for `what`.
    pub fn sqlite(what: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            what: what.into(),
            source,
        }
    }

    /// An I/O error on local L0 file `path`: [`Error::LocalL0`] when the file is missing.
    pub fn local_l0_io(what: &'static str, path: &std::path::Path, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Error::LocalL0 {
                path: path.to_owned(),
                reason: format!("{what}: missing"),
            };
        }
        Error::io(what, path, e)
    }

    /// Local L0 file `path` does not decode.
    pub fn local_l0_corrupt(path: &std::path::Path, e: ltx_codec::Error) -> Self {
        Error::LocalL0 {
            path: path.to_owned(),
            reason: format!("corrupt: {e}"),
        }
    }

    /// An [`Error::Ltx`] for `what`.
    pub fn ltx(what: impl Into<String>, source: ltx_codec::Error) -> Self {
        Error::Ltx {
            what: what.into(),
            source,
        }
    }

    /// The disk (or quota) is full somewhere in the chain: ENOSPC/EDQUOT, SQLITE_FULL, or an
    /// error that only says so in words (Litestream's `isDiskFullError`).
    pub fn is_disk_full(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) {
                    return true;
                }
            }
            if let Some(s) = e.downcast_ref::<rusqlite::Error>() {
                if s.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                    return true;
                }
            }
            cur = e.source();
        }
        let text = self.to_string().to_ascii_lowercase();
        [
            "no space left on device",
            "disk quota exceeded",
            "database or disk is full",
        ]
        .iter()
        .any(|w| text.contains(w))
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

/// A result whose error is an engine [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_found_in_the_chain() {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(Error::io("write L0", "/m/x.ltx", enospc).is_disk_full());
        let edquot = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(Error::io("write L0", "/m/x.ltx", edquot).is_disk_full());
        let other = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(!Error::io("write L0", "/m/x.ltx", other).is_disk_full());
        assert!(Error::Other("sync: no space left on device".into()).is_disk_full());
        assert!(!Error::Other("database is locked".into()).is_disk_full());
    }
}
