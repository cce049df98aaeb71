//! The Azurite server of `tests/abs/start.sh`, for the abs backend's tests in every crate.

use crate::env::{server_vars, unique_name};

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

/// The server from the `LS_ABS_*` variables; panics if they are unset.
pub fn abs_server() -> AbsServer {
    let [endpoint, account, key, container] = server_vars(
        "abs",
        [
            "LS_ABS_ENDPOINT",
            "LS_ABS_ACCOUNT",
            "LS_ABS_KEY",
            "LS_ABS_CONTAINER",
        ],
    );
    AbsServer {
        endpoint,
        account,
        key,
        container,
    }
}

impl AbsServer {
    /// A blob prefix no other test (or earlier run) uses.
    pub fn unique_prefix(&self, name: &str) -> String {
        unique_name(name)
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
