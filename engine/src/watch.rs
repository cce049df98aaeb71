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

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;

enum Target {
    /// A directory watch: the file names of interest in it.
    Dir(Vec<(OsString, Arc<Notify>)>),
    /// A one-shot modify watch on a file (several databases could share an inode).
    File(Vec<Arc<Notify>>),
}

type Targets = HashMap<WatchDescriptor, Target>;

pub struct Watcher {
    watches: Mutex<Watches>,
    targets: Arc<Mutex<Targets>>,
}

/// The watch of one database: `notify` holds a permit after a change.
pub struct DbWatch {
    watcher: Arc<Watcher>,
    files: [PathBuf; 2],
    pub notify: Arc<Notify>,
}

impl DbWatch {
    /// (Re-)installs the one-shot modify watches on the database and its WAL. A missing file is
    /// not an error: the directory watch reports its creation.
    pub fn arm(&self) {
        let Ok(mut map) = self.watcher.targets.lock() else {
            return;
        };
        let Ok(mut watches) = self.watcher.watches.lock() else {
            return;
        };
        // The targets lock is held across the add, so the reader thread cannot see an event
        // for the new descriptor before it is registered.
        for f in &self.files {
            let Ok(wd) = watches.add(f, WatchMask::MODIFY | WatchMask::ONESHOT) else {
                continue;
            };
            match map.entry(wd).or_insert_with(|| Target::File(Vec::new())) {
                Target::File(list) => {
                    if !list.iter().any(|n| Arc::ptr_eq(n, &self.notify)) {
                        list.push(self.notify.clone());
                    }
                }
                // Cannot happen (a file is not a directory); wake rather than lose a change.
                Target::Dir(_) => self.notify.notify_one(),
            }
        }
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
                        let ignored = ev.mask.contains(EventMask::IGNORED);
                        match map.get(&ev.wd) {
                            Some(Target::Dir(list)) => {
                                let Some(name) = ev.name else { continue };
                                for (want, n) in list {
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
        let mask =
            WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM;
        let notify = Arc::new(Notify::new());
        {
            let mut map = self
                .targets
                .lock()
                .map_err(|_| std::io::Error::other("watcher lock poisoned"))?;
            let wd = self
                .watches
                .lock()
                .map_err(|_| std::io::Error::other("watcher lock poisoned"))?
                .add(dir, mask)?;
            match map.entry(wd).or_insert_with(|| Target::Dir(Vec::new())) {
                Target::Dir(list) => {
                    list.push((name, notify.clone()));
                    list.push((wal.clone(), notify.clone()));
                }
                Target::File(_) => {
                    return Err(std::io::Error::other("directory watched as a file"));
                }
            }
        }
        let w = DbWatch {
            watcher: self.clone(),
            files: [db.to_path_buf(), dir.join(wal)],
            notify,
        };
        w.arm();
        Ok(w)
    }
}
