//! Issue 14 item 6 for the engine: `restore-if-db-not-exists` publishes its restore through the
//! same checked output as `ls-restore`, so a database the application created while the
//! restore ran is never replaced, and the restored database gets the source's mode.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn issue14_6_bootstrap_keeps_a_database_created_during_the_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let cfg = dir.path().join("ls.yml");
    write_config(&cfg, &[(db.clone(), replica.clone())], FAST);
    let a = app(&db, 4096);
    setup_table(&a);
    insert_rows(&a, 0, 200, 100);
    drop(a);
    fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).expect("chmod");
    let once = |env: Option<&PathBuf>| {
        let mut c = Command::new(ENGINE);
        c.args(["replicate", "-once", "-restore-if-db-not-exists", "-config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(flag) = env {
            c.env("LS_TEST_PAUSE_BEFORE_PUBLISH", flag);
        }
        c.spawn().expect("ls-engine")
    };
    let o = once(None).wait_with_output().expect("first replicate");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let lose = || {
        for s in ["", "-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            let _ = fs::remove_file(PathBuf::from(p));
        }
        let _ = fs::remove_dir_all(dir.path().join(".app.db-litestream"));
    };
    lose();

    let flag = dir.path().join("go");
    let child = once(Some(&flag));
    assert!(
        wait_until(Duration::from_secs(60), || dir
            .path()
            .join("go.waiting")
            .exists()),
        "the restore did not reach publishing"
    );
    let mine = rusqlite::Connection::open(&db).expect("the application opens its database");
    mine.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE mine(x); INSERT INTO mine VALUES ('precious');",
    )
    .expect("the application writes");
    fs::write(&flag, b"").expect("release");
    let o = child.wait_with_output().expect("wait");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("appeared during the restore"),
        "status {}: {out}",
        o.status
    );
    let x: String = mine
        .query_row("SELECT x FROM mine", [], |r| r.get(0))
        .expect("the application's row survives");
    assert_eq!(x, "precious");
    drop(mine);

    // Without interference the restore is published with the source's mode.
    lose();
    let o = once(None).wait_with_output().expect("restore");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    integrity_ok(&db);
    let m = fs::metadata(&db).expect("stat").permissions().mode() & 0o777;
    assert_eq!(m, 0o600, "restored database mode");
}
