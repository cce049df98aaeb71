//! The Azure Blob Storage REST API, as much as a replica needs: Put Blob, Put Block and Put
//! Block List (create-only with `If-None-Match: *`), ranged Get Blob, Get Blob Properties,
//! List Blobs (with metadata, by marker), Delete Blob, and Create Container for tests.
//! Requests are signed (`sign`) and retried over the shared [`transport`](crate::transport).

use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::settings::{AbsSettings, ENV_ACCOUNT_KEY, ENV_SAS_TOKEN};
use super::sign::{http_date, parse_http_date, shared_key, Auth, Signed};
use crate::backend::Layout;
use crate::error::ErrorKind;
use crate::transport::pool::parse_http_url;
use crate::transport::range::{Get, Ranged};
use crate::transport::Trust;
use crate::transport::{
    encode, header, open_payload, request_head, send, size_and_created, Fault, Http, HttpError,
    HttpPool, Payload, ReqBody, Response, RetryPolicy, Sent, Target,
};
use crate::{xml, Secret, StorageError};

/// The REST API version we speak (Azurite runs with `--skipApiVersionCheck` in the tests).
pub(crate) const API_VERSION: &str = "2021-12-02";
/// Litestream's metadata key for the LTX header timestamp (no hyphens: C# identifier rules).
pub(crate) const META_TIMESTAMP: &str = "litestreamtimestamp";

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
    pub(crate) fn new(op: &'static str, method: Method, blob: Option<&str>) -> Request {
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

/// One blob of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedBlob {
    pub name: String,
    pub size: u64,
    /// The `litestreamtimestamp` metadata, else the blob's creation time.
    pub created_at: Option<SystemTime>,
}

/// What to check, for the Azure errors a user can fix.
fn hint(_status: Option<u16>, code: &str, _op: &str) -> &'static str {
    match code {
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
    }
}

/// The kind of an Azure answer: a missing blob is not found, a missing container a setting.
fn kind(status: Option<u16>, code: &str) -> ErrorKind {
    match (status, code) {
        (_, "BlobNotFound") => ErrorKind::NotFound,
        (_, "BlobAlreadyExists") => ErrorKind::AlreadyExists,
        (Some(404), c) if !c.is_empty() => ErrorKind::Fatal,
        _ => ErrorKind::from_http(status, code),
    }
}

/// An Azure container and the replica path in it: the `abs` [`Backend`](crate::backend::Backend).
pub struct AbsClient {
    pub(crate) container: String,
    /// Blob name prefix ("" for the container's root).
    pub(crate) path: String,
    target: Target,
    /// Encoded path before the container ("" or "/devstoreaccount1"), no trailing slash.
    base: String,
    auth: Auth,
    pub(crate) http: Http,
    /// Bodies up to this size go up in one Put Blob; larger ones in blocks of this size.
    pub(crate) block_size: u64,
    /// `maxresults` of List Blobs (the service's default, 5000, when unset).
    pub(crate) page_size: Option<u32>,
    pub(crate) layout: Layout,
}

impl std::fmt::Debug for AbsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsClient")
            .field("container", &self.container)
            .field("path", &self.path)
            .field("endpoint", &self.target.authority())
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AbsClient {
    /// No network I/O: the credentials come from the settings or Litestream's environment
    /// variables, and connections are made on the first request.
    pub(crate) fn new(
        s: &AbsSettings,
        retry: RetryPolicy,
        block_size: u64,
    ) -> crate::Result<AbsClient> {
        let endpoint = s.endpoint_url()?;
        let (target, base) = parse_http_url(&endpoint).ok_or_else(|| {
            StorageError::invalid_url(&endpoint, "abs: endpoint is not an http:// or https:// URL")
        })?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let sas =
            (s.sas_token.as_ref().map(|t| t.expose().to_owned())).or_else(|| env(ENV_SAS_TOKEN));
        let key = (s.account_key.as_ref().map(|k| k.expose().to_owned()))
            .or_else(|| env(ENV_ACCOUNT_KEY));
        let auth = match (sas, key, &s.account_name) {
            (Some(t), _, _) => Auth::Sas(Secret::new(t.trim().trim_start_matches('?'))),
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
            // Litestream's default credential chain (docs/storage.md#azure-credentials).
            (None, None, _) => Auth::Bearer,
        };
        let trust = if target.https {
            Trust::Roots(None)
        } else {
            Trust::PlainOnly
        };
        let pool = HttpPool::shared(trust).map_err(StorageError::config)?;
        // `path.Join(<path>, "ltx")`, as Litestream names the level directories.
        let root = if s.path.is_empty() {
            "ltx/".to_owned()
        } else {
            format!("{}/ltx/", s.path)
        };
        Ok(AbsClient {
            container: s.container.clone(),
            path: s.path.clone(),
            base: base.trim_end_matches('/').to_owned(),
            target,
            auth,
            http: Http {
                backend: "abs",
                pool,
                retry,
                kind,
                hint,
            },
            block_size: block_size.max(1),
            page_size: None,
            layout: Layout::decimal(root).with_base(if s.path.is_empty() {
                String::new()
            } else {
                format!("{}/", s.path)
            }),
        })
    }

    pub(crate) fn describe(&self, blob: Option<&str>) -> String {
        match blob {
            Some(b) => format!("abs://{}/{b}", self.container),
            None => format!("abs://{}", self.container),
        }
    }

    pub(crate) fn error(&self, r: &Request, s: Option<u16>, code: &str, m: String) -> HttpError {
        self.http
            .error(r.op, self.describe(r.blob.as_deref()), s, code, m)
    }

    pub(crate) fn status_error(
        &self,
        req: &Request,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> HttpError {
        let text = String::from_utf8_lossy(body);
        let doc = xml::parse_error(&text).unwrap_or_default();
        let code = if doc.code.is_empty() {
            header(headers, "x-ms-error-code")
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
        let mut p = format!("{}/{}", self.base, encode::component(&self.container));
        if let Some(b) = blob {
            p.push('/');
            p.push_str(&encode::key_path(b));
        }
        p
    }

    /// The request, signed; `token` is the bearer token when the auth is [`Auth::Bearer`].
    pub(crate) fn build(
        &self,
        req: &Request,
        body: ReqBody,
        token: Option<&str>,
    ) -> Result<http::Request<ReqBody>, String> {
        let path = self.path(req.blob.as_deref());
        let mut query: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode::component(v)))
            .collect();
        if let Auth::Sas(t) = &self.auth {
            query.push(t.expose().to_owned());
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
        let mut b = request_head(&req.method, &self.target, &path_and_query, &req.payload);
        match &self.auth {
            Auth::Sas(_) => {}
            Auth::SharedKey { account, key } => {
                let signed = Signed {
                    method: &req.method,
                    content_length: req.payload.len(),
                    path: &path,
                    query: &req.query,
                    headers: &headers,
                };
                b = b.header("authorization", shared_key(account, key, &signed)?);
            }
            Auth::Bearer => {
                let t = token.ok_or("abs: no token for a bearer-authenticated request")?;
                b = b.header("authorization", format!("Bearer {t}"));
            }
            Auth::Missing(why) => return Err(why.clone()),
        }
        for (k, v) in &headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(body).map_err(|e| format!("bad request: {e}"))
    }

    /// One attempt: connect (or reuse), send, wait for the response head.
    pub(crate) async fn attempt(&self, req: &Request) -> Result<Sent, HttpError> {
        let body = open_payload(&req.payload)
            .await
            .map_err(|f| self.error(req, None, "", String::new()).with_fault(f))?;
        let token = match self.auth {
            Auth::Bearer => Some(super::identity::token().await.map_err(|e| {
                self.error(req, None, "", String::new())
                    .with_fault(e.into_fault())
            })?),
            _ => None,
        };
        let http_req = self.build(req, body, token.as_deref()).map_err(|e| {
            let f = match self.auth {
                Auth::Missing(_) => Fault::Auth(e),
                _ => Fault::Local(e),
            };
            self.error(req, None, "", String::new()).with_fault(f)
        })?;
        send(&self.http.pool, &self.target, http_req, req.payload.len())
            .await
            .map_err(|f| self.error(req, None, "", String::new()).with_fault(f))
    }

    /// Sends a request with retries and reads the whole response; `ok` says which statuses
    /// besides 2xx are answers (others are errors).
    pub(crate) async fn execute_with(
        &self,
        req: &Request,
        ok: impl Fn(StatusCode) -> bool,
    ) -> Result<Response, HttpError> {
        let target = self.describe(req.blob.as_deref());
        self.http
            .run(&target, || async {
                let sent = self.attempt(req).await?;
                let resp = self.http.read(sent, req.op, || target.clone()).await?;
                if resp.status.is_success() || ok(resp.status) {
                    return Ok(resp);
                }
                Err(self.status_error(req, resp.status, &resp.headers, &resp.body))
            })
            .await
    }

    pub(crate) async fn execute(&self, req: &Request) -> Result<Response, HttpError> {
        self.execute_with(req, |_| false).await
    }

    /// Headers of a committed blob: type, tier and the timestamp metadata, as Litestream's
    /// UploadStream sets them; `If-None-Match: *` for a create-only write.
    fn blob_headers(req: Request, created_at: SystemTime, create_only: bool) -> Request {
        let req = req
            .header("x-ms-blob-content-type", "application/octet-stream")
            .header("x-ms-access-tier", "Hot")
            .header(
                "x-ms-meta-litestreamtimestamp",
                crate::timefmt::format_rfc3339_nano(created_at),
            );
        if create_only {
            req.header("if-none-match", "*")
        } else {
            req
        }
    }

    /// A create-only write refused because the blob exists (409 BlobAlreadyExists, or 412).
    fn exists_if(create_only: bool, mut e: HttpError) -> HttpError {
        if create_only && (e.status == Some(412) || e.code == "BlobAlreadyExists") {
            e.kind = ErrorKind::AlreadyExists;
        }
        e
    }

    /// Put Blob: the whole blob in one request.
    pub(crate) async fn put_blob(
        &self,
        blob: &str,
        payload: Payload,
        created_at: SystemTime,
        create_only: bool,
    ) -> Result<(), HttpError> {
        let req =
            Request::new("put blob", Method::PUT, Some(blob)).header("x-ms-blob-type", "BlockBlob");
        let mut req = Self::blob_headers(req, created_at, create_only);
        req.payload = payload;
        let r = self.execute(&req).await.map(|_| ());
        r.map_err(|e| Self::exists_if(create_only, e))
    }

    /// Put Block: one uncommitted block of a blob.
    pub(crate) async fn put_block(
        &self,
        blob: &str,
        block_id: &str,
        payload: Payload,
    ) -> Result<(), HttpError> {
        let mut req = Request::new("put block", Method::PUT, Some(blob))
            .query("comp", "block")
            .query("blockid", block_id);
        req.payload = payload;
        self.execute(&req).await.map(|_| ())
    }

    /// Put Block List: commits the blocks, in order, as the blob's content.
    pub(crate) async fn put_block_list(
        &self,
        blob: &str,
        block_ids: &[String],
        created_at: SystemTime,
        create_only: bool,
    ) -> Result<(), HttpError> {
        let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in block_ids {
            body.push_str(&format!("<Latest>{}</Latest>", xml::escape(id)));
        }
        body.push_str("</BlockList>");
        let req =
            Request::new("put block list", Method::PUT, Some(blob)).query("comp", "blocklist");
        let mut req = Self::blob_headers(req, created_at, create_only);
        req.payload = Payload::Bytes(Bytes::from(body));
        let r = self.execute(&req).await.map(|_| ());
        r.map_err(|e| Self::exists_if(create_only, e))
    }

    /// Get Blob Properties: size and timestamp metadata, or `None` if the blob is absent.
    pub(crate) async fn blob_properties(
        &self,
        blob: &str,
    ) -> Result<Option<(u64, Option<SystemTime>)>, HttpError> {
        let req = Request::new("get blob properties", Method::HEAD, Some(blob));
        match self.execute(&req).await {
            Ok(resp) => {
                let meta = "x-ms-meta-litestreamtimestamp";
                Ok(Some(size_and_created(&resp.headers, meta)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of List Blobs under `prefix`, with metadata; returns the next marker.
    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        marker: Option<&str>,
    ) -> Result<(Vec<ListedBlob>, Option<String>), HttpError> {
        let mut req = Request::new("list blobs", Method::GET, None)
            .query("restype", "container")
            .query("comp", "list")
            .query("prefix", prefix)
            .query("include", "metadata");
        if let Some(m) = marker {
            req = req.query("marker", m);
        }
        if let Some(n) = self.page_size {
            req = req.query("maxresults", n.to_string());
        }
        let listing = format!("{}/{prefix}", self.describe(None));
        let resp = self.execute(&req).await.map_err(|mut e| {
            e.target = listing.clone();
            e
        })?;
        let text = String::from_utf8_lossy(&resp.body);
        parse_list(&text).map_err(|m| {
            let mut e = self.error(&req, Some(200), "", m).fatal();
            e.target = listing;
            e
        })
    }

    /// Delete Blob; a blob (or container) already gone is not an error, as in Litestream.
    pub(crate) async fn delete_blob(&self, blob: &str) -> Result<(), HttpError> {
        let req = Request::new("delete blob", Method::DELETE, Some(blob));
        match self.execute(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.code == "ContainerNotFound" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Create Container (tests and tooling); one that exists already is fine.
    pub(crate) async fn create_container(&self) -> Result<(), HttpError> {
        let req = Request::new("create container", Method::PUT, None).query("restype", "container");
        match self.execute(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "ContainerAlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Ranged for AbsClient {
    async fn send_get(&self, get: Get<'_>) -> Result<Sent, HttpError> {
        let mut req = Request::new("get blob", Method::GET, Some(get.key));
        req.headers = get.headers("x-ms-range");
        self.attempt(&req).await
    }

    fn get_target(&self, key: &str) -> (&'static str, String) {
        ("get blob", self.describe(Some(key)))
    }

    fn status_error(&self, key: &str, status: StatusCode, h: &HeaderMap, body: &[u8]) -> HttpError {
        let req = Request::new("get blob", Method::GET, Some(key));
        AbsClient::status_error(self, &req, status, h, body)
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, HttpError> {
        Ok(self.blob_properties(key).await?.map(|(size, _)| size))
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
mod tests;
