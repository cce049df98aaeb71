//! SFTP replicas (`sftp://user[:pass]@host[:port]/path`). Not built yet: every entry point
//! reports that, naming the scheme.

use crate::{Result, SharedReplica, StorageError};

/// Where a sftp replica lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftpSettings {
    /// The URL or config entry it was made from, for messages.
    pub source: String,
}

impl SftpSettings {
    /// Parses a replica URL of this backend.
    pub fn from_url(url: &str) -> Result<SftpSettings> {
        Err(crate::not_built("sftp", url))
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<SftpSettings> {
        let _ = settings.into_iter().count();
        Err(crate::not_built("sftp", url.unwrap_or("(config)")))
    }
}

/// Opens the replica. Must not block or touch the network: connections are made on first use.
pub fn open(s: SftpSettings) -> Result<SharedReplica> {
    Err(StorageError::Other(format!(
        "the sftp backend is not supported by this build yet ({})",
        s.source
    )))
}
