//! Where credentials come from, in the AWS SDK's order as Litestream users rely on it: the
//! replica config, `AWS_*` variables (session token included), `LITESTREAM_*` variables, the
//! shared credentials/config files (`AWS_PROFILE`), then the ECS task-role endpoint and the EC2
//! instance-role endpoint with IMDSv2. Temporary credentials are cached and refreshed shortly
//! before they expire; nothing is fetched until the first request needs it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::Mutex;

use crate::transport::pool::parse_http_url;
use crate::transport::HttpPool as Pool;
use crate::transport::ReqBody;
use crate::Secret;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub expires: Option<SystemTime>,
}

/// Refresh this long before expiry so a request signed now is not rejected in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
const ECS_HOST: &str = "http://169.254.170.2";
const IMDS_ENDPOINT: &str = "http://169.254.169.254";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn pair(id: Option<String>, secret: Option<String>, token: Option<String>) -> Option<Credentials> {
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: Secret::new(secret?),
        session_token: token.and_then(Secret::non_empty),
        expires: None,
    })
}

/// Credentials from variables: `AWS_*` first, then Litestream's own names.
pub(crate) fn from_env() -> Option<Credentials> {
    pair(
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        env("AWS_SESSION_TOKEN"),
    )
    .or_else(|| {
        pair(
            env("LITESTREAM_ACCESS_KEY_ID"),
            env("LITESTREAM_SECRET_ACCESS_KEY"),
            None,
        )
    })
}

fn home() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

/// Sections of an INI file; `[profile x]` headers (config file) are stored as `x`.
pub(crate) fn parse_ini(
    text: &str,
    config_style: bool,
) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = if config_style {
                match name.strip_prefix("profile ") {
                    Some(n) => n.trim(),
                    None if name == "default" => name,
                    // The config file names other sections `[profile x]`; `[sso-session x]`
                    // and the like are not profiles.
                    None => {
                        section = None;
                        continue;
                    }
                }
            } else {
                name
            };
            section = Some(name.to_owned());
            out.entry(name.to_owned()).or_default();
            continue;
        }
        if let (Some(sec), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(sec.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

pub(crate) fn profile_name() -> String {
    env("AWS_PROFILE")
        .or_else(|| env("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".to_owned())
}

/// Keys of one profile from the credentials file, falling back to the config file.
pub(crate) fn from_profile_files(
    profile: &str,
    credentials_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
) -> Option<Credentials> {
    let read = |p: Option<PathBuf>, config_style: bool| {
        p.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| parse_ini(&t, config_style))
            .and_then(|mut m| m.remove(profile))
    };
    for section in [read(credentials_file, false), read(config_file, true)]
        .into_iter()
        .flatten()
    {
        let get = |k: &str| section.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(c) = pair(
            get("aws_access_key_id"),
            get("aws_secret_access_key"),
            get("aws_session_token"),
        ) {
            return Some(c);
        }
    }
    None
}

fn from_default_profile_files() -> Option<Credentials> {
    let creds = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/credentials")));
    let config = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/config")));
    from_profile_files(&profile_name(), creds, config)
}

/// The JSON both the ECS and the EC2 endpoints answer with.
fn parse_role_json(body: &[u8]) -> Result<Credentials, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("bad credentials JSON: {e}"))?;
    if let Some(code) = v.get("Code").and_then(|c| c.as_str()) {
        if code != "Success" {
            return Err(format!("credentials endpoint answered Code {code:?}"));
        }
    }
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
    };
    Ok(Credentials {
        access_key_id: s("AccessKeyId").ok_or("credentials JSON without AccessKeyId")?,
        secret_access_key: Secret::new(
            s("SecretAccessKey").ok_or("credentials JSON without SecretAccessKey")?,
        ),
        session_token: s("Token").and_then(Secret::non_empty),
        expires: s("Expiration").and_then(|e| crate::timefmt::parse_rfc3339(&e)),
    })
}

/// One plain-HTTP request to a metadata endpoint.
async fn fetch(
    pool: &Pool,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Bytes), String> {
    let (target, path) = parse_http_url(url).ok_or_else(|| format!("bad URL {url:?}"))?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let fut = async {
        let mut conn = pool.checkout(&target).await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", target.authority());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(ReqBody::Empty).map_err(|e| e.to_string())?;
        let resp = conn
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        pool.checkin(conn);
        Ok((status, body))
    };
    tokio::time::timeout(METADATA_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{url}: timed out"))?
}

async fn from_ecs(pool: &Pool) -> Option<Result<Credentials, String>> {
    let url = match (
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(rel), _) => format!("{ECS_HOST}{rel}"),
        (None, Some(full)) => full,
        (None, None) => return None,
    };
    let token = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(p) => std::fs::read_to_string(p).ok().map(|t| t.trim().to_owned()),
        None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    Some(fetch_ecs(pool, &url, token.as_deref()).await)
}

async fn fetch_ecs(pool: &Pool, url: &str, token: Option<&str>) -> Result<Credentials, String> {
    let mut headers = vec![("accept", "application/json")];
    if let Some(t) = token {
        headers.push(("authorization", t));
    }
    match fetch(pool, "GET", url, &headers).await {
        Ok((200, body)) => parse_role_json(&body),
        Ok((status, _)) => Err(format!("ECS credentials endpoint answered {status}")),
        Err(e) => Err(format!("ECS credentials endpoint: {e}")),
    }
}

async fn from_imds(pool: &Pool) -> Option<Result<Credentials, String>> {
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
async fn fetch_imds(pool: &Pool, base: &str) -> Result<Credentials, String> {
    let base = base.trim_end_matches('/');
    let run = async {
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
    };
    run.await
}

/// Resolves and caches credentials for one client.
pub(crate) struct CredentialChain {
    configured: Option<Credentials>,
    pool: Arc<Pool>,
    cached: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialChain")
            .field("configured", &self.configured.is_some())
            .finish_non_exhaustive()
    }
}

impl CredentialChain {
    /// `configured` are keys from the replica config; `pool` is a plain-HTTP pool for the
    /// metadata endpoints.
    pub fn new(configured: Option<Credentials>, pool: Arc<Pool>) -> Self {
        CredentialChain {
            configured,
            pool,
            cached: Mutex::new(None),
        }
    }

    pub async fn get(&self) -> Result<Credentials, String> {
        if let Some(c) = &self.configured {
            return Ok(c.clone());
        }
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expires
                .is_none_or(|e| SystemTime::now() + REFRESH_MARGIN < e);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.resolve().await?;
        *cached = Some(c.clone());
        Ok(c)
    }

    async fn resolve(&self) -> Result<Credentials, String> {
        if let Some(c) = from_env() {
            return Ok(c);
        }
        if let Some(c) = from_default_profile_files() {
            return Ok(c);
        }
        if let Some(r) = from_ecs(&self.pool).await {
            return r;
        }
        match from_imds(&self.pool).await {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(format!(
                "no credentials found (config, AWS_ACCESS_KEY_ID, LITESTREAM_ACCESS_KEY_ID, \
                 shared files for profile {:?}, ECS) and the EC2 instance metadata service \
                 failed: {e}",
                profile_name()
            )),
            None => Err(format!(
                "no credentials found (config, AWS_ACCESS_KEY_ID, LITESTREAM_ACCESS_KEY_ID, \
                 shared files for profile {:?}, ECS; EC2 metadata disabled)",
                profile_name()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn profiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKD\naws_secret_access_key = SKD\n\n[prod]\n\
             aws_access_key_id=AKP\naws_secret_access_key=SKP\naws_session_token=TOK\n",
        )
        .expect("write");
        std::fs::write(
            &config,
            "[default]\nregion = us-west-2\n[profile cfg]\naws_access_key_id = AKC\n\
             aws_secret_access_key = SKC\n[sso-session x]\naws_access_key_id = no\n",
        )
        .expect("write");
        let get = |p: &str| from_profile_files(p, Some(creds.clone()), Some(config.clone()));
        assert_eq!(get("default").map(|c| c.access_key_id), Some("AKD".into()));
        let prod = get("prod").expect("prod");
        assert_eq!(prod.session_token.as_ref().map(Secret::expose), Some("TOK"));
        assert_eq!(get("cfg").map(|c| c.secret_access_key), Some("SKC".into()));
        assert!(get("x").is_none() && get("missing").is_none());
    }

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
        let c = fetch_ecs(
            &pool,
            &format!("{url}/v2/credentials/abc"),
            Some("secret-token"),
        )
        .await
        .expect("creds");
        assert_eq!(c.access_key_id, "ASIAECS");
        assert!(fetch_ecs(&pool, &format!("{url}/v2/credentials/abc"), None)
            .await
            .is_err());
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
}
