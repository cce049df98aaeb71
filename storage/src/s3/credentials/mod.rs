//! Where S3 credentials come from, in the order the AWS SDK for Go v2 (which Litestream uses)
//! tries them (docs/s3-credentials.md): the replica config's keys, then `AWS_*` keys (and
//! Litestream's own `LITESTREAM_*` names), then a web identity named by `AWS_WEB_IDENTITY_TOKEN_FILE`
//! and `AWS_ROLE_ARN` (EKS IRSA), then the shared files' profile (`AWS_PROFILE`): static keys,
//! roles assumed from a `source_profile` or a `credential_source`, a web identity, SSO,
//! `credential_process`; and last the container endpoint (ECS, EKS Pod Identity) or the EC2
//! instance metadata service. Temporary credentials are cached and fetched again before they
//! expire, so no request is signed with credentials about to lapse; nothing is fetched until the
//! first request needs it.

mod process;
mod profile;
mod remote;
mod sts;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use self::profile::{Base, Files, Plan, WebIdentity};
use crate::transport::pool::parse_http_url;
use crate::transport::token::json_str;
use crate::transport::{HttpPool as Pool, Trust};
use crate::Secret;

/// One set of S3 credentials, static or temporary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// When temporary credentials expire; `None` for static ones.
    pub expires: Option<SystemTime>,
}

/// Fetched again this long before they expire, so a request signed now is not rejected in
/// flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn home() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

fn pair(id: Option<String>, secret: Option<String>, token: Option<String>) -> Option<Credentials> {
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: Secret::new(secret?),
        session_token: token.and_then(Secret::non_empty),
        expires: None,
    })
}

/// Credentials from the fields of an answer (JSON or XML): `field` gives a field's value if it
/// is there and not empty; `names` are the answer's names for the key id, the secret key and the
/// session token; `what` names the answer in errors (which never quote a value).
fn from_fields(
    what: &str,
    names: [&str; 3],
    field: impl Fn(&str) -> Option<String>,
    expires: Option<SystemTime>,
) -> Result<Credentials, String> {
    let need = |n: &str| field(n).ok_or_else(|| format!("{what} has no {n}"));
    Ok(Credentials {
        access_key_id: need(names[0])?,
        secret_access_key: Secret::new(need(names[1])?),
        session_token: field(names[2]).and_then(Secret::non_empty),
        expires,
    })
}

/// Credentials from variables: `AWS_*` first (with the SDK's older `AWS_ACCESS_KEY` and
/// `AWS_SECRET_KEY` spellings), then Litestream's own names.
pub(crate) fn from_env() -> Option<Credentials> {
    pair(
        env("AWS_ACCESS_KEY_ID").or_else(|| env("AWS_ACCESS_KEY")),
        env("AWS_SECRET_ACCESS_KEY").or_else(|| env("AWS_SECRET_KEY")),
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

/// The S3 endpoint the AWS SDKs configure from outside the replica's settings, for a replica
/// that names none (docs/s3-credentials.md#an-endpoint-from-the-environment):
/// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else the profile's `services` section's
/// `s3` `endpoint_url`, else the profile's own `endpoint_url`. None when
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` or the profile's `ignore_configured_endpoint_urls` is
/// true.
pub(crate) fn configured_endpoint() -> Option<String> {
    let truthy = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if truthy(env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").as_deref()) {
        return None;
    }
    if let Some(e) = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
        return Some(e);
    }
    let files = profile::Files::from_env();
    let p = files.profile(&profile_name().0)?;
    if truthy(p.get("ignore_configured_endpoint_urls").map(String::as_str)) {
        return None;
    }
    p.get("services")
        .and_then(|name| files.services(name))
        .and_then(|s| s.get("s3.endpoint_url"))
        .or_else(|| p.get("endpoint_url"))
        .filter(|e| !e.is_empty())
        .cloned()
}

/// The profile the shared files are read for, and whether it was named (then it must exist).
fn profile_name() -> (String, bool) {
    match env("AWS_PROFILE").or_else(|| env("AWS_DEFAULT_PROFILE")) {
        Some(p) => (p, true),
        None => ("default".to_owned(), false),
    }
}

/// The connection pools credential requests use: plain HTTP for the metadata endpoints (which
/// never speak TLS), and the replica's TLS trust for STS and SSO.
pub(crate) struct Pools {
    plain: Arc<Pool>,
    tls: Trust,
}

impl Pools {
    fn for_url(&self, url: &str) -> Result<Arc<Pool>, String> {
        let (target, _) = parse_http_url(url).ok_or_else(|| format!("bad URL {url:?}"))?;
        if target.https {
            Pool::shared(self.tls.clone())
        } else {
            Ok(self.plain.clone())
        }
    }
}

/// Resolves and caches credentials for one client.
pub(crate) struct CredentialChain {
    configured: Option<Credentials>,
    pools: Pools,
}

type Cache = Arc<Mutex<Option<Credentials>>>;

/// Credentials found in the environment are the same for every replica of the process; only
/// the region STS is asked in can differ. So they are cached once per region: a thousand
/// databases on S3 make one STS call, not a thousand, and the first replica to need them
/// resolves them while the others wait.
fn shared_cache(region: &str) -> Cache {
    static CACHES: OnceLock<std::sync::Mutex<HashMap<String, Cache>>> = OnceLock::new();
    let mut m = CACHES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    m.entry(region.to_owned()).or_default().clone()
}

impl std::fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialChain")
            .field("configured", &self.configured.is_some())
            .finish_non_exhaustive()
    }
}

impl CredentialChain {
    /// `configured` are keys from the replica config; `plain` is a plain-HTTP pool for the
    /// metadata endpoints; `tls` is what STS and SSO connections trust (the replica's CA file or
    /// `skip-verify`, as Litestream's one HTTP client does).
    pub fn new(configured: Option<Credentials>, plain: Arc<Pool>, tls: Trust) -> Self {
        CredentialChain {
            configured,
            pools: Pools { plain, tls },
        }
    }

    /// Credentials for a request to `region` (the region STS is asked in, when a role is
    /// assumed).
    pub async fn get(&self, region: &str) -> Result<Credentials, String> {
        if let Some(c) = &self.configured {
            return Ok(c.clone());
        }
        let cache = shared_cache(region);
        let mut cached = cache.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expires
                .is_none_or(|e| SystemTime::now() + REFRESH_MARGIN < e);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.resolve(region).await?;
        *cached = Some(c.clone());
        Ok(c)
    }

    async fn resolve(&self, region: &str) -> Result<Credentials, String> {
        if let Some(c) = from_env() {
            return Ok(c);
        }
        if let Some(file) = env("AWS_WEB_IDENTITY_TOKEN_FILE") {
            let role_arn = env("AWS_ROLE_ARN").ok_or(
                "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN, the role to assume, is not",
            )?;
            let w = WebIdentity {
                token_file: PathBuf::from(file),
                role_arn,
                session_name: env("AWS_ROLE_SESSION_NAME"),
            };
            return sts::assume_role_with_web_identity(&self.pools, region, &w)
                .await
                .map_err(|e| format!("web identity (AWS_WEB_IDENTITY_TOKEN_FILE): {e}"));
        }
        let (name, explicit) = profile_name();
        let plan = profile::plan(&Files::from_env(), &name, explicit)?;
        self.carry_out(&plan, region)
            .await
            .map_err(|e| format!("AWS profile {name:?}: {e}"))
    }

    async fn carry_out(&self, plan: &Plan, region: &str) -> Result<Credentials, String> {
        let mut creds = match &plan.base {
            Base::Static(c) => c.clone(),
            Base::Environment => from_env().ok_or(
                "credential_source Environment, but AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY are not set",
            )?,
            Base::WebIdentity(w) => {
                sts::assume_role_with_web_identity(&self.pools, region, w).await?
            }
            Base::Process(cmd) => process::run(cmd).await?,
            Base::Sso(s) => remote::from_sso(&self.pools, s).await?,
            Base::Container => remote::from_container(&self.pools.plain).await?,
            Base::Imds => match remote::from_imds(&self.pools.plain).await {
                Some(r) => r.map_err(|e| {
                    format!(
                        "no credentials found (replica config, AWS_ACCESS_KEY_ID, \
                         LITESTREAM_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE, shared files, \
                         container endpoint) and the EC2 instance metadata service failed: {e}"
                    )
                })?,
                None => {
                    return Err("no credentials found (replica config, AWS_ACCESS_KEY_ID, \
                                LITESTREAM_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE, shared \
                                files, container endpoint; EC2 metadata disabled)"
                        .into())
                }
            },
        };
        for role in &plan.roles {
            creds = sts::assume_role(&self.pools, region, &creds, role).await?;
        }
        Ok(creds)
    }
}
