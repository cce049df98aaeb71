//! Credential endpoints reached over HTTP: the ECS/EKS container endpoint, the EC2 instance
//! metadata service (IMDSv2) and the IAM Identity Center (SSO) portal. Every answer is read with
//! a size bound and a timeout.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::profile::Sso;
use super::{env, from_fields, json_str, Credentials, Pools};
use crate::transport::pool::parse_http_url;
use crate::transport::ReqBody;
use crate::transport::{Fault, HttpPool as Pool};

pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
const ECS_HOST: &str = "http://169.254.170.2";
const IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// No credential answer is anywhere near this; a larger one is refused, not buffered.
const MAX_ANSWER: usize = 1 << 20;

/// One request; the answer's status and body. `url` must be absolute; `body` is sent as is.
pub(super) async fn send(
    pool: &Pool,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
    timeout: Duration,
    sign: impl FnOnce(&mut http::Request<ReqBody>) -> Result<(), String>,
) -> Result<(u16, Bytes), String> {
    let (target, path) = parse_http_url(url).ok_or_else(|| format!("bad URL {url:?}"))?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", target.authority());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let len = body.as_ref().map_or(0, |b| b.len() as u64);
    let body = match body {
        Some(b) => ReqBody::Full(Some(b)),
        None => ReqBody::Empty,
    };
    let mut req = req.body(body).map_err(|e| e.to_string())?;
    sign(&mut req)?;
    // The transport's one request path, with the answer bounded by MAX_ANSWER.
    let fut = async {
        let sent = crate::transport::send(pool, &target, req, len)
            .await
            .map_err(Fault::message)?;
        let resp = sent
            .read_within(pool, MAX_ANSWER)
            .await
            .map_err(|f| format!("reading the answer: {}", f.message()))?;
        Ok((resp.status.as_u16(), resp.body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

async fn fetch(
    pool: &Pool,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Bytes), String> {
    send(pool, method, url, headers, None, METADATA_TIMEOUT, |_| {
        Ok(())
    })
    .await
}

/// The JSON both the ECS and the EC2 endpoints answer with.
pub(super) fn parse_role_json(body: &[u8]) -> Result<Credentials, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("bad credentials JSON: {e}"))?;
    if let Some(code) = v.get("Code").and_then(|c| c.as_str()) {
        if code != "Success" {
            return Err(format!("credentials endpoint answered Code {code:?}"));
        }
    }
    let expires = json_str(&v, "Expiration").and_then(|e| crate::timefmt::parse_rfc3339(&e));
    from_fields(
        "credentials JSON",
        ["AccessKeyId", "SecretAccessKey", "Token"],
        |k| json_str(&v, k),
        expires,
    )
}

/// The container endpoint the variables name, with its authorization token (EKS Pod Identity
/// gives it as a file that is rotated, so it is read at every refresh).
pub(super) async fn from_container(pool: &Pool) -> Result<Credentials, String> {
    let url = match (
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(rel), _) => format!("{ECS_HOST}{rel}"),
        (None, Some(full)) => full,
        (None, None) => {
            return Err("neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor \
                        AWS_CONTAINER_CREDENTIALS_FULL_URI is set"
                .into())
        }
    };
    let token = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(p) => Some(
            std::fs::read_to_string(&p)
                .map_err(|e| format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {p}: {e}"))?
                .trim()
                .to_owned(),
        ),
        None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    fetch_container(pool, &url, token.as_deref()).await
}

pub(super) async fn fetch_container(
    pool: &Pool,
    url: &str,
    token: Option<&str>,
) -> Result<Credentials, String> {
    let mut headers = vec![("accept", "application/json")];
    if let Some(t) = token {
        headers.push(("authorization", t));
    }
    match fetch(pool, "GET", url, &headers).await {
        Ok((200, body)) => parse_role_json(&body),
        Ok((status, _)) => Err(format!("container credentials endpoint answered {status}")),
        Err(e) => Err(format!("container credentials endpoint: {e}")),
    }
}

/// `None` when the metadata service is turned off (`AWS_EC2_METADATA_DISABLED=true`).
pub(super) async fn from_imds(pool: &Pool) -> Option<Result<Credentials, String>> {
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let base = match env("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        Some(e) => e,
        // Unit tests only ever talk to loopback stand-ins.
        None if cfg!(test) => return None,
        None => IMDS_ENDPOINT.to_owned(),
    };
    Some(fetch_imds(pool, &base).await)
}

/// IMDSv2: a session token first, then the role name, then its credentials.
pub(super) async fn fetch_imds(pool: &Pool, base: &str) -> Result<Credentials, String> {
    let base = base.trim_end_matches('/');
    let (status, token) = fetch(
        pool,
        "PUT",
        &format!("{base}/latest/api/token"),
        &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")],
    )
    .await?;
    if status != 200 {
        return Err(format!("IMDSv2 token request answered {status}"));
    }
    let token = String::from_utf8_lossy(&token).trim().to_owned();
    let hdr = [("x-aws-ec2-metadata-token", token.as_str())];
    let list_url = format!("{base}/latest/meta-data/iam/security-credentials/");
    let (status, roles) = fetch(pool, "GET", &list_url, &hdr).await?;
    if status != 200 {
        return Err(format!("instance has no IAM role (IMDS answered {status})"));
    }
    let roles = String::from_utf8_lossy(&roles).to_string();
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("instance has no IAM role")?
        .to_owned();
    let (status, body) = fetch(pool, "GET", &format!("{list_url}{role}"), &hdr).await?;
    if status != 200 {
        return Err(format!("IMDS role credentials answered {status}"));
    }
    parse_role_json(&body)
}

/// The role credentials of an SSO profile, for the token `aws sso login` cached. An expired
/// token is not refreshed here: the error says to log in again.
pub(super) async fn from_sso(pools: &Pools, s: &Sso) -> Result<Credentials, String> {
    let file = s.cache_file.display();
    let text = std::fs::read_to_string(&s.cache_file)
        .map_err(|e| format!("SSO token cache {file}: {e} (run `aws sso login`)"))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("SSO token cache {file}: bad JSON: {e}"))?;
    let token = v
        .get("accessToken")
        .and_then(|t| t.as_str())
        .ok_or_else(|| format!("SSO token cache {file} has no accessToken"))?;
    let expires = v
        .get("expiresAt")
        .and_then(|t| t.as_str())
        .and_then(crate::timefmt::parse_rfc3339);
    if expires.is_none_or(|e| e <= SystemTime::now()) {
        return Err(format!(
            "the SSO token in {file} has expired (run `aws sso login`)"
        ));
    }
    let base = env("AWS_ENDPOINT_URL_SSO")
        .unwrap_or_else(|| format!("https://portal.sso.{}.amazonaws.com", s.region));
    exchange_sso_token(pools, &base, s, token).await
}

/// The portal's `GetRoleCredentials`: the cached token for the role's credentials.
async fn exchange_sso_token(
    pools: &Pools,
    base: &str,
    s: &Sso,
    token: &str,
) -> Result<Credentials, String> {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("account_id", &s.account_id)
        .append_pair("role_name", &s.role_name)
        .finish();
    let url = format!("{}/federation/credentials?{q}", base.trim_end_matches('/'));
    let pool = pools.for_url(&url)?;
    let (status, body) = send(
        &pool,
        "GET",
        &url,
        &[("x-amz-sso_bearer_token", token)],
        None,
        super::sts::TIMEOUT,
        |_| Ok(()),
    )
    .await
    .map_err(|e| format!("SSO portal: {e}"))?;
    if status != 200 {
        return Err(format!(
            "SSO portal answered {status} for account {} role {}",
            s.account_id, s.role_name
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("SSO portal: bad JSON: {e}"))?;
    let rc = v
        .get("roleCredentials")
        .ok_or("SSO portal answer has no roleCredentials")?;
    // Milliseconds since the epoch.
    let expires = rc
        .get("expiration")
        .and_then(serde_json::Value::as_u64)
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    from_fields(
        "SSO portal answer",
        ["accessKeyId", "secretAccessKey", "sessionToken"],
        |k| json_str(rc, k),
        expires,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn role_json() {
        let c = parse_role_json(
            br#"{"Code":"Success","AccessKeyId":"ASIA","SecretAccessKey":"s","Token":"t","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .expect("parse");
        assert_eq!(c.access_key_id, "ASIA");
        assert!(c.expires.is_some());
        assert!(parse_role_json(br#"{"Code":"Failure"}"#).is_err());
    }

    /// A loopback stand-in for the instance metadata service that insists on IMDSv2 tokens.
    async fn fake_imds() -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let h = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let Ok((mut s, _)) = l.accept().await else {
                    break;
                };
                // One request per connection is enough here; answer with Connection: close.
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or_default().to_owned();
                let has_token = req
                    .to_ascii_lowercase()
                    .contains("x-aws-ec2-metadata-token: tok");
                let body = if line.starts_with("PUT /latest/api/token") {
                    "tok".to_owned()
                } else if !has_token {
                    String::new()
                } else if line.contains("security-credentials/ ") {
                    "my-role\n".to_owned()
                } else if line.contains("security-credentials/my-role ") {
                    r#"{"Code":"Success","AccessKeyId":"ASIAIMDS","SecretAccessKey":"sec","Token":"tk","Expiration":"2099-01-01T00:00:00Z"}"#.to_owned()
                } else {
                    String::new()
                };
                let status = if body.is_empty() {
                    "401 Unauthorized"
                } else {
                    "200 OK"
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                seen.push(line);
            }
            seen
        });
        (format!("http://{addr}"), h)
    }

    #[tokio::test]
    async fn ecs_task_role() {
        let (url, seen) = crate::transport::test_server::serve(2, |req| {
            if req.to_ascii_lowercase().contains("authorization: secret-token") {
                (
                    200,
                    r#"{"AccessKeyId":"ASIAECS","SecretAccessKey":"s","Token":"t","Expiration":"2099-01-01T00:00:00Z"}"#.to_owned(),
                )
            } else {
                (401, String::new())
            }
        })
        .await;
        let pool = Pool::new(None);
        let c = fetch_container(
            &pool,
            &format!("{url}/v2/credentials/abc"),
            Some("secret-token"),
        )
        .await
        .expect("creds");
        assert_eq!(c.access_key_id, "ASIAECS");
        assert!(
            fetch_container(&pool, &format!("{url}/v2/credentials/abc"), None)
                .await
                .is_err()
        );
        let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
        assert!(seen[0].starts_with("GET /v2/credentials/abc HTTP/1.1"));
    }

    #[tokio::test]
    async fn imds_v2_flow() {
        let (url, server) = fake_imds().await;
        let pool = Pool::new(None);
        let got = fetch_imds(&pool, &url).await.expect("creds");
        assert_eq!(got.access_key_id, "ASIAIMDS");
        assert_eq!(got.session_token.as_ref().map(Secret::expose), Some("tk"));
        let seen = server.await.expect("server");
        assert!(seen[0].starts_with("PUT /latest/api/token"));
    }
    #[tokio::test]
    async fn sso_token_is_exchanged_for_role_credentials() {
        let (url, seen) = crate::transport::test_server::serve(2, |req| {
            let ok = req.starts_with("GET /federation/credentials?account_id=111&role_name=Dev ")
                && req.to_ascii_lowercase().contains("x-amz-sso_bearer_token: tok");
            if ok {
                (
                    200,
                    r#"{"roleCredentials":{"accessKeyId":"ASIASSO","secretAccessKey":"s","sessionToken":"t","expiration":1900000000000}}"#.to_owned(),
                )
            } else {
                (403, r#"{"message":"no"}"#.to_owned())
            }
        })
        .await;
        let pools = Pools {
            plain: std::sync::Arc::new(Pool::new(None)),
            tls: crate::transport::Trust::PlainOnly,
        };
        let sso = Sso {
            cache_file: "/nonexistent".into(),
            region: "eu-west-1".into(),
            account_id: "111".into(),
            role_name: "Dev".into(),
        };
        let c = exchange_sso_token(&pools, &url, &sso, "tok")
            .await
            .expect("credentials");
        assert_eq!(c.access_key_id, "ASIASSO");
        assert_eq!(
            c.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000))
        );
        let e = exchange_sso_token(&pools, &url, &sso, "wrong")
            .await
            .expect_err("refused");
        assert!(e.contains("403") && e.contains("Dev"), "{e}");
        assert_eq!(seen.lock().map(|v| v.len()).unwrap_or(0), 2);
    }

    #[tokio::test]
    async fn an_expired_or_missing_sso_token_says_to_log_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pools = Pools {
            plain: std::sync::Arc::new(Pool::new(None)),
            tls: crate::transport::Trust::PlainOnly,
        };
        let mut sso = Sso {
            cache_file: dir.path().join("missing.json"),
            region: "eu-west-1".into(),
            account_id: "1".into(),
            role_name: "r".into(),
        };
        let e = from_sso(&pools, &sso).await.expect_err("missing");
        assert!(
            e.contains("aws sso login") && e.contains("missing.json"),
            "{e}"
        );
        sso.cache_file = dir.path().join("old.json");
        std::fs::write(
            &sso.cache_file,
            r#"{"accessToken":"secret-token","expiresAt":"2020-01-01T00:00:00Z"}"#,
        )
        .expect("write");
        let e = from_sso(&pools, &sso).await.expect_err("expired");
        assert!(e.contains("expired") && !e.contains("secret-token"), "{e}");
    }
}
