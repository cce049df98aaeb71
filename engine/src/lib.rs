//! ls-engine: follows SQLite WALs and replicates them as LTX files, producing the same local
//! and replica trees as Litestream 0.5.17 (see the spec, §3 and §4).

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod duration;
pub mod error;
pub mod follower;
pub mod l0;
pub mod meta;
pub mod replicate;
pub mod sqlite;
pub mod uploader;
pub mod verify;
pub mod walmap;
pub mod watch;

pub use error::{Error, Result};
