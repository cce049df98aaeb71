//! Publishing the restored database (issue 14 items 6 and 7): a database the application
//! creates while a restore runs is never destroyed, `-force` replaces the output and its
//! sidecars, and the restored file gets the right mode: 0600 while it is written, then the
//! mode of the output it replaces, or the source's.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn with_suffix(p: &Path, s: &str) -> PathBuf {
    let mut o = p.as_os_str().to_owned();
    o.push(s);
    PathBuf::from(o)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ls-restore` with the pause-before-publish hook on `flag`.
fn paused_restore(flag: &Path, args: &[&str], out: &Path, replica: &Path) -> Child {
    ls_restore()
        .env("LS_TEST_PAUSE_BEFORE_PUBLISH", flag)
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(file_url(replica))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ls-restore")
}

/// Item 6: the output did not exist when the restore checked it; the application created its
/// database (WAL mode, so with -wal and -shm) before the restore published. The restore must
/// fail naming the path and leave the application's files exactly as they were.
#[test]
fn issue14_6_publish_keeps_a_database_created_during_the_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("replica");
    synthetic_replica(&replica, 4096);
    let out = dir.path().join("app.db");
    let flag = dir.path().join("go");
    let child = paused_restore(&flag, &[], &out, &replica);
    wait_for("the restore to pause", || {
        with_suffix(&flag, ".waiting").exists()
    });

    let app = Connection::open(&out).expect("app opens its database");
    app.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE mine(x); INSERT INTO mine VALUES ('precious');",
    )
    .expect("app writes");
    let wal = with_suffix(&out, "-wal");
    let before = (
        fs::read(&out).expect("db"),
        fs::read(&wal).expect("the app's WAL"),
    );
    fs::write(&flag, b"").expect("release");
    let o = child.wait_with_output().expect("wait");
    let err = stderr(&o);
    assert!(!o.status.success(), "restore replaced the app's database");
    assert!(
        err.contains(&out.display().to_string()) && err.contains("appeared during the restore"),
        "{err}"
    );
    assert!(
        (fs::read(&out).expect("db"), fs::read(&wal).expect("wal")) == before,
        "the app's files changed"
    );
    let x: String = app
        .query_row("SELECT x FROM mine", [], |r| r.get(0))
        .expect("the app's row");
    assert_eq!(x, "precious");
    assert!(!with_suffix(&out, ".tmp").exists(), "temporary file left");

    // Only a sidecar appeared (the application's -wal without its database yet): the restored
    // database is not published next to it, and the sidecar is untouched.
    drop(app);
    let out2 = dir.path().join("two.db");
    let flag2 = dir.path().join("go2");
    let child = paused_restore(&flag2, &[], &out2, &replica);
    wait_for("the second restore to pause", || {
        with_suffix(&flag2, ".waiting").exists()
    });
    fs::write(with_suffix(&out2, "-journal"), b"hot journal").expect("journal");
    fs::write(&flag2, b"").expect("release");
    let o = child.wait_with_output().expect("wait");
    assert!(!o.status.success(), "published next to a new journal");
    assert!(stderr(&o).contains("-journal"), "{}", stderr(&o));
    assert!(!out2.exists());
    assert_eq!(
        fs::read(with_suffix(&out2, "-journal")).expect("journal"),
        b"hot journal"
    );
}

/// Item 6 with `-force`: the output and its stale sidecars are replaced, the sidecars removed
/// before the rename; an empty output found at the check is replaced without `-force`.
#[test]
fn issue14_6_force_replaces_output_and_sidecars() {
    let (dir, replica, out) = replica_and_output("old.db");
    let want = synthetic_replica(&replica, 4096);
    fs::write(&out, b"old database").expect("old");
    for s in ["-wal", "-shm", "-journal"] {
        fs::write(with_suffix(&out, s), b"stale").expect("sidecar");
    }
    let mut c = ls_restore();
    c.arg("-force").arg("-o").arg(&out).arg(file_url(&replica));
    run_ok(c, "");
    assert!(fs::read(&out).expect("db") == want);
    for s in ["-wal", "-shm", "-journal"] {
        assert!(!with_suffix(&out, s).exists(), "{s} left behind");
    }

    let empty = dir.path().join("empty.db");
    fs::write(&empty, b"").expect("empty");
    let mut c = ls_restore();
    c.arg("-o").arg(&empty).arg(file_url(&replica));
    run_ok(c, "");
    assert!(fs::read(&empty).expect("db") == want);
}

/// Item 7: the file being written is 0600; the published database takes the source's mode (a
/// file replica's files carry it), or keeps the mode of the output it replaces.
#[test]
fn issue14_7_restored_database_gets_the_source_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("replica");
    synthetic_replica(&replica, 4096);
    for level in ["0", "9"] {
        for e in fs::read_dir(replica.join("ltx").join(level)).expect("level") {
            let p = e.expect("entry").path();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        }
    }
    let out = dir.path().join("out.db");
    let flag = dir.path().join("go");
    let child = paused_restore(&flag, &[], &out, &replica);
    wait_for("the restore to pause", || {
        with_suffix(&flag, ".waiting").exists()
    });
    assert_eq!(mode(&with_suffix(&out, ".tmp")), 0o600, "temporary output");
    fs::write(&flag, b"").expect("release");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&out), 0o640, "source mode");

    // An existing output keeps its mode, whatever the source's.
    let kept = dir.path().join("kept.db");
    fs::write(&kept, b"old").expect("old");
    fs::set_permissions(&kept, fs::Permissions::from_mode(0o604)).expect("chmod");
    let mut c = ls_restore();
    c.arg("-force").arg("-o").arg(&kept).arg(file_url(&replica));
    run_ok(c, "");
    assert_eq!(mode(&kept), 0o604, "existing output's mode");
}
