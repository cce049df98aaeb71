//! The local meta directory (docs/replica-layout.md#local-meta-directory):
//! `<meta>/ltx/0/<txid>-<txid>.ltx`, the same layout Litestream uses, so either program can pick up
//! where the other stopped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ltx_codec::types::ltx_file_name;
use ltx_codec::{Header, Level, TxId};

use crate::error::{Error, Result};

/// A database's local meta directory (by default `.<db file name>-litestream` beside it), which
/// holds its L0 files under `ltx/0` (docs/replica-layout.md#local-meta-directory).
#[derive(Clone, Debug)]
pub struct MetaDir {
    root: PathBuf,
    mode_ref: Option<PathBuf>,
}

impl MetaDir {
    /// The meta directory at `root`; nothing is created yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        MetaDir {
            root: root.into(),
            mode_ref: None,
        }
    }

    /// Files and directories created here get no more permissions than `db` has (checked at
    /// each write): L0 files hold the database's pages, so a 0600 database must not leave
    /// 0644 copies of itself (Litestream users rely on this).
    pub fn with_mode_from(mut self, db: impl Into<PathBuf>) -> Self {
        self.mode_ref = Some(db.into());
        self
    }

    /// The permission cap for new files, `None` when there is no reference or it is missing.
    pub fn file_mode(&self) -> Option<u32> {
        self.mode_ref
            .as_deref()
            .and_then(storage::local::file_mode_like)
    }

    /// `create_dir_all` with directories capped like files (see [`MetaDir::with_mode_from`]).
    pub fn create_dir(&self, dir: &Path) -> Result<()> {
        storage::local::create_dir_all_mode(dir, self.file_mode())
            .map_err(|e| Error::io("create directory", dir, e))
    }

    /// The meta directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<meta>/ltx`, the parent of the level directories.
    pub fn ltx_dir(&self) -> PathBuf {
        self.root.join("ltx")
    }

    /// `<meta>/ltx/<level>`.
    pub fn level_dir(&self, level: Level) -> PathBuf {
        self.ltx_dir().join(level.0.to_string())
    }

    /// The path of the L0 file for `txid`: `<meta>/ltx/0/<txid>-<txid>.ltx`.
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

    /// Empties `ltx/0` (used when the database is behind its replica,
    /// docs/wal.md#database-behind-replica).
    pub fn clear_l0(&self) -> Result<()> {
        let dir = self.level_dir(Level(0));
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &dir, e)),
        }
        self.create_dir(&dir)
    }

    /// Writes an L0 file durably: temp file, fsync, rename, directory fsync.
    pub fn write_l0(&self, txid: TxId, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.l0_path(txid);
        storage::local::write_file_atomic(&path, &[bytes], None, self.file_mode())
            .map_err(|e| Error::io("write L0 file", &path, e))?;
        Ok(path)
    }

    /// Reads the L0 file at `txid` to its end, checking it whole (checksum, index), as a stream:
    /// a large file costs a buffer, not its size in memory. Returns what verify keeps of it.
    pub fn verify_l0(&self, txid: TxId) -> Result<LastL0> {
        let path = self.l0_path(txid);
        let f = fs::File::open(&path).map_err(|e| Error::local_l0_io("open", &path, e))?;
        let mut d = ltx_codec::StreamDecoder::new(std::io::BufReader::with_capacity(CHUNK, f))
            .map_err(|e| Error::local_l0_corrupt(&path, e))?;
        d.verify_to_end()
            .map_err(|e| Error::local_l0_corrupt(&path, e))?;
        Ok(LastL0 {
            header: *d.header(),
            last_page: None,
        })
    }

    /// Starts writing an LTX file at `path` (via `<path>.tmp`).
    pub fn stage(&self, path: PathBuf) -> Result<StagedFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        self.create_dir(dir)?;
        StagedFile::create(path, self.file_mode())
    }
}

/// What the follower keeps of the newest L0 file for the next verify (docs/wal.md#verify): its
/// header and, when it wrote the file itself, the page of the WAL frame just before the file's end,
/// the one verify compares with the WAL. Other pages are read from the file when asked for.
#[derive(Clone, Debug)]
pub struct LastL0 {
    /// The file's LTX header.
    pub header: Header,
    /// The page number and contents of the WAL frame just before the file's end, when this process
    /// wrote the file.
    pub last_page: Option<(u32, Arc<Vec<u8>>)>,
}

/// Page `pgno` of the LTX file at `path` into `out` (positional reads of the header, index and
/// that one page); `Ok(false)` when the file does not hold that page.
pub fn read_l0_page(path: &Path, pgno: u32, out: &mut [u8]) -> ltx_codec::Result<bool> {
    let f = fs::File::open(path)?;
    let size = f.metadata()?.len();
    let r = ltx_codec::PageReader::open(f, size)?;
    match r.read_page(pgno, out, &mut Vec::new()) {
        Ok(()) => Ok(true),
        Err(ltx_codec::Error::PageNotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Small local files are uploaded from memory, larger ones streamed from disk.
pub const KEEP_IN_MEMORY: usize = 8 << 20;

const CHUNK: usize = 1 << 20;

/// An LTX file being written: 1 MiB writes through `storage::local` (io_uring or pwrite) to
/// `<path>.tmp`; `commit` fsyncs, renames and fsyncs the directory. Dropped without `commit`,
/// the temp file is removed, so a half-written file never appears under its real name.
pub struct StagedFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<fs::File>,
    buf: Vec<u8>,
    off: u64,
    /// A large file (a snapshot, an L0 file of a long backlog) must not stay dirty in memory
    /// whole until `commit`'s fsync. `None`: see [`StagedFile::unpaced`].
    behind: Option<storage::local::WriteBehind>,
}

impl StagedFile {
    fn create(path: PathBuf, mode: Option<u32>) -> Result<StagedFile> {
        let tmp = storage::local::tmp_path(&path);
        let file = storage::local::create_file_mode(&tmp, mode)
            .map_err(|e| Error::io("create", &tmp, e))?;
        Ok(StagedFile {
            path,
            tmp,
            file: Some(file),
            // Grows up to CHUNK as it is written: most L0 files are a few KiB.
            buf: Vec::new(),
            off: 0,
            behind: Some(storage::local::WriteBehind::new()),
        })
    }

    /// Never waits for the disk while written: for a file written under our write lock, which
    /// writers would wait on too. It is made durable after the lock is let go, and is bounded
    /// by what the lock may be held for (docs/checkpoints.md#how-much-writers-may-wait-for).
    pub fn unpaced(mut self) -> Self {
        self.behind = None;
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.off + self.buf.len() as u64
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The final path the file gets on `commit`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let f = self
            .file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("staged file already committed"))?;
        storage::local::write_all_at(f, &self.buf, self.off)?;
        self.off += self.buf.len() as u64;
        self.buf.clear();
        if let Some(b) = &mut self.behind {
            b.wrote(f, self.off);
        }
        Ok(())
    }

    /// Makes the file durable under its real name.
    pub fn commit(mut self) -> Result<()> {
        self.flush_buf()
            .map_err(|e| Error::io("write", &self.tmp, e))?;
        let f = self
            .file
            .take()
            .ok_or_else(|| Error::Other("staged file already committed".into()))?;
        storage::local::fsync(&f).map_err(|e| Error::io("fsync", &self.tmp, e))?;
        drop(f);
        fs::rename(&self.tmp, &self.path).map_err(|e| Error::io("rename", &self.tmp, e))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        storage::local::fsync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))
    }
}

impl std::io::Write for StagedFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Durability is `commit`'s job; a flush only has to keep the buffer bounded.
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
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
        let big = vec![7u8; 3 * CHUNK + 5];
        let mut st = m.stage(m.l0_path(TxId(9))).expect("stage");
        std::io::Write::write_all(&mut st, &big).expect("write");
        st.commit().expect("commit");
        assert_eq!(fs::read(m.l0_path(TxId(9))).expect("read"), big);
        let mut st = m.stage(m.l0_path(TxId(10))).expect("stage");
        std::io::Write::write_all(&mut st, b"small").expect("write");
        drop(st);
        assert!(!m.l0_path(TxId(10)).exists());
        assert!(!storage::local::tmp_path(&m.l0_path(TxId(10))).exists());
        m.clear_l0().expect("clear");
        assert_eq!(m.max_l0().expect("max"), TxId(0));
    }
}
