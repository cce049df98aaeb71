//! The config, as the `ls-config` crate reads it for both binaries (docs/config-and-cli.md).
//! `ls-engine` runs the daemon, so it also refuses what `replicate` cannot act on
//! ([`ls_config::Config::replicate_errors`]: settings not supported yet, unbindable
//! addresses); a restore ignores those.

use std::path::Path;

pub use ls_config::*;

/// The first of `cfg`'s `replicate_errors`, if any.
fn for_replicate(mut cfg: Config) -> Result<Config, ConfigError> {
    if cfg.replicate_errors.is_empty() {
        Ok(cfg)
    } else {
        Err(cfg.replicate_errors.swap_remove(0))
    }
}

/// Reads a config file for the engine. `expand` follows `-no-expand-env`.
pub fn load(path: &Path, expand: bool) -> Result<Config, ConfigError> {
    for_replicate(ls_config::load(path, expand)?)
}

/// Reads config text for the engine.
pub fn parse(text: &str, expand: bool) -> Result<Config, ConfigError> {
    for_replicate(ls_config::parse(text, expand)?)
}

/// The config of `replicate DB_PATH REPLICA_URL`.
pub fn from_args(db: &str, url: &str) -> Result<Config, ConfigError> {
    for_replicate(ls_config::from_args(db, url)?)
}
