//! The metrics endpoint (`addr`, docs/config-and-cli.md#metrics): the built `ls-engine` serves `/metrics` with
//! Litestream's names, types and labels, and the values follow what it did (TXID equal to the
//! replica's newest L0 file, syncs, WAL bytes, checkpoints, L0 retention, disk full, S3
//! operations). A bad `addr` stops start-up with an error naming the key.

use crate::common;
use crate::harden;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harden::*;

/// One plain HTTP/1.1 request; (status, body).
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// A scrape: every sample by `name{labels}` as printed, and every `# TYPE`.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    /// The `# TYPE` of the metric `name`.
    fn kind(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    fn value(&self, key: &str) -> Option<f64> {
        self.samples.get(key).copied()
    }

    fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}

fn scrape(port: u16) -> Scrape {
    let (status, text) = get(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("TYPE line");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (key, v) = line.rsplit_once(' ').expect("sample line");
            let v = v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            samples.insert(key.to_owned(), v);
        }
    }
    Scrape {
        samples,
        types,
        text,
    }
}

/// Scrapes until `f` holds, for up to `secs`; the last scrape is returned either way.
fn scrape_until(port: u16, secs: u64, f: impl Fn(&Scrape) -> bool) -> (bool, Scrape) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = scrape(port);
        // Asked once per scrape: the condition may read a replica that moves on meanwhile, and
        // a second answer could then contradict the first.
        let ok = f(&s);
        if ok || Instant::now() > deadline {
            return (ok, s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the server answers (the engine binds before it starts replicating).
fn wait_serving(port: u16, e: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/metrics").is_err() {
        assert!(
            Instant::now() < deadline,
            "metrics server not up:\n{}",
            e.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `app.db` in a temporary directory, replicated by an `ls-engine` serving metrics on a free
/// port. The config is `addr:` followed by what `config(dir, db)` returns.
struct Running {
    dir: tempfile::TempDir,
    db: PathBuf,
    port: u16,
    app: rusqlite::Connection,
    engine: Engine,
}

fn start_with(config: impl FnOnce(&Path, &Path) -> String) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("ls.yml");
    let body = config(dir.path(), &db);
    // Port 0: the engine binds a free port and logs it; a port picked here beforehand could
    // be taken by another test before the engine binds it.
    std::fs::write(&cfg, format!("addr: 127.0.0.1:0\n{body}")).expect("config");
    let app = app(&db, 4096);
    setup_table(&app);
    let engine = Engine::start(&cfg, &dir.path().join("engine.log"));
    let port = engine.logged_addr("serving metrics on", "url").port();
    wait_serving(port, &engine);
    Running {
        dir,
        db,
        port,
        app,
        engine,
    }
}

impl Running {
    fn stop(self) {
        self.engine.stop();
    }
}

/// `name{db="<path>"}` as rendered.
fn key(name: &str, db: &Path, more: &str) -> String {
    format!("{name}{{db=\"{}\"{more}}}", db.display())
}

const PER_DB: [(&str, &str); 9] = [
    ("litestream_db_size", "gauge"),
    ("litestream_wal_size", "gauge"),
    ("litestream_total_wal_bytes", "counter"),
    ("litestream_txid", "gauge"),
    ("litestream_sync_count", "counter"),
    ("litestream_sync_error_count", "counter"),
    ("litestream_sync_seconds", "counter"),
    ("litestream_disk_full", "gauge"),
    ("litestream_compaction_verify_error_count", "counter"),
];

#[test]
#[ignore = "needs the S3 test server and root (it mounts a tmpfs)"]
fn metrics_follow_replication() {
    // A low checkpoint threshold so PASSIVE checkpoints happen; short levels and L0 retention
    // so the retention gauges are touched within the test.
    let r = start_with(|dir, db| {
        format!(
            "levels:\n  - interval: 1s\nl0-retention: 1s\nl0-retention-check-interval: 1s\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    min-checkpoint-page-count: 2\n    \
             replica:\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            dir.join("replica").display()
        )
    });
    let (db, port, c, e) = (&r.db, r.port, &r.app, &r.engine);
    let replica = r.dir.path().join("replica");
    insert_rows(c, 0, 50, 100);
    assert!(
        wait_for_l0(&replica, 1, Duration::from_secs(20)),
        "{}",
        e.tail()
    );
    // The TXID gauge is the local position; once uploaded it is the replica's newest L0 file.
    let txid = key("litestream_txid", db, "");
    let (ok, s) = scrape_until(port, 20, |s| {
        s.value(&txid)
            .is_some_and(|v| v > 0.0 && v == max_l0(&replica) as f64)
    });
    assert!(
        ok,
        "txid {:?} vs replica {}:\n{}",
        s.value(&txid),
        max_l0(&replica),
        s.text
    );
    for (name, kind) in PER_DB {
        assert_eq!(s.kind(name), Some(kind), "{name}");
        assert!(s.value(&key(name, db, "")).is_some(), "{name}:\n{}", s.text);
    }
    let v = |s: &Scrape, name: &str| s.value(&key(name, db, "")).unwrap_or(-1.0);
    assert!(v(&s, "litestream_sync_count") > 0.0, "{}", s.text);
    assert_eq!(v(&s, "litestream_sync_error_count"), 0.0);
    assert!(v(&s, "litestream_sync_seconds") > 0.0);
    assert!(v(&s, "litestream_total_wal_bytes") > 0.0);
    assert!(v(&s, "litestream_wal_size") > 0.0);
    assert_eq!(v(&s, "litestream_disk_full"), 0.0);
    assert_eq!(v(&s, "litestream_compaction_verify_error_count"), 0.0);
    // A file replica makes no replica operation series, as in Litestream.
    assert!(
        !s.text.contains("litestream_replica_operation"),
        "{}",
        s.text
    );

    // More writes: counters and the position move on.
    let first = s;
    insert_rows(c, 1000, 50, 100);
    let (ok, s) = scrape_until(port, 20, |s| {
        v(s, "litestream_txid") > v(&first, "litestream_txid")
            && v(s, "litestream_txid") == max_l0(&replica) as f64
    });
    assert!(ok, "txid did not advance:\n{}\n{}", s.text, e.tail());
    assert!(v(&s, "litestream_sync_count") > v(&first, "litestream_sync_count"));
    assert!(v(&s, "litestream_total_wal_bytes") > v(&first, "litestream_total_wal_bytes"));

    // Checkpoints by mode (PASSIVE here), with no error series; the database size follows.
    let passive = key("litestream_checkpoint_count", db, ",mode=\"PASSIVE\"");
    let (ok, s) = scrape_until(port, 20, |s| s.value(&passive).is_some_and(|n| n > 0.0));
    assert!(ok, "no PASSIVE checkpoint counted:\n{}", s.text);
    assert_eq!(s.kind("litestream_checkpoint_count"), Some("counter"));
    assert!(s
        .value(&key(
            "litestream_checkpoint_seconds",
            db,
            ",mode=\"PASSIVE\""
        ))
        .is_some());
    assert!(
        !s.text.contains("litestream_checkpoint_error_count{"),
        "{}",
        s.text
    );
    let (ok, s) = scrape_until(port, 20, |s| {
        v(s, "litestream_db_size") == std::fs::metadata(db).map_or(-2.0, |m| m.len() as f64)
    });
    assert!(ok, "db size:\n{}", s.text);

    // L0 retention: labelled by the base name, with Litestream's three statuses.
    let (ok, s) = scrape_until(port, 30, |s| {
        ["eligible", "not_compacted", "too_recent"]
            .iter()
            .all(|st| {
                s.value(&format!(
                    "litestream_l0_retention_files_total{{db=\"app.db\",status=\"{st}\"}}"
                ))
                .is_some()
            })
    });
    assert!(ok, "no L0 retention gauges:\n{}", s.text);
    assert_eq!(s.kind("litestream_l0_retention_files_total"), Some("gauge"));

    // Every family is a docs/config-and-cli.md#metrics name or one of the process collector's.
    let known: Vec<&str> = PER_DB
        .iter()
        .map(|(n, _)| *n)
        .chain([
            "litestream_checkpoint_count",
            "litestream_checkpoint_error_count",
            "litestream_checkpoint_seconds",
            "litestream_l0_retention_files_total",
            "litestream_replica_operation_total",
            "litestream_replica_operation_bytes",
            "litestream_replica_operation_duration_seconds",
            "litestream_replica_operation_errors_total",
        ])
        .collect();
    for name in s.names() {
        assert!(
            known.contains(&name) || name.starts_with("process_"),
            "unexpected family {name}"
        );
    }

    // Only /metrics is served.
    assert_eq!(get(port, "/").expect("GET /").0, 404);
    assert_eq!(get(port, "/metrics/x").expect("GET").0, 404);
    r.stop();
}

/// Runs `ls-engine replicate` expecting it to fail at start-up; returns its output.
fn start_fails(cfg: &Path) -> String {
    let mut child = Command::new(ENGINE)
        .arg("replicate")
        .arg("-config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ls-engine");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ls-engine kept running with {}", cfg.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("output");
    assert!(!o.status.success(), "ls-engine succeeded");
    text(&o)
}

#[test]
fn bad_addr_stops_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("ls.yml");
    let write = |addr: &str| {
        std::fs::write(
            &cfg,
            format!(
                "addr: \"{addr}\"\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
                db.display(),
                dir.path().join("replica").display()
            ),
        )
        .expect("config")
    };
    for (addr, why) in [
        ("9090", "port"),
        ("127.0.0.1:", "port"),
        (":99999", "port"),
        ("::1:9090", "colons"),
    ] {
        write(addr);
        let out = start_fails(&cfg);
        assert!(
            out.contains("config key addr") && out.contains(why),
            "{addr}: {out}"
        );
    }
    // A taken port: the bind error names the key and the cause, and nothing was replicated.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    write(&format!("127.0.0.1:{port}"));
    let out = start_fails(&cfg);
    assert!(
        out.contains("config key addr") && out.contains("in use"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    assert!(!dir.path().join("replica").exists());
}

/// The meta directory on a full tmpfs: `litestream_disk_full` goes to 1 with failing syncs
/// counted, and back to 0 once space returns. Needs `mount` (root).
#[test]
#[ignore = "needs root (it mounts a tmpfs)"]
fn disk_full_gauge() {
    let mnt = tempfile::tempdir().expect("tempdir");
    let small = Tmpfs::mount(&mnt.path().join("small"), "2m");
    let meta = small.0.join("meta");
    let r = start_with(|dir, db| {
        format!(
            "dbs:\n  - path: {}\n    meta-path: {}\n    monitor-interval: 100ms\n    \
             replica:\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            meta.display(),
            dir.join("replica").display()
        )
    });
    let (db, port, c, e) = (&r.db, r.port, &r.app, &r.engine);
    insert_rows(c, 0, 20, 100);
    let full = key("litestream_disk_full", db, "");
    let errors = key("litestream_sync_error_count", db, "");
    let (ok, s) = scrape_until(port, 20, |s| s.value(&full) == Some(0.0));
    assert!(ok, "{}", s.text);

    let filler = fill(&small.0);
    insert_rows(c, 100, 100, 1000);
    let (ok, s) = scrape_until(port, 30, |s| {
        s.value(&full) == Some(1.0) && s.value(&errors).is_some_and(|n| n > 0.0)
    });
    assert!(ok, "disk full not reported:\n{}\n{}", s.text, e.tail());

    std::fs::remove_file(&filler).expect("remove filler");
    insert_rows(c, 1000, 10, 10);
    let (ok, s) = scrape_until(port, 60, |s| s.value(&full) == Some(0.0));
    assert!(ok, "disk full not cleared:\n{}\n{}", s.text, e.tail());
    r.stop();
    drop(small);
}

/// S3 operations show up as Litestream's `litestream_replica_operation_*` series, and PUTs
/// grow with writes. Needs the server of `tests/s3/start.sh`.
#[test]
#[ignore = "needs the S3 test server"]
fn s3_operations_are_counted() {
    let srv = s3_server();
    let r = start_with(|_, db| srv_config(&srv, db, &srv.endpoint, &unique("metrics")));
    let (db, port, c, e) = (&r.db, r.port, &r.app, &r.engine);
    insert_rows(c, 0, 20, 100);

    let put = "litestream_replica_operation_total{operation=\"PUT\",replica_type=\"s3\"}";
    let txid = key("litestream_txid", db, "");
    let (ok, first) = scrape_until(port, 30, |s| {
        s.value(put).is_some_and(|n| n > 0.0) && s.value(&txid).is_some_and(|t| t > 0.0)
    });
    assert!(ok, "no S3 PUT counted:\n{}\n{}", first.text, e.tail());
    for (name, kind) in [
        ("litestream_replica_operation_total", "counter"),
        ("litestream_replica_operation_bytes", "counter"),
        ("litestream_replica_operation_duration_seconds", "histogram"),
    ] {
        assert_eq!(first.kind(name), Some(kind), "{name}");
    }
    assert!(first
        .value("litestream_replica_operation_bytes{operation=\"PUT\",replica_type=\"s3\"}")
        .is_some_and(|n| n > 0.0));

    insert_rows(c, 100, 20, 100);
    let (ok, s) = scrape_until(port, 30, |s| {
        s.value(put) > first.value(put) && s.value(&txid) > first.value(&txid)
    });
    assert!(ok, "PUTs did not grow:\n{}\n{}", s.text, e.tail());
    r.stop();
}

/// `verify-compaction` and `validation.interval` (issue 18 item 5): an unbroken replica is
/// neither reported nor counted; once a level-1 file is removed from the middle of its chain,
/// the periodic validation logs the gap, and the next compaction's check fails, which
/// `litestream_compaction_verify_error_count` counts.
#[test]
fn verify_compaction_and_validation_report_a_broken_chain() {
    let r = start_with(|dir, db| {
        format!(
            "levels:\n  - interval: 1s\nverify-compaction: true\nvalidation:\n  interval: 1s\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    \
             replica:\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            dir.join("replica").display()
        )
    });
    let (db, port, c, e) = (&r.db, r.port, &r.app, &r.engine);
    let l1 = r.dir.path().join("replica/ltx/1");
    let names = || {
        let mut v: Vec<String> = std::fs::read_dir(&l1)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for i in 0..3 {
        let before = names().len();
        insert_rows(c, i * 10, 10, 100);
        assert!(
            wait_until(Duration::from_secs(20), || names().len() > before),
            "no new level-1 file:\n{}",
            e.tail()
        );
    }
    let verify = key("litestream_compaction_verify_error_count", db, "");
    assert_eq!(scrape(port).value(&verify), Some(0.0));
    let log = || std::fs::read_to_string(&e.log).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !log().contains("validation error detected") && !log().contains("verification failed"),
        "an unbroken chain was reported:\n{}",
        e.tail()
    );

    std::fs::remove_file(l1.join(&names()[1])).expect("remove a level-1 file");
    assert!(
        wait_until(Duration::from_secs(10), || log().lines().any(|l| l
            .contains("validation error detected")
            && l.contains("gap"))),
        "the gap was not reported:\n{}",
        e.tail()
    );
    insert_rows(c, 100, 10, 100);
    let (ok, s) = scrape_until(port, 20, |s| s.value(&verify).is_some_and(|v| v >= 1.0));
    assert!(ok, "not counted:\n{}\n{}", s.text, e.tail());
    assert!(log().contains("post-compaction verification failed"));
    r.stop();
}
