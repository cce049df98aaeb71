//! OAuth2 access tokens for GCS, found the way Google's Go client finds them (Application
//! Default Credentials, docs/storage.md#gcs-credentials): the JSON file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's `application_default_credentials.json`, else
//! the GCE metadata server. Service-account keys are exchanged with an RS256-signed JWT, user
//! credentials with their refresh token; workload identity federation and impersonation are in
//! `federation`. Tokens are cached until shortly before they expire; nothing is looked up before
//! the first request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use ring::signature::RsaKeyPair;
use serde::Deserialize;

use super::federation;
use crate::transport::jwt::{self, parse_private_key};
pub(crate) use crate::transport::token::{call, TokenError as AuthError};
use crate::transport::{HttpPool as Pool, Payload};

/// What Google's storage client asks for (`storage.ScopeFullControl`).
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.full_control";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA_HOST: &str = "metadata.google.internal";
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is renewed when less than this is left of it.
const REFRESH_MARGIN: Duration = Duration::from_secs(4 * 60);
/// The longest a token is kept, whatever the endpoint says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Where tokens come from.
pub(crate) enum Credentials {
    ServiceAccount {
        email: String,
        key: Arc<RsaKeyPair>,
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
    },
    /// The metadata server at this base URL (`http://metadata.google.internal`).
    Metadata(String),
    /// Workload identity federation (`external_account`).
    External(Box<federation::External>),
    /// A service account impersonated with other credentials (`impersonated_service_account`).
    Impersonated(Box<federation::Impersonated>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::ServiceAccount { email, .. } => write!(f, "service account {email}"),
            Credentials::AuthorizedUser { client_id, .. } => write!(f, "user ({client_id})"),
            Credentials::Metadata(u) => write!(f, "metadata server {u}"),
            Credentials::External(e) => f.write_str(&e.describe()),
            Credentials::Impersonated(i) => f.write_str(&i.describe()),
        }
    }
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    token_uri: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    refresh_token: String,
}

impl Credentials {
    /// Parses an ADC JSON file (`service_account`, `authorized_user`, `external_account` or
    /// `impersonated_service_account`).
    pub(crate) fn from_json(text: &[u8], origin: &str) -> Result<Credentials, String> {
        let v: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| format!("{origin}: not a Google credentials file: {e}"))?;
        match v.get("type").and_then(serde_json::Value::as_str) {
            Some("external_account") => {
                return Ok(Credentials::External(Box::new(federation::parse_external(
                    &v, origin,
                )?)))
            }
            Some("impersonated_service_account") => {
                return Ok(Credentials::Impersonated(Box::new(
                    federation::parse_impersonated(&v, origin)?,
                )))
            }
            _ => {}
        }
        let f: CredentialsFile = serde_json::from_value(v)
            .map_err(|e| format!("{origin}: not a Google credentials file: {e}"))?;
        let token_uri = if f.token_uri.is_empty() {
            DEFAULT_TOKEN_URI.to_owned()
        } else {
            f.token_uri
        };
        match f.kind.as_str() {
            "service_account" => {
                if f.client_email.is_empty() || f.private_key.is_empty() {
                    return Err(format!(
                        "{origin}: service_account credentials need client_email and private_key"
                    ));
                }
                let key =
                    parse_private_key(&f.private_key).map_err(|e| format!("{origin}: {e}"))?;
                Ok(Credentials::ServiceAccount {
                    email: f.client_email,
                    key: Arc::new(key),
                    token_uri,
                })
            }
            "authorized_user" => {
                if f.client_id.is_empty() || f.refresh_token.is_empty() {
                    return Err(format!(
                        "{origin}: authorized_user credentials need client_id and refresh_token"
                    ));
                }
                Ok(Credentials::AuthorizedUser {
                    client_id: f.client_id,
                    client_secret: f.client_secret,
                    refresh_token: f.refresh_token,
                    token_uri,
                })
            }
            other => Err(format!(
                "{origin}: credentials of type {other:?} are not supported (service_account, \
                 authorized_user, external_account and impersonated_service_account are)"
            )),
        }
    }

    fn from_file(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
        Credentials::from_json(&text, &path.display().to_string())
    }

    /// Application Default Credentials, as Google's Go client looks them up.
    fn find_default() -> Result<Credentials, String> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(p) = env("GOOGLE_APPLICATION_CREDENTIALS") {
            return Credentials::from_file(Path::new(&p));
        }
        let well_known = env("CLOUDSDK_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")))
            .map(|d| d.join("application_default_credentials.json"));
        if let Some(p) = well_known.filter(|p| p.is_file()) {
            return Credentials::from_file(&p);
        }
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| METADATA_HOST.to_owned());
        Ok(Credentials::Metadata(format!("http://{host}")))
    }

    /// Fetches a new token for the storage scope, and its lifetime.
    async fn fetch(&self, pool: &Pool) -> Result<(String, Duration), AuthError> {
        self.fetch_scoped(pool, SCOPE).await
    }

    /// Fetches a new token and its lifetime; `scope` is what a service account key asks for
    /// (impersonation needs cloud-platform).
    pub(crate) async fn fetch_scoped(
        &self,
        pool: &Pool,
        scope: &str,
    ) -> Result<(String, Duration), AuthError> {
        let form_post = |pairs: &[(&str, &str)]| {
            let mut f = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                f.append_pair(k, v);
            }
            let headers = vec![(
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            )];
            (
                Method::POST,
                headers,
                Payload::Bytes(Bytes::from(f.finish())),
            )
        };
        let ((method, headers, payload), url, unreachable) = match self {
            Credentials::ServiceAccount {
                email,
                key,
                token_uri,
            } => {
                let jwt = sign_jwt(email, key, token_uri, scope, SystemTime::now())
                    .map_err(AuthError::Fatal)?;
                let post = form_post(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &jwt),
                ]);
                (post, token_uri.clone(), None)
            }
            Credentials::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => {
                let post = form_post(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("refresh_token", refresh_token),
                ]);
                (post, token_uri.clone(), None)
            }
            // Off GCE the metadata server does not even resolve: that is a missing
            // configuration, not an outage.
            Credentials::Metadata(base) => (
                (
                    Method::GET,
                    vec![("metadata-flavor", "Google".to_owned())],
                    Payload::Empty,
                ),
                format!("{base}{TOKEN_PATH}"),
                Some(
                    "no Google credentials: GOOGLE_APPLICATION_CREDENTIALS is unset, there is \
                     no gcloud application_default_credentials.json, and the metadata server \
                     is unreachable",
                ),
            ),
            Credentials::External(e) => return e.fetch(pool).await,
            Credentials::Impersonated(i) => return i.fetch(pool).await,
        };
        let what = format!("{self:?}");
        let body = call(pool, method, &url, headers, payload, &what, unreachable).await?;
        parse_token_answer(&body, &url)
    }
}

/// The OAuth token endpoints' answer: the token and its lifetime (an hour if not said).
pub(crate) fn parse_token_answer(body: &[u8], url: &str) -> Result<(String, Duration), AuthError> {
    #[derive(Deserialize)]
    struct TokenResponse {
        access_token: String,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let t: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| AuthError::Fatal(format!("token answer from {url} unreadable: {e}")))?;
    Ok((
        t.access_token,
        Duration::from_secs(t.expires_in.unwrap_or(3600)),
    ))
}

/// The JWT a service account presents to the token endpoint (RFC 7523), valid for an hour.
pub(crate) fn sign_jwt(
    email: &str,
    key: &RsaKeyPair,
    audience: &str,
    scope: &str,
    now: SystemTime,
) -> Result<String, String> {
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    let claims = serde_json::json!({
        "iss": email,
        "scope": scope,
        "aud": audience,
        "iat": iat,
        "exp": iat + 3600,
    });
    jwt::sign_rs256(&header, &claims, key)
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Tokens for requests: none for an emulator, else from [`Credentials`] (found on first use
/// when not given), cached.
pub(crate) struct TokenSource {
    anonymous: bool,
    creds: tokio::sync::OnceCell<Result<Credentials, String>>,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("anonymous", &self.anonymous)
            .field("creds", &self.creds.get())
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// No authentication (`STORAGE_EMULATOR_HOST`, as Google's client does).
    pub fn anonymous() -> TokenSource {
        TokenSource {
            anonymous: true,
            creds: tokio::sync::OnceCell::new(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Application Default Credentials, looked up at the first request.
    pub fn default_credentials() -> TokenSource {
        TokenSource {
            anonymous: false,
            creds: tokio::sync::OnceCell::new(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    #[cfg(test)]
    pub fn with_credentials(c: Credentials) -> TokenSource {
        TokenSource {
            anonymous: false,
            creds: tokio::sync::OnceCell::new_with(Some(Ok(c))),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token, or `None` when requests go unauthenticated.
    pub async fn token(&self, pool: &Pool) -> Result<Option<String>, AuthError> {
        if self.anonymous {
            return Ok(None);
        }
        let creds = self
            .creds
            .get_or_init(|| async { Credentials::find_default() })
            .await
            .as_ref()
            .map_err(|e| AuthError::Fatal(e.clone()))?;
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(Some(c.token.clone()));
            }
        }
        let (token, lifetime) = creds.fetch(pool).await?;
        // The endpoint's word is capped: a lifetime near `u64::MAX` seconds cannot be added
        // to a clock, and no token outlives a day anyway.
        let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + (lifetime - margin),
        });
        Ok(Some(token))
    }
}
