//! Directory entries (`dir` + `pattern`): what each database found under `dir` is configured
//! as, as Litestream 0.5.17's `NewDBsFromDirectoryConfig` derives it: the entry's settings, the
//! database's path relative to `dir` appended to the replica's path or URL (`<replica>/<rel>`),
//! and its meta directory from `meta-dir` (`<meta-dir>/<rel>-litestream`), `meta-path`
//! (`<meta-path>/<reldir>/.<file>-litestream`) or the default beside the database. Finding and
//! watching the files is the engine's (`engine::dirs`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::database::DbConfig;
use crate::env::default_meta_path;
use crate::replica::{ReplicaConfig, ReplicaKind};

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
    /// `dir`: the directory searched for databases, expanded.
    pub dir: PathBuf,
    /// `pattern`: the glob a database's base name must match.
    pub pattern: String,
    /// `recursive`: also search subdirectories of `dir` (default false).
    pub recursive: bool,
    /// `watch`: pick up databases created under `dir` while running (default false).
    pub watch: bool,
    /// Where each database's meta directory goes (`meta-dir`, `meta-path` or the default).
    pub meta: MetaBase,
    /// `restore-if-db-not-exists` as written on the entry. Litestream 0.5.17 only restores
    /// entries with a `path`, so it is not acted on (a warning says so).
    pub restore_if_missing: bool,
    /// The entry's settings; `path`, `meta_path` and the replica location are per database.
    pub template: DbConfig,
    /// The databases found under `dir` at start-up (filled by the engine's scan).
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
}

/// The replica of one database: the entry's replica with `rel` appended to its directory,
/// URL path or `path` key (Litestream's `cloneReplicaConfigWithRelativePath`).
fn replica_for(base: &ReplicaConfig, rel: &str) -> Result<ReplicaConfig, String> {
    let mut r = base.clone();
    if r.kind == ReplicaKind::File {
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

/// Go's `path.Join(base, rel)` (both non-empty here).
fn join_slash(base: &str, rel: &str) -> String {
    storage::gopath::join(&[base, rel])
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
