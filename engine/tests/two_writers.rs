//! Issue 14 item 12: two engines on one replica, and an engine whose local state was lost.
//! L0 uploads are create-only, so of two writers reaching the same TXID one wins and the other
//! stops replicating with an error naming the database and the file; the replica restores to
//! exactly the winner's database. After local state loss, numbering continues after the
//! replica's newest file of any level, not only L0.

use crate::common::*;
use crate::harden::{ls_restore, text};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::conformance::Remote;

/// A `file` replica in a directory of the test's own.
pub struct FileRemote(pub PathBuf);
impl Remote for FileRemote {
    fn replica_keys(&self, _name: &str) -> Vec<String> {
        vec![format!("path: {}", self.0.display())]
    }
}

/// Where both engines replicate: the top-level config lines and the `replica:` block's, the
/// same for both, and the environment the engines and `ls-restore` need.
struct Target {
    globals: Vec<String>,
    replica: Vec<String>,
    env: Vec<(String, String)>,
}

impl Target {
    fn new(remote: &dyn Remote) -> Target {
        Target {
            globals: remote.globals(),
            replica: remote.replica_keys("two-writers"),
            env: remote.env(),
        }
    }

    fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// A config replicating `db` to `t` with short intervals.
fn config(path: &Path, db: &Path, t: &Target) {
    let mut y: String = t.globals.iter().map(|l| format!("{l}\n")).collect();
    y.push_str(&format!(
        "socket:\n  enabled: true\n  path: {}\ndbs:\n  - path: {}\n    monitor-interval: 100ms\n    \
         replica:\n      sync-interval: 100ms\n",
        sock_of(path).display(),
        db.display()
    ));
    for l in &t.replica {
        y.push_str(&format!("      {l}\n"));
    }
    fs::write(path, y).expect("config");
}

/// Restores the replica of `db` (as the config `cfg` names it) to `out`, checks it, and
/// returns its dump.
fn restore(t: &Target, cfg: &Path, db: &Path, out: &Path) -> String {
    let o = ls_restore()
        .envs(t.env_refs())
        .arg("-config")
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .arg(db)
        .output()
        .expect("ls-restore");
    assert!(o.status.success(), "ls-restore failed:\n{}", text(&o));
    integrity_ok(out);
    dump(out)
}

/// The control socket of the engine whose config is `cfg`.
fn sock_of(cfg: &Path) -> PathBuf {
    cfg.with_extension("sock")
}

/// `ls-engine list` through the control socket of the engine whose config is `cfg`.
fn list(cfg: &Path) -> String {
    let sock = sock_of(cfg);
    let o = std::process::Command::new(ENGINE)
        .args(["list", "-socket"])
        .arg(&sock)
        .output()
        .expect("ls-engine list");
    assert!(o.status.success(), "list failed:\n{}", text(&o));
    text(&o)
}

/// `ls-engine replicate -once [extra] -config cfg`.
fn replicate_once(cfg: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(ENGINE)
        .args(["replicate", "-once"])
        .args(extra)
        .arg("-config")
        .arg(cfg)
        .output()
        .expect("replicate -once")
}

fn log_has(log: &Path, what: &str) -> bool {
    fs::read_to_string(log).is_ok_and(|s| s.contains(what))
}

/// Engine A replicates `a.db`; engine B then starts on the same replica with `b.db`, a
/// different database. Both keep writing until one of them reports the conflict. Run on every
/// backend with create-only writes by the conformance suite.
pub fn two_engines_one_replica(remote: &dyn Remote) {
    let t = &Target::new(remote);
    let env = t.env_refs();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (a_db, b_db) = (root.join("a.db"), root.join("b.db"));
    let (a_cfg, b_cfg) = (root.join("a.yml"), root.join("b.yml"));
    let (a_log, b_log) = (root.join("a.log"), root.join("b.log"));
    config(&a_cfg, &a_db, t);
    config(&b_cfg, &b_db, t);
    let a = app(&a_db, 4096);
    setup_table(&a);
    insert_rows(&a, 0, 50, 40);
    let b = app(&b_db, 4096);
    setup_table(&b);
    insert_rows(&b, 100_000, 30, 60);

    let ea = Engine::start_env(&a_cfg, &a_log, &env);
    assert!(
        wait_until(Duration::from_secs(30), || log_has(&a_log, "replica sync")),
        "engine A never synced:\n{}",
        ea.tail()
    );
    let eb = Engine::start_env(&b_cfg, &b_log, &env);
    let mut round = 0;
    let conflict = "replica conflict for database";
    let found = wait_until(Duration::from_secs(60), || {
        round += 1;
        insert_rows(&a, 1_000 * round, 3, 40);
        insert_rows(&b, 200_000 + 1_000 * round, 3, 60);
        log_has(&a_log, conflict) || log_has(&b_log, conflict)
    });
    assert!(
        found,
        "no engine saw the other's files\nA:\n{}\nB:\n{}",
        ea.tail(),
        eb.tail()
    );
    // A few more writes: the loser must not upload any of them.
    for r in 0..5 {
        insert_rows(&a, 900_000 + r * 10, 3, 40);
        insert_rows(&b, 950_000 + r * 10, 3, 60);
        std::thread::sleep(Duration::from_millis(150));
    }
    let a_lost = log_has(&a_log, conflict);
    let b_lost = log_has(&b_log, conflict);
    // The loser's database is listed as stopped, the winner's as replicating.
    let (lost_list, won_list) = if a_lost {
        (list(&a_cfg), list(&b_cfg))
    } else {
        (list(&b_cfg), list(&a_cfg))
    };
    assert!(
        lost_list.contains("stopped") && !lost_list.contains("replicating"),
        "the loser's database is not listed as stopped:\n{lost_list}\nA:\n{}\nB:\n{}",
        ea.tail(),
        eb.tail()
    );
    assert!(
        won_list.contains("replicating"),
        "the winner's database is not listed as replicating:\n{won_list}"
    );
    let (a_status, b_status) = (ea.stop_status(), eb.stop_status());
    assert!(
        a_lost != b_lost,
        "both engines lost (A {a_lost}, B {b_lost})"
    );
    let (winner, loser, loser_log, loser_name) = if a_lost {
        (&b_db, &a_db, &a_log, "a.db")
    } else {
        (&a_db, &b_db, &b_log, "b.db")
    };
    let won_cfg = if a_lost { &b_cfg } else { &a_cfg };
    let winner_status = if a_lost { b_status } else { a_status };
    assert!(
        winner_status.is_some_and(|s| s.success()),
        "the winner failed: {winner_status:?}"
    );
    // The error names the database and the file.
    let line = fs::read_to_string(loser_log)
        .expect("log")
        .lines()
        .find(|l| l.contains(conflict))
        .map(str::to_owned)
        .expect("conflict line");
    assert!(
        line.contains(loser_name) && line.contains(".ltx"),
        "conflict line does not name the database and the file: {line}"
    );

    let restored = restore(t, won_cfg, winner, &root.join("restored.db"));
    assert!(
        restored == dump(winner),
        "the replica is not the winner's database ({} lines restored, winner {} lines)",
        restored.lines().count(),
        dump(winner).lines().count()
    );
    assert_ne!(restored, dump(loser));
}

/// The remote backends run the same scenario in `conformance.rs`.
#[test]
fn issue14_12_two_engines_on_one_file_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    two_engines_one_replica(&FileRemote(dir.path().join("replica")));
}

/// The replica's L0 and compacted levels are gone (retention), only a snapshot is left, and
/// the engine's local state is lost: the next files must come after the snapshot's TXID.
#[test]
fn issue14_12_local_state_loss_continues_after_every_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let replica = root.join("replica");
    let t = Target::new(&FileRemote(replica.clone()));
    let db = root.join("app.db");
    let cfg = root.join("ls.yml");
    config(&cfg, &db, &t);
    let c = app(&db, 4096);
    setup_table(&c);
    for r in 0..4 {
        insert_rows(&c, r * 100, 100, 50);
        let o = replicate_once(&cfg, &[]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = replicate_once(&cfg, &["-force-snapshot"]);
    assert!(o.status.success(), "{}", text(&o));
    // Only the snapshot is left, and the meta directory is gone.
    let ltx = replica.join("ltx");
    let mut levels: Vec<PathBuf> = fs::read_dir(&ltx)
        .expect("levels")
        .map(|e| e.expect("entry").path())
        .collect();
    levels.sort();
    assert!(
        levels.iter().any(|p| p.ends_with("9")),
        "no snapshot: {levels:?}"
    );
    for p in levels.iter().filter(|p| !p.ends_with("9")) {
        fs::remove_dir_all(p).expect("remove level");
    }
    fs::remove_dir_all(root.join(".app.db-litestream")).expect("remove meta dir");

    insert_rows(&c, 10_000, 50, 50);
    let log = root.join("engine.log");
    let e = Engine::start(&cfg, &log);
    assert!(
        wait_until(Duration::from_secs(30), || log_has(&log, "replica sync")),
        "no sync:\n{}",
        e.tail()
    );
    insert_rows(&c, 20_000, 50, 50);
    e.stop();
    let restored = restore(&t, &cfg, &db, &root.join("restored.db"));
    assert!(
        restored == dump(&db),
        "restore lost the writes made after local state loss ({} lines restored, {} in the database)",
        restored.lines().count(),
        dump(&db).lines().count()
    );
}

/// Engine A replicated `a.db` and stopped; engine B, with no local state, then took the replica
/// over with `b.db` (adopting A's position, as after a state loss). A started again still has
/// its own chain, which still continues into `a.db`'s WAL: it must stop with the conflict, not
/// adopt B's position and write `a.db` on top of B's. With its meta directory removed (the
/// hand-over the error's documentation describes), it adopts the replica's position.
#[test]
fn issue14_12_a_writer_overtaken_while_stopped_stops_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let t = Target::new(&FileRemote(root.join("replica")));
    let (a_db, b_db) = (root.join("a.db"), root.join("b.db"));
    let (a_cfg, b_cfg) = (root.join("a.yml"), root.join("b.yml"));
    config(&a_cfg, &a_db, &t);
    config(&b_cfg, &b_db, &t);
    let a = app(&a_db, 4096);
    setup_table(&a);
    insert_rows(&a, 0, 50, 40);
    let o = replicate_once(&a_cfg, &[]);
    assert!(o.status.success(), "A: {}", text(&o));
    let b = app(&b_db, 4096);
    setup_table(&b);
    insert_rows(&b, 100_000, 30, 60);
    let o = replicate_once(&b_cfg, &[]);
    assert!(o.status.success(), "B: {}", text(&o));
    assert!(
        text(&o).contains("detected database behind replica"),
        "B did not adopt A's position:\n{}",
        text(&o)
    );
    assert_eq!(
        restore(&t, &b_cfg, &b_db, &root.join("b-restored.db")),
        dump(&b_db)
    );

    insert_rows(&a, 1_000, 20, 40);
    let o = replicate_once(&a_cfg, &[]);
    let out = text(&o);
    assert!(!o.status.success(), "A wrote over B's replica:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains("replica conflict for database"))
        .unwrap_or_else(|| panic!("no conflict error:\n{out}"));
    assert!(
        line.contains("a.db")
            && line.contains(".ltx")
            && !out.contains("detected database behind replica"),
        "the error does not name the database and the file, or A adopted: {line}"
    );
    // Nothing of A's reached the replica: it is still exactly B's database.
    assert_eq!(
        restore(&t, &b_cfg, &b_db, &root.join("b-again.db")),
        dump(&b_db)
    );

    fs::remove_dir_all(root.join(".a.db-litestream")).expect("remove A's meta dir");
    let o = replicate_once(&a_cfg, &[]);
    assert!(o.status.success(), "A after the hand-over: {}", text(&o));
    assert_eq!(
        restore(&t, &a_cfg, &a_db, &root.join("a-restored.db")),
        dump(&a_db)
    );
}
