//! The [`Registry`] of databases one process replicates: added, started, stopped and removed
//! by the configuration, directory monitors and the control socket.

use super::task::DbTask;
use super::*;

/// Every database this process replicates, running or stopped by the control socket, in the
/// order they were added. Directory monitors and the control socket add and remove databases
/// through it; each running one is a task of [`Spawner`] with its own stop switch.
pub struct Registry {
    pub(super) spawner: Spawner,
    dbs: Mutex<Vec<Entry>>,
    /// Tasks told to stop whose end nobody awaited (a timed-out `stop`), awaited at shutdown.
    detached: Mutex<Vec<(PathBuf, tokio::task::JoinHandle<bool>)>>,
}

struct Entry {
    cfg: DbConfig,
    handle: DbHandle,
    run: Option<Running>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<bool>,
}

/// What the registry knows of one database, for `/list`, `/txid` and the heartbeat.
#[derive(Clone, Debug)]
pub struct DbView {
    /// The database path.
    pub path: PathBuf,
    /// Whether its task is running (not stopped, and not ended on its own).
    pub running: bool,
    /// What its task shares: positions, health and a way to ask for a sync.
    pub handle: DbHandle,
}

impl Registry {
    /// An empty registry for `config`'s global settings (levels, retention, shutdown sync).
    pub fn new(config: &Config, opts: Options) -> Arc<Registry> {
        let watcher = if opts.once {
            None
        } else {
            match Watcher::start() {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(error = %e, "inotify unavailable; relying on monitor-interval polling");
                    None
                }
            }
        };
        let shared = Shared {
            shutdown_sync_timeout: config.shutdown_sync_timeout,
            shutdown_sync_interval: config.shutdown_sync_interval,
            maintenance: Settings {
                levels: config.levels.clone(),
                snapshot_interval: config.snapshot_interval,
                l0_check_interval: config.l0_retention_check_interval,
                policy: Policy {
                    l0_retention: config.l0_retention,
                    snapshot_retention: config.snapshot_retention,
                    remote: config.retention_enabled,
                    max_level: u8::try_from(config.levels.len()).unwrap_or(8),
                },
                verify_compaction: config.verify_compaction,
                validation_interval: config.validation_interval,
            },
            pool: JobPermits::default(),
        };
        Arc::new(Registry {
            spawner: Spawner {
                watcher,
                shared,
                opts,
            },
            dbs: Mutex::new(Vec::new()),
            detached: Mutex::new(Vec::new()),
        })
    }

    /// What the command line asked of every database.
    pub fn options(&self) -> Options {
        self.spawner.opts
    }

    /// The inotify watcher shared by every database, if inotify works (never with `-once`).
    pub fn watcher(&self) -> Option<&Arc<Watcher>> {
        self.spawner.watcher.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.dbs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts replicating `db`. Refused if its path or meta directory is already in use.
    pub fn add(&self, db: DbConfig) -> std::result::Result<(), String> {
        let mut dbs = self.lock();
        if dbs.iter().any(|e| e.cfg.path == db.path) {
            return Err(format!(
                "database {} is already registered",
                db.path.display()
            ));
        }
        if let Some(other) = dbs.iter().find(|e| e.cfg.meta_path == db.meta_path) {
            return Err(format!(
                "meta-path collision: databases {} and {} would share meta-path {}",
                other.cfg.path.display(),
                db.path.display(),
                db.meta_path.display()
            ));
        }
        let running = dbs.iter().filter(|e| e.is_running()).count();
        check_fd_limit(running + 1)?;
        let (handle, run) = self.spawner.start(&db);
        dbs.push(Entry {
            cfg: db,
            handle,
            run: Some(run),
        });
        Ok(())
    }

    /// Whether a database at `path` is registered.
    pub fn contains(&self, path: &Path) -> bool {
        self.lock().iter().any(|e| e.cfg.path == path)
    }

    /// The registered database using meta directory `meta`.
    pub fn meta_owner(&self, meta: &Path) -> Option<PathBuf> {
        let dbs = self.lock();
        dbs.iter()
            .find(|e| e.cfg.meta_path == meta)
            .map(|e| e.cfg.path.clone())
    }

    /// Registered databases at or below `dir`.
    pub fn paths_under(&self, dir: &Path) -> Vec<PathBuf> {
        let dbs = self.lock();
        dbs.iter()
            .filter(|e| e.cfg.path.starts_with(dir))
            .map(|e| e.cfg.path.clone())
            .collect()
    }

    /// The database at `path`.
    pub fn get(&self, path: &Path) -> Option<DbView> {
        self.lock()
            .iter()
            .find(|e| e.cfg.path == path)
            .map(Entry::view)
    }

    /// Every database, in the order they were added.
    pub fn list(&self) -> Vec<DbView> {
        self.lock().iter().map(Entry::view).collect()
    }

    /// Starts a stopped database again. `None` if unknown, `Some(false)` if already running.
    pub fn start(&self, path: &Path) -> Option<bool> {
        let mut dbs = self.lock();
        let e = dbs.iter_mut().find(|e| e.cfg.path == path)?;
        if e.is_running() {
            return Some(false);
        }
        let (handle, run) = self.spawner.start(&e.cfg);
        // Until the task has looked, the positions are the ones it stopped at.
        handle.set_local(e.handle.local_txid());
        handle
            .inner
            .replicated
            .send_replace(e.handle.replicated_txid());
        e.handle = handle;
        e.run = Some(run);
        Some(true)
    }

    /// Tells the database's task to stop (it makes its final sync) and hands back the task.
    /// `None` if unknown, `Some(None)` if already stopped.
    pub fn stop(&self, path: &Path) -> Option<Option<tokio::task::JoinHandle<bool>>> {
        let mut dbs = self.lock();
        let e = dbs.iter_mut().find(|e| e.cfg.path == path)?;
        Some(e.run.take().map(Running::stop))
    }

    /// Stops and forgets the database. `None` if unknown; else its task, if it was running.
    pub fn remove(&self, path: &Path) -> Option<Option<tokio::task::JoinHandle<bool>>> {
        let mut dbs = self.lock();
        let i = dbs.iter().position(|e| e.cfg.path == path)?;
        Some(dbs.remove(i).run.map(Running::stop))
    }

    /// Keeps a stopping task to await at shutdown.
    pub fn detach(&self, path: PathBuf, task: tokio::task::JoinHandle<bool>) {
        let mut d = self.detached.lock().unwrap_or_else(|e| e.into_inner());
        d.retain(|(_, t)| !t.is_finished());
        d.push((path, task));
    }

    /// Stops every database (each with its final sync, or after its one pass in `-once`
    /// mode) and waits for all of them. False if any failed.
    pub async fn shutdown(&self) -> bool {
        let once = self.spawner.opts.once;
        let mut tasks: Vec<(PathBuf, tokio::task::JoinHandle<bool>)> = {
            let mut dbs = self.lock();
            dbs.iter_mut()
                .filter_map(|e| {
                    let r = e.run.take()?;
                    let task = if once { r.task } else { r.stop() };
                    Some((e.cfg.path.clone(), task))
                })
                .collect()
        };
        tasks.extend(std::mem::take(
            &mut *self.detached.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        join_all(tasks).await
    }
}

impl Entry {
    /// Started and not ended: a task that stopped by itself (a replica conflict, a failed
    /// start) is stopped, and `start` may run it again.
    fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.task.is_finished())
    }

    fn view(&self) -> DbView {
        DbView {
            path: self.cfg.path.clone(),
            running: self.is_running(),
            handle: self.handle.clone(),
        }
    }
}

impl Running {
    fn stop(self) -> tokio::task::JoinHandle<bool> {
        let _ = self.stop.send(true);
        self.task
    }
}

/// Starts database tasks for the [`Registry`].
#[derive(Clone)]
pub(super) struct Spawner {
    pub(super) watcher: Option<Arc<Watcher>>,
    shared: Shared,
    pub(super) opts: Options,
}

impl Spawner {
    /// Replicates `db` on its own task until its stop switch turns true (or once).
    fn start(&self, db: &DbConfig) -> (DbHandle, Running) {
        let (stop, shutdown) = watch::channel(false);
        let (handle, sync_rx) = DbHandle::new();
        let db = Arc::new(db.clone());
        let notify = self.watcher.as_ref().and_then(|w| match w.watch(&db.path) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(db = %db.path.display(), error = %e, "cannot watch database directory; polling instead");
                None
            }
        });
        let task = DbTask {
            cfg: db,
            shared: self.shared.clone(),
            notify,
            shutdown,
            stop: stop.clone(),
            handle: handle.clone(),
            sync_rx,
            once: self.opts.once,
            force_snapshot: self.opts.force_snapshot,
            enforce_retention: self.opts.enforce_retention,
        };
        let task = tokio::spawn(task.run());
        (handle, Running { stop, task })
    }
}
