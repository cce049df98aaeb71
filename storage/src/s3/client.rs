//! The S3 protocol as a replica speaks it: where a request goes (path or virtual-hosted style,
//! access points, OSS), SigV4 signing, and one request with retries over the shared
//! [`transport`](crate::transport). The operations themselves are in `ops`.

use std::sync::Mutex;
use std::time::SystemTime;

use http::{Method, StatusCode};

use super::credentials::{CredentialChain, Credentials};
use super::settings::{Flavor, Resolved, Sse, DEFAULT_REGION, OSS_DEFAULT_REGION};
use super::sign;
use crate::backend::Layout;
use crate::error::ErrorKind;
use crate::transport::body::{Digests, EMPTY_SHA256};
use crate::transport::pool::parse_http_url;
use crate::transport::Trust;
use crate::transport::{
    encode, header, open_payload, request_head, send, Fault, Http, HttpError, HttpPool, Payload,
    ReqBody, Response, RetryPolicy, Sent, Target,
};
use crate::xml;

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
    pub(crate) fn new(op: &'static str, method: Method, key: Option<String>) -> Request {
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

    pub(crate) fn query(mut self, k: &'static str, v: impl Into<Option<String>>) -> Self {
        self.query.push((k, v.into()));
        self
    }
}

/// Where one request goes and how it is signed.
pub(crate) struct Dest {
    pub target: Target,
    /// Encoded path, without query.
    pub path: String,
    pub region: String,
}

/// What to check, for the S3 errors a user can fix.
fn hint(_status: Option<u16>, code: &str, _op: &str) -> &'static str {
    match code {
        "SignatureDoesNotMatch" => " (check the secret access key and the region)",
        "InvalidAccessKeyId" => " (check the access key id)",
        "NoSuchBucket" => " (the bucket does not exist)",
        "AccessDenied" => " (the credentials may not act on this bucket or key)",
        "AuthorizationHeaderMalformed" => " (check the region)",
        "RequestTimeTooSkewed" => " (the system clock is off)",
        _ => "",
    }
}

/// The kind of an S3 answer: a missing key is not found, a missing bucket is a setting.
fn kind(status: Option<u16>, code: &str) -> ErrorKind {
    match (status, code) {
        (_, "NoSuchKey") => ErrorKind::NotFound,
        (Some(404), c) if !c.is_empty() => ErrorKind::Fatal,
        _ => ErrorKind::from_http(status, code),
    }
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

/// An S3 (or OSS) bucket and the replica path in it: the S3 [`Backend`](crate::backend::Backend).
pub struct S3Client {
    pub(crate) cfg: Resolved,
    pub(crate) http: Http,
    creds: CredentialChain,
    region: tokio::sync::OnceCell<String>,
    endpoint: Option<(Target, String)>,
    pub(crate) layout: Layout,
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
    pub(crate) fn new(cfg: Resolved, retry: RetryPolicy) -> Result<S3Client, String> {
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
        let trust = match (needs_tls, cfg.skip_verify) {
            (false, _) => Trust::PlainOnly,
            (true, true) => Trust::SkipVerify,
            (true, false) => Trust::Roots(cfg.ca_file.clone()),
        };
        let pool = HttpPool::shared(trust)?;
        // STS and SSO speak TLS whatever the endpoint does, with the replica's trust.
        let sts_trust = if cfg.skip_verify {
            Trust::SkipVerify
        } else {
            Trust::Roots(cfg.ca_file.clone())
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
            http: Http {
                backend: "s3",
                pool,
                retry,
                kind,
                hint,
            },
            creds: CredentialChain::new(configured, HttpPool::shared(Trust::PlainOnly)?, sts_trust),
            region: tokio::sync::OnceCell::new(),
            endpoint,
            layout: Layout::hex(format!("{}/", cfg.path)),
            cfg,
        })
    }

    pub(crate) fn describe(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("s3://{}/{}", self.cfg.bucket, k),
            None => format!("s3://{}", self.cfg.bucket),
        }
    }

    pub(crate) fn error(&self, r: &Request, s: Option<u16>, code: &str, m: String) -> HttpError {
        self.http
            .error(r.op, self.describe(r.key.as_deref()), s, code, m)
    }

    /// The signing region: configured, or Litestream's defaults when an endpoint is set, or
    /// asked of S3 once (GetBucketLocation) for AWS itself.
    pub(crate) async fn region(&self) -> Result<String, HttpError> {
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
    pub(crate) async fn bucket_location(
        &self,
        target: &Target,
        base: &str,
    ) -> Result<String, HttpError> {
        let req = Request::new("get bucket location", Method::GET, None).query("location", None);
        let path = format!("{base}/{}", encode::component(&self.cfg.bucket));
        let dest = Dest {
            target: target.clone(),
            path,
            region: DEFAULT_REGION.to_owned(),
        };
        let redirect = Mutex::new(None);
        match self.execute_at(&req, &dest, Some(&redirect)).await {
            Ok(resp) => {
                let text = String::from_utf8_lossy(&resp.body);
                let loc = xml::text(&text, "LocationConstraint").unwrap_or_default();
                Ok(match loc.trim() {
                    "" => DEFAULT_REGION.to_owned(),
                    "EU" => "eu-west-1".to_owned(),
                    other => other.to_owned(),
                })
            }
            // A bucket in another region answers with a redirect that names its region.
            Err(err) => match redirect.lock().map(|mut r| r.take()) {
                Ok(Some(r)) => Ok(r),
                _ => Err(err),
            },
        }
    }

    /// Where a request goes: target, and the encoded path (no query).
    pub(crate) fn locate(&self, key: Option<&str>, region: &str) -> (Target, String) {
        let key_path = key.map(|k| format!("/{}", encode::key_path(k)));
        if let Some((host, _)) = access_point_host(&self.cfg.bucket) {
            let t = Target {
                https: true,
                host,
                port: 443,
            };
            return (t, key_path.unwrap_or_else(|| "/".to_owned()));
        }
        let bucket = encode::component(&self.cfg.bucket);
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

    /// Where a request about `key` goes, in the bucket's region.
    pub(crate) async fn dest(&self, key: Option<&str>) -> Result<Dest, HttpError> {
        let region = self.region().await?;
        let (target, path) = self.locate(key, &region);
        Ok(Dest {
            target,
            path,
            region,
        })
    }

    /// Headers that write operations carry: metadata, storage class, encryption.
    pub(crate) fn write_headers(
        &self,
        created_at: Option<SystemTime>,
    ) -> Vec<(&'static str, String)> {
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
    pub(crate) fn sse_c_headers(&self) -> Vec<(&'static str, String)> {
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
                (
                    "x-amz-server-side-encryption-customer-key",
                    key.expose().to_owned(),
                ),
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
        body: ReqBody,
        creds: &Credentials,
    ) -> Result<http::Request<ReqBody>, String> {
        let (target, path) = (&dest.target, dest.path.as_str());
        let mut query: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", encode::component(k), encode::component(v)),
                None => encode::component(k),
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
        let mut b = request_head(&req.method, target, &path_and_query, &req.payload);
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
        let has_body = req.method == Method::PUT || req.method == Method::POST;
        let payload_hash = if self.cfg.sign_payload || !has_body {
            Some(if digests.sha256_hex.is_empty() {
                EMPTY_SHA256
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
    pub(crate) async fn attempt(
        &self,
        req: &Request,
        dest: &Dest,
        digests: &Digests,
    ) -> Result<Sent, HttpError> {
        let creds = self.creds.get(&dest.region).await.map_err(|e| {
            self.error(req, None, "", String::new())
                .with_fault(Fault::Auth(e))
        })?;
        let body = open_payload(&req.payload)
            .await
            .map_err(|f| self.error(req, None, "", String::new()).with_fault(f))?;
        let http_req = self.build(req, dest, digests, body, &creds).map_err(|e| {
            self.error(req, None, "", String::new())
                .with_fault(Fault::Local(e))
        })?;
        send(&self.http.pool, &dest.target, http_req, req.payload.len())
            .await
            .map_err(|f| self.error(req, None, "", String::new()).with_fault(f))
    }

    /// Sends a request with retries and reads the whole response. Non-2xx answers are errors.
    pub(crate) async fn execute(&self, req: &Request) -> Result<Response, HttpError> {
        let dest = self.dest(req.key.as_deref()).await?;
        self.execute_at(req, &dest, None).await
    }

    /// [`S3Client::execute`] to `dest`; the region a redirect names is kept in `redirect`.
    async fn execute_at(
        &self,
        req: &Request,
        dest: &Dest,
        redirect: Option<&Mutex<Option<String>>>,
    ) -> Result<Response, HttpError> {
        let digests = req
            .payload
            .digests(self.cfg.sign_payload, req.content_md5)
            .await
            .map_err(|e| {
                let f = Fault::Local(format!("cannot read upload body: {e}"));
                self.error(req, None, "", String::new()).with_fault(f)
            })?;
        let target = self.describe(req.key.as_deref());
        self.http
            .run(&target, || async {
                let sent = self.attempt(req, dest, &digests).await?;
                let resp = self.http.read(sent, req.op, || target.clone()).await?;
                if resp.status.is_success() {
                    return Ok(resp);
                }
                if let (Some(r), Some(region)) =
                    (redirect, header(&resp.headers, "x-amz-bucket-region"))
                {
                    if let Ok(mut slot) = r.lock() {
                        *slot = Some(region.to_owned()).filter(|r| !r.is_empty());
                    }
                }
                Err(self.status_error(req, resp.status, &resp.body))
            })
            .await
    }

    pub(crate) fn status_error(&self, req: &Request, status: StatusCode, body: &[u8]) -> HttpError {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::settings::S3Settings;

    /// Always with keys: a unit test must never fall through to the instance metadata service.
    pub(crate) fn client(url: &str) -> S3Client {
        let mut s = S3Settings::from_url(url).expect("url");
        s.access_key_id = Some("AKIDTEST".into());
        s.secret_access_key = Some("secret".into());
        S3Client::new(s.resolve().expect("resolve"), RetryPolicy::default()).expect("client")
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
        let (url, seen) = crate::transport::test_server::serve(3, |req| {
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
        c.http.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(5),
        };
        let err = c.list_page("db/0000/", None).await.expect_err("refused");
        assert!(err.is_retryable());
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
        assert!(!e.is_retryable());
        assert_eq!(e.kind, ErrorKind::Auth);
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
        assert_eq!(e.kind, ErrorKind::Fatal);
        let e = c.status_error(
            &req,
            StatusCode::SERVICE_UNAVAILABLE,
            b"<Error><Code>SlowDown</Code></Error>",
        );
        assert!(e.is_retryable());
        assert_eq!(e.kind, ErrorKind::Throttled);
    }
}
