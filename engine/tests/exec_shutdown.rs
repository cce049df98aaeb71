//! `-exec` and shutdown (issue 14 item 13): SIGTERM goes to the application, `replicate` waits
//! for it, then makes its final sync, so the application's last writes reach the replica; exit
//! status and message as Litestream 0.5.17's.
//!
//! The application is this test binary run again (`--exact` on the first test below) with
//! `LS_EXEC_CHILD_DB` set: it writes a row, says it is ready, and on SIGTERM (per
//! `LS_EXEC_CHILD_MODE`) writes a last row and exits 0 or 3, ignores the signal, or exits 3 on
//! its own.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const CHILD_TEST: &str =
    "exec_shutdown::issue14_13_exec_child_gets_sigterm_and_its_last_row_is_replicated";

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

/// In the child process: acts as the application and never returns.
fn child_if_asked() {
    let Ok(db) = std::env::var("LS_EXEC_CHILD_DB") else {
        return;
    };
    let mode = std::env::var("LS_EXEC_CHILD_MODE").unwrap_or_default();
    let ready = std::env::var("LS_EXEC_CHILD_READY").expect("LS_EXEC_CHILD_READY");
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let handler = on_term as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, handler);
    }
    let c = app(Path::new(&db), 4096);
    c.execute("INSERT INTO t(k, v) VALUES (1, 'first')", [])
        .expect("first row");
    fs::write(&ready, b"ready").expect("ready file");
    if mode == "exit3" {
        std::process::exit(3);
    }
    while !TERM.load(Ordering::SeqCst) || mode == "ignore" {
        std::thread::sleep(Duration::from_millis(20));
    }
    c.execute("INSERT INTO t(k, v) VALUES (2, 'last')", [])
        .expect("last row");
    drop(c);
    std::process::exit(if mode == "trap3" { 3 } else { 0 });
}

struct Setup {
    dir: tempfile::TempDir,
    db: PathBuf,
    replica: PathBuf,
    cfg: PathBuf,
}

fn setup(extra_top: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let c = app(&db, 4096);
    setup_table(&c);
    drop(c);
    let cfg = dir.path().join("ls.yml");
    fast_config(&cfg, &[(db.clone(), replica.clone())]);
    let text = fs::read_to_string(&cfg).expect("cfg");
    fs::write(&cfg, format!("{extra_top}{text}")).expect("cfg");
    Setup {
        dir,
        db,
        replica,
        cfg,
    }
}

/// `replicate -exec <this binary as the application>` of `bin`; stdout and stderr to files.
fn start(bin: &Path, s: &Setup, mode: &str, tag: &str) -> (Child, PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test binary");
    let exec = format!(
        "'{}' --exact {CHILD_TEST} --nocapture --test-threads=1",
        exe.display()
    );
    let out = s.dir.path().join(format!("{tag}.out"));
    let err = s.dir.path().join(format!("{tag}.err"));
    let ready = s.dir.path().join(format!("{tag}.ready"));
    let _ = fs::remove_file(&ready);
    let mut c = Command::new(bin);
    c.env_remove("AWS_CA_BUNDLE")
        .arg("replicate")
        .arg("-config")
        .arg(&s.cfg)
        .arg("-exec")
        .arg(exec)
        .env("LS_EXEC_CHILD_DB", &s.db)
        .env("LS_EXEC_CHILD_MODE", mode)
        .env("LS_EXEC_CHILD_READY", &ready)
        .stdout(Stdio::from(fs::File::create(&out).expect("out")))
        .stderr(Stdio::from(fs::File::create(&err).expect("err")));
    let child = c.spawn().expect("start replicate");
    assert!(
        wait_until(Duration::from_secs(60), || ready.exists()),
        "the application did not start; log:\n{}",
        fs::read_to_string(&out).unwrap_or_default()
    );
    (child, out, err)
}

/// [`start`], SIGTERM if `signal`, and the exit status; then the stdout and stderr files.
fn run_exec(
    bin: &Path,
    s: &Setup,
    mode: &str,
    tag: &str,
    signal: bool,
) -> (ExitStatus, PathBuf, PathBuf) {
    let (mut c, out, err) = start(bin, s, mode, tag);
    if signal {
        term(&c);
    }
    (wait_exit(&mut c, &out), out, err)
}

fn term(c: &Child) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
}

fn wait_exit(c: &mut Child, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(st) = c.try_wait().expect("wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!(
                "replicate did not exit; log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `k` values of the rows a restore of the replica holds.
fn replicated_rows(s: &Setup) -> Vec<i64> {
    let out = s.dir.path().join("restored.db");
    let _ = fs::remove_file(&out);
    let o = Command::new(ENGINE)
        .arg("restore")
        .arg("-o")
        .arg(&out)
        .arg(format!("file://{}", s.replica.display()))
        .output()
        .expect("restore");
    assert_ok(&o, "restore");
    integrity_ok(&out);
    let c = rusqlite::Connection::open(&out).expect("open restored");
    let mut st = c.prepare("SELECT k FROM t ORDER BY id").expect("select");
    let rows = st
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<Vec<i64>, _>>()
        .expect("k");
    rows
}

/// The `Error: …` lines a run printed on stderr.
fn error_lines(err: &Path) -> Vec<String> {
    fs::read_to_string(err)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Error: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn issue14_13_exec_child_gets_sigterm_and_its_last_row_is_replicated() {
    child_if_asked();
    let s = setup("");
    let (st, out, err) = run_exec(Path::new(ENGINE), &s, "trap0", "ours", true);
    let log = fs::read_to_string(&out).unwrap_or_default();
    assert!(st.success(), "exit {st}; log:\n{log}");
    assert!(error_lines(&err).is_empty(), "{:?}", error_lines(&err));
    for line in [
        "signal received, litestream shutting down",
        "sending signal to exec process",
        "waiting for exec process to close",
        "litestream shut down",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    assert_eq!(replicated_rows(&s), [1, 2], "log:\n{log}");
}

/// Exit status and message: a child failing after the signal, one failing on its own, one
/// that ignores the signal past `shutdown-sync-timeout`. The final sync happens each time.
#[test]
fn exec_failures_exit_1_with_litestreams_message() {
    child_if_asked();
    let s = setup("shutdown-sync-timeout: 2s\n");
    let (st, _, err) = run_exec(Path::new(ENGINE), &s, "trap3", "trap3", true);
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        error_lines(&err),
        ["Error: cannot wait for exec process: exit status 3"]
    );
    // Litestream skips its final sync here; the application's last row is still replicated.
    assert_eq!(replicated_rows(&s), [1, 2]);

    let (st, _, err) = run_exec(Path::new(ENGINE), &s, "exit3", "exit3", false);
    assert_eq!(st.code(), Some(1));
    assert_eq!(error_lines(&err), ["Error: exit status 3"]);
    assert_eq!(replicated_rows(&s), [1, 2, 1]);

    let (mut c, out, err) = start(Path::new(ENGINE), &s, "ignore", "ignore");
    let t0 = Instant::now();
    term(&c);
    let st = wait_exit(&mut c, &out);
    assert_eq!(st.code(), Some(1));
    assert!(t0.elapsed() >= Duration::from_secs(2));
    let e = error_lines(&err);
    assert!(
        e.len() == 1 && e[0].contains("did not exit within shutdown-sync-timeout"),
        "{e:?}"
    );
    assert_eq!(replicated_rows(&s), [1, 2, 1, 1]);
}

/// The same runs under Litestream 0.5.17: the same exit status and `Error:` line.
#[test]
#[ignore = "needs the real Litestream"]
fn exec_exit_status_matches_litestream() {
    child_if_asked();
    let ls = litestream();
    for (mode, signal) in [("trap0", true), ("trap3", true), ("exit3", false)] {
        let mut seen = Vec::new();
        for (who, bin) in [("ours", PathBuf::from(ENGINE)), ("litestream", ls.clone())] {
            let s = setup("");
            let (st, _, err) = run_exec(&bin, &s, mode, who, signal);
            seen.push((st.code(), error_lines(&err)));
        }
        assert_eq!(seen[0], seen[1], "{mode}: ours, then Litestream's");
    }
}

/// `-once` with an `exec` (flag or config file), and `-force-snapshot` or `-enforce-retention`
/// without `-once`, are refused before anything runs, exit 1, with Litestream 0.5.17's words
/// (as it printed them here); nothing reaches the replica.
#[test]
fn once_with_exec_is_refused_as_in_litestream() {
    let s = setup("");
    let c = s.cfg.to_str().expect("utf-8 path");
    let with_exec = s.dir.path().join("exec.yml");
    let text = fs::read_to_string(&s.cfg).expect("cfg");
    fs::write(&with_exec, format!("exec: sleep 5\n{text}")).expect("cfg");
    let e = with_exec.to_str().expect("utf-8 path");
    for (args, msg) in [
        (
            vec!["-config", c, "-once", "-exec", "sleep 5"],
            "cannot specify -once flag with -exec",
        ),
        (
            vec!["-config", e, "-once"],
            "cannot specify -once flag with -exec",
        ),
        (
            vec!["-config", c, "-force-snapshot"],
            "cannot specify -force-snapshot flag without -once",
        ),
        (
            vec!["-config", c, "-enforce-retention"],
            "cannot specify -enforce-retention flag without -once",
        ),
    ] {
        let t0 = Instant::now();
        let o = Command::new(ENGINE)
            .arg("replicate")
            .args(&args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{args:?} ran the exec"
        );
    }
    assert!(l0_names(&s.replica).is_empty(), "something was replicated");
}
