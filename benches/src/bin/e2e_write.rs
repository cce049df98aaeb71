//! End-to-end benchmark of the write path: a writer committing as fast as it can, alone, with the
//! real Litestream 0.5.17 and with ls-engine replicating to a file replica, alternating in the
//! same run (alone, Litestream, ours, for every case and repetition). See `e2e::writepath`.
//!
//!   cargo build --release -p engine --bin ls-engine
//!   cargo run --release -p benches --bin e2e_write -- [--reps N] [--wal-mb N] [--big-wal-mb N]
//!       [--cases a,b] [--ls PATH] [--ls-before PATH] [--tag NAME] [--out DIR] [--work DIR]
//!       [--db-extra YAML]
//!
//! `--ls-before` adds a fourth column: another ls-engine build (the one before a change).
//!
//! Writes DIR/e2e-write[-TAG].md, .json and .png (default DIR: benches/results).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use benches::e2e::host::{find_litestream, machine_facts};
use benches::e2e::proc::output_of;
use benches::e2e::writepath::{self, Case, Eng, Setup};
use benches::e2e::writepath_report::{self as report, Results};

fn log(msg: &str) {
    eprintln!("[e2e-write] {msg}");
}

/// `t` as the UTC time of day with milliseconds, as the engine's log lines carry it.
fn utc_clock(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let day = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}

fn cases(wal: u64, big: u64) -> Vec<Case> {
    let c = |name: &str, rows, autockpt, reader, wal_bytes| Case {
        name: name.to_owned(),
        rows,
        autockpt,
        reader,
        wal_bytes,
    };
    let mut v = vec![
        c("1row-off", 1, false, false, wal),
        c("1row-auto", 1, true, false, wal),
        c("100rows-off", 100, false, false, wal),
        c("100rows-auto", 100, true, false, wal),
        c("1row-off-reader", 1, false, true, wal),
        c("1row-auto-reader", 1, true, true, wal),
    ];
    if big > 0 {
        v.push(c("1row-off-4GB", 1, false, true, big));
    }
    v
}

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    let mut out = root.join("benches/results");
    let mut work = std::env::temp_dir().join("ls-e2e-write");
    let mut reps = 3usize;
    let mut wal_mb = 1400u64;
    let mut big_mb = 0u64;
    let mut only: Option<Vec<String>> = None;
    let mut ls = root.join("target/release/ls-engine");
    let mut ls_before: Option<PathBuf> = None;
    let mut tag = String::new();
    let mut db_extra = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--reps" => reps = val()?.parse()?,
            "--wal-mb" => wal_mb = val()?.parse()?,
            "--big-wal-mb" => big_mb = val()?.parse()?,
            "--cases" => only = Some(val()?.split(',').map(str::to_owned).collect()),
            "--ls" => ls = PathBuf::from(val()?),
            "--ls-before" => ls_before = Some(PathBuf::from(val()?)),
            "--tag" => tag = val()?,
            "--out" => out = PathBuf::from(val()?),
            "--work" => work = PathBuf::from(val()?),
            "--db-extra" => db_extra = val()?,
            "-h" | "--help" => {
                println!("see the header of benches/src/bin/e2e_write.rs");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if !ls.exists() {
        bail!("{} is missing: build ls-engine first", ls.display());
    }
    let lit = find_litestream(&root)?;
    let mut all = cases(wal_mb * 1_000_000, big_mb * 1_000_000);
    if let Some(o) = &only {
        all.retain(|c| o.contains(&c.name));
    }
    let started = Instant::now();
    let mut res = Results {
        cases: all.clone(),
        runs: Vec::new(),
    };
    for rep in 0..reps {
        for case in &all {
            let engines = [Eng::None, Eng::Lit, Eng::LsBefore, Eng::Ls];
            for eng in engines {
                let bin = match eng {
                    Eng::None => None,
                    Eng::Lit => Some(lit.as_path()),
                    Eng::Ls => Some(ls.as_path()),
                    Eng::LsBefore => match &ls_before {
                        Some(p) => Some(p.as_path()),
                        None => continue,
                    },
                };
                let dir = work.join(format!("{}-{}-{rep}", case.name, eng.key()));
                let s = Setup {
                    dir: &dir,
                    eng,
                    bin,
                    db_extra: &db_extra,
                };
                let r = writepath::run(case, &s)
                    .with_context(|| format!("{} {} rep {rep}", case.name, eng.key()))?;
                log(&format!(
                    "{:.0}s {} {} rep {rep}: {:.0} MB WAL in {:.1}s, longest commit {:.1} ms (ended {}), \
                     {} commits over {} ms, p99 {:.3} ms, WAL peak {:.1} MB, checkpoints {:?}, \
                     RSS anon {:.1} + file {:.1} MiB (hwm {:.1}), CPU {:.2} s/GB",
                    started.elapsed().as_secs_f64(),
                    case.name,
                    eng.key(),
                    r.wal_bytes as f64 / 1e6,
                    r.writer_secs,
                    r.max_commit_ms,
                    r.max_commit_at.map_or_else(|| "-".to_owned(), utc_clock),
                    r.slow_commits,
                    writepath::SLOW_COMMIT_MS,
                    r.p99_commit_ms,
                    r.wal_peak as f64 / 1e6,
                    r.checkpoints,
                    r.rss_anon_peak as f64 / 1048576.0,
                    r.rss_file_peak as f64 / 1048576.0,
                    r.vm_hwm as f64 / 1048576.0,
                    r.cpu_per_gb()
                ));
                res.runs.push((case.name.clone(), eng, rep, r));
            }
        }
    }
    let suffix = if tag.is_empty() {
        String::new()
    } else {
        format!("-{tag}")
    };
    std::fs::create_dir_all(&out)?;
    let mut header = String::from("# Write path: ls-engine vs Litestream 0.5.17\n\n");
    let _ = writeln!(
        header,
        "Generated by `cargo run --release -p benches --bin e2e_write -- --reps {reps} --wal-mb {wal_mb}{}` \
         in {:.0} min: per case the writer alone, then Litestream, then ls-engine, repeated; figures \
         are medians with the (min-max) of the repetitions. Default settings, file replica{}. \
         A commit's latency is the writer's own timing of its transaction; the WAL peak is the \
         file's size sampled every 10 ms; RSS is sampled from /proc/<pid>/status every 10 ms \
         (file = RssFile + RssShmem) with the kernel's VmHWM beside it; checkpoints are the \
         engine's `litestream_checkpoint_count` by mode at the end of each run.\n",
        if big_mb > 0 {
            format!(" --big-wal-mb {big_mb}")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64() / 60.0,
        if db_extra.is_empty() {
            String::new()
        } else {
            format!(" plus `{}` for both", db_extra.replace('\n', "; "))
        }
    );
    let _ = writeln!(header, "| machine | |\n|---|---|");
    for (k, v) in machine_facts() {
        let _ = writeln!(header, "| {k} | {v} |");
    }
    let _ = writeln!(
        header,
        "| litestream | {} |\n| ls-engine | {} (git {}){} |",
        output_of(&lit.display().to_string(), &["version"]),
        ls.display(),
        output_of(
            "git",
            &[
                "-C",
                &root.display().to_string(),
                "rev-parse",
                "--short",
                "HEAD"
            ]
        ),
        ls_before
            .as_ref()
            .map(|p| format!("; before: {}", p.display()))
            .unwrap_or_default()
    );
    let md = report::markdown(&res, &header);
    std::fs::write(out.join(format!("e2e-write{suffix}.md")), md)?;
    std::fs::write(
        out.join(format!("e2e-write{suffix}.json")),
        serde_json::to_string_pretty(&report::json(&res))?,
    )?;
    if let Err(e) = report::chart(&res, &out.join(format!("e2e-write{suffix}.png"))) {
        log(&format!("chart not drawn: {e:#}"));
    }
    log(&format!("wrote {}/e2e-write{suffix}.md", out.display()));
    Ok(())
}
