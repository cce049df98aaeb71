//! `-integrity-check quick|full`: SQLite's own checks on the restored file before it is
//! published.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{IntegrityCheck, RestoreError, Result};

/// Runs `mode`'s pragma on the database at `path`, read-only, and fails unless SQLite reports
/// `ok` (nothing is run for [`IntegrityCheck::None`]).
pub fn check(path: &Path, mode: IntegrityCheck) -> Result<()> {
    let pragma = match mode {
        IntegrityCheck::None => return Ok(()),
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let fail = |e: rusqlite::Error| RestoreError::Integrity(e.to_string());
    // Read-only: the check must not change a byte of what is about to be published.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    let rows: Vec<String> = {
        let mut stmt = conn.prepare(pragma).map_err(fail)?;
        let it = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(fail)?;
        it.collect::<std::result::Result<_, _>>().map_err(fail)?
    };
    drop(conn);
    // A read-only connection to a WAL-mode database still creates -shm (and an empty -wal);
    // they must not travel with the published file.
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RestoreError::io(p, e)),
        }
    }
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(RestoreError::Integrity(format!(
            "integrity check failed: {}",
            rows.join("; ")
        )))
    }
}
