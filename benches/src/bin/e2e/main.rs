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

mod replicate;
mod report;
mod restore;

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
}

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
    report::write_report(&h, &out, wall)?;
    if let Some(state) = &h.s3.started {
        let _ = Command::new("bash")
            .arg(root.join("tests/s3/stop.sh"))
            .env("LS_S3_STATE_DIR", state)
            .status();
    }
    result
}
