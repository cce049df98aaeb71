//! Issue 18 item 1: S3 credentials from a real STS. moto (`tests/sts/start.sh`) answers
//! `AssumeRoleWithWebIdentity` and `AssumeRole`; the replica is an s3s-fs of this test's own that
//! accepts only the keys moto hands out, so a replica that works proves the requests were
//! signed with them. moto's keys repeat after `POST /moto-api/seed?a=N`: the test asks for them
//! once to learn them, seeds again, and the engine (one STS call per process: the credentials
//! are cached for all its replicas) gets the same ones. `ls-restore` does the same.

use crate::common::*;
use crate::harden::{restore_s3_cmd, text};
use crate::mcp::{free_port, http_at};

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use test_support::env::server_vars;

const ACCOUNT: &str = "123456789012";

struct Sts(SocketAddr);

impl Sts {
    fn new() -> Sts {
        let [endpoint] = server_vars("sts", ["LS_STS_ENDPOINT"]);
        let addr = endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("LS_STS_ENDPOINT is http://IP:PORT");
        Sts(addr)
    }

    fn url(&self) -> String {
        format!("http://{}", self.0)
    }

    fn seed(&self, n: u32) {
        let a = http_at(
            self.0,
            "POST",
            &format!("/moto-api/seed?a={n}"),
            &[],
            "",
            false,
        );
        assert_eq!(a.status, 200, "seeding moto");
    }

    /// The keys the next STS call after `seed(n)` hands out (moto's session tokens are random;
    /// s3s-fs does not check them).
    fn keys_after_seed(&self, n: u32) -> (String, String) {
        self.seed(n);
        let form = format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=probe\
             &RoleArn=arn%3Aaws%3Aiam%3A%3A{ACCOUNT}%3Arole%2Fprobe&WebIdentityToken=probe"
        );
        let a = http_at(
            self.0,
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
            false,
        );
        let xml = String::from_utf8_lossy(&a.body).to_string();
        assert_eq!(a.status, 200, "{xml}");
        let tag = |t: &str| {
            let open = format!("<{t}>");
            let start = xml.find(&open).expect(t) + open.len();
            let end = start + xml[start..].find('<').expect(t);
            xml[start..end].to_owned()
        };
        let keys = (tag("AccessKeyId"), tag("SecretAccessKey"));
        self.seed(n);
        keys
    }
}

/// An s3s-fs of this test's own that accepts only `keys`, with bucket `ls-sts`.
struct OwnS3 {
    _server: OwnServer,
    endpoint: String,
}

impl OwnS3 {
    fn start(dir: &Path, (id, secret): &(String, String)) -> OwnS3 {
        let data = dir.join("s3data");
        fs::create_dir_all(data.join("ls-sts")).expect("bucket dir");
        let port = free_port();
        let mut cmd = Command::new("s3s-fs");
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", id, "--secret-key", secret])
            .arg(&data);
        let server = OwnServer::start(&mut cmd, port, "s3s-fs (tests/s3/start.sh)");
        OwnS3 {
            _server: server,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// A command with none of the machine's AWS settings: `HOME` is `home`, so `~/.aws` is the
/// test's, and STS is moto.
fn aws_clean(bin: &Path, home: &Path, sts: &Sts) -> Command {
    let mut c = command_without(
        bin,
        &[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY",
            "AWS_SECRET_KEY",
            "AWS_SESSION_TOKEN",
            "LITESTREAM_ACCESS_KEY_ID",
            "LITESTREAM_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ],
    );
    c.env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_STS", sts.url());
    c
}

/// How one scenario gets its credentials: variables, and files written under `home`.
struct Scenario {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    files: Vec<(&'static str, String)>,
}

fn scenarios(home: &Path) -> Vec<Scenario> {
    let token = home.join("token");
    let role = |r: &str| format!("arn:aws:iam::{ACCOUNT}:role/{r}");
    vec![
        Scenario {
            name: "EKS IRSA: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN",
            env: vec![
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
                ("AWS_ROLE_ARN", role("ls-web")),
                ("AWS_ROLE_SESSION_NAME", "ls-test".into()),
            ],
            files: vec![("token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJscyJ9.".into())],
        },
        Scenario {
            name: "a role profile whose source_profile has static keys",
            env: vec![("AWS_PROFILE", "ops".into())],
            files: vec![
                (
                    ".aws/config",
                    format!(
                        "[profile ops]\nrole_arn = {}\nsource_profile = base\nexternal_id = x1\n",
                        role("ls-ops")
                    ),
                ),
                (
                    ".aws/credentials",
                    "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = base-secret\n"
                        .into(),
                ),
            ],
        },
        Scenario {
            name: "credential_process keys assuming a role, in the default profile",
            env: vec![],
            files: vec![(
                ".aws/config",
                format!(
                    "[default]\nrole_arn = {}\ncredential_process = printf '{{\"Version\":1,\
                     \"AccessKeyId\":\"AKIAPROC\",\"SecretAccessKey\":\"proc-secret\"}}'\n",
                    role("ls-proc")
                ),
            )],
        },
    ]
}

#[test]
#[ignore = "needs tests/s3 (s3s-fs) and tests/sts (moto): tests/run-all.sh starts them"]
fn s3_replicas_work_with_credentials_from_sts() {
    let sts = Sts::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, sc) in scenarios(dir.path()).iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        let home = case.join("home");
        fs::create_dir_all(home.join(".aws")).expect("home");
        // The token file is named absolute in the env; the others live under HOME.
        for (name, body) in &sc.files {
            let p = if *name == "token" {
                dir.path().join("token")
            } else {
                home.join(name)
            };
            fs::write(p, body).expect("write");
        }
        let seed = 4100 + u32::try_from(i).expect("few");
        let keys = sts.keys_after_seed(seed);
        let s3 = OwnS3::start(&case, &keys);

        let db = case.join("app.db");
        let c = app(&db, 4096);
        setup_table(&c);
        insert_rows(&c, 0, 200, 100);
        let cfg = case.join("ls.yml");
        fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: ls-sts\n      \
                 path: db\n      endpoint: {}\n      region: us-east-1\n      \
                 force-path-style: true\n",
                db.display(),
                s3.endpoint
            ),
        )
        .expect("config");
        let o = aws_clean(Path::new(ENGINE), &home, &sts)
            .envs(sc.env.iter().map(|(k, v)| (*k, v)))
            .args(["replicate", "-once", "-config"])
            .arg(&cfg)
            .output()
            .expect("ls-engine");
        assert!(o.status.success(), "{}: replicate: {}", sc.name, text(&o));

        let url = format!(
            "s3://ls-sts/db?endpoint={}&region=us-east-1&forcePathStyle=true",
            s3.endpoint
        );
        let out = case.join("restored.db");
        let restore = |out: &Path| {
            aws_clean(&ls_restore_bin(), &home, &sts)
                .envs(sc.env.iter().map(|(k, v)| (*k, v)))
                .arg("-o")
                .arg(out)
                .arg(&url)
                .output()
                .expect("ls-restore")
        };
        sts.seed(seed);
        let o = restore(&out);
        assert!(o.status.success(), "{}: restore: {}", sc.name, text(&o));
        integrity_ok(&out);
        assert_same_rows(&db, &out);

        // Without the seed moto hands out other keys, which this s3s-fs refuses: the requests
        // were signed with what STS gave, not with anything else.
        let other = case.join("other.db");
        let o = restore(&other);
        let t = text(&o);
        assert!(
            !o.status.success(),
            "{}: restore with other keys: {t}",
            sc.name
        );
        assert!(
            !other.exists(),
            "{}: a failed restore left {other:?}",
            sc.name
        );
        for secret in [&keys.1, "base-secret", "proc-secret"] {
            assert!(
                !t.contains(secret),
                "{}: a secret in the output: {t}",
                sc.name
            );
        }
    }
}

#[test]
#[ignore = "needs tests/sts (moto): tests/run-all.sh starts it"]
fn a_web_identity_that_cannot_be_used_is_a_clear_error() {
    let sts = Sts::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    setup_table(&app(&db, 4096));
    let url = "s3://ls-sts/db?endpoint=http://127.0.0.1:9&region=us-east-1&forcePathStyle=true";
    let run = |env: &[(&str, &str)]| {
        let o = aws_clean(&ls_restore_bin(), dir.path(), &sts)
            .envs(env.iter().copied())
            .arg("-o")
            .arg(dir.path().join("out.db"))
            .arg(url)
            .output()
            .expect("ls-restore");
        assert!(!o.status.success(), "{env:?}: {}", text(&o));
        text(&o)
    };
    let missing = dir.path().join("no-such-token");
    let t = run(&[
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            &missing.display().to_string(),
        ),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/x"),
    ]);
    assert!(t.contains("no-such-token"), "names the token file: {t}");
    let token = dir.path().join("token");
    fs::write(&token, "t").expect("token");
    let t = run(&[("AWS_WEB_IDENTITY_TOKEN_FILE", &token.display().to_string())]);
    assert!(t.contains("AWS_ROLE_ARN"), "names the missing role: {t}");
    let t = run(&[("AWS_PROFILE", "nowhere")]);
    assert!(t.contains("\"nowhere\""), "names the missing profile: {t}");
}

/// A replica that names no endpoint goes where the AWS SDKs' own configuration points S3:
/// `AWS_ENDPOINT_URL_S3` for the engine; for `ls-restore`, the profile's `services` section,
/// which wins over the profile's own `endpoint_url` (a port nobody listens on here). The
/// restored rows prove both reached the test server.
#[test]
#[ignore = "needs the S3 test server"]
fn an_endpoint_from_the_environment_or_the_profile() {
    let srv = s3_server();
    let OneDb {
        dir, db, conn: c, ..
    } = one_db();
    insert_rows(&c, 0, 50, 10);
    let prefix = test_support::unique_name("endpoint-env");
    let cfg = dir.path().join("env.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: s3\n      \
             bucket: {}\n      path: {prefix}\n      region: us-east-1\n      \
             access-key-id: {}\n      secret-access-key: {}\n      sync-interval: 100ms\n",
            db.display(),
            srv.bucket,
            srv.access_key,
            srv.secret_key
        ),
    )
    .expect("config");
    let none = dir.path().join("no-aws-config");
    let e = Engine::start_env(
        &cfg,
        &dir.path().join("engine.log"),
        &[
            ("AWS_ENDPOINT_URL_S3", srv.endpoint.as_str()),
            ("AWS_CONFIG_FILE", none.to_str().expect("utf-8")),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || e
            .tail()
            .contains("replica sync")),
        "nothing reached the replica:\n{}",
        e.tail()
    );
    insert_rows(&c, 50, 50, 10);
    e.stop();

    let aws = dir.path().join("aws-config");
    fs::write(
        &aws,
        format!(
            "[default]\nendpoint_url = http://127.0.0.1:1\nservices = local\n\n\
             [services local]\ns3 =\n  endpoint_url = {}\n",
            srv.endpoint
        ),
    )
    .expect("aws config");
    let out = dir.path().join("restored.db");
    let url = format!("s3://{}/{prefix}?region=us-east-1", srv.bucket);
    let o = restore_s3_cmd(&url, &out, &srv.access_key, &srv.secret_key)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", &aws)
        .output()
        .expect("ls-restore");
    assert!(o.status.success(), "restore: {}", text(&o));
    assert_same_rows(&db, &out);
}
