//! Keeping secrets out of everything we print: one type for secret values ([`Secret`], whose
//! `Debug` shows `[redacted]`), one function for URLs ([`redact_url`]) and one for settings
//! ([`redact_setting`]). Every log line, error message, `Debug` output, command output,
//! metrics label and MCP answer that shows a replica URL or a setting goes through them.
//!
//! What counts as secret: the password of a URL's user info (and, for `nats://`, a user
//! without a password, which NATS takes as a token), and the values of keys whose names say
//! they are secret ([`is_secret_key`]): passwords, tokens, secret and account keys, SAS
//! signatures, NATS seeds and JWTs. Key IDs, account names, paths of key files and public host
//! keys are not secret and stay visible, so a message still says which credentials were used.
//!
//! A hand-written type rather than a crate's: settings need `Clone + Eq` on their secrets,
//! and a few lines do it.

use std::borrow::Cow;
use std::fmt;

/// What a secret is shown as.
pub const REDACTED: &str = "[redacted]";

/// A secret value (password, key, token). It has no `Display`, and its `Debug` prints
/// [`REDACTED`] (or `""` when empty, so a message can still say that none was set); the value
/// is reached only through [`Secret::expose`], where it is sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`, which may be empty.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// `None` for an empty value.
    pub fn non_empty(value: impl Into<String>) -> Option<Secret> {
        let s = value.into();
        (!s.is_empty()).then_some(Secret(s))
    }

    /// The value, for the one place that sends it (a request, a signature, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `given` in a time that does not depend on where they differ (for
    /// checking a presented token).
    pub fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        want.len() == given.len()
            && want
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

impl PartialEq<str> for Secret {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Secret {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

/// Whether a setting or query key names a secret: `secret-access-key`, `secretAccessKey`,
/// `sse-customer-key`, `account-key`, `sas-token`, `sig` (the signature of an Azure SAS token),
/// `password`, `webdav-password`, `token`, `jwt`, `seed`, `nkey`, `mcp-token`, ... Case, `-`
/// and `_` do not matter.
pub fn is_secret_key(key: &str) -> bool {
    let n: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    const EXACT: &[&str] = &[
        "sig",
        "signature",
        "xamzsignature",
        "ssecustomerkey",
        "accountkey",
        "key",
        "apikey",
        "privatekey",
        "pass",
        "passwd",
        "pwd",
        "jwt",
        "seed",
        "nkey",
        "auth",
        "authorization",
        "credential",
        "credentials",
    ];
    EXACT.contains(&n.as_str())
        || ["password", "secret", "token", "secretaccesskey"]
            .iter()
            .any(|s| n.ends_with(s))
        || n.contains("secret")
}

/// `url` as it may be shown: the password of its user info and the values of secret query
/// keys ([`is_secret_key`]) replaced by [`REDACTED`], everything else as written. Works on
/// text, not on a parsed URL, so URLs the `url` crate refuses (an S3 access point ARN, a
/// malformed URL being reported as such) are redacted too.
pub fn redact_url(url: &str) -> String {
    let (body, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let (before_query, query) = match body.find('?') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            out.push_str(scheme);
            out.push_str("://");
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _)) => {
                            out.push_str(user);
                            out.push(':');
                            out.push_str(REDACTED);
                        }
                        // NATS reads a lone user as a token.
                        None if scheme.eq_ignore_ascii_case("nats") => out.push_str(REDACTED),
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(before_query),
    }
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if is_secret_key(&crate::transport::encode::decode_lossy(k)) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out.push_str(fragment);
    out
}

/// A setting's value as it may be shown: [`REDACTED`] for a secret key ([`is_secret_key`]),
/// a value holding a URL through [`redact_url`] (`webdav-url`, `endpoint`, `url`), else as
/// written.
pub fn redact_setting<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    if is_secret_key(key) && !value.is_empty() {
        Cow::Borrowed(REDACTED)
    } else if value.contains("://") || value.contains('?') {
        Cow::Owned(redact_url(value))
    } else {
        Cow::Borrowed(value)
    }
}

/// Key/value settings as `Debug` shows them: every value through [`redact_setting`]. For the
/// `Debug` of config types that keep settings as text.
pub fn debug_settings<'a, I>(settings: I) -> impl fmt::Debug + 'a
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone + 'a,
{
    struct Settings<I>(I);
    impl<'a, I: IntoIterator<Item = (&'a str, &'a str)> + Clone> fmt::Debug for Settings<I> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_map()
                .entries(
                    self.0
                        .clone()
                        .into_iter()
                        .map(|(k, v)| (k, redact_setting(k, v))),
                )
                .finish()
        }
    }
    Settings(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_passwords_and_secret_query_values() {
        for (url, want) in [
            ("sftp://u:PW@h:22/p", "sftp://u:[redacted]@h:22/p"),
            (
                "webdavs://u:P%40W@h/p?x=1",
                "webdavs://u:[redacted]@h/p?x=1",
            ),
            ("nats://u:PW@h:4222/b", "nats://u:[redacted]@h:4222/b"),
            ("nats://TOKEN@h:4222/b", "nats://[redacted]@h:4222/b"),
            ("abs://acct@c/p", "abs://acct@c/p"),
            (
                "s3://b/p?endpoint=http://h:9000&secret-access-key=S1&secretAccessKey=S2&region=r",
                "s3://b/p?endpoint=http://h:9000&secret-access-key=[redacted]\
                 &secretAccessKey=[redacted]&region=r",
            ),
            (
                "s3://b/p?sseCustomerKey=K&sse-customer-key-md5=M&sse_customer_key=K",
                "s3://b/p?sseCustomerKey=[redacted]&sse-customer-key-md5=M\
                 &sse_customer_key=[redacted]",
            ),
            (
                "abs://c/p?sv=2021&ss=b&sig=SIG%2F&se=2030",
                "abs://c/p?sv=2021&ss=b&sig=[redacted]&se=2030",
            ),
            (
                "s3://arn:aws:s3:us-east-1:1:accesspoint/ap/p?secret-access-key=S",
                "s3://arn:aws:s3:us-east-1:1:accesspoint/ap/p?secret-access-key=[redacted]",
            ),
            (
                "https://u:PW@hc.example/ping?token=T",
                "https://u:[redacted]@hc.example/ping?token=[redacted]",
            ),
            ("/plain/path", "/plain/path"),
            ("file:///r?x", "file:///r?x"),
            ("not a url ?password=P", "not a url ?password=[redacted]"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn settings_and_debug() {
        for key in [
            "secret-access-key",
            "sse-customer-key",
            "account-key",
            "sas-token",
            "password",
            "webdav-password",
            "token",
            "jwt",
            "seed",
            "nkey",
            "mcp-token",
            "session_token",
        ] {
            assert!(is_secret_key(key), "{key}");
            assert_eq!(redact_setting(key, "V"), REDACTED, "{key}");
        }
        for key in [
            "access-key-id",
            "account-name",
            "sse-customer-key-md5",
            "sse-kms-key-id",
            "key-path",
            "host-key",
            "client-key",
            "creds",
            "bucket",
        ] {
            assert!(!is_secret_key(key), "{key}");
            assert_eq!(redact_setting(key, "V"), "V", "{key}");
        }
        assert_eq!(
            redact_setting("webdav-url", "https://u:PW@h/dav"),
            "https://u:[redacted]@h/dav"
        );
        let s = Secret::new("PW");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert!(s.matches(b"PW") && !s.matches(b"PX") && !s.matches(b"P"));
        let shown = format!(
            "{:?}",
            debug_settings([("sas-token", "sv=1&sig=S"), ("bucket", "b")])
        );
        assert_eq!(shown, r#"{"sas-token": "[redacted]", "bucket": "b"}"#);
        assert_eq!(Secret::non_empty(""), None);
    }
}
