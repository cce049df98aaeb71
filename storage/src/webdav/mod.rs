//! WebDAV replicas (`webdav[s]://[user:pass@]host/path`). Not built yet: every entry point
//! reports that, naming the scheme.

use crate::{Result, SharedReplica, StorageError};

/// Where a webdav replica lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebDavSettings {
    /// The URL or config entry it was made from, for messages.
    pub source: String,
}

impl WebDavSettings {
    /// Parses a replica URL of this backend.
    pub fn from_url(url: &str) -> Result<WebDavSettings> {
        Err(crate::not_built("webdav", url))
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<WebDavSettings> {
        let _ = settings.into_iter().count();
        Err(crate::not_built("webdav", url.unwrap_or("(config)")))
    }
}

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: WebDavSettings) -> Result<SharedReplica> {
    Err(StorageError::Other(format!(
        "the webdav backend is not supported by this build yet ({})",
        s.source
    )))
}
