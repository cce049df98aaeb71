//! The WebDAV protocol as a replica needs it: PROPFIND (Depth 1), PUT, MKCOL, MOVE, DELETE,
//! HEAD, and the ranged GET the shared resumable reader drives, over the shared
//! [`transport`](crate::transport) with Basic authentication.

use std::sync::atomic::AtomicBool;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::multistatus::{self, Entry};
use super::settings::Server;
use crate::backend::Layout;
use crate::error::ErrorKind;
use crate::transport::encode::{decode_lossy, segment};
use crate::transport::range::{Get, Ranged};
use crate::transport::Trust;
use crate::transport::{
    exchange, header, Http, HttpError, HttpPool, Payload, Response, RetryPolicy, Sent, Target,
};

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"#;

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
    pub(crate) fn new(op: &'static str, method: Method, path: String) -> Call {
        Call {
            op,
            method,
            path,
            headers: Vec::new(),
            payload: Payload::Empty,
        }
    }

    pub(crate) fn header(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.headers.push((k, v.into()));
        self
    }
}

fn method(name: &'static [u8]) -> Method {
    Method::from_bytes(name).unwrap_or(Method::GET)
}

/// What to check, for the errors a user can fix.
fn hint(status: Option<u16>, _code: &str, op: &str) -> &'static str {
    match (status, op) {
        (Some(401), _) => " (check webdav-username and webdav-password)",
        (Some(403), _) => " (the user may not access this path)",
        (Some(409), "create directory") => " (the directory above it is missing: check webdav-url)",
        _ => "",
    }
}

/// A WebDAV server and the replica directory on it: the `webdav`
/// [`Backend`](crate::backend::Backend).
pub struct DavClient {
    target: Target,
    /// Encoded base path of the server URL (`""` or `/dav`), and the replica directory below
    /// it, encoded.
    base: String,
    root: String,
    /// `scheme://authority`, for messages.
    origin: String,
    auth: Option<crate::Secret>,
    pub(crate) http: Http,
    pub(crate) layout: Layout,
    /// Cleared when the server answered a MOVE with 405/501: PUT to the final name then.
    pub(crate) can_move: AtomicBool,
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
    pub(crate) fn new(
        server: Server,
        dir: &[String],
        retry: RetryPolicy,
    ) -> Result<DavClient, String> {
        let trust = if server.https {
            // Go's TLS (Litestream) also trusts the PEM file SSL_CERT_FILE names.
            let ca = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
            Trust::Roots(ca.map(std::path::PathBuf::from))
        } else {
            Trust::PlainOnly
        };
        let pool = HttpPool::shared(trust)?;
        let target = Target {
            https: server.https,
            host: server.host,
            port: server.port,
        };
        let base = server.base;
        let mut root = base.clone();
        for s in dir {
            root.push('/');
            root.push_str(&segment(s));
        }
        // gowebdav sends credentials only when both are set; a user with an empty password is
        // still worth sending, since a server that needs none ignores the header.
        let auth = (!server.username.is_empty()).then(|| {
            let pair = format!("{}:{}", server.username, server.password.expose());
            crate::Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        });
        let mut c = DavClient {
            origin: format!(
                "{}://{}",
                if target.https { "https" } else { "http" },
                target.authority()
            ),
            target,
            base,
            root,
            auth,
            http: Http {
                backend: "webdav",
                pool,
                retry,
                kind: |status, _| ErrorKind::from_http(status, ""),
                hint,
            },
            layout: Layout::decimal(""),
            can_move: AtomicBool::new(true),
        };
        c.layout = Layout::decimal(c.path(&["ltx"], true)).with_base(c.path(&[], true));
        Ok(c)
    }

    /// The encoded path of `segments` below the replica directory; a collection ends in `/`.
    pub(crate) fn path(&self, segments: &[&str], collection: bool) -> String {
        let mut p = self.root.clone();
        for s in segments {
            p.push('/');
            p.push_str(&segment(s));
        }
        if collection || p.is_empty() {
            p.push('/');
        }
        p
    }

    /// The full URL of an encoded path, for messages and `Destination`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The decoded path of an `href`, which may be a path or a full URL.
    pub(crate) fn href_path(href: &str) -> String {
        let path = match href.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => href,
        };
        decode_lossy(path)
    }

    pub(crate) fn error(
        &self,
        call: &Call,
        status: Option<StatusCode>,
        message: String,
    ) -> HttpError {
        let status = status.map(|s| s.as_u16());
        let target = self.url(&call.path);
        self.http.error(call.op, target, status, "", message)
    }

    /// One attempt: a connection (new or reused), the request, the response head.
    async fn send(&self, call: &Call) -> Result<Sent, HttpError> {
        let mut headers = call.headers.clone();
        if let Some(a) = &self.auth {
            headers.push(("authorization", a.expose().to_owned()));
        }
        exchange(
            &self.http.pool,
            &self.target,
            &call.method,
            &call.path,
            &headers,
            &call.payload,
        )
        .await
        .map_err(|f| self.error(call, None, String::new()).with_fault(f))
    }

    /// Sends `call` until it gets an answer that is not worth retrying (any status: callers
    /// decide what a 404 or 409 means), or the retries run out.
    pub(crate) async fn call(&self, call: &Call) -> Result<Response, HttpError> {
        let target = self.url(&call.path);
        self.http
            .run(&target, || async {
                let sent = self.send(call).await?;
                let answer = self.http.read(sent, call.op, || target.clone()).await?;
                if ErrorKind::from_http(Some(answer.status.as_u16()), "").is_retryable() {
                    return Err(self.status_error(call, answer.status, &answer.body));
                }
                Ok(answer)
            })
            .await
    }

    /// The error for an answer the caller did not expect.
    pub(crate) fn status_error(&self, call: &Call, status: StatusCode, body: &[u8]) -> HttpError {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let reason = status.canonical_reason().unwrap_or("");
        let message = if text.is_empty() || text.len() > 200 || text.starts_with('<') {
            reason.to_owned()
        } else {
            format!("{reason}: {text}")
        };
        self.error(call, Some(status), message)
    }

    /// The members of a collection, `None` when it does not exist.
    pub(crate) async fn list(&self, path: String) -> Result<Option<Vec<Entry>>, HttpError> {
        let mut call = Call::new("list", method(b"PROPFIND"), path)
            .header("depth", "1")
            .header("content-type", "application/xml; charset=utf-8");
        call.payload = Payload::Bytes(Bytes::from_static(PROPFIND_BODY.as_bytes()));
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            207 => multistatus::parse(&String::from_utf8_lossy(&a.body))
                .map(Some)
                .map_err(|m| self.error(&call, Some(a.status), m).fatal()),
            404 => Ok(None),
            _ => Err(self.status_error(&call, a.status, &a.body)),
        }
    }

    /// PUT; `Ok(false)` when the parent collection is missing (404 or 409).
    pub(crate) async fn put(&self, path: String, payload: Payload) -> Result<bool, HttpError> {
        let mut call = Call::new("put", Method::PUT, path);
        call.payload = payload;
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            200 | 201 | 204 => Ok(true),
            404 | 409 => Ok(false),
            _ => Err(self.status_error(&call, a.status, &a.body)),
        }
    }

    /// Creates the collection `dir` (an encoded path ending in `/`), parents first when the
    /// server says one is missing. Existing collections are fine.
    pub(crate) async fn make_collections(&self, dir: &str) -> Result<(), HttpError> {
        let mkcol = method(b"MKCOL");
        let call = Call::new("create directory", mkcol.clone(), dir.to_owned());
        let a = self.call(&call).await?;
        // 405: it exists (RFC 4918 §9.3.1); 409: a parent is missing.
        match a.status.as_u16() {
            200 | 201 | 204 | 405 => return Ok(()),
            409 => {}
            _ => return Err(self.status_error(&call, a.status, &a.body)),
        }
        // From the server URL's base down.
        let below = dir.strip_prefix(&self.base).unwrap_or(dir);
        let mut path = self.base.clone();
        for s in below.split('/').filter(|s| !s.is_empty()) {
            path.push('/');
            path.push_str(s);
            let call = Call::new("create directory", mkcol.clone(), format!("{path}/"));
            let a = self.call(&call).await?;
            if !matches!(a.status.as_u16(), 200 | 201 | 204 | 405) {
                return Err(self.status_error(&call, a.status, &a.body));
            }
        }
        Ok(())
    }

    /// MOVE; `Ok(false)` when the server does not support it. Without `overwrite`, a
    /// destination that exists is refused (412, RFC 4918 §9.9.3): [`ErrorKind::AlreadyExists`].
    pub(crate) async fn rename(
        &self,
        from: String,
        to: &str,
        overwrite: bool,
    ) -> Result<bool, HttpError> {
        let call = Call::new("move", method(b"MOVE"), from)
            .header("destination", self.url(to))
            .header("overwrite", if overwrite { "T" } else { "F" });
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            200 | 201 | 204 => Ok(true),
            405 | 501 => Ok(false),
            status => {
                let mut e = self.status_error(&call, a.status, &a.body);
                e.target = format!("{} -> {}", e.target, self.url(to));
                if status == 412 && !overwrite {
                    e.kind = ErrorKind::AlreadyExists;
                }
                Err(e)
            }
        }
    }

    /// DELETE; a missing resource is already deleted.
    pub(crate) async fn delete(&self, path: String) -> Result<(), HttpError> {
        let call = Call::new("delete", Method::DELETE, path);
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            200 | 202 | 204 | 404 => Ok(()),
            _ => Err(self.status_error(&call, a.status, &a.body)),
        }
    }
}

#[async_trait]
impl Ranged for DavClient {
    async fn send_get(&self, get: Get<'_>) -> Result<Sent, HttpError> {
        let mut c = Call::new("read", Method::GET, get.key.to_owned());
        c.headers = get.headers("range");
        self.send(&c).await
    }

    fn get_target(&self, key: &str) -> (&'static str, String) {
        ("read", self.url(key))
    }

    fn status_error(&self, key: &str, status: StatusCode, _: &HeaderMap, body: &[u8]) -> HttpError {
        let call = Call::new("read", Method::GET, key.to_owned());
        DavClient::status_error(self, &call, status, body)
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, HttpError> {
        let call = Call::new("stat", Method::HEAD, key.to_owned());
        let a = self.call(&call).await?;
        match a.status.as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => {
                Ok(header(&a.headers, "content-length").and_then(|v| v.parse().ok()))
            }
            _ => Err(self.status_error(&call, a.status, &a.body)),
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
        assert_eq!(
            c.layout.level_prefix(ltx_codec::Level(0)),
            "/dav/my%20db/x/ltx/0/"
        );
        let c = client("https://h", &[]);
        assert_eq!(c.path(&[], true), "/");
        assert_eq!(c.path(&["ltx", "1", "a-b.ltx"], false), "/ltx/1/a-b.ltx");
        assert_eq!(DavClient::href_path("http://h:8/a%20b/"), "/a b/");
        assert_eq!(DavClient::href_path("/x/y"), "/x/y");
    }

    #[test]
    fn errors_name_the_url_and_hint() {
        let c = client("http://h:8/", &["db"]);
        let call = Call::new("list", Method::GET, c.path(&["ltx", "0"], true));
        let e = c.status_error(&call, StatusCode::UNAUTHORIZED, b"Unauthorized");
        assert!(!e.is_retryable());
        assert_eq!(e.kind, ErrorKind::Auth);
        let s = e.to_string();
        assert!(
            s.contains("http://h:8/db/ltx/0/") && s.contains("401"),
            "{s}"
        );
        assert!(s.contains("webdav-password"), "{s}");
        let e = c.error(&call, Some(StatusCode::SERVICE_UNAVAILABLE), String::new());
        assert!(e.is_retryable());
        assert!(c.error(&call, None, String::new()).is_retryable());
    }
}
