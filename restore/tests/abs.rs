//! Azure Blob Storage interop: the real `litestream replicate` (0.5.17) ships a database to
//! Azurite with a `type: abs` config (account-name, account-key, bucket, path, endpoint); our
//! abs backend lists and reads exactly what it wrote (layout, sizes, `litestreamtimestamp`
//! metadata equal to each LTX header's timestamp); and `ls-restore -config` restores byte for
//! byte what `litestream restore -config` restores: latest, every `-txid`, and `-timestamp`
//! between write phases.
//!
//! Needs the server of `tests/abs/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use test_support::abs as support;

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use ltx_codec::{Level, LtxFile};
use rusqlite::Connection;
use storage::abs::{AbsReplica, AbsSettings};
use storage::timefmt::format_rfc3339_nano;
use storage::ReplicaClient;
use support::{abs_server, AbsServer};

fn replica(srv: &AbsServer, prefix: &str) -> AbsReplica {
    let pairs = srv.pairs(prefix);
    let s = AbsSettings::from_config(None, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .expect("settings");
    AbsReplica::new(s).expect("replica")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn spec(srv: &AbsServer, prefix: &str) -> ReplicaSpec {
    let r = replica(srv, prefix);
    let rt = runtime();
    ReplicaSpec {
        yaml: srv.yaml(prefix),
        // Litestream ignores a query in abs URLs, so Azurite is only reachable by config.
        url: format!("abs://{}@{}/{prefix}", srv.account, srv.container),
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

fn setup(conn: &Connection) {
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);")
        .expect("schema");
    let mut st = conn
        .prepare("INSERT INTO t(v, b) VALUES (?1, randomblob(?2))")
        .expect("prepare");
    for i in 0..300 {
        st.execute(rusqlite::params![format!("row {i}"), (i % 400) as i64])
            .expect("insert");
    }
}

fn phase(conn: &Connection, p: usize) {
    let mut st = conn
        .prepare("INSERT INTO t(v, b) VALUES (?1, randomblob(?2))")
        .expect("prepare");
    for i in 0..(100 + 50 * p) {
        st.execute(rusqlite::params![
            format!("phase {p} row {i}"),
            (i % 900) as i64
        ])
        .expect("insert");
    }
    conn.execute("UPDATE t SET v = v || '!' WHERE id % 4 = ?1", [p as i64])
        .expect("update");
}

/// Restores with both tools from the replication config (`-config CFG DB`); returns
/// (litestream bytes, ls-restore bytes), or Litestream's error, which ls-restore must share.
fn restore_both_config(
    lit: &Path,
    r: &Replicated,
    args: &[&str],
    tag: &str,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cfg = r.dir.path().join("litestream.yml");
    let a = r.dir.path().join(format!("lit-{tag}.db"));
    let b = r.dir.path().join(format!("ls-{tag}.db"));
    let mut c = lit_cmd(lit);
    c.arg("restore")
        .arg("-config")
        .arg(&cfg)
        .args(args)
        .arg("-o")
        .arg(&a)
        .arg(&r.db);
    let lo = run(c);
    let mut c = ls_restore();
    c.arg("-config")
        .arg(&cfg)
        .args(args)
        .arg("-o")
        .arg(&b)
        .arg(&r.db);
    let mo = run(c);
    if !lo.status.success() {
        let want = stderr(&lo);
        let want = want.lines().last().unwrap_or_default().trim().to_owned();
        assert!(
            !mo.status.success(),
            "litestream failed ({want}), ls-restore succeeded"
        );
        return Err(want);
    }
    assert!(mo.status.success(), "ls-restore {args:?}: {}", stderr(&mo));
    let (x, y) = (
        std::fs::read(&a).expect("read a"),
        std::fs::read(&b).expect("read b"),
    );
    Ok((x, y))
}

fn check_db(bytes: &[u8], dir: &Path, rows: i64) {
    let p = dir.join("check.db");
    std::fs::write(&p, bytes).expect("write");
    let c = Connection::open(&p).expect("open");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok");
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .expect("count");
    assert_eq!(n, rows);
    drop(c);
    let _ = std::fs::remove_file(&p);
}

#[test]
#[ignore = "needs the Azurite test server and the real Litestream"]
fn abs_restore_matches_litestream() {
    let srv = abs_server();
    let lit = litestream();
    let prefix = srv.unique_prefix("restore-abs");
    let dir = tempfile::tempdir().expect("tempdir");
    let unused = dir.path().join("unused");
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
        spec(&srv, &prefix),
    );

    // What Litestream wrote, through our backend: names, sizes, and metadata timestamps.
    let rep = replica(&srv, &prefix);
    let rt = runtime();
    let blobs = rt
        .block_on(rep.list_prefix(&format!("{prefix}/")))
        .expect("list");
    let mut levels_seen = Vec::new();
    let mut max_txid = 0;
    for level in 0..=9u8 {
        let files = rt.block_on(rep.ltx_files(Level(level))).expect("ltx files");
        for f in &files {
            let name = rep.ltx_blob(f.level, f.min_txid, f.max_txid);
            assert_eq!(
                name,
                format!("{prefix}/ltx/{level}/{}", f.name()),
                "Litestream's layout"
            );
            let listed = blobs.iter().find(|b| b.name == name).expect("listed blob");
            assert_eq!(listed.size, f.size);
            let bytes = rt
                .block_on(rep.read_range(f.level, f.min_txid, f.max_txid, 0, None))
                .expect("read");
            assert_eq!(bytes.len() as u64, f.size);
            let ltx = LtxFile::open_verified(&bytes).expect("Litestream's LTX verifies");
            let header_time =
                UNIX_EPOCH + Duration::from_millis(ltx.header().timestamp.max(0) as u64);
            assert_eq!(f.created_at, header_time, "litestreamtimestamp of {name}");
            max_txid = max_txid.max(f.max_txid.0);
        }
        if !files.is_empty() {
            levels_seen.push(level);
        }
    }
    assert_eq!(blobs.len(), {
        let mut n = 0;
        for level in 0..=9u8 {
            n += rt
                .block_on(rep.ltx_files(Level(level)))
                .expect("list")
                .len();
        }
        n
    });
    assert!(
        levels_seen.contains(&0) && levels_seen.contains(&1) && levels_seen.contains(&9),
        "levels {levels_seen:?}"
    );

    // Latest: identical bytes, the source's rows, integrity ok.
    let (a, b) = restore_both_config(&lit, &r, &[], "latest").expect("latest");
    assert!(!a.is_empty() && a == b, "latest: bytes differ");
    check_db(&b, r.dir.path(), 300 + 100 + 150 + 200 + 250);

    // The same replica named by `url:` (with `endpoint:` beside it, as Litestream allows) and
    // the account key from LITESTREAM_AZURE_ACCOUNT_KEY: both tools restore the same bytes.
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
    let mut outs = Vec::new();
    for (tool, out) in [("litestream", "lit-env.db"), ("ls-restore", "ls-env.db")] {
        let out = r.dir.path().join(out);
        let mut c = if tool == "litestream" {
            let mut c = lit_cmd(&lit);
            c.arg("restore");
            c
        } else {
            ls_restore()
        };
        c.env("LITESTREAM_AZURE_ACCOUNT_KEY", &srv.key)
            .env_remove("LITESTREAM_AZURE_SAS_TOKEN")
            .arg("-config")
            .arg(&cfg)
            .arg("-o")
            .arg(&out)
            .arg(&r.db);
        let o = run(c);
        assert!(o.status.success(), "{tool}: {}", stderr(&o));
        outs.push(std::fs::read(&out).expect("restored"));
    }
    assert!(outs[0] == a && outs[1] == a, "url + env restores differ");

    // Every TXID.
    let mut restored = 0;
    for txid in 1..=max_txid {
        let t = format!("{txid:016x}");
        if let Ok((a, b)) = restore_both_config(&lit, &r, &["-txid", &t], &t) {
            assert!(a == b, "-txid {t}: bytes differ");
            restored += 1;
        }
    }
    assert!(restored >= 5, "restored {restored} of {max_txid} txids");

    // Between phases.
    for (k, m) in r.marks.iter().enumerate() {
        let ts = format_rfc3339_nano(*m);
        let (a, b) = restore_both_config(&lit, &r, &["-timestamp", &ts], &format!("ts{k}"))
            .expect("timestamp restore");
        assert!(a == b, "-timestamp {ts}: bytes differ");
        let rows: i64 = 300 + (0..=k as i64).map(|p| 100 + 50 * p).sum::<i64>();
        check_db(&b, r.dir.path(), rows);
    }
    rt.block_on(rep.delete_all()).expect("cleanup");
}
