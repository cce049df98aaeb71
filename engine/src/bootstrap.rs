//! `restore-if-db-not-exists` (flag or per-database key): before replication starts, a missing
//! database is restored from its replica with `ls-restore`'s planner and verified parallel
//! restore, or from a Litestream 0.3.x `generations/` tree when that is newer, as `ls-restore`
//! chooses. An empty replica means a first start, and replication begins from nothing, as in
//! Litestream.

use std::sync::Arc;

use restore::output::file_replica_mode;
use restore::progress::Progress;
use restore::v3::Catalog;
use restore::{
    calc_plan, execute, prepare_output, ExecOptions, IntegrityCheck, Listing, RestoreError, Target,
};
use tracing::info;

use crate::config::DbConfig;
use crate::error::{Error, Result};
use crate::replicate::open_replica;

/// Restores `db.path` from its replica when the file does not exist. Returns whether it did.
pub async fn restore_if_missing(db: &DbConfig) -> Result<bool> {
    let path = &db.path;
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            info!(path = %path.display(), "database exists, skipping restore");
            return Ok(false);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat database", path, e)),
    }
    let fail = |e: RestoreError| Error::Other(format!("restore {}: {e}", path.display()));
    let client = open_replica(&db.replica, path)
        .map_err(|e| Error::Other(format!("restore {}: replica: {e}", path.display())))?;
    info!(path = %path.display(), "attempting restore before replication");
    let listing = Listing::fetch(client.as_ref()).await.map_err(fail)?;
    let legacy = Catalog::load(client.as_ref()).await.map_err(fail)?;
    if legacy.should_use(&listing, None) {
        let plan = legacy.plan(None).map_err(fail)?;
        let out = prepare_output(path, false).map_err(fail)?;
        plan.restore(&client, out, IntegrityCheck::None)
            .await
            .map_err(fail)?;
        info!(path = %path.display(), generation = %plan.snapshot.generation, "restore completed from a v0.3.x replica");
        return Ok(true);
    }
    let plan = match calc_plan(&listing, Target::Latest) {
        Err(RestoreError::TxNotAvailable) => {
            info!(path = %path.display(), "no backup found, starting fresh");
            return Ok(false);
        }
        r => r.map_err(fail)?,
    };
    let progress = Arc::new(Progress::hidden());
    // Checked like `ls-restore`'s output: the restore is published only if no database (or
    // sidecar) appeared at the path meanwhile, and takes the source's mode where a file
    // replica tells it (else 0600).
    let mode = match storage::ReplicaUrl::parse(&db.replica.url) {
        Ok(storage::ReplicaUrl::File(root)) if db.replica.kind == "file" => {
            plan.last().and_then(|f| file_replica_mode(&root, f))
        }
        _ => None,
    };
    let out = prepare_output(path, false)
        .map_err(fail)?
        .with_source_mode(mode);
    // Written to a temporary file, verified, then renamed into place: a failure leaves no
    // database behind, so the next start tries again.
    let restored = execute(&client, &plan, out, &ExecOptions::default(), &progress)
        .await
        .map_err(fail)?;
    info!(path = %path.display(), txid = %restored.txid, files = restored.files, "restore completed");
    Ok(true)
}
