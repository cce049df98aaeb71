//! Many databases in one `ls-engine` process (issue 13, item 4), default settings:
//!
//! ```text
//! cargo build --release -p engine --bin ls-engine
//! cargo run --release -p benches --bin many_dbs -- [--dbs 1000,10000] [--replica file,s3]
//!     [--idle-secs 60] [--engine target/release/ls-engine] [--out benches/results/many-dbs.md]
//! ```
//!
//! For each count and replica kind: N small databases (3 rows each) are created, the engine is
//! started on them, and the harness notes when each database's first L0 file shows up on the
//! replica (first sync). Then one row is written to a sample of databases and the time to its
//! L0 file on the replica is noted (lag). The idle window opens once the work the start-up and
//! these writes leave due is done (see [`wait_quiet`]: about 7 minutes) and lasts
//! `--idle-secs`; CPU is utime+stime from /proc, memory is VmRSS (anonymous
//! and file-backed separately) at the end of the window, and VmHWM. The S3 replica needs the
//! server of `tests/s3/start.sh` (its `LS_S3_*` variables, `LS_S3_DATA_DIR` included).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use benches::e2e::files::{ltx_names, tail};
use benches::e2e::host::machine_facts;
use benches::e2e::{median, proc};

const TARGET_RSS_MIB: f64 = 100.0;
const TARGET_CPU: f64 = 0.2;
const TARGET_FIRST_SYNC: f64 = 10.0;
/// Databases written after start-up to measure lag.
const SAMPLE: usize = 10;
/// The default sync interval: the lag target.
const SYNC_INTERVAL: f64 = 1.0;
/// Work due after the last write (see the module comment).
const SETTLE: Duration = Duration::from_secs(95);

fn log(msg: &str) {
    eprintln!("[many_dbs] {msg}");
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    File,
    S3,
}

struct Args {
    counts: Vec<usize>,
    kinds: Vec<Kind>,
    idle: Duration,
    engine: PathBuf,
    out: PathBuf,
    work: PathBuf,
}

fn parse_args(root: &Path) -> Result<Args> {
    let mut a = Args {
        counts: vec![1000],
        kinds: vec![Kind::File],
        idle: Duration::from_secs(60),
        engine: root.join("target/release/ls-engine"),
        out: root.join("benches/results/many-dbs.md"),
        work: std::env::temp_dir().join("ls-many-dbs"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--dbs" => {
                a.counts = v
                    .split(',')
                    .map(|s| s.parse().with_context(|| format!("--dbs {s}")))
                    .collect::<Result<_>>()?
            }
            "--replica" => {
                a.kinds = v
                    .split(',')
                    .map(|s| match s {
                        "file" => Ok(Kind::File),
                        "s3" => Ok(Kind::S3),
                        _ => bail!("--replica {s}: file or s3"),
                    })
                    .collect::<Result<_>>()?
            }
            "--idle-secs" => a.idle = Duration::from_secs(v.parse()?),
            "--engine" => a.engine = PathBuf::from(v),
            "--out" => a.out = PathBuf::from(v),
            "--work" => a.work = PathBuf::from(v),
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

/// One run's figures.
struct Figures {
    dbs: usize,
    kind: &'static str,
    first_sync_max: f64,
    first_sync_median: f64,
    lag_max: f64,
    cpu_per_min: f64,
    rss: u64,
    rss_anon: u64,
    rss_file: u64,
    hwm: u64,
    threads: u64,
    fds: usize,
}

/// `field:` of /proc/PID/status in bytes (kB values) or as a count.
fn status_field(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for l in s.lines() {
        if let Some(v) = l.strip_prefix(field).and_then(|v| v.strip_prefix(':')) {
            let v = v.trim();
            return Ok(match v.strip_suffix("kB") {
                Some(kb) => kb.trim().parse::<u64>()? * 1024,
                None => v.parse()?,
            });
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

struct Db {
    path: PathBuf,
    /// Where its L0 files show up.
    l0: PathBuf,
    yaml: String,
}

fn make_dbs(dir: &Path, n: usize, kind: Kind, tag: &str) -> Result<Vec<Db>> {
    let s3 = (kind == Kind::S3).then(test_support::env::s3_server);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.join(format!("db{i:05}.sqlite"));
        let c = rusqlite::Connection::open(&path)?;
        c.execute_batch(
            "PRAGMA journal_mode=wal; PRAGMA synchronous=OFF;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t(v) VALUES ('one'), ('two'), ('three');",
        )?;
        let (l0, yaml) = match &s3 {
            None => {
                let r = dir.join(format!("replica{i:05}"));
                let y = format!("      type: file\n      path: {}\n", r.display());
                (r.join("ltx/0"), y)
            }
            Some(s) => {
                let prefix = format!("many/db{i:05}");
                let data = s
                    .data_dir
                    .clone()
                    .context("LS_S3_DATA_DIR is not set (tests/s3/start.sh sets it)")?;
                // A bucket of its own: s3s-fs lists by walking the bucket's directory, so the
                // test suites' objects in the shared bucket would make every listing (1,000 at
                // start) cost the server seconds, and the run would measure the server.
                let bucket = format!("many-{tag}");
                std::fs::create_dir_all(data.join(&bucket))?;
                let y = format!(
                    "      type: s3\n      bucket: {}\n      path: {prefix}\n      endpoint: {}\n      \
                     region: us-east-1\n      force-path-style: true\n      \
                     access-key-id: {}\n      secret-access-key: {}\n",
                    bucket, s.endpoint, s.access_key, s.secret_key
                );
                (data.join(&bucket).join(&prefix).join("0000"), y)
            }
        };
        v.push(Db { path, l0, yaml });
    }
    Ok(v)
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sleeps until `period`'s next wall-clock multiple, plus `after` seconds.
fn sleep_past(period: u64, after: u64) {
    let now = now_secs();
    std::thread::sleep(Duration::from_secs(period - now % period + after));
}

/// Waits until what the writes leave due is done: the time-based checkpoint a minute after the
/// last write, the level-1 compactions at the 30 s boundaries after, the deletion of the L0
/// files once they are 5 minutes old (`l0-retention`, checked every 15 s), the level-2
/// compaction at the first 5-minute boundary after the level-1 ones; then until the engine has
/// logged nothing for 20 s (at the default level it logs every compaction, checkpoint and
/// upload), and so that the window holds no hourly (level-3) boundary.
fn wait_quiet(logp: &Path, last_write: SystemTime) {
    let l1_done = last_write + SETTLE;
    let l0_gone = last_write + Duration::from_secs(60 + 300 + 30);
    if let Ok(d) = l0_gone.duration_since(SystemTime::now()) {
        std::thread::sleep(d);
    }
    let now = now_secs();
    let last_boundary = UNIX_EPOCH + Duration::from_secs(now - now % 300);
    if last_boundary < l1_done {
        sleep_past(300, 5);
    }
    let quiet = || {
        let mut last = (0, Instant::now());
        loop {
            let len = std::fs::metadata(logp).map_or(0, |m| m.len());
            if len != last.0 {
                last = (len, Instant::now());
            } else if last.1.elapsed() >= Duration::from_secs(20) {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    quiet();
    if now_secs() % 3600 + 70 >= 3600 {
        sleep_past(3600, 5);
        quiet();
    }
}

fn run(a: &Args, n: usize, kind: Kind) -> Result<Figures> {
    let kname = if kind == Kind::File { "file" } else { "s3" };
    let tag = format!(
        "{kname}-{n}-{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()
    );
    let dir = a.work.join(&tag);
    std::fs::create_dir_all(&dir)?;
    log(&format!("{tag}: creating {n} databases"));
    let dbs = make_dbs(&dir, n, kind, &tag)?;
    let mut yaml = String::from("dbs:\n");
    for d in &dbs {
        let _ = write!(
            yaml,
            "  - path: {}\n    replica:\n{}",
            d.path.display(),
            d.yaml
        );
    }
    let cfg = dir.join("litestream.yml");
    std::fs::write(&cfg, yaml)?;
    let logp = dir.join("ls.log");
    let mut cmd = std::process::Command::new(&a.engine);
    cmd.arg("replicate").arg("-config").arg(&cfg);
    let started = Instant::now();
    let child = proc::spawn_logged(cmd, &logp)?;
    let pid = child.id();

    // First sync of each database.
    let mut first: Vec<Option<f64>> = vec![None; n];
    while first.iter().any(Option::is_none) {
        if started.elapsed() > Duration::from_secs(600) {
            let _ = proc::stop(&child, Duration::from_secs(20));
            bail!(
                "{tag}: databases without a first sync after 600 s; log:\n{}",
                tail(&logp)
            );
        }
        if let Ok(Some(_)) = proc::try_wait4(&child, Duration::ZERO) {
            bail!("{tag}: ls-engine exited; log:\n{}", tail(&logp));
        }
        for (i, d) in dbs.iter().enumerate() {
            if first[i].is_none() && !ltx_names(&d.l0).is_empty() {
                first[i] = Some(started.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first: Vec<f64> = first.into_iter().flatten().collect();
    let first_sync_max = first.iter().copied().fold(0.0, f64::max);
    log(&format!(
        "{tag}: every first sync within {first_sync_max:.2} s (median {:.2} s)",
        median(&first)
    ));

    // Lag of one write to each sampled database, one at a time, the others idle.
    let mut lag_max: f64 = 0.0;
    for i in (0..n).step_by((n / SAMPLE).max(1)).take(SAMPLE) {
        let d = &dbs[i];
        let before = ltx_names(&d.l0).len();
        let c = rusqlite::Connection::open(&d.path)?;
        c.execute("INSERT INTO t(v) VALUES ('later')", [])?;
        let t = Instant::now();
        while ltx_names(&d.l0).len() <= before {
            if t.elapsed() > Duration::from_secs(60) {
                bail!("{tag}: database {i}: the write reached no replica in 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        lag_max = lag_max.max(t.elapsed().as_secs_f64());
    }
    log(&format!(
        "{tag}: longest write-to-replica lag {lag_max:.3} s"
    ));

    log(&format!("{tag}: settling"));
    wait_quiet(&logp, SystemTime::now());
    let c0 = proc::cpu_secs(pid)?;
    std::thread::sleep(a.idle);
    let c1 = proc::cpu_secs(pid)?;
    let f = Figures {
        dbs: n,
        kind: kname,
        first_sync_max,
        first_sync_median: median(&first),
        lag_max,
        cpu_per_min: (c1 - c0) * 60.0 / a.idle.as_secs_f64(),
        rss: status_field(pid, "VmRSS")?,
        rss_anon: status_field(pid, "RssAnon")?,
        rss_file: status_field(pid, "RssFile")? + status_field(pid, "RssShmem")?,
        hwm: status_field(pid, "VmHWM")?,
        threads: status_field(pid, "Threads")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
    };
    let u = proc::stop(&child, Duration::from_secs(60))?;
    if !u.success {
        bail!(
            "{tag}: ls-engine did not exit cleanly; log:\n{}",
            tail(&logp)
        );
    }
    log(&format!("{tag}: {}", row(&f)));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(f)
}

/// One run's row of the results table.
fn row(f: &Figures) -> String {
    format!(
        "| {} | {} | {:.2} | {:.2} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
        f.dbs,
        f.kind,
        f.first_sync_max,
        f.first_sync_median,
        f.lag_max,
        f.cpu_per_min,
        mib(f.rss),
        mib(f.rss_anon),
        mib(f.rss_file),
        mib(f.hwm),
        f.threads,
        f.fds
    )
}

fn report(a: &Args, runs: &[Figures]) -> String {
    let mut s = String::from(
        "# Many databases in one ls-engine process\n\n\
         Generated by `cargo run --release -p benches --bin many_dbs`",
    );
    let _ = writeln!(
        s,
        " (idle window {} s). Default settings; each database holds 3 rows.\n",
        a.idle.as_secs()
    );
    s.push_str("| machine | |\n|---|---|\n");
    for (k, v) in machine_facts() {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(
        s,
        "| ls-engine | {} |\n",
        proc::output_of("git", &["rev-parse", "--short", "HEAD"])
    );
    s.push_str(
        "| databases | replica | last first sync s (target <= 10) | median first sync s | \
         longest lag s (target <= 1) | idle CPU s/min (target <= 0.2) | RSS MiB (target <= 100 \
         at 1,000) | anon MiB | file MiB | peak RSS MiB | threads | fds |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in runs {
        let _ = writeln!(s, "{}", row(f));
    }
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    s.push_str("\nTargets at 1,000 databases:\n\n");
    for f in runs.iter().filter(|f| f.dbs == 1000) {
        let _ = writeln!(
            s,
            "* {}: RSS {:.1} MiB <= {TARGET_RSS_MIB}: {}; idle CPU {:.3} s/min <= {TARGET_CPU}: {}; \
             first sync {:.2} s <= {TARGET_FIRST_SYNC}: {}; lag {:.3} s <= {SYNC_INTERVAL}: {}",
            f.kind,
            mib(f.rss),
            met(mib(f.rss) <= TARGET_RSS_MIB),
            f.cpu_per_min,
            met(f.cpu_per_min <= TARGET_CPU),
            f.first_sync_max,
            met(f.first_sync_max <= TARGET_FIRST_SYNC),
            f.lag_max,
            met(f.lag_max <= SYNC_INTERVAL)
        );
    }
    s.push_str(
        "\n## Method\n\n\
         * First sync: time from starting the engine until the database's first L0 file is in \
         the replica directory (for S3, the s3s-fs directory backing the prefix), polled every \
         50 ms.\n\
         * Lag: one row written to each of 10 databases spread over the set, one at a time, the \
         others idle; time from the commit to its L0 file on the replica, polled every 5 ms.\n\
         * Idle: CPU (utime+stime from /proc/PID/stat) over the window, per 60 s. The window \
         opens once the work the start-up and the writes leave due is done: the time-based \
         checkpoint a minute after the last write, the level-1 compactions after it, the \
         deletion of L0 files 5 minutes old (`l0-retention`), the level-2 compaction at the \
         next 5-minute boundary; then once the engine has logged nothing for 20 s (it logs \
         every compaction, checkpoint and upload), and holding no hourly (level-3) boundary. \
         RSS, RssAnon, RssFile+RssShmem, \
         VmHWM, threads and open descriptors are read from /proc at the end of the window.\n",
    );
    s
}

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    let a = parse_args(&root)?;
    if !a.engine.is_file() {
        bail!(
            "no ls-engine at {} (cargo build --release -p engine --bin ls-engine)",
            a.engine.display()
        );
    }
    let mut runs = Vec::new();
    for &kind in &a.kinds {
        for &n in &a.counts {
            runs.push(run(&a, n, kind)?);
        }
    }
    let md = report(&a, &runs);
    std::fs::write(&a.out, &md).with_context(|| format!("write {}", a.out.display()))?;
    print!("{md}");
    Ok(())
}
