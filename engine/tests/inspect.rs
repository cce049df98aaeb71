//! `ls-engine databases`, `ltx`, `status`, `reset` and `restore` print and do what `litestream` 0.5.17 does on the
//! same config and replica, so scripts written against one work with the other.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::{
    app, assert_ok, assert_same_rows, insert_rows, integrity_ok, litestream, litestream_cmd,
    setup_table, Case, ENGINE,
};

fn ok(o: Output, what: &str) -> (String, String) {
    assert_ok(&o, &format!("{what} failed"));
    (
        String::from_utf8(o.stdout).expect("utf-8 output"),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Standard output and error of `ls-engine ARGS`.
fn ours_both(args: &[&str]) -> (String, String) {
    let o = Command::new(ENGINE)
        .args(args)
        .output()
        .expect("run ls-engine");
    ok(o, &format!("ls-engine {args:?}"))
}

fn ours(args: &[&str]) -> String {
    ours_both(args).0
}

/// Standard output and error of `litestream ARGS`.
fn theirs(bin: &Path, args: &[&str]) -> (String, String) {
    let o = litestream_cmd(bin)
        .args(args)
        .output()
        .expect("run litestream");
    ok(o, &format!("litestream {args:?}"))
}

#[test]
#[ignore = "needs the real Litestream"]
fn databases_ltx_and_restore_match_litestream() {
    let ls = litestream();
    let k = Case::empty();
    let (dir, db, replica, cfg) = (&k.root, &k.db, &k.replica, &k.config);
    fs::write(
        cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: file://{}\n  - path: {}\n    replica:\n      type: s3\n      bucket: b\n      path: p\n      region: us-east-1\n",
            db.display(),
            replica.display(),
            dir.join("other.db").display()
        ),
    )
    .expect("config");
    let cfg_s = cfg.to_str().expect("utf-8 path");
    let db_s = db.to_str().expect("utf-8 path");
    let url = format!("file://{}", replica.display());

    let c = app(db, 4096);
    setup_table(&c);
    // Three syncs, the last with a snapshot, so levels 0 and 9 both have files of
    // different sizes and times. Only `db` is replicated: the s3 entry just gets listed.
    let one = dir.join("one.yml");
    let text = fs::read_to_string(cfg).expect("read");
    fs::write(
        &one,
        text.split("  - path: ")
            .take(2)
            .collect::<Vec<_>>()
            .join("  - path: "),
    )
    .expect("one");
    let one_s = one.to_str().expect("utf-8 path");
    for (i, extra) in [&[][..], &[][..], &["-force-snapshot"][..]]
        .iter()
        .enumerate()
    {
        insert_rows(&c, i * 300, 300, 40);
        let mut args = vec!["replicate", "-config", one_s, "-once"];
        args.extend_from_slice(extra);
        theirs(&ls, &args);
    }

    for args in [
        vec!["databases", "-config", cfg_s],
        vec!["databases", "-config", cfg_s, "-json"],
        vec!["ltx", "-config", cfg_s, db_s],
        vec!["ltx", "-level", "all", url.as_str()],
        vec!["ltx", "-json", "-level", "all", url.as_str()],
        vec!["ltx", "-level", "9", "-json", url.as_str()],
        vec!["wal", "-level=3", url.as_str()],
        vec!["databases", "-config", cfg_s, "-json=false"],
        vec!["ltx", "-json=true", "-level", "all", url.as_str()],
        vec!["status", "-config", cfg_s],
        vec!["status", "-config", cfg_s, "-json"],
        vec!["status", "-config", cfg_s, db_s],
        vec!["reset", "-config", cfg_s, "-dry-run", db_s],
    ] {
        let (a, b) = (ours_both(&args), theirs(&ls, &args));
        assert_eq!(a.0, b.0, "output of {args:?} differs");
        // Only `wal` writes to standard error: its deprecation warning.
        if args[0] == "wal" {
            assert_eq!(a.1, b.1, "warning of {args:?} differs");
            assert!(a.1.contains("deprecated"), "no warning: {:?}", a.1);
        }
    }
    // Not vacuous: the listing names every file of both levels.
    let all = ours(&["ltx", "-level", "all", url.as_str()]);
    assert_eq!(
        all.lines().filter(|l| l.starts_with("0 ")).count(),
        3,
        "{all}"
    );
    assert_eq!(
        all.lines().filter(|l| l.starts_with("9 ")).count(),
        1,
        "{all}"
    );

    // `ls-engine restore` is ls-restore: same bytes as Litestream's restore.
    let a = dir.join("ours.db");
    let b = dir.join("theirs.db");
    ours(&[
        "restore",
        "-o",
        a.to_str().expect("path"),
        "-config",
        cfg_s,
        db_s,
    ]);
    theirs(
        &ls,
        &[
            "restore",
            "-o",
            b.to_str().expect("path"),
            "-config",
            cfg_s,
            db_s,
        ],
    );
    assert_eq!(fs::read(&a).expect("ours"), fs::read(&b).expect("theirs"));
    integrity_ok(&a);
    assert_same_rows(db, &a);

    // The status line is not vacuous either: it carries the replicated position.
    let st = ours(&["status", "-config", cfg_s, db_s]);
    assert!(
        st.contains(" ok ") && st.contains("0000000000000003"),
        "{st}"
    );

    // A real reset removes the local LTX files and says what Litestream says.
    let meta_ltx = dir.join(".app.db-litestream").join("ltx");
    assert!(meta_ltx.is_dir());
    let said = ours(&["reset", "-config", cfg_s, db_s]);
    assert!(!meta_ltx.exists(), "reset left {}", meta_ltx.display());
    theirs(&ls, &["replicate", "-config", one_s, "-once"]);
    assert!(meta_ltx.is_dir());
    // Litestream also logs two `time=...` lines to stdout there; the messages are the same.
    let theirs_said: String = theirs(&ls, &["reset", "-config", cfg_s, db_s])
        .0
        .lines()
        .filter(|l| !l.starts_with("time="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(said, theirs_said);

    // Errors name what is wrong, with Litestream's exit status.
    let o = Command::new(ENGINE)
        .args(["ltx", "-config", cfg_s, "/no/such.db"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such.db"));
    let o = Command::new(ENGINE)
        .args(["ltx", "-level", "10", url.as_str()])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("level"));
}

/// `version -verbose` is laid out as Litestream's: `Label:` then the value at column 13, with
/// the version first and the platform last; `-verbose=false` is the short form.
#[test]
#[ignore = "needs the real Litestream"]
fn version_verbose_is_laid_out_as_litestreams() {
    let ls = litestream();
    let layout = |text: &str| -> Vec<(String, usize)> {
        text.lines()
            .map(|l| {
                let (label, _) = l.split_once(':').expect("a `Label:` line");
                let col = l.len() - l[label.len() + 1..].trim_start().len();
                (label.to_owned(), col)
            })
            .collect()
    };
    let (t, _) = theirs(&ls, &["version", "-verbose"]);
    let o = ours(&["version", "-verbose"]);
    let (theirs_l, ours_l) = (layout(&t), layout(&o));
    for l in [&theirs_l, &ours_l] {
        assert_eq!(l.first().map(|x| x.0.as_str()), Some("Version"), "{t}\n{o}");
        assert_eq!(l.last().map(|x| x.0.as_str()), Some("OS/Arch"), "{t}\n{o}");
        assert!(l.iter().all(|x| x.1 == 13), "value not at column 13: {l:?}");
    }
    assert!(
        o.contains(&format!("ls-engine {}", env!("CARGO_PKG_VERSION"))),
        "{o}"
    );
    assert!(o.contains("0.5.17"), "{o}");
    assert_eq!(ours(&["version", "-verbose=false"]), ours(&["version"]));
}
