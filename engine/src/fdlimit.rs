//! The open-file limit (`RLIMIT_NOFILE`): raised at start-up, and checked against the number
//! of databases so that a limit too low for them stops start-up (or refuses one more database)
//! with an error naming it, rather than failing later at some `open`
//! (docs/many-databases.md#file-descriptors).

/// Descriptors a database holds while replicated: SQLite's database file, WAL and shared-memory
/// index (one connection), the database descriptor SQLite keeps for reuse once the second
/// connection of a checkpoint is closed, and our own handle on the database file.
pub const PER_DB: u64 = 5;

/// Descriptors for everything else: the runtime, inotify, listeners, replica connections, and
/// the files a pass, an upload or a compaction has open for a moment.
pub const RESERVE: u64 = 256;

/// Descriptors `dbs` databases need.
pub fn needed(dbs: usize) -> u64 {
    RESERVE + PER_DB * dbs as u64
}

/// The current (soft, hard) limits.
pub fn current() -> std::io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// Raises the soft limit to the hard limit (any process may), as Go programs such as
/// Litestream do at start; if `need` is above the hard limit too, tries to raise both to it,
/// which only a process with `CAP_SYS_RESOURCE` may do (up to `fs.nr_open`). Returns the
/// (soft, hard) limits in effect afterwards.
pub fn raise(need: u64) -> std::io::Result<(u64, u64)> {
    let (_, hard) = current()?;
    if need > hard {
        // Refused without the capability: the check that follows names the limit.
        let _ = set(need, need);
    }
    let (soft, hard) = current()?;
    if soft < hard {
        set(hard, hard)?;
    }
    current()
}

fn set(soft: u64, hard: u64) -> std::io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `r` is a valid rlimit; the kernel refuses what this process may not set.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An error naming the limit if `dbs` databases do not fit in `soft` descriptors.
pub fn check(dbs: usize, soft: u64, hard: u64) -> Result<(), String> {
    let need = needed(dbs);
    if need <= soft {
        return Ok(());
    }
    Err(format!(
        "RLIMIT_NOFILE is too low for {dbs} databases: they need about {need} open files \
         ({PER_DB} per database + {RESERVE}), the limit is {soft} (hard limit {hard}); raise the \
         hard limit (`ulimit -Hn`, or LimitNOFILE= in a systemd unit) or replicate fewer \
         databases per process"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_too_low_names_itself_and_the_need() {
        assert!(check(1000, 20_000, 20_000).is_ok());
        assert!(check(0, RESERVE, RESERVE).is_ok());
        let e = check(10_000, 20_000, 20_000).expect_err("too low");
        assert!(e.contains("RLIMIT_NOFILE"), "{e}");
        assert!(e.contains("10000 databases"), "{e}");
        assert!(e.contains(&needed(10_000).to_string()), "{e}");
        assert!(e.contains("20000"), "{e}");
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let (soft, hard) = raise(0).expect("raise");
        assert_eq!(soft, hard);
    }
}
