//! The integration tests of `engine`: one test binary, one module per area (linking one
//! binary instead of one per file is most of what building the tests costs).

mod age;
mod bad_inputs;
mod bootstrap;
mod common;
mod compaction;
mod config_conformance;
mod conformance;
mod crash;
mod dir;
mod disk_full;
mod exec_shutdown;
mod faults;
mod follower_checkpoint;
mod gcs;
mod harden;
mod heartbeat;
mod idle;
mod inspect;
mod interop;
mod listeners;
mod lock_page;
mod many;
mod mcp;
mod mcp_security;
mod metrics;
mod nats;
mod restore_paths;
mod restore_publish;
mod retention;
mod secrets;
mod security;
mod sftp;
mod socket;
mod two_writers;
mod write_path;
