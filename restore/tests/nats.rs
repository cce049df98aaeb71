//! NATS interop: the real `litestream replicate` (0.5.17) ships a database to a JetStream
//! object store bucket with a `type: nats` config (`url`, `username`, `password`); our backend
//! lists what it wrote (names `ltx/<level>/<min>-<max>.ltx`, creation times from the
//! `Litestream-Timestamp` header), and `ls-restore` restores from the `nats://` URL byte for
//! byte what `litestream restore` restores: latest, `-txid`s and `-timestamp`s between write
//! phases; and from `-config` with the same kind of YAML.
//!
//! Needs the server of `tests/nats/start.sh` (the tests are ignored without `--include-ignored`).

use crate::common;
use test_support::nats as nats_env;

use std::time::{Duration, SystemTime};

use common::*;
use ltx_codec::Level;
use nats_env::{nats_server, NatsServer};
use rusqlite::Connection;
use storage::nats::{NatsReplica, NatsSettings};
use storage::timefmt::format_rfc3339_nano;
use storage::ReplicaClient;

/// Orders with line items; text, numbers and blobs large enough for overflow pages.
fn create_shop(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total REAL);
         CREATE TABLE items(order_id INTEGER, sku TEXT, qty INTEGER, note BLOB);
         CREATE INDEX items_order ON items(order_id);",
    )
    .expect("schema");
    conn.execute_batch(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 300)
         INSERT INTO orders SELECT n, 'customer-' || (n % 37), n * 1.25 FROM s;
         INSERT INTO items SELECT id, 'sku-' || (id % 11), id % 5, zeroblob(id * 13) FROM orders;",
    )
    .expect("rows");
}

/// New orders, repriced ones and cancelled ones; each phase differs.
fn trade(conn: &Connection, phase: usize) {
    let p = phase as i64;
    conn.execute(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 120 + 30 * ?1)
         INSERT INTO orders(customer, total) SELECT 'phase-' || ?1 || '-' || n, n * 0.5 FROM s",
        [p],
    )
    .expect("orders");
    conn.execute(
        "INSERT INTO items SELECT id, 'sku-new', ?1, randomblob(id % 700 + 1)
         FROM orders WHERE customer LIKE 'phase-' || ?1 || '-%'",
        [p],
    )
    .expect("items");
    conn.execute(
        "UPDATE orders SET total = total * 1.1 WHERE id % 9 = ?1",
        [p],
    )
    .expect("update");
    conn.execute("DELETE FROM items WHERE order_id % 17 = ?1 + 3", [p])
        .expect("delete");
}

fn our_replica(srv: &NatsServer, bucket: &str) -> NatsReplica {
    NatsReplica::new(NatsSettings::from_url(&srv.replica_url(bucket)).expect("url"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn table_rows(c: &Connection) -> (i64, i64, String) {
    c.query_row(
        "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM items),
                (SELECT group_concat(id || ':' || total, ',') FROM orders)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .expect("rows")
}

#[test]
#[ignore = "needs the NATS test server and the real Litestream"]
fn nats_restore_matches_litestream() {
    let srv = nats_server();
    let lit = litestream();
    let bucket = srv.new_bucket("restore-interop");
    let dir = tempfile::tempdir().expect("tempdir");
    let unused = dir.path().join("unused");
    let started = SystemTime::now();
    let watcher = our_replica(&srv, &bucket);
    let rt = runtime();
    let spec = ReplicaSpec {
        yaml: srv.yaml(&bucket),
        url: srv.replica_url(&bucket),
        lit_env: Vec::new(),
        ls_env: Vec::new(),
        l0_max: Box::new(move || {
            watcher.invalidate_cache();
            rt.block_on(watcher.ltx_files(Level(0)))
                .unwrap_or_default()
                .last()
                .map_or(0, |f| f.max_txid.0)
        }),
    };
    let r = replicate_to(
        &lit,
        &ReplicateOpts {
            page_size: 4096,
            setup: &create_shop,
            phases: 4,
            phase: &trade,
            min_run: Duration::from_secs(11),
            compaction: true,
        },
        dir,
        unused,
        spec,
    );

    // What Litestream wrote, as our backend lists and reads it.
    let ours = our_replica(&srv, &bucket);
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
            assert_eq!(&b[..4], b"LTX1", "{f:?}");
        }
        if !files.is_empty() {
            levels.push(level);
        }
    }
    assert!(
        levels.contains(&0) && levels.contains(&9),
        "levels {levels:?}"
    );

    let (a, b) = restore_both(&lit, &r, &[], "latest");
    assert!(!a.is_empty() && a == b, "latest: bytes differ");
    let restored = r.dir.path().join("check.db");
    std::fs::write(&restored, &b).expect("write");
    let c = Connection::open(&restored).expect("open");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity");
    assert_eq!(ok, "ok");
    let want = table_rows(&Connection::open(&r.db).expect("source"));
    let got = table_rows(&c);
    assert!(got.0 > 800, "{} orders", got.0);
    assert_eq!(got, want, "restored rows differ from the source");

    let mut max = 0u64;
    for txid in 1..=64u64 {
        let t = format!("{txid:016x}");
        match restore_both_or_same_error(&lit, &r, &["-txid", &t], &t) {
            Ok((x, y)) => assert!(x == y, "-txid {t}: bytes differ"),
            Err(_) => break,
        }
        max = txid;
    }
    assert!(max >= 5, "restored up to txid {max}");

    let mut restored_any = 0;
    for (k, m) in r.marks.iter().enumerate() {
        let ts = format_rfc3339_nano(*m);
        if let Ok((x, y)) =
            restore_both_or_same_error(&lit, &r, &["-timestamp", &ts], &format!("ts{k}"))
        {
            assert!(x == y, "-timestamp {ts}: bytes differ");
            restored_any += 1;
        }
    }
    assert!(restored_any >= 2, "only {restored_any} timestamps restored");

    // `-config PATH DB_PATH`, credentials from the environment: the same bytes again.
    let cfg = r.dir.path().join("restore.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: nats\n      url: {}/{bucket}\n      \
             username: $LS_T_USER\n      password: ${{LS_T_PASS}}\n",
            r.db.display(),
            srv.url
        ),
    )
    .expect("config");
    let mut outs = Vec::new();
    for (tool, mut cmd) in [("litestream", lit_cmd(&lit)), ("ls-restore", ls_restore())] {
        if tool == "litestream" {
            cmd.arg("restore");
        }
        let out = r.dir.path().join(format!("{tool}-cfg.db"));
        cmd.env("LS_T_USER", &srv.user)
            .env("LS_T_PASS", &srv.pass)
            .arg("-config")
            .arg(&cfg)
            .arg("-o")
            .arg(&out)
            .arg(&r.db);
        let o = run(cmd);
        assert!(o.status.success(), "{tool} -config: {}", stderr(&o));
        outs.push(std::fs::read(&out).expect("read"));
    }
    assert!(outs[0] == a && outs[1] == a, "config mode: bytes differ");
}
