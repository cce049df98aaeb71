//! The TXID chain of a replica level: each file starts one past where the one before it ended
//! (docs/replica-layout.md#checking-a-levels-chain). Checked after each compaction with
//! `verify-compaction` and on every level at `validation.interval`, as Litestream does; both
//! only log (and count), never stop replication.

use ltx_codec::{Level, TxId};
use storage::{LtxFileInfo, SharedReplica};

use crate::error::Result;

/// One break in a level's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    /// The level whose chain breaks.
    pub level: Level,
    /// Litestream's names: `gap`, `overlap` or `unsorted`.
    pub kind: &'static str,
    /// What was found, in Litestream's words, with the TXIDs involved.
    pub message: String,
}

/// The breaks in `files`, one level's listing in the order the replica gave it.
pub fn breaks(level: Level, files: &[LtxFileInfo]) -> Vec<Break> {
    let mut out = Vec::new();
    let mut at = |kind, message| {
        out.push(Break {
            level,
            kind,
            message,
        })
    };
    for w in files.windows(2) {
        let (prev, cur) = (&w[0], &w[1]);
        if cur.min_txid < prev.min_txid {
            at(
                "unsorted",
                format!(
                    "files out of order: curr.MinTXID={} < prev.MinTXID={}",
                    cur.min_txid, prev.min_txid
                ),
            );
            continue;
        }
        let expected = TxId(prev.max_txid.0.saturating_add(1));
        if cur.min_txid > expected {
            at(
                "gap",
                format!(
                    "TXID gap: prev.MaxTXID={}, curr.MinTXID={} (expected {expected})",
                    prev.max_txid, cur.min_txid
                ),
            );
        } else if cur.min_txid < expected {
            at(
                "overlap",
                format!(
                    "TXID overlap: prev.MaxTXID={}, curr.MinTXID={}",
                    prev.max_txid, cur.min_txid
                ),
            );
        }
    }
    out
}

/// Lists `level` on the replica and checks its chain. The listing is fetched afresh: a
/// check of what the replica holds must not read our own cached copy of it (the options are
/// opt-in, one listing per check).
pub async fn level(replica: &SharedReplica, level: Level) -> Result<Vec<Break>> {
    replica.invalidate_cache();
    let files = replica.ltx_files(level).await?;
    Ok(breaks(level, &files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn f(min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level: Level(1),
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 1,
            created_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_chain_breaks_where_litestream_says() {
        assert!(breaks(Level(1), &[f(1, 3), f(4, 9), f(10, 10)]).is_empty());
        assert!(breaks(Level(1), &[]).is_empty());
        let b = breaks(Level(1), &[f(1, 3), f(5, 9), f(8, 12), f(2, 2)]);
        let kinds: Vec<_> = b.iter().map(|b| b.kind).collect();
        assert_eq!(kinds, ["gap", "overlap", "unsorted"]);
        assert_eq!(
            b[0].message,
            "TXID gap: prev.MaxTXID=0000000000000003, curr.MinTXID=0000000000000005 (expected 0000000000000004)"
        );
    }
}
