//! The `file` replica: `<root>/ltx/<level>/<min>-<max>.ltx`, mtime = header timestamp, written
//! through a temp file, fsync, rename (or `link(2)` for a create-only write, which refuses a
//! name that exists) and directory fsync. Keys are paths below `<root>/`. A directory that
//! others may write is listed afresh every time, and, as before, not counted in the metrics.

use std::fs::{self, File, Metadata};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::types::parse_ltx_file_name;
use ltx_codec::{Level, TxId};

use crate::backend::{Backend, Layout, Listed, Page, Purge, PutMode, Span, Upload};
use crate::replica::Replica;
use crate::{local, Body, LtxFileInfo, Result, StorageError};

/// A local directory: the `file` [`Backend`].
#[derive(Clone, Debug)]
pub struct FileBackend {
    root: PathBuf,
    mode_ref: Option<PathBuf>,
    layout: Layout,
}

/// A `file` replica.
pub type FileReplica = Replica<FileBackend>;

impl Replica<FileBackend> {
    /// A replica in the directory `root`; nothing is created until the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Replica::from_backend(FileBackend {
            root: root.into(),
            mode_ref: None,
            layout: Layout::decimal("ltx/").with_base(""),
        })
    }

    /// Files (and directories) this replica creates get no more permissions than `reference`
    /// (the replicated database) has at the time of each write, so a 0600 database is not
    /// copied into world-readable LTX files. The reference is re-read per write because the
    /// database may not exist yet when the replica is opened, or be chmod'ed later.
    pub fn with_mode_from(self, reference: impl Into<PathBuf>) -> Self {
        let mut b = self.backend().clone();
        b.mode_ref = Some(reference.into());
        Replica::from_backend(b)
    }

    /// The replica's directory.
    pub fn root(&self) -> &Path {
        &self.backend().root
    }

    /// The directory of one level: `<root>/ltx/<level>`.
    pub fn level_dir(&self, level: Level) -> PathBuf {
        self.root().join("ltx").join(level.0.to_string())
    }

    /// The path of one LTX file: `<root>/ltx/<level>/<min>-<max>.ltx`.
    pub fn ltx_path(&self, level: Level, min: TxId, max: TxId) -> PathBuf {
        self.backend()
            .path(&self.backend().layout.ltx_key(level, min, max))
    }
}

impl FileBackend {
    /// The file (or directory) a key names: keys are paths below the root.
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn file_mode(&self) -> Option<u32> {
        self.mode_ref.as_deref().and_then(local::file_mode_like)
    }
}

fn key(p: &Path) -> String {
    p.display().to_string()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::fatal(format!("blocking task failed: {e}")))?
}

/// The regular files of a directory (an absent one is empty), links followed: a linked LTX
/// file is read through the link, read-only, so its size must be the target's, not the link's.
fn read_dir_files(dir: &Path) -> Result<Vec<(String, Metadata)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io(key(dir), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(key(dir), e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let meta = match fs::metadata(entry.path()) {
            Ok(m) => m,
            // Deleted between readdir and stat (retention running elsewhere), or a dangling link.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::io(key(&entry.path()), e)),
        };
        if meta.is_file() {
            out.push((name, meta));
        }
    }
    Ok(out)
}

/// Lists one level directory. Shared with the local meta directory, which has the same layout.
pub fn list_level_dir(dir: &Path, level: Level) -> Result<Vec<LtxFileInfo>> {
    let mut out: Vec<LtxFileInfo> = read_dir_files(dir)?
        .into_iter()
        .filter_map(|(name, meta)| {
            let (min, max) = parse_ltx_file_name(&name)?;
            Some(LtxFileInfo {
                level,
                min_txid: min,
                max_txid: max,
                size: meta.len(),
                created_at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect();
    out.sort_by_key(|f| (f.min_txid, f.max_txid));
    Ok(out)
}

#[async_trait]
impl Backend for FileBackend {
    const KIND: &'static str = "file";
    const CREATE_ONLY: bool = true;
    const CACHE_LISTINGS: bool = false;
    const METRICS: bool = false;

    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn list_page(&self, prefix: &str, _token: Option<String>) -> Result<Page> {
        let (dir, prefix) = (self.path(prefix), prefix.to_owned());
        blocking(move || {
            let entries = read_dir_files(&dir)?
                .into_iter()
                .map(|(name, meta)| Listed {
                    key: format!("{prefix}{name}"),
                    size: meta.len(),
                    created_at: Some(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
                })
                .collect();
            Ok(Page {
                entries,
                next: None,
            })
        })
        .await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        let dir = self.path(prefix);
        blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
                Err(e) => return Err(StorageError::io(key(&dir), e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io(key(&dir), e))?;
                // Links are not followed: a directory tree is walked as it is stored.
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if let (true, Ok(name)) = (is_dir, entry.file_name().into_string()) {
                    out.push(name);
                }
            }
            Ok(Some(out))
        })
        .await
    }

    async fn read(&self, k: &str, span: Span) -> Result<Bytes> {
        let (path, Span { offset, len }) = (self.path(k), span);
        blocking(move || {
            let f = File::open(&path).map_err(|e| StorageError::io(key(&path), e))?;
            let size = f
                .metadata()
                .map_err(|e| StorageError::io(key(&path), e))?
                .len();
            let len = len.unwrap_or(size.saturating_sub(offset));
            if offset.checked_add(len).is_none_or(|end| end > size) {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("range {offset}+{len} is past the end ({size} bytes)"),
                );
                return Err(StorageError::io(key(&path), e));
            }
            let mut buf = vec![0u8; len as usize];
            local::read_exact_at(&f, &mut buf, offset)
                .map_err(|e| StorageError::io(key(&path), e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn put(&self, k: &str, up: Upload<'_>) -> Result<SystemTime> {
        let (path, body, created_at) = (self.path(k), up.body.clone(), up.created_at);
        let (perms, how) = (self.file_mode(), up.mode);
        blocking(move || {
            let how = match how {
                PutMode::Overwrite => local::Publish::Replace,
                PutMode::CreateOnly => local::Publish::Exclusive,
            };
            let r = local::publish(&path, Some(created_at), perms, how, |f| match &body {
                Body::Bytes(b) => local::write_chunks(f, &[b]),
                Body::File(src) => local::copy_into(src, f),
            });
            match r {
                Ok(()) => Ok(created_at),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(StorageError::already_exists(key(&path)))
                }
                Err(e) => Err(StorageError::io(key(&path), e)),
            }
        })
        .await
    }

    /// A missing file is already deleted.
    async fn delete(&self, k: &str) -> Result<bool> {
        let p = self.path(k);
        blocking(move || match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(StorageError::io(key(&p), e)),
        })
        .await
    }

    fn purge(&self) -> Purge {
        Purge::Tree
    }

    async fn delete_tree(&self) -> Result<u64> {
        let dir = self.root.join("ltx");
        blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StorageError::io(key(&dir), e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LtxName, ReplicaClient};
    use std::time::Duration;

    #[tokio::test]
    async fn write_list_read_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = FileReplica::new(dir.path());
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_665_906_229);
        for i in [3u64, 1, 2] {
            r.write_ltx(
                LtxName::l0(TxId(i)),
                Body::Bytes(Bytes::from(vec![i as u8; 10])),
                t,
            )
            .await
            .expect("write");
        }
        fs::write(r.level_dir(Level(0)).join("junk.txt"), b"x").expect("junk");
        let files = r.ltx_files(Level(0)).await.expect("list");
        assert_eq!(
            files.iter().map(|f| f.min_txid.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(files[0].created_at, t);
        assert!(r
            .ltx_path(Level(0), TxId(1), TxId(1))
            .ends_with("ltx/0/0000000000000001-0000000000000001.ltx"));
        let b = r
            .read_range(LtxName::l0(TxId(2)), 8, None)
            .await
            .expect("read");
        assert_eq!(&b[..], &[2, 2]);
        assert!(r
            .read_range(LtxName::l0(TxId(2)), 8, Some(5))
            .await
            .is_err());
        let missing = r.read_range(LtxName::l0(TxId(9)), 0, None).await;
        assert!(missing.is_err_and(|e| e.is_not_found()));
        r.delete_ltx(&files[..2]).await.expect("delete");
        assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 1);
        assert!(r
            .ltx_files(Level(5))
            .await
            .expect("absent level")
            .is_empty());
    }
}
