//! Which replica files a restore reads (docs/restore.md#plan-selection, Litestream's `CalcRestorePlan`), as a pure
//! function over per-level listings so that it can be tested on synthetic replicas.

use std::time::SystemTime;

use ltx_codec::{Level, TxId, SNAPSHOT_LEVEL};
use serde::Serialize;
use storage::s3::S3Replica;
use storage::{LtxFileInfo, ReplicaClient};

use crate::{RestoreError, Result};
use storage::timefmt::format_rfc3339;

/// What to restore to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The newest state the replica holds.
    Latest,
    /// Up to and including this TXID.
    Txid(TxId),
    /// Only files created strictly before this instant.
    Timestamp(SystemTime),
}

impl Target {
    fn txid(self) -> Option<TxId> {
        match self {
            Target::Txid(t) => Some(t),
            _ => None,
        }
    }

    fn before(self) -> Option<SystemTime> {
        match self {
            Target::Timestamp(t) => Some(t),
            _ => None,
        }
    }

    fn admits(self, f: &LtxFileInfo) -> bool {
        self.txid().is_none_or(|t| f.max_txid <= t)
            && self.before().is_none_or(|t| f.created_at < t)
    }
}

/// Every level's files (0..=9), each in name order.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// The files of each level, indexed by level number.
    pub levels: [Vec<LtxFileInfo>; 10],
}

impl Listing {
    /// Lists levels 0..=9 of a replica.
    pub async fn fetch(client: &dyn ReplicaClient) -> Result<Listing> {
        let mut listing = Listing::default();
        for (level, files) in listing.levels.iter_mut().enumerate() {
            *files = client.ltx_files(Level(level as u8)).await?;
        }
        listing.sort();
        Ok(listing)
    }

    /// Lists levels 0..=9 of an S3 replica with each file's `litestream-timestamp` metadata as
    /// its CreatedAt. Litestream reads these precise times for `-timestamp` restores (docs/restore.md#plan-selection);
    /// plain listings only carry LastModified, which is the upload time at one-second
    /// resolution and would pick different files.
    pub async fn fetch_with_metadata(s3: &S3Replica) -> Result<Listing> {
        let mut listing = Listing::default();
        for (level, files) in listing.levels.iter_mut().enumerate() {
            *files = s3.ltx_files_with_metadata(Level(level as u8)).await?;
        }
        listing.sort();
        Ok(listing)
    }

    /// Builds a listing from files of any levels (files of levels above 9 are dropped).
    pub fn from_files(files: impl IntoIterator<Item = LtxFileInfo>) -> Listing {
        let mut listing = Listing::default();
        for f in files {
            if let Some(l) = listing.levels.get_mut(usize::from(f.level.0)) {
                l.push(f);
            }
        }
        listing.sort();
        listing
    }

    /// Takes the size of every file from `other`, the same files listed another way.
    pub(crate) fn take_sizes_from(&mut self, other: &Listing) {
        for (mine, theirs) in self.levels.iter_mut().zip(&other.levels) {
            for f in mine.iter_mut() {
                let key = (f.min_txid, f.max_txid);
                if let Ok(i) = theirs.binary_search_by_key(&key, |g| (g.min_txid, g.max_txid)) {
                    f.size = theirs[i].size;
                }
            }
        }
    }

    fn sort(&mut self) {
        for l in &mut self.levels {
            l.sort_by_key(|f| (f.min_txid, f.max_txid));
        }
    }

    /// Whether no level holds any file.
    pub fn is_empty(&self) -> bool {
        self.levels.iter().all(Vec::is_empty)
    }

    /// Oldest and newest CreatedAt over every file (Litestream's `TimeBounds`).
    pub fn time_bounds(&self) -> Option<(SystemTime, SystemTime)> {
        let mut it = self.levels.iter().flatten().map(|f| f.created_at);
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t))))
    }
}

/// Litestream's `restoreCandidateBetter`: larger MaxTXID, then smaller MinTXID, then higher
/// level, then earlier CreatedAt.
fn better(curr: &LtxFileInfo, next: &LtxFileInfo) -> bool {
    if next.max_txid != curr.max_txid {
        return next.max_txid > curr.max_txid;
    }
    if next.min_txid != curr.min_txid {
        return next.min_txid < curr.min_txid;
    }
    if next.level != curr.level {
        return next.level > curr.level;
    }
    next.created_at < curr.created_at
}

/// One level's files in name order, consumed as the chain grows. Files are looked at once:
/// a file that cannot extend the chain now never can later, because `current_max` only grows.
struct Cursor<'a> {
    files: &'a [LtxFileInfo],
    next: usize,
    candidate: Option<&'a LtxFileInfo>,
}

impl<'a> Cursor<'a> {
    fn refresh(&mut self, current_max: TxId, target: Target) {
        if self.candidate.is_some_and(|c| c.max_txid <= current_max) {
            self.candidate = None;
        }
        while let Some(f) = self.files.get(self.next) {
            if f.min_txid.0 > current_max.0.saturating_add(1) {
                return;
            }
            self.next += 1;
            if f.max_txid <= current_max || !target.admits(f) {
                continue;
            }
            if self.candidate.is_none_or(|c| better(c, f)) {
                self.candidate = Some(f);
            }
        }
    }

    /// The first file not yet looked at.
    fn current(&self) -> Option<&'a LtxFileInfo> {
        self.files.get(self.next)
    }
}

/// Chooses the files to restore from, in apply order, exactly as Litestream 0.5.17 does.
pub fn calc_plan(listing: &Listing, target: Target) -> Result<Vec<LtxFileInfo>> {
    let mut plan: Vec<LtxFileInfo> = Vec::new();
    let snapshot = listing.levels[usize::from(SNAPSHOT_LEVEL.0)]
        .iter()
        .rfind(|f| target.admits(f));
    if let Some(s) = snapshot {
        plan.push(s.clone());
    }
    let mut current_max = snapshot.map_or(TxId::ZERO, |s| s.max_txid);
    let reached = |max: TxId| target.txid().is_some_and(|t| max >= t);
    if reached(current_max) {
        return Ok(plan);
    }

    let mut cursors: Vec<Cursor<'_>> = (0..SNAPSHOT_LEVEL.0)
        .rev()
        .map(|l| Cursor {
            files: &listing.levels[usize::from(l)],
            next: 0,
            candidate: None,
        })
        .collect();
    loop {
        let mut best: Option<usize> = None;
        for i in 0..cursors.len() {
            cursors[i].refresh(current_max, target);
            let Some(c) = cursors[i].candidate else {
                continue;
            };
            if best.is_none_or(|b| cursors[b].candidate.is_some_and(|bc| better(bc, c))) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        let Some(chosen) = cursors[b].candidate.take() else {
            break;
        };
        plan.push(chosen.clone());
        current_max = chosen.max_txid;
        if reached(current_max) {
            break;
        }
    }

    if !plan.is_empty() && target == Target::Latest {
        for c in &cursors {
            if let Some(f) = c.current() {
                if f.min_txid.0 > current_max.0.saturating_add(1) {
                    return Err(RestoreError::NonContiguous {
                        have: current_max,
                        next: f.min_txid,
                    });
                }
            }
        }
    }
    if plan.is_empty() || target.txid().is_some_and(|t| current_max < t) {
        return Err(RestoreError::TxNotAvailable);
    }
    Ok(plan)
}

/// The plan as `litestream restore -dry-run -json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    /// The source argument (database path or replica URL), with any password redacted.
    pub source: String,
    /// The output path.
    pub target_path: String,
    /// The replica's kind (e.g. `file`, `s3`).
    pub replica: String,
    /// The MinTXID of the plan's first file (empty for an empty plan).
    pub min_txid: String,
    /// The MaxTXID of the plan's last file (empty for an empty plan).
    pub max_txid: String,
    /// The planned files, in order.
    pub files: Vec<PlanReportFile>,
}

/// One file of a [`PlanReport`].
#[derive(Clone, Debug, Serialize)]
pub struct PlanReportFile {
    /// The file's level.
    pub level: u8,
    /// The file's name, `<min>-<max>.ltx`.
    pub name: String,
    /// The file's MinTXID.
    pub min_txid: String,
    /// The file's MaxTXID.
    pub max_txid: String,
    /// The file's size in bytes, as listed.
    pub size: u64,
    /// The file's CreatedAt, in RFC 3339.
    pub timestamp: String,
}

impl PlanReport {
    /// The report for `plan`, restored from `source` (a replica of kind `replica`) to
    /// `target_path`.
    pub fn new(source: &str, target_path: &str, replica: &str, plan: &[LtxFileInfo]) -> Self {
        PlanReport {
            source: storage::redact_url(source),
            target_path: target_path.to_owned(),
            replica: replica.to_owned(),
            min_txid: plan
                .first()
                .map(|f| f.min_txid.to_string())
                .unwrap_or_default(),
            max_txid: plan
                .last()
                .map(|f| f.max_txid.to_string())
                .unwrap_or_default(),
            files: plan
                .iter()
                .map(|f| PlanReportFile {
                    level: f.level.0,
                    name: f.name(),
                    min_txid: f.min_txid.to_string(),
                    max_txid: f.max_txid.to_string(),
                    size: f.size,
                    timestamp: format_rfc3339(f.created_at),
                })
                .collect(),
        }
    }

    /// The human form of Litestream's dry-run output.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "Restore plan:\n  source: {}\n  target: {}\n  replica: {}\n  txid range: {} - {}\n\nFiles to fetch:\n",
            self.source, self.target_path, self.replica, self.min_txid, self.max_txid
        );
        let mut rows = vec![[
            "level".to_owned(),
            "file".to_owned(),
            "min_txid".to_owned(),
            "max_txid".to_owned(),
            "size".to_owned(),
            "timestamp".to_owned(),
        ]];
        for f in &self.files {
            rows.push([
                f.level.to_string(),
                f.name.clone(),
                f.min_txid.clone(),
                f.max_txid.clone(),
                f.size.to_string(),
                f.timestamp.clone(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}", w = widths[c] + 2));
                }
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn f(level: u8, min: u64, max: u64, secs: u64) -> LtxFileInfo {
        LtxFileInfo {
            level: Level(level),
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 1000,
            created_at: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    fn names(plan: &[LtxFileInfo]) -> Vec<String> {
        plan.iter()
            .map(|f| format!("{}/{}-{}", f.level.0, f.min_txid.0, f.max_txid.0))
            .collect()
    }

    /// The replica of docs/replica-layout.md#example-tree (run 1), with CreatedAt = TXID seconds.
    fn run1() -> Listing {
        Listing::from_files([
            f(0, 1, 1, 1),
            f(0, 2, 2, 2),
            f(0, 3, 3, 3),
            f(0, 4, 4, 4),
            f(0, 5, 5, 5),
            f(0, 6, 6, 6),
            f(1, 1, 1, 1),
            f(1, 2, 3, 3),
            f(1, 4, 5, 5),
            f(1, 6, 6, 6),
            f(2, 1, 5, 5),
            f(9, 1, 1, 1),
            f(9, 1, 5, 5),
            f(9, 1, 6, 6),
        ])
    }

    fn plan(l: &Listing, t: Target) -> Vec<String> {
        names(&calc_plan(l, t).expect("plan"))
    }

    #[test]
    fn observed_plans_of_run1() {
        let l = run1();
        assert_eq!(plan(&l, Target::Latest), ["9/1-6"]);
        assert_eq!(plan(&l, Target::Txid(TxId(3))), ["9/1-1", "1/2-3"]);
        assert_eq!(plan(&l, Target::Txid(TxId(4))), ["9/1-1", "1/2-3", "0/4-4"]);
        assert_eq!(plan(&l, Target::Txid(TxId(6))), ["9/1-6"]);
        assert_eq!(plan(&l, Target::Txid(TxId(5))), ["9/1-5"]);
    }

    #[test]
    fn timestamp_is_strictly_before() {
        let l = run1();
        let at = |s| Target::Timestamp(UNIX_EPOCH + Duration::from_secs(s));
        // Files created at exactly 4 s are excluded.
        assert_eq!(plan(&l, at(4)), ["9/1-1", "1/2-3"]);
        assert_eq!(plan(&l, at(5)), ["9/1-1", "1/2-3", "0/4-4"]);
        assert!(matches!(
            calc_plan(&l, at(1)),
            Err(RestoreError::TxNotAvailable)
        ));
    }

    #[test]
    fn chain_without_snapshot_level() {
        let l = Listing::from_files([f(0, 1, 1, 1), f(0, 2, 2, 2), f(1, 1, 2, 2), f(0, 3, 3, 3)]);
        assert_eq!(plan(&l, Target::Latest), ["1/1-2", "0/3-3"]);
    }

    #[test]
    fn tie_breaks() {
        // Same MaxTXID: smaller MinTXID wins.
        let l = Listing::from_files([f(0, 1, 1, 1), f(1, 2, 4, 4), f(2, 1, 4, 4)]);
        assert_eq!(plan(&l, Target::Latest), ["2/1-4"]);
        // Same range: the higher level wins.
        let l = Listing::from_files([f(1, 1, 4, 4), f(2, 1, 4, 9)]);
        assert_eq!(plan(&l, Target::Latest), ["2/1-4"]);
        // Larger MaxTXID beats everything else.
        let l = Listing::from_files([f(3, 1, 4, 4), f(0, 1, 5, 5)]);
        assert_eq!(plan(&l, Target::Latest), ["0/1-5"]);
    }

    #[test]
    fn earlier_created_at_breaks_the_last_tie() {
        let a = f(1, 1, 4, 7);
        let b = f(1, 1, 4, 3);
        assert!(better(&a, &b));
        assert!(!better(&b, &a));
    }

    #[test]
    fn non_contiguous_latest_is_an_error() {
        let l = Listing::from_files([f(9, 1, 3, 3), f(0, 5, 5, 5)]);
        let e = calc_plan(&l, Target::Latest).expect_err("gap");
        assert!(matches!(
            e,
            RestoreError::NonContiguous {
                have: TxId(3),
                next: TxId(5)
            }
        ));
        assert_eq!(
            e.to_string(),
            "cannot calc restore plan: non-contiguous ltx files: have up to 0000000000000003 but next file starts at 0000000000000005"
        );
        // A txid target below the gap is fine.
        assert_eq!(plan(&l, Target::Txid(TxId(3))), ["9/1-3"]);
        // A txid target past the gap cannot be reached.
        assert!(matches!(
            calc_plan(&l, Target::Txid(TxId(5))),
            Err(RestoreError::TxNotAvailable)
        ));
    }

    #[test]
    fn no_match() {
        assert!(matches!(
            calc_plan(&Listing::default(), Target::Latest),
            Err(RestoreError::TxNotAvailable)
        ));
        let l = run1();
        assert!(matches!(
            calc_plan(&l, Target::Txid(TxId(7))),
            Err(RestoreError::TxNotAvailable)
        ));
        let e = calc_plan(&l, Target::Txid(TxId(7))).expect_err("no");
        assert_eq!(e.to_string(), "no matching backup files available");
    }

    #[test]
    fn dry_run_text() {
        let l = run1();
        let p = calc_plan(&l, Target::Txid(TxId(3))).expect("plan");
        let r = PlanReport::new("file:///r", "/tmp/db", "file", &p);
        let text = r.to_text();
        assert!(text.contains("txid range: 0000000000000001 - 0000000000000003"));
        assert!(text.contains("level  file"));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(
            json["files"][1]["name"],
            "0000000000000002-0000000000000003.ltx"
        );
        assert_eq!(json["files"][1]["timestamp"], "1970-01-01T00:00:03Z");
    }
}
