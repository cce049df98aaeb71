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
    // (kind, URL, keys: one `key: value` a line)
    let configs: Vec<(&str, Option<String>, String)> = vec![
        (
            "s3",
            None,
            format!(
                "bucket: b\naccess-key-id: AK\nsecret-access-key: {S}\nsse-customer-key: {S}\n\
                 endpoint: http://127.0.0.1:9"
            ),
        ),
        (
            "s3",
            Some(format!("s3://b/p?secret-access-key={S}")),
            "part-size: lots".into(),
        ),
        (
            "abs",
            None,
            format!(
                "bucket: c\naccount-name: a\naccount-key: {S}\nsas-token: sv=1&sig={S}\n\
                 endpoint: http://127.0.0.1:9/a"
            ),
        ),
        (
            "abs",
            Some(format!("abs://a:{S}@c/p?sig={S}")),
            "endpoint: ftp://x".into(),
        ),
        (
            "sftp",
            None,
            format!("host: 127.0.0.1:22\nuser: u\npassword: {S}\npath: /p"),
        ),
        (
            "sftp",
            Some(format!("sftp://u:{S}@h/p")),
            "concurrent-writes: maybe".into(),
        ),
        (
            "webdav",
            None,
            format!(
                "webdav-url: http://u:{S}@127.0.0.1:9/dav\nwebdav-username: u\n\
                 webdav-password: {S}\npath: p"
            ),
        ),
        ("webdav", None, format!("webdav-url: ftp://u:{S}@h/dav")),
        (
            "nats",
            Some("nats://127.0.0.1:4222/bkt".into()),
            format!("username: u\npassword: {S}\ntoken: {S}\njwt: {S}\nseed: {S}\nnkey: {S}"),
        ),
        (
            "nats",
            Some(format!("nats://u:{S}@127.0.0.1:4222/bkt")),
            "timeout: soon".into(),
        ),
        ("gs", Some(format!("gs://b/p?token={S}")), "".into()),
    ];
    for (kind, url, keys) in &configs {
        let r = ReplicaUrl::from_config(
            kind,
            url.as_deref(),
            keys.lines()
                .map(|l| l.split_once(": ").expect("key: value")),
        );
        let out = shown(r);
        if out.contains(S) {
            leaks.push(format!("{kind} {url:?} {keys:?}:\n{out}"));
        }
    }
    assert!(leaks.is_empty(), "secrets shown:\n{}", leaks.join("\n\n"));
}
