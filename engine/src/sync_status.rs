//! What each database's sync is doing right now, for the control socket's
//! `GET /debug/sync-status` (docs/config-and-cli.md#debug-sync-status): the operation and its
//! phase, since when, and where the last pass left the WAL. The names of operations and phases
//! are Litestream's, so a stuck sync reads the same in both.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// A sync pass, or a checkpoint run outside one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A sync pass (`sync`).
    Sync,
    /// A checkpoint run outside a sync pass (`checkpoint`).
    Checkpoint,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Sync => "sync",
            Operation::Checkpoint => "checkpoint",
        }
    }
}

/// Where an operation is; the step that blocks is the one a stuck sync reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The operation has just begun (`starting`).
    Starting,
    /// Making sure a WAL with a header exists (`ensure_wal`).
    EnsureWal,
    /// Verifying and copying committed frames into an L0 file (`verify_and_sync`).
    VerifyAndSync,
    /// Applying the checkpoint policy (`checkpoint_if_needed`).
    CheckpointIfNeeded,
    /// The copy into the database file without the write lock (docs/checkpoints.md).
    CheckpointCopyBefore,
    /// Waiting for, and holding, the write lock.
    CheckpointLock,
    /// Running the checkpoint under the write lock (`checkpoint_exec`).
    CheckpointExec,
    /// Restarting the WAL with the `_litestream_seq` write and checking that it restarted
    /// (`checkpoint_verify_restart`).
    CheckpointVerifyRestart,
    /// Writing the snapshot that follows a TRUNCATE checkpoint (`checkpoint_snapshot_boundary`).
    CheckpointSnapshotBoundary,
    /// The pass's last step: where an idle database's status stays, as in Litestream.
    UpdateMetrics,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::EnsureWal => "ensure_wal",
            Phase::VerifyAndSync => "verify_and_sync",
            Phase::CheckpointIfNeeded => "checkpoint_if_needed",
            Phase::CheckpointCopyBefore => "checkpoint_copy_before",
            Phase::CheckpointLock => "checkpoint_lock",
            Phase::CheckpointExec => "checkpoint_exec",
            Phase::CheckpointVerifyRestart => "checkpoint_verify_restart",
            Phase::CheckpointSnapshotBoundary => "checkpoint_snapshot_boundary",
            Phase::UpdateMetrics => "update_metrics",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct State {
    active: bool,
    operation: Option<Operation>,
    phase: Option<Phase>,
    started: Option<SystemTime>,
    updated: Option<SystemTime>,
    txid: u64,
    wal_size: u64,
    last_synced_wal_offset: u64,
    snapshotting: bool,
    checkpoint_mode: &'static str,
    error: Option<String>,
}

/// One database's sync status, written by its follower at each phase (a lock taken a few
/// times per pass) and read by the control socket.
#[derive(Debug, Default)]
pub struct SyncStatus {
    state: Mutex<State>,
}

/// `/debug/sync-status`'s entry for one database, with Litestream's field names; empty fields
/// are left out as Go's `omitempty` leaves them out.
#[derive(Debug, Serialize)]
pub struct Diagnostic {
    /// The database path.
    pub path: String,
    /// Whether an operation is under way.
    pub active: bool,
    /// The current or last operation: `sync` or `checkpoint`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub operation: &'static str,
    /// The current or last phase, such as `update_metrics`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub phase: &'static str,
    /// When the operation began, RFC 3339 with nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the status last changed, RFC 3339 with nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Seconds since the operation began: up to now while active, else up to its end.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub elapsed_seconds: f64,
    /// The local position (highest L0 TXID) when the last operation ended.
    #[serde(skip_serializing_if = "is_zero")]
    pub txid: u64,
    /// The WAL file's size in bytes when the last operation ended.
    #[serde(skip_serializing_if = "is_zero")]
    pub wal_size: u64,
    /// The end of the WAL bytes the last L0 file covered, in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub last_synced_wal_offset: u64,
    /// Whether a level-9 snapshot was reading under the read transaction when the operation began.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub snapshotting: bool,
    /// The mode of the checkpoint in this operation, if any: `PASSIVE` or `TRUNCATE`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub checkpoint_mode: &'static str,
    /// The error of the last operation, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

impl State {
    fn start(&mut self, op: Operation, snapshotting: bool) {
        self.active = true;
        self.operation = Some(op);
        self.phase = Some(Phase::Starting);
        self.started = Some(SystemTime::now());
        self.snapshotting = snapshotting;
        self.checkpoint_mode = "";
        self.error = None;
    }
}

impl SyncStatus {
    fn with(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        s.updated = Some(SystemTime::now());
    }

    /// A sync pass begins.
    pub fn begin(&self, op: Operation, snapshotting: bool) {
        self.with(|s| s.start(op, snapshotting));
    }

    /// The operation under way enters phase `p`.
    pub fn phase(&self, p: Phase) {
        self.with(|s| s.phase = Some(p));
    }

    /// A checkpoint in `mode` (PASSIVE, TRUNCATE) begins its first step; inside a sync pass it
    /// stays part of that pass. Returns whether it is an operation of its own (no pass was under
    /// way), which the caller then ends.
    pub fn checkpoint(&self, mode: &'static str, snapshotting: bool) -> bool {
        let mut own = false;
        self.with(|s| {
            own = !s.active;
            if own {
                s.start(Operation::Checkpoint, snapshotting);
            }
            s.checkpoint_mode = mode;
            s.phase = Some(Phase::CheckpointCopyBefore);
        });
        own
    }

    /// The operation ended where the follower now is; with its error if it failed.
    pub fn end(&self, txid: u64, wal_size: u64, last_synced: u64, error: Option<String>) {
        self.with(|s| {
            s.active = false;
            if error.is_none() {
                s.phase = Some(Phase::UpdateMetrics);
            }
            s.txid = txid;
            s.wal_size = wal_size;
            s.last_synced_wal_offset = last_synced;
            s.error = error;
        });
    }

    /// The `/debug/sync-status` entry for the database at `path`, as it stands now.
    pub fn report(&self, path: String) -> Diagnostic {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let fmt = storage::timefmt::format_rfc3339_nano;
        // While active, up to now; once ended, up to the last update (the end).
        let end = if s.active { None } else { s.updated };
        let elapsed = s.started.map_or(0.0, |t| {
            end.unwrap_or_else(SystemTime::now)
                .duration_since(t)
                .unwrap_or_default()
                .as_secs_f64()
        });
        Diagnostic {
            path,
            active: s.active,
            operation: s.operation.map_or("", Operation::as_str),
            phase: s.phase.map_or("", Phase::as_str),
            started_at: s.started.map(fmt),
            updated_at: s.updated.map(fmt),
            elapsed_seconds: elapsed,
            txid: s.txid,
            wal_size: s.wal_size,
            last_synced_wal_offset: s.last_synced_wal_offset,
            snapshotting: s.snapshotting,
            checkpoint_mode: s.checkpoint_mode,
            error: s.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_reports_its_phase_then_where_it_ended() {
        let st = SyncStatus::default();
        let d = st.report("/db".into());
        assert!(!d.active);
        assert_eq!(
            serde_json::to_string(&d).expect("json"),
            r#"{"path":"/db","active":false}"#
        );
        st.begin(Operation::Sync, false);
        st.phase(Phase::VerifyAndSync);
        // A checkpoint inside the pass stays the pass's, with its mode and phase.
        st.checkpoint("PASSIVE", false);
        st.phase(Phase::CheckpointLock);
        let d = st.report("/db".into());
        assert!(d.active);
        assert_eq!(
            (d.operation, d.phase, d.checkpoint_mode),
            ("sync", "checkpoint_lock", "PASSIVE")
        );
        assert!(d.started_at.is_some());
        st.end(7, 4096, 4000, None);
        let d = st.report("/db".into());
        assert_eq!(
            (
                d.active,
                d.phase,
                d.txid,
                d.wal_size,
                d.last_synced_wal_offset
            ),
            (false, "update_metrics", 7, 4096, 4000)
        );
        st.begin(Operation::Sync, true);
        st.end(7, 4096, 4000, Some("disk full".into()));
        let d = st.report("/db".into());
        assert_eq!(
            (d.phase, d.error.as_deref()),
            ("starting", Some("disk full"))
        );
        assert!(d.snapshotting);
        // A checkpoint on its own is an operation of its own.
        st.checkpoint("TRUNCATE", false);
        assert_eq!(st.report("/db".into()).operation, "checkpoint");
    }
}
