//! The write-path mode of the end-to-end harness (`--bin e2e_write`): a writer committing as fast
//! as it can, alone and with each tool replicating, and what the application sees (every commit's
//! latency, its throughput, the WAL's peak size) beside what the engine costs (checkpoints by
//! mode, sampled anonymous and file-backed RSS, CPU per GB of WAL).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::files::{ltx_names, tail, wait_for};
use super::proc;
use super::writer::{self, Writer};

/// Bytes of each row (half random, half zeros).
const ROW_BYTES: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Eng {
    None,
    Lit,
    Ls,
    /// Another ls-engine build (e.g. the one before a change), run as a fourth column.
    LsBefore,
}

impl Eng {
    pub fn key(self) -> &'static str {
        match self {
            Eng::None => "alone",
            Eng::Lit => "lit",
            Eng::Ls => "ls",
            Eng::LsBefore => "ls-before",
        }
    }
}

/// One workload of the matrix.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub rows: usize,
    /// The writer's auto-checkpoint at SQLite's default (1000 frames) rather than off.
    pub autockpt: bool,
    /// A second connection holds a read transaction for `READER_HOLD` at a time.
    pub reader: bool,
    /// WAL bytes the writer produces.
    pub wal_bytes: u64,
}

/// How long the concurrent reader holds each read transaction, and its pause between them.
pub const READER_HOLD: Duration = Duration::from_secs(3);
const READER_PAUSE: Duration = Duration::from_millis(300);

/// A commit slower than this counts as slow (the bound on the longest commit).
pub const SLOW_COMMIT_MS: f64 = 20.0;

/// Everything measured in one run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub wal_bytes: u64,
    pub writer_secs: f64,
    pub commits: u64,
    pub max_commit_ms: f64,
    /// When the longest commit ended (to find it in the engine's log).
    pub max_commit_at: Option<std::time::SystemTime>,
    /// Commits over [`SLOW_COMMIT_MS`].
    pub slow_commits: u64,
    pub p99_commit_ms: f64,
    pub wal_peak: u64,
    pub rss_anon_peak: u64,
    pub rss_file_peak: u64,
    pub rss_sum_peak: u64,
    pub vm_hwm: u64,
    pub cpu_secs: f64,
    /// litestream_checkpoint_count by mode at the end of the run.
    pub checkpoints: BTreeMap<String, f64>,
    pub reader_txns: u64,
}

impl Run {
    pub fn throughput(&self) -> f64 {
        self.wal_bytes as f64 / self.writer_secs
    }

    pub fn cpu_per_gb(&self) -> f64 {
        self.cpu_secs / (self.wal_bytes as f64 / 1e9)
    }
}

/// Peaks seen by the sampler thread.
#[derive(Default)]
struct Peaks {
    wal: AtomicU64,
    anon: AtomicU64,
    file: AtomicU64,
    sum: AtomicU64,
}

/// RssAnon, RssFile and RssShmem of `pid` in bytes.
fn rss_of(pid: u32) -> Option<(u64, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Some((field("RssAnon:"), field("RssFile:"), field("RssShmem:")))
}

/// Samples the WAL's size and the engine's RSS every 10 ms until `stop`.
fn sampler(stop: Arc<AtomicBool>, wal: PathBuf, pid: Option<u32>, peaks: Arc<Peaks>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(m) = std::fs::metadata(&wal) {
            peaks.wal.fetch_max(m.len(), Ordering::Relaxed);
        }
        if let Some((anon, file, shm)) = pid.and_then(rss_of) {
            peaks.anon.fetch_max(anon, Ordering::Relaxed);
            peaks.file.fetch_max(file + shm, Ordering::Relaxed);
            peaks.sum.fetch_max(anon + file + shm, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A reader that keeps a read transaction open for `READER_HOLD` at a time until `stop`;
/// returns how many it held.
fn reader(stop: Arc<AtomicBool>, db: PathBuf) -> Result<u64> {
    let c = writer::open_db(&db)?;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        c.execute_batch("BEGIN")?;
        let _: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
        let t = Instant::now();
        while t.elapsed() < READER_HOLD && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        c.execute_batch("COMMIT")?;
        n += 1;
        std::thread::sleep(READER_PAUSE);
    }
    Ok(n)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `litestream_checkpoint_count` by mode from the engine's /metrics.
fn checkpoint_counts(port: u16) -> Result<BTreeMap<String, f64>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let mut out = BTreeMap::new();
    for l in body.lines() {
        let Some(rest) = l.strip_prefix("litestream_checkpoint_count{") else {
            continue;
        };
        let mode = rest
            .split("mode=\"")
            .nth(1)
            .and_then(|m| m.split('"').next())
            .unwrap_or("?");
        let v: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(mode.to_owned()).or_insert(0.0) += v;
    }
    Ok(out)
}

/// Waits until the replica's set of L0 files has not changed for 2.5 s (caught up).
fn settle(l0: &Path) {
    let mut last = ltx_names(l0);
    let mut since = Instant::now();
    let start = Instant::now();
    while since.elapsed() < Duration::from_millis(2500)
        && start.elapsed() < Duration::from_secs(180)
    {
        std::thread::sleep(Duration::from_millis(50));
        let now = ltx_names(l0);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// Where and with what one run happens.
pub struct Setup<'a> {
    pub dir: &'a Path,
    pub eng: Eng,
    pub bin: Option<&'a Path>,
    /// Extra top-level lines of the engine's YAML for the database (e.g. `truncate-page-n`).
    pub db_extra: &'a str,
}

struct Started {
    child: Child,
    log: PathBuf,
    port: u16,
}

fn start_engine(s: &Setup<'_>, db: &Path, replica: &Path) -> Result<Option<Started>> {
    let Some(bin) = s.bin else { return Ok(None) };
    let port = free_port()?;
    let mut yaml = format!("addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n", db.display());
    for l in s.db_extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str(&format!("    {l}\n"));
    }
    yaml.push_str(&format!(
        "    replica:\n      type: file\n      path: {}\n",
        replica.display()
    ));
    let cfg = s.dir.join("litestream.yml");
    std::fs::write(&cfg, yaml)?;
    let log = s.dir.join(format!("{}.log", s.eng.key()));
    let mut c = Command::new(bin);
    c.env_remove("AWS_CA_BUNDLE")
        .arg("replicate")
        .arg("-config")
        .arg(&cfg);
    let child = proc::spawn_logged(c, &log)?;
    Ok(Some(Started { child, log, port }))
}

/// One run of `case` with `s.eng` replicating (or none).
pub fn run(case: &Case, s: &Setup<'_>) -> Result<Run> {
    let _ = std::fs::remove_dir_all(s.dir);
    std::fs::create_dir_all(s.dir)?;
    let db = s.dir.join("db.sqlite");
    let wal = s.dir.join("db.sqlite-wal");
    let replica = s.dir.join("replica");
    let l0 = replica.join("ltx").join("0");
    writer::set_autocheckpoint(if case.autockpt { 1000 } else { 0 });
    let mut w = Writer::open(&db)?;
    let eng = start_engine(s, &db, &replica)?;
    let mut cpu0 = 0.0;
    if let Some(e) = &eng {
        if !wait_for(Duration::from_secs(60), || !ltx_names(&l0).is_empty()) {
            let _ = proc::stop(&e.child, Duration::from_secs(5));
            bail!("{}: no first L0 file; log:\n{}", case.name, tail(&e.log));
        }
        std::thread::sleep(Duration::from_secs(1));
        cpu0 = proc::cpu_secs(e.child.id())?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new(Peaks::default());
    let samp: JoinHandle<()> = {
        let (stop, wal, peaks) = (stop.clone(), wal.clone(), peaks.clone());
        let pid = eng.as_ref().map(|e| e.child.id());
        std::thread::spawn(move || sampler(stop, wal, pid, peaks))
    };
    let rstop = Arc::new(AtomicBool::new(false));
    let rd: Option<JoinHandle<Result<u64>>> = case.reader.then(|| {
        let (stop, db) = (rstop.clone(), db.clone());
        std::thread::spawn(move || reader(stop, db))
    });
    let mut lat: Vec<f64> = Vec::with_capacity(1 << 20);
    let mut worst = (0.0f64, None);
    let start = Instant::now();
    let mut seq = 0i64;
    let result = (|| -> Result<()> {
        while w.wal_bytes < case.wal_bytes {
            seq += 1;
            let t = Instant::now();
            w.txn(seq, case.rows, ROW_BYTES)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if ms > worst.0 {
                worst = (ms, Some(std::time::SystemTime::now()));
            }
            lat.push(ms);
        }
        Ok(())
    })();
    let writer_secs = start.elapsed().as_secs_f64();
    rstop.store(true, Ordering::Relaxed);
    let reader_txns = match rd {
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))??,
        None => 0,
    };
    let mut out = Run {
        wal_bytes: w.wal_bytes,
        writer_secs,
        commits: w.commits,
        max_commit_ms: worst.0,
        max_commit_at: worst.1,
        slow_commits: lat.iter().filter(|&&l| l > SLOW_COMMIT_MS).count() as u64,
        p99_commit_ms: super::percentile(&lat, 99.0),
        reader_txns,
        ..Run::default()
    };
    drop(lat);
    if let Some(e) = &eng {
        settle(&l0);
        out.cpu_secs = proc::cpu_secs(e.child.id())? - cpu0;
        out.vm_hwm = proc::vm_hwm(e.child.id())?;
        out.checkpoints = checkpoint_counts(e.port)
            .with_context(|| format!("scrape metrics; log:\n{}", tail(&e.log)))?;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = samp.join();
    if let Some(e) = eng {
        proc::stop(&e.child, Duration::from_secs(30))?;
        // Kept beside the run directories for a look at what the engine did.
        if let Some(name) = s.dir.file_name() {
            let logs = s.dir.with_file_name("logs");
            let _ = std::fs::create_dir_all(&logs);
            let mut to = name.to_owned();
            to.push(".log");
            let _ = std::fs::copy(&e.log, logs.join(to));
        }
    }
    result?;
    out.wal_peak = peaks.wal.load(Ordering::Relaxed);
    out.rss_anon_peak = peaks.anon.load(Ordering::Relaxed);
    out.rss_file_peak = peaks.file.load(Ordering::Relaxed);
    out.rss_sum_peak = peaks.sum.load(Ordering::Relaxed);
    drop(w);
    let _ = std::fs::remove_dir_all(s.dir);
    Ok(out)
}
