//! Interoperability with the real Litestream 0.5.17 through the same s3s-fs server: what
//! Litestream replicates, our backend lists and reads back (and the pages rebuild the database
//! Litestream's own restore produces); what our backend writes, `litestream restore` restores
//! byte for byte.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ltx_codec::{Encoder, Header, Level, LtxFile, TxId};
use storage::s3::S3Replica;
use storage::{Body, LtxFileInfo, ReplicaClient};

use test_support::env::output_ok;

use common::{fast_retry, server, settings, unique_prefix, Server};

fn python(script: &str, args: &[&str]) {
    let mut c = Command::new("python3");
    output_ok(c.arg("-c").arg(script).args(args), "python3");
}

/// Litestream as users run it against S3, with our server's keys in its environment.
fn litestream(srv: &Server) -> Command {
    let mut c = Command::new(test_support::litestream());
    // Litestream 0.5.17 fails with a custom HTTP client when AWS_CA_BUNDLE is set.
    c.env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

fn replica_url(srv: &Server, prefix: &str) -> String {
    format!(
        "s3://{}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true",
        srv.bucket, srv.endpoint
    )
}

/// `litestream restore -o out` of the replica at `prefix`, which must succeed; the restored
/// file's bytes.
fn litestream_restore(srv: &Server, prefix: &str, out: &Path) -> Vec<u8> {
    let mut c = litestream(srv);
    let restore = c
        .args(["restore", "-o"])
        .arg(out)
        .arg(replica_url(srv, prefix));
    output_ok(restore, "litestream restore");
    std::fs::read(out).expect("restored db")
}

/// The S3 test server and a temporary directory; panics if the real Litestream is missing.
fn server_and_litestream() -> (Server, tempfile::TempDir) {
    let srv = server();
    test_support::litestream();
    (srv, tempfile::tempdir().expect("tempdir"))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn all_files(r: &S3Replica) -> Vec<LtxFileInfo> {
    r.invalidate_cache();
    let mut out = Vec::new();
    for level in 0..=9u8 {
        out.extend(r.ltx_files(Level(level)).await.expect("list"));
    }
    out
}

/// Applies the L0 chain from its newest snapshot, newest page wins, as
/// docs/restore.md#applying-the-plan describes.
fn rebuild_from_l0(files: &[(LtxFileInfo, Vec<u8>)]) -> Vec<u8> {
    let start = files
        .iter()
        .rposition(|(f, _)| f.min_txid == TxId(1))
        .expect("an L0 snapshot");
    let mut db: Vec<u8> = Vec::new();
    let mut expect_min = TxId(1);
    for (info, bytes) in &files[start..] {
        assert_eq!(info.min_txid, expect_min, "L0 chain is contiguous");
        expect_min = info.max_txid.next();
        let ltx = LtxFile::open_verified(bytes).expect("valid LTX");
        let ps = ltx.header().page_size as usize;
        let commit = ltx.header().commit as usize;
        db.resize(commit * ps, 0);
        for frame in ltx.frames() {
            let frame = frame.expect("frame");
            let at = (frame.pgno as usize - 1) * ps;
            frame.decompress(&mut db[at..at + ps]).expect("decompress");
        }
    }
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server and the real Litestream"]
async fn litestream_writes_we_read() {
    let (srv, dir) = server_and_litestream();
    let db = dir.path().join("app.db");
    let db_s = db.to_str().expect("utf-8 path");
    python(
        "import sqlite3,sys\n\
         c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=WAL')\n\
         c.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)')\n\
         c.executemany('INSERT INTO t(v) VALUES(?)', [(bytes([i%256])*3000,) for i in range(40)])\n\
         c.commit(); c.close()",
        &[db_s],
    );
    let prefix = unique_prefix("ls-writes");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {db_s}\n    monitor-interval: 100ms\n    replica:\n      type: s3\n      \
             bucket: {}\n      path: {prefix}\n      endpoint: {}\n      region: us-east-1\n      \
             force-path-style: true\n      sync-interval: 100ms\n",
            srv.bucket, srv.endpoint
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("litestream.log")).expect("log");
    let child = litestream(&srv)
        .args(["replicate", "-config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start litestream");
    let mut child = KillOnDrop(child);

    let r = S3Replica::with_retry_policy(settings(&srv, &srv.endpoint, &prefix), fast_retry())
        .expect("replica");
    let dump_log =
        || std::fs::read_to_string(dir.path().join("litestream.log")).unwrap_or_default();
    let timeout = Duration::from_secs(60);
    {
        let r = &r;
        wait_for("Litestream's first L0 file", timeout, || async move {
            r.invalidate_cache();
            !r.ltx_files(Level(0)).await.unwrap_or_default().is_empty()
        })
        .await;
    }
    python(
        "import sqlite3,sys\n\
         c=sqlite3.connect(sys.argv[1])\n\
         c.execute('INSERT INTO t(v) VALUES(?)', (b'hello'*100,))\n\
         c.execute('UPDATE t SET v=? WHERE id=3', (b'x'*5000,))\n\
         c.commit(); c.close()",
        &[db_s],
    );
    {
        let r = &r;
        wait_for("a second L0 file", timeout, || async move {
            r.invalidate_cache();
            r.ltx_files(Level(0))
                .await
                .unwrap_or_default()
                .iter()
                .any(|f| f.min_txid.0 >= 2)
        })
        .await;
    }
    // Let any sync in flight finish before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.0.kill();
    let _ = child.0.wait();

    let files = all_files(&r).await;
    assert!(!files.is_empty(), "log:\n{}", dump_log());
    let keys = common::listed!(r, prefix);
    for f in &files {
        let key = r.ltx_key(f.level, f.min_txid, f.max_txid);
        assert!(
            key.starts_with(&format!("{prefix}/{:04x}/", f.level.0)),
            "{key}"
        );
        assert!(keys.contains(&key));
    }
    let mut l0 = Vec::new();
    for f in &files {
        let bytes = r.read_range(f.ltx_name(), 0, None).await.expect("read");
        assert_eq!(bytes.len() as u64, f.size, "size of {}", f.name());
        let ltx = LtxFile::open_verified(&bytes).expect("Litestream's LTX verifies");
        assert_eq!(
            (ltx.header().min_txid, ltx.header().max_txid),
            (f.min_txid, f.max_txid)
        );
        // Litestream stores the header timestamp as object metadata.
        let meta = r
            .metadata_timestamp(f.level, f.min_txid, f.max_txid)
            .await
            .expect("head");
        let header_time = UNIX_EPOCH + Duration::from_millis(ltx.header().timestamp.max(0) as u64);
        assert_eq!(meta, Some(header_time), "metadata of {}", f.name());
        if f.level == Level(0) {
            l0.push((f.clone(), bytes.to_vec()));
        }
    }
    let rebuilt = rebuild_from_l0(&l0);

    let out = dir.path().join("restored.db");
    let restored = litestream_restore(&srv, &prefix, &out);
    python(
        "import sqlite3,sys\n\
         c=sqlite3.connect(sys.argv[1])\n\
         assert c.execute('SELECT count(*) FROM t').fetchone()[0] == 41\n\
         assert c.execute('SELECT v FROM t WHERE id=3').fetchone()[0] == b'x'*5000\n\
         assert c.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'",
        &[out.to_str().expect("utf-8 path")],
    );
    assert!(
        restored == rebuilt,
        "pages read through our backend differ from litestream restore ({} vs {} bytes)",
        rebuilt.len(),
        restored.len()
    );
    r.delete_all().await.expect("cleanup");
}

fn page_size_of(db: &[u8]) -> u32 {
    match u16::from_be_bytes([db[16], db[17]]) {
        1 => 65536,
        n => u32::from(n),
    }
}

/// An L0 snapshot at TXID 1 of a complete database file.
fn snapshot_ltx(db: &[u8], timestamp_ms: i64) -> Vec<u8> {
    let ps = page_size_of(db);
    let commit = (db.len() / ps as usize) as u32;
    let header = Header::new(ps, commit, TxId(1), TxId(1), timestamp_ms);
    let mut enc = Encoder::new(Vec::new(), header).expect("encoder");
    let lock = ltx_codec::lock_pgno(ps);
    for pgno in 1..=commit {
        if pgno == lock {
            continue;
        }
        let at = (pgno as usize - 1) * ps as usize;
        enc.encode_page(pgno, &db[at..at + ps as usize])
            .expect("page");
    }
    enc.finish().expect("finish").0
}

async fn write_and_restore(
    srv: &Server,
    dir: &Path,
    page_size: u32,
    rows: usize,
    part_size: Option<u64>,
) {
    let db = dir.join(format!("src-{page_size}.db"));
    let db_s = db.to_str().expect("utf-8 path");
    python(
        "import os,sqlite3,sys\n\
         c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA page_size=%s' % sys.argv[2])\n\
         c.execute('PRAGMA journal_mode=DELETE')\n\
         c.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)')\n\
         c.executemany('INSERT INTO t(v,b) VALUES(?,?)', [('row %d' % i, os.urandom(i%700)) for i in range(int(sys.argv[3]))])\n\
         c.commit(); c.close()",
        &[db_s, &page_size.to_string(), &rows.to_string()],
    );
    let bytes = std::fs::read(&db).expect("db");
    assert_eq!(page_size_of(&bytes), page_size);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let ltx = snapshot_ltx(&bytes, now_ms);
    if let Some(ps) = part_size {
        assert!(
            ltx.len() as u64 > ps,
            "snapshot of {} bytes must exceed part-size",
            ltx.len()
        );
    }
    let prefix = unique_prefix(&format!("we-write-{page_size}"));
    let mut s = settings(srv, &srv.endpoint, &prefix);
    s.part_size = part_size;
    let r = S3Replica::with_retry_policy(s, fast_retry()).expect("replica");
    let ltx_path = dir.join(format!("snap-{page_size}.ltx"));
    std::fs::write(&ltx_path, &ltx).expect("ltx file");
    let created = UNIX_EPOCH + Duration::from_millis(now_ms as u64);
    // Bytes and file bodies both: L0 from memory, the same snapshot at L9 streamed from disk.
    common::write(&r, 0, (1, 1), ltx.clone(), created)
        .await
        .expect("write L0");
    common::write_body(&r, 9, (1, 1), Body::File(ltx_path), created)
        .await
        .expect("write L9");

    let out = dir.join(format!("restored-{page_size}.db"));
    let restored = litestream_restore(srv, &prefix, &out);
    assert!(
        restored == bytes,
        "litestream restored {} bytes, source has {}",
        restored.len(),
        bytes.len()
    );

    // `litestream ltx` lists what we wrote under the names it expects.
    let st = litestream(srv)
        .args(["ltx", "-level", "all"])
        .arg(replica_url(srv, &prefix))
        .output()
        .expect("litestream ltx");
    let listing = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        listing.contains("0000000000000001") && listing.lines().count() >= 3,
        "{listing}"
    );
    r.delete_all().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 test server and the real Litestream"]
async fn we_write_litestream_restores() {
    let (srv, dir) = server_and_litestream();
    write_and_restore(&srv, dir.path(), 4096, 300, None).await;
    write_and_restore(&srv, dir.path(), 512, 100, None).await;
    // A snapshot above part-size goes up as a multipart upload and must restore all the same.
    write_and_restore(&srv, dir.path(), 65536, 20_000, Some(5 * 1024 * 1024)).await;
}
