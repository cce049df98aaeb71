//! Merging N LTX files into one, newest page wins (docs/replica-layout.md#merge-rules), streaming: memory is one page buffer
//! per input plus the output's page index, whatever the database size.

use std::io::{Read, Write};

use crate::{Encoder, Error, Header, Result, StreamDecoder};

#[derive(Clone, Copy, Debug, Default)]
/// Options for [`compact`].
pub struct CompactOptions {
    /// Skip the contiguity check between inputs. Litestream never sets it.
    pub allow_non_contiguous: bool,
}

/// The header a compaction of these inputs produces: first input's MinTXID and PreApply, last
/// input's MaxTXID, Commit and Timestamp, no WAL fields.
pub fn compacted_header(headers: &[Header]) -> Result<Header> {
    let (first, last) = match (headers.first(), headers.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(Error::Compact("no input files".into())),
    };
    let mut h = Header::new(
        first.page_size,
        last.commit,
        first.min_txid,
        last.max_txid,
        last.timestamp,
    );
    h.pre_apply_checksum = first.pre_apply_checksum;
    Ok(h)
}

/// Checks page sizes and that inputs are contiguous or overlapping and move forward.
pub fn check_inputs(headers: &[Header], opts: CompactOptions) -> Result<()> {
    for (i, pair) in headers.windows(2).enumerate() {
        let (prev, next) = (&pair[0], &pair[1]);
        if next.page_size != prev.page_size {
            return Err(Error::Compact(format!(
                "input {} has page size {}, input {i} has {}",
                i + 1,
                next.page_size,
                prev.page_size
            )));
        }
        if !opts.allow_non_contiguous
            && (next.min_txid.0 > prev.max_txid.0 + 1 || next.max_txid <= prev.max_txid)
        {
            return Err(Error::Compact(format!(
                "non-contiguous inputs: {}-{} then {}-{}",
                prev.min_txid, prev.max_txid, next.min_txid, next.max_txid
            )));
        }
    }
    Ok(())
}

/// Compacts `inputs` (ordered by TXID) into `w`. Every input's checksum is verified as it ends.
/// Returns the writer, the output header and its file checksum.
pub fn compact<R: Read, W: Write>(
    mut inputs: Vec<StreamDecoder<R>>,
    w: W,
    opts: CompactOptions,
) -> Result<(W, Header, u64)> {
    let headers: Vec<Header> = inputs.iter().map(|d| *d.header()).collect();
    check_inputs(&headers, opts)?;
    let header = compacted_header(&headers)?;
    let page_size = header.page_size as usize;
    let mut enc = Encoder::new(w, header)?;

    let wrap = |index: usize| {
        move |e: Error| Error::Input {
            index,
            source: Box::new(e),
        }
    };
    let mut bufs: Vec<Vec<u8>> = inputs.iter().map(|_| vec![0u8; page_size]).collect();
    let mut heads: Vec<Option<u32>> = Vec::with_capacity(inputs.len());
    for (i, (d, b)) in inputs.iter_mut().zip(bufs.iter_mut()).enumerate() {
        heads.push(d.next_page(b).map_err(wrap(i))?);
    }
    while let Some(pgno) = heads.iter().flatten().copied().min() {
        let winner = heads
            .iter()
            .rposition(|h| *h == Some(pgno))
            .unwrap_or_default();
        if pgno <= header.commit {
            enc.encode_page(pgno, &bufs[winner])?;
        }
        for (i, head) in heads.iter_mut().enumerate() {
            if *head == Some(pgno) {
                *head = inputs[i].next_page(&mut bufs[i]).map_err(wrap(i))?;
            }
        }
    }
    let (w, checksum) = enc.finish()?;
    Ok((w, header, checksum))
}
