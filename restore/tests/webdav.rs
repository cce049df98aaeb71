//! WebDAV: the shared restore scenario ([`crate::conformance`]) on `rclone serve webdav`, with a
//! `type: webdav` config (`webdav-url`, `webdav-username`, `webdav-password`, `path`) and the
//! `webdav://` URL. Litestream's creation times are the server's modification times, which both
//! tools read from the same listing; the files are on the server's disk where the layout says;
//! and `-config` with the credentials from the environment restores the same bytes.
//!
//! Needs the server of `tests/webdav/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use crate::conformance::{restores_with_credentials_from_env, Place, Remote, Times};
use test_support::webdav as webdav_env;

use std::path::Path;
use std::sync::Arc;

use common::*;
use storage::webdav::{WebDavReplica, WebDavSettings};
use webdav_env::{webdav_server, WebDavServer};

pub struct WebDavRemote(WebDavServer);

impl WebDavRemote {
    pub fn new() -> WebDavRemote {
        WebDavRemote(webdav_server())
    }

    fn replica(&self, path: &str) -> WebDavReplica {
        let s = WebDavSettings::from_url(&self.0.replica_url(path)).expect("url");
        WebDavReplica::new(s).expect("replica")
    }
}

impl Remote for WebDavRemote {
    fn place(&self, name: &str) -> (Place, ReplicaSpec) {
        let path = self.0.unique_path(name);
        let (yaml, url) = (self.0.yaml(&path), self.0.replica_url(&path));
        Place::new(path.clone(), yaml, url, Vec::new(), || {
            Arc::new(self.replica(&path))
        })
    }

    fn times(&self) -> Times {
        Times::Server
    }

    fn extra(&self, lit: &Path, r: &Replicated, place: &Place, latest: &[u8]) {
        let (srv, path) = (&self.0, &place.name);
        // The layout of docs/replica-layout.md#paths-and-timestamps-per-backend on the
        // server's disk.
        if let Some(data) = &srv.data_dir {
            let l0 = ltx_names(&data.join(path).join("ltx/0"));
            assert!(!l0.is_empty(), "no L0 files at {path}/ltx/0 on the server");
        }
        // Litestream 0.5.17 does not inherit webdav-* keys written at the top level, so they
        // stay on the replica.
        let replica = format!(
            "      type: webdav\n      webdav-url: {}\n      webdav-username: $LS_T_USER\n      \
             webdav-password: ${{LS_T_PASS}}\n      path: {path}\n",
            srv.url
        );
        restores_with_credentials_from_env(lit, r, &replica, (&srv.user, &srv.pass), latest);
    }
}
