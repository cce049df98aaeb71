//! End-to-end encrypted replicas (docs/encryption.md): the engine writes only age files, no
//! object holds a byte of page data in the clear, `ls-restore` restores them with the identity
//! and refuses, naming the file and publishing nothing, without it; the real `age` tool and the
//! real Litestream on either side.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use age::secrecy::ExposeSecret;

use crate::common::*;

/// A fresh X25519 key pair: (identity file, recipient).
fn key(dir: &Path, name: &str) -> (PathBuf, String) {
    let id = age::x25519::Identity::generate();
    let path = dir.join(format!("{name}.txt"));
    fs::write(
        &path,
        format!("# test key\n{}\n", id.to_string().expose_secret()),
    )
    .expect("key file");
    (path, id.to_public().to_string())
}

/// Rows whose text is easy to look for in the stored bytes.
const MARKER: &str = "plaintext-marker";

fn write_rows(db: &Path, from: usize, n: usize) {
    let c = app(db, 4096);
    setup_table(&c);
    for i in from..from + n {
        c.execute(
            "INSERT INTO t(k, v) VALUES (?1, ?2)",
            rusqlite::params![i as i64, format!("{MARKER}-{i:08}-{}", "y".repeat(200))],
        )
        .expect("insert");
    }
}

/// Every LTX object under a file replica, as (path, bytes).
fn objects(replica: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![replica.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "ltx") {
                let b = fs::read(&p).expect("read object");
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

/// Runs the engine on `db` with the replica block `replica_yaml` while `writer` writes, until
/// it has written an L0 file (counted in `l0_dir`, where the replica keeps level 0), then once more with a forced snapshot, so levels 0 and 9 exist
/// and the replica holds every transaction.
fn replicate(
    dir: &Path,
    db: &Path,
    replica_yaml: &str,
    l0_dir: &Path,
    writer: std::thread::JoinHandle<()>,
) {
    fs::create_dir_all(dir).expect("config dir");
    let cfg = dir.join("ls.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      sync-interval: 100ms\n{replica_yaml}",
            db.display()
        ),
    )
    .expect("config");
    let log = dir.join("engine.log");
    let l0s = || {
        fs::read_dir(l0_dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ltx"))
                .count()
        })
    };
    let before = l0s();
    let e = Engine::start(&cfg, &log);
    writer.join().expect("writer");
    // A new L0 file: the engine is up and synced at least once.
    let ok = wait_until(Duration::from_secs(60), || l0s() > before);
    assert!(ok, "no L0 files; log:\n{}", e.tail());
    e.stop();
    let o = Command::new(ENGINE)
        .args(["replicate", "-once", "-force-snapshot", "-config"])
        .arg(&cfg)
        .output()
        .expect("run ls-engine -once");
    assert!(o.status.success(), "{}", text(&o));
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ls-restore -age-identity <id>` of the file replica `replica` into `out` succeeds and gives a
/// sound database with `db`'s rows.
fn restores_with_identity(id: &Path, replica: &Path, out: &Path, db: &Path) {
    let url = file_url(replica);
    let o = ls_restore(
        &["-age-identity"],
        &[id, Path::new("-o"), out, Path::new(&url)],
    );
    assert!(o.status.success(), "{}", text(&o));
    integrity_ok(out);
    assert_same_rows(db, out);
}

/// A thread that writes 100 rows from `from` into `db` after half a second.
fn rows_later(db: &Path, from: usize) -> std::thread::JoinHandle<()> {
    let db = db.to_owned();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        write_rows(&db, from, 100);
    })
}

fn ls_restore(args: &[&str], extra: &[&Path]) -> Output {
    ls_restore_with(args, extra, &[])
}

/// `ls-restore` with `args`, then `extra`, never with an identity from the environment; `env`
/// adds what the replica needs (credentials).
fn ls_restore_with(args: &[&str], extra: &[&Path], env: &[(String, String)]) -> Output {
    Command::new(ls_restore_bin())
        .args(args)
        .args(extra)
        .env_remove("LS_AGE_IDENTITY")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run ls-restore")
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn age_yaml(recipients: &[&str], identities: &[&Path]) -> String {
    let mut s = String::from("      age:\n        recipients:\n");
    for r in recipients {
        s.push_str(&format!("          - {r}\n"));
    }
    s.push_str("        identities:\n");
    for i in identities {
        s.push_str(&format!("          - {}\n", i.display()));
    }
    s
}

/// A database replicated to an encrypted file replica under `dir`.
struct Encrypted {
    /// The identity file, whose recipient the config names.
    id: PathBuf,
    db: PathBuf,
    replica: PathBuf,
    cfg: PathBuf,
}

/// `rows` rows, then `batches` of 50 more written while the engine runs (so L0 files hold
/// them), replicated with an `age` block to `dir/replica`, ending with a snapshot.
fn encrypted_replica(dir: &Path, rows: usize, batches: usize) -> Encrypted {
    let (id, rcpt) = key(dir, "key");
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    write_rows(&db, 0, rows);
    let yaml = format!(
        "      path: {}\n{}",
        replica.display(),
        age_yaml(&[&rcpt], &[&id])
    );
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            for b in 0..batches {
                write_rows(&db, rows + b * 50, 50);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let cfg_dir = dir.join("cfg");
    replicate(&cfg_dir, &db, &yaml, &replica.join("ltx/0"), writer);
    Encrypted {
        id,
        db,
        replica,
        cfg: cfg_dir.join("ls.yml"),
    }
}

/// Where an encrypted replica is, for [`holds_no_plaintext_and_refuses_clearly`].
struct Target {
    /// A directory holding the replica's objects as files: the file replica itself, or the
    /// prefix's directory in s3s-fs's data directory for the S3 test server.
    objects_at: PathBuf,
    /// Where, under it, the level-9 snapshots are.
    snapshots: PathBuf,
    /// The replica URL ls-restore takes.
    url: String,
    /// The credentials ls-restore needs.
    env: Vec<(String, String)>,
}

impl Target {
    fn restore(&self, args: &[&str], extra: &[&Path]) -> Output {
        ls_restore_with(args, extra, &self.env)
    }
}

/// What an encrypted replica of `db` (`rows` rows, encrypted to `id`'s recipient) must show on
/// any backend: no object holds page data in the clear; with the identity, restore gives the
/// same rows and `-check` passes; without it, with another one (`other`), with a chunk of the
/// snapshot tampered with or the snapshot cut short, restore fails naming the object and
/// publishes nothing.
fn holds_no_plaintext_and_refuses_clearly(
    t: &Target,
    dir: &Path,
    (id, other): (&Path, &Path),
    db: &Path,
    rows: i64,
) {
    let objs = objects(&t.objects_at);
    let snapshot = objs
        .iter()
        .filter(|(p, _)| p.starts_with(&t.snapshots))
        .max_by_key(|(_, b)| b.len())
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| panic!("no snapshot: {objs:?}"));
    for (p, b) in &objs {
        assert!(
            b.starts_with(b"age-encryption.org/v1\n"),
            "{} is not an age file",
            p.display()
        );
        assert!(
            !b.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{} holds plaintext",
            p.display()
        );
        assert!(!b.windows(4).any(|w| w == b"LTX1"), "{}", p.display());
    }

    // With the identity: the same rows, integrity ok.
    let out = dir.join("restored.db");
    let o = t.restore(
        &["-integrity-check", "full", "-age-identity"],
        &[id, Path::new("-o"), &out, Path::new(&t.url)],
    );
    assert!(o.status.success(), "{}", text(&o));
    integrity_ok(&out);
    assert_same_rows(db, &out);
    let n: i64 = rusqlite::Connection::open(&out)
        .expect("open")
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, rows);

    // `-check` verifies every file through the age layer.
    let o = t.restore(&["-check", "-age-identity"], &[id, Path::new(&t.url)]);
    assert!(o.status.success(), "{}", text(&o));

    // Without it, with the wrong one, and with the snapshot damaged: an error naming a file,
    // nothing published.
    let fails = |n: usize, ids: &[&Path], what: &str| {
        let out = dir.join(format!("fail-{n}.db"));
        let mut args: Vec<&Path> = Vec::new();
        for i in ids {
            args.extend([Path::new("-age-identity"), i]);
        }
        args.extend([Path::new("-o"), out.as_path(), Path::new(&t.url)]);
        let o = t.restore(&[], &args);
        let text = text(&o);
        assert!(!o.status.success(), "{text}");
        assert!(text.contains(what) && text.contains(".ltx"), "{text}");
        assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
        assert!(!out.exists(), "output published: {text}");
        let sidecars = fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("fail-"))
            .count();
        assert_eq!(sidecars, 0, "{text}");
    };
    fails(0, &[], "is encrypted with age");
    fails(1, &[other], "can decrypt it");
    let good = fs::read(&snapshot).expect("read snapshot");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    fs::write(&snapshot, &bad).expect("tamper");
    fails(2, &[id], "authenticate");
    fs::write(&snapshot, &good[..good.len() - 1]).expect("truncate");
    fails(3, &[id], "");
    fs::write(&snapshot, &good).expect("repair");
    let o = t.restore(&["-check", "-age-identity"], &[id, Path::new(&t.url)]);
    assert!(o.status.success(), "repaired: {}", text(&o));
}

#[test]
fn engine_writes_only_age_files_and_restore_needs_the_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (other, _) = key(dir.path(), "other");
    let Encrypted {
        id, db, replica, ..
    } = encrypted_replica(dir.path(), 300, 5);
    let t = Target {
        snapshots: replica.join("ltx/9"),
        objects_at: replica.clone(),
        url: file_url(&replica),
        env: Vec::new(),
    };
    holds_no_plaintext_and_refuses_clearly(&t, dir.path(), (&id, &other), &db, 550);
}

/// The same on the S3 test server, whose objects s3s-fs keeps as files.
#[test]
#[ignore = "needs the S3 test server"]
fn an_encrypted_s3_replica_holds_no_plaintext_and_refuses_clearly() {
    let srv = s3_server();
    let data = srv
        .data_dir
        .clone()
        .expect("LS_S3_DATA_DIR: where s3s-fs keeps objects");
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, rcpt) = key(dir.path(), "key");
    let (other, _) = key(dir.path(), "other");
    let db = dir.path().join("app.db");
    write_rows(&db, 0, 300);
    let prefix = test_support::unique_name("age");
    let mut yaml = String::new();
    for l in srv.yaml_with_keys(&prefix, &srv.secret_key) {
        yaml.push_str(&format!("      {l}\n"));
    }
    yaml.push_str(&age_yaml(&[&rcpt], &[&id]));
    let remote = data.join(&srv.bucket).join(&prefix);
    replicate(
        &dir.path().join("cfg"),
        &db,
        &yaml,
        &remote.join("0000"),
        rows_later(&db, 300),
    );
    let t = Target {
        snapshots: remote.join("0009"),
        objects_at: remote,
        url: srv.url(&prefix),
        env: srv.ls_env(),
    };
    holds_no_plaintext_and_refuses_clearly(&t, dir.path(), (&id, &other), &db, 400);
}

#[test]
fn engine_refuses_half_an_age_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, rcpt) = key(dir.path(), "key");
    let (_, other_rcpt) = key(dir.path(), "other");
    let db = dir.path().join("app.db");
    write_rows(&db, 0, 1);
    for (age, want) in [
        (
            format!("{{recipients: [{rcpt}]}}"),
            "without age.identities",
        ),
        (
            format!("{{identities: [{}]}}", id.display()),
            "without age.recipients",
        ),
        (
            format!(
                "{{recipients: [{other_rcpt}], identities: [{}]}}",
                id.display()
            ),
            "none of age.identities",
        ),
        (
            format!("{{recipients: [{rcpt}], identities: [/nonexistent/k.txt]}}"),
            "/nonexistent/k.txt",
        ),
        (
            format!("{{recipient: [{rcpt}], identities: [{}]}}", id.display()),
            "unknown field",
        ),
    ] {
        let cfg = dir.path().join("ls.yml");
        fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      path: {}\n      age: {age}\n",
                db.display(),
                dir.path().join("r").display()
            ),
        )
        .expect("config");
        let o = Command::new(ENGINE)
            .args(["replicate", "-once", "-config"])
            .arg(&cfg)
            .output()
            .expect("run");
        let t = text(&o);
        assert!(!o.status.success(), "{age}: {t}");
        assert!(t.contains("age") && t.contains(want), "{age}: {t}");
        assert!(!t.contains("AGE-SECRET-KEY"), "{t}");
    }
}

/// The real `age` tool (Debian package `age`); panics if it is missing.
fn age_tool() -> PathBuf {
    test_support::env::on_path("age").unwrap_or_else(|| {
        panic!("this test needs the age tool: apt-get install age (tests/install.sh does)")
    })
}

fn run_age(args: &[&str], files: &[&Path]) -> Vec<u8> {
    let o = Command::new(age_tool())
        .args(args)
        .args(files)
        .output()
        .expect("run age");
    assert!(o.status.success(), "age {args:?}: {}", text(&o));
    o.stdout
}

/// Encrypts every object of a plain replica in place with `age -r`.
fn encrypt_in_place(replica: &Path, rcpt: &str) {
    for (p, plain) in objects(replica) {
        assert!(plain.starts_with(b"LTX1"), "{} is not plain", p.display());
        let sealed = run_age(&["-r", rcpt], &[&p]);
        fs::write(&p, sealed).expect("write sealed");
    }
}

#[test]
#[ignore = "needs the age tool"]
fn age_tool_reads_engine_objects_and_restore_reads_age_tool_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, rcpt) = key(dir.path(), "key");
    let db = dir.path().join("app.db");
    write_rows(&db, 0, 400);

    // The engine's objects, decrypted by `age -d`, are LTX files that verify.
    let replica = dir.path().join("enc");
    let yaml = format!(
        "      path: {}\n{}",
        replica.display(),
        age_yaml(&[&rcpt], &[&id])
    );
    let cfg_dir = dir.path().join("cfg1");
    let writer = rows_later(&db, 400);
    replicate(&cfg_dir, &db, &yaml, &replica.join("ltx/0"), writer);
    let objs = objects(&replica);
    assert!(objs.len() >= 2, "{objs:?}");
    for (p, _) in &objs {
        let plain = run_age(&["-d", "-i", &id.display().to_string()], &[p]);
        ltx_codec::decoder::LtxFile::open(&plain)
            .and_then(|f| f.verify())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    // A plain replica encrypted by hand with `age -r` restores with the identity.
    let plain = dir.path().join("plain");
    let cfg_dir = dir.path().join("cfg2");
    let writer = rows_later(&db, 500);
    replicate(
        &cfg_dir,
        &db,
        &format!("      path: {}\n", plain.display()),
        &plain.join("ltx/0"),
        writer,
    );
    encrypt_in_place(&plain, &rcpt);
    restores_with_identity(&id, &plain, &dir.path().join("restored.db"), &db);
}

#[test]
#[ignore = "needs the real Litestream"]
fn litestream_replica_encrypted_by_hand_restores_and_litestream_cannot_read_ours() {
    let lit = litestream();
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, rcpt) = key(dir.path(), "key");
    let db = dir.path().join("app.db");
    write_rows(&db, 0, 300);

    // Litestream 0.5.17 refuses an age block.
    let lcfg = dir.path().join("lit.yml");
    let replica = dir.path().join("lit-replica");
    fs::write(
        &lcfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n      age:\n        recipients: [{rcpt}]\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("config");
    let o = litestream_cmd(&lit)
        .args(["replicate", "-config"])
        .arg(&lcfg)
        .output()
        .expect("litestream");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("age encryption is not currently supported"),
        "{}",
        text(&o)
    );

    // Litestream writes a plain replica; `age -r` encrypts it; ls-restore restores it.
    fs::write(
        &lcfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("config");
    write_rows(&db, 300, 100);
    let o = litestream_cmd(&lit)
        .args(["replicate", "-once", "-config"])
        .arg(&lcfg)
        .output()
        .expect("litestream replicate -once");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !l0_names(&replica).is_empty(),
        "Litestream wrote no L0 file"
    );
    encrypt_in_place(&replica, &rcpt);
    restores_with_identity(&id, &replica, &dir.path().join("from-litestream.db"), &db);

    // Litestream cannot restore that replica, and publishes nothing.
    let lout = dir.path().join("lit-restored.db");
    let o = litestream_cmd(&lit)
        .args(["restore", "-o"])
        .arg(&lout)
        .arg(file_url(&replica))
        .output()
        .expect("litestream restore");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!lout.exists());
}

#[test]
fn a_plain_replica_migrates_to_encryption_only_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, rcpt) = key(dir.path(), "key");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    write_rows(&db, 0, 200);
    let plain_yaml = format!("      path: {}\n", replica.display());
    let writer = std::thread::spawn({
        let db = db.clone();
        move || write_rows(&db, 200, 50)
    });
    replicate(
        &dir.path().join("plain"),
        &db,
        &plain_yaml,
        &replica.join("ltx/0"),
        writer,
    );
    assert!(objects(&replica)
        .iter()
        .all(|(_, b)| b.starts_with(b"LTX1")));

    // Encryption turned on without the migration flag: the plain files are refused by name.
    write_rows(&db, 250, 50);
    let cfg = dir.path().join("strict.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n{plain_yaml}{}",
            db.display(),
            age_yaml(&[&rcpt], &[&id])
        ),
    )
    .expect("config");
    let o = Command::new(ENGINE)
        .args(["replicate", "-once", "-force-snapshot", "-config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("migrate-from-plaintext") && t.contains(".ltx"),
        "{t}"
    );

    // With it: new files are encrypted, the old ones still read, and the whole replica
    // restores with the identity.
    let yaml = format!(
        "{plain_yaml}{}        migrate-from-plaintext: true\n",
        age_yaml(&[&rcpt], &[&id])
    );
    let writer = std::thread::spawn({
        let db = db.clone();
        move || write_rows(&db, 300, 50)
    });
    replicate(
        &dir.path().join("migrate"),
        &db,
        &yaml,
        &replica.join("ltx/0"),
        writer,
    );
    let objs = objects(&replica);
    let sealed = objs
        .iter()
        .filter(|(_, b)| b.starts_with(b"age-encryption.org/v1\n"))
        .count();
    assert!(
        sealed > 0 && sealed < objs.len(),
        "{sealed} of {}",
        objs.len()
    );
    // Restore refuses the mix too, unless its config says it is a migration.
    let out = dir.path().join("restored.db");
    let o = ls_restore(
        &["-age-identity"],
        &[&id, Path::new("-o"), &out, Path::new(&file_url(&replica))],
    );
    assert!(!o.status.success() && text(&o).contains("migrate-from-plaintext"));
    assert!(!out.exists());
    let o = ls_restore(
        &["-config"],
        &[
            &dir.path().join("migrate/ls.yml"),
            Path::new("-o"),
            &out,
            &db,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    integrity_ok(&out);
    assert_same_rows(&db, &out);
}

/// Issue 16: the commands that read a replica work on an encrypted one through the same
/// wrapped replica: `ls-engine ltx` lists its levels from the config, and `ls-restore -f`
/// (follow mode) with the identity keeps a copy that reaches the source's rows.
#[test]
fn ltx_and_follow_read_an_encrypted_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Encrypted {
        id,
        db,
        replica,
        cfg,
    } = encrypted_replica(dir.path(), 200, 1);

    let o = Command::new(ENGINE)
        .args(["ltx", "-level", "all", "-config"])
        .arg(&cfg)
        .arg(&db)
        .output()
        .expect("ls-engine ltx");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let levels: Vec<&str> = t
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|x| x.len() == 16))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        levels.contains(&"0") && levels.contains(&"9"),
        "levels 0 and 9 not listed:\n{t}"
    );
    assert!(!t.contains("AGE-SECRET-KEY"), "{t}");

    let out = dir.path().join("follow.db");
    let mut f = Command::new(ls_restore_bin())
        .args(["-f", "-follow-interval", "100ms", "-age-identity"])
        .arg(&id)
        .arg("-o")
        .arg(&out)
        .arg(file_url(&replica))
        .env_remove("LS_AGE_IDENTITY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ls-restore -f");
    let want = dump(&db);
    let rows = |p: &Path| -> Option<i64> {
        let c =
            rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()?;
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).ok()
    };
    let caught_up = wait_until(Duration::from_secs(60), || {
        out.exists() && rows(&out) == Some(250)
    });
    let _ = f.kill();
    let _ = f.wait();
    assert!(caught_up, "the follower never reached the source's rows");
    integrity_ok(&out);
    assert_eq!(dump(&out), want);
}

/// The VFS extension reads an encrypted replica with `$LS_AGE_IDENTITY`, as `ls-restore` does,
/// and without it says the replica is encrypted.
#[test]
fn the_vfs_reads_an_encrypted_replica_with_the_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = encrypted_replica(dir.path(), 300, 2);
    let lib = crate::vfs::ls_vfs();
    let url = format!("file://{}", e.replica.display());
    let want: i64 = rusqlite::Connection::open(&e.db)
        .expect("db")
        .query_row("select count(*) from t", [], |r| r.get(0))
        .expect("count");
    let id = vec![("LS_AGE_IDENTITY".to_owned(), e.id.display().to_string())];
    let (out, err) = crate::vfs::shell(
        &lib,
        &url,
        &id,
        "select count(*) from t;\npragma integrity_check;",
    );
    assert_eq!(out, format!("{want}\nok\n"), "{err}");
    let (out, err) = crate::vfs::shell(&lib, &url, &[], "select count(*) from t;");
    assert!(
        out.is_empty() && err.contains("unable to open database"),
        "{out}{err}"
    );
    assert!(
        err.contains("encrypted with age"),
        "the log does not say why: {err}"
    );
}
