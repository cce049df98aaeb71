//! `replicate`: one task per database (follower + uploader), each independent, all stopped
//! together with a final sync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ltx_codec::TxId;
use storage::SharedReplica;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, warn};

use crate::config::{Config, DbConfig};
use crate::maintain::Settings;
use crate::retention::Policy;
use crate::schedule::JobPermits;
use crate::watch::Watcher;

mod registry;
mod task;
pub use registry::{DbView, Registry};

/// Opens the backend of a configured replica. A file replica's files get no more permissions
/// than the database `db` (object stores have no file modes).
pub fn open_replica(
    r: &crate::config::ReplicaConfig,
    db: &std::path::Path,
) -> storage::Result<SharedReplica> {
    let inner = open_backend(r, db)?;
    if !r.age.is_set() {
        return Ok(inner);
    }
    let keys = storage::age::AgeKeys::load(&r.age)?;
    Ok(storage::age::AgeReplica::wrap(inner, keys))
}

fn open_backend(
    r: &crate::config::ReplicaConfig,
    db: &std::path::Path,
) -> storage::Result<SharedReplica> {
    if r.kind == "file" {
        return match storage::ReplicaUrl::parse(&r.url)? {
            storage::ReplicaUrl::File(p) => Ok(Arc::new(
                storage::file::FileReplica::new(p).with_mode_from(db),
            )),
            _ => storage::open_replica(&r.url),
        };
    }
    let url = (!r.url.is_empty()).then_some(r.url.as_str());
    storage::open_replica_from_config(
        r.kind.as_str(),
        url,
        r.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// Refuses a database the open-file limit has no room for (start-up checks the configured
/// ones; this catches those registered or found in a watched directory later).
fn check_fd_limit(dbs: usize) -> std::result::Result<(), String> {
    match crate::fdlimit::current() {
        Ok((soft, hard)) => crate::fdlimit::check(dbs, soft, hard),
        Err(_) => Ok(()),
    }
}

/// Longest wait between retries of a failing database (Litestream's `DefaultSyncBackoffMax`).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The `replicate` flags that change how every database runs (`-once`, `-force-snapshot`,
/// `-enforce-retention`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Sync every database once, upload, and return.
    pub once: bool,
    /// With `once`: also write a level-9 snapshot to the replica.
    pub force_snapshot: bool,
    /// With `once`: apply snapshot and L0 retention after syncing.
    pub enforce_retention: bool,
}

#[derive(Clone, Debug)]
struct Shared {
    shutdown_sync_timeout: Duration,
    shutdown_sync_interval: Duration,
    maintenance: Settings,
    pool: JobPermits,
}

/// `fut`'s output if it ends within `limit`; `shutdown-sync-timeout: 0` means no limit.
async fn within<F: std::future::Future>(limit: Duration, fut: F) -> Option<F::Output> {
    if limit.is_zero() {
        return Some(fut.await);
    }
    tokio::time::timeout(limit, fut).await.ok()
}

/// Awaits every task (named by its database or directory); false if any failed or panicked.
pub async fn join_all(
    tasks: impl IntoIterator<Item = (PathBuf, tokio::task::JoinHandle<bool>)>,
) -> bool {
    let mut ok = true;
    for (path, t) in tasks {
        match t.await {
            Ok(true) => {}
            Ok(false) => ok = false,
            Err(e) => {
                error!(path = %path.display(), error = %e, "task failed");
                ok = false;
            }
        }
    }
    ok
}

/// Returns once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// A `/sync` request of the control socket: answered with the local position after a sync
/// pass, or why there was none.
pub type SyncReply = oneshot::Sender<std::result::Result<TxId, String>>;

/// What a database task shares with the control socket and the heartbeat: positions, health,
/// and a way to ask for a sync now. It outlives the task (a stopped database keeps its last
/// positions).
#[derive(Clone, Debug)]
pub struct DbHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    local: watch::Sender<TxId>,
    replicated: watch::Sender<TxId>,
    /// The follower opened the database at least once.
    opened: AtomicBool,
    /// The last sync pass or upload failed.
    step_failing: AtomicBool,
    upload_failing: AtomicBool,
    /// The uploader found a local L0 file missing or corrupt (for `auto-recover`).
    local_damage: AtomicBool,
    /// Another writer holds the replica: nothing more may be written to it.
    conflict: AtomicBool,
    /// The last successful upload (or caught-up check) of the replica.
    last_ok: Mutex<Option<SystemTime>>,
    sync_tx: mpsc::UnboundedSender<SyncReply>,
}

impl DbHandle {
    fn new() -> (DbHandle, mpsc::UnboundedReceiver<SyncReply>) {
        let (sync_tx, sync_rx) = mpsc::unbounded_channel();
        let h = HandleInner {
            local: watch::channel(TxId::ZERO).0,
            replicated: watch::channel(TxId::ZERO).0,
            opened: AtomicBool::new(false),
            step_failing: AtomicBool::new(false),
            upload_failing: AtomicBool::new(false),
            local_damage: AtomicBool::new(false),
            conflict: AtomicBool::new(false),
            last_ok: Mutex::new(None),
            sync_tx,
        };
        (DbHandle { inner: Arc::new(h) }, sync_rx)
    }

    /// Highest local TXID (the newest L0 file in the meta directory).
    pub fn local_txid(&self) -> TxId {
        *self.inner.local.borrow()
    }

    /// Highest TXID the replica is known to hold.
    pub fn replicated_txid(&self) -> TxId {
        *self.inner.replicated.borrow()
    }

    /// When the replica last took (or already had) everything local.
    pub fn last_sync_at(&self) -> Option<SystemTime> {
        *self.inner.last_ok.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For the heartbeat: the database is open, its last sync pass and upload succeeded, and
    /// the replica either holds everything local or took something since `since`.
    pub fn healthy_since(&self, since: SystemTime) -> bool {
        let i = &self.inner;
        if !i.opened.load(Ordering::Relaxed)
            || i.step_failing.load(Ordering::Relaxed)
            || i.upload_failing.load(Ordering::Relaxed)
        {
            return false;
        }
        self.replicated_txid() >= self.local_txid()
            || self.last_sync_at().is_some_and(|t| t >= since)
    }

    /// Asks the task for a sync pass now; the answer is the local TXID after it. An error if
    /// the task has ended.
    pub fn request_sync(&self) -> Option<oneshot::Receiver<std::result::Result<TxId, String>>> {
        let (tx, rx) = oneshot::channel();
        self.inner.sync_tx.send(tx).ok()?;
        Some(rx)
    }

    /// Waits until the replica holds `txid`.
    pub async fn wait_replicated(&self, txid: TxId) {
        let mut rx = self.inner.replicated.subscribe();
        let _ = rx.wait_for(|t| *t >= txid).await;
    }

    fn set_local(&self, t: TxId) {
        self.inner.local.send_replace(t);
    }

    /// A local L0 file is missing or corrupt: the database's task resets the local state if
    /// `auto-recover` is on.
    pub(crate) fn note_local_damage(&self) {
        self.inner.local_damage.store(true, Ordering::Relaxed);
    }

    fn take_local_damage(&self) -> bool {
        self.inner.local_damage.swap(false, Ordering::Relaxed)
    }

    /// Another writer's files were found on the replica (docs/replica-layout.md#one-writer-per-replica):
    /// the database stops, and its maintenance with it, at once.
    pub(crate) fn note_conflict(&self) {
        self.inner.conflict.store(true, Ordering::Relaxed);
    }

    pub(crate) fn conflicted(&self) -> bool {
        self.inner.conflict.load(Ordering::Relaxed)
    }

    pub(crate) fn upload_failed(&self) {
        self.inner.upload_failing.store(true, Ordering::Relaxed);
    }

    pub(crate) fn upload_ok(&self, pos: Option<TxId>) {
        if let Some(p) = pos {
            self.inner.replicated.send_replace(p);
        }
        self.inner.upload_failing.store(false, Ordering::Relaxed);
        *self.inner.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Some(SystemTime::now());
    }
}

pub(crate) fn next_backoff(cur: Duration, base: Duration) -> Duration {
    if cur.is_zero() {
        base
    } else {
        (cur * 2).min(MAX_BACKOFF)
    }
}
