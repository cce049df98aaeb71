//! Replica URLs and config entries (docs/config-and-cli.md#config-file): which backend and where. Backends not built yet are
//! a clear error that names the scheme, never a silent fallback.

use std::path::PathBuf;
use std::sync::Arc;

use crate::abs::AbsSettings;
use crate::file::FileReplica;
use crate::gcs::GcsSettings;
use crate::nats::NatsSettings;
use crate::s3::{Flavor, S3Replica, S3Settings};
use crate::sftp::SftpSettings;
use crate::webdav::WebDavSettings;
use crate::{Result, SharedReplica, StorageError};

/// A parsed replica URL or config entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaUrl {
    /// `file://` or a plain path: the replica's local directory.
    File(PathBuf),
    /// `s3://` and `oss://` (see [`S3Settings::flavor`]).
    S3(Box<S3Settings>),
    /// `gs://`
    Gcs(Box<GcsSettings>),
    /// `abs://`
    Abs(Box<AbsSettings>),
    /// `sftp://`
    Sftp(Box<SftpSettings>),
    /// `webdav://` and `webdavs://`
    WebDav(Box<WebDavSettings>),
    /// `nats://`
    Nats(Box<NatsSettings>),
}

impl ReplicaUrl {
    /// Parses `file:///abs/path` (the query string is dropped, as Litestream does) or a plain
    /// path. Other schemes Litestream knows are reported as not yet supported.
    pub fn parse(url: &str) -> Result<ReplicaUrl> {
        let bad = |reason: &str| StorageError::invalid_url(url, reason.to_owned());
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
            "gs" => Ok(ReplicaUrl::Gcs(Box::new(GcsSettings::from_url(url)?))),
            "abs" => Ok(ReplicaUrl::Abs(Box::new(AbsSettings::from_url(url)?))),
            "sftp" => Ok(ReplicaUrl::Sftp(Box::new(SftpSettings::from_url(url)?))),
            "webdav" | "webdavs" => {
                Ok(ReplicaUrl::WebDav(Box::new(WebDavSettings::from_url(url)?)))
            }
            "nats" => Ok(ReplicaUrl::Nats(Box::new(NatsSettings::from_url(url)?))),
            other => Err(bad(&format!("unknown replica type {other:?}"))),
        }
    }

    /// Parses a YAML replica entry of a remote backend: its `type`, optional `url`, and the
    /// backend keys as written (`bucket`, `path`, `endpoint`, `part-size`, ...), the entry's
    /// own keys after the global defaults. A `file` replica is a path: use [`ReplicaUrl::parse`].
    pub fn from_config<'a>(
        kind: &str,
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ReplicaUrl> {
        let url = url.filter(|u| !u.is_empty());
        Ok(match kind {
            "s3" => ReplicaUrl::S3(Box::new(S3Settings::from_config(
                Flavor::S3,
                url,
                settings,
            )?)),
            "oss" => ReplicaUrl::S3(Box::new(S3Settings::from_config(
                Flavor::Oss,
                url,
                settings,
            )?)),
            "gs" => ReplicaUrl::Gcs(Box::new(GcsSettings::from_config(url, settings)?)),
            "abs" => ReplicaUrl::Abs(Box::new(AbsSettings::from_config(url, settings)?)),
            "sftp" => ReplicaUrl::Sftp(Box::new(SftpSettings::from_config(url, settings)?)),
            "webdav" | "webdavs" => {
                ReplicaUrl::WebDav(Box::new(WebDavSettings::from_config(url, settings)?))
            }
            "nats" => ReplicaUrl::Nats(Box::new(NatsSettings::from_config(url, settings)?)),
            other => {
                return Err(StorageError::config(format!(
                    "replica type {other:?} cannot be opened from settings"
                )))
            }
        })
    }

    /// Backend name as Litestream reports it: "file", "s3", "oss", "gs", "abs", "sftp",
    /// "webdav" or "nats".
    pub fn kind(&self) -> &'static str {
        match self {
            ReplicaUrl::File(_) => "file",
            ReplicaUrl::S3(s) => s.flavor.kind(),
            ReplicaUrl::Gcs(_) => "gs",
            ReplicaUrl::Abs(_) => "abs",
            ReplicaUrl::Sftp(_) => "sftp",
            ReplicaUrl::WebDav(_) => "webdav",
            ReplicaUrl::Nats(_) => "nats",
        }
    }

    /// Opens the backend. No network I/O happens here: backends connect on first use.
    pub fn open(self) -> Result<SharedReplica> {
        match self {
            ReplicaUrl::File(p) => Ok(Arc::new(FileReplica::new(p))),
            ReplicaUrl::S3(s) => Ok(Arc::new(S3Replica::new(*s)?)),
            ReplicaUrl::Gcs(s) => crate::gcs::open(*s),
            ReplicaUrl::Abs(s) => crate::abs::open(*s),
            ReplicaUrl::Sftp(s) => crate::sftp::open(*s),
            ReplicaUrl::WebDav(s) => crate::webdav::open(*s),
            ReplicaUrl::Nats(s) => crate::nats::open(*s),
        }
    }
}

/// Opens the backend of a YAML replica entry (see [`ReplicaUrl::from_config`]).
pub fn open_replica_from_config<'a>(
    kind: &str,
    url: Option<&str>,
    settings: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<SharedReplica> {
    ReplicaUrl::from_config(kind, url, settings)?.open()
}

/// Opens the backend a URL names.
pub fn open_replica(url: &str) -> Result<SharedReplica> {
    ReplicaUrl::parse(url)?.open()
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
        let nats = ReplicaUrl::parse("nats://host:4222/bucket").expect("nats");
        assert_eq!(nats.kind(), "nats");
        assert!(ReplicaUrl::parse("nats://host:4222").is_err());
        assert_eq!(
            ReplicaUrl::from_config("nats", None, [("bucket", "b")])
                .map(|u| u.kind())
                .ok(),
            Some("nats")
        );
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
