//! [`ReplicaClient::read_range_stream`](crate::ReplicaClient::read_range_stream) over one
//! ranged download whose bytes are handed out as they arrive. A connection lost mid-body is
//! resumed from the first byte not yet handed out, pinned to the generation first served, so
//! the pieces always come from one version of the object.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use hyper::body::Incoming;

use super::client::{next_data, GcsClient, GcsError};
use super::{storage_error, KIND};
use crate::metrics::{self, Operation};
use crate::s3::pool::Conn;
use crate::{RangeStream, Result};

pub(crate) struct StreamedRange {
    client: Arc<GcsClient>,
    name: String,
    /// Next byte to hand out, and the end of the range (exclusive).
    next: u64,
    end: u64,
    generation: Option<String>,
    /// The response being read, and how many leading bytes to drop (a server that ignored
    /// the range answered 200 with the whole object).
    open: Option<(Incoming, Conn, u64)>,
    /// Failed attempts since the last one that made progress.
    failures: u32,
    /// The rest of a piece that was longer than the caller wanted.
    left: Bytes,
    bytes: u64,
}

impl Drop for StreamedRange {
    fn drop(&mut self) {
        metrics::record(KIND, Operation::Get, 0, self.bytes);
    }
}

impl StreamedRange {
    /// Opens `[offset, offset + len)` of `name`; the first request is sent at once so that a
    /// missing object is reported here.
    pub async fn open(
        client: Arc<GcsClient>,
        name: String,
        offset: u64,
        len: u64,
    ) -> Result<StreamedRange> {
        let mut s = StreamedRange {
            client,
            name,
            next: offset,
            end: offset.saturating_add(len),
            generation: None,
            open: None,
            failures: 0,
            left: Bytes::new(),
            bytes: 0,
        };
        if len > 0 {
            s.connect().await.map_err(storage_error)?;
        }
        Ok(s)
    }

    async fn connect(&mut self) -> Result<(), GcsError> {
        loop {
            let r = self
                .client
                .open_range(&self.name, self.next, self.end, self.generation.as_deref())
                .await;
            match r {
                Ok((status, generation, body, conn)) => {
                    metrics::record(KIND, Operation::Get, 1, 0);
                    if self.generation.is_none() {
                        self.generation = generation;
                    }
                    let skip = if status == StatusCode::OK {
                        self.next
                    } else {
                        0
                    };
                    self.open = Some((body, conn, skip));
                    return Ok(());
                }
                Err(e) => self.failed(e).await?,
            }
        }
    }

    /// Counts a failed attempt; returns the error when it is final, else waits.
    async fn failed(&mut self, err: GcsError) -> Result<(), GcsError> {
        self.open = None;
        self.failures += 1;
        if !err.retryable || self.failures >= self.client.retry.max_attempts {
            metrics::record_error(KIND, Operation::Get, &err.metric_code());
            self.end = self.next;
            return Err(err);
        }
        let delay = self.client.retry.delay(self.failures - 1);
        tracing::warn!(error = %err, at = self.next, ?delay, "gs read failed; resuming");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn lost(&self, message: String) -> GcsError {
        GcsError {
            op: "get object",
            target: self.client.describe(Some(&self.name)),
            status: None,
            message,
            retryable: true,
        }
    }

    async fn next_bytes(&mut self) -> Result<Option<Bytes>, GcsError> {
        loop {
            if self.next >= self.end {
                // Read the end of the body so the connection can be reused.
                if let Some((mut body, conn, _)) = self.open.take() {
                    if matches!(next_data(&mut body).await, Ok(None)) {
                        self.client.checkin(conn);
                    }
                }
                return Ok(None);
            }
            let Some((body, _, skip)) = self.open.as_mut() else {
                self.connect().await?;
                continue;
            };
            match next_data(body).await {
                Ok(Some(mut data)) => {
                    if *skip > 0 {
                        let n = (*skip).min(data.len() as u64) as usize;
                        *skip -= n as u64;
                        data = data.slice(n..);
                    }
                    let want = self.end - self.next;
                    if data.len() as u64 > want {
                        data.truncate(want as usize);
                    }
                    if data.is_empty() {
                        continue;
                    }
                    self.next += data.len() as u64;
                    self.bytes += data.len() as u64;
                    self.failures = 0;
                    return Ok(Some(data));
                }
                Ok(None) => {
                    if let Some((_, conn, _)) = self.open.take() {
                        self.client.checkin(conn);
                    }
                    let mut e = self.lost(format!(
                        "range ending at {} is past the end (object ends at {})",
                        self.end, self.next
                    ));
                    e.retryable = false;
                    self.end = self.next;
                    return Err(e);
                }
                Err(e) => {
                    let err = self.lost(format!("connection lost mid-body: {e}"));
                    self.failed(err).await?;
                }
            }
        }
    }
}

#[async_trait]
impl RangeStream for StreamedRange {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        let mut piece = if self.left.is_empty() {
            match self.next_bytes().await.map_err(storage_error)? {
                Some(p) => p,
                None => return Ok(None),
            }
        } else {
            std::mem::take(&mut self.left)
        };
        if piece.len() > max {
            self.left = piece.split_off(max);
        }
        Ok(Some(piece))
    }
}
