//! RS256 JSON Web Tokens that a client signs to prove who it is to a token endpoint (RFC 7523):
//! a Google service account's, and an Entra ID application's certificate assertion. PEM is read
//! with `rustls-pki-types`, signing and digests are `ring`'s.

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Base64url without padding, as JWTs are written.
pub(crate) fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The RSA private key in PEM `text` (PKCS#8 `PRIVATE KEY`, as Google issues them, or PKCS#1
/// `RSA PRIVATE KEY`); other blocks, such as certificates, are passed over.
pub(crate) fn parse_private_key(text: &str) -> Result<RsaKeyPair, String> {
    let key = PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| format!("no PEM private key found: {e}"))?;
    match key {
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        _ => return Err("the private key is not an RSA key".to_owned()),
    }
    .map_err(|e| format!("private key is not a usable RSA key: {e}"))
}

/// The certificates in PEM `text`, in order (DER).
pub(crate) fn parse_certificates(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unreadable PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_owned());
    }
    Ok(certs)
}

/// A certificate's SHA-1 thumbprint, as Entra ID names the certificate that signed an assertion.
pub(crate) fn sha1_thumbprint(cert: &CertificateDer<'_>) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref())
        .as_ref()
        .to_vec()
}

/// A random version-4 UUID: a token's `jti`, an MCP session's ID.
pub fn random_uuid() -> Result<String, String> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "no randomness for an ID".to_owned())?;
    Ok(uuid_v4(b))
}

/// `bytes` written as a version-4 UUID (its version and variant bits set).
pub fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `header` and `claims` signed with RS256: `<header>.<claims>.<signature>`, each base64url.
pub(crate) fn sign_rs256(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    key: &RsaKeyPair,
) -> Result<String, String> {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| "RS256 signing failed".to_owned())?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = random_uuid().expect("uuid");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]), "{u}");
        assert_ne!(u, random_uuid().expect("uuid"));
    }

    #[test]
    fn a_file_without_a_key_or_certificate_says_so() {
        let e = parse_private_key("nothing here").err().unwrap_or_default();
        assert!(e.contains("no PEM private key"), "{e}");
        let e = parse_certificates("nothing here").err().unwrap_or_default();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
