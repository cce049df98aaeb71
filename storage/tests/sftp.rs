//! The sftp backend against a real OpenSSH server (`source tests/sftp/start.sh`): round trip,
//! Litestream's layout and mtimes, paged listings, errors that name what failed, the listing
//! cache, and both write modes.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use storage::s3::RetryPolicy;
use storage::sftp::{SftpReplica, SftpSettings};
use storage::{Body, LtxName, ReplicaClient};

use sftp_env::{password_login, sftp_server, unique_name, ByteCountingProxy, SftpServer};
use test_support::sftp as sftp_env;

fn settings(srv: &SftpServer, path: &Path, extra: &[(&str, &str)]) -> SftpSettings {
    let pairs = srv.pairs(path);
    let mut all: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend_from_slice(extra);
    SftpSettings::from_config(None, all).expect("settings")
}

fn replica(srv: &SftpServer, path: &Path) -> SftpReplica {
    SftpReplica::with_retry_policy(settings(srv, path, &[]), common::retry(3, 50))
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn ltx_file(root: &Path, level: u8, min: u64, max: u64) -> PathBuf {
    root.join("ltx")
        .join(level.to_string())
        .join(format!("{min:016x}-{max:016x}.ltx"))
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .expect("mtime")
}

/// Writes `bytes` as the L0 file `i-i`.
async fn put_l0(
    r: &SftpReplica,
    i: u64,
    bytes: Vec<u8>,
    t: SystemTime,
) -> storage::Result<storage::LtxFileInfo> {
    r.write_ltx(LtxName::l0(TxId(i)), Body::Bytes(Bytes::from(bytes)), t)
        .await
}

#[tokio::test]
#[ignore = "needs the SFTP test server"]
async fn round_trip_layout_and_times() {
    let srv = sftp_server();
    let root = srv.unique_path("rt");
    let r = replica(&srv, &root);
    assert_eq!(r.kind(), "sftp");
    assert!(r.ltx_files(Level(0)).await.expect("empty").is_empty());

    let t = at_ms(1_795_665_906_229);
    for i in [3u64, 1, 2] {
        let info = put_l0(&r, i, data(i as u8, 1000 + i as usize), t)
            .await
            .expect("write");
        assert_eq!(info.size, 1000 + i);
        // SFTP v3 keeps whole seconds, as Litestream's Chtimes stores them.
        assert_eq!(info.created_at, at_ms(1_795_665_906_000));
    }
    // A large file streamed from disk, at level 9 (decimal directory names, like Litestream).
    let big = data(9, 3 * 1024 * 1024 + 17);
    let local = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(local.path(), &big).expect("write local");
    let t9 = at_ms(1_700_000_000_999);
    let info = r
        .write_ltx(
            LtxName::new(Level(9), TxId(1), TxId(0x2a)),
            Body::File(local.path().to_owned()),
            t9,
        )
        .await
        .expect("write file body");
    assert_eq!(info.size, big.len() as u64);

    // Layout on the server's disk: exactly Litestream's names, mtime = header time, no temp.
    for i in 1..=3u64 {
        let p = ltx_file(&root, 0, i, i);
        assert_eq!(
            std::fs::read(&p).expect("on disk"),
            data(i as u8, 1000 + i as usize)
        );
        assert_eq!(mtime(&p), at_ms(1_795_665_906_000));
    }
    let p9 = ltx_file(&root, 9, 1, 0x2a);
    assert_eq!(std::fs::read(&p9).expect("l9"), big);
    assert_eq!(mtime(&p9), at_ms(1_700_000_000_000));
    let names: Vec<String> = std::fs::read_dir(root.join("ltx/0"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");

    // Listing from a fresh client (no cache).
    let fresh = replica(&srv, &root);
    let files = fresh.ltx_files(Level(0)).await.expect("list");
    assert_eq!(common::sizes(&files), vec![(1, 1001), (2, 1002), (3, 1003)]);
    assert!(files
        .iter()
        .all(|f| f.created_at == at_ms(1_795_665_906_000)));
    let l9 = fresh.ltx_files(Level(9)).await.expect("list l9");
    assert_eq!(l9.len(), 1);
    assert_eq!(
        (l9[0].max_txid, l9[0].created_at),
        (TxId(0x2a), at_ms(1_700_000_000_000))
    );

    // Ranged reads: whole, middle, to the end, past the end, missing file.
    let whole = common::fetch(&fresh, (9, 1, 0x2a), (0, None)).await;
    assert_eq!(&whole[..], &big[..]);
    let mid = common::fetch(&fresh, (9, 1, 0x2a), (1_000_000, Some(70_000))).await;
    assert_eq!(&mid[..], &big[1_000_000..1_070_000]);
    let tail = common::fetch(&fresh, (0, 2, 2), (1000, None)).await;
    assert_eq!(&tail[..], &data(2, 1002)[1000..]);
    let past = common::fetch_err(&fresh, (0, 2, 2), (1000, Some(3))).await;
    assert!(past.to_string().contains("past the end"), "{past}");
    let missing = common::fetch_err(&fresh, (0, 7, 7), (0, None)).await;
    assert!(missing.is_not_found(), "{missing}");
    assert!(
        missing
            .to_string()
            .contains("0000000000000007-0000000000000007.ltx"),
        "{missing}"
    );
    // The default streamed read, piece by piece.
    let mut s = fresh
        .read_range_stream(LtxName::new(Level(9), TxId(1), TxId(0x2a)), 5, 300_000)
        .await
        .expect("stream");
    let mut got = Vec::new();
    while let Some(p) = s.next_piece(100_000).await.expect("piece") {
        got.extend_from_slice(&p);
    }
    assert_eq!(&got[..], &big[5..300_005]);

    // Overwriting an existing file replaces it whole.
    put_l0(&r, 2, b"replaced".to_vec(), t)
        .await
        .expect("overwrite");
    assert_eq!(
        std::fs::read(ltx_file(&root, 0, 2, 2)).expect("read"),
        b"replaced"
    );

    // Deletes: two of three, then everything.
    r.delete_ltx(&files[..2]).await.expect("delete");
    r.delete_ltx(&files[..1])
        .await
        .expect("deleting again is fine");
    assert_eq!(
        r.ltx_files(Level(0))
            .await
            .expect("cached list")
            .iter()
            .map(|f| f.min_txid.0)
            .collect::<Vec<_>>(),
        vec![3]
    );
    let after = replica(&srv, &root);
    assert_eq!(after.ltx_files(Level(0)).await.expect("list").len(), 1);
    assert!(!ltx_file(&root, 0, 1, 1).exists());
    r.delete_all().await.expect("delete all");
    assert!(!root.exists(), "delete_all removes the replica directory");
    assert!(after.ltx_files(Level(9)).await.expect("list").is_empty());
    r.delete_all().await.expect("delete all again");
}

/// OpenSSH answers READDIR with at most 100 names: 1050 files take many pages. Temp files
/// (Litestream's `<name>.<pid>.<nanos>.tmp`), other names and directories are not listed.
#[tokio::test]
#[ignore = "needs the SFTP test server"]
async fn listing_pages_and_ignores_temp_files() {
    let srv = sftp_server();
    let root = srv.unique_path("page");
    let dir = root.join("ltx/1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 1..=1050u64 {
        std::fs::write(dir.join(format!("{i:016x}-{i:016x}.ltx")), i.to_le_bytes()).expect("w");
    }
    for junk in [
        "0000000000000005-0000000000000005.ltx.1234.1700000000000000000.tmp",
        "0000000000000fff-0000000000000fff.ltx.tmp",
        "readme.txt",
        "00000000000000AA-00000000000000AA.ltx",
    ] {
        std::fs::write(dir.join(junk), b"x").expect("junk");
    }
    std::fs::create_dir(dir.join("0000000000000999-0000000000000999.ltx")).expect("dir");
    let r = replica(&srv, &root);
    let files = r.ltx_files(Level(1)).await.expect("list");
    assert_eq!(files.len(), 1050);
    assert!(files
        .iter()
        .enumerate()
        .all(|(i, f)| f.min_txid.0 == i as u64 + 1 && f.max_txid == f.min_txid && f.size == 8));
    r.delete_all().await.expect("cleanup");
    assert!(!root.exists());
}

fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("other_key");
    let o = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success());
    key
}

/// Wrong key, wrong host key, a closed port: errors name the user, host and file, and what is
/// not worth retrying is reported after one connection (counted by a proxy).
#[tokio::test]
#[ignore = "needs the SFTP test server"]
async fn errors_name_the_host_and_file() {
    let srv = sftp_server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = srv.unique_path("err");
    let slow = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(1),
    };
    let proxy = ByteCountingProxy::start(&srv.host);
    let via = proxy.addr.to_string();
    let other = keygen(tmp.path());
    let other_s = other.to_string_lossy().into_owned();
    let r = SftpReplica::with_retry_policy(
        settings(&srv, &root, &[("host", &via), ("key-path", &other_s)]),
        slow,
    );
    let e = r.ltx_files(Level(0)).await.expect_err("unauthorized key");
    let msg = e.to_string();
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(msg.contains(&srv.user) && msg.contains(&via), "{msg}");
    assert!(msg.contains("key-path"), "{msg}");
    assert_eq!(proxy.connections(), 1, "auth errors are not retried");

    let wrong_host_key = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let r = SftpReplica::with_retry_policy(
        settings(
            &srv,
            &root,
            &[("host", &via), ("host-key", wrong_host_key.trim())],
        ),
        slow,
    );
    let e = put_l0(&r, 1, b"x".to_vec(), SystemTime::now())
        .await
        .expect_err("host key mismatch");
    assert!(e.to_string().contains("host key mismatch"), "{e}");
    assert!(e.to_string().contains(&via), "{e}");
    assert_eq!(
        proxy.connections(),
        2,
        "host key mismatches are not retried"
    );
    assert!(!root.exists(), "nothing was written past a bad host key");

    // Without host-key any server key is accepted (Litestream warns and goes on).
    let pairs: Vec<(String, String)> = srv
        .pairs(&root)
        .into_iter()
        .filter(|(k, _)| k != "host-key")
        .collect();
    let r = SftpReplica::new(
        SftpSettings::from_config(None, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("settings"),
    );
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());

    // The server refuses: the replica path runs through a regular file.
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("ltx"), b"not a directory").expect("blocker");
    let r = SftpReplica::with_retry_policy(settings(&srv, &root, &[("host", &via)]), slow);
    let start = Instant::now();
    let e = put_l0(&r, 1, b"x".to_vec(), SystemTime::now())
        .await
        .expect_err("blocked path");
    assert_eq!(proxy.connections(), 3);
    assert_eq!(r.connections_made(), 1);
    assert!(
        e.to_string()
            .contains("ltx/0/0000000000000001-0000000000000001.ltx"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "refusals are not retried"
    );
    std::fs::remove_dir_all(&root).expect("cleanup");

    // Nobody listens: retried, then reported with the host and file.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let host = format!("127.0.0.1:{closed}");
    let r = SftpReplica::with_retry_policy(
        settings(&srv, &root, &[("host", &host)]),
        common::retry(3, 50),
    );
    let e = common::fetch_err(&r, (0, 1, 1), (0, None)).await;
    let msg = e.to_string();
    assert!(msg.contains(&host), "{msg}");
    assert!(
        msg.contains("0000000000000001-0000000000000001.ltx"),
        "{msg}"
    );
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(e.is_transient(), "{e:?}");
}

/// Listings are cached and kept current by our own writes: a second listing, and a listing
/// after a write, send nothing to the server.
#[tokio::test]
#[ignore = "needs the SFTP test server"]
async fn cached_listings_send_nothing() {
    let srv = sftp_server();
    let proxy = ByteCountingProxy::start(&srv.host);
    let root = srv.unique_path("cache");
    let addr = proxy.addr.to_string();
    let r = SftpReplica::with_retry_policy(
        settings(&srv, &root, &[("host", &addr)]),
        common::retry(3, 50),
    );
    assert_eq!(proxy.sent(), 0, "opening connects lazily");
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
    let after_first = proxy.sent();
    assert!(after_first > 0);
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
    assert_eq!(
        proxy.sent(),
        after_first,
        "second listing came from the cache"
    );
    let info = put_l0(&r, 1, b"abc".to_vec(), at_ms(1_750_000_000_500))
        .await
        .expect("write");
    let after_write = proxy.sent();
    assert!(after_write > after_first);
    assert_eq!(r.ltx_files(Level(0)).await.expect("list"), vec![info]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.sent(), after_write, "idle: nothing sent");
    r.invalidate_cache();
    assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 1);
    assert!(proxy.sent() > after_write, "invalidated: listed again");
    r.delete_all().await.expect("cleanup");
}

/// Many writes at once, with `concurrent-writes` on (several connections, pipelined writes)
/// and off (one connection): every file arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the SFTP test server"]
async fn parallel_writes_in_both_modes() {
    let srv = sftp_server();
    for concurrent in ["true", "false"] {
        let root = srv.unique_path(&format!("par-{concurrent}"));
        let r = Arc::new(SftpReplica::with_retry_policy(
            settings(&srv, &root, &[("concurrent-writes", concurrent)]),
            common::retry(3, 50),
        ));
        assert_eq!(r.settings().concurrent_writes, concurrent == "true");
        let mut set = tokio::task::JoinSet::new();
        for i in 1..=12u64 {
            let r = r.clone();
            set.spawn(async move {
                put_l0(
                    &r,
                    i,
                    data(i as u8, 200_000 + i as usize),
                    SystemTime::now(),
                )
                .await
            });
        }
        while let Some(j) = set.join_next().await {
            j.expect("join").expect("write");
        }
        let max_conns = if concurrent == "true" { 4 } else { 1 };
        assert!(r.idle_connections() <= max_conns && r.idle_connections() >= 1);
        for i in 1..=12u64 {
            assert_eq!(
                std::fs::read(ltx_file(&root, 0, i, i)).expect("file"),
                data(i as u8, 200_000 + i as usize),
                "file {i} ({concurrent})"
            );
        }
        r.delete_all().await.expect("cleanup");
    }
}

/// Password login from a `sftp://user:password@host/path` URL, whose path is absolute (as in
/// `litestream restore URL`), and from config keys with a path relative to the login
/// directory; a wrong password is reported at once, without the password.
#[tokio::test]
#[ignore = "needs the SFTP test server"]
async fn password_login_from_a_url() {
    let srv = sftp_server();
    let (user, pw, home) = password_login();
    let rel = format!("replicas/{}", unique_name("pw"));
    let url = format!(
        "sftp://{user}:{pw}@{}{}",
        srv.host,
        home.join(&rel).display()
    );
    let r = SftpReplica::with_retry_policy(
        SftpSettings::from_url(&url).expect("url"),
        common::retry(3, 50),
    );
    put_l0(&r, 1, data(1, 4000), at_ms(1_760_000_000_000))
        .await
        .expect("write");
    assert_eq!(
        std::fs::read(ltx_file(&home.join(&rel), 0, 1, 1)).expect("in the login directory"),
        data(1, 4000)
    );
    let keys = SftpSettings::from_config(
        None,
        [
            ("host", srv.host.as_str()),
            ("user", user.as_str()),
            ("password", pw.as_str()),
            ("path", rel.as_str()),
        ],
    )
    .expect("keys");
    let relative = SftpReplica::with_retry_policy(keys, common::retry(3, 50));
    assert_eq!(
        common::fetch(&relative, (0, 1, 1), (0, None)).await.len(),
        4000
    );

    let bad = format!("sftp://{user}:wrong-{pw}@{}/{rel}", srv.host);
    let r2 = SftpReplica::with_retry_policy(
        SftpSettings::from_url(&bad).expect("url"),
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(2),
        },
    );
    let start = Instant::now();
    let e = r2.ltx_files(Level(0)).await.expect_err("wrong password");
    let msg = e.to_string();
    assert!(
        msg.contains("authentication failed") && msg.contains(&user),
        "{msg}"
    );
    assert!(msg.contains("password") && !msg.contains(&pw), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(2));
    r.delete_all().await.expect("cleanup");
    assert!(!home.join(&rel).exists());
}

/// A server that accepts the connection and never speaks: the handshake times out (after
/// `io_timeout`) instead of hanging, is retried, and the error names the host.
#[tokio::test]
#[ignore = "needs the SFTP test server"]
async fn silent_server_times_out() {
    let srv = sftp_server();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = silent.local_addr().expect("addr").to_string();
    let held = std::thread::spawn(move || {
        // Accept and hold the connections without a word until the test is done.
        let mut conns = Vec::new();
        silent.set_nonblocking(true).expect("nonblocking");
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && conns.len() < 3 {
            if let Ok((c, _)) = silent.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_secs(1));
        conns.len()
    });
    let mut s = settings(&srv, &srv.unique_path("silent"), &[("host", &host)]);
    s.io_timeout = Duration::from_millis(500);
    let r = SftpReplica::with_retry_policy(s, common::retry(3, 50));
    let start = Instant::now();
    let e = r.ltx_files(Level(0)).await.expect_err("silent server");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&host) && msg.contains("gave up after 3 attempts"),
        "{msg}"
    );
    assert_eq!(
        held.join().expect("listener"),
        3,
        "one connection per attempt"
    );
}
