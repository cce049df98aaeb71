//! Reading a planned file's header and page index with ranged reads of its ends, and cutting
//! its page data into chunks that can be fetched in parallel.

use std::ops::Range;

use bytes::Bytes;
use ltx_codec::index::{max_frame_size, max_index_len};
use ltx_codec::{Header, PageIndex, PageIndexEntry, HEADER_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE};
use storage::{LtxFileInfo, ReplicaClient};

use crate::{RestoreError, Result};

/// How much of the end of a file to read first; Litestream reads 32 KiB too. A longer index
/// costs one more read.
const TAIL_READ: u64 = 32 * 1024;

/// Files up to this size are read whole in one request.
const SMALL_FILE: u64 = 64 * 1024;

/// `<level>/<min>-<max>.ltx`, the name errors use for a replica file.
pub fn file_label(info: &LtxFileInfo) -> String {
    format!("{}/{}", info.level.0, info.name())
}

/// What restore needs to know about one file before fetching its pages.
#[derive(Clone, Debug)]
pub struct FileLayout {
    /// The file as the replica listed it.
    pub info: LtxFileInfo,
    /// The file's name in errors, as `<level>/<name>` (see [`file_label`]).
    pub label: String,
    /// The file's decoded header.
    pub header: Header,
    /// The FileChecksum stored in the file's trailer.
    pub file_checksum: u64,
    /// The page index in file order (the only copy kept: for a large database it is most of
    /// restore's memory). The entries tile `HEADER_SIZE..pages_end` exactly.
    pub frames: Vec<PageIndexEntry>,
    /// File offset of the end-of-pages marker.
    pub pages_end: u64,
    /// CRC of the 100 header bytes (the start of the file checksum).
    pub header_crc: u64,
    /// CRC and length of the bytes from the end marker through PostApplyChecksum (the end of
    /// the file checksum).
    pub tail_crc: u64,
    /// Length of the bytes `tail_crc` covers.
    pub tail_len: u64,
}

/// Reads and checks the header, trailer and page index of one planned file.
pub async fn read_layout(client: &dyn ReplicaClient, info: &LtxFileInfo) -> Result<FileLayout> {
    let label = file_label(info);
    let size = info.size;
    let min = (HEADER_SIZE + PAGE_HEADER_SIZE + 1 + 8 + TRAILER_SIZE) as u64;
    if size < min {
        return Err(RestoreError::corrupt(
            &label,
            size,
            format!("file is {size} bytes, too short for an LTX file (at least {min})"),
        ));
    }
    // The listing's size is the replica's word: every read must return exactly what was asked,
    // or the file is shorter than listed.
    let read = |offset: u64, len: u64| {
        let label = &label;
        async move {
            let b: Bytes = client
                .read_range(info.ltx_name(), offset, Some(len))
                .await?;
            if b.len() as u64 != len {
                return Err(RestoreError::corrupt(
                    label,
                    offset,
                    format!(
                        "short read: {} of {len} bytes; the listing says the file has {size}",
                        b.len()
                    ),
                ));
            }
            Ok(b)
        }
    };
    let (head, mut tail, mut tail_start) = if size <= SMALL_FILE {
        let all = read(0, size).await?;
        (all.slice(..HEADER_SIZE), all.clone(), 0)
    } else {
        let (h, t) = tokio::join!(
            read(0, HEADER_SIZE as u64),
            read(size - TAIL_READ, TAIL_READ)
        );
        (h?, t?, size - TAIL_READ)
    };
    let header = Header::decode(&head).map_err(|e| {
        if storage::age::is_age_file(&head) {
            // Read without the age layer: no identity was given (docs/encryption.md).
            RestoreError::Config(format!(
                "{label} is encrypted with age: give an identity with -age-identity FILE, \
                 ${} or age.identities in the config",
                crate::source::AGE_IDENTITY_ENV
            ))
        } else {
            RestoreError::ltx(&label, e)
        }
    })?;
    if header.min_txid != info.min_txid || header.max_txid != info.max_txid {
        return Err(RestoreError::corrupt(
            &label,
            16,
            format!(
                "header says TXIDs {}-{}, the file name says otherwise",
                header.min_txid, header.max_txid
            ),
        ));
    }
    let tl = tail.len();
    let file_checksum = u64::from_be_bytes(be8(&tail[tl - 8..]));
    let index_len = u64::from_be_bytes(be8(&tail[tl - TRAILER_SIZE - 8..tl - TRAILER_SIZE]));
    let len_at = size - TRAILER_SIZE as u64 - 8;
    // End marker, index, index length and trailer. The index holds at most one entry per page
    // of the database, so its length is bounded by the header's Commit as well as by the
    // file's size, before anything is read or allocated for it.
    let need = index_len
        .checked_add((PAGE_HEADER_SIZE + 8 + TRAILER_SIZE) as u64)
        .filter(|&n| {
            index_len > 0
                && n <= size - HEADER_SIZE as u64
                && index_len <= max_index_len(header.commit)
        })
        .ok_or_else(|| {
            RestoreError::corrupt(
                &label,
                len_at,
                format!(
                    "page index length {index_len} does not fit in the file (or in {} pages)",
                    header.commit
                ),
            )
        })?;
    if need > size - tail_start {
        tail = read(size - need, need).await?;
        tail_start = size - need;
    }
    let marker_at = size - need;
    let t = &tail[(marker_at - tail_start) as usize..];
    if t[..PAGE_HEADER_SIZE].iter().any(|&b| b != 0) {
        return Err(RestoreError::corrupt(
            &label,
            marker_at,
            "no end-of-pages marker before the page index",
        ));
    }
    let index_at = marker_at + PAGE_HEADER_SIZE as u64;
    let index_bytes = &t[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + index_len as usize];
    let index =
        PageIndex::decode(index_bytes, index_at).map_err(|e| RestoreError::ltx(&label, e))?;
    let tail_len = need - 8;
    let tail_crc = ltx_codec::crc64(&t[..tail_len as usize]);
    let mut frames = index.entries;
    // Writers emit pages in pgno order, so this is almost always sorted already.
    if !frames.is_sorted_by_key(|e| e.offset) {
        frames.sort_by_key(|e| e.offset);
    }
    // A frame can be no longer than a page that did not compress, so a damaged index cannot
    // make one ranged read (and its buffer) as large as the file.
    let max_frame = max_frame_size(header.page_size);
    let mut at = HEADER_SIZE as u64;
    for e in &frames {
        if e.pgno > header.commit {
            return Err(RestoreError::corrupt(
                &label,
                e.offset,
                format!("page {} is beyond Commit {}", e.pgno, header.commit),
            ));
        }
        if e.offset != at || e.size < (PAGE_HEADER_SIZE + 1) as u64 || e.size > max_frame {
            return Err(RestoreError::corrupt(
                &label,
                e.offset,
                format!(
                    "page index entry for page {} ({} bytes at {}) does not follow the previous frame (ends at {at})",
                    e.pgno, e.size, e.offset
                ),
            ));
        }
        at += e.size;
    }
    if at != marker_at {
        return Err(RestoreError::corrupt(
            &label,
            at,
            format!("page frames end at {at}, the end marker is at {marker_at}"),
        ));
    }
    Ok(FileLayout {
        info: info.clone(),
        label,
        header_crc: ltx_codec::crc64(&head),
        header,
        file_checksum,
        frames,
        pages_end: marker_at,
        tail_crc,
        tail_len,
    })
}

fn be8(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[..8]);
    out
}

/// A run of whole frames of one file, fetched with one ranged read.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Position of the file in the plan (an index into the layouts).
    pub file: usize,
    /// Position among the file's chunks (CRCs are combined in this order).
    pub seq: usize,
    /// File offset of the chunk's first frame.
    pub start: u64,
    /// Length of the chunk, in bytes.
    pub len: u64,
    /// Indexes into the file's `frames`.
    pub frames: Range<usize>,
}

/// Cuts every file's page data into chunks of about `chunk_size` bytes at frame boundaries.
pub fn plan_chunks(layouts: &[FileLayout], chunk_size: u64) -> Vec<Vec<Chunk>> {
    layouts
        .iter()
        .enumerate()
        .map(|(file, l)| {
            let mut chunks = Vec::new();
            let mut first = 0usize;
            let mut len = 0u64;
            for (i, e) in l.frames.iter().enumerate() {
                if len > 0 && len + e.size > chunk_size {
                    chunks.push(Chunk {
                        file,
                        seq: chunks.len(),
                        start: l.frames[first].offset,
                        len,
                        frames: first..i,
                    });
                    first = i;
                    len = 0;
                }
                len += e.size;
            }
            if len > 0 {
                chunks.push(Chunk {
                    file,
                    seq: chunks.len(),
                    start: l.frames[first].offset,
                    len,
                    frames: first..l.frames.len(),
                });
            }
            chunks
        })
        .collect()
}
