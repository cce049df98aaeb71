//! inotify wake-ups: one instance and one reader thread for the whole process, one directory
//! watch per database directory, and a `Notify` per database that fires when its file or WAL
//! changes. Events on anything else (other files, our meta directory) are ignored.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};

use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;

type Targets = HashMap<WatchDescriptor, Vec<(OsString, Arc<Notify>)>>;

pub struct Watcher {
    watches: Mutex<Watches>,
    targets: Arc<Mutex<Targets>>,
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
                    let Ok(map) = t.lock() else { return };
                    for ev in events {
                        let (Some(name), Some(list)) = (ev.name, map.get(&ev.wd)) else {
                            continue;
                        };
                        for (want, n) in list {
                            if want.as_os_str() == name {
                                n.notify_one();
                            }
                        }
                    }
                }
            })?;
        Ok(Arc::new(Watcher {
            watches: Mutex::new(watches),
            targets,
        }))
    }

    /// Watches a database and its WAL. The returned `Notify` holds a permit after any change.
    pub fn watch(&self, db: &Path) -> std::io::Result<Arc<Notify>> {
        let dir = db.parent().unwrap_or(Path::new("/"));
        let name = db
            .file_name()
            .map(|n| n.to_owned())
            .ok_or_else(|| std::io::Error::other("database path has no file name"))?;
        let mut wal = name.clone();
        wal.push("-wal");
        let mask = WatchMask::MODIFY
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM;
        let wd = self
            .watches
            .lock()
            .map_err(|_| std::io::Error::other("watcher lock poisoned"))?
            .add(dir, mask)?;
        let notify = Arc::new(Notify::new());
        let mut map = self
            .targets
            .lock()
            .map_err(|_| std::io::Error::other("watcher lock poisoned"))?;
        let list = map.entry(wd).or_default();
        list.push((name, notify.clone()));
        list.push((wal, notify.clone()));
        Ok(notify)
    }
}
