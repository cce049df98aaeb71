//! The S3 protocol: addressing, signed requests with retries, and the handful of operations a
//! replica needs (PutObject, multipart upload, ranged GetObject that resumes, HeadObject,
//! ListObjectsV2, DeleteObjects, GetBucketLocation).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{Digests, Payload};
use super::credentials::{CredentialChain, Credentials};
use super::pool::{parse_http_url, tls_config, Conn, Pool, Target};
use super::retry::{retryable_status, RetryPolicy};
use super::settings::{Flavor, Resolved, Sse, DEFAULT_REGION, OSS_DEFAULT_REGION};
use super::{sign, xml};

const USER_AGENT: &str = concat!("litestream-rs/", env!("CARGO_PKG_VERSION"));
/// A response must start within this long of the request being sent, plus time for the body
/// at a slow-but-alive rate; a stalled server is then treated as a dropped connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_UPLOAD_RATE: u64 = 256 * 1024;
/// Gap allowed between two chunks of a response body.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest ranged read whose buffer is allocated up front.
const MAX_PREALLOC: u64 = 64 << 20;

/// A failed S3 operation, with what it was about.
#[derive(Debug, Clone)]
pub(crate) struct S3Error {
    pub op: &'static str,
    /// `s3://bucket/key` (or the bucket alone).
    pub target: String,
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3: {} {}: ", self.op, self.target)?;
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
            "SignatureDoesNotMatch" => " (check the secret access key and the region)",
            "InvalidAccessKeyId" => " (check the access key id)",
            "NoSuchBucket" => " (the bucket does not exist)",
            "AccessDenied" => " (the credentials may not act on this bucket or key)",
            "AuthorizationHeaderMalformed" => " (check the region)",
            "RequestTimeTooSkewed" => " (the system clock is off)",
            _ => "",
        };
        f.write_str(hint)
    }
}

impl S3Error {
    /// A 404 about an object, not the bucket.
    pub fn is_no_such_key(&self) -> bool {
        self.code == "NoSuchKey" || (self.status == Some(404) && self.code.is_empty())
    }

    /// Metrics label: the S3 error code, or what went wrong below HTTP.
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

/// One request, described so that it can be sent again on retry.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub op: &'static str,
    pub method: Method,
    /// Object key, or `None` for a bucket-level request.
    pub key: Option<String>,
    /// Query parameters; a `None` value is a bare flag such as `?uploads`.
    pub query: Vec<(&'static str, Option<String>)>,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload,
    pub content_md5: bool,
}

impl Request {
    pub fn new(op: &'static str, method: Method, key: Option<String>) -> Request {
        Request {
            op,
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            payload: Payload::Empty,
            content_md5: false,
        }
    }

    pub fn query(mut self, k: &'static str, v: impl Into<Option<String>>) -> Self {
        self.query.push((k, v.into()));
        self
    }
}

/// Where one request goes and how it is signed.
struct Dest {
    target: Target,
    /// Encoded path, without query.
    path: String,
    region: String,
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why one attempt failed below the S3 level.
enum AttemptError {
    /// Connection refused, reset or timed out: worth another try.
    Transport(String),
    /// Our side cannot build the request (file gone, credentials missing): not worth retrying.
    Local(String),
}

/// RFC 3986 unreserved characters stay; everything else is %XX, as SigV4 requires.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
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

/// The parts of an access point ARN that make its host name.
fn access_point_host(arn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "s3" {
        return None;
    }
    let (partition, region, account) = (parts[1], parts[3], parts[4]);
    let name = parts[5].strip_prefix("accesspoint/")?;
    let suffix = match partition {
        "aws-cn" => "amazonaws.com.cn",
        _ => "amazonaws.com",
    };
    Some((
        format!("{name}-{account}.s3-accesspoint.{region}.{suffix}"),
        region.to_owned(),
    ))
}

pub(crate) struct S3Client {
    pub cfg: Resolved,
    pool: Pool,
    creds: CredentialChain,
    region: tokio::sync::OnceCell<String>,
    pub retry: RetryPolicy,
    endpoint: Option<(Target, String)>,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("bucket", &self.cfg.bucket)
            .field("path", &self.cfg.path)
            .field("endpoint", &self.cfg.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    pub fn new(cfg: Resolved) -> Result<S3Client, String> {
        let endpoint = match &cfg.endpoint {
            Some(e) => {
                let (t, base) =
                    parse_http_url(e).ok_or_else(|| format!("s3: invalid endpoint URL {e:?}"))?;
                Some((t, base.trim_end_matches('/').to_owned()))
            }
            None => None,
        };
        // TLS roots are only loaded when something will use them, so a broken CA bundle does
        // not stop a replica on a plain-HTTP endpoint.
        let needs_tls = endpoint.as_ref().is_none_or(|(t, _)| t.https);
        let tls = if needs_tls {
            Some(Arc::new(tls_config(
                cfg.skip_verify,
                cfg.ca_file.as_deref(),
            )?))
        } else {
            None
        };
        let configured = match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: None,
                expires: None,
            }),
            _ => None,
        };
        Ok(S3Client {
            pool: Pool::new(tls),
            creds: CredentialChain::new(configured, Arc::new(Pool::new(None))),
            region: tokio::sync::OnceCell::new(),
            retry: RetryPolicy::default(),
            endpoint,
            cfg,
        })
    }

    pub fn describe(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("s3://{}/{}", self.cfg.bucket, k),
            None => format!("s3://{}", self.cfg.bucket),
        }
    }

    fn error(&self, req: &Request, status: Option<u16>, code: &str, msg: String) -> S3Error {
        S3Error {
            op: req.op,
            target: self.describe(req.key.as_deref()),
            status,
            code: code.to_owned(),
            message: msg,
            retryable: status.is_none_or(|s| retryable_status(s, code)),
        }
    }

    /// The signing region: configured, or Litestream's defaults when an endpoint is set, or
    /// asked of S3 once (GetBucketLocation) for AWS itself.
    pub async fn region(&self) -> Result<String, S3Error> {
        self.region
            .get_or_try_init(|| async {
                if let Some(r) = &self.cfg.region {
                    return Ok(r.clone());
                }
                if let Some((_, region)) = access_point_host(&self.cfg.bucket) {
                    return Ok(region);
                }
                if self.cfg.flavor == Flavor::Oss {
                    return Ok(OSS_DEFAULT_REGION.to_owned());
                }
                if self.endpoint.is_some() {
                    return Ok(DEFAULT_REGION.to_owned());
                }
                let global = Target {
                    https: true,
                    host: "s3.amazonaws.com".to_owned(),
                    port: 443,
                };
                self.bucket_location(&global, "").await
            })
            .await
            .cloned()
    }

    /// GetBucketLocation against a path-style endpoint, signed for us-east-1 as the SDK does.
    pub async fn bucket_location(&self, target: &Target, base: &str) -> Result<String, S3Error> {
        let req = Request::new("get bucket location", Method::GET, None).query("location", None);
        let path = format!("{base}/{}", uri_encode(&self.cfg.bucket, false));
        let dest = Dest {
            target: target.clone(),
            path,
            region: DEFAULT_REGION.to_owned(),
        };
        match self.execute_at(&req, &dest).await {
            Ok(resp) => {
                let text = String::from_utf8_lossy(&resp.body);
                let loc = xml::text(&text, "LocationConstraint").unwrap_or_default();
                Ok(match loc.trim() {
                    "" => DEFAULT_REGION.to_owned(),
                    "EU" => "eu-west-1".to_owned(),
                    other => other.to_owned(),
                })
            }
            Err((err, headers)) => {
                // A bucket in another region answers with a redirect that names its region.
                match headers
                    .as_ref()
                    .and_then(|h| h.get("x-amz-bucket-region"))
                    .and_then(|v| v.to_str().ok())
                {
                    Some(r) if !r.is_empty() => Ok(r.to_owned()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Where a request goes: target, and the encoded path (no query).
    fn locate(&self, key: Option<&str>, region: &str) -> (Target, String) {
        let key_path = key.map(|k| format!("/{}", uri_encode(k, true)));
        if let Some((host, _)) = access_point_host(&self.cfg.bucket) {
            let t = Target {
                https: true,
                host,
                port: 443,
            };
            return (t, key_path.unwrap_or_else(|| "/".to_owned()));
        }
        let bucket = uri_encode(&self.cfg.bucket, false);
        let (target, base, path_style) = match &self.endpoint {
            Some((t, base)) => (t.clone(), base.clone(), self.cfg.force_path_style),
            None => {
                let host = match self.cfg.flavor {
                    Flavor::S3 => format!("s3.{region}.amazonaws.com"),
                    Flavor::Oss => format!("oss-{region}.aliyuncs.com"),
                };
                // Dotted bucket names do not match the wildcard certificate of
                // virtual-hosted names.
                let path_style = self.cfg.force_path_style
                    || (self.cfg.flavor == Flavor::S3 && self.cfg.bucket.contains('.'));
                let t = Target {
                    https: true,
                    host,
                    port: 443,
                };
                (t, String::new(), path_style)
            }
        };
        if path_style {
            let path = format!("{base}/{bucket}{}", key_path.unwrap_or_default());
            (target, path)
        } else {
            let t = Target {
                host: format!("{}.{}", self.cfg.bucket, target.host),
                ..target
            };
            (
                t,
                format!("{base}{}", key_path.unwrap_or_else(|| "/".to_owned())),
            )
        }
    }

    /// Headers that write operations carry: metadata, storage class, encryption.
    pub fn write_headers(&self, created_at: Option<SystemTime>) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(t) = created_at {
            h.push((
                "x-amz-meta-litestream-timestamp",
                crate::timefmt::format_rfc3339_nano(t),
            ));
        }
        if let Some(sc) = &self.cfg.storage_class {
            h.push(("x-amz-storage-class", sc.clone()));
        }
        match &self.cfg.sse {
            Sse::None => {}
            Sse::Customer { .. } => h.extend(self.sse_c_headers()),
            Sse::Kms { key_id } => {
                h.push(("x-amz-server-side-encryption", "aws:kms".to_owned()));
                h.push((
                    "x-amz-server-side-encryption-aws-kms-key-id",
                    key_id.clone(),
                ));
            }
        }
        h
    }

    /// SSE-C headers, needed to write, read and head customer-key objects.
    pub fn sse_c_headers(&self) -> Vec<(&'static str, String)> {
        match &self.cfg.sse {
            Sse::Customer {
                algorithm,
                key,
                key_md5,
            } => vec![
                (
                    "x-amz-server-side-encryption-customer-algorithm",
                    algorithm.clone(),
                ),
                ("x-amz-server-side-encryption-customer-key", key.clone()),
                (
                    "x-amz-server-side-encryption-customer-key-md5",
                    key_md5.clone(),
                ),
            ],
            _ => Vec::new(),
        }
    }

    fn build(
        &self,
        req: &Request,
        dest: &Dest,
        digests: &Digests,
        body: super::body::ReqBody,
        creds: &Credentials,
    ) -> Result<http::Request<super::body::ReqBody>, String> {
        let (target, path) = (&dest.target, dest.path.as_str());
        let mut query: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", uri_encode(k, false), uri_encode(v, false)),
                None => uri_encode(k, false),
            })
            .collect();
        query.sort();
        let path_and_query = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let scheme = if target.https { "https" } else { "http" };
        let url = format!("{scheme}://{}{path_and_query}", target.authority());
        let mut b = http::Request::builder()
            .method(req.method.clone())
            .uri(path_and_query.as_str())
            .header("host", target.authority())
            .header("user-agent", USER_AGENT);
        let has_body = req.method == Method::PUT || req.method == Method::POST;
        if has_body {
            b = b.header("content-length", req.payload.len().to_string());
        }
        if let Some(md5) = &digests.md5_base64 {
            b = b.header("content-md5", md5.as_str());
        }
        if self.cfg.tigris {
            b = b.header("x-tigris-consistent", "true");
        }
        for (k, v) in &req.headers {
            b = b.header(*k, v.as_str());
        }
        let mut http_req = b.body(body).map_err(|e| format!("bad request: {e}"))?;
        let payload_hash = if self.cfg.sign_payload || !has_body {
            Some(if digests.sha256_hex.is_empty() {
                super::body::EMPTY_SHA256
            } else {
                digests.sha256_hex.as_str()
            })
        } else {
            None
        };
        sign::sign_request(
            &mut http_req,
            &url,
            creds,
            &dest.region,
            payload_hash,
            SystemTime::now(),
        )?;
        Ok(http_req)
    }

    /// One attempt: connect (or reuse), send, wait for the response head.
    async fn attempt(
        &self,
        req: &Request,
        dest: &Dest,
        digests: &Digests,
    ) -> Result<(http::response::Parts, Incoming, Conn), AttemptError> {
        let target = &dest.target;
        let creds = self.creds.get().await.map_err(AttemptError::Local)?;
        let body = req
            .payload
            .open()
            .await
            .map_err(|e| AttemptError::Local(format!("cannot read upload body: {e}")))?;
        let http_req = self
            .build(req, dest, digests, body, &creds)
            .map_err(AttemptError::Local)?;
        let mut conn = self.pool.checkout(target).await.map_err(|e| {
            let msg = format!("connect {}: {e}", target.authority());
            // A certificate the server will keep presenting is not cured by asking again.
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

    /// Sends a request with retries and reads the whole response. Non-2xx answers are errors.
    pub async fn execute(&self, req: &Request) -> Result<Response, S3Error> {
        let region = self.region().await?;
        let (target, path) = self.locate(req.key.as_deref(), &region);
        let dest = Dest {
            target,
            path,
            region,
        };
        self.execute_at(req, &dest).await.map_err(|(e, _)| e)
    }

    async fn execute_at(
        &self,
        req: &Request,
        dest: &Dest,
    ) -> Result<Response, (S3Error, Option<HeaderMap>)> {
        let digests = req
            .payload
            .digests(self.cfg.sign_payload, req.content_md5)
            .await
            .map_err(|e| {
                (
                    self.error(req, None, "", format!("cannot read upload body: {e}")),
                    None,
                )
            })?;
        let mut attempt = 0;
        loop {
            let outcome: Result<Response, (S3Error, Option<HeaderMap>)> =
                match self.attempt(req, dest, &digests).await {
                    Ok((parts, body, conn)) => match read_body(body).await {
                        Ok(bytes) => {
                            self.pool.checkin(conn);
                            if parts.status.is_success() {
                                return Ok(Response {
                                    status: parts.status,
                                    headers: parts.headers,
                                    body: bytes,
                                });
                            }
                            let err = self.status_error(req, parts.status, &bytes);
                            Err((err, Some(parts.headers)))
                        }
                        Err(e) => Err((self.error(req, None, "", e), None)),
                    },
                    Err(AttemptError::Transport(e)) => Err((self.error(req, None, "", e), None)),
                    Err(AttemptError::Local(e)) => {
                        let mut err = self.error(req, None, "", e);
                        err.retryable = false;
                        return Err((err, None));
                    }
                };
            let Err((err, headers)) = outcome else {
                unreachable!("success returns above")
            };
            attempt += 1;
            if !err.retryable || attempt >= self.retry.max_attempts {
                return Err((err, headers));
            }
            let delay = self.retry.delay(attempt - 1);
            tracing::warn!(error = %err, attempt, ?delay, "s3 request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    fn status_error(&self, req: &Request, status: StatusCode, body: &[u8]) -> S3Error {
        let text = String::from_utf8_lossy(body);
        let doc = xml::parse_error(&text).unwrap_or_default();
        let message = if doc.message.is_empty() && doc.code.is_empty() {
            status.canonical_reason().unwrap_or_default().to_owned()
        } else {
            doc.message
        };
        let code = if doc.code.is_empty() && status == StatusCode::NOT_FOUND && req.key.is_none() {
            "NoSuchBucket".to_owned()
        } else {
            doc.code
        };
        self.error(req, Some(status.as_u16()), &code, message)
    }

    pub async fn put_object(
        &self,
        key: &str,
        payload: Payload,
        headers: Vec<(&'static str, String)>,
    ) -> Result<(), S3Error> {
        let mut req = Request::new("put object", Method::PUT, Some(key.to_owned()));
        req.headers = headers;
        req.payload = payload;
        req.content_md5 = self.cfg.require_content_md5;
        self.execute(&req).await.map(|_| ())
    }

    pub async fn create_multipart(
        &self,
        key: &str,
        headers: Vec<(&'static str, String)>,
    ) -> Result<String, S3Error> {
        let mut req = Request::new(
            "create multipart upload",
            Method::POST,
            Some(key.to_owned()),
        )
        .query("uploads", None);
        req.headers = headers;
        let resp = self.execute(&req).await?;
        let text = String::from_utf8_lossy(&resp.body);
        xml::text(&text, "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| self.error(&req, None, "", "response without UploadId".to_owned()))
    }

    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: usize,
        payload: Payload,
    ) -> Result<String, S3Error> {
        let mut req = Request::new("upload part", Method::PUT, Some(key.to_owned()))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id.to_owned());
        req.headers = self.sse_c_headers();
        req.payload = payload;
        req.content_md5 = self.cfg.require_content_md5;
        let resp = self.execute(&req).await?;
        resp.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| self.error(&req, None, "", format!("part {part_number} without ETag")))
    }

    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), S3Error> {
        let mut req = Request::new(
            "complete multipart upload",
            Method::POST,
            Some(key.to_owned()),
        )
        .query("uploadId", upload_id.to_owned());
        req.payload = Payload::Bytes(Bytes::from(xml::complete_multipart_request(etags)));
        let resp = self.execute(&req).await?;
        // S3 can answer 200 and still fail the completion in the body.
        let text = String::from_utf8_lossy(&resp.body);
        if let Some(doc) = xml::parse_error(&text) {
            let mut err = self.error(&req, Some(200), &doc.code, doc.message);
            err.retryable = false;
            return Err(err);
        }
        Ok(())
    }

    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let req = Request::new(
            "abort multipart upload",
            Method::DELETE,
            Some(key.to_owned()),
        )
        .query("uploadId", upload_id.to_owned());
        self.execute(&req).await.map(|_| ())
    }

    pub async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<xml::ListPage, S3Error> {
        let mut req = Request::new("list objects", Method::GET, None)
            .query("list-type", "2".to_owned())
            .query("prefix", prefix.to_owned());
        if let Some(t) = token {
            req = req.query("continuation-token", t.to_owned());
        }
        let resp = self.execute(&req).await?;
        let text = String::from_utf8_lossy(&resp.body);
        xml::parse_list_v2(&text).map_err(|e| {
            let mut err = self.error(&req, Some(resp.status.as_u16()), "", e);
            err.target = format!("s3://{}/{}", self.cfg.bucket, prefix);
            err.retryable = false;
            err
        })
    }

    /// Deletes up to 1000 keys; returns the keys S3 reported as failed, with code and message.
    pub async fn delete_objects(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, String, String)>, S3Error> {
        let mut req = Request::new("delete objects", Method::POST, None).query("delete", None);
        req.payload = Payload::Bytes(Bytes::from(xml::delete_request(keys, true)));
        // S3 insists on a body checksum for DeleteObjects; Litestream sends Content-MD5
        // unless told the provider rejects it.
        req.content_md5 = self.cfg.require_content_md5;
        let resp = self.execute(&req).await?;
        let text = String::from_utf8_lossy(&resp.body);
        Ok(xml::parse_delete_errors(&text))
    }

    /// Size and `litestream-timestamp` metadata of an object, or `None` if it is absent.
    pub async fn head_object(
        &self,
        key: &str,
    ) -> Result<Option<(u64, Option<SystemTime>)>, S3Error> {
        let mut req = Request::new("head object", Method::HEAD, Some(key.to_owned()));
        req.headers = self.sse_c_headers();
        match self.execute(&req).await {
            Ok(resp) => {
                let h = |n: &str| resp.headers.get(n).and_then(|v| v.to_str().ok());
                let size = h("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let ts =
                    h("x-amz-meta-litestream-timestamp").and_then(crate::timefmt::parse_rfc3339);
                Ok(Some((size, ts)))
            }
            Err(e) if e.status == Some(404) && e.code != "NoSuchBucket" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `len` bytes at `offset` (or to the end), read whole; see [`S3Client::get_range_stream`].
    pub async fn get_range(
        self: &Arc<Self>,
        key: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes, S3Error> {
        let mut body = self.get_range_stream(key, offset, len).await?;
        // The whole range in one allocation: growing by doubling would copy (and fault in)
        // about twice the bytes. Capped so a caller's huge `len` cannot reserve memory the
        // object does not have.
        let mut out = BytesMut::with_capacity(len.map_or(0, |l| l.min(MAX_PREALLOC) as usize));
        while let Some(piece) = body.next_piece().await? {
            if out.is_empty() && len.is_some_and(|l| piece.len() as u64 == l) {
                // The whole range arrived in one piece: no copy.
                return Ok(piece);
            }
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    /// `len` bytes at `offset` (or to the end), handed over piece by piece as they arrive. A
    /// connection that drops mid-body is resumed from the last byte received, pinned to the
    /// first response's ETag so a replaced object is never stitched together from two
    /// versions. Fewer, longer requests are also cheaper for the server than many short ones.
    pub async fn get_range_stream(
        self: &Arc<Self>,
        key: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<RangeBody, S3Error> {
        let region = self.region().await?;
        let (target, path) = self.locate(Some(key), &region);
        let mut body = RangeBody {
            client: Arc::clone(self),
            key: key.to_owned(),
            dest: Dest {
                target,
                path,
                region,
            },
            offset,
            len,
            got: 0,
            etag: None,
            failures: 0,
            open: None,
            done: false,
        };
        if len == Some(0) {
            // Nothing to fetch (S3 would refuse the empty range anyway).
            body.done = true;
        } else {
            body.connect().await?;
        }
        Ok(body)
    }

    /// S3 refuses a range that starts at the end; reading nothing at the end is valid for us.
    async fn range_past_end(
        &self,
        key: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes, S3Error> {
        let size = self.head_object(key).await?.map(|(s, _)| s);
        match size {
            Some(s) if offset == s && len.unwrap_or(0) == 0 => Ok(Bytes::new()),
            Some(s) => Err(S3Error {
                op: "get object",
                target: self.describe(Some(key)),
                status: Some(416),
                code: "InvalidRange".to_owned(),
                message: format!(
                    "range {offset}+{} is past the end ({s} bytes)",
                    len.map_or("end".to_owned(), |l| l.to_string())
                ),
                retryable: false,
            }),
            None => Err(S3Error {
                op: "get object",
                target: self.describe(Some(key)),
                status: Some(404),
                code: "NoSuchKey".to_owned(),
                message: "not found".to_owned(),
                retryable: false,
            }),
        }
    }
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

async fn read_body(mut body: Incoming) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    while let Some(data) = next_data(&mut body).await? {
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// The next data frame of a response body (trailers skipped), or `None` at its end.
async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, String> {
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

/// The response body of a ranged GET in progress (see [`S3Client::get_range_stream`]).
pub(crate) struct RangeBody {
    client: Arc<S3Client>,
    key: String,
    dest: Dest,
    offset: u64,
    len: Option<u64>,
    /// Bytes handed out so far.
    got: u64,
    etag: Option<String>,
    /// Failed attempts since the last one that made progress.
    failures: u32,
    /// The response being read: its body, its connection, and how many leading bytes to drop
    /// (a server that ignores Range answers 200 with the whole object).
    open: Option<(Incoming, Conn, u64)>,
    done: bool,
}

impl RangeBody {
    fn request(&self) -> Request {
        let start = self.offset + self.got;
        let mut req = Request::new("get object", Method::GET, Some(self.key.clone()));
        req.headers = self.client.sse_c_headers();
        match self.len {
            Some(l) => req
                .headers
                .push(("range", format!("bytes={start}-{}", self.offset + l - 1))),
            None if start > 0 => req.headers.push(("range", format!("bytes={start}-"))),
            None => {}
        }
        if let Some(e) = &self.etag {
            req.headers.push(("if-match", e.clone()));
        }
        req
    }

    /// Counts a failed attempt; returns the error if it is final, else waits before the next.
    async fn failed(&mut self, err: S3Error) -> Result<(), S3Error> {
        self.open = None;
        self.failures += 1;
        if !err.retryable || self.failures >= self.client.retry.max_attempts {
            self.done = true;
            return Err(err);
        }
        let delay = self.client.retry.delay(self.failures - 1);
        tracing::warn!(error = %err, received = self.got, ?delay, "s3 read failed; resuming");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Sends the request for the bytes not yet received, with retries, until a response
    /// with a body starts.
    async fn connect(&mut self) -> Result<(), S3Error> {
        let no_digests = Digests {
            sha256_hex: String::new(),
            md5_base64: None,
        };
        loop {
            let req = self.request();
            let c = Arc::clone(&self.client);
            let err = match c.attempt(&req, &self.dest, &no_digests).await {
                Err(AttemptError::Local(e)) => {
                    let mut err = c.error(&req, None, "", e);
                    err.retryable = false;
                    self.done = true;
                    return Err(err);
                }
                Err(AttemptError::Transport(e)) => c.error(&req, None, "", e),
                Ok((parts, body, conn)) => {
                    let status = parts.status;
                    if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
                        if self.etag.is_none() {
                            self.etag = parts
                                .headers
                                .get("etag")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                        }
                        let start = self.offset + self.got;
                        let skip = if status == StatusCode::OK { start } else { 0 };
                        self.open = Some((body, conn, skip));
                        return Ok(());
                    }
                    let bytes = read_body(body).await.unwrap_or_default();
                    c.pool.checkin(conn);
                    if status == StatusCode::RANGE_NOT_SATISFIABLE {
                        self.done = true;
                        c.range_past_end(&self.key, self.offset, self.len).await?;
                        return Ok(());
                    }
                    let mut err = c.status_error(&req, status, &bytes);
                    if status == StatusCode::PRECONDITION_FAILED {
                        err.message = "object changed while being read".to_owned();
                        err.retryable = false;
                    }
                    err
                }
            };
            self.failed(err).await?;
        }
    }

    /// The next bytes of the range, or `None` once all of it has been handed out.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, S3Error> {
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
                        self.client.pool.checkin(conn);
                    }
                }
                return Ok(None);
            }
            if self.open.is_none() {
                self.connect().await?;
                continue;
            }
            let Some((body, _, skip)) = self.open.as_mut() else {
                continue;
            };
            match next_data(body).await {
                Ok(Some(mut data)) => {
                    if *skip > 0 {
                        let n = (*skip).min(data.len() as u64) as usize;
                        *skip -= n as u64;
                        data = data.slice(n..);
                    }
                    if let Some(w) = want {
                        if data.len() as u64 > w {
                            data.truncate(w as usize);
                        }
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
                        self.client.pool.checkin(conn);
                    }
                    self.done = true;
                    if let Some(l) = self.len {
                        return Err(S3Error {
                            op: "get object",
                            target: self.client.describe(Some(&self.key)),
                            status: None,
                            code: String::new(),
                            message: format!(
                                "range {}+{l} is past the end (object ends at {})",
                                self.offset,
                                self.offset + self.got
                            ),
                            retryable: false,
                        });
                    }
                    return Ok(None);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::settings::S3Settings;

    /// Always with keys: a unit test must never fall through to the instance metadata service.
    fn client(url: &str) -> S3Client {
        let mut s = S3Settings::from_url(url).expect("url");
        s.access_key_id = Some("AKIDTEST".into());
        s.secret_access_key = Some("secret".into());
        S3Client::new(s.resolve().expect("resolve")).expect("client")
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c+d~", true), "a%20b/c%2Bd~");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn addressing() {
        let c = client("s3://bkt/db?endpoint=http://127.0.0.1:9000");
        let (t, p) = c.locate(Some("db/0000/x.ltx"), "us-east-1");
        assert_eq!(t.authority(), "127.0.0.1:9000");
        assert_eq!(p, "/bkt/db/0000/x.ltx");
        let c = client("s3://bkt/db?region=eu-west-1");
        let (t, p) = c.locate(Some("db/k"), "eu-west-1");
        assert_eq!(
            (t.host.as_str(), p.as_str()),
            ("bkt.s3.eu-west-1.amazonaws.com", "/db/k")
        );
        let (t, p) = c.locate(None, "eu-west-1");
        assert_eq!(
            (t.host.as_str(), p.as_str()),
            ("bkt.s3.eu-west-1.amazonaws.com", "/")
        );
        let c = client("s3://my.dotted.bkt/db?region=us-west-2");
        let (t, p) = c.locate(Some("k"), "us-west-2");
        assert_eq!(
            (t.host.as_str(), p.as_str()),
            ("s3.us-west-2.amazonaws.com", "/my.dotted.bkt/k")
        );
        let c = client("s3://arn:aws:s3:us-west-2:123456789012:accesspoint/ap/db");
        let (t, p) = c.locate(Some("db/k"), "us-west-2");
        assert_eq!(
            (t.host.as_str(), p.as_str()),
            (
                "ap-123456789012.s3-accesspoint.us-west-2.amazonaws.com",
                "/db/k"
            )
        );
        let c = client("oss://bkt.oss-cn-beijing.aliyuncs.com/db");
        let (t, _) = c.locate(Some("k"), "cn-beijing");
        assert_eq!(t.host, "bkt.oss-cn-beijing.aliyuncs.com");
    }

    #[tokio::test]
    async fn bucket_location_lookup() {
        let (url, seen) = crate::s3::test_server::serve(3, |req| {
            if req.starts_with("GET /eu-bkt?location ") {
                (200, "<?xml version=\"1.0\"?><LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">eu-west-2</LocationConstraint>".to_owned())
            } else if req.starts_with("GET /us-bkt?location ") {
                (200, "<LocationConstraint/>".to_owned())
            } else {
                (404, "<Error><Code>NoSuchBucket</Code><Message>none</Message></Error>".to_owned())
            }
        })
        .await;
        let (target, base) = parse_http_url(&url).expect("url");
        for (bucket, want) in [
            ("eu-bkt", Some("eu-west-2")),
            ("us-bkt", Some("us-east-1")),
            ("nope", None),
        ] {
            let c = client(&format!("s3://{bucket}/db?endpoint={url}"));
            let got = c.bucket_location(&target, &base).await;
            assert_eq!(got.as_deref().ok(), want, "{bucket}: {got:?}");
        }
        let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
        assert!(
            seen[0].contains("/us-east-1/s3/aws4_request"),
            "{}",
            seen[0]
        );
    }

    #[tokio::test]
    async fn connection_errors_are_retried_then_reported() {
        // A port that was just free: connecting is refused.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let mut c = client(&format!(
            "s3://bkt/db?endpoint=http://127.0.0.1:{port}&region=us-east-1"
        ));
        c.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        let err = c.list_page("db/0000/", None).await.expect_err("refused");
        assert!(err.retryable);
        assert!(err.to_string().contains("s3://bkt"), "{err}");
        assert!(err.to_string().contains("connect"), "{err}");
    }

    #[test]
    fn error_messages_name_bucket_and_key() {
        let c = client("s3://bkt/db?endpoint=http://127.0.0.1:9");
        let req = Request::new("get object", Method::GET, Some("db/k".into()));
        let e = c.status_error(
            &req,
            StatusCode::FORBIDDEN,
            b"<Error><Code>SignatureDoesNotMatch</Code><Message>bad sig</Message></Error>",
        );
        assert!(!e.retryable);
        let s = e.to_string();
        assert!(
            s.contains("s3://bkt/db/k") && s.contains("SignatureDoesNotMatch"),
            "{s}"
        );
        let e = c.status_error(
            &Request::new("list objects", Method::GET, None),
            StatusCode::NOT_FOUND,
            b"",
        );
        assert_eq!(e.code, "NoSuchBucket");
        let e = c.status_error(
            &req,
            StatusCode::SERVICE_UNAVAILABLE,
            b"<Error><Code>SlowDown</Code></Error>",
        );
        assert!(e.retryable);
    }
}
