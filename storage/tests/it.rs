//! The integration tests of `storage`: one test binary, one module per area (linking one
//! binary instead of one per file is most of what building the tests costs).

mod abs;
mod common;
mod create_only;
mod gcs;
mod nats;
mod nats_restart;
mod nats_tls;
mod s3;
mod s3_litestream;
mod secrets;
mod sftp;
mod sftp_restart;
mod webdav;
mod webdav_restart;
mod webdav_tls;
