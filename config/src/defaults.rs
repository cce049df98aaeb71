//! Litestream 0.5.17's defaults (`db.go`, `replica.go`, `cmd/litestream/main.go`), used where a
//! key is not written.

use std::time::Duration;
/// `heartbeat-interval`: 5 minutes.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);
/// The shortest `heartbeat-interval` accepted: 1 minute.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// `monitor-interval`: 1 second.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// `checkpoint-interval`: 1 minute.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// `busy-timeout`: 1 second.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// `min-checkpoint-page-count`: 1000 pages.
pub const MIN_CHECKPOINT_PAGE_N: u64 = 1000;
/// `truncate-page-n`: 121359 pages.
pub const TRUNCATE_PAGE_N: i64 = 121_359;
/// `max-sync-wal-bytes`: 64 MiB.
pub const MAX_SYNC_WAL_BYTES: u64 = 64 << 20;
/// `sync-interval`: 1 second.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// `max-sync-ltx-files`: 256.
pub const MAX_SYNC_LTX_FILES: u64 = 256;
/// `snapshot.interval`: 24 hours.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// `snapshot.retention`: 24 hours.
pub const SNAPSHOT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// `l0-retention`: 5 minutes.
pub const L0_RETENTION: Duration = Duration::from_secs(300);
/// `l0-retention-check-interval`: 15 seconds.
pub const L0_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// `shutdown-sync-timeout`: 30 seconds.
pub const SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// `shutdown-sync-interval`: 500 milliseconds.
pub const SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// `levels`: the compaction intervals of levels 1 to 3 (30s, 5m, 1h).
pub const LEVELS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(300),
    Duration::from_secs(3600),
];
