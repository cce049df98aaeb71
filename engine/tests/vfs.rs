//! `ls-vfs` (issue 17): the `litestream` VFS extension, loaded into Debian's `sqlite3` shell
//! beside the real litestream-vfs 0.5.17, on replicas written by `ls-engine` and by Litestream,
//! while the primary keeps writing; time travel; S3 with counted requests; damaged and
//! unreachable replicas.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;

use crate::common::{
    app, fast_config, insert_rows, litestream, litestream_cmd, one_db, proxy, s3_server,
    setup_table, wait_until, Engine,
};

/// `libls_vfs.so` of the profile under test: the engine's tests depend on `ls-vfs`, so Cargo
/// builds it, into `deps/` (or beside the binaries when it was built on its own).
pub(crate) fn ls_vfs() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let deps = exe.parent().expect("deps dir");
    [deps.join("libls_vfs.so"), deps.join("../libls_vfs.so")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no libls_vfs.so in {}: cargo build -p ls-vfs",
                deps.display()
            )
        })
}

/// Runs `sql` in Debian's `sqlite3` shell on `file:x.db?vfs=litestream` of `url`, with the
/// extension `lib` loaded; returns (stdout, stderr).
pub(crate) fn shell(
    lib: &Path,
    url: &str,
    env: &[(String, String)],
    sql: &str,
) -> (String, String) {
    let script = format!(
        ".bail on\n.load {}\n.open file:x.db?vfs=litestream\n{sql}\n",
        lib.display()
    );
    let mut child = Command::new("sqlite3")
        .arg("-batch")
        .env("LITESTREAM_REPLICA_URL", url)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sqlite3 shell (apt-get install sqlite3)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    let out = child.wait_with_output().expect("sqlite3");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The queries whose answers both extensions must agree on.
const SAME: &str = "select count(*), sum(k), sum(length(v)), max(id) from t;
select count(*) from t where k between 100 and 199;
pragma litestream_txid;
pragma litestream_time;
select litestream_txid(), litestream_time();
pragma litestream_write_enabled;
pragma litestream_hydration_progress;
pragma integrity_check;";

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn batch(c: &Connection, from: usize, n: usize) {
    c.execute_batch("BEGIN").expect("begin");
    insert_rows(c, from, n, 40);
    c.execute_batch("COMMIT").expect("commit");
}

/// The TXID both extensions report once the replica holds everything the primary committed.
fn settled_txid(lib: &Path, url: &str, env: &[(String, String)], rows: usize) -> String {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        let (out, _) = shell(
            lib,
            url,
            env,
            "select count(*) from t; pragma litestream_txid;",
        );
        last = out;
        last.lines().next() == Some(&rows.to_string())
    });
    assert!(ok, "the replica never showed {rows} rows: {last}");
    last.lines().nth(1).unwrap_or_default().to_owned()
}

/// A database `ls-engine` replicates to a file replica, with `rows` rows written in one
/// transaction once the engine runs; returned once `lib` reads every row there, with the
/// running engine and the replica's URL.
fn engine_replica(lib: &Path, rows: usize) -> (crate::common::OneDb, Engine, String) {
    let one = one_db();
    fast_config(&one.cfg, &[(one.db.clone(), one.replica.clone())]);
    let e = Engine::start(&one.cfg, &one.dir.path().join("engine.log"));
    batch(&one.conn, 0, rows);
    let url = file_url(&one.replica);
    settled_txid(lib, &url, &[], rows);
    (one, e, url)
}

/// [`engine_replica`] with the engine stopped.
fn replicated_by_engine(lib: &Path, rows: usize) -> (crate::common::OneDb, String) {
    let (one, e, url) = engine_replica(lib, rows);
    e.stop();
    (one, url)
}

#[test]
fn vfs_answers_like_litestream_vfs_on_an_ls_engine_replica_while_the_primary_writes() {
    let (ours, theirs) = (ls_vfs(), test_support::env::litestream_vfs());
    let (one, e, url) = engine_replica(&ours, 500);

    // One connection of each extension follows the primary for a few seconds; every answer
    // is a whole number of 100-row transactions, never fewer rows than the one before, and a
    // read transaction sees one TXID throughout.
    let mut sql = String::new();
    for _ in 0..6 {
        sql.push_str("select count(*), litestream_txid() from t;\n.system sleep 0.6\n");
    }
    sql.push_str(
        "begin;\nselect count(*), litestream_txid() from t;\n.system sleep 1.5\n\
         select count(*), litestream_txid() from t;\ncommit;\n",
    );
    let db = one.db.clone();
    let writer = std::thread::spawn(move || {
        let c = app(&db, 4096);
        for i in 0..40 {
            batch(&c, 500 + i * 100, 100);
            std::thread::sleep(Duration::from_millis(120));
        }
    });
    let readers: Vec<_> = [ours.clone(), theirs.clone()]
        .into_iter()
        .map(|lib| {
            let (url, sql) = (url.clone(), sql.clone());
            std::thread::spawn(move || shell(&lib, &url, &[], &sql))
        })
        .collect();
    writer.join().expect("writer");
    for (r, name) in readers.into_iter().zip(["ls-vfs", "litestream-vfs"]) {
        let (out, err) = r.join().expect("reader");
        let rows: Vec<(u64, String)> = out
            .lines()
            .map(|l| {
                let (n, t) = l
                    .split_once('|')
                    .unwrap_or_else(|| panic!("{name}: {out}{err}"));
                (n.parse().expect("count"), t.to_owned())
            })
            .collect();
        assert_eq!(rows.len(), 8, "{name}: {out}{err}");
        assert!(
            rows.iter().all(|(n, _)| n % 100 == 0),
            "{name}: a partial transaction: {out}"
        );
        assert!(
            rows.windows(2).all(|w| w[0].0 <= w[1].0),
            "{name}: went back: {out}"
        );
        if name == "ls-vfs" {
            assert!(
                rows[5].0 > rows[0].0,
                "{name} did not follow the primary: {out}"
            );
            assert_eq!(
                rows[6], rows[7],
                "{name}: a read transaction saw two states: {out}"
            );
        }
    }

    // Writer stopped: both extensions answer every query alike, with the primary's rows.
    let rows = 4500;
    let txid = settled_txid(&ours, &url, &[], rows);
    assert_eq!(settled_txid(&theirs, &url, &[], rows), txid);
    let (a, a_err) = shell(&ours, &url, &[], SAME);
    let (b, b_err) = shell(&theirs, &url, &[], SAME);
    assert!(a.contains("\nok\n"), "ls-vfs: {a}{a_err}");
    assert_eq!(a, b, "ls-vfs vs litestream-vfs; stderr: {a_err} / {b_err}");
    let primary: i64 = one
        .conn
        .query_row("select count(*) from t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(
        a.lines().next().and_then(|l| l.split('|').next()),
        Some(&*primary.to_string())
    );
    e.stop();
}

#[test]
fn vfs_answers_like_litestream_vfs_on_a_litestream_replica() {
    let (ours, theirs) = (ls_vfs(), test_support::env::litestream_vfs());
    let one = one_db();
    batch(&one.conn, 0, 2000);
    let cfg = one.dir.path().join("lit.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n      sync-interval: 100ms\n",
            one.db.display(),
            one.replica.display()
        ),
    )
    .expect("cfg");
    let mut lit = litestream_cmd(&litestream())
        .args(["replicate", "-config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litestream replicate");
    let url = file_url(&one.replica);
    let ready = wait_until(Duration::from_secs(20), || {
        shell(&theirs, &url, &[], "select count(*) from t;")
            .0
            .trim()
            == "2000"
    });
    batch(&one.conn, 2000, 300);
    let txid = ready.then(|| settled_txid(&theirs, &url, &[], 2300));
    let _ = lit.kill();
    let _ = lit.wait();
    let txid = txid.expect("Litestream never replicated the rows");
    assert_eq!(settled_txid(&ours, &url, &[], 2300), txid);
    let (a, a_err) = shell(&ours, &url, &[], SAME);
    let (b, b_err) = shell(&theirs, &url, &[], SAME);
    assert!(a.contains("\nok\n"), "ls-vfs: {a}{a_err}");
    assert_eq!(a, b, "ls-vfs vs litestream-vfs; stderr: {a_err} / {b_err}");
}

#[test]
fn vfs_time_travel_reads_an_earlier_state_and_comes_back() {
    let (ours, theirs) = (ls_vfs(), test_support::env::litestream_vfs());
    let (one, e, url) = engine_replica(&ours, 100);
    // File creation times have whole-millisecond precision or better; leave room both sides.
    std::thread::sleep(Duration::from_millis(1200));
    let between = storage::timefmt::format_rfc3339(SystemTime::now());
    std::thread::sleep(Duration::from_millis(1200));
    batch(&one.conn, 100, 200);
    settled_txid(&ours, &url, &[], 300);
    e.stop();
    let sql = format!(
        "select count(*) from t;\npragma litestream_time = '{between}';\n\
         select count(*) from t;\npragma litestream_time;\n\
         pragma litestream_time = 'latest';\nselect count(*) from t;"
    );
    for lib in [&ours, &theirs] {
        let (out, err) = shell(lib, &url, &[], &sql);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{}: {out}{err}", lib.display());
        assert_eq!(
            (lines[0], lines[1], lines[3]),
            ("300", "100", "300"),
            "{out}"
        );
        let shown = storage::timefmt::parse_rfc3339(lines[2]).expect("time");
        assert_eq!(
            shown,
            storage::timefmt::parse_rfc3339(&between).expect("t"),
            "{out}"
        );
    }
}

#[test]
fn vfs_reads_an_s3_replica_with_a_bounded_number_of_requests() {
    let ours = ls_vfs();
    let srv = s3_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let c = app(&db, 4096);
    setup_table(&c);
    // About 12 MB: a b-tree three levels deep.
    for i in 0..20 {
        batch(&c, i * 5000, 5000);
    }
    let prefix = srv.unique_prefix("vfs-s3");
    let mut yaml = format!(
        "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      sync-interval: 100ms\n",
        db.display()
    );
    for l in srv.yaml_with_keys(&prefix, &srv.secret_key) {
        writeln!(yaml, "      {l}").expect("fmt");
    }
    let cfg = dir.path().join("ls.yml");
    std::fs::write(&cfg, yaml).expect("cfg");
    let e = Engine::start(&cfg, &dir.path().join("engine.log"));
    let env = srv.lit_env();
    settled_txid(&ours, &srv.url(&prefix), &env, 100_000);
    e.stop();

    let proxy = proxy::CountingProxy::in_front_of(&srv.endpoint).expect("proxy");
    let via_proxy = srv
        .url(&prefix)
        .replace(&srv.endpoint, &format!("http://{}", proxy.addr));
    let (out, err) = shell(&ours, &via_proxy, &env, "select k from t where id = 77777;");
    assert_eq!(out.trim(), "77776", "{err}");
    let n = proxy.requests();
    // Opening: the listing, the head and tail of each planned file (here one or two); the
    // query: page 1 (which holds the schema) and one page per b-tree level. 7 when written.
    assert!(n <= 12, "a point query took {n} requests");
    let (out, _) = shell(
        &ours,
        &via_proxy,
        &env,
        "select k from t where id = 77777;\nselect k from t where id = 77778;\nselect k from t where id = 77779;",
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let repeat = proxy.requests() - n;
    eprintln!("a cold point query: {n} requests; three adjacent ones: {repeat}");
    assert!(
        repeat <= n + 1,
        "repeated point queries on a warm cache took {repeat} requests"
    );
}

#[test]
fn vfs_refuses_writes_and_errs_clearly_on_damaged_or_unreachable_replicas() {
    let ours = ls_vfs();
    let (one, url) = replicated_by_engine(&ours, 3000);
    let log = one.dir.path().join("vfs.log");
    let env = vec![("LITESTREAM_LOG_FILE".to_owned(), log.display().to_string())];

    // Writes are refused, through SQL and through write mode.
    let (_, err) = shell(&ours, &url, &[], "insert into t(k, v) values (1, 'x');");
    assert!(err.contains("readonly database"), "{err}");
    let w = vec![("LITESTREAM_WRITE_ENABLED".to_owned(), "true".to_owned())];
    let (_, err) = shell(&ours, &url, &w, "select 1;");
    assert!(
        err.contains("LITESTREAM_WRITE_ENABLED=true: write mode is not supported"),
        "{err}"
    );

    // Pages that vanish from the replica after the database was opened: an I/O error, never
    // rows. The query runs after a pause in which the files are removed.
    let doomed = one.replica.clone();
    let sql = ".system sleep 1\nselect count(*), sum(length(v)) from t;";
    let t = std::thread::spawn({
        let (ours, url, env) = (ours.clone(), url.clone(), env.clone());
        move || shell(&ours, &url, &env, sql)
    });
    std::thread::sleep(Duration::from_millis(400));
    let moved = one.dir.path().join("moved");
    std::fs::rename(&doomed, &moved).expect("move replica away");
    let (out, err) = t.join().expect("reader");
    assert!(
        out.trim().is_empty() && err.contains("disk I/O error"),
        "{out}{err}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("cannot read from replica"), "{text}");
    std::fs::rename(&moved, &doomed).expect("move replica back");

    // A truncated file (the largest: the one with the whole database): the open fails and the
    // log names the file. Only the L0 chain is kept, so that file is the one read: the engine's
    // snapshot and compactions at start hold the same pages.
    for level in std::fs::read_dir(one.replica.join("ltx"))
        .expect("levels")
        .flatten()
    {
        if level.file_name() != "0" {
            std::fs::remove_dir_all(level.path()).expect("remove level");
        }
    }
    let snap = std::fs::read_dir(one.replica.join("ltx/0"))
        .expect("L0 files")
        .flatten()
        .map(|d| d.path())
        .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .expect("an L0 file");
    let len = std::fs::metadata(&snap).expect("len").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&snap)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let (out, err) = shell(&ours, &url, &env, "select count(*) from t;");
    assert!(
        out.is_empty() && err.contains("unable to open database"),
        "{out}{err}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let name = snap.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(text.contains(name), "the log does not name {name}: {text}");

    // Nobody listening where the replica should be.
    let dead = "s3://b/p?endpoint=http://127.0.0.1:9&region=us-east-1&forcePathStyle=true";
    let keys = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), "k".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "s".to_owned()),
    ];
    let (out, err) = shell(&ours, dead, &keys, "select count(*) from t;");
    assert!(
        out.is_empty() && err.contains("unable to open database"),
        "{out}{err}"
    );
}

#[test]
fn vfs_loads_into_python_sqlite3() {
    let ours = ls_vfs();
    let (_one, url) = replicated_by_engine(&ours, 250);
    // Debian's python3: its sqlite3 module can load extensions (a pyenv build may not).
    let py = "import sqlite3, sys\n\
              c = sqlite3.connect(':memory:')\n\
              c.enable_load_extension(True)\n\
              c.load_extension(sys.argv[1])\n\
              db = sqlite3.connect('file:x.db?vfs=litestream', uri=True)\n\
              print(db.execute('select count(*) from t').fetchone()[0], \
              db.execute('select litestream_txid()').fetchone()[0])\n";
    let out = Command::new("/usr/bin/python3")
        .args(["-c", py])
        .arg(&ours)
        .env("LITESTREAM_REPLICA_URL", &url)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (n, txid) = text.trim().split_once(' ').expect("two answers");
    assert_eq!(n, "250");
    assert_eq!(txid.len(), 16, "{text}");
}

#[test]
fn vfs_hydrates_a_local_copy_follows_the_primary_and_reads_from_it() {
    let ours = ls_vfs();
    let (one, e, url) = engine_replica(&ours, 2000);
    let copy = one.dir.path().join("hydrated.db");
    let away = one.dir.path().join("replica-away");
    let env = vec![
        ("LITESTREAM_HYDRATION_ENABLED".to_owned(), "true".to_owned()),
        (
            "LITESTREAM_HYDRATION_PATH".to_owned(),
            copy.display().to_string(),
        ),
    ];
    // The shell reads, waits while the primary commits 500 more rows and the copy catches up,
    // then moves the replica away: what it reads after that can only come from the copy.
    let sql = format!(
        "select count(*) from t;\n.system sleep 4\n\
         pragma litestream_hydration_progress;\npragma litestream_hydration_file;\n\
         .system mv {} {}\n\
         select count(*), sum(k) from t;\npragma integrity_check;",
        one.replica.display(),
        away.display()
    );
    let reader = std::thread::spawn({
        let (ours, url, env) = (ours.clone(), url.clone(), env.clone());
        move || shell(&ours, &url, &env, &sql)
    });
    std::thread::sleep(Duration::from_millis(300));
    batch(&one.conn, 2000, 500);
    let (out, err) = reader.join().expect("reader");
    e.stop();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}{err}");
    assert_eq!(lines[1], "100.0", "{out}");
    assert_eq!(lines[2], copy.display().to_string());
    let sum: usize = (0..2500).sum();
    assert_eq!(lines[3], format!("2500|{sum}"), "{out}{err}");
    assert_eq!(lines[4], "ok");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy is readable by others");

    // The next process resumes the copy: nothing changed on the replica, nothing is fetched.
    std::fs::rename(&away, &one.replica).expect("move the replica back");
    let log = one.dir.path().join("vfs.log");
    let mut env2 = env.clone();
    env2.push(("LITESTREAM_LOG_LEVEL".into(), "DEBUG".into()));
    env2.push(("LITESTREAM_LOG_FILE".into(), log.display().to_string()));
    // A zone east of UTC: log times are local, as Litestream's VFS (Go) writes them.
    env2.push(("TZ".into(), "Asia/Kolkata".into()));
    let (out, err) = shell(
        &ours,
        &url,
        &env2,
        ".system sleep 1.5
pragma litestream_hydration_progress;
select count(*) from t;",
    );
    assert_eq!(out, "100.0\n2500\n", "{err}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("resuming the hydration copy"), "{text}");
    assert!(text.contains(": 0 pages fetched"), "{text}");
    for line in text.lines() {
        let time = line
            .strip_prefix("time=")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_default();
        assert!(time.ends_with("+05:30") && time.len() == 29, "{line}");
    }
}
