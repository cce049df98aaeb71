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
    /// The replica holds a file at a TXID of ours that this database did not write: another
    /// engine replicates to it, or it moved on past our own chain while we were stopped.
    #[error(
        "replica conflict for database {}: the replica's file {file} (TXID {replica}) was \
         written by another writer, this database is at TXID {local}; stopped replicating it \
         to this replica (see \"one writer per replica\" in the README)",
        db.display()
    )]
    Conflict {
        db: PathBuf,
        file: String,
        local: ltx_codec::TxId,
        replica: ltx_codec::TxId,
    },
    /// A local L0 file that is missing or does not decode: the local state is damaged, and
    /// `auto-recover` resets it (docs/wal.md#auto-recover).
    #[error("local L0 file {}: {reason}", path.display())]
    LocalL0 { path: PathBuf, reason: String },
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
