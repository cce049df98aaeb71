//! Issue 18 item 2: an `abs` replica with neither an account key nor a SAS token signs with a
//! Microsoft Entra ID bearer token. Azurite checks bearer tokens over HTTPS (`--oauth basic`:
//! issuer, audience and lifetime; not the signature), so this runs an Azurite of its own with a
//! self-signed certificate, and a token endpoint that speaks the client-credentials grant and
//! hands out tokens Azurite accepts. `ls-engine replicate` and `ls-restore` get their tokens
//! from it through `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`.

use crate::common::*;
use crate::harden::text;
use crate::mcp::free_port;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SECRET: &str = "entra-client-secret";

/// An unsigned JWT with the claims Azurite checks.
fn jwt() -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "aud": "https://storage.azure.com",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "tid": TENANT, "oid": "ls-test",
    });
    format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64.encode(claims.to_string()),
        b64.encode(b"not-checked")
    )
}

/// The tenant's token endpoint: the client-credentials grant with the right secret gets a token.
fn token_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            // The head, then the body its content-length announces.
            let body_ok = loop {
                let Ok(n) = s.read(&mut chunk) else {
                    break false;
                };
                if n == 0 {
                    break false;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let form: Vec<(String, String)> =
                            form_urlencoded::parse(&buf[end + 4..end + 4 + len])
                                .into_owned()
                                .collect();
                        let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
                        break text.starts_with(&format!("POST /{TENANT}/oauth2/v2.0/token "))
                            && has("client_secret", SECRET)
                            && has("grant_type", "client_credentials")
                            && has("scope", "https://storage.azure.com/.default");
                    }
                }
            };
            let (status, body) = if body_ok {
                (
                    "200 OK",
                    format!(
                        r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{}"}}"#,
                        jwt()
                    ),
                )
            } else {
                (
                    "401 Unauthorized",
                    r#"{"error":"invalid_client"}"#.to_owned(),
                )
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/")
}

/// Azurite over HTTPS with bearer tokens checked; stopped when dropped.
struct Azurite {
    _server: OwnServer,
    endpoint: String,
    /// The CA that signed its certificate.
    ca: std::path::PathBuf,
}

impl Azurite {
    fn start(dir: &Path) -> Azurite {
        // A CA and a server certificate it signs (rustls refuses a self-signed CA as a server's).
        let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let (cert, key, csr) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("leaf.csr"),
        );
        let ext = dir.join("leaf.ext");
        fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        let steps: [Vec<&std::ffi::OsStr>; 3] = [
            vec![
                "req".as_ref(),
                "-x509".as_ref(),
                "-newkey".as_ref(),
                "rsa:2048".as_ref(),
                "-nodes".as_ref(),
                "-days".as_ref(),
                "1".as_ref(),
                "-subj".as_ref(),
                "/CN=ls-test-ca".as_ref(),
                "-keyout".as_ref(),
                ca_key.as_os_str(),
                "-out".as_ref(),
                ca.as_os_str(),
            ],
            vec![
                "req".as_ref(),
                "-newkey".as_ref(),
                "rsa:2048".as_ref(),
                "-nodes".as_ref(),
                "-subj".as_ref(),
                "/CN=127.0.0.1".as_ref(),
                "-keyout".as_ref(),
                key.as_os_str(),
                "-out".as_ref(),
                csr.as_os_str(),
            ],
            vec![
                "x509".as_ref(),
                "-req".as_ref(),
                "-in".as_ref(),
                csr.as_os_str(),
                "-CA".as_ref(),
                ca.as_os_str(),
                "-CAkey".as_ref(),
                ca_key.as_os_str(),
                "-CAcreateserial".as_ref(),
                "-days".as_ref(),
                "1".as_ref(),
                "-extfile".as_ref(),
                ext.as_os_str(),
                "-out".as_ref(),
                cert.as_os_str(),
            ],
        ];
        for args in steps {
            let o = Command::new("openssl")
                .args(&args)
                .output()
                .expect("openssl");
            assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
        }
        let port = free_port();
        let mut cmd = Command::new("azurite-blob");
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.join("data"))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args([
                "--oauth",
                "basic",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
            ]);
        let server = OwnServer::start(&mut cmd, port, "azurite-blob (tests/abs/install.sh)");
        Azurite {
            _server: server,
            endpoint: format!("https://127.0.0.1:{port}/devstoreaccount1"),
            ca,
        }
    }

    /// Creates a container, authenticated with a token as the engine will be.
    fn create_container(&self, name: &str) {
        let o = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&self.ca)
            .args([
                "-X",
                "PUT",
                "-H",
                "x-ms-version: 2021-12-02",
                "-H",
                "content-length: 0",
            ])
            .arg("-H")
            .arg(format!("authorization: Bearer {}", jwt()))
            .args(["-w", "%{http_code}", "-o", "/dev/null"])
            .arg(format!("{}/{name}?restype=container", self.endpoint))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "201", "{}", text(&o));
    }
}

/// A command with this test's Entra ID identity and no key or SAS token from anywhere.
fn with_identity(bin: &Path, az: &Azurite, authority: &str, secret: &str) -> Command {
    let mut c = command_without(
        bin,
        &[
            "LITESTREAM_AZURE_ACCOUNT_KEY",
            "LITESTREAM_AZURE_SAS_TOKEN",
            "AZURE_FEDERATED_TOKEN_FILE",
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
        ],
    );
    // The replica's TLS trust takes the test certificate from the CA bundle variable.
    c.env("AWS_CA_BUNDLE", &az.ca)
        .env("AZURE_AUTHORITY_HOST", authority)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", "ls-test-app")
        .env("AZURE_CLIENT_SECRET", secret);
    c
}

#[test]
#[ignore = "needs azurite-blob (tests/abs/install.sh) and openssl: tests/run-all.sh has both"]
fn abs_replicas_work_with_an_entra_id_client_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let az = Azurite::start(dir.path());
    az.create_container("ls-entra");
    let authority = token_endpoint();

    let db = dir.path().join("app.db");
    let c = app(&db, 4096);
    setup_table(&c);
    insert_rows(&c, 0, 200, 100);
    let cfg = dir.path().join("ls.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: abs\n      account-name: devstoreaccount1\n      \
             bucket: ls-entra\n      path: db\n      endpoint: {}\n",
            db.display(),
            az.endpoint
        ),
    )
    .expect("config");
    let o = with_identity(Path::new(ENGINE), &az, &authority, SECRET)
        .args(["replicate", "-once", "-config"])
        .arg(&cfg)
        .output()
        .expect("ls-engine");
    assert!(o.status.success(), "replicate: {}", text(&o));

    let restore = |secret: &str, out: &Path| {
        with_identity(&ls_restore_bin(), &az, &authority, secret)
            .arg("-config")
            .arg(&cfg)
            .arg("-o")
            .arg(out)
            .arg(&db)
            .output()
            .expect("ls-restore")
    };
    let out = dir.path().join("restored.db");
    let o = restore(SECRET, &out);
    assert!(o.status.success(), "restore: {}", text(&o));
    integrity_ok(&out);
    assert_same_rows(&db, &out);

    // A wrong secret: the token endpoint refuses, the restore says so and writes nothing.
    let other = dir.path().join("other.db");
    let o = restore("wrong-secret", &other);
    let t = text(&o);
    assert!(!o.status.success(), "restore with a wrong secret: {t}");
    assert!(t.contains("401") && t.contains("client secret"), "{t}");
    assert!(!t.contains("wrong-secret") && !t.contains(SECRET), "{t}");
    assert!(!other.exists());
}
