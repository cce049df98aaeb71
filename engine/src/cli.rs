//! Command line: Litestream's single-dash long flags (`-config`) and GNU `--config` both work.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The parsed command line of `ls-engine`.
#[derive(Debug, Parser)]
#[command(
    name = "ls-engine",
    version,
    about = "Litestream-compatible SQLite replication"
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands (docs/config-and-cli.md#commands).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Continuously replicate databases (like `litestream replicate`).
    Replicate(ReplicateArgs),
    /// Restore a database from its replica (the same as `ls-restore`; see `restore -h`).
    #[command(disable_help_flag = true)]
    Restore(RestoreArgs),
    /// List the configured databases and their replica types.
    Databases(DatabasesArgs),
    /// List the LTX files of a database's replica (alias: wal).
    #[command(alias = "wal")]
    Ltx(LtxArgs),
    /// Show each database's local replication position and WAL size.
    Status(StatusArgs),
    /// Remove a database's local LTX files so the next sync starts with a snapshot.
    Reset(ResetArgs),
    /// Force an immediate sync of a database (via the control socket).
    Sync(SyncArgs),
    /// Start replication of a stopped database (via the control socket).
    Start(CtlArgs),
    /// Stop replication of a database, after a final sync (via the control socket).
    Stop(CtlArgs),
    /// Replicate a new database to a replica URL (via the control socket).
    Register(RegisterArgs),
    /// Stop replicating a database and forget it (via the control socket).
    Unregister(UnregisterArgs),
    /// Show the running daemon's version, PID and uptime (via the control socket).
    Info(CtlArgs),
    /// List the running daemon's databases (via the control socket).
    List(CtlArgs),
    /// Print the version (`-verbose`: with the build's details).
    Version(VersionArgs),
}

/// The flags of `version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Also print the Litestream version this one is compatible with, the SQLite linked in and
    /// the platform.
    #[arg(long)]
    pub verbose: bool,
}

/// `-socket`, `-timeout` and `-json` of the control socket commands.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Path to the control socket.
    #[arg(long, default_value = crate::config::DEFAULT_SOCKET_PATH, value_name = "PATH")]
    pub socket: String,
    /// Maximum time to wait in seconds (default 30; 10 for info and list).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub timeout: Option<i64>,
    /// Output raw JSON instead of human-readable text.
    #[arg(long)]
    pub json: bool,
    /// DB_PATH (none for info and list).
    #[arg(value_name = "DB_PATH")]
    pub args: Vec<String>,
}

impl CtlArgs {
    /// The options for [`crate::ctl`], with `default_timeout` seconds when `-timeout` is not given.
    pub fn opts(&self, default_timeout: i64) -> crate::ctl::Opts<'_> {
        crate::ctl::Opts {
            socket: &self.socket,
            timeout: self.timeout.unwrap_or(default_timeout),
            json: self.json,
        }
    }
}

/// The flags and arguments of `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The control socket flags and the database path.
    #[command(flatten)]
    pub ctl: CtlArgs,
    /// Block until the replica has the sync too.
    #[arg(long)]
    pub wait: bool,
}

/// The flags and arguments of `register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The control socket flags and the database path.
    #[command(flatten)]
    pub ctl: CtlArgs,
    /// Replica URL (e.g. s3://bucket/prefix, file:///backup/path).
    #[arg(long, value_name = "URL")]
    pub replica: Option<String>,
}

/// The flags and arguments of `unregister`.
#[derive(Debug, Args)]
pub struct UnregisterArgs {
    /// The control socket flags and the database path.
    #[command(flatten)]
    pub ctl: CtlArgs,
    /// Print what would be unregistered without asking the daemon.
    #[arg(long)]
    pub dry_run: bool,
}

/// The flags and argument of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The config file flags.
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this database (its path as configured).
    #[arg(value_name = "DB_PATH")]
    pub db: Option<String>,
}

/// The flags and argument of `reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The config file flags.
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Only list the local files that would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Missing: Litestream's usage error, not clap's.
    #[arg(value_name = "DB_PATH")]
    pub db: Option<PathBuf>,
}

/// `-config` and `-no-expand-env`, shared by the commands that read the config.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Config file (default $LITESTREAM_CONFIG, else /etc/litestream.yml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long)]
    pub no_expand_env: bool,
}

/// The arguments of `restore`, which parses them itself.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Arguments of `litestream restore`, passed through unchanged.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// The flags of `databases`.
#[derive(Debug, Args)]
pub struct DatabasesArgs {
    /// The config file flags.
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The flags and argument of `ltx` (alias `wal`).
#[derive(Debug, Args)]
pub struct LtxArgs {
    /// The config file flags.
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Compaction level to list: 0-9 or "all".
    #[arg(long, default_value = "0", value_name = "LEVEL")]
    pub level: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// DB_PATH (looked up in the config) or REPLICA_URL.
    /// Missing: Litestream's usage error, not clap's.
    #[arg(value_name = "DB_PATH|REPLICA_URL")]
    pub target: Option<String>,
}

/// The flags and arguments of `replicate`.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// Config file (default $LITESTREAM_CONFIG, else /etc/litestream.yml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long)]
    pub no_expand_env: bool,
    /// Run this command and stop replicating when it exits.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// trace, debug, info, warn or error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Restore from the replica first if the database is missing (not supported yet).
    #[arg(long)]
    pub restore_if_db_not_exists: bool,
    /// Sync once and exit.
    #[arg(long)]
    pub once: bool,
    /// With -once, also write a level-9 snapshot.
    #[arg(long)]
    pub force_snapshot: bool,
    /// With -once, apply snapshot and L0 retention after syncing.
    #[arg(long)]
    pub enforce_retention: bool,
    /// DB_PATH REPLICA_URL, instead of a config file.
    #[arg(value_name = "ARGS")]
    pub args: Vec<String>,
}

/// The Litestream release whose replicas, config and commands this one is a drop-in for.
pub const COMPATIBLE_WITH: &str = "0.5.17";

/// What `version` prints. Verbose, it is laid out as Litestream's `version -verbose` (a label
/// column 13 wide), with what identifies this build: the SQLite linked in, the local I/O and
/// the platform.
pub fn version_text(verbose: bool) -> String {
    let version = env!("CARGO_PKG_VERSION");
    if !verbose {
        return format!("ls-engine {version}\n");
    }
    format!(
        "Version:     ls-engine {version}\n\
         Litestream:  {COMPATIBLE_WITH} (drop-in)\n\
         SQLite:      {}\n\
         Local I/O:   {}\n\
         OS/Arch:     {}/{}\n",
        crate::sqlite::sqlite_version(),
        storage::local::io_kind().as_str(),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

const LONG_FLAGS: &[&str] = &[
    "config",
    "no-expand-env",
    "exec",
    "log-level",
    "restore-if-db-not-exists",
    "once",
    "force-snapshot",
    "enforce-retention",
    "json",
    "level",
    "dry-run",
    "socket",
    "timeout",
    "wait",
    "replica",
    "verbose",
    "help",
    "version",
];

/// The flags above that are booleans: Go's `flag` package also takes them as `-flag=true` and
/// `-flag=false` (and the other spellings of [`storage::value::parse_bool`]).
const BOOL_FLAGS: &[&str] = &[
    "no-expand-env",
    "restore-if-db-not-exists",
    "once",
    "force-snapshot",
    "enforce-retention",
    "json",
    "dry-run",
    "wait",
    "verbose",
];

/// Rewrites `-flag` / `-flag=value` into `--flag` for the flags above, stopping at `--`. A
/// boolean given a value becomes `--flag` (true) or nothing (false); a value Go would refuse is
/// left for the parser to refuse.
pub fn normalize_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        // `restore` parses its own flags, Go-style.
        if s == "--" || (i == 1 && s == "restore") {
            passthrough = true;
            out.push(a);
            continue;
        }
        let rest = s.strip_prefix("--").or_else(|| s.strip_prefix('-'));
        if let Some(rest) = rest {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            if LONG_FLAGS.contains(&name) {
                match value
                    .filter(|_| BOOL_FLAGS.contains(&name))
                    .map(storage::value::parse_bool)
                {
                    Some(Some(true)) => out.push(OsString::from(format!("--{name}"))),
                    Some(Some(false)) => {}
                    _ => out.push(OsString::from(format!("--{rest}"))),
                }
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// Parses the command line after [`normalize_args`] has rewritten Litestream's single-dash flags.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(normalize_args(args))
}

/// Splits `-exec` like a POSIX shell would for words: whitespace separates, single and double
/// quotes group, backslash escapes. No expansion.
pub fn split_command(cmd: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let n = chars.next().ok_or("trailing backslash")?;
                cur.push(n);
                in_word = true;
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("trailing backslash".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_splitting() {
        assert_eq!(
            split_command(r#"sh -c 'echo "hi there"' a\ b "x\"y""#),
            Ok(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                "echo \"hi there\"".to_owned(),
                "a b".to_owned(),
                "x\"y".to_owned()
            ])
        );
        assert!(split_command("'open").is_err());
        assert_eq!(split_command("  "), Ok(vec![]));
    }

    use super::*;

    /// The command `ls-engine ARGS` parses to; a parse error fails the test.
    fn command(args: &[&str]) -> Command {
        let v = std::iter::once("ls-engine")
            .chain(args.iter().copied())
            .map(OsString::from);
        match parse(v) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?} did not parse: {e}"),
        }
    }

    fn p(args: &[&str]) -> ReplicateArgs {
        match command(args) {
            Command::Replicate(r) => r,
            other => panic!("unexpected command: {other:?}"),
        }
    }

    #[test]
    fn single_and_double_dash() {
        let r = p(&[
            "replicate",
            "-config",
            "/x.yml",
            "-once",
            "-log-level=debug",
        ]);
        assert_eq!(r.config, Some(PathBuf::from("/x.yml")));
        assert!(r.once);
        assert_eq!(r.log_level.as_deref(), Some("debug"));
        let r = p(&["replicate", "--config=/y.yml", "--no-expand-env"]);
        assert_eq!(r.config, Some(PathBuf::from("/y.yml")));
        assert!(r.no_expand_env);
        let r = p(&[
            "replicate",
            "-once=true",
            "--no-expand-env=false",
            "-config=/z.yml",
        ]);
        assert!(r.once);
        assert!(!r.no_expand_env);
        assert_eq!(r.config, Some(PathBuf::from("/z.yml")));
        let r = p(&["replicate", "-once=0", "-force-snapshot=T"]);
        assert!(!r.once);
        assert!(r.force_snapshot);
        let bad = std::iter::once("ls-engine")
            .chain(["replicate", "-once=yes"])
            .map(OsString::from);
        assert!(parse(bad).is_err(), "Go refuses -once=yes");
        let r = p(&["replicate", "-exec", "sleep 1", "/db", "file:///r"]);
        assert_eq!(r.exec.as_deref(), Some("sleep 1"));
        assert_eq!(r.args, vec!["/db", "file:///r"]);
    }

    #[test]
    fn version_verbose_in_go_spellings() {
        let v = |args: &[&str]| match command(args) {
            Command::Version(v) => v.verbose,
            other => panic!("unexpected command: {other:?}"),
        };
        assert!(!v(&["version"]));
        assert!(v(&["version", "-verbose"]));
        assert!(v(&["version", "--verbose"]));
        assert!(v(&["version", "-verbose=true"]));
        assert!(!v(&["version", "-verbose=false"]));
    }
}
