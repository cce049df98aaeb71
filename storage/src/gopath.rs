//! Go's `path` package as Litestream uses it on replica paths and keys: [`clean`] and
//! [`join`], and [`clean_relative`] for paths written as if under a root.

/// Go's `path.Clean`: the shortest equivalent slash path ("." for an empty one).
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `path.Join`: the non-empty elements joined with slashes, cleaned ("" for none).
pub fn join(parts: &[&str]) -> String {
    let nonempty: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if nonempty.is_empty() {
        return String::new();
    }
    clean(&nonempty.join("/"))
}

/// `strings.TrimPrefix(path.Clean("/" + p), "/")`: `p` cleaned as a path under a root, which
/// `..` cannot leave, without its leading slash ("" for the root).
pub fn clean_relative(p: &str) -> String {
    clean(&format!("/{p}")).trim_start_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_relative() {
        assert_eq!(join(&["", "ltx"]), "ltx");
        assert_eq!(join(&["/db/", "ltx", "0"]), "/db/ltx/0");
        for (input, want) in [
            ("", ""),
            (".", ""),
            ("/", ""),
            ("../a/../../b", "b"),
            ("a/./b/", "a/b"),
        ] {
            assert_eq!(clean_relative(input), want, "{input:?}");
        }
    }
}
