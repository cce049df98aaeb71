//! Running a plan: page indexes first, then a winner for every page, then chunks fetched with
//! `parallelism` ranged reads in flight, decompressed and checksummed on all cores, winning
//! pages written at their offsets. The output is published only after every file verified.

use std::path::Path;
use std::sync::Arc;

use ltx_codec::{lock_pgno, TxId};
use storage::{LtxFileInfo, SharedReplica};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::fetch::{plan_chunks, read_layout, Chunk, FileLayout};
use crate::progress::Progress;
use crate::verify::{check_file, process_chunk, ChunkCrc, Discard, PageSink};
use crate::writer::{OutputFile, PageWriter, TempOutput};
use crate::{integrity, IntegrityCheck, RestoreError, Result};

/// Knobs of the execution. Memory is about `parallelism × (chunk_size + write_batch)` plus
/// the page indexes and a 4-byte winner entry per page.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    pub parallelism: usize,
    pub chunk_size: u64,
    pub write_batch: usize,
    pub integrity: IntegrityCheck,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            parallelism: 8,
            chunk_size: 4 << 20,
            write_batch: 2 << 20,
            integrity: IntegrityCheck::None,
        }
    }
}

/// What a successful restore produced.
#[derive(Clone, Debug)]
pub struct Restored {
    pub txid: TxId,
    pub page_size: u32,
    pub commit: u32,
    pub files: usize,
    pub bytes_fetched: u64,
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

/// Restores `plan` into `out`. `out` must already have passed [`crate::writer::prepare_output`].
pub async fn execute(
    client: &SharedReplica,
    plan: &[LtxFileInfo],
    out: &Path,
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
        TempOutput::create_for_pages(out, u64::from(commit) * u64::from(page_size), page_size)?;
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

/// Fetches and decodes every chunk, `parallelism` in flight, and returns each file's chunk
/// CRCs in order. With `output`, winning pages are written to the file.
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
    let mut set: JoinSet<Result<(usize, usize, ChunkCrc)>> = JoinSet::new();
    let fail = |e| RestoreError::Plan(format!("task failed: {e}"));
    for chunk in chunks.into_iter().flatten() {
        // Stop scheduling as soon as anything failed.
        while let Some(done) = set.try_join_next() {
            let (f, s, c) = done.map_err(fail)??;
            crcs[f][s] = c;
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
            let l = &layouts[chunk.file];
            let bytes = client
                .read_range(
                    l.info.level,
                    l.info.min_txid,
                    l.info.max_txid,
                    chunk.start,
                    Some(chunk.len),
                )
                .await?;
            if bytes.len() as u64 != chunk.len {
                return Err(RestoreError::corrupt(
                    &l.label,
                    chunk.start,
                    format!("short read: {} of {} bytes", bytes.len(), chunk.len),
                ));
            }
            progress.fetched(chunk.len);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let layouts2 = Arc::clone(&layouts);
            rayon::spawn(move || {
                let l = &layouts2[chunk.file];
                let entries = &l.frames[chunk.frames.clone()];
                let ps = l.header.page_size as usize;
                let mut scratch = Vec::new();
                let fi = chunk.file as u32 + 1;
                let res = match &output {
                    Some((file, win)) => {
                        let is_winner = |pgno: u32| win.get(pgno as usize - 1) == Some(&fi);
                        let mut w = PageWriter::new(file, ps, batch, &is_winner);
                        process_chunk(
                            &l.label,
                            &bytes,
                            chunk.start,
                            entries,
                            ps,
                            &mut w,
                            &mut scratch,
                        )
                        .and_then(|c| w.flush().map(|()| c))
                    }
                    None => {
                        let mut d = Discard;
                        process_chunk(
                            &l.label,
                            &bytes,
                            chunk.start,
                            entries,
                            ps,
                            &mut d,
                            &mut scratch,
                        )
                        .and_then(|c| d.flush().map(|()| c))
                    }
                };
                let _ = tx.send(res);
            });
            let c = rx
                .await
                .map_err(|_| RestoreError::Plan("decode worker vanished".into()))??;
            progress.written(c.pages);
            Ok((chunk.file, chunk.seq, c))
        });
    }
    while let Some(done) = set.join_next().await {
        match done.map_err(fail).and_then(|r| r) {
            Ok((f, s, c)) => crcs[f][s] = c,
            Err(e) => {
                set.abort_all();
                return Err(e);
            }
        }
    }
    Ok(crcs)
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
        let e = winners(&[layout(4096, 3, 1, 1, &[1, 3])]).expect_err("missing page");
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
