//! SFTP interop: the real `litestream replicate` (0.5.17) ships a database to the OpenSSH test
//! server with a `type: sftp` config (key auth, verified host key); our backend lists what it
//! wrote (Litestream's names, mtimes), and `ls-restore -config` restores byte for byte what
//! `litestream restore -config` restores from it: latest and every `-txid`.
//!
//! With a password login, the other way users name a replica: Litestream replicates with
//! `host`/`user`/`password` keys and a `path` relative to the login directory (no `host-key`),
//! and both tools restore from `sftp://user:password@host/<absolute path>` the same bytes.
//!
//! Needs the server of `tests/sftp/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use ltx_codec::Level;
use rusqlite::Connection;
use storage::sftp::{SftpReplica, SftpSettings};
use storage::timefmt::format_rfc3339_nano;
use storage::ReplicaClient;

use sftp_env::{password_login, sftp_server, unique_name, SftpServer};
use test_support::sftp as sftp_env;

/// `n` rows of `tag`, with blobs of varying size (some spill to overflow pages).
fn rows(conn: &Connection, tag: &str, n: usize) {
    for i in 0..n {
        conn.execute(
            "INSERT INTO t(v, b) VALUES (?1 || ?2, zeroblob(?2 * 13 % 3000))",
            rusqlite::params![tag, i as i64],
        )
        .expect("insert");
    }
}

fn setup(conn: &Connection) {
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);")
        .expect("schema");
    rows(conn, "setup", 300);
}

fn phase(conn: &Connection, p: usize) {
    rows(conn, &format!("phase {p}"), 100 + 50 * p);
    conn.execute("DELETE FROM t WHERE id % 11 = ?1", [p as i64])
        .expect("delete");
}

fn replica(srv: &SftpServer, path: &std::path::Path) -> SftpReplica {
    let pairs = srv.pairs(path);
    SftpReplica::new(
        SftpSettings::from_config(None, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("settings"),
    )
}

/// `litestream replicate` to `path` on the server, while the phases write.
fn spec(srv: &SftpServer, path: &std::path::Path, db: &std::path::Path) -> ReplicaSpec {
    let r = replica(srv, path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    ReplicaSpec {
        yaml: srv.yaml(path),
        // Both tools restore from the config (a URL cannot carry key-path): `-config CFG DB`.
        url: db.display().to_string(),
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

fn count_rows(bytes: &[u8], dir: &std::path::Path) -> i64 {
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
fn sftp_restore_matches_litestream() {
    let srv = sftp_server();
    let lit = litestream();
    let path = srv.unique_path("restore-interop");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("src.db");
    let r = replicate_to(
        &lit,
        &ReplicateOpts {
            page_size: 4096,
            setup: &setup,
            phases: 4,
            phase: &phase,
            min_run: Duration::from_secs(8),
            compaction: true,
        },
        dir,
        path.clone(),
        spec(&srv, &path, &db),
    );
    let cfg = r.dir.path().join("litestream.yml");
    let cfg_s = cfg.to_str().expect("utf-8");

    // What Litestream wrote, as our backend lists it: its names, sizes and mtimes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ours = replica(&srv, &path);
    let mut levels_seen = Vec::new();
    let mut times = Vec::new();
    let mut max_txid = 0;
    for level in 0..=9u8 {
        let files = rt.block_on(ours.ltx_files(Level(level))).expect("list");
        for f in &files {
            let p = path.join("ltx").join(level.to_string()).join(f.name());
            let meta = std::fs::metadata(&p).expect("listed file exists");
            assert_eq!(f.size, meta.len());
            let secs = meta
                .modified()
                .expect("mtime")
                .duration_since(UNIX_EPOCH)
                .expect("epoch")
                .as_secs();
            assert_eq!(f.created_at, UNIX_EPOCH + Duration::from_secs(secs));
            let head = rt
                .block_on(ours.read_range(Level(level), f.min_txid, f.max_txid, 0, Some(100)))
                .expect("header");
            let h = ltx_codec::Header::decode(&head).expect("LTX header");
            // Litestream set the mtime to the header timestamp (whole seconds on SFTP).
            assert_eq!(secs, h.timestamp as u64 / 1000, "{}", f.name());
            max_txid = max_txid.max(f.max_txid.0);
            times.push(f.created_at);
        }
        if !files.is_empty() {
            levels_seen.push(level);
        }
    }
    assert!(
        levels_seen.contains(&0) && levels_seen.contains(&1) && levels_seen.contains(&9),
        "levels {levels_seen:?}"
    );

    let (a, b) = restore_both(&lit, &r, &["-config", cfg_s], "latest");
    assert!(!a.is_empty() && a == b, "latest: bytes differ");
    let src: i64 = Connection::open(&r.db)
        .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
        .expect("source count");
    assert!(src > 500, "{src} rows");
    assert_eq!(count_rows(&b, r.dir.path()), src);

    let mut restored = 0;
    for txid in 1..=max_txid {
        let t = format!("{txid:016x}");
        if let Ok((a, b)) =
            restore_both_or_same_error(&lit, &r, &["-config", cfg_s, "-txid", &t], &t)
        {
            assert!(a == b, "-txid {t}: bytes differ");
            count_rows(&b, r.dir.path());
            restored += 1;
        }
    }
    assert!(restored >= 5, "restored {restored} txids of {max_txid}");

    // -timestamp between phases, and at / just after each file's mtime (whole seconds here):
    // both tools choose the same files.
    let mut stamps: Vec<String> = r.marks.iter().map(|m| format_rfc3339_nano(*m)).collect();
    for t in &times {
        stamps.push(format_rfc3339_nano(*t));
        stamps.push(format_rfc3339_nano(*t + Duration::from_millis(1)));
    }
    let mut by_time = 0;
    for (k, ts) in stamps.iter().enumerate() {
        let args = ["-config", cfg_s, "-timestamp", ts];
        if let Ok((a, b)) = restore_both_or_same_error(&lit, &r, &args, &format!("ts{k}")) {
            assert!(a == b, "-timestamp {ts}: bytes differ");
            by_time += 1;
        }
    }
    assert!(by_time >= 4, "only {by_time} timestamps restored");
    std::fs::remove_dir_all(&path).expect("cleanup");
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
