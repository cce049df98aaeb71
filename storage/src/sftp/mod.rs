//! The `sftp` replica (`sftp://user[:pass]@host[:port]/path`): Litestream's layout
//! `<path>/ltx/<level>/<min>-<max>.ltx` on an SSH server, each file's mtime set to the LTX header
//! timestamp (whole seconds, as SFTP v3 carries it) before it is renamed into place.
//!
//! libssh2 (the `ssh2` crate) is blocking, so every operation runs on the blocking pool with a
//! connection taken from a small pool: one connection, or up to [`CONCURRENT_CONNECTIONS`] with
//! `concurrent-writes` (Litestream's default), which also pipelines writes in large pieces.
//! Connections are made on first use and kept; one found dead is replaced at once, and
//! connection failures are retried with backoff. A create-only write renames without
//! replacing: SFTP v3 rename (OpenSSH: link and unlink) refuses a name that exists. The rest
//! (listing cache, metrics, piecewise ranged reads) is the generic [`Replica`]'s.

mod conn;
pub mod settings;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use ssh2::{FileStat, OpenFlags, OpenType, RenameFlags};
use tokio::sync::Semaphore;

use crate::backend::{Backend, Layout, Listed, Page, Purge, Span, Upload};
use crate::error::ErrorKind;
use crate::metrics::Operation;
use crate::replica::Replica;
use crate::transport::retry::Retryable;
use crate::transport::RetryPolicy;
use crate::{Body, Result, SharedReplica, StorageError};
use conn::{classify, classify_io, connect, Conn, Fail};
use ltx_codec::{Level, TxId};

pub use settings::SftpSettings;

/// Connections kept with `concurrent-writes` (one without).
pub const CONCURRENT_CONNECTIONS: usize = 4;
/// Bytes handed to libssh2 per write call: with `concurrent-writes` it keeps many SFTP write
/// requests in flight; without, about one at a time.
const PIPELINED_WRITE: usize = 1 << 20;
const SINGLE_WRITE: usize = 32 * 1024;
const SSH_FX_FAILURE: i32 = 4;

/// An `sftp` replica.
pub type SftpReplica = Replica<SftpBackend>;

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: SftpSettings) -> Result<SharedReplica> {
    Ok(Arc::new(SftpReplica::new(s)))
}

/// Idle SSH sessions, and how many may be in use at once.
struct SessionPool {
    idle: Mutex<Vec<Conn>>,
    slots: Arc<Semaphore>,
    /// Connections made so far.
    made: AtomicU64,
}

impl SessionPool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SessionPool {
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

/// An SSH server and the replica path on it: the `sftp` [`Backend`].
pub struct SftpBackend {
    settings: Arc<SftpSettings>,
    pool: Arc<SessionPool>,
    retry: RetryPolicy,
    layout: Layout,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
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
        Fail::Fatal(_) | Fail::Local(_) => "config",
        Fail::Exists => "exists",
        f if f.is_not_found() => "not_found",
        Fail::Status { .. } => "status",
    }
}

impl Retryable for Fail {
    fn is_retryable(&self) -> bool {
        matches!(self, Fail::Conn(_))
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// SFTP status codes that mean the credentials may not do this.
const SSH_FX_PERMISSION_DENIED: i32 = 3;

impl Replica<SftpBackend> {
    /// A replica with the default retry policy; it connects on first use.
    pub fn new(settings: SftpSettings) -> SftpReplica {
        Self::with_retry_policy(settings, RetryPolicy::default())
    }

    /// A replica with `retry` for its operations; it connects on first use.
    pub fn with_retry_policy(settings: SftpSettings, retry: RetryPolicy) -> SftpReplica {
        let slots = if settings.concurrent_writes {
            CONCURRENT_CONNECTIONS
        } else {
            1
        };
        let root = settings::join(&[&settings.path, "ltx"]);
        Replica::from_backend(SftpBackend {
            layout: Layout::decimal(format!("{root}/")).with_base(Layout::base_of(&settings.path)),
            settings: Arc::new(settings),
            pool: Arc::new(SessionPool {
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(slots)),
                made: AtomicU64::new(0),
            }),
            retry,
        })
    }

    /// The settings the replica was made from.
    pub fn settings(&self) -> &SftpSettings {
        &self.backend().settings
    }

    /// `<path>/ltx/<level>` on the server.
    pub fn level_dir(&self, level: Level) -> String {
        self.settings().level_dir(level.0)
    }

    /// `<path>/ltx/<level>/<min>-<max>.ltx` on the server, as Litestream's `LTXFilePath`.
    pub fn ltx_path(&self, level: Level, min: TxId, max: TxId) -> String {
        self.backend().layout.ltx_key(level, min, max)
    }

    /// How many connections are open and idle (for tests of the pool).
    pub fn idle_connections(&self) -> usize {
        self.backend().pool.idle().len()
    }

    /// How many connections have been made (for tests of reconnection).
    pub fn connections_made(&self) -> u64 {
        self.backend().pool.made.load(Ordering::Relaxed)
    }
}

impl SftpBackend {
    /// The entries of one directory; an absent directory is empty.
    async fn readdir(&self, prefix: &str) -> Result<Vec<(std::path::PathBuf, ssh2::FileStat)>> {
        let dir = prefix.trim_end_matches('/').to_owned();
        let d = dir.clone();
        self.run(Operation::List, &dir, move |c| {
            match c.sftp.readdir(Path::new(&d)) {
                Ok(v) => Ok(v),
                Err(e) => match classify(e) {
                    f if f.is_not_found() => Ok(Vec::new()),
                    f => Err(f),
                },
            }
        })
        .await
    }

    /// `user@host:path`, naming a remote file in messages.
    fn describe(&self, path: &str) -> String {
        format!("{}@{}:{path}", self.settings.user, self.settings.host)
    }

    /// One try of `f` with a connection on the blocking pool: a kept one, or a new one. A
    /// connection that fails is dropped; a kept one found dead is replaced at once (with
    /// every other idle one, which a server restart killed too) and `f` tried again.
    async fn once<T, F>(&self, f: &Arc<F>) -> Result<Result<T, Fail>>
    where
        T: Send + 'static,
        F: Fn(&Conn) -> Result<T, Fail> + Send + Sync + 'static,
    {
        let mut replaced_stale = false;
        loop {
            let permit =
                self.pool.slots.clone().acquire_owned().await.map_err(|e| {
                    StorageError::fatal(format!("sftp: connection pool closed: {e}"))
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
                if matches!(
                    r,
                    Ok(_) | Err(Fail::Status { .. } | Fail::Local(_) | Fail::Exists)
                ) {
                    pool.idle().push(conn);
                }
                drop(permit);
                r
            })
            .await
            .map_err(|e| StorageError::fatal(format!("sftp: blocking task failed: {e}")))?;
            if let Err(Fail::Conn(msg)) = &r {
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
            }
            return Ok(r);
        }
    }

    /// Runs `f` with a connection, trying again with backoff after connection failures.
    /// Refusals and configuration errors are reported at once, naming `target`.
    async fn run<T, F>(&self, op: Operation, target: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Conn) -> Result<T, Fail> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let file = self.describe(target);
        let r = self
            .retry
            .run("sftp", &file, || async {
                self.once(&f)
                    .await
                    .map_err(|e| Fail::Local(e.to_string()))?
            })
            .await;
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if e.is_not_found() {
            return Err(StorageError::not_found(file).with_code("not_found"));
        }
        if let Fail::Exists = e {
            return Err(StorageError::already_exists(file));
        }
        let code = metric_code(&e);
        let op = op.as_str().to_ascii_lowercase();
        let (kind, msg) = match e {
            Fail::Conn(m) => (
                ErrorKind::Transient,
                format!("{m} (gave up after {} attempts)", self.retry.max_attempts),
            ),
            Fail::Status { code, msg } if code == SSH_FX_PERMISSION_DENIED => {
                (ErrorKind::Auth, msg)
            }
            Fail::Fatal(m) => (ErrorKind::Auth, m),
            e => (ErrorKind::Fatal, e.message().to_owned()),
        };
        Err(StorageError::new(kind, format!("sftp: {op} {file}: {msg}")).with_code(code))
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
                Fail::Local(format!("sftp: read local file {}: {e}", src.display()))
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
/// target; then, unless `create_only`, the old file is removed first, so a reader sees the old
/// or the new file, or briefly none, never a partial one. A create-only rename that finds the
/// target taken fails with [`Fail::Exists`].
fn rename_into_place(c: &Conn, tmp: &str, path: &str, create_only: bool) -> Result<(), Fail> {
    let (tmp, path) = (Path::new(tmp), Path::new(path));
    match c.sftp.rename(tmp, path, Some(RenameFlags::empty())) {
        Ok(()) => Ok(()),
        Err(e) => match classify(e) {
            Fail::Status { code, .. } if code == SSH_FX_FAILURE && c.sftp.stat(path).is_ok() => {
                if create_only {
                    return Err(Fail::Exists);
                }
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
    path: &str,
    body: &Body,
    mtime: u64,
    chunk: usize,
    create_only: bool,
) -> Result<u64, Fail> {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
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
        rename_into_place(c, &tmp, path, create_only)?;
        Ok(n)
    });
    drop(f);
    if let Err(Fail::Status { .. } | Fail::Fatal(_) | Fail::Local(_) | Fail::Exists) = &result {
        // The connection still works: do not leave the temp file behind.
        let _ = c.sftp.unlink(Path::new(&tmp));
    }
    result
}

/// Deletes everything under `root` (files first, then the emptied directories, deepest
/// first), as Litestream's `DeleteAll` walks its path. Returns how many files went.
fn remove_tree(c: &Conn, root: &str) -> Result<u64, Fail> {
    let mut dirs = vec![root.to_owned()];
    let mut removed = 0;
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
                    Ok(()) => removed += 1,
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
    Ok(removed)
}

#[async_trait]
impl Backend for SftpBackend {
    const KIND: &'static str = "sftp";
    const CREATE_ONLY: bool = true;

    fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Lists one directory (absent: empty).
    async fn list_dirs(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        let entries = self.readdir(prefix).await?;
        let names = entries
            .into_iter()
            .filter(|(_, st)| st.is_dir())
            .filter_map(|(p, _)| Some(p.file_name()?.to_str()?.to_owned()))
            .collect();
        Ok(Some(names))
    }

    async fn list_page(&self, prefix: &str, _token: Option<String>) -> Result<Page> {
        let entries = self.readdir(prefix).await?;
        let entries = entries
            .into_iter()
            .filter(|(_, st)| !st.is_dir())
            .filter_map(|(p, st)| {
                Some(Listed {
                    key: format!("{prefix}{}", p.file_name()?.to_str()?),
                    size: st.size.unwrap_or(0),
                    created_at: Some(UNIX_EPOCH + Duration::from_secs(st.mtime.unwrap_or(0))),
                })
            })
            .collect();
        Ok(Page {
            entries,
            next: None,
        })
    }

    async fn read(&self, key: &str, span: Span) -> Result<Bytes> {
        let (p, Span { offset, len }) = (key.to_owned(), span);
        self.run(Operation::Get, key, move |c| {
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
        .await
    }

    async fn put(&self, key: &str, up: Upload<'_>) -> Result<SystemTime> {
        let (secs, stored) = stored_time(up.created_at);
        let chunk = if self.settings.concurrent_writes {
            PIPELINED_WRITE
        } else {
            SINGLE_WRITE
        };
        let (p, body, create_only) = (key.to_owned(), up.body.clone(), up.create_only());
        self.run(Operation::Put, key, move |c| {
            upload(c, &p, &body, secs, chunk, create_only)
        })
        .await?;
        Ok(stored)
    }

    /// A missing file is already deleted.
    async fn delete(&self, key: &str) -> Result<bool> {
        let p = key.to_owned();
        self.run(Operation::Delete, key, move |c| {
            match c.sftp.unlink(Path::new(&p)).map_err(classify) {
                Err(f) if f.is_not_found() => Ok(()),
                r => r,
            }
        })
        .await?;
        Ok(true)
    }

    fn purge(&self) -> Purge {
        Purge::Tree
    }

    /// Deletes everything under the replica path, and the path itself, as Litestream does.
    async fn delete_tree(&self) -> Result<u64> {
        // A replica at the login directory itself: only its `ltx` tree is ours to delete.
        let root = match self.settings.path.as_str() {
            "" | "." | "/" => settings::join(&[&self.settings.path, "ltx"]),
            p => p.to_owned(),
        };
        let r = root.clone();
        self.run(Operation::Delete, &root, move |c| remove_tree(c, &r))
            .await
    }
}
