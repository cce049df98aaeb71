//! Child processes measured through /proc and wait4.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What the kernel reports for a reaped child.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// user + system CPU seconds over the whole life of the process.
    pub cpu_secs: f64,
    /// Peak resident set size (ru_maxrss) in bytes.
    pub max_rss: u64,
    pub success: bool,
}

/// Starts `cmd` with stdout and stderr appended to `log`.
pub fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let f2 = f.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2));
    cmd.spawn().with_context(|| format!("spawn {cmd:?}"))
}

fn rusage_usage(ru: &libc::rusage, status: libc::c_int) -> Usage {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        cpu_secs: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss: ru.ru_maxrss as u64 * 1024,
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

/// Reaps `child` with wait4 (so its rusage is kept), waiting at most `timeout`; None on timeout.
pub fn try_wait4(child: &Child, timeout: Duration) -> Result<Option<Usage>> {
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own unreaped child; the pointers are valid for the call.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            return Ok(Some(rusage_usage(&ru, status)));
        }
        if r < 0 {
            bail!("wait4({pid}): {}", std::io::Error::last_os_error());
        }
        if start.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` to exit on its own.
pub fn wait4(child: &Child) -> Result<Usage> {
    match try_wait4(child, Duration::from_secs(24 * 3600))? {
        Some(u) => Ok(u),
        None => bail!("process {} did not exit", child.id()),
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns the rusage of the reaped process.
pub fn stop(child: &Child, grace: Duration) -> Result<Usage> {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    if let Some(u) = try_wait4(child, grace)? {
        return Ok(u);
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait4(child)
}

/// user + system CPU seconds the process `pid` has used so far (all its threads).
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((utime + stime) / hz)
}

/// Peak resident set size (VmHWM) of `pid` in bytes.
pub fn vm_hwm(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmHWM:") {
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse()?;
            return Ok(kb * 1024);
        }
    }
    bail!("no VmHWM for {pid}")
}

/// Runs a command to completion and returns its trimmed stdout (empty on failure).
pub fn output_of(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
