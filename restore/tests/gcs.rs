//! GCS interop: the real `litestream replicate` (0.5.17) ships a database to fake-gcs-server
//! with a `type: gs` config (`STORAGE_EMULATOR_HOST`, as Google's Go client takes it); our gs
//! backend lists and reads what it wrote, and `ls-restore` restores from the `gs://` URL (and
//! from the same YAML) byte for byte what `litestream restore` restores: latest, every `-txid`,
//! and `-timestamp` between phases and exactly at the files' metadata timestamps.
//!
//! Needs the server of `tests/gcs/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;

use test_support::gcs as gcs_env;

use std::time::Duration;

use common::*;
use gcs_env::{gcs_server, GcsServer};
use ltx_codec::{Level, LtxFile};
use rusqlite::Connection;
use storage::gcs::{GcsReplica, GcsSettings};
use storage::timefmt::format_rfc3339_nano;
use storage::ReplicaClient;

/// An indexed table of text and blobs.
fn setup(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
         INSERT INTO kv(k, v) SELECT 'key-' || i, randomblob(i % 700) FROM n;",
    )
    .expect("setup");
}

/// Inserts, rewrites and deletes, so that pages are added, changed and freed in each phase.
fn phase(conn: &Connection, p: usize) {
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO kv(k, v) SELECT 'p' || ?2 || '-' || i, randomblob(200 + i % 1500) FROM n",
        rusqlite::params![(80 + 40 * p) as i64, p as i64],
    )
    .expect("insert");
    conn.execute(
        "UPDATE kv SET v = randomblob(50) WHERE id % 6 = ?1",
        [p as i64],
    )
    .expect("update");
    conn.execute("DELETE FROM kv WHERE id % 11 = ?1", [p as i64])
        .expect("delete");
}

/// Our backend on the emulator, as the tests open it (not through the environment).
fn gcs_replica(srv: &GcsServer, prefix: &str) -> GcsReplica {
    GcsReplica::new(GcsSettings {
        source: srv.url(prefix),
        bucket: srv.bucket.clone(),
        path: prefix.to_owned(),
        endpoint: Some(srv.endpoint.clone()),
    })
    .expect("gs replica")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn spec(srv: &GcsServer, prefix: &str) -> ReplicaSpec {
    let r = gcs_replica(srv, prefix);
    let rt = runtime();
    ReplicaSpec {
        yaml: vec![
            "type: gs".into(),
            format!("bucket: {}", srv.bucket),
            format!("path: {prefix}"),
        ],
        url: srv.url(prefix),
        lit_env: srv.env(),
        ls_env: srv.env(),
        l0_max: Box::new(move || {
            r.invalidate_cache();
            rt.block_on(r.ltx_files(Level(0)))
                .unwrap_or_default()
                .last()
                .map_or(0, |f| f.max_txid.0)
        }),
    }
}

fn assert_same(lit: &std::path::Path, r: &Replicated, args: &[&str], tag: &str) -> bool {
    match restore_both_or_same_error(lit, r, args, tag) {
        Ok((a, b)) => {
            assert!(
                a == b,
                "{args:?}: bytes differ ({} vs {})",
                a.len(),
                b.len()
            );
            true
        }
        Err(_) => false,
    }
}

#[test]
#[ignore = "needs the GCS test server and the real Litestream"]
fn gcs_restore_matches_litestream() {
    let srv = gcs_server();
    let lit = litestream();
    let prefix = srv.unique_prefix("restore-interop");
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("unused");
    let r = replicate_to(
        &lit,
        &ReplicateOpts {
            page_size: 4096,
            setup: &setup,
            phases: 4,
            phase: &phase,
            min_run: Duration::from_secs(11),
            compaction: true,
        },
        dir,
        replica,
        spec(&srv, &prefix),
    );

    // What Litestream wrote, as our backend sees it: its layout, verified LTX files whose
    // sizes and metadata timestamps match their headers.
    let backend = gcs_replica(&srv, &prefix);
    let rt = runtime();
    let mut times = Vec::new();
    let mut levels_seen = Vec::new();
    for level in 0..=9u8 {
        let files = rt.block_on(backend.ltx_files(Level(level))).expect("list");
        if !files.is_empty() {
            levels_seen.push(level);
        }
        for f in files {
            let bytes = rt
                .block_on(backend.read_range(f.level, f.min_txid, f.max_txid, 0, None))
                .expect("read");
            assert_eq!(bytes.len() as u64, f.size, "size of {}", f.name());
            let ltx = LtxFile::open_verified(&bytes).expect("Litestream's LTX verifies");
            assert_eq!(
                (ltx.header().min_txid, ltx.header().max_txid),
                (f.min_txid, f.max_txid)
            );
            let header_time =
                std::time::UNIX_EPOCH + Duration::from_millis(ltx.header().timestamp.max(0) as u64);
            assert_eq!(f.created_at, header_time, "metadata time of {}", f.name());
            times.push(f.created_at);
        }
    }
    assert!(
        levels_seen.contains(&0) && levels_seen.contains(&1) && levels_seen.contains(&9),
        "levels {levels_seen:?}"
    );
    let names: Vec<String> = rt
        .block_on(backend.list_prefix(&format!("{prefix}/")))
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with(&format!("{prefix}/ltx/"))),
        "{names:?}"
    );

    let (a, b) = restore_both(&lit, &r, &[], "latest");
    assert!(!a.is_empty() && a == b, "latest: bytes differ");
    let restored = r.dir.path().join("check.db");
    std::fs::write(&restored, &b).expect("write");
    let c = Connection::open(&restored).expect("open");
    let count = |c: &Connection| -> i64 {
        c.query_row("SELECT count(*) FROM kv", [], |row| row.get(0))
            .expect("count")
    };
    let source = Connection::open(&r.db).expect("open source");
    assert_eq!(count(&c), count(&source), "rows of the source");
    assert!(count(&c) > 400);
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity");
    assert_eq!(ok, "ok");

    // Every TXID the replica holds.
    let mut max = 0u64;
    for txid in 1..=64u64 {
        let t = format!("{txid:016x}");
        if !assert_same(&lit, &r, &["-txid", &t], &t) {
            break;
        }
        max = txid;
    }
    assert!(max >= 5, "restored up to txid {max}");

    // Between phases, and exactly at (and just after) each file's metadata timestamp.
    times.sort();
    times.dedup();
    let mut stamps: Vec<String> = r.marks.iter().map(|m| format_rfc3339_nano(*m)).collect();
    for t in &times {
        stamps.push(format_rfc3339_nano(*t));
        stamps.push(format_rfc3339_nano(*t + Duration::from_micros(1)));
    }
    let mut restored_any = 0;
    for (k, ts) in stamps.iter().enumerate() {
        if assert_same(&lit, &r, &["-timestamp", ts], &format!("ts{k}")) {
            restored_any += 1;
        }
    }
    assert!(restored_any >= 4, "only {restored_any} timestamps restored");

    // The same YAML Litestream replicated with, in `-config` mode, for both tools.
    let cfg = r.dir.path().join("restore.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: gs\n      bucket: {}\n      path: {prefix}\n",
            r.db.display(),
            srv.bucket
        ),
    )
    .expect("config");
    let a = r.dir.path().join("lit-cfg.db");
    let b = r.dir.path().join("ls-cfg.db");
    let mut c = lit_cmd(&lit);
    c.envs(srv.env())
        .args(["restore", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&a)
        .arg(&r.db);
    let lo = run(c);
    assert!(lo.status.success(), "litestream: {}", stderr(&lo));
    let mut c = ls_restore();
    c.envs(srv.env())
        .arg("-config")
        .arg(&cfg)
        .arg("-o")
        .arg(&b)
        .arg(&r.db);
    let mo = run(c);
    assert!(mo.status.success(), "ls-restore: {}", stderr(&mo));
    let (x, y) = (
        std::fs::read(&a).expect("read"),
        std::fs::read(&b).expect("read"),
    );
    assert!(!x.is_empty() && x == y, "config mode: bytes differ");
    rt.block_on(backend.delete_all()).expect("clean up");
}
