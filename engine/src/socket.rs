//! The control socket (`socket.enabled`, docs/config-and-cli.md#control-socket): HTTP/1.1 on a Unix
//! socket, with Litestream 0.5.17's endpoints, JSON bodies and status codes (its `server.go`).
//!
//! | endpoint | does |
//! |---|---|
//! | `POST /start` `{path, timeout}` | starts a stopped database |
//! | `POST /stop` `{path, timeout}` | stops a database after its final sync |
//! | `POST /sync` `{path, wait, timeout}` | a sync pass now; with `wait`, until the replica has it
//! |
//! | `POST /register` `{path, replica_url}` | replicates a new database |
//! | `POST /unregister` `{path, timeout}` | stops (final sync) and forgets a database |
//! | `GET /txid?path=` | the local TXID |
//! | `GET /list`, `GET /info` | databases; version, pid, uptime |
//!
//! Errors are `{"error": …}` with Litestream's codes: 400 for a bad request, 404 for an
//! unknown database on `/sync` and `/txid`, 409 for `/sync` on a stopped one, 500 otherwise
//! (including an unknown database on `/start` and `/stop`, as there).
//!
//! Databases are started and stopped through the same [`Registry`] as the configured ones and
//! the watched directories. An idle socket is one task parked in `accept`.

use std::convert::Infallible;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ltx_codec::TxId;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tracing::{debug, info, warn};

use crate::config::{self, SocketConfig};
use crate::replicate::Registry;
use crate::sockfile::{bind_with_mode, Access};

/// Request bodies are a few hundred bytes of JSON; larger ones are refused (413) unread.
const MAX_BODY: usize = 64 << 10;

/// The version `/info` reports: Litestream's CLI prints `Litestream <version>`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A bound control socket; [`ControlServer::serve`] answers on it.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    ino: u64,
    access: Access,
    state: Arc<State>,
}

struct State {
    registry: Arc<Registry>,
    started: SystemTime,
}

impl ControlServer {
    /// Binds `socket.path` with `socket.permissions`. A socket file left behind by a process
    /// that is gone is replaced; one that still answers, or a file that is not a socket, is an
    /// error naming the key.
    pub fn bind(cfg: &SocketConfig, registry: Arc<Registry>) -> Result<ControlServer, String> {
        let path = &cfg.path;
        let err = |msg: String| format!("config key socket.path: {}: {msg}", path.display());
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(err("another process is listening on this socket".into()));
                }
                std::fs::remove_file(path)
                    .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
                info!(path = %path.display(), "removed stale control socket");
            }
            Ok(_) => return Err(err("the path exists but is not a socket".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e.to_string())),
        }
        // Created with its mode before it appears at `path`: no moment with umask's mode.
        let listener = bind_with_mode(path, cfg.permissions).map_err(|e| {
            format!(
                "config key socket.path: {}: cannot listen with socket.permissions {:o}: {e}",
                path.display(),
                cfg.permissions
            )
        })?;
        let access = Access::of(path, cfg.permissions).map_err(|e| err(e.to_string()))?;
        let ino = std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0);
        info!(path = %path.display(), "control socket listening");
        Ok(ControlServer {
            listener,
            path: path.clone(),
            ino,
            access,
            state: Arc::new(State {
                registry,
                started: SystemTime::now(),
            }),
        })
    }

    /// Serves until `shutdown`, then removes the socket file (if it is still this one).
    pub async fn serve(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let stream = tokio::select! {
                _ = crate::replicate::stopped(&mut shutdown) => break,
                r = self.listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        warn!(error = %e, "control socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let state = self.state.clone();
            let allowed = self.peer_allowed(&stream);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move {
                        Ok::<_, Infallible>(if allowed {
                            handle(&state, req).await
                        } else {
                            error(
                                StatusCode::FORBIDDEN,
                                "permission denied: socket.permissions do not allow this user",
                            )
                        })
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .max_buf_size(crate::http::MAX_HEAD)
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    debug!(error = %e, "control connection ended");
                }
            });
        }
        self.remove_file();
    }

    /// Whether the peer's user may use the socket (see [`Access`]); a refusal is logged.
    fn peer_allowed(&self, stream: &tokio::net::UnixStream) -> bool {
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "control socket: cannot read the peer's credentials; refusing it");
                return false;
            }
        };
        let ok = self.access.allows(cred.uid(), cred.gid(), cred.pid());
        if !ok {
            warn!(
                uid = cred.uid(),
                pid = cred.pid(),
                permissions = %format!("{:o}", self.access.mode()),
                "control socket: refused a connection from another user (socket.permissions do not allow it)"
            );
        }
        ok
    }

    fn remove_file(&self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                warn!(path = %self.path.display(), error = %e, "cannot remove control socket");
            }
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn json_resp(status: StatusCode, v: &impl Serialize) -> Resp {
    // Go's json.Encoder ends the document with a newline.
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Litestream's `ErrorResponse`.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<String>,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Resp {
    let body = ErrorBody {
        error: msg.into(),
        details: None,
    };
    json_resp(status, &body)
}

fn error_details(status: StatusCode, msg: &str, details: String) -> Resp {
    let body = ErrorBody {
        error: msg.into(),
        details: Some(details),
    };
    json_resp(status, &body)
}

fn plain(status: StatusCode, text: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(st: &State, req: Request<hyper::body::Incoming>) -> Resp {
    let route = match req.uri().path() {
        "/start" | "/stop" | "/sync" | "/register" | "/unregister" => Method::POST,
        "/txid" | "/list" | "/info" | "/debug/sync-status" => Method::GET,
        _ => return plain(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    // Go's ServeMux: GET patterns also answer HEAD; a wrong method is a 405 with Allow.
    let method = req.method().clone();
    if method != route && !(route == Method::GET && method == Method::HEAD) {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        let allow = if route == Method::GET {
            "GET, HEAD"
        } else {
            "POST"
        };
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    if route == Method::GET {
        return match path.as_str() {
            "/txid" => txid(st, query.as_deref()),
            "/list" => list(st),
            "/debug/sync-status" => sync_status(st, query.as_deref()),
            _ => info(st),
        };
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return error_details(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
                format!("the limit is {MAX_BODY} bytes"),
            )
        }
        Err(e) => {
            return error_details(
                StatusCode::BAD_REQUEST,
                "invalid request body",
                e.to_string(),
            )
        }
    };
    let parsed: Result<Body, _> = if body.iter().all(u8::is_ascii_whitespace) {
        // What Go's decoder says of an empty body.
        return error_details(
            StatusCode::BAD_REQUEST,
            "invalid request body",
            "EOF".into(),
        );
    } else {
        serde_json::Deserializer::from_slice(&body)
            .into_iter::<Body>()
            .next()
            .unwrap_or_else(|| serde_json::from_slice(b"null"))
    };
    let b = match parsed {
        Ok(b) => b,
        Err(e) => {
            return error_details(
                StatusCode::BAD_REQUEST,
                "invalid request body",
                e.to_string(),
            )
        }
    };
    if b.path.is_empty() {
        return error(StatusCode::BAD_REQUEST, "path required");
    }
    if path == "/register" && b.replica_url.is_empty() {
        return error(StatusCode::BAD_REQUEST, "replica_url required");
    }
    let db = match config::expand_path(&b.path) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid path: {e}")),
    };
    match path.as_str() {
        "/start" => start(st, &db),
        "/stop" => stop(st, &db, b.timeout).await,
        "/sync" => sync(st, &db, b.wait, b.timeout).await,
        "/register" => register(st, &db, &b.replica_url),
        _ => unregister(st, &db, b.timeout).await,
    }
}

/// The union of the POST bodies; unknown fields are ignored, as Go's decoder does. No `Debug`:
/// `replica_url` may hold a password.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Body {
    path: String,
    timeout: i64,
    wait: bool,
    replica_url: String,
}

fn seconds(timeout: i64, default: u64) -> Duration {
    Duration::from_secs(
        u64::try_from(timeout)
            .ok()
            .filter(|&t| t > 0)
            .unwrap_or(default),
    )
}

fn not_found(db: &Path) -> String {
    format!("database not found: {}", db.display())
}

/// `/start`, `/stop` and `/unregister` answers (fields in Litestream's order).
#[derive(Serialize)]
struct StatusTxid<'a> {
    status: &'a str,
    path: &'a Path,
    txid: u64,
}

fn start_stop(status: &str, db: &Path, txid: TxId) -> Resp {
    json_resp(
        StatusCode::OK,
        &StatusTxid {
            status,
            path: db,
            txid: txid.0,
        },
    )
}

#[derive(Serialize)]
struct TxidResponse {
    txid: u64,
}

#[derive(Serialize)]
struct StatusPath<'a> {
    status: &'a str,
    path: &'a Path,
}

#[derive(Serialize)]
struct SyncResponse<'a> {
    status: &'a str,
    path: &'a Path,
    txid: u64,
    replicated_txid: u64,
}

#[derive(Serialize)]
struct Summary {
    path: PathBuf,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sync_at: Option<String>,
}

#[derive(Serialize)]
struct ListResponse {
    databases: Vec<Summary>,
}

#[derive(Serialize)]
struct InfoResponse {
    version: &'static str,
    pid: u32,
    uptime_seconds: u64,
    started_at: String,
    database_count: usize,
}

fn start(st: &State, db: &Path) -> Resp {
    match st.registry.start(db) {
        None => error(StatusCode::INTERNAL_SERVER_ERROR, not_found(db)),
        Some(started) => {
            if started {
                info!(db = %db.display(), "replication started via control socket");
            }
            let txid = st
                .registry
                .get(db)
                .map_or(TxId::ZERO, |v| v.handle.local_txid());
            let status = if started {
                "started"
            } else {
                "already_running"
            };
            start_stop(status, db, txid)
        }
    }
}

/// Waits for a stopping task; past `limit` it is left to finish in the background.
async fn await_stop(
    st: &State,
    db: &Path,
    mut task: tokio::task::JoinHandle<bool>,
    limit: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(format!(
            "close database {}: final sync failed",
            db.display()
        )),
        Ok(Err(e)) => Err(format!("close database {}: {e}", db.display())),
        Err(_) => {
            st.registry.detach(db.to_path_buf(), task);
            Err("context deadline exceeded".into())
        }
    }
}

async fn stop(st: &State, db: &Path, timeout: i64) -> Resp {
    let Some(task) = st.registry.stop(db) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, not_found(db));
    };
    let status = match task {
        None => "already_stopped",
        Some(task) => {
            info!(db = %db.display(), "stopping replication via control socket");
            if let Err(e) = await_stop(st, db, task, seconds(timeout, 30)).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
            "stopped"
        }
    };
    let txid = st
        .registry
        .get(db)
        .map_or(TxId::ZERO, |v| v.handle.local_txid());
    start_stop(status, db, txid)
}

async fn sync(st: &State, db: &Path, wait: bool, timeout: i64) -> Resp {
    let Some(view) = st.registry.get(db) else {
        return error(StatusCode::NOT_FOUND, not_found(db));
    };
    let not_open = || {
        error(
            StatusCode::CONFLICT,
            format!("database not open: {}", db.display()),
        )
    };
    if !view.running {
        return not_open();
    }
    let h = view.handle;
    let before = h.local_txid();
    let work = async {
        let Some(rx) = h.request_sync() else {
            return Err(None);
        };
        let txid = match rx.await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(Some(format!("sync database: {e}"))),
            Err(_) => return Err(None),
        };
        if wait {
            h.wait_replicated(txid).await;
        }
        Ok(txid)
    };
    // No deadline without `wait` or `timeout`, as Litestream.
    let limit = if wait || timeout > 0 {
        Some(seconds(timeout, 30))
    } else {
        None
    };
    let r = match limit {
        Some(l) => match tokio::time::timeout(l, work).await {
            Ok(r) => r,
            Err(_) => Err(Some("sync database: context deadline exceeded".into())),
        },
        None => work.await,
    };
    let txid = match r {
        Ok(t) => t,
        Err(None) => return not_open(),
        Err(Some(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let status = if txid <= before {
        "no_change"
    } else if wait {
        "synced"
    } else {
        "synced_local"
    };
    json_resp(
        StatusCode::OK,
        &SyncResponse {
            status,
            path: db,
            txid: txid.0,
            replicated_txid: h.replicated_txid().0,
        },
    )
}

fn register(st: &State, db: &Path, url: &str) -> Resp {
    if st.registry.contains(db) {
        return json_resp(
            StatusCode::OK,
            &StatusPath {
                status: "already_registered",
                path: db,
            },
        );
    }
    let Some(db_str) = db.to_str() else {
        return error(StatusCode::BAD_REQUEST, "invalid path: not valid UTF-8");
    };
    let cfg = match config::from_args(db_str, url) {
        Ok(mut c) if c.dbs.len() == 1 => c.dbs.remove(0),
        Ok(_) => return error(StatusCode::BAD_REQUEST, "invalid replica url"),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid replica url: {e}")),
    };
    if let Err(e) = st.registry.add(cfg) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to register database: {e}"),
        );
    }
    info!(db = %db.display(), replica = %storage::redact_url(url), "database registered via control socket");
    json_resp(
        StatusCode::OK,
        &StatusPath {
            status: "registered",
            path: db,
        },
    )
}

async fn unregister(st: &State, db: &Path, timeout: i64) -> Resp {
    let view = st.registry.get(db);
    let Some(task) = st.registry.remove(db) else {
        return start_stop("already_unregistered", db, TxId::ZERO);
    };
    if let Some(task) = task {
        if let Err(e) = await_stop(st, db, task, seconds(timeout, 30)).await {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to unregister database: {e}"),
            );
        }
    }
    info!(db = %db.display(), "database unregistered via control socket");
    let txid = view.map_or(TxId::ZERO, |v| v.handle.local_txid());
    start_stop("unregistered", db, txid)
}

/// The `path` query value as Go's `url.Query` decodes it (`%XX`, `+` as a space); empty when
/// absent.
fn path_param(query: Option<&str>) -> String {
    query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find_map(|(k, v)| (k == "path").then(|| v.into_owned()))
        .unwrap_or_default()
}

#[derive(Serialize)]
struct SyncStatusResponse {
    databases: Vec<crate::sync_status::Diagnostic>,
}

/// Every database's sync status, or the one named by `path` (404 if it is not replicated).
fn sync_status(st: &State, query: Option<&str>) -> Resp {
    let path = path_param(query);
    let report = |p: &Path| {
        crate::metrics::db(p)
            .sync_status
            .report(p.display().to_string())
    };
    let databases = if path.is_empty() {
        st.registry.list().iter().map(|v| report(&v.path)).collect()
    } else {
        let db = match config::expand_path(&path) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid path: {e}")),
        };
        if !st.registry.contains(&db) {
            return error(StatusCode::NOT_FOUND, "database not found");
        }
        vec![report(&db)]
    };
    json_resp(StatusCode::OK, &SyncStatusResponse { databases })
}

fn txid(st: &State, query: Option<&str>) -> Resp {
    let path = path_param(query);
    if path.is_empty() {
        return error(StatusCode::BAD_REQUEST, "path required");
    }
    let db = match config::expand_path(&path) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid path: {e}")),
    };
    match st.registry.get(&db) {
        None => error(StatusCode::NOT_FOUND, "database not found"),
        Some(v) => json_resp(
            StatusCode::OK,
            &TxidResponse {
                txid: v.handle.local_txid().0,
            },
        ),
    }
}

fn list(st: &State) -> Resp {
    let databases = st
        .registry
        .list()
        .into_iter()
        .map(|v| Summary {
            status: if v.running { "replicating" } else { "stopped" },
            last_sync_at: v
                .handle
                .last_sync_at()
                .map(storage::timefmt::format_rfc3339_nano),
            path: v.path,
        })
        .collect();
    json_resp(StatusCode::OK, &ListResponse { databases })
}

fn info(st: &State) -> Resp {
    let uptime = SystemTime::now()
        .duration_since(st.started)
        .unwrap_or_default()
        .as_secs();
    json_resp(
        StatusCode::OK,
        &InfoResponse {
            version: VERSION,
            pid: std::process::id(),
            uptime_seconds: uptime,
            started_at: storage::timefmt::format_rfc3339_nano(st.started),
            database_count: st.registry.list().len(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode() {
        assert_eq!(path_param(Some("path=/a%20b+c")), "/a b c");
        assert_eq!(path_param(Some("x=1&path=%2Ftmp%2Fx.db")), "/tmp/x.db");
        assert_eq!(path_param(Some("path=bad%zz%")), "bad%zz%");
        assert_eq!(path_param(Some("paths=/x")), "");
        assert_eq!(path_param(None), "");
    }

    #[test]
    fn timeouts_default() {
        assert_eq!(seconds(0, 30), Duration::from_secs(30));
        assert_eq!(seconds(-5, 30), Duration::from_secs(30));
        assert_eq!(seconds(7, 30), Duration::from_secs(7));
    }
}
