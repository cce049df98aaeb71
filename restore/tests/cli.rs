//! The command line a script relies on: config mode, messages and exit codes.

use crate::common;

use std::fs;

use common::*;

#[test]
fn config_mode_restores_to_the_db_path() {
    let (dir, replica, db) = replica_and_output("app.db");
    let expected = synthetic_replica(&replica, 4096);
    let cfg = dir.path().join("litestream.yml");
    std::env::set_var("LS_RESTORE_CLI_TEST_REPLICA", &replica);
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: $LS_RESTORE_CLI_TEST_REPLICA\n",
            db.display()
        ),
    )
    .expect("config");
    let mut c = ls_restore();
    c.env("LS_RESTORE_CLI_TEST_REPLICA", &replica)
        .arg("-config")
        .arg(&cfg)
        .arg(&db);
    run_ok(c, "");
    assert_eq!(fs::read(&db).expect("read"), expected);

    // Second run: the database exists.
    let mut c = ls_restore();
    c.arg("-config").arg(&cfg).arg(&db);
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let mut c = ls_restore();
    c.args(["--if-db-not-exists", "-config"]).arg(&cfg).arg(&db);
    let o = run_ok(c, "");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "database already exists, skipping"
    );

    // -o overrides the path; an unknown database is an error naming it.
    let other = dir.path().join("copy.db");
    let mut c = ls_restore();
    c.args(["-txid", "0000000000000004", "-o"])
        .arg(&other)
        .arg("-config")
        .arg(&cfg)
        .arg(&db);
    run_ok(c, "");
    let mut c = ls_restore();
    c.arg("-config").arg(&cfg).arg(dir.path().join("nope.db"));
    let o = run(c);
    assert!(
        stderr(&o).contains("database not found in config"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_1_with_litestream_messages() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "Error: database path or replica URL required"),
        (&["file:///tmp/x"], "Error: -o is required when restoring from a replica URL"),
        (&["-txid", "12", "-o", "/tmp/x", "file:///tmp/x"], "Error: invalid value \"12\" for flag -txid"),
        (
            &["-timestamp", "2020-01-01", "file:///tmp/x"],
            "Error: invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)",
        ),
        (&["-integrity-check", "deep", "file:///tmp/x"], "Error: invalid -integrity-check value: deep"),
        (&["-bogus", "file:///tmp/x"], "Error: flag provided but not defined: -bogus"),
        (&["a", "b"], "Error: too many arguments"),
        (
            &["-config", "/tmp/c.yml", "-o", "/tmp/x", "file:///tmp/x"],
            "Error: cannot specify a replica URL and the -config flag",
        ),
    ];
    for (args, want) in cases {
        let mut c = ls_restore();
        c.args(*args);
        let o = run(c);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).starts_with(want), "{args:?}: {}", stderr(&o));
    }
    let mut c = ls_restore();
    c.arg("-h");
    let o = run(c);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("-parallelism"));
}

#[test]
fn dry_run_and_json_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("replica");
    synthetic_replica(&replica, 512);
    let url = file_url(&replica);
    let mut c = ls_restore();
    c.args(["-dry-run", "-o", "/nowhere/x.db", &url]);
    let o = run(c);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("Restore plan:\n"), "{text}");
    assert!(
        text.contains("txid range: 0000000000000001 - 0000000000000006"),
        "{text}"
    );
    assert!(!std::path::Path::new("/nowhere/x.db").exists());

    let out = dir.path().join("o.db");
    let mut c = ls_restore();
    c.args(["-json", "-o"]).arg(&out).arg(&url);
    let o = run_ok(c, "");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["txid"], "0000000000000006");
    assert_eq!(j["db_path"], out.display().to_string());
    assert_eq!(j["integrity_check"], "none");
}
