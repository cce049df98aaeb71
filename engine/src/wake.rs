//! When a database task wakes up without being told (docs/many-databases.md#wake-ups).
//!
//! inotify reports every write to a database and its WAL, so a watched database needs no
//! polling: its fallback timer only has to fire for a time-based checkpoint and, as a safety
//! net against lost events, at a slow sweep. Sweeps are aligned to multiples of their period
//! since the epoch, so every database of the process sweeps in the same millisecond: one
//! wake-up of the runtime for all of them instead of one per database. A database whose
//! watches could not be installed polls at `monitor-interval`, as Litestream does.

use std::time::{Duration, SystemTime};

use crate::schedule::next_at;

/// The safety sweep of a watched database (unless `monitor-interval` is longer).
pub const SWEEP: Duration = Duration::from_secs(60);

/// How often a database inside its sync window looks at the wal-index for an application
/// checkpoint held back by our read mark, once the application was seen checkpointing: at
/// 50 MB/s of WAL, a 4 MB checkpoint's worth is written in 80 ms. A quiet database, or one whose
/// application leaves checkpoints to us, never looks.
pub const APP_CHECKPOINT_PEEK: Duration = Duration::from_millis(10);

/// How long to sleep before looking at the database's files: `checkpoint_in` is the time until
/// a time-based checkpoint is due, if one is pending.
pub fn fallback_wait(
    now: SystemTime,
    monitor: Duration,
    watched: bool,
    checkpoint_in: Option<Duration>,
) -> Duration {
    if !watched {
        return monitor;
    }
    let period = monitor.max(SWEEP);
    let sweep = next_at(now, period).duration_since(now).unwrap_or(period);
    checkpoint_in.map_or(sweep, |c| sweep.min(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn unwatched_databases_poll_at_the_monitor_interval() {
        let now = UNIX_EPOCH + Duration::from_millis(61_500);
        let m = Duration::from_secs(1);
        assert_eq!(fallback_wait(now, m, false, None), m);
        assert_eq!(fallback_wait(now, m, false, Some(Duration::ZERO)), m);
    }

    #[test]
    fn watched_databases_sweep_together_or_wake_for_a_checkpoint() {
        let m = Duration::from_secs(1);
        // Two databases at different moments aim at the same boundary (120 s).
        let a = UNIX_EPOCH + Duration::from_millis(61_500);
        let b = UNIX_EPOCH + Duration::from_millis(100_250);
        assert_eq!(
            a + fallback_wait(a, m, true, None),
            UNIX_EPOCH + Duration::from_secs(120)
        );
        assert_eq!(
            b + fallback_wait(b, m, true, None),
            UNIX_EPOCH + Duration::from_secs(120)
        );
        // A checkpoint due before the sweep wins.
        assert_eq!(
            fallback_wait(a, m, true, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            fallback_wait(a, m, true, Some(Duration::from_secs(300))),
            Duration::from_millis(58_500)
        );
        // A longer monitor-interval stretches the sweep.
        let long = Duration::from_secs(300);
        assert_eq!(
            a + fallback_wait(a, long, true, None),
            UNIX_EPOCH + Duration::from_secs(300)
        );
    }
}
