//! The WebDAV protocol as a replica needs it: PROPFIND (Depth 1), ranged GET that resumes
//! after a dropped connection, PUT, MKCOL, MOVE and DELETE, over the S3 backend's HTTP/1.1
//! pool with Basic authentication and its retry policy.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::multistatus::{self, Entry};
use super::settings::{percent_decode, Server};
use crate::s3::body::Payload;
use crate::s3::pool::{Conn, Pool, Target};
use crate::s3::retry::{retryable_status, RetryPolicy};

const USER_AGENT: &str = concat!("litestream-rs/", env!("CARGO_PKG_VERSION"));
/// A response must start within this long (plus upload time at a slow-but-alive rate), and
/// no more than `BODY_GAP` may pass between two pieces of its body; a stalled server is
/// treated as a dropped connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_UPLOAD_RATE: u64 = 256 * 1024;
const BODY_GAP: Duration = Duration::from_secs(60);

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"#;

/// A failed WebDAV operation, naming the URL it was about.
#[derive(Clone, Debug)]
pub(crate) struct DavError {
    pub op: &'static str,
    pub url: String,
    pub status: Option<u16>,
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for DavError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "webdav: {} {}: ", self.op, self.url)?;
        if let Some(s) = self.status {
            write!(f, "HTTP {s} ")?;
        }
        f.write_str(&self.message)?;
        f.write_str(match (self.status, self.op) {
            (Some(401), _) => " (check webdav-username and webdav-password)",
            (Some(403), _) => " (the user may not access this path)",
            (Some(409), "create directory") => {
                " (the directory above it is missing: check webdav-url)"
            }
            _ => "",
        })
    }
}

impl DavError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Metrics label: the HTTP status, or "transport".
    pub fn metric_code(&self) -> String {
        self.status
            .map_or_else(|| "transport".to_owned(), |s| s.to_string())
    }
}

/// RFC 3986 `pchar`s stay as they are; everything else is `%XX`.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The whole answer to a request.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One request, kept so that it can be sent again.
pub(crate) struct Call {
    pub op: &'static str,
    pub method: Method,
    /// Encoded absolute path.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload,
}

impl Call {
    pub fn new(op: &'static str, method: Method, path: String) -> Call {
        Call {
            op,
            method,
            path,
            headers: Vec::new(),
            payload: Payload::Empty,
        }
    }

    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.headers.push((k, v.into()));
        self
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        s = format!("{s}: {inner}");
        next = inner.source();
    }
    s
}

/// The next data of a response body, `None` at its end.
async fn body_piece(body: &mut Incoming) -> Result<Option<Bytes>, String> {
    loop {
        let Ok(frame) = tokio::time::timeout(BODY_GAP, body.frame()).await else {
            return Err(format!("the body stalled for {BODY_GAP:?}"));
        };
        let Some(frame) = frame.transpose().map_err(|e| error_chain(&e))? else {
            return Ok(None);
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

pub(crate) struct DavClient {
    target: Target,
    /// Encoded base path of the server URL (`""` or `/dav`), and the replica directory below
    /// it, decoded and encoded.
    base: String,
    dir: Vec<String>,
    root: String,
    /// `scheme://authority`, for messages.
    origin: String,
    auth: Option<String>,
    pool: Pool,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for DavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavClient")
            .field("origin", &self.origin)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl DavClient {
    pub fn new(server: Server, dir: &[String], retry: RetryPolicy) -> Result<DavClient, String> {
        let tls = if server.https {
            // Go's TLS (Litestream) also trusts the PEM file SSL_CERT_FILE names.
            let ca = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
            let ca = ca.as_deref().map(std::path::Path::new);
            Some(Arc::new(crate::s3::pool::tls_config(false, ca)?))
        } else {
            None
        };
        let target = Target {
            https: server.https,
            host: server.host,
            port: server.port,
        };
        let base = server.base;
        let mut root = base.clone();
        for s in dir {
            root.push('/');
            root.push_str(&encode_segment(s));
        }
        // gowebdav sends credentials only when both are set; a user with an empty password is
        // still worth sending, since a server that needs none ignores the header.
        let auth = (!server.username.is_empty()).then(|| {
            let pair = format!("{}:{}", server.username, server.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(DavClient {
            origin: format!(
                "{}://{}",
                if target.https { "https" } else { "http" },
                target.authority()
            ),
            target,
            base,
            dir: dir.to_vec(),
            root,
            auth,
            pool: Pool::new(tls),
            retry,
        })
    }

    /// The encoded path of `segments` below the replica directory; a collection ends in `/`.
    pub fn path(&self, segments: &[&str], collection: bool) -> String {
        let mut p = self.root.clone();
        for s in segments {
            p.push('/');
            p.push_str(&encode_segment(s));
        }
        if collection || p.is_empty() {
            p.push('/');
        }
        p
    }

    /// The full URL of an encoded path, for messages and `Destination`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The decoded path of an `href`, which may be a path or a full URL.
    pub fn href_path(href: &str) -> String {
        let path = match href.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => href,
        };
        percent_decode(path)
    }

    pub fn error(&self, call: &Call, status: Option<StatusCode>, message: String) -> DavError {
        DavError {
            op: call.op,
            url: self.url(&call.path),
            status: status.map(|s| s.as_u16()),
            retryable: status.is_none_or(|s| retryable_status(s.as_u16(), "")),
            message,
        }
    }

    /// One attempt: a connection (new or reused), the request, the response head.
    async fn send(&self, call: &Call) -> Result<(http::response::Parts, Incoming, Conn), DavError> {
        let local = |m: String| {
            let mut e = self.error(call, None, m);
            e.retryable = false;
            e
        };
        let body = call
            .payload
            .open()
            .await
            .map_err(|e| local(format!("cannot read the upload: {e}")))?;
        let mut b = http::Request::builder()
            .method(call.method.clone())
            .uri(call.path.as_str())
            .header("host", self.target.authority())
            .header("user-agent", USER_AGENT);
        if !matches!(call.payload, Payload::Empty) || call.method == Method::PUT {
            b = b.header("content-length", call.payload.len().to_string());
        }
        if let Some(a) = &self.auth {
            b = b.header("authorization", a.as_str());
        }
        for (k, v) in &call.headers {
            b = b.header(*k, v.as_str());
        }
        let req = b
            .body(body)
            .map_err(|e| local(format!("bad request: {e}")))?;
        let mut conn = self.pool.checkout(&self.target).await.map_err(|e| {
            let mut err = self.error(call, None, format!("connect {}: {e}", self.origin));
            // A certificate the server keeps presenting is not cured by asking again.
            err.retryable = e.kind() != std::io::ErrorKind::InvalidData;
            err
        })?;
        let limit = RESPONSE_TIMEOUT + Duration::from_secs(call.payload.len() / MIN_UPLOAD_RATE);
        let resp = match tokio::time::timeout(limit, conn.sender.send_request(req)).await {
            Err(_) => return Err(self.error(call, None, format!("no response within {limit:?}"))),
            Ok(Err(e)) => return Err(self.error(call, None, error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let (parts, body) = resp.into_parts();
        Ok((parts, body, conn))
    }

    /// Sends `call` until it gets an answer that is not worth retrying (any status: callers
    /// decide what a 404 or 409 means), or the retries run out.
    pub async fn call(&self, call: &Call) -> Result<Answer, DavError> {
        let mut attempt = 0;
        loop {
            let err = match self.send(call).await {
                Err(e) => e,
                Ok((parts, mut body, conn)) => {
                    let mut buf = BytesMut::new();
                    let read = loop {
                        match body_piece(&mut body).await {
                            Ok(Some(d)) => buf.extend_from_slice(&d),
                            Ok(None) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    };
                    match read {
                        Err(e) => self.error(call, None, format!("reading the answer: {e}")),
                        Ok(()) => {
                            self.pool.checkin(conn);
                            let answer = Answer {
                                status: parts.status,
                                body: buf.freeze(),
                            };
                            if !retryable_status(answer.status.as_u16(), "") {
                                return Ok(answer);
                            }
                            self.status_error(call, &answer)
                        }
                    }
                }
            };
            attempt += 1;
            if !err.retryable || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt - 1);
            tracing::warn!(error = %err, attempt, ?delay, "webdav request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// The error for an answer the caller did not expect.
    pub fn status_error(&self, call: &Call, a: &Answer) -> DavError {
        let text = String::from_utf8_lossy(&a.body);
        let text = text.trim();
        let reason = a.status.canonical_reason().unwrap_or("");
        let message = if text.is_empty() || text.len() > 200 || text.starts_with('<') {
            reason.to_owned()
        } else {
            format!("{reason}: {text}")
        };
        self.error(call, Some(a.status), message)
    }

    /// The members of a collection, `None` when it does not exist.
    pub async fn list(&self, path: String) -> Result<Option<Vec<Entry>>, DavError> {
        let mut call = Call::new(
            "list",
            Method::from_bytes(b"PROPFIND").expect("method"),
            path,
        )
        .header("depth", "1")
        .header("content-type", "application/xml; charset=utf-8");
        call.payload = Payload::Bytes(Bytes::from_static(PROPFIND_BODY.as_bytes()));
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            207 => multistatus::parse(&String::from_utf8_lossy(&a.body))
                .map(Some)
                .map_err(|m| {
                    let mut e = self.error(&call, Some(a.status), m);
                    e.retryable = false;
                    e
                }),
            404 => Ok(None),
            _ => Err(self.status_error(&call, &a)),
        }
    }

    /// PUT; `Ok(false)` when the parent collection is missing (404 or 409).
    pub async fn put(&self, path: String, payload: Payload) -> Result<bool, DavError> {
        let mut call = Call::new("put", Method::PUT, path);
        call.payload = payload;
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            200 | 201 | 204 => Ok(true),
            404 | 409 => Ok(false),
            _ => Err(self.status_error(&call, &a)),
        }
    }

    /// Creates the collections of `segments` (below the replica directory), parents first
    /// when the server says one is missing. Existing collections are fine.
    pub async fn make_collections(&self, segments: &[&str]) -> Result<(), DavError> {
        let mkcol = Method::from_bytes(b"MKCOL").expect("method");
        let call = Call::new("create directory", mkcol.clone(), self.path(segments, true));
        let a = self.call(&call).await?;
        // 405: it exists (RFC 4918 §9.3.1); 409: a parent is missing.
        match a.status.as_u16() {
            200 | 201 | 204 | 405 => return Ok(()),
            409 => {}
            _ => return Err(self.status_error(&call, &a)),
        }
        // From the server URL's base down: the replica directory, then the segments.
        let mut path = self.base.clone();
        for s in self
            .dir
            .iter()
            .map(String::as_str)
            .chain(segments.iter().copied())
        {
            path.push('/');
            path.push_str(&encode_segment(s));
            let call = Call::new("create directory", mkcol.clone(), format!("{path}/"));
            let a = self.call(&call).await?;
            if !matches!(a.status.as_u16(), 200 | 201 | 204 | 405) {
                return Err(self.status_error(&call, &a));
            }
        }
        Ok(())
    }

    /// MOVE with `Overwrite: T`; `Ok(false)` when the server does not support it.
    pub async fn rename(&self, from: String, to: &str) -> Result<bool, DavError> {
        let call = Call::new("move", Method::from_bytes(b"MOVE").expect("method"), from)
            .header("destination", self.url(to))
            .header("overwrite", "T");
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            200 | 201 | 204 => Ok(true),
            405 | 501 => Ok(false),
            _ => {
                let mut e = self.status_error(&call, &a);
                e.url = format!("{} -> {}", e.url, self.url(to));
                Err(e)
            }
        }
    }

    /// DELETE; a missing resource is already deleted.
    pub async fn delete(&self, path: String) -> Result<(), DavError> {
        let call = Call::new("delete", Method::DELETE, path);
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            200 | 202 | 204 | 404 => Ok(()),
            _ => Err(self.status_error(&call, &a)),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn open(
        &self,
        call: &Call,
    ) -> Result<(http::response::Parts, Incoming, Conn), DavError> {
        self.send(call).await
    }
}

/// A ranged GET in progress: `len` bytes at `offset` (to the end with `None`), resumed from
/// the last byte received when the connection drops, pinned to the first answer's ETag so a
/// replaced file is never stitched together from two versions.
pub(crate) struct RangeRead {
    client: Arc<DavClient>,
    path: String,
    offset: u64,
    len: Option<u64>,
    got: u64,
    etag: Option<String>,
    failures: u32,
    /// The body being read, its connection, and how many leading bytes to drop (a server
    /// that ignores Range answers 200 with the whole file).
    open: Option<(Incoming, Conn, u64)>,
    done: bool,
}

impl RangeRead {
    pub async fn start(
        client: Arc<DavClient>,
        path: String,
        offset: u64,
        len: Option<u64>,
    ) -> Result<RangeRead, DavError> {
        let mut r = RangeRead {
            client,
            path,
            offset,
            len,
            got: 0,
            etag: None,
            failures: 0,
            open: None,
            done: len == Some(0),
        };
        if !r.done {
            r.connect().await?;
        }
        Ok(r)
    }

    fn call(&self) -> Call {
        let start = self.offset + self.got;
        let mut c = Call::new("read", Method::GET, self.path.clone());
        match self.len {
            Some(l) => c = c.header("range", format!("bytes={start}-{}", self.offset + l - 1)),
            None if start > 0 => c = c.header("range", format!("bytes={start}-")),
            None => {}
        }
        if let Some(e) = &self.etag {
            c = c.header("if-match", e.clone());
        }
        c
    }

    fn past_end(&self, size: Option<u64>) -> DavError {
        let mut e = self.client.error(
            &self.call(),
            None,
            format!(
                "range {}+{} is past the end{}",
                self.offset,
                self.len.map_or("end".to_owned(), |l| l.to_string()),
                size.map_or(String::new(), |s| format!(" ({s} bytes)"))
            ),
        );
        e.retryable = false;
        e
    }

    async fn failed(&mut self, err: DavError) -> Result<(), DavError> {
        self.open = None;
        self.failures += 1;
        if !err.retryable || self.failures >= self.client.retry.max_attempts {
            self.done = true;
            return Err(err);
        }
        let delay = self.client.retry.delay(self.failures - 1);
        tracing::warn!(error = %err, received = self.got, ?delay, "webdav read failed; resuming");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Asks for the bytes not yet received until an answer with a body starts.
    async fn connect(&mut self) -> Result<(), DavError> {
        loop {
            let call = self.call();
            let start = self.offset + self.got;
            let err = match self.client.open(&call).await {
                Err(e) => e,
                Ok((parts, mut body, conn)) => {
                    let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
                    // `bytes a-b/total` of a 206, `bytes */total` of a 416.
                    let range = h("content-range").and_then(|v| {
                        let (span, total) = v.strip_prefix("bytes ")?.split_once('/')?;
                        let first = span
                            .split_once('-')
                            .and_then(|(a, _)| a.parse::<u64>().ok());
                        Some((first, total.parse::<u64>().ok()))
                    });
                    let size = match parts.status.as_u16() {
                        200 => h("content-length").and_then(|v| v.parse::<u64>().ok()),
                        _ => range.and_then(|r| r.1),
                    };
                    match parts.status.as_u16() {
                        200 | 206 => {
                            if parts.status == StatusCode::PARTIAL_CONTENT
                                && range.and_then(|r| r.0) != Some(start)
                            {
                                let mut e = self.client.error(
                                    &call,
                                    Some(parts.status),
                                    format!("the server sent another range than bytes={start}-"),
                                );
                                e.retryable = false;
                                self.done = true;
                                return Err(e);
                            }
                            if self.etag.is_none() {
                                self.etag = h("etag").map(str::to_owned);
                            }
                            if let (Some(s), Some(l)) = (size, self.len) {
                                if s < self.offset + l {
                                    self.done = true;
                                    return Err(self.past_end(Some(s)));
                                }
                            }
                            let skip = if parts.status == StatusCode::OK {
                                start
                            } else {
                                0
                            };
                            self.open = Some((body, conn, skip));
                            return Ok(());
                        }
                        416 => {
                            let _ = body_piece(&mut body).await;
                            self.done = true;
                            if self.len.is_none() && size == Some(start) {
                                return Ok(());
                            }
                            return Err(self.past_end(size));
                        }
                        _ => {
                            let mut buf = BytesMut::new();
                            while let Ok(Some(d)) = body_piece(&mut body).await {
                                buf.extend_from_slice(&d);
                            }
                            let a = Answer {
                                status: parts.status,
                                body: buf.freeze(),
                            };
                            let mut e = self.client.status_error(&call, &a);
                            if a.status == StatusCode::PRECONDITION_FAILED {
                                e.message = "the file changed while being read".to_owned();
                            }
                            e
                        }
                    }
                }
            };
            self.failed(err).await?;
        }
    }

    /// The next bytes of the range, `None` once all of it has been handed out.
    pub async fn next(&mut self) -> Result<Option<Bytes>, DavError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let want = self.len.map(|l| l - self.got);
            if want == Some(0) {
                self.done = true;
                if let Some((mut body, conn, _)) = self.open.take() {
                    // Reusable only if nothing of the body is left.
                    if matches!(body_piece(&mut body).await, Ok(None)) {
                        self.client.pool().checkin(conn);
                    }
                }
                return Ok(None);
            }
            let Some((body, _, skip)) = self.open.as_mut() else {
                self.connect().await?;
                continue;
            };
            match body_piece(body).await {
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
                    self.failures = 0;
                    return Ok(Some(data));
                }
                Ok(None) => {
                    if let Some((_, conn, _)) = self.open.take() {
                        self.client.pool().checkin(conn);
                    }
                    self.done = true;
                    if self.len.is_some() {
                        let end = self.offset + self.got;
                        return Err(self.past_end(Some(end)));
                    }
                    return Ok(None);
                }
                Err(e) => {
                    let call = self.call();
                    let err =
                        self.client
                            .error(&call, None, format!("connection lost mid-body: {e}"));
                    self.failed(err).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str, dir: &[&str]) -> DavClient {
        let s = super::super::WebDavSettings::from_config(None, [("webdav-url", base)])
            .expect("settings");
        let dir: Vec<String> = dir.iter().map(|s| s.to_string()).collect();
        DavClient::new(s.server().expect("server"), &dir, RetryPolicy::default()).expect("client")
    }

    #[test]
    fn paths() {
        let c = client("http://h:8/dav/", &["my db", "x"]);
        assert_eq!(c.path(&["ltx", "0"], true), "/dav/my%20db/x/ltx/0/");
        assert_eq!(
            c.url(&c.path(&["ltx"], false)),
            "http://h:8/dav/my%20db/x/ltx"
        );
        let c = client("https://h", &[]);
        assert_eq!(c.path(&[], true), "/");
        assert_eq!(c.path(&["ltx", "1", "a-b.ltx"], false), "/ltx/1/a-b.ltx");
        assert_eq!(encode_segment("a/b?#%é"), "a%2Fb%3F%23%25%C3%A9");
        assert_eq!(DavClient::href_path("http://h:8/a%20b/"), "/a b/");
        assert_eq!(DavClient::href_path("/x/y"), "/x/y");
    }

    #[test]
    fn errors_name_the_url_and_hint() {
        let c = client("http://h:8/", &["db"]);
        let call = Call::new("list", Method::GET, c.path(&["ltx", "0"], true));
        let e = c.status_error(
            &call,
            &Answer {
                status: StatusCode::UNAUTHORIZED,
                body: Bytes::from_static(b"Unauthorized"),
            },
        );
        assert!(!e.retryable);
        let s = e.to_string();
        assert!(
            s.contains("http://h:8/db/ltx/0/") && s.contains("401"),
            "{s}"
        );
        assert!(s.contains("webdav-password"), "{s}");
        let e = c.error(&call, Some(StatusCode::SERVICE_UNAVAILABLE), String::new());
        assert!(e.retryable);
        assert!(c.error(&call, None, String::new()).retryable);
    }
}
