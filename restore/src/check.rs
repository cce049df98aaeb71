//! `ls-restore -check`: verify a whole replica without writing a database. Every file's
//! checksum is recomputed (all frames decompressed), every level's TXID chain is checked, and
//! the report says what a restore could reach, from the newest snapshot to each level's newest
//! TXID.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use ltx_codec::TxId;
use serde::Serialize;
use storage::{LtxFileInfo, SharedReplica};

use crate::checksum::check_file;
use crate::execute::{run_chunks, winners, ExecOptions};
use crate::fetch::{file_label, plan_chunks, read_layout, FileLayout};
use crate::plan::{calc_plan, Listing, Target};
use crate::progress::Progress;
use crate::{RestoreError, Result};

/// A replica file that failed verification.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The file, as `<level>/<name>`.
    pub file: String,
    /// Why it failed (the error's message).
    pub error: String,
}

/// What the check found in one level of the replica.
#[derive(Debug, Serialize)]
pub struct LevelReport {
    /// The level number.
    pub level: u8,
    /// How many files the level holds.
    pub files: usize,
    /// The MinTXID of the level's first file.
    pub min_txid: String,
    /// The MaxTXID of the level's last file.
    pub max_txid: String,
    /// TXID ranges missing between consecutive files of the level.
    pub gaps: Vec<String>,
    /// Whether a restore to this level's newest TXID works with verified files only.
    pub reachable: bool,
}

/// A restore that verified files alone can complete.
#[derive(Debug, Serialize)]
pub struct Reach {
    /// The TXID the restored database would be at.
    pub txid: String,
    /// The database page size, in bytes.
    pub page_size: u32,
    /// The database size in pages (the last file's Commit).
    pub commit: u32,
    /// The database size in bytes (`commit × page_size`).
    pub db_size: u64,
    /// The planned files, in order, as `<level>/<name>`.
    pub files: Vec<String>,
}

/// The result of `-check`, printed as text or JSON.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// Whether every file verified and the latest restore would succeed.
    pub ok: bool,
    /// How many files were verified.
    pub files_checked: usize,
    /// The total size of the verified files, in bytes.
    pub bytes_checked: u64,
    /// The files that failed verification.
    pub problems: Vec<Problem>,
    /// One report per non-empty level.
    pub levels: Vec<LevelReport>,
    /// The newest restore that verified files alone can complete, if any.
    pub latest: Option<Reach>,
    /// Why a plain latest restore of the whole replica would fail, if it would.
    pub latest_error: Option<String>,
}

async fn verify_file(
    client: &SharedReplica,
    info: &LtxFileInfo,
    opts: &ExecOptions,
) -> Result<FileLayout> {
    let layout = read_layout(client.as_ref(), info).await?;
    let layouts = Arc::new(vec![layout]);
    let chunks = plan_chunks(&layouts, opts.chunk_size);
    let crcs = run_chunks(
        client,
        &layouts,
        chunks,
        None,
        opts,
        &Arc::new(Progress::hidden()),
    )
    .await?;
    check_file(&layouts[0], &crcs[0])?;
    Ok(layouts[0].clone())
}

/// Verifies every file and builds the report.
pub async fn check_replica(client: &SharedReplica, parallelism: usize) -> Result<CheckReport> {
    let listing = Listing::fetch(client.as_ref()).await?;
    let opts = ExecOptions {
        parallelism,
        ..ExecOptions::default()
    };
    let mut good: BTreeMap<String, FileLayout> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut bytes = 0u64;
    let all: Vec<&LtxFileInfo> = listing.levels.iter().flatten().collect();
    for info in &all {
        bytes += info.size;
        match verify_file(client, info, &opts).await {
            Ok(l) => {
                good.insert(file_label(info), l);
            }
            Err(e) => problems.push(Problem {
                file: file_label(info),
                error: e.to_string(),
            }),
        }
    }
    // Plans use verified files only, so "reachable" means a restore would succeed.
    let verified = Listing::from_files(
        all.iter()
            .filter(|f| good.contains_key(&file_label(f)))
            .map(|f| (*f).clone()),
    );
    let reach = |target: Target| -> Result<Reach> {
        let plan = calc_plan(&verified, target)?;
        let layouts: Vec<FileLayout> = plan
            .iter()
            .filter_map(|f| good.get(&file_label(f)).cloned())
            .collect();
        winners(&layouts)?;
        let last = layouts.last().ok_or(RestoreError::TxNotAvailable)?;
        Ok(Reach {
            txid: last.header.max_txid.to_string(),
            page_size: last.header.page_size,
            commit: last.header.commit,
            db_size: u64::from(last.header.commit) * u64::from(last.header.page_size),
            files: plan.iter().map(file_label).collect(),
        })
    };
    let mut levels = Vec::new();
    for (l, files) in listing.levels.iter().enumerate() {
        let (Some(first), Some(last)) = (files.first(), files.last()) else {
            continue;
        };
        let mut gaps = Vec::new();
        if l != 9 {
            for w in files.windows(2) {
                if w[1].min_txid.0 > w[0].max_txid.0 + 1 {
                    gaps.push(format!(
                        "{}-{}",
                        TxId(w[0].max_txid.0 + 1),
                        TxId(w[1].min_txid.0 - 1)
                    ));
                }
            }
        }
        levels.push(LevelReport {
            level: l as u8,
            files: files.len(),
            min_txid: first.min_txid.to_string(),
            max_txid: last.max_txid.to_string(),
            gaps,
            reachable: reach(Target::Txid(last.max_txid)).is_ok(),
        });
    }
    // What a plain restore of the whole replica would do: fail if its plan needs a damaged file.
    let latest_error = match calc_plan(&listing, Target::Latest) {
        Ok(plan) => plan
            .iter()
            .map(file_label)
            .find(|l| !good.contains_key(l))
            .map(|l| format!("the latest restore needs damaged file {l}")),
        Err(e) => Some(e.to_string()),
    };
    // The newest TXID that verified files alone can restore.
    let mut targets: Vec<TxId> = verified
        .levels
        .iter()
        .flatten()
        .map(|f| f.max_txid)
        .collect();
    targets.sort_unstable_by(|a, b| b.cmp(a));
    targets.dedup();
    let latest = targets
        .into_iter()
        .find_map(|t| reach(Target::Txid(t)).ok());
    Ok(CheckReport {
        ok: problems.is_empty() && latest_error.is_none() && latest.is_some(),
        files_checked: all.len(),
        bytes_checked: bytes,
        problems,
        levels,
        latest,
        latest_error,
    })
}

/// Runs `-check`: verifies the replica, writes the report to `out` (JSON if `json`), and
/// fails if any problem was found.
pub async fn run(
    client: &SharedReplica,
    parallelism: usize,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let r = check_replica(client, parallelism).await?;
    let text = if json {
        let mut s = serde_json::to_string_pretty(&r)
            .map_err(|e| RestoreError::Output(format!("failed to format response: {e}")))?;
        s.push('\n');
        s
    } else {
        to_text(&r)
    };
    write!(out, "{text}").map_err(|e| RestoreError::io("stdout", e))?;
    if r.ok {
        Ok(())
    } else {
        Err(RestoreError::Output(format!(
            "replica check failed: {} damaged file(s){}",
            r.problems.len(),
            if r.latest.is_none() {
                ", nothing restorable"
            } else {
                ""
            }
        )))
    }
}

fn to_text(r: &CheckReport) -> String {
    let mut s = format!(
        "checked {} files, {} bytes: {}\n",
        r.files_checked,
        r.bytes_checked,
        if r.ok { "ok" } else { "PROBLEMS FOUND" }
    );
    for p in &r.problems {
        s.push_str(&format!("  damaged: {}\n", p.error));
    }
    s.push_str("\nlevel  files  min_txid          max_txid          reachable  gaps\n");
    for l in &r.levels {
        s.push_str(&format!(
            "{:<6} {:<6} {}  {}  {:<9}  {}\n",
            l.level,
            l.files,
            l.min_txid,
            l.max_txid,
            if l.reachable { "yes" } else { "no" },
            if l.gaps.is_empty() {
                "-".to_owned()
            } else {
                l.gaps.join(",")
            }
        ));
    }
    if let Some(e) = &r.latest_error {
        s.push_str(&format!("\nlatest restore fails: {e}\n"));
    }
    match &r.latest {
        Some(x) => s.push_str(&format!(
            "\nrestorable to TXID {}: {} pages of {} bytes ({} bytes) from {}\n",
            x.txid,
            x.commit,
            x.page_size,
            x.db_size,
            x.files.join(", ")
        )),
        None => s.push_str("\nnothing restorable from verified files\n"),
    }
    s
}
