//! Unit tests of the S3 replica against a loopback server: listings and their errors.

use super::*;
use crate::transport::test_server;

/// A replica of `s3://bkt/db` at a local test server, with keys (never the metadata service).
fn replica_at(url: &str) -> S3Replica {
    let mut s =
        S3Settings::from_url(&format!("s3://bkt/db?endpoint={url}&region=us-east-1")).expect("url");
    s.access_key_id = Some("AKIDTEST".into());
    s.secret_access_key = Some("secret".into());
    S3Replica::new(s).expect("replica")
}

#[tokio::test]
async fn listing_ignores_keys_outside_the_level_and_non_ltx_names() {
    let good = "db/0000/0000000000000001-0000000000000001.ltx";
    let keys = [
        good,
        "db/0000/../../0000000000000002-0000000000000002.ltx",
        "db/0000/..%2f..%2f0000000000000003-0000000000000003.ltx",
        "db/0000/sub/0000000000000004-0000000000000004.ltx",
        "db/0000/../../evil.ltx",
        "db/0000/0000000000000005-0000000000000005.ltx.tmp",
        "db/0000/00000000000000AA-00000000000000AA.ltx",
        "db/0000/readme",
    ];
    let contents: String = keys
        .iter()
        .map(|k| {
            format!(
                "<Contents><Key>{k}</Key><Size>10</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\"?><ListBucketResult><Name>bkt</Name><Prefix>db/0000/</Prefix><KeyCount>{}</KeyCount><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>",
        keys.len()
    );
    let (url, _seen) = test_server::serve(1, move |_| (200, body.clone())).await;
    let r = replica_at(&url);
    let files = r.ltx_files(Level(0)).await.expect("list");
    let names: Vec<String> = files.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["0000000000000001-0000000000000001.ltx"]);
    assert_eq!(r.ltx_key(Level(0), TxId(1), TxId(1)), good);
}

#[tokio::test]
async fn issue14_11_an_unreadable_last_modified_is_an_error_naming_the_object() {
    let key = "db/0000/0000000000000001-0000000000000001.ltx";
    let body = format!(
        "<?xml version=\"1.0\"?><ListBucketResult><Name>bkt</Name><KeyCount>1</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>{key}</Key><Size>10</Size><LastModified>yesterday</LastModified></Contents></ListBucketResult>"
    );
    let (url, _seen) = test_server::serve(1, move |_| (200, body.clone())).await;
    let r = replica_at(&url);
    let e = r.ltx_files(Level(0)).await.expect_err("not 1970");
    assert!(e.to_string().contains(key), "{e}");
    assert!(e.to_string().contains("yesterday"), "{e}");
}

#[tokio::test]
async fn oss_timestamps_are_read_from_either_metadata_prefix() {
    let (url, _seen) = test_server::serve(3, |req| {
        let h = if req.contains("/0000000000000001-") {
            "x-oss-meta-litestream-timestamp: 2026-01-02T03:04:05.5Z"
        } else {
            "x-amz-meta-litestream-timestamp: 2026-01-02T03:04:06Z"
        };
        (200, format!("HDRS:{h}\n\n"))
    })
    .await;
    let open = |scheme: &str| {
        let mut s = S3Settings::from_url(&format!(
            "{scheme}://bkt/db?endpoint={url}&region=us-east-1"
        ))
        .expect("url");
        s.access_key_id = Some("AKIDTEST".into());
        s.secret_access_key = Some("secret".into());
        S3Replica::new(s).expect("replica")
    };
    let (oss, s3) = (open("oss"), open("s3"));
    let at = |secs: u64, ms: u64| {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + ms)
    };
    let one = (Level(0), TxId(1), TxId(1));
    let two = (Level(0), TxId(2), TxId(2));
    // Litestream's OSS client's prefix, then ours.
    let got = oss
        .metadata_timestamp(one.0, one.1, one.2)
        .await
        .expect("oss");
    assert_eq!(got, Some(at(1_767_323_045, 500)));
    let got = oss
        .metadata_timestamp(two.0, two.1, two.2)
        .await
        .expect("amz");
    assert_eq!(got, Some(at(1_767_323_046, 0)));
    // An S3 replica reads only its own.
    let got = s3
        .metadata_timestamp(one.0, one.1, one.2)
        .await
        .expect("s3");
    assert_eq!(got, None);
}
