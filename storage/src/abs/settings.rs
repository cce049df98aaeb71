//! Where an `abs` replica lives, from a URL (`abs://[account@]container/path`) or a YAML entry
//! (`account-name`, `account-key`, `sas-token`, `bucket`, `endpoint`, `path`), resolved the way
//! Litestream 0.5.17 resolves them (`cmd/litestream/main.go`, `abs/replica_client.go`).

use crate::secret::redact_url;
use crate::{Result, Secret, StorageError};

/// Environment fallbacks Litestream reads when the config has no key or token.
pub const ENV_ACCOUNT_KEY: &str = "LITESTREAM_AZURE_ACCOUNT_KEY";
/// Environment fallback for the SAS token (`sas-token`).
pub const ENV_SAS_TOKEN: &str = "LITESTREAM_AZURE_SAS_TOKEN";

/// Where an abs replica lives and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AbsSettings {
    /// The URL or config entry it was made from, for messages (without secrets).
    pub source: String,
    /// Storage account; also the host of the default endpoint.
    pub account_name: Option<String>,
    /// Base64 account key for Shared Key signing (`account-key`); needs `account_name`.
    pub account_key: Option<Secret>,
    /// SAS token (`sas-token`); preferred over the account key when both are set.
    pub sas_token: Option<Secret>,
    /// The container (`bucket` in the config).
    pub container: String,
    /// Blob name prefix, cleaned as Go's `path.Clean` would, without leading or trailing
    /// slashes ("" for the container's root).
    pub path: String,
    /// Blob service URL; `https://<account>.blob.core.windows.net` when unset. Azurite's is
    /// path-style, `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
}

fn non_empty(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// Go's `path.Clean` of a blob prefix, then without its leading slash; "." becomes "".
pub fn clean_path(p: &str) -> String {
    crate::gopath::clean_relative(p)
}

impl AbsSettings {
    /// Parses `abs://[account@]container[/path]`. Like Litestream, the query string is
    /// ignored and a password in the user part is not used.
    pub fn from_url(url: &str) -> Result<AbsSettings> {
        let bad = |reason: &str| StorageError::invalid_url(url, reason.to_owned());
        let rest = url
            .strip_prefix("abs://")
            .ok_or_else(|| bad("an abs URL starts with abs://"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (user, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.split(':').next().unwrap_or_default()), h),
            None => (None, authority),
        };
        let decode = |s: &str| {
            crate::transport::encode::decode_strict(s).ok_or_else(|| bad("bad percent-encoding"))
        };
        let container = decode(host)?;
        if container.is_empty() {
            return Err(bad("bucket required for abs replica URL"));
        }
        Ok(AbsSettings {
            source: redact_url(url),
            account_name: user.map(decode).transpose()?.and_then(|u| non_empty(&u)),
            container,
            path: clean_path(&decode(path)?),
            ..AbsSettings::default()
        })
    }

    /// Builds the settings from a YAML replica entry: its optional `url` and the backend keys
    /// as written (`path` included), with the entry's own keys after the global defaults.
    /// Empty values count as unset (as in Litestream, where a global default fills them);
    /// keys of other backends are ignored.
    pub fn from_config<'a>(
        url: Option<&str>,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<AbsSettings> {
        let mut s = AbsSettings::default();
        let mut bucket = None;
        let mut path = None;
        for (k, v) in settings {
            let Some(v) = non_empty(v) else { continue };
            match k {
                "account-name" => s.account_name = Some(v),
                "account-key" => s.account_key = Some(Secret::new(v)),
                "sas-token" => s.sas_token = Some(Secret::new(v)),
                "bucket" => bucket = Some(v),
                "path" => path = Some(v),
                "endpoint" => s.endpoint = Some(v),
                _ => {}
            }
        }
        let config_error = |msg: String| StorageError::invalid_url(url.unwrap_or("(config)"), msg);
        if let Some(e) = &s.endpoint {
            if crate::transport::pool::parse_http_url(e).is_none() {
                return Err(config_error(format!(
                    "endpoint {e:?} is not an http:// or https:// URL"
                )));
            }
        }
        match url.filter(|u| !u.is_empty()) {
            Some(u) => {
                if path.is_some() {
                    return Err(config_error(
                        "cannot specify url & path for abs replica".into(),
                    ));
                }
                if bucket.is_some() {
                    return Err(config_error(
                        "cannot specify url & bucket for abs replica".into(),
                    ));
                }
                let from_url = AbsSettings::from_url(u)?;
                s.account_name = s.account_name.or(from_url.account_name);
                s.container = from_url.container;
                s.path = from_url.path;
                s.source = redact_url(u);
            }
            None => {
                s.container =
                    bucket.ok_or_else(|| config_error("bucket required for abs replica".into()))?;
                s.path = clean_path(path.as_deref().unwrap_or_default());
                s.source = format!("abs://{}/{}", s.container, s.path);
            }
        }
        Ok(s)
    }

    /// The blob service URL requests go to.
    pub fn endpoint_url(&self) -> Result<String> {
        match (&self.endpoint, &self.account_name) {
            (Some(e), _) => Ok(e.trim_end_matches('/').to_owned()),
            (None, Some(a)) => Ok(format!("https://{a}.blob.core.windows.net")),
            (None, None) => Err(StorageError::invalid_url(
                self.source.clone(),
                "abs: account name is required when endpoint is not specified \
                         (set account-name, or abs://ACCOUNT@container/path)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = AbsSettings::from_url("abs://acct@cont/a/b/../c/?x=1").expect("url");
        assert_eq!(s.account_name.as_deref(), Some("acct"));
        assert_eq!((s.container.as_str(), s.path.as_str()), ("cont", "a/c"));
        assert_eq!(
            s.endpoint_url().expect("endpoint"),
            "https://acct.blob.core.windows.net"
        );
        let s = AbsSettings::from_url("abs://cont").expect("url");
        assert_eq!((s.account_name.as_deref(), s.path.as_str()), (None, ""));
        assert!(s
            .endpoint_url()
            .is_err_and(|e| e.to_string().contains("account")));
        let s = AbsSettings::from_url("abs://cont/db%20one/").expect("url");
        assert_eq!(s.path, "db one");
        assert!(AbsSettings::from_url("abs:///path").is_err());
        assert!(AbsSettings::from_url("abs://acct@/path").is_err());
        assert!(AbsSettings::from_url("s3://b/p").is_err());
    }

    #[test]
    fn config_keys() {
        let s = AbsSettings::from_config(
            None,
            [
                ("account-name", "global"),
                ("account-key", "Zm9v"),
                ("bucket", "cont"),
                ("account-name", "mine"),
                ("sas-token", ""),
                ("path", "/db/x/"),
                ("endpoint", "http://127.0.0.1:10000/devstoreaccount1/"),
                ("region", "ignored"),
            ],
        )
        .expect("config");
        assert_eq!(s.account_name.as_deref(), Some("mine"));
        assert_eq!(s.account_key.as_ref().map(Secret::expose), Some("Zm9v"));
        assert_eq!(s.sas_token, None);
        assert_eq!((s.container.as_str(), s.path.as_str()), ("cont", "db/x"));
        assert_eq!(
            s.endpoint_url().expect("endpoint"),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert!(!format!("{s:?}").contains("Zm9v"), "key shown in {s:?}");

        // A URL with keys: the account key comes from the keys, the account name from the
        // keys before the URL's user; bucket and path may not be given twice.
        let s = AbsSettings::from_config(
            Some("abs://urlacct@cont/p"),
            [("account-key", "k"), ("endpoint", "https://e.example")],
        )
        .expect("url + keys");
        assert_eq!(
            (
                s.account_name.as_deref(),
                s.container.as_str(),
                s.path.as_str()
            ),
            (Some("urlacct"), "cont", "p")
        );
        let s = AbsSettings::from_config(Some("abs://urlacct@cont/p"), [("account-name", "k")])
            .expect("url + name");
        assert_eq!(s.account_name.as_deref(), Some("k"));
        for key in ["bucket", "path"] {
            let e = AbsSettings::from_config(Some("abs://c/p"), [(key, "x")]).expect_err(key);
            assert!(e.to_string().contains(&format!("url & {key}")), "{e}");
        }
        let e = AbsSettings::from_config(None, [("path", "p")]).expect_err("no bucket");
        assert!(e.to_string().contains("bucket required"), "{e}");
        let e = AbsSettings::from_config(None, [("bucket", "b"), ("endpoint", "ftp://x")])
            .expect_err("bad endpoint");
        assert!(e.to_string().contains("endpoint"), "{e}");
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path(""), "");
        assert_eq!(clean_path("."), "");
        assert_eq!(clean_path("/"), "");
        assert_eq!(clean_path("a//b/./c/"), "a/b/c");
        assert_eq!(clean_path("../a/../../b"), "b");
    }
}
