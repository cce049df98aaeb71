//! AWS STS: `AssumeRoleWithWebIdentity` (unsigned; the token is the proof) and `AssumeRole`
//! (signed with the credentials before it), over the Query protocol: a form-encoded POST, an
//! XML answer (docs/s3-credentials.md#sts).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::profile::{Role, WebIdentity};
use super::{env, from_fields, Credentials, Pools};
use crate::s3::sign::sign_for;
use crate::transport::body::hex;

/// How long an STS call may take, connection included.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// The AWS SDK for Go's default for an assumed role (`AssumeRole` only; a web identity's role
/// gets STS's own default).
const ROLE_DURATION_SECS: u32 = 900;
/// What an error message quotes of the server's text at most.
const MAX_MESSAGE: usize = 300;

/// STS in `region`: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the regional endpoint
/// (the SDK for Go v2 no longer uses the global one).
pub(super) fn endpoint(region: &str) -> String {
    env("AWS_ENDPOINT_URL_STS")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| {
            let suffix = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://sts.{region}.{suffix}")
        })
}

/// A session name when none is configured: the SDK for Go's, so CloudTrail shows the same.
fn session_name(given: Option<&str>) -> String {
    given.map_or_else(
        || {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("aws-go-sdk-{nanos}")
        },
        str::to_owned,
    )
}

pub(super) async fn assume_role_with_web_identity(
    pools: &Pools,
    region: &str,
    w: &WebIdentity,
) -> Result<Credentials, String> {
    let file = w.token_file.display();
    let token = std::fs::read_to_string(&w.token_file)
        .map_err(|e| format!("web identity token file {file}: {e}"))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("web identity token file {file} is empty"));
    }
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", &w.role_arn)
        .append_pair("RoleSessionName", &session_name(w.session_name.as_deref()))
        .append_pair("WebIdentityToken", token)
        .finish();
    call(pools, region, form, None)
        .await
        .map_err(|e| format!("AssumeRoleWithWebIdentity {}: {e}", w.role_arn))
}

pub(super) async fn assume_role(
    pools: &Pools,
    region: &str,
    with: &Credentials,
    r: &Role,
) -> Result<Credentials, String> {
    // Built in a block: the serializer is not `Send` and must not live across the await.
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", "AssumeRole")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &r.arn)
            .append_pair("RoleSessionName", &session_name(r.session_name.as_deref()))
            .append_pair(
                "DurationSeconds",
                &r.duration_secs.unwrap_or(ROLE_DURATION_SECS).to_string(),
            );
        if let Some(id) = &r.external_id {
            form.append_pair("ExternalId", id);
        }
        form.finish()
    };
    call(pools, region, form, Some(with))
        .await
        .map_err(|e| format!("AssumeRole {}: {e}", r.arn))
}

/// One STS action; signed when `sign_with` is given.
async fn call(
    pools: &Pools,
    region: &str,
    form: String,
    sign_with: Option<&Credentials>,
) -> Result<Credentials, String> {
    let url = endpoint(region);
    let url = if url.ends_with('/') { url } else { url + "/" };
    let pool = pools.for_url(&url)?;
    let body = Bytes::from(form);
    let hash = hex(&Sha256::digest(&body));
    let (status, answer) = super::remote::send(
        &pool,
        "POST",
        &url,
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        Some(body),
        TIMEOUT,
        |req| match sign_with {
            Some(c) => sign_for(
                req,
                &url,
                c,
                (region, "sts"),
                Some(&hash),
                SystemTime::now(),
            ),
            None => Ok(()),
        },
    )
    .await
    .map_err(|e| format!("STS at {url}: {e}"))?;
    let xml = String::from_utf8_lossy(&answer);
    if status != 200 {
        return Err(describe_error(status, &xml));
    }
    parse_credentials(&xml)
}

/// `<Credentials>` of an `AssumeRole*Result`.
fn parse_credentials(xml: &str) -> Result<Credentials, String> {
    let creds = crate::xml::elements(xml, "Credentials")
        .first()
        .map(|s| (*s).to_owned())
        .ok_or("STS answer has no Credentials")?;
    let get = |tag: &str| crate::xml::text(&creds, tag).filter(|v| !v.is_empty());
    let expires = get("Expiration").and_then(|e| crate::timefmt::parse_rfc3339(&e));
    from_fields(
        "STS answer",
        ["AccessKeyId", "SecretAccessKey", "SessionToken"],
        get,
        expires,
    )
}

/// `status Code: Message`, the message cut short: it is the server's text.
fn describe_error(status: u16, xml: &str) -> String {
    let code = crate::xml::text(xml, "Code").unwrap_or_default();
    let mut message = crate::xml::text(xml, "Message").unwrap_or_default();
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("answered {status}"),
        (false, true) => format!("answered {status} {code}"),
        (false, false) => format!("answered {status} {code}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn parses_an_answer_and_an_error() {
        let ok = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
                  <SubjectFromWebIdentityToken>x</SubjectFromWebIdentityToken><Credentials>\
                  <SessionToken>tok&amp;en</SessionToken><SecretAccessKey>sec</SecretAccessKey>\
                  <Expiration>2030-01-02T03:04:05Z</Expiration><AccessKeyId>ASIAX</AccessKeyId>\
                  </Credentials></AssumeRoleWithWebIdentityResult>\
                  </AssumeRoleWithWebIdentityResponse>";
        let c = parse_credentials(ok).expect("credentials");
        assert_eq!(c.access_key_id, "ASIAX");
        assert_eq!(c.session_token.as_ref().map(Secret::expose), Some("tok&en"));
        assert!(c.expires.is_some());
        assert!(parse_credentials("<Foo/>").is_err());
        let err = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                   <Message>Not authorized</Message></Error></ErrorResponse>";
        assert_eq!(
            describe_error(403, err),
            "answered 403 AccessDenied: Not authorized"
        );
        assert_eq!(describe_error(500, "oops"), "answered 500");
        let long = format!("<Code>X</Code><Message>{}</Message>", "é".repeat(400));
        assert!(describe_error(400, &long).chars().count() < 400);
    }

    #[test]
    fn default_session_names_are_the_go_sdks() {
        assert_eq!(session_name(Some("me")), "me");
        assert!(session_name(None).starts_with("aws-go-sdk-"));
    }
}
