//! The WAL follower for one database (§4): verify, read committed frames, write one L0 file per
//! pass, and run the checkpoint policy. Blocking code: the async side runs it on a blocking
//! thread, one pass at a time per database.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ltx_codec::wal::{
    read_committed, Committed, WalReader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use ltx_codec::{Header, LtxFile, TxId};
use tracing::{debug, info, warn};

use crate::checkpoint::{self, Decision, Thresholds};
use crate::config::DbConfig;
use crate::error::{Error, Result};
use crate::l0::{self, L0Params, PageSource};
use crate::meta::{LtxBytes, MetaDir};
use crate::metrics::{self, DbMetrics};
use crate::snapshot::{self, ReadHold};
use crate::sqlite::{CheckpointMode, Conns};
use crate::verify::{self, LastSync, SyncPlan, VerifyInput};
use crate::walmap::WalMap;

const HDR: u64 = WAL_HEADER_SIZE as u64;

/// What the follower remembers between passes (Litestream's `syncState`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncState {
    /// End of the WAL bytes the last L0 covered; the logical WAL size for checkpoint decisions.
    pub last_synced_wal_offset: u64,
    pub synced_to_wal_end: bool,
    pub synced_since_checkpoint: bool,
    pub truncate_passive_failed: bool,
    /// A pass ran since the database was opened. Before that, whatever another process did to
    /// the WAL while we were not running (a RESTART/TRUNCATE checkpoint of frames we never
    /// copied) went unseen.
    pub passed_since_open: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct PassResult {
    orig_wal_size: u64,
    new_wal_size: u64,
    synced: bool,
    limited: bool,
    synced_to_wal_end: bool,
}

struct OpenDb {
    conns: Conns,
    file: File,
    page_size: u32,
    /// Shared with snapshot jobs that read under our read transaction.
    hold: Arc<ReadHold>,
}

impl OpenDb {
    /// A snapshot job still reads under our read transaction.
    fn held(&self) -> bool {
        Arc::strong_count(&self.hold) > 1
    }
}

impl Drop for OpenDb {
    // Dropping the connections ends the read transaction a running snapshot relies on.
    fn drop(&mut self) {
        self.hold.mark_broken();
    }
}

/// One database being followed. `pos` is the highest local L0 TXID.
pub struct Follower {
    cfg: Arc<DbConfig>,
    wal_path: PathBuf,
    meta: MetaDir,
    db: Option<OpenDb>,
    state: SyncState,
    pos: TxId,
    /// Bytes of the L0 file at `pos`, kept so verify does not re-read it from disk.
    last_l0: Option<LtxBytes>,
    metrics: Arc<DbMetrics>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn file_size(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

impl Follower {
    pub fn new(cfg: Arc<DbConfig>) -> Follower {
        let mut wal = cfg.path.as_os_str().to_owned();
        wal.push("-wal");
        Follower {
            meta: MetaDir::new(&cfg.meta_path).with_mode_from(&cfg.path),
            wal_path: PathBuf::from(wal),
            metrics: metrics::db(&cfg.path),
            cfg,
            db: None,
            state: SyncState::default(),
            pos: TxId::ZERO,
            last_l0: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }

    pub fn meta(&self) -> &MetaDir {
        &self.meta
    }

    pub fn is_open(&self) -> bool {
        self.db.is_some()
    }

    /// Highest local L0 TXID.
    pub fn pos(&self) -> TxId {
        self.pos
    }

    pub fn state(&self) -> SyncState {
        self.state
    }

    /// A time-based PASSIVE checkpoint (§4.8) would fire now. Idle databases are not polled,
    /// so the caller asks this on its fallback timer.
    pub fn checkpoint_due(&self) -> bool {
        let interval = self.cfg.checkpoint_interval;
        if interval.is_zero()
            || self.snapshot_reading()
            || !self.state.synced_since_checkpoint
            || self.state.last_synced_wal_offset
                <= crate::checkpoint::wal_bytes(self.page_size(), 1)
        {
            return false;
        }
        std::fs::metadata(&self.cfg.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|d| d > interval)
    }

    fn page_size(&self) -> u32 {
        self.db.as_ref().map_or(0, |d| d.page_size)
    }

    fn frame_size(&self) -> u64 {
        (WAL_FRAME_HEADER_SIZE as u32 + self.page_size()) as u64
    }

    fn open_db(&mut self) -> Result<&mut OpenDb> {
        self.db
            .as_mut()
            .ok_or_else(|| Error::Other("database is not open".into()))
    }

    /// Opens the database (Litestream's `init`). `Ok(false)` if the file does not exist yet.
    pub fn open(&mut self) -> Result<bool> {
        if self.db.is_some() {
            return Ok(true);
        }
        let t = Instant::now();
        let r = self.open_inner();
        // Litestream opens inside its sync, so a failed open counts as a failed sync.
        if let Err(e) = &r {
            self.metrics.sync_done(t.elapsed(), true, e.is_disk_full());
        }
        r
    }

    fn open_inner(&mut self) -> Result<bool> {
        match std::fs::metadata(&self.cfg.path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("stat database", &self.cfg.path, e)),
        }
        self.meta.remove_tmp_files()?;
        let mut conns = Conns::open(&self.cfg.path, self.cfg.busy_timeout)?;
        conns.acquire_read_lock()?;
        let page_size = conns.page_size()?;
        let file = File::open(&self.cfg.path)
            .map_err(|e| Error::io("open database", &self.cfg.path, e))?;
        let l0 = self.meta.level_dir(ltx_codec::Level(0));
        self.meta.create_dir(&l0)?;
        self.db = Some(OpenDb {
            conns,
            file,
            page_size,
            hold: Arc::default(),
        });
        self.state = SyncState::default();
        self.last_l0 = None;
        self.pos = self.meta.max_l0()?;
        self.ensure_wal_exists()?;
        info!(
            db = %self.cfg.path.display(),
            page_size,
            txid = %self.pos,
            meta = %self.meta.root().display(),
            "database opened"
        );
        Ok(true)
    }

    /// Releases the read lock and closes the connections (after a final sync by the caller).
    pub fn close(&mut self) {
        if let Some(mut db) = self.db.take() {
            if let Err(e) = db.conns.release_read_lock() {
                warn!(db = %self.cfg.path.display(), error = %e, "release read lock");
            }
        }
    }

    fn ensure_wal_exists(&mut self) -> Result<()> {
        if file_size(&self.wal_path)? >= HDR {
            return Ok(());
        }
        self.open_db()?.conns.bump_seq()
    }

    /// Replaces local L0 state by the replica's newest L0 file (§4.9: the database is behind
    /// its replica). Numbering then continues from that TXID; the next pass snapshots because
    /// the salts will not match.
    pub fn adopt_replica_l0(&mut self, txid: TxId, bytes: &[u8]) -> Result<()> {
        LtxFile::open(bytes).map_err(|e| Error::ltx(format!("replica L0 {txid}"), e))?;
        self.meta.clear_l0()?;
        self.meta.write_l0(txid, bytes)?;
        self.pos = txid;
        self.last_l0 = None;
        self.state.synced_to_wal_end = false;
        Ok(())
    }

    /// Syncs until the WAL is fully copied (Litestream's `Sync`). Returns the TXID reached.
    pub fn sync(&mut self) -> Result<TxId> {
        loop {
            let r = self.sync_once(self.cfg.max_sync_wal_bytes)?;
            if !r.synced || !r.limited || r.synced_to_wal_end {
                return Ok(self.pos);
            }
        }
    }

    /// One unlimited pass, as Litestream does on close. Reopens the database if an earlier
    /// error closed it, so nothing committed before shutdown is left behind.
    pub fn final_sync(&mut self) -> Result<TxId> {
        if self.open()? {
            self.sync_once(0)?;
        }
        Ok(self.pos)
    }

    /// Fails if the path no longer names the file we have open (deleted, or replaced by a
    /// restore): the caller then closes and reopens.
    fn check_same_file(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Some(od) = &self.db else { return Ok(()) };
        let open = od
            .file
            .metadata()
            .map_err(|e| Error::io("stat database", &self.cfg.path, e))?;
        match std::fs::metadata(&self.cfg.path) {
            Ok(m) if m.ino() == open.ino() && m.dev() == open.dev() => Ok(()),
            Ok(_) => Err(Error::Other(format!(
                "database {} was replaced by another file; reopening",
                self.cfg.path.display()
            ))),
            Err(e) => Err(Error::io("database file disappeared", &self.cfg.path, e)),
        }
    }

    /// One pass (Litestream's `syncLocked`), counted in the metrics; the gauges follow the
    /// position and sizes it reached.
    fn sync_once(&mut self, max_bytes: u64) -> Result<PassResult> {
        if self.db.is_none() {
            return Ok(PassResult::default());
        }
        let t = Instant::now();
        let r = self.pass(max_bytes);
        let err = r.as_ref().err();
        self.metrics.sync_done(
            t.elapsed(),
            err.is_some(),
            err.is_some_and(Error::is_disk_full),
        );
        if r.is_ok() {
            self.metrics.synced(
                self.pos.0,
                file_size(&self.cfg.path).ok(),
                self.state.last_synced_wal_offset,
            );
        }
        r
    }

    fn pass(&mut self, max_bytes: u64) -> Result<PassResult> {
        self.check_same_file()?;
        self.open_db()?.conns.acquire_read_lock()?;
        self.ensure_wal_exists()?;
        let r = self.verify_and_sync(false, max_bytes)?;
        if r.synced {
            self.state.synced_since_checkpoint = true;
        }
        let thresholds = self.thresholds();
        if !r.limited || r.synced_to_wal_end || thresholds.exceeds_truncate(r.orig_wal_size) {
            self.checkpoint_if_needed(r.orig_wal_size, r.new_wal_size)?;
        }
        Ok(r)
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            page_size: self.page_size(),
            min_checkpoint_page_n: self.cfg.min_checkpoint_page_n,
            truncate_page_n: self.cfg.truncate_page_n,
            checkpoint_interval: self.cfg.checkpoint_interval,
        }
    }

    fn apply(&mut self, r: &PassResult) {
        self.state.passed_since_open = true;
        self.state.last_synced_wal_offset = r.new_wal_size;
        self.state.synced_to_wal_end = r.synced_to_wal_end;
    }

    fn verify_and_sync(&mut self, checkpointing: bool, max_bytes: u64) -> Result<PassResult> {
        let mut orig = self.state.last_synced_wal_offset;
        if orig == 0 {
            orig = file_size(&self.wal_path)?;
        }
        let plan = self.verify()?;
        let mut r = self.sync_pass(plan, max_bytes, checkpointing)?;
        r.orig_wal_size = orig;
        self.apply(&r);
        Ok(r)
    }

    fn last_l0_bytes(&mut self) -> Result<LtxBytes> {
        if let Some(b) = &self.last_l0 {
            return Ok(b.clone());
        }
        let bytes = self.meta.open_l0(self.pos)?;
        // Like Litestream's Pos(): a corrupt last file stops replication with a clear error
        // rather than building on it.
        LtxFile::open_verified((*bytes).as_ref()).map_err(|e| {
            Error::ltx(
                format!("last local L0 {}", self.meta.l0_path(self.pos).display()),
                e,
            )
        })?;
        self.last_l0 = Some(bytes.clone());
        Ok(bytes)
    }

    fn read_wal_header(&self) -> Result<[u8; 32]> {
        let f = File::open(&self.wal_path).map_err(|e| Error::io("open WAL", &self.wal_path, e))?;
        let mut hdr = [0u8; 32];
        f.read_exact_at(&mut hdr, 0)
            .map_err(|e| Error::io("read WAL header", &self.wal_path, e))?;
        Ok(hdr)
    }

    fn verify(&mut self) -> Result<SyncPlan> {
        let frame_size = self.frame_size();
        let last = if self.pos == TxId::ZERO {
            None
        } else {
            let bytes = self.last_l0_bytes()?;
            let h = Header::decode((*bytes).as_ref())
                .map_err(|e| Error::ltx(format!("L0 {} header", self.pos), e))?;
            Some(LastSync {
                end_offset: (h.wal_offset + h.wal_size) as u64,
                salts: (h.wal_salt1, h.wal_salt2),
                commit: h.commit,
            })
        };
        let wal_size = file_size(&self.wal_path)?;
        let hdr = self.read_wal_header()?;
        let wal_salts = (be32(&hdr, 16), be32(&hdr, 20));
        if let Some(l) = last {
            if l.end_offset > wal_size || l.salts != wal_salts {
                self.state.truncate_passive_failed = false;
            }
        }
        let input = VerifyInput {
            last,
            wal_size,
            wal_salts,
            synced_to_wal_end: self.state.synced_to_wal_end,
            frame_size,
            unwitnessed: !self.state.passed_since_open,
        };
        let wal_path = self.wal_path.clone();
        let l0 = match last {
            Some(_) => Some(self.last_l0_bytes()?),
            None => None,
        };
        let plan = verify::decide(
            &input,
            |prev| {
                last_page_match(
                    &wal_path,
                    l0.as_ref().map(|b| (**b).as_ref()),
                    prev,
                    frame_size,
                )
            },
            |new, old| detect_full_checkpoint(&wal_path, frame_size, new, old),
        )?;
        Ok(plan)
    }

    fn sync_pass(
        &mut self,
        plan: SyncPlan,
        max_bytes: u64,
        checkpointing: bool,
    ) -> Result<PassResult> {
        let mut result = PassResult {
            new_wal_size: self.state.last_synced_wal_offset,
            synced_to_wal_end: self.state.synced_to_wal_end && !plan.clear_synced_to_wal_end,
            ..PassResult::default()
        };
        let txid = self.pos.next();
        let db_path = self.cfg.path.clone();
        let od = self
            .db
            .as_ref()
            .ok_or_else(|| Error::Other("database is not open".into()))?;
        let page_size = od.page_size;
        let db_len = od
            .file
            .metadata()
            .map_err(|e| Error::io("stat database", &db_path, e))?
            .len();
        let mut commit = (db_len / u64::from(page_size)) as u32;

        // The size seen now, with our read transaction held, bounds every read of this pass.
        let map = WalMap::open(&self.wal_path, None)?;
        let data = map.bytes();

        let mut offset = plan.offset;
        let limit = if plan.snapshot || max_bytes == 0 {
            None
        } else {
            Some(max_bytes)
        };
        let read = |data: &[u8], offset: &mut u64| -> Result<(Committed, (u32, u32))> {
            let reader = if *offset == HDR {
                WalReader::new(data)
            } else {
                match WalReader::with_offset(data, *offset, plan.salts) {
                    Ok(r) => Ok(r),
                    Err(e) => {
                        debug!(db = %db_path.display(), error = %e, "prev frame mismatch, reading from the WAL start");
                        *offset = HDR;
                        WalReader::new(data)
                    }
                }
            }
            .map_err(|e| Error::ltx(format!("read WAL {}", db_path.display()), e))?;
            Ok(match reader {
                Some(mut r) => {
                    let c = read_committed(&mut r, limit);
                    (c, r.salts())
                }
                // An invalid header means an empty WAL, as SQLite sees it.
                None => {
                    let salts = if data.len() >= 24 {
                        (be32(data, 16), be32(data, 20))
                    } else {
                        (0, 0)
                    };
                    (
                        Committed {
                            end_offset: *offset,
                            last_commit_end: *offset,
                            ..Committed::default()
                        },
                        salts,
                    )
                }
            })
        };
        let start_offset = offset;
        let (committed, salts) = read(data, &mut offset)?;
        result.limited =
            limit.is_some_and(|m| committed.last_commit_end.saturating_sub(offset) >= m);
        let sz = if committed.pages.is_empty() {
            0
        } else {
            commit = committed.commit;
            committed.end_offset - offset
        };
        if !plan.snapshot && sz == 0 {
            return Ok(result);
        }

        let pages = l0::page_list(
            plan.snapshot,
            &committed.pages,
            plan.prev_commit,
            commit,
            page_size,
        );
        let params = L0Params {
            txid,
            page_size,
            commit,
            timestamp_ms: now_ms(),
            wal_offset: offset,
            wal_size: sz,
            salts,
        };
        let src = PageSource {
            wal: data,
            wal_pages: &committed.pages,
            db: &od.file,
            page_size,
        };
        let staged = self.meta.stage(self.meta.l0_path(txid))?;
        let staged = l0::encode(&params, &pages, &src, staged)?;

        // The pages were copied out of a live mapping: make sure the frames validated above
        // are still there, unchanged (a truncation or WAL restart under us would show up
        // here). Only the committed prefix is re-read: the application may legitimately have
        // appended more frames after it, inside the mapping, when the file holds stale frames
        // of an older WAL generation beyond the valid end.
        let prefix_end = (committed.last_commit_end as usize).clamp(HDR as usize, data.len());
        let mut again = start_offset;
        let (check, check_salts) = read(&data[..prefix_end], &mut again)?;
        if map.faulted() || check != committed || check_salts != salts {
            return Err(Error::Other(format!(
                "WAL {} changed while it was being read; retrying",
                self.wal_path.display()
            )));
        }
        drop(map);

        let size = staged.len();
        let kept = staged.commit()?;
        // Counted once the L0 file is in place, so a pass retried after a failed write
        // (Litestream counts before writing) does not count the same WAL bytes again.
        self.metrics.wal_bytes(sz);
        let kind = if plan.snapshot {
            "snapshot"
        } else {
            "incremental"
        };
        let reason = match (plan.reason, checkpointing) {
            (Some(r), _) => r,
            (None, true) => "checkpoint",
            (None, false) if plan.snapshot => "first sync",
            (None, false) => "new WAL frames",
        };
        info!(
            db = %db_path.display(),
            txid = %txid,
            kind,
            reason,
            pages = pages.len(),
            commit,
            wal_offset = offset,
            wal_size = sz,
            transactions = committed.transactions,
            size,
            "synced"
        );
        self.pos = txid;
        // A file too large to keep in memory is mapped, not re-read: we just wrote it, so the
        // whole-file checksum check `last_l0_bytes` does for files found on disk would only
        // fault every page of it into our RSS.
        self.last_l0 = match kept {
            Some(b) => Some(Arc::new(b) as LtxBytes),
            None => self.meta.open_l0(txid).ok(),
        };
        let final_offset = offset + sz;
        result.synced = true;
        result.new_wal_size = final_offset;
        result.synced_to_wal_end = file_size(&self.wal_path).is_ok_and(|s| s == final_offset);
        Ok(result)
    }

    /// Captures what a level-9 snapshot at `pos` needs (§4.10) so it can be built on another
    /// thread while we go on syncing. The job shares our read transaction: until it is dropped
    /// we do not checkpoint, so the WAL frames up to the synced offset stay in place and no
    /// later frame reaches the database file.
    pub fn snapshot_job(&mut self) -> Result<Option<snapshot::Job>> {
        if self.db.is_none() || self.pos == TxId::ZERO {
            return Ok(None);
        }
        if !self.open_db()?.conns.has_read_lock() {
            // Taken now, its read mark could lie past the synced offset.
            return Err(Error::Other(format!(
                "{}: no read transaction held; the snapshot waits for the next sync",
                self.cfg.path.display()
            )));
        }
        let mut end = self.state.last_synced_wal_offset;
        if end == 0 {
            let bytes = self.last_l0_bytes()?;
            let h =
                Header::decode((*bytes).as_ref()).map_err(|e| Error::ltx("last L0 header", e))?;
            end = (h.wal_offset + h.wal_size) as u64;
        }
        let od = self
            .db
            .as_ref()
            .ok_or_else(|| Error::Other("database is not open".into()))?;
        let db = od
            .file
            .try_clone()
            .map_err(|e| Error::io("reopen database", &self.cfg.path, e))?;
        Ok(Some(snapshot::Job {
            db_path: self.cfg.path.clone(),
            wal_path: self.wal_path.clone(),
            db,
            page_size: od.page_size,
            txid: self.pos,
            wal_end: end,
            meta: self.meta.clone(),
            hold: od.hold.clone(),
        }))
    }

    /// A snapshot job is reading under our read transaction, which a checkpoint would release.
    pub fn snapshot_reading(&self) -> bool {
        self.db.as_ref().is_some_and(OpenDb::held)
    }

    fn checkpoint_if_needed(&mut self, orig: u64, new: u64) -> Result<()> {
        if self.snapshot_reading() {
            debug!(db = %self.cfg.path.display(), "checkpoint deferred: a snapshot is reading");
            return Ok(());
        }
        let t = self.thresholds();
        if !t.exceeds_truncate(self.state.last_synced_wal_offset) {
            self.state.truncate_passive_failed = false;
        }
        let db_mtime = self
            .db
            .as_ref()
            .and_then(|d| d.file.metadata().ok())
            .and_then(|m| m.modified().ok());
        let since_mtime = db_mtime.and_then(|m| SystemTime::now().duration_since(m).ok());
        match checkpoint::decide(
            &t,
            orig,
            new,
            self.state.synced_since_checkpoint,
            since_mtime,
        ) {
            Decision::None => Ok(()),
            Decision::Emergency => {
                if !self.state.truncate_passive_failed {
                    match self.checkpoint(CheckpointMode::Passive) {
                        Err(e) if e.is_busy() => {
                            self.state.truncate_passive_failed = true;
                            debug!(db = %self.cfg.path.display(), "passive checkpoint skipped: database busy");
                        }
                        Err(e) => return Err(e),
                        Ok(true) => {
                            self.state.truncate_passive_failed = false;
                            if !t.exceeds_truncate(self.state.last_synced_wal_offset) {
                                info!(db = %self.cfg.path.display(), wal_size = orig, "wal restarted by passive checkpoint, skipping truncate checkpoint");
                                return Ok(());
                            }
                        }
                        Ok(false) => self.state.truncate_passive_failed = true,
                    }
                }
                info!(db = %self.cfg.path.display(), wal_size = orig, threshold = t.truncate_threshold(), "forcing truncate checkpoint");
                let restarted = self.checkpoint(CheckpointMode::Truncate);
                if matches!(restarted, Ok(true))
                    || !t.exceeds_truncate(self.state.last_synced_wal_offset)
                {
                    self.state.truncate_passive_failed = false;
                }
                restarted.map(|_| ())
            }
            Decision::Passive => match self.checkpoint(CheckpointMode::Passive) {
                Err(e) if e.is_busy() => {
                    debug!(db = %self.cfg.path.display(), "passive checkpoint skipped: database busy");
                    Ok(())
                }
                r => r.map(|_| ()),
            },
        }
    }

    /// Litestream's checkpoint procedure (§4.8). Returns whether the WAL was restarted.
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<bool> {
        if self.snapshot_reading() {
            debug!(db = %self.cfg.path.display(), mode = mode.as_str(), "checkpoint deferred: a snapshot is reading");
            return Ok(false);
        }
        let before = self.read_wal_header()?;
        self.verify_and_sync(true, 0)?;
        if mode == CheckpointMode::Passive {
            // The barrier holds the write lock so the WAL is sealed between our last copy and
            // the checkpoint: nothing can be committed that we have not copied.
            self.open_db()?.conns.begin_write_lock()?;
            if let Err(e) = self.verify_and_sync(true, 0) {
                let _ = self.open_db()?.conns.end_write_lock();
                return Err(e);
            }
        }
        let t = Instant::now();
        let res = self.open_db()?.conns.checkpoint(mode);
        self.metrics
            .checkpoint_done(mode, t.elapsed(), res.is_err());
        let unlock = self.open_db()?.conns.end_write_lock();
        let (busy, log, done) = res?;
        unlock?;
        info!(
            db = %self.cfg.path.display(),
            mode = mode.as_str(),
            result = %format!("{busy},{log},{done}"),
            "checkpoint"
        );
        self.open_db()?.conns.bump_seq()?;
        let after = self.read_wal_header()?;
        if before == after {
            self.state.synced_since_checkpoint = false;
            return Ok(false);
        }
        self.state.truncate_passive_failed = false;
        if mode == CheckpointMode::Passive {
            self.verify_and_sync(true, 0)?;
            self.state.synced_since_checkpoint = false;
            return Ok(true);
        }
        // TRUNCATE resets the WAL before counting, so commits that landed between our sealed
        // copy and the checkpoint may have been backfilled unseen: snapshot unconditionally.
        self.open_db()?.conns.begin_write_lock()?;
        let plan = SyncPlan {
            offset: HDR,
            salts: (be32(&after, 16), be32(&after, 20)),
            prev_commit: 0,
            snapshot: true,
            reason: Some("checkpoint boundary snapshot"),
            clear_synced_to_wal_end: false,
        };
        let r = self.sync_pass(plan, 0, true);
        let unlock = self.open_db()?.conns.end_write_lock();
        let r = r?;
        unlock?;
        self.apply(&r);
        self.state.synced_since_checkpoint = false;
        Ok(true)
    }
}

/// Does the WAL frame at `prev` still carry the last L0's salts and equal that page in it?
fn last_page_match(
    wal_path: &Path,
    l0: Option<&[u8]>,
    prev: u64,
    frame_size: u64,
) -> std::result::Result<bool, String> {
    let Some(l0) = l0 else {
        return Ok(false);
    };
    let f = File::open(wal_path).map_err(|e| format!("open WAL: {e}"))?;
    let mut frame = vec![0u8; frame_size as usize];
    f.read_exact_at(&mut frame, prev)
        .map_err(|e| format!("cannot read last synced wal page at {prev}: {e}"))?;
    let ltx = LtxFile::open(l0).map_err(|e| format!("last L0: {e}"))?;
    let h = ltx.header();
    if (be32(&frame, 8), be32(&frame, 12)) != (h.wal_salt1, h.wal_salt2) {
        return Ok(false);
    }
    let pgno = be32(&frame, 0);
    let mut page = vec![0u8; h.page_size as usize];
    match ltx.read_page(pgno, &mut page) {
        Ok(()) => Ok(page[..] == frame[WAL_FRAME_HEADER_SIZE..]),
        Err(ltx_codec::Error::PageNotFound(_)) => Ok(false),
        Err(e) => Err(format!("decode last L0 page {pgno}: {e}")),
    }
}

/// Scans frame salts from the WAL start until `old` appears; any salt other than `new` and
/// `old` means a FULL/RESTART checkpoint happened that we may have missed frames of.
fn detect_full_checkpoint(
    wal_path: &Path,
    frame_size: u64,
    new: (u32, u32),
    old: (u32, u32),
) -> std::result::Result<bool, String> {
    let f = File::open(wal_path).map_err(|e| format!("open WAL: {e}"))?;
    let mut off = HDR;
    let mut hdr = [0u8; WAL_FRAME_HEADER_SIZE];
    let mut unknown = false;
    while f.read_exact_at(&mut hdr, off).is_ok() {
        let salt = (be32(&hdr, 8), be32(&hdr, 12));
        if salt != new && salt != old {
            unknown = true;
        }
        if salt == old {
            break;
        }
        off += frame_size;
    }
    Ok(unknown)
}
