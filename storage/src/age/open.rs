//! Opening fetched chunks of an age file with the `age` crate's `StreamReader`.
//!
//! The crate decrypts through `Decryptor` (header, identities, payload key) and a
//! `StreamReader` that can seek over a `Read + Seek` source, authenticating each chunk as it
//! reads it. Here the source is [`Sparse`]: the file's header and nonce, the chunk most
//! recently fetched, and the file's size, so the reader can be pointed at chunk `i` and open
//! it without the rest of the file ever being fetched.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, PoisonError};

use age::stream::StreamReader;
use bytes::Bytes;

use super::keys::AgeKeys;
use super::layout::{AgeHead, CHUNK};
use crate::{ErrorKind, Result, StorageError};

/// The stored bytes at `at..at + bytes.len()`.
#[derive(Default)]
struct Window {
    at: u64,
    bytes: Bytes,
}

/// A view of one stored file holding only its prefix and the current window.
struct Sparse {
    prefix: Bytes,
    size: u64,
    pos: u64,
    window: Arc<Mutex<Window>>,
}

impl Read for Sparse {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let p = self.prefix.len() as u64;
        let n = if self.pos < p {
            let src = &self.prefix[self.pos as usize..];
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            n
        } else if self.pos >= self.size || buf.is_empty() {
            0
        } else {
            let w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            let end = w.at + w.bytes.len() as u64;
            if self.pos < w.at || self.pos >= end {
                // The reader asked for bytes that were not fetched: a bug here, not damage.
                return Err(io::Error::other(format!(
                    "offset {} was not fetched (have {}..{end})",
                    self.pos, w.at
                )));
            }
            let src = &w.bytes[(self.pos - w.at) as usize..];
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Sparse {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// A decrypting reader over one stored file, fed chunks in increasing order.
pub(crate) struct Opener {
    reader: StreamReader<Sparse>,
    window: Arc<Mutex<Window>>,
    /// The chunk the reader reads next without seeking.
    next: u64,
}

/// Why a file could not be opened, as a storage error naming it.
fn header_error(label: &str, keys: &AgeKeys, e: age::DecryptError) -> StorageError {
    use age::DecryptError as D;
    match e {
        D::NoMatchingKeys => StorageError::new(
            ErrorKind::Auth,
            format!(
                "{label}: none of the age identities ({}) can decrypt it: it was encrypted to \
                 other recipients",
                keys.identity_sources.join(", ")
            ),
        ),
        D::InvalidMac => StorageError::fatal(format!(
            "{label}: its age header does not verify (tampered with, or damaged)"
        )),
        e => StorageError::fatal(format!("{label}: cannot open the age file: {e}")),
    }
}

impl Opener {
    /// Unwraps the file key of `head` with the identities of `keys`.
    pub fn new(head: &AgeHead, keys: &AgeKeys, label: &str) -> Result<Opener> {
        if !keys.can_decrypt() {
            return Err(StorageError::new(
                ErrorKind::Auth,
                format!(
                    "{label} is encrypted with age: reading it needs an identity \
                     (age.identities in the config, or ls-restore -age-identity FILE)"
                ),
            ));
        }
        let window = Arc::new(Mutex::new(Window::default()));
        let src = Sparse {
            prefix: head.prefix.clone(),
            size: head.size,
            pos: 0,
            window: Arc::clone(&window),
        };
        let reader = age::Decryptor::new(src)
            .and_then(|d| d.decrypt(keys.identity_refs()))
            .map_err(|e| header_error(label, keys, e))?;
        Ok(Opener {
            reader,
            window,
            next: 0,
        })
    }

    /// Authenticates and decrypts chunk `i` (its stored bytes `sealed`). Chunks must come in
    /// increasing order.
    pub fn open_chunk(
        &mut self,
        head: &AgeHead,
        i: u64,
        sealed: Bytes,
        label: &str,
    ) -> Result<Vec<u8>> {
        let at = head.chunk_at(i);
        let damaged = |e: io::Error| {
            StorageError::fatal(format!(
                "{label}: age chunk {i} (bytes {at}..{}) does not authenticate: the file was \
                 tampered with, truncated or damaged ({e})",
                at + head.sealed_len(i)
            ))
        };
        *self.window.lock().unwrap_or_else(PoisonError::into_inner) = Window { at, bytes: sealed };
        if i != self.next {
            // Seeking to a chunk boundary makes the reader authenticate the file's last chunk
            // first (to learn the plaintext length), which is not fetched; one byte in, it
            // only opens this chunk. Then step back to the chunk's start.
            self.reader
                .seek(SeekFrom::Start(i * CHUNK + 1))
                .and_then(|_| self.reader.seek(SeekFrom::Current(-1)))
                .map_err(damaged)?;
        }
        let mut out = vec![0u8; head.plain_len(i) as usize];
        self.reader.read_exact(&mut out).map_err(damaged)?;
        if i + 1 == head.chunks() {
            // The crate takes a full-size chunk for a middle one when that opens, so a file
            // cut at a chunk boundary would read as a shorter file. Reading past the last
            // chunk makes it check that the stream was sealed as complete.
            let mut more = [0u8; 1];
            match self.reader.read(&mut more) {
                Ok(0) => {}
                Ok(_) => return Err(damaged(io::Error::other("data after the last chunk"))),
                Err(e) => return Err(damaged(e)),
            }
        }
        self.next = i + 1;
        Ok(out)
    }
}

/// Decrypts the plaintext range `offset..offset + len` from the stored bytes `sealed` of the
/// chunks holding it (as [`AgeHead::sealed_span`] gives them).
pub(crate) fn open_range(
    head: &AgeHead,
    keys: &AgeKeys,
    sealed: Bytes,
    offset: u64,
    len: u64,
    label: &str,
) -> Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let chunks = head.chunks_for(offset, len);
    let (start, span) = head.sealed_span(&chunks);
    if sealed.len() as u64 != span {
        return Err(StorageError::fatal(format!(
            "{label}: short read: {} of {span} bytes at {start}",
            sealed.len()
        )));
    }
    let mut opener = Opener::new(head, keys, label)?;
    let mut out = Vec::with_capacity((chunks.end - chunks.start) as usize * CHUNK as usize);
    for i in chunks.clone() {
        let from = (head.chunk_at(i) - start) as usize;
        let piece = sealed.slice(from..from + head.sealed_len(i) as usize);
        out.extend_from_slice(&opener.open_chunk(head, i, piece, label)?);
    }
    let skip = (offset - chunks.start * CHUNK) as usize;
    Ok(Bytes::from(out).slice(skip..skip + len as usize))
}
