//! Descriptors of files SQLite locks (a database and its `-shm` wal-index), shared by the whole
//! process (docs/checkpoints.md#never-close-the-wal-index).
//!
//! SQLite takes its locks as POSIX record locks, which belong to the process and the file: the
//! kernel drops every one of them when the process closes *any* descriptor of that file. So code
//! beside SQLite must not open such a file, read it and close it while a connection of ours holds
//! a lock on it. Each file is opened once here and handed out as an [`Arc`]; it is closed only when
//! the last holder lets go (the follower and whatever outlives it a moment, such as a snapshot
//! that is still reading or the thread that cuts the WAL), and a follower that reopens the
//! database gets the descriptor that is still open instead of a second one.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

/// A file by device and inode: two paths to one file share a descriptor.
type Key = (u64, u64);

fn open_files() -> &'static Mutex<HashMap<Key, Weak<File>>> {
    static FILES: std::sync::OnceLock<Mutex<HashMap<Key, Weak<File>>>> = std::sync::OnceLock::new();
    FILES.get_or_init(Mutex::default)
}

/// The process's read-only descriptor of the file at `path`, opened if no holder has one.
pub fn open(path: &Path) -> io::Result<Arc<File>> {
    let meta = std::fs::metadata(path)?;
    let key = (meta.dev(), meta.ino());
    let mut files = open_files().lock().unwrap_or_else(|p| p.into_inner());
    files.retain(|_, f| f.strong_count() > 0);
    if let Some(f) = files.get(&key).and_then(Weak::upgrade) {
        return Ok(f);
    }
    let file = Arc::new(File::open(path)?);
    let got = file.metadata()?;
    let got = (got.dev(), got.ino());
    if got != key {
        if let Some(f) = files.get(&got).and_then(Weak::upgrade) {
            // The path was replaced between the two looks by a file we already hold: closing
            // the descriptor just opened would drop our locks on it, so it is kept open.
            std::mem::forget(file);
            return Ok(f);
        }
    }
    files.insert(got, Arc::downgrade(&file));
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_descriptor_per_file_while_held() {
        let dir = tempfile::tempdir().expect("test setup");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").expect("test setup");
        std::fs::write(&b, b"b").expect("test setup");
        std::fs::hard_link(&a, dir.path().join("a2")).expect("test setup");
        let first = open(&a).expect("open");
        assert!(Arc::ptr_eq(&first, &open(&a).expect("open")));
        assert!(Arc::ptr_eq(
            &first,
            &open(&dir.path().join("a2")).expect("open")
        ));
        assert!(!Arc::ptr_eq(&first, &open(&b).expect("open")));
        drop(first);
        // Once nobody holds it, it is closed and opened afresh.
        let again = open(&a).expect("open");
        assert_eq!(Arc::strong_count(&again), 1);
    }
}
