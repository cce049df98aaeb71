//! ls-engine and SFTP (the OpenSSH server of `tests/sftp/start.sh`): an idle engine sends the
//! server nothing. Replication restored by the real Litestream is the shared scenario in
//! `conformance.rs`.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

use sftp_env::{sftp_server, ByteCountingProxy, SftpServer};
use test_support::sftp as sftp_env;

/// One `dbs:` entry replicating `db` to `path` on the server, reached at `host`.
fn db_entry(db: &Path, srv: &SftpServer, host: &str, path: &Path) -> String {
    let mut s = format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n",
        db.display()
    );
    for line in srv.yaml(path) {
        let line = match line.strip_prefix("host: ") {
            Some(_) => format!("host: {host}"),
            None => line,
        };
        s.push_str(&format!("      {line}\n"));
    }
    s.push_str("      sync-interval: 100ms\n");
    s
}

/// Idle databases send the SFTP server nothing: once start-up replication and compaction have
/// settled, three idle databases send zero bytes in 45 s (counted by a proxy in front of
/// sshd), and the first write after that is shipped through the same proxy.
#[test]
#[ignore = "slow suite; needs the SFTP test server"]
fn idle_databases_send_nothing_over_sftp() {
    let srv = sftp_server();
    let proxy = ByteCountingProxy::start(&srv.host);
    let host = proxy.addr.to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = srv.unique_path("idle");
    let (config, apps) = idle_dbs(dir.path(), "", 3, |i, db| {
        db_entry(db, &srv, &host, &path.join(format!("db{i}"))) + "    checkpoint-interval: 3s\n"
    });
    let e = Engine::start(&config, &dir.path().join("engine.log"));

    // Settled: nothing sent for 8 s in a row (within 90 s).
    let mut quiet = (proxy.sent(), Instant::now());
    let settled_in_time = wait_until(Duration::from_secs(90), || {
        let n = proxy.sent();
        if n != quiet.0 {
            quiet = (n, Instant::now());
        }
        n > 0 && quiet.1.elapsed() >= Duration::from_secs(8)
    });
    assert!(settled_in_time, "traffic never stopped; log:\n{}", e.tail());
    let settled = proxy.sent();
    std::thread::sleep(Duration::from_secs(45));
    assert_eq!(
        proxy.sent() - settled,
        0,
        "bytes sent in 45 s of idle; log:\n{}",
        e.tail()
    );

    write_ships_at_once(&apps[1], e, "sent nothing", || proxy.sent() > settled);
    std::fs::remove_dir_all(&path).expect("cleanup");
}
