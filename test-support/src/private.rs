//! A test server of a test's own: `tests/<backend>/start.sh` run with a private state directory
//! (so a private port and data directory), stopped with `stop.sh` when dropped.
//!
//! Tests that stop or restart their server use one, so that no other test, running at the same
//! time in another process, sees the server go away.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// A running private server and the `LS_<BACKEND>_*` variables its start script exported.
pub struct PrivateServer {
    backend: &'static str,
    state: tempfile::TempDir,
    vars: HashMap<String, String>,
}

impl PrivateServer {
    /// Starts `tests/<backend>/start.sh` with its state directory in a new temporary directory.
    /// `state_var` is the variable the script reads its state directory from
    /// (`LS_NATS_STATE_DIR`, ...). Panics, naming the script, if the server does not start.
    pub fn start(backend: &'static str, state_var: &str) -> PrivateServer {
        let state = tempfile::tempdir().expect("tempdir");
        let script = workspace_root()
            .join("tests")
            .join(backend)
            .join("start.sh");
        let out = Command::new("bash")
            .arg(&script)
            .env(state_var, state.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let vars = parse_exports(&String::from_utf8_lossy(&out.stdout));
        PrivateServer {
            backend,
            state,
            vars,
        }
    }

    /// A variable the start script exported, e.g. `LS_NATS_URL`.
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// The variables `names` the start script exported, in the order asked; panics naming the
    /// script when one is missing.
    pub fn exported<const N: usize>(&self, names: [&str; N]) -> [String; N] {
        names.map(|k| {
            self.var(k)
                .unwrap_or_else(|| panic!("tests/{}/start.sh exported no {k}", self.backend))
        })
    }

    /// The temporary state directory the start script was given.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let script = workspace_root()
            .join("tests")
            .join(self.backend)
            .join("stop.sh");
        let mut c = Command::new("bash");
        c.arg(&script);
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        let _ = c.status();
    }
}

/// Stops the server whose pid start.sh wrote to `<state>/pid` and waits (10 s at most) until it
/// is gone. `what` names it in the panic ("the NATS server").
pub fn stop_pid(state: &Path, what: &str) {
    let pid = std::fs::read_to_string(state.join("pid")).expect("pid file");
    let pid = pid.trim();
    let _ = Command::new("kill").arg(pid).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "{what} did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the server again from start.sh's `<state>/cmd` (same port, same data), appending to
/// its log and writing the new pid; then waits (`wait` at most, polling every `poll`) until
/// `up` says it answers. `what` names it in the panics ("the NATS server").
pub fn relaunch(state: &Path, what: &str, wait: Duration, poll: Duration, up: impl Fn() -> bool) {
    let log = std::fs::File::options()
        .append(true)
        .create(true)
        .open(state.join("server.log"))
        .expect("log");
    let child = Command::new("setsid")
        .arg("bash")
        .arg(state.join("cmd"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("restart {what}: {e:?}"));
    std::fs::write(state.join("pid"), child.id().to_string()).expect("pid file");
    // The server outlives this test (stop.sh ends it); reap it if it exits before.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    let deadline = Instant::now() + wait;
    while !up() {
        assert!(Instant::now() < deadline, "{what} did not come back");
        std::thread::sleep(poll);
    }
}

/// `export K=V` lines (V possibly single-quoted) as printed by the start scripts.
fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_parsed_with_quotes() {
        let v = parse_exports("export A=1\nnoise\nexport B='x y=z'\n");
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "x y=z");
        assert_eq!(v.len(), 2);
    }
}
