//! The tools of the MCP server: Litestream's seven, each running this executable's own
//! command with the arguments Litestream's tool gives the `litestream` binary, answered with
//! the command's combined stdout and stderr.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;

use super::Ctx;

pub(super) type ToolFuture<'a> = Pin<Box<dyn std::future::Future<Output = CallResult> + Send + 'a>>;

/// One of Litestream's tools: its listing and what it runs.
pub(super) struct Tool {
    pub(super) name: &'static str,
    description: &'static str,
    /// `(name, JSON type, description)`.
    params: &'static [(&'static str, &'static str, &'static str)],
    /// Required parameters, in Litestream's order.
    required: &'static [&'static str],
    pub(super) run: for<'a> fn(&'a Ctx, &'a Args<'a>) -> ToolFuture<'a>,
}

const CONFIG_OPT: (&str, &str, &str) = (
    "config",
    "string",
    "Path to the Litestream config file. Optional.",
);

/// In the order Litestream registers them; `tools/list` sorts by name.
pub(super) static TOOLS: &[Tool] = &[
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
                let mut cmd = Cmd::new("databases");
                if let Err(e) = cmd.config(c, a, true) {
                    return e;
                }
                cli_result(run_cli(c, &cmd.args).await)
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
                let mut cmd = Cmd::new("ltx");
                // The CLI refuses -config with a replica URL.
                if !path.contains("://") {
                    if let Err(e) = cmd.config(c, a, false) {
                        return e;
                    }
                }
                if !path.is_empty() {
                    cmd.positional(path);
                }
                cli_result(run_cli(c, &cmd.args).await)
            })
        },
    },
    Tool {
        name: "litestream_version",
        description: "Print the Litestream binary version.",
        params: &[],
        required: &[],
        run: |c, _| Box::pin(async move { cli_result(run_cli(c, &["version".into()]).await) }),
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
pub(super) struct ToolsList {
    pub(super) tools: Vec<ToolJson>,
}

/// mcp-go's `Tool` JSON: its fields in alphabetical order (a Go map), annotations in struct
/// order with mcp-go's defaults.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ToolJson {
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

pub(super) fn tool_list() -> Vec<ToolJson> {
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
pub(super) struct Args<'a>(pub(super) Option<&'a serde_json::Map<String, Value>>);

impl Args<'_> {
    pub(super) fn string(&self, key: &str) -> Option<&str> {
        self.0?.get(key)?.as_str()
    }

    /// Go's `strconv.ParseBool` for strings, non-zero for numbers.
    pub(super) fn boolean(&self, key: &str) -> Option<bool> {
        match self.0?.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => storage::value::parse_bool(s),
            Value::Number(n) => n.as_f64().map(|f| f != 0.0),
            _ => None,
        }
    }

    /// The config the tools read: the one `replicate` was started with. A `config` argument
    /// naming any other file is refused (Litestream reads it, with environment expansion, so a
    /// client could have any YAML file read and `$VARS` expanded into the output).
    fn config<'b>(&self, ctx: &'b Ctx) -> Result<&'b str, CallResult> {
        match self.string("config") {
            None => Ok(&ctx.config),
            Some(c) if same_file(c, &ctx.config) => Ok(&ctx.config),
            Some(c) => Err(CallResult::error(format!(
                "config {c:?} refused: this MCP server only reads the config replicate runs with ({})",
                ctx.config
            ))),
        }
    }
}

/// Whether `a` and `b` name the same file (the same text, or the same file once resolved).
fn same_file(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// A command line for this executable built from a client's arguments, none of which can
/// become a flag: values are joined to their flag (`-o=VALUE`) and positional arguments come
/// after `--`.
struct Cmd {
    args: Vec<String>,
    positional: bool,
}

impl Cmd {
    fn new(cmd: &str) -> Cmd {
        Cmd {
            args: vec![cmd.to_owned()],
            positional: false,
        }
    }

    fn flag(&mut self, name: &str, value: &str) {
        debug_assert!(!self.positional);
        self.args.push(format!("-{name}={value}"));
    }

    /// A word of our own making (never a client's), as it is.
    fn word(&mut self, w: &'static str) {
        self.args.push(w.to_owned());
    }

    fn positional(&mut self, p: &str) {
        if !self.positional {
            self.args.push("--".to_owned());
            self.positional = true;
        }
        self.args.push(p.to_owned());
    }

    /// `-config` (always, or only when not empty) and `-no-expand-env` if `replicate` had it.
    fn config(&mut self, ctx: &Ctx, a: &Args<'_>, always: bool) -> Result<(), CallResult> {
        let c = a.config(ctx)?;
        if always || !c.is_empty() {
            self.flag("config", c);
        }
        if !ctx.expand_env {
            self.word("-no-expand-env");
        }
        Ok(())
    }
}

/// `status` and `reset`: `-config` always, then the path if given.
async fn config_and_path(ctx: &Ctx, a: &Args<'_>, cmd: &'static str) -> CallResult {
    let mut c = Cmd::new(cmd);
    if let Err(e) = c.config(ctx, a, true) {
        return e;
    }
    if let Some(p) = a.string("path") {
        c.positional(p);
    }
    cli_result(run_cli(ctx, &c.args).await)
}

/// `restore`, writing only a new file in an allowed directory (see [`super::output`]).
async fn restore_tool(ctx: &Ctx, a: &Args<'_>) -> CallResult {
    let mut cmd = Cmd::new("restore");
    let path = a.string("path").unwrap_or("");
    let is_url = path.contains("://");
    if !path.is_empty() {
        // Without `o`, a database path is restored over itself (refused if it exists).
        let out = match a.string("o") {
            Some(o) => o,
            None if is_url => "",
            None => path,
        };
        if !out.is_empty() {
            match ctx.outputs.check(out) {
                Ok(o) => cmd.flag("o", &o.to_string_lossy()),
                Err(e) => return CallResult::error(e),
            }
        }
    }
    if !is_url {
        if let Err(e) = cmd.config(ctx, a, false) {
            return e;
        }
    }
    for key in ["txid", "timestamp", "parallelism"] {
        if let Some(v) = a.string(key) {
            cmd.flag(key, v);
        }
    }
    // As Litestream does: the value is a separate word, which Go's flag package takes as
    // the first positional argument (so restore fails with "too many arguments").
    for (key, flag) in [
        ("if_db_not_exists", "-if-db-not-exists"),
        ("if_replica_exists", "-if-replica-exists"),
    ] {
        if let Some(v) = a.boolean(key) {
            cmd.word(flag);
            cmd.word(if v { "true" } else { "false" });
        }
    }
    if !path.is_empty() {
        cmd.positional(path);
    }
    cli_result(run_cli(ctx, &cmd.args).await)
}

async fn info_tool(ctx: &Ctx, a: &Args<'_>) -> CallResult {
    let mut s = String::from("=== Litestream Status Report ===\n\n");
    let version = match run_cli(ctx, &["version".into()]).await {
        Ok(out) => out,
        Err((_, e)) => return CallResult::error(format!("Failed to get version info: {e}")),
    };
    s.push_str("Version Information:\n");
    s.push_str(&version);
    s.push('\n');
    let config = match a.config(ctx) {
        Ok(c) => c,
        Err(e) => return e,
    };
    s.push_str(&format!("Current Config Path:\n{config}\n\n"));
    let mut dbs_cmd = Cmd::new("databases");
    if let Err(e) = dbs_cmd.config(ctx, a, true) {
        return e;
    }
    let dbs = match run_cli(ctx, &dbs_cmd.args).await {
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
        let mut cmd = Cmd::new("ltx");
        if let Err(e) = cmd.config(ctx, a, false) {
            return e;
        }
        cmd.positional(db);
        match run_cli(ctx, &cmd.args).await {
            Ok(out) => s.push_str(&format!("Database: {db}\n{out}\n")),
            Err((out, e)) => s.push_str(&format!("Failed to get LTX files for {db}: {e}\n{out}")),
        }
    }
    CallResult::text(s)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CallResult {
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
async fn run_cli(ctx: &Ctx, args: &[String]) -> Result<String, (String, String)> {
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
            // The tools never need the server's token.
            .env_remove(super::guard::TOKEN_ENV)
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
