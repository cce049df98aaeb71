//! `-exec` / `exec:`: the application `replicate` runs beside itself, and how the two stop.
//!
//! As Litestream 0.5.17 does: when the child exits on its own, replication stops (final sync)
//! and a failing child makes `replicate` fail with `Error: exit status N`. On SIGTERM or
//! SIGINT the signal is forwarded to the child and `replicate` waits for it to exit before
//! the final sync, so whatever the application writes while it shuts down is replicated; a
//! child that then exits with a non-zero status makes `replicate` fail with `Error: cannot
//! wait for exec process: exit status N` (a child ended by the signal itself counts as a clean
//! stop). Unlike Litestream, the wait is bounded by `shutdown-sync-timeout` (after which the
//! child is killed), and the final sync also happens when the child failed.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

/// SIGTERM and SIGINT, which stop `replicate`.
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs the SIGTERM and SIGINT handlers.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next stop signal's number.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
        }
    }
}

/// Go's names of the common signals (`syscall.Signal.String`).
pub use ls_config::logfmt::signal_name;

/// A failed exit status as Go's `exec.ExitError` words it: `exit status 3`, `signal: killed`.
pub fn exit_error(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal: {}", signal_name(s)),
        _ => status.to_string(),
    }
}

/// How `replicate` stopped, as far as the child is concerned: `Err` is the message printed
/// as `Error: …` (exit status 1) once the final sync is done.
pub type Outcome = Result<(), String>;

/// The child exited on its own: replication stops, with its failure as ours.
pub fn exited(status: std::io::Result<ExitStatus>) -> Outcome {
    info!("subprocess exited, litestream shutting down");
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(exit_error(s)),
        Err(e) => Err(format!("wait for exec process: {e}")),
    }
}

/// A stop signal `sig` arrived while `child` runs: forwards it (and any further stop signal),
/// then waits for the child to exit, at most `limit` (zero: no limit, as Litestream), after
/// which it is killed.
pub async fn stop_child(
    child: &mut tokio::process::Child,
    sig: i32,
    signals: &mut StopSignals,
    limit: Duration,
) -> Outcome {
    let pid = child.id();
    let forward = |sig: i32| match pid {
        // SAFETY: kill(2) on our own child, which is only reaped by the `wait` below (after
        // which nothing is forwarded).
        Some(pid) => unsafe { libc::kill(pid as libc::pid_t, sig) == 0 },
        None => true,
    };
    info!("sending signal to exec process");
    if !forward(sig) {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot signal exec process: {e}"));
    }
    info!("waiting for exec process to close");
    let deadline = (!limit.is_zero()).then(|| tokio::time::Instant::now() + limit);
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            sig = signals.recv() => {
                info!(signal = sig, "signal received again, forwarding it to the exec process");
                forward(sig);
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                warn!(timeout = ?limit, "exec process still running after shutdown-sync-timeout, killing it");
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!(
                    "exec process did not exit within shutdown-sync-timeout ({limit:?}) and was killed"
                ));
            }
        }
    };
    match status {
        // Ended by a signal (the forwarded one, usually): a clean stop, as in Litestream.
        Ok(s) if s.success() || s.signal().is_some() => Ok(()),
        Ok(s) => Err(format!("cannot wait for exec process: {}", exit_error(s))),
        Err(e) => Err(format!("cannot wait for exec process: {e}")),
    }
}
