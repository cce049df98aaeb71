//! An Entra ID application's certificate credential (`AZURE_CLIENT_CERTIFICATE_PATH`): a PEM file
//! holding the certificate and its RSA private key. The client proves itself with a JWT it signs
//! with the key, naming the certificate by its SHA-1 thumbprint (`x5t`), and with the whole chain
//! (`x5c`) when `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` is set, as the Azure SDK's MSAL builds it
//! (docs/storage.md#azure-credentials).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::transport::jwt;

/// How long an assertion is valid.
const LIFETIME_SECS: u64 = 10 * 60;

/// The signed assertion for `client_id` at token endpoint `audience`, from the PEM file at
/// `path`. Errors name the file; none holds a byte of the key.
pub(super) fn assertion(
    path: &str,
    client_id: &str,
    audience: &str,
    send_chain: bool,
    now: SystemTime,
) -> Result<String, String> {
    let what = format!("AZURE_CLIENT_CERTIFICATE_PATH {path}");
    let text = std::fs::read(path).map_err(|e| format!("{what}: {e}"))?;
    let text = String::from_utf8(text).map_err(|_| {
        format!("{what}: not a PEM file (a PKCS#12 file must be converted to PEM first)")
    })?;
    let certs = jwt::parse_certificates(&text).map_err(|e| format!("{what}: {e}"))?;
    let key = jwt::parse_private_key(&text).map_err(|e| format!("{what}: {e}"))?;
    let std64 = base64::engine::general_purpose::STANDARD;
    let mut header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5t": std64.encode(jwt::sha1_thumbprint(&certs[0])),
    });
    if send_chain {
        let chain: Vec<String> = certs.iter().map(|c| std64.encode(c.as_ref())).collect();
        header["x5c"] = serde_json::json!(chain);
    }
    let nbf = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = serde_json::json!({
        "aud": audience,
        "exp": nbf + LIFETIME_SECS,
        "iss": client_id,
        "jti": jwt::random_uuid()?,
        "nbf": nbf,
        "sub": client_id,
    });
    jwt::sign_rs256(&header, &claims, &key).map_err(|e| format!("{what}: {e}"))
}
