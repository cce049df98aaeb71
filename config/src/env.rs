//! Environment expansion and paths: the one `$VAR` rule and the one `~` rule, for the config
//! text and for database paths given on the command line. See
//! docs/config-and-cli.md#config-file.

use std::path::{Path, PathBuf};

/// Go's `os.Expand` over `text`, as Litestream expands a config file before reading the YAML:
/// `$NAME` (letters, digits, `_`) and `${ANYTHING}` become `lookup`'s value (nothing when
/// unset), a special variable (`$1`, `$$`, `$*`, `$#`, `$@`, `$!`, `$?`, `$-`) is one
/// character long, a malformed `${` or `${}` is dropped, and a `$` followed by nothing usable
/// stays. `$PID` is this process's ID unless the environment sets it.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let get = |name: &str| -> String {
        match lookup(name) {
            Some(v) => v,
            None if name == "PID" => std::process::id().to_string(),
            None => String::new(),
        }
    };
    let special = |c: u8| b"*#$@!?-".contains(&c) || c.is_ascii_digit();
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0; // start of the text not yet copied
    let mut j = 0;
    while j < b.len() {
        if b[j] != b'$' || j + 1 >= b.len() {
            j += 1;
            continue;
        }
        out.push_str(&text[i..j]);
        let s = &b[j + 1..];
        // (name, bytes used after the `$`); an empty name with a width is bad syntax, eaten.
        let (name, w): (&str, usize) = if s[0] == b'{' {
            if s.len() > 2 && special(s[1]) && s[2] == b'}' {
                (&text[j + 2..j + 3], 3)
            } else {
                match s[1..].iter().position(|&c| c == b'}') {
                    Some(0) => ("", 2),
                    Some(end) => (&text[j + 2..j + 2 + end], end + 2),
                    None => ("", 1),
                }
            }
        } else if special(s[0]) {
            (&text[j + 1..j + 2], 1)
        } else {
            let n = s
                .iter()
                .take_while(|c| **c == b'_' || c.is_ascii_alphanumeric())
                .count();
            (&text[j + 1..j + 1 + n], n)
        };
        if !name.is_empty() {
            out.push_str(&get(name));
        } else if w == 0 {
            out.push('$');
        }
        j += w + 1;
        i = j;
    }
    out.push_str(&text[i..]);
    out
}

/// The home directory as Go's `user.Current()` gives it to Litestream: the password database
/// entry of the real user, not `$HOME` (checked on the 0.5.17 binary: with `HOME` pointing
/// elsewhere, `~/db` still means the passwd home). `$HOME` only when there is no entry.
pub fn home_dir() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes only into `pw` and `buf` (whose length it is told) and points
    // `out` at `pw` on success; the strings it returns live in `buf`, read before it is freed.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        );
        if rc == 0 && !out.is_null() && !pw.pw_dir.is_null() {
            let dir = CStr::from_ptr(pw.pw_dir).to_bytes();
            if !dir.is_empty() {
                return Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir)));
            }
        }
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Litestream's `expandPath` for database, meta, replica and socket paths: strips
/// `sqlite://`/`sqlite3://`, expands a leading `~` to [`home_dir`], and makes the path absolute
/// and clean (`a/./b/../c` is `a/c`) as Go's `filepath.Abs` does.
pub fn expand_path(s: &str) -> Result<PathBuf, String> {
    let s = s
        .strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s);
    if s.is_empty() {
        return Err("empty path".into());
    }
    let p = if s == "~" || s.starts_with("~/") {
        let home = home_dir().ok_or_else(|| format!("cannot expand {s}: no home directory"))?;
        match s.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => home,
        }
    } else {
        PathBuf::from(s)
    };
    let abs = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot make {s} absolute: {e}"))?
            .join(p)
    };
    Ok(normalize(&abs))
}

/// Lexical cleanup (`a/./b/../c` → `a/c`), like Go's `filepath.Clean`.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `<dir>/.<file>-litestream`, Litestream's default meta directory.
pub fn default_meta_path(db: &Path) -> PathBuf {
    let dir = db.parent().unwrap_or(Path::new("/"));
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}-litestream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_as_go_os_expand() {
        let env = |k: &str| match k {
            "DIR" => Some("/data".to_owned()),
            "X" => Some("x".to_owned()),
            "1" => Some("one".to_owned()),
            "a-b" => Some("ab".to_owned()),
            _ => None,
        };
        for (text, want) in [
            ("$DIR/a.db", "/data/a.db"),
            ("${DIR}/a.db", "/data/a.db"),
            ("a${X}b$X.c", "axbx.c"),
            ("$UNSET/a", "/a"),
            ("cost: 5$ ", "cost: 5$ "),
            ("end$", "end$"),
            ("é$X", "éx"),
            // Go's os.Expand: `${` unclosed is dropped, the rest kept; `${}` is dropped.
            ("${unclosed", "unclosed"),
            ("a${}b", "ab"),
            ("$1x", "onex"),
            ("${1}x", "onex"),
            ("${a-b}", "ab"),
            ("$-x", "x"),
            ("$.x", "$.x"),
            ("$$", ""),
        ] {
            assert_eq!(expand_env(text, env), want, "{text:?}");
        }
        assert_eq!(expand_env("$PID", env), std::process::id().to_string());
    }

    #[test]
    fn paths() {
        assert_eq!(
            expand_path("sqlite3:///var/x.db").ok(),
            Some(PathBuf::from("/var/x.db"))
        );
        assert_eq!(
            expand_path("sqlite:///var/./y/../x.db").ok(),
            Some(PathBuf::from("/var/x.db"))
        );
        let rel = expand_path("rel.db").expect("relative");
        assert!(rel.is_absolute() && rel.ends_with("rel.db"));
        assert!(expand_path("").is_err());
    }

    #[test]
    fn tilde_is_the_passwd_home() {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() }.to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let Some(home) = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[2] == uid)
            .map(|f| PathBuf::from(f[5]))
        else {
            return;
        };
        assert_eq!(home_dir().as_deref(), Some(home.as_path()));
        assert_eq!(expand_path("sqlite://~/x.db").ok(), Some(home.join("x.db")));
        assert_eq!(expand_path("~").ok(), Some(home));
    }
}
