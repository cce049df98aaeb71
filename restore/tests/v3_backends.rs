//! Litestream 0.3.x replicas (`generations/` tree) on every backend, not only `file`: the tree
//! built in [`crate::v3`] is uploaded to each test server beside where `ltx/` would be, and
//! `ls-restore -config` must restore, with every row, byte for byte what `litestream restore`
//! (0.5.17) restores from the same tree in a directory. Litestream itself reads the tree from
//! `file` and `s3` replicas only (its other backends answer "no matching backup files"), so on
//! S3 it must also agree from the server.

use crate::common;
use crate::v3::{build_v3, count};

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use common::*;
use storage::{open_replica_from_config, Body, SharedReplica};
use test_support::{abs, env::unique_name, gcs, nats, sftp, webdav};

/// A replica entry: its `replica:` YAML keys, the environment both tools need, and our client.
struct Target {
    yaml: Vec<String>,
    env: Vec<(String, String)>,
    client: SharedReplica,
}

/// The client a config entry of `yaml` lines (`type: <kind>` first) opens.
fn client_from_yaml(yaml: &[String]) -> SharedReplica {
    let kind = yaml[0].strip_prefix("type: ").expect("type line");
    let pairs: Vec<(String, String)> = yaml[1..]
        .iter()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let url = pairs
        .iter()
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.clone());
    let rest = pairs
        .iter()
        .filter(|(k, _)| k != "url")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    open_replica_from_config(kind, url.as_deref(), rest).expect("replica")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every file under `root`, as names relative to it.
fn tree(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            tree(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).expect("below root").to_owned());
        }
    }
}

/// Builds the 0.3.x tree locally, uploads it through `t.client`, and restores it with
/// ls-restore from a config naming the entry and with Litestream from the local tree (and from
/// the entry too when `litestream_reads_it`).
fn restore_both_from(t: &Target, litestream_reads_it: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("local-replica");
    let (rows, _) = build_v3(&local, dir.path());
    let mut files = Vec::new();
    tree(&local, &local, &mut files);
    assert!(files.len() >= 4, "{files:?}");
    let rt = runtime();
    for f in &files {
        let name = f.to_str().expect("utf-8 name");
        let created = fs::metadata(local.join(f))
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        rt.block_on(
            t.client
                .write_legacy(name, Body::File(local.join(f)), created),
        )
        .unwrap_or_else(|e| panic!("upload {name}: {e}"));
    }
    let listed = rt
        .block_on(t.client.legacy_objects())
        .expect("list the generations/ tree");
    assert_eq!(listed.len(), files.len(), "{listed:?}");

    let db = dir.path().join("app.db");
    let cfg = dir.path().join("litestream.yml");
    let keys: String = t.yaml.iter().map(|l| format!("      {l}\n")).collect();
    fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replica:\n{keys}", db.display()),
    )
    .expect("config");
    let (a, b) = (dir.path().join("lit.db"), dir.path().join("ls.db"));
    let lit = litestream();
    let mut c = lit_cmd(&lit);
    c.args(["restore", "-o"]).arg(&a).arg(file_url(&local));
    let o = run(c);
    assert!(
        o.status.success(),
        "litestream from the local tree: {}",
        stderr(&o)
    );
    if litestream_reads_it {
        let remote = dir.path().join("lit-remote.db");
        let mut c = lit_cmd(&lit);
        c.envs(t.env.iter().cloned())
            .args(["restore", "-config"])
            .arg(&cfg)
            .arg("-o")
            .arg(&remote)
            .arg(&db);
        run_ok(c, "litestream");
        assert!(
            fs::read(&remote).expect("remote") == fs::read(&a).expect("a"),
            "litestream restored different bytes from the server and from the local tree"
        );
    }
    let mut c = ls_restore();
    c.envs(t.env.iter().cloned())
        .arg("-config")
        .arg(&cfg)
        .arg("-o")
        .arg(&b)
        .arg(&db);
    run_ok(c, "ls-restore");
    assert_eq!(count(&b), rows);
    assert!(
        fs::read(&a).expect("a") == fs::read(&b).expect("b"),
        "litestream and ls-restore restored different bytes"
    );
    rt.block_on(t.client.delete_all()).ok();
}

/// [`restore_both_from`] on the entry of `yaml`, which needs no environment, on a backend
/// Litestream cannot read 0.3.x files from.
fn restore_from_yaml(yaml: Vec<String>) {
    let client = client_from_yaml(&yaml);
    let env = Vec::new();
    restore_both_from(&Target { yaml, env, client }, false);
}

#[test]
#[ignore = "needs the S3 test server and the real Litestream"]
fn s3() {
    let srv = s3_server();
    let yaml = srv.yaml_with_keys(&unique_name("v3"), &srv.secret_key);
    let client = client_from_yaml(&yaml);
    let env = vec![("AWS_EC2_METADATA_DISABLED".into(), "true".into())];
    restore_both_from(&Target { yaml, env, client }, true);
}

#[test]
#[ignore = "needs the GCS test server and the real Litestream"]
fn gcs() {
    let srv = gcs::gcs_server();
    let path = srv.unique_prefix("v3");
    let mut s = storage::gcs::GcsSettings::from_url(&srv.url(&path)).expect("settings");
    s.endpoint = Some(srv.endpoint.clone());
    let client: SharedReplica = Arc::new(storage::gcs::GcsReplica::new(s).expect("replica"));
    let yaml = vec![
        "type: gs".to_owned(),
        format!("bucket: {}", srv.bucket),
        format!("path: {path}"),
    ];
    restore_both_from(
        &Target {
            yaml,
            env: srv.env(),
            client,
        },
        false,
    );
}

/// One test per backend, `$name`: [`restore_from_yaml`] with the `replica:` keys of a fresh
/// place (`$place("v3")`) on the test server `$server`.
macro_rules! from_yaml {
    ($($name:ident: $server:expr, $place:ident, $needs:literal;)*) => {$(
        #[test]
        #[ignore = $needs]
        fn $name() {
            let srv = $server;
            let yaml = srv.yaml(&srv.$place("v3"));
            restore_from_yaml(yaml);
        }
    )*};
}

from_yaml! {
    abs: abs::abs_server(), unique_prefix, "needs the Azurite test server and the real Litestream";
    sftp: sftp::sftp_server(), unique_path, "needs the SFTP test server and the real Litestream";
    webdav: webdav::webdav_server(), unique_path, "needs the WebDAV test server and the real Litestream";
    nats: nats::nats_server(), new_bucket, "needs the NATS test server and the real Litestream";
}
