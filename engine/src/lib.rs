//! ls-engine: follows SQLite WALs and replicates them as LTX files, producing the same local
//! and replica trees as Litestream 0.5.17 (docs/replica-layout.md, docs/wal.md).
//!
//! How the parts fit:
//! - [`replicate`] runs one tokio task per database. It waits for an inotify wake-up
//!   ([`watch`]) or the `monitor-interval` fallback timer, which only acts if the database or
//!   WAL changed (size, mtime, inode) or a time-based checkpoint is due, so an idle database
//!   costs one `stat` pair per interval and writes nothing.
//! - Each pass runs the blocking [`follower::Follower`] on a blocking thread: verify
//!   ([`verify`], docs/wal.md#verify), read committed frames from the WAL in bounded chunks
//!   ([`walread`]), encode one L0 file ([`l0`]) into the meta directory ([`meta`]), then apply
//!   the checkpoint policy ([`checkpoint`], docs/wal.md#checkpoints) through [`sqlite`]: the
//!   WAL is copied into the database before the write lock is taken, so writers wait only for
//!   the last few frames (docs/checkpoints.md#the-procedure).
//! - A pass that wrote an L0 file opens a batching window of the replica's `sync-interval`:
//!   the first change after a quiet spell ships at once, later ones wait for the window's end,
//!   so a busy database makes at most one L0 file (and one upload) per window.
//! - [`uploader`] copies local L0 files to the replica in TXID order on its own task, so a slow
//!   replica never stops local capture or checkpoints.
//!
//! - [`maintain`] runs beside each follower: level compactions ([`compactor`]), scheduled
//!   level-9 snapshots ([`snapshot`]) and retention ([`retention`]) on aligned schedules
//!   ([`schedule`]), under a pool of permits shared by all databases.
//! - [`metrics`] holds Litestream's Prometheus series (atomics bumped by the follower and
//!   retention); [`http`] serves them on `addr` at `/metrics`.

#![deny(missing_docs)]

pub mod bootstrap;
pub mod checkpoint;
pub mod cli;
pub mod compactor;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dirs;
pub mod error;
pub mod exec;
pub mod fdlimit;
pub mod follower;
pub mod heartbeat;
pub mod held;
pub mod http;
pub mod inspect;
pub mod l0;
pub mod maintain;
pub mod mcp;
pub mod memory;
pub mod meta;
pub mod metrics;
pub mod replicate;
pub mod retention;
pub mod schedule;
pub mod shm;
pub mod snapshot;
pub mod socket;
pub mod sockfile;
pub mod sqlite;
pub mod sync_status;
pub mod uploader;
pub mod validate;
pub mod verify;
pub mod wake;
pub mod walindex;
pub mod walread;
pub mod watch;
pub mod writeback;

pub use error::{Error, Result};
