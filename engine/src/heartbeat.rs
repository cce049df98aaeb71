//! Heartbeats (`heartbeat-url`, `heartbeat-interval`), as Litestream 0.5.17's store does them:
//! every 15 seconds (or the interval, if shorter) it checks whether an interval has passed
//! since the last ping and whether every running database is healthy; only then does it send
//! `GET heartbeat-url` (30 s timeout). A failed ping is logged and waits a whole interval too.
//!
//! Healthy means the database was opened, its last sync pass and upload succeeded, and its
//! replica holds everything local or took an upload within the interval. Litestream's replica
//! loop re-checks an idle replica every `sync-interval`; here an idle database does no work,
//! so one whose replica breaks while nothing is written still counts as healthy until the
//! next write fails to upload.
//!
//! `LS_TEST_HEARTBEAT_INTERVAL` (a Go duration) replaces the interval, below the one-minute
//! minimum of the config, for tests only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::HeartbeatConfig;
use crate::replicate::Registry;

/// Litestream's `DefaultHeartbeatCheckInterval`.
const CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Litestream's `DefaultHeartbeatTimeout`.
const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// The interval in effect: the config's, or the test hook's.
pub fn interval(cfg: &HeartbeatConfig) -> Duration {
    match std::env::var("LS_TEST_HEARTBEAT_INTERVAL") {
        Ok(v) if !v.is_empty() => match storage::value::parse_duration(&v) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                warn!(value = %v, "LS_TEST_HEARTBEAT_INTERVAL is not a duration; ignored");
                cfg.interval
            }
        },
        _ => cfg.interval,
    }
}

/// Whether every running database is healthy since `since` (and at least one runs).
pub fn all_healthy(registry: &Registry, since: SystemTime) -> bool {
    let running: Vec<_> = registry.list().into_iter().filter(|d| d.running).collect();
    !running.is_empty() && running.iter().all(|d| d.handle.healthy_since(since))
}

/// Checks and pings until `shutdown`.
pub async fn run(
    cfg: HeartbeatConfig,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = interval(&cfg);
    let check = every.min(CHECK_INTERVAL);
    info!(url = %storage::redact_url(&cfg.url), interval = storage::value::nanos(every), "starting heartbeat monitor");
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + check, check);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::select! {
            _ = crate::replicate::stopped(&mut shutdown) => return,
            t = ticker.tick() => t,
        };
        if last_ping.is_some_and(|t| now.duration_since(t) < every) {
            continue;
        }
        let since = SystemTime::now() - every;
        if !all_healthy(&registry, since) {
            debug!("heartbeat skipped: not every database synced within the interval");
            continue;
        }
        // Recorded before the request: a failing endpoint is not retried before the interval.
        last_ping = Some(now);
        let ping = tokio::select! {
            _ = crate::replicate::stopped(&mut shutdown) => return,
            r = storage::http::http_get(&cfg.url, PING_TIMEOUT) => r,
        };
        match ping {
            Ok(code) if (200..300).contains(&code) => {
                debug!(url = %storage::redact_url(&cfg.url), "heartbeat ping sent")
            }
            Ok(code) => {
                error!(url = %storage::redact_url(&cfg.url), error = %format!("unexpected status code: {code}"), "heartbeat ping failed")
            }
            Err(e) => {
                error!(url = %storage::redact_url(&cfg.url), error = %e, "heartbeat ping failed")
            }
        }
    }
}
