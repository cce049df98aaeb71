//! The engine's Prometheus metrics under Litestream's names, types and labels
//! (docs/config-and-cli.md#metrics). Counters are atomics bumped where syncs and checkpoints
//! happen; nothing here runs unless a pass or a scrape does. [`render`] adds the replica operation
//! metrics `storage` keeps and a few process metrics read from `/proc` at scrape time.
//!
//! As in Litestream, a database's series exist from the moment it is set up (at 0), the
//! checkpoint series of a mode appear with its first checkpoint, the error series with the
//! first error, and the L0 retention gauges with the first retention scan.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage::value::nanos;

use crate::sqlite::CheckpointMode;
use storage::metrics::escape_label;

/// Counters of one checkpoint mode.
#[derive(Debug, Default)]
struct Checkpoints {
    count: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
}

/// One database's series, labelled `db` with its path.
#[derive(Debug, Default)]
pub struct DbMetrics {
    label: String,
    db_size: AtomicU64,
    wal_size: AtomicU64,
    total_wal_bytes: AtomicU64,
    txid: AtomicU64,
    sync_count: AtomicU64,
    sync_errors: AtomicU64,
    sync_nanos: AtomicU64,
    disk_full: AtomicBool,
    /// PASSIVE, TRUNCATE.
    checkpoints: [Checkpoints; 2],
    /// Compactions whose level failed the chain check (`verify-compaction`).
    compaction_verify_errors: AtomicU64,
    /// What the sync is doing now, for `/debug/sync-status`.
    pub sync_status: crate::sync_status::SyncStatus,
}

impl DbMetrics {
    /// One sync pass ended (Litestream counts every `syncLocked`, failed or not). A disk-full
    /// error raises `litestream_disk_full`; any other outcome lowers it.
    pub fn sync_done(&self, took: Duration, failed: bool, disk_full: bool) {
        self.sync_count.fetch_add(1, Relaxed);
        if failed {
            self.sync_errors.fetch_add(1, Relaxed);
        }
        self.disk_full.store(disk_full, Relaxed);
        self.sync_nanos.fetch_add(nanos(took), Relaxed);
    }

    /// The position and sizes after a successful pass; a database size that could not be
    /// read keeps the last one, as Litestream does.
    pub fn synced(&self, txid: u64, db_size: Option<u64>, wal_size: u64) {
        self.txid.store(txid, Relaxed);
        if let Some(n) = db_size {
            self.db_size.store(n, Relaxed);
        }
        self.wal_size.store(wal_size, Relaxed);
    }

    /// WAL bytes copied into an L0 file.
    pub fn wal_bytes(&self, n: u64) {
        self.total_wal_bytes.fetch_add(n, Relaxed);
    }

    /// A compaction's level failed the chain check of `verify-compaction`.
    pub fn compaction_verify_failed(&self) {
        self.compaction_verify_errors.fetch_add(1, Relaxed);
    }

    /// A checkpoint in `mode` ended after `took`: counts it in `litestream_checkpoint_count`, adds
    /// its time to `litestream_checkpoint_seconds`, and a failure to
    /// `litestream_checkpoint_error_count`.
    pub fn checkpoint_done(&self, mode: CheckpointMode, took: Duration, failed: bool) {
        let c = &self.checkpoints[mode as usize];
        c.count.fetch_add(1, Relaxed);
        if failed {
            c.errors.fetch_add(1, Relaxed);
        }
        c.nanos.fetch_add(nanos(took), Relaxed);
    }
}

#[derive(Default)]
struct Series {
    /// By path, so that output is sorted as Prometheus clients sort it.
    dbs: BTreeMap<String, Arc<DbMetrics>>,
    /// `litestream_l0_retention_files_total` by database base name (Litestream's label):
    /// eligible, not_compacted, too_recent.
    l0: BTreeMap<String, [u64; 3]>,
}

static REGISTRY: Mutex<Option<Series>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Series) -> T) -> T {
    // A panic elsewhere while holding the lock leaves plain counters behind: still usable.
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Series::default))
}

/// The series of the database at `path`, created (at 0) on first use.
pub fn db(path: &Path) -> Arc<DbMetrics> {
    let label = path.to_string_lossy().into_owned();
    with(|r| {
        r.dbs
            .entry(label.clone())
            .or_insert_with(|| {
                Arc::new(DbMetrics {
                    label,
                    ..DbMetrics::default()
                })
            })
            .clone()
    })
}

/// The outcome of one L0 retention scan of the database at `path`.
pub fn l0_retention(path: &Path, eligible: usize, not_compacted: usize, too_recent: usize) {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let v = [eligible, not_compacted, too_recent].map(|n| n as u64);
    with(|r| r.l0.insert(name, v));
}

/// One metric family: HELP and TYPE, then a line per series; nothing if there are none.
fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

const MODES: [CheckpointMode; 2] = [CheckpointMode::Passive, CheckpointMode::Truncate];

/// Every touched series in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    // Copied out so the lock is not held while formatting.
    let (dbs, l0) = with(|r| {
        let dbs: Vec<Arc<DbMetrics>> = r.dbs.values().cloned().collect();
        (dbs, r.l0.clone())
    });
    let label = |d: &DbMetrics| format!("db=\"{}\"", escape_label(&d.label));
    let per_db = |get: &dyn Fn(&DbMetrics) -> f64| -> Vec<(String, f64)> {
        dbs.iter().map(|d| (label(d), get(d))).collect()
    };
    // A mode's series appear once `shown` is non-zero: the count for the count and the
    // seconds (touched together, even by a checkpoint under 1 ns), the errors for the errors.
    let per_mode = |shown: &dyn Fn(&Checkpoints) -> u64,
                    get: &dyn Fn(&Checkpoints) -> f64|
     -> Vec<(String, f64)> {
        let mut rows = Vec::new();
        for d in &dbs {
            for m in MODES {
                let c = &d.checkpoints[m as usize];
                if shown(c) > 0 {
                    rows.push((format!("{},mode=\"{}\"", label(d), m.as_str()), get(c)));
                }
            }
        }
        rows
    };
    let n = |a: &AtomicU64| a.load(Relaxed) as f64;
    let secs = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e9;

    let mut out = String::new();
    // Families in name order, as Litestream's (Go client) output is.
    family(
        &mut out,
        "litestream_checkpoint_count",
        "counter",
        "Number of checkpoint operations performed",
        per_mode(&|c| c.count.load(Relaxed), &|c| n(&c.count)),
    );
    family(
        &mut out,
        "litestream_checkpoint_error_count",
        "counter",
        "Number of checkpoint errors that have occurred",
        per_mode(&|c| c.errors.load(Relaxed), &|c| n(&c.errors)),
    );
    family(
        &mut out,
        "litestream_checkpoint_seconds",
        "counter",
        "Time spent checkpointing WAL, in seconds",
        per_mode(&|c| c.count.load(Relaxed), &|c| secs(&c.nanos)),
    );
    // 0 unless `verify-compaction` is on, as in Litestream.
    family(
        &mut out,
        "litestream_compaction_verify_error_count",
        "counter",
        "Number of post-compaction verification failures",
        per_db(&|d| n(&d.compaction_verify_errors)),
    );
    family(
        &mut out,
        "litestream_db_size",
        "gauge",
        "The current size of the real DB",
        per_db(&|d| n(&d.db_size)),
    );
    family(
        &mut out,
        "litestream_disk_full",
        "gauge",
        "Whether replication is paused because the local disk is full",
        per_db(&|d| f64::from(u8::from(d.disk_full.load(Relaxed)))),
    );
    const STATUS: [&str; 3] = ["eligible", "not_compacted", "too_recent"];
    family(
        &mut out,
        "litestream_l0_retention_files_total",
        "gauge",
        "Number of L0 files by status during retention enforcement",
        l0.iter()
            .flat_map(|(name, v)| {
                STATUS.iter().zip(v).map(move |(s, n)| {
                    (
                        format!("db=\"{}\",status=\"{s}\"", escape_label(name)),
                        *n as f64,
                    )
                })
            })
            .collect(),
    );
    storage::metrics::render_prometheus(&mut out);
    family(
        &mut out,
        "litestream_sync_count",
        "counter",
        "Number of sync operations performed",
        per_db(&|d| n(&d.sync_count)),
    );
    family(
        &mut out,
        "litestream_sync_error_count",
        "counter",
        "Number of sync errors that have occurred",
        per_db(&|d| n(&d.sync_errors)),
    );
    family(
        &mut out,
        "litestream_sync_seconds",
        "counter",
        "Time spent syncing shadow WAL, in seconds",
        per_db(&|d| secs(&d.sync_nanos)),
    );
    family(
        &mut out,
        "litestream_total_wal_bytes",
        "counter",
        "Total number of bytes written to shadow WAL",
        per_db(&|d| n(&d.total_wal_bytes)),
    );
    family(
        &mut out,
        "litestream_txid",
        "gauge",
        "The current transaction ID",
        per_db(&|d| n(&d.txid)),
    );
    family(
        &mut out,
        "litestream_wal_size",
        "gauge",
        "The current size of the real WAL",
        per_db(&|d| n(&d.wal_size)),
    );
    process(&mut out);
    out
}

/// The Prometheus process collector's metrics that dashboards use, read from `/proc` now.
/// A value that cannot be read is left out rather than reported as 0.
fn process(out: &mut String) {
    // SAFETY: sysconf has no preconditions.
    let (tck, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which may itself hold spaces and parentheses:
    // [0] is field 3 (state), so field k is at k - 3.
    let f: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|s| s.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .unwrap_or_default();
    let field = |k: usize| f.get(k - 3).copied().filter(|v| v.is_finite());
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").map(|v| v.trim().parse::<f64>()))
        })
        .and_then(|r| r.ok());
    let limit = |res| {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        (unsafe { libc::getrlimit(res, &mut l) } == 0).then_some(l.rlim_cur as f64)
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    let tck = (tck > 0).then_some(tck as f64);
    let one = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
    family(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        one(field(14)
            .zip(field(15))
            .zip(tck)
            .map(|((u, s), t)| (u + s) / t)),
    );
    family(
        out,
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        one(limit(libc::RLIMIT_NOFILE)),
    );
    family(
        out,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        one(open_fds),
    );
    family(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        one(field(24).map(|p| p * page as f64)),
    );
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        one(field(22).zip(tck).zip(btime).map(|((s, t), b)| b + s / t)),
    );
    family(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        one(field(23)),
    );
    family(
        out,
        "process_virtual_memory_max_bytes",
        "gauge",
        "Maximum amount of virtual memory available in bytes.",
        one(limit(libc::RLIMIT_AS)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_db_series_and_touched_modes() {
        let m = db(Path::new("/metrics-test/a \"b\".db"));
        m.sync_done(Duration::from_millis(5), false, false);
        m.sync_done(Duration::from_millis(5), true, true);
        m.synced(7, Some(8192), 4152);
        m.wal_bytes(4152);
        m.checkpoint_done(CheckpointMode::Passive, Duration::from_millis(2), false);
        l0_retention(Path::new("/metrics-test/a \"b\".db"), 1, 2, 3);
        let out = render();
        let l = "db=\"/metrics-test/a \\\"b\\\".db\"";
        for line in [
            format!("litestream_sync_count{{{l}}} 2"),
            format!("litestream_sync_error_count{{{l}}} 1"),
            format!("litestream_sync_seconds{{{l}}} 0.01"),
            format!("litestream_disk_full{{{l}}} 1"),
            format!("litestream_txid{{{l}}} 7"),
            format!("litestream_db_size{{{l}}} 8192"),
            format!("litestream_wal_size{{{l}}} 4152"),
            format!("litestream_total_wal_bytes{{{l}}} 4152"),
            format!("litestream_compaction_verify_error_count{{{l}}} 0"),
            format!("litestream_checkpoint_count{{{l},mode=\"PASSIVE\"}} 1"),
            format!("litestream_checkpoint_seconds{{{l},mode=\"PASSIVE\"}} 0.002"),
            "litestream_l0_retention_files_total{db=\"a \\\"b\\\".db\",status=\"too_recent\"} 3"
                .to_owned(),
            "# TYPE litestream_txid gauge".to_owned(),
            "# TYPE litestream_sync_count counter".to_owned(),
        ] {
            assert!(
                out.lines().any(|x| x == line),
                "missing {line:?} in:\n{out}"
            );
        }
        // Untouched: no TRUNCATE series, no checkpoint error series for this database.
        assert!(!out.contains(&format!("{l},mode=\"TRUNCATE\"")), "{out}");
        assert!(
            !out.lines()
                .any(|x| x.starts_with("litestream_checkpoint_error_count") && x.contains(l)),
            "{out}"
        );
        assert!(out.contains("\nprocess_resident_memory_bytes "), "{out}");
    }
}
