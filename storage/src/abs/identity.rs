//! Microsoft Entra ID (Azure AD) tokens for Blob Storage, for a replica with neither an account
//! key nor a SAS token: Litestream then uses the Azure SDK's `DefaultAzureCredential`, and this
//! follows its order (docs/storage.md#azure-credentials): a client secret or certificate, a
//! workload identity
//! (federated token file), a managed identity (App Service's endpoint, else the instance
//! metadata service), then the Azure CLI's login. A source the environment does not configure is
//! skipped; one that is configured and fails is the answer, as in the SDK's chain.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::transport::token::{call, json_str, TokenError};
use crate::transport::{HttpPool as Pool, Payload, Trust};

/// The resource (v1 endpoints) and scope (v2) of Azure Storage.
const RESOURCE: &str = "https://storage.azure.com";
const SCOPE: &str = "https://storage.azure.com/.default";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
const IMDS_HOST: &str = "http://169.254.169.254";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// A token is fetched again when less than this is left of it.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How long a token whose answer gives no lifetime is kept.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The longest a token is kept, whatever the endpoint says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The Azure CLI's answer is small; a larger one is refused.
const MAX_CLI_OUTPUT: u64 = 64 << 10;
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// One way of getting a token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: crate::Secret,
    },
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH` (a PEM file with
    /// the certificate and its key, read at every refresh), `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`.
    ClientCertificate {
        authority: String,
        tenant: String,
        client_id: String,
        path: String,
        send_chain: bool,
    },
    /// `AZURE_FEDERATED_TOKEN_FILE` (AKS workload identity), read at every refresh.
    Workload {
        authority: String,
        tenant: String,
        client_id: String,
        token_file: String,
    },
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (App Service, Functions, Container Apps).
    AppService {
        endpoint: String,
        header: crate::Secret,
        client_id: Option<String>,
    },
    /// The instance metadata service (VMs, scale sets, AKS nodes).
    Imds {
        url: String,
        client_id: Option<String>,
    },
    /// `az account get-access-token`.
    Cli { tenant: Option<String> },
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// The sources, in `DefaultAzureCredential`'s order, as the environment configures them.
pub(crate) fn sources() -> Vec<Source> {
    let mut authority = env("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY.into());
    if !authority.ends_with('/') {
        authority.push('/');
    }
    let (tenant, client_id) = (env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID"));
    let mut v = Vec::new();
    if let (Some(t), Some(c), Some(s)) = (&tenant, &client_id, env("AZURE_CLIENT_SECRET")) {
        v.push(Source::ClientSecret {
            authority: authority.clone(),
            tenant: t.clone(),
            client_id: c.clone(),
            secret: crate::Secret::new(s),
        });
    }
    // The SDK's environment credential takes a secret over a certificate.
    let certificate = env("AZURE_CLIENT_CERTIFICATE_PATH").filter(|_| v.is_empty());
    if let (Some(t), Some(c), Some(path)) = (&tenant, &client_id, certificate) {
        let send_chain = env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
        v.push(Source::ClientCertificate {
            authority: authority.clone(),
            tenant: t.clone(),
            client_id: c.clone(),
            path,
            send_chain,
        });
    }
    if let (Some(t), Some(c), Some(f)) = (&tenant, &client_id, env("AZURE_FEDERATED_TOKEN_FILE")) {
        v.push(Source::Workload {
            authority,
            tenant: t.clone(),
            client_id: c.clone(),
            token_file: f,
        });
    }
    match (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
        (Some(endpoint), Some(h)) => v.push(Source::AppService {
            endpoint,
            header: crate::Secret::new(h),
            client_id: client_id.clone(),
        }),
        _ => {
            let host = env("AZURE_POD_IDENTITY_AUTHORITY_HOST").unwrap_or_else(|| IMDS_HOST.into());
            v.push(Source::Imds {
                url: format!("{}{IMDS_PATH}", host.trim_end_matches('/')),
                client_id,
            });
        }
    }
    v.push(Source::Cli { tenant });
    v
}

/// Why a source gave no token: not there (the chain goes on), or failed (the chain stops).
enum Miss {
    Unavailable(String),
    Failed(TokenError),
}

impl From<TokenError> for Miss {
    fn from(e: TokenError) -> Miss {
        Miss::Failed(e)
    }
}

fn pool_for(url: &str) -> Result<std::sync::Arc<Pool>, TokenError> {
    let trust = if url.starts_with("https://") {
        Trust::Roots(None)
    } else {
        Trust::PlainOnly
    };
    Pool::shared(trust).map_err(TokenError::Fatal)
}

/// A number of seconds that Azure's endpoints give as a number or as a string.
fn seconds(v: &Value, k: &str) -> Option<u64> {
    match v.get(k)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The token and how long it lasts, from an OAuth answer (`access_token`, `expires_in`) or a
/// managed identity's (`expires_on`, seconds since the epoch).
fn parse_answer(body: &[u8], what: &str) -> Result<(String, Duration), TokenError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TokenError::Fatal(format!("{what}: answer is not JSON: {e}")))?;
    let token = ["access_token", "accessToken"]
        .iter()
        .find_map(|k| json_str(&v, k))
        .ok_or_else(|| TokenError::Fatal(format!("{what}: answer has no access_token")))?;
    let lifetime = seconds(&v, "expires_in")
        .map(Duration::from_secs)
        .or_else(|| {
            let at = seconds(&v, "expires_on")?;
            (SystemTime::UNIX_EPOCH + Duration::from_secs(at))
                .duration_since(SystemTime::now())
                .ok()
        });
    Ok((token, lifetime.unwrap_or(UNKNOWN_LIFETIME)))
}

fn form(pairs: &[(&str, &str)]) -> Payload {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        f.append_pair(k, v);
    }
    Payload::Bytes(Bytes::from(f.finish()))
}

fn query(base: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    format!("{base}?{}", q.finish())
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::ClientSecret { .. } => "client secret (AZURE_CLIENT_SECRET)",
            Source::ClientCertificate { .. } => {
                "client certificate (AZURE_CLIENT_CERTIFICATE_PATH)"
            }
            Source::Workload { .. } => "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
            Source::AppService { .. } => "managed identity (IDENTITY_ENDPOINT)",
            Source::Imds { .. } => "managed identity (instance metadata service)",
            Source::Cli { .. } => "Azure CLI (az account get-access-token)",
        }
    }

    async fn token(&self) -> Result<(String, Duration), Miss> {
        let what = self.name();
        match self {
            Source::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => {
                let proof = [("client_secret", secret.expose())];
                grant(authority, tenant, client_id, &proof, what).await
            }
            Source::ClientCertificate {
                authority,
                tenant,
                client_id,
                path,
                send_chain,
            } => {
                let audience = token_url(authority, tenant);
                let signed = certificate::assertion(
                    path,
                    client_id,
                    &audience,
                    *send_chain,
                    SystemTime::now(),
                )
                .map_err(TokenError::Fatal)?;
                let proof = [
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", signed.as_str()),
                ];
                grant(authority, tenant, client_id, &proof, what).await
            }
            Source::Workload {
                authority,
                tenant,
                client_id,
                token_file,
            } => {
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    TokenError::Fatal(format!("AZURE_FEDERATED_TOKEN_FILE {token_file}: {e}"))
                })?;
                let proof = [
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.trim()),
                ];
                grant(authority, tenant, client_id, &proof, what).await
            }
            Source::AppService {
                endpoint,
                header,
                client_id,
            } => {
                let url = query(
                    endpoint,
                    &[
                        ("api-version", Some("2019-08-01")),
                        ("resource", Some(RESOURCE)),
                        ("client_id", client_id.as_deref()),
                    ],
                );
                let headers = vec![("x-identity-header", header.expose().to_owned())];
                fetch(Method::GET, &url, headers, Payload::Empty, what).await
            }
            Source::Imds { url, client_id } => {
                let url = query(
                    url,
                    &[
                        ("api-version", Some("2018-02-01")),
                        ("resource", Some(RESOURCE)),
                        ("client_id", client_id.as_deref()),
                    ],
                );
                let headers = vec![("metadata", "true".to_owned())];
                // Off Azure the service does not answer (or something else answers in its
                // place: a refusal, or an answer that is not JSON), and an Azure machine
                // without an identity answers 400: the chain goes on, as the SDK's does. A
                // token answer, or a failure of the service itself, is final.
                let pool = pool_for(&url)?;
                let probe = call(
                    &pool,
                    Method::GET,
                    &url,
                    headers,
                    Payload::Empty,
                    what,
                    None,
                );
                match tokio::time::timeout(Duration::from_secs(2), probe).await {
                    Err(_) => Err(Miss::Unavailable(format!("{what}: no answer"))),
                    Ok(Err(
                        TokenError::Unreachable(e) | TokenError::Refused(400 | 403 | 404, e),
                    )) => Err(Miss::Unavailable(e)),
                    Ok(r) => {
                        let body = r?;
                        if serde_json::from_slice::<Value>(&body).is_err() {
                            return Err(Miss::Unavailable(format!(
                                "{what}: the answer is not the metadata service's"
                            )));
                        }
                        Ok(parse_answer(&body, what)?)
                    }
                }
            }
            Source::Cli { tenant } => cli(tenant.as_deref()).await,
        }
    }
}

/// One request for a token, and its answer read.
async fn fetch(
    method: Method,
    url: &str,
    headers: Vec<(&str, String)>,
    payload: Payload,
    what: &str,
) -> Result<(String, Duration), Miss> {
    let pool = pool_for(url)?;
    let answer = call(&pool, method, url, headers, payload, what, None).await?;
    Ok(parse_answer(&answer, what)?)
}

/// The OAuth 2.0 client-credentials grant at the tenant's token endpoint; `proof` is the
/// client's secret, or its assertion.
async fn grant(
    authority: &str,
    tenant: &str,
    client_id: &str,
    proof: &[(&str, &str)],
    what: &str,
) -> Result<(String, Duration), Miss> {
    let url = token_url(authority, tenant);
    let mut pairs = vec![("client_id", client_id)];
    pairs.extend_from_slice(proof);
    pairs.extend([("grant_type", "client_credentials"), ("scope", SCOPE)]);
    let headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    fetch(Method::POST, &url, headers, form(&pairs), what).await
}

/// The tenant's token endpoint: where grants are posted, and the audience of an assertion.
fn token_url(authority: &str, tenant: &str) -> String {
    format!("{authority}{tenant}/oauth2/v2.0/token")
}

/// `az account get-access-token --output json --resource https://storage.azure.com`.
async fn cli(tenant: Option<&str>) -> Result<(String, Duration), Miss> {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new("az");
    cmd.args([
        "account",
        "get-access-token",
        "--output",
        "json",
        "--resource",
        RESOURCE,
    ]);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    let mut child = match cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(Miss::Unavailable(format!("Azure CLI: cannot run az: {e}"))),
    };
    let stdout = child.stdout.take();
    let mut out = Vec::new();
    let status = tokio::time::timeout(CLI_TIMEOUT, async {
        if let Some(s) = stdout {
            s.take(MAX_CLI_OUTPUT + 1).read_to_end(&mut out).await?;
        }
        child.wait().await
    })
    .await
    .map_err(|_| Miss::Failed(TokenError::Fatal("Azure CLI: no answer in 30 s".into())))?
    .map_err(|e| Miss::Failed(TokenError::Fatal(format!("Azure CLI: {e}"))))?;
    if !status.success() {
        // Not logged in, most likely: `az login` is what the user needs to know.
        return Err(Miss::Unavailable(format!(
            "Azure CLI: az account get-access-token exited with {status} (run `az login`)"
        )));
    }
    if out.len() as u64 > MAX_CLI_OUTPUT {
        return Err(Miss::Failed(TokenError::Fatal(
            "Azure CLI: answer too large".into(),
        )));
    }
    Ok(parse_answer(&out, "Azure CLI")?)
}

/// The first token the sources give (see the module's documentation).
async fn first_token(sources: &[Source]) -> Result<(String, Duration), TokenError> {
    let mut tried = Vec::new();
    for s in sources {
        match s.token().await {
            Ok(t) => return Ok(t),
            Err(Miss::Failed(e)) => return Err(e),
            Err(Miss::Unavailable(why)) => tried.push(why),
        }
    }
    Err(TokenError::Fatal(format!(
        "abs: no credentials: no account-key or sas-token, and no Microsoft Entra ID credential \
         is available (AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH and \
         AZURE_FEDERATED_TOKEN_FILE are unset with AZURE_TENANT_ID/AZURE_CLIENT_ID; {})",
        tried.join("; ")
    )))
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// A token for a request. The identity is the process's (its environment), so one token serves
/// every replica; it is fetched again shortly before it expires.
pub(crate) async fn token() -> Result<String, TokenError> {
    static CACHE: OnceLock<Mutex<Option<Cached>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(|| Mutex::new(None)).lock().await;
    if let Some(c) = cache.as_ref() {
        if Instant::now() < c.refresh_at {
            return Ok(c.token.clone());
        }
    }
    let (token, lifetime) = first_token(&sources()).await?;
    let lifetime = lifetime.min(MAX_LIFETIME);
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    *cache = Some(Cached {
        token: token.clone(),
        refresh_at: Instant::now() + (lifetime - margin),
    });
    Ok(token)
}

mod certificate;
#[cfg(test)]
mod tests;
