//! Follow mode (`-f`, §5.3, Litestream's `Replica.follow`): after the restore, keep polling
//! the replica and apply each new LTX file's pages to the restored database in place, so that
//! it serves as a read replica.
//!
//! Each file is read whole and its checksum verified before any of its pages touches the
//! database, so a damaged file never leaves a half-applied transaction behind (Litestream
//! decodes as it writes and finds a bad CRC only at the end).

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ltx_codec::{Level, LtxFile, TxId, SNAPSHOT_LEVEL};
use storage::{local, LtxFileInfo, SharedReplica};

use crate::fetch::file_label;
use crate::{RestoreError, Result};

/// Litestream's `DefaultFollowInterval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// `<out>-txid`, where follow mode records the TXID the database is at.
pub fn txid_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push("-txid");
    PathBuf::from(s)
}

/// Writes `<out>-txid` atomically: 16 hex digits and a newline (Litestream's `WriteTXIDFile`).
pub fn write_txid_file(out: &Path, txid: TxId) -> Result<()> {
    let p = txid_path(out);
    // The TXID file says how far the restored database is: no more readable than it.
    let mode = local::file_mode_like(out);
    local::write_file_atomic(&p, &[format!("{txid}\n").as_bytes()], None, mode)
        .map_err(|e| RestoreError::io(p, e))
}

/// Go's `time.ParseDuration` for the units a poll interval uses (`500ms`, `1s`, `1m30s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The restored database, open for in-place updates.
struct Target {
    file: File,
    path: PathBuf,
    page_size: u32,
}

/// Holds `flock(LOCK_EX)` on the database while a file's pages are written, as Litestream
/// does, so that cooperating readers do not see half a transaction.
struct FlockGuard<'a>(&'a File);

impl<'a> FlockGuard<'a> {
    fn lock(f: &'a File, path: &Path) -> Result<Self> {
        // SAFETY: flock on a descriptor we own for the guard's lifetime.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(RestoreError::io(path, std::io::Error::last_os_error()));
        }
        Ok(FlockGuard(f))
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking a lock we hold.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Four random bytes for the change counter, so that other connections drop cached schema
/// and pages. Not security sensitive; the clock is the fallback if getrandom fails.
fn random4() -> [u8; 4] {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        b = t.to_le_bytes();
    }
    b
}

impl Target {
    /// `page_size` comes from the restore's LTX headers rather than from the database header
    /// (where Litestream reads it): the two agree for any SQLite file, and the LTX value does
    /// not depend on page 1 being a valid SQLite header.
    fn open(path: &Path, page_size: u32) -> Result<Target> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| RestoreError::io(path, e))?;
        Ok(Target {
            file,
            path: path.to_owned(),
            page_size,
        })
    }

    /// Fetches one file, verifies it whole, then writes its pages under the lock, shrinks
    /// the database to the file's Commit and fsyncs.
    async fn apply(&self, client: &SharedReplica, info: &LtxFileInfo) -> Result<()> {
        let label = file_label(info);
        let bytes = client
            .read_range(info.level, info.min_txid, info.max_txid, 0, None)
            .await?;
        let ltx = LtxFile::open_verified(&bytes).map_err(|e| RestoreError::ltx(&label, e))?;
        let h = ltx.header();
        if h.page_size != self.page_size {
            return Err(RestoreError::Plan(format!(
                "{label}: page size {} differs from the database's {}",
                h.page_size, self.page_size
            )));
        }
        if h.min_txid != info.min_txid || h.max_txid != info.max_txid {
            return Err(RestoreError::corrupt(
                &label,
                16,
                "header TXIDs differ from the file name",
            ));
        }
        let ps = self.page_size as usize;
        let mut pages: Vec<(u32, Vec<u8>)> = Vec::new();
        for frame in ltx.frames() {
            let frame = frame.map_err(|e| RestoreError::ltx(&label, e))?;
            let mut data = vec![0u8; ps];
            frame
                .decompress(&mut data)
                .map_err(|e| RestoreError::ltx(&label, e))?;
            if frame.pgno == 1 && data.len() >= 28 {
                // Rollback-journal mode: the replica has no WAL, and readers must not look for
                // one. A new change counter invalidates their caches.
                data[18] = 1;
                data[19] = 1;
                data[24..28].copy_from_slice(&random4());
            }
            pages.push((frame.pgno, data));
        }
        let commit = h.commit;

        let _lock = FlockGuard::lock(&self.file, &self.path)?;
        let io = |e| RestoreError::io(&self.path, e);
        let writes: Vec<(u64, &[u8])> = pages
            .iter()
            .map(|(pgno, d)| (u64::from(pgno - 1) * ps as u64, d.as_slice()))
            .collect();
        local::write_batch(&self.file, &writes).map_err(io)?;
        if commit > 0 {
            local::fsync(&self.file).map_err(io)?;
            self.file
                .set_len(u64::from(commit) * ps as u64)
                .map_err(io)?;
        }
        local::fsync(&self.file).map_err(io)
    }
}

/// Litestream's `applyNewLTXFiles`: the L0 files after `after`, with gaps bridged from levels
/// 1..8. Returns the TXID reached, which on error is where the database stands.
async fn apply_new(client: &SharedReplica, db: &Target, after: TxId) -> (TxId, Result<()>) {
    let mut current = after;
    let l0 = match client.ltx_files(Level(0)).await {
        Ok(f) => f,
        Err(e) => return (current, Err(e.into())),
    };
    let newer: Vec<&LtxFileInfo> = l0.iter().filter(|f| f.max_txid > current).collect();
    if newer.is_empty() {
        return fill_gap(client, db, current, current.next()).await;
    }
    for info in newer {
        if info.min_txid.0 > current.0 + 1 {
            let (bridged, r) = fill_gap(client, db, current, info.min_txid).await;
            current = bridged;
            if r.is_err() {
                return (current, r);
            }
            if info.max_txid <= current {
                continue;
            }
            if info.min_txid.0 > current.0 + 1 {
                return (current, Ok(()));
            }
        }
        if info.max_txid <= current {
            continue;
        }
        if let Err(e) = db.apply(client, info).await {
            return (current, Err(e));
        }
        current = info.max_txid;
    }
    (current, Ok(()))
}

/// Litestream's `fillFollowGap`: walks levels 1..8 for files continuing `after`, applying them
/// until the gap before `gap_min` is bridged; stops at the first level that made progress.
async fn fill_gap(
    client: &SharedReplica,
    db: &Target,
    after: TxId,
    gap_min: TxId,
) -> (TxId, Result<()>) {
    let mut current = after;
    for level in 1..SNAPSHOT_LEVEL.0 {
        let files = match client.ltx_files(Level(level)).await {
            Ok(f) => f,
            Err(e) => return (current, Err(e.into())),
        };
        for info in &files {
            if info.min_txid.0 > current.0 + 1 {
                break;
            }
            if info.max_txid <= current {
                continue;
            }
            if let Err(e) = db.apply(client, info).await {
                return (current, Err(e));
            }
            current = info.max_txid;
            if current.0 + 1 >= gap_min.0 {
                return (current, Ok(()));
            }
        }
        if current > after {
            return (current, Ok(()));
        }
    }
    (current, Ok(()))
}

/// Follows the replica into the restored database at `out` (pages of `page_size` bytes),
/// which is at `txid`, until `stop`
/// completes. Errors while polling are reported on stderr and retried at the next tick, as
/// Litestream does; only failing to record the TXID ends the loop with an error.
pub async fn follow(
    client: &SharedReplica,
    out: &Path,
    txid: TxId,
    page_size: u32,
    interval: Duration,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    write_txid_file(out, txid)?;
    let db = Target::open(out, page_size)?;
    let interval = if interval.is_zero() {
        DEFAULT_INTERVAL
    } else {
        interval
    };
    let mut ticker = tokio::time::interval(interval);
    // The first tick of a tokio interval fires at once; Litestream's ticker waits a period.
    ticker.reset();
    tokio::pin!(stop);
    let mut last = txid;
    let mut errors = 0u64;
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            _ = ticker.tick() => {}
        }
        // Files written by the replicating process since the last poll are unknown to any
        // cached listing.
        client.invalidate_cache();
        let (reached, res) = apply_new(client, &db, last).await;
        if let Err(e) = res {
            errors += 1;
            eprintln!("follow: error applying updates: {e} (consecutive errors: {errors})");
        }
        if reached > last {
            write_txid_file(out, reached)?;
            last = reached;
            // Progress resets the error count, as in Litestream.
            errors = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3d"), None);
    }
}
