//! Where a plaintext byte lives in an age file (docs/encryption.md#the-age-format): the header
//! (its length depends on the recipient stanzas), a 16-byte nonce, then the payload in chunks
//! of 64 KiB of plaintext, each sealed with a 16-byte tag. Chunk `i` starts at
//! `prefix + i × (65536 + 16)`, where `prefix` is the header and the nonce; only the last chunk
//! may be shorter, and only the last may be empty (an empty plaintext).

use std::io::Cursor;
use std::ops::Range;

use bytes::Bytes;

use crate::{Result, StorageError};

/// Plaintext bytes per chunk.
pub(crate) const CHUNK: u64 = 64 * 1024;
/// Authentication tag after each chunk's ciphertext.
pub(crate) const TAG: u64 = 16;
/// A full chunk as stored.
pub(crate) const SEALED: u64 = CHUNK + TAG;
/// How much of a file the first look reads: a header with a few X25519 or SSH recipients and
/// the nonce fit.
pub(crate) const FIRST_READ: u64 = 2048;
/// The longest header (with nonce) we read: far more recipients than a replica would have.
pub(crate) const MAX_PREFIX: u64 = 64 * 1024;

/// The LTX magic: a plain replica file starts with it.
const LTX_MAGIC: &[u8] = b"LTX1";

/// What a replica file is, from its first bytes.
#[derive(Clone, Debug)]
pub(crate) enum Format {
    /// A plain LTX file (only accepted while migrating).
    Plain,
    Age(AgeHead),
}

/// What is needed to read an age file: its header and nonce, and its stored size.
#[derive(Clone, Debug)]
pub(crate) struct AgeHead {
    /// The header and the nonce: everything before chunk 0.
    pub prefix: Bytes,
    /// The stored (ciphertext) size.
    pub size: u64,
    /// The plaintext size.
    pub plain: u64,
}

impl AgeHead {
    /// Checks that `size` can hold chunks after `prefix` and derives the plaintext size.
    pub fn new(prefix: Bytes, size: u64, label: &str) -> Result<AgeHead> {
        let truncated = |why: &str| {
            StorageError::fatal(format!(
                "{label}: age file of {size} bytes is truncated or damaged: {why}"
            ))
        };
        let payload = size
            .checked_sub(prefix.len() as u64)
            .filter(|&p| p >= TAG)
            .ok_or_else(|| truncated("no chunk after the header"))?;
        let chunks = payload.div_ceil(SEALED);
        let last = payload - (chunks - 1) * SEALED;
        if last < TAG || (last == TAG && chunks > 1) {
            return Err(truncated("it ends inside a chunk"));
        }
        Ok(AgeHead {
            plain: payload - chunks * TAG,
            prefix,
            size,
        })
    }

    /// How many chunks the file holds (an empty plaintext is one empty chunk).
    pub fn chunks(&self) -> u64 {
        (self.size - self.prefix.len() as u64).div_ceil(SEALED)
    }

    /// Offset of chunk `i` in the stored file.
    pub fn chunk_at(&self, i: u64) -> u64 {
        self.prefix.len() as u64 + i * SEALED
    }

    /// Stored length of chunk `i`.
    pub fn sealed_len(&self, i: u64) -> u64 {
        SEALED.min(self.size - self.chunk_at(i))
    }

    /// Plaintext length of chunk `i`.
    pub fn plain_len(&self, i: u64) -> u64 {
        CHUNK.min(self.plain - i * CHUNK)
    }

    /// The chunks holding the plaintext range `offset..offset + len` (`len` > 0, in bounds).
    pub fn chunks_for(&self, offset: u64, len: u64) -> Range<u64> {
        offset / CHUNK..(offset + len).div_ceil(CHUNK)
    }

    /// The stored byte range of `chunks`.
    pub fn sealed_span(&self, chunks: &Range<u64>) -> (u64, u64) {
        let start = self.chunk_at(chunks.start);
        let last = chunks.end - 1;
        (start, self.chunk_at(last) + self.sealed_len(last) - start)
    }
}

/// What the first bytes `first` of a file of `size` bytes say it is, `None` when the age
/// header is longer than `first` (read more and ask again).
pub(crate) fn sniff(first: &Bytes, size: u64, label: &str) -> Result<Option<Format>> {
    if first.starts_with(LTX_MAGIC) {
        return Ok(Some(Format::Plain));
    }
    if !first.starts_with(super::AGE_MAGIC) {
        return Err(StorageError::fatal(format!(
            "{label}: neither an age file nor an LTX file (it starts with neither header)"
        )));
    }
    // The crate's parser reads exactly the header and the nonce, so where it stopped is where
    // chunk 0 begins.
    let mut cur = Cursor::new(&first[..]);
    match age::Decryptor::new(&mut cur) {
        Ok(_) => {
            let n = cur.position() as usize;
            AgeHead::new(first.slice(..n), size, label).map(|h| Some(Format::Age(h)))
        }
        Err(age::DecryptError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            if (first.len() as u64) < size.min(MAX_PREFIX) {
                Ok(None)
            } else if size <= MAX_PREFIX {
                Err(StorageError::fatal(format!(
                    "{label}: age file of {size} bytes is truncated: it ends inside its header"
                )))
            } else {
                Err(StorageError::fatal(format!(
                    "{label}: age header longer than {MAX_PREFIX} bytes"
                )))
            }
        }
        Err(e) => Err(StorageError::fatal(format!(
            "{label}: invalid age header: {e}"
        ))),
    }
}
