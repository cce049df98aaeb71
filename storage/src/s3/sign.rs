//! SigV4 header signing through `aws-sigv4`, set up the way S3 wants it: single percent
//! encoding, no path normalisation (keys are taken literally), and `x-amz-content-sha256`
//! always present.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::credentials::Credentials;

/// Signs `req` in place. `url` is the absolute, already-encoded URL the request goes to;
/// `payload_sha256` is the body hash, or `None` to send `UNSIGNED-PAYLOAD`.
pub(crate) fn sign_request<B>(
    req: &mut http::Request<B>,
    url: &str,
    creds: &Credentials,
    region: &str,
    payload_sha256: Option<&str>,
    now: SystemTime,
) -> Result<(), String> {
    sign_for(req, url, creds, (region, "s3"), payload_sha256, now)
}

/// [`sign_request`] for another AWS service (`sts` for roles), named with its region.
pub(crate) fn sign_for<B>(
    req: &mut http::Request<B>,
    url: &str,
    creds: &Credentials,
    (region, service): (&str, &str),
    payload_sha256: Option<&str>,
    now: SystemTime,
) -> Result<(), String> {
    let identity: Identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.expose().to_owned(),
        creds.session_token.as_ref().map(|t| t.expose().to_owned()),
        creds.expires,
        "litestream",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let body = match payload_sha256 {
        Some(h) => SignableBody::Precomputed(h.to_owned()),
        None => SignableBody::UnsignedPayload,
    };
    let signable = SignableRequest::new(req.method().as_str(), url, headers.into_iter(), body)
        .map_err(|e| format!("cannot sign request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign request: {e}"))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn adds_authorization_and_hash_headers() {
        let mut req = http::Request::builder()
            .method("GET")
            .uri("/bucket/key%20x")
            .header("host", "127.0.0.1:9000")
            .body(())
            .expect("request");
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: Some("tok".into()),
            expires: None,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign_request(
            &mut req,
            "http://127.0.0.1:9000/bucket/key%20x?list-type=2&prefix=a%2Fb",
            &creds,
            "us-east-1",
            None,
            now,
        )
        .expect("sign");
        let h = req.headers();
        let auth = h["authorization"].to_str().expect("ascii");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20231114/us-east-1/s3/aws4_request")
        );
        assert_eq!(h["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        assert_eq!(h["x-amz-security-token"], "tok");
        assert!(h.contains_key("x-amz-date"));
    }
}
