//! `ls-restore`'s command line, with Litestream's flag names and Go `flag` spellings (`-o x`,
//! `-o=x`, `--o x`; booleans as `-force` or `-force=false`), and the command itself.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ltx_codec::TxId;
use serde::Serialize;
use storage::ReplicaUrl;

use crate::execute::{execute, ExecOptions};
use crate::output::{file_replica_mode, prepare_output};
use crate::plan::{calc_plan, Listing, PlanReport, Target};
use crate::progress::Progress;
use crate::source::Source;
use crate::{check, config, follow, v3, IntegrityCheck, RestoreError, Result};
use storage::timefmt::parse_rfc3339;

/// Parsed flags and the one positional argument.
#[derive(Clone)]
pub struct Args {
    /// `-config PATH`: the config file to look the database up in.
    pub config: Option<PathBuf>,
    /// `-no-expand-env`: do not expand `$VAR`s in the config file.
    pub no_expand_env: bool,
    /// `-o PATH`: the output path (required with a replica URL).
    pub output: Option<PathBuf>,
    /// `-txid TXID`: restore up to and including this TXID.
    pub txid: Option<TxId>,
    /// `-timestamp TIME`: restore only files created strictly before this time.
    pub timestamp: Option<SystemTime>,
    /// `-parallelism NUM`: ranged reads in flight (default 8, at least 1).
    pub parallelism: usize,
    /// `-if-db-not-exists`: succeed without restoring if the output already exists.
    pub if_db_not_exists: bool,
    /// `-if-replica-exists`: succeed if the replica has no matching backup.
    pub if_replica_exists: bool,
    /// `-dry-run`: print the restore plan and stop.
    pub dry_run: bool,
    /// `-json`: machine-readable output on stdout.
    pub json: bool,
    /// `-force`: replace an existing output database and its sidecars.
    pub force: bool,
    /// `-f`: follow mode, keep applying new replica files after the restore.
    pub follow: bool,
    /// `-follow-interval DUR`: how often follow mode polls the replica.
    pub follow_interval: Duration,
    /// `-integrity-check MODE`: the SQLite check run before the database is published.
    pub integrity: IntegrityCheck,
    /// `-check`: verify the replica instead of restoring it.
    pub check: bool,
    /// `-h` or `-help`: print the usage text and stop.
    pub help: bool,
    /// `-age-identity FILE`, repeatable: identities that decrypt an encrypted replica.
    pub age_identities: Vec<PathBuf>,
    /// The positional argument: a replica URL, or a database path to look up in the config.
    pub source: Option<String>,
}

/// By hand: the argument may be a replica URL with a password.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("config", &self.config)
            .field("output", &self.output)
            .field("txid", &self.txid)
            .field("timestamp", &self.timestamp)
            .field("dry_run", &self.dry_run)
            .field("json", &self.json)
            .field("force", &self.force)
            .field("follow", &self.follow)
            .field("source", &self.source.as_deref().map(storage::redact_url))
            .finish_non_exhaustive()
    }
}

impl Default for Args {
    fn default() -> Self {
        Args {
            config: None,
            no_expand_env: false,
            output: None,
            txid: None,
            timestamp: None,
            parallelism: 8,
            if_db_not_exists: false,
            if_replica_exists: false,
            dry_run: false,
            json: false,
            force: false,
            follow: false,
            follow_interval: follow::DEFAULT_INTERVAL,
            integrity: IntegrityCheck::None,
            check: false,
            help: false,
            age_identities: Vec::new(),
            source: None,
        }
    }
}

const BOOL_FLAGS: &[&str] = &[
    "no-expand-env",
    "if-db-not-exists",
    "if-replica-exists",
    "dry-run",
    "json",
    "force",
    "f",
    "check",
    "h",
    "help",
];
const VALUE_FLAGS: &[&str] = &[
    "config",
    "o",
    "txid",
    "timestamp",
    "parallelism",
    "integrity-check",
    "follow-interval",
    "age-identity",
];

fn usage(msg: impl Into<String>) -> RestoreError {
    RestoreError::Usage(msg.into())
}

/// A boolean flag's `=value`, as Go's flag package reads it (`strconv.ParseBool`).
fn parse_bool(name: &str, v: &str) -> Result<bool> {
    storage::value::parse_bool(v).ok_or_else(|| {
        usage(format!(
            "invalid boolean value {v:?} for -{name}: parse error"
        ))
    })
}

/// Parses the arguments after the program name as Go's flag package does (and so Litestream):
/// flags come first; the first argument that is not a flag (`-` alone included), or `--`,
/// ends them, and everything after it is positional. So `restore DB -force` is "too many
/// arguments", never a forced restore.
pub fn parse_args(argv: &[String]) -> Result<Args> {
    let mut a = Args::default();
    let mut positional = Vec::new();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            positional.extend(it.by_ref().cloned());
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|_| arg.len() > 1)
        else {
            positional.push(arg.clone());
            positional.extend(it.by_ref().cloned());
            break;
        };
        if body.is_empty() || body.starts_with('-') {
            return Err(usage(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        if BOOL_FLAGS.contains(&name) {
            let on = match &inline {
                Some(v) => parse_bool(name, v)?,
                None => true,
            };
            match name {
                "no-expand-env" => a.no_expand_env = on,
                "if-db-not-exists" => a.if_db_not_exists = on,
                "if-replica-exists" => a.if_replica_exists = on,
                "dry-run" => a.dry_run = on,
                "json" => a.json = on,
                "force" => a.force = on,
                "f" => a.follow = on,
                "check" => a.check = on,
                _ => a.help = on,
            }
            continue;
        }
        if !VALUE_FLAGS.contains(&name) {
            return Err(usage(format!("flag provided but not defined: -{name}")));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| usage(format!("flag needs an argument: -{name}")))?,
        };
        match name {
            "config" => a.config = Some(PathBuf::from(value)),
            "age-identity" => a.age_identities.push(PathBuf::from(value)),
            "o" => a.output = Some(PathBuf::from(value)),
            "txid" => {
                let t: TxId = value.parse().map_err(|_| {
                    usage(format!(
                        "invalid value {value:?} for flag -txid: want 16 hex digits"
                    ))
                })?;
                a.txid = Some(t);
            }
            "timestamp" if !value.is_empty() => {
                a.timestamp = Some(parse_rfc3339(&value).ok_or_else(|| {
                    usage("invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)")
                })?);
            }
            "parallelism" => {
                let n: usize = value.parse().map_err(|_| {
                    usage(format!(
                        "invalid value {value:?} for flag -parallelism: parse error"
                    ))
                })?;
                a.parallelism = n.max(1);
            }
            "integrity-check" => {
                a.integrity = match value.as_str() {
                    "none" => IntegrityCheck::None,
                    "quick" => IntegrityCheck::Quick,
                    "full" => IntegrityCheck::Full,
                    _ => return Err(usage(format!("invalid -integrity-check value: {value}"))),
                }
            }
            "follow-interval" => {
                a.follow_interval = storage::value::parse_duration(&value).map_err(|_| {
                    usage(format!(
                        "invalid value {value:?} for flag -follow-interval: parse error"
                    ))
                })?;
            }
            _ => {}
        }
    }
    if positional.len() > 1 {
        return Err(usage("too many arguments"));
    }
    a.source = positional.pop().filter(|s| !s.is_empty());
    Ok(a)
}

/// Litestream's `IsURL`: a scheme followed by `://`.
pub fn is_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The help text printed by `-h` and `-help`.
pub const USAGE: &str = "\
ls-restore recovers a database from a Litestream replica, verifying every file.

Usage:

	ls-restore [arguments] REPLICA_URL
	ls-restore -config PATH [arguments] DB_PATH
	ls-restore -check REPLICA_URL

Arguments:

	-config PATH          configuration file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
	-no-expand-env        do not expand $VARS in the configuration file
	-o PATH               output path (required with a replica URL)
	-txid TXID            restore up to this TXID (16 hex digits), inclusive
	-timestamp TIME       restore files created strictly before TIME (RFC 3339)
	-parallelism NUM      ranged reads in flight (default 8)
	-if-db-not-exists     exit 0 without restoring if the output already exists
	-if-replica-exists    exit 0 if the replica has no matching backup
	-dry-run              print the restore plan and exit (-json for JSON)
	-force                replace an existing output database and its sidecars
	-json                 machine-readable output on stdout
	-integrity-check MODE none, quick or full, run before the database is published
	-check                verify every file of a replica and print what it can restore
	-f                    follow: after restoring, keep applying new replica files in place
	-follow-interval DUR  how often follow mode polls the replica (default 1s)
	-age-identity FILE    age identity file that decrypts an encrypted replica (repeatable;
	                      also $LS_AGE_IDENTITY, and age.identities in the config)

Exit status: 0 on success (including the -if-* skips), 1 on any error; errors are printed
to stderr as \"Error: MESSAGE\".
";

/// The JSON printed after a successful `-json` restore (Litestream's `RestoreResult`).
#[derive(Debug, Serialize)]
struct RestoreResult<'a> {
    db_path: String,
    replica: &'a str,
    txid: String,
    duration_ms: u128,
    integrity_check: &'a str,
}

/// Prints informational lines where Litestream logs them: stdout, or stderr under `-json`.
fn info(json: bool, out: &mut dyn Write, msg: &str) -> Result<()> {
    if json {
        eprintln!("{msg}");
        Ok(())
    } else {
        writeln!(out, "{msg}").map_err(|e| RestoreError::io("stdout", e))
    }
}

/// Runs the command. Errors are returned for the caller to print as `Error: ...`.
pub async fn run(a: Args, out: &mut dyn Write) -> Result<()> {
    if a.help {
        return write!(out, "{USAGE}").map_err(|e| RestoreError::io("stdout", e));
    }
    let Some(src) = a.source.clone() else {
        return Err(usage("database path or replica URL required"));
    };
    if a.txid.is_some() && a.timestamp.is_some() {
        return Err(usage("cannot specify index & timestamp to restore"));
    }
    if a.follow && a.txid.is_some() {
        return Err(usage("cannot use follow mode with -txid"));
    }
    if a.follow && a.timestamp.is_some() {
        return Err(usage("cannot use follow mode with -timestamp"));
    }
    let target = match (a.txid, a.timestamp) {
        (Some(t), _) => Target::Txid(t),
        (_, Some(ts)) => Target::Timestamp(ts),
        _ => Target::Latest,
    };
    if a.check {
        let s = if is_url(&src) {
            Source::open(ReplicaUrl::parse(&src)?)?
                .with_age(&Default::default(), &a.age_identities)?
        } else {
            let cfg = a.config.clone().unwrap_or_else(config::default_config_path);
            let entry = config::replica_for(&cfg, !a.no_expand_env, &config::expand_path(&src)?)?;
            Source::open(entry.location()?)?.with_age(&entry.age, &a.age_identities)?
        };
        return check::run(&s.client, a.parallelism, a.json, out).await;
    }

    let (source, output) = if is_url(&src) {
        if a.config.is_some() {
            return Err(usage("cannot specify a replica URL and the -config flag"));
        }
        let Some(output) = a.output.clone() else {
            return Err(usage(format!(
                "-o is required when restoring from a replica URL\nTry: ls-restore -o /path/to/db {src}"
            )));
        };
        (
            Source::open(ReplicaUrl::parse(&src)?)?
                .with_age(&Default::default(), &a.age_identities)?,
            output,
        )
    } else {
        let cfg = a.config.clone().unwrap_or_else(config::default_config_path);
        let db = config::expand_path(&src)?;
        let entry = config::replica_for(&cfg, !a.no_expand_env, &db)?;
        let source = Source::open(entry.location()?)?.with_age(&entry.age, &a.age_identities)?;
        let output = a.output.clone().unwrap_or(db);
        (source, output)
    };
    if a.if_db_not_exists && output_exists(&output) {
        return info(a.json, out, "database already exists, skipping");
    }

    let listing = Listing::fetch(source.client.as_ref()).await?;
    let v3 = v3::Catalog::load(source.client.as_ref()).await?;
    if is_url(&src) {
        if let Some(ts) = a.timestamp {
            // Litestream's TimeBounds reads plain listings (LastModified on S3), not metadata.
            check_timestamp_bounds(&listing, &v3, ts)?;
        }
    }
    let listing = source.plan_listing(listing, target).await?;
    let use_v3 = a.txid.is_none() && v3.should_use(&listing, a.timestamp);

    if a.dry_run {
        if use_v3 {
            let plan = v3.plan(a.timestamp)?;
            return write!(out, "{}", plan.describe(&output, a.json))
                .map_err(|e| RestoreError::io("stdout", e));
        }
        let plan = calc_plan(&listing, target)?;
        let report = PlanReport::new(&src, &output.display().to_string(), source.kind, &plan);
        let text = if a.json {
            let mut j = serde_json::to_string_pretty(&report)
                .map_err(|e| RestoreError::Output(format!("failed to format response: {e}")))?;
            j.push('\n');
            j
        } else {
            report.to_text()
        };
        return write!(out, "{text}").map_err(|e| RestoreError::io("stdout", e));
    }

    if a.follow && use_v3 {
        return Err(usage(
            "follow mode needs an LTX replica; this one holds v0.3.x files only",
        ));
    }
    // Installed before the restore so that a signal during it is not lost once following.
    let stop = if a.follow {
        Some(shutdown_signal()?)
    } else {
        None
    };
    let start = Instant::now();
    let resume = match &stop {
        // A follower restarted over its own database resumes where `<db>-txid` says, as
        // Litestream does (without the output checks, which its database would fail).
        Some(_) if output_exists(&output) => {
            Some(follow::resume_point(&source.client, &output).await?)
        }
        _ => None,
    };
    let txid = match (resume, stop) {
        (Some((txid, page_size)), Some(stop)) => {
            info(
                a.json,
                out,
                &format!(
                    "resuming follow mode: following {src} into {} from txid {txid}",
                    output.display()
                ),
            )?;
            follow::follow(
                &source.client,
                &output,
                txid,
                page_size,
                a.follow_interval,
                stop,
            )
            .await?;
            txid.to_string()
        }
        (_, stop) => {
            if use_v3 {
                let prepared = prepare_output(&output, a.force)?;
                let plan = v3.plan(a.timestamp)?;
                let mode = source
                    .local_root
                    .as_deref()
                    .and_then(|r| storage::local::file_mode_like(&r.join(&plan.snapshot.name)));
                plan.restore(&source.client, prepared.with_source_mode(mode), a.integrity)
                    .await?;
                String::new()
            } else {
                let prepared = prepare_output(&output, a.force)?;
                let plan = match calc_plan(&listing, target) {
                    Err(RestoreError::TxNotAvailable) if a.if_replica_exists => {
                        return info(a.json, out, "no matching backups found");
                    }
                    r => r?,
                };
                let progress = Arc::new(if !a.json && std::io::stderr().is_terminal() {
                    Progress::terminal()
                } else {
                    Progress::hidden()
                });
                let opts = ExecOptions {
                    parallelism: a.parallelism,
                    integrity: a.integrity,
                    ..ExecOptions::default()
                };
                let mode = source.local_root.as_deref().zip(plan.last());
                let prepared =
                    prepared.with_source_mode(mode.and_then(|(r, f)| file_replica_mode(r, f)));
                let res = execute(&source.client, &plan, prepared, &opts, &progress).await;
                progress.finish();
                let restored = res?;
                let txid = restored.txid;
                if let Some(stop) = stop {
                    info(
                        a.json,
                        out,
                        &format!("following {src} into {} from txid {txid}", output.display()),
                    )?;
                    follow::follow(
                        &source.client,
                        &output,
                        txid,
                        restored.page_size,
                        a.follow_interval,
                        stop,
                    )
                    .await?;
                }
                txid.to_string()
            }
        }
    };
    if a.json {
        let r = RestoreResult {
            db_path: output.display().to_string(),
            replica: source.kind,
            txid,
            duration_ms: start.elapsed().as_millis(),
            integrity_check: a.integrity.as_str(),
        };
        let j = serde_json::to_string_pretty(&r)
            .map_err(|e| RestoreError::Output(format!("failed to format response: {e}")))?;
        writeln!(out, "{j}").map_err(|e| RestoreError::io("stdout", e))?;
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM, which end follow mode cleanly.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let fail = |e| RestoreError::Output(format!("cannot install signal handler: {e}"));
    let mut int = signal(SignalKind::interrupt()).map_err(fail)?;
    let mut term = signal(SignalKind::terminate()).map_err(fail)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

fn output_exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Litestream's `CalcRestoreTarget` for URL sources: the timestamp must lie within the
/// replica's [oldest, newest] CreatedAt, v0.3.x files included.
fn check_timestamp_bounds(listing: &Listing, v3: &v3::Catalog, ts: SystemTime) -> Result<()> {
    let bounds = [listing.time_bounds(), v3.time_bounds()]
        .into_iter()
        .flatten()
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
    let Some((lo, hi)) = bounds else {
        return Err(RestoreError::Output("no backups found".into()));
    };
    if ts < lo || ts > hi {
        return Err(RestoreError::Output("timestamp does not exist".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn go_flag_spellings() {
        let a = args(&[
            "-o",
            "/tmp/x",
            "--txid=00000000000000ff",
            "-parallelism",
            "3",
            "--force",
            "-json=true",
            "-dry-run=false",
            "file:///r",
        ])
        .expect("parse");
        assert_eq!(a.output.as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!(a.txid, Some(TxId(255)));
        assert_eq!(a.parallelism, 3);
        assert!(a.force && a.json && !a.dry_run);
        assert_eq!(a.source.as_deref(), Some("file:///r"));
    }

    #[test]
    fn bad_flags() {
        assert!(args(&["-txid", "ff", "x"]).is_err());
        assert!(args(&["-timestamp", "yesterday", "x"]).is_err());
        assert!(args(&["-integrity-check", "slow", "x"]).is_err());
        assert!(args(&["-nope", "x"]).is_err());
        assert!(args(&["-o"]).is_err());
        assert!(args(&["a", "b"]).is_err());
        let a = args(&["-integrity-check=full", "x"]).expect("ok");
        assert_eq!(a.integrity, IntegrityCheck::Full);
    }

    /// Issue 14 item 1: an argument after the first positional one is never a flag, and `--`
    /// makes anything positional, so a value from an MCP client cannot become `-force`.
    #[test]
    fn issue14_1_parse_args_stops_at_the_first_positional() {
        let e = args(&["file:///r", "-force"]).expect_err("flag after the source");
        assert_eq!(e.to_string(), "too many arguments");
        let e = args(&["-o", "/x", "/db", "-o", "/y"]).expect_err("flag after the source");
        assert_eq!(e.to_string(), "too many arguments");
        let a = args(&["-o=/x", "--", "-force"]).expect("parse");
        assert!(!a.force);
        assert_eq!(a.source.as_deref(), Some("-force"));
        assert_eq!(a.output.as_deref(), Some(Path::new("/x")));
        let a = args(&["-"]).expect("a lone dash is positional");
        assert_eq!(a.source.as_deref(), Some("-"));
        // Litestream's MCP quirk: the boolean's value is the first positional.
        let e = args(&["-if-db-not-exists", "true", "--", "/db"]).expect_err("quirk");
        assert_eq!(e.to_string(), "too many arguments");
        assert!(args(&["-o", "-force", "file:///r"]).is_ok_and(|a| !a.force));
    }

    #[test]
    fn urls() {
        assert!(is_url("file:///tmp/r"));
        assert!(is_url("s3://bucket/x"));
        assert!(!is_url("/tmp/db"));
        assert!(!is_url("./a://b"));
    }
}
