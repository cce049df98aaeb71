//! Azure Blob Storage: the shared restore scenario ([`crate::conformance`]) on Azurite, with a
//! `type: abs` config (account-name, account-key, bucket, path, endpoint). Litestream ignores a
//! query in abs URLs, so Azurite is reachable only through the config and both tools restore
//! with `-config`. The blobs are Litestream's layout with `litestreamtimestamp` metadata equal
//! to each LTX header's timestamp; and the replica named by `url:` with the account key from
//! `LITESTREAM_AZURE_ACCOUNT_KEY` restores the same bytes with both tools.
//!
//! Needs the server of `tests/abs/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use crate::conformance::{Place, Remote, Times};
use test_support::abs as support;

use std::path::Path;
use std::sync::Arc;

use common::*;
use ltx_codec::Level;
use storage::abs::{AbsReplica, AbsSettings};
use storage::ReplicaClient;
use support::{abs_server, AbsServer};

pub struct AbsRemote(AbsServer);

impl AbsRemote {
    pub fn new() -> AbsRemote {
        AbsRemote(abs_server())
    }

    fn replica(&self, prefix: &str) -> AbsReplica {
        let pairs = self.0.pairs(prefix);
        let s = AbsSettings::from_config(None, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("settings");
        AbsReplica::new(s).expect("replica")
    }
}

impl Remote for AbsRemote {
    fn place(&self, name: &str) -> (Place, ReplicaSpec) {
        let srv = &self.0;
        let prefix = srv.unique_prefix(name);
        let url = format!("abs://{}@{}/{prefix}", srv.account, srv.container);
        Place::new(prefix.clone(), srv.yaml(&prefix), url, Vec::new(), || {
            Arc::new(self.replica(&prefix))
        })
    }

    fn times(&self) -> Times {
        Times::Header
    }

    fn url_restores(&self) -> bool {
        false
    }

    fn extra(&self, lit: &Path, r: &Replicated, place: &Place, latest: &[u8]) {
        let (srv, prefix) = (&self.0, &place.name);
        // Every blob is an LTX file of Litestream's layout, listed with its size.
        let rep = self.replica(prefix);
        let rt = runtime();
        let blobs = rt
            .block_on(rep.list_prefix(&format!("{prefix}/")))
            .expect("list");
        let mut files = 0;
        for level in 0..=9u8 {
            for f in rt.block_on(rep.ltx_files(Level(level))).expect("ltx files") {
                let name = rep.ltx_blob(f.level, f.min_txid, f.max_txid);
                assert_eq!(
                    name,
                    format!("{prefix}/ltx/{level}/{}", f.name()),
                    "Litestream's layout"
                );
                let listed = blobs.iter().find(|b| b.name == name).expect("listed blob");
                assert_eq!(listed.size, f.size);
                files += 1;
            }
        }
        assert_eq!(blobs.len(), files, "blobs that are not LTX files");

        // The same replica named by `url:` (with `endpoint:` beside it, as Litestream allows)
        // and the account key from LITESTREAM_AZURE_ACCOUNT_KEY: both tools restore the same
        // bytes.
        let cfg = r.dir.path().join("url-env.yml");
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      url: abs://{}@{}/{prefix}\n      endpoint: {}\n",
                r.db.display(),
                srv.account,
                srv.container,
                srv.endpoint
            ),
        )
        .expect("config");
        let env = [
            ("LITESTREAM_AZURE_ACCOUNT_KEY", Some(srv.key.as_str())),
            ("LITESTREAM_AZURE_SAS_TOKEN", None),
        ];
        let got = restore_both_with_config(lit, r, &cfg, &env, &[], "url-env");
        assert!(
            got.0 == latest && got.1 == latest,
            "url + env restores differ"
        );
    }
}
