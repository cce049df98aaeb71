//! SFTP: the shared restore scenario ([`crate::conformance`]) on the OpenSSH test server, with
//! a `type: sftp` config (key auth, verified host key), so both tools restore with `-config`
//! (a URL cannot carry a key path). Files' times are their mtimes, which Litestream sets to the
//! LTX header's timestamp in whole seconds; the files on the server's disk are what our
//! backend lists.
//!
//! With a password login, the other way users name a replica: Litestream replicates with
//! `host`/`user`/`password` keys and a `path` relative to the login directory (no `host-key`),
//! and both tools restore from `sftp://user:password@host/<absolute path>` the same bytes.
//!
//! Needs the server of `tests/sftp/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use crate::conformance::{phase, setup, Place, Remote, Times};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use ltx_codec::Level;
use rusqlite::Connection;
use storage::sftp::{SftpReplica, SftpSettings};

use sftp_env::{password_login, sftp_server, unique_name, SftpServer};
use test_support::sftp as sftp_env;

pub struct SftpRemote(SftpServer);

impl SftpRemote {
    pub fn new() -> SftpRemote {
        SftpRemote(sftp_server())
    }

    fn replica(&self, path: &Path) -> SftpReplica {
        let pairs = self.0.pairs(path);
        SftpReplica::new(
            SftpSettings::from_config(None, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .expect("settings"),
        )
    }
}

impl Remote for SftpRemote {
    fn place(&self, name: &str) -> (Place, ReplicaSpec) {
        let path = self.0.unique_path(name);
        let name = path.to_str().expect("utf-8 path").to_owned();
        // Both tools restore with `-config` (see `url_restores`): no URL.
        Place::new(name, self.0.yaml(&path), String::new(), Vec::new(), || {
            Arc::new(self.replica(&path))
        })
    }

    fn times(&self) -> Times {
        Times::HeaderSeconds
    }

    fn url_restores(&self) -> bool {
        false
    }

    /// What our backend lists is the files on the server's disk: their sizes and mtimes.
    fn extra(&self, _lit: &Path, _r: &Replicated, place: &Place, _latest: &[u8]) {
        let path = PathBuf::from(&place.name);
        let rt = runtime();
        let mut n = 0;
        for level in 0..=9u8 {
            for f in rt
                .block_on(place.ours.ltx_files(Level(level)))
                .expect("list")
            {
                let p = path.join("ltx").join(level.to_string()).join(f.name());
                let meta = std::fs::metadata(&p).expect("listed file exists");
                assert_eq!(f.size, meta.len(), "{}", p.display());
                let secs = meta
                    .modified()
                    .expect("mtime")
                    .duration_since(UNIX_EPOCH)
                    .expect("epoch")
                    .as_secs();
                assert_eq!(f.created_at, UNIX_EPOCH + Duration::from_secs(secs));
                n += 1;
            }
        }
        assert!(n > 0, "no files at {}", path.display());
    }
}

fn count_rows(bytes: &[u8], dir: &Path) -> i64 {
    let p = dir.join("check.db");
    std::fs::write(&p, bytes).expect("write");
    let c = Connection::open(&p).expect("open");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok");
    let n = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    drop(c);
    let _ = std::fs::remove_file(&p);
    n
}

#[test]
#[ignore = "needs the SFTP test server and the real Litestream"]
fn sftp_url_restore_matches_litestream() {
    let srv = sftp_server();
    let (user, pw, home) = password_login();
    let lit = litestream();
    let rel = format!("replicas/{}", unique_name("url-interop"));
    let abs = home.join(&rel);
    let l0 = abs.join("ltx/0");
    let spec = ReplicaSpec {
        yaml: vec![
            "type: sftp".into(),
            format!("host: {}", srv.host),
            format!("user: {user}"),
            format!("password: {pw}"),
            format!("path: {rel}"),
        ],
        // Litestream takes a URL's path as absolute (and a config `path` as relative to the
        // login directory): both name the same directory here.
        url: format!("sftp://{user}:{pw}@{}{}", srv.host, abs.display()),
        lit_env: Vec::new(),
        ls_env: Vec::new(),
        l0_max: Box::new(move || ltx_names(&l0).last().map_or(0, |x| x.1)),
    };
    let r = replicate_to(
        &lit,
        &ReplicateOpts {
            page_size: 4096,
            setup: &setup,
            phases: 2,
            phase: &phase,
            min_run: Duration::ZERO,
            compaction: false,
        },
        tempfile::tempdir().expect("tempdir"),
        abs.clone(),
        spec,
    );
    let (a, b) = restore_both(&lit, &r, &[], "url-latest");
    assert!(!a.is_empty() && a == b, "latest: bytes differ");
    let src: i64 = Connection::open(&r.db)
        .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
        .expect("source count");
    assert_eq!(count_rows(&b, r.dir.path()), src);
    let (a, b) = restore_both(&lit, &r, &["-txid", "0000000000000002"], "url-txid");
    assert!(!a.is_empty() && a == b, "-txid 2: bytes differ");
    std::fs::remove_dir_all(&abs).expect("cleanup");
}
