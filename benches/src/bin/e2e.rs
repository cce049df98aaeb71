//! End-to-end benchmark: the real Litestream 0.5.17 and ls-engine / ls-restore on identical
//! workloads, alternating A/B in the same run, reported as ratios (see README "Benchmarks").
//!
//!   cargo build --release --bins
//!   cargo run --release -p benches --bin e2e -- [--quick] [--reps N] [--out DIR] [--work DIR]
//!                                               [--only cpu,lag,idle,snapshot,restore]
//!                                               [--bin-dir DIR]
//!
//! Writes DIR/e2e.md, DIR/e2e.png and DIR/e2e.json (default DIR: benches/results).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use benches::e2e::chart::{self, Bar};
use benches::e2e::files::{ltx_names, tail, wait_for};
use benches::e2e::host::{find_litestream, machine_facts};
use benches::e2e::proc::{self, output_of};
use benches::e2e::proxy::CountingProxy;
use benches::e2e::writer::{self, Writer};
use benches::e2e::{median, percentile};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Eng {
    Lit,
    Ls,
}

/// The order of every A/B pair: Litestream first, then ours, repeated per repetition.
const ENGINES: [Eng; 2] = [Eng::Lit, Eng::Ls];

impl Eng {
    fn key(self) -> &'static str {
        match self {
            Eng::Lit => "lit",
            Eng::Ls => "ls",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    File,
    S3,
}

impl Target {
    fn key(self) -> &'static str {
        match self {
            Target::File => "file",
            Target::S3 => "s3",
        }
    }
}

struct S3 {
    endpoint: String,
    access: String,
    secret: String,
    bucket: String,
    data: PathBuf,
    /// State dir of a server this harness started (stopped at the end).
    started: Option<PathBuf>,
}

/// Where one database replicates to.
struct Replica {
    target: Target,
    /// File replica directory, or the S3 server's directory for the prefix.
    dir: PathBuf,
    prefix: String,
    endpoint: String,
}

impl Replica {
    /// Level-0 directory: `ltx/0` in a file replica, `0000` under an S3 prefix.
    fn l0(&self) -> PathBuf {
        match self.target {
            Target::File => self.dir.join("ltx").join("0"),
            Target::S3 => self.dir.join("0000"),
        }
    }
}

struct WlSpec {
    name: &'static str,
    txns: usize,
    rows: usize,
    bytes: usize,
}

struct H {
    root: PathBuf,
    work: PathBuf,
    quick: bool,
    reps: usize,
    lit: PathBuf,
    ls: PathBuf,
    lsr: PathBuf,
    s3: S3,
    /// Raw samples by key, written to e2e.json.
    samples: BTreeMap<String, Vec<f64>>,
    started: Instant,
}

fn log(msg: &str) {
    eprintln!("[e2e] {msg}");
}

fn rm(p: &Path) {
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

fn fresh_dir(p: &Path) -> Result<()> {
    rm(p);
    std::fs::create_dir_all(p).with_context(|| format!("mkdir {}", p.display()))
}

fn sync_disk() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads the files to the end (warms the page cache, or times the read half of the floor).
fn read_all(files: &[PathBuf]) -> Result<u64> {
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    for f in files {
        let mut h = std::fs::File::open(f)?;
        loop {
            let n = h.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// The write half of the floor: `bytes` of pseudo-random data in 4 MiB writes, writeback
/// started after each (sync_file_range), one fsync at the end.
fn floor_write(path: &Path, bytes: u64) -> Result<f64> {
    use std::os::unix::io::AsRawFd;
    let mut buf = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for c in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let start = Instant::now();
    let mut f = std::fs::File::create(path)?;
    let mut off = 0u64;
    while off < bytes {
        let n = (bytes - off).min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        // SAFETY: valid fd; the range is within the file.
        unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                off as i64,
                n as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        off += n as u64;
    }
    f.sync_all()?;
    Ok(start.elapsed().as_secs_f64())
}

impl H {
    fn add(&mut self, key: String, v: f64) {
        self.samples.entry(key).or_default().push(v);
    }

    fn med(&self, key: &str) -> f64 {
        self.samples.get(key).map(|v| median(v)).unwrap_or(f64::NAN)
    }

    fn bin(&self, e: Eng) -> &Path {
        match e {
            Eng::Lit => &self.lit,
            Eng::Ls => &self.ls,
        }
    }

    /// A command for either engine's binaries with the environment both get: no AWS_CA_BUNDLE
    /// (Litestream fails with it), the S3 test keys, no metadata-service lookups.
    fn cmd(&self, prog: &Path) -> Command {
        let mut c = Command::new(prog);
        c.env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", &self.s3.access)
            .env("AWS_SECRET_ACCESS_KEY", &self.s3.secret);
        c
    }

    fn replica(&self, target: Target, file_dir: &Path, prefix: &str, endpoint: &str) -> Replica {
        match target {
            Target::File => Replica {
                target,
                dir: file_dir.to_owned(),
                prefix: String::new(),
                endpoint: String::new(),
            },
            Target::S3 => Replica {
                target,
                dir: self.s3.data.join(&self.s3.bucket).join(prefix),
                prefix: prefix.to_owned(),
                endpoint: endpoint.to_owned(),
            },
        }
    }

    /// The YAML both engines read: default settings, only the paths and S3 access given.
    fn config(&self, dbs: &[(PathBuf, &Replica)]) -> String {
        let mut s = String::from("dbs:\n");
        for (db, r) in dbs {
            let _ = writeln!(s, "  - path: {}\n    replica:", db.display());
            match r.target {
                Target::File => {
                    let _ = writeln!(s, "      type: file\n      path: {}", r.dir.display());
                }
                Target::S3 => {
                    let _ = writeln!(
                        s,
                        "      type: s3\n      bucket: {}\n      path: {}\n      endpoint: {}\n      \
                         region: us-east-1\n      force-path-style: true\n      \
                         access-key-id: {}\n      secret-access-key: {}",
                        self.s3.bucket, r.prefix, r.endpoint, self.s3.access, self.s3.secret
                    );
                }
            }
        }
        s
    }

    fn start_engine(
        &self,
        e: Eng,
        dir: &Path,
        yaml: &str,
    ) -> Result<(std::process::Child, PathBuf)> {
        let cfg = dir.join("litestream.yml");
        std::fs::write(&cfg, yaml)?;
        let log = dir.join(format!("{}.log", e.key()));
        let mut c = self.cmd(self.bin(e));
        c.arg("replicate").arg("-config").arg(&cfg);
        Ok((proc::spawn_logged(c, &log)?, log))
    }

    fn elapsed(&self) -> String {
        format!("{:.0}s", self.started.elapsed().as_secs_f64())
    }

    // ---- 1 + 2 + 5: CPU per GB, writer throughput, engine RSS ----

    /// One writer run, with `eng` replicating (or none). Returns (wal bytes, writer seconds,
    /// engine CPU seconds, engine VmHWM bytes).
    fn cpu_run(
        &self,
        eng: Option<Eng>,
        target: Target,
        wl: &WlSpec,
        tag: &str,
    ) -> Result<(u64, f64, f64, u64)> {
        let dir = self.work.join("run").join(tag);
        fresh_dir(&dir)?;
        let db = dir.join("db.sqlite");
        let mut w = Writer::open(&db)?;
        let rep = self.replica(
            target,
            &dir.join("replica"),
            &format!("e2e/{tag}"),
            &self.s3.endpoint,
        );
        rm(&rep.dir);
        let mut eng_proc = None;
        if let Some(e) = eng {
            let (child, log) = self.start_engine(e, &dir, &self.config(&[(db.clone(), &rep)]))?;
            if !wait_for(Duration::from_secs(60), || !ltx_names(&rep.l0()).is_empty()) {
                let _ = proc::stop(&child, Duration::from_secs(5));
                bail!("{tag}: no first L0 file; log:\n{}", tail(&log));
            }
            std::thread::sleep(Duration::from_secs(1));
            let cpu0 = proc::cpu_secs(child.id())?;
            eng_proc = Some((child, cpu0));
        }
        let wall = w.run(wl.txns, wl.rows, wl.bytes)?.as_secs_f64();
        let (mut cpu, mut hwm) = (0.0, 0);
        if let Some((child, cpu0)) = eng_proc {
            // Caught up: the set of L0 files has not changed for 2.5 s.
            let mut last = ltx_names(&rep.l0());
            let mut since = Instant::now();
            let start = Instant::now();
            while since.elapsed() < Duration::from_millis(2500)
                && start.elapsed() < Duration::from_secs(90)
            {
                std::thread::sleep(Duration::from_millis(50));
                let now = ltx_names(&rep.l0());
                if now != last {
                    last = now;
                    since = Instant::now();
                }
            }
            cpu = proc::cpu_secs(child.id())? - cpu0;
            hwm = proc::vm_hwm(child.id())?;
            proc::stop(&child, Duration::from_secs(20))?;
        }
        let bytes = w.wal_bytes;
        drop(w);
        rm(&dir);
        rm(&rep.dir);
        Ok((bytes, wall, cpu, hwm))
    }

    fn bench_cpu(&mut self) -> Result<()> {
        let scale = if self.quick { 1 } else { 2 };
        let wls = [
            WlSpec {
                name: "small",
                txns: 100_000 * scale,
                rows: 1,
                bytes: 200,
            },
            WlSpec {
                name: "large",
                txns: 100 * scale,
                rows: 1000,
                bytes: 4000,
            },
        ];
        for rep in 0..self.reps {
            for wl in &wls {
                for target in [Target::File, Target::S3] {
                    let tag = format!("{}-{}-none-{rep}", wl.name, target.key());
                    let (b, wall, _, _) = self.cpu_run(None, target, wl, &tag)?;
                    let thr_none = b as f64 / wall;
                    self.add(
                        format!("thr/{}/{}/none", wl.name, target.key()),
                        thr_none / 1e6,
                    );
                    for e in ENGINES {
                        let tag = format!("{}-{}-{}-{rep}", wl.name, target.key(), e.key());
                        let (b, wall, cpu, hwm) = self.cpu_run(Some(e), target, wl, &tag)?;
                        let gb = b as f64 / 1e9;
                        log(&format!(
                            "{} cpu {tag}: {:.1} MB WAL in {wall:.2}s, engine {cpu:.2} CPU s ({:.2} s/GB), {:.1} MB RSS",
                            self.elapsed(),
                            b as f64 / 1e6,
                            cpu / gb,
                            hwm as f64 / 1e6
                        ));
                        let k = format!("{}/{}/{}", wl.name, target.key(), e.key());
                        self.add(format!("cpu_per_gb/{k}"), cpu / gb);
                        self.add(format!("thr_rel/{k}"), (b as f64 / wall) / thr_none);
                        self.add(format!("thr/{k}"), b as f64 / wall / 1e6);
                        self.add(format!("rss/{k}"), hwm as f64);
                    }
                }
            }
        }
        Ok(())
    }

    // ---- 3: lag ----

    fn lag_run(&self, e: Eng, target: Target, commits: usize, tag: &str) -> Result<Vec<f64>> {
        let dir = self.work.join("run").join(tag);
        fresh_dir(&dir)?;
        let db = dir.join("db.sqlite");
        let mut w = Writer::open(&db)?;
        let rep = self.replica(
            target,
            &dir.join("replica"),
            &format!("e2e/{tag}"),
            &self.s3.endpoint,
        );
        rm(&rep.dir);
        let (child, log) = self.start_engine(e, &dir, &self.config(&[(db.clone(), &rep)]))?;
        if !wait_for(Duration::from_secs(60), || !ltx_names(&rep.l0()).is_empty()) {
            let _ = proc::stop(&child, Duration::from_secs(5));
            bail!("{tag}: no first L0 file; log:\n{}", tail(&log));
        }
        std::thread::sleep(Duration::from_millis(1500));
        // The poller notes when each new L0 file name first shows up (1 ms polling).
        let stop = Arc::new(AtomicBool::new(false));
        let l0 = rep.l0();
        let st = stop.clone();
        let poller = std::thread::spawn(move || {
            let mut seen: HashSet<String> = ltx_names(&l0).into_iter().collect();
            let mut appear = Vec::new();
            while !st.load(Ordering::Relaxed) {
                for n in ltx_names(&l0) {
                    if seen.insert(n) {
                        appear.push(Instant::now());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            appear
        });
        let mut commit_at = Vec::with_capacity(commits);
        for i in 0..commits {
            // ~10 commits a second, not in step with either engine's timers.
            std::thread::sleep(Duration::from_millis(90 + (i as u64 * 7) % 23));
            w.txn(i as i64 + 1, 1, 200)?;
            commit_at.push(Instant::now());
        }
        let last = *commit_at.last().context("no commits")?;
        std::thread::sleep(Duration::from_secs(if target == Target::S3 {
            4
        } else {
            3
        }));
        stop.store(true, Ordering::Relaxed);
        let appear = poller
            .join()
            .map_err(|_| anyhow::anyhow!("poller panicked"))?;
        proc::stop(&child, Duration::from_secs(20))?;
        drop(w);
        rm(&dir);
        rm(&rep.dir);
        let _ = last;
        Ok(commit_at
            .iter()
            .map(|t| {
                appear
                    .iter()
                    .find(|a| *a >= t)
                    .map(|a| a.duration_since(*t).as_secs_f64())
                    .unwrap_or(f64::NAN)
            })
            .collect())
    }

    fn bench_lag(&mut self) -> Result<()> {
        let commits = if self.quick { 40 } else { 100 };
        for rep in 0..self.reps {
            for target in [Target::File, Target::S3] {
                for e in ENGINES {
                    let tag = format!("lag-{}-{}-{rep}", target.key(), e.key());
                    let lags = self.lag_run(e, target, commits, &tag)?;
                    let missing = lags.iter().filter(|l| l.is_nan()).count();
                    let (p50, p99) = (percentile(&lags, 50.0), percentile(&lags, 99.0));
                    log(&format!(
                        "{} {tag}: p50 {:.1} ms, p99 {:.1} ms, {missing} commits never seen",
                        self.elapsed(),
                        p50 * 1e3,
                        p99 * 1e3
                    ));
                    let k = format!("{}/{}", target.key(), e.key());
                    self.add(format!("lag_p50/{k}"), p50);
                    self.add(format!("lag_p99/{k}"), p99);
                }
            }
        }
        Ok(())
    }

    // ---- 4: idle ----

    fn bench_idle(&mut self) -> Result<()> {
        // Default settings. After the start-up writes, real work is still due: the first L1
        // compaction at the next 30 s boundary, the time-based checkpoint one minute after
        // the last write, and the compaction of that checkpoint's L0 file at the boundary
        // after it. The window opens once all that is done (95 s) and closes before the next
        // 5-minute boundary, where L2 would compact the start-up data (real work again).
        let settle = Duration::from_secs(95);
        let window = Duration::from_secs(60);
        let upstream = self
            .s3
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .context("S3 endpoint address")?;
        let proxy = CountingProxy::start(upstream)?;
        let endpoint = format!("http://{}", proxy.addr);
        let reps = if self.quick { 1 } else { self.reps.min(2) };
        for rep in 0..reps {
            for e in ENGINES {
                let tag = format!("idle-{}-{rep}", e.key());
                let dir = self.work.join("run").join(&tag);
                fresh_dir(&dir)?;
                let mut dbs = Vec::new();
                for i in 0..50 {
                    let db = dir.join(format!("db{i:02}.sqlite"));
                    let mut w = Writer::open(&db)?;
                    w.run(20, 1, 200)?;
                    let r =
                        self.replica(Target::S3, &dir, &format!("e2e/{tag}/db{i:02}"), &endpoint);
                    rm(&r.dir);
                    dbs.push((db, r));
                }
                let pairs: Vec<(PathBuf, &Replica)> =
                    dbs.iter().map(|(d, r)| (d.clone(), r)).collect();
                let in_period = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
                    % 300;
                let need = (settle + window).as_secs() + 10;
                if in_period + need > 300 {
                    let wait = 300 - in_period + 2;
                    log(&format!(
                        "{} {tag}: waiting {wait} s so the window holds no 5-minute boundary",
                        self.elapsed()
                    ));
                    std::thread::sleep(Duration::from_secs(wait));
                }
                let started = Instant::now();
                let (child, logp) = self.start_engine(e, &dir, &self.config(&pairs))?;
                let ok = wait_for(Duration::from_secs(120), || {
                    dbs.iter().all(|(_, r)| !ltx_names(&r.l0()).is_empty())
                });
                if !ok {
                    let _ = proc::stop(&child, Duration::from_secs(5));
                    bail!(
                        "{tag}: not every database got its first L0 file; log:\n{}",
                        tail(&logp)
                    );
                }
                std::thread::sleep(settle.saturating_sub(started.elapsed()));
                let (c0, r0) = (proc::cpu_secs(child.id())?, proxy.requests());
                std::thread::sleep(window);
                let (c1, r1) = (proc::cpu_secs(child.id())?, proxy.requests());
                proc::stop(&child, Duration::from_secs(20))?;
                // Per 60 s whatever the window.
                let f = 60.0 / window.as_secs_f64();
                let (cpu, reqs) = ((c1 - c0) * f, (r1 - r0) as f64 * f);
                log(&format!(
                    "{} {tag}: {cpu:.3} CPU s and {reqs:.0} requests per 60 s (50 databases)",
                    self.elapsed()
                ));
                self.add(format!("idle_cpu/{}", e.key()), cpu);
                self.add(format!("idle_req/{}", e.key()), reqs);
                rm(&dir);
                for (_, r) in &dbs {
                    rm(&r.dir);
                }
            }
        }
        Ok(())
    }

    // ---- 5b: snapshot of a large database ----

    fn bench_snapshot(&mut self) -> Result<()> {
        let mib = if self.quick { 256 } else { 2048 };
        let dir = self.work.join(format!("snap-{mib}"));
        std::fs::create_dir_all(dir.join("db"))?;
        let db = dir.join("db").join("db.sqlite");
        log(&format!(
            "{} building a {mib} MiB database (cached in {})",
            self.elapsed(),
            dir.display()
        ));
        writer::make_big_db(&db, mib)?;
        let reps = if self.quick { 1 } else { self.reps.min(2) };
        for rep in 0..reps {
            for e in ENGINES {
                // Only the database: no engine state left from the previous run.
                for ent in std::fs::read_dir(dir.join("db"))?.flatten() {
                    let n = ent.file_name().to_string_lossy().into_owned();
                    if !matches!(n.as_str(), "db.sqlite" | "db.sqlite-wal" | "db.sqlite-shm") {
                        rm(&ent.path());
                    }
                }
                let rdir = dir.join("replica");
                rm(&rdir);
                let rep_ = self.replica(Target::File, &rdir, "", "");
                let cfg = dir.join("litestream.yml");
                std::fs::write(&cfg, self.config(&[(db.clone(), &rep_)]))?;
                sync_disk();
                let mut c = self.cmd(self.bin(e));
                c.arg("replicate")
                    .arg("-config")
                    .arg(&cfg)
                    .arg("-once")
                    .arg("-force-snapshot");
                let logp = dir.join(format!("{}.log", e.key()));
                let start = Instant::now();
                let child = proc::spawn_logged(c, &logp)?;
                let u = proc::wait4(&child)?;
                let wall = start.elapsed().as_secs_f64();
                let bytes: u64 = files_under(&rdir)
                    .iter()
                    .filter_map(|p| p.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                if !u.success {
                    bail!(
                        "{} replicate -once -force-snapshot failed; log:\n{}",
                        e.key(),
                        tail(&logp)
                    );
                }
                log(&format!(
                    "{} snapshot {mib} MiB {}: {wall:.1}s, {:.2} CPU s, peak RSS {:.1} MB, replica {:.0} MB",
                    self.elapsed(),
                    e.key(),
                    u.cpu_secs,
                    u.max_rss as f64 / 1e6,
                    bytes as f64 / 1e6
                ));
                self.add(format!("snap_rss/{}", e.key()), u.max_rss as f64);
                self.add(format!("snap_wall/{}", e.key()), wall);
                let _ = rep;
                rm(&rdir);
            }
        }
        Ok(())
    }

    // ---- 6: restore ----

    fn restore_case(&mut self, name: &str, mib: u64) -> Result<()> {
        let dir = self.work.join(format!("restore-{mib}"));
        std::fs::create_dir_all(dir.join("db"))?;
        let db = dir.join("db").join("db.sqlite");
        log(&format!(
            "{} building a {mib} MiB database (cached in {})",
            self.elapsed(),
            dir.display()
        ));
        let db_bytes = writer::make_big_db(&db, mib)?;
        let rdir = dir.join("replica");
        let first = rdir.join("ltx/0/0000000000000001-0000000000000001.ltx");
        let stamp = dir.join("replica.done");
        if !stamp.exists() {
            rm(&rdir);
            let rep = self.replica(Target::File, &rdir, "", "");
            let (child, logp) =
                self.start_engine(Eng::Lit, &dir, &self.config(&[(db.clone(), &rep)]))?;
            let ok = wait_for(Duration::from_secs(600), || first.exists());
            std::thread::sleep(Duration::from_secs(1));
            proc::stop(&child, Duration::from_secs(30))?;
            if !ok {
                bail!(
                    "litestream did not snapshot {}; log:\n{}",
                    db.display(),
                    tail(&logp)
                );
            }
            std::fs::write(&stamp, "")?;
        }
        // The S3 replica: Litestream replicating the same database to the S3 server (objects
        // copied in by hand would lack s3s-fs's checksum records, which slows ranged reads).
        let prefix = format!("e2e-restore-{mib}");
        let s3rep = self.replica(Target::S3, &rdir, &prefix, &self.s3.endpoint);
        let s3first = s3rep.l0().join("0000000000000001-0000000000000001.ltx");
        if !s3first.exists() {
            rm(&s3rep.dir);
            // Litestream keeps per-database state beside the database: start from none.
            for ent in std::fs::read_dir(dir.join("db"))?.flatten() {
                let n = ent.file_name().to_string_lossy().into_owned();
                if !matches!(n.as_str(), "db.sqlite" | "db.sqlite-wal" | "db.sqlite-shm") {
                    rm(&ent.path());
                }
            }
            let (child, logp) =
                self.start_engine(Eng::Lit, &dir, &self.config(&[(db.clone(), &s3rep)]))?;
            let ok = wait_for(Duration::from_secs(600), || s3first.exists());
            std::thread::sleep(Duration::from_secs(2));
            proc::stop(&child, Duration::from_secs(30))?;
            if !ok {
                bail!(
                    "litestream did not snapshot {} to S3; log:\n{}",
                    db.display(),
                    tail(&logp)
                );
            }
        }
        let files = self.plan_files(&rdir)?;
        let replica_bytes: u64 = files
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        let s3files = files_under(&s3rep.dir);
        let out = dir.join("out");
        fresh_dir(&out)?;
        sync_disk();
        std::thread::sleep(Duration::from_secs(2));
        let s3url = format!(
            "s3://{}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true",
            self.s3.bucket, self.s3.endpoint
        );
        let mut expects: BTreeMap<&str, u64> = BTreeMap::new();
        for rep in 0..self.reps {
            for target in [Target::File, Target::S3] {
                let mut expect = expects.get(target.key()).copied();
                let url = match target {
                    Target::File => format!("file://{}", rdir.display()),
                    Target::S3 => s3url.clone(),
                };
                for e in ENGINES {
                    read_all(if target == Target::File {
                        &files
                    } else {
                        &s3files
                    })?;
                    sync_disk();
                    std::thread::sleep(Duration::from_secs(1));
                    let o = out.join(format!("{}-{}-{rep}.db", target.key(), e.key()));
                    let prog = match e {
                        Eng::Lit => self.lit.clone(),
                        Eng::Ls => self.lsr.clone(),
                    };
                    let mut c = self.cmd(&prog);
                    if e == Eng::Lit {
                        c.arg("restore");
                    }
                    c.arg("-o").arg(&o).arg(&url);
                    let logp = dir.join(format!("restore-{}.log", e.key()));
                    let start = Instant::now();
                    let child = proc::spawn_logged(c, &logp)?;
                    let u = proc::wait4(&child)?;
                    let wall = start.elapsed().as_secs_f64();
                    let size = o.metadata().map(|m| m.len()).unwrap_or(0);
                    // Replicating writes a little to the database (Litestream's bookkeeping
                    // table), so the size to expect is that of the first restore.
                    let want = *expect.get_or_insert(size);
                    if !u.success || size != want || size < db_bytes {
                        bail!(
                            "{} restore from {} failed (output {size} bytes, want {want}); log:\n{}",
                            e.key(),
                            target.key(),
                            tail(&logp)
                        );
                    }
                    log(&format!(
                        "{} restore {name} {} {}: {wall:.2}s, peak RSS {:.0} MB",
                        self.elapsed(),
                        target.key(),
                        e.key(),
                        u.max_rss as f64 / 1e6
                    ));
                    self.add(format!("restore/{name}/{}/{}", target.key(), e.key()), wall);
                }
                if let Some(x) = expect {
                    expects.insert(target.key(), x);
                }
            }
            // The floor: read the replica's bytes, then write the database's bytes durably.
            read_all(&files)?;
            sync_disk();
            std::thread::sleep(Duration::from_secs(1));
            let start = Instant::now();
            read_all(&files)?;
            let t_read = start.elapsed().as_secs_f64();
            let t_write = floor_write(
                &out.join(format!("floor-{rep}.db")),
                expects.get("file").copied().unwrap_or(db_bytes),
            )?;
            log(&format!(
                "{} floor {name}: read {:.0} MB {t_read:.2}s + write {:.0} MB {t_write:.2}s",
                self.elapsed(),
                replica_bytes as f64 / 1e6,
                db_bytes as f64 / 1e6
            ));
            self.add(format!("restore/{name}/floor"), t_read + t_write);
        }
        rm(&out);
        sync_disk();
        Ok(())
    }

    /// The files a restore of the file replica reads (from `ls-restore -dry-run -json`).
    fn plan_files(&self, rdir: &Path) -> Result<Vec<PathBuf>> {
        let o = Command::new(&self.lsr)
            .args(["-dry-run", "-json", "-o", "/nonexistent/x.db"])
            .arg(format!("file://{}", rdir.display()))
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).with_context(|| {
            format!(
                "ls-restore -dry-run -json: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        })?;
        let mut out = Vec::new();
        for f in v["files"].as_array().context("plan without files")? {
            let level = f["level"].as_u64().context("level")?;
            let name = f["name"].as_str().context("name")?;
            out.push(rdir.join("ltx").join(level.to_string()).join(name));
        }
        Ok(out)
    }

    fn bench_restore(&mut self) -> Result<()> {
        if self.quick {
            self.restore_case("128 MiB", 128)?;
        } else {
            self.restore_case("1 GiB", 1024)?;
            self.restore_case("1.1 GiB (lock page)", 1127)?;
        }
        Ok(())
    }
}

// ---- report ----

struct Row {
    metric: String,
    lit: String,
    ls: String,
    /// ls / litestream.
    ratio: f64,
    target: &'static str,
    met: Option<bool>,
    bar_target: Option<f64>,
    note: String,
}

fn f3(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn build_rows(h: &H) -> Vec<Row> {
    let mut rows = Vec::new();
    let le = |ratio: f64, t: f64| (!ratio.is_nan()).then_some(ratio <= t);
    let ge = |ratio: f64, t: f64| (!ratio.is_nan()).then_some(ratio >= t);
    for wl in ["small", "large"] {
        for t in ["file", "s3"] {
            let (a, b) = (
                h.med(&format!("cpu_per_gb/{wl}/{t}/lit")),
                h.med(&format!("cpu_per_gb/{wl}/{t}/ls")),
            );
            if a.is_nan() && b.is_nan() {
                continue;
            }
            rows.push(Row {
                metric: format!("CPU s per GB of WAL, {wl} txns, {t}"),
                lit: f3(a),
                ls: f3(b),
                ratio: b / a,
                target: "<= 0.2x",
                met: le(b / a, 0.2),
                bar_target: Some(0.2),
                note: String::new(),
            });
        }
    }
    for wl in ["small", "large"] {
        for t in ["file", "s3"] {
            let (a, b) = (
                h.med(&format!("thr_rel/{wl}/{t}/lit")),
                h.med(&format!("thr_rel/{wl}/{t}/ls")),
            );
            if a.is_nan() && b.is_nan() {
                continue;
            }
            rows.push(Row {
                metric: format!("writer throughput vs no engine, {wl} txns, {t}"),
                lit: format!("{:.0}%", a * 100.0),
                ls: format!("{:.0}%", b * 100.0),
                ratio: b / a,
                target: ">= 0.95x (no worse; 5% noise)",
                met: ge(b / a, 0.95),
                bar_target: Some(0.95),
                note: format!(
                    "no engine: {} MB/s of WAL",
                    f3(h.med(&format!("thr/{wl}/{t}/none")))
                ),
            });
        }
    }
    for t in ["file", "s3"] {
        for (p, target, bt) in [("p50", "-", None), ("p99", "<= 0.5x", Some(0.5))] {
            let (a, b) = (
                h.med(&format!("lag_{p}/{t}/lit")),
                h.med(&format!("lag_{p}/{t}/ls")),
            );
            if a.is_nan() && b.is_nan() {
                continue;
            }
            rows.push(Row {
                metric: format!("lag commit -> replica {p}, {t} (ms)"),
                lit: f3(a * 1e3),
                ls: f3(b * 1e3),
                ratio: b / a,
                target,
                met: bt.and_then(|x| le(b / a, x)),
                bar_target: bt,
                note: String::new(),
            });
        }
    }
    let (a, b) = (h.med("idle_cpu/lit"), h.med("idle_cpu/ls"));
    if !a.is_nan() || !b.is_nan() {
        rows.push(Row {
            metric: "idle CPU s per 60 s, 50 databases, S3".into(),
            lit: f3(a),
            ls: f3(b),
            ratio: b / a,
            target: "<= 0.1x",
            met: le(b / a, 0.1),
            bar_target: Some(0.1),
            note: String::new(),
        });
        let (a, b) = (h.med("idle_req/lit"), h.med("idle_req/ls"));
        rows.push(Row {
            metric: "idle S3 requests per 60 s, 50 databases".into(),
            lit: f3(a),
            ls: f3(b),
            ratio: b / a,
            target: "0 requests",
            met: (!b.is_nan()).then_some(b == 0.0),
            bar_target: None,
            note: String::new(),
        });
    }
    // Engine RSS: the largest VmHWM over the four workloads, median over repetitions.
    let peak = |e: &str| -> f64 {
        let mut per_rep: Vec<f64> = Vec::new();
        for r in 0..h.reps {
            let mut m = f64::NAN;
            for wl in ["small", "large"] {
                for t in ["file", "s3"] {
                    if let Some(v) = h
                        .samples
                        .get(&format!("rss/{wl}/{t}/{e}"))
                        .and_then(|v| v.get(r))
                    {
                        m = if m.is_nan() { *v } else { m.max(*v) };
                    }
                }
            }
            per_rep.push(m);
        }
        median(&per_rep)
    };
    let (a, b) = (peak("lit"), peak("ls"));
    if !a.is_nan() || !b.is_nan() {
        rows.push(Row {
            metric: "engine peak RSS while replicating (MB)".into(),
            lit: f3(a / 1e6),
            ls: f3(b / 1e6),
            ratio: b / a,
            target: "<= 0.5x",
            met: le(b / a, 0.5),
            bar_target: Some(0.5),
            note: "largest VmHWM of the workloads above".into(),
        });
    }
    let (a, b) = (h.med("snap_rss/lit"), h.med("snap_rss/ls"));
    if !a.is_nan() || !b.is_nan() {
        let size = if h.quick { "256 MiB" } else { "2 GiB" };
        rows.push(Row {
            metric: format!("peak RSS, -once -force-snapshot of {size} (MB)"),
            lit: f3(a / 1e6),
            ls: f3(b / 1e6),
            ratio: b / a,
            target: "<= 0.5x",
            met: le(b / a, 0.5),
            bar_target: Some(0.5),
            note: format!(
                "wall {} s vs {} s",
                f3(h.med("snap_wall/lit")),
                f3(h.med("snap_wall/ls"))
            ),
        });
    }
    let names: Vec<String> = h
        .samples
        .keys()
        .filter_map(|k| k.strip_prefix("restore/"))
        .filter_map(|k| k.strip_suffix("/floor"))
        .map(str::to_owned)
        .collect();
    for name in names {
        let floor = h.med(&format!("restore/{name}/floor"));
        for t in ["file", "s3"] {
            let (a, b) = (
                h.med(&format!("restore/{name}/{t}/lit")),
                h.med(&format!("restore/{name}/{t}/ls")),
            );
            let vs_floor = b / floor;
            rows.push(Row {
                metric: format!("restore wall time {name}, {t} (s)"),
                lit: f3(a),
                ls: f3(b),
                ratio: b / a,
                target: "<= 0.33x and <= 1.5x floor",
                met: (!(b / a).is_nan()).then_some(b / a <= 1.0 / 3.0 && vs_floor <= 1.5),
                bar_target: Some(1.0 / 3.0),
                note: format!(
                    "floor {} s; ls = {:.2}x floor, {:.1}x faster",
                    f3(floor),
                    vs_floor,
                    a / b
                ),
            });
        }
    }
    rows
}

fn write_report(h: &H, out: &Path, wall: f64) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let rows = build_rows(h);
    let mut md = String::new();
    let mode = if h.quick { "quick (--quick)" } else { "full" };
    let _ = writeln!(
        md,
        "# End-to-end benchmark: ls-engine / ls-restore vs Litestream 0.5.17\n"
    );
    let _ = writeln!(
        md,
        "Generated by `cargo run --release -p benches --bin e2e{}` ({mode} run, {} repetition(s), \
         medians; {:.0} min). Ratio = ours / Litestream's, measured in the same run on the same \
         machine, A/B alternating (Litestream, then ours, for every step). Chart: `e2e.png`; \
         raw samples: `e2e.json`.\n",
        if h.quick { " -- --quick" } else { "" },
        h.reps,
        wall / 60.0
    );
    let _ = writeln!(md, "| machine | |\n|---|---|");
    for (k, v) in machine_facts() {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let litv = output_of(&h.lit.display().to_string(), &["version"]);
    let git = output_of(
        "git",
        &[
            "-C",
            &h.root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let _ = writeln!(md, "| litestream | {litv} ({}) |", h.lit.display());
    let _ = writeln!(
        md,
        "| ls-engine, ls-restore | commit {git} ({}) |\n",
        h.ls.display()
    );
    let _ = writeln!(
        md,
        "| metric | litestream | ls | ratio | target | met? | notes |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.metric,
            r.lit,
            r.ls,
            if r.ratio.is_finite() {
                format!("{:.3}x", r.ratio)
            } else {
                "n/a".into()
            },
            r.target,
            met,
            r.note
        );
    }
    md.push_str(METHOD);
    std::fs::write(out.join("e2e.md"), md)?;
    let json = serde_json::json!({
        "quick": h.quick,
        "reps": h.reps,
        "samples": h.samples,
    });
    std::fs::write(
        out.join("e2e.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    let bars: Vec<Bar> = rows
        .iter()
        .map(|r| Bar {
            label: r.metric.clone(),
            ratio: r.ratio,
            target: r.bar_target,
            met: r.met,
        })
        .collect();
    let title = format!("ls vs Litestream 0.5.17, {mode} run, ratio ours/theirs");
    chart::draw(&out.join("e2e.png"), &title, &bars)?;
    log(&format!("wrote {}", out.join("e2e.md").display()));
    Ok(())
}

const METHOD: &str = "
## Method

* Both engines run as child processes with the same YAML (default settings: only paths, and the
  bucket, endpoint and keys for S3), `AWS_CA_BUNDLE` removed. The S3 server is s3s-fs on
  127.0.0.1 (`tests/s3/start.sh`).
* Writer: one rusqlite connection, WAL mode, `synchronous=NORMAL`, 4 KiB pages; rows are half
  random, half zero bytes. *small* = one 200-byte row per transaction; *large* = 1000 rows of
  4000 bytes (~4 MB) per transaction. WAL bytes are counted exactly with a WAL hook (frames
  added by each commit, a new WAL salt meaning a restarted WAL) x (24 + 4096). The hook does
  SQLite's default auto-checkpoint (PASSIVE at 1000 frames).
* CPU: utime+stime of the engine process from /proc/PID/stat, from after its first L0 file (start-up
  snapshot excluded) until the replica's L0 listing has been still for 2.5 s after the writer
  finished. Per GB = CPU s / (WAL bytes / 1e9).
* Writer throughput: WAL MB/s of the same writer run, divided by that of a run with no engine
  made just before in the same repetition.
* Lag: one small commit every ~100 ms; a poller lists the replica's `ltx/0` (for S3, the
  s3s-fs directory backing the prefix) every 1 ms and notes when each new L0 file first shows up;
  a commit's lag is the time to the first new L0 file seen after it returned.
* Idle: 50 databases with a few rows each, all replicated to S3 through a counting proxy in the
  harness (it counts HTTP/1.1 request lines), default settings. CPU s and requests over a 60 s
  window that opens 95 s after the engine starts (by then the first L1 compaction, the
  time-based checkpoint a minute after the last write and the compaction of its L0 file are
  done) and closes before the next 5-minute boundary (the first L2 compaction). The engine
  start is delayed when needed so the window fits.
* RSS: VmHWM of the engine just before it is stopped; snapshot: ru_maxrss (wait4) of
  `replicate -once -force-snapshot` on a database of incompressible rows.
* Restore: a database of incompressible rows (one per page) replicated by Litestream into a file
  replica, the same files served by s3s-fs; each restore after reading the replica once (warm page
  cache) and `sync`. Floor = reading the replica files + writing the database's bytes in 4 MiB
  writes with early writeback and one fsync.
";

fn start_s3(root: &Path, work: &Path) -> Result<S3> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(endpoint), Some(access), Some(secret), Some(data)) = (
        get("LS_S3_ENDPOINT"),
        get("LS_S3_ACCESS_KEY"),
        get("LS_S3_SECRET_KEY"),
        get("LS_S3_DATA_DIR"),
    ) {
        return Ok(S3 {
            endpoint,
            access,
            secret,
            bucket: get("LS_S3_BUCKET").unwrap_or_else(|| "ls-test".into()),
            data: PathBuf::from(data),
            started: None,
        });
    }
    let state = work.join("s3");
    let o = Command::new("bash")
        .arg(root.join("tests/s3/start.sh"))
        .env("LS_S3_STATE_DIR", &state)
        .output()?;
    if !o.status.success() {
        bail!(
            "tests/s3/start.sh failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut vars = BTreeMap::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some((k, v)) = l.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            vars.insert(k.to_owned(), v.to_owned());
        }
    }
    let v = |k: &str| {
        vars.get(k)
            .cloned()
            .with_context(|| format!("start.sh did not print {k}"))
    };
    Ok(S3 {
        endpoint: v("LS_S3_ENDPOINT")?,
        access: v("LS_S3_ACCESS_KEY")?,
        secret: v("LS_S3_SECRET_KEY")?,
        bucket: v("LS_S3_BUCKET")?,
        data: PathBuf::from(v("LS_S3_DATA_DIR")?),
        started: Some(state),
    })
}

fn main() -> Result<()> {
    let mut quick = false;
    let mut reps = None;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    let mut out = root.join("benches/results");
    let mut work = std::env::temp_dir().join("ls-e2e-work");
    let mut only: Option<Vec<String>> = None;
    let mut bin_dir = root.join("target/release");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--reps" => reps = Some(args.next().context("--reps N")?.parse()?),
            "--out" => out = PathBuf::from(args.next().context("--out DIR")?),
            "--work" => work = PathBuf::from(args.next().context("--work DIR")?),
            "--bin-dir" => bin_dir = PathBuf::from(args.next().context("--bin-dir DIR")?),
            "--only" => {
                only = Some(
                    args.next()
                        .context("--only LIST")?
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "-h" | "--help" => {
                println!(
                    "e2e [--quick] [--reps N] [--out DIR] [--work DIR] [--bin-dir DIR] \
                     [--only cpu,lag,idle,snapshot,restore]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    let reps = reps.unwrap_or(if quick { 1 } else { 3 });
    let ls = bin_dir.join("ls-engine");
    let lsr = bin_dir.join("ls-restore");
    for b in [&ls, &lsr] {
        if !b.exists() {
            bail!(
                "{} is missing: run `cargo build --release --bins` first",
                b.display()
            );
        }
    }
    std::fs::create_dir_all(&work)?;
    let lit = find_litestream(&root)?;
    let s3 = start_s3(&root, &work)?;
    log(&format!(
        "litestream {}, S3 {} (data {})",
        lit.display(),
        s3.endpoint,
        s3.data.display()
    ));
    let mut h = H {
        root: root.clone(),
        work,
        quick,
        reps,
        lit,
        ls,
        lsr,
        s3,
        samples: BTreeMap::new(),
        started: Instant::now(),
    };
    let want = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let mut result = Ok(());
    type Step = fn(&mut H) -> Result<()>;
    let steps: [(&str, Step); 5] = [
        ("cpu", H::bench_cpu),
        ("lag", H::bench_lag),
        ("idle", H::bench_idle),
        ("snapshot", H::bench_snapshot),
        ("restore", H::bench_restore),
    ];
    for (name, f) in steps {
        if want(name) {
            log(&format!("{} step {name}", h.elapsed()));
            if let Err(e) = f(&mut h) {
                log(&format!("step {name} failed: {e:#}"));
                result = Err(e);
                break;
            }
        }
    }
    let wall = h.started.elapsed().as_secs_f64();
    write_report(&h, &out, wall)?;
    if let Some(state) = &h.s3.started {
        let _ = Command::new("bash")
            .arg(root.join("tests/s3/stop.sh"))
            .env("LS_S3_STATE_DIR", state)
            .status();
    }
    result
}
