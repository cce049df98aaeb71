//! The per-database background loop (docs/replica-layout.md#compaction-scheduling,
//! docs/replica-layout.md#retention): level compactions, scheduled snapshots and L0 retention, each
//! on its own aligned schedule, run one at a time per database and under the shared
//! [`JobPermits`] across databases. It never runs on the follower's task; a snapshot is the one
//! step that needs the follower, which it asks for over a channel.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ltx_codec::{Level, TxId};
use storage::SharedReplica;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::compactor::{compact_level, Outcome};
use crate::meta::MetaDir;
use crate::metrics;
use crate::retention::{self, Policy};
use crate::schedule::{jitter, next_at, JobPermits};
use crate::snapshot;
use crate::validate;

/// The maintenance schedules and retention policy, from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Intervals of levels 1..=n.
    pub levels: Vec<Duration>,
    /// `snapshot.interval`: how often a level-9 snapshot is due.
    pub snapshot_interval: Duration,
    /// `l0-retention-check-interval`: how often L0 retention runs (0 turns it off).
    pub l0_check_interval: Duration,
    /// What retention may delete.
    pub policy: Policy,
    /// `verify-compaction`: check the level's TXID chain after each compaction.
    pub verify_compaction: bool,
    /// `validation.interval`: check every level's chain this often.
    pub validation_interval: Option<Duration>,
}

/// How long the runs at start wait for the database's first upload (Litestream waits as long
/// for a database to be ready).
const START_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Level(u8),
    Snapshot,
    L0Retention,
    Validate,
}

/// The background maintenance loop of one database: compactions, snapshots, retention and
/// validation.
pub struct Maintainer {
    /// The database's replica.
    pub replica: SharedReplica,
    /// The database's local meta directory.
    pub meta: MetaDir,
    /// The database path.
    pub db: PathBuf,
    /// Its schedules and retention policy.
    pub settings: Settings,
    /// The permits shared by every database's jobs.
    pub pool: JobPermits,
    /// The follower's position (highest local L0 TXID).
    pub pos: watch::Receiver<TxId>,
    /// Highest TXID the replica holds: level 1's input.
    pub replicated: watch::Receiver<TxId>,
    /// Asks the database task for a snapshot job.
    pub snap_tx: mpsc::Sender<snapshot::Request>,
    /// Changes when the database's task is told to stop (shutdown, `stop` or `unregister`).
    pub shutdown: watch::Receiver<bool>,
}

/// What a job's work depends on: the replica's highest TXID (level 1 and L0 retention) and the
/// number of compactions made at each level (the next level, and L0 retention after level 1).
/// A job that found nothing left to do is not scheduled again until its inputs change, so an
/// idle database arms no timer for it (docs/many-databases.md#wake-ups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Inputs {
    replicated: TxId,
    below: u64,
}

/// What a job left for later: nothing while its inputs stay as they were, or nothing before
/// `until`.
#[derive(Clone, Copy, Debug)]
struct Rest {
    inputs: Inputs,
    until: Option<SystemTime>,
}

/// The outcome of a job for its schedule.
#[derive(Clone, Copy, Debug)]
enum Done {
    /// Run again at the next boundary.
    Again,
    /// Nothing to do until the inputs change.
    Settled,
    /// Nothing to do before this time unless the inputs change.
    NotBefore(SystemTime),
}

impl Maintainer {
    fn interval(&self, job: Job) -> Duration {
        match job {
            Job::Level(l) => self.settings.levels[usize::from(l) - 1],
            Job::Snapshot => self.settings.snapshot_interval,
            Job::L0Retention => self.settings.l0_check_interval,
            Job::Validate => self
                .settings
                .validation_interval
                .unwrap_or(Duration::from_secs(3600)),
        }
    }

    /// The inputs `job` depends on now; `None` for a job that runs on its schedule whatever
    /// changed (snapshots, which also apply retention by age).
    fn inputs(&self, job: Job, compactions: &[u64]) -> Option<Inputs> {
        let replicated = *self.replicated.borrow();
        match job {
            Job::Level(1) => Some(Inputs {
                replicated,
                below: 0,
            }),
            Job::Level(l) => Some(Inputs {
                replicated: TxId::ZERO,
                below: compactions[usize::from(l) - 1],
            }),
            Job::L0Retention => Some(Inputs {
                replicated,
                below: compactions.get(1).copied().unwrap_or(0),
            }),
            Job::Snapshot | Job::Validate => None,
        }
    }

    /// Runs the jobs on their schedules until shutdown.
    pub async fn run(mut self) {
        let mut jobs: Vec<Job> = (1..=self.settings.levels.len() as u8)
            .map(Job::Level)
            .collect();
        jobs.push(Job::Snapshot);
        let p = self.settings.policy;
        if !p.l0_retention.is_zero() && !self.settings.l0_check_interval.is_zero() {
            jobs.push(Job::L0Retention);
        }
        if self.settings.validation_interval.is_some() {
            jobs.push(Job::Validate);
        }
        // As in Litestream, the levels and the snapshot run once at start, then at their
        // boundaries; the "too early" rules keep a restart from compacting or snapshotting
        // twice in one period (docs/replica-layout.md#compaction-scheduling). Only once this
        // database's first upload succeeded, though: a replica that another writer holds (the
        // upload finds its files) is left alone, and the database stops. Without one within
        // [`START_WAIT`], the jobs keep to their boundaries.
        let first =
            tokio::time::timeout(START_WAIT, self.replicated.wait_for(|p| *p != TxId::ZERO));
        let uploaded = tokio::select! {
            _ = self.shutdown.changed() => return,
            r = first => matches!(r, Ok(Ok(_))),
        };
        let started = SystemTime::now();
        let mut next: Vec<SystemTime> = jobs
            .iter()
            .map(|j| match j {
                Job::Level(_) | Job::Snapshot if uploaded => started,
                _ => next_at(started, self.interval(*j)),
            })
            .collect();
        let mut rest: Vec<Option<Rest>> = vec![None; jobs.len()];
        // Compactions made at each level (index 0 unused).
        let mut compactions = vec![0u64; self.settings.levels.len() + 1];
        loop {
            let now = SystemTime::now();
            for (i, job) in jobs.iter().enumerate() {
                if rest[i].is_some_and(|r| Some(r.inputs) != self.inputs(*job, &compactions)) {
                    // Inputs changed: back on the schedule, at its next boundary.
                    rest[i] = None;
                    next[i] = next[i].max(next_at(now, self.interval(*job)));
                }
            }
            let due = |i: usize| match rest[i] {
                None => Some(next[i]),
                Some(r) => r.until,
            };
            let Some((i, at)) = (0..jobs.len())
                .filter_map(|i| due(i).map(|t| (i, t)))
                .min_by_key(|(_, t)| *t)
            else {
                return;
            };
            let job = jobs[i];
            // The runs at start are not spread, as Litestream's are not.
            let wake = if at <= started {
                at
            } else {
                at + jitter(&self.db, self.interval(job))
            };
            let wait = wake
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = self.shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
                r = self.replicated.changed() => {
                    if r.is_err() {
                        return;
                    }
                    continue;
                }
            }
            let inputs = self.inputs(job, &compactions);
            let done = {
                let pool = self.pool.clone();
                let Some(_permit) = pool.acquire().await else {
                    return;
                };
                self.run_job(job, at, &mut compactions).await
            };
            crate::memory::note_activity();
            let interval = self.interval(job);
            next[i] = next_at(SystemTime::now().max(at), interval);
            rest[i] = match (done, inputs) {
                (Done::Settled, Some(inputs)) => Some(Rest {
                    inputs,
                    until: None,
                }),
                (Done::NotBefore(t), Some(inputs)) => Some(Rest {
                    inputs,
                    // The first boundary at or after `t`.
                    until: Some(next[i].max(next_at(t - Duration::from_nanos(1), interval))),
                }),
                _ => None,
            };
        }
    }

    /// Runs `job`; says when it needs to run again if its inputs do not change.
    async fn run_job(&mut self, job: Job, at: SystemTime, compactions: &mut [u64]) -> Done {
        let db = self.db.display().to_string();
        match job {
            Job::Level(l) => {
                match compact_level(&self.replica, &self.meta, l, self.interval(job), at).await {
                    Ok(Outcome::Compacted(info)) => {
                        info!(system = "store", db = %db, level = l, txid.min = %info.min_txid, txid.max = %info.max_txid, size = info.size, "compaction complete");
                        compactions[usize::from(l)] += 1;
                        if self.settings.verify_compaction {
                            self.verify_compaction(&db, l).await;
                        }
                        if l == 1 {
                            self.l0_retention(&db).await;
                        }
                        Done::Settled
                    }
                    Ok(Outcome::NothingNew) => {
                        debug!(db = %db, level = l, "no compaction: nothing new");
                        Done::Settled
                    }
                    Ok(o) => {
                        debug!(db = %db, level = l, outcome = ?o, "no compaction");
                        Done::Again
                    }
                    Err(e) => {
                        error!(db = %db, level = l, error = %e, "compaction failed");
                        Done::Again
                    }
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
                Done::Again
            }
            Job::L0Retention => self.l0_retention(&db).await,
            Job::Validate => {
                self.validate(&db).await;
                Done::Again
            }
        }
    }

    /// `verify-compaction`: the level just written must still be one unbroken TXID chain;
    /// a break is logged and counted, as in Litestream.
    async fn verify_compaction(&self, db: &str, level: u8) {
        let found = match validate::level(&self.replica, Level(level)).await {
            Ok(b) => b.into_iter().next().map(|b| b.message),
            Err(e) => Some(format!("fetch ltx files: {e}")),
        };
        if let Some(message) = found {
            warn!(db = %db, level, error = %message, "post-compaction verification failed");
            metrics::db(&self.db).compaction_verify_failed();
        }
    }

    /// `validation.interval`: every level but the snapshots' (not a chain) is checked.
    async fn validate(&self, db: &str) {
        let top = u8::try_from(self.settings.levels.len()).unwrap_or(8);
        for l in 0..=top {
            match validate::level(&self.replica, Level(l)).await {
                Ok(breaks) => {
                    for b in breaks {
                        warn!(db = %db, level = l, r#type = b.kind, message = %b.message, "validation error detected");
                    }
                }
                Err(e) => {
                    error!(db = %db, level = l, error = %e, "validation check failed");
                    return;
                }
            }
        }
    }

    /// What a scan left for later: nothing until L0 or L1 change (`Settled`), or a file that
    /// gets old enough at a known time.
    async fn l0_retention(&self, db: &str) -> Done {
        let p = self.settings.policy;
        match retention::enforce_l0(&self.replica, &self.meta, db, p, SystemTime::now()).await {
            Ok(Some(s)) => {
                metrics::l0_retention(&self.db, s.eligible, s.not_compacted, s.too_recent);
                s.ages_out.map_or(Done::Settled, Done::NotBefore)
            }
            Ok(None) => Done::Settled,
            Err(e) => {
                error!(db = %db, error = %e, "l0 retention enforcement failed");
                Done::Again
            }
        }
    }

    async fn snapshot(&mut self, at: SystemTime) -> crate::Result<()> {
        let pos = *self.pos.borrow();
        if !snapshot::due(&self.replica, self.settings.snapshot_interval, at, pos).await? {
            debug!(db = %self.db.display(), level = 9, "no compaction: snapshot not due");
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
            info!(system = "store", db = %self.db.display(), txid = %txid, size = info.size, "snapshot complete");
        }
        Ok(())
    }
}
