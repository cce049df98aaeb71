//! Log lines in Litestream 0.5.17's layouts (`logging.type: text | json`), checked against the
//! real binary running the same config: the line layout, and the keys of the lines both write
//! at start-up and shutdown.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::litestream;

use crate::common::{litestream_cmd, s3_server, ENGINE};

/// `key=value` pairs of a text line, in order (values may be Go-quoted).
fn text_pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some((k, after)) = rest.split_once('=') {
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let mut end = 0;
            let b = q.as_bytes();
            while end < b.len() && b[end] != b'"' {
                end += if b[end] == b'\\' { 2 } else { 1 };
            }
            (
                q[..end.min(q.len())].to_owned(),
                q.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.push((k.trim().to_owned(), v));
        rest = next.trim_start();
    }
    out
}

/// Runs `cmd` (replicating `db` with `logging.type: ty`) for a moment, stops it with SIGTERM
/// and returns what it wrote on standard output.
fn run(cmd: Command) -> String {
    let child = spawn(cmd);
    std::thread::sleep(Duration::from_millis(2500));
    stop(child)
}

/// Starts `cmd` with its standard output kept.
fn spawn(mut cmd: Command) -> std::process::Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// Stops `child` with SIGTERM and returns what it wrote on standard output.
fn stop(child: std::process::Child) -> String {
    // SAFETY: a signal to our own child, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The keys after `msg` of the first text line whose message is `msg`.
fn text_keys_of(text: &str, msg: &str) -> Option<Vec<String>> {
    text_line_of(text, msg).map(|p| p.into_iter().skip(3).map(|(k, _)| k).collect())
}

/// The level of the first text line whose message is `msg`.
fn text_level_of(text: &str, msg: &str) -> Option<String> {
    text_line_of(text, msg).and_then(|p| p.into_iter().nth(1).map(|(_, v)| v))
}

fn text_line_of(text: &str, msg: &str) -> Option<Vec<(String, String)>> {
    text.lines()
        .map(text_pairs)
        .find(|p| p.get(2).is_some_and(|m| m.1 == msg))
}

/// A config replicating a new database `name` with `logging.type: ty` to the replica whose
/// `replica:` keys `replica` gives for `name` (one a line, unindented).
fn config(dir: &Path, name: &str, ty: &str, replica: &Replica) -> std::path::PathBuf {
    let db = dir.join(format!("{name}.db"));
    let c = rusqlite::Connection::open(&db).expect("open db");
    c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .expect("create db");
    let keys: String = replica(dir, name)
        .iter()
        .map(|l| format!("      {l}\n"))
        .collect();
    let yml = dir.join(format!("{name}.yml"));
    std::fs::write(
        &yml,
        format!(
            "logging:\n  type: {ty}\ndbs:\n  - path: {}\n    replica:\n{keys}",
            db.display()
        ),
    )
    .expect("write config");
    yml
}

/// The `replica:` keys for a database name in a directory.
type Replica = dyn Fn(&Path, &str) -> Vec<String>;

fn file_replica(dir: &Path, name: &str) -> Vec<String> {
    vec![format!(
        "url: file://{}",
        dir.join(format!("{name}-replica")).display()
    )]
}

/// What Litestream and ls-engine each write on standard output, running one config each with
/// `logging.type: ty`, in UTC.
fn run_both(ty: &str, replica: &Replica) -> (String, String) {
    run_both_in(ty, replica, Some("UTC"))
}

/// [`run_both`] with the time zone `tz` (`TZ`), if given.
fn run_both_in(ty: &str, replica: &Replica, tz: Option<&str>) -> (String, String) {
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut theirs = litestream_cmd(&ls);
    theirs
        .args(["replicate", "-config"])
        .arg(config(dir.path(), "theirs", ty, replica));
    let mut ours = Command::new(ENGINE);
    ours.args(["replicate", "-config"])
        .arg(config(dir.path(), "ours", ty, replica));
    if let Some(tz) = tz {
        theirs.env("TZ", tz);
        ours.env("TZ", tz);
    }
    (run(theirs), run(ours))
}

/// Go writes local times: in a zone east of UTC both tools give that zone's offset on every
/// line, in both layouts.
#[test]
#[ignore = "needs the real Litestream and tzdata"]
fn times_are_local_as_litestreams() {
    assert!(
        Path::new("/usr/share/zoneinfo/Asia/Kolkata").exists(),
        "this test needs tzdata (tests/install.sh installs it)"
    );
    for ty in ["text", "json"] {
        let (t, o) = run_both_in(ty, &file_replica, Some("Asia/Kolkata"));
        for (who, text) in [("litestream", &t), ("ls-engine", &o)] {
            assert!(!text.is_empty(), "{who} wrote nothing");
            for line in text.lines() {
                let time = match ty {
                    "text" => text_pairs(line).first().map(|p| p.1.clone()),
                    _ => serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v["time"].as_str().map(str::to_owned)),
                };
                assert!(
                    time.as_deref().is_some_and(|t| t.ends_with("+05:30")),
                    "{who} ({ty}): {line}"
                );
            }
        }
    }
}

/// The messages both tools write, and their keys.
const SHARED: [&str; 6] = [
    "initialized db",
    "replicating to",
    "starting L0 retention monitor",
    "starting compaction monitor",
    "signal received, litestream shutting down",
    "litestream shut down",
];

#[test]
#[ignore = "needs the real Litestream"]
fn text_lines_are_laid_out_as_litestreams() {
    let (t, o) = run_both("text", &file_replica);
    same_text_layout_and_keys(&t, &o);
}

/// The start-up line of an object-store replica lists Litestream's settings for it
/// (`bucket`, `path`, `region`, `endpoint` for S3), not a URL.
#[test]
#[ignore = "needs the real Litestream and tests/s3 (s3s-fs)"]
fn object_store_start_lines_carry_litestreams_keys() {
    let srv = s3_server();
    let prefix = srv.unique_prefix("logs");
    let (t, o) = run_both("text", &move |_, name| {
        srv.yaml_with_keys(&format!("{prefix}/{name}"), &srv.secret_key)
    });
    same_text_layout_and_keys(&t, &o);
    let start = |text: &str| {
        text.lines()
            .map(text_pairs)
            .find(|p| p.get(2).is_some_and(|m| m.1 == "replicating to"))
            .expect("a replicating to line")
    };
    let ours = start(&o);
    let keys: Vec<&str> = ours.iter().skip(3).map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "type",
            "sync-interval",
            "bucket",
            "path",
            "region",
            "endpoint"
        ]
    );
    assert!(
        ours.iter().any(|(k, v)| k == "region" && v == "us-east-1"),
        "{ours:?}"
    );
}

/// Every line of both has slog's text layout, and the lines both write carry the same keys.
fn same_text_layout_and_keys(t: &str, o: &str) {
    for (who, text) in [("litestream", t), ("ls-engine", o)] {
        assert!(!text.is_empty(), "{who} wrote nothing");
        for line in text.lines() {
            let keys: Vec<String> = text_pairs(line).into_iter().map(|p| p.0).collect();
            assert_eq!(
                keys.get(..3),
                Some(&["time".to_owned(), "level".to_owned(), "msg".to_owned()][..]),
                "{who}: {line}"
            );
            let time = &text_pairs(line)[0].1;
            assert!(
                time.len() == 24 && time.ends_with('Z') && &time[19..20] == ".",
                "{who}: {line}"
            );
        }
    }
    for msg in SHARED {
        let (tk, ok) = (text_keys_of(t, msg), text_keys_of(o, msg));
        assert!(tk.is_some(), "litestream did not log {msg:?}:\n{t}");
        assert_eq!(tk, ok, "keys of {msg:?}:\n{t}\n{o}");
        let (tl, ol) = (text_level_of(t, msg), text_level_of(o, msg));
        assert_eq!(tl, ol, "level of {msg:?}:\n{t}\n{o}");
    }
}

#[test]
#[ignore = "needs the real Litestream"]
fn json_lines_are_laid_out_as_litestreams() {
    let (t, o) = run_both("json", &file_replica);
    let parse = |who: &str, text: &str| -> Vec<serde_json::Map<String, serde_json::Value>> {
        assert!(!text.is_empty(), "{who} wrote nothing");
        text.lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => panic!("{who}: not a JSON object: {l}"),
            })
            .collect()
    };
    let (tl, ol) = (parse("litestream", &t), parse("ls-engine", &o));
    for (who, lines, raw) in [("litestream", &tl, &t), ("ls-engine", &ol, &o)] {
        for (m, l) in lines.iter().zip(raw.lines()) {
            // slog's order: time, level, then the message.
            assert!(l.starts_with("{\"time\":\""), "{who}: {l}");
            let order: Vec<&str> = m.keys().map(String::as_str).collect();
            assert!(
                ["time", "level", "msg"].iter().all(|k| order.contains(k)),
                "{who}: {l}"
            );
            assert!(l.find("\"level\"") < l.find("\"msg\""), "{who}: {l}");
        }
    }
    let keys_of = |lines: &[serde_json::Map<String, serde_json::Value>], msg: &str| {
        lines.iter().find(|m| m["msg"] == msg).map(|m| {
            let mut k: Vec<String> = m
                .keys()
                .filter(|k| !["time", "level", "msg"].contains(&k.as_str()))
                .cloned()
                .collect();
            k.sort();
            k
        })
    };
    // A value's JSON kind: a number stays a number (Litestream's `signal` is one).
    let kinds_of = |lines: &[serde_json::Map<String, serde_json::Value>], msg: &str| {
        lines.iter().find(|m| m["msg"] == msg).map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "time")
                .map(|(k, v)| (k.clone(), v.is_number()))
                .collect::<Vec<_>>()
        })
    };
    for msg in SHARED {
        let (tk, ok) = (keys_of(&tl, msg), keys_of(&ol, msg));
        assert!(tk.is_some(), "litestream did not log {msg:?}:\n{t}");
        assert_eq!(tk, ok, "keys of {msg:?}:\n{t}\n{o}");
        // From the raw line: a `level` attribute (the monitors' lines) repeats the key.
        let level_of = |text: &str| {
            let tag = format!("\"msg\":{}", serde_json::Value::from(msg));
            let line = text.lines().find(|l| l.contains(&tag))?;
            let (_, rest) = line.split_once("\"level\":\"")?;
            rest.split_once('"').map(|(l, _)| l.to_owned())
        };
        assert_eq!(level_of(&t), level_of(&o), "level of {msg:?}:\n{t}\n{o}");
        assert_eq!(
            kinds_of(&tl, msg),
            kinds_of(&ol, msg),
            "which values of {msg:?} are numbers:\n{t}\n{o}"
        );
    }
}

/// The lines of the store's work (uploads, replica syncs, checkpoints, compactions, L0
/// retention) carry Litestream's keys, in its order: both tools replicate a database being
/// written, with short compaction and retention intervals and debug lines on, side by side.
/// Ours may add keys of its own after Litestream's.
#[test]
#[ignore = "needs the real Litestream"]
fn store_event_lines_carry_litestreams_keys() {
    let ls = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = |name: &str| {
        let db = dir.path().join(format!("{name}.db"));
        let c = rusqlite::Connection::open(&db).expect("open db");
        c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
            .expect("create db");
        let yml = dir.path().join(format!("{name}.yml"));
        std::fs::write(
            &yml,
            format!(
                "logging:\n  level: debug\nlevels:\n  - interval: 2s\nl0-retention: 1s\n\
                 l0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    \
                 min-checkpoint-page-count: 10\n    replica:\n      url: file://{}\n",
                db.display(),
                dir.path().join(format!("{name}-replica")).display()
            ),
        )
        .expect("write config");
        (c, yml)
    };
    let (theirs_db, theirs_yml) = cfg("theirs");
    let (ours_db, ours_yml) = cfg("ours");
    let replicate = |mut cmd: Command, yml: &Path| {
        cmd.args(["replicate", "-config"]).arg(yml);
        spawn(cmd)
    };
    let theirs = replicate(litestream_cmd(&ls), &theirs_yml);
    let ours = replicate(Command::new(ENGINE), &ours_yml);
    // Six seconds of commits: several uploads, checkpoints past 10 pages, two L1 compactions
    // and the L0 retention that follows them; the snapshot both write at start.
    for _ in 0..60 {
        for c in [&theirs_db, &ours_db] {
            c.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                .expect("insert");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (t, o) = (stop(theirs), stop(ours));
    for msg in [
        "ltx file uploaded",
        "replica sync",
        "checkpoint",
        "compaction complete",
        "l0 retention enforced",
        "snapshot complete",
    ] {
        let tk =
            text_keys_of(&t, msg).unwrap_or_else(|| panic!("litestream did not log {msg:?}:\n{t}"));
        let ok =
            text_keys_of(&o, msg).unwrap_or_else(|| panic!("ls-engine did not log {msg:?}:\n{o}"));
        assert!(
            ok.starts_with(&tk),
            "keys of {msg:?}: litestream {tk:?}, ls-engine {ok:?}"
        );
        let (tl, ol) = (text_level_of(&t, msg), text_level_of(&o, msg));
        assert_eq!(tl, ol, "level of {msg:?}");
    }
}
