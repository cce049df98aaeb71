//! Litestream 0.3.x replicas (`generations/` layout): snapshots and WAL segments as LZ4
//! frames. The replica here is built by hand the way 0.3.13 laid it out, from a real SQLite
//! database and its real WAL; `litestream restore` 0.5.17 and `ls-restore` must agree.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use rusqlite::Connection;
pub(crate) use test_support::legacy::build_v3;

pub(crate) fn count(db: &Path) -> i64 {
    Connection::open(db)
        .expect("open")
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count")
}

#[test]
#[ignore = "needs the real Litestream"]
fn restores_v03x_replica_like_litestream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("replica");
    let (rows, t0) = build_v3(&root, dir.path());
    let out = dir.path().join("ls.db");
    let mut c = ls_restore();
    c.arg("-o").arg(&out).arg(file_url(&root));
    run_ok(c, "");
    assert_eq!(count(&out), rows);

    // Point in time: the snapshot plus WAL index 0 only.
    let ts = storage::timefmt::format_rfc3339(t0 + Duration::from_secs(25));
    let early = dir.path().join("early.db");
    let mut c = ls_restore();
    c.args(["-timestamp", &ts, "-o"])
        .arg(&early)
        .arg(file_url(&root));
    run_ok(c, "");
    assert_eq!(count(&early), 700);

    let lit = litestream();
    for (tag, args) in [("latest", vec![]), ("ts", vec!["-timestamp", ts.as_str()])] {
        let a = dir.path().join(format!("lit-{tag}.db"));
        let b = dir.path().join(format!("ls2-{tag}.db"));
        let mut c = lit_cmd(&lit);
        c.arg("restore")
            .args(&args)
            .arg("-o")
            .arg(&a)
            .arg(file_url(&root));
        run_ok(c, "litestream");
        let mut c = ls_restore();
        c.args(&args).arg("-o").arg(&b).arg(file_url(&root));
        run_ok(c, "");
        assert!(
            fs::read(&a).expect("a") == fs::read(&b).expect("b"),
            "v0.3.x {tag}: bytes differ"
        );
    }
}

#[test]
fn v03x_gap_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("replica");
    build_v3(&root, dir.path());
    let seg = root.join("generations/0123456789abcdef/wal/00000000_00000000.wal.lz4");
    fs::remove_file(seg).expect("rm");
    let out = dir.path().join("out.db");
    let mut c = ls_restore();
    c.arg("-o").arg(&out).arg(file_url(&root));
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing WAL"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// Issue 14 item 8: `<out>.tmp-wal` used to be opened with create+truncate, following a link
/// planted there, so a v0.3.x restore overwrote whatever file the link pointed to.
#[test]
fn issue14_8_tmp_wal_is_never_opened_through_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("replica");
    let (rows, _) = build_v3(&root, dir.path());
    let out = dir.path().join("out.db");
    let victim = dir.path().join("victim");
    fs::write(&victim, b"not a WAL").expect("victim");
    std::os::unix::fs::symlink(&victim, dir.path().join("out.db.tmp-wal")).expect("symlink");
    let mut c = ls_restore();
    c.arg("-o").arg(&out).arg(file_url(&root));
    let o = run(c);
    assert_eq!(fs::read(&victim).expect("victim"), b"not a WAL");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(&out), rows);
}
