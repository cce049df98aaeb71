//! The integration tests of `restore`: one test binary, one module per area (linking one
//! binary instead of one per file is most of what building the tests costs).

mod abs;
mod cli;
mod common;
mod conformance;
mod corruption;
mod follow;
mod follow_bounds;
mod gcs;
mod hostile_sizes;
mod interop;
mod legacy;
mod nats;
mod output_safety;
mod s3;
mod sftp;
mod streamed;
mod v3;
mod v3_backends;
mod webdav;
