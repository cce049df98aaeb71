//! S3: the shared restore scenario ([`crate::conformance`]) on s3s-fs, with `-timestamp`
//! restores at the files' precise `litestream-timestamp` metadata (a listing gives only
//! LastModified), and `-config` mode with the keys from the environment.
//!
//! Needs the server of `tests/s3/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use crate::conformance::{Place, Remote, Times};

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use common::*;
use ltx_codec::Level;
use storage::s3::S3Replica;

pub struct S3Remote(S3Server);

impl S3Remote {
    pub fn new() -> S3Remote {
        S3Remote(s3_server())
    }
}

impl Remote for S3Remote {
    fn place(&self, name: &str) -> (Place, ReplicaSpec) {
        let prefix = self.0.unique_prefix(name);
        // Litestream takes the keys from AWS_*, ls-restore from LITESTREAM_* (both names).
        let spec = self.0.spec(&prefix);
        let ours = Arc::new(S3Replica::new(self.0.settings(&prefix)).expect("s3 replica"));
        (Place { name: prefix, ours }, spec)
    }

    /// A listing has LastModified, set by the server when it stored the object.
    fn times(&self) -> Times {
        Times::Server
    }

    /// Restores read the metadata below, not the listing.
    fn precise_times(&self) -> bool {
        true
    }

    /// Each object's `litestream-timestamp` metadata, as Litestream reads it for `-timestamp`.
    fn file_times(&self, place: &Place, _listed: Vec<SystemTime>) -> Vec<SystemTime> {
        let r = S3Replica::new(self.0.settings(&place.name)).expect("replica");
        let rt = runtime();
        let mut out = Vec::new();
        for level in 0..=9u8 {
            let files = rt
                .block_on(r.ltx_files_with_metadata(Level(level)))
                .expect("list with metadata");
            out.extend(files.into_iter().map(|f| f.created_at));
        }
        out
    }

    /// `-config PATH DB_PATH` with a `type: s3` replica whose keys come from the environment
    /// (`$VAR`, `${VAR}`), credentials as top-level defaults, and a `sqlite://` database path:
    /// both tools restore the same bytes; with `-no-expand-env` both refuse.
    fn extra(&self, lit: &Path, r: &Replicated, place: &Place, latest: &[u8]) {
        let (srv, prefix) = (&self.0, &place.name);
        let cfg = r.dir.path().join("restore.yml");
        std::fs::write(
            &cfg,
            format!(
                "access-key-id: ${{LS_T_KEY}}\nsecret-access-key: $LS_T_SECRET\ndbs:\n  - path: sqlite://$LS_T_DIR/src.db\n    replica:\n      type: s3\n      bucket: ${{LS_T_BUCKET}}\n      path: {prefix}\n      endpoint: $LS_T_ENDPOINT\n      region: us-east-1\n      force-path-style: true\n      part-size: 5MiB\n      sync-interval: 1s\n"
            ),
        )
        .expect("config");
        let dir = r.dir.path().to_str().expect("utf-8 temp dir");
        let mut env: Vec<(&str, Option<&str>)> = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "LITESTREAM_ACCESS_KEY_ID",
            "LITESTREAM_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "LITESTREAM_S3_ENDPOINT",
        ]
        .into_iter()
        .map(|k| (k, None))
        .collect();
        env.extend([
            ("LS_T_DIR", Some(dir)),
            ("AWS_EC2_METADATA_DISABLED", Some("true")),
            ("LS_T_KEY", Some(srv.access_key.as_str())),
            ("LS_T_SECRET", Some(srv.secret_key.as_str())),
            ("LS_T_BUCKET", Some(srv.bucket.as_str())),
            ("LS_T_ENDPOINT", Some(srv.endpoint.as_str())),
        ]);
        let (a, b) = restore_both_with_config(lit, r, &cfg, &env, &[], "env-latest");
        assert!(
            a == latest && b == latest,
            "config from the environment: bytes differ"
        );
        let txid = ["-txid", "0000000000000002"];
        let (a, b) = restore_both_with_config(lit, r, &cfg, &env, &txid, "env-txid");
        assert!(a == b, "config from the environment, -txid 2: bytes differ");

        let mut c = ls_restore();
        for (k, v) in &env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(["-no-expand-env", "-config"])
            .arg(&cfg)
            .arg("-o")
            .arg(r.dir.path().join("noexp.db"))
            .arg(&r.db);
        let o = run(c);
        assert!(
            !o.status.success(),
            "-no-expand-env must not find the bucket"
        );
    }
}
