//! Interop with the real Litestream 0.5.17 binary:
//! (a) a file replica written by our encoder restores, through `litestream restore`, to the
//!     exact database bytes at every TXID;
//! (b) our compactor reproduces, byte for byte, the L1/L2 files `litestream replicate` wrote.
//!
//! The binary comes from `LITESTREAM_BIN` or `PATH`; the tests are ignored unless asked for
//! (`--include-ignored`, as `tests/run-all.sh` does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{compact, lock_pgno, CompactOptions, Encoder, Header, StreamDecoder, TxId};

/// The real Litestream (test_support panics naming it when it is missing) and python3, which
/// writes the databases Litestream replicates.
fn tools() -> (PathBuf, PathBuf) {
    let python = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("python3"))
                .find(|p| p.is_file())
        })
        .expect("python3 on PATH");
    (test_support::litestream(), python)
}

fn litestream(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    // The project always runs Litestream without AWS_CA_BUNDLE (its AWS SDK would load that
    // bundle); doing the same keeps these runs independent of the environment's setting.
    c.env_remove("AWS_CA_BUNDLE");
    c
}

fn run(mut c: Command, what: &str) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn python(py: &Path, script: &str, args: &[&Path]) -> String {
    let mut c = Command::new(py);
    c.arg("-c").arg(script).args(args);
    let out = run(c, "python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn integrity_check(py: &Path, db: &Path) -> String {
    python(
        py,
        "import sqlite3, sys\n\
         print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
        &[db],
    )
}

/// Three versions of one database, each complete on disk (rollback journal): a base, a version
/// with updated and added rows (the file grows), and one with rows deleted and vacuumed (the
/// file shrinks, so its last pages must be dropped).
const BUILD_DBS: &str = r#"
import shutil, sqlite3, sys
v1, v2, v3 = sys.argv[1:4]
c = sqlite3.connect(v1)
c.execute("PRAGMA page_size = 4096")
c.execute("PRAGMA journal_mode = delete")
c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, body TEXT)")
c.execute("CREATE INDEX t_name ON t (name)")
c.executemany("INSERT INTO t (name, body) VALUES (?, ?)",
              [("row%d" % i, "x" * (i % 300)) for i in range(400)])
c.commit(); c.close()
shutil.copy(v1, v2)
c = sqlite3.connect(v2)
c.execute("UPDATE t SET body = 'changed' WHERE id % 7 = 0")
c.executemany("INSERT INTO t (name, body) VALUES (?, ?)",
              [("new%d" % i, "y" * 200) for i in range(300)])
c.commit(); c.close()
shutil.copy(v2, v3)
c = sqlite3.connect(v3)
c.execute("DELETE FROM t WHERE id > 200")
c.commit()
c.execute("VACUUM")
c.close()
"#;

fn pages(db: &[u8], page_size: usize) -> BTreeMap<u32, &[u8]> {
    let lock = lock_pgno(page_size as u32);
    db.chunks(page_size)
        .enumerate()
        .map(|(i, p)| (i as u32 + 1, p))
        .filter(|(pgno, _)| *pgno != lock)
        .collect()
}

/// Writes one L0 file and sets its mtime to the header timestamp, as Litestream's file
/// backend does (restore reads CreatedAt from it).
fn write_ltx(dir: &Path, header: Header, pages: &BTreeMap<u32, &[u8]>) {
    let mut enc = Encoder::new(Vec::new(), header).expect("encoder");
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).expect("page");
    }
    let (bytes, _) = enc.finish().expect("finish");
    let path = dir.join(ltx_file_name(header.min_txid, header.max_txid));
    std::fs::write(&path, bytes).expect("write ltx");
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_millis(header.timestamp as u64);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

#[test]
#[ignore = "needs the real Litestream"]
fn litestream_restores_a_replica_we_wrote() {
    let (ls, py) = tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let v: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("v{i}.db")))
        .collect();
    python(&py, BUILD_DBS, &[&v[0], &v[1], &v[2]]);
    let dbs: Vec<Vec<u8>> = v.iter().map(|p| std::fs::read(p).expect("db")).collect();
    let ps = 4096usize;
    assert!(dbs[1].len() > dbs[0].len() && dbs[2].len() < dbs[1].len());

    let l0 = tmp.path().join("replica/ltx/0");
    std::fs::create_dir_all(&l0).expect("mkdir");
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for (i, db) in dbs.iter().enumerate() {
        let txid = TxId(i as u64 + 1);
        let commit = (db.len() / ps) as u32;
        let header = Header::new(
            ps as u32,
            commit,
            txid,
            txid,
            now_ms - 60_000 + 10_000 * i as i64,
        );
        let all = pages(db, ps);
        let changed: BTreeMap<u32, &[u8]> = if i == 0 {
            all
        } else {
            let prev = pages(&dbs[i - 1], ps);
            all.into_iter()
                .filter(|(pgno, data)| prev.get(pgno) != Some(data))
                .collect()
        };
        assert!(!changed.is_empty());
        write_ltx(&l0, header, &changed);
    }

    let url = format!("file://{}", tmp.path().join("replica").display());
    for (txid, want) in [(None, 2), (Some(1), 0), (Some(2), 1), (Some(3), 2)] {
        let out = tmp.path().join(format!("restored-{txid:?}.db"));
        let mut c = litestream(&ls);
        c.arg("restore").arg("-o").arg(&out);
        if let Some(t) = txid {
            c.arg("-txid").arg(TxId(t).to_string());
        }
        c.arg(&url);
        run(c, &format!("litestream restore (txid {txid:?})"));
        let got = std::fs::read(&out).expect("restored db");
        assert!(
            got == dbs[want],
            "restore at txid {txid:?} differs from v{}",
            want + 1
        );
        assert_eq!(integrity_check(&py, &out), "ok");
    }
}

/// Kills the replicate process however the test ends.
struct Replicate(Child);

impl Drop for Replicate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every LTX file under `<replica>/ltx/<level>/`, by level, in TXID order.
fn replica_files(replica: &Path) -> BTreeMap<u8, Vec<(TxId, TxId, PathBuf)>> {
    let mut out: BTreeMap<u8, Vec<(TxId, TxId, PathBuf)>> = BTreeMap::new();
    let Ok(levels) = std::fs::read_dir(replica.join("ltx")) else {
        return out;
    };
    for level in levels.flatten() {
        let Some(l) = level
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u8>().ok())
        else {
            continue;
        };
        for f in std::fs::read_dir(level.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some((min, max)) = f.file_name().to_str().and_then(parse_ltx_file_name) {
                out.entry(l).or_default().push((min, max, f.path()));
            }
        }
    }
    for files in out.values_mut() {
        files.sort();
    }
    out
}

/// For a file at level L, the level L-1 files that tile exactly its TXID range.
fn sources(lower: &[(TxId, TxId, PathBuf)], min: TxId, max: TxId) -> Option<Vec<&PathBuf>> {
    let mut next = min;
    let mut out = Vec::new();
    for (a, b, p) in lower.iter().filter(|(a, b, _)| *a >= min && *b <= max) {
        if *a != next {
            return None;
        }
        out.push(p);
        next = b.next();
    }
    (next == max.next()).then_some(out)
}

#[test]
#[ignore = "needs the real Litestream"]
fn our_compactor_reproduces_litestream_levels() {
    let (ls, py) = tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("app.db");
    let replica = tmp.path().join("replica");
    python(
        &py,
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         c.execute('PRAGMA journal_mode = wal')\n\
         c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')\n\
         c.commit()",
        &[&db],
    );
    let config = tmp.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 200ms\n    replica:\n      url: file://{}\n\
             levels:\n  - interval: 1s\n  - interval: 2s\n\
             snapshot:\n  interval: 1h\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("config");
    let child = litestream(&ls)
        .arg("replicate")
        .arg("-config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litestream replicate");
    let mut guard = Replicate(child);

    // Small transactions spread over a few seconds, so that several L0 files land in each
    // 1 s and 2 s compaction window.
    python(
        &py,
        "import sqlite3, sys, time\n\
         c = sqlite3.connect(sys.argv[1])\n\
         for i in range(16):\n\
         \x20   c.execute('INSERT INTO t (v) VALUES (?)', ('row %d ' % i * 40,))\n\
         \x20   c.commit()\n\
         \x20   time.sleep(0.25)",
        &[&db],
    );
    // Wait until level 2 covers every L0 file, or give up after a while and check what exists.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files = replica_files(&replica);
        let l0_max = files.get(&0).and_then(|f| f.last()).map(|f| f.1);
        let l2_max = files.get(&2).and_then(|f| f.last()).map(|f| f.1);
        if (l0_max.is_some() && l2_max == l0_max) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = guard.0.kill();
    let _ = guard.0.wait();

    let files = replica_files(&replica);
    let mut checked = BTreeMap::<u8, usize>::new();
    for level in [1u8, 2] {
        let (Some(lower), Some(upper)) = (files.get(&(level - 1)), files.get(&level)) else {
            continue;
        };
        for (min, max, path) in upper {
            let Some(srcs) = sources(lower, *min, *max) else {
                continue;
            };
            let inputs: Vec<Vec<u8>> = srcs
                .iter()
                .map(|p| std::fs::read(p).expect("input"))
                .collect();
            let decoders = inputs
                .iter()
                .map(|b| StreamDecoder::new(&b[..]).expect("input header"))
                .collect();
            let (ours, _, _) =
                compact(decoders, Vec::new(), CompactOptions::default()).expect("compact");
            let theirs = std::fs::read(path).expect("litestream output");
            assert!(
                ours == theirs,
                "L{level} {min}-{max}: our compaction of {} files differs from Litestream's",
                srcs.len()
            );
            *checked.entry(level).or_default() += 1;
        }
    }
    let multi_input = files
        .get(&1)
        .is_some_and(|l1| l1.iter().any(|(a, b, _)| a != b));
    assert!(
        checked.get(&1).copied().unwrap_or(0) >= 1 && multi_input,
        "too little compaction to compare: {checked:?}, files {:?}",
        files
            .iter()
            .map(|(l, f)| (l, f.iter().map(|(a, b, _)| (a.0, b.0)).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    );
    eprintln!("compared Litestream's compactions byte for byte: {checked:?}");
}
