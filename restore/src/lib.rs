//! Disaster recovery for Litestream replicas: `ls-restore`, a drop-in for `litestream
//! restore` that chooses the same files (docs/restore.md#plan-selection) and writes the same bytes, but reads page
//! indexes first, fetches in parallel, decompresses on all cores, and verifies every file's
//! checksum before the database appears.

#![deny(missing_docs)]

pub mod check;
pub mod checksum;
pub mod cli;
pub mod config;
mod error;
pub mod execute;
pub mod fetch;
pub mod follow;
pub mod integrity;
pub mod output;
pub mod plan;
pub mod progress;
mod source;
pub mod v3;
pub mod writer;

pub use error::{RestoreError, Result};
pub use execute::{execute, ExecOptions, Restored};
pub use output::{prepare_output, PreparedOutput};
pub use plan::{calc_plan, Listing, Target};
pub use source::AGE_IDENTITY_ENV;

/// `-integrity-check`: what SQLite check runs on the restored file before it is published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// No check.
    #[default]
    None,
    /// `PRAGMA quick_check`.
    Quick,
    /// `PRAGMA integrity_check`.
    Full,
}

impl IntegrityCheck {
    /// The flag value for this check: `none`, `quick` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityCheck::None => "none",
            IntegrityCheck::Quick => "quick",
            IntegrityCheck::Full => "full",
        }
    }
}
