//! A ranged Get Blob read as it arrives (restore's page data): one request for the whole
//! range; when the connection drops mid-body, the rest is asked for again from the last byte
//! received, pinned with `If-Match` to the first response's ETag so that a replaced blob is
//! never stitched together from two versions.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use hyper::body::Incoming;

use super::client::{next_data, AbsClient, AbsError, AttemptError, Request};
use crate::s3::pool::Conn;

pub(crate) struct BlobStream {
    client: Arc<AbsClient>,
    blob: String,
    /// The range asked for: `[start, end)`.
    start: u64,
    end: u64,
    /// Absolute offset of the next byte to hand out.
    next: u64,
    etag: Option<String>,
    /// Failed attempts since the last one that made progress.
    failures: u32,
    open: Option<(Incoming, Conn)>,
}

impl BlobStream {
    /// Starts reading `len` bytes of `blob` at `offset`; the first request is sent (with
    /// retries) before this returns, so a missing blob is reported here.
    pub async fn open(
        client: Arc<AbsClient>,
        blob: &str,
        offset: u64,
        len: u64,
    ) -> Result<BlobStream, AbsError> {
        let mut s = BlobStream {
            client,
            blob: blob.to_owned(),
            start: offset,
            end: offset.saturating_add(len),
            next: offset,
            etag: None,
            failures: 0,
            open: None,
        };
        if len > 0 {
            s.connect().await?;
        }
        Ok(s)
    }

    fn request(&self) -> Request {
        let mut req = Request::new("get blob", Method::GET, Some(&self.blob)).header(
            "x-ms-range",
            format!("bytes={}-{}", self.next, self.end - 1),
        );
        if let Some(e) = &self.etag {
            req = req.header("if-match", e.clone());
        }
        req
    }

    fn past_end(&self, size: u64) -> AbsError {
        self.client.past_end(
            &self.request(),
            self.start,
            Some(self.end - self.start),
            size,
        )
    }

    /// Counts a failed attempt: the error if it is final, else a pause before the next try.
    async fn failed(&mut self, err: AbsError) -> Result<(), AbsError> {
        self.open = None;
        self.failures += 1;
        if !err.retryable || self.failures >= self.client.retry.max_attempts {
            self.next = self.end;
            return Err(err);
        }
        let delay = self.client.retry.delay(self.failures - 1);
        tracing::warn!(error = %err, offset = self.next, ?delay, "abs read failed; resuming");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Sends the request for the bytes not yet received until a response body starts.
    async fn connect(&mut self) -> Result<(), AbsError> {
        loop {
            let req = self.request();
            let c = Arc::clone(&self.client);
            let err = match c.attempt(&req).await {
                Err(AttemptError::Local(e)) => {
                    let mut err = c.error(&req, None, "", e);
                    err.retryable = false;
                    self.next = self.end;
                    return Err(err);
                }
                Err(AttemptError::Transport(e)) => c.error(&req, None, "", e),
                Ok((parts, body, conn)) => {
                    if parts.status == StatusCode::PARTIAL_CONTENT {
                        if self.etag.is_none() {
                            self.etag = parts
                                .headers
                                .get("etag")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                        }
                        self.open = Some((body, conn));
                        return Ok(());
                    }
                    let bytes = super::client::read_body(body).await.unwrap_or_default();
                    c.pool.checkin(conn);
                    if parts.status == StatusCode::RANGE_NOT_SATISFIABLE {
                        self.next = self.end;
                        return Err(match c.blob_properties(&self.blob).await? {
                            Some((size, _)) => self.past_end(size),
                            None => c.error(&req, Some(404), "BlobNotFound", "not found".into()),
                        });
                    }
                    let mut err = c.status_error(&req, parts.status, &parts.headers, &bytes);
                    if parts.status == StatusCode::OK {
                        err.message = "the service ignored the range".into();
                        err.retryable = false;
                    }
                    if parts.status == StatusCode::PRECONDITION_FAILED {
                        err.message = "blob changed while being read".into();
                        err.retryable = false;
                    }
                    err
                }
            };
            self.failed(err).await?;
        }
    }

    /// The next bytes of the range, or `None` once all of it has been handed out. A body that
    /// ends early means the range ran past the end of the blob: an error.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, AbsError> {
        loop {
            if self.next >= self.end {
                // Read the end of the body so that the connection can be reused.
                if let Some((mut body, conn)) = self.open.take() {
                    if matches!(next_data(&mut body).await, Ok(None)) {
                        self.client.pool.checkin(conn);
                    }
                }
                return Ok(None);
            }
            let Some((body, _)) = self.open.as_mut() else {
                self.connect().await?;
                continue;
            };
            match next_data(body).await {
                Ok(Some(mut data)) => {
                    let want = self.end - self.next;
                    if data.len() as u64 > want {
                        data.truncate(want as usize);
                    }
                    if data.is_empty() {
                        continue;
                    }
                    self.next += data.len() as u64;
                    self.failures = 0;
                    return Ok(Some(data));
                }
                Ok(None) => {
                    if let Some((_, conn)) = self.open.take() {
                        self.client.pool.checkin(conn);
                    }
                    let size = self.next;
                    self.next = self.end;
                    return Err(self.past_end(size));
                }
                Err(e) => {
                    let req = self.request();
                    let err =
                        self.client
                            .error(&req, None, "", format!("connection lost mid-body: {e}"));
                    self.failed(err).await?;
                }
            }
        }
    }
}
