//! The `file` replica: `<root>/ltx/<level>/<min>-<max>.ltx`, mtime = header timestamp, written
//! through a temp file, fsync, rename and directory fsync (§3.1).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};

use crate::{local, Body, LtxFileInfo, ReplicaClient, Result, StorageError};

#[derive(Clone, Debug)]
pub struct FileReplica {
    root: PathBuf,
    mode_ref: Option<PathBuf>,
}

impl FileReplica {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileReplica {
            root: root.into(),
            mode_ref: None,
        }
    }

    /// Files (and directories) this replica creates get no more permissions than `reference`
    /// (the replicated database) has at the time of each write, so a 0600 database is not
    /// copied into world-readable LTX files. The reference is re-read per write because the
    /// database may not exist yet when the replica is opened, or be chmod'ed later.
    pub fn with_mode_from(mut self, reference: impl Into<PathBuf>) -> Self {
        self.mode_ref = Some(reference.into());
        self
    }

    fn file_mode(&self) -> Option<u32> {
        self.mode_ref.as_deref().and_then(local::file_mode_like)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn level_dir(&self, level: Level) -> PathBuf {
        self.root.join("ltx").join(level.0.to_string())
    }

    pub fn ltx_path(&self, level: Level, min: TxId, max: TxId) -> PathBuf {
        self.level_dir(level).join(ltx_file_name(min, max))
    }
}

fn key(p: &Path) -> String {
    p.display().to_string()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Other(format!("blocking task failed: {e}")))?
}

/// Lists one level directory. Shared with the local meta directory, which has the same layout.
pub fn list_level_dir(dir: &Path, level: Level) -> Result<Vec<LtxFileInfo>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io(key(dir), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(key(dir), e))?;
        let name = entry.file_name();
        let Some((min, max)) = name.to_str().and_then(parse_ltx_file_name) else {
            continue;
        };
        // fs::metadata follows a symlink (DirEntry::metadata would not): a linked LTX file is
        // read through the link, read-only, so its size must be the target's, not the link's.
        let meta = match fs::metadata(entry.path()) {
            Ok(m) => m,
            // Deleted between readdir and stat (retention running elsewhere), or a dangling link.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::io(key(&entry.path()), e)),
        };
        if !meta.is_file() {
            continue;
        }
        out.push(LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size: meta.len(),
            created_at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    out.sort_by_key(|f| (f.min_txid, f.max_txid));
    Ok(out)
}

#[async_trait]
impl ReplicaClient for FileReplica {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let dir = self.level_dir(level);
        blocking(move || list_level_dir(&dir, level)).await
    }

    async fn read_range(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes> {
        let path = self.ltx_path(level, min, max);
        blocking(move || {
            let f = File::open(&path).map_err(|e| StorageError::io(key(&path), e))?;
            let size = f
                .metadata()
                .map_err(|e| StorageError::io(key(&path), e))?
                .len();
            let len = match len {
                Some(l) => l,
                None => size.saturating_sub(offset),
            };
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(StorageError::Io {
                    key: key(&path),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("range {offset}+{len} is past the end ({size} bytes)"),
                    ),
                });
            }
            let mut buf = vec![0u8; len as usize];
            local::read_exact_at(&f, &mut buf, offset)
                .map_err(|e| StorageError::io(key(&path), e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn write_ltx(
        &self,
        level: Level,
        min: TxId,
        max: TxId,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        let path = self.ltx_path(level, min, max);
        let mode = self.file_mode();
        blocking(move || {
            let size = match &body {
                Body::Bytes(b) => {
                    local::write_file_atomic(&path, &[b], Some(created_at), mode)
                        .map_err(|e| StorageError::io(key(&path), e))?;
                    b.len() as u64
                }
                Body::File(src) => {
                    local::copy_file_atomic(src, &path, Some(created_at), mode)
                        .map_err(|e| StorageError::io(key(&path), e))?;
                    fs::metadata(&path)
                        .map_err(|e| StorageError::io(key(&path), e))?
                        .len()
                }
            };
            Ok(LtxFileInfo {
                level,
                min_txid: min,
                max_txid: max,
                size,
                created_at,
            })
        })
        .await
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|f| self.ltx_path(f.level, f.min_txid, f.max_txid))
            .collect();
        blocking(move || {
            for p in paths {
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(key(&p), e)),
                }
            }
            Ok(())
        })
        .await
    }

    async fn delete_all(&self) -> Result<()> {
        let dir = self.root.join("ltx");
        blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(key(&dir), e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn write_list_read_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = FileReplica::new(dir.path());
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_665_906_229);
        for i in [3u64, 1, 2] {
            r.write_ltx(
                Level(0),
                TxId(i),
                TxId(i),
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
            .read_range(Level(0), TxId(2), TxId(2), 8, None)
            .await
            .expect("read");
        assert_eq!(&b[..], &[2, 2]);
        assert!(r
            .read_range(Level(0), TxId(2), TxId(2), 8, Some(5))
            .await
            .is_err());
        let missing = r.read_range(Level(0), TxId(9), TxId(9), 0, None).await;
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
