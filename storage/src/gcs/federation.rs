//! Google credentials that are not a key of their own (docs/storage.md#gcs-credentials):
//! `external_account` (workload identity federation: a token from another identity provider,
//! read from a file or a URL, exchanged at Google's STS) and `impersonated_service_account`
//! (another credential's token exchanged at the IAM Credentials API for a service account's).
//! Both can end with impersonation, as Google's Go client does them.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::auth::{call, AuthError, Credentials, SCOPE};
use crate::transport::token::json_str;
use crate::transport::{HttpPool as Pool, Payload};

/// A token and its lifetime.
type TokenResult = Result<(String, Duration), AuthError>;

/// What a token must allow to impersonate a service account.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_STS_URL: &str = "https://sts.googleapis.com/v1/token";
/// The Go client's default lifetime of an impersonated token.
const DEFAULT_LIFETIME_SECS: u64 = 3600;
/// A subject token is small; a larger source is refused, not buffered.
const MAX_SUBJECT_TOKEN: u64 = 64 << 10;

/// Where an external account's subject token comes from.
pub(crate) enum Subject {
    /// A file (a Kubernetes projected token, say), read at every refresh.
    File(PathBuf),
    /// A URL answering with the token (Azure's metadata server, say), with these headers.
    Url(String, Vec<(String, String)>),
}

/// The token is the whole text, or the named field of a JSON answer.
pub(crate) struct SubjectFormat {
    json_field: Option<String>,
}

pub(crate) struct Impersonation {
    url: String,
    delegates: Vec<String>,
    lifetime_secs: u64,
}

/// Not `Debug`: it may hold a client secret.
pub(crate) struct External {
    audience: String,
    subject_token_type: String,
    token_url: String,
    subject: Subject,
    format: SubjectFormat,
    /// `client_id`/`client_secret`, sent as basic authentication to STS when given.
    client: Option<(String, String)>,
    impersonation: Option<Impersonation>,
}

pub(crate) struct Impersonated {
    source: Credentials,
    impersonation: Impersonation,
}

fn impersonation(v: &Value, url: Option<String>) -> Option<Impersonation> {
    let lifetime_secs = v
        .get("service_account_impersonation")
        .and_then(|i| i.get("token_lifetime_seconds"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_LIFETIME_SECS);
    let delegates = v
        .get("delegates")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    url.map(|url| Impersonation {
        url,
        delegates,
        lifetime_secs,
    })
}

/// An `external_account` file.
pub(crate) fn parse_external(v: &Value, origin: &str) -> Result<External, String> {
    let need = |k: &str| {
        json_str(v, k).ok_or_else(|| format!("{origin}: external_account credentials need {k}"))
    };
    let audience = need("audience")?;
    let subject_token_type = need("subject_token_type")?;
    let src = v
        .get("credential_source")
        .ok_or_else(|| format!("{origin}: external_account credentials need credential_source"))?;
    let subject = if let Some(f) = json_str(src, "file") {
        Subject::File(PathBuf::from(f))
    } else if let Some(u) = json_str(src, "url") {
        let headers = src
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Subject::Url(u, headers)
    } else {
        let kind = if src.get("environment_id").is_some() {
            "an AWS environment_id"
        } else if src.get("executable").is_some() {
            "an executable"
        } else {
            "this credential_source"
        };
        return Err(format!(
            "{origin}: external_account credentials with {kind} are not supported (a file or \
             url credential_source is)"
        ));
    };
    let format = match src.get("format") {
        Some(f) if f.get("type").and_then(Value::as_str) == Some("json") => SubjectFormat {
            json_field: Some(json_str(f, "subject_token_field_name").ok_or_else(|| {
                format!("{origin}: a json credential_source format needs subject_token_field_name")
            })?),
        },
        _ => SubjectFormat { json_field: None },
    };
    let client =
        json_str(v, "client_id").map(|id| (id, json_str(v, "client_secret").unwrap_or_default()));
    Ok(External {
        audience,
        subject_token_type,
        token_url: json_str(v, "token_url").unwrap_or_else(|| DEFAULT_STS_URL.to_owned()),
        subject,
        format,
        client,
        impersonation: impersonation(v, json_str(v, "service_account_impersonation_url")),
    })
}

/// An `impersonated_service_account` file (`gcloud auth application-default login
/// --impersonate-service-account`).
pub(crate) fn parse_impersonated(v: &Value, origin: &str) -> Result<Impersonated, String> {
    let imp =
        impersonation(v, json_str(v, "service_account_impersonation_url")).ok_or_else(|| {
            format!(
                "{origin}: impersonated_service_account credentials need \
                 service_account_impersonation_url"
            )
        })?;
    let source = v.get("source_credentials").ok_or_else(|| {
        format!("{origin}: impersonated_service_account credentials need source_credentials")
    })?;
    let source = Credentials::from_json(source.to_string().as_bytes(), origin)?;
    if matches!(source, Credentials::Impersonated(_)) {
        return Err(format!(
            "{origin}: source_credentials may not be impersonated_service_account themselves"
        ));
    }
    Ok(Impersonated {
        source,
        impersonation: imp,
    })
}

impl External {
    /// What the credentials' `Debug` shows: no token, no secret.
    pub(crate) fn describe(&self) -> String {
        format!("external account ({})", self.audience)
    }

    async fn subject_token(&self, pool: &Pool) -> Result<String, AuthError> {
        let raw = match &self.subject {
            Subject::File(p) => {
                let mut text = String::new();
                let f = std::fs::File::open(p).map_err(|e| {
                    AuthError::Fatal(format!("subject token file {}: {e}", p.display()))
                })?;
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(f, MAX_SUBJECT_TOKEN),
                    &mut text,
                )
                .map_err(|e| {
                    AuthError::Fatal(format!("subject token file {}: {e}", p.display()))
                })?;
                text
            }
            Subject::Url(u, headers) => {
                let h: Vec<(&str, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                let body = call(
                    pool,
                    Method::GET,
                    u,
                    h,
                    Payload::Empty,
                    "subject token URL",
                    None,
                )
                .await?;
                String::from_utf8_lossy(&body).into_owned()
            }
        };
        let token = match &self.format.json_field {
            None => raw.trim().to_owned(),
            Some(field) => {
                let v: Value = serde_json::from_str(&raw).map_err(|e| {
                    AuthError::Fatal(format!("subject token source: not JSON: {e}"))
                })?;
                json_str(&v, field).ok_or_else(|| {
                    AuthError::Fatal(format!("subject token source has no field {field:?}"))
                })?
            }
        };
        if token.is_empty() {
            return Err(AuthError::Fatal("the subject token is empty".into()));
        }
        Ok(token)
    }

    /// The token and its lifetime.
    pub(crate) async fn fetch(&self, pool: &Pool) -> Result<(String, Duration), AuthError> {
        let subject = self.subject_token(pool).await?;
        // Impersonation needs a token for cloud-platform; without it, STS's token is the one
        // used, for the storage scope.
        let scope = if self.impersonation.is_some() {
            CLOUD_PLATFORM
        } else {
            SCOPE
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("audience", &self.audience)
            .append_pair("scope", scope)
            .append_pair(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            )
            .append_pair("subject_token", &subject)
            .append_pair("subject_token_type", &self.subject_token_type)
            .finish();
        let mut headers = vec![(
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        )];
        if let Some((id, secret)) = &self.client {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            headers.push(("authorization", format!("Basic {basic}")));
        }
        let body = call(
            pool,
            Method::POST,
            &self.token_url,
            headers,
            Payload::Bytes(Bytes::from(form)),
            "STS token exchange",
            None,
        )
        .await?;
        let (token, lifetime) = super::auth::parse_token_answer(&body, &self.token_url)?;
        match &self.impersonation {
            Some(imp) => imp.exchange(pool, &token).await,
            None => Ok((token, lifetime)),
        }
    }
}

impl Impersonated {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{:?} impersonating via {}",
            self.source, self.impersonation.url
        )
    }

    /// Boxed, with `Send` said outright: the source's fetch is the function that called this
    /// one, and the compiler cannot infer `Send` around that cycle.
    pub(crate) fn fetch<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> Pin<Box<dyn Future<Output = TokenResult> + Send + 'a>> {
        Box::pin(async move {
            let (token, _) = self.source.fetch_scoped(pool, CLOUD_PLATFORM).await?;
            self.impersonation.exchange(pool, &token).await
        })
    }
}

impl Impersonation {
    /// `generateAccessToken` with `token` for the service account's token.
    async fn exchange(&self, pool: &Pool, token: &str) -> Result<(String, Duration), AuthError> {
        let body = serde_json::json!({
            "delegates": self.delegates,
            "scope": [SCOPE],
            "lifetime": format!("{}s", self.lifetime_secs),
        });
        let answer = call(
            pool,
            Method::POST,
            &self.url,
            vec![
                ("content-type", "application/json".to_owned()),
                ("authorization", format!("Bearer {token}")),
            ],
            Payload::Bytes(Bytes::from(body.to_string())),
            "service account impersonation",
            None,
        )
        .await?;
        let v: Value = serde_json::from_slice(&answer).map_err(|e| {
            AuthError::Fatal(format!(
                "impersonation answer from {} unreadable: {e}",
                self.url
            ))
        })?;
        let token = json_str(&v, "accessToken").ok_or_else(|| {
            AuthError::Fatal(format!(
                "impersonation answer from {} has no accessToken",
                self.url
            ))
        })?;
        let lifetime = json_str(&v, "expireTime")
            .and_then(|t| crate::timefmt::parse_rfc3339(&t))
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(self.lifetime_secs));
        Ok((token, lifetime))
    }
}
