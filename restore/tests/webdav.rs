//! WebDAV interop: the real `litestream replicate` (0.5.17) ships a database to
//! `rclone serve webdav` with a `type: webdav` config (`webdav-url`, `webdav-username`,
//! `webdav-password`, `path`); our backend lists what it wrote, and `ls-restore` restores from
//! the `webdav://` URL byte for byte what `litestream restore` restores: latest, every
//! `-txid`, and `-timestamp` between write phases (Litestream's creation times are the
//! server's modification times, which both tools read from the same listing).
//!
//! Needs the server of `tests/webdav/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use test_support::webdav as webdav_env;

use std::time::{Duration, SystemTime};

use common::*;
use ltx_codec::Level;
use rusqlite::Connection;
use storage::timefmt::format_rfc3339_nano;
use storage::webdav::{WebDavReplica, WebDavSettings};
use storage::ReplicaClient;
use webdav_env::{webdav_server, WebDavServer};

/// Rows with an index and blobs of every size up to two pages, so that overflow pages and
/// index pages change in every phase.
fn setup(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE kv(k TEXT PRIMARY KEY, n INTEGER, blob BLOB) WITHOUT ROWID;
         CREATE INDEX kv_n ON kv(n);",
    )
    .expect("schema");
    for i in 0..400i64 {
        conn.execute(
            "INSERT INTO kv VALUES (printf('key-%06d', ?1), ?1 % 13, zeroblob(?1 * 20))",
            [i],
        )
        .expect("insert");
    }
}

/// Inserts, rewrites and deletes, different in each phase.
fn phase(conn: &Connection, p: usize) {
    let p = p as i64;
    conn.execute(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 150 + 40 * ?1)
         INSERT INTO kv SELECT printf('p%d-%06d', ?1, n), n % 13, randomblob(n * 3) FROM s",
        [p],
    )
    .expect("insert");
    conn.execute(
        "UPDATE kv SET blob = randomblob(length(blob) + 7) WHERE n = ?1",
        [p],
    )
    .expect("update");
    conn.execute("DELETE FROM kv WHERE n = ?1 + 6 AND k < 'key-000200'", [p])
        .expect("delete");
}

fn our_replica(srv: &WebDavServer, path: &str) -> WebDavReplica {
    let s = WebDavSettings::from_url(&srv.replica_url(path)).expect("url");
    WebDavReplica::new(s).expect("replica")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A `litestream replicate` target on the WebDAV server under `path`, written with the YAML
/// keys users put in litestream.yml; both restore tools read it from the `webdav://` URL.
fn spec(srv: &WebDavServer, path: &str) -> ReplicaSpec {
    let r = our_replica(srv, path);
    let rt = runtime();
    ReplicaSpec {
        yaml: srv.yaml(path),
        url: srv.replica_url(path),
        lit_env: Vec::new(),
        ls_env: Vec::new(),
        l0_max: Box::new(move || {
            r.invalidate_cache();
            rt.block_on(r.ltx_files(Level(0)))
                .unwrap_or_default()
                .last()
                .map_or(0, |f| f.max_txid.0)
        }),
    }
}

#[test]
#[ignore = "needs the WebDAV test server and the real Litestream"]
fn webdav_restore_matches_litestream() {
    let srv = webdav_server();
    let lit = litestream();
    let path = srv.unique_path("restore-interop");
    let dir = tempfile::tempdir().expect("tempdir");
    let unused = dir.path().join("unused");
    let started = SystemTime::now();
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
        unused,
        spec(&srv, &path),
    );

    // What Litestream wrote, as our backend lists it: the layout of docs/replica-layout.md#paths-and-timestamps-per-backend, and creation
    // times that are the server's clock during the run.
    let ours = our_replica(&srv, &path);
    let rt = runtime();
    let mut levels = Vec::new();
    for level in 0..=9u8 {
        let files = rt.block_on(ours.ltx_files(Level(level))).expect("list");
        for f in &files {
            assert!(f.created_at + Duration::from_secs(1) >= started, "{f:?}");
            assert!(f.created_at <= SystemTime::now(), "{f:?}");
            let b = rt
                .block_on(ours.read_range(Level(level), f.min_txid, f.max_txid, 0, None))
                .expect("read");
            assert_eq!(b.len() as u64, f.size);
        }
        if !files.is_empty() {
            levels.push(level);
        }
    }
    assert!(
        levels.contains(&0) && levels.contains(&9),
        "levels {levels:?}"
    );
    if let Some(data) = &srv.data_dir {
        let l0 = ltx_names(&data.join(&path).join("ltx/0"));
        assert!(!l0.is_empty(), "no L0 files at {path}/ltx/0 on the server");
    }

    let (a, b) = restore_both(&lit, &r, &[], "latest");
    assert!(!a.is_empty() && a == b, "latest: bytes differ");
    let a_latest = a.clone();
    let restored = r.dir.path().join("check.db");
    std::fs::write(&restored, &b).expect("write");
    let c = Connection::open(&restored).expect("open");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity");
    assert_eq!(ok, "ok");
    // The source's content, row for row.
    let rows = |c: &Connection| -> Vec<(String, i64, Vec<u8>)> {
        let mut st = c
            .prepare("SELECT k, n, blob FROM kv ORDER BY k")
            .expect("select");
        st.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let want = rows(&Connection::open(&r.db).expect("source"));
    let got = rows(&c);
    assert!(got.len() > 1000, "{} rows", got.len());
    assert!(got == want, "restored rows differ from the source");

    let mut max = 0u64;
    for txid in 1..=64u64 {
        let t = format!("{txid:016x}");
        if restore_both_or_same_error(&lit, &r, &["-txid", &t], &t).is_err() {
            break;
        }
        max = txid;
    }
    assert!(max >= 5, "restored up to txid {max}");

    let mut restored_any = 0;
    for (k, m) in r.marks.iter().enumerate() {
        let ts = format_rfc3339_nano(*m);
        if let Ok((a, b)) =
            restore_both_or_same_error(&lit, &r, &["-timestamp", &ts], &format!("ts{k}"))
        {
            assert!(a == b, "-timestamp {ts}: bytes differ");
            restored_any += 1;
        }
    }
    assert!(restored_any >= 2, "only {restored_any} timestamps restored");

    // `-config PATH DB_PATH` with the credentials from the environment; both tools restore
    // the same bytes. (Litestream 0.5.17 does not inherit webdav-* keys written at the top
    // level, so they stay on the replica.)
    let cfg = r.dir.path().join("restore.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: webdav\n      webdav-url: {}\n      webdav-username: $LS_T_USER\n      webdav-password: ${{LS_T_PASS}}\n      path: {path}\n",
            r.db.display(),
            srv.url
        ),
    )
    .expect("config");
    let a = r.dir.path().join("lit-cfg.db");
    let b = r.dir.path().join("ls-cfg.db");
    let mut c = lit_cmd(&lit);
    c.env("LS_T_USER", &srv.user).env("LS_T_PASS", &srv.pass);
    c.args(["restore", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&a)
        .arg(&r.db);
    let lo = run(c);
    assert!(lo.status.success(), "litestream: {}", stderr(&lo));
    let mut c = ls_restore();
    c.env("LS_T_USER", &srv.user).env("LS_T_PASS", &srv.pass);
    c.arg("-config").arg(&cfg).arg("-o").arg(&b).arg(&r.db);
    let mo = run(c);
    assert!(mo.status.success(), "ls-restore -config: {}", stderr(&mo));
    let (x, y) = (
        std::fs::read(&a).expect("read"),
        std::fs::read(&b).expect("read"),
    );
    assert!(x == y && x == a_latest, "config mode: bytes differ");
}
