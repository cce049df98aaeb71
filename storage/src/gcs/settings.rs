//! Where a `gs` replica lives: `gs://bucket/path` URLs and config entries, parsed as
//! Litestream parses them, and the API endpoint (`STORAGE_EMULATOR_HOST` points it at an
//! emulator without authentication, as it does Google's Go client).

pub use crate::gopath::clean as clean_path;
use crate::transport::encode::decode_strict;
use crate::{Result, StorageError};

/// The real service, when `STORAGE_EMULATOR_HOST` is not set.
pub(crate) const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";

/// Where a gs replica lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsSettings {
    /// The URL or config entry it was made from, for messages.
    pub source: String,
    /// The bucket (the host of a `gs://` URL).
    pub bucket: String,
    /// The replica path as written (Litestream joins it with `path.Join`).
    pub path: String,
    /// API root, e.g. `http://127.0.0.1:4443` for an emulator (requests then go without
    /// authentication). `None`: `STORAGE_EMULATOR_HOST` when set, else Google itself.
    pub endpoint: Option<String>,
}

fn invalid(url: &str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::invalid_url(url, reason)
}

impl GcsSettings {
    /// Parses `gs://bucket/path` as Litestream does: the path is `path.Clean`ed without its
    /// leading slash; the query string is ignored.
    pub fn from_url(url: &str) -> Result<GcsSettings> {
        let rest = url
            .strip_prefix("gs://")
            .ok_or_else(|| invalid(url, "not a gs:// URL"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) => (h, format!("/{p}")),
            None => (rest, String::new()),
        };
        if host.contains('@') {
            return Err(invalid(url, "credentials in a gs URL are not supported"));
        }
        if host.is_empty() {
            return Err(invalid(url, "bucket required for gs replica URL"));
        }
        let bucket = decode_strict(host).ok_or_else(|| invalid(url, "bad bucket name"))?;
        let path = decode_strict(&path).ok_or_else(|| invalid(url, "bad path"))?;
        let cleaned = clean_path(&path);
        Ok(GcsSettings {
            source: crate::secret::redact_url(url),
            bucket,
            path: cleaned.strip_prefix('/').unwrap_or(&cleaned).to_owned(),
            endpoint: None,
        })
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults. As
    /// in Litestream, a `url` cannot be combined with `bucket` or `path`; keys of other
    /// backends are ignored.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<GcsSettings> {
        let mut bucket = String::new();
        let mut path = String::new();
        for (k, v) in settings {
            match k {
                "bucket" => bucket = v.trim().to_owned(),
                "path" => path = v.trim().to_owned(),
                _ => tracing::debug!(key = k, "setting does not apply to a gs replica"),
            }
        }
        let config_error = |msg: &str| StorageError::config(msg);
        let mut s = match url.filter(|u| !u.is_empty()) {
            Some(u) => {
                if !path.is_empty() {
                    return Err(config_error("cannot specify url & path for gs replica"));
                }
                if !bucket.is_empty() {
                    return Err(config_error("cannot specify url & bucket for gs replica"));
                }
                GcsSettings::from_url(u)?
            }
            None => {
                if bucket.is_empty() {
                    return Err(config_error("bucket required for gs replica"));
                }
                GcsSettings {
                    source: format!("gs://{bucket}/{path}"),
                    bucket,
                    path,
                    endpoint: None,
                }
            }
        };
        if s.bucket.is_empty() {
            return Err(config_error("bucket required for gs replica"));
        }
        s.source = s.source.trim_end_matches('/').to_owned();
        Ok(s)
    }

    /// The endpoint requests go to, and whether they are anonymous (an emulator).
    pub(crate) fn resolve_endpoint(&self) -> (String, bool) {
        if let Some(e) = &self.endpoint {
            return (e.trim_end_matches('/').to_owned(), true);
        }
        match std::env::var("STORAGE_EMULATOR_HOST") {
            Ok(h) if !h.trim().is_empty() => {
                let h = h.trim().trim_end_matches('/');
                if h.contains("://") {
                    (h.to_owned(), true)
                } else {
                    (format!("http://{h}"), true)
                }
            }
            _ => (GOOGLE_ENDPOINT.to_owned(), false),
        }
    }
}
