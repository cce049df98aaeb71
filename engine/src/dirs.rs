//! Directory replication (`dir` + `pattern`, optional `recursive`, `watch`, `meta-dir`), as
//! Litestream 0.5.17's `NewDBsFromDirectoryConfig` and `DirectoryMonitor` do it.
//!
//! Every file under `dir` whose base name matches `pattern` (Go `filepath.Match`) and starts
//! with the SQLite header is replicated as if it had its own entry: the entry's settings, the
//! database's path relative to `dir` appended to the replica's path or URL
//! (`<replica>/<rel>`), and its meta directory from `meta-dir` (`<meta-dir>/<rel>-litestream`),
//! `meta-path` (`<meta-path>/<reldir>/.<file>-litestream`) or the default beside the database.
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
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use inotify::{EventMask, WatchDescriptor};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{default_meta_path, DbConfig, ReplicaConfig};
use crate::replicate::Registry;
use crate::watch::{DirEvent, Watcher};

/// Litestream's `debounceInterval`.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Where the meta directories of a directory entry's databases go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaBase {
    /// `<db dir>/.<file>-litestream`.
    Default,
    /// `meta-dir`: `<meta-dir>/<rel>-litestream`.
    MetaDir(PathBuf),
    /// `meta-path` on a directory entry: `<meta-path>/<reldir>/.<file>-litestream`.
    MetaPath(PathBuf),
}

/// One `dir` entry of `dbs`.
#[derive(Clone, Debug)]
pub struct DirConfig {
    /// `dbs[i]`, for messages.
    pub key: String,
    pub dir: PathBuf,
    pub pattern: String,
    pub recursive: bool,
    pub watch: bool,
    pub meta: MetaBase,
    /// `restore-if-db-not-exists` as written on the entry. Litestream 0.5.17 only restores
    /// entries with a `path`, so it is not acted on (a warning says so).
    pub restore_if_missing: bool,
    /// The entry's settings; `path`, `meta_path` and the replica location are per database.
    pub template: DbConfig,
    /// The databases found by [`scan_all`] at start-up.
    pub found: Vec<DbConfig>,
}

impl DirConfig {
    /// Whether a base name matches `pattern` (checked when the config was read).
    pub fn matches(&self, name: &OsStr) -> bool {
        let name: Vec<char> = name.to_string_lossy().chars().collect();
        let pat: Vec<char> = self.pattern.chars().collect();
        glob(&pat, &name)
    }

    /// The configuration of the database at `path` (under `dir`).
    pub fn db_for(&self, path: &Path) -> Result<DbConfig, String> {
        let rel = path
            .strip_prefix(&self.dir)
            .map_err(|_| format!("{} is not under {}", path.display(), self.dir.display()))?;
        let rel_str = rel
            .to_str()
            .ok_or_else(|| format!("{}: the path is not valid UTF-8", path.display()))?;
        let mut db = self.template.clone();
        db.path = path.to_path_buf();
        db.meta_path = match &self.meta {
            MetaBase::Default => default_meta_path(path),
            MetaBase::MetaDir(base) => base.join(format!("{rel_str}-litestream")),
            MetaBase::MetaPath(base) => {
                let file = rel
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default();
                let reldir = rel.parent().unwrap_or(Path::new(""));
                base.join(reldir).join(format!(".{file}-litestream"))
            }
        };
        db.replica = replica_for(&self.template.replica, rel_str)?;
        db.restore_if_missing = false;
        Ok(db)
    }

    /// Litestream's `FindSQLiteDatabases` + `NewDBsFromDirectoryConfig`: every matching SQLite
    /// file, in `filepath.Walk` order. No database at all is an error unless `watch` is set.
    pub fn scan(&self) -> Result<Vec<DbConfig>, String> {
        let meta = std::fs::metadata(&self.dir)
            .map_err(|e| format!("failed to scan directory {}: {e}", self.dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", self.dir.display()));
        }
        let mut paths = Vec::new();
        self.walk(&self.dir, &mut paths)
            .map_err(|e| format!("failed to scan directory {}: {e}", self.dir.display()))?;
        if paths.is_empty() && !self.watch {
            return Err(format!(
                "no SQLite databases found in directory {} with pattern {}",
                self.dir.display(),
                self.pattern
            ));
        }
        let mut metas: HashMap<PathBuf, PathBuf> = HashMap::new();
        let mut out = Vec::new();
        for p in paths {
            let db = self.db_for(&p)?;
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

    fn walk(&self, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
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
                if self.recursive {
                    self.walk(&path, out)?;
                }
            } else if self.matches(&name) && is_sqlite(&path) {
                out.push(path);
            }
        }
        Ok(())
    }
}

/// Scans every directory entry, filling `found`. The first problem stops start-up.
pub fn scan_all(dirs: &mut [DirConfig]) -> Result<(), String> {
    for d in dirs {
        d.found = d
            .scan()
            .map_err(|e| format!("config key {}.dir: {e}", d.key))?;
    }
    Ok(())
}

/// A file starting with `SQLite format 3\0` (Litestream's `IsSQLiteDatabase`).
pub fn is_sqlite(path: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// SQLite's side files, never databases themselves (Litestream's `shouldSkipPath`).
fn is_side_file(name: &OsStr) -> bool {
    let n = name.as_encoded_bytes();
    n.ends_with(b"-wal") || n.ends_with(b"-shm") || n.ends_with(b"-journal")
}

/// The replica of one database: the entry's replica with `rel` appended to its directory,
/// URL path or `path` key (Litestream's `cloneReplicaConfigWithRelativePath`).
fn replica_for(base: &ReplicaConfig, rel: &str) -> Result<ReplicaConfig, String> {
    let mut r = base.clone();
    if r.kind == "file" {
        r.url = Path::new(&r.url).join(rel).to_string_lossy().into_owned();
    } else if !r.url.is_empty() {
        r.url = append_to_url(&r.url, rel)?;
    } else {
        let joined = match r.settings.get("path").filter(|p| !p.is_empty()) {
            Some(p) => join_slash(p, rel),
            None => rel.to_owned(),
        };
        r.settings.insert("path".into(), joined);
    }
    Ok(r)
}

/// Go's `path.Join(base, rel)`: joined with `/` and cleaned (`.`, `..`, doubled and trailing
/// slashes).
fn join_slash(base: &str, rel: &str) -> String {
    let rooted = base.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in base.split('/').chain(rel.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    if rooted {
        format!("/{body}")
    } else if body.is_empty() {
        ".".into()
    } else {
        body
    }
}

/// Appends `rel` to the path of `scheme://host/path?query` (Litestream's
/// `appendRelativePathToURL`). Names that a URL would have to escape are refused.
fn append_to_url(url: &str, rel: &str) -> Result<String, String> {
    if rel.contains(['?', '#', '%']) {
        return Err(format!(
            "{rel}: a database name with '?', '#' or '%' cannot be appended to the replica URL {}; use the replica's `path` key",
            storage::redact_url(url)
        ));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("replica URL {} has no scheme", storage::redact_url(url)))?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, rest) = rest.split_at(host_end);
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    let joined = if path.is_empty() {
        rel.to_owned()
    } else {
        join_slash(path, rel)
    };
    let joined = joined.trim_start_matches('/');
    Ok(format!("{scheme}://{host}/{joined}{tail}"))
}

/// Checks `pattern` as Go's `filepath.Match` would (`syntax error in pattern`).
pub fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    const BAD: &str = "syntax error in pattern";
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(BAD);
                }
                i += 2;
            }
            '[' => {
                let (_, used) = class(&p[i + 1..], '\0').ok_or(BAD)?;
                i += 1 + used;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Go's `filepath.Match` on a valid pattern (see [`check_pattern`]); `*` and `?` never match
/// `/`.
fn glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => {
            let rest = &p[1..];
            for k in 0..=s.len() {
                if glob(rest, &s[k..]) {
                    return true;
                }
                if s.get(k) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => matches!(s.first(), Some(&c) if c != '/') && glob(&p[1..], &s[1..]),
        Some('[') => {
            let Some(&c) = s.first() else { return false };
            match class(&p[1..], c) {
                Some((true, used)) if c != '/' => glob(&p[1 + used..], &s[1..]),
                _ => false,
            }
        }
        Some('\\') => p.len() > 1 && s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// A character class after its `[`: whether `c` is in it and how many characters it used
/// (the closing `]` included); `None` if malformed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negated = p.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut n = 0;
    loop {
        if p.get(i) == Some(&']') && n > 0 {
            i += 1;
            break;
        }
        let (lo, j) = class_char(p, i)?;
        i = j;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, j) = class_char(p, i + 1)?;
            hi = h;
            i = j;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
        n += 1;
    }
    Some((matched != negated, i))
}

fn class_char(p: &[char], mut i: usize) -> Option<(char, usize)> {
    match p.get(i)? {
        '-' | ']' => None,
        '\\' => {
            i += 1;
            Some((*p.get(i)?, i + 1))
        }
        &c => Some((c, i + 1)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        assert!(check_pattern(p).is_ok(), "{p}");
        let p: Vec<char> = p.chars().collect();
        let s: Vec<char> = s.chars().collect();
        glob(&p, &s)
    }

    #[test]
    fn go_filepath_match() {
        // Cases from Go's path/filepath match_test.go, and a few of our own.
        for (pattern, name, want) in [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "-", true),
            ("*x", "xxx", true),
            ("*.db", "a.db", true),
            ("*.db", "a.db-wal", false),
            ("*.sqlite?", "b.sqlite3", true),
        ] {
            assert_eq!(m(pattern, name), want, "{pattern} {name}");
        }
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "a\\", "*x\\",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins_like_go() {
        assert_eq!(join_slash("db", "sub/a.db"), "db/sub/a.db");
        assert_eq!(join_slash("db/", "a.db"), "db/a.db");
        assert_eq!(join_slash("/x//y/", "a.db"), "/x/y/a.db");
        assert_eq!(join_slash("a/./b/..", "c.db"), "a/c.db");
        assert_eq!(
            append_to_url("s3://bucket/prefix?region=x", "sub/a.db").as_deref(),
            Ok("s3://bucket/prefix/sub/a.db?region=x")
        );
        assert_eq!(
            append_to_url("s3://bucket", "a.db").as_deref(),
            Ok("s3://bucket/a.db")
        );
        assert_eq!(
            append_to_url("sftp://u@h:22/", "a.db").as_deref(),
            Ok("sftp://u@h:22/a.db")
        );
        assert!(append_to_url("s3://b/p", "50%.db").is_err());
    }
}
