//! Each source against a loopback stand-in that speaks its protocol, and the chain's rules.

use super::*;
use crate::transport::test_server::serve;
use base64::Engine as _;

fn form_of(req: &str) -> std::collections::HashMap<String, String> {
    let body = req.split("\r\n\r\n").nth(1).unwrap_or_default();
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

const TOKEN: &str = r#"{"token_type":"Bearer","expires_in":3599,"access_token":"entra-tok"}"#;

#[tokio::test]
async fn client_secret_and_workload_identity_ask_for_storage() {
    let (url, seen) = serve(2, |req| {
        let f = form_of(req);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
        let common = req.starts_with("POST /tenant-1/oauth2/v2.0/token ")
            && get("client_id") == "app-1"
            && get("grant_type") == "client_credentials"
            && get("scope") == "https://storage.azure.com/.default";
        let secret = get("client_secret") == "s3cret";
        let federated = get("client_assertion") == "k8s-jwt"
            && get("client_assertion_type")
                == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        if common && (secret || federated) {
            (200, TOKEN.into())
        } else {
            (401, r#"{"error":"invalid_client"}"#.into())
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "k8s-jwt\n").expect("token");
    let authority = format!("{url}/");
    for s in [
        Source::ClientSecret {
            authority: authority.clone(),
            tenant: "tenant-1".into(),
            client_id: "app-1".into(),
            secret: crate::Secret::new("s3cret"),
        },
        Source::Workload {
            authority,
            tenant: "tenant-1".into(),
            client_id: "app-1".into(),
            token_file: file.display().to_string(),
        },
    ] {
        let (t, life) = first_token(&[s]).await.expect("token");
        assert_eq!((t.as_str(), life.as_secs()), ("entra-tok", 3599));
    }
    assert_eq!(seen.lock().map(|v| v.len()).unwrap_or(0), 2);
}

#[tokio::test]
async fn managed_identities_on_app_service_and_vms() {
    let (url, _seen) = serve(2, |req| {
        let app = req.starts_with(
            "GET /msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com&client_id=app-1 ",
        ) && req.to_ascii_lowercase().contains("x-identity-header: hdr");
        let imds = req.starts_with(
            "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com ",
        ) && req.to_ascii_lowercase().contains("metadata: true");
        match (app, imds) {
            // App Service gives the expiry as a time, IMDS as strings.
            (true, _) => (200, r#"{"access_token":"app-tok","expires_on":"4102444800"}"#.into()),
            (_, true) => (200, r#"{"access_token":"vm-tok","expires_in":"3600"}"#.into()),
            _ => (400, "{}".into()),
        }
    })
    .await;
    let app = Source::AppService {
        endpoint: format!("{url}/msi/token"),
        header: crate::Secret::new("hdr"),
        client_id: Some("app-1".into()),
    };
    let (t, life) = first_token(&[app]).await.expect("app service");
    assert_eq!(t, "app-tok");
    assert!(life > Duration::from_secs(3600), "{life:?}");
    let vm = Source::Imds {
        url: format!("{url}{IMDS_PATH}"),
        client_id: None,
    };
    assert_eq!(first_token(&[vm]).await.expect("imds").0, "vm-tok");
}

#[tokio::test]
async fn the_chain_skips_what_is_not_there_and_stops_at_a_refusal() {
    // Nothing listens on this port: the metadata service is not there, so the chain goes on.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (url, _seen) = serve(2, |_| {
        (
            401,
            r#"{"error":"invalid_client","secret":"s3cret"}"#.into(),
        )
    })
    .await;
    let vm = || Source::Imds {
        url: format!("http://{gone}{IMDS_PATH}"),
        client_id: None,
    };
    let refused = Source::ClientSecret {
        authority: format!("{url}/"),
        tenant: "t".into(),
        client_id: "c".into(),
        secret: crate::Secret::new("s3cret"),
    };
    // A configured source that is refused is the answer, even with others after it.
    let e = first_token(&[refused, vm()]).await.expect_err("refused");
    assert!(matches!(&e, TokenError::Refused(401, _)), "{e:?}");
    // Something else answering in the metadata service's place is not it either.
    let (proxy, _) = serve(1, |_| (403, "resolve_deny: denied destination".into())).await;
    let not_imds = Source::Imds {
        url: format!("{proxy}{IMDS_PATH}"),
        client_id: None,
    };
    // Only sources that are not there: the error names them.
    let e = first_token(&[not_imds, vm()]).await.expect_err("none");
    let TokenError::Fatal(m) = e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("account-key") && m.contains("instance metadata"),
        "{m}"
    );
}

#[test]
fn answers_give_a_token_and_a_lifetime() {
    let (t, life) =
        parse_answer(br#"{"accessToken":"cli","expires_on":4102444800}"#, "x").expect("cli answer");
    assert_eq!(t, "cli");
    assert!(life > Duration::from_secs(3600));
    let (_, life) = parse_answer(br#"{"access_token":"t"}"#, "x").expect("no lifetime");
    assert_eq!(life, UNKNOWN_LIFETIME);
    assert!(parse_answer(br#"{"expires_in":1}"#, "x").is_err());
    assert!(parse_answer(b"nope", "x").is_err());
}

/// Runs `openssl` with `args` in `dir`; its standard output.
fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let o = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[tokio::test]
#[ignore = "needs the openssl tool: tests/run-all.sh has it"]
async fn a_client_certificate_signs_an_assertion_openssl_verifies() {
    let (url, seen) = serve(2, |req| {
        let f = form_of(req);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
        let ok = req.starts_with("POST /tenant-1/oauth2/v2.0/token ")
            && get("client_id") == "app-1"
            && get("grant_type") == "client_credentials"
            && get("client_assertion_type")
                == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            && get("client_assertion").split('.').count() == 3;
        if ok {
            (200, TOKEN.into())
        } else {
            (401, r#"{"error":"invalid_client"}"#.into())
        }
    })
    .await;
    // A self-signed certificate and its key in one PEM file, as Azure's tools write them.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=ls-test-app",
        ],
    );
    let pem = [
        std::fs::read(d.join("cert.pem")).expect("cert"),
        std::fs::read(d.join("key.pem")).expect("key"),
    ]
    .concat();
    let path = d.join("client.pem");
    std::fs::write(&path, &pem).expect("pem");
    let authority = format!("{url}/");
    let source = |send_chain| Source::ClientCertificate {
        authority: authority.clone(),
        tenant: "tenant-1".into(),
        client_id: "app-1".into(),
        path: path.display().to_string(),
        send_chain,
    };
    for send_chain in [false, true] {
        let (t, _) = first_token(&[source(send_chain)]).await.expect("token");
        assert_eq!(t, "entra-tok");
    }
    let requests = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(requests.len(), 2);
    // The SHA-1 thumbprint openssl gives, as the `x5t` header holds it (standard base64).
    let fingerprint = String::from_utf8(openssl(
        d,
        &["x509", "-in", "cert.pem", "-noout", "-fingerprint", "-sha1"],
    ))
    .expect("utf-8");
    let hex: String = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .replace(':', "");
    let digest: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let std64 = base64::engine::general_purpose::STANDARD;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    std::fs::write(
        d.join("pub.pem"),
        openssl(d, &["x509", "-in", "cert.pem", "-pubkey", "-noout"]),
    )
    .expect("public key");
    for (i, req) in requests.iter().enumerate() {
        let f = form_of(req);
        let jwt = f.get("client_assertion").expect("assertion");
        let parts: Vec<&str> = jwt.split('.').collect();
        let json = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&b64.decode(p).expect("base64url")).expect("json")
        };
        let (header, claims) = (json(parts[0]), json(parts[1]));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t"], std64.encode(&digest).as_str());
        assert_eq!(
            header.get("x5c").is_some(),
            i == 1,
            "x5c only when asked: {header}"
        );
        assert_eq!(
            claims["aud"],
            format!("{url}/tenant-1/oauth2/v2.0/token").as_str()
        );
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("app-1"), Some("app-1"))
        );
        let (nbf, exp) = (claims["nbf"].as_u64(), claims["exp"].as_u64());
        assert_eq!(exp.zip(nbf).map(|(e, n)| e - n), Some(600), "{claims}");
        // The signature, checked by openssl against the certificate's public key.
        std::fs::write(d.join("input"), format!("{}.{}", parts[0], parts[1])).expect("input");
        std::fs::write(d.join("sig"), b64.decode(parts[2]).expect("signature")).expect("sig");
        let verified = openssl(
            d,
            &[
                "dgst",
                "-sha256",
                "-verify",
                "pub.pem",
                "-signature",
                "sig",
                "input",
            ],
        );
        assert!(String::from_utf8_lossy(&verified).contains("Verified OK"));
    }
    // A file without a key is a clear error naming the variable and the file, before any request.
    std::fs::write(&path, std::fs::read(d.join("cert.pem")).expect("cert")).expect("pem");
    let e = first_token(&[source(false)]).await.expect_err("no key");
    let m = format!("{e:?}");
    assert!(
        m.contains("AZURE_CLIENT_CERTIFICATE_PATH") && m.contains("client.pem"),
        "{m}"
    );
}
