//! The WebDAV test server of `tests/webdav/start.sh` (`rclone serve webdav`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{server_vars, unique_name, var};
use crate::private::PrivateServer;

#[derive(Clone, Debug)]
pub struct WebDavServer {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    pub user: String,
    pub pass: String,
    /// The directory rclone serves, for tests that inspect what was written.
    pub data_dir: Option<PathBuf>,
    /// start.sh's state directory (`pid`, `cmd`), for tests that restart the server.
    pub state_dir: Option<PathBuf>,
}

/// The server from the `LS_WEBDAV_*` variables; panics if they are unset.
pub fn webdav_server() -> WebDavServer {
    let [url, user, pass] = server_vars(
        "webdav",
        ["LS_WEBDAV_URL", "LS_WEBDAV_USER", "LS_WEBDAV_PASS"],
    );
    WebDavServer {
        url: url.trim_end_matches('/').to_owned(),
        user,
        pass,
        data_dir: var("LS_WEBDAV_DATA_DIR").map(PathBuf::from),
        state_dir: var("LS_WEBDAV_STATE_DIR").map(PathBuf::from),
    }
}

/// A WebDAV server of the calling test's own (same script and settings as the shared one), for
/// tests that stop or restart it; it stops when the returned guard is dropped.
pub fn private_webdav_server() -> (PrivateServer, WebDavServer) {
    let p = PrivateServer::start("webdav", "LS_WEBDAV_STATE_DIR");
    let var = |k: &str| {
        p.var(k)
            .unwrap_or_else(|| panic!("tests/webdav/start.sh exported no {k}"))
    };
    let srv = WebDavServer {
        url: var("LS_WEBDAV_URL").trim_end_matches('/').to_owned(),
        user: var("LS_WEBDAV_USER"),
        pass: var("LS_WEBDAV_PASS"),
        data_dir: p.var("LS_WEBDAV_DATA_DIR").map(PathBuf::from),
        state_dir: Some(p.state_dir().to_owned()),
    };
    (p, srv)
}

impl WebDavServer {
    /// A directory name no other test (or earlier run) uses.
    pub fn unique_path(&self, name: &str) -> String {
        unique_name(name)
    }

    /// Waits until files written straight into `data_dir` are visible through the server
    /// (start.sh runs rclone with `--dir-cache-time 2s`).
    pub fn settle(&self) {
        std::thread::sleep(Duration::from_millis(2500));
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The `webdav://user:pass@host:port/<path>` replica URL.
    pub fn replica_url(&self, path: &str) -> String {
        format!(
            "webdav://{}:{}@{}/{path}",
            self.user,
            self.pass,
            self.authority()
        )
    }

    /// The `replica:` keys of a litestream.yml for `path`, one per line, without indentation.
    pub fn yaml(&self, path: &str) -> Vec<String> {
        vec![
            "type: webdav".into(),
            format!("webdav-url: {}", self.url),
            format!("webdav-username: {}", self.user),
            format!("webdav-password: {}", self.pass),
            format!("path: {path}"),
        ]
    }

    /// Stops the server, waits `down`, and starts it again on the same port with the same
    /// data (start.sh's `cmd`). Returns false (test skipped) without a state directory.
    pub fn restart(&self, down: Duration) -> bool {
        let Some(state) = &self.state_dir else {
            eprintln!("cannot restart the WebDAV server: LS_WEBDAV_STATE_DIR is unset");
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
            assert!(Instant::now() < deadline, "the WebDAV server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(down);
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
            .expect("restart the WebDAV server");
        std::fs::write(state.join("pid"), child.id().to_string()).expect("pid file");
        // The server outlives this test (stop.sh ends it); reap it if it exits before.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.authority()).is_err() {
            assert!(
                Instant::now() < deadline,
                "the WebDAV server did not come back"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}
