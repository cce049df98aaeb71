//! The WAL follower for one database (docs/wal.md): verify, read committed frames, write one L0
//! file per pass, and run the checkpoint policy. Blocking code: the async side runs it on a
//! blocking thread, one pass at a time per database.

use crate::sync_status::{Operation, Phase};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ltx_codec::wal::{WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE};
use ltx_codec::{LtxFile, TxId};
use tracing::{debug, info, warn};

use crate::checkpoint::Thresholds;
use crate::config::DbConfig;
use crate::error::{Error, Result};
use crate::l0::{self, L0Params, PageSource};
use crate::meta::{LastL0, MetaDir, StagedFile};
use crate::metrics::{self, DbMetrics};
use crate::snapshot::{self, ReadHold};
use crate::sqlite::Conns;
use crate::verify::{self, LastSync, SyncPlan, VerifyInput};
use crate::walread::WalFile;

mod checkpointing;
mod inspect;
mod pressure;
mod shrink;

const HDR: u64 = WAL_HEADER_SIZE as u64;

/// What the follower remembers between passes (Litestream's `syncState`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncState {
    /// End of the WAL bytes the last L0 covered; the logical WAL size for checkpoint decisions.
    pub last_synced_wal_offset: u64,
    /// The last pass copied the WAL to exactly its end (verify's "truncated after we had
    /// everything" case).
    pub synced_to_wal_end: bool,
    /// Something was synced since the last checkpoint (a condition of the time-based checkpoint).
    pub synced_since_checkpoint: bool,
    /// The PASSIVE checkpoint tried first in an emergency was busy or did not restart the WAL, so
    /// while the WAL stays over the threshold the next emergency goes straight to TRUNCATE.
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

/// A pass whose L0 file (if any) is written but not yet in place.
struct Encoded {
    result: PassResult,
    file: Option<EncodedFile>,
}

struct EncodedFile {
    staged: StagedFile,
    txid: TxId,
    wal_size: u64,
    last: LastL0,
    log: SyncedLog,
}

/// The fields of Litestream's "synced" log line.
struct SyncedLog {
    txid: TxId,
    kind: &'static str,
    reason: &'static str,
    pages: usize,
    commit: u32,
    wal_offset: u64,
    wal_size: u64,
    /// Not known when the frames were found through the wal-index (then not logged).
    transactions: Option<u64>,
    size: u64,
}

impl SyncedLog {
    fn emit(&self, db: &Path) {
        // Debug, like Litestream's per-sync lines: at info a busy database logs nothing per pass.
        debug!(
            db = %db.display(),
            txid = %self.txid,
            kind = self.kind,
            reason = self.reason,
            pages = self.pages,
            commit = self.commit,
            wal_offset = self.wal_offset,
            wal_size = self.wal_size,
            transactions = self.transactions,
            size = self.size,
            "synced"
        );
    }
}

struct OpenDb {
    conns: Conns,
    /// Kept open for as long as the connections are: closing a descriptor of the database
    /// file drops every lock this process holds on it, SQLite's included.
    file: Arc<File>,
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
    /// What verify needs of the L0 file at `pos`, kept so it does not re-read it from disk.
    last_l0: Option<LastL0>,
    metrics: Arc<DbMetrics>,
    app: pressure::AppCheckpoints,
    /// Cuts the WAL file down after our TRUNCATE restarts.
    shrink: shrink::Shrink,
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
    /// A follower of the database `cfg` describes; nothing is opened yet.
    pub fn new(cfg: Arc<DbConfig>) -> Follower {
        let mut wal = cfg.path.as_os_str().to_owned();
        wal.push("-wal");
        Follower {
            meta: MetaDir::new(&cfg.meta_path).with_mode_from(&cfg.path),
            wal_path: PathBuf::from(wal),
            metrics: metrics::db(&cfg.path),
            app: pressure::AppCheckpoints::new(crate::shm::ShmPeek::new(&cfg.path)),
            shrink: shrink::Shrink::default(),
            cfg,
            db: None,
            state: SyncState::default(),
            pos: TxId::ZERO,
            last_l0: None,
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// The WAL path: the database path plus `-wal`.
    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }

    /// The database's local meta directory.
    pub fn meta(&self) -> &MetaDir {
        &self.meta
    }

    /// Whether the database and its SQLite connections are open.
    pub fn is_open(&self) -> bool {
        self.db.is_some()
    }

    /// Highest local L0 TXID.
    pub fn pos(&self) -> TxId {
        self.pos
    }

    /// What the follower remembers between passes.
    pub fn state(&self) -> SyncState {
        self.state
    }

    /// A time-based PASSIVE checkpoint (docs/wal.md#checkpoints) would fire now. Idle databases are
    /// not polled, so the caller asks this on its fallback timer.
    pub fn checkpoint_due(&self) -> bool {
        self.checkpoint_wait() == Some(Duration::ZERO)
    }

    /// How long until a time-based checkpoint is due (zero: now), or `None` if none is
    /// pending (nothing synced since the last checkpoint, or too little WAL).
    pub fn checkpoint_wait(&self) -> Option<Duration> {
        let interval = self.cfg.checkpoint_interval;
        if interval.is_zero()
            || !self.state.synced_since_checkpoint
            || self.state.last_synced_wal_offset
                <= crate::checkpoint::wal_bytes(self.page_size(), 1)
        {
            return None;
        }
        if self.snapshot_reading() {
            // Deferred until the snapshot is done: look again shortly.
            return Some(self.cfg.monitor_interval.max(Duration::from_millis(1)));
        }
        let age = std::fs::metadata(&self.cfg.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        // Due once the database is strictly older than the interval.
        Some(if age > interval {
            Duration::ZERO
        } else {
            interval - age + Duration::from_millis(1)
        })
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
        // The process's one descriptor of the file (crate::held): closing a second one would
        // drop the locks our connections hold on it.
        let file = crate::held::open(&self.cfg.path)
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
        self.open_db()?.conns.release_idle();
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

    /// Replaces local L0 state by the replica's newest L0 file
    /// (docs/wal.md#database-behind-replica: the database is behind its replica). Numbering then
    /// continues from that TXID; the next pass snapshots because the salts will not match.
    pub fn adopt_replica_l0(&mut self, txid: TxId, bytes: &[u8]) -> Result<()> {
        LtxFile::open(bytes).map_err(|e| Error::ltx(format!("replica L0 {txid}"), e))?;
        self.meta.clear_l0()?;
        self.meta.write_l0(txid, bytes)?;
        self.pos = txid;
        self.last_l0 = None;
        self.state.synced_to_wal_end = false;
        Ok(())
    }

    /// Whether our local L0 files still describe this database: there are some, and the WAL
    /// goes on from the last one (same salts, its last page unchanged), so the next pass would
    /// continue the chain rather than snapshot. False for a database restored or replaced while
    /// we were not running (docs/wal.md#database-behind-replica).
    pub fn continues_local_state(&mut self) -> Result<bool> {
        if self.pos == TxId::ZERO {
            return Ok(false);
        }
        Ok(!self.verify()?.snapshot)
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

    /// Passes of at most `max-sync-wal-bytes` of WAL each until the WAL as long as it is now is
    /// copied. One pass over a long backlog would hold the backlog's page list in memory and
    /// write an L0 file as large as the backlog, all of it written before its fsync.
    fn sync_through(&mut self, checkpointing: bool) -> Result<PassResult> {
        let end = file_size(&self.wal_path)?;
        loop {
            let r = self.verify_and_sync(checkpointing, self.cfg.max_sync_wal_bytes)?;
            if !r.limited || r.new_wal_size >= end {
                return Ok(r);
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
        let snapshotting = self.snapshot_reading();
        self.metrics
            .sync_status
            .begin(Operation::Sync, snapshotting);
        let r = self.pass(max_bytes);
        let err = r.as_ref().err();
        self.metrics.sync_status.end(
            self.pos.0,
            file_size(&self.wal_path).unwrap_or(0),
            self.state.last_synced_wal_offset,
            err.map(ToString::to_string),
        );
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
        self.note_pass_start();
        if !self.open_db()?.conns.has_read_lock() {
            // No read mark of ours held the WAL since the last pass (an error let it go): a
            // restart found now may have written over frames we never read.
            self.state.passed_since_open = false;
        }
        self.open_db()?.conns.acquire_read_lock()?;
        self.metrics.sync_status.phase(Phase::EnsureWal);
        self.ensure_wal_exists()?;
        self.metrics.sync_status.phase(Phase::VerifyAndSync);
        let r = self.verify_and_sync(false, max_bytes)?;
        if r.synced {
            self.state.synced_since_checkpoint = true;
        }
        let thresholds = self.thresholds();
        if !r.limited || r.synced_to_wal_end || thresholds.exceeds_truncate(r.orig_wal_size) {
            self.metrics.sync_status.phase(Phase::CheckpointIfNeeded);
            self.checkpoint_if_needed(r.orig_wal_size, r.new_wal_size)?;
        }
        // Only checkpoints and `_litestream_seq` bumps use the second connection.
        self.open_db()?.conns.release_idle();
        self.note_pass_end();
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
        let e = self.verify_and_encode(checkpointing, max_bytes)?;
        self.finish(e)
    }

    /// The first half of [`Follower::verify_and_sync`]: the L0 file is written but not yet
    /// durable nor in place ([`Follower::finish`] does that).
    fn verify_and_encode(&mut self, checkpointing: bool, max_bytes: u64) -> Result<Encoded> {
        let mut orig = self.state.last_synced_wal_offset;
        if orig == 0 {
            orig = file_size(&self.wal_path)?;
        }
        let plan = self.verify()?;
        let mut e = self.encode_pass(plan, max_bytes, checkpointing)?;
        e.result.orig_wal_size = orig;
        Ok(e)
    }

    /// Puts an encoded L0 file in place and moves the position to it.
    fn finish(&mut self, e: Encoded) -> Result<PassResult> {
        let r = e.result;
        if let Some(f) = e.file {
            f.staged.commit()?;
            // Counted once the L0 file is in place, so a pass retried after a failed write
            // (Litestream counts before writing) does not count the same WAL bytes again.
            self.metrics.wal_bytes(f.wal_size);
            f.log.emit(&self.cfg.path);
            self.pos = f.txid;
            self.last_l0 = Some(f.last);
        }
        self.apply(&r);
        Ok(r)
    }

    fn last_l0(&mut self) -> Result<LastL0> {
        if let Some(l) = &self.last_l0 {
            return Ok(l.clone());
        }
        // Like Litestream's Pos(): a corrupt last file stops replication with a clear error
        // rather than building on it. Read as a stream, so a large file costs no memory.
        let l = self.meta.verify_l0(self.pos)?;
        self.last_l0 = Some(l.clone());
        Ok(l)
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
            Some(self.last_l0()?)
        };
        let last_sync = last.as_ref().map(|l| LastSync {
            end_offset: (l.header.wal_offset + l.header.wal_size) as u64,
            salts: (l.header.wal_salt1, l.header.wal_salt2),
            commit: l.header.commit,
        });
        let wal_size = file_size(&self.wal_path)?;
        let hdr = self.read_wal_header()?;
        let wal_salts = (be32(&hdr, 16), be32(&hdr, 20));
        if let Some(l) = last_sync {
            if l.end_offset > wal_size || l.salts != wal_salts {
                self.state.truncate_passive_failed = false;
            }
        }
        let input = VerifyInput {
            last: last_sync,
            wal_size,
            wal_salts,
            synced_to_wal_end: self.state.synced_to_wal_end,
            frame_size,
            unwitnessed: !self.state.passed_since_open,
        };
        let l0_path = self.meta.l0_path(self.pos);
        let plan = verify::decide(
            &input,
            |prev| {
                inspect::last_page_match(&self.wal_path, last.as_ref(), &l0_path, prev, frame_size)
            },
            |new, old| inspect::detect_full_checkpoint(&self.wal_path, frame_size, new, old),
            |prev| {
                let old = last_sync.map_or((0, 0), |l| l.salts);
                inspect::committed_past_end(&self.wal_path, &hdr, prev, frame_size, old)
            },
        )?;
        if plan.reason == Some(verify::LOST_TO_RESTART) {
            // Not the application's fault nor ours to hide: our read mark should have held its
            // checkpoint back. The snapshot carries the lost transaction's pages; no restore
            // point is wrong, one is missing.
            warn!(db = %self.cfg.path.display(), txid = %self.pos, wal_offset = last_sync.map_or(0, |l| l.end_offset), "the WAL restarted over a transaction committed after the last L0 file; the next L0 file is a snapshot");
        }
        Ok(plan)
    }

    fn sync_pass(
        &mut self,
        plan: SyncPlan,
        max_bytes: u64,
        checkpointing: bool,
    ) -> Result<PassResult> {
        let e = self.encode_pass(plan, max_bytes, checkpointing)?;
        let r = e.result;
        self.finish(e)?;
        Ok(r)
    }

    fn encode_pass(
        &mut self,
        plan: SyncPlan,
        max_bytes: u64,
        checkpointing: bool,
    ) -> Result<Encoded> {
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
        let wal = WalFile::open(&self.wal_path, None)?;
        let limit = if plan.snapshot || max_bytes == 0 {
            None
        } else {
            Some(max_bytes)
        };
        let scan = wal.scan_using(plan.offset, plan.salts, limit, self.app.peek())?;
        let transactions = scan.transactions;
        let (committed, salts, offset) = (scan.committed, scan.salts, scan.start);
        result.limited =
            limit.is_some_and(|m| committed.last_commit_end.saturating_sub(offset) >= m);
        let sz = if committed.pages.is_empty() {
            0
        } else {
            commit = committed.commit;
            committed.end_offset - offset
        };
        if !plan.snapshot && sz == 0 {
            return Ok(Encoded { result, file: None });
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
            timestamp_ms: crate::l0::now_ms(),
            wal_offset: offset,
            wal_size: sz,
            salts,
        };
        let src = PageSource {
            wal: &wal,
            wal_pages: &committed.pages,
            db: &od.file,
            page_size,
        };
        let mut staged = self.meta.stage(self.meta.l0_path(txid))?;
        if od.conns.has_write_lock() {
            staged = staged.unpaced();
        }
        let staged = l0::encode(&params, &pages, &src, staged)?;
        // The frame verify will compare with on the next pass (the one just before the end).
        let last_page = match committed.pages.iter().max_by_key(|(_, &off)| off) {
            Some((&pgno, &off)) if pgno != ltx_codec::lock_pgno(page_size) => {
                let mut page = vec![0u8; page_size as usize];
                wal.read_page(off, pgno, &mut page)?;
                Some((pgno, Arc::new(page)))
            }
            _ => None,
        };
        // Pages were read from a live file: they are the frames validated above only if the
        // WAL was not restarted or truncated meanwhile (see `walread`).
        if !wal.unchanged()? {
            return Err(wal.changed());
        }
        wal.start_writeback(offset, sz);
        drop(wal);

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
        let final_offset = offset + sz;
        result.synced = true;
        result.new_wal_size = final_offset;
        result.synced_to_wal_end = file_size(&self.wal_path).is_ok_and(|s| s == final_offset);
        Ok(Encoded {
            result,
            file: Some(EncodedFile {
                log: SyncedLog {
                    txid,
                    kind,
                    reason,
                    pages: pages.len(),
                    commit,
                    wal_offset: offset,
                    wal_size: sz,
                    transactions,
                    size: staged.len(),
                },
                staged,
                txid,
                wal_size: sz,
                last: LastL0 {
                    header: l0::header(&params),
                    last_page,
                },
            }),
        })
    }

    /// Captures what a level-9 snapshot at `pos` needs (docs/wal.md#level-9-snapshots) so it can be
    /// built on another thread while we go on syncing. The job shares our read transaction: until
    /// it is dropped we do not checkpoint, so the WAL frames up to the synced offset stay in place
    /// and no later frame reaches the database file.
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
            let h = self.last_l0()?.header;
            end = (h.wal_offset + h.wal_size) as u64;
        }
        let od = self
            .db
            .as_ref()
            .ok_or_else(|| Error::Other("database is not open".into()))?;
        let db = od.file.clone();
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
}
