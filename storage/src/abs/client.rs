//! The Azure Blob Storage REST API, as much as a replica needs: Put Blob, Put Block and Put
//! Block List, ranged Get Blob, Get Blob Properties, List Blobs (with metadata, by marker),
//! Delete Blob, and Create Container for tests. Requests are signed with Shared Key
//! (HMAC-SHA256 over the canonicalized headers and resource) or carry a SAS token, and are
//! retried with backoff when the failure heals by itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::Sha256;

use super::settings::{AbsSettings, ENV_ACCOUNT_KEY, ENV_SAS_TOKEN};
use crate::s3::body::{Payload, ReqBody};
use crate::s3::pool::{parse_http_url, tls_config, Conn, Pool, Target};
use crate::s3::retry::{retryable_status, RetryPolicy};
use crate::s3::xml;

/// The REST API version we speak (Azurite runs with `--skipApiVersionCheck` in the tests).
pub(crate) const API_VERSION: &str = "2021-12-02";
/// Litestream's metadata key for the LTX header timestamp (no hyphens: C# identifier rules).
pub(crate) const META_TIMESTAMP: &str = "litestreamtimestamp";
const USER_AGENT: &str = concat!("litestream-rs/", env!("CARGO_PKG_VERSION"));
/// The response head must arrive within this long, plus time to send the body at a slow but
/// alive rate.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_UPLOAD_RATE: u64 = 256 * 1024;
/// Gap allowed between two chunks of a response body.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed operation, with what it was about.
#[derive(Debug, Clone)]
pub(crate) struct AbsError {
    pub op: &'static str,
    /// `abs://container/blob` (or the container alone).
    pub target: String,
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for AbsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "abs: {} {}: ", self.op, self.target)?;
        if let Some(s) = self.status {
            write!(f, "HTTP {s} ")?;
        }
        if !self.code.is_empty() {
            write!(f, "{}", self.code)?;
            if !self.message.is_empty() {
                write!(f, ": ")?;
            }
        }
        write!(f, "{}", self.message)?;
        let hint = match self.code.as_str() {
            "AuthenticationFailed" | "InvalidAuthenticationInfo" => {
                " (check account-name and account-key, or sas-token)"
            }
            "ContainerNotFound" => " (the container (bucket) does not exist)",
            // Azurite answers a bad signature with this one.
            "AuthorizationFailure" => {
                " (check account-name and account-key, or sas-token, and that they may act on \
                 this container)"
            }
            "AuthorizationPermissionMismatch" | "AuthorizationResourceTypeMismatch" => {
                " (the credentials may not act on this container or blob)"
            }
            "AccountIsDisabled" | "InvalidResourceName" => " (check account-name and bucket)",
            _ => "",
        };
        f.write_str(hint)
    }
}

impl AbsError {
    pub fn is_blob_not_found(&self) -> bool {
        self.code == "BlobNotFound" || (self.status == Some(404) && self.code.is_empty())
    }

    /// Metrics label: the error code, or what went wrong below HTTP.
    pub fn metric_code(&self) -> String {
        if !self.code.is_empty() {
            self.code.clone()
        } else if let Some(s) = self.status {
            s.to_string()
        } else {
            "transport".to_owned()
        }
    }
}

/// How requests prove who they are, in Litestream's order: SAS token, then Shared Key.
#[derive(Clone)]
enum Auth {
    Sas(String),
    SharedKey {
        account: String,
        key: Vec<u8>,
    },
    /// Why no request can be made (reported by every operation, as Litestream's `Init` is).
    Missing(String),
}

/// One request, described so that it can be sent again on retry.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub op: &'static str,
    pub method: Method,
    /// Blob name, or `None` for a container-level request.
    pub blob: Option<String>,
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload,
}

impl Request {
    pub fn new(op: &'static str, method: Method, blob: Option<&str>) -> Request {
        Request {
            op,
            method,
            blob: blob.map(str::to_owned),
            query: Vec::new(),
            headers: Vec::new(),
            payload: Payload::Empty,
        }
    }

    fn query(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.query.push((k, v.into()));
        self
    }

    pub(crate) fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Response {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why one attempt failed below the HTTP status level.
pub(crate) enum AttemptError {
    /// Connection refused, reset or timed out: worth another try.
    Transport(String),
    /// Our side cannot build the request: not worth retrying.
    Local(String),
}

/// One blob of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedBlob {
    pub name: String,
    pub size: u64,
    /// The `litestreamtimestamp` metadata, else the blob's creation time.
    pub created_at: Option<SystemTime>,
}

/// RFC 3986 unreserved characters stay; everything else is %XX.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT` (the `x-ms-date` form), from the RFC 3339 text of `t`.
pub(crate) fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let iso = crate::timefmt::format_rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
    // 2006-01-02T15:04:05Z
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1);
    format!(
        "{}, {} {} {} {} GMT",
        WEEKDAYS[((secs / 86_400) % 7) as usize],
        iso.get(8..10).unwrap_or("01"),
        MONTHS[(month - 1) % 12],
        iso.get(0..4).unwrap_or("1970"),
        iso.get(11..19).unwrap_or("00:00:00"),
    )
}

/// Parses the `Sun, 06 Nov 1994 08:49:37 GMT` form (listing's `Creation-Time`).
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_whitespace().skip(1);
    let (day, mon, year, time) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let month = MONTHS.iter().position(|m| *m == mon)? + 1;
    let day: u32 = day.parse().ok()?;
    crate::timefmt::parse_rfc3339(&format!("{year}-{month:02}-{day:02}T{time}Z"))
}

fn describe_hyper(e: &hyper::Error) -> String {
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

pub(crate) async fn read_body(mut body: Incoming) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    while let Some(data) = next_data(&mut body).await? {
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// The next data frame of a response body (trailers skipped), or `None` at its end.
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

pub(crate) struct AbsClient {
    pub container: String,
    target: Target,
    /// Encoded path before the container ("" or "/devstoreaccount1"), no trailing slash.
    base: String,
    auth: Auth,
    pub(crate) pool: Pool,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for AbsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsClient")
            .field("container", &self.container)
            .field("endpoint", &self.target.authority())
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AbsClient {
    /// No network I/O: the credentials come from the settings or Litestream's environment
    /// variables, and connections are made on the first request.
    pub fn new(s: &AbsSettings) -> crate::Result<AbsClient> {
        let endpoint = s.endpoint_url()?;
        let (target, base) =
            parse_http_url(&endpoint).ok_or_else(|| crate::StorageError::InvalidUrl {
                url: endpoint.clone(),
                reason: "abs: endpoint is not an http:// or https:// URL".into(),
            })?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let sas = s.sas_token.clone().or_else(|| env(ENV_SAS_TOKEN));
        let key = s.account_key.clone().or_else(|| env(ENV_ACCOUNT_KEY));
        let auth = match (sas, key, &s.account_name) {
            (Some(t), _, _) => Auth::Sas(t.trim().trim_start_matches('?').to_owned()),
            (None, Some(k), Some(account)) => {
                match base64::engine::general_purpose::STANDARD.decode(k.trim()) {
                    Ok(key) => Auth::SharedKey {
                        account: account.clone(),
                        key,
                    },
                    Err(e) => Auth::Missing(format!(
                        "abs: account-key of {account} is not valid base64: {e}"
                    )),
                }
            }
            (None, Some(_), None) => Auth::Missing(
                "abs: account-key needs account-name (or abs://ACCOUNT@container/path)".into(),
            ),
            (None, None, _) => Auth::Missing(format!(
                "abs: no credentials for container {:?}: set account-key (or \
                 {ENV_ACCOUNT_KEY}) with account-name, or sas-token (or {ENV_SAS_TOKEN}); \
                 Azure AD / managed identity is not supported by this build",
                s.container
            )),
        };
        let tls = if target.https {
            Some(std::sync::Arc::new(
                tls_config(false, None).map_err(crate::StorageError::Other)?,
            ))
        } else {
            None
        };
        Ok(AbsClient {
            container: s.container.clone(),
            base: base.trim_end_matches('/').to_owned(),
            target,
            auth,
            pool: Pool::new(tls),
            retry: RetryPolicy::default(),
        })
    }

    pub fn describe(&self, blob: Option<&str>) -> String {
        match blob {
            Some(b) => format!("abs://{}/{b}", self.container),
            None => format!("abs://{}", self.container),
        }
    }

    pub(crate) fn error(
        &self,
        req: &Request,
        status: Option<u16>,
        code: &str,
        msg: String,
    ) -> AbsError {
        AbsError {
            op: req.op,
            target: self.describe(req.blob.as_deref()),
            status,
            code: code.to_owned(),
            message: msg,
            retryable: status.is_none_or(|s| {
                retryable_status(s, code) || matches!(code, "ServerBusy" | "OperationTimedOut")
            }),
        }
    }

    pub(crate) fn status_error(
        &self,
        req: &Request,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> AbsError {
        let text = String::from_utf8_lossy(body);
        let doc = xml::parse_error(&text).unwrap_or_default();
        let code = if doc.code.is_empty() {
            headers
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        } else {
            doc.code
        };
        let message = if doc.message.is_empty() {
            status.canonical_reason().unwrap_or_default().to_owned()
        } else {
            // Azure appends RequestId and Time lines; the first line says what went wrong.
            doc.message.lines().next().unwrap_or_default().to_owned()
        };
        self.error(req, Some(status.as_u16()), &code, message)
    }

    /// The encoded request path (no query).
    fn path(&self, blob: Option<&str>) -> String {
        let mut p = format!("{}/{}", self.base, uri_encode(&self.container, false));
        if let Some(b) = blob {
            p.push('/');
            p.push_str(&uri_encode(b, true));
        }
        p
    }

    /// Shared Key signature of a request (Blob service, version 2015-02-21 and later).
    fn shared_key(
        account: &str,
        key: &[u8],
        req: &Request,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<String, String> {
        let len = req.payload.len();
        let std_header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let mut sts = format!("{}\n", req.method.as_str());
        sts.push_str(&format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            std_header("content-encoding"),
            std_header("content-language"),
            if len == 0 {
                String::new()
            } else {
                len.to_string()
            },
            std_header("content-md5"),
            std_header("content-type"),
            "",
            std_header("if-modified-since"),
            std_header("if-match"),
            std_header("if-none-match"),
            std_header("if-unmodified-since"),
            std_header("range"),
        ));
        let mut ms: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-ms-"))
            .map(|(k, v)| (k.as_str(), v.trim()))
            .collect();
        ms.sort();
        for (k, v) in ms {
            sts.push_str(&format!("{k}:{v}\n"));
        }
        sts.push_str(&format!("/{account}{path}"));
        let mut q: Vec<(String, &str)> = req
            .query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        q.sort();
        for (k, v) in q {
            sts.push_str(&format!("\n{k}:{v}"));
        }
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key).map_err(|e| format!("abs: account key: {e}"))?;
        mac.update(sts.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Ok(format!("SharedKey {account}:{sig}"))
    }

    fn build(&self, req: &Request, body: ReqBody) -> Result<http::Request<ReqBody>, String> {
        let path = self.path(req.blob.as_deref());
        let mut query: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
            .collect();
        if let Auth::Sas(t) = &self.auth {
            query.push(t.clone());
        }
        let path_and_query = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let mut headers: Vec<(String, String)> = vec![
            ("x-ms-date".into(), http_date(SystemTime::now())),
            ("x-ms-version".into(), API_VERSION.into()),
        ];
        headers.extend(
            req.headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone())),
        );
        let mut b = http::Request::builder()
            .method(req.method.clone())
            .uri(path_and_query.as_str())
            .header("host", self.target.authority())
            .header("user-agent", USER_AGENT);
        if req.method == Method::PUT || req.method == Method::POST {
            b = b.header("content-length", req.payload.len().to_string());
        }
        match &self.auth {
            Auth::Sas(_) => {}
            Auth::SharedKey { account, key } => {
                let auth = Self::shared_key(account, key, req, &path, &headers)?;
                b = b.header("authorization", auth);
            }
            Auth::Missing(why) => return Err(why.clone()),
        }
        for (k, v) in &headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(body).map_err(|e| format!("bad request: {e}"))
    }

    /// One attempt: connect (or reuse), send, wait for the response head.
    pub(crate) async fn attempt(
        &self,
        req: &Request,
    ) -> Result<(http::response::Parts, Incoming, Conn), AttemptError> {
        let body = req
            .payload
            .open()
            .await
            .map_err(|e| AttemptError::Local(format!("cannot read upload body: {e}")))?;
        let http_req = self.build(req, body).map_err(AttemptError::Local)?;
        let mut conn = self.pool.checkout(&self.target).await.map_err(|e| {
            let msg = format!("connect {}: {e}", self.target.authority());
            if e.kind() == std::io::ErrorKind::InvalidData {
                AttemptError::Local(msg)
            } else {
                AttemptError::Transport(msg)
            }
        })?;
        let limit = HEAD_TIMEOUT + Duration::from_secs(req.payload.len() / MIN_UPLOAD_RATE);
        let resp = tokio::time::timeout(limit, conn.sender.send_request(http_req))
            .await
            .map_err(|_| AttemptError::Transport(format!("no response within {limit:?}")))?
            .map_err(|e| AttemptError::Transport(describe_hyper(&e)))?;
        let (parts, body) = resp.into_parts();
        Ok((parts, body, conn))
    }

    /// Sends a request with retries and reads the whole response; `ok` says which statuses
    /// are answers (others are errors). The status is returned with the response.
    pub async fn execute_with(
        &self,
        req: &Request,
        ok: impl Fn(StatusCode) -> bool,
    ) -> Result<(StatusCode, Response), AbsError> {
        let mut attempt = 0;
        loop {
            let err = match self.attempt(req).await {
                Ok((parts, body, conn)) => match read_body(body).await {
                    Ok(bytes) => {
                        self.pool.checkin(conn);
                        if parts.status.is_success() || ok(parts.status) {
                            return Ok((
                                parts.status,
                                Response {
                                    headers: parts.headers,
                                    body: bytes,
                                },
                            ));
                        }
                        self.status_error(req, parts.status, &parts.headers, &bytes)
                    }
                    Err(e) => self.error(req, None, "", format!("connection lost mid-body: {e}")),
                },
                Err(AttemptError::Transport(e)) => self.error(req, None, "", e),
                Err(AttemptError::Local(e)) => {
                    let mut err = self.error(req, None, "", e);
                    err.retryable = false;
                    return Err(err);
                }
            };
            attempt += 1;
            if !err.retryable || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt - 1);
            tracing::warn!(error = %err, attempt, ?delay, "abs request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    pub async fn execute(&self, req: &Request) -> Result<Response, AbsError> {
        self.execute_with(req, |_| false).await.map(|(_, r)| r)
    }

    /// Headers of a committed blob: type, tier and the timestamp metadata, as Litestream's
    /// UploadStream sets them.
    fn blob_headers(req: Request, created_at: SystemTime) -> Request {
        req.header("x-ms-blob-content-type", "application/octet-stream")
            .header("x-ms-access-tier", "Hot")
            .header(
                "x-ms-meta-litestreamtimestamp",
                crate::timefmt::format_rfc3339_nano(created_at),
            )
    }

    /// Put Blob: the whole blob in one request.
    pub async fn put_blob(
        &self,
        blob: &str,
        payload: Payload,
        created_at: SystemTime,
    ) -> Result<(), AbsError> {
        let mut req =
            Request::new("put blob", Method::PUT, Some(blob)).header("x-ms-blob-type", "BlockBlob");
        req = Self::blob_headers(req, created_at);
        req.payload = payload;
        self.execute(&req).await.map(|_| ())
    }

    /// Put Block: one uncommitted block of a blob.
    pub async fn put_block(
        &self,
        blob: &str,
        block_id: &str,
        payload: Payload,
    ) -> Result<(), AbsError> {
        let mut req = Request::new("put block", Method::PUT, Some(blob))
            .query("comp", "block")
            .query("blockid", block_id);
        req.payload = payload;
        self.execute(&req).await.map(|_| ())
    }

    /// Put Block List: commits the blocks, in order, as the blob's content.
    pub async fn put_block_list(
        &self,
        blob: &str,
        block_ids: &[String],
        created_at: SystemTime,
    ) -> Result<(), AbsError> {
        let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in block_ids {
            body.push_str(&format!("<Latest>{}</Latest>", xml::escape(id)));
        }
        body.push_str("</BlockList>");
        let mut req =
            Request::new("put block list", Method::PUT, Some(blob)).query("comp", "blocklist");
        req = Self::blob_headers(req, created_at);
        req.payload = Payload::Bytes(Bytes::from(body));
        self.execute(&req).await.map(|_| ())
    }

    /// Get Blob Properties: size and timestamp metadata, or `None` if the blob is absent.
    pub async fn blob_properties(
        &self,
        blob: &str,
    ) -> Result<Option<(u64, Option<SystemTime>)>, AbsError> {
        let req = Request::new("get blob properties", Method::HEAD, Some(blob));
        match self.execute(&req).await {
            Ok(resp) => {
                let h = |n: &str| resp.headers.get(n).and_then(|v| v.to_str().ok());
                let size = h("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let ts = h("x-ms-meta-litestreamtimestamp").and_then(crate::timefmt::parse_rfc3339);
                Ok(Some((size, ts)))
            }
            Err(e) if e.is_blob_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `len` bytes at `offset` (or to the end). A range past the end is an error; reading
    /// nothing at the very end is not.
    pub async fn get_range(
        &self,
        blob: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes, AbsError> {
        let mut req = Request::new("get blob", Method::GET, Some(blob));
        if len == Some(0) {
            return match self.blob_properties(blob).await? {
                Some((size, _)) if offset <= size => Ok(Bytes::new()),
                Some((size, _)) => Err(self.past_end(&req, offset, len, size)),
                None => Err(self.error(&req, Some(404), "BlobNotFound", "not found".into())),
            };
        }
        match len {
            Some(l) => req = req.header("x-ms-range", format!("bytes={offset}-{}", offset + l - 1)),
            None if offset > 0 => req = req.header("x-ms-range", format!("bytes={offset}-")),
            None => {}
        }
        let (status, resp) = self
            .execute_with(&req, |s| s == StatusCode::RANGE_NOT_SATISFIABLE)
            .await?;
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            return match self.blob_properties(blob).await? {
                Some((size, _)) if offset == size && len.is_none() => Ok(Bytes::new()),
                Some((size, _)) => Err(self.past_end(&req, offset, len, size)),
                None => Err(self.error(&req, Some(404), "BlobNotFound", "not found".into())),
            };
        }
        if let Some(l) = len {
            // Azure answers a range that runs past the end with the bytes it has.
            if (resp.body.len() as u64) < l {
                let size = offset + resp.body.len() as u64;
                return Err(self.past_end(&req, offset, len, size));
            }
        }
        Ok(resp.body)
    }

    pub(crate) fn past_end(
        &self,
        req: &Request,
        offset: u64,
        len: Option<u64>,
        size: u64,
    ) -> AbsError {
        let mut e = self.error(
            req,
            Some(416),
            "InvalidRange",
            format!(
                "range {offset}+{} is past the end ({size} bytes)",
                len.map_or("end".to_owned(), |l| l.to_string())
            ),
        );
        e.retryable = false;
        e
    }

    /// One page of List Blobs under `prefix`, with metadata; returns the next marker.
    pub async fn list_page(
        &self,
        prefix: &str,
        marker: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<(Vec<ListedBlob>, Option<String>), AbsError> {
        let mut req = Request::new("list blobs", Method::GET, None)
            .query("restype", "container")
            .query("comp", "list")
            .query("prefix", prefix)
            .query("include", "metadata");
        if let Some(m) = marker {
            req = req.query("marker", m);
        }
        if let Some(n) = max_results {
            req = req.query("maxresults", n.to_string());
        }
        let resp = self.execute(&req).await.map_err(|mut e| {
            e.target = format!("{}/{prefix}", self.describe(None));
            e
        })?;
        let text = String::from_utf8_lossy(&resp.body);
        parse_list(&text).map_err(|m| {
            let mut e = self.error(&req, Some(200), "", m);
            e.target = format!("{}/{prefix}", self.describe(None));
            e.retryable = false;
            e
        })
    }

    /// Delete Blob; a blob (or container) already gone is not an error, as in Litestream.
    pub async fn delete_blob(&self, blob: &str) -> Result<(), AbsError> {
        let req = Request::new("delete blob", Method::DELETE, Some(blob));
        match self.execute(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_blob_not_found() || e.code == "ContainerNotFound" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Create Container (tests and tooling); one that exists already is fine.
    pub async fn create_container(&self) -> Result<(), AbsError> {
        let req = Request::new("create container", Method::PUT, None).query("restype", "container");
        match self.execute(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "ContainerAlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Parses an `EnumerationResults` document.
pub(crate) fn parse_list(text: &str) -> Result<(Vec<ListedBlob>, Option<String>), String> {
    let Some(doc) = xml::elements(text, "EnumerationResults").into_iter().next() else {
        return Err("response is not an EnumerationResults document".into());
    };
    let blobs_section = xml::elements(doc, "Blobs").into_iter().next().unwrap_or("");
    let mut out = Vec::new();
    for b in xml::elements(blobs_section, "Blob") {
        let name = xml::text(b, "Name").ok_or("listed blob without Name")?;
        let props = xml::elements(b, "Properties")
            .into_iter()
            .next()
            .unwrap_or("");
        let size = match xml::text(props, "Content-Length") {
            Some(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length for {name}"))?,
            None => 0,
        };
        let meta = xml::elements(b, "Metadata")
            .into_iter()
            .next()
            .unwrap_or("");
        let created_at = xml::text(meta, META_TIMESTAMP)
            .and_then(|t| crate::timefmt::parse_rfc3339(t.trim()))
            .or_else(|| xml::text(props, "Creation-Time").and_then(|t| parse_http_date(&t)));
        out.push(ListedBlob {
            name,
            size,
            created_at,
        });
    }
    let next = xml::text(doc, "NextMarker").filter(|m| !m.trim().is_empty());
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[(&str, &str)]) -> AbsSettings {
        let mut pairs = vec![
            ("account-name", "devstoreaccount1"),
            ("bucket", "cont"),
            ("endpoint", "http://127.0.0.1:10000/devstoreaccount1"),
        ];
        pairs.extend_from_slice(extra);
        AbsSettings::from_config(None, pairs).expect("settings")
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        let now = UNIX_EPOCH + Duration::from_secs(1_795_665_906);
        assert_eq!(parse_http_date(&http_date(now)), Some(now));
    }

    /// A signature checked against one computed independently (python's hmac) over the
    /// string to sign that the Shared Key documentation lays out.
    #[test]
    fn shared_key_string_to_sign() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
            .expect("key");
        let req = Request::new("list blobs", Method::GET, None)
            .query("restype", "container")
            .query("comp", "list")
            .query("prefix", "db/ltx/0/");
        let headers = vec![
            (
                "x-ms-date".to_owned(),
                "Sun, 06 Nov 1994 08:49:37 GMT".to_owned(),
            ),
            ("x-ms-version".to_owned(), API_VERSION.to_owned()),
        ];
        let auth = AbsClient::shared_key(
            "devstoreaccount1",
            &key,
            &req,
            "/devstoreaccount1/cont",
            &headers,
        )
        .expect("sign");
        // python3: base64(hmac_sha256(key, 'GET\n' + '\n' * 11 + 'x-ms-date:...\nx-ms-version:...\n/devstoreaccount1/devstoreaccount1/cont\ncomp:list\nprefix:db/ltx/0/\nrestype:container'))
        assert_eq!(
            auth,
            "SharedKey devstoreaccount1:40cvkUqqrb7pN04efmkf3vafgbmsGTrNIUi3TzKd/yE="
        );
    }

    #[test]
    fn credentials_and_errors() {
        // SAS wins over a key, with or without its leading '?'.
        let c = AbsClient::new(&settings(&[
            ("sas-token", "?sv=1&sig=x"),
            ("account-key", "a2V5"),
        ]))
        .expect("client");
        assert!(matches!(&c.auth, Auth::Sas(t) if t == "sv=1&sig=x"));
        let req = Request::new("get blob", Method::GET, Some("db/ltx/0/x.ltx"));
        let r = c.build(&req, ReqBody::Empty).expect("build");
        assert_eq!(
            r.uri().to_string(),
            "/devstoreaccount1/cont/db/ltx/0/x.ltx?sv=1&sig=x"
        );
        assert!(r.headers().get("authorization").is_none());

        let c = AbsClient::new(&settings(&[("account-key", "a2V5")])).expect("client");
        let r = c.build(&req, ReqBody::Empty).expect("build");
        let auth = r.headers().get("authorization").expect("auth");
        assert!(auth
            .to_str()
            .is_ok_and(|a| a.starts_with("SharedKey devstoreaccount1:")));

        if std::env::var_os(ENV_ACCOUNT_KEY).is_none() && std::env::var_os(ENV_SAS_TOKEN).is_none()
        {
            let c = AbsClient::new(&settings(&[])).expect("client");
            let e = c.build(&req, ReqBody::Empty).expect_err("no credentials");
            assert!(e.contains("account-key") && e.contains("sas-token"), "{e}");
        }

        let e = c.status_error(
            &req,
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            b"\xef\xbb\xbf<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1</Message></Error>",
        );
        assert!(!e.retryable);
        let s = e.to_string();
        assert!(
            s.contains("abs://cont/db/ltx/0/x.ltx") && s.contains("account-key"),
            "{s}"
        );
        let mut h = HeaderMap::new();
        h.insert("x-ms-error-code", "ServerBusy".parse().expect("hv"));
        assert!(
            c.status_error(&req, StatusCode::SERVICE_UNAVAILABLE, &h, b"")
                .retryable
        );
        let e = c.status_error(&req, StatusCode::NOT_FOUND, &HeaderMap::new(), b"");
        assert!(e.is_blob_not_found());
    }

    #[test]
    fn listing() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="cont"><Prefix>db/ltx/0/</Prefix><MaxResults>2</MaxResults><Blobs><Blob><Name>db/ltx/0/0000000000000001-0000000000000001.ltx</Name><Properties><Creation-Time>Sun, 06 Nov 1994 08:49:37 GMT</Creation-Time><Content-Length>575</Content-Length><BlobType>BlockBlob</BlobType></Properties><Metadata><litestreamtimestamp>2026-11-26T12:00:01.5Z</litestreamtimestamp></Metadata></Blob><Blob><Name>db/ltx/0/a&amp;b</Name><Properties><Creation-Time>Sun, 06 Nov 1994 08:49:37 GMT</Creation-Time><Content-Length>3</Content-Length></Properties><Metadata/></Blob></Blobs><NextMarker>2!84!abc</NextMarker></EnumerationResults>"#;
        let (blobs, next) = parse_list(xml).expect("parse");
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[0].size, 575);
        assert_eq!(
            blobs[0].created_at,
            crate::timefmt::parse_rfc3339("2026-11-26T12:00:01.5Z")
        );
        assert_eq!(blobs[1].name, "db/ltx/0/a&b");
        assert_eq!(
            blobs[1].created_at,
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(next.as_deref(), Some("2!84!abc"));
        let (blobs, next) =
            parse_list("<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>")
                .expect("empty");
        assert!(blobs.is_empty() && next.is_none());
        assert!(parse_list("<Error/>").is_err());
    }
}
