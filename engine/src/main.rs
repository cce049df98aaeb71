//! `ls-engine`: a drop-in for `litestream replicate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use engine::cli::{self, Command, DatabasesArgs, LtxArgs, ReplicateArgs, ResetArgs, StatusArgs};
use engine::config::logfmt::{LogFormat, SlogFormat};
use engine::config::{self, Config};
use engine::ctl;
use engine::exec::{self, StopSignals};
use engine::replicate;
use tracing::{info, warn};

const DEFAULT_CONFIG: &str = "/etc/litestream.yml";

/// Threads for blocking work (sync passes, local file I/O, compaction merges). Most of it waits
/// on fsync; more threads than this only add stacks, I/O rings and malloc arenas when a
/// thousand databases start at once (docs/many-databases.md#memory).
const BLOCKING_THREADS: usize = 32;

fn main() -> ExitCode {
    // Litestream warns before it reads the flags, so `wal -h` warns too.
    if std::env::args_os().nth(1).is_some_and(|c| c == "wal") {
        eprintln!("Warning: 'wal' command is deprecated, please use 'ltx' instead");
    }
    let cli = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Version(v) => {
            print!("{}", cli::version_text(v.verbose));
            ExitCode::SUCCESS
        }
        Command::Replicate(args) => match replicate_cmd(args) {
            Ok(code) => code,
            Err(e) => {
                // Logging may not be set up yet when the config is bad.
                eprintln!("ls-engine: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Restore(args) => report(restore_cmd(&args.args)),
        Command::Databases(args) => report(databases_cmd(&args)),
        Command::Ltx(LtxArgs { target: None, .. }) => usage_error(
            "database path or replica URL required",
            "litestream ltx /path/to/db",
        ),
        Command::Ltx(args) => report(ltx_cmd(&args)),
        Command::Status(args) => report(status_cmd(&args)),
        Command::Reset(ResetArgs { db: None, .. }) => {
            usage_error("database path required", "litestream reset /path/to/db")
        }
        Command::Reset(args) => report(reset_cmd(&args)),
        Command::Sync(a) => {
            let o = a.ctl.opts(30);
            ctl_report(|out| ctl::sync(o, &a.ctl.args, a.wait, out))
        }
        Command::Start(a) => ctl_report(|out| ctl::start_stop(a.opts(30), true, &a.args, out)),
        Command::Stop(a) => ctl_report(|out| ctl::start_stop(a.opts(30), false, &a.args, out)),
        Command::Register(a) => {
            let (o, r) = (a.ctl.opts(30), a.replica.as_deref());
            ctl_report(|out| ctl::register(o, &a.ctl.args, r, out))
        }
        Command::Unregister(a) => {
            let o = a.ctl.opts(30);
            ctl_report(|out| ctl::unregister(o, &a.ctl.args, a.dry_run, out))
        }
        Command::Info(a) => ctl_report(|out| ctl::info(a.opts(10), &a.args, out)),
        Command::List(a) => ctl_report(|out| ctl::list(a.opts(10), &a.args, out)),
    }
}

/// Exit status and message of the socket commands: `Error: …`, and `Try: …` for usage errors.
fn ctl_report(
    run: impl FnOnce(&mut std::io::StdoutLock<'static>) -> Result<(), ctl::CtlError>,
) -> ExitCode {
    match run(&mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            if let Some(h) = &e.hint {
                eprintln!("Try: {h}");
            }
            ExitCode::from(1)
        }
    }
}

/// A missing argument, as Litestream reports it.
fn usage_error(msg: &str, hint: &str) -> ExitCode {
    eprintln!("Error: {msg}\nTry: {hint}");
    ExitCode::from(1)
}

/// Exit status and message of the one-shot commands, as Litestream prints them.
fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")
}

fn restore_cmd(argv: &[String]) -> anyhow::Result<()> {
    let args = restore::cli::parse_args(argv)?;
    // Restore's log lines (config warnings, follow-mode retries) on stderr, as `ls-restore`
    // prints them: warnings unless `LOG_LEVEL` asks for more (a bad one falls back to warn
    // rather than stopping a restore).
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "warn".into());
    let text = SlogFormat {
        format: LogFormat::Text,
        source: false,
    };
    if init_logging(&level, text, true).is_err() {
        init_logging("warn", text, true)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    let mut stdout = std::io::stdout().lock();
    rt.block_on(restore::cli::run(args, &mut stdout))
        .map_err(|e| match e.to_string() {
            // With Litestream's hint.
            m if m == "database path or replica URL required" => {
                anyhow::anyhow!("{m}\nTry: litestream restore -o /path/to/db s3://bucket/prefix")
            }
            _ => e.into(),
        })?;
    Ok(())
}

/// `-config`, else `$LITESTREAM_CONFIG`, else the default; an empty `-config` counts as none,
/// as in Litestream (its MCP tools pass `-config ""` when `replicate` had no config path).
fn config_path(arg: &Option<PathBuf>) -> PathBuf {
    match arg.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.clone(),
        None => std::env::var_os("LITESTREAM_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
    }
}

fn databases_cmd(args: &DatabasesArgs) -> anyhow::Result<()> {
    let cfg = config::load(&config_path(&args.cfg.config), !args.cfg.no_expand_env)?;
    let mut out = std::io::stdout().lock();
    engine::inspect::write_databases(&cfg, args.json, &mut out).context("write to stdout")
}

fn status_cmd(args: &StatusArgs) -> anyhow::Result<()> {
    let cfg = config::load(&config_path(&args.cfg.config), !args.cfg.no_expand_env)?;
    let mut out = std::io::stdout().lock();
    engine::inspect::write_status(&cfg, args.db.as_deref(), args.json, &mut out)
        .context("write to stdout")
}

fn reset_cmd(args: &ResetArgs) -> anyhow::Result<()> {
    let arg = args.db.clone().unwrap_or_default();
    let db =
        std::path::absolute(&arg).with_context(|| format!("database path {}", arg.display()))?;
    // The database need not be in the config (then its default meta directory is used); the
    // config itself must be readable, as in Litestream 0.5.17.
    let cfg = config::load(&config_path(&args.cfg.config), !args.cfg.no_expand_env)
        .map_err(|e| anyhow::anyhow!("cannot read config: {e}"))?;
    let meta = engine::inspect::find_db(&cfg, &db)
        .map(|d| d.meta_path.clone())
        .unwrap_or_else(|| config::default_meta_path(&db));
    let mut out = std::io::stdout().lock();
    engine::inspect::reset(&db, &meta, args.dry_run, &mut out).map_err(anyhow::Error::msg)
}

fn ltx_cmd(args: &LtxArgs) -> anyhow::Result<()> {
    let target = args.target.as_deref().unwrap_or_default();
    let sel = engine::inspect::LevelSel::parse(&args.level).map_err(anyhow::Error::msg)?;
    let client = if target.contains("://") {
        if args
            .cfg
            .config
            .as_ref()
            .is_some_and(|c| !c.as_os_str().is_empty())
        {
            bail!("cannot specify a replica URL and the -config flag");
        }
        storage::open_replica(target)?
    } else {
        let path = config_path(&args.cfg.config);
        let cfg = config::load(&path, !args.cfg.no_expand_env)?;
        let db = engine::inspect::find_db(&cfg, std::path::Path::new(target))
            .with_context(|| format!("database not found in config: {target}"))?;
        replicate::open_replica(&db.replica, &db.path)?
    };
    let files = current_thread_runtime()?.block_on(engine::inspect::list_ltx(&client, sel))?;
    let mut out = std::io::stdout().lock();
    engine::inspect::write_ltx(&files, args.json, &mut out).context("write to stdout")
}

/// Log lines in Litestream's layout for `logging.type` (docs/config-and-cli.md#log-lines), on
/// stdout unless `logging.stderr`.
fn init_logging(level: &str, fmt: SlogFormat, stderr: bool) -> anyhow::Result<()> {
    let level = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_owned(),
        l => l.to_owned(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .with_context(|| format!("invalid log level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(fmt);
    let result = if stderr {
        builder.with_writer(std::io::stderr).try_init()
    } else {
        builder.with_writer(std::io::stdout).try_init()
    };
    result.map_err(|e| anyhow::anyhow!("set up logging: {e}"))
}

fn load_config(args: &ReplicateArgs) -> anyhow::Result<Config> {
    if !args.args.is_empty() {
        if args.config.is_some() {
            bail!("cannot specify a replica URL and the -config flag");
        }
        let [db, url] = args.args.as_slice() else {
            bail!("expected DB_PATH REPLICA_URL (one replica per database)");
        };
        return Ok(config::from_args(db, url)?);
    }
    let path = config_path(&args.config);
    let c = config::load(&path, !args.no_expand_env)?;
    // With the control socket, databases can be registered later (Litestream logs an error
    // and runs on).
    if c.dbs.is_empty() && c.dirs.is_empty() && c.socket.is_none() {
        bail!("no databases specified in configuration {}", path.display());
    }
    Ok(c)
}

/// glibc's malloc arenas for all threads: by default each thread that allocates gets its own
/// (up to 8 per core), and the free memory left in each after a thousand databases start at
/// once stays resident (docs/many-databases.md#memory). Our threads mostly wait on I/O, so
/// sharing two costs little contention.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator settings; called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn replicate_cmd(args: ReplicateArgs) -> anyhow::Result<ExitCode> {
    limit_malloc_arenas();
    // Litestream's checks, in its order and words: `-once` is refused with an `exec` from the
    // flag or the config file.
    let mut cfg = load_config(&args)?;
    let exec_set = |e: &Option<String>| e.as_deref().is_some_and(|s| !s.is_empty());
    if args.once && (exec_set(&args.exec) || exec_set(&cfg.exec)) {
        bail!("cannot specify -once flag with -exec");
    }
    if args.force_snapshot && !args.once {
        bail!("cannot specify -force-snapshot flag without -once");
    }
    if args.enforce_retention && !args.once {
        bail!("cannot specify -enforce-retention flag without -once");
    }
    if args.restore_if_db_not_exists {
        for db in &mut cfg.dbs {
            db.restore_if_missing = true;
        }
    }
    let level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("LOG_LEVEL").ok().filter(|s| !s.is_empty()))
        .or_else(|| cfg.logging.level.clone())
        .unwrap_or_else(|| "info".to_owned());
    config::check_log_level(&level).map_err(anyhow::Error::msg)?;
    let fmt = SlogFormat {
        format: cfg.logging.format,
        source: cfg.logging.source,
    };
    init_logging(&level, fmt, cfg.logging.stderr)?;
    for w in std::mem::take(&mut cfg.warnings) {
        warn!("{w}");
    }
    for d in &cfg.dirs {
        // Litestream 0.5.17 only restores `path` entries; directory entries start as they are.
        if d.restore_if_missing || args.restore_if_db_not_exists {
            warn!(dir = %d.dir.display(), "restore-if-db-not-exists does not apply to directory entries (as in Litestream); not restoring");
        }
    }
    // Directory entries are scanned before anything starts; no database found (without
    // `watch`), a missing directory or a meta-path collision stops start-up.
    engine::dirs::scan_all(&mut cfg.dirs).map_err(anyhow::Error::msg)?;
    // Every database holds a few descriptors for as long as it is replicated: a limit too low
    // for them stops start-up here rather than failing an `open` later.
    let dbs = cfg.dbs.len() + cfg.dirs.iter().map(|d| d.found.len()).sum::<usize>();
    let (soft, hard) =
        engine::fdlimit::raise(engine::fdlimit::needed(dbs)).context("raise RLIMIT_NOFILE")?;
    engine::fdlimit::check(dbs, soft, hard).map_err(anyhow::Error::msg)?;
    let exec = args.exec.clone().or_else(|| cfg.exec.clone());
    let shutdown_limit = cfg.shutdown_sync_timeout;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    let code = rt.block_on(async move {
        info!(
            version = env!("CARGO_PKG_VERSION"),
            sqlite = %engine::sqlite::sqlite_version(),
            local_io = storage::local::io_kind().as_str(),
            "ls-engine replicate"
        );
        // The MCP tools run this executable's commands with the config path `replicate` read
        // (none with DB_PATH REPLICA_URL arguments).
        let mcp_config = if args.args.is_empty() {
            config_path(&args.config).display().to_string()
        } else {
            String::new()
        };
        let opts = engine::daemon::Options {
            replicate: replicate::Options {
                once: args.once,
                force_snapshot: args.force_snapshot,
                enforce_retention: args.enforce_retention,
            },
            mcp_config,
            expand_env: !args.no_expand_env,
        };
        let mut daemon = engine::daemon::Daemon::start(cfg, opts).await?;
        if args.once {
            let ok = daemon.stopped().await;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }

        // Before the application starts, so a signal right after is forwarded, not fatal.
        let mut signals = StopSignals::install().context("install SIGTERM/SIGINT handlers")?;
        let mut child = match &exec {
            Some(cmd) => {
                let words = cli::split_command(cmd).map_err(anyhow::Error::msg)?;
                let Some((prog, rest)) = words.split_first() else {
                    bail!("-exec: empty command");
                };
                let c = tokio::process::Command::new(prog)
                    .args(rest)
                    .spawn()
                    .with_context(|| format!("-exec: cannot start {prog}"))?;
                Some(c)
            }
            None => None,
        };
        let outcome = tokio::select! {
            sig = signals.recv() => {
                info!(signal = sig, "signal received, litestream shutting down");
                match child.as_mut() {
                    Some(c) => exec::stop_child(c, sig, &mut signals, shutdown_limit).await,
                    None => Ok(()),
                }
            }
            status = async {
                match child.as_mut() {
                    Some(c) => c.wait().await,
                    None => std::future::pending().await,
                }
            } => exec::exited(status),
        };
        // The final sync comes after the application stopped, so its last writes are in it.
        daemon.begin_stop();
        // A second signal cuts the shutdown sync short, as in Litestream: what is in flight is
        // dropped (nothing half-written is published) and the exit status is unchanged.
        let interrupted = tokio::select! {
            _ = daemon.stopped() => false,
            sig = signals.recv() => {
                warn!(signal = sig, "shutdown sync skipped, interrupted by signal");
                true
            }
        };
        if interrupted {
            daemon.abort();
            daemon.stopped().await;
        }
        info!("litestream shut down");
        Ok(match outcome {
            Ok(()) => ExitCode::SUCCESS,
            // Litestream's words and status for a failed application.
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        })
    });
    // A pass abandoned at shutdown-sync-timeout may still be on a blocking thread: the
    // process does not wait for it; exiting mid-pass is as safe as a crash (engine/tests/crash.rs).
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
