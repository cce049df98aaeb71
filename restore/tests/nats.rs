//! NATS: the shared restore scenario ([`crate::conformance`]) on a JetStream object store
//! bucket, with a `type: nats` config (`url`, `username`, `password`) and the `nats://` URL; our
//! backend lists Litestream's names `ltx/<level>/<min>-<max>.ltx` with creation times from the
//! `Litestream-Timestamp` header; and `-config` with the credentials from the environment
//! restores the same bytes.
//!
//! Needs the server of `tests/nats/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use crate::conformance::{restores_with_credentials_from_env, Place, Remote, Times};
use test_support::nats as nats_env;

use std::path::Path;
use std::sync::Arc;

use common::*;
use nats_env::{nats_server, NatsServer};
use storage::nats::{NatsReplica, NatsSettings};

pub struct NatsRemote(NatsServer);

impl NatsRemote {
    pub fn new() -> NatsRemote {
        NatsRemote(nats_server())
    }

    fn replica(&self, bucket: &str) -> NatsReplica {
        NatsReplica::new(NatsSettings::from_url(&self.0.replica_url(bucket)).expect("url"))
    }
}

impl Remote for NatsRemote {
    fn place(&self, name: &str) -> (Place, ReplicaSpec) {
        let bucket = self.0.new_bucket(name);
        let (yaml, url) = (self.0.yaml(&bucket), self.0.replica_url(&bucket));
        Place::new(bucket.clone(), yaml, url, Vec::new(), || {
            Arc::new(self.replica(&bucket))
        })
    }

    fn times(&self) -> Times {
        Times::Header
    }

    fn extra(&self, lit: &Path, r: &Replicated, place: &Place, latest: &[u8]) {
        let srv = &self.0;
        let replica = format!(
            "      type: nats\n      url: {}/{}\n      username: $LS_T_USER\n      \
             password: ${{LS_T_PASS}}\n",
            srv.url, place.name
        );
        restores_with_credentials_from_env(lit, r, &replica, (&srv.user, &srv.pass), latest);
    }
}
