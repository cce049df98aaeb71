//! The control socket's file: bound where nobody else can reach it, given its mode, and only
//! then moved to its path, so there is no moment at which it is reachable with the mode umask
//! left it; and who may talk to it once there (the peer's credentials, `SO_PEERCRED`).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// `sun_path` holds 108 bytes, the terminating NUL included.
const SUN_PATH_MAX: usize = 107;

/// Binds a listening Unix socket at `path` with file mode `mode`: the socket is created in a
/// fresh 0700 directory beside `path`, chmod'ed, then renamed over `path` (replacing a stale
/// socket file the caller has found dead). Until the rename only this user can reach it.
pub fn bind_with_mode(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = private_dir(parent)?;
    let result = (|| {
        let tmp = dir.join("s");
        // A long directory path can overflow `sun_path`; the directory's descriptor, reached
        // through /proc, names the same place in a few bytes.
        let _dir_fd;
        let bind_at: PathBuf = if tmp.as_os_str().len() <= SUN_PATH_MAX {
            tmp.clone()
        } else {
            let f = std::fs::File::open(&dir)?;
            let p = PathBuf::from(format!(
                "/proc/self/fd/{}/s",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ));
            _dir_fd = f;
            p
        };
        let listener = UnixListener::bind(&bind_at)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dir.join("s"));
    }
    let _ = std::fs::remove_dir(&dir);
    result
}

/// A new directory only this user can enter, in `parent`.
fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o700);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last = None;
    for i in 0..16u32 {
        let d = parent.join(format!(
            ".ls-sock.{}.{:x}",
            std::process::id(),
            nanos.wrapping_add(i)
        ));
        match b.create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free directory name")))
}

/// Who may use the socket: this user and root always; another user only when the socket's
/// mode would let them write to it (others' write bit, or the group's for a member of the
/// socket's group). A peer that got a connection some other way (a descriptor passed to it,
/// privileges that bypass file modes) is still held to the mode.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    owner: u32,
    mode: u32,
    gid: u32,
}

impl Access {
    /// The rules for the socket file at `path` with `mode`, owned by this process's user.
    pub fn of(path: &Path, mode: u32) -> io::Result<Access> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(Access {
            // SAFETY: geteuid cannot fail.
            owner: unsafe { libc::geteuid() },
            mode,
            gid: m.gid(),
        })
    }

    /// Whether a peer with these credentials may talk to the socket.
    pub fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == self.owner || uid == 0 || self.mode & 0o002 != 0 {
            return true;
        }
        self.mode & 0o020 != 0 && (gid == self.gid || pid.is_some_and(|p| in_group(p, self.gid)))
    }

    /// The socket file's permission bits (`socket.permissions`).
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

/// Whether process `pid` has `gid` among its supplementary groups (`/proc/<pid>/status`).
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules() {
        let a = |mode| Access {
            owner: 1000,
            mode,
            gid: 50,
        };
        assert!(a(0o600).allows(1000, 1000, None));
        assert!(a(0o600).allows(0, 0, None));
        assert!(!a(0o600).allows(1001, 1001, None));
        assert!(!a(0o640).allows(1001, 50, None), "read alone is not enough");
        assert!(a(0o660).allows(1001, 50, None));
        assert!(!a(0o660).allows(1001, 51, None));
        assert!(a(0o666).allows(1001, 51, None));
        assert!(!a(0o664).allows(1001, 51, None));
    }
}
