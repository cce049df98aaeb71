//! S3 replica settings: the docs/config-and-cli.md#config-file keys, filled from a replica URL (`s3://`, `oss://`) or key by
//! key from the YAML config, then checked and resolved into what the client needs.

use std::path::PathBuf;

use base64::Engine as _;
use md5::{Digest as _, Md5};

use crate::{Result, Secret, StorageError};

/// Litestream's region when nothing says otherwise and an endpoint is set.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Litestream's OSS default region.
pub const OSS_DEFAULT_REGION: &str = "cn-hangzhou";
/// The AWS SDK uploader's default and minimum part size.
pub const DEFAULT_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The smallest `part-size` accepted, in bytes.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The AWS SDK uploader's default parts in flight.
pub const DEFAULT_CONCURRENCY: usize = 5;
/// Litestream lowers concurrency for R2, which rejects many parallel parts.
const R2_CONCURRENCY: usize = 2;

/// Which object store dialect a replica talks to. Both use the same S3 protocol client; OSS
/// differs in its default endpoint and region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    /// Amazon S3 or an S3-compatible service (`s3://`).
    #[default]
    S3,
    /// Alibaba Cloud OSS (`oss://`).
    Oss,
}

impl Flavor {
    /// Backend name as Litestream reports it: "s3" or "oss".
    pub fn kind(self) -> &'static str {
        match self {
            Flavor::S3 => "s3",
            Flavor::Oss => "oss",
        }
    }
}

/// Settings of an S3 (or OSS) replica, named as the docs/config-and-cli.md#config-file config keys. `None` means "not set",
/// so that URL query values, YAML keys and provider defaults can be layered like Litestream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Which dialect: S3 or OSS.
    pub flavor: Flavor,
    /// Access key ID; without it the default credential chain is used
    /// (docs/s3-credentials.md#the-order).
    pub access_key_id: Option<String>,
    /// Secret access key that goes with `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// Signing region; unset, it comes from the endpoint's defaults or is asked of S3
    /// (GetBucketLocation).
    pub region: Option<String>,
    /// The bucket (or access point ARN).
    pub bucket: String,
    /// Key prefix: objects are `<path>/<level %04x>/<file>` exactly as Litestream joins them,
    /// so an empty path gives keys that start with `/` (and `s3://bucket` without a slash gives
    /// `.`, as Go's `path.Clean("")` does); replicas at a bucket root stay shared with Litestream.
    pub path: String,
    /// Service URL of an S3-compatible store; `None` for AWS (or OSS) itself.
    pub endpoint: Option<String>,
    /// Whether the bucket goes in the URL path instead of the host name; `None` decides from
    /// the endpoint (path style for custom endpoints).
    pub force_path_style: Option<bool>,
    /// Whether TLS certificates go unchecked.
    pub skip_verify: bool,
    /// Whether request bodies are hashed into the signature (default: yes).
    pub sign_payload: Option<bool>,
    /// Whether uploads carry a Content-MD5 header (default: yes, except for Tigris).
    pub require_content_md5: Option<bool>,
    /// Storage class of uploaded objects (`x-amz-storage-class`).
    pub storage_class: Option<String>,
    /// Multipart upload part size in bytes; [`DEFAULT_PART_SIZE`] when unset.
    pub part_size: Option<u64>,
    /// Multipart parts uploaded at once; [`DEFAULT_CONCURRENCY`] when unset (2 for R2).
    pub concurrency: Option<usize>,
    /// SSE-C algorithm; only `AES256` (the default) is accepted.
    pub sse_customer_algorithm: Option<String>,
    /// SSE-C key: 32 bytes, base64-encoded.
    pub sse_customer_key: Option<Secret>,
    /// File holding the SSE-C key, read when `sse_customer_key` is unset.
    pub sse_customer_key_path: Option<PathBuf>,
    /// Base64 MD5 of the SSE-C key; computed from the key when unset.
    pub sse_customer_key_md5: Option<String>,
    /// KMS key ID for SSE-KMS; cannot be combined with an SSE-C key.
    pub sse_kms_key_id: Option<String>,
    /// Extra PEM CA certificates trusted besides the webpki roots (`AWS_CA_BUNDLE` is read too).
    pub ca_file: Option<PathBuf>,
}

/// The YAML keys of docs/config-and-cli.md#config-file that belong to S3 (and OSS).
pub const S3_KEYS: &[&str] = &[
    "access-key-id",
    "secret-access-key",
    "region",
    "bucket",
    "path",
    "endpoint",
    "force-path-style",
    "skip-verify",
    "sign-payload",
    "sign-accept-encoding",
    "require-content-md5",
    "storage-class",
    "part-size",
    "concurrency",
    "sse-customer-algorithm",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-kms-key-id",
];

fn invalid(url: &str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::invalid_url(url, reason)
}

fn config_error(msg: impl Into<String>) -> StorageError {
    StorageError::config(format!("s3: {}", msg.into()))
}

/// A boolean setting ([`crate::value::parse_config_bool`]). Anything else is an error here
/// rather than Litestream's silent `false` for a URL query value, because a typo that turns off
/// signature checks should not pass unnoticed.
pub fn parse_bool(key: &str, v: &str) -> Result<bool> {
    crate::value::parse_config_bool(v)
        .ok_or_else(|| config_error(format!("{key}: {v:?} is not a boolean")))
}

/// A byte size ([`crate::value::parse_byte_size`]); zero is refused.
pub fn parse_byte_size(key: &str, v: &str) -> Result<u64> {
    match crate::value::parse_byte_size(v) {
        Ok(0) => Err(config_error(format!("{key}: {v:?} is not a size"))),
        Ok(n) => Ok(n),
        Err(e) => Err(config_error(format!("{key}: {v:?} is not a size: {e}"))),
    }
}

fn parse_positive(key: &str, v: &str) -> Result<u64> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(config_error(format!(
            "invalid value for {key}: {v:?} (must be a positive integer)"
        ))),
    }
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

/// Adds `https://` to an endpoint without a scheme, except for local hosts where Litestream
/// assumes `http://` (MinIO and friends on a developer machine).
pub fn ensure_endpoint_scheme(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint.to_owned();
    }
    let host = endpoint.split(['/', ':']).next().unwrap_or_default();
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || is_private(&ip));
    if local {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

pub(crate) fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The host part of an endpoint URL, for provider detection.
fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or_default()
}

/// Whether an endpoint's host is an IP address (`127.0.0.1:9000`, `[::1]:9000`), not a name.
fn host_is_address(endpoint: &str) -> bool {
    let host = endpoint_host(endpoint);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host.parse::<std::net::IpAddr>().is_ok()
}

/// Provider presets Litestream applies when an endpoint names a known S3-compatible service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Provider {
    pub tigris: bool,
    pub path_style: bool,
    pub r2: bool,
}

fn detect_provider(endpoint: &str) -> Provider {
    let host = endpoint_host(endpoint).to_ascii_lowercase();
    let name = host.split(':').next().unwrap_or_default();
    let tigris = name == "fly.storage.tigris.dev" || name == "t3.storage.dev";
    let b2 = name.ends_with(".backblazeb2.com");
    let filebase = name == "s3.filebase.com";
    let supabase = name.ends_with(".supabase.co");
    let minio = host.contains(':')
        && ![
            ".amazonaws.com",
            ".digitaloceanspaces.com",
            ".backblazeb2.com",
            ".filebase.com",
            ".scw.cloud",
            ".r2.cloudflarestorage.com",
            ".supabase.co",
            "tigris.dev",
        ]
        .iter()
        .any(|s| host.contains(s));
    Provider {
        tigris,
        path_style: b2 || filebase || supabase || minio,
        r2: name.ends_with(".r2.cloudflarestorage.com"),
    }
}

/// What the host of an `s3://` URL says: bucket, maybe region, endpoint and path style.
fn parse_s3_host(host: &str) -> (String, Option<String>, Option<String>, bool) {
    // `bucket.host:port` is a MinIO-style server: path-style over plain HTTP.
    if host.contains(':') && !host.contains(".com") {
        return match host.split_once('.') {
            Some((bucket, rest)) => (
                bucket.to_owned(),
                Some(DEFAULT_REGION.to_owned()),
                Some(format!("http://{rest}")),
                true,
            ),
            None => (String::new(), None, Some(format!("http://{host}")), true),
        };
    }
    let lower = host.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix(".amazonaws.com") {
        // <bucket>.s3.amazonaws.com or <bucket>.s3.<region>.amazonaws.com
        if let Some(i) = stem.rfind(".s3") {
            let bucket = &host[..i];
            let tail = &stem[i + 3..];
            let region = tail.strip_prefix('.').and_then(non_empty);
            if !bucket.is_empty() && (tail.is_empty() || region.is_some()) {
                return (bucket.to_owned(), region, None, false);
            }
        }
    }
    if let Some(stem) = lower.strip_suffix(".digitaloceanspaces.com") {
        let (bucket, region) = stem.rsplit_once('.').unwrap_or(("", stem));
        return (
            host[..bucket.len()].to_owned(),
            non_empty(region),
            Some(format!("https://{region}.digitaloceanspaces.com")),
            false,
        );
    }
    if let Some(stem) = lower.strip_suffix("s3.filebase.com") {
        let bucket = stem.strip_suffix('.').unwrap_or(stem);
        return (
            host[..bucket.len()].to_owned(),
            None,
            Some("https://s3.filebase.com".to_owned()),
            false,
        );
    }
    // Backblaze B2 and Scaleway: `<bucket>.s3.<region>.<domain>`, or `s3.<region>.<domain>`
    // with the bucket in the path.
    for (domain, path_style) in [("backblazeb2.com", true), ("scw.cloud", false)] {
        let Some(stem) = lower.strip_suffix(domain).and_then(|s| s.strip_suffix('.')) else {
            continue;
        };
        if let Some((bucket, region)) = stem
            .rsplit_once(".s3.")
            .or_else(|| stem.strip_prefix("s3.").map(|r| ("", r)))
        {
            return (
                host[..bucket.len()].to_owned(),
                non_empty(region),
                Some(format!("https://s3.{region}.{domain}")),
                path_style,
            );
        }
    }
    (host.to_owned(), None, None, false)
}

/// What the host of an `oss://` URL says: bucket and maybe region.
fn parse_oss_host(host: &str) -> (String, Option<String>) {
    let lower = host.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix(".aliyuncs.com") {
        if let Some((bucket, region)) = stem.split_once(".oss-") {
            let region = region.strip_suffix("-internal").unwrap_or(region);
            return (host[..bucket.len()].to_owned(), non_empty(region));
        }
    }
    (host.to_owned(), None)
}

/// Litestream's URL path handling: `strings.TrimPrefix(path.Clean(p), "/")`.
fn go_clean_trim(p: &str) -> String {
    let cleaned = clean_path(p);
    if cleaned.is_empty() && !p.starts_with('/') {
        ".".to_owned()
    } else {
        cleaned
    }
}

/// `path.Clean` of a path, without leading slash; "" for the root.
fn clean_path(p: &str) -> String {
    crate::gopath::clean_relative(p)
}

/// Decodes a URL query or path part; `+` is a space, as Go's query parsing has it.
fn percent_decode(s: &str) -> Option<String> {
    crate::transport::encode::decode_strict(&s.replace('+', "%20"))
}

fn parse_query(url: &str, q: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| invalid(url, "bad percent-encoding"))?;
        let v = percent_decode(v).ok_or_else(|| invalid(url, "bad percent-encoding"))?;
        out.push((k, v));
    }
    Ok(out)
}

impl S3Settings {
    /// Parses `s3://bucket[.host[:port]]/path?query`, `s3://arn:...:accesspoint/name/path` and
    /// `oss://bucket[.oss-<region>.aliyuncs.com]/path`, as Litestream's URL factories do,
    /// including the `LITESTREAM_S3_ENDPOINT` fallback.
    pub fn from_url(url: &str) -> Result<S3Settings> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "missing scheme"))?;
        let flavor = match scheme {
            "s3" => Flavor::S3,
            "oss" => Flavor::Oss,
            other => return Err(invalid(url, format!("not an S3 URL scheme: {other}"))),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let query = parse_query(url, query)?;

        let mut s = S3Settings {
            flavor,
            ..S3Settings::default()
        };
        let mut endpoint_from_host = None;
        let mut path_style_from_host = false;

        if flavor == Flavor::S3 && before_query.to_ascii_lowercase().starts_with("arn:") {
            // An access point ARN contains '/' after "accesspoint", so it cannot be split at the
            // first slash like a host.
            let lower = before_query.to_ascii_lowercase();
            let marker = ":accesspoint/";
            let idx = lower
                .find(marker)
                .ok_or_else(|| invalid(url, "invalid s3 access point arn"))?;
            let name_start = idx + marker.len();
            let tail = &before_query[name_start..];
            if tail.is_empty() {
                return Err(invalid(url, "invalid s3 access point arn"));
            }
            let (bucket, key) = match tail.find('/') {
                Some(i) => (&before_query[..name_start + i], &tail[i + 1..]),
                None => (before_query, ""),
            };
            s.bucket = bucket.to_owned();
            s.region = bucket.split(':').nth(3).and_then(non_empty);
            s.path = clean_path(key);
        } else {
            let (host, path) = match before_query.split_once('/') {
                Some((h, p)) => (h, format!("/{p}")),
                None => (before_query, String::new()),
            };
            if host.contains('@') {
                return Err(invalid(url, "credentials in an s3 URL are not supported"));
            }
            s.path = go_clean_trim(&percent_decode(&path).ok_or_else(|| invalid(url, "bad path"))?);
            match flavor {
                Flavor::S3 => {
                    let (bucket, region, endpoint, path_style) = parse_s3_host(host);
                    s.bucket = bucket;
                    s.region = region;
                    endpoint_from_host = endpoint;
                    path_style_from_host = path_style;
                }
                Flavor::Oss => {
                    let (bucket, region) = parse_oss_host(host);
                    s.bucket = bucket;
                    s.region = region;
                }
            }
        }

        let mut force_path_style_query = None;
        let mut endpoint_query = None;
        for (k, v) in &query {
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "endpoint" => endpoint_query = Some(ensure_endpoint_scheme(v)),
                "forcePathStyle" | "force-path-style" => {
                    force_path_style_query = Some(parse_bool(k, v)?)
                }
                _ => {
                    s.set(k, v).map_err(|e| invalid(url, e.to_string()))?;
                }
            }
        }

        if let Some(ep) = endpoint_query {
            s.endpoint = Some(ep);
            // A custom endpoint defaults to path style unless the URL says otherwise.
            s.force_path_style = Some(force_path_style_query.unwrap_or(true));
        } else if let Some(ep) = endpoint_from_host {
            s.endpoint = Some(ep);
            s.force_path_style = Some(force_path_style_query.unwrap_or(path_style_from_host));
        } else {
            s.force_path_style = force_path_style_query;
        }
        if s.endpoint.is_none() && flavor == Flavor::S3 {
            if let Some(ep) = std::env::var("LITESTREAM_S3_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty())
            {
                s.endpoint = Some(ensure_endpoint_scheme(&ep));
                if force_path_style_query.is_none() {
                    s.force_path_style = Some(true);
                }
            }
        }
        if s.bucket.is_empty() {
            return Err(invalid(url, "bucket required for s3 replica URL"));
        }
        Ok(s)
    }

    /// Settings of a YAML replica entry, as Litestream's `NewS3ReplicaClientFromConfig` reads
    /// them: an optional `url` (which must not be combined with `bucket` or `path`), then the
    /// backend keys exactly as written in the config. Keys of other backends are ignored, as
    /// Litestream ignores them.
    pub fn from_config<'a>(
        flavor: Flavor,
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<S3Settings> {
        let settings: Vec<(&str, &str)> = settings.into_iter().collect();
        let mut s = match url.filter(|u| !u.is_empty()) {
            Some(u) => {
                for (k, _) in &settings {
                    if *k == "bucket" || *k == "path" {
                        return Err(config_error(format!(
                            "cannot specify url & {k} for {} replica",
                            flavor.kind()
                        )));
                    }
                }
                S3Settings::from_url(u)?
            }
            None => S3Settings {
                flavor,
                ..S3Settings::default()
            },
        };
        for (k, v) in settings {
            match s.set(k, v) {
                Ok(()) => {}
                Err(_) if !S3_KEYS.contains(&k) => {
                    tracing::debug!(key = k, "setting does not apply to an S3 replica");
                }
                Err(e) => return Err(e),
            }
        }
        if s.bucket.is_empty() {
            return Err(config_error("bucket required for s3 replica"));
        }
        Ok(s)
    }

    /// Sets one setting by its YAML key (`part-size`) or URL query key (`partSize`). Unknown
    /// keys are an error so a misspelt option is reported, not ignored.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        match key {
            "access-key-id" | "accessKeyId" => self.access_key_id = non_empty(v),
            "secret-access-key" | "secretAccessKey" => {
                self.secret_access_key = Secret::non_empty(v)
            }
            "region" => self.region = non_empty(v),
            "bucket" => self.bucket = v.to_owned(),
            "path" => self.path = v.to_owned(),
            "endpoint" => self.endpoint = non_empty(v).map(|e| ensure_endpoint_scheme(&e)),
            "force-path-style" | "forcePathStyle" => {
                self.force_path_style = Some(parse_bool(key, v)?)
            }
            "skip-verify" | "skipVerify" => self.skip_verify = parse_bool(key, v)?,
            "sign-payload" | "signPayload" => self.sign_payload = Some(parse_bool(key, v)?),
            "require-content-md5" | "requireContentMD5" => {
                self.require_content_md5 = Some(parse_bool(key, v)?)
            }
            "storage-class" | "storageClass" => self.storage_class = non_empty(v),
            "part-size" | "partSize" => self.part_size = Some(parse_byte_size(key, v)?),
            "concurrency" => self.concurrency = Some(parse_positive(key, v)? as usize),
            "sse-customer-algorithm" | "sseCustomerAlgorithm" => {
                self.sse_customer_algorithm = non_empty(v)
            }
            "sse-customer-key" | "sseCustomerKey" => self.sse_customer_key = Secret::non_empty(v),
            "sse-customer-key-path" | "sseCustomerKeyPath" => {
                self.sse_customer_key_path = non_empty(v).map(PathBuf::from)
            }
            "sse-customer-key-md5" | "sseCustomerKeyMD5" => {
                self.sse_customer_key_md5 = non_empty(v)
            }
            "sse-kms-key-id" | "sseKmsKeyId" => self.sse_kms_key_id = non_empty(v),
            "ca-file" | "caFile" => self.ca_file = non_empty(v).map(PathBuf::from),
            // Accepted by the 0.5.17 binary; signing never covers Accept-Encoding here because
            // we send none.
            "sign-accept-encoding" | "signAcceptEncoding" => {
                parse_bool(key, v)?;
            }
            other => return Err(config_error(format!("unknown S3 setting {other:?}"))),
        }
        Ok(())
    }

    /// Checks the settings and applies defaults and provider presets.
    pub(crate) fn resolve(&self) -> Result<Resolved> {
        if self.bucket.is_empty() {
            return Err(config_error("bucket name is required"));
        }
        let endpoint = self.endpoint.as_deref().map(ensure_endpoint_scheme);
        // Not named by the replica, the AWS SDKs' own configuration may name one (S3 only:
        // OSS has its own endpoints). It does not make addresses path style, as in
        // Litestream, except for an address host, which has no bucket subdomains.
        let configured = match (&endpoint, self.flavor) {
            (None, Flavor::S3) => {
                super::credentials::configured_endpoint().map(|e| ensure_endpoint_scheme(&e))
            }
            _ => None,
        };
        let by_address = configured.as_deref().is_some_and(host_is_address);
        let provider = endpoint.as_deref().map(detect_provider).unwrap_or_default();
        let force_path_style = self
            .force_path_style
            .unwrap_or(provider.path_style || endpoint.is_some() || by_address);
        let endpoint = endpoint.or(configured);
        let sign_payload = self.sign_payload.unwrap_or(true);
        let require_content_md5 = self.require_content_md5.unwrap_or(!provider.tigris);
        let part_size = self.part_size.unwrap_or(DEFAULT_PART_SIZE);
        if part_size < MIN_PART_SIZE {
            return Err(config_error(format!(
                "part size must be at least {MIN_PART_SIZE} bytes, got {part_size}"
            )));
        }
        let concurrency = self.concurrency.unwrap_or(if provider.r2 {
            R2_CONCURRENCY
        } else {
            DEFAULT_CONCURRENCY
        });
        let sse = self.resolve_sse(endpoint.as_deref())?;
        Ok(Resolved {
            flavor: self.flavor,
            bucket: self.bucket.clone(),
            path: self.path.clone(),
            region: self.region.clone(),
            endpoint,
            force_path_style,
            skip_verify: self.skip_verify,
            sign_payload,
            require_content_md5,
            storage_class: self.storage_class.clone(),
            part_size,
            concurrency: concurrency.max(1),
            sse,
            tigris: provider.tigris,
            ca_file: self.ca_file.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        })
    }

    fn resolve_sse(&self, endpoint: Option<&str>) -> Result<Sse> {
        let key = match (&self.sse_customer_key, &self.sse_customer_key_path) {
            (Some(k), _) => Some(k.expose().trim().to_owned()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| {
                        config_error(format!("cannot read sse-customer-key-path {p:?}: {e}"))
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if key.is_some() && self.sse_kms_key_id.is_some() {
            return Err(config_error(
                "cannot use both sse-customer-key and sse-kms-key-id; they are mutually exclusive",
            ));
        }
        if let Some(key) = key {
            let algorithm = self
                .sse_customer_algorithm
                .clone()
                .unwrap_or_else(|| "AES256".to_owned());
            if algorithm != "AES256" {
                return Err(config_error(format!(
                    "sse-customer-algorithm must be AES256, got {algorithm:?}"
                )));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&key)
                .map_err(|e| config_error(format!("sse-customer-key must be valid base64: {e}")))?;
            if raw.len() != 32 {
                return Err(config_error(format!(
                    "sse-customer-key must be 256-bit (32 bytes) when decoded, got {} bytes",
                    raw.len()
                )));
            }
            let key_md5 = self.sse_customer_key_md5.clone().unwrap_or_else(|| {
                base64::engine::general_purpose::STANDARD.encode(Md5::digest(&raw))
            });
            if let Some(ep) = endpoint {
                if let Some(rest) = ep.strip_prefix("http://") {
                    let host = rest.split('/').next().unwrap_or_default();
                    let name = host
                        .rsplit_once(':')
                        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                        .map_or(host, |(h, _)| h)
                        .trim_matches(['[', ']']);
                    let local = name == "localhost"
                        || name
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback() || is_private(&ip));
                    if !local {
                        return Err(config_error(
                            "sse-customer-key requires HTTPS endpoint (HTTP only allowed for localhost/private networks)",
                        ));
                    }
                }
            }
            return Ok(Sse::Customer {
                algorithm,
                key: Secret::new(key),
                key_md5,
            });
        }
        if let Some(id) = &self.sse_kms_key_id {
            return Ok(Sse::Kms { key_id: id.clone() });
        }
        Ok(Sse::None)
    }
}

/// Server-side encryption headers to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sse {
    None,
    Customer {
        algorithm: String,
        key: Secret,
        key_md5: String,
    },
    Kms {
        key_id: String,
    },
}

/// Checked settings with every default applied.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub flavor: Flavor,
    pub bucket: String,
    pub path: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub skip_verify: bool,
    pub sign_payload: bool,
    pub require_content_md5: bool,
    pub storage_class: Option<String>,
    pub part_size: u64,
    pub concurrency: usize,
    pub sse: Sse,
    pub tigris: bool,
    pub ca_file: Option<PathBuf>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
}

#[cfg(test)]
mod tests;
