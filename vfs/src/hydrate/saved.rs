//! The record of a hydration copy, `<copy>-frames`: which replica it is of, its page size and
//! which frame each of its pages holds, so that the next process resumes the copy instead of
//! fetching it all again (docs/vfs.md#hydration).
//!
//! It is only ever true: it is removed before the copy changes and written again (to a
//! temporary name, synced, renamed) only after the copy's new pages are on disk. A copy
//! without a record, or with one that does not match it, is started over.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::FrameKey;

const MAGIC: &[u8; 8] = b"LSVFSHY1";

fn path_of(copy: &Path) -> PathBuf {
    let mut p = copy.as_os_str().to_owned();
    p.push("-frames");
    PathBuf::from(p)
}

/// Whether the copy has a record.
pub fn exists(copy: &Path) -> bool {
    path_of(copy).exists()
}

/// Removes the record, if any.
pub fn remove(copy: &Path) {
    let _ = std::fs::remove_file(path_of(copy));
}

/// Writes the record of a copy of `replica_url` holding `keys`.
pub fn store(
    copy: &Path,
    replica_url: &str,
    page_size: u32,
    keys: &[FrameKey],
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut b = Vec::with_capacity(24 + replica_url.len() + keys.len() * FrameKey::ENCODED);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(replica_url.len() as u32).to_le_bytes());
    b.extend_from_slice(replica_url.as_bytes());
    b.extend_from_slice(&page_size.to_le_bytes());
    for k in keys {
        k.encode(&mut b);
    }
    let path = path_of(copy);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&b)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The page size and keys of the record of a copy `copy_len` bytes long, if there is one, it
/// is of `replica_url`, and it describes exactly that many whole pages.
pub fn load(copy: &Path, replica_url: &str, copy_len: u64) -> Option<(u32, Vec<FrameKey>)> {
    let b = std::fs::read(path_of(copy)).ok()?;
    let rest = b.strip_prefix(MAGIC)?;
    let (n, rest) = rest.split_first_chunk::<4>()?;
    let n = u32::from_le_bytes(*n) as usize;
    let (url, rest) = (rest.get(..n)?, rest.get(n..)?);
    if url != replica_url.as_bytes() {
        return None;
    }
    let (ps, rest) = rest.split_first_chunk::<4>()?;
    let page_size = u32::from_le_bytes(*ps);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return None;
    }
    if rest.len() % FrameKey::ENCODED != 0 {
        return None;
    }
    let pages = (rest.len() / FrameKey::ENCODED) as u64;
    if pages * u64::from(page_size) != copy_len {
        return None;
    }
    Some((
        page_size,
        rest.chunks_exact(FrameKey::ENCODED)
            .map(FrameKey::decode)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_read_back_only_for_its_replica_and_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("h.db");
        let k = |o| FrameKey {
            level: 9,
            max_txid: 7,
            file_size: 99,
            offset: o,
        };
        let keys = vec![k(100), FrameKey::NONE, k(300)];
        store(&copy, "s3://b/db", 4096, &keys).expect("store");
        assert!(exists(&copy));
        assert_eq!(load(&copy, "s3://b/db", 3 * 4096), Some((4096, keys)));
        assert_eq!(load(&copy, "s3://b/other", 3 * 4096), None);
        assert_eq!(load(&copy, "s3://b/db", 2 * 4096), None);
        remove(&copy);
        assert!(!exists(&copy));
        assert_eq!(load(&copy, "s3://b/db", 3 * 4096), None);
    }
}
