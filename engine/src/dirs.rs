//! Directory replication (`dir` + `pattern`, optional `recursive`, `watch`, `meta-dir`), as
//! Litestream 0.5.17's `NewDBsFromDirectoryConfig` and `DirectoryMonitor` do it.
//!
//! Every file under `dir` whose base name matches `pattern` (Go `filepath.Match`) and starts
//! with the SQLite header is replicated as if it had its own entry, configured as
//! [`DirConfig::db_for`] (in the config crate) derives it.
//!
//! With `watch: true` a monitor task follows the tree with inotify (the process-wide
//! [`Watcher`]): directory watches report files and subdirectories appearing, disappearing or
//! being renamed; a matching file too short to hold the SQLite header yet (SQLite creates it
//! empty) gets a one-shot modify watch and is looked at again when it is written. Events are gathered for 250 ms
//! (Litestream's debounce) before databases are started. A removed database's task is
//! stopped with a final sync, as Litestream's `UnregisterDB` closes it. Nothing runs while
//! nothing happens: the task is parked on its channel.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use inotify::{EventMask, WatchDescriptor};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{DbConfig, DirConfig};
use crate::replicate::Registry;
use crate::watch::{DirEvent, Watcher};

/// Litestream's `debounceInterval`.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Litestream's `FindSQLiteDatabases` + `NewDBsFromDirectoryConfig`: every matching SQLite
/// file, in `filepath.Walk` order. No database at all is an error unless `watch` is set.
pub fn scan(d: &DirConfig) -> Result<Vec<DbConfig>, String> {
    let meta = std::fs::metadata(&d.dir)
        .map_err(|e| format!("failed to scan directory {}: {e}", d.dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", d.dir.display()));
    }
    let mut paths = Vec::new();
    walk(d, &d.dir, &mut paths)
        .map_err(|e| format!("failed to scan directory {}: {e}", d.dir.display()))?;
    if paths.is_empty() && !d.watch {
        return Err(format!(
            "no SQLite databases found in directory {} with pattern {}",
            d.dir.display(),
            d.pattern
        ));
    }
    let mut metas: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut out = Vec::new();
    for p in paths {
        let db = d.db_for(&p)?;
        if let Some(other) = metas.insert(db.meta_path.clone(), p.clone()) {
            return Err(format!(
                "meta-path collision: databases {} and {} would share meta-path {}",
                other.display(),
                p.display(),
                db.meta_path.display()
            ));
        }
        out.push(db);
    }
    Ok(out)
}

fn walk(d: &DirConfig, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        // Lstat, as filepath.Walk: a symlink to a directory is not followed.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            if d.recursive {
                walk(d, &path, out)?;
            }
        } else if d.matches(&name) && is_sqlite(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Scans every directory entry, filling `found`. The first problem stops start-up.
pub fn scan_all(dirs: &mut [DirConfig]) -> Result<(), String> {
    for d in dirs {
        d.found = scan(d).map_err(|e| format!("config key {}.dir: {e}", d.key))?;
    }
    Ok(())
}

/// A file starting with `SQLite format 3\0` (Litestream's `IsSQLiteDatabase`).
pub fn is_sqlite(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 16];
    // Through the process's shared descriptor (crate::held): if the file is a database we
    // already replicate under another name, closing a descriptor of our own would drop the
    // locks our connections hold on it.
    crate::held::open(path)
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// SQLite's side files, never databases themselves (Litestream's `shouldSkipPath`).
fn is_side_file(name: &OsStr) -> bool {
    let n = name.as_encoded_bytes();
    n.ends_with(b"-wal") || n.ends_with(b"-shm") || n.ends_with(b"-journal")
}

/// The `watch: true` side of one directory entry: starts its databases, then follows the tree.
pub struct Monitor {
    cfg: DirConfig,
    watcher: Arc<Watcher>,
    /// Where the databases run (shared with the control socket).
    registry: Arc<Registry>,
    tx: mpsc::UnboundedSender<DirEvent>,
    /// Watched directories.
    watched: HashMap<PathBuf, WatchDescriptor>,
    /// Stopped on removal, still finishing their final sync.
    stopping: Vec<(PathBuf, JoinHandle<bool>)>,
    /// Matching files that were not SQLite databases when looked at; each has a one-shot
    /// modify watch that fires `changed`.
    candidates: HashSet<PathBuf>,
    changed: Arc<Notify>,
    pending: HashSet<PathBuf>,
}

impl Monitor {
    /// Runs until `shutdown`, then waits for the databases it removed to finish their final
    /// sync (the registry stops the others). Returns false if any of them failed.
    pub async fn run(
        mut cfg: DirConfig,
        watcher: Arc<Watcher>,
        registry: Arc<Registry>,
        mut shutdown: watch::Receiver<bool>,
    ) -> bool {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let found = std::mem::take(&mut cfg.found);
        let mut m = Monitor {
            cfg,
            watcher,
            registry,
            tx,
            watched: HashMap::new(),
            stopping: Vec::new(),
            candidates: HashSet::new(),
            changed: Arc::new(Notify::new()),
            pending: HashSet::new(),
        };
        for db in found {
            m.start(db);
        }
        // Watches first, then a scan: a database created between the start-up scan and the
        // watches is found by the scan, one created after by an event.
        let root = m.cfg.dir.clone();
        m.add_tree(&root);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let debounce = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                ev = rx.recv() => match ev {
                    Some(ev) => m.event(ev),
                    None => break,
                },
                _ = m.changed.notified() => {
                    let c = std::mem::take(&mut m.candidates);
                    m.pending.extend(c);
                }
                _ = debounce => {
                    deadline = None;
                    for p in std::mem::take(&mut m.pending) {
                        m.consider(&p);
                    }
                }
            }
            if deadline.is_none() && !m.pending.is_empty() {
                deadline = Some(tokio::time::Instant::now() + DEBOUNCE);
            }
        }
        for wd in m.watched.values() {
            m.watcher.unwatch_dir(wd, &m.tx);
        }
        crate::replicate::join_all(m.stopping.drain(..)).await
    }

    fn start(&mut self, db: DbConfig) {
        if let Err(e) = self.registry.add(db) {
            error!(dir = %self.cfg.dir.display(), error = %e, "database not replicated");
        }
    }

    /// Watches `dir` (and with `recursive` every directory below it) and looks at every file
    /// in them, as Litestream's `scanDirectory`.
    fn add_tree(&mut self, dir: &Path) {
        if !self.watched.contains_key(dir) {
            match self.watcher.watch_dir(dir, self.tx.clone()) {
                Ok(wd) => {
                    self.watched.insert(dir.to_path_buf(), wd);
                }
                Err(e) => {
                    error!(dir = %dir.display(), error = %e, "cannot watch directory");
                    return;
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    if self.cfg.recursive {
                        self.add_tree(&path);
                    }
                }
                Ok(_) => self.consider(&path),
                Err(_) => {}
            }
        }
    }

    fn event(&mut self, ev: DirEvent) {
        let Some(name) = ev.name else {
            // The directory itself went away (or was moved): its watch is gone.
            if ev
                .mask
                .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
            {
                self.drop_tree(&ev.dir);
                if ev.dir == self.cfg.dir {
                    warn!(dir = %ev.dir.display(), "watched directory removed; new databases in it will not be found");
                }
            }
            return;
        };
        if is_side_file(&name) {
            return;
        }
        let path = ev.dir.join(&name);
        let gone = ev
            .mask
            .intersects(EventMask::DELETE | EventMask::MOVED_FROM);
        let came = ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
        if ev.mask.contains(EventMask::ISDIR) {
            if gone {
                self.drop_tree(&path);
            } else if came && self.cfg.recursive {
                self.add_tree(&path);
            }
            return;
        }
        if gone {
            self.candidates.remove(&path);
            self.pending.remove(&path);
            self.remove(&path);
        } else if came && self.cfg.matches(&name) {
            self.pending.insert(path);
        }
    }

    /// A file that may be a new database (Litestream's `handlePotentialDatabase`).
    fn consider(&mut self, path: &Path) {
        if self.registry.contains(path) {
            return;
        }
        let Some(name) = path.file_name() else { return };
        if is_side_file(name) || !self.cfg.matches(name) {
            return;
        }
        if !is_sqlite(path) {
            // Perhaps not written yet (SQLite creates the file empty and writes the header
            // with the first page): look again when it is. A file that already has 16 bytes
            // of something else is left alone, which bounds the number of file watches.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() < 16) {
                self.watcher.arm_once(path, &self.changed);
                self.candidates.insert(path.to_path_buf());
            }
            return;
        }
        let db = match self.cfg.db_for(path) {
            Ok(db) => db,
            Err(e) => {
                error!(path = %path.display(), error = %e, "configure database");
                return;
            }
        };
        if let Some(other) = self.registry.meta_owner(&db.meta_path) {
            error!(path = %path.display(), other = %other.display(), meta = %db.meta_path.display(), "meta-path collision; database not replicated");
            return;
        }
        info!(dir = %self.cfg.dir.display(), path = %path.display(), meta = %db.meta_path.display(), "added database to replication");
        self.start(db);
    }

    /// Stops the database at `path`, with its final sync.
    fn remove(&mut self, path: &Path) {
        let Some(task) = self.registry.remove(path) else {
            return;
        };
        self.stopping.retain(|(_, t)| !t.is_finished());
        if let Some(task) = task {
            self.stopping.push((path.to_path_buf(), task));
        }
        info!(dir = %self.cfg.dir.display(), path = %path.display(), "removed database from replication");
    }

    /// A directory was removed or moved away: stop watching it and everything below, and stop
    /// its databases.
    fn drop_tree(&mut self, dir: &Path) {
        for d in keys_under(&self.watched, dir) {
            if let Some(wd) = self.watched.remove(&d) {
                self.watcher.unwatch_dir(&wd, &self.tx);
            }
        }
        for p in self.registry.paths_under(dir) {
            self.remove(&p);
        }
        self.candidates.retain(|p| !p.starts_with(dir));
        self.pending.retain(|p| !p.starts_with(dir));
    }
}

fn keys_under<V>(map: &HashMap<PathBuf, V>, dir: &Path) -> Vec<PathBuf> {
    map.keys().filter(|p| p.starts_with(dir)).cloned().collect()
}
