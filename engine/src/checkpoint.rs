//! The checkpoint policy (docs/wal.md#checkpoints) as a pure decision; the procedure itself lives
//! in the follower because it interleaves syncs with SQLite calls.

use std::time::Duration;

use crate::config::defaults;

/// The settings the checkpoint policy compares WAL sizes against (docs/wal.md#checkpoint-policy).
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// The database page size in bytes; 0 (no database open) means no checkpoint.
    pub page_size: u32,
    /// `min-checkpoint-page-count`: WAL frames at which a PASSIVE checkpoint runs.
    pub min_checkpoint_page_n: u64,
    /// 0 = default, negative = emergency TRUNCATE disabled.
    pub truncate_page_n: i64,
    /// Zero disables the time-based checkpoint.
    pub checkpoint_interval: Duration,
}

/// `32 + n * (24 + page size)`.
pub fn wal_bytes(page_size: u32, n: u64) -> u64 {
    32 + n * (24 + u64::from(page_size))
}

impl Thresholds {
    fn truncate_n(&self) -> i64 {
        if self.truncate_page_n == 0 {
            defaults::TRUNCATE_PAGE_N
        } else {
            self.truncate_page_n
        }
    }

    /// The WAL size in bytes at which the emergency TRUNCATE checkpoint is due.
    pub fn truncate_threshold(&self) -> u64 {
        wal_bytes(self.page_size, self.truncate_n().max(0) as u64)
    }

    /// Whether a WAL of `wal_size` bytes is at or over the emergency threshold (never when it is
    /// disabled or the page size is unknown).
    pub fn exceeds_truncate(&self, wal_size: u64) -> bool {
        self.truncate_n() > 0 && self.page_size != 0 && wal_size >= self.truncate_threshold()
    }
}

/// Which checkpoint, if any, [`decide`] asks for after a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No checkpoint.
    None,
    /// Try PASSIVE, then TRUNCATE unless PASSIVE restarted the WAL under the threshold.
    Emergency,
    /// A PASSIVE checkpoint: the WAL reached `min-checkpoint-page-count` frames, or the time-based
    /// rule fired.
    Passive,
}

/// `orig` is the synced WAL size before the pass, `new` after it; `since_db_mtime` is how long
/// ago the database file was last modified.
pub fn decide(
    t: &Thresholds,
    orig: u64,
    new: u64,
    synced_since_checkpoint: bool,
    since_db_mtime: Option<Duration>,
) -> Decision {
    if t.page_size == 0 {
        return Decision::None;
    }
    if t.exceeds_truncate(orig) {
        return Decision::Emergency;
    }
    if new >= wal_bytes(t.page_size, t.min_checkpoint_page_n) {
        return Decision::Passive;
    }
    if !t.checkpoint_interval.is_zero()
        && synced_since_checkpoint
        && since_db_mtime.is_some_and(|d| d > t.checkpoint_interval)
        && new > wal_bytes(t.page_size, 1)
    {
        return Decision::Passive;
    }
    Decision::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Thresholds {
        Thresholds {
            page_size: 4096,
            min_checkpoint_page_n: 1000,
            truncate_page_n: 0,
            checkpoint_interval: Duration::from_secs(60),
        }
    }

    #[test]
    fn thresholds_in_order() {
        let t = t();
        let min = wal_bytes(4096, 1000);
        let trunc = wal_bytes(4096, 121_359);
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(decide(&t, trunc, 0, false, None), Decision::Emergency);
        assert_eq!(decide(&t, 0, min, false, None), Decision::Passive);
        assert_eq!(decide(&t, 0, min - 1, false, None), Decision::None);
        assert_eq!(
            decide(&t, 0, wal_bytes(4096, 2), true, hour),
            Decision::Passive
        );
        // Time-based needs data synced since the last checkpoint and more than one frame.
        assert_eq!(
            decide(&t, 0, wal_bytes(4096, 2), false, hour),
            Decision::None
        );
        assert_eq!(
            decide(&t, 0, wal_bytes(4096, 1), true, hour),
            Decision::None
        );
        assert_eq!(
            decide(
                &t,
                0,
                wal_bytes(4096, 2),
                true,
                Some(Duration::from_secs(1))
            ),
            Decision::None
        );
        let off = Thresholds {
            truncate_page_n: -1,
            checkpoint_interval: Duration::ZERO,
            ..t
        };
        assert_eq!(decide(&off, trunc * 2, 0, true, hour), Decision::None);
    }
}
