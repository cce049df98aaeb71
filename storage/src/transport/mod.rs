//! The HTTP transport the object-store backends (`s3`, `gcs`, `abs`, `webdav`) share: a
//! keep-alive connection pool ([`pool`]), request bodies streamed from memory or disk
//! ([`body`]), one attempt of a request ([`send`]) and its response body ([`read_body`],
//! [`next_data`]), retries with backoff ([`retry`]), the one error type ([`HttpError`]),
//! percent-encoding ([`encode`]) and the resumable ranged GET ([`range`]). A backend adds only
//! what is its own: how a request is addressed and signed, and what its answers mean.

pub(crate) mod body;
pub(crate) mod encode;
mod error;
pub(crate) mod jwt;
pub use jwt::{random_uuid, uuid_v4};
pub(crate) mod pool;
pub(crate) mod range;
pub mod retry;
#[cfg(test)]
pub(crate) mod test_server;
pub(crate) mod token;

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::error::ErrorKind;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;

pub(crate) use body::{Payload, ReqBody};
pub(crate) use error::{Fault, HttpError};
pub(crate) use pool::{Conn, HttpPool, Target, Trust};
pub use retry::RetryPolicy;

pub(crate) const USER_AGENT: &str = concat!("litestream-rs/", env!("CARGO_PKG_VERSION"));
/// A response must start within this long of the request being sent, plus time for the body
/// at a slow-but-alive rate; a stalled server is then treated as a dropped connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_UPLOAD_RATE: u64 = 256 * 1024;
/// Gap allowed between two chunks of a response body.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What every HTTP backend client holds: its name, its connections and retry policy, and how
/// it judges an answer (the [`ErrorKind`] of a status and service error code, and the hint a
/// user can act on). Errors made here all read the same way, whatever the service.
pub(crate) struct Http {
    pub backend: &'static str,
    /// Shared with every replica of the same trust ([`HttpPool::shared`]).
    pub pool: std::sync::Arc<HttpPool>,
    pub retry: RetryPolicy,
    /// The kind of an answer: status (none when there was no answer) and error code.
    pub kind: fn(Option<u16>, &str) -> ErrorKind,
    /// What to check for an error: status, error code and operation.
    pub hint: fn(Option<u16>, &str, &str) -> &'static str,
}

impl Http {
    /// The error of operation `op` on `target`.
    pub fn error(
        &self,
        op: &'static str,
        target: String,
        status: Option<u16>,
        code: &str,
        message: String,
    ) -> HttpError {
        HttpError {
            backend: self.backend,
            op,
            target,
            status,
            code: code.to_owned(),
            message,
            kind: (self.kind)(status, code),
            hint: (self.hint)(status, code, op),
        }
    }

    /// Runs `attempt` with this client's retry policy.
    pub async fn run<T, F, Fut>(&self, target: &str, attempt: F) -> Result<T, HttpError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HttpError>>,
    {
        self.retry.run(self.backend, target, attempt).await
    }

    /// Reads a whole answer, giving its connection back to the pool.
    pub async fn read(
        &self,
        sent: Sent,
        op: &'static str,
        target: impl FnOnce() -> String,
    ) -> Result<Response, HttpError> {
        let r = sent.read(&self.pool).await;
        r.map_err(|f| {
            self.error(op, target(), None, "", String::new())
                .with_fault(f)
        })
    }
}

/// The head of an answer, its body still to be read, and the connection it came on (give it
/// back with [`HttpPool::checkin`] once the body has been read to its end).
pub(crate) struct Sent {
    pub parts: http::response::Parts,
    pub body: Incoming,
    pub conn: Conn,
}

/// A request head with what every request carries: Host, User-Agent, and Content-Length for
/// methods that send a body (an exact length, so hyper never falls back to chunked encoding,
/// which S3 rejects).
pub(crate) fn request_head(
    method: &Method,
    target: &Target,
    path_and_query: &str,
    payload: &Payload,
) -> http::request::Builder {
    let mut b = http::Request::builder()
        .method(method.clone())
        .uri(if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        })
        .header("host", target.authority())
        .header("user-agent", USER_AGENT);
    let has_body = !matches!(payload, Payload::Empty);
    if has_body || *method == Method::PUT || *method == Method::POST {
        b = b.header("content-length", payload.len().to_string());
    }
    b
}

/// Opens a payload for one attempt.
pub(crate) async fn open_payload(payload: &Payload) -> Result<ReqBody, Fault> {
    payload
        .open()
        .await
        .map_err(|e| Fault::Local(format!("cannot read upload body: {e}")))
}

/// One attempt: a connection from the pool (or a new one), the request, the response head.
pub(crate) async fn send(
    pool: &HttpPool,
    target: &Target,
    req: http::Request<ReqBody>,
    upload_len: u64,
) -> Result<Sent, Fault> {
    let mut conn = pool.checkout(target).await.map_err(|e| {
        let msg = format!("connect {}: {e}", target.authority());
        // A certificate the server will keep presenting is not cured by asking again.
        if e.kind() == std::io::ErrorKind::InvalidData {
            Fault::Local(msg)
        } else {
            Fault::Transport(msg)
        }
    })?;
    let limit = HEAD_TIMEOUT + Duration::from_secs(upload_len / MIN_UPLOAD_RATE);
    let resp = tokio::time::timeout(limit, conn.sender.send_request(req))
        .await
        .map_err(|_| Fault::Transport(format!("no response within {limit:?}")))?
        .map_err(|e| Fault::Transport(error_chain(&e)))?;
    let (parts, body) = resp.into_parts();
    Ok(Sent { parts, body, conn })
}

/// One attempt of a request that carries only plain headers (no signature over the
/// request): the head of the answer.
pub(crate) async fn exchange(
    pool: &HttpPool,
    target: &Target,
    method: &Method,
    path_and_query: &str,
    headers: &[(&str, String)],
    payload: &Payload,
) -> Result<Sent, Fault> {
    let body = open_payload(payload).await?;
    let mut b = request_head(method, target, path_and_query, payload);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    let req = b
        .body(body)
        .map_err(|e| Fault::Local(format!("bad request: {e}")))?;
    send(pool, target, req, payload.len()).await
}

/// A whole answer.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Sent {
    /// Reads the whole body (at most [`MAX_WHOLE_BODY`]); the connection goes back to the
    /// pool only when it was read to its end.
    pub async fn read(self, pool: &HttpPool) -> Result<Response, Fault> {
        self.read_within(pool, MAX_WHOLE_BODY).await
    }

    /// [`Sent::read`] with a bound of `limit` bytes.
    pub async fn read_within(self, pool: &HttpPool, limit: usize) -> Result<Response, Fault> {
        let body = read_body(self.body, limit).await?;
        pool.checkin(self.conn);
        Ok(Response {
            status: self.parts.status,
            headers: self.parts.headers,
            body,
        })
    }
}

/// An error and the errors that caused it, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        next = inner.source();
    }
    s
}

/// The most a body read whole may hold: listings, error documents, tokens. Object data is
/// streamed ([`next_data`]) or read in ranges of a size the caller chose.
pub(crate) const MAX_WHOLE_BODY: usize = 64 << 20;

/// Reads a whole response body of at most `limit` bytes: a server, or anything pretending to
/// be one, cannot make us allocate without bound. A longer body is a local fault (asking again
/// gets the same answer); its connection must not go back to the pool.
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, Fault> {
    let mut out = BytesMut::new();
    while let Some(data) = next_data(&mut body)
        .await
        .map_err(|e| Fault::Transport(format!("connection lost mid-body: {e}")))?
    {
        if out.len() + data.len() > limit {
            return Err(Fault::Local(format!("answer longer than {limit} bytes")));
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// The next data frame of a response body (trailers skipped), or `None` at its end, with a
/// limit on the gap between frames.
pub(crate) async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, String> {
    loop {
        let frame = tokio::time::timeout(READ_IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| format!("no data for {READ_IDLE_TIMEOUT:?}"))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(error_chain(&e)),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// What a HEAD answer says of an object: its size, and the creation time kept in the
/// metadata header `meta` (RFC 3339).
pub(crate) fn size_and_created(
    headers: &http::HeaderMap,
    meta: &str,
) -> (u64, Option<std::time::SystemTime>) {
    let size = header(headers, "content-length").and_then(|v| v.parse().ok());
    let created = header(headers, meta).and_then(crate::timefmt::parse_rfc3339);
    (size.unwrap_or(0), created)
}

/// A header's value as text, when it is there and is text.
pub(crate) fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body read whole stops at its bound instead of growing with what the server sends.
    #[tokio::test]
    async fn a_whole_body_is_read_within_its_bound() {
        let big = "x".repeat(4096);
        let (url, _) = test_server::serve(2, move |_| (200, big.clone())).await;
        let pool = HttpPool::new(None);
        let (target, path) = pool::parse_http_url(&url).expect("url");
        for (limit, ok) in [(4096, true), (4095, false)] {
            let sent = exchange(&pool, &target, &Method::GET, &path, &[], &Payload::Empty)
                .await
                .map_err(Fault::message)
                .expect("answer");
            match (sent.read_within(&pool, limit).await, ok) {
                (Ok(r), true) => assert_eq!(r.body.len(), 4096),
                (Err(Fault::Local(e)), false) => assert!(e.contains("longer than 4095"), "{e}"),
                (r, _) => panic!("limit {limit}: {:?}", r.map(|r| r.body.len())),
            }
        }
    }
}
