//! The NATS test server of `tests/nats/start.sh` (nats-server with JetStream).
//!
//! Litestream expects the object store bucket to exist, so tests create theirs with
//! [`NatsServer::create_bucket`], which speaks the NATS protocol itself (no client library:
//! the engine and restore crates do not depend on one).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::env::{server_vars, unique_name, var, yaml_lines};
use crate::private::{relaunch, stop_pid, PrivateServer};

/// The nats-server of `tests/nats/start.sh`, with JetStream.
#[derive(Clone, Debug)]
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`
    pub url: String,
    /// The user name the server accepts (`LS_NATS_USER`).
    pub user: String,
    /// That user's password (`LS_NATS_PASS`).
    pub pass: String,
    /// start.sh's state directory (`pid`, `cmd`), for tests that restart the server.
    pub state_dir: Option<PathBuf>,
}

const VARS: [&str; 3] = ["LS_NATS_URL", "LS_NATS_USER", "LS_NATS_PASS"];

/// The server from the `LS_NATS_*` variables; panics if they are unset.
pub fn nats_server() -> NatsServer {
    let state_dir = var("LS_NATS_STATE_DIR").map(PathBuf::from);
    NatsServer::new(server_vars("nats", VARS), state_dir)
}

/// A NATS server of the calling test's own (same script and settings as the shared one), for
/// tests that stop or restart it; it stops when the returned guard is dropped.
pub fn private_nats_server() -> (PrivateServer, NatsServer) {
    let p = PrivateServer::start("nats", "LS_NATS_STATE_DIR");
    let srv = NatsServer::new(p.exported(VARS), Some(p.state_dir().to_owned()));
    (p, srv)
}

impl NatsServer {
    fn new([url, user, pass]: [String; 3], state_dir: Option<PathBuf>) -> NatsServer {
        NatsServer {
            url: url.trim_end_matches('/').to_owned(),
            user,
            pass,
            state_dir,
        }
    }

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
        let (user, pass, at) = (&self.user, &self.pass, self.authority());
        format!("nats://{user}:{pass}@{at}/{bucket}")
    }

    /// The `replica:` keys of a litestream.yml for `bucket`, one per line, without indentation.
    pub fn yaml(&self, bucket: &str) -> Vec<String> {
        let (url, user, pass) = (&self.url, &self.user, &self.pass);
        yaml_lines(&format!(
            "type: nats\nurl: {url}/{bucket}\nusername: {user}\npassword: {pass}"
        ))
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
        stop_pid(state, "the NATS server");
        true
    }

    /// Starts the server again after [`NatsServer::stop`] and waits until JetStream answers.
    pub fn start(&self) {
        let state = self.state_dir.as_ref().expect("LS_NATS_STATE_DIR");
        relaunch(
            state,
            "the NATS server",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || self.request("$JS.API.INFO", "").is_ok(),
        );
    }
}
