//! Unit tests of S3 settings: URLs, config keys, providers and their defaults.

use super::*;

fn parse(u: &str) -> S3Settings {
    S3Settings::from_url(u).unwrap_or_else(|e| panic!("{u}: {e}"))
}

#[test]
fn plain_bucket_and_prefix() {
    let s = parse("s3://my-bucket/a/b/../c/");
    assert_eq!(s.bucket, "my-bucket");
    assert_eq!(s.path, "a/c");
    assert_eq!(s.endpoint, None);
    let r = s.resolve().expect("resolve");
    assert!(r.sign_payload && r.require_content_md5 && !r.force_path_style);
    assert_eq!(r.part_size, DEFAULT_PART_SIZE);
    assert_eq!(r.concurrency, DEFAULT_CONCURRENCY);
}

#[test]
fn bucket_root_paths_match_litestream() {
    assert_eq!(parse("s3://b").path, ".");
    assert_eq!(parse("s3://b/").path, "");
    assert_eq!(parse("s3://b/x/").path, "x");
    assert_eq!(parse("s3://b/%20a").path, " a");
}

#[test]
fn query_keys_both_spellings() {
    let s = parse(
        "s3://b/p?endpoint=127.0.0.1:9000&region=eu-west-1&forcePathStyle=false\
         &skip-verify=true&signPayload=false&require-content-md5=false\
         &storageClass=STANDARD_IA&partSize=10485760&concurrency=3",
    );
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s.force_path_style, Some(false));
    assert!(s.skip_verify);
    assert_eq!(s.sign_payload, Some(false));
    assert_eq!(s.require_content_md5, Some(false));
    assert_eq!(s.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(s.part_size, Some(10 << 20));
    assert_eq!(s.concurrency, Some(3));
    assert!(S3Settings::from_url("s3://b/p?partSize=0").is_err());
    assert!(S3Settings::from_url("s3://b/p?concurrency=x").is_err());
}

#[test]
fn endpoint_defaults_to_path_style() {
    let s = parse("s3://b/p?endpoint=https://example.net");
    assert_eq!(s.force_path_style, Some(true));
    assert_eq!(s.endpoint.as_deref(), Some("https://example.net"));
}

#[test]
fn minio_host_port_is_path_style_http() {
    let s = parse("s3://mybkt.localhost:9000/db");
    assert_eq!(s.bucket, "mybkt");
    assert_eq!(s.endpoint.as_deref(), Some("http://localhost:9000"));
    assert_eq!(s.force_path_style, Some(true));
    assert_eq!(s.region.as_deref(), Some(DEFAULT_REGION));
}

#[test]
fn aws_virtual_host_names() {
    let s = parse("s3://bkt.s3.eu-central-1.amazonaws.com/x");
    assert_eq!(
        (s.bucket.as_str(), s.region.as_deref()),
        ("bkt", Some("eu-central-1"))
    );
    let s = parse("s3://bkt.s3.amazonaws.com/x");
    assert_eq!((s.bucket.as_str(), s.region.as_deref()), ("bkt", None));
    let s = parse("s3://bkt.nyc3.digitaloceanspaces.com/x");
    assert_eq!(s.bucket, "bkt");
    assert_eq!(
        s.endpoint.as_deref(),
        Some("https://nyc3.digitaloceanspaces.com")
    );
}

#[test]
fn access_point_arn() {
    let s = parse("s3://arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap/db/prod?region=");
    assert_eq!(
        s.bucket,
        "arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap"
    );
    assert_eq!(s.region.as_deref(), Some("us-west-2"));
    assert_eq!(s.path, "db/prod");
}

#[test]
fn oss_host() {
    let s = parse("oss://bkt.oss-cn-shanghai.aliyuncs.com/db");
    assert_eq!(s.flavor, Flavor::Oss);
    assert_eq!(
        (s.bucket.as_str(), s.region.as_deref()),
        ("bkt", Some("cn-shanghai"))
    );
}

#[test]
fn yaml_keys() {
    let mut s = S3Settings::default();
    s.set("bucket", "b").expect("bucket");
    s.set("part-size", "10MiB").expect("size");
    s.set("sign-payload", "false").expect("bool");
    assert_eq!(s.part_size, Some(10 << 20));
    assert!(s.set("part-sise", "1").is_err());
    assert!(s.set("skip-verify", "maybe").is_err());
    assert_eq!(parse_byte_size("k", "5MB").ok(), Some(5_000_000));
    assert_eq!(parse_byte_size("k", "1.5 KiB").ok(), Some(1536));
    s.part_size = Some(1024);
    assert!(s.resolve().is_err());
}

#[test]
fn yaml_entries() {
    let s = S3Settings::from_config(
        Flavor::S3,
        None,
        [
            ("bucket", "b"),
            ("path", "db"),
            ("endpoint", "http://127.0.0.1:9000"),
            ("part-size", "8MiB"),
            ("account-name", "ignored"),
        ],
    )
    .expect("config");
    assert_eq!((s.bucket.as_str(), s.path.as_str()), ("b", "db"));
    let r = s.resolve().expect("resolve");
    assert!(r.force_path_style, "an endpoint implies path style");
    assert_eq!(r.part_size, 8 << 20);
    let s = S3Settings::from_config(Flavor::S3, Some("s3://b/x"), [("region", "eu-west-1")])
        .expect("url + keys");
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert!(S3Settings::from_config(Flavor::S3, Some("s3://b/x"), [("bucket", "c")]).is_err());
    assert!(S3Settings::from_config(Flavor::S3, None, [("path", "x")]).is_err());
    assert!(
        S3Settings::from_config(Flavor::S3, None, [("bucket", "b"), ("part-size", "x")]).is_err()
    );
}

#[test]
fn sse_rules() {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mut s = S3Settings {
        bucket: "b".into(),
        sse_customer_key: Some(key.clone().into()),
        endpoint: Some("http://10.0.0.1:9000".into()),
        ..S3Settings::default()
    };
    let r = s.resolve().expect("private http allowed");
    assert!(matches!(r.sse, Sse::Customer { ref key_md5, .. } if !key_md5.is_empty()));
    s.endpoint = Some("http://example.com".into());
    assert!(s.resolve().is_err());
    s.endpoint = None;
    s.sse_kms_key_id = Some("k".into());
    assert!(s.resolve().is_err());
    s.sse_customer_key = Some("c2hvcnQ=".into());
    s.sse_kms_key_id = None;
    assert!(s.resolve().is_err());
}

#[test]
fn provider_presets() {
    let s = S3Settings {
        bucket: "b".into(),
        endpoint: Some("https://fly.storage.tigris.dev".into()),
        force_path_style: Some(false),
        ..S3Settings::default()
    };
    let r = s.resolve().expect("tigris");
    assert!(r.tigris && !r.require_content_md5);
    let s = S3Settings {
        bucket: "b".into(),
        endpoint: Some("https://acct.r2.cloudflarestorage.com".into()),
        ..S3Settings::default()
    };
    assert_eq!(s.resolve().expect("r2").concurrency, R2_CONCURRENCY);
}

#[test]
fn backblaze_and_scaleway_hosts() {
    let https = |s: &str| Some(s.to_owned());
    assert_eq!(
        parse_s3_host("Bkt.s3.us-west-004.backblazeb2.com"),
        (
            "Bkt".to_owned(),
            https("us-west-004"),
            https("https://s3.us-west-004.backblazeb2.com"),
            true
        )
    );
    assert_eq!(
        parse_s3_host("s3.us-west-004.backblazeb2.com"),
        (
            String::new(),
            https("us-west-004"),
            https("https://s3.us-west-004.backblazeb2.com"),
            true
        )
    );
    assert_eq!(
        parse_s3_host("bkt.s3.fr-par.scw.cloud"),
        (
            "bkt".to_owned(),
            https("fr-par"),
            https("https://s3.fr-par.scw.cloud"),
            false
        )
    );
    assert_eq!(
        parse_s3_host("s3.nl-ams.scw.cloud").2,
        https("https://s3.nl-ams.scw.cloud")
    );
    // The bare domain names no region: taken as a bucket name, as any other host.
    assert_eq!(
        parse_s3_host("scw.cloud"),
        ("scw.cloud".to_owned(), None, None, false)
    );
}
