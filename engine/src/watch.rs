//! inotify wake-ups: one instance and one reader thread for the whole process, and a `Notify`
//! per database that fires when its file or WAL changes.
//!
//! Two kinds of watches keep a busy database cheap. A directory watch per database directory
//! reports files appearing, disappearing or being renamed (rare events) for the database and
//! its WAL. Modifications are watched on the files themselves with `IN_ONESHOT`: the first write
//! after [`DbWatch::arm`] wakes the task, and the kernel then drops the watch, so a burst of
//! commits costs one event, not one per commit. The task re-arms right before each pass;
//! anything written after the re-arm fires again, anything written before it is read by the
//! pass, so no change goes unnoticed. Events on anything else are ignored.
//!
//! Directory replication with `watch` ([`crate::dirs`]) adds listeners to directory watches:
//! they receive every create, delete and rename in the directory, and the directory's own
//! removal. Watches are added with `IN_MASK_ADD`, so a directory watched for a database and
//! for a listener keeps both masks; databases are only woken by the events they asked for.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::{mpsc, Notify};

/// What a database watch wants to hear about in its directory.
const DB_DIR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM);
const DB_DIR_EVENTS: EventMask = EventMask::CREATE
    .union(EventMask::DELETE)
    .union(EventMask::MOVED_TO)
    .union(EventMask::MOVED_FROM);

/// One event in a directory with listeners; `name` is `None` for the directory itself
/// (`IN_DELETE_SELF`, `IN_MOVE_SELF`, `IN_IGNORED`).
#[derive(Debug)]
pub struct DirEvent {
    /// The directory watched.
    pub dir: PathBuf,
    /// The name of the entry the event is about; `None` for the directory itself.
    pub name: Option<OsString>,
    /// What happened (inotify's event bits).
    pub mask: EventMask,
}

type Listener = mpsc::UnboundedSender<DirEvent>;

#[derive(Default)]
struct DirTarget {
    /// The file names of interest to databases.
    names: Vec<(OsString, Arc<Notify>)>,
    /// Directory monitors, with the path they watch.
    listeners: Vec<(PathBuf, Listener)>,
}

enum Target {
    /// A directory watch.
    Dir(DirTarget),
    /// A one-shot modify watch on a file (several databases could share an inode).
    File(Vec<Arc<Notify>>),
}

type Targets = HashMap<WatchDescriptor, Target>;

/// The process's one inotify instance and its reader thread, which wakes the databases and
/// directory listeners that events concern.
pub struct Watcher {
    watches: Mutex<Watches>,
    targets: Arc<Mutex<Targets>>,
}

/// The watch of one database: `notify` holds a permit after a change.
pub struct DbWatch {
    watcher: Arc<Watcher>,
    files: [PathBuf; 2],
    /// Gets a permit when the database or its WAL changes.
    pub notify: Arc<Notify>,
}

impl DbWatch {
    /// (Re-)installs the one-shot modify watches on the database and its WAL. A missing file is
    /// not an error: the directory watch reports its creation. False if a watch could not be
    /// added (the inotify watch limit, `fs.inotify.max_user_watches`, is reached): the task
    /// must then poll at `monitor-interval`.
    pub fn arm(&self) -> bool {
        let mut ok = true;
        for f in &self.files {
            ok &= self.watcher.arm_once(f, &self.notify);
        }
        ok
    }
}

impl Watcher {
    /// Starts the reader thread. Fails where inotify is unavailable; callers then rely on the
    /// monitor-interval timer alone.
    pub fn start() -> std::io::Result<Arc<Watcher>> {
        let mut inotify = Inotify::init()?;
        let watches = inotify.watches();
        let targets: Arc<Mutex<Targets>> = Arc::default();
        let t = targets.clone();
        std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let events = match inotify.read_events_blocking(&mut buf) {
                        Ok(ev) => ev,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "inotify read failed; falling back to timers");
                            return;
                        }
                    };
                    let Ok(mut map) = t.lock() else { return };
                    for ev in events {
                        if ev.mask.contains(EventMask::Q_OVERFLOW) {
                            // Events were lost: every database must look for itself.
                            tracing::warn!("inotify queue overflowed; waking every database");
                            wake_all(&map);
                            continue;
                        }
                        let ignored = ev.mask.contains(EventMask::IGNORED);
                        match map.get(&ev.wd) {
                            Some(Target::Dir(t)) => {
                                for (dir, l) in &t.listeners {
                                    let _ = l.send(DirEvent {
                                        dir: dir.clone(),
                                        name: ev.name.map(|n| n.to_owned()),
                                        mask: ev.mask,
                                    });
                                }
                                if ignored {
                                    map.remove(&ev.wd);
                                    continue;
                                }
                                let Some(name) = ev.name else { continue };
                                if !ev.mask.intersects(DB_DIR_EVENTS) {
                                    continue;
                                }
                                for (want, n) in &t.names {
                                    if want.as_os_str() == name {
                                        n.notify_one();
                                    }
                                }
                            }
                            Some(Target::File(list)) => {
                                // A modification, or the watch going away (one-shot fired,
                                // file deleted): either way the task must look.
                                for n in list {
                                    n.notify_one();
                                }
                                if ignored {
                                    map.remove(&ev.wd);
                                }
                            }
                            None => {}
                        }
                    }
                }
            })?;
        Ok(Arc::new(Watcher {
            watches: Mutex::new(watches),
            targets,
        }))
    }

    /// Watches a database and its WAL. Call [`DbWatch::arm`] before each pass.
    pub fn watch(self: &Arc<Self>, db: &Path) -> std::io::Result<DbWatch> {
        let dir = db.parent().unwrap_or(Path::new("/"));
        let name = db
            .file_name()
            .map(|n| n.to_owned())
            .ok_or_else(|| std::io::Error::other("database path has no file name"))?;
        let mut wal = name.clone();
        wal.push("-wal");
        let notify = Arc::new(Notify::new());
        self.with_dir(dir, DB_DIR_MASK, |t| {
            t.names.push((name, notify.clone()));
            t.names.push((wal.clone(), notify.clone()));
        })?;
        let w = DbWatch {
            watcher: self.clone(),
            files: [db.to_path_buf(), dir.join(wal)],
            notify,
        };
        w.arm();
        Ok(w)
    }

    /// Adds `mask` to the watch of directory `dir` and updates its target.
    fn with_dir(
        &self,
        dir: &Path,
        mask: WatchMask,
        f: impl FnOnce(&mut DirTarget),
    ) -> std::io::Result<WatchDescriptor> {
        // The targets lock is held across the add, so the reader thread cannot see an event
        // for the new descriptor before it is registered.
        let mut map = self
            .targets
            .lock()
            .map_err(|_| std::io::Error::other("watcher lock poisoned"))?;
        let wd = self
            .watches
            .lock()
            .map_err(|_| std::io::Error::other("watcher lock poisoned"))?
            .add(dir, mask | WatchMask::MASK_ADD)?;
        match map
            .entry(wd.clone())
            .or_insert_with(|| Target::Dir(DirTarget::default()))
        {
            Target::Dir(t) => f(t),
            Target::File(_) => return Err(std::io::Error::other("directory watched as a file")),
        }
        Ok(wd)
    }

    /// Sends every create, delete and rename in `dir` (and its own removal) to `tx`.
    pub fn watch_dir(&self, dir: &Path, tx: Listener) -> std::io::Result<WatchDescriptor> {
        let mask = DB_DIR_MASK | WatchMask::DELETE_SELF | WatchMask::MOVE_SELF;
        self.with_dir(dir, mask, |t| t.listeners.push((dir.to_path_buf(), tx)))
    }

    /// Stops sending events of `wd` to `tx`.
    pub fn unwatch_dir(&self, wd: &WatchDescriptor, tx: &Listener) {
        let Ok(mut map) = self.targets.lock() else {
            return;
        };
        if let Some(Target::Dir(t)) = map.get_mut(wd) {
            t.listeners.retain(|(_, l)| !l.same_channel(tx));
        }
    }

    /// (Re-)installs a one-shot modify watch on `file` that wakes `notify`. A missing file is
    /// not an error (the directory watch reports its creation); false if the watch could not
    /// be added for another reason.
    pub fn arm_once(&self, file: &Path, notify: &Arc<Notify>) -> bool {
        let Ok(mut map) = self.targets.lock() else {
            return false;
        };
        let Ok(mut watches) = self.watches.lock() else {
            return false;
        };
        let wd = match watches.add(file, WatchMask::MODIFY | WatchMask::ONESHOT) {
            Ok(wd) => wd,
            Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
        };
        match map.entry(wd).or_insert_with(|| Target::File(Vec::new())) {
            Target::File(list) => {
                if !list.iter().any(|n| Arc::ptr_eq(n, notify)) {
                    list.push(notify.clone());
                }
            }
            // Cannot happen (a file is not a directory); wake rather than lose a change.
            Target::Dir(_) => notify.notify_one(),
        }
        true
    }
}

/// Wakes every database with a watch.
fn wake_all(map: &Targets) {
    for t in map.values() {
        match t {
            Target::Dir(d) => d.names.iter().for_each(|(_, n)| n.notify_one()),
            Target::File(list) => list.iter().for_each(|n| n.notify_one()),
        }
    }
}
