//! The MCP server on `mcp-addr` (docs/config-and-cli.md#control-socket), as Litestream 0.5.17
//! serves it (`cmd/litestream/mcp.go` on mcp-go v0.32.0's Streamable-HTTP transport, mounted on
//! every path).
//!
//! * `POST` with `Content-Type: application/json` carries one JSON-RPC 2.0 message. Requests
//!   are answered with one JSON object; notifications and responses with `202 Accepted`.
//!   `initialize` hands out an `Mcp-Session-Id` (`mcp-session-<uuid>`); every other POST must
//!   carry a well-formed one, which is not otherwise checked (mcp-go keeps no sessions).
//! * `GET` opens the server-to-client event stream (`202`, `text/event-stream`); this server
//!   never sends anything on it, so it stays open, silent, until the client goes.
//! * `DELETE` ends a session: always `200`. Other methods: `404`.
//!
//! The tools ([`tools`]) run this executable's own commands with the arguments Litestream's
//! tools give the `litestream` binary, and answer with their combined stdout and stderr; a
//! failing command gives an error result `<output>: exit status N`.
//!
//! Unlike Litestream's server, every request first passes [`guard`] (`Host`/`Origin` against
//! DNS rebinding, the optional bearer token); a client's arguments can never become flags;
//! the `config` argument can only name the config `replicate` runs with; restores write only a
//! new file where [`output`] allows; `mcp-addr` without a host listens on loopback only.
//!
//! An idle server is one task parked in `accept`: no timers, no polling.

mod guard;
mod output;
mod tools;

pub use guard::{McpConfig, Token, TOKEN_ENV};

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;

use tracing::{info, warn};

use crate::config::Config;
use crate::http::{bind_key, parse_addr, AddrError, NoHost};
use guard::Guard;
use output::OutDirs;
use tools::{tool_list, Args, ToolsList, TOOLS};

const SERVER_NAME: &str = "Litestream MCP Server";
const SERVER_VERSION: &str = "1.0.0";
const LATEST_PROTOCOL_VERSION: &str = "2025-03-26";
const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", LATEST_PROTOCOL_VERSION];
const SESSION_HEADER: &str = "mcp-session-id";
const SESSION_PREFIX: &str = "mcp-session-";
/// Larger request bodies are refused with 413 (mcp-go reads any size); tool calls are small.
const MAX_BODY: usize = 1 << 20;

const PARSE_ERROR: i32 = -32700;
const INVALID_REQUEST: i32 = -32600;
const METHOD_NOT_FOUND: i32 = -32601;
const INVALID_PARAMS: i32 = -32602;
const INTERNAL_ERROR: i32 = -32603;

/// What the tools need: the executable to run, the config `replicate` read (and whether it
/// expanded `$VARS` in it), and where restores may write.
pub(crate) struct Ctx {
    exe: PathBuf,
    config: String,
    expand_env: bool,
    outputs: OutDirs,
}

/// A problem setting up the MCP server, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// `mcp-addr` is malformed or cannot be listened on.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// `mcp-restore-dir` could not be resolved to a canonical path (for example, it is missing).
    #[error("config key mcp-restore-dir: {}: {source}", path.display())]
    RestoreDir {
        /// The configured `mcp-restore-dir`.
        path: PathBuf,
        /// The error from resolving it.
        #[source]
        source: std::io::Error,
    },
}

/// A bound MCP listener; [`McpServer::serve`] answers on it.
pub struct McpServer {
    listener: TcpListener,
    ctx: Arc<Ctx>,
    guard: Arc<Guard>,
}

impl McpServer {
    /// Binds `addr` (the `mcp-addr` key; without a host, 127.0.0.1 only). `config` is the
    /// config file path the tools pass on with `-config`, as `replicate` resolved it, and
    /// `expand_env` whether it expands `$VARS` there; `cfg` gives the MCP keys and the
    /// databases whose directories restores may write to by default. The bearer token is
    /// `$LS_MCP_TOKEN`, else `mcp-token`.
    pub async fn bind(
        addr: &str,
        cfg: &Config,
        config: String,
        expand_env: bool,
    ) -> Result<McpServer, McpError> {
        let listener = bind_key("mcp-addr", addr, NoHost::Loopback).await?;
        let exe = std::env::current_exe().map_err(|source| AddrError::Bind {
            key: "mcp-addr",
            addr: addr.to_owned(),
            source,
        })?;
        let outputs =
            OutDirs::of(cfg).map_err(|(path, source)| McpError::RestoreDir { path, source })?;
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .and_then(Token::non_empty)
            .or_else(|| cfg.mcp.token.clone());
        let host = parse_addr(addr).map(|(h, _)| h).unwrap_or_default();
        let guard = Guard::new(&cfg.mcp, token, &host);
        let local = listener.local_addr().ok();
        if host.is_empty() {
            info!(
                addr,
                "mcp-addr has no host: MCP listens on loopback (127.0.0.1) only; write 0.0.0.0{addr} to listen on every interface"
            );
        } else if !guard.has_token() && local.is_some_and(|a| !a.ip().is_loopback()) {
            warn!(
                addr,
                "MCP listens beyond loopback without a bearer token (mcp-token or {TOKEN_ENV}): whoever reaches it can run its tools"
            );
        }
        if guard.has_token() {
            info!("MCP requests need the bearer token");
        }
        Ok(McpServer {
            listener,
            ctx: Arc::new(Ctx {
                exe,
                config,
                expand_env,
                outputs,
            }),
            guard: Arc::new(guard),
        })
    }

    /// The address the listener is bound to (with the actual port when `mcp-addr` asked for 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the runtime stops.
    pub async fn serve(self) {
        let (ctx, guard) = (self.ctx, self.guard);
        crate::http::serve_with(self.listener, "MCP", move |req| {
            let (ctx, guard) = (ctx.clone(), guard.clone());
            async move { Ok::<_, Infallible>(handle(&ctx, &guard, req).await) }
        })
        .await
    }
}

/// A whole response body, or the never-ending one of the `GET` event stream.
pub enum McpBody {
    /// The whole body, taken as its only frame; `None` once sent or when empty.
    Full(Option<Bytes>),
    /// The `GET` event stream's body: it never yields a frame.
    Silent,
}

impl Body for McpBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            McpBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            McpBody::Silent => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, McpBody::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            McpBody::Full(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            McpBody::Silent => hyper::body::SizeHint::default(),
        }
    }
}

fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Vec<u8>,
) -> Response<McpBody> {
    let body = if body.is_empty() {
        None
    } else {
        Some(Bytes::from(body))
    };
    let mut resp = Response::new(McpBody::Full(body));
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

/// Go's `http.Error`: a plain-text line.
fn text_error(status: StatusCode, msg: &str) -> Response<McpBody> {
    let mut resp = response(
        status,
        Some("text/plain; charset=utf-8"),
        format!("{msg}\n").into_bytes(),
    );
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<McpBody> {
    response(status, Some("application/json"), body)
}

async fn handle(
    ctx: &Ctx,
    guard: &Guard,
    req: Request<hyper::body::Incoming>,
) -> Response<McpBody> {
    if let Err((status, msg)) = guard.check(req.headers()) {
        let mut resp = text_error(status, msg);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        return resp;
    }
    match *req.method() {
        Method::POST => handle_post(ctx, req).await,
        Method::GET => {
            let mut resp = Response::new(McpBody::Silent);
            *resp.status_mut() = StatusCode::ACCEPTED;
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert("cache-control", HeaderValue::from_static("no-cache"));
            h.insert("connection", HeaderValue::from_static("keep-alive"));
            resp
        }
        Method::DELETE => response(StatusCode::OK, None, Vec::new()),
        _ => text_error(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

async fn handle_post(ctx: &Ctx, req: Request<hyper::body::Incoming>) -> Response<McpBody> {
    let ct = req.headers().get(CONTENT_TYPE).map(|v| v.as_bytes());
    if ct != Some(b"application/json") {
        return text_error(
            StatusCode::BAD_REQUEST,
            "Invalid content type: must be 'application/json'",
        );
    }
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let raw = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return text_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        Err(e) => {
            let msg = format!("read request body error: {e}");
            return json_response(
                StatusCode::BAD_REQUEST,
                error_body(&Value::Null, PARSE_ERROR, &msg),
            );
        }
    };
    // mcp-go first reads the body into `struct { method string }`: JSON null passes,
    // anything else that is not an object with a string (or null) method does not.
    let msg: Value = match serde_json::from_slice(&raw) {
        Ok(v @ (Value::Object(_) | Value::Null))
            if matches!(v.get("method"), None | Some(Value::String(_) | Value::Null)) =>
        {
            v
        }
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                error_body(&Value::Null, PARSE_ERROR, "request body is not valid json"),
            )
        }
    };
    let is_initialize = msg.get("method").and_then(Value::as_str) == Some("initialize");
    let new_session = if is_initialize {
        Some(format!("{SESSION_PREFIX}{}", new_uuid()))
    } else {
        if !valid_session(&session) {
            return text_error(StatusCode::BAD_REQUEST, "Invalid session ID");
        }
        None
    };
    match handle_message(ctx, &msg).await {
        None => response(StatusCode::ACCEPTED, None, Vec::new()),
        Some(body) => {
            let mut resp = json_response(StatusCode::OK, body);
            if let Some(id) = new_session {
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert("Mcp-Session-Id", v);
                }
            }
            resp
        }
    }
}

/// mcp-go's `MCPServer.HandleMessage`: the answer to one message, `None` for a notification
/// or a response.
async fn handle_message(ctx: &Ctx, msg: &Value) -> Option<Vec<u8>> {
    let field = |k: &'static str| member(Some(msg), k);
    // `struct { jsonrpc, method string; id, result any }`: wrong types fail to decode.
    let str_ok = |k: &'static str| matches!(field(k), None | Some(Value::String(_)));
    if !str_ok("jsonrpc") || !str_ok("method") {
        return Some(error_body(
            &Value::Null,
            PARSE_ERROR,
            "Failed to parse message",
        ));
    }
    let id = field("id").cloned().unwrap_or(Value::Null);
    if field("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error_body(&id, INVALID_REQUEST, "Invalid JSON-RPC version"));
    }
    if id.is_null() {
        // A notification (`notifications/initialized` and the like): nothing to do, but its
        // params must decode as an object.
        if !matches!(field("params"), None | Some(Value::Object(_))) {
            return Some(error_body(
                &Value::Null,
                PARSE_ERROR,
                "Failed to parse notification",
            ));
        }
        return None;
    }
    if field("result").is_some() {
        return None;
    }
    let method = field("method").and_then(Value::as_str).unwrap_or("");
    let params = member(Some(msg), "params");
    let unparsable = |detail: &str| {
        Some(error_body(
            &id,
            INVALID_REQUEST,
            &format!("unparsable {method} request: {detail}"),
        ))
    };
    if !matches!(params, None | Some(Value::Object(_))) {
        return unparsable("params is not an object");
    }
    match method {
        "initialize" => {
            let version = match member(params, "protocolVersion") {
                None => "",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return unparsable("protocolVersion is not a string"),
            };
            let version = PROTOCOL_VERSIONS
                .iter()
                .find(|v| **v == version)
                .unwrap_or(&LATEST_PROTOCOL_VERSION);
            Some(ok_body(
                &id,
                InitializeResult {
                    protocol_version: version,
                    capabilities: Capabilities {
                        logging: Empty {},
                        tools: Empty {},
                    },
                    server_info: ServerInfo {
                        name: SERVER_NAME,
                        version: SERVER_VERSION,
                    },
                },
            ))
        }
        "ping" => Some(ok_body(&id, Empty {})),
        "logging/setLevel" => Some(error_body(
            &id,
            INTERNAL_ERROR,
            "session does not support setting logging level",
        )),
        "resources/list" | "resources/templates/list" | "resources/read" => {
            Some(error_body(&id, METHOD_NOT_FOUND, "resources not supported"))
        }
        "prompts/list" | "prompts/get" => {
            Some(error_body(&id, METHOD_NOT_FOUND, "prompts not supported"))
        }
        "tools/list" => Some(ok_body(&id, ToolsList { tools: tool_list() })),
        "tools/call" => {
            let name = match member(params, "name") {
                None => "",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return unparsable("name is not a string"),
            };
            let Some(tool) = TOOLS.iter().find(|t| t.name == name) else {
                let msg = format!("tool '{name}' not found: tool not found");
                return Some(error_body(&id, INVALID_PARAMS, &msg));
            };
            let args = match member(params, "arguments") {
                Some(Value::Object(m)) => Args(Some(m)),
                _ => Args(None),
            };
            Some(ok_body(&id, (tool.run)(ctx, &args).await))
        }
        _ => Some(error_body(
            &id,
            METHOD_NOT_FOUND,
            &format!("Method {method} not found"),
        )),
    }
}

/// A member of an object; JSON null counts as absent, as in Go.
fn member<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    v?.get(key).filter(|v| !v.is_null())
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitializeResult {
    protocol_version: &'static str,
    capabilities: Capabilities,
    server_info: ServerInfo,
}

#[derive(Serialize)]
struct Capabilities {
    logging: Empty,
    tools: Empty,
}

#[derive(Serialize)]
struct ServerInfo {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct OkResponse<'a, T> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: T,
}

#[derive(Serialize)]
struct ErrResponse<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: RpcError<'a>,
}

#[derive(Serialize)]
struct RpcError<'a> {
    code: i32,
    message: &'a str,
}

fn ok_body<T: Serialize>(id: &Value, result: T) -> Vec<u8> {
    go_json(&OkResponse {
        jsonrpc: "2.0",
        id,
        result,
    })
}

fn error_body(id: &Value, code: i32, message: &str) -> Vec<u8> {
    go_json(&ErrResponse {
        jsonrpc: "2.0",
        id,
        error: RpcError { code, message },
    })
}

/// JSON as Go's `json.Encoder` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped (they only
/// occur inside strings), and a trailing newline.
fn go_json<T: Serialize>(v: &T) -> Vec<u8> {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned());
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out.into_bytes()
}

/// `mcp-session-` and a UUID in any form Go's `uuid.Parse` takes.
fn valid_session(id: &str) -> bool {
    let Some(u) = id.strip_prefix(SESSION_PREFIX) else {
        return false;
    };
    let u = if u.len() == 45 {
        match u.get(..9) {
            Some(p) if p.eq_ignore_ascii_case("urn:uuid:") => &u[9..],
            _ => return false,
        }
    } else if u.len() == 38 {
        match u.strip_prefix('{').and_then(|u| u.strip_suffix('}')) {
            Some(u) => u,
            None => return false,
        }
    } else {
        u
    };
    let b = u.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// A random (version 4) UUID.
fn new_uuid() -> String {
    storage::transport::random_uuid().unwrap_or_else(|_| {
        // No entropy source: fall back on the clock and PID; the ID is not a secret.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id()) << 64;
        storage::transport::uuid_v4(t.to_le_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        let id = format!("{SESSION_PREFIX}{}", new_uuid());
        assert!(valid_session(&id), "{id}");
        assert_eq!(id.len(), SESSION_PREFIX.len() + 36);
        assert!(valid_session(
            "mcp-session-{d0180796-7f7f-4347-b70d-47aa7c59102c}"
        ));
        assert!(valid_session(
            "mcp-session-d01807967f7f4347b70d47aa7c59102c"
        ));
        assert!(valid_session(
            "mcp-session-urn:uuid:d0180796-7f7f-4347-b70d-47aa7c59102c"
        ));
        for bad in [
            "",
            "mcp-session-x",
            "d0180796-7f7f-4347-b70d-47aa7c59102c",
            "mcp-session-d0180796-7f7f-4347-b70d-47aa7c59102g",
            "mcp-session-d0180796_7f7f-4347-b70d-47aa7c59102c",
        ] {
            assert!(!valid_session(bad), "{bad}");
        }
    }

    #[test]
    fn go_escaping() {
        let v = go_json(&serde_json::json!({"a": "<x & y>\u{2028}"}));
        assert_eq!(
            String::from_utf8(v).expect("utf-8"),
            "{\"a\":\"\\u003cx \\u0026 y\\u003e\\u2028\"}\n"
        );
    }

    #[test]
    fn tool_arguments() {
        let m = serde_json::json!({"s": "x", "n": 5, "b": "T", "f": 0.0, "bad": "yes"});
        let a = Args(m.as_object());
        assert_eq!(a.string("s"), Some("x"));
        assert_eq!(a.string("n"), None);
        assert_eq!(a.boolean("b"), Some(true));
        assert_eq!(a.boolean("n"), Some(true));
        assert_eq!(a.boolean("f"), Some(false));
        assert_eq!(a.boolean("bad"), None);
        assert_eq!(Args(None).string("s"), None);
    }
}
