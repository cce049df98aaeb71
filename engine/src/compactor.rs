//! Level compaction (docs/replica-layout.md#compaction-scheduling): merges the source level's new
//! files into one file at the destination level, streaming. Inputs are local L0 copies when present
//! (Litestream's `LocalFileOpener`), else remote files copied to temp files in the meta directory
//! with ranged reads; the output is written to a temp file and uploaded from disk. Memory is a
//! page and a read buffer per input (the read buffers 8 MiB together, [`read_buffer`]) plus the
//! output's page index, whatever the database size.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ltx_codec::{CompactOptions, Level, StreamDecoder, TxId};
use storage::{LtxFileInfo, LtxName, SharedReplica};

use crate::error::{Error, Result};
use crate::meta::MetaDir;
use crate::schedule::prev_at;

/// Remote inputs are fetched in pieces of this size, so a large file never sits in memory.
const FETCH_CHUNK: u64 = 4 << 20;

/// The read buffers of a merge's inputs together: a write burst leaves hundreds of L0 files
/// for one L1 compaction, and a fixed 256 KiB each made its memory grow with their number
/// (60 MiB for 250 inputs, more than everything else the engine holds while replicating).
const READ_BUFFERS: usize = 8 << 20;
/// One input's read buffer: at most this (a few large inputs), at least a 4 KiB page with
/// its header (very many inputs; larger pages are read past the buffer, straight into the
/// decoder's).
const READ_BUFFER_MAX: usize = 256 << 10;
const READ_BUFFER_MIN: usize = 8 << 10;

/// The read buffer of each of `inputs` inputs.
fn read_buffer(inputs: usize) -> usize {
    (READ_BUFFERS / inputs.max(1)).clamp(READ_BUFFER_MIN, READ_BUFFER_MAX)
}

/// Newest file of a level by MaxTXID (Litestream's `MaxLTXFileInfo`).
pub fn newest(files: &[LtxFileInfo]) -> Option<&LtxFileInfo> {
    files.iter().max_by_key(|f| f.max_txid)
}

/// Why a level was left alone; both are normal outcomes, not errors.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The source level was merged into this new file, now uploaded to the destination level.
    Compacted(LtxFileInfo),
    /// The destination already has a file created after the current period began.
    TooEarly,
    /// The source has nothing the destination lacks.
    NothingNew,
}

/// The directory for compaction temp files. Their names end in `.tmp`, so a crash leaves
/// nothing that `MetaDir::remove_tmp_files` does not clean up on the next start.
fn work_dir(meta: &MetaDir) -> PathBuf {
    meta.root().join("compact")
}

/// Removes a temp file when dropped, whatever path the compaction took.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Compacts `dst - 1` into `dst` if due at the period boundary `at` (an aligned multiple of
/// `interval`, normally the wake-up time).
pub async fn compact_level(
    replica: &SharedReplica,
    meta: &MetaDir,
    dst: u8,
    interval: Duration,
    at: SystemTime,
) -> Result<Outcome> {
    let src = Level(dst - 1);
    let dst = Level(dst);
    let dst_files = replica.ltx_files(dst).await?;
    let dst_newest = newest(&dst_files).cloned();
    if let Some(d) = &dst_newest {
        if d.created_at > prev_at(at, interval) {
            return Ok(Outcome::TooEarly);
        }
    }
    let (dst_min, dst_max) = dst_newest
        .as_ref()
        .map_or((TxId::ZERO, TxId::ZERO), |d| (d.min_txid, d.max_txid));
    let src_files = replica.ltx_files(src).await?;
    match newest(&src_files) {
        Some(s) if s.max_txid > dst_min => {}
        _ => return Ok(Outcome::NothingNew),
    }
    let inputs: Vec<LtxFileInfo> = src_files
        .into_iter()
        .filter(|f| f.min_txid.0 > dst_max.0)
        .collect();
    if inputs.is_empty() {
        return Ok(Outcome::NothingNew);
    }
    let info = merge_into(replica, meta, &inputs, dst).await?;
    Ok(Outcome::Compacted(info))
}

/// Merges `inputs` (in TXID order) into one file at `dst` and uploads it.
pub async fn merge_into(
    replica: &SharedReplica,
    meta: &MetaDir,
    inputs: &[LtxFileInfo],
    dst: Level,
) -> Result<LtxFileInfo> {
    let dir = work_dir(meta);
    meta.create_dir(&dir)?;
    let mut temps = Vec::new();
    let mut paths = Vec::with_capacity(inputs.len());
    for f in inputs {
        let local = meta.level_dir(f.level).join(f.name());
        if tokio::fs::metadata(&local).await.is_ok() {
            paths.push(local);
            continue;
        }
        let tmp = dir.join(format!("in-{}-{}.tmp", f.level.0, f.name()));
        let guard = TempFile(tmp.clone());
        download(replica, f, &tmp, meta.file_mode()).await?;
        paths.push(tmp);
        temps.push(guard);
    }
    let min = inputs
        .iter()
        .map(|f| f.min_txid)
        .min()
        .unwrap_or(TxId::ZERO);
    let max = inputs
        .iter()
        .map(|f| f.max_txid)
        .max()
        .unwrap_or(TxId::ZERO);
    let out = dir.join(format!(
        "out-{}-{}.tmp",
        dst.0,
        ltx_codec::types::ltx_file_name(min, max)
    ));
    let out_guard = TempFile(out.clone());
    let out2 = out.clone();
    let mode = meta.file_mode();
    let timestamp = tokio::task::spawn_blocking(move || merge_files(&paths, &out2, mode))
        .await
        .map_err(|e| Error::Other(format!("compaction thread failed: {e}")))??;
    // The stored creation time follows the header timestamp (the last input's write time), as every
    // Litestream backend derives it (docs/replica-layout.md#paths-and-timestamps-per-backend).
    let created = UNIX_EPOCH + Duration::from_millis(u64::try_from(timestamp).unwrap_or(0));
    let info = replica
        .write_ltx(
            LtxName::new(dst, min, max),
            storage::Body::File(out.clone()),
            created,
        )
        .await?;
    drop(out_guard);
    drop(temps);
    Ok(info)
}

/// Copies one remote file to `tmp` with ranged reads.
async fn download(
    replica: &SharedReplica,
    f: &LtxFileInfo,
    tmp: &Path,
    mode: Option<u32>,
) -> Result<()> {
    // Downloaded inputs hold database pages: capped like the database (see MetaDir).
    let std_file =
        storage::local::create_file_mode(tmp, mode).map_err(|e| Error::io("create", tmp, e))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut off = 0;
    while off < f.size {
        let len = FETCH_CHUNK.min(f.size - off);
        let bytes = replica.read_range(f.ltx_name(), off, Some(len)).await?;
        if bytes.is_empty() {
            return Err(Error::Other(format!(
                "{}: short read at offset {off}",
                f.name()
            )));
        }
        tokio::io::AsyncWriteExt::write_all(&mut file, &bytes)
            .await
            .map_err(|e| Error::io("write", tmp, e))?;
        off += bytes.len() as u64;
    }
    // tokio's File hands writes to a blocking thread: only a flush waits until they reached the
    // file, and the merge opens it by path right after.
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(|e| Error::io("write", tmp, e))
}

/// The blocking merge: `ltx_codec::compact` over buffered file readers into `out`, with
/// Litestream's NoChecksum flag. Returns the output header's timestamp.
fn merge_files(inputs: &[PathBuf], out: &Path, mode: Option<u32>) -> Result<i64> {
    let mut decs = Vec::with_capacity(inputs.len());
    let buf = read_buffer(inputs.len());
    for p in inputs {
        let f = File::open(p).map_err(|e| Error::io("open compaction input", p, e))?;
        let d = StreamDecoder::new(BufReader::with_capacity(buf, f))
            .map_err(|e| Error::ltx(format!("read {}", p.display()), e))?;
        decs.push(d);
    }
    let f = storage::local::create_file_mode(out, mode).map_err(|e| Error::io("create", out, e))?;
    // Paced: a merge of many inputs can write hundreds of MB, all of it dirty until uploaded.
    let w = BufWriter::with_capacity(1 << 20, storage::local::PacedFile::new(f));
    let (mut w, header, _) = ltx_codec::compact(decs, w, CompactOptions::default())
        .map_err(|e| Error::ltx("compact", e))?;
    w.flush().map_err(|e| Error::io("write", out, e))?;
    Ok(header.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use storage::LtxName;

    /// The inputs' read buffers stay within [`READ_BUFFERS`] together up to 1,024 inputs, and
    /// a few inputs still get large buffers.
    #[test]
    fn read_buffers_are_bounded_together() {
        for n in [1, 2, 31, 32, 33, 100, 250, 407, 1000, 1024] {
            assert!(n * read_buffer(n) <= READ_BUFFERS, "{n} inputs");
            assert!(read_buffer(n) >= READ_BUFFER_MIN, "{n} inputs");
        }
        assert_eq!(read_buffer(0), READ_BUFFER_MAX);
        assert_eq!(read_buffer(4), READ_BUFFER_MAX);
        assert_eq!(read_buffer(5000), READ_BUFFER_MIN);
    }

    /// A fetched input is complete on disk when `download` returns: the merge reads it by
    /// path straight away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_downloaded_input_is_on_disk_when_download_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let replica: SharedReplica = Arc::new(storage::file::FileReplica::new(dir.path()));
        for round in 0..20u64 {
            let body: Vec<u8> = (0..50_000u64)
                .map(|i| (i.wrapping_mul(round + 7) % 251) as u8)
                .collect();
            let t = TxId(round + 1);
            let info = replica
                .write_ltx(
                    LtxName::new(Level(1), t, t),
                    storage::Body::Bytes(body.clone().into()),
                    SystemTime::now(),
                )
                .await
                .expect("write");
            let tmp = dir.path().join(format!("in-{round}.tmp"));
            download(&replica, &info, &tmp, None)
                .await
                .expect("download");
            let got = std::fs::read(&tmp).expect("read");
            assert_eq!(got.len(), body.len(), "round {round}: bytes on disk");
            assert!(got == body, "round {round}: content differs");
        }
    }
}
