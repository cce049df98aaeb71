//! A database opened through the VFS: the view its reads use, the follower that keeps the
//! latest view current, time travel, and the PRAGMA and SQL function answers
//! (docs/vfs.md#consistency).

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use restore::Target;
use storage::timefmt::{format_rfc3339_nano, parse_rfc3339};

use crate::global::Global;
use crate::hydrate::{FrameKey, Hydration};
use crate::log;
use crate::view::{View, ViewError};

/// The newest view of the replica and when it was last read, shared by every database the
/// process has open (there is one replica URL per process) and by their one follower task.
struct Latest {
    view: RwLock<Arc<View>>,
    /// When the replica was last read without an error.
    read_at: RwLock<Instant>,
    /// The local copy, when hydration is on.
    hydration: Option<Hydration>,
}

pub struct Database {
    g: &'static Global,
    latest: Arc<Latest>,
    /// The view of the read transaction in progress (taken when the SHARED lock is).
    pinned: Option<Arc<View>>,
    /// Time travel: the instant asked for and its view; following is ignored while set.
    travel: Option<(SystemTime, Arc<View>)>,
}

/// A PRAGMA's outcome: not one of ours, an answer (or none, for a setting), or an error.
pub enum Pragma {
    NotOurs,
    Answer(Option<String>),
    Error(String),
}

impl Database {
    /// Opens the replica's latest state: the one the process's other open databases follow,
    /// else a new view, with a follower of its own.
    pub fn open(g: &'static Global) -> Result<Database, ViewError> {
        static SHARED: Mutex<Weak<Latest>> = Mutex::new(Weak::new());
        // Held while a new view is built, so that connections opened together build one.
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(latest) = shared.upgrade() {
            return Ok(Database {
                g,
                latest,
                pinned: None,
                travel: None,
            });
        }
        let view = g.block_on(View::build(g.client.as_ref(), Target::Latest))?;
        log::debug(&format!(
            "opened replica at TXID {} ({} pages of {} bytes, {} files)",
            view.txid,
            view.commit,
            view.page_size,
            view.files.len()
        ));
        let hydration = match &g.settings.hydration {
            Some(path) => Some(Hydration::create(path.as_deref(), &g.settings.replica_url)?),
            None => None,
        };
        let latest = Arc::new(Latest {
            view: RwLock::new(Arc::new(view)),
            read_at: RwLock::new(Instant::now()),
            hydration,
        });
        // The follower ends at its first tick after the last database holding `latest` closes;
        // so does the hydration.
        g.runtime.spawn(follow(g, Arc::downgrade(&latest)));
        if latest.hydration.is_some() {
            g.runtime.spawn(hydrate(g, Arc::downgrade(&latest)));
        }
        *shared = Arc::downgrade(&latest);
        Ok(Database {
            g,
            latest,
            pinned: None,
            travel: None,
        })
    }

    /// The view reads use now.
    pub fn view(&self) -> Arc<View> {
        if let Some(v) = &self.pinned {
            return Arc::clone(v);
        }
        if let Some((_, v)) = &self.travel {
            return Arc::clone(v);
        }
        Arc::clone(&self.latest.view.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A read transaction starts: its reads all see the view of this moment.
    pub fn begin_read(&mut self) {
        self.pinned = None;
        self.pinned = Some(self.view());
    }

    /// The read transaction ended: the next one sees what has been followed since.
    pub fn end_read(&mut self) {
        self.pinned = None;
    }

    /// Fills `buf` from the view's pages at byte `off`. Returns whether the read was short
    /// (past the end of the database; the rest is zeros, as SQLite requires).
    pub fn read(&self, buf: &mut [u8], off: u64) -> Result<bool, ViewError> {
        let view = self.view();
        let ps = u64::from(view.page_size);
        let end = view.size_bytes();
        let mut done = 0usize;
        while done < buf.len() {
            let at = off + done as u64;
            if at >= end {
                buf[done..].fill(0);
                return Ok(true);
            }
            let pgno = u32::try_from(at / ps + 1).map_err(|_| "offset out of range".to_string())?;
            let in_page = (at % ps) as usize;
            let n = (ps as usize - in_page).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match view.frame(pgno)? {
                None => out.fill(0),
                Some((info, frame)) => {
                    // Straight into SQLite's buffer: from the copy, else the cache.
                    let local = self.latest.hydration.as_ref().is_some_and(|h| {
                        h.read_into(pgno, FrameKey::of(info, frame), in_page, out)
                    });
                    if !local {
                        let page = self.g.block_on(self.g.cache.page(
                            self.g.client.as_ref(),
                            info,
                            frame,
                            pgno,
                            view.page_size,
                        ))?;
                        out.copy_from_slice(&page[in_page..in_page + n]);
                    }
                    if pgno == 1 {
                        present_header(out, in_page, &view);
                    }
                }
            }
            done += n;
        }
        Ok(false)
    }

    /// Answers the PRAGMAs (and SQL functions) litestream-vfs 0.5.17 has.
    pub fn pragma(&mut self, name: &str, value: Option<&str>) -> Pragma {
        let read_only = |n: &str| Pragma::Error(format!("{n} is read-only"));
        match name.to_ascii_lowercase().as_str() {
            "litestream_txid" => match value {
                Some(_) => read_only("litestream_txid"),
                None => Pragma::Answer(Some(self.view().txid.to_string())),
            },
            "litestream_lag" => match value {
                Some(_) => read_only("litestream_lag"),
                None => Pragma::Answer(Some(self.lag().to_string())),
            },
            "litestream_time" => match value {
                None => Pragma::Answer(Some(self.time())),
                Some(v) => match self.set_time(v) {
                    Ok(()) => Pragma::Answer(None),
                    Err(e) => Pragma::Error(e),
                },
            },
            "litestream_hydration_progress" => match value {
                Some(_) => read_only("litestream_hydration_progress"),
                None => Pragma::Answer(Some(
                    self.latest
                        .hydration
                        .as_ref()
                        .map_or_else(|| "0".into(), Hydration::progress),
                )),
            },
            "litestream_hydration_file" => match value {
                Some(_) => read_only("litestream_hydration_file"),
                None => Pragma::Answer(Some(
                    self.latest
                        .hydration
                        .as_ref()
                        .map(|h| h.path.display().to_string())
                        .unwrap_or_default(),
                )),
            },
            "litestream_write_enabled" => match value.map(str::to_ascii_lowercase).as_deref() {
                None => Pragma::Answer(Some("0".into())),
                Some("0" | "false" | "off") => Pragma::Answer(None),
                Some("1" | "true" | "on") => Pragma::Error(
                    "write mode is not supported by ls-vfs (docs/vfs.md#what-is-not-supported)"
                        .into(),
                ),
                Some(v) => Pragma::Error(format!(
                    "invalid value for litestream_write_enabled: {v} (use 0 or 1)"
                )),
            },
            _ => Pragma::NotOurs,
        }
    }

    /// Whole seconds since the replica was last read without an error.
    pub fn lag(&self) -> i64 {
        let at = *self
            .latest
            .read_at
            .read()
            .unwrap_or_else(|p| p.into_inner());
        at.elapsed().as_secs() as i64
    }

    /// The instant of the view: the time travelled to, or when its newest file was written.
    pub fn time(&self) -> String {
        match &self.travel {
            Some((t, _)) => format_rfc3339_nano(*t),
            None => format_rfc3339_nano(self.view().newest_at),
        }
    }

    /// Time travel to `value` (RFC 3339, or `N units ago`), or back with `latest`.
    pub fn set_time(&mut self, value: &str) -> Result<(), String> {
        if self.pinned.is_some() {
            return Err("cannot change litestream_time inside a transaction".into());
        }
        if value.trim().eq_ignore_ascii_case("latest") {
            self.travel = None;
            return Ok(());
        }
        let t = parse_time(value, SystemTime::now())?;
        let view = self
            .g
            .block_on(View::build(self.g.client.as_ref(), Target::Timestamp(t)))
            .map_err(|e| format!("cannot travel to {value}: {e}"))?;
        self.travel = Some((t, Arc::new(view)));
        Ok(())
    }
}

/// Page 1 as SQLite must see it: a rollback-journal database (bytes 18-19; the VFS has no
/// WAL), with a change counter (bytes 24-27) that differs between views, so that SQLite drops
/// its page cache when a new transaction starts on a newer view and keeps it otherwise.
///
/// `out` holds the bytes of page 1 from offset `at`; only the header bytes within it change.
fn present_header(out: &mut [u8], at: usize, view: &View) {
    let counter = (view.txid.0 as u32).to_be_bytes();
    let header = [(18usize, 1u8), (19, 1)]
        .into_iter()
        .chain((24..28).zip(counter));
    for (offset, byte) in header {
        if let Some(b) = offset.checked_sub(at).and_then(|i| out.get_mut(i)) {
            *b = byte;
        }
    }
}

/// Keeps `latest` at the replica's newest state, every poll interval, until the database
/// closes.
async fn follow(g: &'static Global, latest: Weak<Latest>) {
    let mut tick = tokio::time::interval(g.settings.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(latest) = latest.upgrade() else {
            return;
        };
        let current = Arc::clone(&latest.view.read().unwrap_or_else(|p| p.into_inner()));
        match current.follow(g.client.as_ref()).await {
            Ok(next) => {
                if let Some(v) = next {
                    log::debug(&format!("following: TXID {} -> {}", current.txid, v.txid));
                    *latest.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
                }
                *latest.read_at.write().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            }
            Err(e) => log::error(&format!("cannot fetch new ltx files: {e}")),
        }
    }
}

/// Keeps the hydration copy at the latest view, every poll interval, until the last database
/// closes (docs/vfs.md#hydration).
async fn hydrate(g: &'static Global, latest: Weak<Latest>) {
    loop {
        let Some(l) = latest.upgrade() else {
            return;
        };
        let Some(h) = &l.hydration else {
            return;
        };
        let view = Arc::clone(&l.view.read().unwrap_or_else(|p| p.into_inner()));
        match h.catch_up(g.client.as_ref(), &view).await {
            Ok(n) => log::debug(&format!(
                "hydrated to TXID {}: {n} pages fetched",
                view.txid
            )),
            Err(e) => log::error(&format!("hydration: {e}")),
        }
        drop(l);
        tokio::time::sleep(g.settings.poll).await;
    }
}

/// RFC 3339, or a relative `N second(s)|minute(s)|hour(s)|day(s)|week(s) ago`.
fn parse_time(value: &str, now: SystemTime) -> Result<SystemTime, String> {
    let v = value.trim();
    if let Some(t) = parse_rfc3339(v) {
        return Ok(t);
    }
    let bad = || {
        format!(
            "invalid timestamp (expected RFC3339 or relative time like '5 minutes ago'): {value}"
        )
    };
    let words: Vec<&str> = v.split_whitespace().collect();
    let [n, unit, "ago"] = words.as_slice() else {
        return Err(bad());
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit.trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .and_then(|s| now.checked_sub(Duration::from_secs(s)))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx_codec::TxId;

    /// SQLite reads page 1 whole and bytes 24-39 alone; both see the same header.
    #[test]
    fn the_header_is_presented_in_any_slice_of_page_1() {
        let view = View::empty_for_test(TxId(0x0102_0304_0506));
        let mut page = vec![0xAAu8; 100];
        present_header(&mut page, 0, &view);
        assert_eq!((page[17], page[18], page[19], page[20]), (0xAA, 1, 1, 0xAA));
        assert_eq!(&page[24..28], &[3, 4, 5, 6]);
        let mut part = vec![0xAAu8; 16];
        present_header(&mut part, 24, &view);
        assert_eq!(&part[..5], &[3, 4, 5, 6, 0xAA]);
    }

    #[test]
    fn times_absolute_and_relative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time("1970-01-12T13:46:40Z", now).expect("time"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
        );
        assert_eq!(
            parse_time("5 minutes ago", now).expect("time"),
            now - Duration::from_secs(300)
        );
        assert_eq!(
            parse_time(" 1 day ago ", now).expect("time"),
            now - Duration::from_secs(86_400)
        );
        for bad in ["yesterday-ish", "5 fortnights ago", "-1 hours ago", ""] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
