//! Encrypting a file for the replica with the `age` crate's `Encryptor`, streaming: a file
//! body is encrypted from disk into a temporary file beside it (bounded memory, whatever its
//! size), bytes in memory into memory.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use tempfile::NamedTempFile;

use super::keys::AgeKeys;
use super::layout::{AgeHead, CHUNK, TAG};
use crate::{Body, ErrorKind, Result, StorageError};

/// An encrypted body ready to upload, and its header.
pub(crate) struct Sealed {
    pub body: Body,
    pub head: AgeHead,
    /// The temporary file a file body was encrypted into; removed when dropped.
    _tmp: Option<NamedTempFile>,
}

/// Counts what goes through, so the header's length is known once `wrap_output` returns.
struct Counted<W> {
    inner: W,
    n: Rc<Cell<u64>>,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n.set(self.n.get() + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encrypts everything `src` holds into `dst` and returns the length of the header and
/// nonce.
fn encrypt<W: Write>(keys: &AgeKeys, src: &mut dyn Read, dst: W) -> io::Result<(W, u64)> {
    let enc = age::Encryptor::with_recipients(keys.recipient_refs()).map_err(io::Error::other)?;
    let n = Rc::new(Cell::new(0));
    let counted = Counted {
        inner: dst,
        n: Rc::clone(&n),
    };
    let mut w = enc.wrap_output(counted)?;
    let prefix = n.get();
    io::copy(src, &mut w)?;
    let counted = w.finish()?;
    Ok((counted.inner, prefix))
}

/// Encrypts `body` to the recipients of `keys`. Blocking: run it off the async threads.
pub(crate) fn seal(keys: &AgeKeys, body: &Body, label: &str) -> Result<Sealed> {
    if !keys.can_encrypt() {
        return Err(StorageError::new(
            ErrorKind::InvalidConfig,
            format!("{label}: writing to an encrypted replica needs age.recipients"),
        ));
    }
    let fail = |what: &str, e: io::Error| StorageError::io(format!("{label}: {what}"), e);
    match body {
        Body::Bytes(b) => {
            let cap = b.len() + (b.len() / CHUNK as usize + 1) * TAG as usize + 1024;
            let (out, prefix) = encrypt(keys, &mut &b[..], Vec::with_capacity(cap))
                .map_err(|e| fail("encrypt", e))?;
            let out = Bytes::from(out);
            let head = AgeHead::new(out.slice(..prefix as usize), out.len() as u64, label)?;
            Ok(Sealed {
                body: Body::Bytes(out),
                head,
                _tmp: None,
            })
        }
        Body::File(path) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let tmp = tempfile::Builder::new()
                .prefix(".age-")
                .suffix(".tmp")
                .tempfile_in(dir)
                .map_err(|e| fail(&format!("create a temporary file in {}", dir.display()), e))?;
            let src = File::open(path).map_err(|e| fail(&path.display().to_string(), e))?;
            let mut src = BufReader::with_capacity(256 << 10, src);
            let dst = BufWriter::with_capacity(256 << 10, tmp.as_file());
            let (dst, prefix) = encrypt(keys, &mut src, dst).map_err(|e| fail("encrypt", e))?;
            dst.into_inner()
                .map_err(|e| fail("encrypt", e.into_error()))?;
            let size = tmp
                .as_file()
                .metadata()
                .map_err(|e| fail("encrypt", e))?
                .len();
            let mut first = vec![0u8; prefix as usize];
            tmp.as_file()
                .read_exact_at(&mut first, 0)
                .map_err(|e| fail("encrypt", e))?;
            let head = AgeHead::new(Bytes::from(first), size, label)?;
            Ok(Sealed {
                body: Body::File(tmp.path().to_path_buf()),
                head,
                _tmp: Some(tmp),
            })
        }
    }
}
