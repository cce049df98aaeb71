//! Unit tests of the Azure client: credentials, signing, errors and listings.

use super::*;

fn settings(extra: &[(&str, &str)]) -> AbsSettings {
    let mut pairs = vec![
        ("account-name", "devstoreaccount1"),
        ("bucket", "cont"),
        ("endpoint", "http://127.0.0.1:10000/devstoreaccount1"),
    ];
    pairs.extend_from_slice(extra);
    AbsSettings::from_config(None, pairs).expect("settings")
}

#[test]
fn credentials_and_errors() {
    // SAS wins over a key, with or without its leading '?'.
    let c = AbsClient::new(
        &settings(&[("sas-token", "?sv=1&sig=x"), ("account-key", "a2V5")]),
        RetryPolicy::default(),
        1,
    )
    .expect("client");
    assert!(matches!(&c.auth, Auth::Sas(t) if t == "sv=1&sig=x"));
    let req = Request::new("get blob", Method::GET, Some("db/ltx/0/x.ltx"));
    let r = c.build(&req, ReqBody::Empty, None).expect("build");
    assert_eq!(
        r.uri().to_string(),
        "/devstoreaccount1/cont/db/ltx/0/x.ltx?sv=1&sig=x"
    );
    assert!(r.headers().get("authorization").is_none());

    let c = AbsClient::new(
        &settings(&[("account-key", "a2V5")]),
        RetryPolicy::default(),
        1,
    )
    .expect("client");
    let r = c.build(&req, ReqBody::Empty, None).expect("build");
    let auth = r.headers().get("authorization").expect("auth");
    assert!(auth
        .to_str()
        .is_ok_and(|a| a.starts_with("SharedKey devstoreaccount1:")));

    if std::env::var_os(ENV_ACCOUNT_KEY).is_none() && std::env::var_os(ENV_SAS_TOKEN).is_none() {
        // Neither: the process's Entra ID identity signs with a bearer token.
        let c = AbsClient::new(&settings(&[]), RetryPolicy::default(), 1).expect("client");
        let r = c.build(&req, ReqBody::Empty, Some("tok")).expect("build");
        assert_eq!(r.headers()["authorization"], "Bearer tok");
        assert!(c.build(&req, ReqBody::Empty, None).is_err());
    }

    let e = c.status_error(
        &req,
        StatusCode::FORBIDDEN,
        &HeaderMap::new(),
        b"\xef\xbb\xbf<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1</Message></Error>",
    );
    assert!(!e.is_retryable());
    assert_eq!(e.kind, ErrorKind::Auth);
    let s = e.to_string();
    assert!(
        s.contains("abs://cont/db/ltx/0/x.ltx") && s.contains("account-key"),
        "{s}"
    );
    let mut h = HeaderMap::new();
    h.insert("x-ms-error-code", "ServerBusy".parse().expect("hv"));
    assert!(c
        .status_error(&req, StatusCode::SERVICE_UNAVAILABLE, &h, b"")
        .is_retryable());
    let e = c.status_error(&req, StatusCode::NOT_FOUND, &HeaderMap::new(), b"");
    assert!(e.is_not_found());
}

#[test]
fn listing() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="cont"><Prefix>db/ltx/0/</Prefix><MaxResults>2</MaxResults><Blobs><Blob><Name>db/ltx/0/0000000000000001-0000000000000001.ltx</Name><Properties><Creation-Time>Sun, 06 Nov 1994 08:49:37 GMT</Creation-Time><Content-Length>575</Content-Length><BlobType>BlockBlob</BlobType></Properties><Metadata><litestreamtimestamp>2026-11-26T12:00:01.5Z</litestreamtimestamp></Metadata></Blob><Blob><Name>db/ltx/0/a&amp;b</Name><Properties><Creation-Time>Sun, 06 Nov 1994 08:49:37 GMT</Creation-Time><Content-Length>3</Content-Length></Properties><Metadata/></Blob></Blobs><NextMarker>2!84!abc</NextMarker></EnumerationResults>"#;
    let (blobs, next) = parse_list(xml).expect("parse");
    assert_eq!(blobs.len(), 2);
    assert_eq!(blobs[0].size, 575);
    assert_eq!(
        blobs[0].created_at,
        crate::timefmt::parse_rfc3339("2026-11-26T12:00:01.5Z")
    );
    assert_eq!(blobs[1].name, "db/ltx/0/a&b");
    assert_eq!(
        blobs[1].created_at,
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777))
    );
    assert_eq!(next.as_deref(), Some("2!84!abc"));
    let (blobs, next) =
        parse_list("<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>")
            .expect("empty");
    assert!(blobs.is_empty() && next.is_none());
    assert!(parse_list("<Error/>").is_err());
}
