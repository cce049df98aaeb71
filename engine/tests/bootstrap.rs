//! `replicate -restore-if-db-not-exists` and the per-database `restore-if-db-not-exists` key: a
//! missing database is restored from its replica before replication starts, and replication
//! goes on from there; an existing database is never touched; an empty replica means a fresh
//! start; a damaged replica stops start-up and leaves no database behind.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn case(extra_db: &str) -> Case {
    let c = Case::empty();
    write_config(
        &c.config,
        &[(c.db.clone(), c.replica.clone())],
        &format!("{FAST}{extra_db}"),
    );
    c
}

fn once(c: &Case, flags: &[&str]) -> Output {
    std::process::Command::new(ENGINE)
        .args(["replicate", "-once"])
        .args(flags)
        .arg("-config")
        .arg(&c.config)
        .output()
        .expect("run ls-engine")
}

/// Everything the engine printed (its log goes to stdout).
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", text(o));
}

/// Removes the database, its WAL and shared-memory files and the meta directory: a new machine.
fn lose_database(c: &Case) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = c.db.as_os_str().to_owned();
        p.push(suffix);
        let _ = fs::remove_file(PathBuf::from(p));
    }
    let _ = fs::remove_dir_all(c.root.join(".app.db-litestream"));
}

/// The application's data: the dump without Litestream's own tables, which the engine itself
/// writes to (`_litestream_seq` after every checkpoint).
fn data(db: &Path) -> String {
    dump(db)
        .lines()
        .filter(|l| !l.contains("_litestream"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rows(db: &Path) -> i64 {
    app(db, 4096)
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .expect("count rows")
}

fn write_rows(db: &Path, from: usize, n: usize) {
    let a = app(db, 4096);
    if from == 0 {
        setup_table(&a);
    }
    insert_rows(&a, from, n, 200);
}

#[test]
#[ignore = "needs the real Litestream"]
fn flag_restores_a_missing_database_and_replication_goes_on() {
    let ls = litestream();
    let c = case("");
    write_rows(&c.db, 0, 400);
    ok(&once(&c, &[]), "first replicate");
    let want = data(&c.db);
    lose_database(&c);

    ok(
        &once(&c, &["-restore-if-db-not-exists"]),
        "replicate -restore-if-db-not-exists",
    );
    assert!(c.db.exists(), "the database was not restored");
    integrity_ok(&c.db);
    assert_eq!(rows(&c.db), 400);
    assert!(data(&c.db) == want, "restored database differs");

    // The restored database keeps replicating into the same replica, and the real Litestream
    // restores the result.
    write_rows(&c.db, 400, 150);
    ok(&once(&c, &["-restore-if-db-not-exists"]), "replicate again");
    let out = c.root.join("out.db");
    litestream_restore(&ls, &c.replica, &out);
    integrity_ok(&out);
    assert_eq!(rows(&out), 550);
    assert!(data(&out) == data(&c.db), "Litestream's restore differs");
}

/// A replica holding only Litestream 0.3.x files (docs/replica-layout.md#legacy-generations-layout):
/// the missing database is restored from them, replication goes on into `ltx/`, and the real
/// Litestream restores the result (from the newer LTX files).
#[test]
#[ignore = "needs the real Litestream"]
fn flag_restores_from_a_v03x_replica() {
    let ls = litestream();
    let c = case("");
    let work = c.root.join("v3-source");
    fs::create_dir_all(&work).expect("mkdir");
    let (want, _) = test_support::legacy::build_v3(&c.replica, &work);

    ok(
        &once(&c, &["-restore-if-db-not-exists"]),
        "replicate -restore-if-db-not-exists from a v0.3.x replica",
    );
    integrity_ok(&c.db);
    assert_eq!(rows(&c.db), want);

    // The 0.3.x table is t(id, v).
    app(&c.db, 4096)
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150)
             INSERT INTO t(v) SELECT 'after ' || i FROM n",
        )
        .expect("insert");
    ok(&once(&c, &["-restore-if-db-not-exists"]), "replicate again");
    let out = c.root.join("out.db");
    litestream_restore(&ls, &c.replica, &out);
    integrity_ok(&out);
    assert_eq!(rows(&out), want + 150);
}

#[test]
fn config_key_restores_but_never_overwrites() {
    let c = case("restore-if-db-not-exists: true\n");
    write_rows(&c.db, 0, 200);
    ok(&once(&c, &[]), "first replicate");
    let want = data(&c.db);

    // An existing database is kept, even when it holds more than the replica.
    write_rows(&c.db, 200, 50);
    let want_later = data(&c.db);
    let o = once(&c, &[]);
    ok(&o, "replicate over an existing database");
    assert!(
        text(&o).contains("database exists, skipping restore"),
        "no skip message: {}",
        text(&o)
    );
    assert_eq!(rows(&c.db), 250, "the existing database was replaced");
    assert!(data(&c.db) == want_later && want_later != want);

    lose_database(&c);
    ok(&once(&c, &[]), "replicate with the key");
    integrity_ok(&c.db);
    assert_eq!(rows(&c.db), 250);
    assert!(data(&c.db) == want_later, "restored database differs");
}

/// First start: nothing to restore, so replication starts from nothing and picks the database
/// up once the application creates it.
#[test]
#[ignore = "needs the real Litestream"]
fn empty_replica_starts_fresh() {
    let ls = litestream();
    let c = case("restore-if-db-not-exists: true\n");
    let e = Engine::start(&c.config, &c.log);
    let started = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        fs::read_to_string(&c.log)
            .unwrap_or_default()
            .contains("no backup found, starting fresh")
    });
    assert!(started, "no fresh-start message; log:\n{}", e.tail());
    assert!(!c.db.exists(), "a database appeared from an empty replica");
    write_rows(&c.db, 0, 100);
    assert!(
        wait_for_l0(&c.replica, 1, std::time::Duration::from_secs(20)),
        "the new database was not replicated; log:\n{}",
        e.tail()
    );
    e.stop();
    let out = c.root.join("out.db");
    litestream_restore(&ls, &c.replica, &out);
    assert_eq!(rows(&out), 100);
}

#[test]
fn damaged_replica_stops_startup_and_leaves_no_database() {
    let c = case("");
    write_rows(&c.db, 0, 300);
    ok(&once(&c, &[]), "first replicate");
    lose_database(&c);
    // Flip a byte inside the page data of the newest L0 file.
    let l0 = c.replica.join("ltx/0");
    let newest = fs::read_dir(&l0)
        .expect("read L0 dir")
        .flatten()
        .map(|e| e.path())
        .max()
        .expect("an L0 file");
    let mut bytes = fs::read(&newest).expect("read");
    let mid = 100 + (bytes.len() - 100) / 3;
    bytes[mid] ^= 0x55;
    fs::write(&newest, bytes).expect("write");

    let o = once(&c, &["-restore-if-db-not-exists"]);
    let err = text(&o);
    assert!(!o.status.success(), "a damaged replica was restored: {err}");
    let name = newest.file_name().expect("name").to_string_lossy();
    assert!(
        err.contains(name.as_ref()),
        "the error does not name the damaged file {name}: {err}"
    );
    assert!(!c.db.exists(), "a database was left behind");
    let leftovers = names_starting(&c.root, "app.db");
    assert!(leftovers.is_empty(), "partial output left: {leftovers:?}");
}
