//! Ranged reads as callers receive them: a backend's stream with its bytes counted in the
//! metrics ([`metered`]), a stream made of one read per piece for backends that read on demand
//! ([`Piecewise`]), and a whole range gathered from a stream ([`collect`]).

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::backend::{Backend, Span, Stream};
use crate::metrics::{self, Operation};
use crate::{RangeStream, Result, StorageError};

/// The largest ranged read whose buffer is allocated up front.
const MAX_PREALLOC: u64 = 64 << 20;
/// What [`collect`] asks a stream for at a time.
const COLLECT_PIECE: u64 = 1 << 20;

/// A stream whose bytes are added to the metrics when it is dropped.
struct Metered<'a> {
    inner: Box<dyn RangeStream + 'a>,
    kind: &'static str,
    bytes: u64,
}

impl Drop for Metered<'_> {
    fn drop(&mut self) {
        metrics::record(self.kind, Operation::Get, 0, self.bytes);
    }
}

#[async_trait]
impl RangeStream for Metered<'_> {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        match self.inner.next_piece(max).await {
            Ok(p) => {
                self.bytes += p.as_ref().map_or(0, |p| p.len() as u64);
                Ok(p)
            }
            Err(e) => {
                metrics::record_error(self.kind, Operation::Get, e.metric_code());
                Err(e)
            }
        }
    }
}

pub(crate) fn metered<'a>(
    inner: Box<dyn RangeStream + 'a>,
    kind: &'static str,
    counted: bool,
) -> Box<dyn RangeStream + 'a> {
    if counted {
        Box::new(Metered {
            inner,
            kind,
            bytes: 0,
        })
    } else {
        inner
    }
}

/// Reads the rest of a stream into one buffer (`len` is what the caller asked for, to size
/// it). A whole range that arrives in one piece is returned without a copy.
pub(crate) async fn collect(s: &mut (dyn RangeStream + '_), len: Option<u64>) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(len.map_or(0, |l| l.min(MAX_PREALLOC) as usize));
    while let Some(piece) = s.next_piece(COLLECT_PIECE.max(len.unwrap_or(0))).await? {
        if out.is_empty() && len.is_some_and(|l| piece.len() as u64 == l) {
            return Ok(piece);
        }
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes>> + Send + 'a>>;

/// A ranged read made of one read of exactly the size asked for per piece, so that a long
/// range is consumed in bounded memory from a backend that reads on demand.
pub(crate) struct Piecewise<F> {
    read: F,
    next: u64,
    end: u64,
}

impl<'a, F> Piecewise<F>
where
    F: FnMut(u64, u64) -> ReadFuture<'a> + Send,
{
    /// `len` bytes at `offset`; `read(at, n)` reads `n` bytes at `at`.
    pub(crate) fn new(offset: u64, len: u64, read: F) -> Result<Piecewise<F>> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| StorageError::fatal(format!("range {offset}+{len} overflows")))?;
        Ok(Piecewise {
            read,
            next: offset,
            end,
        })
    }
}

#[async_trait]
impl<'a, F> RangeStream for Piecewise<F>
where
    F: FnMut(u64, u64) -> ReadFuture<'a> + Send,
{
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let n = (self.end - self.next).min(max.max(1));
        let piece = (self.read)(self.next, n).await?;
        if piece.len() as u64 != n {
            return Err(StorageError::fatal(format!(
                "short read: {} of {n} bytes at {}",
                piece.len(),
                self.next
            )));
        }
        self.next += n;
        Ok(Some(piece))
    }
}

/// Bytes already read, handed out in pieces of the size asked for.
struct Whole(Bytes);

#[async_trait]
impl RangeStream for Whole {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .clamp(1, self.0.len());
        Ok(Some(self.0.split_to(n)))
    }
}

/// [`Backend::open_range`] of a backend that reads on demand: one [`Backend::read`] per
/// piece; without a length, the rest of the object in one read.
pub(crate) async fn piecewise<'a, B: Backend + ?Sized>(
    backend: &'a B,
    key: &str,
    span: Span,
) -> Result<Stream<'a>> {
    let Some(len) = span.len else {
        return Ok(Box::new(Whole(backend.read(key, span).await?)));
    };
    let key = key.to_owned();
    Ok(Box::new(Piecewise::new(span.offset, len, move |at, n| {
        let (key, span) = (
            key.clone(),
            Span {
                offset: at,
                len: Some(n),
            },
        );
        Box::pin(async move { backend.read(&key, span).await }) as ReadFuture<'a>
    })?))
}
