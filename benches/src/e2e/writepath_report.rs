//! The write-path mode's report: a markdown table per workload (the writer alone, Litestream,
//! ls-engine; medians of the repetitions), the targets checked for ls-engine, the raw runs
//! as JSON, and the ratio chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::chart::{self, Bar};
use super::writepath::{Case, Eng, Run};
use super::{median, range};

const MIB: f64 = 1024.0 * 1024.0;

/// Every run of the harness, keyed by case, engine and repetition.
pub struct Results {
    pub cases: Vec<Case>,
    pub runs: Vec<(String, Eng, usize, Run)>,
}

impl Results {
    fn of(&self, case: &str, e: Eng) -> Vec<&Run> {
        self.runs
            .iter()
            .filter(|(c, x, _, _)| c == case && *x == e)
            .map(|(_, _, _, r)| r)
            .collect()
    }

    fn med(&self, case: &str, e: Eng, f: impl Fn(&Run) -> f64) -> f64 {
        median(&self.of(case, e).iter().map(|r| f(r)).collect::<Vec<_>>())
    }
}

/// "PASSIVE 3,4,3 · TRUNCATE 1,1,1": the count of every run, so a run without a checkpoint
/// shows as one.
fn ckpt_cell(runs: &[&Run]) -> String {
    let mut modes: Vec<String> = runs
        .iter()
        .flat_map(|r| r.checkpoints.keys().cloned())
        .collect();
    modes.sort();
    modes.dedup();
    for m in ["PASSIVE", "TRUNCATE"] {
        if !modes.iter().any(|x| x == m) {
            modes.push(m.to_owned());
        }
    }
    modes
        .iter()
        .map(|m| {
            let counts: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.0}", r.checkpoints.get(m).copied().unwrap_or(0.0)))
                .collect();
            format!("{m} {}", counts.join(","))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

pub fn markdown(r: &Results, header: &str) -> String {
    let mut md = String::from(header);
    for c in &r.cases {
        let _ = writeln!(
            md,
            "\n## {} ({} row(s)/txn, writer autocheckpoint {}{}; {:.2} GB of WAL per run)\n",
            c.name,
            c.rows,
            if c.autockpt { "1000 pages" } else { "off" },
            if c.reader {
                format!(
                    ", a reader holding a read transaction for {} s at a time",
                    super::writepath::READER_HOLD.as_secs()
                )
            } else {
                String::new()
            },
            c.wal_bytes as f64 / 1e9
        );
        let _ = writeln!(
            md,
            "| | longest commit ms | p99 commit ms | p99 / alone | throughput MB/s | / alone | \
             engine checkpoints per run | WAL peak MB | RSS peak MiB anon + file (VmHWM) | CPU s/GB |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        let p99_alone = r.med(&c.name, Eng::None, |x| x.p99_commit_ms);
        let thr_alone = r.med(&c.name, Eng::None, Run::throughput);
        for e in [Eng::None, Eng::Lit, Eng::LsBefore, Eng::Ls] {
            let runs = r.of(&c.name, e);
            if runs.is_empty() {
                continue;
            }
            let v = |f: &dyn Fn(&Run) -> f64| runs.iter().map(|x| f(x)).collect::<Vec<_>>();
            let name = match e {
                Eng::None => "writer alone",
                Eng::Lit => "Litestream 0.5.17",
                Eng::Ls => "ls-engine",
                Eng::LsBefore => "ls-engine before",
            };
            let (ck, rss, cpu) = if e == Eng::None {
                ("-".to_owned(), "-".to_owned(), "-".to_owned())
            } else {
                (
                    ckpt_cell(&runs),
                    format!(
                        "{:.1} + {:.1} ({:.1})",
                        median(&v(&|x| x.rss_anon_peak as f64)) / MIB,
                        median(&v(&|x| x.rss_file_peak as f64)) / MIB,
                        median(&v(&|x| x.vm_hwm as f64)) / MIB
                    ),
                    format!("{:.2}", median(&v(&Run::cpu_per_gb))),
                )
            };
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {:.2} | {:.0} | {:.2} | {ck} | {} | {rss} | {cpu} |",
                range(&v(&|x| x.max_commit_ms), 1),
                range(&v(&|x| x.p99_commit_ms), 3),
                median(&v(&|x| x.p99_commit_ms)) / p99_alone,
                median(&v(&Run::throughput)) / 1e6,
                median(&v(&Run::throughput)) / thr_alone,
                range(&v(&|x| x.wal_peak as f64 / 1e6), 1),
            );
        }
        let ls = r.of(&c.name, Eng::Ls);
        if ls.is_empty() {
            continue;
        }
        let longest = r.med(&c.name, Eng::Ls, |x| x.max_commit_ms);
        let p99 = r.med(&c.name, Eng::Ls, |x| x.p99_commit_ms) / p99_alone;
        let thr = r.med(&c.name, Eng::Ls, Run::throughput) / thr_alone;
        let rss = r.med(&c.name, Eng::Ls, |x| x.rss_sum_peak.max(x.vm_hwm) as f64) / MIB;
        let _ = write!(
            md,
            "\nls-engine against the issue's targets: longest commit {longest:.1} ms (< 20: {}); \
             p99 {p99:.2}x alone (<= 1.2: {}); throughput {thr:.2}x alone (>= 0.95: {}); \
             peak RSS {rss:.1} MiB (<= 48: {})",
            mark(longest < 20.0),
            mark(p99 <= 1.2),
            mark(thr >= 0.95),
            mark(rss <= 48.0)
        );
        if c.autockpt {
            let wal = r.med(&c.name, Eng::Ls, |x| x.wal_peak as f64)
                / r.med(&c.name, Eng::None, |x| x.wal_peak as f64);
            let _ = write!(
                md,
                "; WAL peak {wal:.1}x the writer alone's (<= 2: {})",
                mark(wal <= 2.0)
            );
        }
        md.push_str(".\n");
    }
    md
}

pub fn json(r: &Results) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = r
        .runs
        .iter()
        .map(|(c, e, rep, x)| {
            serde_json::json!({
                "case": c, "engine": e.key(), "rep": rep,
                "wal_bytes": x.wal_bytes, "writer_secs": x.writer_secs, "commits": x.commits,
                "max_commit_ms": x.max_commit_ms, "p99_commit_ms": x.p99_commit_ms,
                "wal_peak_bytes": x.wal_peak, "rss_anon_peak": x.rss_anon_peak,
                "rss_file_peak": x.rss_file_peak, "rss_sum_peak": x.rss_sum_peak,
                "vm_hwm": x.vm_hwm, "cpu_secs": x.cpu_secs, "checkpoints": x.checkpoints,
                "reader_txns": x.reader_txns,
            })
        })
        .collect();
    serde_json::json!({ "runs": runs })
}

/// ls-engine / Litestream per case for the application-side figures and the engine's cost.
pub fn chart(r: &Results, path: &Path) -> Result<()> {
    let mut bars = Vec::new();
    for c in &r.cases {
        let ratio = |f: &dyn Fn(&Run) -> f64| {
            r.med(&c.name, Eng::Ls, |x| f(x)) / r.med(&c.name, Eng::Lit, |x| f(x))
        };
        let rows: [(&str, f64); 5] = [
            ("longest commit", ratio(&|x| x.max_commit_ms)),
            ("p99 commit", ratio(&|x| x.p99_commit_ms)),
            ("throughput", ratio(&Run::throughput)),
            ("peak RSS", ratio(&|x| x.rss_sum_peak.max(x.vm_hwm) as f64)),
            ("CPU per GB", ratio(&Run::cpu_per_gb)),
        ];
        for (what, v) in rows {
            bars.push(Bar {
                label: format!("{}: {what}", c.name),
                ratio: v,
                target: None,
                met: None,
            });
        }
    }
    chart::draw(path, "write path: ls-engine / Litestream 0.5.17", &bars)
}
