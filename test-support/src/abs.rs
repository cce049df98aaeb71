//! The Azurite server of `tests/abs/start.sh`, for the abs backend's tests in every crate.

use crate::env::{server_vars, unique_name, yaml_lines, yaml_pairs};

/// The Azurite blob service of `tests/abs/start.sh`.
#[derive(Clone, Debug)]
pub struct AbsServer {
    /// `http://127.0.0.1:<port>/<account>` (path-style, the account in the path).
    pub endpoint: String,
    /// The storage account name (`LS_ABS_ACCOUNT`).
    pub account: String,
    /// The account's shared key (`LS_ABS_KEY`).
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
        let AbsServer {
            endpoint,
            account,
            key,
            container,
        } = self;
        yaml_lines(&format!(
            "type: abs\naccount-name: {account}\naccount-key: {key}\nbucket: {container}\n\
             path: {prefix}\nendpoint: {endpoint}"
        ))
    }

    /// The same entry as (key, value) pairs, for `AbsSettings::from_config`.
    pub fn pairs(&self, prefix: &str) -> Vec<(String, String)> {
        yaml_pairs(self.yaml(prefix))
    }
}
