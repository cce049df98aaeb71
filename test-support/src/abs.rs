//! The Azurite server of `tests/abs/start.sh`, for the abs backend's tests in every crate.
//! Without its `LS_ABS_*` variables a test is skipped, unless
//! `LS_INTEROP=1` says it must run, which makes a missing server a failure.

use std::time::{SystemTime, UNIX_EPOCH};

/// The Azurite blob service of `tests/abs/start.sh`.
#[derive(Clone, Debug)]
pub struct AbsServer {
    /// `http://127.0.0.1:<port>/<account>` (path-style, the account in the path).
    pub endpoint: String,
    pub account: String,
    pub key: String,
    /// A container that exists.
    pub container: String,
}

/// The server from the `LS_ABS_*` variables, or `None` after a skip message naming `test`.
pub fn abs_server(test: &str) -> Option<AbsServer> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("LS_ABS_ENDPOINT"),
        get("LS_ABS_ACCOUNT"),
        get("LS_ABS_KEY"),
        get("LS_ABS_CONTAINER"),
    ) {
        (Some(endpoint), Some(account), Some(key), Some(container)) => Some(AbsServer {
            endpoint,
            account,
            key,
            container,
        }),
        _ => {
            assert!(
                !std::env::var("LS_INTEROP").is_ok_and(|v| v == "1"),
                "{test}: LS_INTEROP=1 but LS_ABS_ENDPOINT/LS_ABS_ACCOUNT/LS_ABS_KEY/\
                 LS_ABS_CONTAINER are unset; source tests/abs/start.sh first"
            );
            eprintln!("SKIP {test}: no Azurite server (source tests/abs/start.sh to run it)");
            None
        }
    }
}

impl AbsServer {
    /// A blob prefix no other test (or earlier run) uses.
    pub fn unique_prefix(&self, name: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{name}-{}-{nanos}", std::process::id())
    }

    /// The `replica:` keys of a litestream.yml entry for `prefix` in the test container, one
    /// per line, without indentation. The account key is in the file too: Litestream and our
    /// tools then need no environment.
    pub fn yaml(&self, prefix: &str) -> Vec<String> {
        vec![
            "type: abs".into(),
            format!("account-name: {}", self.account),
            format!("account-key: {}", self.key),
            format!("bucket: {}", self.container),
            format!("path: {prefix}"),
            format!("endpoint: {}", self.endpoint),
        ]
    }

    /// The same entry as (key, value) pairs, for `AbsSettings::from_config`.
    pub fn pairs(&self, prefix: &str) -> Vec<(String, String)> {
        self.yaml(prefix)
            .into_iter()
            .skip(1)
            .filter_map(|l| {
                l.split_once(": ")
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }
}
