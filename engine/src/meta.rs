//! The local meta directory (§3.4): `<meta>/ltx/0/<txid>-<txid>.ltx`, the same layout
//! Litestream uses, so either program can pick up where the other stopped.

use std::fs;
use std::path::{Path, PathBuf};

use ltx_codec::types::ltx_file_name;
use ltx_codec::{Level, TxId};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct MetaDir {
    root: PathBuf,
}

impl MetaDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        MetaDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ltx_dir(&self) -> PathBuf {
        self.root.join("ltx")
    }

    pub fn level_dir(&self, level: Level) -> PathBuf {
        self.ltx_dir().join(level.0.to_string())
    }

    pub fn l0_path(&self, txid: TxId) -> PathBuf {
        self.level_dir(Level(0)).join(ltx_file_name(txid, txid))
    }

    /// Highest L0 MaxTXID on disk; 0 when there is none. This is the DB position: there is no
    /// separate position file.
    pub fn max_l0(&self) -> Result<TxId> {
        let files = storage::file::list_level_dir(&self.level_dir(Level(0)), Level(0))?;
        Ok(files.iter().map(|f| f.max_txid).max().unwrap_or(TxId::ZERO))
    }

    /// Removes `*.tmp` files a crash left behind (anywhere under the meta directory).
    pub fn remove_tmp_files(&self) -> Result<()> {
        fn walk(dir: &Path) -> Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io("read directory", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
                let path = entry.path();
                let ft = entry.file_type().map_err(|e| Error::io("stat", &path, e))?;
                if ft.is_dir() {
                    walk(&path)?;
                } else if path.extension().is_some_and(|x| x == "tmp") {
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("remove temp file", &path, e)),
                    }
                }
            }
            Ok(())
        }
        walk(&self.root)
    }

    /// Empties `ltx/0` (used when the database is behind its replica, §4.9).
    pub fn clear_l0(&self) -> Result<()> {
        let dir = self.level_dir(Level(0));
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &dir, e)),
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))
    }

    /// Writes an L0 file durably: temp file, fsync, rename, directory fsync.
    pub fn write_l0(&self, txid: TxId, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.l0_path(txid);
        storage::local::write_file_atomic(&path, &[bytes], None)
            .map_err(|e| Error::io("write L0 file", &path, e))?;
        Ok(path)
    }

    pub fn read_l0(&self, txid: TxId) -> Result<Vec<u8>> {
        let path = self.l0_path(txid);
        fs::read(&path).map_err(|e| Error::io("read L0 file", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_tmp_cleanup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = MetaDir::new(dir.path().join(".x.db-litestream"));
        assert_eq!(m.max_l0().expect("empty"), TxId(0));
        m.write_l0(TxId(1), b"a").expect("write");
        m.write_l0(TxId(3), b"c").expect("write");
        let tmp = m
            .level_dir(Level(0))
            .join("0000000000000004-0000000000000004.ltx.tmp");
        fs::write(&tmp, b"partial").expect("tmp");
        assert_eq!(m.max_l0().expect("max"), TxId(3));
        m.remove_tmp_files().expect("cleanup");
        assert!(!tmp.exists());
        assert!(m
            .l0_path(TxId(3))
            .ends_with(".x.db-litestream/ltx/0/0000000000000003-0000000000000003.ltx"));
        m.clear_l0().expect("clear");
        assert_eq!(m.max_l0().expect("max"), TxId(0));
    }
}
