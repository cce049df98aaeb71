//! The reader against Litestream's behaviour: defaults, every key, and errors naming the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn must(text: &str) -> Config {
    match parse(text, false) {
        Ok(c) if c.replicate_errors.is_empty() => c,
        Ok(c) => panic!("unexpected: {:?}", c.replicate_errors),
        Err(e) => panic!("parse failed: {e}"),
    }
}

#[test]
fn root_cas_is_a_list() {
    let c = parse(
        "dbs:\n  - path: /a.db\n    replica:\n      url: nats://127.0.0.1:4222/b\n      root-cas: [/ca1.pem, /ca2.pem]\n",
        false,
    )
    .expect("config");
    assert_eq!(
        c.dbs[0]
            .replica
            .settings
            .get("root-cas")
            .map(String::as_str),
        Some("/ca1.pem\n/ca2.pem")
    );
    let e = err("dbs:\n  - path: /a.db\n    replica:\n      url: nats://h:4222/b\n      root-cas: [{a: 1}]\n");
    assert!(e.contains("dbs[0].replica.root-cas"), "{e}");
}

/// The error `replicate` gives: a read error, or else the first of `replicate_errors`.
fn err(text: &str) -> String {
    match parse(text, false) {
        Err(e) => e.to_string(),
        Ok(c) => match c.replicate_errors.first() {
            Some(e) => e.to_string(),
            None => panic!("expected an error for:\n{text}"),
        },
    }
}

#[test]
fn what_only_replicate_refuses_does_not_stop_a_read() {
    for (text, key) in [
        ("addr: \"9090\"\n", "addr"),
        ("mcp-addr: localhost\n", "mcp-addr"),
        ("mcp-token: ''\n", "mcp-token"),
    ] {
        let c = parse(text, false).expect(text);
        let keys: Vec<_> = c.replicate_errors.iter().filter_map(|e| e.key()).collect();
        assert_eq!(keys, [key], "{text}");
    }
}

#[test]
fn full_config() {
    let c = must(
        r#"
addr: :9090
levels:
  - interval: 10s
  - interval: 1m
snapshot:
  interval: 20s
  retention: 1h
l0-retention: 0
retention:
  enabled: false
sync-interval: 2s
logging:
  level: debug
  type: json
dbs:
  - path: sqlite:///tmp/a.db
    monitor-interval: 100ms
    checkpoint-interval: 0
    busy-timeout: 5s
    min-checkpoint-page-count: 10
    truncate-page-n: -1
    max-sync-wal-bytes: 1MiB
    replica:
      url: file:///tmp/replica-a
      max-sync-ltx-files: 7
  - path: /tmp/b.db
    meta-path: /tmp/meta-b
    replicas:
      - path: /tmp/replica-b
        sync-interval: 250ms
"#,
    );
    assert_eq!(
        c.levels,
        vec![Duration::from_secs(10), Duration::from_secs(60)]
    );
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    assert_eq!(c.snapshot_interval, Duration::from_secs(20));
    assert_eq!(c.l0_retention, Duration::ZERO);
    assert!(!c.retention_enabled);
    assert_eq!(c.logging.format, crate::logfmt::LogFormat::Json);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let a = &c.dbs[0];
    assert_eq!(a.path, PathBuf::from("/tmp/a.db"));
    assert_eq!(a.meta_path, PathBuf::from("/tmp/.a.db-litestream"));
    assert_eq!(a.monitor_interval, Duration::from_millis(100));
    assert_eq!(a.checkpoint_interval, Duration::ZERO);
    assert_eq!(a.min_checkpoint_page_n, 10);
    assert_eq!(a.truncate_page_n, -1);
    assert_eq!(a.max_sync_wal_bytes, 1 << 20);
    assert_eq!(a.replica.url, "/tmp/replica-a");
    assert_eq!(a.replica.kind, "file");
    assert_eq!(a.replica.sync_interval, Duration::from_secs(2));
    assert_eq!(a.replica.max_sync_ltx_files, 7);
    let b = &c.dbs[1];
    assert_eq!(b.meta_path, PathBuf::from("/tmp/meta-b"));
    assert_eq!(b.replica.sync_interval, Duration::from_millis(250));
    assert_eq!(b.busy_timeout, defaults::BUSY_TIMEOUT);
}

#[test]
fn env_expansion_is_applied_before_yaml_unless_disabled() {
    std::env::set_var("LS_ENGINE_TEST_REPLICA_DIR", "/tmp/from-env");
    let text = "dbs:\n  - path: /tmp/x.db\n    replica:\n      path: $LS_ENGINE_TEST_REPLICA_DIR\n";
    let c = parse(text, true).expect("parse");
    assert_eq!(c.dbs[0].replica.url, "/tmp/from-env");
    let c = parse(text, false).expect("parse");
    assert!(c.dbs[0]
        .replica
        .url
        .ends_with("$LS_ENGINE_TEST_REPLICA_DIR"));
}

#[test]
fn socket_and_heartbeat_keys() {
    let c = must("socket:\n  enabled: true\n  permissions: 0660\n");
    let sc = c.socket.expect("socket");
    assert_eq!(sc.path, PathBuf::from(DEFAULT_SOCKET_PATH));
    assert_eq!(sc.permissions, 0o660);
    let c = must("socket:\n  enabled: true\n  path: /tmp/x.sock\n");
    assert_eq!(c.socket.map(|s| s.permissions), Some(0o600));
    assert!(must("socket:\n  path: /tmp/x.sock\n").socket.is_none());
    assert_eq!(
        must("socket:\n  enabled: true\n  permissions: 384\n")
            .socket
            .map(|s| s.permissions),
        Some(0o600)
    );
    assert!(err("socket:\n  enabled: true\n  permissions: 0999\n").contains("socket.permissions"));
    assert!(
        err("socket:\n  enabled: true\n  path: ''\n  permissions: abc\n")
            .contains("socket.permissions")
    );

    let c = must("heartbeat-url: http://h/ping\n");
    let hb = c.heartbeat.expect("heartbeat");
    assert_eq!(hb.interval, Duration::from_secs(300));
    let c = must("heartbeat-url: https://h/ping\nheartbeat-interval: 2m\n");
    assert_eq!(
        c.heartbeat.map(|h| h.interval),
        Some(Duration::from_secs(120))
    );
    assert!(must("heartbeat-interval: 2m\n").heartbeat.is_none());
    assert!(err("heartbeat-url: ftp://h\n").contains("heartbeat-url"));
    assert!(
        err("heartbeat-url: http://h\nheartbeat-interval: 30s\n").contains("heartbeat-interval")
    );
}

#[test]
fn unknown_keys_warn_with_line() {
    let c = must(
        "dbs:\n  - path: /tmp/a.db\n    colour: blue\n    replica:\n      path: /tmp/r\n      bogus: 1\nwhatever: 2\n",
    );
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("dbs[0].colour") && w.contains("line 3")));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("dbs[0].replica.bogus") && w.contains("line 6")));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("whatever") && w.contains("line 7")));
}

#[test]
fn errors_name_the_key() {
    let e = err("dbs:\n  - path: /a.db\n    monitor-interval: 5x\n    replica: {path: /r}\n");
    assert!(e.contains("dbs[0].monitor-interval"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica: {url: \"ftp://h:4222/b\"}\n");
    assert!(
        e.contains("dbs[0].replica.url") && e.contains("unknown replica type"),
        "{e}"
    );
    let e = err("dbs:\n  - path: /a.db\n    replica: {url: \"s3://bucket/db\", part-size: lots}\n");
    assert!(e.contains("dbs[0].replica.url"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica: {type: s3, path: db}\n");
    assert!(e.contains("dbs[0].replica") && e.contains("bucket"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica: {type: ftp, bucket: b}\n");
    assert!(e.contains("dbs[0].replica.type"), "{e}");
    let e = err("addr: \"9090\"\n");
    assert!(e.contains("config key addr") && e.contains("port"), "{e}");
    let e = err("mcp-addr: localhost\n");
    assert!(
        e.contains("config key mcp-addr") && e.contains("port"),
        "{e}"
    );
    let c = parse("mcp-addr: 127.0.0.1:3001\n", false).expect("mcp-addr");
    assert_eq!(c.mcp_addr.as_deref(), Some("127.0.0.1:3001"));
    assert_eq!(
        parse("mcp-addr: ''\n", false).expect("empty").mcp_addr,
        None
    );
    // Half an age block: `replicate` refuses it (it must both write and read back).
    let e = err("dbs:\n  - path: /a.db\n    replica: {path: /r, age: {recipients: [x]}}\n");
    assert!(
        e.contains("dbs[0].replica.age") && e.contains("identities"),
        "{e}"
    );
    // A misspelt key is refused by every reader: it would otherwise upload plaintext.
    let e = err("dbs:\n  - path: /a.db\n    replica: {path: /r, age: {recipient: [x]}}\n");
    assert!(
        e.contains("dbs[0].replica.age") && e.contains("recipient"),
        "{e}"
    );
    let e = err("dbs:\n  - path: /a.db\n");
    assert!(e.contains("dbs[0].replica"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica: {path: /r, region: us-east-1}\n");
    assert!(e.contains("dbs[0].replica.region"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    max-sync-wal-bytes: lots\n    replica: {path: /r}\n");
    assert!(e.contains("dbs[0].max-sync-wal-bytes"), "{e}");
    let c = must("auto-recover: true\ndbs:\n  - path: /a.db\n    replica: {path: /r}\n");
    assert!(
        c.dbs[0].replica.auto_recover,
        "inherited from the top level"
    );
    let e = err("snapshot:\n  interval: 0s\n");
    assert!(e.contains("snapshot.interval"), "{e}");
    let e = err("levels:\n  - interval: 0s\n");
    assert!(e.contains("levels[0].interval"), "{e}");
}

#[test]
fn directory_entries() {
    let c = must(
        "dbs:\n  - path: /a.db\n    replica: {path: /r/a}\n  - dir: /data\n    pattern: '*.db'\n    recursive: true\n    watch: true\n    meta-dir: /meta\n    monitor-interval: 250ms\n    restore-if-db-not-exists: true\n    replica: {url: 's3://bkt/pre?region=x'}\n",
    );
    assert_eq!(c.dbs.len(), 1);
    let d = &c.dirs[0];
    assert_eq!(d.key, "dbs[1]");
    assert_eq!(d.dir, PathBuf::from("/data"));
    assert_eq!(d.pattern, "*.db");
    assert!(d.recursive && d.watch && d.restore_if_missing);
    assert!(!d.template.restore_if_missing);
    assert_eq!(d.template.monitor_interval, Duration::from_millis(250));
    let db = d.db_for(Path::new("/data/sub/b.db")).expect("db_for");
    assert_eq!(db.path, PathBuf::from("/data/sub/b.db"));
    assert_eq!(db.meta_path, PathBuf::from("/meta/sub/b.db-litestream"));
    assert_eq!(db.replica.url, "s3://bkt/pre/sub/b.db?region=x");
    assert_eq!(db.monitor_interval, Duration::from_millis(250));

    // A file replica gets `<path>/<rel>`; meta-path gives `<meta-path>/<reldir>/.<file>-litestream`.
    let c = must(
        "dbs:\n  - dir: /data\n    pattern: '*'\n    meta-path: /m\n    replica: {url: 'file:///r'}\n",
    );
    let db = c.dirs[0]
        .db_for(Path::new("/data/x/y.sqlite"))
        .expect("db_for");
    assert_eq!(db.replica.url, "/r/x/y.sqlite");
    assert_eq!(db.meta_path, PathBuf::from("/m/x/.y.sqlite-litestream"));
    let db = c.dirs[0]
        .db_for(Path::new("/data/y.sqlite"))
        .expect("db_for");
    assert_eq!(db.meta_path, PathBuf::from("/m/.y.sqlite-litestream"));

    // Default meta directory beside the database; `path` key of a remote replica.
    let c = must(
        "bucket: b\ndbs:\n  - dir: /data\n    pattern: '*.db'\n    replica: {type: s3, path: backups/}\n",
    );
    let d = &c.dirs[0];
    assert!(!d.recursive && !d.watch);
    assert_eq!(d.meta, MetaBase::Default);
    let db = d.db_for(Path::new("/data/s/a.db")).expect("db_for");
    assert_eq!(db.meta_path, PathBuf::from("/data/s/.a.db-litestream"));
    assert_eq!(
        db.replica.settings.get("path").map(String::as_str),
        Some("backups/s/a.db")
    );
    assert_eq!(
        db.replica.settings.get("bucket").map(String::as_str),
        Some("b")
    );
    let c = must("bucket: b\ndbs:\n  - dir: /data\n    pattern: '*.db'\n    replica: {type: s3}\n");
    let db = c.dirs[0].db_for(Path::new("/data/a.db")).expect("db_for");
    assert_eq!(
        db.replica.settings.get("path").map(String::as_str),
        Some("a.db")
    );
}

#[test]
fn directory_entry_errors_name_the_key() {
    let r = "    replica: {path: /r}\n";
    for (entry, key, text) in [
        ("  - dir: /d\n", "dbs[0].pattern", "'pattern' is required"),
        (
            "  - dir: /d\n    path: /a.db\n    pattern: '*'\n",
            "dbs[0].dir",
            "both 'path' and 'dir'",
        ),
        (
            "  - pattern: '*.db'\n",
            "dbs[0].path",
            "either 'path' or 'dir'",
        ),
        (
            "  - path: /a.db\n    watch: true\n",
            "dbs[0].watch",
            "only be enabled with a directory",
        ),
        (
            "  - path: /a.db\n    meta-dir: /m\n",
            "dbs[0].meta-dir",
            "only be used with a directory",
        ),
        (
            "  - dir: /d\n    pattern: '*'\n    meta-dir: /m\n    meta-path: /p\n",
            "dbs[0].meta-dir",
            "both 'meta-path' and 'meta-dir'",
        ),
        (
            "  - dir: /d\n    pattern: '[x'\n",
            "dbs[0].pattern",
            "syntax error in pattern",
        ),
        (
            "  - dir: /d\n    pattern: '*'\n    recursive: maybe\n",
            "dbs[0].recursive",
            "true or false",
        ),
        (
            "  - dir: /d\n    pattern: '*'\n    watch: 3\n",
            "dbs[0].watch",
            "true or false",
        ),
    ] {
        let e = err(&format!("dbs:\n{entry}{r}"));
        assert!(e.contains(key) && e.contains(text), "{entry}: {e}");
    }
    let e = err("dbs:\n  - dir: /d\n    pattern: '*'\n");
    assert!(e.contains("dbs[0].replica"), "{e}");
}

#[test]
fn s3_replicas_pass_settings_through() {
    let c = must(
        "access-key-id: AK\nregion: eu-west-1\npart-size: 64MiB\nwebdav-url: http://dav\ndbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: b\n      path: db/a\n      endpoint: http://localhost:9000\n  - path: /b.db\n    replica: {url: \"s3://b2/p?region=us-east-1\"}\n  - path: /c.db\n    replica: {path: /r}\n",
    );
    let a = &c.dbs[0].replica;
    assert_eq!(a.kind, "s3");
    assert_eq!(a.url, "");
    assert_eq!(a.settings.get("bucket").map(String::as_str), Some("b"));
    assert_eq!(a.settings.get("path").map(String::as_str), Some("db/a"));
    assert_eq!(
        a.settings.get("access-key-id").map(String::as_str),
        Some("AK")
    );
    // As in Litestream, a top-level part-size or webdav-url is no default.
    assert_eq!(a.settings.get("part-size"), None);
    assert_eq!(a.settings.get("webdav-url"), None);
    let b = &c.dbs[1].replica;
    assert_eq!(b.url, "s3://b2/p?region=us-east-1");
    // Global S3 keys do not leak into a file replica.
    assert!(c.dbs[2].replica.settings.is_empty());
}

#[test]
fn args_config() {
    let c = from_args("/tmp/db.sqlite", "file:///tmp/rep").expect("args");
    assert_eq!(c.dbs[0].replica.url, "/tmp/rep");
    assert_eq!(c.dbs[0].monitor_interval, defaults::MONITOR_INTERVAL);
    let e = from_args("/tmp/db.sqlite", "ftp://b/p").expect_err("ftp");
    assert!(e.to_string().contains("REPLICA_URL"));
    let c = from_args("/tmp/db.sqlite", "gs://b/p").expect("gs");
    assert_eq!(c.dbs[0].replica.kind, "gs");
    let c = from_args("/tmp/db.sqlite", "s3://b/p").expect("s3");
    assert_eq!(c.dbs[0].replica.kind, "s3");
}

/// `-config ~/x.yml` and `LITESTREAM_CONFIG=~/x.yml` (a `~` no shell expanded) read the file in
/// the home directory, as Litestream's `OpenConfigFile` does.
#[test]
fn config_path_tilde_is_the_home_directory() {
    let Some(home) = home_dir().filter(|h| h.is_dir()) else {
        eprintln!("SKIPPED config_path_tilde_is_the_home_directory: no home directory");
        return;
    };
    let name = format!(".ls-config-tilde-test-{}.yml", std::process::id());
    let file = home.join(&name);
    let text = "dbs:\n  - path: /tilde/a.db\n    replica:\n      path: /tilde/r\n";
    std::fs::write(&file, text).expect("write config");
    let got = load(Path::new(&format!("~/{name}")), false);
    let _ = std::fs::remove_file(&file);
    let cfg = got.expect("load ~/ config");
    assert_eq!(cfg.dbs.len(), 1);
    assert_eq!(cfg.dbs[0].path, PathBuf::from("/tilde/a.db"));
}

#[test]
fn validation_interval_and_verify_compaction() {
    let c = must("validation:\n  interval: 1m\nverify-compaction: true\n");
    assert_eq!(c.validation_interval, Some(Duration::from_secs(60)));
    assert!(c.verify_compaction);
    assert!(c.replicate_errors.is_empty());
    let c = must("validation:\n  interval: 0s\n");
    assert_eq!(c.validation_interval, None);
    assert!(!c.verify_compaction);
}
