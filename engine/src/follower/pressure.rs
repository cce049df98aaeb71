//! When the application's own checkpoints are held back by our read mark, the next pass runs
//! without waiting for the end of its sync window (docs/checkpoints.md#the-applications-own-checkpoints).

use std::time::{Duration, Instant};

use super::checkpointing::SEAL_BACKLOG;
use super::{Follower, HDR};
use crate::shm::{ShmPeek, WalIndex};

/// What the follower has seen of other connections' checkpoints, through the wal-index.
pub(super) struct AppCheckpoints {
    shm: ShmPeek,
    /// The wal-index when the last pass ended.
    after_pass: Option<WalIndex>,
    /// Another connection copied frames into the database between two of our passes: the
    /// application checkpoints on its own (SQLite's `wal_autocheckpoint`, by default).
    seen: bool,
    /// Our last checkpoint did not restart the WAL for a reason that passes at once: another
    /// checkpoint was running, or a transaction of the application had begun just before.
    retry: bool,
    /// Passes that began a while after the last one ended (a sync window, not the next part of
    /// a long WAL), with a checkpoint's worth of frames in the WAL, and no checkpoint of the
    /// application seen: after [`UNDECIDED`] of them, it is taken to leave checkpoints to us.
    quiet: u8,
    /// When the last pass ended.
    ended: Option<Instant>,
    /// Our last checkpoint was left because another process's reader held the copy back: the
    /// next pass runs as soon as no such reader is in a transaction
    /// (docs/checkpoints.md#a-reader-that-held-the-copy-back).
    gap_wanted: bool,
}

/// How far behind the WAL's end, in `min-checkpoint-page-count`s, the application's
/// checkpoints may be for ours to copy the rest under the write lock without unlocked rounds.
const KEEPS_UP: u64 = 4;

/// A pass that begins sooner than this after the last one is not after a sync window.
const WINDOW: Duration = Duration::from_millis(100);

/// Bytes of WAL not yet in the database file above which a reader's gap is not used: copying
/// them takes longer than a gap lasts (600 MB took 0.55 s in the 4 GB benchmark, whose reader
/// pauses 0.3 s), and the copy competes with the writer for the disk for nothing.
const GAP_BACKLOG: u64 = 128 << 20;

/// Sync windows watched for the application's first checkpoint.
const UNDECIDED: u8 = 3;

impl AppCheckpoints {
    pub(super) fn new(shm: ShmPeek) -> AppCheckpoints {
        AppCheckpoints {
            shm,
            after_pass: None,
            seen: false,
            retry: false,
            quiet: 0,
            ended: None,
            gap_wanted: false,
        }
    }

    /// The follower's one peek at the wal-index, for its other threads to share.
    pub(super) fn peek(&self) -> &ShmPeek {
        &self.shm
    }

    /// Reads the wal-index and notes a checkpoint that was not ours.
    fn look(&mut self) -> Option<WalIndex> {
        let now = self.shm.read()?;
        // Only a checkpoint copies frames, and ours run inside passes; a restart in between
        // would set the count back, never forward.
        if self
            .after_pass
            .is_some_and(|p| now.n_backfill > p.n_backfill)
        {
            self.seen = true;
        }
        Some(now)
    }
}

impl Follower {
    /// The application checkpoints on its own, and the WAL holds a checkpoint's worth of frames
    /// (`min-checkpoint-page-count`) that our read mark keeps it from restarting over: the caller
    /// runs the next pass now, and that pass checkpoints as Litestream's would at its next sync.
    /// When our checkpoint could not restart the WAL either because of another reader, the
    /// next early pass waits for the WAL to double, so a long reader costs a few passes, not one
    /// per look.
    pub fn app_checkpoint_waits(&mut self) -> bool {
        let min = self.cfg.min_checkpoint_page_n;
        let frame = self.frame_size();
        if min == 0 || self.page_size() == 0 {
            return false;
        }
        // In a reader's gap, a backlog small enough to copy before it comes back.
        if self.app.gap_wanted
            && self.wal_backlog() <= GAP_BACKLOG
            && self.app.shm.readers_elsewhere() == Some(false)
        {
            return true;
        }
        let Some(now) = self.app.look() else {
            return false;
        };
        let after = self.app.after_pass.map_or(0, |p| u64::from(p.mx_frame));
        let synced = self.state.last_synced_wal_offset.saturating_sub(HDR) / frame;
        let frames = u64::from(now.mx_frame);
        // A WAL still over the threshold after our pass was not restarted: because of a long
        // reader (wait for the WAL to double) or of something that passes (try again after
        // another checkpoint's worth, not at once: a writer committing back to back always
        // has its next transaction begun, and a checkpoint per look would slow it down).
        let floor = match (after >= min, self.app.retry) {
            (false, _) => min,
            (true, true) => after + min,
            (true, false) => 2 * after,
        };
        // Not yet known to checkpoint on its own: our read mark, taken before the writer began,
        // may be what keeps its checkpoints from copying anything we could see. A backlog of
        // several checkpoints' worth runs the pass, whose checkpoint moves the mark on.
        let undecided = !self.app.seen && self.app.quiet < UNDECIDED;
        if undecided && frames >= KEEPS_UP * min && frames > synced {
            return true;
        }
        self.app.seen && frames >= floor && frames > synced
    }

    /// Whether [`Follower::app_checkpoint_waits`] is worth asking during a sync window: the
    /// application was seen checkpointing on its own, or it is too early to tell. The first
    /// windows are watched so that an application's first checkpoint is seen when it happens,
    /// not a window later (the WAL keeps the size it reaches).
    pub fn watches_app_checkpoints(&self) -> bool {
        self.app.seen || self.app.quiet < UNDECIDED || self.app.gap_wanted
    }

    /// Called as a pass begins: whatever copied frames since the last one was not us.
    pub(super) fn note_pass_start(&mut self) {
        self.app.retry = false;
        self.app.gap_wanted = false;
        let min = self.cfg.min_checkpoint_page_n;
        let after_window = self.app.ended.is_some_and(|t| t.elapsed() >= WINDOW);
        if let Some(now) = self.app.look() {
            if !self.app.seen && after_window && min > 0 && u64::from(now.mx_frame) >= min {
                self.app.quiet = self.app.quiet.saturating_add(1);
            }
        }
    }

    /// The application checkpoints on its own, and what is not yet in the database file is no
    /// more than [`KEEPS_UP`] times `min-checkpoint-page-count` frames, nor more than the write
    /// lock copies ([`SEAL_BACKLOG`]): a checkpoint of ours needs no unlocked round. Otherwise
    /// (a reader held the application's checkpoints back, or pages are large) the rounds go on
    /// as usual, so the write lock never waits on a large copy.
    pub(super) fn app_keeps_up(&mut self) -> bool {
        let min = self.cfg.min_checkpoint_page_n;
        let frame = self.frame_size();
        self.app.seen
            && self.app.shm.read().is_some_and(|i| {
                let behind = u64::from(i.mx_frame.saturating_sub(i.n_backfill));
                behind <= KEEPS_UP * min && behind * frame <= SEAL_BACKLOG
            })
    }

    /// Whether the application was seen checkpointing on its own.
    pub(super) fn app_checkpoints(&self) -> bool {
        self.app.seen
    }

    /// Bytes of WAL not yet copied into the database file, as the wal-index says; 0 if it
    /// cannot be read.
    pub(super) fn wal_backlog(&mut self) -> u64 {
        let frames = self
            .app
            .shm
            .read()
            .map_or(0, |i| u64::from(i.mx_frame.saturating_sub(i.n_backfill)));
        frames * self.frame_size()
    }

    /// Whether a reader of another process is in a transaction that needs the WAL; such a
    /// reader is what holds a copy back.
    pub(super) fn reader_elsewhere(&mut self) -> bool {
        self.app.shm.readers_elsewhere() == Some(true)
    }

    /// A checkpoint was left for another process's reader: the next pass is run in its gap.
    pub(super) fn want_reader_gap(&mut self) {
        self.app.gap_wanted = true;
    }

    /// Called after each checkpoint of ours: `retry` if what kept it from restarting the WAL
    /// passes at once.
    pub(super) fn note_checkpoint_retry(&mut self, retry: bool) {
        self.app.retry = retry;
    }

    /// Called as a pass ends, after its checkpoint if it ran one.
    pub(super) fn note_pass_end(&mut self) {
        self.app.after_pass = self.app.shm.read();
        self.app.ended = Some(Instant::now());
    }
}
