//! Litestream 0.3.x replicas (docs/replica-layout.md#legacy-generations-layout): `generations/<gen>/snapshots/<index>.snapshot.lz4` and
//! `generations/<gen>/wal/<index>_<offset>.wal.lz4`, each one LZ4 frame. A snapshot is the raw
//! database; WAL segments are concatenated per WAL index into `<tmp>-wal` and checkpointed into
//! the database by SQLite, one index at a time, as Litestream 0.5.17's `RestoreV3` does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use rusqlite::Connection;
use storage::backend::ObjectInfo;
use storage::{ReplicaClient, SharedReplica};
use tokio::sync::mpsc;

use crate::output::{create_private, with_suffix, PreparedOutput};
use crate::plan::Listing;
use crate::writer::TempOutput;
use crate::{integrity, IntegrityCheck, RestoreError, Result};
use storage::timefmt::format_rfc3339;

/// A 0.3.x snapshot: `generations/<gen>/snapshots/<index>.snapshot.lz4`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotV3 {
    /// The generation the snapshot belongs to.
    pub generation: String,
    /// The WAL index the snapshot was taken at.
    pub index: u32,
    /// The object's size in bytes (compressed).
    pub size: u64,
    /// When the replica says the object was created.
    pub created_at: SystemTime,
    /// The object's name below the replica's directory.
    pub name: String,
}

/// A 0.3.x WAL segment: `generations/<gen>/wal/<index>_<offset>.wal.lz4`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentV3 {
    /// The generation the segment belongs to.
    pub generation: String,
    /// The WAL index the segment is part of.
    pub index: u32,
    /// Byte offset of the segment within its WAL index.
    pub offset: u64,
    /// The object's size in bytes (compressed).
    pub size: u64,
    /// When the replica says the object was created.
    pub created_at: SystemTime,
    /// The object's name below the replica's directory.
    pub name: String,
}

/// Every 0.3.x snapshot and WAL segment of a replica.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The snapshots, ordered by generation and index.
    pub snapshots: Vec<SnapshotV3>,
    /// The WAL segments, ordered by generation, index and offset.
    pub segments: Vec<SegmentV3>,
}

fn is_hex(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What one listed name is: `generations/<gen>/snapshots/<index>.snapshot.lz4` or
/// `generations/<gen>/wal/<index>_<offset>.wal.lz4`; anything else is ignored, as Litestream
/// ignores it.
enum Entry {
    Snapshot {
        generation: String,
        index: u32,
    },
    Segment {
        generation: String,
        index: u32,
        offset: u64,
    },
}

fn parse_name(name: &str) -> Option<Entry> {
    let mut parts = name.strip_prefix("generations/")?.split('/');
    let (generation, dir, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_hex(generation, 16, 16) {
        return None;
    }
    let generation = generation.to_owned();
    match dir {
        "snapshots" => {
            let idx = file
                .strip_suffix(".snapshot.lz4")
                .filter(|s| is_hex(s, 8, 8))?;
            let index = u32::from_str_radix(idx, 16).ok()?;
            Some(Entry::Snapshot { generation, index })
        }
        "wal" => {
            let (idx, off) = file
                .strip_suffix(".wal.lz4")?
                .split_once('_')
                .filter(|(i, o)| is_hex(i, 8, 8) && is_hex(o, 8, 16))?;
            Some(Entry::Segment {
                generation,
                index: u32::from_str_radix(idx, 16).ok()?,
                offset: u64::from_str_radix(off, 16).ok()?,
            })
        }
        _ => None,
    }
}

impl Catalog {
    /// Lists the replica's `generations/` tree; a replica without one has an empty catalog.
    pub async fn load(client: &dyn ReplicaClient) -> Result<Catalog> {
        let mut c = Catalog::default();
        for ObjectInfo {
            name,
            size,
            created_at,
        } in client.legacy_objects().await?
        {
            let Some(entry) = parse_name(&name) else {
                continue;
            };
            // Litestream orders and picks 0.3.x files by their creation time; a backend that
            // cannot say when an object was made cannot be restored from correctly.
            let created_at = created_at.ok_or_else(|| {
                RestoreError::V3(format!("{name}: the replica reports no creation time"))
            })?;
            match entry {
                Entry::Snapshot { generation, index } => c.snapshots.push(SnapshotV3 {
                    generation,
                    index,
                    size,
                    created_at,
                    name,
                }),
                Entry::Segment {
                    generation,
                    index,
                    offset,
                } => c.segments.push(SegmentV3 {
                    generation,
                    index,
                    offset,
                    size,
                    created_at,
                    name,
                }),
            }
        }
        c.snapshots
            .sort_by(|a, b| (&a.generation, a.index).cmp(&(&b.generation, b.index)));
        c.segments.sort_by(|a, b| {
            (&a.generation, a.index, a.offset).cmp(&(&b.generation, b.index, b.offset))
        });
        Ok(c)
    }

    /// Whether the replica holds no 0.3.x files.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.segments.is_empty()
    }

    /// Oldest and newest CreatedAt over every snapshot and segment.
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

/// What a 0.3.x restore applies (docs/restore.md#legacy-replicas).
#[derive(Clone, Debug)]
pub struct PlanV3 {
    /// The snapshot the restore starts from.
    pub snapshot: SnapshotV3,
    /// The snapshot generation's WAL segments applied after it, in order.
    pub segments: Vec<SegmentV3>,
}

impl PlanV3 {
    /// The plan as `-dry-run` prints it for restoring to `output`: text, or JSON if `json`.
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
    pub async fn restore(
        &self,
        client: &SharedReplica,
        output: PreparedOutput,
        check: IntegrityCheck,
    ) -> Result<()> {
        let tmp = TempOutput::create(&output, 0)?;
        let tmp_path = tmp.tmp_path().to_owned();
        let file = tmp
            .file()
            .file()
            .try_clone()
            .map_err(|e| RestoreError::io(&tmp_path, e))?;
        let file = fetch_into(client, &self.snapshot.name, file).await?;
        file.sync_all()
            .map_err(|e| RestoreError::io(&tmp_path, e))?;
        self.apply_segments(client, &tmp_path).await?;
        if check != IntegrityCheck::None {
            integrity::check(&tmp_path, check)?;
        }
        tmp.publish()
    }

    async fn apply_segments(&self, client: &SharedReplica, db: &Path) -> Result<()> {
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
            let Some(f) = wal.take() else {
                return Err(RestoreError::V3("no WAL file open".into()));
            };
            let before = offset;
            let f = fetch_into(client, &seg.name, f).await?;
            offset = f
                .metadata()
                .map_err(|e| RestoreError::io(&wal_path, e))?
                .len();
            if offset < before {
                return Err(RestoreError::V3(format!("{}: WAL shrank", seg.name)));
            }
            wal = Some(f);
        }
        if wal.take().is_some() {
            checkpoint(db)?;
        }
        Ok(())
    }
}

/// Pieces of an object in flight between the download and the decompressor: a few, so memory
/// stays bounded whatever the object's size.
const PIECES_IN_FLIGHT: usize = 4;
const PIECE: u64 = 1 << 20;

/// The download side of [`fetch_into`], as a blocking reader for the LZ4 frame decoder.
struct Pieces {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while !self.cur.has_remaining() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        self.cur.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}

/// Streams one object (one LZ4 frame) through the decompressor to the end of `out`, and
/// hands `out` back. Downloading and decompressing overlap; neither holds the object whole.
async fn fetch_into(client: &SharedReplica, name: &str, mut out: File) -> Result<File> {
    let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
    let label = name.to_owned();
    let decode = tokio::task::spawn_blocking(move || -> Result<File> {
        let mut dec = lz4_flex::frame::FrameDecoder::new(Pieces {
            rx,
            cur: Bytes::new(),
        });
        io::copy(&mut dec, &mut out)
            .map_err(|e| RestoreError::V3(format!("{label}: bad LZ4 frame: {e}")))?;
        out.flush().map_err(|e| RestoreError::io(&label, e))?;
        Ok(out)
    });
    let fed = async {
        let mut s = client.open_legacy(name).await?;
        while let Some(piece) = s.next_piece(PIECE).await? {
            if tx.send(piece).await.is_err() {
                // The decoder stopped early; its error says why.
                break;
            }
        }
        Ok::<(), storage::StorageError>(())
    }
    .await;
    drop(tx);
    let decoded = decode
        .await
        .map_err(|e| RestoreError::V3(format!("{name}: decompression task failed: {e}")))?;
    // A failed download also cuts the frame short; its own error is the one that says why.
    fed?;
    decoded
}

fn checkpoint(db: &Path) -> Result<()> {
    let fail = |e: rusqlite::Error| RestoreError::V3(format!("checkpoint: {e}"));
    let conn = Connection::open(db).map_err(fail)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(fail)?;
    conn.close().map_err(|(_, e)| fail(e))
}
