//! The NATS test server of `tests/nats/start.sh` (nats-server with JetStream).
//!
//! Litestream expects the object store bucket to exist, so tests create theirs with
//! [`NatsServer::create_bucket`], which speaks the NATS protocol itself (no client library:
//! the engine and restore crates do not depend on one).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{server_vars, unique_name, var};
use crate::private::PrivateServer;

#[derive(Clone, Debug)]
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`
    pub url: String,
    pub user: String,
    pub pass: String,
    /// start.sh's state directory (`pid`, `cmd`), for tests that restart the server.
    pub state_dir: Option<PathBuf>,
}

/// The server from the `LS_NATS_*` variables; panics if they are unset.
pub fn nats_server() -> NatsServer {
    let [url, user, pass] = server_vars("nats", ["LS_NATS_URL", "LS_NATS_USER", "LS_NATS_PASS"]);
    NatsServer {
        url: url.trim_end_matches('/').to_owned(),
        user,
        pass,
        state_dir: var("LS_NATS_STATE_DIR").map(PathBuf::from),
    }
}

/// A NATS server of the calling test's own (same script and settings as the shared one), for
/// tests that stop or restart it; it stops when the returned guard is dropped.
pub fn private_nats_server() -> (PrivateServer, NatsServer) {
    let p = PrivateServer::start("nats", "LS_NATS_STATE_DIR");
    let var = |k: &str| {
        p.var(k)
            .unwrap_or_else(|| panic!("tests/nats/start.sh exported no {k}"))
    };
    let srv = NatsServer {
        url: var("LS_NATS_URL"),
        user: var("LS_NATS_USER"),
        pass: var("LS_NATS_PASS"),
        state_dir: Some(p.state_dir().to_owned()),
    };
    (p, srv)
}

impl NatsServer {
    /// `127.0.0.1:<port>`
    pub fn authority(&self) -> &str {
        self.url.trim_start_matches("nats://")
    }

    /// A bucket name no other test (or earlier run) uses.
    pub fn unique_bucket(&self, name: &str) -> String {
        unique_name(name)
    }

    /// The `nats://user:pass@host:port/<bucket>` replica URL.
    pub fn replica_url(&self, bucket: &str) -> String {
        format!(
            "nats://{}:{}@{}/{bucket}",
            self.user,
            self.pass,
            self.authority()
        )
    }

    /// The `replica:` keys of a litestream.yml for `bucket`, one per line, without indentation.
    pub fn yaml(&self, bucket: &str) -> Vec<String> {
        vec![
            "type: nats".into(),
            format!("url: {}/{bucket}", self.url),
            format!("username: {}", self.user),
            format!("password: {}", self.pass),
        ]
    }

    /// One request to the server: sends `subject` with `payload` and returns the reply.
    pub fn request(&self, subject: &str, payload: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(self.authority()).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("INFO ") {
            return Err(format!("unexpected greeting {line:?}"));
        }
        let connect = format!(
            "{{\"verbose\":false,\"pedantic\":false,\"user\":{:?},\"pass\":{:?},\"headers\":true,\"no_responders\":true,\"protocol\":1}}",
            self.user, self.pass
        );
        let msg = format!(
            "CONNECT {connect}\r\nSUB _INBOX.lstest 1\r\nPUB {subject} _INBOX.lstest {}\r\n{payload}\r\nPING\r\n",
            payload.len()
        );
        s.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            let l = line.trim_end();
            if l == "PING" {
                s.write_all(b"PONG\r\n").map_err(|e| e.to_string())?;
            } else if l.starts_with("-ERR") {
                return Err(l.to_owned());
            } else if l.starts_with("MSG ") || l.starts_with("HMSG ") {
                let total: usize = l
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("bad {l:?}"))?;
                let mut body = vec![0u8; total + 2];
                r.read_exact(&mut body).map_err(|e| e.to_string())?;
                body.truncate(total);
                let text = String::from_utf8_lossy(&body).into_owned();
                if l.starts_with("HMSG ") {
                    return Err(format!("status reply: {text:?}"));
                }
                return Ok(text);
            }
        }
    }

    /// Creates the object store `bucket` as `nats object add` does (stream `OBJ_<bucket>`).
    pub fn create_bucket(&self, bucket: &str) {
        let config = format!(
            "{{\"name\":\"OBJ_{bucket}\",\"subjects\":[\"$O.{bucket}.C.>\",\"$O.{bucket}.M.>\"],\
             \"retention\":\"limits\",\"max_consumers\":-1,\"max_msgs\":-1,\"max_bytes\":-1,\
             \"max_age\":0,\"max_msgs_per_subject\":-1,\"max_msg_size\":-1,\"discard\":\"new\",\
             \"storage\":\"file\",\"num_replicas\":1,\"allow_rollup_hdrs\":true,\
             \"allow_direct\":true}}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.request(&format!("$JS.API.STREAM.CREATE.OBJ_{bucket}"), &config) {
                Ok(reply) if !reply.contains("\"error\"") => return,
                Ok(reply) => panic!("creating bucket {bucket}: {reply}"),
                // JetStream may still be starting.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("creating bucket {bucket}: {e}; trying again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("creating bucket {bucket}: {e}"),
            }
        }
    }

    /// A new bucket with a unique name.
    pub fn new_bucket(&self, name: &str) -> String {
        let b = self.unique_bucket(name);
        self.create_bucket(&b);
        b
    }

    /// Stops the server, waits `down`, and starts it again on the same port with the same
    /// store (start.sh's `cmd`). Returns false (test skipped) without a state directory.
    pub fn restart(&self, down: Duration) -> bool {
        if !self.stop() {
            return false;
        }
        std::thread::sleep(down);
        self.start();
        true
    }

    /// Stops the server. Returns false without a state directory.
    pub fn stop(&self) -> bool {
        let Some(state) = &self.state_dir else {
            eprintln!("cannot restart the NATS server: LS_NATS_STATE_DIR is unset");
            return false;
        };
        let pid = std::fs::read_to_string(state.join("pid")).expect("pid file");
        let pid = pid.trim();
        let _ = Command::new("kill").arg(pid).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "the NATS server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Starts the server again after [`NatsServer::stop`] and waits until JetStream answers.
    pub fn start(&self) {
        let state = self.state_dir.as_ref().expect("LS_NATS_STATE_DIR");
        let log = std::fs::File::options()
            .append(true)
            .create(true)
            .open(state.join("server.log"))
            .expect("log");
        let child = Command::new("setsid")
            .arg("bash")
            .arg(state.join("cmd"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("restart the NATS server");
        std::fs::write(state.join("pid"), child.id().to_string()).expect("pid file");
        // The server outlives this test (stop.sh ends it); reap it if it exits before.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.request("$JS.API.INFO", "").is_err() {
            assert!(
                Instant::now() < deadline,
                "the NATS server did not come back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
