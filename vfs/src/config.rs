//! The extension's settings, read from the environment when it is loaded, under
//! litestream-vfs 0.5.17's names (docs/vfs.md#settings).

use std::path::PathBuf;
use std::time::Duration;

use restore::AGE_IDENTITY_ENV;
use storage::value::{parse_bool, parse_duration};

/// How often an open database looks for new LTX files, unless `LITESTREAM_SYNC_INTERVAL` says.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Bytes of decompressed pages kept for all open databases of the process together.
pub const DEFAULT_CACHE: u64 = 32 << 20;

/// What the environment asks of the extension.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `LITESTREAM_REPLICA_URL`: the replica every database of the process is read from.
    pub replica_url: String,
    /// `LITESTREAM_SYNC_INTERVAL`: how often the replica is looked at for new files.
    pub poll: Duration,
    /// `LITESTREAM_CACHE_SIZE`: the page cache's budget for the whole process, in bytes.
    pub cache_bytes: u64,
    /// `LITESTREAM_LOG_LEVEL=DEBUG`.
    pub debug: bool,
    /// `LITESTREAM_LOG_FILE`: where the log goes instead of standard error.
    pub log_file: Option<PathBuf>,
    /// Hydration on, and the copy's path if one was given.
    pub hydration: Option<Option<PathBuf>>,
    /// An age identity file for an encrypted replica (`LS_AGE_IDENTITY`, as `ls-restore`).
    pub age_identity: Option<PathBuf>,
}

impl Settings {
    /// Reads the settings through `var` (the process environment in the extension); an error
    /// names the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let replica_url = var("LITESTREAM_REPLICA_URL")
            .ok_or("LITESTREAM_REPLICA_URL environment variable required")?;
        let flag = |k: &str| match var(k) {
            None => Ok(false),
            Some(v) => parse_bool(&v).ok_or_else(|| format!("{k}={v}: not a boolean")),
        };
        // Refused rather than ignored: a user who asks for it must not be left believing
        // writes reach the replica.
        if flag("LITESTREAM_WRITE_ENABLED")? {
            return Err(
                "LITESTREAM_WRITE_ENABLED=true: write mode is not supported by ls-vfs: \
                        a second writer on a replica that a primary also writes needs a \
                        conditional write on every backend to stay safe \
                        (docs/vfs.md#what-is-not-supported)"
                    .into(),
            );
        }
        let hydration = flag("LITESTREAM_HYDRATION_ENABLED")?
            .then(|| var("LITESTREAM_HYDRATION_PATH").map(PathBuf::from));
        let poll = match var("LITESTREAM_SYNC_INTERVAL") {
            None => DEFAULT_POLL,
            Some(v) => parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("invalid LITESTREAM_SYNC_INTERVAL: {v:?}"))?,
        };
        let cache_bytes = match var("LITESTREAM_CACHE_SIZE") {
            None => DEFAULT_CACHE,
            Some(v) => parse_size(&v).ok_or_else(|| {
                format!("invalid LITESTREAM_CACHE_SIZE: {v:?} (bytes, or a number with KiB, MiB or GiB)")
            })?,
        };
        let debug = var("LITESTREAM_LOG_LEVEL").is_some_and(|l| l.eq_ignore_ascii_case("debug"));
        Ok(Settings {
            replica_url,
            poll,
            cache_bytes,
            debug,
            log_file: var("LITESTREAM_LOG_FILE").map(PathBuf::from),
            hydration,
            age_identity: var(AGE_IDENTITY_ENV).map(PathBuf::from),
        })
    }
}

/// `1048576`, `64KiB`, `32MiB`, `1GiB` (also `KB`/`MB`/`GB`, taken as powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_env(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_replica_url_is_required() {
        let e = settings(&[]).expect_err("refused");
        assert!(e.contains("LITESTREAM_REPLICA_URL"), "{e}");
    }

    #[test]
    fn defaults_and_values() {
        let s = settings(&[("LITESTREAM_REPLICA_URL", "file:///r")]).expect("settings");
        assert_eq!(
            (s.poll, s.cache_bytes, s.debug),
            (DEFAULT_POLL, DEFAULT_CACHE, false)
        );
        let s = settings(&[
            ("LITESTREAM_REPLICA_URL", "file:///r"),
            ("LITESTREAM_SYNC_INTERVAL", "250ms"),
            ("LITESTREAM_CACHE_SIZE", "4MiB"),
            ("LITESTREAM_LOG_LEVEL", "DEBUG"),
            ("LITESTREAM_WRITE_ENABLED", "false"),
        ])
        .expect("settings");
        assert_eq!(
            (s.poll, s.cache_bytes, s.debug),
            (Duration::from_millis(250), 4 << 20, true)
        );
    }

    #[test]
    fn hydration_with_and_without_a_path() {
        let url = ("LITESTREAM_REPLICA_URL", "file:///r");
        let on = ("LITESTREAM_HYDRATION_ENABLED", "true");
        let path = ("LITESTREAM_HYDRATION_PATH", "/data/h.db");
        assert_eq!(settings(&[url, path]).expect("off").hydration, None);
        assert_eq!(settings(&[url, on]).expect("on").hydration, Some(None));
        assert_eq!(
            settings(&[url, on, path]).expect("path").hydration,
            Some(Some(PathBuf::from("/data/h.db")))
        );
    }

    #[test]
    fn write_mode_and_bad_values_are_refused_by_name() {
        for (k, v) in [
            ("LITESTREAM_WRITE_ENABLED", "true"),
            ("LITESTREAM_HYDRATION_ENABLED", "yes please"),
            ("LITESTREAM_WRITE_ENABLED", "maybe"),
            ("LITESTREAM_SYNC_INTERVAL", "0s"),
            ("LITESTREAM_SYNC_INTERVAL", "soon"),
            ("LITESTREAM_CACHE_SIZE", "12 parsecs"),
        ] {
            let e =
                settings(&[("LITESTREAM_REPLICA_URL", "file:///r"), (k, v)]).expect_err("refused");
            assert!(e.contains(k), "{k}={v}: {e}");
        }
    }
}
