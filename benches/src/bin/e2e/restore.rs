//! The restore runs of the e2e harness: each database size, from the file replica and S3,
//! with the disk floor beside them.

use super::*;

impl H {
    // ---- 6: restore ----

    fn restore_case(&mut self, name: &str, mib: u64) -> Result<()> {
        let dir = self.work.join(format!("restore-{mib}"));
        std::fs::create_dir_all(dir.join("db"))?;
        let db = dir.join("db").join("db.sqlite");
        log(&format!(
            "{} building a {mib} MiB database (cached in {})",
            self.elapsed(),
            dir.display()
        ));
        let db_bytes = writer::make_big_db(&db, mib)?;
        let rdir = dir.join("replica");
        let first = rdir.join("ltx/0/0000000000000001-0000000000000001.ltx");
        let stamp = dir.join("replica.done");
        if !stamp.exists() {
            rm(&rdir);
            let rep = self.replica(Target::File, &rdir, "", "");
            let (child, logp) =
                self.start_engine(Eng::Lit, &dir, &self.config(&[(db.clone(), &rep)]))?;
            let ok = wait_for(Duration::from_secs(600), || first.exists());
            std::thread::sleep(Duration::from_secs(1));
            proc::stop(&child, Duration::from_secs(30))?;
            if !ok {
                bail!(
                    "litestream did not snapshot {}; log:\n{}",
                    db.display(),
                    tail(&logp)
                );
            }
            std::fs::write(&stamp, "")?;
        }
        // The S3 replica: Litestream replicating the same database to the S3 server (objects
        // copied in by hand would lack s3s-fs's checksum records, which slows ranged reads).
        let prefix = format!("e2e-restore-{mib}");
        let s3rep = self.replica(Target::S3, &rdir, &prefix, &self.s3.endpoint);
        let s3first = s3rep.l0().join("0000000000000001-0000000000000001.ltx");
        if !s3first.exists() {
            rm(&s3rep.dir);
            // Litestream keeps per-database state beside the database: start from none.
            for ent in std::fs::read_dir(dir.join("db"))?.flatten() {
                let n = ent.file_name().to_string_lossy().into_owned();
                if !matches!(n.as_str(), "db.sqlite" | "db.sqlite-wal" | "db.sqlite-shm") {
                    rm(&ent.path());
                }
            }
            let (child, logp) =
                self.start_engine(Eng::Lit, &dir, &self.config(&[(db.clone(), &s3rep)]))?;
            let ok = wait_for(Duration::from_secs(600), || s3first.exists());
            std::thread::sleep(Duration::from_secs(2));
            proc::stop(&child, Duration::from_secs(30))?;
            if !ok {
                bail!(
                    "litestream did not snapshot {} to S3; log:\n{}",
                    db.display(),
                    tail(&logp)
                );
            }
        }
        let files = self.plan_files(&rdir)?;
        let replica_bytes: u64 = files
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        let s3files = files_under(&s3rep.dir);
        let out = dir.join("out");
        fresh_dir(&out)?;
        sync_disk();
        std::thread::sleep(Duration::from_secs(2));
        let s3url = format!(
            "s3://{}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true",
            self.s3.bucket, self.s3.endpoint
        );
        let mut expects: BTreeMap<&str, u64> = BTreeMap::new();
        for rep in 0..self.reps {
            for target in [Target::File, Target::S3] {
                let mut expect = expects.get(target.key()).copied();
                let url = match target {
                    Target::File => format!("file://{}", rdir.display()),
                    Target::S3 => s3url.clone(),
                };
                for e in ENGINES {
                    read_all(if target == Target::File {
                        &files
                    } else {
                        &s3files
                    })?;
                    sync_disk();
                    std::thread::sleep(Duration::from_secs(1));
                    let o = out.join(format!("{}-{}-{rep}.db", target.key(), e.key()));
                    let prog = match e {
                        Eng::Lit => self.lit.clone(),
                        Eng::Ls => self.lsr.clone(),
                    };
                    let mut c = self.cmd(&prog);
                    if e == Eng::Lit {
                        c.arg("restore");
                    }
                    c.arg("-o").arg(&o).arg(&url);
                    let logp = dir.join(format!("restore-{}.log", e.key()));
                    let start = Instant::now();
                    let child = proc::spawn_logged(c, &logp)?;
                    let u = proc::wait4(&child)?;
                    let wall = start.elapsed().as_secs_f64();
                    let size = o.metadata().map(|m| m.len()).unwrap_or(0);
                    // Replicating writes a little to the database (Litestream's bookkeeping
                    // table), so the size to expect is that of the first restore.
                    let want = *expect.get_or_insert(size);
                    if !u.success || size != want || size < db_bytes {
                        bail!(
                            "{} restore from {} failed (output {size} bytes, want {want}); log:\n{}",
                            e.key(),
                            target.key(),
                            tail(&logp)
                        );
                    }
                    log(&format!(
                        "{} restore {name} {} {}: {wall:.2}s, peak RSS {:.0} MB",
                        self.elapsed(),
                        target.key(),
                        e.key(),
                        u.max_rss as f64 / 1e6
                    ));
                    self.add(format!("restore/{name}/{}/{}", target.key(), e.key()), wall);
                }
                if let Some(x) = expect {
                    expects.insert(target.key(), x);
                }
            }
            // The floor: read the replica's bytes, then write the database's bytes durably.
            read_all(&files)?;
            sync_disk();
            std::thread::sleep(Duration::from_secs(1));
            let start = Instant::now();
            read_all(&files)?;
            let t_read = start.elapsed().as_secs_f64();
            let t_write = floor_write(
                &out.join(format!("floor-{rep}.db")),
                expects.get("file").copied().unwrap_or(db_bytes),
            )?;
            log(&format!(
                "{} floor {name}: read {:.0} MB {t_read:.2}s + write {:.0} MB {t_write:.2}s",
                self.elapsed(),
                replica_bytes as f64 / 1e6,
                db_bytes as f64 / 1e6
            ));
            self.add(format!("restore/{name}/floor"), t_read + t_write);
        }
        rm(&out);
        sync_disk();
        Ok(())
    }

    /// The files a restore of the file replica reads (from `ls-restore -dry-run -json`).
    fn plan_files(&self, rdir: &Path) -> Result<Vec<PathBuf>> {
        let o = Command::new(&self.lsr)
            .args(["-dry-run", "-json", "-o", "/nonexistent/x.db"])
            .arg(format!("file://{}", rdir.display()))
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).with_context(|| {
            format!(
                "ls-restore -dry-run -json: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        })?;
        let mut out = Vec::new();
        for f in v["files"].as_array().context("plan without files")? {
            let level = f["level"].as_u64().context("level")?;
            let name = f["name"].as_str().context("name")?;
            out.push(rdir.join("ltx").join(level.to_string()).join(name));
        }
        Ok(out)
    }

    pub(super) fn bench_restore(&mut self) -> Result<()> {
        if self.quick {
            self.restore_case("128 MiB", 128)?;
        } else {
            self.restore_case("1 GiB", 1024)?;
            self.restore_case("1.1 GiB (lock page)", 1127)?;
        }
        Ok(())
    }
}
