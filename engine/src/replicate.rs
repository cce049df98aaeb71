//! `replicate`: one task per database (follower + uploader), each independent, all stopped
//! together with a final sync.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ltx_codec::TxId;
use storage::SharedReplica;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::config::{Config, DbConfig};
use crate::error::{Error, Result};
use crate::follower::Follower;
use crate::maintain::{Maintainer, Settings};
use crate::meta::MetaDir;
use crate::retention::{self, Policy};
use crate::schedule::JobPermits;
use crate::snapshot;
use crate::uploader::{replica_newest, upload_loop, Uploader};
use crate::wake;
use crate::watch::{DbWatch, Watcher};
use storage::value::format_duration as format_go_duration;

mod registry;
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

struct DbTask {
    cfg: Arc<DbConfig>,
    shared: Shared,
    notify: Option<DbWatch>,
    shutdown: watch::Receiver<bool>,
    /// Turned on by the uploader when it finds another writer on the replica.
    stop: watch::Sender<bool>,
    handle: DbHandle,
    sync_rx: mpsc::UnboundedReceiver<SyncReply>,
    once: bool,
    force_snapshot: bool,
    enforce_retention: bool,
}

/// Size, mtime and inode of the database and its WAL: if none changed, there is nothing to do.
type Fingerprint = [Option<(u64, i64, i64, u64)>; 2];

fn fingerprint(db: &Path) -> Fingerprint {
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
    };
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [stat(db), stat(Path::new(&wal))]
}

pub(crate) fn next_backoff(cur: Duration, base: Duration) -> Duration {
    if cur.is_zero() {
        base
    } else {
        (cur * 2).min(MAX_BACKOFF)
    }
}

/// Runs `op` on a blocking thread with the follower moved in and back out.
/// Answers the maintainer's snapshot request with the job taken from the follower (built and
/// uploaded elsewhere, so the database's loop goes on).
async fn answer_snapshot(slot: &mut Option<Follower>, cfg: &Arc<DbConfig>, req: snapshot::Request) {
    let r = blocking(slot, cfg, |f| f.snapshot_job()).await;
    let _ = req.send(r);
}

async fn blocking<T: Send + 'static>(
    slot: &mut Option<Follower>,
    cfg: &Arc<DbConfig>,
    op: impl FnOnce(&mut Follower) -> Result<T> + Send + 'static,
) -> Result<T> {
    let mut f = slot.take().unwrap_or_else(|| Follower::new(cfg.clone()));
    match tokio::task::spawn_blocking(move || {
        let r = op(&mut f);
        (f, r)
    })
    .await
    {
        Ok((f, r)) => {
            *slot = Some(f);
            r
        }
        Err(e) => Err(Error::Other(format!("sync thread failed: {e}"))),
    }
}

impl DbTask {
    async fn run(mut self) -> bool {
        let path = self.cfg.path.display().to_string();
        let replica = match open_replica(&self.cfg.replica, &self.cfg.path) {
            Ok(r) => r,
            Err(e) => {
                error!(db = %path, error = %e, "cannot open replica");
                return false;
            }
        };
        let (pos_tx, pos_rx) = watch::channel(TxId::ZERO);
        let uploader = Uploader::new(
            replica.clone(),
            MetaDir::new(&self.cfg.meta_path).with_mode_from(&self.cfg.path),
            self.cfg.path.clone(),
        )
        .with_batch(self.cfg.replica.max_sync_ltx_files);
        let up = tokio::spawn(upload_loop(
            uploader,
            pos_rx,
            self.cfg.replica.sync_interval,
            (
                self.shared.shutdown_sync_timeout,
                self.shared.shutdown_sync_interval,
            ),
            self.handle.clone(),
            self.stop.clone(),
        ));
        // Compaction, snapshots and retention run beside the follower, never on its task.
        let (snap_tx, mut snap_rx) = mpsc::channel::<snapshot::Request>(1);
        let maint = (!self.once).then(|| {
            tokio::spawn(
                Maintainer {
                    replica: replica.clone(),
                    meta: MetaDir::new(&self.cfg.meta_path).with_mode_from(&self.cfg.path),
                    db: self.cfg.path.clone(),
                    settings: self.shared.maintenance.clone(),
                    pool: self.shared.pool.clone(),
                    pos: pos_tx.subscribe(),
                    replicated: self.handle.inner.replicated.subscribe(),
                    snap_tx,
                    shutdown: self.shutdown.clone(),
                }
                .run(),
            )
        });

        let mut follower = Some(Follower::new(self.cfg.clone()));
        let mut ok = true;
        let mut backoff = Duration::ZERO;
        let mut errors = 0u32;
        let mut last_sync: Option<Instant> = None;
        let mut last_print = fingerprint(&self.cfg.path);
        let mut waiting_reported = false;
        let window = self.cfg.replica.sync_interval;
        let mut first = true;
        // inotify reports this database's changes, so the timer is only a safety net.
        let mut watched = false;
        // `/sync` requests waiting for the next pass.
        let mut replies: Vec<SyncReply> = Vec::new();
        let mut stopping = self.shutdown.clone();
        let mut abandoned = false;
        // `monitor-interval: 0`: as in Litestream, the database is not monitored; it is synced
        // only when asked (`ls-engine sync`), and not at shutdown unless it was asked before.
        let unmonitored = self.cfg.monitor_interval.is_zero() && !self.once;
        if unmonitored {
            warn!(db = %path, "monitor-interval is 0: not synced unless asked (ls-engine sync)");
        }
        let mut asked = false;

        'outer: loop {
            if unmonitored {
                loop {
                    tokio::select! {
                        _ = self.shutdown.changed() => break 'outer,
                        Some(r) = self.sync_rx.recv() => {
                            replies.push(r);
                            asked = true;
                            break;
                        }
                        // The maintainer's snapshot still gets its answer, so its loop (and
                        // the compaction of what `sync` shipped) never waits on us.
                        Some(req) = snap_rx.recv() => {
                            answer_snapshot(&mut follower, &self.cfg, req).await;
                        }
                    }
                }
            } else if !first {
                if !backoff.is_zero() {
                    tokio::select! {
                        _ = self.shutdown.changed() => break 'outer,
                        _ = tokio::time::sleep(backoff) => {}
                        Some(r) = self.sync_rx.recv() => replies.push(r),
                    }
                } else {
                    // Wait for a change: inotify, or the fallback timer finding a changed
                    // fingerprint (or a due time-based checkpoint). With inotify, the timer
                    // only wakes for a time-based checkpoint and a rare safety sweep.
                    loop {
                        let notified = async {
                            match &self.notify {
                                Some(w) => w.notify.notified().await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            _ = self.shutdown.changed() => break 'outer,
                            _ = notified => break,
                            Some(r) = self.sync_rx.recv() => {
                                replies.push(r);
                                break;
                            }
                            Some(req) = snap_rx.recv() => {
                                // Only the job is taken here; it is built and uploaded
                                // elsewhere while this loop goes on syncing.
                                answer_snapshot(&mut follower, &self.cfg, req).await;
                                continue;
                            }
                            _ = tokio::time::sleep(wake::fallback_wait(
                                std::time::SystemTime::now(),
                                self.cfg.monitor_interval,
                                watched,
                                follower.as_ref().and_then(|f| f.checkpoint_wait()),
                            )) => {
                                if fingerprint(&self.cfg.path) != last_print {
                                    break;
                                }
                                if follower.as_ref().is_some_and(|f| f.checkpoint_due()) {
                                    break;
                                }
                            }
                        }
                    }
                    // Leading-edge batching: the first change after a quiet spell ships at
                    // once; later ones within the window wait for its end, so a busy database
                    // makes at most one L0 file per window.
                    // A `/sync` request does not wait for the window.
                    // The application's own checkpoint waiting on our read mark ends the
                    // window early (docs/checkpoints.md#the-applications-own-checkpoints).
                    if let Some(t) = last_sync.filter(|_| replies.is_empty()) {
                        let next = t + window;
                        while Instant::now() < next {
                            let peek = follower
                                .as_ref()
                                .is_some_and(Follower::watches_app_checkpoints);
                            let until = if peek {
                                next.min(Instant::now() + wake::APP_CHECKPOINT_PEEK)
                            } else {
                                next
                            };
                            tokio::select! {
                                _ = self.shutdown.changed() => break 'outer,
                                _ = tokio::time::sleep_until(until.into()) => {}
                                Some(r) = self.sync_rx.recv() => {
                                    replies.push(r);
                                    break;
                                }
                            }
                            if peek
                                && follower
                                    .as_mut()
                                    .is_some_and(Follower::app_checkpoint_waits)
                            {
                                break;
                            }
                        }
                    }
                }
            }
            first = false;
            if *self.shutdown.borrow() {
                break;
            }

            // Re-armed before the step: a write landing during it wakes us again, and the
            // step reads whatever was written before.
            watched = self.notify.as_ref().is_some_and(DbWatch::arm);
            // Taken before the step so that a commit landing during it still differs.
            last_print = fingerprint(&self.cfg.path);
            if self.cfg.replica.auto_recover && self.handle.take_local_damage() {
                self.auto_recover(&mut follower).await;
            }
            let started = Instant::now();
            let before = *pos_tx.borrow();
            // Shutdown during a pass gives it the shutdown window (a silent server must not
            // hold the exit); a pass still running then is abandoned with the final sync.
            let r = {
                let step = self.step(&mut follower, &replica, &pos_tx, &mut waiting_reported);
                tokio::pin!(step);
                tokio::select! {
                    r = &mut step => Some(r),
                    _ = stopped(&mut stopping) => within(self.shared.shutdown_sync_timeout, &mut step).await,
                }
            };
            let Some(r) = r else {
                // The final sync still runs (it is local) unless the follower is out on a
                // blocking thread, where the abandoned pass left it.
                abandoned = follower.is_none();
                let timeout = format_go_duration(self.shared.shutdown_sync_timeout);
                if abandoned {
                    warn!(db = %path, timeout = %timeout, "sync pass unfinished at shutdown-sync-timeout; abandoned, no final sync");
                } else {
                    warn!(db = %path, timeout = %timeout, "sync pass unfinished at shutdown-sync-timeout; abandoned");
                }
                break 'outer;
            };
            // Only a step that wrote an L0 file opens a batching window; wake-ups caused by our
            // own bookkeeping writes must not delay the next real change.
            if *pos_tx.borrow() != before {
                last_sync = Some(started);
                crate::memory::note_activity();
            }
            self.handle
                .inner
                .step_failing
                .store(r.is_err(), Ordering::Relaxed);
            for reply in replies.drain(..) {
                let _ = reply.send(match &r {
                    Ok(()) => Ok(*pos_tx.borrow()),
                    Err(e) => Err(e.to_string()),
                });
            }
            match r {
                Ok(()) => {
                    if errors > 0 {
                        info!(db = %path, previous_errors = errors, "sync recovered");
                    }
                    errors = 0;
                    backoff = Duration::ZERO;
                }
                Err(e @ Error::Conflict { .. }) => {
                    // Another writer's replica: retrying cannot help (as in the uploader).
                    ok = false;
                    error!(db = %path, error = %e, "replica sync stopped");
                    self.stop.send_replace(true);
                    break;
                }
                Err(e @ Error::LocalL0 { .. }) if self.cfg.replica.auto_recover => {
                    errors += 1;
                    error!(db = %path, error = %e, consecutive_errors = errors, "sync error");
                    self.auto_recover(&mut follower).await;
                }
                Err(e) => {
                    errors += 1;
                    ok = false;
                    backoff = next_backoff(backoff, self.cfg.monitor_interval);
                    error!(db = %path, error = %e, consecutive_errors = errors, backoff = %format_go_duration(backoff), "sync error");
                    // Start clean next time: reopen connections, re-derive the position.
                    if let Some(mut f) = follower.take() {
                        let _ = tokio::task::spawn_blocking(move || f.close()).await;
                    }
                }
            }
            if self.once {
                break;
            }
        }

        // Final sync, then let the uploader drain and stop. After a pass abandoned while the
        // follower was busy on a blocking thread, nothing more is read or written.
        let fin = if abandoned {
            Err(Error::Other("sync pass abandoned at shutdown".into()))
        } else if unmonitored && !asked {
            Ok(*pos_tx.borrow())
        } else {
            blocking(&mut follower, &self.cfg, |f| f.final_sync()).await
        };
        match fin {
            Ok(pos) => {
                pos_tx.send_replace(pos);
                self.handle.set_local(pos);
            }
            // A database removed from a watched directory is stopped after it is gone.
            Err(e) if !self.cfg.path.exists() => {
                ok = false;
                warn!(db = %path, error = %e, "database removed; no final sync");
            }
            Err(e) => {
                ok = false;
                error!(db = %path, error = %e, "final sync failed");
            }
        }
        drop(pos_tx);
        match up.await {
            Ok(true) => {}
            Ok(false) => ok = false,
            Err(e) => {
                ok = false;
                error!(db = %path, error = %e, "uploader failed");
            }
        }
        if let Some(mut m) = maint {
            // A compaction or snapshot upload in flight gets the shutdown window to finish; a
            // slow or stuck server must not hold the exit past it. An abandoned job leaves no
            // published file (uploads are whole objects) and is made again from the same
            // inputs at the next start.
            let grace = self.shared.shutdown_sync_timeout;
            if within(grace, &mut m).await.is_none() {
                m.abort();
                warn!(db = %path, timeout = %format_go_duration(grace), "maintenance still running at shutdown-sync-timeout; abandoned");
            }
        }
        if self.force_snapshot && ok {
            if let Err(e) = self.write_snapshot(&mut follower, &replica).await {
                ok = false;
                error!(db = %path, error = %e, "snapshot failed");
            }
        }
        if self.enforce_retention && ok {
            // Snapshot retention and the TXID floor it sets for levels 1..n, as Litestream's
            // `EnforceSnapshotRetention`; L0 retention is left to its own schedule.
            let p = self.shared.maintenance.policy;
            let now = std::time::SystemTime::now();
            if let Err(e) = retention::enforce_snapshots(&replica, p, now).await {
                ok = false;
                error!(db = %path, error = %e, "retention enforcement failed");
            }
        }
        if let Some(mut f) = follower.take() {
            let _ = tokio::task::spawn_blocking(move || f.close()).await;
        }
        ok
    }

    /// `auto-recover` (docs/wal.md#auto-recover): a local L0 file missing or corrupt is
    /// local state lost, so the local L0 files are removed, as `reset` removes them, and the
    /// database is opened afresh: it adopts the replica's position and writes a snapshot, which
    /// holds every page, so nothing the damaged files held is lost to the replica.
    async fn auto_recover(&self, follower: &mut Option<Follower>) {
        let path = self.cfg.path.display().to_string();
        warn!(db = %path, "auto-recovery enabled, resetting local state");
        if let Some(mut f) = follower.take() {
            let _ = tokio::task::spawn_blocking(move || f.close()).await;
        }
        let meta = MetaDir::new(&self.cfg.meta_path).with_mode_from(&self.cfg.path);
        match tokio::task::spawn_blocking(move || meta.clear_l0()).await {
            Ok(Ok(())) => info!(db = %path, "auto-recovery complete, resuming replication"),
            Ok(Err(e)) => error!(db = %path, error = %e, "auto-recovery failed"),
            Err(e) => error!(db = %path, error = %e, "auto-recovery failed"),
        }
    }

    /// `-force-snapshot`: a level-9 snapshot `1-<txid>` straight to the replica.
    async fn write_snapshot(
        &self,
        follower: &mut Option<Follower>,
        replica: &SharedReplica,
    ) -> Result<()> {
        let Some(job) = blocking(follower, &self.cfg, |f| f.snapshot_job()).await? else {
            return Ok(());
        };
        let Some((txid, ts, path)) = snapshot::build(job).await? else {
            return Ok(());
        };
        let info = snapshot::upload(replica, txid, ts, path).await?;
        info!(db = %self.cfg.path.display(), txid = %txid, size = info.size, "snapshot complete");
        Ok(())
    }

    async fn step(
        &self,
        follower: &mut Option<Follower>,
        replica: &SharedReplica,
        pos_tx: &watch::Sender<TxId>,
        waiting_reported: &mut bool,
    ) -> Result<()> {
        let cfg = &self.cfg;
        if !follower.as_ref().is_some_and(|f| f.is_open()) {
            let opened = blocking(follower, cfg, |f| f.open()).await?;
            if !opened {
                if self.once {
                    return Err(Error::Other(format!(
                        "database {} does not exist",
                        cfg.path.display()
                    )));
                }
                if !*waiting_reported {
                    info!(db = %cfg.path.display(), "database does not exist yet; waiting for it");
                    *waiting_reported = true;
                }
                return Ok(());
            }
            *waiting_reported = false;
            self.handle.inner.opened.store(true, Ordering::Relaxed);
            self.check_behind_replica(follower, replica).await?;
        }
        let pos = blocking(follower, cfg, |f| f.sync()).await?;
        pos_tx.send_replace(pos);
        self.handle.set_local(pos);
        Ok(())
    }

    /// docs/wal.md#database-behind-replica: if the replica is ahead of our local L0 files (local
    /// state lost, DB restored), adopt its newest file, of any level, so numbering continues after
    /// it; verify then snapshots. A replica ahead of local state that still describes the
    /// database is another writer's: a [`Error::Conflict`].
    async fn check_behind_replica(
        &self,
        follower: &mut Option<Follower>,
        replica: &SharedReplica,
    ) -> Result<()> {
        let local = follower.as_ref().map_or(TxId::ZERO, |f| f.pos());
        let Some(remote) = replica_newest(replica).await? else {
            return Ok(());
        };
        if local >= remote.max_txid {
            return Ok(());
        }
        // Every file we upload was written locally first, so a replica past our own chain, while
        // that chain still describes this database, was moved on by another writer: adopting
        // its position would put this database's pages on top of its state
        // (docs/replica-layout.md#one-writer-per-replica).
        if blocking(follower, &self.cfg, |f| f.continues_local_state()).await? {
            return Err(Error::Conflict {
                db: self.cfg.path.clone(),
                file: remote.relative_path(),
                local,
                replica: remote.max_txid,
            });
        }
        info!(db = %self.cfg.path.display(), db_txid = %local, replica_txid = %remote.max_txid, "detected database behind replica");
        let bytes = replica
            .read_range(remote.level, remote.min_txid, remote.max_txid, 0, None)
            .await?;
        let txid = remote.max_txid;
        blocking(follower, &self.cfg, move |f| {
            f.adopt_replica_l0(txid, &bytes)
        })
        .await?;
        info!(db = %self.cfg.path.display(), txid = %txid, level = remote.level.0, "fetched latest L0 file from replica");
        Ok(())
    }
}
