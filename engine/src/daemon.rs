//! `ls-engine replicate` as a library type, the composition root of the daemon: the metrics
//! and MCP listeners, the restore of missing databases, the registry with one task per
//! database, the control socket and the heartbeat, started in that order and stopped in the
//! reverse one (docs/architecture.md#the-daemon). `main.rs` parses the flags, sets up logging,
//! the runtime, the signals and the `-exec` child, and drives a [`Daemon`]; tests can drive
//! one in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::config::Config;
use crate::dirs::Monitor;
use crate::http::{AddrError, MetricsServer};
use crate::mcp::{McpError, McpServer};
use crate::replicate::{self, Registry};

/// What the command line adds to the config.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `-once`, `-force-snapshot`, `-enforce-retention`.
    pub replicate: replicate::Options,
    /// The config path the MCP tools pass to the commands they run; empty when the databases
    /// came from `DB_PATH REPLICA_URL` arguments.
    pub mcp_config: String,
    /// Whether the MCP tools expand `$VARS` in that config (not `-no-expand-env`).
    pub expand_env: bool,
}

/// Why the daemon did not start; nothing it started is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metrics listener's `addr` is malformed or cannot be bound.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// The MCP server could not be started on `mcp-addr`.
    #[error(transparent)]
    Mcp(#[from] McpError),
    /// A bound listener could not tell its local address.
    #[error("config key {key}: listener address: {source}")]
    LocalAddr {
        /// The config key of the listener (`addr` or `mcp-addr`).
        key: &'static str,
        /// The error from asking the listener for its address.
        source: std::io::Error,
    },
    /// `restore-if-db-not-exists` failed for a database.
    #[error(transparent)]
    Restore(#[from] crate::error::Error),
    /// The control socket could not be set up; the message says why.
    #[error("{0}")]
    Socket(String),
}

/// A running daemon. Dropping it leaves its tasks to the runtime; [`Daemon::stop`] stops them
/// in order.
pub struct Daemon {
    shutdown: watch::Sender<bool>,
    /// The databases' tasks until they end; then their outcome.
    run: Option<JoinHandle<bool>>,
    ok: bool,
    /// Ended by the shutdown switch, after the databases.
    socket: Option<JoinHandle<()>>,
    /// The listeners and the heartbeat: stopped last, so metrics answer during the final sync.
    background: Vec<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
    mcp_addr: Option<SocketAddr>,
}

impl Daemon {
    /// Starts everything. The listeners are bound before any database is touched, so a taken
    /// port or a bad address stops start-up with an error naming its key (Litestream only logs
    /// it and runs on); missing databases are restored before any is opened, as in Litestream.
    pub async fn start(cfg: Config, opts: Options) -> Result<Daemon, StartError> {
        let mut background = Vec::new();
        let r = Daemon::start_inner(cfg, opts, &mut background).await;
        if r.is_err() {
            for t in &background {
                t.abort();
            }
        }
        r
    }

    async fn start_inner(
        cfg: Config,
        opts: Options,
        background: &mut Vec<JoinHandle<()>>,
    ) -> Result<Daemon, StartError> {
        let found = cfg.dirs.iter().flat_map(|d| d.found.iter());
        // Litestream's two start-up lines per database, with its keys (the replica's location
        // as a redacted URL where Litestream lists each backend's settings).
        for db in cfg.dbs.iter().chain(found) {
            info!(path = %db.path.display(), "initialized db");
            log_replica(&db.replica);
        }
        if !opts.replicate.once {
            log_monitors(&cfg);
        }
        let local = |key, srv: std::io::Result<SocketAddr>| {
            srv.map_err(|source| StartError::LocalAddr { key, source })
        };
        let mut metrics_addr = None;
        if let Some(addr) = &cfg.addr {
            let srv = MetricsServer::bind(addr).await?;
            let at = local("addr", srv.local_addr())?;
            info!(url = %format!("http://{at}/metrics"), "serving metrics on");
            background.push(tokio::spawn(srv.serve()));
            metrics_addr = Some(at);
        }
        let mut mcp_addr = None;
        if let Some(addr) = &cfg.mcp_addr {
            let srv = McpServer::bind(addr, &cfg, opts.mcp_config.clone(), opts.expand_env).await?;
            let at = local("mcp-addr", srv.local_addr())?;
            info!(addr = %at, "starting MCP Streamable HTTP server");
            background.push(tokio::spawn(srv.serve()));
            mcp_addr = Some(at);
        }
        for db in cfg.dbs.iter().filter(|d| d.restore_if_missing) {
            crate::bootstrap::restore_if_missing(db).await?;
        }
        let (shutdown, rx) = watch::channel(false);
        let once = opts.replicate.once;
        let registry: Arc<Registry> = Registry::new(&cfg, opts.replicate);
        let mut socket = None;
        if let (Some(sc), false) = (&cfg.socket, once) {
            let srv = crate::socket::ControlServer::bind(sc, registry.clone())
                .map_err(StartError::Socket)?;
            socket = Some(tokio::spawn(srv.serve(rx.clone())));
        }
        if cfg.dbs.is_empty() && cfg.dirs.is_empty() {
            error!("no databases specified in configuration");
        }
        if let (Some(hb), false) = (&cfg.heartbeat, once) {
            let hb = crate::heartbeat::run(hb.clone(), registry.clone(), rx.clone());
            background.push(tokio::spawn(hb));
        }
        let run = tokio::spawn(replicate_all(cfg, registry, rx));
        Ok(Daemon {
            shutdown,
            run: Some(run),
            ok: false,
            socket,
            background: std::mem::take(background),
            metrics_addr,
            mcp_addr,
        })
    }

    /// Where the metrics listener (`addr`) is bound, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the MCP listener (`mcp-addr`) is bound, if configured.
    pub fn mcp_addr(&self) -> Option<SocketAddr> {
        self.mcp_addr
    }

    /// Asks every database to stop: each makes its final sync and upload within
    /// `shutdown-sync-timeout`. [`Daemon::stopped`] waits for them.
    pub fn begin_stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Drops what is still in flight (a second signal): nothing half-written is published.
    pub fn abort(&self) {
        if let Some(r) = &self.run {
            r.abort();
        }
    }

    /// Waits for replication to end (by itself with `-once`, else after
    /// [`Daemon::begin_stop`]), then for the control socket, then stops the listeners and the
    /// heartbeat. True when every database ended without error. A call cut short (its future
    /// dropped) can be made again.
    pub async fn stopped(&mut self) -> bool {
        if let Some(run) = self.run.as_mut() {
            self.ok = match run.await {
                Ok(ok) => ok,
                Err(e) if e.is_cancelled() => false,
                Err(e) => {
                    error!(error = %e, "replication stopped abnormally");
                    false
                }
            };
            self.run = None;
        }
        if let Some(s) = self.socket.take() {
            // The switch ends it; after `-once` nothing has turned it yet.
            self.begin_stop();
            let _ = s.await;
        }
        // Awaited after the abort, so the listeners are closed when this returns.
        for t in self.background.drain(..) {
            t.abort();
            let _ = t.await;
        }
        self.ok
    }

    /// [`Daemon::begin_stop`], then [`Daemon::stopped`].
    pub async fn stop(mut self) -> bool {
        self.begin_stop();
        self.stopped().await
    }
}

/// Replicates every configured database, and those directory entries find, until `shutdown`
/// turns true (or once). Returns false if any database failed.
async fn replicate_all(
    config: Config,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let opts = registry.options();
    let trimmer = (!opts.once).then(|| tokio::spawn(crate::memory::trim_after_bursts()));
    for db in config.dbs {
        if let Err(e) = registry.add(db) {
            error!(error = %e, "cannot start database");
        }
    }
    let mut monitors: Vec<(PathBuf, JoinHandle<bool>)> = Vec::new();
    for mut dir in config.dirs {
        info!(dir = %dir.dir.display(), count = dir.found.len(), watch = dir.watch, "found databases in directory");
        match (registry.watcher(), dir.watch) {
            (Some(w), true) => {
                // The monitor starts (and stops) the directory's databases itself.
                let name = dir.dir.clone();
                let m = Monitor::run(dir, w.clone(), registry.clone(), shutdown.clone());
                monitors.push((name, tokio::spawn(m)));
                continue;
            }
            (None, true) if !opts.once => {
                error!(dir = %dir.dir.display(), "inotify unavailable: new databases in this directory will not be picked up");
            }
            _ => {}
        }
        for db in std::mem::take(&mut dir.found) {
            if let Err(e) = registry.add(db) {
                error!(error = %e, "cannot start database");
            }
        }
    }
    if !opts.once {
        replicate::stopped(&mut shutdown).await;
    }
    let ok = replicate::join_all(monitors).await;
    let ok = registry.shutdown().await && ok;
    if let Some(t) = trimmer {
        t.abort();
    }
    ok
}

/// Litestream's lines as its store's monitors start (none with `-once`, which runs none): L0
/// retention when it is on, then one per level and one for the snapshots (level 9). Durations
/// in nanoseconds, written as Go durations.
fn log_monitors(cfg: &Config) {
    use storage::value::nanos as ns;
    if !cfg.l0_retention.is_zero() && !cfg.l0_retention_check_interval.is_zero() {
        info!(
            system = "store",
            interval = ns(cfg.l0_retention_check_interval),
            retention = ns(cfg.l0_retention),
            "starting L0 retention monitor"
        );
    }
    for (level, every) in (1u64..).zip(&cfg.levels) {
        info!(
            system = "store",
            level,
            interval = ns(*every),
            "starting compaction monitor"
        );
    }
    info!(
        system = "store",
        level = 9u64,
        interval = ns(cfg.snapshot_interval),
        "starting compaction monitor"
    );
}

/// Litestream's `replicating to` line: the replica type, its sync interval, and per backend the
/// settings Litestream lists (none for WebDAV); never a secret.
fn log_replica(r: &crate::config::ReplicaConfig) {
    use storage::ReplicaUrl as U;
    // Nanoseconds: the log layout writes a Go duration (`1s` in text, a number in JSON).
    let (t, interval) = (&r.kind, storage::value::nanos(r.sync_interval));
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    match r.location() {
        Ok(U::File(p)) => {
            info!("type" = %t, "sync-interval" = interval, path = %p.display(), "replicating to");
        }
        Ok(U::S3(s)) if s.flavor == storage::s3::Flavor::Oss => {
            info!("type" = %t, "sync-interval" = interval, bucket = %s.bucket, path = %s.path, region = %opt(&s.region), "replicating to");
        }
        Ok(U::S3(s)) => {
            info!("type" = %t, "sync-interval" = interval, bucket = %s.bucket, path = %s.path, region = %opt(&s.region), endpoint = %opt(&s.endpoint), "replicating to");
        }
        Ok(U::Gcs(s)) => {
            info!("type" = %t, "sync-interval" = interval, bucket = %s.bucket, path = %s.path, "replicating to");
        }
        Ok(U::Abs(s)) => {
            info!("type" = %t, "sync-interval" = interval, bucket = %s.container, path = %s.path, endpoint = %opt(&s.endpoint), "replicating to");
        }
        Ok(U::Sftp(s)) => {
            info!("type" = %t, "sync-interval" = interval, host = %s.host, user = %s.user, path = %s.path, "replicating to");
        }
        Ok(U::Nats(s)) => {
            info!("type" = %t, "sync-interval" = interval, bucket = %s.bucket, url = %s.server, "replicating to");
        }
        Ok(U::WebDav(_)) | Err(_) => {
            info!("type" = %t, "sync-interval" = interval, "replicating to");
        }
    }
}
