//! Compares the criterion results of the last `cargo bench` with the committed baseline and
//! prints one table: bench, this run's throughput, the baseline's, and their ratio. A ratio
//! under the threshold (0.8 by default) prints a `REGRESSION` line naming the bench; CI
//! machines are noisy, so that is a warning, not a failure. It fails only when there are no
//! results at all (the benches did not run).
//!
//!   cargo run -p benches --bin bench-report -- [--criterion DIR] [--baseline FILE]
//!                                              [--threshold 0.8] [--save]
//!
//! `--save` writes this run as the new baseline (see benches/README.md for when to do it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

struct Args {
    criterion: PathBuf,
    baseline: PathBuf,
    threshold: f64,
    save: bool,
}

fn args() -> Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        criterion: std::env::var_os("CRITERION_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../target/criterion")),
        baseline: root.join("results/baseline.json"),
        threshold: 0.8,
        save: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--criterion" => a.criterion = value()?.into(),
            "--baseline" => a.baseline = value()?.into(),
            "--threshold" => a.threshold = value()?.parse().context("--threshold")?,
            "--save" => a.save = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// Bytes per second of every bench under `dir` (criterion's `<id>/new/` directories), keyed by
/// criterion's full id (`group/function`).
fn results(dir: &Path) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "benchmark.json")
                && p.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == "new")
            {
                if let Some((id, rate)) = one(&p)? {
                    out.insert(id, rate);
                }
            }
        }
    }
    Ok(out)
}

fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
}

/// `(id, bytes/s)` from one bench's `benchmark.json` and `estimates.json`; `None` for a bench
/// without a byte throughput.
fn one(benchmark: &Path) -> Result<Option<(String, f64)>> {
    let b = read_json(benchmark)?;
    let Some(bytes) = b["throughput"]["Bytes"].as_f64() else {
        return Ok(None);
    };
    let id = b["full_id"]
        .as_str()
        .with_context(|| format!("{}: no full_id", benchmark.display()))?
        .to_owned();
    let est = read_json(&benchmark.with_file_name("estimates.json"))?;
    // Criterion reports throughput from the slope when it has one, else from the mean.
    let ns = est["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| est["mean"]["point_estimate"].as_f64())
        .with_context(|| format!("{}: no estimate", benchmark.display()))?;
    Ok((ns > 0.0).then(|| (id, bytes / ns * 1e9)))
}

fn gbps(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} GB/s", v / 1e9)
    } else {
        format!("{:.0} MB/s", v / 1e6)
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn main() -> Result<()> {
    let a = args()?;
    let now = results(&a.criterion)?;
    if now.is_empty() {
        bail!(
            "no criterion results under {} (did the benches run?)",
            a.criterion.display()
        );
    }
    if a.save {
        let benches: serde_json::Map<String, Value> =
            now.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let doc = json!({
            "machine": machine(),
            "note": "bytes per second; written by `bench-report --save` after the short run of tests/run-all.sh",
            "benches": benches,
        });
        std::fs::write(&a.baseline, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("write {}", a.baseline.display()))?;
        println!(
            "baseline written to {} ({} benches)",
            a.baseline.display(),
            now.len()
        );
        return Ok(());
    }
    let base = read_json(&a.baseline)?;
    let base_benches = base["benches"].as_object().cloned().unwrap_or_default();
    println!(
        "baseline: {} ({})",
        a.baseline.display(),
        base["machine"].as_str().unwrap_or("machine unknown")
    );
    println!("| bench | this run | baseline | ratio |");
    println!("|---|---|---|---|");
    let mut regressions = Vec::new();
    for (id, rate) in &now {
        match base_benches.get(id).and_then(Value::as_f64) {
            Some(b) if b > 0.0 => {
                let ratio = rate / b;
                println!("| {id} | {} | {} | {ratio:.2} |", gbps(*rate), gbps(b));
                if ratio < a.threshold {
                    regressions.push(format!(
                        "REGRESSION: {id} ran at {ratio:.2} of its baseline ({} vs {})",
                        gbps(*rate),
                        gbps(b)
                    ));
                }
            }
            _ => println!("| {id} | {} | (none) | new |", gbps(*rate)),
        }
    }
    for id in base_benches.keys().filter(|k| !now.contains_key(*k)) {
        println!("| {id} | (did not run) | | |");
    }
    for r in &regressions {
        println!("{r}");
    }
    if regressions.is_empty() {
        println!(
            "no bench below {:.2} of its baseline ({} benches)",
            a.threshold,
            now.len()
        );
    }
    Ok(())
}
