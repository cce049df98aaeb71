//! Why a config could not be read. Every problem with a value names its key path
//! (`dbs[0].replica.sync-interval`), so a user can find the line to fix.

use std::path::PathBuf;

/// A config problem, naming the key it is about (`dbs[0].replica.type`) or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that is missing, malformed or refused.
    #[error("config key {key}: {msg}")]
    Key {
        /// The key path: `dbs[0].replica.sync-interval`, `levels[1].interval`, `addr`.
        key: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The text is not YAML (the parser's message gives the line).
    #[error("config: {0}")]
    Yaml(String),
    /// No file at the path (Litestream's wording).
    #[error("config file not found: {}", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The path as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The key path of a [`ConfigError::Key`].
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A [`ConfigError::Key`].
pub(crate) fn key_err(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        msg: msg.into(),
    }
}
