//! One SSH connection with its SFTP channel (libssh2 through the blocking `ssh2` crate), and
//! what a failure means: the connection is gone (drop it, reconnect, try again), the server
//! refused one request (report it, keep the connection), or the settings are wrong (report).

use base64::Engine as _;
use sha2::{Digest, Sha256};
use ssh2::{ErrorCode, MethodType, Session, Sftp};
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;

use super::settings::SftpSettings;

// libssh2 SFTP status codes (SSH_FX_*).
pub(crate) const FX_NO_SUCH_FILE: i32 = 2;
const FX_NO_CONNECTION: i32 = 6;
const FX_CONNECTION_LOST: i32 = 7;
const FX_NO_SUCH_PATH: i32 = 10;

/// Why an operation failed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The connection broke, timed out or could not be made: worth a new connection and
    /// another try.
    Conn(String),
    /// The server answered this request with an SFTP status (no such file, permission denied,
    /// failure...): the connection is fine, asking again will not help.
    Status { code: i32, msg: String },
    /// Wrong settings, authentication or host key: reported at once.
    Fatal(String),
    /// A local file (the upload's source) could not be read; the connection is fine.
    Local(String),
    /// A create-only rename found its target taken.
    Exists,
}

impl Fail {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Fail::Status { code, .. } if *code == FX_NO_SUCH_FILE || *code == FX_NO_SUCH_PATH)
    }

    pub fn message(&self) -> &str {
        match self {
            Fail::Conn(m) | Fail::Fatal(m) | Fail::Local(m) => m,
            Fail::Exists => "the file exists already",
            Fail::Status { msg, .. } => msg,
        }
    }
}

/// Classifies an error of an `Sftp` or `Session` call.
pub(crate) fn classify(e: ssh2::Error) -> Fail {
    match e.code() {
        ErrorCode::SFTP(c) if c == FX_NO_CONNECTION || c == FX_CONNECTION_LOST => {
            Fail::Conn(e.message().to_owned())
        }
        ErrorCode::SFTP(code) => Fail::Status {
            code,
            msg: e.message().to_owned(),
        },
        ErrorCode::Session(_) => Fail::Conn(format!("{} ({})", e.message(), e.code())),
    }
}

/// Classifies an I/O error of a remote file read or write, which the `ssh2` crate reports
/// without its code: the session's last error tells a refused request from a broken link.
pub(crate) fn classify_io(conn: &Conn, e: std::io::Error) -> Fail {
    match ssh2::Error::last_session_error(&conn.sess) {
        Some(last) if last.code() == ErrorCode::Session(libssh2_sftp_protocol()) => {
            // An SFTP status; the io::Error message is its text ("permission denied", ...).
            Fail::Status {
                code: if e.kind() == std::io::ErrorKind::NotFound {
                    FX_NO_SUCH_FILE
                } else {
                    -1
                },
                msg: e.to_string(),
            }
        }
        _ => Fail::Conn(e.to_string()),
    }
}

/// `LIBSSH2_ERROR_SFTP_PROTOCOL`: the request was answered with an SFTP status.
fn libssh2_sftp_protocol() -> i32 {
    -31
}

/// A logged-in session and its SFTP channel.
pub(crate) struct Conn {
    pub sftp: Sftp,
    pub sess: Session,
}

/// The key blob of an authorized_keys line (`[options] type base64 [comment]`), with its type.
fn parse_authorized_key(line: &str) -> Option<(String, Vec<u8>)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields.windows(2).find_map(|w| {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(w[1])
            .ok()?;
        // The blob starts with the key type as an SSH string; it must match the field before.
        let n = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let ty = std::str::from_utf8(blob.get(4..4 + n)?).ok()?.to_owned();
        (ty == w[0]).then_some((ty, blob))
    })
}

fn fingerprint(blob: &[u8]) -> String {
    let d = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(d)
    )
}

/// Host key algorithms that can present a key of type `ty`.
fn host_key_methods(ty: &str) -> String {
    match ty {
        "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256,ssh-rsa".to_owned(),
        other => other.to_owned(),
    }
}

fn read_private_key(path: &Path) -> Result<String, Fail> {
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|e| {
            Fail::Fatal(format!(
                "sftp: cannot read sftp key path {}: {e}",
                path.display()
            ))
        })?;
    Ok(s)
}

/// Dials, checks the host key, logs in and opens the SFTP channel. Blocking.
pub(crate) fn connect(s: &SftpSettings) -> Result<Conn, Fail> {
    let addr = s.address();
    let expected = match &s.host_key {
        Some(k) => Some(parse_authorized_key(k).ok_or_else(|| {
            Fail::Fatal(format!("sftp: cannot parse sftp host key {k:?} (host-key)"))
        })?),
        None => None,
    };
    let private_key = s.key_path.as_deref().map(read_private_key).transpose()?;
    if private_key.is_none() && s.password.is_none() {
        return Err(Fail::Fatal(format!(
            "sftp: no password or key-path to log in as {} at {addr}",
            s.user
        )));
    }

    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| Fail::Conn(format!("sftp: cannot resolve {addr}: {e}")))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, s.dial_timeout) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        Fail::Conn(format!(
            "sftp: cannot connect to {addr}: {}",
            last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
        ))
    })?;
    let _ = tcp.set_nodelay(true);

    let mut sess = Session::new().map_err(|e| Fail::Conn(format!("sftp: session: {e}")))?;
    sess.set_timeout(s.io_timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
    if let Some((ty, _)) = &expected {
        // Ask for the kind of key we can check, as an ssh client with a known_hosts entry does.
        let _ = sess.method_pref(MethodType::HostKey, &host_key_methods(ty));
    }
    sess.set_tcp_stream(tcp);
    sess.handshake()
        .map_err(|e| Fail::Conn(format!("sftp: ssh handshake with {addr}: {e}")))?;

    let (blob, _) = sess
        .host_key()
        .ok_or_else(|| Fail::Conn(format!("sftp: {addr} sent no host key")))?;
    match &expected {
        Some((ty, want)) if want.as_slice() != blob => {
            return Err(Fail::Fatal(format!(
                "sftp: host key mismatch for {addr}: the server presented {}, host-key is {ty} {}",
                fingerprint(blob),
                fingerprint(want)
            )));
        }
        Some(_) => {}
        None => tracing::warn!(host = %s.host, "sftp host key not verified"),
    }

    let mut tried = Vec::new();
    if let Some(pem) = &private_key {
        tried.push("publickey");
        if let Err(e) = sess.userauth_pubkey_memory(&s.user, None, pem, None) {
            tracing::debug!(error = %e, "sftp: public key authentication failed");
        }
    }
    if !sess.authenticated() {
        if let Some(pw) = &s.password {
            tried.push("password");
            if let Err(e) = sess.userauth_password(&s.user, pw.expose()) {
                tracing::debug!(error = %e, "sftp: password authentication failed");
            }
        }
    }
    if !sess.authenticated() {
        let key = s
            .key_path
            .as_deref()
            .map(|p| format!(" (key-path {})", p.display()))
            .unwrap_or_default();
        return Err(Fail::Fatal(format!(
            "sftp: authentication failed for user {} at {addr} (tried {}){key}",
            s.user,
            tried.join(", ")
        )));
    }
    let sftp = sess.sftp().map_err(|e| {
        Fail::Conn(format!(
            "sftp: cannot open the sftp subsystem on {addr}: {e}"
        ))
    })?;
    Ok(Conn { sftp, sess })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_key_lines() {
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJiVBB8ImN93jHkt+RHodKOgAaf75lOFZ6DV6uSjyhe9 c";
        let (ty, blob) = parse_authorized_key(line).expect("parse");
        assert_eq!(ty, "ssh-ed25519");
        assert_eq!(blob.len(), 51);
        let with_opts = format!("no-pty,from=\"x\" {line}");
        assert_eq!(
            parse_authorized_key(&with_opts).map(|k| k.1),
            Some(blob.clone())
        );
        // The type field must match the blob's own type.
        assert!(parse_authorized_key(&line.replace("ssh-ed25519", "ssh-rsa")).is_none());
        assert!(parse_authorized_key("garbage").is_none());
        assert!(fingerprint(&blob).starts_with("SHA256:"));
    }

    #[test]
    fn missing_credentials_and_bad_host_key_are_fatal() {
        let mut s = SftpSettings::from_url("sftp://u@127.0.0.1:1/x").expect("url");
        assert!(
            matches!(connect(&s), Err(Fail::Fatal(m)) if m.contains("no password or key-path"))
        );
        s.password = Some("pw".into());
        s.host_key = Some("not a key".into());
        assert!(matches!(connect(&s), Err(Fail::Fatal(m)) if m.contains("host-key")));
        s.host_key = None;
        s.key_path = Some("/nonexistent/key".into());
        assert!(matches!(connect(&s), Err(Fail::Fatal(m)) if m.contains("key path")));
    }
}
