//! When background work runs (docs/replica-layout.md#compaction-scheduling): every level wakes at
//! wall-clock multiples of its interval, and all databases share a small pool of permits so their
//! compactions and snapshots never all run at once and never run on a WAL follower's task.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

/// `t.Truncate(interval)` in Go: the latest multiple of `interval` since the epoch at or before
/// `t`. This is the boundary the "too early" skip rule compares against.
pub fn prev_at(t: SystemTime, interval: Duration) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let iv = interval.as_nanos().max(1);
    let rem = since.as_nanos() % iv;
    // `rem` < interval, which fits a Duration.
    t - Duration::from_nanos(u64::try_from(rem).unwrap_or(0))
}

/// `NextCompactionAt`: the next aligned boundary strictly after `t`.
pub fn next_at(t: SystemTime, interval: Duration) -> SystemTime {
    prev_at(t, interval) + interval
}

/// A per-database offset so that databases sharing an interval do not all wake in the same
/// millisecond: stable for a path, below a quarter of the interval and at most 5 s, so the
/// work still happens inside the period it belongs to.
pub fn jitter(db: &Path, interval: Duration) -> Duration {
    let cap = (interval / 4).min(Duration::from_secs(5));
    let cap_ms = cap.as_millis() as u64;
    if cap_ms == 0 {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    db.hash(&mut h);
    Duration::from_millis(h.finish() % cap_ms)
}

/// Permits shared by every database's compactions and snapshots. Two: one long snapshot does
/// not starve every other database's L1, and with two cores the followers keep a core.
#[derive(Clone, Debug)]
pub struct JobPermits(Arc<Semaphore>);

/// How many permits [`JobPermits`] holds: jobs that may run at once across all databases.
pub const JOB_PERMITS: usize = 2;

impl Default for JobPermits {
    fn default() -> Self {
        JobPermits(Arc::new(Semaphore::new(JOB_PERMITS)))
    }
}

impl JobPermits {
    /// Waits for a permit; `None` only if the pool was closed.
    pub async fn acquire(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.0.acquire().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_boundaries() {
        let t = UNIX_EPOCH + Duration::from_millis(95_250);
        let iv = Duration::from_secs(30);
        assert_eq!(prev_at(t, iv), UNIX_EPOCH + Duration::from_secs(90));
        assert_eq!(next_at(t, iv), UNIX_EPOCH + Duration::from_secs(120));
        let on = UNIX_EPOCH + Duration::from_secs(120);
        assert_eq!(prev_at(on, iv), on);
        assert_eq!(next_at(on, iv), UNIX_EPOCH + Duration::from_secs(150));
        let j = jitter(Path::new("/a.db"), Duration::from_secs(1));
        assert!(j < Duration::from_millis(250));
        assert_eq!(j, jitter(Path::new("/a.db"), Duration::from_secs(1)));
    }
}
