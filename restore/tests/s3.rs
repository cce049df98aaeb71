//! S3 interop: the real `litestream replicate` (0.5.17) ships a database to s3s-fs with a
//! `type: s3` config, and `ls-restore` restores from the `s3://` URL byte for byte what
//! `litestream restore` restores from the same bucket: latest, every `-txid`, and `-timestamp`
//! both between write phases and exactly at files' metadata timestamps, where only the precise
//! `litestream-timestamp` metadata (not LastModified) gives Litestream's answer.
//!
//! Needs the server of `tests/s3/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;

use std::time::Duration;

use common::*;
use ltx_codec::Level;
use rusqlite::Connection;
use storage::s3::S3Replica;
use storage::timefmt::format_rfc3339_nano;

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

/// Every file's metadata timestamp, as Litestream reads it for `-timestamp`.
fn metadata_times(srv: &S3Server, prefix: &str) -> Vec<std::time::SystemTime> {
    let r = S3Replica::new(srv.settings(prefix)).expect("replica");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    for level in 0..=9u8 {
        let files = rt
            .block_on(r.ltx_files_with_metadata(Level(level)))
            .expect("list with metadata");
        out.extend(files.into_iter().map(|f| f.created_at));
    }
    out.sort();
    out.dedup();
    out
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
#[ignore = "needs the S3 test server and the real Litestream"]
fn s3_restore_matches_litestream() {
    let srv = s3_server();
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
        srv.spec(&prefix),
    );

    let (a, b) = restore_both(&lit, &r, &[], "latest");
    assert!(!a.is_empty() && a == b, "latest: bytes differ");
    // The restore is the source database as of the last phase.
    let restored = r.dir.path().join("check.db");
    std::fs::write(&restored, &b).expect("write");
    let n: i64 = Connection::open(&restored)
        .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
        .expect("count");
    assert_eq!(n, 300 + 100 + 150 + 200 + 250);

    // Every TXID the replica holds.
    let times = metadata_times(&srv, &prefix);
    let mut max = 0u64;
    for txid in 1..=64u64 {
        let t = format!("{txid:016x}");
        if !assert_same(&lit, &r, &["-txid", &t], &t) {
            break;
        }
        max = txid;
    }
    assert!(max >= 5, "restored up to txid {max}");

    // Between phases, and exactly at (and just after) each file's metadata timestamp: a file
    // created at T is excluded at T and included at T+1µs, which only the metadata shows.
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
}

/// `-config PATH DB_PATH` with a `type: s3` replica whose keys come from the environment
/// (`$VAR`, `${VAR}`), credentials as top-level defaults, and a `sqlite://` database path:
/// both tools restore the same bytes; with `-no-expand-env` both refuse.
#[test]
#[ignore = "needs the S3 test server and the real Litestream"]
fn s3_config_mode_matches_litestream() {
    let srv = s3_server();
    let lit = litestream();
    let prefix = srv.unique_prefix("restore-config");
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("unused");
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
        dir,
        replica,
        srv.spec(&prefix),
    );
    let cfg = r.dir.path().join("restore.yml");
    std::fs::write(
        &cfg,
        format!(
            "access-key-id: ${{LS_T_KEY}}\nsecret-access-key: $LS_T_SECRET\ndbs:\n  - path: sqlite://$LS_T_DIR/src.db\n    replica:\n      type: s3\n      bucket: ${{LS_T_BUCKET}}\n      path: {prefix}\n      endpoint: $LS_T_ENDPOINT\n      region: us-east-1\n      force-path-style: true\n      part-size: 5MiB\n      sync-interval: 1s\n"
        ),
    )
    .expect("config");
    let env = |c: &mut std::process::Command| {
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "LITESTREAM_ACCESS_KEY_ID",
            "LITESTREAM_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "LITESTREAM_S3_ENDPOINT",
        ] {
            c.env_remove(k);
        }
        c.env("LS_T_DIR", r.dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("LS_T_KEY", &srv.access_key)
            .env("LS_T_SECRET", &srv.secret_key)
            .env("LS_T_BUCKET", &srv.bucket)
            .env("LS_T_ENDPOINT", &srv.endpoint);
    };
    for (tag, extra) in [
        ("latest", vec![]),
        ("txid", vec!["-txid", "0000000000000002"]),
    ] {
        let a = r.dir.path().join(format!("lit-cfg-{tag}.db"));
        let b = r.dir.path().join(format!("ls-cfg-{tag}.db"));
        let mut c = lit_cmd(&lit);
        env(&mut c);
        c.args(["restore", "-config"])
            .arg(&cfg)
            .args(&extra)
            .arg("-o")
            .arg(&a)
            .arg(&r.db);
        let lo = run(c);
        assert!(lo.status.success(), "litestream: {}", stderr(&lo));
        let mut c = ls_restore();
        env(&mut c);
        c.arg("-config")
            .arg(&cfg)
            .args(&extra)
            .arg("-o")
            .arg(&b)
            .arg(&r.db);
        let mo = run(c);
        assert!(mo.status.success(), "ls-restore {tag}: {}", stderr(&mo));
        let (x, y) = (
            std::fs::read(&a).expect("read"),
            std::fs::read(&b).expect("read"),
        );
        assert!(!x.is_empty() && x == y, "config {tag}: bytes differ");
    }
    let mut c = ls_restore();
    env(&mut c);
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
