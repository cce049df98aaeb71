//! Azure Blob Storage replicas (`abs://[account@]container/path`). Not built yet: every entry point
//! reports that, naming the scheme.

use crate::{Result, SharedReplica, StorageError};

/// Where a abs replica lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsSettings {
    /// The URL or config entry it was made from, for messages.
    pub source: String,
}

impl AbsSettings {
    /// Parses a replica URL of this backend.
    pub fn from_url(url: &str) -> Result<AbsSettings> {
        Err(crate::not_built("abs", url))
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<AbsSettings> {
        let _ = settings.into_iter().count();
        Err(crate::not_built("abs", url.unwrap_or("(config)")))
    }
}

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: AbsSettings) -> Result<SharedReplica> {
    Err(StorageError::Other(format!(
        "the abs backend is not supported by this build yet ({})",
        s.source
    )))
}
