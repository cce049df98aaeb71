//! The output path of a restore: Litestream's rules for an existing output, checked once before
//! any work ([`prepare_output`]), and the publishing of the finished `<out>.tmp` there, which
//! never destroys a database or sidecar that appeared after that check (a restore can take
//! minutes, and an application may create its database meanwhile).
//!
//! File modes (see docs/restore.md#file-modes): the temporary file is created 0600; the
//! published database keeps the mode and owner of the output it replaces, else takes the
//! source's mode where the restore knows it (the replica's files, for a file replica), else
//! stays 0600.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use storage::local;

use crate::{RestoreError, Result};

/// SQLite's files next to a database: a stale one would be replayed into (or confuse readers
/// of) a freshly restored database.
pub const SIDECARS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The mode of a restored database when nothing better is known.
pub const DEFAULT_MODE: u32 = 0o600;

/// `path` with `suffix` appended to its last component (e.g. `db` and `-wal` give `db-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Mode bits and owner of a file the restore replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// An output path that passed [`prepare_output`]. Restores take one by value, so that no
/// restore can write an output whose path was not checked; publishing goes through it.
#[derive(Clone, Debug)]
pub struct PreparedOutput {
    path: PathBuf,
    force: bool,
    /// Without `-force`: (dev, ino) of the empty file found at the check, which publishing
    /// may replace only if it is still that file and still empty.
    empty: Option<(u64, u64)>,
    /// The file found at the check (replaced with `-force`, or empty): its mode and owner
    /// carry over to the restored database.
    existing: Option<Owner>,
    source_mode: Option<u32>,
}

/// Litestream's `prepareOutputPath`: a non-empty output or any SQLite sidecar is an error
/// unless `force`. Nothing is removed here: the old files go only when the new database is
/// published, so that a failed `-force` restore leaves the old database in place.
pub fn prepare_output(path: &Path, force: bool) -> Result<PreparedOutput> {
    let meta = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(RestoreError::Output(format!(
                "cannot access output path: {}: {e}",
                path.display()
            )))
        }
    };
    let mut out = PreparedOutput {
        path: path.to_owned(),
        force,
        empty: None,
        existing: None,
        source_mode: None,
    };
    if let Some(meta) = meta {
        if meta.is_dir() {
            return Err(RestoreError::Output(format!(
                "cannot restore, output path is a directory: {}",
                path.display()
            )));
        }
        if meta.len() > 0 && !force {
            return Err(RestoreError::Output(format!(
                "cannot restore, output path already exists and is not empty: {}. Use -force to overwrite",
                path.display()
            )));
        }
        out.existing = Some(Owner {
            mode: meta.permissions().mode() & 0o777,
            uid: meta.uid(),
            gid: meta.gid(),
        });
        if !force {
            let link = fs::symlink_metadata(path).map_err(|e| RestoreError::io(path, e))?;
            out.empty = Some((link.dev(), link.ino()));
        }
    }
    // Unlike Litestream, sidecars are checked even when the output is absent: a stale -wal
    // next to a freshly restored database would be replayed into it by SQLite.
    if !force {
        if let Some(p) = existing_sidecar(path)? {
            return Err(RestoreError::Output(format!(
                "cannot restore, SQLite sidecar path already exists: {}. Use -force to overwrite",
                p.display()
            )));
        }
    }
    Ok(out)
}

/// The first of `path`'s sidecars that exists (as anything, a dangling link included).
fn existing_sidecar(path: &Path) -> Result<Option<PathBuf>> {
    for s in SIDECARS {
        let p = with_suffix(path, s);
        match fs::symlink_metadata(&p) {
            Ok(_) => return Ok(Some(p)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RestoreError::Output(format!(
                    "cannot access SQLite sidecar path: {}: {e}",
                    p.display()
                )))
            }
        }
    }
    Ok(None)
}

impl PreparedOutput {
    /// The checked output path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode of the database being restored, where the caller knows it (permission bits
    /// only). Used when there is no existing output to take the mode from.
    pub fn with_source_mode(mut self, mode: Option<u32>) -> Self {
        self.source_mode = mode.map(|m| m & 0o666);
        self
    }

    /// The permission bits the published database gets.
    pub fn mode(&self) -> u32 {
        match (self.existing, self.source_mode) {
            (Some(o), _) => o.mode,
            (None, Some(m)) => m,
            (None, None) => DEFAULT_MODE,
        }
    }

    /// Gives the finished temporary file its final mode and owner, then moves it to the
    /// output path: with `-force`, after removing the sidecars, replacing the output; without,
    /// only if nothing appeared at the output path or beside it since the check.
    pub(crate) fn publish(&self, file: &File, tmp: &Path) -> Result<()> {
        pause_before_publish_hook();
        let io = |e| RestoreError::io(tmp, e);
        file.set_permissions(fs::Permissions::from_mode(self.mode()))
            .map_err(io)?;
        if let Some(o) = self.existing {
            let m = file.metadata().map_err(io)?;
            if (m.uid(), m.gid()) != (o.uid, o.gid) {
                std::os::unix::fs::fchown(file, Some(o.uid), Some(o.gid)).map_err(|e| {
                    RestoreError::Output(format!(
                        "cannot give {} the owner {}:{} of the output it replaces: {e}",
                        tmp.display(),
                        o.uid,
                        o.gid
                    ))
                })?;
            }
        }
        local::fsync(file).map_err(io)?;
        if self.force {
            for s in SIDECARS {
                remove_if_present(&with_suffix(&self.path, s))?;
            }
            fs::rename(tmp, &self.path).map_err(|e| RestoreError::io(&self.path, e))?;
        } else {
            if let Some(p) = existing_sidecar(&self.path)? {
                return Err(RestoreError::Output(format!(
                    "cannot publish the restored database: SQLite sidecar {} appeared during the restore; nothing was replaced",
                    p.display()
                )));
            }
            if let Some(id) = self.empty {
                self.remove_if_still_empty(id)?;
            }
            rename_noreplace(tmp, &self.path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    RestoreError::Output(format!(
                        "cannot publish the restored database: {} appeared during the restore; it was left as it is. Use -force to overwrite",
                        self.path.display()
                    ))
                } else {
                    RestoreError::io(&self.path, e)
                }
            })?;
        }
        let dir = parent_dir(&self.path);
        local::fsync_dir(&dir).map_err(|e| RestoreError::io(&dir, e))
    }

    /// Removes the empty output found at the check, unless it was replaced or written since.
    fn remove_if_still_empty(&self, (dev, ino): (u64, u64)) -> Result<()> {
        let changed = || {
            RestoreError::Output(format!(
                "cannot publish the restored database: {} changed during the restore; it was left as it is. Use -force to overwrite",
                self.path.display()
            ))
        };
        let link = match fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RestoreError::io(&self.path, e)),
        };
        if (link.dev(), link.ino()) != (dev, ino) {
            return Err(changed());
        }
        let len = fs::metadata(&self.path)
            .map_err(|e| RestoreError::io(&self.path, e))?
            .len();
        if len != 0 {
            return Err(changed());
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RestoreError::io(&self.path, e)),
        }
    }
}

/// The mode of the database a file replica at `root` holds, as far as its files tell: writers
/// (Litestream and `ls-engine`) create them with the database's mode (minus umask). `info` is
/// the newest file a restore reads.
pub fn file_replica_mode(root: &Path, info: &storage::LtxFileInfo) -> Option<u32> {
    let f = storage::file::FileReplica::new(root);
    local::file_mode_like(&f.ltx_path(info.level, info.min_txid, info.max_txid))
}

/// Removes `path` if it exists (a file, or a link, which is removed, not followed).
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RestoreError::io(path, e)),
    }
}

/// Creates a working file of ours (`<out>.tmp`, `<out>.tmp-wal`, a follow spool) for reading
/// and writing: whatever is at the name, a stale file or a link planted there, is unlinked,
/// never opened, and the new file is created exclusively, without following links, readable
/// by the owner only (its final mode, if any, is set when it is published).
pub fn create_private(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    remove_if_present(path)?;
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RestoreError::io(path, e))
}

/// The directory holding `path`, `.` for a bare file name.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Renames `from` to `to` only if `to` does not exist, atomically: `renameat2` with
/// `RENAME_NOREPLACE`, or where the file system does not support it, a hard link (which
/// fails on an existing name too) followed by removing `from`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cstring(from)?, cstring(to)?);
    // SAFETY: both arguments are NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(e);
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

/// Test hook: with `LS_TEST_PAUSE_BEFORE_PUBLISH=<flag>` set, a restore about to publish
/// creates `<flag>.waiting` and waits (up to two minutes) until `<flag>` exists, so that a
/// test can create files at the output path in between.
fn pause_before_publish_hook() {
    let Some(flag) = std::env::var_os("LS_TEST_PAUSE_BEFORE_PUBLISH") else {
        return;
    };
    let flag = PathBuf::from(flag);
    let _ = fs::write(with_suffix(&flag, ".waiting"), b"");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !flag.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noreplace_keeps_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"new").expect("a");
        fs::write(&b, b"old").expect("b");
        let e = rename_noreplace(&a, &b).expect_err("b exists");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).expect("b"), b"old");
        fs::remove_file(&b).expect("rm");
        rename_noreplace(&a, &b).expect("rename");
        assert_eq!(fs::read(&b).expect("b"), b"new");
        assert!(!a.exists());
    }
}
