//! The per-database background loop (§2.2, §3.2): level compactions, scheduled snapshots and
//! L0 retention, each on its own aligned schedule, run one at a time per database and under
//! the shared [`Pool`] across databases. It never runs on the follower's task; a snapshot is
//! the one step that needs the follower, which it asks for over a channel.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ltx_codec::TxId;
use storage::SharedReplica;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info};

use crate::compactor::{compact_level, Outcome};
use crate::meta::MetaDir;
use crate::metrics;
use crate::retention::{self, Policy};
use crate::schedule::{jitter, next_at, Pool};
use crate::snapshot;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Intervals of levels 1..=n.
    pub levels: Vec<Duration>,
    pub snapshot_interval: Duration,
    pub l0_check_interval: Duration,
    pub policy: Policy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Level(u8),
    Snapshot,
    L0Retention,
}

pub struct Maintainer {
    pub replica: SharedReplica,
    pub meta: MetaDir,
    pub db: PathBuf,
    pub settings: Settings,
    pub pool: Pool,
    pub pos: watch::Receiver<TxId>,
    pub snap_tx: mpsc::Sender<snapshot::Request>,
    pub shutdown: watch::Receiver<bool>,
}

impl Maintainer {
    fn interval(&self, job: Job) -> Duration {
        match job {
            Job::Level(l) => self.settings.levels[usize::from(l) - 1],
            Job::Snapshot => self.settings.snapshot_interval,
            Job::L0Retention => self.settings.l0_check_interval,
        }
    }

    pub async fn run(mut self) {
        let mut jobs: Vec<Job> = (1..=self.settings.levels.len() as u8)
            .map(Job::Level)
            .collect();
        jobs.push(Job::Snapshot);
        let p = self.settings.policy;
        if !p.l0_retention.is_zero() && !self.settings.l0_check_interval.is_zero() {
            jobs.push(Job::L0Retention);
        }
        let now = SystemTime::now();
        let mut next: Vec<SystemTime> = jobs
            .iter()
            .map(|j| next_at(now, self.interval(*j)))
            .collect();
        loop {
            let Some((i, at)) = next.iter().copied().enumerate().min_by_key(|(_, t)| *t) else {
                return;
            };
            let job = jobs[i];
            let wake = at + jitter(&self.db, self.interval(job));
            let wait = wake
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = self.shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            {
                let pool = self.pool.clone();
                let Some(_permit) = pool.acquire().await else {
                    return;
                };
                self.run_job(job, at).await;
            }
            next[i] = next_at(SystemTime::now().max(at), self.interval(job));
        }
    }

    async fn run_job(&mut self, job: Job, at: SystemTime) {
        let db = self.db.display().to_string();
        match job {
            Job::Level(l) => {
                match compact_level(&self.replica, &self.meta, l, self.interval(job), at).await {
                    Ok(Outcome::Compacted(info)) => {
                        info!(db = %db, level = l, min = %info.min_txid, max = %info.max_txid, size = info.size, "compaction complete");
                        if l == 1 {
                            self.l0_retention(&db).await;
                        }
                    }
                    Ok(o) => debug!(db = %db, level = l, outcome = ?o, "no compaction"),
                    Err(e) => error!(db = %db, level = l, error = %e, "compaction failed"),
                }
            }
            Job::Snapshot => {
                if let Err(e) = self.snapshot(at).await {
                    error!(db = %db, error = %e, "snapshot failed");
                }
                // Runs after every attempt, as Litestream does.
                let p = self.settings.policy;
                if let Err(e) =
                    retention::enforce_snapshots(&self.replica, p, SystemTime::now()).await
                {
                    error!(db = %db, error = %e, "retention enforcement failed");
                }
            }
            Job::L0Retention => self.l0_retention(&db).await,
        }
    }

    async fn l0_retention(&self, db: &str) {
        let p = self.settings.policy;
        match retention::enforce_l0(&self.replica, &self.meta, p, SystemTime::now()).await {
            Ok(Some(s)) => {
                metrics::l0_retention(&self.db, s.eligible, s.not_compacted, s.too_recent)
            }
            Ok(None) => {}
            Err(e) => error!(db = %db, error = %e, "l0 retention enforcement failed"),
        }
    }

    async fn snapshot(&mut self, at: SystemTime) -> crate::Result<()> {
        let pos = *self.pos.borrow();
        if !snapshot::due(&self.replica, self.settings.snapshot_interval, at, pos).await? {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        if self.snap_tx.send(tx).await.is_err() {
            return Ok(()); // the database task is stopping
        }
        let job = tokio::select! {
            _ = self.shutdown.changed() => return Ok(()),
            r = rx => match r {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            },
        };
        let Some(job) = job else { return Ok(()) };
        // On shutdown the build is left to finish or die with the process; its staging file
        // is removed when the database is next opened.
        let built = tokio::select! {
            _ = self.shutdown.changed() => return Ok(()),
            r = snapshot::build(job) => r?,
        };
        if let Some((txid, ts, path)) = built {
            let info = snapshot::upload(&self.replica, txid, ts, path).await?;
            info!(db = %self.db.display(), txid = %txid, size = info.size, "snapshot complete");
        }
        Ok(())
    }
}
