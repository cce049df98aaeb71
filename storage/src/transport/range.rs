//! The ranged GET every HTTP backend reads with, written once. One request asks for the whole
//! range and its bytes are handed out as they arrive; when the connection drops mid-body, the
//! rest is asked for again from the first byte not yet handed out, pinned to the version the
//! first answer served (an ETag with `If-Match`, or a GCS generation), so that a replaced
//! object is never stitched together from two versions. A backend says how to ask ([`Ranged`]);
//! this module decides what the answers mean.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use hyper::body::Incoming;

use super::{header, next_data, read_body, Conn, Http, HttpError, Sent, MAX_WHOLE_BODY};
use crate::backend::{Span, Stream};
use crate::error::ErrorKind;
use crate::{RangeStream, Result};

/// One attempt of a ranged read: bytes `start..end` (to the end with `None`) of `key`,
/// pinned to `version` when given.
pub(crate) struct Get<'a> {
    pub key: &'a str,
    pub start: u64,
    pub end: Option<u64>,
    pub version: Option<&'a str>,
}

impl Get<'_> {
    /// The range header (`range` or the service's own name) and the `If-Match` pin.
    pub fn headers(&self, range: &'static str) -> Vec<(&'static str, String)> {
        let bytes = match self.end {
            Some(end) => Some(format!("bytes={}-{}", self.start, end.saturating_sub(1))),
            None if self.start > 0 => Some(format!("bytes={}-", self.start)),
            None => None,
        };
        let pin = self.version.map(|v| ("if-match", v.to_owned()));
        bytes.map(|b| (range, b)).into_iter().chain(pin).collect()
    }
}

/// What a backend supplies for ranged reads.
#[async_trait]
pub(crate) trait Ranged: Send + Sync {
    /// Sends one attempt (see [`Get::headers`]): the head of the answer.
    async fn send_get(&self, get: Get<'_>) -> Result<Sent, HttpError>;
    /// The version an answer served, which later requests are pinned to (default: its ETag).
    fn version(&self, headers: &HeaderMap) -> Option<String> {
        header(headers, "etag").map(str::to_owned)
    }
    /// What reading `key` is called in errors: the operation and the target.
    fn get_target(&self, key: &str) -> (&'static str, String);
    /// The error for an answer that is not data (its body read).
    fn status_error(
        &self,
        key: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> HttpError;
    /// The object's size, or `None` when it does not exist (to judge a 416).
    async fn size(&self, key: &str) -> Result<Option<u64>, HttpError>;
}

/// The ranged read of `client` as a [`RangeStream`].
pub(crate) async fn stream<'a, R: Ranged>(
    client: &'a R,
    http: &'a Http,
    key: &str,
    span: Span,
) -> crate::Result<Stream<'a>> {
    Ok(Box::new(RangedGet::open(client, http, key, span).await?))
}

/// A ranged read in progress: `len` bytes at `offset` (to the end with `None`).
pub(crate) struct RangedGet<'a, R: ?Sized> {
    client: &'a R,
    http: &'a Http,
    key: String,
    offset: u64,
    len: Option<u64>,
    /// Bytes handed out so far.
    got: u64,
    version: Option<String>,
    /// Failed attempts since the last one that made progress.
    failures: u32,
    /// The answer being read, its connection, and how many leading bytes to drop (a server
    /// that ignores the range answers 200 with the whole object).
    open: Option<(Incoming, Conn, u64)>,
    done: bool,
    /// The rest of a piece that was longer than the caller wanted.
    left: Bytes,
}

/// `bytes a-b/total` of a 206 (`a` and `total`), or `bytes */total` of a 416 (`total`).
fn content_range(headers: &HeaderMap) -> Option<(Option<u64>, Option<u64>)> {
    let (span, total) = header(headers, "content-range")?
        .strip_prefix("bytes ")?
        .split_once('/')?;
    let first = span.split_once('-').and_then(|(a, _)| a.parse().ok());
    Some((first, total.parse().ok()))
}

impl<'a, R: Ranged + ?Sized> RangedGet<'a, R> {
    /// Opens the range; the first request is sent (with retries) before this returns, so a
    /// missing object is reported here. An empty range is checked against the object's size.
    pub async fn open(
        client: &'a R,
        http: &'a Http,
        key: &str,
        span: Span,
    ) -> Result<RangedGet<'a, R>, HttpError> {
        let Span { offset, len } = span;
        let mut r = RangedGet {
            client,
            http,
            key: key.to_owned(),
            offset,
            len,
            got: 0,
            version: None,
            failures: 0,
            open: None,
            done: len == Some(0),
            left: Bytes::new(),
        };
        if !r.done {
            r.connect().await?;
        } else {
            match client.size(key).await? {
                Some(size) if offset <= size => {}
                size => return Err(r.missing_or_past_end(size)),
            }
        }
        Ok(r)
    }

    fn past_end(&self, size: Option<u64>) -> HttpError {
        let msg = format!(
            "range {}+{} is past the end{}",
            self.offset,
            self.len.map_or("end".to_owned(), |l| l.to_string()),
            size.map_or(String::new(), |s| format!(" ({s} bytes)"))
        );
        let mut e = self.error(Some(416), ErrorKind::Fatal, msg);
        e.code = "InvalidRange".to_owned();
        e
    }

    /// An error about reading this object.
    fn error(&self, status: Option<u16>, kind: ErrorKind, msg: String) -> HttpError {
        let (op, target) = self.client.get_target(&self.key);
        let mut e = self.http.error(op, target, status, "", msg);
        e.kind = kind;
        e
    }

    /// The error of a range that cannot be read: the object is missing (`None`) or shorter.
    fn missing_or_past_end(&self, size: Option<u64>) -> HttpError {
        match size {
            Some(s) => self.past_end(Some(s)),
            None => self.error(Some(404), ErrorKind::NotFound, "not found".to_owned()),
        }
    }

    /// Counts a failed attempt; returns the error when it is final, else waits.
    async fn failed(&mut self, err: HttpError) -> Result<(), HttpError> {
        self.open = None;
        self.failures += 1;
        let retry = &self.http.retry;
        if !err.is_retryable() || self.failures >= retry.max_attempts {
            self.done = true;
            return Err(err);
        }
        let delay = retry.delay(self.failures - 1);
        let offset = self.offset + self.got;
        tracing::warn!(backend = self.http.backend, key = %self.key, offset, error = %err, ?delay, "read failed; resuming");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Asks for the bytes not yet received until an answer with a body starts.
    async fn connect(&mut self) -> Result<(), HttpError> {
        loop {
            let start = self.offset + self.got;
            let end = self.len.map(|l| self.offset + l);
            let get = Get {
                key: &self.key,
                start,
                end,
                version: self.version.as_deref(),
            };
            let sent = self.client.send_get(get).await;
            let err = match sent {
                Err(e) => e,
                Ok(sent) => match self.answered(sent, start).await {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                },
            };
            self.failed(err).await?;
        }
    }

    /// Takes an answer: a body to read, the end of an empty range, or an error.
    async fn answered(&mut self, sent: Sent, start: u64) -> Result<(), HttpError> {
        let Sent { parts, body, conn } = sent;
        let range = content_range(&parts.headers);
        match parts.status {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                let partial = parts.status == StatusCode::PARTIAL_CONTENT;
                if partial && range.is_some_and(|(first, _)| first != Some(start)) {
                    self.done = true;
                    let msg = format!("the server sent another range than bytes={start}-");
                    return Err(self.error(Some(206), ErrorKind::Fatal, msg));
                }
                if self.version.is_none() {
                    self.version = self.client.version(&parts.headers);
                }
                let skip = if partial { 0 } else { start };
                self.open = Some((body, conn, skip));
                Ok(())
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                if read_body(body, MAX_WHOLE_BODY).await.is_ok() {
                    self.http.pool.checkin(conn);
                }
                self.done = true;
                let size = match range.and_then(|(_, total)| total) {
                    Some(s) => Some(s),
                    None => self.client.size(&self.key).await?,
                };
                match size {
                    // Reading nothing at the very end is fine; past it is not.
                    Some(s) if s == start && self.len.is_none() => Ok(()),
                    size => Err(self.missing_or_past_end(size)),
                }
            }
            status => {
                // The error document, if it comes whole; the connection is reused only then.
                let bytes = match read_body(body, MAX_WHOLE_BODY).await {
                    Ok(b) => {
                        self.http.pool.checkin(conn);
                        b
                    }
                    Err(_) => Bytes::new(),
                };
                let mut e = self
                    .client
                    .status_error(&self.key, status, &parts.headers, &bytes);
                if status == StatusCode::PRECONDITION_FAILED {
                    e.message = "the object changed while being read".to_owned();
                    e.kind = ErrorKind::Fatal;
                }
                Err(e)
            }
        }
    }

    /// The next bytes of the range as they arrive, or `None` once all of it has been handed
    /// out. A body that ends early means the range ran past the end of the object.
    pub async fn next(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let want = self.len.map(|l| l - self.got);
            if want == Some(0) {
                self.done = true;
                // Read the end of the body so the connection can be reused.
                if let Some((mut body, conn, _)) = self.open.take() {
                    if matches!(next_data(&mut body).await, Ok(None)) {
                        self.http.pool.checkin(conn);
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
                    let drop = (*skip).min(data.len() as u64);
                    *skip -= drop;
                    data = data.slice(drop as usize..);
                    if let Some(w) = want {
                        data.truncate(w.min(data.len() as u64) as usize);
                    }
                    if data.is_empty() {
                        continue;
                    }
                    self.got += data.len() as u64;
                    // Progress: a later failure is a new one, not a repeat.
                    self.failures = 0;
                    return Ok(Some(data));
                }
                Ok(None) => {
                    if let Some((_, conn, _)) = self.open.take() {
                        self.http.pool.checkin(conn);
                    }
                    self.done = true;
                    if self.len.is_some() {
                        return Err(self.past_end(Some(self.offset + self.got)));
                    }
                    return Ok(None);
                }
                Err(e) => {
                    let msg = format!("connection lost mid-body: {e}");
                    let err = self.error(None, ErrorKind::Transient, msg);
                    self.failed(err).await?;
                }
            }
        }
    }
}

#[async_trait]
impl<R: Ranged + ?Sized> RangeStream for RangedGet<'_, R> {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        let mut piece = if self.left.is_empty() {
            match self.next().await? {
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
