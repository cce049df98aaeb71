//! What every remote backend must do for restore, written once and run once per backend by
//! [`conformance!`]: the real `litestream replicate` (0.5.17) ships a database to the backend's
//! test server while it is written in phases (inserts, updates and deletes), with short levels
//! and snapshots; our backend lists and reads what it wrote (each file a verified LTX file of
//! the listed size, with the TXIDs of its name, and the creation time the backend keeps); and
//! `ls-restore` restores byte for byte what `litestream restore` restores, from the replica's
//! URL where Litestream takes one and from the config it replicated with: latest (the source's
//! rows, `PRAGMA integrity_check` ok), every TXID, between the phases (each phase's rows), and
//! at and just after each file's own time, where only the backend's precise time gives
//! Litestream's answer. Adding a backend means one [`Remote`] and one line in the macro; what
//! only one backend shows is its [`Remote::extra`], or a test of its own in its file.

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use ltx_codec::{Level, LtxFile};
use rusqlite::Connection;
use storage::timefmt::format_rfc3339_nano;
use storage::SharedReplica;

/// A fresh place on a test server, and our backend on it.
pub struct Place {
    /// The name the server knows it by (a prefix, a path or a bucket).
    pub name: String,
    pub ours: SharedReplica,
}

impl Place {
    /// The place `name`, where Litestream writes with the `replica:` keys `yaml` and both tools
    /// restore from `url` with `env`; `open` opens our backend on it (once to watch for L0
    /// files while Litestream writes, once for the checks).
    pub fn new(
        name: String,
        yaml: Vec<String>,
        url: String,
        env: Vec<(String, String)>,
        open: impl Fn() -> SharedReplica,
    ) -> (Place, ReplicaSpec) {
        let spec = ReplicaSpec {
            yaml,
            url,
            lit_env: env.clone(),
            ls_env: env,
            l0_max: l0_max_of(open()),
        };
        (Place { name, ours: open() }, spec)
    }
}

/// `-config PATH DB_PATH` with a config whose `replica:` keys are `replica` (YAML lines
/// indented for that block), where `$LS_T_USER` and `${LS_T_PASS}` stand for the credentials:
/// both tools, given them in the environment, restore `latest`.
pub fn restores_with_credentials_from_env(
    lit: &Path,
    r: &Replicated,
    replica: &str,
    (user, pass): (&str, &str),
    latest: &[u8],
) {
    let cfg = r.dir.path().join("restore-env.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n{replica}",
            r.db.display()
        ),
    )
    .expect("config");
    let env = [("LS_T_USER", Some(user)), ("LS_T_PASS", Some(pass))];
    let (a, b) = restore_both_with_config(lit, r, &cfg, &env, &[], "env");
    assert!(
        a == latest && b == latest,
        "config with credentials from the environment: bytes differ"
    );
}

/// How a backend keeps a file's creation time, as our backend lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// The LTX header's timestamp, to the millisecond (Litestream writes it as metadata).
    Header,
    /// The header's timestamp in whole seconds (a file's mtime over SFTP).
    HeaderSeconds,
    /// The server's clock when the file was stored.
    Server,
}

/// A test server as a place `litestream replicate` writes to and both tools restore from.
pub trait Remote {
    /// A fresh place named after `name`, with what [`replicate_to`] needs to write there.
    fn place(&self, name: &str) -> (Place, ReplicaSpec);

    /// How the listed creation times relate to the files.
    fn times(&self) -> Times;

    /// Whether `litestream restore URL` reaches the place. When it does not (the config holds
    /// what a URL cannot), both tools restore with `-config` only.
    fn url_restores(&self) -> bool {
        true
    }

    /// Whether `-timestamp` restores see each file's time to the millisecond, so that a time
    /// between two write phases (1.2 s apart) always separates them. With whole seconds it
    /// may not, and both tools only have to agree.
    fn precise_times(&self) -> bool {
        self.times() == Times::Header
    }

    /// The files' times that `-timestamp` restores are compared at: the listed ones unless
    /// the backend keeps more precise ones elsewhere.
    fn file_times(&self, _place: &Place, listed: Vec<SystemTime>) -> Vec<SystemTime> {
        listed
    }

    /// Checks only this backend has, on the same replica, after the shared ones; `latest` is
    /// what both tools restored.
    fn extra(&self, _lit: &Path, _r: &Replicated, _place: &Place, _latest: &[u8]) {}
}

/// Rows before Litestream starts.
const SETUP_ROWS: usize = 300;

/// A rowid table with an index, and a `WITHOUT ROWID` table with an index: table, index and
/// overflow pages of both kinds change in every phase.
pub fn setup(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);
         CREATE INDEX t_v ON t(v);
         CREATE TABLE kv(k TEXT PRIMARY KEY, n INTEGER, blob BLOB) WITHOUT ROWID;
         CREATE INDEX kv_n ON kv(n);
         WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 399)
         INSERT INTO kv SELECT printf('key-%06d', i), i % 13, zeroblob(i * 20) FROM s;",
    )
    .expect("schema");
    insert(conn, "setup", SETUP_ROWS, 400);
}

/// `n` rows tagged `tag`, with blobs up to `max` bytes (the larger ones spill to overflow
/// pages).
fn insert(conn: &Connection, tag: &str, n: usize, max: usize) {
    let mut st = conn
        .prepare("INSERT INTO t(v, b) VALUES (?1, randomblob(?2))")
        .expect("prepare");
    for i in 0..n {
        st.execute(rusqlite::params![
            format!("{tag} row {i}"),
            (i % max) as i64
        ])
        .expect("insert");
    }
}

/// Pages added, changed and freed in each phase.
pub fn phase(conn: &Connection, p: usize) {
    insert(conn, &format!("phase {p}"), 100 + 50 * p, 1500);
    conn.execute("UPDATE t SET v = v || '!' WHERE id % 4 = ?1", [p as i64])
        .expect("update");
    conn.execute("DELETE FROM t WHERE id % 11 = ?1", [p as i64])
        .expect("delete");
    let p = p as i64;
    conn.execute(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 150 + 40 * ?1)
         INSERT INTO kv SELECT printf('p%d-%06d', ?1, n), n % 13, randomblob(n * 3) FROM s",
        [p],
    )
    .expect("insert kv");
    conn.execute(
        "UPDATE kv SET blob = randomblob(length(blob) + 7) WHERE n = ?1",
        [p],
    )
    .expect("update kv");
    conn.execute("DELETE FROM kv WHERE n = ?1 + 6 AND k < 'key-000200'", [p])
        .expect("delete kv");
}

/// Every row of both tables, in order (`kv`'s as `t`'s shape: its `n` as the id).
fn rows(db: &Path) -> Vec<(i64, String, Vec<u8>)> {
    let c = Connection::open(db).expect("open");
    let mut out = Vec::new();
    for q in [
        "SELECT id, v, b FROM t ORDER BY id",
        "SELECT n, k, blob FROM kv ORDER BY k",
    ] {
        let mut st = c.prepare(q).expect("select");
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows");
        for r in rows {
            out.push(r.expect("row"));
        }
    }
    out
}

/// Rows of both tables.
fn count(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM kv)",
        [],
        |r| r.get(0),
    )
    .expect("count")
}

/// `bytes` as a database: integrity ok; returns its rows.
fn check(bytes: &[u8], dir: &Path) -> Vec<(i64, String, Vec<u8>)> {
    let p = dir.join("check.db");
    std::fs::write(&p, bytes).expect("write");
    integrity_ok(&p);
    let r = rows(&p);
    let _ = std::fs::remove_file(&p);
    r
}

fn integrity_ok(db: &Path) {
    let ok: String = Connection::open(db)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
        .expect("integrity_check");
    assert_eq!(ok, "ok", "{}", db.display());
}

pub fn restore_matches_litestream(remote: &dyn Remote) {
    let lit = litestream();
    let (place, spec) = remote.place("restore-interop");
    let dir = tempfile::tempdir().expect("tempdir");
    let unused = dir.path().join("unused");
    let started = SystemTime::now();
    // Rows after each phase, counted inside its transaction.
    let counts = RefCell::new(Vec::new());
    let phase_and_count = |c: &Connection, p: usize| {
        phase(c, p);
        counts.borrow_mut().push(count(c));
    };
    let r = replicate_to(
        &lit,
        &ReplicateOpts {
            page_size: 4096,
            setup: &setup,
            phases: 4,
            phase: &phase_and_count,
            min_run: Duration::from_secs(11),
            compaction: true,
        },
        dir,
        unused,
        spec,
    );
    let counts = counts.into_inner();

    // What Litestream wrote, through our backend.
    let rt = runtime();
    let mut listed = Vec::new();
    let mut levels = Vec::new();
    let mut max_txid = 0;
    for level in 0..=9u8 {
        let files = rt
            .block_on(place.ours.ltx_files(Level(level)))
            .expect("list");
        for f in &files {
            let bytes = rt
                .block_on(place.ours.read_range(f.ltx_name(), 0, None))
                .expect("read");
            assert_eq!(bytes.len() as u64, f.size, "size of {}", f.name());
            let ltx = LtxFile::open_verified(&bytes).expect("Litestream's LTX verifies");
            let h = ltx.header();
            assert_eq!((h.min_txid, h.max_txid), (f.min_txid, f.max_txid));
            let ms = u64::try_from(h.timestamp).unwrap_or(0);
            match remote.times() {
                Times::Header => assert_eq!(
                    f.created_at,
                    UNIX_EPOCH + Duration::from_millis(ms),
                    "time of {}",
                    f.name()
                ),
                Times::HeaderSeconds => assert_eq!(
                    f.created_at,
                    UNIX_EPOCH + Duration::from_secs(ms / 1000),
                    "time of {}",
                    f.name()
                ),
                Times::Server => assert!(
                    f.created_at + Duration::from_secs(1) >= started
                        && f.created_at <= SystemTime::now(),
                    "time of {} is not the server's during the run: {f:?}",
                    f.name()
                ),
            }
            listed.push(f.created_at);
            max_txid = max_txid.max(f.max_txid.0);
        }
        if !files.is_empty() {
            levels.push(level);
        }
    }
    assert!(
        levels.contains(&0) && levels.contains(&1) && levels.contains(&9),
        "levels {levels:?}"
    );

    // Latest, from the config and (where Litestream takes one) the URL: the same bytes, the
    // source's rows.
    let main = if remote.url_restores() {
        Source::Url
    } else {
        Source::Config
    };
    let both = |source, args: &[&str], tag: &str| restore_both_from(&lit, &r, source, args, tag);
    let (a, b) = both(Source::Config, &[], "latest-config")
        .unwrap_or_else(|e| panic!("latest from the config: {e}"));
    assert!(
        !a.is_empty() && a == b,
        "latest from the config: bytes differ"
    );
    if main == Source::Url {
        let (x, y) = both(Source::Url, &[], "latest-url")
            .unwrap_or_else(|e| panic!("latest from the URL: {e}"));
        assert!(x == a && y == a, "latest from the URL: bytes differ");
    }
    let want = rows(&r.db);
    assert!(want.len() > 800, "{} rows", want.len());
    assert!(
        check(&b, r.dir.path()) == want,
        "restored rows differ from the source"
    );

    // Every TXID the replica holds.
    let mut restored = 0;
    for txid in 1..=max_txid {
        let t = format!("{txid:016x}");
        if let Ok((x, y)) = both(main, &["-txid", &t], &t) {
            assert!(x == y, "-txid {t}: bytes differ");
            restored += 1;
        }
    }
    assert!(restored >= 5, "restored {restored} of {max_txid} TXIDs");

    // Between phases: each phase's rows, where the times are precise enough to tell. A time
    // no snapshot reaches back to any more (retention and compaction go on while Litestream
    // runs) is refused by both tools alike.
    let mut restored = 0;
    for (k, m) in r.marks.iter().enumerate() {
        let ts = format_rfc3339_nano(*m);
        let Ok((x, y)) = both(main, &["-timestamp", &ts], &format!("mark{k}")) else {
            continue;
        };
        assert!(x == y, "-timestamp {ts}: bytes differ");
        let n = check(&y, r.dir.path()).len() as i64;
        if remote.precise_times() {
            assert_eq!(n, counts[k], "rows at -timestamp {ts}, after phase {k}");
        }
        restored += 1;
    }
    assert!(
        restored >= 2,
        "only {restored} of the phases' times restored"
    );

    // At and just after each file's own time: a file created at T is left out at T and taken
    // at T + 1 µs, by both tools, or both refuse alike.
    let mut times = remote.file_times(&place, listed);
    times.sort();
    times.dedup();
    let mut restored = 0;
    for (k, t) in times.iter().enumerate() {
        for (j, at) in [*t, *t + Duration::from_micros(1)].iter().enumerate() {
            let ts = format_rfc3339_nano(*at);
            if let Ok((x, y)) = both(main, &["-timestamp", &ts], &format!("at{k}-{j}")) {
                assert!(x == y, "-timestamp {ts}: bytes differ");
                restored += 1;
            }
        }
    }
    assert!(
        restored >= 4,
        "only {restored} restores at the files' times"
    );

    remote.extra(&lit, &r, &place, &a);
    rt.block_on(place.ours.delete_all()).expect("clean up");
}

/// One test per backend: `$backend => $remote` (an expression giving its [`Remote`]).
macro_rules! conformance {
    ($($test:ident => $remote:expr, $needs:literal;)*) => {
        $(
            #[test]
            #[ignore = $needs]
            fn $test() {
                restore_matches_litestream(&$remote);
            }
        )*
    };
}

conformance! {
    s3_restore_matches_litestream => crate::s3::S3Remote::new(),
        "needs the S3 test server and the real Litestream";
    gcs_restore_matches_litestream => crate::gcs::GcsRemote::new(),
        "needs the GCS test server and the real Litestream";
    abs_restore_matches_litestream => crate::abs::AbsRemote::new(),
        "needs the Azurite test server and the real Litestream";
    sftp_restore_matches_litestream => crate::sftp::SftpRemote::new(),
        "needs the SFTP test server and the real Litestream";
    webdav_restore_matches_litestream => crate::webdav::WebDavRemote::new(),
        "needs the WebDAV test server and the real Litestream";
    nats_restore_matches_litestream => crate::nats::NatsRemote::new(),
        "needs the NATS test server and the real Litestream";
}
