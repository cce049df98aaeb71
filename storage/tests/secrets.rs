//! Issue 14 item 3, at the storage layer: no secret of a replica URL or config entry shows in
//! the `Debug` of its settings or of the opened replica, nor in any error made from them.
//! `engine/tests/secrets.rs` checks the same end to end, through every command.

use storage::{ReplicaUrl, StorageError};

const S: &str = "SEKRETzq7";

/// Every place the parsed or failed value can be shown.
fn shown(r: Result<ReplicaUrl, StorageError>) -> String {
    match r {
        Ok(u) => {
            let settings = format!("{u:?}");
            let opened = match u.open() {
                Ok(rep) => format!("{rep:?}"),
                Err(e) => format!("{e} {e:?}"),
            };
            format!("{settings}\n{opened}")
        }
        Err(e) => format!("{e} {e:?}"),
    }
}

/// A config entry: backend type, optional URL, keys.
type ConfigEntry = (&'static str, Option<String>, Vec<(&'static str, String)>);

#[test]
fn issue14_3_settings_and_errors_hold_no_secret() {
    let enc = "SEKRET%7Aq7"; // percent-encoded in a URL, decoded it is not S, but keep it out too
    let urls = [
        format!("s3://bkt/p?endpoint=http://127.0.0.1:9&secret-access-key={S}&access-key-id=AK"),
        format!("s3://bkt/p?secretAccessKey={S}&sseCustomerKey={S}"),
        format!("s3://bkt/p?secret-access-key={S}&partSize=lots"),
        format!("s3://bkt/p?secret-access-key={S}&force-path-style=maybe"),
        format!("s3://u:{S}@bkt/p"),
        format!("s3://arn:aws:s3:us-east-1:1:accesspoint?secret-access-key={S}"),
        format!("oss://bkt/p?secret-access-key={S}"),
        format!("sftp://u:{S}@127.0.0.1:22/p"),
        format!("sftp://u:{S}@/p"),
        format!("sftp://:{S}@h/p"),
        format!("webdav://u:{S}@127.0.0.1:9/p"),
        format!("webdavs://u:{S}@/p"),
        format!("webdav://u:{enc}@h/p"),
        format!("nats://u:{S}@127.0.0.1:4222/bkt"),
        format!("nats://u:{S}@127.0.0.1:4222"),
        format!("abs://acct:{S}@cont/p?sv=1&sig={S}"),
        format!("abs://acct:{S}@/p"),
        format!("gs://bkt/p?token={S}"),
        format!("gs://u:{S}@bkt/p"),
        format!("ftp://u:{S}@h/p"),
    ];
    let mut leaks = Vec::new();
    for url in &urls {
        let out = shown(ReplicaUrl::parse(url));
        if out.contains(S) || out.contains(enc) {
            leaks.push(format!("{url}:\n{out}"));
        }
    }
    let configs: Vec<ConfigEntry> = vec![
        (
            "s3",
            None,
            vec![
                ("bucket", "b".into()),
                ("access-key-id", "AK".into()),
                ("secret-access-key", S.into()),
                ("sse-customer-key", S.into()),
                ("endpoint", "http://127.0.0.1:9".into()),
            ],
        ),
        (
            "s3",
            Some(format!("s3://b/p?secret-access-key={S}")),
            vec![("part-size", "lots".into())],
        ),
        (
            "abs",
            None,
            vec![
                ("bucket", "c".into()),
                ("account-name", "a".into()),
                ("account-key", S.into()),
                ("sas-token", format!("sv=1&sig={S}")),
                ("endpoint", "http://127.0.0.1:9/a".into()),
            ],
        ),
        (
            "abs",
            Some(format!("abs://a:{S}@c/p?sig={S}")),
            vec![("endpoint", "ftp://x".into())],
        ),
        (
            "sftp",
            None,
            vec![
                ("host", "127.0.0.1:22".into()),
                ("user", "u".into()),
                ("password", S.into()),
                ("path", "/p".into()),
            ],
        ),
        (
            "sftp",
            Some(format!("sftp://u:{S}@h/p")),
            vec![("concurrent-writes", "maybe".into())],
        ),
        (
            "webdav",
            None,
            vec![
                ("webdav-url", format!("http://u:{S}@127.0.0.1:9/dav")),
                ("webdav-username", "u".into()),
                ("webdav-password", S.into()),
                ("path", "p".into()),
            ],
        ),
        (
            "webdav",
            None,
            vec![("webdav-url", format!("ftp://u:{S}@h/dav"))],
        ),
        (
            "nats",
            Some("nats://127.0.0.1:4222/bkt".into()),
            vec![
                ("username", "u".into()),
                ("password", S.into()),
                ("token", S.into()),
                ("jwt", S.into()),
                ("seed", S.into()),
                ("nkey", S.into()),
            ],
        ),
        (
            "nats",
            Some(format!("nats://u:{S}@127.0.0.1:4222/bkt")),
            vec![("timeout", "soon".into())],
        ),
        ("gs", Some(format!("gs://b/p?token={S}")), vec![]),
    ];
    for (kind, url, keys) in &configs {
        let r = ReplicaUrl::from_config(
            kind,
            url.as_deref(),
            keys.iter().map(|(k, v)| (*k, v.as_str())),
        );
        let out = shown(r);
        if out.contains(S) {
            leaks.push(format!("{kind} {url:?} {keys:?}:\n{out}"));
        }
    }
    assert!(leaks.is_empty(), "secrets shown:\n{}", leaks.join("\n\n"));
}
