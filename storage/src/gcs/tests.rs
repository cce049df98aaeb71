//! Unit tests: URL and config parsing, credentials (service-account JWT, user refresh token,
//! metadata server) against a tiny local token endpoint, and retries against a local server
//! that fails on purpose. The real API is exercised by `storage/tests/gcs.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::auth::{Credentials, TokenSource};
use super::*;
use crate::transport::jwt::parse_private_key;
use crate::{LtxName, ReplicaClient, ReplicaUrl};

/// `external_account` and `impersonated_service_account` credentials.
mod federation;

#[test]
fn urls_parse_as_litestream_parses_them() {
    let s = GcsSettings::from_url("gs://bkt/a/b").expect("url");
    assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bkt", "a/b"));
    assert_eq!(s.endpoint, None);
    assert_eq!(GcsSettings::from_url("gs://bkt").expect("url").path, ".");
    assert_eq!(GcsSettings::from_url("gs://bkt/").expect("url").path, "");
    assert_eq!(
        GcsSettings::from_url("gs://bkt//x/./y/../z/?ignored=1")
            .expect("url")
            .path,
        "x/z"
    );
    assert_eq!(
        GcsSettings::from_url("gs://bkt/a%20b").expect("url").path,
        "a b"
    );
    for bad in [
        "gs:///db",
        "gs://user@bkt/db",
        "s3://bkt/db",
        "gs://bkt/%zz",
    ] {
        let e = GcsSettings::from_url(bad).expect_err(bad);
        assert!(e.to_string().contains(bad), "{e}");
    }
    let u = ReplicaUrl::parse("gs://bkt/db").expect("dispatch");
    assert_eq!(u.kind(), "gs");
}

#[test]
fn config_entries() {
    let s = GcsSettings::from_config(None, [("bucket", "bkt"), ("path", "db/x")]).expect("cfg");
    assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bkt", "db/x"));
    // Keys of other backends (global defaults, say) are ignored.
    let s = GcsSettings::from_config(None, [("region", "x"), ("bucket", "b"), ("path", "p")])
        .expect("cfg");
    assert_eq!(s.bucket, "b");
    // The entry's own keys come after the defaults and win.
    let s = GcsSettings::from_config(None, [("bucket", "global"), ("bucket", "own")]).expect("cfg");
    assert_eq!(s.bucket, "own");
    let s = GcsSettings::from_config(Some("gs://ub/up"), [("region", "x")]).expect("url");
    assert_eq!((s.bucket.as_str(), s.path.as_str()), ("ub", "up"));
    for (url, keys, want) in [
        (None, vec![("path", "p")], "bucket required"),
        (Some("gs://b/p"), vec![("path", "q")], "url & path"),
        (Some("gs://b/p"), vec![("bucket", "c")], "url & bucket"),
        (Some("gs:///p"), vec![], "gs:///p"),
    ] {
        let e = GcsSettings::from_config(url, keys).expect_err(want);
        assert!(e.to_string().contains(want), "{e}");
    }
    let u = ReplicaUrl::from_config("gs", None, [("bucket", "b"), ("path", "p")]).expect("cfg");
    assert_eq!(u.kind(), "gs");
}

#[test]
fn go_path_clean() {
    for (input, want) in [
        ("", "."),
        (".", "."),
        ("a//b/./c/", "a/b/c"),
        ("/a/../../b", "/b"),
        ("../a", "../a"),
        ("a/../..", ".."),
        ("/", "/"),
    ] {
        assert_eq!(clean_path(input), want, "{input:?}");
    }
}

#[tokio::test]
async fn open_makes_no_connection() {
    // A port nothing listens on: opening must still succeed, since nothing is sent yet.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let mut s = GcsSettings::from_url("gs://bkt/db").expect("url");
    s.endpoint = Some(format!("http://127.0.0.1:{port}"));
    let r = open(s).expect("open");
    assert_eq!(r.kind(), "gs");
}

/// One request as the local server saw it.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn path(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or_default()
    }
}

/// What the handler answers: status and body, or `None` to drop the connection unanswered.
type Handler = dyn Fn(&Seen) -> Option<(u16, String)> + Send + Sync;

/// A keep-alive HTTP/1.1 server on 127.0.0.1; returns its URL and the requests it saw.
async fn serve(handler: Arc<Handler>) -> (String, Arc<StdMutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(StdMutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (handler, log) = (handler.clone(), log.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let mut req = Seen {
                        head,
                        body: Vec::new(),
                    };
                    let len: usize = req
                        .header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    buf.drain(..end + 4);
                    while buf.len() < len {
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    req.body = buf.drain(..len).collect();
                    log.lock().expect("log").push(req.clone());
                    let Some((status, body)) = handler(&req) else {
                        return;
                    };
                    // "HDRS:<lines>\n\n" before a body adds response headers.
                    let (extra, body) = match body.strip_prefix("HDRS:") {
                        Some(rest) => {
                            let (h, b) = rest.split_once("\n\n").unwrap_or((rest, ""));
                            (format!("{h}\r\n"), b.to_owned())
                        }
                        None => (String::new(), body),
                    };
                    // "CUT:" bodies promise more than they send, then the connection drops.
                    let (body, cut) = match body.strip_prefix("CUT:") {
                        Some(b) => (b.to_owned(), 1000),
                        None => (body, 0),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         X-Goog-Generation: 7\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                        body.len() + cut
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() || cut > 0 {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

fn test_replica(endpoint: &str, auth: TokenSource) -> GcsReplica {
    let s = GcsSettings {
        source: "gs://bkt/db".into(),
        bucket: "bkt".into(),
        path: "db".into(),
        endpoint: None,
    };
    GcsReplica::build(s, endpoint, auth, fast()).expect("replica")
}

/// A fresh 2048-bit RSA key in PKCS#8 PEM, made with openssl.
fn rsa_pem() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("key.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("run openssl");
    assert!(
        st.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read_to_string(&path).expect("read key")
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

const EMPTY_LIST: &str = r#"{"kind":"storage#objects"}"#;

#[tokio::test]
async fn service_account_jwt_is_signed_exchanged_and_cached() {
    let pem = rsa_pem();
    let public = parse_private_key(&pem)
        .expect("key")
        .public()
        .as_ref()
        .to_vec();
    let tokens = Arc::new(AtomicUsize::new(0));
    let t2 = tokens.clone();
    let (url, seen) = serve(Arc::new(move |req: &Seen| {
        if req.path() == "/token" {
            let f = form(&req.body);
            assert_eq!(
                f.get("grant_type").map(String::as_str),
                Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
            );
            let jwt = f.get("assertion").cloned().unwrap_or_default();
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3, "{jwt}");
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let sig = b64.decode(parts[2]).expect("signature");
            let key = ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                public.clone(),
            );
            if key
                .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
                .is_err()
            {
                return Some((400, r#"{"error":"invalid_grant"}"#.into()));
            }
            let header: serde_json::Value =
                serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("json");
            let claims: serde_json::Value =
                serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
            assert_eq!(header["alg"], "RS256");
            assert_eq!(claims["iss"], "ls@proj.iam.gserviceaccount.com");
            assert_eq!(claims["scope"], auth::SCOPE);
            assert!(claims["aud"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/token"));
            assert_eq!(
                claims["exp"].as_u64().unwrap_or(0),
                claims["iat"].as_u64().unwrap_or(1) + 3600
            );
            let n = t2.fetch_add(1, Ordering::SeqCst) + 1;
            return Some((
                200,
                format!(r#"{{"access_token":"tok-{n}","expires_in":3599,"token_type":"Bearer"}}"#),
            ));
        }
        match req.header("authorization").as_deref() {
            Some("Bearer tok-1") => Some((200, EMPTY_LIST.into())),
            _ => Some((401, r#"{"error":{"code":401,"message":"no token"}}"#.into())),
        }
    }))
    .await;
    let json = serde_json::json!({
        "type": "service_account",
        "client_email": "ls@proj.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": format!("{url}/token"),
    });
    let creds = Credentials::from_json(json.to_string().as_bytes(), "test.json").expect("creds");
    let r = test_replica(&url, TokenSource::with_credentials(creds));
    for _ in 0..3 {
        r.invalidate_cache();
        assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 1, "the token is cached");
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 4);
    assert!(seen[1]
        .path()
        .starts_with("/storage/v1/b/bkt/o?prefix=db%2Fltx%2F0%2F"));
}

#[tokio::test]
async fn user_and_metadata_credentials() {
    let (url, seen) = serve(Arc::new(|req: &Seen| {
        let p = req.path();
        if p == "/token" {
            let f = form(&req.body);
            let ok = f.get("grant_type").map(String::as_str) == Some("refresh_token")
                && f.get("refresh_token").map(String::as_str) == Some("rt")
                && f.get("client_id").map(String::as_str) == Some("cid");
            return Some(if ok {
                (
                    200,
                    r#"{"access_token":"user-tok","expires_in":3600}"#.into(),
                )
            } else {
                (400, r#"{"error":"invalid_grant"}"#.into())
            });
        }
        if p.starts_with("/computeMetadata/") {
            return Some(
                if req.header("metadata-flavor").as_deref() == Some("Google") {
                    (200, r#"{"access_token":"md-tok","expires_in":3600}"#.into())
                } else {
                    (403, "missing flavor".into())
                },
            );
        }
        match req.header("authorization").as_deref() {
            Some("Bearer user-tok") | Some("Bearer md-tok") => Some((200, EMPTY_LIST.into())),
            _ => Some((401, "{}".into())),
        }
    }))
    .await;
    let user = serde_json::json!({
        "type": "authorized_user",
        "client_id": "cid",
        "client_secret": "cs",
        "refresh_token": "rt",
        "token_uri": format!("{url}/token"),
    });
    let creds = Credentials::from_json(user.to_string().as_bytes(), "adc.json").expect("creds");
    let r = test_replica(&url, TokenSource::with_credentials(creds));
    r.ltx_files(Level(0)).await.expect("list with a user token");
    let r = test_replica(
        &url,
        TokenSource::with_credentials(Credentials::Metadata(url.clone())),
    );
    r.ltx_files(Level(0))
        .await
        .expect("list with a metadata token");
    let paths: Vec<String> = seen
        .lock()
        .expect("log")
        .iter()
        .map(|s| s.path().to_owned())
        .collect();
    assert_eq!(paths[0], "/token");
    assert_eq!(
        paths[2],
        "/computeMetadata/v1/instance/service-accounts/default/token"
    );
}

#[tokio::test]
async fn refused_credentials_are_reported_once() {
    let (url, seen) = serve(Arc::new(|req: &Seen| {
        Some(if req.path() == "/token" {
            (
                400,
                r#"{"error":"invalid_grant","error_description":"Bad Request"}"#.into(),
            )
        } else {
            (200, EMPTY_LIST.into())
        })
    }))
    .await;
    let user = serde_json::json!({
        "type": "authorized_user", "client_id": "c", "client_secret": "s",
        "refresh_token": "revoked", "token_uri": format!("{url}/token"),
    });
    let creds = Credentials::from_json(user.to_string().as_bytes(), "adc.json").expect("creds");
    let r = test_replica(&url, TokenSource::with_credentials(creds));
    let e = r.ltx_files(Level(0)).await.expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("gs://bkt") && msg.contains("invalid_grant") && msg.contains("400"),
        "{msg}"
    );
    assert_eq!(seen.lock().expect("log").len(), 1, "not retried");
}

#[test]
fn credential_files() {
    for (json, want) in [
        (r#"{"type":"gdch_service_account"}"#, "not supported"),
        (
            r#"{"type":"service_account","client_email":"x"}"#,
            "private_key",
        ),
        (
            r#"{"type":"service_account","client_email":"x","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
            "RSA",
        ),
        (r#"{"type":"authorized_user"}"#, "refresh_token"),
        ("not json", "not a Google credentials file"),
    ] {
        let e = Credentials::from_json(json.as_bytes(), "/etc/adc.json").expect_err(want);
        assert!(e.contains(want) && e.contains("/etc/adc.json"), "{e}");
    }
    let ok = Credentials::from_json(
        br#"{"type":"authorized_user","client_id":"c","refresh_token":"r"}"#,
        "x",
    )
    .expect("defaults");
    assert!(matches!(ok, Credentials::AuthorizedUser { token_uri, .. }
        if token_uri == "https://oauth2.googleapis.com/token"));
}

#[tokio::test]
async fn transient_failures_are_retried_others_reported_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (url, seen) = serve(Arc::new(move |req: &Seen| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if req.path().contains("prefix=db%2Fltx%2F1%2F") {
            return Some((403, r#"{"error":{"code":403,"message":"denied"}}"#.into()));
        }
        match n {
            0 => None,
            1 => Some((503, r#"{"error":{"code":503,"message":"backend"}}"#.into())),
            2 => Some((429, "{}".into())),
            _ => Some((200, EMPTY_LIST.into())),
        }
    }))
    .await;
    let r = test_replica(&url, TokenSource::anonymous());
    // Dropped connection, 503, 429, then success.
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
    assert_eq!(seen.lock().expect("log").len(), 4);
    let e = r.ltx_files(Level(1)).await.expect_err("denied");
    assert!(
        e.to_string().contains("403") && e.to_string().contains("gs://bkt"),
        "{e}"
    );
    assert_eq!(seen.lock().expect("log").len(), 5, "a 403 is not retried");
    // An object read that keeps failing: every attempt is made, the error names the object.
    let (url, seen) = serve(Arc::new(|_: &Seen| Some((500, "{}".into())))).await;
    let r = test_replica(&url, TokenSource::anonymous());
    let e = r
        .read_range(LtxName::new(Level(0), TxId(1), TxId(2)), 0, None)
        .await
        .expect_err("500s");
    assert!(
        e.to_string()
            .contains("gs://bkt/db/ltx/0/0000000000000001-0000000000000002.ltx"),
        "{e}"
    );
    assert_eq!(seen.lock().expect("log").len(), 4);
}

#[tokio::test]
async fn streamed_reads_resume_where_the_connection_broke() {
    // The object: 10 000 bytes of digits. The first answer breaks off after 1234 bytes.
    let object: String = (0..10_000)
        .map(|i| char::from(b'0' + (i % 10) as u8))
        .collect();
    let obj = object.clone();
    let (url, seen) = serve(Arc::new(move |req: &Seen| {
        let range = req.header("range").unwrap_or_default();
        let (a, b) = range
            .strip_prefix("bytes=")
            .and_then(|r| r.split_once('-'))
            .map(|(a, b)| {
                (
                    a.parse::<usize>().unwrap_or(0),
                    b.parse::<usize>().unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));
        let body = &obj[a..(b + 1).min(obj.len())];
        if a == 100 {
            return Some((206, format!("CUT:{}", &body[..1234])));
        }
        Some((206, body.to_owned()))
    }))
    .await;
    let r = test_replica(&url, TokenSource::anonymous());
    let mut s = r
        .read_range_stream(LtxName::l0(TxId(1)), 100, 9000)
        .await
        .expect("open");
    let mut got = Vec::new();
    while let Some(p) = s.next_piece(700).await.expect("piece") {
        assert!(p.len() <= 700);
        got.extend_from_slice(&p);
    }
    assert_eq!(got, object.as_bytes()[100..9100].to_vec());
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 2, "one resume");
    assert_eq!(seen[1].header("range").as_deref(), Some("bytes=1334-9099"));
    assert!(
        seen[1].path().contains("generation=7"),
        "{}",
        seen[1].path()
    );
}

#[tokio::test]
async fn resumable_uploads_ask_where_to_go_on_after_a_failed_chunk() {
    const SIZE: usize = 600_000;
    let stored = Arc::new(StdMutex::new(vec![0u8; SIZE]));
    let held = Arc::new(AtomicUsize::new(0));
    let failed_once = Arc::new(AtomicUsize::new(0));
    let (st, h, f) = (stored.clone(), held.clone(), failed_once.clone());
    let url_cell = Arc::new(StdMutex::new(String::new()));
    let u = url_cell.clone();
    let (url, seen) = serve(Arc::new(move |req: &Seen| {
        if req.head.starts_with("POST ") {
            assert!(
                req.path().contains("uploadType=resumable"),
                "{}",
                req.path()
            );
            let meta: serde_json::Value = serde_json::from_slice(&req.body).expect("metadata");
            assert_eq!(
                meta["metadata"]["litestream-timestamp"],
                "2023-11-14T22:13:20.123Z"
            );
            let base = u.lock().expect("url").clone();
            return Some((200, format!("HDRS:Location: {base}/session/1\n\n{{}}")));
        }
        let range = req.header("content-range").unwrap_or_default();
        let spec = range.strip_prefix("bytes ").unwrap_or_default();
        let (span, _total) = spec.split_once('/').unwrap_or(("", ""));
        let have = h.load(Ordering::SeqCst);
        if span == "*" {
            // Status query.
            return Some((308, format!("HDRS:Range: bytes=0-{}\n\n", have - 1)));
        }
        let (a, b) = span.split_once('-').unwrap_or(("0", "0"));
        let (a, b): (usize, usize) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
        assert_eq!(a, have, "chunks continue where the session is");
        if a == 262_144 && f.fetch_add(1, Ordering::SeqCst) == 0 {
            return Some((503, "{}".into()));
        }
        st.lock().expect("store")[a..=b].copy_from_slice(&req.body);
        h.store(b + 1, Ordering::SeqCst);
        if b + 1 == SIZE {
            Some((200, "{}".into()))
        } else {
            Some((308, format!("HDRS:Range: bytes=0-{b}\n\n")))
        }
    }))
    .await;
    *url_cell.lock().expect("url") = url.clone();
    let mut r = test_replica(&url, TokenSource::anonymous());
    r.set_chunk_size(256 * 1024);
    let body: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snap.ltx");
    std::fs::write(&path, &body).expect("write");
    let t = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    r.write_ltx(
        LtxName::new(Level(9), TxId(1), TxId(5)),
        crate::Body::File(path),
        t,
    )
    .await
    .expect("upload");
    assert_eq!(*stored.lock().expect("store"), body);
    let ranges: Vec<String> = seen
        .lock()
        .expect("log")
        .iter()
        .filter_map(|s| s.header("content-range"))
        .collect();
    assert_eq!(
        ranges,
        [
            "bytes 0-262143/*",
            "bytes 262144-524287/*",
            "bytes */600000",
            "bytes 262144-524287/*",
            "bytes 524288-599999/600000",
        ]
    );
}

/// A token endpoint may promise a lifetime no clock can add (`expires_in` near `u64::MAX`):
/// the token is used, not a panic.
#[tokio::test]
async fn a_huge_token_lifetime_is_capped() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let (url, _seen) = serve(Arc::new(move |req: &Seen| {
        if req.path() == "/token" {
            t.fetch_add(1, Ordering::SeqCst);
            return Some((
                200,
                format!(r#"{{"access_token":"tok","expires_in":{}}}"#, u64::MAX),
            ));
        }
        Some(match req.header("authorization").as_deref() {
            Some("Bearer tok") => (200, EMPTY_LIST.into()),
            _ => (401, "{}".into()),
        })
    }))
    .await;
    let creds = format!(
        r#"{{"type":"authorized_user","client_id":"c","refresh_token":"r","token_uri":"{url}/token"}}"#
    );
    let creds = Credentials::from_json(creds.as_bytes(), "adc.json").expect("creds");
    let r = test_replica(&url, TokenSource::with_credentials(creds));
    r.ltx_files(Level(0))
        .await
        .expect("list with a long-lived token");
    r.invalidate_cache();
    r.ltx_files(Level(1)).await.expect("second list");
    assert_eq!(tokens.load(Ordering::SeqCst), 1, "the token is cached");
}
