//! The GCS JSON API over the shared HTTP/1.1 pool: one request with retries, and the few
//! operations a replica needs (list a prefix page by page, ranged media download, multipart and
//! resumable uploads, delete, object metadata).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;

use super::auth::{AuthError, TokenSource};
use crate::s3::body::{Payload, ReqBody};
use crate::s3::pool::{parse_http_url, Conn, Pool, Target};
use crate::s3::retry::{retryable_status, RetryPolicy};

const USER_AGENT: &str = concat!("litestream-rs/", env!("CARGO_PKG_VERSION"));
/// A response must start within this long (plus time for an upload at a slow-but-alive rate).
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_UPLOAD_RATE: u64 = 256 * 1024;
/// Gap allowed between two chunks of a response body.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The real service, when `STORAGE_EMULATOR_HOST` is not set.
pub(crate) const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";
/// Resumable upload chunks must be multiples of this.
pub(crate) const CHUNK_GRANULE: u64 = 256 * 1024;

/// A failed GCS operation, with what it was about.
#[derive(Debug, Clone)]
pub(crate) struct GcsError {
    pub op: &'static str,
    /// `gs://bucket/name` (or the bucket alone).
    pub target: String,
    pub status: Option<u16>,
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for GcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gs: {} {}: ", self.op, self.target)?;
        if let Some(s) = self.status {
            write!(f, "HTTP {s} ")?;
        }
        f.write_str(&self.message)?;
        f.write_str(match self.status {
            Some(401) => {
                " (the credentials were refused: check GOOGLE_APPLICATION_CREDENTIALS or the \
                 gcloud application default credentials)"
            }
            Some(403) => " (the credentials may not act on this bucket or object)",
            _ => "",
        })
    }
}

impl GcsError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Metrics label: the HTTP status, or what went wrong below HTTP.
    pub fn metric_code(&self) -> String {
        self.status
            .map_or_else(|| "transport".to_owned(), |s| s.to_string())
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (object names in paths and
/// query values).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request, described so that it can be sent again on retry.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub op: &'static str,
    pub method: Method,
    /// Object name the request is about, for messages (`None`: the bucket).
    pub object: Option<String>,
    /// Where it goes: host and path with query, already encoded.
    pub target: Target,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload,
    /// Statuses besides 2xx that the caller handles itself (308 of a resumable upload).
    pub accept: &'static [u16],
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why one attempt failed below the GCS level.
pub(crate) enum AttemptError {
    /// Connection refused, reset or timed out: worth another try.
    Transport(String),
    /// Our side cannot build or authorize the request in a way another try would fix.
    Local(String),
}

pub(crate) fn describe_hyper(e: &hyper::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The next data frame of a response body, or `None` at its end, with a limit on the gap
/// between frames.
pub(crate) async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, String> {
    loop {
        let frame = tokio::time::timeout(READ_IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| format!("no data for {READ_IDLE_TIMEOUT:?}"))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(describe_hyper(&e)),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads a whole response body.
pub(crate) async fn read_body(mut body: Incoming) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    while let Some(data) = next_data(&mut body).await? {
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// Sends one request on a pooled connection and returns when the response head arrives.
pub(crate) async fn send_head(
    pool: &Pool,
    target: &Target,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    payload: &Payload,
) -> Result<(http::response::Parts, Incoming, Conn), AttemptError> {
    let body = payload
        .open()
        .await
        .map_err(|e| AttemptError::Local(format!("cannot read upload body: {e}")))?;
    let mut b = http::Request::builder()
        .method(method.clone())
        .uri(if path.is_empty() { "/" } else { path })
        .header("host", target.authority())
        .header("user-agent", USER_AGENT);
    if method == Method::POST || method == Method::PUT {
        b = b.header("content-length", payload.len().to_string());
    }
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    let req: http::Request<ReqBody> = b
        .body(body)
        .map_err(|e| AttemptError::Local(format!("bad request: {e}")))?;
    let mut conn = pool.checkout(target).await.map_err(|e| {
        let msg = format!("connect {}: {e}", target.authority());
        // A certificate the server will keep presenting is not cured by asking again.
        if e.kind() == std::io::ErrorKind::InvalidData {
            AttemptError::Local(msg)
        } else {
            AttemptError::Transport(msg)
        }
    })?;
    let limit = HEAD_TIMEOUT + Duration::from_secs(payload.len() / MIN_UPLOAD_RATE);
    let resp = tokio::time::timeout(limit, conn.sender.send_request(req))
        .await
        .map_err(|_| AttemptError::Transport(format!("no response within {limit:?}")))?
        .map_err(|e| AttemptError::Transport(describe_hyper(&e)))?;
    let (parts, body) = resp.into_parts();
    Ok((parts, body, conn))
}

/// Sends one request and reads the whole response. The connection goes back to the pool only
/// when the response was read to its end.
pub(crate) async fn send_once(
    pool: &Pool,
    target: &Target,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    payload: &Payload,
) -> Result<Response, AttemptError> {
    let (parts, body, conn) = send_head(pool, target, method, path, headers, payload).await?;
    let body = read_body(body).await.map_err(AttemptError::Transport)?;
    pool.checkin(conn);
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// An object as the JSON API lists it (only the fields we ask for).
#[derive(Debug, Deserialize)]
pub(crate) struct ObjectResource {
    pub name: String,
    /// A decimal string in the JSON API.
    #[serde(default, deserialize_with = "de_u64")]
    pub size: u64,
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
    #[serde(default, rename = "timeCreated")]
    pub time_created: Option<String>,
}

fn de_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        U(u64),
    }
    match N::deserialize(d)? {
        N::U(n) => Ok(n),
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Deserialize)]
struct ListResponse {
    #[serde(default)]
    items: Vec<ObjectResource>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

/// One page of a listing.
pub(crate) struct Page {
    pub objects: Vec<ObjectResource>,
    pub next_token: Option<String>,
}

/// Fields a listing asks for, so the service does not send ACLs and links.
const LIST_FIELDS: &str = "items(name,size,metadata,timeCreated),nextPageToken";

pub(crate) struct GcsClient {
    pub bucket: String,
    base: Target,
    base_path: String,
    pool: Pool,
    auth: TokenSource,
    pub retry: RetryPolicy,
    /// Objects per listing page (the service's maximum and default is 1000).
    pub page_size: u32,
}

impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsClient")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.base.authority())
            .finish_non_exhaustive()
    }
}

impl GcsClient {
    /// `endpoint` is the API root (`https://storage.googleapis.com` or an emulator's URL).
    pub fn new(
        bucket: String,
        endpoint: &str,
        auth: TokenSource,
        pool: Pool,
    ) -> Result<GcsClient, String> {
        let (base, base_path) = parse_http_url(endpoint)
            .ok_or_else(|| format!("gs: invalid endpoint URL {endpoint:?}"))?;
        Ok(GcsClient {
            bucket,
            base,
            base_path: base_path.trim_end_matches('/').to_owned(),
            pool,
            auth,
            retry: RetryPolicy::default(),
            page_size: 1000,
        })
    }

    pub fn describe(&self, object: Option<&str>) -> String {
        match object {
            Some(o) => format!("gs://{}/{o}", self.bucket),
            None => format!("gs://{}", self.bucket),
        }
    }

    fn request(
        &self,
        op: &'static str,
        method: Method,
        object: Option<&str>,
        path: String,
    ) -> Request {
        Request {
            op,
            method,
            object: object.map(str::to_owned),
            target: self.base.clone(),
            path: format!("{}{path}", self.base_path),
            headers: Vec::new(),
            payload: Payload::Empty,
            accept: &[],
        }
    }

    fn object_path(&self, name: &str) -> String {
        format!("/storage/v1/b/{}/o/{}", encode(&self.bucket), encode(name))
    }

    fn error(&self, req: &Request, status: Option<u16>, message: String) -> GcsError {
        GcsError {
            op: req.op,
            target: self.describe(req.object.as_deref()),
            status,
            message,
            retryable: status.is_none_or(|s| retryable_status(s, "")),
        }
    }

    fn status_error(&self, req: &Request, status: StatusCode, body: &[u8]) -> GcsError {
        #[derive(Deserialize)]
        struct Doc {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            message: String,
        }
        let mut message = serde_json::from_slice::<Doc>(body)
            .map(|d| d.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned());
        if message.is_empty() {
            message = status.canonical_reason().unwrap_or_default().to_owned();
        }
        if status == StatusCode::NOT_FOUND && req.object.is_none() {
            message.push_str(" (the bucket does not exist)");
        }
        self.error(req, Some(status.as_u16()), message)
    }

    /// An error below HTTP: transport failures may heal, local ones will not.
    fn attempt_error(&self, req: &Request, e: AttemptError) -> GcsError {
        match e {
            AttemptError::Transport(e) => self.error(req, None, e),
            AttemptError::Local(e) => {
                let mut err = self.error(req, None, e);
                err.retryable = false;
                err
            }
        }
    }

    /// Sends a request with retries and reads the whole response. Statuses other than 2xx
    /// and `req.accept` are errors.
    pub async fn execute(&self, req: &Request) -> Result<Response, GcsError> {
        let mut attempt = 0;
        loop {
            let err = match self.attempt(req).await {
                Ok(resp) => {
                    if resp.status.is_success() || req.accept.contains(&resp.status.as_u16()) {
                        return Ok(resp);
                    }
                    self.status_error(req, resp.status, &resp.body)
                }
                Err(e) => self.attempt_error(req, e),
            };
            attempt += 1;
            if !err.retryable || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt - 1);
            tracing::warn!(error = %err, attempt, ?delay, "gs request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// The request's headers plus authorization.
    async fn authorized(&self, req: &Request) -> Result<Vec<(&'static str, String)>, AttemptError> {
        let mut headers = req.headers.clone();
        match self.auth.token(&self.pool).await {
            Ok(Some(t)) => headers.push(("authorization", format!("Bearer {t}"))),
            Ok(None) => {}
            Err(AuthError::Transient(e)) => return Err(AttemptError::Transport(e)),
            Err(AuthError::Fatal(e)) => return Err(AttemptError::Local(e)),
        }
        Ok(headers)
    }

    async fn attempt(&self, req: &Request) -> Result<Response, AttemptError> {
        let headers = self.authorized(req).await?;
        send_once(
            &self.pool,
            &req.target,
            req.method.clone(),
            &req.path,
            &headers,
            &req.payload,
        )
        .await
    }

    /// One page of the objects whose names start with `prefix`.
    pub async fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<Page, GcsError> {
        let mut path = format!(
            "/storage/v1/b/{}/o?prefix={}&maxResults={}&fields={}",
            encode(&self.bucket),
            encode(prefix),
            self.page_size,
            encode(LIST_FIELDS)
        );
        if let Some(t) = token {
            path.push_str(&format!("&pageToken={}", encode(t)));
        }
        let req = self.request("list objects", Method::GET, None, path);
        let resp = self.execute(&req).await?;
        let list: ListResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            let mut err = self.error(&req, None, format!("unreadable listing: {e}"));
            err.retryable = false;
            err
        })?;
        Ok(Page {
            objects: list.items,
            next_token: list.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// Starts a ranged download of `[from, to)`, pinned to `generation` when given, and
    /// returns once its head arrives: the status, the generation served, the body and its
    /// connection. Non-2xx answers are read whole and returned as errors.
    pub async fn open_range(
        &self,
        name: &str,
        from: u64,
        to: u64,
        generation: Option<&str>,
    ) -> Result<(StatusCode, Option<String>, Incoming, Conn), GcsError> {
        let mut path = format!("{}?alt=media", self.object_path(name));
        if let Some(g) = generation {
            path.push_str(&format!("&generation={}", encode(g)));
        }
        let mut req = self.request("get object", Method::GET, Some(name), path);
        req.headers
            .push(("range", format!("bytes={from}-{}", to.saturating_sub(1))));
        let headers = self
            .authorized(&req)
            .await
            .map_err(|e| self.attempt_error(&req, e))?;
        let sent = send_head(
            &self.pool,
            &req.target,
            Method::GET,
            &req.path,
            &headers,
            &Payload::Empty,
        )
        .await;
        let (parts, body, conn) = sent.map_err(|e| self.attempt_error(&req, e))?;
        if parts.status.is_success() {
            let generation = parts
                .headers
                .get("x-goog-generation")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Ok((parts.status, generation, body, conn));
        }
        let bytes = read_body(body).await.unwrap_or_default();
        self.pool.checkin(conn);
        let mut err = self.status_error(&req, parts.status, &bytes);
        if parts.status == StatusCode::RANGE_NOT_SATISFIABLE {
            err.message = format!("range {from}..{to} is past the end");
            err.retryable = false;
        }
        Err(err)
    }

    /// Gives a connection whose response was read to its end back to the pool.
    pub fn checkin(&self, conn: Conn) {
        self.pool.checkin(conn);
    }

    /// The object's size, or `None` when it does not exist.
    pub async fn object_size(&self, name: &str) -> Result<Option<u64>, GcsError> {
        let path = format!("{}?fields=name,size", self.object_path(name));
        let req = self.request("get object metadata", Method::GET, Some(name), path);
        match self.execute(&req).await {
            Ok(resp) => serde_json::from_slice::<ObjectResource>(&resp.body)
                .map(|o| Some(o.size))
                .map_err(|e| self.error(&req, None, format!("unreadable metadata: {e}"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `len` bytes at `offset` (to the end with `None`). A range past the end is an error.
    pub async fn get_range(
        &self,
        name: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes, GcsError> {
        let path = format!("{}?alt=media", self.object_path(name));
        let mut req = self.request("get object", Method::GET, Some(name), path);
        req.accept = &[416];
        if len == Some(0) {
            return self.empty_range(&req, name, offset).await;
        }
        match len {
            Some(l) => req
                .headers
                .push(("range", format!("bytes={offset}-{}", offset + l - 1))),
            None if offset > 0 => req.headers.push(("range", format!("bytes={offset}-"))),
            None => {}
        }
        let resp = self.execute(&req).await?;
        let past_end = |got: String| {
            let mut e = self.error(
                &req,
                Some(416),
                format!(
                    "range {offset}+{} is past the end{got}",
                    len.map_or("end".to_owned(), |l| l.to_string())
                ),
            );
            e.retryable = false;
            e
        };
        match resp.status {
            StatusCode::RANGE_NOT_SATISFIABLE => {
                if len.is_none() {
                    // Reading nothing at the very end is fine; past it is not.
                    return self.empty_range(&req, name, offset).await;
                }
                Err(past_end(String::new()))
            }
            StatusCode::OK if offset > 0 => {
                // A server that ignored the range sent the whole object.
                let body = resp.body;
                let start = (offset as usize).min(body.len());
                let end = match len {
                    Some(l) => start.saturating_add(l as usize),
                    None => body.len(),
                };
                if end > body.len() {
                    return Err(past_end(format!(" (object has {} bytes)", body.len())));
                }
                Ok(body.slice(start..end))
            }
            _ => match len {
                Some(l) if (resp.body.len() as u64) < l => Err(past_end(format!(
                    " (only {} bytes from there)",
                    resp.body.len()
                ))),
                Some(l) => Ok(resp.body.slice(..l as usize)),
                None => Ok(resp.body),
            },
        }
    }

    /// A read of nothing at `offset`: fine up to the end of the object, an error past it.
    async fn empty_range(&self, req: &Request, name: &str, offset: u64) -> Result<Bytes, GcsError> {
        match self.object_size(name).await? {
            Some(size) if offset <= size => Ok(Bytes::new()),
            Some(size) => {
                let mut e = self.error(
                    req,
                    Some(416),
                    format!("offset {offset} is past the end ({size} bytes)"),
                );
                e.retryable = false;
                Err(e)
            }
            None => Err(self.error(req, Some(404), "not found".to_owned())),
        }
    }

    fn upload_metadata(name: &str, created_at: SystemTime) -> String {
        serde_json::json!({
            "name": name,
            "contentType": "application/octet-stream",
            "metadata": {
                super::METADATA_TIMESTAMP: crate::timefmt::format_rfc3339_nano(created_at),
            },
        })
        .to_string()
    }

    /// A single multipart/related upload of a body held in memory.
    pub async fn upload_multipart(
        &self,
        name: &str,
        data: &Bytes,
        created_at: SystemTime,
    ) -> Result<(), GcsError> {
        let boundary = format!("litestream-{:016x}", fastrand::u64(..));
        let meta = Self::upload_metadata(name, created_at);
        let mut body = BytesMut::with_capacity(data.len() + meta.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n\
                 --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let path = format!(
            "/upload/storage/v1/b/{}/o?uploadType=multipart&name={}",
            encode(&self.bucket),
            encode(name)
        );
        let mut req = self.request("upload object", Method::POST, Some(name), path);
        req.headers.push((
            "content-type",
            format!("multipart/related; boundary={boundary}"),
        ));
        req.payload = Payload::Bytes(body.freeze());
        self.execute(&req).await.map(|_| ())
    }

    /// A resumable upload: a session, then chunks of `chunk` bytes (a multiple of 256 KiB)
    /// each read from `source` when sent. After a failed chunk the session is asked how much
    /// it holds and the upload goes on from there.
    pub async fn upload_resumable(
        &self,
        name: &str,
        source: &ChunkSource,
        size: u64,
        chunk: u64,
        created_at: SystemTime,
    ) -> Result<(), GcsError> {
        let path = format!(
            "/upload/storage/v1/b/{}/o?uploadType=resumable&name={}",
            encode(&self.bucket),
            encode(name)
        );
        let mut req = self.request("start resumable upload", Method::POST, Some(name), path);
        req.headers
            .push(("content-type", "application/json; charset=UTF-8".to_owned()));
        req.headers.push((
            "x-upload-content-type",
            "application/octet-stream".to_owned(),
        ));
        req.headers
            .push(("x-upload-content-length", size.to_string()));
        req.payload = Payload::Bytes(Bytes::from(Self::upload_metadata(name, created_at)));
        let resp = self.execute(&req).await?;
        let location = resp
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.error(&req, None, "no session URI in the answer".to_owned()))?;
        let (target, session_path) = parse_http_url(location)
            .ok_or_else(|| self.error(&req, None, format!("unusable session URI {location:?}")))?;
        let chunk = (chunk / CHUNK_GRANULE).max(1) * CHUNK_GRANULE;
        let mut sent = 0u64;
        let mut failures = 0u32;
        loop {
            let len = chunk.min(size - sent);
            let last = sent + len == size;
            let mut req = Request {
                op: "upload object chunk",
                method: Method::PUT,
                object: Some(name.to_owned()),
                target: target.clone(),
                path: session_path.clone(),
                headers: Vec::new(),
                payload: source.region(sent, len),
                accept: &[308],
            };
            let range = if len == 0 {
                format!("bytes */{size}")
            } else if last {
                format!("bytes {sent}-{}/{size}", sent + len - 1)
            } else {
                format!("bytes {sent}-{}/*", sent + len - 1)
            };
            req.headers.push(("content-range", range));
            let outcome = match self.attempt(&req).await {
                Ok(resp) if resp.status.is_success() => return Ok(()),
                Ok(resp) if resp.status.as_u16() == 308 && persisted(&resp.headers) > sent => {
                    sent = persisted(&resp.headers);
                    failures = 0;
                    continue;
                }
                Ok(resp) if resp.status.as_u16() == 308 => {
                    // The session took nothing of the chunk: count it as a failed try.
                    let mut e = self.error(&req, Some(308), "the chunk was not stored".into());
                    e.retryable = true;
                    e
                }
                Ok(resp) => self.status_error(&req, resp.status, &resp.body),
                Err(e) => self.attempt_error(&req, e),
            };
            failures += 1;
            if !outcome.retryable || failures >= self.retry.max_attempts {
                return Err(outcome);
            }
            let delay = self.retry.delay(failures - 1);
            tracing::warn!(error = %outcome, ?delay, "gs upload chunk failed; resuming");
            tokio::time::sleep(delay).await;
            // Ask the session what it holds before sending more.
            sent = self
                .session_status(&target, &session_path, name, size)
                .await?;
            if sent >= size {
                return Ok(());
            }
        }
    }

    /// How many bytes a resumable session holds (`size` when it is complete).
    async fn session_status(
        &self,
        target: &Target,
        path: &str,
        name: &str,
        size: u64,
    ) -> Result<u64, GcsError> {
        let req = Request {
            op: "query upload status",
            method: Method::PUT,
            object: Some(name.to_owned()),
            target: target.clone(),
            path: path.to_owned(),
            headers: vec![("content-range", format!("bytes */{size}"))],
            payload: Payload::Empty,
            accept: &[308],
        };
        let resp = self.execute(&req).await?;
        if resp.status.is_success() {
            return Ok(size);
        }
        Ok(persisted(&resp.headers))
    }

    /// Deletes one object; `Ok(false)` when it was already gone.
    pub async fn delete(&self, name: &str) -> Result<bool, GcsError> {
        let req = self.request(
            "delete object",
            Method::DELETE,
            Some(name),
            self.object_path(name),
        );
        match self.execute(&req).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The first byte a resumable session does not hold yet, from its `Range: bytes=0-N` header.
fn persisted(headers: &HeaderMap) -> u64 {
    headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.rsplit('-').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map_or(0, |n| n + 1)
}

/// Where upload chunks are read from.
#[derive(Clone, Debug)]
pub(crate) enum ChunkSource {
    Bytes(Bytes),
    File(Arc<std::path::PathBuf>),
}

impl ChunkSource {
    fn region(&self, offset: u64, len: u64) -> Payload {
        match self {
            ChunkSource::Bytes(b) => {
                Payload::Bytes(b.slice(offset as usize..(offset + len) as usize))
            }
            ChunkSource::File(p) => Payload::File {
                path: p.as_ref().clone(),
                offset,
                len,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_ranges() {
        assert_eq!(encode("db/ltx/0/a b.ltx"), "db%2Fltx%2F0%2Fa%20b.ltx");
        let mut h = HeaderMap::new();
        assert_eq!(persisted(&h), 0);
        h.insert("range", "bytes=0-262143".parse().expect("header"));
        assert_eq!(persisted(&h), 262_144);
    }

    #[test]
    fn listing_json() {
        let body = br#"{"kind":"storage#objects","items":[{"name":"p/ltx/0/a","size":"11",
            "metadata":{"litestream-timestamp":"2026-01-02T03:04:05.5Z"},
            "timeCreated":"2026-11-26T12:59:43.263706Z"},{"name":"b","size":2}],
            "nextPageToken":"tok"}"#;
        let l: ListResponse = serde_json::from_slice(body).expect("json");
        assert_eq!(l.items.len(), 2);
        assert_eq!(l.items[0].size, 11);
        assert_eq!(l.items[1].size, 2);
        assert_eq!(l.next_page_token.as_deref(), Some("tok"));
        let empty: ListResponse = serde_json::from_slice(b"{}").expect("json");
        assert!(empty.items.is_empty() && empty.next_page_token.is_none());
    }
}
