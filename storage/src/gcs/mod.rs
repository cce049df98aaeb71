//! Google Cloud Storage replicas (`gs://bucket/path`). Not built yet: every entry point
//! reports that, naming the scheme.

use crate::{Result, SharedReplica, StorageError};

/// Where a gs replica lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsSettings {
    /// The URL or config entry it was made from, for messages.
    pub source: String,
}

impl GcsSettings {
    /// Parses a replica URL of this backend.
    pub fn from_url(url: &str) -> Result<GcsSettings> {
        Err(crate::not_built("gs", url))
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<GcsSettings> {
        let _ = settings.into_iter().count();
        Err(crate::not_built("gs", url.unwrap_or("(config)")))
    }
}

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: GcsSettings) -> Result<SharedReplica> {
    Err(StorageError::Other(format!(
        "the gs backend is not supported by this build yet ({})",
        s.source
    )))
}
