//! The WebDAV test server of `tests/webdav/start.sh` (`rclone serve webdav`).

use std::path::PathBuf;
use std::time::Duration;

use crate::env::{server_vars, unique_name, var, yaml_lines};
use crate::private::{relaunch, stop_pid, PrivateServer};

/// The `rclone serve webdav` server of `tests/webdav/start.sh`.
#[derive(Clone, Debug)]
pub struct WebDavServer {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The user name the server accepts (`LS_WEBDAV_USER`).
    pub user: String,
    /// That user's password (`LS_WEBDAV_PASS`).
    pub pass: String,
    /// The directory rclone serves, for tests that inspect what was written.
    pub data_dir: Option<PathBuf>,
    /// start.sh's state directory (`pid`, `cmd`), for tests that restart the server.
    pub state_dir: Option<PathBuf>,
}

const VARS: [&str; 3] = ["LS_WEBDAV_URL", "LS_WEBDAV_USER", "LS_WEBDAV_PASS"];

/// The server from the `LS_WEBDAV_*` variables; panics if they are unset.
pub fn webdav_server() -> WebDavServer {
    WebDavServer::new(
        server_vars("webdav", VARS),
        var("LS_WEBDAV_DATA_DIR"),
        var("LS_WEBDAV_STATE_DIR").map(PathBuf::from),
    )
}

/// A WebDAV server of the calling test's own (same script and settings as the shared one), for
/// tests that stop or restart it; it stops when the returned guard is dropped.
pub fn private_webdav_server() -> (PrivateServer, WebDavServer) {
    let p = PrivateServer::start("webdav", "LS_WEBDAV_STATE_DIR");
    let srv = WebDavServer::new(
        p.exported(VARS),
        p.var("LS_WEBDAV_DATA_DIR"),
        Some(p.state_dir().to_owned()),
    );
    (p, srv)
}

impl WebDavServer {
    fn new(
        [url, user, pass]: [String; 3],
        data_dir: Option<String>,
        state_dir: Option<PathBuf>,
    ) -> WebDavServer {
        WebDavServer {
            url: url.trim_end_matches('/').to_owned(),
            user,
            pass,
            data_dir: data_dir.map(PathBuf::from),
            state_dir,
        }
    }

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
        let (user, pass, at) = (&self.user, &self.pass, self.authority());
        format!("webdav://{user}:{pass}@{at}/{path}")
    }

    /// The `replica:` keys of a litestream.yml for `path`, one per line, without indentation.
    pub fn yaml(&self, path: &str) -> Vec<String> {
        let WebDavServer {
            url, user, pass, ..
        } = self;
        yaml_lines(&format!(
            "type: webdav\nwebdav-url: {url}\nwebdav-username: {user}\nwebdav-password: {pass}\npath: {path}"
        ))
    }

    /// Stops the server, waits `down`, and starts it again on the same port with the same
    /// data (start.sh's `cmd`). Returns false (test skipped) without a state directory.
    pub fn restart(&self, down: Duration) -> bool {
        let Some(state) = &self.state_dir else {
            eprintln!("cannot restart the WebDAV server: LS_WEBDAV_STATE_DIR is unset");
            return false;
        };
        stop_pid(state, "the WebDAV server");
        std::thread::sleep(down);
        relaunch(
            state,
            "the WebDAV server",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || std::net::TcpStream::connect(self.authority()).is_ok(),
        );
        true
    }
}
