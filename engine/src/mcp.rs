//! The MCP server on `mcp-addr` (§7.2), as Litestream 0.5.17 serves it (`cmd/litestream/mcp.go`
//! on mcp-go v0.32.0's Streamable-HTTP transport, mounted on every path).
//!
//! * `POST` with `Content-Type: application/json` carries one JSON-RPC 2.0 message. Requests
//!   are answered with one JSON object; notifications and responses with `202 Accepted`.
//!   `initialize` hands out an `Mcp-Session-Id` (`mcp-session-<uuid>`); every other POST must
//!   carry a well-formed one, which is not otherwise checked (mcp-go keeps no sessions).
//! * `GET` opens the server-to-client event stream (`202`, `text/event-stream`); this server
//!   never sends anything on it, so it stays open, silent, until the client goes.
//! * `DELETE` ends a session: always `200`. Other methods: `404`.
//!
//! The tools run this executable's own commands with the arguments Litestream's tools give
//! the `litestream` binary, and answer with their combined stdout and stderr; a failing
//! command gives an error result `<output>: exit status N`.
//!
//! An idle server is one task parked in `accept`: no timers, no polling.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::http::{bind_key, AddrError};

const SERVER_NAME: &str = "Litestream MCP Server";
const SERVER_VERSION: &str = "1.0.0";
const LATEST_PROTOCOL_VERSION: &str = "2025-03-26";
const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", LATEST_PROTOCOL_VERSION];
const SESSION_HEADER: &str = "mcp-session-id";
const SESSION_PREFIX: &str = "mcp-session-";
/// Larger request bodies are refused (mcp-go reads any size).
const MAX_BODY: usize = 16 << 20;

const PARSE_ERROR: i32 = -32700;
const INVALID_REQUEST: i32 = -32600;
const METHOD_NOT_FOUND: i32 = -32601;
const INVALID_PARAMS: i32 = -32602;
const INTERNAL_ERROR: i32 = -32603;

/// What the tools need: the executable to run and the config path `replicate` was given.
struct Ctx {
    exe: PathBuf,
    config: String,
}

/// A bound MCP listener; [`McpServer::serve`] answers on it.
pub struct McpServer {
    listener: TcpListener,
    ctx: Arc<Ctx>,
}

impl McpServer {
    /// Binds `addr` (the `mcp-addr` key). `config` is the config file path the tools pass on
    /// with `-config`, as `replicate` resolved it.
    pub async fn bind(addr: &str, config: String) -> Result<McpServer, AddrError> {
        let listener = bind_key("mcp-addr", addr).await?;
        let exe = std::env::current_exe().map_err(|source| AddrError::Bind {
            key: "mcp-addr",
            addr: addr.to_owned(),
            source,
        })?;
        Ok(McpServer {
            listener,
            ctx: Arc::new(Ctx { exe, config }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the runtime stops.
    pub async fn serve(self) {
        let ctx = self.ctx;
        crate::http::serve_with(self.listener, "MCP", move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
        })
        .await
    }
}

/// A whole response body, or the never-ending one of the `GET` event stream.
pub enum McpBody {
    Full(Option<Bytes>),
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

async fn handle(ctx: &Ctx, req: Request<hyper::body::Incoming>) -> Response<McpBody> {
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
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: writes at most the remaining length of `b`.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n <= 0 {
            // No entropy source: fall back on the clock and PID; the ID is not a secret.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                ^ u128::from(std::process::id()) << 64;
            b = t.to_le_bytes();
            break;
        }
        filled += n as usize;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

// --- tools ---

type ToolFuture<'a> = Pin<Box<dyn std::future::Future<Output = CallResult> + Send + 'a>>;

/// One of Litestream's tools: its listing and what it runs.
struct Tool {
    name: &'static str,
    description: &'static str,
    /// `(name, JSON type, description)`.
    params: &'static [(&'static str, &'static str, &'static str)],
    /// Required parameters, in Litestream's order.
    required: &'static [&'static str],
    run: for<'a> fn(&'a Ctx, &'a Args<'a>) -> ToolFuture<'a>,
}

const CONFIG_OPT: (&str, &str, &str) = (
    "config",
    "string",
    "Path to the Litestream config file. Optional.",
);

/// In the order Litestream registers them; `tools/list` sorts by name.
static TOOLS: &[Tool] = &[
    Tool {
        name: "litestream_info",
        description: "Get a comprehensive summary of Litestream's current status including databases, LTX files, and version information.",
        params: &[CONFIG_OPT],
        required: &[],
        run: |c, a| Box::pin(info_tool(c, a)),
    },
    Tool {
        name: "litestream_databases",
        description: "List databases and their replicas as defined in the Litestream config file. The default path is /etc/litestream.yml but is not required.",
        params: &[CONFIG_OPT],
        required: &[],
        run: |c, a| {
            Box::pin(async move {
                cli_result(run_cli(c, &["databases", "-config", a.config(c)]).await)
            })
        },
    },
    Tool {
        name: "litestream_restore",
        description: "Restore a database from a Litestream replica.",
        params: &[
            ("path", "string", "Database path or replica URL."),
            ("o", "string", "Output path for the restored database. Optional."),
            CONFIG_OPT,
            ("txid", "string", "Restore up to a specific transaction ID. Optional."),
            ("timestamp", "string", "Restore to a specific point-in-time (RFC3339). Optional."),
            ("parallelism", "string", "Number of WAL files to download in parallel. Optional."),
            ("if_db_not_exists", "boolean", "Return 0 if the database already exists. Optional."),
            ("if_replica_exists", "boolean", "Return 0 if no backups found. Optional."),
        ],
        required: &["path"],
        run: |c, a| Box::pin(restore_tool(c, a)),
    },
    Tool {
        name: "litestream_ltx",
        description: "List all LTX files for a database or replica URL.",
        params: &[
            ("path", "string", "Database path or replica URL."),
            ("config", "string", "Path to the Litestream config file. Optional, ignored for replica URLs."),
        ],
        required: &["path"],
        run: |c, a| {
            Box::pin(async move {
                let path = a.string("path").unwrap_or("");
                let mut args = vec!["ltx"];
                // The CLI refuses -config with a replica URL.
                if !path.contains("://") {
                    push_config(&mut args, a.config(c));
                }
                push_nonempty(&mut args, path);
                cli_result(run_cli(c, &args).await)
            })
        },
    },
    Tool {
        name: "litestream_version",
        description: "Print the Litestream binary version.",
        params: &[],
        required: &[],
        run: |c, _| Box::pin(async move { cli_result(run_cli(c, &["version"]).await) }),
    },
    Tool {
        name: "litestream_status",
        description: "Display replication status including database path, status, local transaction ID, and WAL size.",
        params: &[
            CONFIG_OPT,
            ("path", "string", "Filter to a specific database path. Optional."),
        ],
        required: &[],
        run: |c, a| Box::pin(config_and_path(c, a, "status")),
    },
    Tool {
        name: "litestream_reset",
        description: "Clear local Litestream state for a database. Removes local LTX files, forcing fresh snapshot on next sync. Database file is not modified.",
        params: &[
            ("path", "string", "Database path to reset."),
            CONFIG_OPT,
        ],
        required: &["path"],
        run: |c, a| Box::pin(config_and_path(c, a, "reset")),
    },
];

#[derive(Serialize)]
struct ToolsList {
    tools: Vec<ToolJson>,
}

/// mcp-go's `Tool` JSON: its fields in alphabetical order (a Go map), annotations in struct
/// order with mcp-go's defaults.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolJson {
    annotations: Annotations,
    description: &'static str,
    input_schema: InputSchema,
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Annotations {
    read_only_hint: bool,
    destructive_hint: bool,
    idempotent_hint: bool,
    open_world_hint: bool,
}

#[derive(Serialize)]
struct InputSchema {
    properties: BTreeMap<&'static str, Property>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    required: &'static [&'static str],
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Property {
    description: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn tool_list() -> Vec<ToolJson> {
    let mut tools: Vec<ToolJson> = TOOLS
        .iter()
        .map(|t| ToolJson {
            annotations: Annotations {
                read_only_hint: false,
                destructive_hint: true,
                idempotent_hint: false,
                open_world_hint: true,
            },
            description: t.description,
            input_schema: InputSchema {
                properties: t
                    .params
                    .iter()
                    .map(|&(n, kind, description)| (n, Property { description, kind }))
                    .collect(),
                required: t.required,
                kind: "object",
            },
            name: t.name,
        })
        .collect();
    tools.sort_by_key(|t| t.name);
    tools
}

/// A tool's `arguments`, read as mcp-go's `RequireString` / `RequireBool` do: a value of the
/// wrong type counts as absent.
struct Args<'a>(Option<&'a serde_json::Map<String, Value>>);

impl Args<'_> {
    fn string(&self, key: &str) -> Option<&str> {
        self.0?.get(key)?.as_str()
    }

    /// Go's `strconv.ParseBool` for strings, non-zero for numbers.
    fn boolean(&self, key: &str) -> Option<bool> {
        match self.0?.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
                _ => None,
            },
            Value::Number(n) => n.as_f64().map(|f| f != 0.0),
            _ => None,
        }
    }

    /// The `config` argument, else the config `replicate` was started with.
    fn config<'b>(&'b self, ctx: &'b Ctx) -> &'b str {
        self.string("config").unwrap_or(&ctx.config)
    }
}

fn push_config<'a>(args: &mut Vec<&'a str>, config: &'a str) {
    if !config.is_empty() {
        args.extend(["-config", config]);
    }
}

fn push_nonempty<'a>(args: &mut Vec<&'a str>, v: &'a str) {
    if !v.is_empty() {
        args.push(v);
    }
}

/// `status` and `reset`: `-config` always, then the path if given.
async fn config_and_path(ctx: &Ctx, a: &Args<'_>, cmd: &'static str) -> CallResult {
    let mut args = vec![cmd, "-config", a.config(ctx)];
    if let Some(p) = a.string("path") {
        args.push(p);
    }
    cli_result(run_cli(ctx, &args).await)
}

async fn restore_tool(ctx: &Ctx, a: &Args<'_>) -> CallResult {
    let mut args = vec!["restore"];
    if let Some(o) = a.string("o") {
        args.extend(["-o", o]);
    }
    let path = a.string("path").unwrap_or("");
    if !path.contains("://") {
        push_config(&mut args, a.config(ctx));
    }
    for (key, flag) in [
        ("txid", "-txid"),
        ("timestamp", "-timestamp"),
        ("parallelism", "-parallelism"),
    ] {
        if let Some(v) = a.string(key) {
            args.extend([flag, v]);
        }
    }
    // As Litestream does: the value is a separate word, which Go's flag package takes as
    // the first positional argument.
    for (key, flag) in [
        ("if_db_not_exists", "-if-db-not-exists"),
        ("if_replica_exists", "-if-replica-exists"),
    ] {
        if let Some(v) = a.boolean(key) {
            args.extend([flag, if v { "true" } else { "false" }]);
        }
    }
    push_nonempty(&mut args, path);
    cli_result(run_cli(ctx, &args).await)
}

async fn info_tool(ctx: &Ctx, a: &Args<'_>) -> CallResult {
    let mut s = String::from("=== Litestream Status Report ===\n\n");
    let version = match run_cli(ctx, &["version"]).await {
        Ok(out) => out,
        Err((_, e)) => return CallResult::error(format!("Failed to get version info: {e}")),
    };
    s.push_str("Version Information:\n");
    s.push_str(&version);
    s.push('\n');
    let config = a.config(ctx);
    s.push_str(&format!("Current Config Path:\n{config}\n\n"));
    let dbs = match run_cli(ctx, &["databases", "-config", config]).await {
        Ok(out) => out,
        Err((_, e)) => return CallResult::error(format!("Failed to get databases info: {e}")),
    };
    s.push_str("Databases:\n");
    s.push_str(&dbs);
    s.push('\n');
    s.push_str("LTX Files:\n");
    // The first word of every line after the header.
    let paths = dbs
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next());
    for db in paths {
        let mut args = vec!["ltx"];
        push_config(&mut args, config);
        args.push(db);
        match run_cli(ctx, &args).await {
            Ok(out) => s.push_str(&format!("Database: {db}\n{out}\n")),
            Err((out, e)) => s.push_str(&format!("Failed to get LTX files for {db}: {e}\n{out}")),
        }
    }
    CallResult::text(s)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallResult {
    content: Vec<Content>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_error: bool,
}

#[derive(Serialize)]
struct Content {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
}

impl CallResult {
    fn text(text: String) -> CallResult {
        CallResult {
            content: vec![Content { kind: "text", text }],
            is_error: false,
        }
    }

    fn error(text: String) -> CallResult {
        CallResult {
            is_error: true,
            ..CallResult::text(text)
        }
    }
}

/// A command's output as the result, or `<output, trimmed>: <why it failed>` as an error.
fn cli_result(r: Result<String, (String, String)>) -> CallResult {
    match r {
        Ok(out) => CallResult::text(out),
        Err((out, e)) => CallResult::error(format!("{}: {e}", out.trim())),
    }
}

/// Runs this executable with `args`, as Go's `CombinedOutput` does: stdout and stderr into one
/// pipe. `Err((output, reason))` when it cannot start or does not exit 0, the reason worded as
/// Go words it (`exit status 1`). Dropping the future kills the command.
async fn run_cli(ctx: &Ctx, args: &[&str]) -> Result<String, (String, String)> {
    let fail = |e: std::io::Error| {
        (
            String::new(),
            format!("fork/exec {}: {e}", ctx.exe.display()),
        )
    };
    let (mut reader, writer) = std::io::pipe().map_err(fail)?;
    let mut child = {
        let mut cmd = tokio::process::Command::new(&ctx.exe);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(writer.try_clone().map_err(fail)?)
            .stderr(writer)
            .kill_on_drop(true);
        cmd.spawn().map_err(fail)?
        // `cmd`, and with it our ends of the pipe, dropped here so the read ends at exit.
    };
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        buf
    });
    let out = read.await.unwrap_or_default();
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = child
        .wait()
        .await
        .map_err(|e| (out.clone(), e.to_string()))?;
    if status.success() {
        return Ok(out);
    }
    Err((out, crate::exec::exit_error(status)))
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
