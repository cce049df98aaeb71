//! Running a plan: page indexes first, then a winner for every page, then the page data read
//! by `parallelism` streamed ranged reads, cut into chunks as it arrives, decompressed and
//! checksummed on all cores, winning pages written at their offsets (with direct I/O where
//! the file system allows). The output is published only after every file verified.

use std::sync::Arc;

use ltx_codec::{lock_pgno, TxId};
use storage::{LtxFileInfo, SharedReplica};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::checksum::{check_file, process_chunk, ChunkCrc, Discard, PageSink};
use crate::fetch::{plan_chunks, read_layout, Chunk, FileLayout};
use crate::output::PreparedOutput;
use crate::progress::Progress;
use crate::writer::{OutputFile, PageWriter, TempOutput};
use crate::{integrity, IntegrityCheck, RestoreError, Result};

/// Knobs of the execution. Memory is about `parallelism × 2 × chunk_size` plus a write
/// buffer per core, the page indexes and a 4-byte winner entry per page.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Streamed ranged reads in flight at once (`-parallelism`).
    pub parallelism: usize,
    /// Target size, in bytes, of the chunks page data is cut into for decoding.
    pub chunk_size: u64,
    /// Size, in bytes, of each decode task's buffer of winning pages before it is written.
    pub write_batch: usize,
    /// The SQLite check run on the result before it is published (`-integrity-check`).
    pub integrity: IntegrityCheck,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            parallelism: 8,
            chunk_size: 1 << 20,
            write_batch: 2 << 20,
            integrity: IntegrityCheck::None,
        }
    }
}

/// What a successful restore produced.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The TXID the database was restored to (the last file's MaxTXID).
    pub txid: TxId,
    /// The database page size, in bytes.
    pub page_size: u32,
    /// The database size in pages (the last file's Commit).
    pub commit: u32,
    /// How many replica files the plan used.
    pub files: usize,
    /// Bytes of page data fetched from the replica.
    pub bytes_fetched: u64,
    /// Pages written to the output.
    pub pages_written: u64,
}

/// Reads every planned file's header and page index, `parallelism` at a time, in plan order.
pub async fn read_layouts(
    client: &SharedReplica,
    plan: &[LtxFileInfo],
    parallelism: usize,
) -> Result<Vec<FileLayout>> {
    let sem = Arc::new(Semaphore::new(parallelism.max(1)));
    let mut set = JoinSet::new();
    for (i, info) in plan.iter().enumerate() {
        let (client, info, sem) = (Arc::clone(client), info.clone(), Arc::clone(&sem));
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, read_layout(client.as_ref(), &info).await)
        });
    }
    let mut out: Vec<Option<FileLayout>> = vec![None; plan.len()];
    while let Some(joined) = set.join_next().await {
        let (i, layout) = joined.map_err(|e| RestoreError::Plan(format!("task failed: {e}")))?;
        out[i] = Some(layout?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Checks that the files chain the way the compactor requires and returns, for each page
/// `1..=Commit`, the 1-based position of the file whose version wins (0 for the lock page).
pub fn winners(layouts: &[FileLayout]) -> Result<Vec<u32>> {
    let (Some(first), Some(last)) = (layouts.first(), layouts.last()) else {
        return Err(RestoreError::TxNotAvailable);
    };
    if !first.header.is_snapshot() {
        return Err(RestoreError::Plan(format!(
            "{}: the first file of a restore must be a snapshot (MinTXID 1)",
            first.label
        )));
    }
    for pair in layouts.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        if next.header.page_size != prev.header.page_size {
            return Err(RestoreError::Plan(format!(
                "{}: page size {} differs from {} in {}",
                next.label, next.header.page_size, prev.header.page_size, prev.label
            )));
        }
        if next.header.min_txid.0 > prev.header.max_txid.0 + 1
            || next.header.max_txid <= prev.header.max_txid
        {
            return Err(RestoreError::Plan(format!(
                "{} does not continue {}",
                next.label, prev.label
            )));
        }
    }
    let commit = last.header.commit;
    let lock = lock_pgno(first.header.page_size);
    // Every page but the lock page must come from one of the files, so a Commit that the
    // files' frames cannot cover is an error before `commit × 4` bytes are allocated for it.
    let frames: u64 = layouts.iter().map(|l| l.frames.len() as u64).sum();
    let pages = u64::from(commit) - u64::from(commit >= lock);
    if pages > frames {
        return Err(RestoreError::Plan(format!(
            "{}: Commit is {commit} pages, but the planned files hold only {frames} pages",
            last.label
        )));
    }
    let mut win = vec![0u32; commit as usize];
    for (fi, l) in layouts.iter().enumerate() {
        for e in &l.frames {
            if let Some(slot) = win.get_mut(e.pgno as usize - 1) {
                *slot = fi as u32 + 1;
            }
        }
    }
    if let Some(slot) = win.get_mut(lock as usize - 1) {
        *slot = 0;
    }
    if let Some(missing) = win
        .iter()
        .enumerate()
        .find(|&(i, &w)| w == 0 && i as u32 + 1 != lock)
    {
        return Err(RestoreError::Plan(format!(
            "page {} of {commit} is in none of the planned files",
            missing.0 + 1
        )));
    }
    Ok(win)
}

/// Restores `plan` into `out`, the output path checked by [`crate::output::prepare_output`].
pub async fn execute(
    client: &SharedReplica,
    plan: &[LtxFileInfo],
    out: PreparedOutput,
    opts: &ExecOptions,
    progress: &Arc<Progress>,
) -> Result<Restored> {
    let layouts = Arc::new(read_layouts(client, plan, opts.parallelism).await?);
    let win = Arc::new(winners(&layouts)?);
    let Some(last) = layouts.last() else {
        return Err(RestoreError::TxNotAvailable);
    };
    let page_size = last.header.page_size;
    let commit = last.header.commit;
    let chunks = plan_chunks(&layouts, opts.chunk_size);
    let total_bytes: u64 = chunks.iter().flatten().map(|c| c.len).sum();
    let total_pages = win.iter().filter(|&&w| w != 0).count() as u64;
    progress.start(total_bytes, total_pages);

    let tmp =
        TempOutput::create_for_pages(&out, u64::from(commit) * u64::from(page_size), page_size)?;
    let crcs = run_chunks(
        client,
        &layouts,
        chunks,
        Some((tmp.file(), Arc::clone(&win))),
        opts,
        progress,
    )
    .await?;
    for (l, c) in layouts.iter().zip(&crcs) {
        check_file(l, c)?;
    }
    if opts.integrity != IntegrityCheck::None {
        integrity::check(tmp.tmp_path(), opts.integrity)?;
    }
    tmp.publish()?;
    Ok(Restored {
        txid: last.header.max_txid,
        page_size,
        commit,
        files: layouts.len(),
        bytes_fetched: total_bytes,
        pages_written: progress.pages_written(),
    })
}

/// Groups each file's chunks into runs of consecutive chunks ("segments"), each fetched with
/// one streamed ranged read. A file gets about `total / parallelism` bytes per segment (at
/// least one chunk), so a large snapshot is read by `parallelism` long requests in parallel
/// and small files by one request each.
pub fn plan_segments(chunks: Vec<Vec<Chunk>>, parallelism: usize) -> Vec<Vec<Chunk>> {
    let total: u64 = chunks.iter().flatten().map(|c| c.len).sum();
    let target = total.div_ceil(parallelism.max(1) as u64).max(1);
    let mut out = Vec::new();
    for file in chunks {
        let bytes: u64 = file.iter().map(|c| c.len).sum();
        let n = bytes.div_ceil(target).max(1);
        let per = bytes.div_ceil(n);
        let mut seg: Vec<Chunk> = Vec::new();
        let mut len = 0u64;
        for c in file {
            len += c.len;
            seg.push(c);
            if len >= per {
                out.push(std::mem::take(&mut seg));
                len = 0;
            }
        }
        if !seg.is_empty() {
            out.push(seg);
        }
    }
    out
}

/// Chunks of one segment being decoded at once; more only holds more memory, as a stream
/// delivers much slower than a core decodes.
const DECODES_PER_SEGMENT: usize = 1;

/// Fetches and decodes every chunk, `parallelism` streamed reads in flight, and returns each
/// file's chunk CRCs in order. With `output`, winning pages are written to the file. Memory
/// is about `parallelism × (DECODES_PER_SEGMENT + 1) × chunk_size`, whatever the database size.
pub async fn run_chunks(
    client: &SharedReplica,
    layouts: &Arc<Vec<FileLayout>>,
    chunks: Vec<Vec<Chunk>>,
    output: Option<(Arc<OutputFile>, Arc<Vec<u32>>)>,
    opts: &ExecOptions,
    progress: &Arc<Progress>,
) -> Result<Vec<Vec<ChunkCrc>>> {
    let mut crcs: Vec<Vec<ChunkCrc>> = chunks
        .iter()
        .map(|c| vec![ChunkCrc::default(); c.len()])
        .collect();
    let sem = Arc::new(Semaphore::new(opts.parallelism.max(1)));
    let mut set: JoinSet<Result<Vec<(usize, usize, ChunkCrc)>>> = JoinSet::new();
    let fail = |e| RestoreError::Plan(format!("task failed: {e}"));
    let mut record = |done: Vec<(usize, usize, ChunkCrc)>| {
        for (f, s, c) in done {
            crcs[f][s] = c;
        }
    };
    for segment in plan_segments(chunks, opts.parallelism) {
        // Stop scheduling as soon as anything failed.
        while let Some(done) = set.try_join_next() {
            record(done.map_err(fail)??);
        }
        let Ok(permit) = Arc::clone(&sem).acquire_owned().await else {
            break;
        };
        let client = Arc::clone(client);
        let layouts = Arc::clone(layouts);
        let output = output.clone();
        let progress = Arc::clone(progress);
        let batch = opts.write_batch;
        set.spawn(async move {
            let _permit = permit;
            fetch_segment(&client, &layouts, segment, output, batch, &progress).await
        });
    }
    while let Some(done) = set.join_next().await {
        match done.map_err(fail).and_then(|r| r) {
            Ok(d) => record(d),
            Err(e) => {
                set.abort_all();
                return Err(e);
            }
        }
    }
    Ok(crcs)
}

/// Streams one segment, cutting it into its chunks as the bytes arrive and decoding each on
/// the rayon pool while the next one is read.
async fn fetch_segment(
    client: &SharedReplica,
    layouts: &Arc<Vec<FileLayout>>,
    segment: Vec<Chunk>,
    output: Option<(Arc<OutputFile>, Arc<Vec<u32>>)>,
    batch: usize,
    progress: &Arc<Progress>,
) -> Result<Vec<(usize, usize, ChunkCrc)>> {
    let (Some(first), Some(last)) = (segment.first(), segment.last()) else {
        return Ok(Vec::new());
    };
    let l = &layouts[first.file];
    let start = first.start;
    let len = last.start + last.len - start;
    let mut stream = client
        .read_range_stream(l.info.ltx_name(), start, len)
        .await?;
    let mut out = Vec::with_capacity(segment.len());
    let mut decoding = std::collections::VecDeque::new();
    for chunk in segment {
        // The chunk as it arrived, in pieces: frames are decoded from them in place.
        let mut pieces = Vec::new();
        let mut have = 0u64;
        while have < chunk.len {
            let piece = stream.next_piece(chunk.len - have).await?;
            let Some(piece) = piece.filter(|p| !p.is_empty()) else {
                return Err(RestoreError::corrupt(
                    &l.label,
                    chunk.start + have,
                    format!(
                        "short read: {have} of {} bytes at {}",
                        chunk.len, chunk.start
                    ),
                ));
            };
            have += piece.len() as u64;
            pieces.push(piece);
        }
        progress.fetched(chunk.len);
        if decoding.len() >= DECODES_PER_SEGMENT {
            if let Some((f, s, rx)) = decoding.pop_front() {
                out.push((f, s, decoded(rx, progress).await?));
            }
        }
        let (f, s) = (chunk.file, chunk.seq);
        decoding.push_back((f, s, decode(layouts, chunk, pieces, output.clone(), batch)));
    }
    while let Some((f, s, rx)) = decoding.pop_front() {
        out.push((f, s, decoded(rx, progress).await?));
    }
    Ok(out)
}

type DecodeResult = tokio::sync::oneshot::Receiver<Result<ChunkCrc>>;

async fn decoded(rx: DecodeResult, progress: &Progress) -> Result<ChunkCrc> {
    let c = rx
        .await
        .map_err(|_| RestoreError::Plan("decode worker vanished".into()))??;
    progress.written(c.pages);
    Ok(c)
}

/// Decompresses and checksums one fetched chunk on the rayon pool, writing its winning pages
/// when there is an output.
fn decode(
    layouts: &Arc<Vec<FileLayout>>,
    chunk: Chunk,
    pieces: Vec<bytes::Bytes>,
    output: Option<(Arc<OutputFile>, Arc<Vec<u32>>)>,
    batch: usize,
) -> DecodeResult {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let layouts = Arc::clone(layouts);
    rayon::spawn(move || {
        let l = &layouts[chunk.file];
        let entries = &l.frames[chunk.frames.clone()];
        let ps = l.header.page_size as usize;
        let mut scratch = Vec::new();
        let fi = chunk.file as u32 + 1;
        let is_winner = |pgno: u32| {
            output
                .as_ref()
                .is_some_and(|(_, win)| win.get(pgno as usize - 1) == Some(&fi))
        };
        let mut writer = output
            .as_ref()
            .map(|(file, _)| PageWriter::new(file, ps, batch, &is_winner));
        let mut discard = Discard;
        let sink: &mut dyn PageSink = match writer.as_mut() {
            Some(w) => w,
            None => &mut discard,
        };
        let res = process_chunk(
            &l.label,
            &pieces,
            chunk.start,
            entries,
            ps,
            sink,
            &mut scratch,
        )
        .and_then(|c| sink.flush().map(|()| c));
        let _ = tx.send(res);
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use ltx_codec::{Header, Level, PageIndexEntry};

    use super::*;

    fn layout(ps: u32, commit: u32, min: u64, max: u64, pages: &[u32]) -> FileLayout {
        let info = LtxFileInfo {
            level: Level(0),
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 0,
            created_at: UNIX_EPOCH,
        };
        FileLayout {
            label: crate::fetch::file_label(&info),
            info,
            header: Header::new(ps, commit, TxId(min), TxId(max), 0),
            file_checksum: 0,
            frames: pages
                .iter()
                .map(|&pgno| PageIndexEntry {
                    pgno,
                    offset: 0,
                    size: 0,
                })
                .collect(),
            pages_end: 0,
            header_crc: 0,
            tail_crc: 0,
            tail_len: 0,
        }
    }

    fn chunks(file: usize, lens: &[u64]) -> Vec<Chunk> {
        let mut start = 100;
        lens.iter()
            .enumerate()
            .map(|(seq, &len)| {
                let c = Chunk {
                    file,
                    seq,
                    start,
                    len,
                    frames: 0..0,
                };
                start += len;
                c
            })
            .collect()
    }

    #[test]
    fn segments_split_large_files_and_keep_small_ones_whole() {
        let big = chunks(0, &[10; 16]);
        let small = chunks(1, &[3]);
        let segs = plan_segments(vec![big, small], 4);
        let shape: Vec<(usize, Vec<usize>)> = segs
            .iter()
            .map(|s| (s[0].file, s.iter().map(|c| c.seq).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, vec![0, 1, 2, 3]),
                (0, vec![4, 5, 6, 7]),
                (0, vec![8, 9, 10, 11]),
                (0, vec![12, 13, 14, 15]),
                (1, vec![0]),
            ]
        );
        // Every chunk once, in order, and a segment never spans files.
        let one = plan_segments(vec![chunks(0, &[5, 5, 5])], 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].len(), 3);
        let many = plan_segments(vec![chunks(0, &[5, 5, 5])], 16);
        assert_eq!(many.len(), 3);
        assert!(plan_segments(Vec::new(), 8).is_empty());
    }

    #[test]
    fn newest_file_wins_and_shrinks_drop_pages() {
        let w = winners(&[
            layout(4096, 5, 1, 1, &[1, 2, 3, 4, 5]),
            layout(4096, 5, 2, 2, &[2, 5]),
            layout(4096, 4, 3, 3, &[3]),
        ])
        .expect("winners");
        assert_eq!(w, vec![1, 2, 3, 1]);
    }

    #[test]
    fn lock_page_is_never_a_winner() {
        let lock = lock_pgno(65536);
        let all: Vec<u32> = (1..=lock + 1).filter(|&p| p != lock).collect();
        let w = winners(&[layout(65536, lock + 1, 1, 1, &all)]).expect("winners");
        assert_eq!(w[lock as usize - 1], 0);
        assert_eq!(w[lock as usize], 1);
    }

    #[test]
    fn gaps_and_bad_chains_are_errors() {
        let e = winners(&[layout(4096, 3, 1, 1, &[1, 3])]).expect_err("too few pages");
        assert!(e.to_string().contains("hold only 2 pages"), "{e}");
        let e = winners(&[layout(4096, 3, 1, 1, &[1, 3]), layout(4096, 3, 2, 2, &[3])])
            .expect_err("missing page");
        assert!(e.to_string().contains("page 2 of 3"), "{e}");
        let e = winners(&[layout(4096, 1, 2, 2, &[1])]).expect_err("no snapshot");
        assert!(e.to_string().contains("snapshot"), "{e}");
        let e = winners(&[layout(4096, 1, 1, 1, &[1]), layout(1024, 1, 2, 2, &[1])])
            .expect_err("page size");
        assert!(
            e.to_string().contains("page size 1024 differs from 4096"),
            "{e}"
        );
        let e =
            winners(&[layout(4096, 1, 1, 1, &[1]), layout(4096, 1, 3, 3, &[1])]).expect_err("gap");
        assert!(e.to_string().contains("does not continue"), "{e}");
    }
}
