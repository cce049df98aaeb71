//! The extension's log: `LITESTREAM_LOG_LEVEL` (INFO, or DEBUG) and `LITESTREAM_LOG_FILE`, in
//! the `key=value` form of Litestream's text logs. It goes to standard error unless a file is
//! named: standard output belongs to the program that loaded SQLite.

use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use storage::timefmt::{format_rfc3339_in, local_offset, Fraction};

struct Sink {
    debug: bool,
    file: Option<std::fs::File>,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Sets where lines go. The file is created readable by its owner only, and appended to.
pub fn init(debug: bool, file: Option<&std::path::Path>) -> Result<(), String> {
    let file = match file {
        None => None,
        Some(p) => {
            use std::os::unix::fs::OpenOptionsExt;
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)
                    .map_err(|e| format!("failed to open log file {}: {e}", p.display()))?,
            )
        }
    };
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(Sink { debug, file });
    Ok(())
}

fn line(level: &str, msg: &str) {
    let mut g = SINK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(sink) = g.as_mut() else {
        return;
    };
    if level == "DEBUG" && !sink.debug {
        return;
    }
    // Local times, as Go writes them (docs/config-and-cli.md#log-lines).
    let now = SystemTime::now();
    let text = format!(
        "time={} level={level} msg={msg:?} vfs=ls-vfs\n",
        format_rfc3339_in(now, local_offset(now), Fraction::Milli)
    );
    // A log line that cannot be written is dropped: a read must not fail for it.
    let _ = match sink.file.as_mut() {
        Some(f) => f.write_all(text.as_bytes()),
        None => std::io::stderr().write_all(text.as_bytes()),
    };
}

pub fn debug(msg: &str) {
    line("DEBUG", msg);
}

pub fn error(msg: &str) {
    line("ERROR", msg);
}
