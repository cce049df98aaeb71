//! The `sftp` replica (`sftp://user[:pass]@host[:port]/path`): Litestream's layout
//! `<path>/ltx/<level>/<min>-<max>.ltx` on an SSH server, each file's mtime set to the LTX header
//! timestamp (whole seconds, as SFTP v3 carries it) before it is renamed into place (§3.1).
//!
//! libssh2 (the `ssh2` crate) is blocking, so every operation runs on the blocking pool with a
//! connection taken from a small pool: one connection, or up to [`CONCURRENT_CONNECTIONS`] with
//! `concurrent-writes` (Litestream's default), which also pipelines writes in large pieces.
//! Connections are made on first use and kept; one found dead is replaced at once, and
//! connection failures are retried with backoff. Listings are cached per level and kept
//! current by our own writes and deletes, so an idle database makes no requests.

mod conn;
pub mod settings;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};
use ssh2::{FileStat, OpenFlags, OpenType, RenameFlags};
use tokio::sync::Semaphore;

use crate::metrics::{self, Operation};
use crate::s3::RetryPolicy;
use crate::{Body, LtxFileInfo, ReplicaClient, Result, SharedReplica, StorageError};
use conn::{classify, classify_io, connect, Conn, Fail};

pub use settings::SftpSettings;

/// Connections kept with `concurrent-writes` (one without).
pub const CONCURRENT_CONNECTIONS: usize = 4;
/// Bytes handed to libssh2 per write call: with `concurrent-writes` it keeps many SFTP write
/// requests in flight; without, about one at a time.
const PIPELINED_WRITE: usize = 1 << 20;
const SINGLE_WRITE: usize = 32 * 1024;
const SSH_FX_FAILURE: i32 = 4;

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: SftpSettings) -> Result<SharedReplica> {
    Ok(Arc::new(SftpReplica::new(s)))
}

/// Idle connections, and how many may be in use at once.
struct Pool {
    idle: Mutex<Vec<Conn>>,
    slots: Arc<Semaphore>,
    /// Connections made so far.
    made: AtomicU64,
}

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pool {
    /// Closing a session waits for the server (up to the session timeout if it went silent):
    /// never on the caller's thread, which may be an async worker.
    fn drop(&mut self) {
        let conns = std::mem::take(&mut *self.idle());
        if !conns.is_empty() {
            let _ = std::thread::Builder::new()
                .name("sftp-close".into())
                .spawn(move || drop(conns));
        }
    }
}

/// Per-level listings, and a counter bumped by every change we make so that a listing that
/// raced with a change is not kept.
#[derive(Default)]
struct Listings {
    levels: HashMap<Level, Vec<LtxFileInfo>>,
    changes: u64,
}

pub struct SftpReplica {
    settings: Arc<SftpSettings>,
    pool: Arc<Pool>,
    retry: RetryPolicy,
    listings: Mutex<Listings>,
}

impl std::fmt::Debug for SftpReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpReplica")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// SFTP v3 carries whole seconds; this is what a listing will report for `t`.
fn stored_time(t: SystemTime) -> (u64, SystemTime) {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (secs, UNIX_EPOCH + Duration::from_secs(secs))
}

fn metric_code(f: &Fail) -> &'static str {
    match f {
        Fail::Conn(_) => "connection",
        Fail::Fatal(_) => "config",
        f if f.is_not_found() => "not_found",
        Fail::Status { .. } => "status",
    }
}

impl SftpReplica {
    pub fn new(settings: SftpSettings) -> SftpReplica {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    pub fn with_retry_policy(settings: SftpSettings, retry: RetryPolicy) -> SftpReplica {
        let slots = if settings.concurrent_writes {
            CONCURRENT_CONNECTIONS
        } else {
            1
        };
        SftpReplica {
            settings: Arc::new(settings),
            pool: Arc::new(Pool {
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(slots)),
                made: AtomicU64::new(0),
            }),
            retry,
            listings: Mutex::new(Listings::default()),
        }
    }

    pub fn settings(&self) -> &SftpSettings {
        &self.settings
    }

    /// `<path>/ltx/<level>` on the server.
    pub fn level_dir(&self, level: Level) -> String {
        self.settings.level_dir(level.0)
    }

    /// `<path>/ltx/<level>/<min>-<max>.ltx` on the server, as Litestream's `LTXFilePath`.
    pub fn ltx_path(&self, level: Level, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_dir(level), ltx_file_name(min, max))
    }

    /// `user@host:path`, naming a remote file in messages.
    fn describe(&self, path: &str) -> String {
        format!("{}@{}:{path}", self.settings.user, self.settings.host)
    }

    fn listings(&self) -> std::sync::MutexGuard<'_, Listings> {
        self.listings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connections are open and idle (for tests of the pool).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle().len()
    }

    /// How many connections have been made (for tests of reconnection).
    pub fn connections_made(&self) -> u64 {
        self.pool.made.load(Ordering::Relaxed)
    }

    /// Runs `f` with a connection on the blocking pool. A connection that fails is dropped; a
    /// kept one found dead is replaced at once (with every other idle one, which a server
    /// restart killed too), and connection failures are retried with backoff. Refusals and
    /// configuration errors are reported at once, naming `target`.
    async fn run<T, F>(&self, op: Operation, target: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Conn) -> Result<T, Fail> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let start = Instant::now();
        let mut failures = 0u32;
        let mut replaced_stale = false;
        let result = loop {
            let permit =
                self.pool.slots.clone().acquire_owned().await.map_err(|e| {
                    StorageError::Other(format!("sftp: connection pool closed: {e}"))
                })?;
            let kept = self.pool.idle().pop();
            let reused = kept.is_some();
            let (settings, pool, f) = (self.settings.clone(), self.pool.clone(), f.clone());
            let r = tokio::task::spawn_blocking(move || {
                let conn = match kept {
                    Some(c) => c,
                    None => {
                        let c = connect(&settings)?;
                        pool.made.fetch_add(1, Ordering::Relaxed);
                        c
                    }
                };
                let r = f(&conn);
                if matches!(r, Ok(_) | Err(Fail::Status { .. })) {
                    pool.idle().push(conn);
                }
                drop(permit);
                r
            })
            .await
            .map_err(|e| StorageError::Other(format!("sftp: blocking task failed: {e}")))?;
            match r {
                Err(Fail::Conn(msg)) => {
                    // Every kept connection shares the fate of this one (a restarted or
                    // unreachable server): drop them all, off the async threads.
                    let stale: Vec<Conn> = std::mem::take(&mut *self.pool.idle());
                    if !stale.is_empty() {
                        tokio::task::spawn_blocking(move || drop(stale));
                    }
                    if reused && !replaced_stale {
                        replaced_stale = true;
                        tracing::debug!(error = %msg, "sftp: kept connection is gone, reconnecting");
                        continue;
                    }
                    failures += 1;
                    if failures >= self.retry.max_attempts {
                        break Err(Fail::Conn(format!(
                            "{msg} (gave up after {failures} attempts)"
                        )));
                    }
                    let delay = self.retry.delay(failures - 1);
                    tracing::warn!(error = %msg, file = %self.describe(target), ?delay, "sftp: retrying");
                    tokio::time::sleep(delay).await;
                }
                other => break other,
            }
        };
        metrics::observe_duration("sftp", op, start.elapsed());
        result.map_err(|e| {
            metrics::record_error("sftp", op, metric_code(&e));
            if e.is_not_found() {
                return StorageError::NotFound {
                    key: self.describe(target),
                };
            }
            StorageError::Other(format!(
                "sftp: {} {}: {}",
                op.as_str().to_ascii_lowercase(),
                self.describe(target),
                e.message()
            ))
        })
    }

    /// Lists one level directory (absent: empty).
    async fn list_level(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let dir = self.level_dir(level);
        let d = dir.clone();
        let entries = self
            .run(Operation::List, &dir, move |c| {
                match c.sftp.readdir(Path::new(&d)) {
                    Ok(v) => Ok(v),
                    Err(e) => match classify(e) {
                        f if f.is_not_found() => Ok(Vec::new()),
                        f => Err(f),
                    },
                }
            })
            .await?;
        metrics::record("sftp", Operation::List, 1, 0);
        let mut files: Vec<LtxFileInfo> = entries
            .into_iter()
            .filter(|(_, st)| !st.is_dir())
            .filter_map(|(p, st)| {
                let (min, max) = parse_ltx_file_name(p.file_name()?.to_str()?)?;
                Some(LtxFileInfo {
                    level,
                    min_txid: min,
                    max_txid: max,
                    size: st.size.unwrap_or(0),
                    created_at: UNIX_EPOCH + Duration::from_secs(st.mtime.unwrap_or(0)),
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(files)
    }

    fn forget(&self, level: Option<Level>) {
        let mut l = self.listings();
        l.changes += 1;
        match level {
            Some(level) => {
                l.levels.remove(&level);
            }
            None => l.levels.clear(),
        }
    }
}

/// `mkdir -p` over SFTP: creates what is missing of `dir`, tolerating a concurrent creator.
fn mkdir_all(c: &Conn, dir: &str) -> Result<(), Fail> {
    if dir.is_empty() || dir == "." || dir == "/" {
        return Ok(());
    }
    if c.sftp.stat(Path::new(dir)).is_ok_and(|s| s.is_dir()) {
        return Ok(());
    }
    if let Some((parent, _)) = dir.rsplit_once('/') {
        mkdir_all(c, parent)?;
    }
    match c.sftp.mkdir(Path::new(dir), 0o755) {
        Ok(()) => Ok(()),
        Err(e) => {
            let f = classify(e);
            if matches!(f, Fail::Status { .. })
                && c.sftp.stat(Path::new(dir)).is_ok_and(|s| s.is_dir())
            {
                return Ok(());
            }
            Err(f)
        }
    }
}

/// Copies the body into the open remote file in pieces of `chunk` bytes; returns the size.
fn copy_body(c: &Conn, body: &Body, dst: &mut ssh2::File, chunk: usize) -> Result<u64, Fail> {
    match body {
        Body::Bytes(b) => {
            for piece in b.chunks(chunk.max(1)) {
                dst.write_all(piece).map_err(|e| classify_io(c, e))?;
            }
            Ok(b.len() as u64)
        }
        Body::File(src) => {
            let local = |e: std::io::Error| {
                Fail::Fatal(format!("sftp: read local file {}: {e}", src.display()))
            };
            let mut f = std::fs::File::open(src).map_err(local)?;
            let mut buf = vec![0u8; chunk.max(1)];
            let mut total = 0u64;
            loop {
                let n = f.read(&mut buf).map_err(local)?;
                if n == 0 {
                    return Ok(total);
                }
                dst.write_all(&buf[..n]).map_err(|e| classify_io(c, e))?;
                total += n as u64;
            }
        }
    }
}

/// Renames `tmp` over `path`. SFTP v3 rename (OpenSSH: link + unlink) refuses an existing
/// target; then the old file is removed first, so a reader sees the old or the new file, or
/// briefly none, never a partial one.
fn rename_into_place(c: &Conn, tmp: &str, path: &str) -> Result<(), Fail> {
    let (tmp, path) = (Path::new(tmp), Path::new(path));
    match c.sftp.rename(tmp, path, Some(RenameFlags::empty())) {
        Ok(()) => Ok(()),
        Err(e) => match classify(e) {
            Fail::Status { code, .. } if code == SSH_FX_FAILURE && c.sftp.stat(path).is_ok() => {
                match c.sftp.unlink(path).map_err(classify) {
                    Ok(()) => {}
                    Err(f) if f.is_not_found() => {}
                    Err(f) => return Err(f),
                }
                c.sftp
                    .rename(tmp, path, Some(RenameFlags::empty()))
                    .map_err(classify)
            }
            f => Err(f),
        },
    }
}

/// Uploads to a temp name next to `path`, sets its times, renames it into place.
fn upload(
    c: &Conn,
    dir: &str,
    path: &str,
    body: &Body,
    mtime: u64,
    chunk: usize,
) -> Result<u64, Fail> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // Litestream's temp name: never a valid LTX file name, so never listed.
    let tmp = format!("{path}.{}.{nanos}.tmp", std::process::id());
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let open = || {
        c.sftp
            .open_mode(Path::new(&tmp), flags, 0o644, OpenType::File)
    };
    let mut f = match open() {
        Ok(f) => f,
        Err(e) => match classify(e) {
            nf if nf.is_not_found() => {
                mkdir_all(c, dir)?;
                open().map_err(classify)?
            }
            other => return Err(other),
        },
    };
    let result = copy_body(c, body, &mut f, chunk).and_then(|n| {
        f.close().map_err(classify)?;
        let times = FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: None,
            atime: Some(mtime),
            mtime: Some(mtime),
        };
        c.sftp.setstat(Path::new(&tmp), times).map_err(classify)?;
        rename_into_place(c, &tmp, path)?;
        Ok(n)
    });
    drop(f);
    if let Err(Fail::Status { .. } | Fail::Fatal(_)) = &result {
        // The connection still works: do not leave the temp file behind.
        let _ = c.sftp.unlink(Path::new(&tmp));
    }
    result
}

/// Deletes everything under `root` (files first, then the emptied directories, deepest
/// first), as Litestream's `DeleteAll` walks its path.
fn remove_tree(c: &Conn, root: &str) -> Result<(), Fail> {
    let mut dirs = vec![root.to_owned()];
    let mut i = 0;
    while i < dirs.len() {
        let entries = match c.sftp.readdir(Path::new(&dirs[i])) {
            Ok(v) => v,
            Err(e) => match classify(e) {
                f if f.is_not_found() => Vec::new(),
                f => return Err(f),
            },
        };
        for (p, st) in entries {
            let p = p.to_string_lossy().into_owned();
            if st.is_dir() {
                dirs.push(p);
            } else {
                match c.sftp.unlink(Path::new(&p)).map_err(classify) {
                    Ok(()) => metrics::record("sftp", Operation::Delete, 1, 0),
                    Err(f) if f.is_not_found() => {}
                    Err(f) => return Err(f),
                }
            }
        }
        i += 1;
    }
    for d in dirs.iter().rev() {
        if matches!(d.as_str(), "" | "." | "/") {
            continue;
        }
        match c.sftp.rmdir(Path::new(d)).map_err(classify) {
            Ok(()) => {}
            Err(f) if f.is_not_found() => {}
            Err(f) => return Err(f),
        }
    }
    Ok(())
}

#[async_trait]
impl ReplicaClient for SftpReplica {
    fn kind(&self) -> &'static str {
        "sftp"
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let changes = {
            let l = self.listings();
            if let Some(files) = l.levels.get(&level) {
                return Ok(files.clone());
            }
            l.changes
        };
        let files = self.list_level(level).await?;
        let mut l = self.listings();
        if l.changes == changes {
            l.levels.insert(level, files.clone());
        }
        Ok(files)
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
        let p = path.clone();
        let b = self
            .run(Operation::Get, &path, move |c| {
                let mut f = c.sftp.open(Path::new(&p)).map_err(classify)?;
                let size = f.stat().map_err(classify)?.size.unwrap_or(0);
                let len = len.unwrap_or(size.saturating_sub(offset));
                if offset.checked_add(len).is_none_or(|end| end > size) {
                    return Err(Fail::Status {
                        code: -1,
                        msg: format!("range {offset}+{len} is past the end ({size} bytes)"),
                    });
                }
                let mut buf = vec![0u8; len as usize];
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))
                    .map_err(|e| classify_io(c, e))?;
                f.read_exact(&mut buf).map_err(|e| classify_io(c, e))?;
                Ok(Bytes::from(buf))
            })
            .await?;
        metrics::record("sftp", Operation::Get, 1, b.len() as u64);
        Ok(b)
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
        let dir = self.level_dir(level);
        let (secs, stored) = stored_time(created_at);
        let chunk = if self.settings.concurrent_writes {
            PIPELINED_WRITE
        } else {
            SINGLE_WRITE
        };
        // Whatever happens next, a cached listing of this level may be wrong.
        self.listings().changes += 1;
        let p = path.clone();
        let r = self
            .run(Operation::Put, &path, move |c| {
                upload(c, &dir, &p, &body, secs, chunk)
            })
            .await;
        let size = match r {
            Ok(n) => n,
            Err(e) => {
                self.forget(Some(level));
                return Err(e);
            }
        };
        metrics::record("sftp", Operation::Put, 1, size);
        let info = LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at: stored,
        };
        let mut l = self.listings();
        if let Some(files) = l.levels.get_mut(&level) {
            files.retain(|f| (f.min_txid, f.max_txid) != (min, max));
            let at = files.partition_point(|f| (f.min_txid, f.max_txid) < (min, max));
            files.insert(at, info.clone());
        }
        Ok(info)
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        self.listings().changes += 1;
        for f in files {
            let path = self.ltx_path(f.level, f.min_txid, f.max_txid);
            let p = path.clone();
            let r = self
                .run(Operation::Delete, &path, move |c| {
                    match c.sftp.unlink(Path::new(&p)).map_err(classify) {
                        Err(f) if f.is_not_found() => Ok(()),
                        r => r,
                    }
                })
                .await;
            if let Err(e) = r {
                self.forget(None);
                return Err(e);
            }
            metrics::record("sftp", Operation::Delete, 1, 0);
            let mut l = self.listings();
            if let Some(list) = l.levels.get_mut(&f.level) {
                list.retain(|x| (x.min_txid, x.max_txid) != (f.min_txid, f.max_txid));
            }
        }
        Ok(())
    }

    /// Deletes everything under the replica path, and the path itself, as Litestream does.
    async fn delete_all(&self) -> Result<()> {
        self.forget(None);
        // A replica at the login directory itself: only its `ltx` tree is ours to delete.
        let root = match self.settings.path.as_str() {
            "" | "." | "/" => settings::join(&[&self.settings.path, "ltx"]),
            p => p.to_owned(),
        };
        let r = root.clone();
        let result = self
            .run(Operation::Delete, &root, move |c| remove_tree(c, &r))
            .await;
        self.forget(None);
        result
    }

    fn invalidate_cache(&self) {
        self.forget(None);
    }
}
