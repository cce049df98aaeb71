//! Requests to token endpoints (OAuth 2.0 and the cloud metadata services), shared by the
//! backends whose credentials are bearer tokens (`gcs`, `abs`): one request with a timeout, a
//! bounded quote of a refusal, and the difference between worth another try and final.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::pool::parse_http_url;
use super::{exchange, Fault, HttpPool as Pool, Payload};

/// A JSON answer's string field, if there and not empty (credential answers of every cloud).
pub(crate) fn json_str(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) enum TokenError {
    /// The token endpoint could not be reached: worth another try (and, for a source that is
    /// only there on some machines, a sign that it is not there).
    Unreachable(String),
    /// The token endpoint failed: worth another try.
    Transient(String),
    /// The endpoint refused, with this status (not 5xx nor 429).
    Refused(u16, String),
    /// No credentials or unreadable credentials.
    Fatal(String),
}

impl TokenError {
    /// As a request's fault: a transient one is retried, a final one reported once.
    pub(crate) fn into_fault(self) -> Fault {
        match self {
            TokenError::Unreachable(e) | TokenError::Transient(e) => Fault::Transport(e),
            TokenError::Refused(_, e) | TokenError::Fatal(e) => Fault::Auth(e),
        }
    }
}

/// What an error quotes of a token endpoint's answer at most: it is the server's text.
const MAX_QUOTED: usize = 300;

/// One request to a token endpoint (`what` names the credentials in errors); the answer's body
/// on HTTP 200. Unreachable, 5xx and 429 are worth another try, other refusals are not;
/// `unreachable`, when given, makes an unreachable endpoint final with that explanation.
pub(crate) async fn call(
    pool: &Pool,
    method: Method,
    url: &str,
    headers: Vec<(&str, String)>,
    payload: Payload,
    what: &str,
    unreachable: Option<&str>,
) -> Result<Bytes, TokenError> {
    let (target, path) =
        parse_http_url(url).ok_or_else(|| TokenError::Fatal(format!("bad token URL {url:?}")))?;
    let sent = tokio::time::timeout(TOKEN_TIMEOUT, async {
        exchange(pool, &target, &method, &path, &headers, &payload)
            .await?
            .read(pool)
            .await
    })
    .await;
    let resp = match sent {
        Err(_) => {
            return Err(TokenError::Transient(format!(
                "token request to {url} timed out"
            )))
        }
        Ok(Err(Fault::Transport(e))) => {
            let msg = format!("token request to {url} ({what}): {e}");
            return Err(match unreachable {
                Some(why) => TokenError::Fatal(format!("{why} ({msg})")),
                None => TokenError::Unreachable(msg),
            });
        }
        Ok(Err(f)) => return Err(TokenError::Fatal(f.message())),
        Ok(Ok(r)) => r,
    };
    let status = resp.status.as_u16();
    if status != 200 {
        let body = String::from_utf8_lossy(&resp.body);
        let mut quoted: String = body.trim().chars().take(MAX_QUOTED).collect();
        if body.trim().chars().count() > MAX_QUOTED {
            quoted.push('…');
        }
        let msg = format!("token request to {url} ({what}) answered HTTP {status}: {quoted}");
        return Err(if status >= 500 || status == 429 {
            TokenError::Transient(msg)
        } else {
            TokenError::Refused(status, msg)
        });
    }
    Ok(resp.body)
}
