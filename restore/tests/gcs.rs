//! GCS: the shared restore scenario ([`crate::conformance`]) on fake-gcs-server, which the
//! real Litestream reaches through `STORAGE_EMULATOR_HOST` as Google's Go client takes it; the
//! files' metadata times are their LTX headers' to the millisecond, and nothing is written
//! outside `<prefix>/ltx/`.
//!
//! Needs the server of `tests/gcs/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use crate::conformance::{Place, Remote, Times};

use test_support::gcs as gcs_env;

use std::path::Path;
use std::sync::Arc;

use common::*;
use gcs_env::{gcs_server, GcsServer};
use storage::gcs::{GcsReplica, GcsSettings};

pub struct GcsRemote(GcsServer);

impl GcsRemote {
    pub fn new() -> GcsRemote {
        GcsRemote(gcs_server())
    }

    /// Our backend on the emulator, as the tests open it (not through the environment).
    fn replica(&self, prefix: &str) -> GcsReplica {
        let srv = &self.0;
        GcsReplica::new(GcsSettings {
            source: srv.url(prefix),
            bucket: srv.bucket.clone(),
            path: prefix.to_owned(),
            endpoint: Some(srv.endpoint.clone()),
        })
        .expect("gs replica")
    }
}

impl Remote for GcsRemote {
    fn place(&self, name: &str) -> (Place, ReplicaSpec) {
        let srv = &self.0;
        let prefix = srv.unique_prefix(name);
        let yaml = vec![
            "type: gs".into(),
            format!("bucket: {}", srv.bucket),
            format!("path: {prefix}"),
        ];
        let url = srv.url(&prefix);
        Place::new(prefix.clone(), yaml, url, srv.env(), || {
            Arc::new(self.replica(&prefix))
        })
    }

    fn times(&self) -> Times {
        Times::Header
    }

    /// Litestream's layout: every object under `<prefix>/ltx/`.
    fn extra(&self, _lit: &Path, _r: &Replicated, place: &Place, _latest: &[u8]) {
        let prefix = &place.name;
        let names: Vec<String> = runtime()
            .block_on(self.replica(prefix).list_prefix(&format!("{prefix}/")))
            .expect("list")
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert!(
            !names.is_empty()
                && names
                    .iter()
                    .all(|n| n.starts_with(&format!("{prefix}/ltx/"))),
            "{names:?}"
        );
    }
}
