//! The e2e harness's report: the table of ratios, the chart and the method text.

use super::*;

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

pub(super) fn write_report(h: &H, out: &Path, wall: f64) -> Result<()> {
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
