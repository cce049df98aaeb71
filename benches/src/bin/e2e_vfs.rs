//! Read replicas (issue 17 item 2): `ls-vfs` against litestream-vfs 0.5.17 on the same replica
//! on the local S3 server, the same queries, alternating, in one run:
//!
//! ```text
//! cargo build --release -p engine --bin ls-engine -p ls-vfs
//! cargo run --release -p benches --bin e2e_vfs -- [--db-mib 1024] [--reps 3]
//!     [--engine target/release/ls-engine] [--vfs target/release/libls_vfs.so]
//!     [--out benches/results/vfs.md] [--work DIR]
//! ```
//!
//! A database of `--db-mib` MiB (1 KiB random rows: nothing compresses) is replicated once to
//! the S3 server of `tests/s3/start.sh` with `ls-engine replicate -once -force-snapshot`. Each
//! extension is then loaded into Debian's python3 (its `sqlite3` module loads extensions),
//! reading the replica through a counting proxy: the first point query by primary key after
//! loading (cold start: open, page index, pages), 200 point queries at random keys (cold
//! pages), and 20 rounds over 100 of those keys (warm cache). Requests are counted per phase;
//! both extensions also poll the replica in the background, which is part of what they cost.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use benches::e2e::host::machine_facts;
use benches::e2e::{median, range};
use test_support::proxy::CountingProxy;

const TARGET_FIRST_MS: f64 = 200.0;

fn log(msg: &str) {
    eprintln!("[e2e_vfs] {msg}");
}

struct Args {
    db_mib: u64,
    reps: usize,
    engine: PathBuf,
    vfs: PathBuf,
    out: PathBuf,
    work: PathBuf,
}

fn parse_args(root: &Path) -> Result<Args> {
    let mut a = Args {
        db_mib: 1024,
        reps: 3,
        engine: root.join("target/release/ls-engine"),
        vfs: root.join("target/release/libls_vfs.so"),
        out: root.join("benches/results/vfs.md"),
        work: std::env::temp_dir().join("ls-e2e-vfs"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--db-mib" => a.db_mib = v.parse()?,
            "--reps" => a.reps = v.parse()?,
            "--engine" => a.engine = PathBuf::from(v),
            "--vfs" => a.vfs = PathBuf::from(v),
            "--out" => a.out = PathBuf::from(v),
            "--work" => a.work = PathBuf::from(v),
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

/// What the reader script prints after each phase, one JSON object per line; it then waits for
/// a line on stdin, so that the requests the harness counts belong to one phase.
const READER: &str = r#"
import json, random, sqlite3, sys, time
lib, rows = sys.argv[1], int(sys.argv[2])
def say(**kw):
    print(json.dumps(kw), flush=True)
    sys.stdin.readline()
loader = sqlite3.connect(":memory:")
loader.enable_load_extension(True)
t = time.perf_counter()
loader.load_extension(lib)
db = sqlite3.connect("file:bench.db?vfs=litestream", uri=True)
n = db.execute("select length(v) from t where id = ?", (rows // 2,)).fetchone()[0]
say(phase="first", ms=(time.perf_counter() - t) * 1000, ok=(n == 1024))
keys = [random.Random(7 + i).randint(1, rows) for i in range(200)]
t = time.perf_counter()
for k in keys:
    db.execute("select length(v) from t where id = ?", (k,)).fetchone()
say(phase="cold", queries=len(keys), secs=time.perf_counter() - t)
hot = keys[:100]
t = time.perf_counter()
for _ in range(20):
    for k in hot:
        db.execute("select length(v) from t where id = ?", (k,)).fetchone()
secs = time.perf_counter() - t
def status(field):
    return int([l for l in open("/proc/self/status") if l.startswith(field + ":")][0].split()[1])
say(phase="warm", queries=2000, secs=secs, hwm_kib=status("VmHWM"))
rss0 = status("VmRSS")
t = time.perf_counter()
conns = [sqlite3.connect("file:bench.db?vfs=litestream", uri=True) for _ in range(CONNS)]
for i, c in enumerate(conns):
    c.execute("select length(v) from t where id = ?", (keys[i % len(keys)],)).fetchone()
say(phase="many", secs=time.perf_counter() - t, kib_per_conn=(status("VmRSS") - rss0) / CONNS)
"#;

/// Connections the last phase opens beside the first, each answering one point query.
const CONNS: usize = 100;

#[derive(Default, Clone)]
struct Run {
    first_ms: f64,
    first_requests: u64,
    cold_qps: f64,
    cold_requests_per_query: f64,
    warm_qps: f64,
    warm_requests_per_query: f64,
    hwm_mib: f64,
    /// Seconds to open CONNS more connections and answer one query on each.
    many_secs: f64,
    /// RSS each of them added.
    kib_per_conn: f64,
}

fn run_reader(
    lib: &Path,
    url: &str,
    env: &[(String, String)],
    rows: u64,
    proxy: &CountingProxy,
) -> Result<Run> {
    let script = READER.replace("CONNS", &CONNS.to_string());
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .arg(lib)
        .arg(rows.to_string())
        .env("LITESTREAM_REPLICA_URL", url)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("python3")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut run = Run::default();
    let mut before = proxy.requests();
    for phase in ["first", "cold", "warm", "many"] {
        let line = lines
            .next()
            .with_context(|| format!("{} stopped before phase {phase}", lib.display()))??;
        let v: serde_json::Value = serde_json::from_str(&line).with_context(|| line.clone())?;
        let n = proxy.requests() - before;
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        match phase {
            "first" => {
                if v["ok"] != serde_json::Value::Bool(true) {
                    bail!(
                        "{}: the first query's answer is wrong: {line}",
                        lib.display()
                    );
                }
                run.first_ms = f("ms");
                run.first_requests = n;
            }
            "cold" => {
                run.cold_qps = f("queries") / f("secs");
                run.cold_requests_per_query = n as f64 / f("queries");
            }
            "warm" => {
                run.warm_qps = f("queries") / f("secs");
                run.warm_requests_per_query = n as f64 / f("queries");
                run.hwm_mib = f("hwm_kib") / 1024.0;
            }
            _ => {
                run.many_secs = f("secs");
                run.kib_per_conn = f("kib_per_conn");
            }
        }
        writeln!(stdin, "next")?;
        before = proxy.requests();
    }
    drop(stdin);
    let st = child.wait()?;
    if !st.success() {
        bail!("{} reader exited with {st}", lib.display());
    }
    Ok(run)
}

/// A database of `mib` MiB of 1 KiB random rows in `t(id, v)`; returns the row count.
fn make_db(path: &Path, mib: u64) -> Result<u64> {
    // A 1 KiB blob takes about 1,369 bytes of a 4 KiB-page database (two rows a page).
    let rows = mib * 1024 * 1024 / 1369;
    let _ = std::fs::remove_file(path);
    let c = rusqlite::Connection::open(path)?;
    c.execute_batch(&format!(
        "PRAGMA journal_mode = wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
         INSERT INTO t(v) SELECT randomblob(1024) FROM c;
         PRAGMA wal_checkpoint(TRUNCATE);"
    ))?;
    Ok(rows)
}

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let a = parse_args(&root)?;
    let lit_vfs = test_support::env::litestream_vfs();
    for p in [&a.engine, &a.vfs] {
        if !p.is_file() {
            bail!(
                "{} is missing: cargo build --release -p engine --bin ls-engine -p ls-vfs",
                p.display()
            );
        }
    }
    let srv = test_support::env::s3_server();
    std::fs::create_dir_all(&a.work)?;
    let db = a.work.join("bench.db");
    let t = Instant::now();
    let rows = make_db(&db, a.db_mib)?;
    let db_bytes = std::fs::metadata(&db)?.len();
    log(&format!(
        "{rows} rows, {db_bytes} bytes in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    let prefix = test_support::env::unique_name("e2e-vfs");
    let mut yaml = format!("dbs:\n  - path: {}\n    replica:\n", db.display());
    for l in srv.yaml_with_keys(&prefix, &srv.secret_key) {
        writeln!(yaml, "      {l}")?;
    }
    let cfg = a.work.join("ls.yml");
    std::fs::write(&cfg, yaml)?;
    let t = Instant::now();
    let out = Command::new(&a.engine)
        .args(["replicate", "-once", "-force-snapshot", "-config"])
        .arg(&cfg)
        .output()?;
    if !out.status.success() {
        bail!("replicate -once: {}", String::from_utf8_lossy(&out.stderr));
    }
    log(&format!("replicated in {:.1} s", t.elapsed().as_secs_f64()));

    let proxy = CountingProxy::in_front_of(&srv.endpoint)?;
    let url = srv
        .url(&prefix)
        .replace(&srv.endpoint, &format!("http://{}", proxy.addr));
    let env = srv.lit_env();
    let tools: [(&str, &Path); 2] = [("litestream-vfs 0.5.17", &lit_vfs), ("ls-vfs", &a.vfs)];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    for rep in 0..a.reps {
        for (i, (name, lib)) in tools.iter().enumerate() {
            let r = run_reader(lib, &url, &env, rows, &proxy)?;
            log(&format!(
                "rep {rep} {name}: first {:.0} ms ({} requests), cold {:.0} q/s, warm {:.0} q/s",
                r.first_ms, r.first_requests, r.cold_qps, r.warm_qps
            ));
            runs[i].push(r);
        }
    }
    let md = report(&a, rows, db_bytes, &tools, &runs);
    std::fs::write(&a.out, md)?;
    log(&format!("wrote {}", a.out.display()));
    Ok(())
}

fn cell(runs: &[Run], f: impl Fn(&Run) -> f64, digits: usize) -> String {
    range(&runs.iter().map(f).collect::<Vec<_>>(), digits)
}

fn report(
    a: &Args,
    rows: u64,
    db_bytes: u64,
    tools: &[(&str, &Path); 2],
    runs: &[Vec<Run>],
) -> String {
    let mut s = String::from("# Read replicas: ls-vfs vs litestream-vfs 0.5.17\n\n");
    let _ = writeln!(
        s,
        "Generated by `cargo run --release -p benches --bin e2e_vfs -- --db-mib {} --reps {}`: a \
         {:.2} GiB database ({rows} rows of 1 KiB random bytes) replicated once to the local S3 \
         server (s3s-fs) by `ls-engine replicate -once -force-snapshot`; each extension loaded \
         into Debian's python3, reading through a counting proxy, alternating; medians with the \
         (min-max) of the repetitions. First query: from loading the extension to the answer of \
         one point query by primary key. Cold: 200 point queries at random keys. Warm: 20 rounds \
         over 100 of those keys. Many: {CONNS} more connections opened in the same process, one \
         point query on each: the time, and the RSS each added. Requests include each \
         extension's background polling.\n",
        a.db_mib,
        a.reps,
        db_bytes as f64 / (1u64 << 30) as f64
    );
    s.push_str("| machine | |\n|---|---|\n");
    for (k, v) in machine_facts() {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    s.push_str(
        "\n| | first query ms | requests to first answer | cold queries/s | requests per cold query | warm queries/s | requests per warm query | peak RSS MiB | open + query 100 more connections s | RSS per connection KiB |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((name, _), r) in tools.iter().zip(runs) {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(r, |r| r.first_ms, 0),
            cell(r, |r| r.first_requests as f64, 0),
            cell(r, |r| r.cold_qps, 0),
            cell(r, |r| r.cold_requests_per_query, 2),
            cell(r, |r| r.warm_qps, 0),
            cell(r, |r| r.warm_requests_per_query, 3),
            cell(r, |r| r.hwm_mib, 1),
            cell(r, |r| r.many_secs, 2),
            cell(r, |r| r.kib_per_conn, 0),
        );
    }
    let ours: Vec<f64> = runs[1].iter().map(|r| r.first_ms).collect();
    let m = median(&ours);
    let _ =
        writeln!(
        s,
        "\nls-vfs against the issue's target: first query {m:.0} ms (< {TARGET_FIRST_MS:.0}: {}).",
        if m < TARGET_FIRST_MS { "met" } else { "**not met**" }
    );
    s
}
