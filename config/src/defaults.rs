//! Litestream 0.5.17's defaults (`db.go`, `replica.go`, `cmd/litestream/main.go`), used where a
//! key is not written.

use std::time::Duration;
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
pub const MIN_CHECKPOINT_PAGE_N: u64 = 1000;
pub const TRUNCATE_PAGE_N: i64 = 121_359;
pub const MAX_SYNC_WAL_BYTES: u64 = 64 << 20;
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_SYNC_LTX_FILES: u64 = 256;
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const SNAPSHOT_RETENTION: Duration = Duration::from_secs(24 * 3600);
pub const L0_RETENTION: Duration = Duration::from_secs(300);
pub const L0_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(15);
pub const SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
pub const SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
pub const LEVELS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(300),
    Duration::from_secs(3600),
];
