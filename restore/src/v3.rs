//! Litestream 0.3.x replicas (docs/replica-layout.md#legacy-generations-layout): `generations/<gen>/snapshots/<index>.snapshot.lz4` and
//! `generations/<gen>/wal/<index>_<offset>.wal.lz4`, each one LZ4 frame. A snapshot is the raw
//! database; WAL segments are concatenated per WAL index into `<tmp>-wal` and checkpointed into
//! the database by SQLite, one index at a time, as Litestream 0.5.17's `RestoreV3` does.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::Connection;

use crate::output::{create_private, with_suffix, PreparedOutput};
use crate::plan::Listing;
use crate::writer::TempOutput;
use crate::{integrity, IntegrityCheck, RestoreError, Result};
use storage::timefmt::format_rfc3339;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotV3 {
    pub generation: String,
    pub index: u32,
    pub size: u64,
    pub created_at: SystemTime,
    pub path: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentV3 {
    pub generation: String,
    pub index: u32,
    pub offset: u64,
    pub size: u64,
    pub created_at: SystemTime,
    pub path: PathBuf,
}

/// Every 0.3.x snapshot and WAL segment of a file replica.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub snapshots: Vec<SnapshotV3>,
    pub segments: Vec<SegmentV3>,
}

fn is_hex(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| RestoreError::io(dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(RestoreError::io(dir, e)),
    }
}

fn file_meta(e: &fs::DirEntry) -> Result<Option<(u64, SystemTime)>> {
    let m = e
        .metadata()
        .map_err(|err| RestoreError::io(e.path(), err))?;
    if !m.is_file() {
        return Ok(None);
    }
    let t = m
        .modified()
        .map_err(|err| RestoreError::io(e.path(), err))?;
    Ok(Some((m.len(), t)))
}

impl Catalog {
    /// Lists `<root>/generations`; a replica without one has an empty catalog.
    pub fn load(root: &Path) -> Result<Catalog> {
        let mut c = Catalog::default();
        let mut gens: Vec<String> = read_dir_or_empty(&root.join("generations"))?
            .into_iter()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| is_hex(n, 16, 16))
            .collect();
        gens.sort();
        for g in gens {
            let gdir = root.join("generations").join(&g);
            let mut snaps = Vec::new();
            for e in read_dir_or_empty(&gdir.join("snapshots"))? {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(idx) = name
                    .strip_suffix(".snapshot.lz4")
                    .filter(|s| is_hex(s, 8, 8))
                else {
                    continue;
                };
                let Some((size, created_at)) = file_meta(&e)? else {
                    continue;
                };
                snaps.push(SnapshotV3 {
                    generation: g.clone(),
                    index: u32::from_str_radix(idx, 16).unwrap_or(0),
                    size,
                    created_at,
                    path: e.path(),
                });
            }
            snaps.sort_by_key(|s| s.index);
            c.snapshots.extend(snaps);
            let mut segs = Vec::new();
            for e in read_dir_or_empty(&gdir.join("wal"))? {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some((idx, off)) = name
                    .strip_suffix(".wal.lz4")
                    .and_then(|s| s.split_once('_'))
                    .filter(|(i, o)| is_hex(i, 8, 8) && is_hex(o, 8, 16))
                else {
                    continue;
                };
                let Some((size, created_at)) = file_meta(&e)? else {
                    continue;
                };
                segs.push(SegmentV3 {
                    generation: g.clone(),
                    index: u32::from_str_radix(idx, 16).unwrap_or(0),
                    offset: u64::from_str_radix(off, 16).unwrap_or(0),
                    size,
                    created_at,
                    path: e.path(),
                });
            }
            segs.sort_by_key(|s| (s.index, s.offset));
            c.segments.extend(segs);
        }
        Ok(c)
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.segments.is_empty()
    }

    pub fn time_bounds(&self) -> Option<(SystemTime, SystemTime)> {
        let mut it = self
            .snapshots
            .iter()
            .map(|s| s.created_at)
            .chain(self.segments.iter().map(|s| s.created_at));
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t))))
    }

    /// Snapshots in CreatedAt order; the newest, or the newest at or before `ts`.
    fn best_snapshot(&self, ts: Option<SystemTime>) -> Option<&SnapshotV3> {
        let mut snaps: Vec<&SnapshotV3> = self.snapshots.iter().collect();
        snaps.sort_by_key(|s| s.created_at);
        match ts {
            None => snaps.last().copied(),
            Some(t) => snaps.into_iter().rev().find(|s| s.created_at <= t),
        }
    }

    /// Litestream's `shouldUseV3Restore` (the caller skips it when `-txid` is given).
    pub fn should_use(&self, listing: &Listing, ts: Option<SystemTime>) -> bool {
        let Some((_, v3_updated)) = self.time_bounds() else {
            return false;
        };
        let Some((_, ltx_updated)) = listing.time_bounds() else {
            return true;
        };
        match ts {
            Some(t) => {
                let ltx_snap = listing.levels[9].iter().rfind(|f| f.created_at < t);
                match self.best_snapshot(Some(t)) {
                    Some(v) => ltx_snap.is_none_or(|l| v.created_at > l.created_at),
                    None => false,
                }
            }
            None => v3_updated > ltx_updated,
        }
    }

    /// The snapshot and segments a restore to `ts` (or latest) applies.
    pub fn plan(&self, ts: Option<SystemTime>) -> Result<PlanV3> {
        let snapshot = self
            .best_snapshot(ts)
            .cloned()
            .ok_or_else(|| RestoreError::V3("no snapshots available".into()))?;
        let segments = self
            .segments
            .iter()
            .filter(|s| s.generation == snapshot.generation && s.index >= snapshot.index)
            .filter(|s| ts.is_none_or(|t| s.created_at <= t))
            .cloned()
            .collect();
        Ok(PlanV3 { snapshot, segments })
    }
}

#[derive(Clone, Debug)]
pub struct PlanV3 {
    pub snapshot: SnapshotV3,
    pub segments: Vec<SegmentV3>,
}

impl PlanV3 {
    pub fn describe(&self, output: &Path, json: bool) -> String {
        if json {
            let v = serde_json::json!({
                "format": "v0.3.x",
                "target_path": output.display().to_string(),
                "generation": self.snapshot.generation,
                "snapshot": {"index": format!("{:08x}", self.snapshot.index), "size": self.snapshot.size,
                             "timestamp": format_rfc3339(self.snapshot.created_at)},
                "wal_segments": self.segments.iter().map(|s| serde_json::json!({
                    "index": format!("{:08x}", s.index), "offset": s.offset, "size": s.size,
                    "timestamp": format_rfc3339(s.created_at)})).collect::<Vec<_>>(),
            });
            return format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        let mut s = format!(
            "Restore plan (v0.3.x replica):\n  target: {}\n  generation: {}\n  snapshot: {:08x} ({} bytes, {})\n",
            output.display(),
            self.snapshot.generation,
            self.snapshot.index,
            self.snapshot.size,
            format_rfc3339(self.snapshot.created_at)
        );
        for seg in &self.segments {
            s.push_str(&format!(
                "  wal: {:08x}/{:08x} ({} bytes, {})\n",
                seg.index,
                seg.offset,
                seg.size,
                format_rfc3339(seg.created_at)
            ));
        }
        s
    }

    /// Restores into `output` through `<output>.tmp`.
    pub fn restore(&self, output: PreparedOutput, check: IntegrityCheck) -> Result<()> {
        let tmp = TempOutput::create(&output, 0)?;
        let tmp_path = tmp.tmp_path().to_owned();
        {
            let file = tmp.file();
            let mut f: &File = file.file();
            decompress_to(&self.snapshot.path, &mut f)?;
            f.sync_all().map_err(|e| RestoreError::io(&tmp_path, e))?;
        }
        self.apply_segments(&tmp_path)?;
        if check != IntegrityCheck::None {
            integrity::check(&tmp_path, check)?;
        }
        tmp.publish()
    }

    fn apply_segments(&self, db: &Path) -> Result<()> {
        let wal_path = with_suffix(db, "-wal");
        let mut expected = self.snapshot.index;
        let mut wal: Option<File> = None;
        let mut offset = 0u64;
        for seg in &self.segments {
            if seg.offset == 0 {
                if let Some(f) = wal.take() {
                    drop(f);
                    checkpoint(db)?;
                }
                if seg.index != expected {
                    return Err(RestoreError::V3(format!(
                        "missing WAL index: expected {expected}/0, got {}/{}",
                        seg.index, seg.offset
                    )));
                }
                offset = 0;
                // Whatever is at `<tmp>-wal` (the previous index's WAL, or a link planted there)
                // is unlinked and the file created anew, 0600, never through a link.
                wal = Some(create_private(&wal_path)?);
                expected += 1;
            } else if seg.offset != offset || wal.is_none() {
                return Err(RestoreError::V3(format!(
                    "missing WAL segment: expected {}/{offset}, got {}/{}",
                    seg.index, seg.index, seg.offset
                )));
            }
            let Some(f) = wal.as_mut() else {
                return Err(RestoreError::V3("no WAL file open".into()));
            };
            offset += decompress_to(&seg.path, f)?;
        }
        if wal.take().is_some() {
            checkpoint(db)?;
        }
        Ok(())
    }
}

/// Streams one LZ4 frame file into `w`; returns the decompressed length.
fn decompress_to<W: Write>(src: &Path, w: &mut W) -> Result<u64> {
    let f = File::open(src).map_err(|e| RestoreError::io(src, e))?;
    let mut dec = lz4_flex::frame::FrameDecoder::new(BufReader::new(f));
    let n = io::copy(&mut dec, w)
        .map_err(|e| RestoreError::V3(format!("{}: bad LZ4 frame: {e}", src.display())))?;
    w.flush().map_err(|e| RestoreError::io(src, e))?;
    Ok(n)
}

fn checkpoint(db: &Path) -> Result<()> {
    let fail = |e: rusqlite::Error| RestoreError::V3(format!("checkpoint: {e}"));
    let conn = Connection::open(db).map_err(fail)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(fail)?;
    conn.close().map_err(|(_, e)| fail(e))
}
