//! Restore path safety: whatever a replica directory holds (names that are not LTX names,
//! symlinks pointing outside, a symlink planted at `<out>.tmp`), `ls-restore` writes only its
//! output (`-o`, via `<out>.tmp`) and never through a link. S3 keys with `..`, `%2f` or nested
//! components are covered by storage's `listing_ignores_keys_outside_the_level_and_non_ltx_names`
//! (a file-backed S3 server cannot hold such keys).

use crate::common;
use crate::harden;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::*;
use harden::*;

/// Every entry under `root` (not following links): path -> (kind, size, mtime).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (char, u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let kind = if m.file_type().is_symlink() {
                'l'
            } else if m.is_dir() {
                stack.push(p.clone());
                'd'
            } else {
                'f'
            };
            let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.insert(p, (kind, m.len(), mtime));
        }
    }
    out
}

#[test]
fn file_replica_junk_and_symlinks_are_never_written_through() {
    let OneDb {
        dir,
        db,
        replica,
        cfg,
        conn: c,
    } = one_db();
    fast_config(&cfg, &[(db.clone(), replica.clone())]);
    replicate_batches(&cfg, &dir.path().join("engine.log"), &c, &replica, 3);
    let src = dump(&db);

    // The newest L0 file moves outside; the level dir keeps a symlink to it.
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).expect("outside");
    let l0 = replica.join("ltx/0");
    let newest = l0_names(&replica).pop().expect("an L0 file");
    let moved = outside.join(&newest);
    fs::rename(l0.join(&newest), &moved).expect("move");
    symlink(&moved, l0.join(&newest)).expect("symlink ltx");
    // Junk: names restore must skip, links to files and directories outside.
    let victim = outside.join("victim");
    fs::write(&victim, b"do not touch").expect("victim");
    for name in [
        "..%2f..%2fevil.ltx",
        "evil.ltx",
        "0000000000000001-0000000000000001.ltx.tmp",
        "00000000000000AA-00000000000000AA.ltx",
    ] {
        symlink(&victim, l0.join(name)).expect("junk link");
    }
    symlink(&outside, l0.join("sub")).expect("dir link");
    fs::write(l0.join("notes.txt"), b"junk").expect("junk file");
    // A link planted where restore stages its output.
    let outdir = dir.path().join("out");
    fs::create_dir_all(&outdir).expect("outdir");
    let out = outdir.join("restored.db");
    symlink(&victim, outdir.join("restored.db.tmp")).expect("tmp link");

    let before = snapshot(dir.path());
    let moved_bytes = fs::read(&moved).expect("moved");
    let o = restore_to(&replica, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dump(&out), src, "restore through the symlinked LTX differs");
    integrity_ok(&out);

    let after = snapshot(dir.path());
    assert_eq!(fs::read(&victim).expect("victim"), b"do not touch");
    assert_eq!(fs::read(&moved).expect("moved"), moved_bytes);
    let mut changed: Vec<String> = Vec::new();
    for (p, v) in &after {
        if before.get(p) != Some(v) && !p.starts_with(&outdir) {
            changed.push(format!("changed/new: {}", p.display()));
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) && !p.starts_with(&outdir) {
            changed.push(format!("removed: {}", p.display()));
        }
    }
    assert!(
        changed.is_empty(),
        "restore touched files outside -o: {changed:?}"
    );
    // Inside the output dir only the output appeared; the planted link was unlinked, not
    // written through.
    let names: Vec<String> = fs::read_dir(&outdir)
        .expect("outdir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["restored.db"],
        "unexpected files next to the output"
    );
    drop(c);
}
