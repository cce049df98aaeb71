//! The GCS JSON API as a replica speaks it: bearer-token requests with retries over the shared
//! [`transport`](crate::transport), listings page by page, object metadata, deletes, and the
//! ranged media download the shared resumable reader drives (pinned to a generation).

use std::collections::HashMap;

use async_trait::async_trait;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use super::auth::TokenSource;
use crate::backend::Layout;
use crate::error::ErrorKind;
use crate::transport::pool::parse_http_url;
use crate::transport::range::{Get, Ranged};
use crate::transport::{
    encode, exchange, header, Fault, Http, HttpError, HttpPool, Payload, Response, RetryPolicy,
    Sent, Target,
};

/// Resumable upload chunks must be multiples of this.
pub(crate) const CHUNK_GRANULE: u64 = 256 * 1024;
/// Bodies at least this long go up in resumable chunks of this size; smaller ones in one
/// multipart request.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;

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

/// What to check, for the errors a user can fix.
fn hint(status: Option<u16>, _code: &str, _op: &str) -> &'static str {
    match status {
        Some(401) => {
            " (the credentials were refused: check GOOGLE_APPLICATION_CREDENTIALS or the gcloud \
             application default credentials)"
        }
        Some(403) => " (the credentials may not act on this bucket or object)",
        _ => "",
    }
}

/// A GCS bucket and the replica path in it: the `gs` [`Backend`](crate::backend::Backend).
pub struct GcsClient {
    pub(crate) bucket: String,
    /// The replica path as written (Litestream joins it with `path.Join`).
    pub(crate) path: String,
    base: Target,
    base_path: String,
    pub(crate) http: Http,
    auth: TokenSource,
    /// Objects per listing page (the service's maximum and default is 1000).
    pub(crate) page_size: u32,
    /// Resumable chunk size, and the size from which uploads are resumable.
    pub(crate) chunk_size: u64,
    pub(crate) layout: Layout,
}

impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsClient")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("endpoint", &self.base.authority())
            .finish_non_exhaustive()
    }
}

impl GcsClient {
    /// `endpoint` is the API root (`https://storage.googleapis.com` or an emulator's URL).
    pub(crate) fn new(
        bucket: String,
        path: String,
        endpoint: &str,
        auth: TokenSource,
        pool: std::sync::Arc<HttpPool>,
        retry: RetryPolicy,
    ) -> Result<GcsClient, String> {
        let (base, base_path) = parse_http_url(endpoint)
            .ok_or_else(|| format!("gs: invalid endpoint URL {endpoint:?}"))?;
        // `path.Join(<path>, "ltx")`, as Litestream lists a level.
        let root = if path.is_empty() {
            "ltx/".to_owned()
        } else {
            format!("{}/", super::clean_path(&format!("{path}/ltx")))
        };
        let replica_dir = match super::clean_path(&path) {
            p if p.is_empty() => p,
            p => format!("{p}/"),
        };
        Ok(GcsClient {
            bucket,
            path,
            base,
            base_path: base_path.trim_end_matches('/').to_owned(),
            http: Http {
                backend: "gs",
                pool,
                retry,
                kind: |status, _| ErrorKind::from_http(status, ""),
                hint,
            },
            auth,
            page_size: 1000,
            chunk_size: DEFAULT_CHUNK_SIZE,
            layout: Layout::decimal(root).with_base(replica_dir),
        })
    }

    pub(crate) fn describe(&self, object: Option<&str>) -> String {
        match object {
            Some(o) => format!("gs://{}/{o}", self.bucket),
            None => format!("gs://{}", self.bucket),
        }
    }

    pub(crate) fn request(
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

    pub(crate) fn object_path(&self, name: &str) -> String {
        format!(
            "/storage/v1/b/{}/o/{}",
            encode::component(&self.bucket),
            encode::component(name)
        )
    }

    pub(crate) fn error(&self, req: &Request, status: Option<u16>, message: String) -> HttpError {
        let target = self.describe(req.object.as_deref());
        let mut e = self.http.error(req.op, target, status, "", message);
        if status == Some(404) && req.object.is_none() {
            // A missing bucket is a setting to fix, not a missing object.
            e.kind = ErrorKind::Fatal;
        }
        e
    }

    pub(crate) fn status_error(&self, req: &Request, status: StatusCode, body: &[u8]) -> HttpError {
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
    pub(crate) fn fault(&self, req: &Request, f: Fault) -> HttpError {
        self.error(req, None, String::new()).with_fault(f)
    }

    /// Sends a request with retries and reads the whole response. Statuses other than 2xx
    /// and `req.accept` are errors.
    pub(crate) async fn execute(&self, req: &Request) -> Result<Response, HttpError> {
        let target = self.describe(req.object.as_deref());
        self.http
            .run(&target, || async {
                let resp = self.attempt(req).await?;
                if resp.status.is_success() || req.accept.contains(&resp.status.as_u16()) {
                    return Ok(resp);
                }
                Err(self.status_error(req, resp.status, &resp.body))
            })
            .await
    }

    /// The request's headers plus authorization.
    async fn authorized(&self, req: &Request) -> Result<Vec<(&'static str, String)>, Fault> {
        let mut headers = req.headers.clone();
        match self.auth.token(&self.http.pool).await {
            Ok(Some(t)) => headers.push(("authorization", format!("Bearer {t}"))),
            Ok(None) => {}
            Err(e) => return Err(e.into_fault()),
        }
        Ok(headers)
    }

    /// One attempt: the head of the answer.
    pub(crate) async fn send_head(&self, req: &Request) -> Result<Sent, HttpError> {
        let r = async {
            let headers = self.authorized(req).await?;
            exchange(
                &self.http.pool,
                &req.target,
                &req.method,
                &req.path,
                &headers,
                &req.payload,
            )
            .await
        };
        r.await.map_err(|f| self.fault(req, f))
    }

    /// One attempt, read whole.
    pub(crate) async fn attempt(&self, req: &Request) -> Result<Response, HttpError> {
        let sent = self.send_head(req).await?;
        let target = || self.describe(req.object.as_deref());
        self.http.read(sent, req.op, target).await
    }

    /// One page of the objects whose names start with `prefix`.
    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<Page, HttpError> {
        let mut path = format!(
            "/storage/v1/b/{}/o?prefix={}&maxResults={}&fields={}",
            encode::component(&self.bucket),
            encode::component(prefix),
            self.page_size,
            encode::component(LIST_FIELDS)
        );
        if let Some(t) = token {
            path.push_str(&format!("&pageToken={}", encode::component(t)));
        }
        let req = self.request("list objects", Method::GET, None, path);
        let resp = self.execute(&req).await?;
        let list: ListResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            self.error(&req, None, format!("unreadable listing: {e}"))
                .fatal()
        })?;
        Ok(Page {
            objects: list.items,
            next_token: list.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// The object's size, or `None` when it does not exist.
    pub(crate) async fn object_size(&self, name: &str) -> Result<Option<u64>, HttpError> {
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

    /// Deletes one object; `Ok(false)` when it was already gone.
    pub(crate) async fn delete(&self, name: &str) -> Result<bool, HttpError> {
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

#[async_trait]
impl Ranged for GcsClient {
    async fn send_get(&self, get: Get<'_>) -> Result<Sent, HttpError> {
        let mut path = format!("{}?alt=media", self.object_path(get.key));
        if let Some(g) = get.version {
            path.push_str(&format!("&generation={}", encode::component(g)));
        }
        let mut req = self.request("get object", Method::GET, Some(get.key), path);
        // Pinned by generation in the path, not by ETag.
        let unpinned = Get {
            version: None,
            ..get
        };
        req.headers.extend(unpinned.headers("range"));
        self.send_head(&req).await
    }

    /// Reads are pinned to the generation first served.
    fn version(&self, headers: &HeaderMap) -> Option<String> {
        header(headers, "x-goog-generation").map(str::to_owned)
    }

    fn get_target(&self, key: &str) -> (&'static str, String) {
        ("get object", self.describe(Some(key)))
    }

    fn status_error(&self, key: &str, status: StatusCode, _: &HeaderMap, body: &[u8]) -> HttpError {
        let req = self.request("get object", Method::GET, Some(key), String::new());
        GcsClient::status_error(self, &req, status, body)
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, HttpError> {
        self.object_size(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
