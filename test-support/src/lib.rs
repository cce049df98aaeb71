//! What the integration tests of every crate share (a dev-dependency only): the test servers
//! that `tests/<backend>/start.sh` starts, the real Litestream binary, how a test says it needs
//! them (see [`env`]),
//! synthetic SQLite pages and WAL bytes (also the benchmarks' inputs), and a TCP proxy that
//! counts bytes.
//!
//! It depends on no crate of the workspace, so any of them (ltx-codec included) can use it.

#![deny(missing_docs)]

pub mod abs;
pub mod env;
pub mod gcs;
pub mod legacy;
pub mod nats;
pub mod private;
pub mod proxy;
pub mod sftp;
pub mod synth;
pub mod webdav;

pub use env::{litestream, s3_server, unique_name, S3Server};
