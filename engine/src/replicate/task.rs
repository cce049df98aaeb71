//! One database's task: it waits for a reason to sync, runs a pass of its follower on a blocking
//! thread, answers `/sync` requests and the maintainer's snapshot requests, and at shutdown makes
//! the final sync and lets its uploader and maintainer finish (docs/architecture.md).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ltx_codec::TxId;
use storage::value::format_duration as format_go_duration;
use storage::SharedReplica;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{next_backoff, open_replica, stopped, within, DbHandle, Shared, SyncReply};
use crate::config::DbConfig;
use crate::error::{Error, Result};
use crate::follower::Follower;
use crate::maintain::Maintainer;
use crate::meta::MetaDir;
use crate::retention;
use crate::snapshot;
use crate::uploader::{replica_newest, upload_loop, Uploader};
use crate::wake;
use crate::watch::DbWatch;

pub(super) struct DbTask {
    pub(super) cfg: Arc<DbConfig>,
    pub(super) shared: Shared,
    pub(super) notify: Option<DbWatch>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Turned on by the uploader when it finds another writer on the replica.
    pub(super) stop: watch::Sender<bool>,
    pub(super) handle: DbHandle,
    pub(super) sync_rx: mpsc::UnboundedReceiver<SyncReply>,
    pub(super) once: bool,
    pub(super) force_snapshot: bool,
    pub(super) enforce_retention: bool,
}

/// Why the task woke up.
enum Wake {
    /// The first pass, at start.
    First,
    /// The database or its WAL changed (inotify, or the fallback timer's fingerprint), or a
    /// time-based checkpoint is due.
    Changed,
    /// The backoff after a failed pass ran out.
    Retry,
    /// A `/sync` request of the control socket.
    Asked(SyncReply),
    /// The maintainer asks for a snapshot job (taken from the follower, built elsewhere).
    Snapshot(snapshot::Request),
    /// Shutdown.
    Shutdown,
}

/// Whether the loop goes on after a pass.
enum Flow {
    Go,
    Stop,
}

/// The loop's state between wake-ups.
struct Run {
    replica: SharedReplica,
    pos_tx: watch::Sender<TxId>,
    snap_rx: mpsc::Receiver<snapshot::Request>,
    follower: Option<Follower>,
    ok: bool,
    backoff: Duration,
    errors: u32,
    last_sync: Option<Instant>,
    last_print: Fingerprint,
    waiting_reported: bool,
    first: bool,
    /// inotify reports this database's changes, so the timer is only a safety net.
    watched: bool,
    /// `/sync` requests waiting for the next pass.
    replies: Vec<SyncReply>,
    stopping: watch::Receiver<bool>,
    abandoned: bool,
    /// `monitor-interval: 0`: as in Litestream, the database is not monitored; it is synced
    /// only when asked (`ls-engine sync`), and not at shutdown unless it was asked before.
    unmonitored: bool,
    asked: bool,
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

/// Answers the maintainer's snapshot request with the job taken from the follower (built and
/// uploaded elsewhere, so the database's loop goes on).
async fn answer_snapshot(slot: &mut Option<Follower>, cfg: &Arc<DbConfig>, req: snapshot::Request) {
    let r = blocking(slot, cfg, |f| f.snapshot_job()).await;
    let _ = req.send(r);
}

/// Runs `op` on a blocking thread with the follower moved in and back out.
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
    pub(super) async fn run(mut self) -> bool {
        let path = self.cfg.path.display().to_string();
        let replica = match open_replica(&self.cfg.replica, &self.cfg.path) {
            Ok(r) => r,
            Err(e) => {
                error!(db = %path, error = %e, "cannot open replica");
                return false;
            }
        };
        let (pos_tx, pos_rx) = watch::channel(TxId::ZERO);
        let up = self.spawn_uploader(&replica, pos_rx);
        // Compaction, snapshots and retention run beside the follower, never on its task.
        let (snap_tx, snap_rx) = mpsc::channel::<snapshot::Request>(1);
        let maint = (!self.once).then(|| self.spawn_maintainer(&replica, &pos_tx, snap_tx));
        let unmonitored = self.cfg.monitor_interval.is_zero() && !self.once;
        if unmonitored {
            warn!(db = %path, "monitor-interval is 0: not synced unless asked (ls-engine sync)");
        }
        let mut r = Run {
            replica,
            pos_tx,
            snap_rx,
            follower: Some(Follower::new(self.cfg.clone())),
            ok: true,
            backoff: Duration::ZERO,
            errors: 0,
            last_sync: None,
            last_print: fingerprint(&self.cfg.path),
            waiting_reported: false,
            first: true,
            watched: false,
            replies: Vec::new(),
            stopping: self.shutdown.clone(),
            abandoned: false,
            unmonitored,
            asked: false,
        };

        loop {
            match self.wake(&mut r).await {
                Wake::Shutdown => break,
                Wake::Snapshot(req) => {
                    answer_snapshot(&mut r.follower, &self.cfg, req).await;
                    continue;
                }
                Wake::Asked(reply) => {
                    r.replies.push(reply);
                    r.asked = true;
                }
                Wake::Changed => {
                    if !self.batching_window(&mut r).await {
                        break;
                    }
                }
                Wake::First | Wake::Retry => {}
            }
            if *self.shutdown.borrow() {
                break;
            }
            if let Flow::Stop = self.pass(&mut r).await {
                break;
            }
            if self.once {
                break;
            }
        }
        self.finish(r, up, maint).await
    }

    fn spawn_uploader(
        &self,
        replica: &SharedReplica,
        pos_rx: watch::Receiver<TxId>,
    ) -> JoinHandle<bool> {
        let uploader = Uploader::new(
            replica.clone(),
            MetaDir::new(&self.cfg.meta_path).with_mode_from(&self.cfg.path),
            self.cfg.path.clone(),
        )
        .with_batch(self.cfg.replica.max_sync_ltx_files);
        tokio::spawn(upload_loop(
            uploader,
            pos_rx,
            self.cfg.replica.sync_interval,
            (
                self.shared.shutdown_sync_timeout,
                self.shared.shutdown_sync_interval,
            ),
            self.handle.clone(),
            self.stop.clone(),
        ))
    }

    fn spawn_maintainer(
        &self,
        replica: &SharedReplica,
        pos_tx: &watch::Sender<TxId>,
        snap_tx: mpsc::Sender<snapshot::Request>,
    ) -> JoinHandle<()> {
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
    }

    /// Waits for the next reason to act.
    async fn wake(&mut self, r: &mut Run) -> Wake {
        if r.unmonitored {
            return tokio::select! {
                _ = self.shutdown.changed() => Wake::Shutdown,
                Some(reply) = self.sync_rx.recv() => Wake::Asked(reply),
                // The maintainer's snapshot still gets its answer, so its loop (and the
                // compaction of what `sync` shipped) never waits on us.
                Some(req) = r.snap_rx.recv() => Wake::Snapshot(req),
            };
        }
        if r.first {
            r.first = false;
            return Wake::First;
        }
        if !r.backoff.is_zero() {
            return tokio::select! {
                _ = self.shutdown.changed() => Wake::Shutdown,
                _ = tokio::time::sleep(r.backoff) => Wake::Retry,
                Some(reply) = self.sync_rx.recv() => Wake::Asked(reply),
            };
        }
        // Wait for a change: inotify, or the fallback timer finding a changed fingerprint (or a
        // due time-based checkpoint). With inotify, the timer only wakes for a time-based
        // checkpoint and a rare safety sweep.
        loop {
            let notified = async {
                match &self.notify {
                    Some(w) => w.notify.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.changed() => return Wake::Shutdown,
                _ = notified => return Wake::Changed,
                Some(reply) = self.sync_rx.recv() => return Wake::Asked(reply),
                // Only the job is taken; it is built and uploaded elsewhere while this loop goes
                // on syncing.
                Some(req) = r.snap_rx.recv() => return Wake::Snapshot(req),
                _ = tokio::time::sleep(wake::fallback_wait(
                    std::time::SystemTime::now(),
                    self.cfg.monitor_interval,
                    r.watched,
                    r.follower.as_ref().and_then(|f| f.checkpoint_wait()),
                )) => {
                    if fingerprint(&self.cfg.path) != r.last_print
                        || r.follower.as_ref().is_some_and(|f| f.checkpoint_due())
                    {
                        return Wake::Changed;
                    }
                }
            }
        }
    }

    /// Leading-edge batching: the first change after a quiet spell ships at once; later ones
    /// within the window wait for its end, so a busy database makes at most one L0 file per
    /// window. A `/sync` request does not wait for the window, and the application's own
    /// checkpoint waiting on our read mark ends it early
    /// (docs/checkpoints.md#the-applications-own-checkpoints). False on shutdown.
    async fn batching_window(&mut self, r: &mut Run) -> bool {
        let Some(t) = r.last_sync else {
            return true;
        };
        let next = t + self.cfg.replica.sync_interval;
        while Instant::now() < next {
            let peek = r
                .follower
                .as_ref()
                .is_some_and(Follower::watches_app_checkpoints);
            let until = if peek {
                next.min(Instant::now() + wake::APP_CHECKPOINT_PEEK)
            } else {
                next
            };
            tokio::select! {
                _ = self.shutdown.changed() => return false,
                _ = tokio::time::sleep_until(until.into()) => {}
                Some(reply) = self.sync_rx.recv() => {
                    r.replies.push(reply);
                    return true;
                }
            }
            if peek
                && r.follower
                    .as_mut()
                    .is_some_and(Follower::app_checkpoint_waits)
            {
                return true;
            }
        }
        true
    }

    /// One pass, its `/sync` replies, and what its result means for the next one.
    async fn pass(&mut self, r: &mut Run) -> Flow {
        // Only for log lines, which are rare: no string is built per pass.
        let path = self.cfg.path.display();
        // Re-armed before the step: a write landing during it wakes us again, and the step
        // reads whatever was written before.
        r.watched = self.notify.as_ref().is_some_and(DbWatch::arm);
        // Taken before the step so that a commit landing during it still differs.
        r.last_print = fingerprint(&self.cfg.path);
        if self.cfg.replica.auto_recover && self.handle.take_local_damage() {
            self.auto_recover(&mut r.follower).await;
        }
        let started = Instant::now();
        let before = *r.pos_tx.borrow();
        // Shutdown during a pass gives it the shutdown window (a silent server must not hold
        // the exit); a pass still running then is abandoned with the final sync.
        let res = {
            let step = self.step(
                &mut r.follower,
                &r.replica,
                &r.pos_tx,
                &mut r.waiting_reported,
            );
            tokio::pin!(step);
            tokio::select! {
                res = &mut step => Some(res),
                _ = stopped(&mut r.stopping) => within(self.shared.shutdown_sync_timeout, &mut step).await,
            }
        };
        let Some(res) = res else {
            // The final sync still runs (it is local) unless the follower is out on a blocking
            // thread, where the abandoned pass left it.
            r.abandoned = r.follower.is_none();
            let timeout = format_go_duration(self.shared.shutdown_sync_timeout);
            if r.abandoned {
                warn!(db = %path, timeout = %timeout, "sync pass unfinished at shutdown-sync-timeout; abandoned, no final sync");
            } else {
                warn!(db = %path, timeout = %timeout, "sync pass unfinished at shutdown-sync-timeout; abandoned");
            }
            return Flow::Stop;
        };
        // Only a step that wrote an L0 file opens a batching window; wake-ups caused by our own
        // bookkeeping writes must not delay the next real change.
        if *r.pos_tx.borrow() != before {
            r.last_sync = Some(started);
            crate::memory::note_activity();
        }
        self.handle
            .inner
            .step_failing
            .store(res.is_err(), Ordering::Relaxed);
        for reply in r.replies.drain(..) {
            let _ = reply.send(match &res {
                Ok(()) => Ok(*r.pos_tx.borrow()),
                Err(e) => Err(e.to_string()),
            });
        }
        match res {
            Ok(()) => {
                if r.errors > 0 {
                    info!(db = %path, previous_errors = r.errors, "sync recovered");
                }
                r.errors = 0;
                r.backoff = Duration::ZERO;
            }
            Err(e @ Error::Conflict { .. }) => {
                // Another writer's replica: retrying cannot help (as in the uploader).
                r.ok = false;
                self.handle.note_conflict();
                error!(db = %path, error = %e, "replica sync stopped");
                self.stop.send_replace(true);
                return Flow::Stop;
            }
            Err(e @ Error::LocalL0 { .. }) if self.cfg.replica.auto_recover => {
                r.errors += 1;
                error!(db = %path, error = %e, consecutive_errors = r.errors, "sync error");
                self.auto_recover(&mut r.follower).await;
            }
            Err(e) => {
                r.errors += 1;
                r.ok = false;
                r.backoff = next_backoff(r.backoff, self.cfg.monitor_interval);
                error!(db = %path, error = %e, consecutive_errors = r.errors, backoff = %format_go_duration(r.backoff), "sync error");
                // Start clean next time: reopen connections, re-derive the position.
                if let Some(mut f) = r.follower.take() {
                    let _ = tokio::task::spawn_blocking(move || f.close()).await;
                }
            }
        }
        Flow::Go
    }

    /// Final sync, then let the uploader drain and stop. After a pass abandoned while the
    /// follower was busy on a blocking thread, nothing more is read or written.
    async fn finish(
        &mut self,
        mut r: Run,
        up: JoinHandle<bool>,
        maint: Option<JoinHandle<()>>,
    ) -> bool {
        let path = self.cfg.path.display().to_string();
        let fin = if r.abandoned {
            Err(Error::Other("sync pass abandoned at shutdown".into()))
        } else if r.unmonitored && !r.asked {
            Ok(*r.pos_tx.borrow())
        } else {
            blocking(&mut r.follower, &self.cfg, |f| f.final_sync()).await
        };
        match fin {
            Ok(pos) => {
                r.pos_tx.send_replace(pos);
                self.handle.set_local(pos);
            }
            // A database removed from a watched directory is stopped after it is gone.
            Err(e) if !self.cfg.path.exists() => {
                r.ok = false;
                warn!(db = %path, error = %e, "database removed; no final sync");
            }
            Err(e) => {
                r.ok = false;
                error!(db = %path, error = %e, "final sync failed");
            }
        }
        let Run {
            replica,
            pos_tx,
            mut follower,
            mut ok,
            ..
        } = r;
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
            // published file (uploads are whole objects) and is made again from the same inputs
            // at the next start. On a replica another writer holds, nothing more is written.
            let grace = if self.handle.conflicted() {
                Duration::ZERO
            } else {
                self.shared.shutdown_sync_timeout
            };
            if within(grace, &mut m).await.is_none() {
                m.abort();
                if self.handle.conflicted() {
                    warn!(db = %path, "maintenance stopped: another writer holds the replica");
                } else {
                    warn!(db = %path, timeout = %format_go_duration(grace), "maintenance still running at shutdown-sync-timeout; abandoned");
                }
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
        let bytes = replica.read_range(remote.ltx_name(), 0, None).await?;
        let txid = remote.max_txid;
        blocking(follower, &self.cfg, move |f| {
            f.adopt_replica_l0(txid, &bytes)
        })
        .await?;
        info!(db = %self.cfg.path.display(), txid = %txid, level = remote.level.0, "fetched latest L0 file from replica");
        Ok(())
    }
}
