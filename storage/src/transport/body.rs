//! Request bodies. A [`Payload`] says what to send and can be opened again for every retry; a
//! [`ReqBody`] is one sending of it, streamed from memory or from a file region, never
//! buffered whole.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

/// Read size for streamed file bodies: big enough that a syscall per frame is cheap, small
/// enough that a slow connection does not pin much memory.
const CHUNK: usize = 128 * 1024;

/// What a request sends.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of a file starting at `offset`.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

/// Hashes of a payload, computed once per request rather than once per attempt.
#[derive(Clone, Debug)]
pub(crate) struct Digests {
    pub sha256_hex: String,
    pub md5_base64: Option<String>,
}

impl Digests {
    /// No hashes: a request without a body, or one sent unsigned.
    pub fn none() -> Digests {
        Digests {
            sha256_hex: String::new(),
            md5_base64: None,
        }
    }
}

pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Empty => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    /// `len` bytes at `offset` of what an upload sends: a slice of bytes held in memory, or a
    /// region of the file, read when sent.
    pub fn region(body: &crate::Body, offset: u64, len: u64) -> Payload {
        match body {
            crate::Body::Bytes(b) => {
                Payload::Bytes(b.slice(offset as usize..(offset + len) as usize))
            }
            crate::Body::File(p) => Payload::File {
                path: p.clone(),
                offset,
                len,
            },
        }
    }

    /// SHA-256 (when the payload is signed) and MD5 (when asked for), in one pass over a file.
    pub async fn digests(&self, sha256: bool, md5: bool) -> io::Result<Digests> {
        if !sha256 && !md5 {
            return Ok(Digests {
                sha256_hex: String::new(),
                md5_base64: None,
            });
        }
        let finish = |s: Option<Sha256>, m: Option<Md5>| Digests {
            sha256_hex: s.map(|s| hex(&s.finalize())).unwrap_or_default(),
            md5_base64: m.map(|m| base64::engine::general_purpose::STANDARD.encode(m.finalize())),
        };
        let mut s = sha256.then(Sha256::new);
        let mut m = md5.then(Md5::new);
        match self {
            Payload::Empty => Ok(finish(s, m)),
            Payload::Bytes(b) => {
                if let Some(s) = s.as_mut() {
                    s.update(b);
                }
                if let Some(m) = m.as_mut() {
                    m.update(b);
                }
                Ok(finish(s, m))
            }
            Payload::File { path, offset, len } => {
                let (path, offset, len) = (path.clone(), *offset, *len);
                tokio::task::spawn_blocking(move || {
                    let mut f = std::fs::File::open(&path)?;
                    f.seek(SeekFrom::Start(offset))?;
                    let mut left = len;
                    let mut buf = vec![0u8; CHUNK];
                    while left > 0 {
                        let want = left.min(CHUNK as u64) as usize;
                        let n = f.read(&mut buf[..want])?;
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("{} shrank while being uploaded", path.display()),
                            ));
                        }
                        if let Some(s) = s.as_mut() {
                            s.update(&buf[..n]);
                        }
                        if let Some(m) = m.as_mut() {
                            m.update(&buf[..n]);
                        }
                        left -= n as u64;
                    }
                    Ok(finish(s, m))
                })
                .await
                .map_err(io::Error::other)?
            }
        }
    }

    /// A fresh body for one attempt.
    pub async fn open(&self) -> io::Result<ReqBody> {
        Ok(match self {
            Payload::Empty => ReqBody::Empty,
            Payload::Bytes(b) => ReqBody::Full(Some(b.clone())),
            Payload::File { path, offset, len } => {
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(SeekFrom::Start(*offset)).await?;
                ReqBody::File {
                    file,
                    remaining: *len,
                }
            }
        })
    }
}

/// One sending of a payload, with an exact size so hyper sends Content-Length, never chunked
/// encoding (which S3 rejects without aws-chunked framing).
#[derive(Debug)]
pub(crate) enum ReqBody {
    Empty,
    Full(Option<Bytes>),
    File {
        file: tokio::fs::File,
        remaining: u64,
    },
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::File { file, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (*remaining).min(CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                let mut rb = ReadBuf::new(&mut buf);
                match Pin::new(file).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            return Poll::Ready(Some(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while being uploaded",
                            ))));
                        }
                        buf.truncate(n);
                        *remaining -= n as u64;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match self {
            ReqBody::Empty => 0,
            ReqBody::Full(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            ReqBody::File { remaining, .. } => *remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn file_region_streams_and_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).expect("write");
        let payload = Payload::File {
            path: p,
            offset: 1000,
            len: 300_000,
        };
        let d = payload.digests(true, true).await.expect("digests");
        let want = Payload::Bytes(Bytes::copy_from_slice(&data[1000..301_000]));
        let w = want.digests(true, true).await.expect("digests");
        assert_eq!(d.sha256_hex, w.sha256_hex);
        assert_eq!(d.md5_base64, w.md5_base64);
        let body = payload.open().await.expect("open");
        assert_eq!(body.size_hint().exact(), Some(300_000));
        let got = body.collect().await.expect("collect").to_bytes();
        assert_eq!(&got[..], &data[1000..301_000]);
        assert_eq!(
            Payload::Empty
                .digests(true, false)
                .await
                .expect("d")
                .sha256_hex,
            EMPTY_SHA256
        );
    }
}
