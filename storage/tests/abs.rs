//! The abs backend against a real Azure Blob Storage emulator (Azurite, `tests/abs/start.sh`),
//! which checks Shared Key signatures: write, list, ranged reads, deletes, block uploads,
//! paginated listings, Litestream's blob layout and metadata, error reports, retries and
//! connection drops (through the fault-injecting proxy of the S3 tests), and no requests for a
//! listing nothing has changed.

use crate::common;
use test_support::abs as support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ltx_codec::{Level, TxId};
use storage::abs::{AbsReplica, AbsSettings};
use storage::{Body, LtxName, ReplicaClient, StorageError};

use support::{abs_server, AbsServer};

fn settings(srv: &AbsServer, endpoint: &str, prefix: &str) -> AbsSettings {
    let mut pairs = srv.pairs(prefix);
    for (k, v) in pairs.iter_mut() {
        if k == "endpoint" {
            *v = endpoint.to_owned();
        }
    }
    AbsSettings::from_config(None, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .expect("settings")
}

fn replica(srv: &AbsServer, prefix: &str) -> AbsReplica {
    AbsReplica::with_retry_policy(settings(srv, &srv.endpoint, prefix), common::fast_retry())
        .expect("replica")
}

/// `http://127.0.0.1:<port>` and the account path of the endpoint.
fn split_endpoint(srv: &AbsServer) -> (String, String) {
    let rest = srv.endpoint.trim_start_matches("http://");
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    (format!("http://{hostport}"), format!("/{path}"))
}

/// The S3 tests' proxy in front of Azurite: it only needs a host and port.
async fn proxy(srv: &AbsServer) -> (common::Proxy, String) {
    let (upstream, account_path) = split_endpoint(srv);
    let fake = common::Server {
        endpoint: upstream,
        access_key: String::new(),
        secret_key: String::new(),
        bucket: String::new(),
        data_dir: None,
    };
    let p = common::proxy(&fake).await;
    let endpoint = format!("{}{account_path}", p.endpoint);
    (p, endpoint)
}

/// A replica on a fresh prefix whose requests go through the proxy.
async fn proxied_replica(srv: &AbsServer, name: &str) -> (common::Proxy, AbsReplica) {
    let (p, endpoint) = proxy(srv).await;
    let prefix = srv.unique_prefix(name);
    let r = AbsReplica::with_retry_policy(settings(srv, &endpoint, &prefix), common::fast_retry())
        .expect("replica");
    (p, r)
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn write_list_read_delete() {
    let srv = abs_server();
    let prefix = srv.unique_prefix("rt");
    let r = replica(&srv, &prefix).with_block_size(64 * 1024);
    // Nanoseconds survive the metadata round trip (RFC 3339 with nine digits at most).
    let t = UNIX_EPOCH + Duration::new(1_795_665_906, 229_000_123);
    common::write_l0s(&r, t, |i| data(1000 + i as usize, i as u8)).await;
    // Larger than a block: Put Block x4 + Put Block List, streamed from the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let big = data(200_000, 7);
    let big_path = dir.path().join("big.ltx");
    std::fs::write(&big_path, &big).expect("write big");
    let info = r
        .write_ltx(
            LtxName::new(Level(9), TxId(1), TxId(3)),
            Body::File(big_path),
            t,
        )
        .await
        .expect("write big");
    assert_eq!(info.size, 200_000);

    // A fresh replica (no cache) sees what was written.
    let fresh = replica(&srv, &prefix);
    let files = fresh.ltx_files(Level(0)).await.expect("list");
    assert_eq!(common::sizes(&files), vec![(1, 1001), (2, 1002), (3, 1003)]);
    for f in &files {
        assert_eq!(f.created_at, t + Duration::from_secs(f.min_txid.0), "{f:?}");
    }
    let l9 = fresh.ltx_files(Level(9)).await.expect("list L9");
    assert_eq!((l9.len(), l9[0].size, l9[0].created_at), (1, 200_000, t));
    assert!(fresh
        .ltx_files(Level(5))
        .await
        .expect("absent level")
        .is_empty());

    // Litestream's layout exactly, and its metadata as Get Blob Properties shows it.
    let names = common::listed!(fresh, prefix);
    assert_eq!(
        names,
        vec![
            format!("{prefix}/ltx/0/0000000000000001-0000000000000001.ltx"),
            format!("{prefix}/ltx/0/0000000000000002-0000000000000002.ltx"),
            format!("{prefix}/ltx/0/0000000000000003-0000000000000003.ltx"),
            format!("{prefix}/ltx/9/0000000000000001-0000000000000003.ltx"),
        ]
    );
    let props = fresh
        .blob_properties(Level(9), TxId(1), TxId(3))
        .await
        .expect("properties");
    assert_eq!(props, Some((200_000, Some(t))));

    // Reads: whole, ranges, across block boundaries, empty at the end, past the end.
    let whole = common::fetch(&fresh, (9, 1, 3), (0, None)).await;
    assert!(whole[..] == big[..], "big blob differs");
    let mid = common::fetch(&fresh, (9, 1, 3), (65_000, Some(70_000))).await;
    assert_eq!(&mid[..], &big[65_000..135_000]);
    let tail = common::fetch(&fresh, (0, 2, 2), (1000, None)).await;
    assert_eq!(&tail[..], &data(1002, 2)[1000..]);
    let end = common::fetch(&fresh, (0, 2, 2), (1002, None)).await;
    assert!(end.is_empty());
    for (off, len) in [(1000u64, Some(5u64)), (1003, Some(1)), (5000, None)] {
        let e = common::fetch_err(&fresh, (0, 2, 2), (off, len)).await;
        assert!(!e.is_not_found(), "{e}");
        assert!(
            e.to_string()
                .contains("0000000000000002-0000000000000002.ltx"),
            "{e}"
        );
    }
    let missing = common::fetch_err(&fresh, (0, 9, 9), (0, None)).await;
    assert!(missing.is_not_found(), "{missing}");

    // Deletes: listed files, a file already gone, then everything.
    r.delete_ltx(&files[..2]).await.expect("delete");
    r.delete_ltx(&files[..1]).await.expect("delete again");
    assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 1);
    fresh.invalidate_cache();
    assert_eq!(fresh.ltx_files(Level(0)).await.expect("list").len(), 1);
    fresh.delete_all().await.expect("delete all");
    assert!(fresh
        .list_prefix(&format!("{prefix}/"))
        .await
        .expect("list")
        .is_empty());
    r.invalidate_cache();
    assert!(r.ltx_files(Level(9)).await.expect("list").is_empty());
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn listing_follows_markers_across_pages() {
    let srv = abs_server();
    let prefix = srv.unique_prefix("pages");
    let r = std::sync::Arc::new(replica(&srv, &prefix).with_list_page_size(50));
    let n = 260u64;
    let mut set = tokio::task::JoinSet::new();
    for i in 1..=n {
        let r = r.clone();
        set.spawn(async move {
            common::write(
                &*r,
                1,
                (i, i),
                vec![i as u8; 10],
                UNIX_EPOCH + Duration::from_secs(i),
            )
            .await
        });
        if set.len() >= 16 {
            set.join_next()
                .await
                .expect("task")
                .expect("join")
                .expect("write");
        }
    }
    while let Some(j) = set.join_next().await {
        j.expect("join").expect("write");
    }
    // Create Container on one that exists is fine (tests and tooling call it freely).
    r.create_container().await.expect("container exists");
    let before = storage::metrics::stats("abs", storage::metrics::Operation::List).total;
    r.invalidate_cache();
    let files = r.ltx_files(Level(1)).await.expect("list");
    let pages = storage::metrics::stats("abs", storage::metrics::Operation::List).total - before;
    assert_eq!(files.len() as u64, n);
    assert!(files.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    assert!(files
        .iter()
        .all(|f| f.created_at == UNIX_EPOCH + Duration::from_secs(f.min_txid.0)));
    // 260 blobs at 50 a page: at least 6 List Blobs requests (other tests may list too).
    assert!(pages >= 6, "{pages} list requests");
    r.delete_all().await.expect("cleanup");
    r.invalidate_cache();
    assert!(r.ltx_files(Level(1)).await.expect("list").is_empty());
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn errors_name_the_problem() {
    let srv = abs_server();
    // Wrong key: Azurite refuses the signature; reported once, not retried.
    let (p, endpoint) = proxy(&srv).await;
    let mut s = settings(&srv, &endpoint, "bad-key");
    s.account_key = Some("d3Jvbmcga2V5IHdyb25nIGtleQ==".into());
    let r = AbsReplica::with_retry_policy(s, common::fast_retry()).expect("replica");
    let e = r.ltx_files(Level(0)).await.expect_err("wrong key");
    let msg = e.to_string();
    assert!(
        // Azure says AuthenticationFailed, Azurite AuthorizationFailure.
        (msg.contains("AuthenticationFailed") || msg.contains("AuthorizationFailure"))
            && msg.contains("403")
            && msg.contains("account-key"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("abs://{}/bad-key/ltx/0/", srv.container)),
        "{msg}"
    );
    assert_eq!(p.state.request_count(), 1, "a refused key was retried");
    let e = common::write(&r, 0, (1, 1), b"x", SystemTime::now())
        .await
        .expect_err("wrong key write");
    assert!(
        e.to_string()
            .contains("bad-key/ltx/0/0000000000000001-0000000000000001.ltx"),
        "{e}"
    );

    // Missing container: named, with a hint.
    let mut s = settings(&srv, &srv.endpoint, "p");
    s.container = "no-such-container".into();
    let r = AbsReplica::with_retry_policy(s, common::fast_retry()).expect("replica");
    let e = r.ltx_files(Level(0)).await.expect_err("no container");
    let msg = e.to_string();
    assert!(
        msg.contains("ContainerNotFound") && msg.contains("no-such-container"),
        "{msg}"
    );

    // No credentials at all (and none in the environment): the keys are named, no request.
    if std::env::var_os("LITESTREAM_AZURE_ACCOUNT_KEY").is_none()
        && std::env::var_os("LITESTREAM_AZURE_SAS_TOKEN").is_none()
    {
        let (p, endpoint) = proxy(&srv).await;
        let mut s = settings(&srv, &endpoint, "p");
        s.account_key = None;
        let r = AbsReplica::with_retry_policy(s, common::fast_retry()).expect("open needs no key");
        let msg = r.ltx_files(Level(0)).await.expect_err("no key").to_string();
        assert!(
            msg.contains("account-key") && msg.contains("sas-token"),
            "{msg}"
        );
        assert_eq!(p.state.request_count(), 0);
    }

    // Nothing listens: connection refused is retried, then reported with the container.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let r = AbsReplica::with_retry_policy(
        settings(
            &srv,
            &format!("http://127.0.0.1:{port}/devstoreaccount1"),
            "p",
        ),
        common::fast_retry(),
    )
    .expect("replica");
    let msg = common::fetch_err(&r, (0, 1, 1), (0, None))
        .await
        .to_string();
    assert!(msg.contains("connect") && msg.contains("abs://"), "{msg}");
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn transient_failures_are_retried() {
    let srv = abs_server();
    let (p, r) = proxied_replica(&srv, "retry").await;
    let body = data(50_000, 3);
    // Two 503s, then the upload goes through.
    p.state.fail_next(2);
    common::write(&r, 0, (1, 1), body.clone(), SystemTime::now())
        .await
        .expect("write after 503s");
    assert_eq!(p.state.request_count(), 3);
    // A response cut mid-body: the read is sent again.
    p.state.cut_next_response(20_000);
    let got = common::fetch(&r, (0, 1, 1), (0, None)).await;
    assert!(got[..] == body[..]);
    // More 503s than attempts: reported, naming the blob.
    p.state.fail_next(100);
    let e = common::fetch_err(&r, (0, 1, 1), (0, Some(10))).await;
    assert!(
        e.to_string()
            .contains("ltx/0/0000000000000001-0000000000000001.ltx")
            && e.to_string().contains("503"),
        "{e}"
    );
    p.state.fail_next(0);
    r.delete_all().await.expect("cleanup");
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn unchanged_listings_make_no_requests() {
    let srv = abs_server();
    let (p, r) = proxied_replica(&srv, "idle").await;
    assert_eq!(p.state.request_count(), 0, "opening made requests");
    r.ltx_files(Level(0)).await.expect("list");
    let info = common::write(&r, 0, (1, 1), b"abc", SystemTime::now())
        .await
        .expect("write");
    let n = p.state.request_count();
    for level in [0u8, 0, 0] {
        let files = r.ltx_files(Level(level)).await.expect("cached list");
        assert_eq!(files, vec![info.clone()]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.state.request_count(), n, "requests while nothing changed");
    r.delete_ltx(&[info]).await.expect("delete");
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
    assert_eq!(p.state.request_count(), n + 1);
    // Another writer's files show after invalidate_cache.
    let other = replica(&srv, r.path());
    common::write(&other, 0, (2, 2), b"de", SystemTime::now())
        .await
        .expect("write");
    r.invalidate_cache();
    assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 1);
    other.delete_all().await.expect("cleanup");
}

#[test]
fn url_and_config_entry_points() {
    let u = storage::ReplicaUrl::parse("abs://acct@cont/db").expect("url");
    assert_eq!(u.kind(), "abs");
    let u = storage::ReplicaUrl::from_config(
        "abs",
        None,
        [("bucket", "cont"), ("path", "db"), ("account-name", "a")],
    )
    .expect("config");
    assert_eq!(u.kind(), "abs");
    assert!(u.open().is_ok(), "open needs no network");
    let e = storage::ReplicaUrl::from_config("abs", Some("abs://c/p"), [("bucket", "b")])
        .expect_err("url & bucket");
    assert!(e.is_invalid_config(), "{e}");
}

/// An account SAS token for the test account (Blob service, every resource type), made as
/// the Azure documentation lays out its string to sign (version 2020-12-06 and later).
fn account_sas(srv: &AbsServer, permissions: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (sv, ss, srt, se, spr) = (
        "2021-12-02",
        "b",
        "sco",
        "2099-01-01T00:00:00Z",
        "https,http",
    );
    let sts = format!(
        "{}\n{permissions}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{sv}\n\n",
        srv.account
    );
    let key = b64.decode(&srv.key).expect("account key");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(sts.as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "sv={sv}&ss={ss}&srt={srt}&sp={permissions}&se={}&spr={}&sig={}",
        enc(se),
        enc(spr),
        enc(&sig)
    )
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn sas_tokens_authenticate() {
    let srv = abs_server();
    let prefix = srv.unique_prefix("sas");
    let with_sas = |token: String| {
        let mut s = settings(&srv, &srv.endpoint, &prefix);
        // A SAS alone is enough: no account key, and the account only in the endpoint.
        s.account_key = None;
        s.account_name = None;
        s.sas_token = Some(token.into());
        AbsReplica::with_retry_policy(s, common::fast_retry()).expect("replica")
    };
    let r = with_sas(format!("?{}", account_sas(&srv, "rwdlac")));
    let t = UNIX_EPOCH + Duration::from_millis(1_795_665_906_229);
    common::write(&r, 0, (1, 1), data(3000, 1), t)
        .await
        .expect("write with SAS");
    let files = r.ltx_files(Level(0)).await.expect("list with SAS");
    assert_eq!((files.len(), files[0].created_at), (1, t));
    let got = common::fetch(&r, (0, 1, 1), (100, Some(200))).await;
    assert_eq!(&got[..], &data(3000, 1)[100..300]);

    // Read-only: listing works, a write is refused once and names the blob.
    let ro = with_sas(account_sas(&srv, "rl"));
    assert_eq!(ro.ltx_files(Level(0)).await.expect("list").len(), 1);
    let e = common::write(&ro, 0, (2, 2), b"x", t)
        .await
        .expect_err("read-only SAS");
    let msg = e.to_string();
    assert!(
        msg.contains("403") && msg.contains("ltx/0/0000000000000002-0000000000000002.ltx"),
        "{msg}"
    );

    // A tampered signature is refused.
    let bad = account_sas(&srv, "rwdlac").replace("&sig=", "&sig=AAAA");
    let e = with_sas(bad)
        .ltx_files(Level(0))
        .await
        .expect_err("bad SAS");
    assert!(e.to_string().contains("403"), "{e}");

    r.delete_all().await.expect("cleanup");
    r.invalidate_cache();
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
}

async fn collect(
    r: &AbsReplica,
    min: u64,
    offset: u64,
    len: u64,
    max: u64,
) -> Result<Vec<u8>, StorageError> {
    let mut s = r
        .read_range_stream(LtxName::l0(TxId(min)), offset, len)
        .await?;
    let mut out = Vec::new();
    while let Some(p) = s.next_piece(max).await? {
        assert!(!p.is_empty() && p.len() as u64 <= max);
        out.extend_from_slice(&p);
    }
    Ok(out)
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn streamed_reads_resume_and_stop_at_the_end() {
    let srv = abs_server();
    let (p, r) = proxied_replica(&srv, "stream").await;
    let body = data(300_000, 9);
    common::write(&r, 0, (1, 1), body.clone(), SystemTime::now())
        .await
        .expect("write");
    let before = p.state.request_count();
    let got = collect(&r, 1, 1000, 250_000, 7_000).await.expect("stream");
    assert!(got[..] == body[1000..251_000]);
    assert_eq!(p.state.request_count() - before, 1, "one GET for the range");
    // A connection cut mid-body: the rest is asked for from where it broke.
    p.state.cut_next_response(100_000);
    let before = p.state.request_count();
    let got = collect(&r, 1, 0, 300_000, 1 << 20).await.expect("resumed");
    assert!(got[..] == body[..], "resumed stream differs");
    let heads = p.state.heads();
    assert_eq!(heads.len() - before, 2, "{heads:?}");
    let resume = heads.last().expect("resume request").to_ascii_lowercase();
    assert!(
        resume.contains("if-match") && resume.contains("x-ms-range: bytes="),
        "{resume}"
    );
    // Past the end: an error, at the start or when the body ends early.
    for (off, len) in [(299_000u64, 2_000u64), (300_000, 1), (400_000, 10)] {
        let e = collect(&r, 1, off, len, 1 << 20)
            .await
            .expect_err("past the end");
        assert!(!e.is_not_found(), "{e}");
        assert!(e.to_string().contains("past the end"), "{e}");
    }
    assert!(collect(&r, 1, 300_000, 0, 10)
        .await
        .expect("empty range")
        .is_empty());
    let e = collect(&r, 2, 0, 10, 10).await.expect_err("missing");
    assert!(e.is_not_found(), "{e}");
    r.delete_all().await.expect("cleanup");
}

/// An Azurite of this test's own (so that it can be stopped without disturbing the others),
/// keeping its data in `dir` across restarts.
struct OwnAzurite(std::process::Child);

impl OwnAzurite {
    fn start(dir: &std::path::Path, port: u16) -> OwnAzurite {
        let child = std::process::Command::new("azurite-blob")
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir)
            .args([
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = child.expect("this test needs azurite-blob (tests/abs/install.sh)");
        let server = OwnAzurite(child);
        // Node starts slowly on a loaded machine (other suites run beside this one).
        for _ in 0..1200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("azurite did not start on port {port}");
    }
}

impl Drop for OwnAzurite {
    /// SIGTERM, so that Azurite saves its blob index before exiting; SIGKILL if it lingers.
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs the Azurite test server"]
async fn reconnects_after_the_server_restarts() {
    let srv = abs_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let server = OwnAzurite::start(dir.path(), port);
    let endpoint = format!("http://127.0.0.1:{port}/{}", srv.account);
    let r =
        AbsReplica::with_retry_policy(settings(&srv, &endpoint, "restart"), common::fast_retry())
            .expect("replica");
    r.create_container().await.expect("create container");
    let body = Bytes::from(data(20_000, 5));
    common::write(&r, 0, (1, 1), body.clone(), SystemTime::now())
        .await
        .expect("write");
    let got = common::fetch(&r, (0, 1, 1), (0, None)).await;
    assert_eq!(got, body);

    // Restarted between two requests: the pooled connection is dead, a new one is made.
    drop(server);
    let server = OwnAzurite::start(dir.path(), port);
    let got = common::fetch(&r, (0, 1, 1), (0, None)).await;
    assert_eq!(got, body);

    // Down: reported (after retries) as a connection failure naming the blob.
    drop(server);
    let e = common::fetch_err(&r, (0, 1, 1), (0, None)).await;
    assert!(
        e.to_string()
            .contains("restart/ltx/0/0000000000000001-0000000000000001.ltx"),
        "{e}"
    );

    // Back up on the same port.
    let _server = OwnAzurite::start(dir.path(), port);
    let got = common::fetch(&r, (0, 1, 1), (0, None)).await;
    assert_eq!(got, body);
    common::write(&r, 0, (2, 2), b"after", SystemTime::now())
        .await
        .expect("write after restart");
    r.invalidate_cache();
    assert_eq!(r.ltx_files(Level(0)).await.expect("list").len(), 2);
}
