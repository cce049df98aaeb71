//! The checkpoint policy's decisions carried out (docs/wal.md#checkpoints).

use std::fs::File;
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info};

use super::{be32, file_size, Follower, HDR};
use crate::checkpoint::{self, Decision};
use crate::error::{Error, Result};
use crate::sqlite::CheckpointMode;
use crate::sync_status::{Phase, SyncStatus};
use crate::verify::SyncPlan;
use crate::writeback;

/// Bytes committed during an unlocked round below which the next step takes the write lock.
const SEAL_BYTES: u64 = 1 << 20;
/// Unlocked rounds at most, for a writer faster than we can copy.
const MAX_ROUNDS: usize = 8;
/// How long the checkpoint under the write lock waits for another connection's checkpoint,
/// and how often it looks.
const SEAL_BUSY: Duration = Duration::from_millis(5);
const SEAL_BUSY_RETRY: Duration = Duration::from_micros(200);
/// Bytes of WAL not yet in the database file above which the checkpoint under the write lock
/// is not run: the lock is let go and the copy goes on without it, at most [`SEAL_TRIES`]
/// times; then the checkpoint is left to the next pass.
pub(super) const SEAL_BACKLOG: u64 = 32 << 20;
/// The same limit for an ordinary checkpoint (WAL under the truncate threshold): about what
/// encoding and copying take a few milliseconds for.
const SEAL_HOLD: u64 = 4 << 20;
const SEAL_TRIES: u32 = 3;
/// Bytes of WAL to copy above which an unlocked checkpoint writes the database back as it goes,
/// every [`TRICKLE_EVERY`] (docs/checkpoints.md#writing-the-database-back-during-a-long-copy).
const TRICKLE_BACKLOG: u64 = 16 << 20;
const TRICKLE_EVERY: Duration = Duration::from_millis(10);

impl Follower {
    pub(super) fn checkpoint_if_needed(&mut self, orig: u64, new: u64) -> Result<()> {
        if self.snapshot_reading() {
            debug!(db = %self.cfg.path.display(), "checkpoint deferred: a snapshot is reading");
            return Ok(());
        }
        let t = self.thresholds();
        if !t.exceeds_truncate(self.state.last_synced_wal_offset) {
            self.state.truncate_passive_failed = false;
        }
        let db_mtime = self
            .db
            .as_ref()
            .and_then(|d| d.file.metadata().ok())
            .and_then(|m| m.modified().ok());
        let since_mtime = db_mtime.and_then(|m| SystemTime::now().duration_since(m).ok());
        match checkpoint::decide(
            &t,
            orig,
            new,
            self.state.synced_since_checkpoint,
            since_mtime,
        ) {
            Decision::None => Ok(()),
            Decision::Emergency => {
                if !self.state.truncate_passive_failed {
                    match self.checkpoint(CheckpointMode::Passive) {
                        Err(e) if e.is_busy() => {
                            self.state.truncate_passive_failed = true;
                            debug!(db = %self.cfg.path.display(), "passive checkpoint skipped: database busy");
                        }
                        Err(e) => return Err(e),
                        Ok(true) => {
                            self.state.truncate_passive_failed = false;
                            if !t.exceeds_truncate(self.state.last_synced_wal_offset) {
                                info!(db = %self.cfg.path.display(), wal_size = orig, "wal restarted by passive checkpoint, skipping truncate checkpoint");
                                return Ok(());
                            }
                        }
                        Ok(false) => self.state.truncate_passive_failed = true,
                    }
                }
                info!(db = %self.cfg.path.display(), wal_size = orig, threshold = t.truncate_threshold(), "forcing truncate checkpoint");
                let restarted = self.checkpoint(CheckpointMode::Truncate);
                if matches!(restarted, Ok(true))
                    || !t.exceeds_truncate(self.state.last_synced_wal_offset)
                {
                    self.state.truncate_passive_failed = false;
                }
                restarted.map(|_| ())
            }
            Decision::Passive => match self.checkpoint(CheckpointMode::Passive) {
                Err(e) if e.is_busy() => {
                    debug!(db = %self.cfg.path.display(), "passive checkpoint skipped: database busy");
                    Ok(())
                }
                r => r.map(|_| ()),
            },
        }
    }

    /// Litestream's checkpoint procedure (docs/wal.md#checkpoints), arranged so that writers are
    /// blocked only for a few milliseconds (docs/checkpoints.md#the-procedure): the WAL is first
    /// copied into the database without the write lock, in rounds, each under a fresh read
    /// transaction that pins everything not yet in an L0 file; only then is the write lock taken,
    /// for what was committed during the last round. TRUNCATE is done the same way, its truncation
    /// by the `_litestream_seq` write that restarts the WAL, so it never waits for readers while it
    /// holds the write lock. Returns whether the WAL was restarted.
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<bool> {
        if self.snapshot_reading() {
            debug!(db = %self.cfg.path.display(), mode = mode.as_str(), "checkpoint deferred: a snapshot is reading");
            return Ok(false);
        }
        let status = self.metrics.clone();
        let status = &status.sync_status;
        // A checkpoint outside a sync pass is an operation of its own, ended here.
        let own = status.checkpoint(mode.as_str(), false);
        let r = self.checkpoint_steps(mode, status);
        if own {
            status.end(
                self.pos.0,
                file_size(&self.wal_path).unwrap_or(0),
                self.state.last_synced_wal_offset,
                r.as_ref().err().map(ToString::to_string),
            );
        }
        r
    }

    fn checkpoint_steps(&mut self, mode: CheckpointMode, status: &SyncStatus) -> Result<bool> {
        let before = self.read_wal_header()?;
        let mut spent = Duration::ZERO;
        let mut tries = 0;
        // What writers may wait on while we hold their lock. An application that leaves
        // checkpoints to us waits on nothing else: a few milliseconds of copying while the WAL
        // is small, and as it grows (a writer faster than the unlocked rounds) up to 1/16 of
        // it, so it stays bounded. One that checkpoints on its own already copies in its
        // commits what our read mark let through, and restarting the WAL soon is what keeps
        // those copies short: the larger limit. Past the truncate threshold, bounding the WAL
        // comes first (docs/checkpoints.md#the-procedure).
        let wal = self.state.last_synced_wal_offset;
        let hold = if mode == CheckpointMode::Truncate
            || self.thresholds().exceeds_truncate(wal)
            || self.app_checkpoints()
        {
            SEAL_BACKLOG
        } else {
            (wal / 16).clamp(SEAL_HOLD, SEAL_BACKLOG)
        };
        let (res, unlock) = loop {
            tries += 1;
            // After a try let go for another reader's backlog, the rounds run whatever the
            // application's own checkpoints seem to do: that backlog is theirs to copy.
            spent += self.backfill_unlocked(tries > 1)?;
            // A reader still holds the copy back: the lock would be let go at once, after a
            // flush of the WAL that competes with the writer for the disk.
            let backlog = self.wal_backlog();
            if backlog > hold {
                // Still in its transaction, the reader holds it back until that ends: the
                // next pass runs in the reader's gap instead. Gone, the next round copies it.
                let reader = self.reader_elsewhere();
                debug!(db = %self.cfg.path.display(), mode = mode.as_str(), backlog, tries, reader, "another reader holds the copy back; write lock not taken");
                if reader || tries >= SEAL_TRIES {
                    self.want_reader_gap();
                    break (Ok((1, -1, -1)), Ok(()));
                }
                continue;
            }
            // What the checkpoint under the lock must make durable first is only what was
            // written since this flush.
            self.flush_wal()?;
            // The barrier holds the write lock so the WAL is sealed between our last copy and
            // the checkpoint: nothing can be committed that we have not copied.
            self.open_db()?.conns.prepare_checkpoint()?;
            let asked = Instant::now();
            status.phase(Phase::CheckpointLock);
            self.open_db()?.conns.begin_write_lock()?;
            let locked = Instant::now();
            // With the lock held nothing more is committed: what is not yet in the database
            // file now is what writers would wait for us to encode and copy. A writer faster
            // than the unlocked rounds (or another reader holding their copy back) leaves more
            // than that: the lock is let go at once and the copy goes on without it
            // (docs/checkpoints.md#the-procedure).
            let backlog = self.wal_backlog();
            if backlog > hold {
                let unlock = self.open_db()?.conns.end_write_lock();
                debug!(db = %self.cfg.path.display(), mode = mode.as_str(), backlog, hold, tries, "too much to copy under the write lock; let go at once");
                if tries >= SEAL_TRIES {
                    if self.reader_elsewhere() {
                        self.want_reader_gap();
                    }
                    break (Ok((1, -1, -1)), unlock);
                }
                unlock?;
                continue;
            }
            // The last frames are copied out under the lock; making their L0 file durable waits
            // until writers are let go (docs/checkpoints.md#the-procedure says why that loses
            // nothing).
            let sealed = match self.verify_and_encode(true, 0) {
                Ok(e) => e,
                Err(e) => {
                    let _ = self.open_db()?.conns.end_write_lock();
                    return Err(e);
                }
            };
            let t = Instant::now();
            let synced_ms = (t - locked).as_secs_f64() * 1e3;
            status.phase(Phase::CheckpointExec);
            let res = self.sealed_checkpoint();
            spent += t.elapsed();
            let unlock = self.open_db()?.conns.end_write_lock();
            self.finish(sealed)?;
            debug!(
                db = %self.cfg.path.display(),
                mode = mode.as_str(),
                wait_ms = (locked - asked).as_secs_f64() * 1e3,
                synced_ms,
                held_ms = locked.elapsed().as_secs_f64() * 1e3,
                backlog,
                "write lock released"
            );
            break (res, unlock);
        };
        self.metrics.checkpoint_done(mode, spent, res.is_err());
        let (busy, log, done) = res?;
        unlock?;
        // Busy, or a few frames short of the end (the application's next transaction had begun
        // its read before our lock): the next try can restart the WAL at once.
        let short = u64::try_from(log.saturating_sub(done)).unwrap_or(u64::MAX);
        self.note_checkpoint_retry(busy != 0 || short <= self.cfg.min_checkpoint_page_n);
        debug!(
            system = "store",
            db = %self.cfg.path.display(),
            mode = mode.as_str(),
            result = %format!("{busy},{log},{done}"),
            "checkpoint"
        );
        // Only a WAL copied to its end can be restarted: a write otherwise adds a frame (a
        // page; 64 KiB at the largest) for nothing.
        if busy != 0 || done < log {
            self.state.synced_since_checkpoint = false;
            return Ok(false);
        }
        status.phase(Phase::CheckpointVerifyRestart);
        // The WAL file is cut down after the restart, in steps off this thread (`shrink`), not
        // by the restarting write itself, which would hold the write lock for the whole cut.
        self.open_db()?.conns.bump_seq()?;
        let after = self.read_wal_header()?;
        if before == after {
            // A reader kept the write from restarting the WAL: the write is a transaction of
            // ours that no L0 file holds yet. It is synced now, so a checkpoint in the last pass
            // before the engine stops leaves the replica exactly at the database.
            self.verify_and_sync(true, 0)?;
            self.state.synced_since_checkpoint = false;
            return Ok(false);
        }
        self.state.truncate_passive_failed = false;
        if mode == CheckpointMode::Passive {
            self.verify_and_sync(true, 0)?;
            self.state.synced_since_checkpoint = false;
            // The emergency tries PASSIVE first: a file it restarted over the truncate
            // threshold is cut down as after TRUNCATE.
            if self
                .thresholds()
                .exceeds_truncate(file_size(&self.wal_path).unwrap_or(0))
            {
                self.shrink.start(
                    &self.cfg,
                    &self.wal_path,
                    self.frame_size(),
                    self.app.peek(),
                );
            }
            return Ok(true);
        }
        // Litestream follows a TRUNCATE with a full snapshot. Our read transaction began on a
        // fully checkpointed WAL, so until we end it nothing more is copied into the database
        // and the new WAL generation only grows: the snapshot is consistent without the write
        // lock.
        let plan = SyncPlan {
            offset: HDR,
            salts: (be32(&after, 16), be32(&after, 20)),
            prev_commit: 0,
            snapshot: true,
            reason: Some("checkpoint boundary snapshot"),
            clear_synced_to_wal_end: false,
        };
        status.phase(Phase::CheckpointSnapshotBoundary);
        let r = self.sync_pass(plan, 0, true)?;
        self.apply(&r);
        self.state.synced_since_checkpoint = false;
        self.shrink.start(
            &self.cfg,
            &self.wal_path,
            self.frame_size(),
            self.app.peek(),
        );
        Ok(true)
    }

    /// The checkpoint under the write lock. PASSIVE never waits: it is busy when it finds the
    /// checkpointer lock taken, which happens when the application's own checkpoint (SQLite runs
    /// one after each commit while the WAL is over `wal_autocheckpoint`) is still running. That
    /// one is short, as it can copy no further than our read mark, so it is retried for up to
    /// [`SEAL_BUSY`] before the checkpoint is left to the next pass.
    fn sealed_checkpoint(&mut self) -> Result<(i64, i64, i64)> {
        let until = Instant::now() + SEAL_BUSY;
        loop {
            let r = self.open_db()?.conns.checkpoint(CheckpointMode::Passive)?;
            if r.0 == 0 || Instant::now() >= until {
                return Ok(r);
            }
            std::thread::sleep(SEAL_BUSY_RETRY);
        }
    }

    /// Copies the WAL into the database without blocking writers: sync everything to L0, move
    /// our read mark to the WAL's end (a new read transaction begun before the old one ends, so
    /// no frame is ever unpinned), run a PASSIVE checkpoint, which cannot go past that mark, and
    /// flush both files so the checkpoint under the write lock has little to write or sync.
    /// Repeats while the rounds get shorter and the writer committed more than
    /// [`SEAL_BYTES`] during the last one. Returns the time spent checkpointing.
    fn backfill_unlocked(&mut self, force: bool) -> Result<Duration> {
        let mut spent = Duration::ZERO;
        let mut last = u64::MAX;
        // While the application checkpoints on its own and keeps up with our mark, the lock is
        // left a few MB to copy without any round, and each round would cost an L0 file.
        let rounds = if !force && self.app_keeps_up() {
            0
        } else {
            MAX_ROUNDS
        };
        for round in 0..rounds {
            let before = self.state.last_synced_wal_offset;
            let r = self.sync_through(true)?;
            let copied = r.new_wal_size.saturating_sub(before);
            // Round 0's copy is the ordinary pass's; from round 1 on it is what the writer
            // committed while we backfilled, which the write lock would have to wait for.
            if round > 0 && (copied <= SEAL_BYTES || copied >= last) {
                break;
            }
            if round > 0 {
                last = copied;
            }
            let t = Instant::now();
            let backlog = self.wal_backlog();
            let od = self.open_db()?;
            od.conns.refresh_read_lock()?;
            // A long copy dirties up to its whole size in database pages before SQLite's fsync
            // at the end: under a memory limit those pages cannot be reclaimed until written.
            let trickle = (backlog > TRICKLE_BACKLOG)
                .then(|| writeback::Trickle::start(od.file.clone(), TRICKLE_EVERY));
            let (busy, log, done) = od.conns.checkpoint_pinned()?;
            drop(trickle);
            spent += t.elapsed();
            od.file
                .sync_data()
                .map_err(|e| Error::io("fsync database", &self.cfg.path, e))?;
            debug!(db = %self.cfg.path.display(), round, copied, busy, log, done, "backfilled without the write lock");
        }
        Ok(spent)
    }

    /// Writes the WAL's dirty pages to disk (the application's commits at `synchronous=NORMAL`
    /// leave them to the checkpoint).
    fn flush_wal(&self) -> Result<()> {
        match File::open(&self.wal_path) {
            Ok(w) => w
                .sync_data()
                .map_err(|e| Error::io("fsync WAL", &self.wal_path, e)),
            Err(_) => Ok(()),
        }
    }
}
