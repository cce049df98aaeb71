//! Security: secrets never reach logs or `-json` output; files we create are no more
//! permissive than the database. TLS verification (on unless the user opts out) is covered by
//! storage/tests/s3.rs against a TLS proxy with a self-signed certificate.

use crate::common;
use crate::harden;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use harden::*;

fn dead_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn secrets_stay_out_of_logs_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = format!("SEKRET{}x9Qz", std::process::id());
    let db = dir.path().join("app.db");
    let c = app(&db, 4096);
    setup_table(&c);
    insert_rows(&c, 0, 20, 10);
    let endpoint = dead_endpoint();
    let cfg = dir.path().join("ls.yml");
    fs::write(
        &cfg,
        s3_config(&db, &endpoint, "bkt", "p", "AKIDEXAMPLE", &secret),
    )
    .expect("cfg");
    let log = dir.path().join("engine.log");
    for level in ["debug", "info"] {
        let f = fs::File::create(&log).expect("log");
        let mut child = Command::new(ENGINE)
            .args(["replicate", "-config"])
            .arg(&cfg)
            .env("LOG_LEVEL", level)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::from(f.try_clone().expect("clone")))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_secs(3));
        // SIGKILL: a SIGTERM would spend the final sync's retries on the dead endpoint.
        let _ = child.kill();
        let _ = child.wait();
        let out = fs::read_to_string(&log).expect("read log");
        assert!(
            out.contains("127.0.0.1"),
            "the failing endpoint is not logged:\n{out}"
        );
        assert!(!out.contains(&secret), "secret in the {level} log:\n{out}");
    }

    // Each restore against the dead endpoint spends its retries (~30 s): -json only.
    {
        let json = true;
        let out = dir.path().join("out.db");
        let mut c = ls_restore();
        c.env("LITESTREAM_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("LITESTREAM_SECRET_ACCESS_KEY", &secret)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("LOG_LEVEL", "debug");
        if json {
            c.arg("-json");
        }
        c.arg("-o").arg(&out).arg(s3_url(&endpoint, "bkt", "p"));
        let o = run(c);
        let t = text(&o);
        assert!(!o.status.success());
        assert!(
            !t.contains(&secret),
            "secret in ls-restore output (json {json}):\n{t}"
        );
    }
    // Restore driven by a config file holding the secret.
    let out = dir.path().join("out2.db");
    let mut c = ls_restore();
    c.arg("-config").arg(&cfg).arg("-o").arg(&out).arg(&db);
    let o = run(c);
    assert!(
        !text(&o).contains(&secret),
        "secret in ls-restore -config output"
    );
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn walk(p: &Path, f: &mut dyn FnMut(&Path)) {
    for e in fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

/// Every directory under `p` (not `p` itself).
fn walk_dirs(p: &Path, f: &mut dyn FnMut(&Path)) {
    for e in fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            f(&path);
            walk_dirs(&path, f);
        }
    }
}

/// Regression: L0 files in the meta directory and in a file replica used to be created 0644
/// (umask) for a 0600 database. Files must be capped by the database's mode, directories by
/// the matching search bits, and a restore from that replica gets the database's mode.
#[test]
fn created_files_are_no_more_permissive_than_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let c = app(&db, 4096);
    setup_table(&c);
    fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = dir.path().join("ls.yml");
    fast_config(&cfg, &[(db.clone(), replica.clone())]);
    replicate_batches(&cfg, &dir.path().join("engine.log"), &c, &replica, 3);
    let dbmode = mode(&db);
    let mut checked = 0;
    let mut bad = Vec::new();
    for root in [dir.path().join(".app.db-litestream"), replica.clone()] {
        walk(&root, &mut |p| {
            checked += 1;
            let m = mode(p);
            if m & !dbmode != 0 {
                bad.push(format!("{} {m:o}", p.display()));
            }
        });
    }
    // Directories we create: search bits only where the database is readable.
    let dirmode = dbmode | ((dbmode & 0o444) >> 2);
    let meta = dir.path().join(".app.db-litestream");
    let mut check_dir = |p: &Path| {
        checked += 1;
        let m = mode(p);
        if m & !dirmode != 0 {
            bad.push(format!("{} {m:o}", p.display()));
        }
    };
    check_dir(&meta);
    walk_dirs(&meta, &mut check_dir);
    check_dir(&replica);
    walk_dirs(&replica, &mut check_dir);
    assert!(checked > 0);
    let out = dir.path().join("out.db");
    let o = restore_to(&replica, &out);
    assert!(o.status.success(), "{}", text(&o));
    // Issue 14 item 7: the restored database gets the source's mode (the file replica's files
    // carry it), never 0666 minus umask.
    let m = mode(&out);
    assert_eq!(
        m, dbmode,
        "restored database mode {m:o}, the source's is {dbmode:o}"
    );
    eprintln!("permissions: db {dbmode:o}, {checked} files checked, restored {m:o}");
    assert!(
        bad.is_empty(),
        "files more permissive than the database ({dbmode:o}): {bad:?}"
    );
}
