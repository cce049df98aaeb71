//! Replica URLs (§6.1): which backend and where. Backends not built yet are a clear error that
//! names the scheme, never a silent fallback.

use std::path::PathBuf;
use std::sync::Arc;

use crate::file::FileReplica;
use crate::s3::{Flavor, S3Replica, S3Settings};
use crate::{Result, SharedReplica, StorageError};

/// A parsed replica URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaUrl {
    File(PathBuf),
    /// `s3://` and `oss://` (see [`S3Settings::flavor`]).
    S3(Box<S3Settings>),
}

impl ReplicaUrl {
    /// Parses `file:///abs/path` (the query string is dropped, as Litestream does) or a plain
    /// path. Other schemes Litestream knows are reported as not yet supported.
    pub fn parse(url: &str) -> Result<ReplicaUrl> {
        let bad = |reason: &str| StorageError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.is_empty() {
                return Err(bad("empty"));
            }
            return Ok(ReplicaUrl::File(PathBuf::from(url)));
        };
        match scheme {
            "file" => {
                let path = rest.split(['?', '#']).next().unwrap_or_default();
                if !path.starts_with('/') {
                    return Err(bad("file URLs need an absolute path (file:///path)"));
                }
                Ok(ReplicaUrl::File(PathBuf::from(path)))
            }
            "s3" | "oss" => Ok(ReplicaUrl::S3(Box::new(S3Settings::from_url(url)?))),
            "gs" | "abs" | "sftp" | "webdav" | "webdavs" | "nats" => Err(bad(&format!(
                "the {scheme} backend is not supported by this build yet"
            ))),
            other => Err(bad(&format!("unknown replica type {other:?}"))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ReplicaUrl::File(_) => "file",
            ReplicaUrl::S3(s) => s.flavor.kind(),
        }
    }
}

/// Opens the backend of a YAML replica entry: its `type`, optional `url`, and the backend keys
/// as written (`bucket`, `path`, `endpoint`, `part-size`, ...). For `file`, use
/// [`open_replica`] with the path.
pub fn open_replica_from_config<'a>(
    kind: &str,
    url: Option<&str>,
    settings: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<SharedReplica> {
    let flavor = match kind {
        "s3" => Flavor::S3,
        "oss" => Flavor::Oss,
        other => {
            return Err(StorageError::Other(format!(
                "replica type {other:?} cannot be opened from settings"
            )))
        }
    };
    let settings = S3Settings::from_config(flavor, url, settings)?;
    Ok(Arc::new(S3Replica::new(settings)?))
}

/// Opens the backend a URL names.
pub fn open_replica(url: &str) -> Result<SharedReplica> {
    match ReplicaUrl::parse(url)? {
        ReplicaUrl::File(p) => Ok(Arc::new(FileReplica::new(p))),
        ReplicaUrl::S3(s) => Ok(Arc::new(S3Replica::new(*s)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_urls() {
        assert_eq!(
            ReplicaUrl::parse("file:///tmp/r?x=1").ok(),
            Some(ReplicaUrl::File("/tmp/r".into()))
        );
        assert_eq!(
            ReplicaUrl::parse("/tmp/r").ok(),
            Some(ReplicaUrl::File("/tmp/r".into()))
        );
        assert!(ReplicaUrl::parse("file://relative").is_err());
        let e = ReplicaUrl::parse("gs://bucket/db").expect_err("gs not yet");
        assert!(e.to_string().contains("gs"));
        let s3 = ReplicaUrl::parse("s3://bucket/db?region=eu-west-1").expect("s3");
        assert_eq!(s3.kind(), "s3");
        assert_eq!(
            ReplicaUrl::parse("oss://b/db").map(|u| u.kind()).ok(),
            Some("oss")
        );
        assert!(ReplicaUrl::parse("s3:///db").is_err());
        assert!(ReplicaUrl::parse("ftp://x/y").is_err());
    }
}
