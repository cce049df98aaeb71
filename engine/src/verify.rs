//! The verify step (docs/wal.md#verify): may the next L0 file continue incrementally from where the
//! last one ended, or must it hold a full snapshot? Pure, with the two WAL inspections passed in,
//! so the whole decision table is unit-tested.

use ltx_codec::wal::WAL_HEADER_SIZE;

const HDR: u64 = WAL_HEADER_SIZE as u64;

/// What the last local L0 file says about where it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastSync {
    /// `WALOffset + WALSize` of the last L0 file.
    pub end_offset: u64,
    /// The WAL salts (salt 1, salt 2) in its header: the generation it was read from.
    pub salts: (u32, u32),
    /// Its commit (the database size in pages), the next file's previous commit for growth pages.
    pub commit: u32,
}

/// What [`decide`] needs besides the two WAL inspections.
#[derive(Clone, Copy, Debug)]
pub struct VerifyInput {
    /// `None` before the first L0 file (TXID 0).
    pub last: Option<LastSync>,
    /// Current WAL file size.
    pub wal_size: u64,
    /// Salts in the current WAL header.
    pub wal_salts: (u32, u32),
    /// The previous pass read up to exactly the end of the WAL file.
    pub synced_to_wal_end: bool,
    /// Bytes per WAL frame: 24 plus the page size.
    pub frame_size: u64,
    /// No pass since the database was opened: a WAL restart found now happened while we were
    /// not running, and the old generation may have held committed frames after our last
    /// offset that were checkpointed and are gone from the WAL.
    pub unwitnessed: bool,
}

/// Where and how the next pass reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncPlan {
    /// The WAL offset to read from (32 or later).
    pub offset: u64,
    /// The salts the frames read must carry.
    pub salts: (u32, u32),
    /// The last L0 file's commit in pages; growth pages start after it (0 before the first file).
    pub prev_commit: u32,
    /// Whether the next L0 file must hold every page of the database.
    pub snapshot: bool,
    /// Why a snapshot is needed (Litestream's wording), for the log.
    pub reason: Option<&'static str>,
    /// The expected-truncation case: the previous "synced to WAL end" no longer holds.
    pub clear_synced_to_wal_end: bool,
}

/// The snapshot reason when the WAL restarted over a transaction no L0 file holds: another
/// connection copied it into the database and restarted the WAL before we read it.
pub const LOST_TO_RESTART: &str = "wal restarted over frames not yet replicated, snapshotting";

/// Why verify could not decide.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The frame before the last L0 file's end would start inside the 32-byte WAL header.
    #[error("prev WAL offset {0} is less than the header size")]
    BadOffset(u64),
    /// Inspecting the WAL failed; the message says how.
    #[error("{0}")]
    Inspect(String),
}

/// Decides per docs/wal.md#verify. `last_page_match(prev_frame_offset)` answers whether the WAL
/// frame just before the last synced offset still carries the old salts and equals that page in the
/// last L0 file; `full_checkpoint(new, old)` answers whether frames with a salt other than those
/// two appear before the old salt (a FULL/RESTART checkpoint we may have missed);
/// `committed_past_end(prev_frame_offset)` answers whether the old generation goes on after the
/// last synced offset with a committed transaction (one the restart wrote over before we read it).
pub fn decide(
    input: &VerifyInput,
    last_page_match: impl FnOnce(u64) -> Result<bool, String>,
    full_checkpoint: impl FnOnce((u32, u32), (u32, u32)) -> Result<bool, String>,
    committed_past_end: impl FnOnce(u64) -> Result<bool, String>,
) -> Result<SyncPlan, VerifyError> {
    let Some(last) = input.last else {
        return Ok(SyncPlan {
            offset: HDR,
            salts: (0, 0),
            prev_commit: 0,
            snapshot: true,
            reason: None,
            clear_synced_to_wal_end: false,
        });
    };
    let mut plan = SyncPlan {
        offset: last.end_offset,
        salts: last.salts,
        prev_commit: last.commit,
        snapshot: true,
        reason: None,
        clear_synced_to_wal_end: false,
    };
    if last.end_offset > input.wal_size {
        if input.synced_to_wal_end {
            // A checkpoint truncated the WAL after we had copied all of it: nothing was lost.
            plan.offset = HDR;
            plan.salts = input.wal_salts;
            plan.snapshot = false;
            plan.clear_synced_to_wal_end = true;
            return Ok(plan);
        }
        plan.reason = Some("wal truncated by another process");
        return Ok(plan);
    }
    let salt_match = input.wal_salts == last.salts;
    if last.end_offset == HDR {
        if salt_match {
            plan.snapshot = false;
        } else {
            plan.reason = Some("wal header salt reset, snapshotting");
        }
        return Ok(plan);
    }
    let prev = last
        .end_offset
        .checked_sub(input.frame_size)
        .ok_or(VerifyError::BadOffset(last.end_offset))?;
    if prev == HDR {
        if salt_match {
            plan.snapshot = false;
        } else {
            plan.reason = Some("wal header salt reset, snapshotting");
        }
        return Ok(plan);
    }
    if prev < HDR {
        return Err(VerifyError::BadOffset(prev));
    }
    if !last_page_match(prev).map_err(VerifyError::Inspect)? {
        plan.reason =
            Some("last page does not exist in last ltx file, wal overwritten by another process");
        return Ok(plan);
    }
    if !salt_match {
        plan.offset = HDR;
        plan.salts = input.wal_salts;
        if input.unwitnessed {
            plan.reason = Some("wal restarted while not running, snapshotting");
            return Ok(plan);
        }
        if full_checkpoint(input.wal_salts, last.salts).map_err(VerifyError::Inspect)? {
            plan.reason = Some("full or restart checkpoint detected, snapshotting");
        } else if committed_past_end(prev).map_err(VerifyError::Inspect)? {
            plan.reason = Some(LOST_TO_RESTART);
        } else {
            plan.snapshot = false;
        }
        return Ok(plan);
    }
    plan.snapshot = false;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: u64 = 24 + 4096;
    const OLD: (u32, u32) = (10, 20);
    const NEW: (u32, u32) = (11, 99);

    fn input(last_end: Option<u64>, wal_size: u64, salts: (u32, u32), to_end: bool) -> VerifyInput {
        VerifyInput {
            last: last_end.map(|end_offset| LastSync {
                end_offset,
                salts: OLD,
                commit: 7,
            }),
            wal_size,
            wal_salts: salts,
            synced_to_wal_end: to_end,
            frame_size: FS,
            unwitnessed: false,
        }
    }

    fn never(_: u64) -> Result<bool, String> {
        panic!("last page match must not be consulted")
    }
    fn never_full(_: (u32, u32), _: (u32, u32)) -> Result<bool, String> {
        panic!("full checkpoint detection must not be consulted")
    }
    fn nothing_past(_: u64) -> Result<bool, String> {
        Ok(false)
    }
    fn never_past(_: u64) -> Result<bool, String> {
        panic!("the frames past the end must not be consulted")
    }
    fn yes(_: u64) -> Result<bool, String> {
        Ok(true)
    }
    fn no(_: u64) -> Result<bool, String> {
        Ok(false)
    }

    #[test]
    fn first_sync_is_a_snapshot_from_the_header() {
        let p = decide(&input(None, 0, NEW, false), never, never_full, never_past).expect("plan");
        assert!(p.snapshot);
        assert_eq!(p.offset, 32);
        assert_eq!(p.prev_commit, 0);
    }

    #[test]
    fn truncation_after_syncing_to_the_end_continues_incrementally() {
        let p = decide(
            &input(Some(32 + 3 * FS), 32 + FS, NEW, true),
            never,
            never_full,
            never_past,
        )
        .expect("plan");
        assert!(!p.snapshot);
        assert_eq!((p.offset, p.salts), (32, NEW));
        assert!(p.clear_synced_to_wal_end);
    }

    #[test]
    fn unexpected_truncation_snapshots() {
        let p = decide(
            &input(Some(32 + 3 * FS), 32 + FS, NEW, false),
            never,
            never_full,
            never_past,
        )
        .expect("plan");
        assert!(p.snapshot);
        assert_eq!(p.reason, Some("wal truncated by another process"));
    }

    #[test]
    fn at_header_or_first_frame_depends_on_salts() {
        for end in [32, 32 + FS] {
            let p = decide(
                &input(Some(end), 32 + 5 * FS, OLD, false),
                never,
                never_full,
                never_past,
            )
            .expect("plan");
            assert!(!p.snapshot);
            assert_eq!((p.offset, p.salts), (end, OLD));
            let p = decide(
                &input(Some(end), 32 + 5 * FS, NEW, false),
                never,
                never_full,
                never_past,
            )
            .expect("plan");
            assert!(p.snapshot);
            assert_eq!(p.reason, Some("wal header salt reset, snapshotting"));
        }
    }

    #[test]
    fn overwritten_last_frame_snapshots() {
        let p = decide(
            &input(Some(32 + 3 * FS), 32 + 5 * FS, OLD, false),
            no,
            never_full,
            never_past,
        )
        .expect("plan");
        assert!(p.snapshot);
        assert!(p.reason.is_some_and(|r| r.contains("wal overwritten")));
    }

    #[test]
    fn matching_frame_continues_from_offset() {
        let mut asked = 0;
        let p = decide(
            &input(Some(32 + 3 * FS), 32 + 5 * FS, OLD, false),
            |prev| {
                asked = prev;
                Ok(true)
            },
            never_full,
            never_past,
        )
        .expect("plan");
        assert_eq!(asked, 32 + 2 * FS);
        assert!(!p.snapshot);
        assert_eq!((p.offset, p.salts, p.prev_commit), (32 + 3 * FS, OLD, 7));
    }

    #[test]
    fn restarted_wal_reads_from_start_with_new_salts() {
        let p = decide(
            &input(Some(32 + 3 * FS), 32 + 5 * FS, NEW, false),
            yes,
            |new, old| {
                assert_eq!((new, old), (NEW, OLD));
                Ok(false)
            },
            nothing_past,
        )
        .expect("plan");
        assert!(!p.snapshot);
        assert_eq!((p.offset, p.salts), (32, NEW));

        let p = decide(
            &input(Some(32 + 3 * FS), 32 + 5 * FS, NEW, false),
            yes,
            |_, _| Ok(true),
            never_past,
        )
        .expect("plan");
        assert!(p.snapshot);
        assert_eq!(p.offset, 32);
        assert_eq!(
            p.reason,
            Some("full or restart checkpoint detected, snapshotting")
        );
    }

    /// Regression (compaction tests under load): the application's own checkpoint copied a
    /// transaction committed after our last L0 file into the database, and its next commit
    /// restarted the WAL over it. Continuing from the new header would leave that transaction out
    /// of every L0 file, so the next file is a snapshot.
    #[test]
    fn restart_over_unreplicated_commit_snapshots() {
        let mut asked = 0;
        let p = decide(
            &input(Some(32 + 3 * FS), 32 + 5 * FS, NEW, false),
            yes,
            |_, _| Ok(false),
            |prev| {
                asked = prev;
                Ok(true)
            },
        )
        .expect("plan");
        assert_eq!(asked, 32 + 2 * FS);
        assert!(p.snapshot);
        assert_eq!((p.offset, p.salts), (32, NEW));
        assert_eq!(p.reason, Some(LOST_TO_RESTART));
    }

    /// Regression (crash suite): killed, then the application ran a RESTART checkpoint of
    /// frames the engine never copied. On the first pass after opening, a restarted WAL must
    /// snapshot rather than continue from the new header.
    #[test]
    fn wal_restarted_while_not_running_snapshots() {
        let mut i = input(Some(32 + 3 * FS), 32 + 5 * FS, NEW, false);
        i.unwitnessed = true;
        let p = decide(&i, yes, never_full, never_past).expect("plan");
        assert!(p.snapshot);
        assert_eq!((p.offset, p.salts), (32, NEW));
        assert_eq!(
            p.reason,
            Some("wal restarted while not running, snapshotting")
        );
        // Same salts: nothing was restarted, the pass continues incrementally.
        let mut i = input(Some(32 + 3 * FS), 32 + 5 * FS, OLD, false);
        i.unwitnessed = true;
        assert!(
            !decide(&i, yes, never_full, never_past)
                .expect("plan")
                .snapshot
        );
    }

    #[test]
    fn misaligned_offset_is_an_error() {
        assert!(decide(
            &input(Some(40), 32 + 5 * FS, OLD, false),
            never,
            never_full,
            never_past
        )
        .is_err());
    }
}
