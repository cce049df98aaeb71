//! The replication runs of the e2e harness: CPU per GB, writer throughput and RSS, replica
//! lag, idle cost, and `-force-snapshot`.

use super::*;

impl H {
    // ---- 1 + 2 + 5: CPU per GB, writer throughput, engine RSS ----

    /// One writer run, with `eng` replicating (or none). Returns (wal bytes, writer seconds,
    /// engine CPU seconds, engine VmHWM bytes).
    fn cpu_run(
        &self,
        eng: Option<Eng>,
        target: Target,
        wl: &WlSpec,
        tag: &str,
    ) -> Result<(u64, f64, f64, u64)> {
        let dir = self.work.join("run").join(tag);
        fresh_dir(&dir)?;
        let db = dir.join("db.sqlite");
        let mut w = Writer::open(&db)?;
        let rep = self.replica(
            target,
            &dir.join("replica"),
            &format!("e2e/{tag}"),
            &self.s3.endpoint,
        );
        rm(&rep.dir);
        let mut eng_proc = None;
        if let Some(e) = eng {
            let (child, log) = self.start_engine(e, &dir, &self.config(&[(db.clone(), &rep)]))?;
            if !wait_for(Duration::from_secs(60), || !ltx_names(&rep.l0()).is_empty()) {
                let _ = proc::stop(&child, Duration::from_secs(5));
                bail!("{tag}: no first L0 file; log:\n{}", tail(&log));
            }
            std::thread::sleep(Duration::from_secs(1));
            let cpu0 = proc::cpu_secs(child.id())?;
            eng_proc = Some((child, cpu0));
        }
        let wall = w.run(wl.txns, wl.rows, wl.bytes)?.as_secs_f64();
        let (mut cpu, mut hwm) = (0.0, 0);
        if let Some((child, cpu0)) = eng_proc {
            // Caught up: the set of L0 files has not changed for 2.5 s.
            let mut last = ltx_names(&rep.l0());
            let mut since = Instant::now();
            let start = Instant::now();
            while since.elapsed() < Duration::from_millis(2500)
                && start.elapsed() < Duration::from_secs(90)
            {
                std::thread::sleep(Duration::from_millis(50));
                let now = ltx_names(&rep.l0());
                if now != last {
                    last = now;
                    since = Instant::now();
                }
            }
            cpu = proc::cpu_secs(child.id())? - cpu0;
            hwm = proc::vm_hwm(child.id())?;
            proc::stop(&child, Duration::from_secs(20))?;
        }
        let bytes = w.wal_bytes;
        drop(w);
        rm(&dir);
        rm(&rep.dir);
        Ok((bytes, wall, cpu, hwm))
    }

    pub(super) fn bench_cpu(&mut self) -> Result<()> {
        let scale = if self.quick { 1 } else { 2 };
        let wls = [
            WlSpec {
                name: "small",
                txns: 100_000 * scale,
                rows: 1,
                bytes: 200,
            },
            WlSpec {
                name: "large",
                txns: 100 * scale,
                rows: 1000,
                bytes: 4000,
            },
        ];
        for rep in 0..self.reps {
            for wl in &wls {
                for target in [Target::File, Target::S3] {
                    let tag = format!("{}-{}-none-{rep}", wl.name, target.key());
                    let (b, wall, _, _) = self.cpu_run(None, target, wl, &tag)?;
                    let thr_none = b as f64 / wall;
                    self.add(
                        format!("thr/{}/{}/none", wl.name, target.key()),
                        thr_none / 1e6,
                    );
                    for e in ENGINES {
                        let tag = format!("{}-{}-{}-{rep}", wl.name, target.key(), e.key());
                        let (b, wall, cpu, hwm) = self.cpu_run(Some(e), target, wl, &tag)?;
                        let gb = b as f64 / 1e9;
                        log(&format!(
                            "{} cpu {tag}: {:.1} MB WAL in {wall:.2}s, engine {cpu:.2} CPU s ({:.2} s/GB), {:.1} MB RSS",
                            self.elapsed(),
                            b as f64 / 1e6,
                            cpu / gb,
                            hwm as f64 / 1e6
                        ));
                        let k = format!("{}/{}/{}", wl.name, target.key(), e.key());
                        self.add(format!("cpu_per_gb/{k}"), cpu / gb);
                        self.add(format!("thr_rel/{k}"), (b as f64 / wall) / thr_none);
                        self.add(format!("thr/{k}"), b as f64 / wall / 1e6);
                        self.add(format!("rss/{k}"), hwm as f64);
                    }
                }
            }
        }
        Ok(())
    }

    // ---- 3: lag ----

    fn lag_run(&self, e: Eng, target: Target, commits: usize, tag: &str) -> Result<Vec<f64>> {
        let dir = self.work.join("run").join(tag);
        fresh_dir(&dir)?;
        let db = dir.join("db.sqlite");
        let mut w = Writer::open(&db)?;
        let rep = self.replica(
            target,
            &dir.join("replica"),
            &format!("e2e/{tag}"),
            &self.s3.endpoint,
        );
        rm(&rep.dir);
        let (child, log) = self.start_engine(e, &dir, &self.config(&[(db.clone(), &rep)]))?;
        if !wait_for(Duration::from_secs(60), || !ltx_names(&rep.l0()).is_empty()) {
            let _ = proc::stop(&child, Duration::from_secs(5));
            bail!("{tag}: no first L0 file; log:\n{}", tail(&log));
        }
        std::thread::sleep(Duration::from_millis(1500));
        // The poller notes when each new L0 file name first shows up (1 ms polling).
        let stop = Arc::new(AtomicBool::new(false));
        let l0 = rep.l0();
        let st = stop.clone();
        let poller = std::thread::spawn(move || {
            let mut seen: HashSet<String> = ltx_names(&l0).into_iter().collect();
            let mut appear = Vec::new();
            while !st.load(Ordering::Relaxed) {
                for n in ltx_names(&l0) {
                    if seen.insert(n) {
                        appear.push(Instant::now());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            appear
        });
        let mut commit_at = Vec::with_capacity(commits);
        for i in 0..commits {
            // ~10 commits a second, not in step with either engine's timers.
            std::thread::sleep(Duration::from_millis(90 + (i as u64 * 7) % 23));
            w.txn(i as i64 + 1, 1, 200)?;
            commit_at.push(Instant::now());
        }
        let last = *commit_at.last().context("no commits")?;
        std::thread::sleep(Duration::from_secs(if target == Target::S3 {
            4
        } else {
            3
        }));
        stop.store(true, Ordering::Relaxed);
        let appear = poller
            .join()
            .map_err(|_| anyhow::anyhow!("poller panicked"))?;
        proc::stop(&child, Duration::from_secs(20))?;
        drop(w);
        rm(&dir);
        rm(&rep.dir);
        let _ = last;
        Ok(commit_at
            .iter()
            .map(|t| {
                appear
                    .iter()
                    .find(|a| *a >= t)
                    .map(|a| a.duration_since(*t).as_secs_f64())
                    .unwrap_or(f64::NAN)
            })
            .collect())
    }

    pub(super) fn bench_lag(&mut self) -> Result<()> {
        let commits = if self.quick { 40 } else { 100 };
        for rep in 0..self.reps {
            for target in [Target::File, Target::S3] {
                for e in ENGINES {
                    let tag = format!("lag-{}-{}-{rep}", target.key(), e.key());
                    let lags = self.lag_run(e, target, commits, &tag)?;
                    let missing = lags.iter().filter(|l| l.is_nan()).count();
                    let (p50, p99) = (percentile(&lags, 50.0), percentile(&lags, 99.0));
                    log(&format!(
                        "{} {tag}: p50 {:.1} ms, p99 {:.1} ms, {missing} commits never seen",
                        self.elapsed(),
                        p50 * 1e3,
                        p99 * 1e3
                    ));
                    let k = format!("{}/{}", target.key(), e.key());
                    self.add(format!("lag_p50/{k}"), p50);
                    self.add(format!("lag_p99/{k}"), p99);
                }
            }
        }
        Ok(())
    }

    // ---- 4: idle ----

    pub(super) fn bench_idle(&mut self) -> Result<()> {
        // Default settings. After the start-up writes, real work is still due: the first L1
        // compaction at the next 30 s boundary, the time-based checkpoint one minute after
        // the last write, and the compaction of that checkpoint's L0 file at the boundary
        // after it. The window opens once all that is done (95 s) and closes before the next
        // 5-minute boundary, where L2 would compact the start-up data (real work again).
        let settle = Duration::from_secs(95);
        let window = Duration::from_secs(60);
        let upstream = self
            .s3
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .context("S3 endpoint address")?;
        let proxy = CountingProxy::start(upstream)?;
        let endpoint = format!("http://{}", proxy.addr);
        let reps = if self.quick { 1 } else { self.reps.min(2) };
        for rep in 0..reps {
            for e in ENGINES {
                let tag = format!("idle-{}-{rep}", e.key());
                let dir = self.work.join("run").join(&tag);
                fresh_dir(&dir)?;
                let mut dbs = Vec::new();
                for i in 0..50 {
                    let db = dir.join(format!("db{i:02}.sqlite"));
                    let mut w = Writer::open(&db)?;
                    w.run(20, 1, 200)?;
                    let r =
                        self.replica(Target::S3, &dir, &format!("e2e/{tag}/db{i:02}"), &endpoint);
                    rm(&r.dir);
                    dbs.push((db, r));
                }
                let pairs: Vec<(PathBuf, &Replica)> =
                    dbs.iter().map(|(d, r)| (d.clone(), r)).collect();
                let in_period = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
                    % 300;
                let need = (settle + window).as_secs() + 10;
                if in_period + need > 300 {
                    let wait = 300 - in_period + 2;
                    log(&format!(
                        "{} {tag}: waiting {wait} s so the window holds no 5-minute boundary",
                        self.elapsed()
                    ));
                    std::thread::sleep(Duration::from_secs(wait));
                }
                let started = Instant::now();
                let (child, logp) = self.start_engine(e, &dir, &self.config(&pairs))?;
                let ok = wait_for(Duration::from_secs(120), || {
                    dbs.iter().all(|(_, r)| !ltx_names(&r.l0()).is_empty())
                });
                if !ok {
                    let _ = proc::stop(&child, Duration::from_secs(5));
                    bail!(
                        "{tag}: not every database got its first L0 file; log:\n{}",
                        tail(&logp)
                    );
                }
                std::thread::sleep(settle.saturating_sub(started.elapsed()));
                let (c0, r0) = (proc::cpu_secs(child.id())?, proxy.requests());
                std::thread::sleep(window);
                let (c1, r1) = (proc::cpu_secs(child.id())?, proxy.requests());
                proc::stop(&child, Duration::from_secs(20))?;
                // Per 60 s whatever the window.
                let f = 60.0 / window.as_secs_f64();
                let (cpu, reqs) = ((c1 - c0) * f, (r1 - r0) as f64 * f);
                log(&format!(
                    "{} {tag}: {cpu:.3} CPU s and {reqs:.0} requests per 60 s (50 databases)",
                    self.elapsed()
                ));
                self.add(format!("idle_cpu/{}", e.key()), cpu);
                self.add(format!("idle_req/{}", e.key()), reqs);
                rm(&dir);
                for (_, r) in &dbs {
                    rm(&r.dir);
                }
            }
        }
        Ok(())
    }

    // ---- 5b: snapshot of a large database ----

    pub(super) fn bench_snapshot(&mut self) -> Result<()> {
        let mib = if self.quick { 256 } else { 2048 };
        let dir = self.work.join(format!("snap-{mib}"));
        std::fs::create_dir_all(dir.join("db"))?;
        let db = dir.join("db").join("db.sqlite");
        log(&format!(
            "{} building a {mib} MiB database (cached in {})",
            self.elapsed(),
            dir.display()
        ));
        writer::make_big_db(&db, mib)?;
        let reps = if self.quick { 1 } else { self.reps.min(2) };
        for rep in 0..reps {
            for e in ENGINES {
                // Only the database: no engine state left from the previous run.
                for ent in std::fs::read_dir(dir.join("db"))?.flatten() {
                    let n = ent.file_name().to_string_lossy().into_owned();
                    if !matches!(n.as_str(), "db.sqlite" | "db.sqlite-wal" | "db.sqlite-shm") {
                        rm(&ent.path());
                    }
                }
                let rdir = dir.join("replica");
                rm(&rdir);
                let rep_ = self.replica(Target::File, &rdir, "", "");
                let cfg = dir.join("litestream.yml");
                std::fs::write(&cfg, self.config(&[(db.clone(), &rep_)]))?;
                sync_disk();
                let mut c = self.cmd(self.bin(e));
                c.arg("replicate")
                    .arg("-config")
                    .arg(&cfg)
                    .arg("-once")
                    .arg("-force-snapshot");
                let logp = dir.join(format!("{}.log", e.key()));
                let start = Instant::now();
                let child = proc::spawn_logged(c, &logp)?;
                let u = proc::wait4(&child)?;
                let wall = start.elapsed().as_secs_f64();
                let bytes: u64 = files_under(&rdir)
                    .iter()
                    .filter_map(|p| p.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                if !u.success {
                    bail!(
                        "{} replicate -once -force-snapshot failed; log:\n{}",
                        e.key(),
                        tail(&logp)
                    );
                }
                log(&format!(
                    "{} snapshot {mib} MiB {}: {wall:.1}s, {:.2} CPU s, peak RSS {:.1} MB, replica {:.0} MB",
                    self.elapsed(),
                    e.key(),
                    u.cpu_secs,
                    u.max_rss as f64 / 1e6,
                    bytes as f64 / 1e6
                ));
                self.add(format!("snap_rss/{}", e.key()), u.max_rss as f64);
                self.add(format!("snap_wall/{}", e.key()), wall);
                let _ = rep;
                rm(&rdir);
            }
        }
        Ok(())
    }
}
