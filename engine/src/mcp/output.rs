//! Where `litestream_restore` may write: never over an existing file, and only in the
//! directories the operator allowed (`mcp-restore-dir` and below; by default the directories
//! that hold the configured databases).

use std::path::{Path, PathBuf};

use crate::config::Config;

/// The directories MCP restores may write into, resolved (symlinks followed) at start-up.
#[derive(Clone, Debug)]
pub(super) enum OutDirs {
    /// `mcp-restore-dir`: this directory and everything below it.
    Under(PathBuf),
    /// The directories of the configured databases (`path` entries' parents, `dir` entries'
    /// directories), exactly.
    Beside(Vec<PathBuf>),
}

impl OutDirs {
    /// From the config; `mcp-restore-dir` must exist.
    pub(super) fn of(cfg: &Config) -> Result<OutDirs, (PathBuf, std::io::Error)> {
        if let Some(d) = &cfg.mcp.restore_dir {
            return d
                .canonicalize()
                .map(OutDirs::Under)
                .map_err(|e| (d.clone(), e));
        }
        let parents = cfg.dbs.iter().filter_map(|db| db.path.parent());
        let dirs = cfg.dirs.iter().map(|d| d.dir.as_path());
        let mut v: Vec<PathBuf> = parents
            .chain(dirs)
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        v.sort();
        v.dedup();
        Ok(OutDirs::Beside(v))
    }

    /// The path to pass as `-o` for the requested output, or why it is refused.
    pub(super) fn check(&self, requested: &str) -> Result<PathBuf, String> {
        let abs = crate::config::expand_path(requested)
            .map_err(|e| format!("invalid output path {requested:?}: {e}"))?;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Err(format!("invalid output path {requested:?}"));
        };
        let parent = parent
            .canonicalize()
            .map_err(|e| format!("output directory {}: {e}", parent.display()))?;
        let out = parent.join(name);
        let allowed = match self {
            OutDirs::Under(d) => parent.starts_with(d),
            OutDirs::Beside(ds) => ds.contains(&parent),
        };
        if !allowed {
            return Err(format!(
                "output {} is outside the directories MCP restores may write to ({}); \
                 set mcp-restore-dir to allow another",
                out.display(),
                self.describe()
            ));
        }
        for p in std::iter::once(out.clone()).chain(sidecars(&out)) {
            if std::fs::symlink_metadata(&p).is_ok() {
                return Err(format!(
                    "{} exists; MCP restores never overwrite a file",
                    p.display()
                ));
            }
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        match self {
            OutDirs::Under(d) => format!("{} and below", d.display()),
            OutDirs::Beside(ds) if ds.is_empty() => "none".to_owned(),
            OutDirs::Beside(ds) => ds
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// `-wal`, `-shm` and `-journal` beside a database.
fn sidecars(db: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    ["-wal", "-shm", "-journal"].into_iter().map(move |s| {
        let mut p = db.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("canon");
        let data = root.join("data");
        let sub = data.join("sub");
        std::fs::create_dir_all(&sub).expect("mkdir");
        let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
        let beside = OutDirs::Beside(vec![data.clone()]);
        assert_eq!(
            beside.check(&s(&data.join("new.db"))),
            Ok(data.join("new.db"))
        );
        assert_eq!(
            beside.check(&s(&sub.join("../new.db"))),
            Ok(data.join("new.db"))
        );
        assert!(beside.check(&s(&sub.join("new.db"))).is_err(), "below");
        assert!(beside.check(&s(&root.join("new.db"))).is_err(), "outside");
        assert!(beside.check(&s(&data.join("missing/new.db"))).is_err());
        std::fs::write(data.join("old.db"), b"x").expect("old");
        assert!(beside.check(&s(&data.join("old.db"))).is_err(), "exists");
        std::fs::write(data.join("w.db-wal"), b"x").expect("wal");
        assert!(beside.check(&s(&data.join("w.db"))).is_err(), "sidecar");
        // A symlinked directory counts where it leads.
        std::os::unix::fs::symlink(&root, data.join("up")).expect("symlink");
        assert!(beside.check(&s(&data.join("up/new.db"))).is_err());
        let under = OutDirs::Under(data.clone());
        assert_eq!(under.check(&s(&sub.join("n.db"))), Ok(sub.join("n.db")));
        assert!(under.check(&s(&root.join("n.db"))).is_err());
        assert!(OutDirs::Beside(vec![])
            .check(&s(&data.join("n.db")))
            .is_err());
    }
}
