//! One config file means the same to both binaries: every sample config (the conformance set in
//! `config/tests/configs`, `packaging/`, and the YAML examples of the READMEs and `docs/`) is
//! resolved by `ls-engine`'s reader and by `ls-restore -config`'s, and each database's replica
//! must come out identical (kind, URL, every setting, and the backend location built from
//! them). Bad configs must fail the same way in both, naming the key.

use std::path::{Path, PathBuf};

use engine::config as engine_config;
use restore::config as restore_config;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every sample config: (where it comes from, its text).
fn samples() -> Vec<(String, String)> {
    let root = root();
    let mut out = Vec::new();
    for dir in ["config/tests/configs", "packaging"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("read dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read sample");
            out.push((f.display().to_string(), text));
        }
    }
    let mut docs = vec![root.join("README.md"), root.join("engine/README.md")];
    let mut more: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap_or_default();
        let mut block: Option<String> = None;
        let mut n = 0;
        for line in text.lines() {
            let fence = line.trim_start();
            match &mut block {
                None if fence == "```yaml" || fence == "```yml" => block = Some(String::new()),
                Some(b) if fence.starts_with("```") => {
                    n += 1;
                    out.push((format!("{} (YAML block {n})", doc.display()), b.clone()));
                    block = None;
                }
                Some(b) => {
                    b.push_str(line);
                    b.push('\n');
                }
                None => {}
            }
        }
    }
    out
}

#[test]
fn both_binaries_resolve_every_sample_config_identically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::env::set_var("LS_CONFORMANCE_DIR", tmp.path());
    std::env::remove_var("LS_CONFORMANCE_UNSET");
    let samples = samples();
    // The conformance set, packaging/ls-engine.yml and the READMEs' YAML blocks at least.
    assert!(samples.len() >= 6, "too few samples: {}", samples.len());
    let mut compared = 0;
    for (i, (name, text)) in samples.iter().enumerate() {
        let file = tmp.path().join(format!("sample-{i}.yml"));
        std::fs::write(&file, text).expect("write sample");
        let cfg = match (
            engine_config::load(&file, true),
            ls_config::load(&file, true),
        ) {
            (Ok(cfg), _) => cfg,
            // Refused by `replicate` only (an unbindable address, half an age block, a missing
            // identity file...): the engine names the first such key, and restore, which does
            // not act on it, resolves every database the same as the shared reader does.
            (Err(e), Ok(shared)) => {
                let first = shared.replicate_errors.first().expect(name);
                assert_eq!(first.to_string(), e.to_string(), "{name}");
                shared
            }
            (Err(e), Err(_)) => {
                // A sample the engine refuses must be refused the same way by restore.
                let r =
                    restore_config::replica_for(&file, true, Path::new("/any.db")).expect_err(name);
                assert_eq!(r.to_string(), e.to_string(), "{name}");
                continue;
            }
        };
        for db in &cfg.dbs {
            let r = restore_config::replica_for(&file, true, &db.path)
                .unwrap_or_else(|e| panic!("{name}: restore cannot find {:?}: {e}", db.path));
            assert_eq!(r, db.replica, "{name}: {}", db.path.display());
            let (a, b) = (r.location(), db.replica.location());
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "{name}: {}",
                db.path.display()
            );
            compared += 1;
        }
    }
    // The conformance set alone has 15 databases.
    assert!(compared >= 15, "only {compared} databases compared");
}

#[test]
fn both_binaries_resolve_paths_and_env_the_same_way() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("l.yml");
    std::env::set_var("LS_CONFORMANCE_DIR2", tmp.path());
    std::fs::write(
        &file,
        "dbs:\n  - path: $LS_CONFORMANCE_DIR2/x/../b.db\n    replica:\n      path: ${LS_CONFORMANCE_DIR2}/r/./b\n  - path: ~/c.db\n    replica: {path: /r/c}\n",
    )
    .expect("write");
    let cfg = engine_config::load(&file, true).expect("engine");
    // `..` is resolved lexically, as Go's filepath.Abs does, for both.
    assert_eq!(cfg.dbs[0].path, tmp.path().join("b.db"));
    assert_eq!(
        cfg.dbs[0].replica.url,
        tmp.path().join("r/b").to_string_lossy()
    );
    let db = restore_config::expand_path(&format!("{}/x/../b.db", tmp.path().display()))
        .expect("expand");
    assert_eq!(db, cfg.dbs[0].path);
    let r = restore_config::replica_for(&file, true, &db).expect("restore finds b.db");
    assert_eq!(r, cfg.dbs[0].replica);
    // `~` is the same home for both.
    let home = restore_config::expand_path("~/c.db").expect("home");
    assert_eq!(cfg.dbs[1].path, home);
    assert!(restore_config::replica_for(&file, true, &home).is_ok());
}

/// (config, key the error must name, words it must contain)
const BAD: &[(&str, &str, &str)] = &[
    (
        "dbs:\n  - path: /a.db\n    replica:\n      path: /r\n      sync-interval: 5x\n",
        "dbs[0].replica.sync-interval",
        "unknown unit \"x\" in duration \"5x\"",
    ),
    (
        "dbs:\n  - path: /a.db\n    monitor-interval: 1d\n    replica: {path: /r}\n",
        "dbs[0].monitor-interval",
        "unknown unit \"d\"",
    ),
    (
        "dbs:\n  - path: /a.db\n    busy-timeout: \"10\"\n    replica: {path: /r}\n",
        "dbs[0].busy-timeout",
        "missing unit",
    ),
    (
        "sync-interval: soon\ndbs:\n  - path: /a.db\n    replica: {path: /r}\n",
        "sync-interval",
        "invalid duration",
    ),
    (
        "dbs:\n  - replica: {path: /r}\n",
        "dbs[0].path",
        "must specify either 'path' or 'dir'",
    ),
    (
        "dbs:\n  - path: /a.db\n    replica: {type: file}\n",
        "dbs[0].replica.path",
        "file replica path required",
    ),
    (
        "dbs:\n  - path: /a.db\n    max-sync-wal-bytes: lots\n    replica: {path: /r}\n",
        "dbs[0].max-sync-wal-bytes",
        "invalid size format",
    ),
    (
        "dbs:\n  - path: /a.db\n",
        "dbs[0].replica",
        "must specify replica",
    ),
    (
        "dbs:\n  - path: /a.db\n    replica: {url: 'ftp://h/x'}\n",
        "dbs[0].replica.url",
        "unknown replica type \"ftp\"",
    ),
];

#[test]
fn bad_configs_fail_the_same_way_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yml");
    for (text, key, words) in BAD {
        std::fs::write(&file, text).expect("write");
        let e = engine_config::load(&file, false)
            .expect_err(text)
            .to_string();
        assert!(
            e.contains(&format!("config key {key}: ")) && e.contains(words),
            "{text}: {e}"
        );
        let r = restore_config::replica_for(&file, false, Path::new("/a.db"))
            .expect_err(text)
            .to_string();
        assert_eq!(r, e, "{text}");
    }
    let missing = tmp.path().join("none.yml");
    let e = engine_config::load(&missing, false).expect_err("missing");
    let r = restore_config::replica_for(&missing, false, Path::new("/a.db")).expect_err("missing");
    assert_eq!(e.to_string(), r.to_string());
    assert!(e.to_string().contains("config file not found"), "{e}");
}

#[test]
fn unknown_keys_warn_with_their_line_and_do_not_fail() {
    // As Litestream's yaml.v2 reader: unknown keys are not an error; we also say where they are.
    let text =
        "dbs:\n  - path: /a.db\n    colour: blue\n    replica:\n      path: /r\n      bogus: 1\n\
         whatever: 2\n";
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("l.yml");
    std::fs::write(&file, text).expect("write");
    let cfg = engine_config::load(&file, false).expect("engine reads it");
    let mut w = cfg.warnings.clone();
    w.sort();
    assert_eq!(
        w,
        [
            "unknown config key dbs[0].colour (line 3), ignored",
            "unknown config key dbs[0].replica.bogus (line 6), ignored",
            "unknown config key whatever (line 7), ignored",
        ]
    );
    let r = restore_config::replica_for(&file, false, Path::new("/a.db")).expect("restore too");
    assert_eq!(r, cfg.dbs[0].replica);
}
