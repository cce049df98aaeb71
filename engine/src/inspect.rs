//! The read-only commands `databases` and `ltx`, printed the way Litestream 0.5.17 prints them
//! (Go's `tabwriter` with two spaces of padding, or JSON with `-json`), so scripts written
//! against `litestream` keep working.

use std::io::Write;
use std::path::Path;

use ltx_codec::Level;
use serde::Serialize;
use storage::timefmt::format_rfc3339;
use storage::{LtxFileInfo, SharedReplica};

use crate::config::Config;

/// Which levels `ltx -level` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelSel {
    /// Only this level.
    One(Level),
    /// Every level, 0 to 9.
    All,
}

impl LevelSel {
    /// `0`..`9` or `all`, as Litestream accepts them.
    pub fn parse(s: &str) -> Result<LevelSel, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(LevelSel::All);
        }
        match s.parse::<u8>() {
            Ok(n) if n <= ltx_codec::SNAPSHOT_LEVEL.0 => Ok(LevelSel::One(Level(n))),
            _ => Err(format!(
                "invalid level {s:?}: must be 0-{} or \"all\"",
                ltx_codec::SNAPSHOT_LEVEL.0
            )),
        }
    }

    fn levels(self) -> Vec<Level> {
        match self {
            LevelSel::One(l) => vec![l],
            LevelSel::All => (0..=ltx_codec::SNAPSHOT_LEVEL.0).map(Level).collect(),
        }
    }
}

/// Lays out rows as Go's `tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)` does for cells ended by
/// tabs: each column as wide as its widest cell plus two spaces, the last cell unpadded.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                let pad = widths[i] + 2 - c.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct DatabaseRow<'a> {
    path: String,
    replica: &'a str,
}

/// `databases`: every configured database and its replica type.
pub fn write_databases(cfg: &Config, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let rows: Vec<DatabaseRow<'_>> = cfg
        .dbs
        .iter()
        .map(|d| DatabaseRow {
            path: d.path.display().to_string(),
            replica: replica_type(d.replica.kind.as_str()),
        })
        .collect();
    if json {
        return write_json(&rows, out);
    }
    let mut table = vec![vec!["path".to_owned(), "replica".to_owned()]];
    table.extend(
        rows.iter()
            .map(|r| vec![r.path.clone(), r.replica.to_owned()]),
    );
    out.write_all(tabulate(&table).as_bytes())
}

/// The type name Litestream prints: `webdavs` replicas are `webdav` clients.
fn replica_type(kind: &str) -> &str {
    match kind {
        "webdavs" => "webdav",
        k => k,
    }
}

#[derive(Serialize)]
struct LtxRow {
    level: u8,
    min_txid: String,
    max_txid: String,
    size: u64,
    timestamp: String,
}

impl From<&LtxFileInfo> for LtxRow {
    fn from(f: &LtxFileInfo) -> LtxRow {
        LtxRow {
            level: f.level.0,
            min_txid: format!("{:016x}", f.min_txid.0),
            max_txid: format!("{:016x}", f.max_txid.0),
            size: f.size,
            timestamp: format_rfc3339(f.created_at),
        }
    }
}

/// The files of the selected levels, level by level in name order.
pub async fn list_ltx(client: &SharedReplica, sel: LevelSel) -> storage::Result<Vec<LtxFileInfo>> {
    let mut all = Vec::new();
    for level in sel.levels() {
        all.extend(client.ltx_files(level).await?);
    }
    Ok(all)
}

/// `ltx`: one line per LTX file (`level min_txid max_txid size created`).
pub fn write_ltx(files: &[LtxFileInfo], json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let rows: Vec<LtxRow> = files.iter().map(LtxRow::from).collect();
    if json {
        return write_json(&rows, out);
    }
    let mut table = vec![["level", "min_txid", "max_txid", "size", "created"]
        .map(str::to_owned)
        .to_vec()];
    table.extend(rows.into_iter().map(|r| {
        vec![
            r.level.to_string(),
            r.min_txid,
            r.max_txid,
            r.size.to_string(),
            r.timestamp,
        ]
    }));
    out.write_all(tabulate(&table).as_bytes())
}

/// JSON as Go's `json.MarshalIndent(v, "", "  ")` writes it, with the newline `fmt.Println`
/// adds.
fn write_json<T: Serialize>(v: &T, out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    out.write_all(b"\n")
}

#[derive(Serialize)]
struct StatusRow {
    database: String,
    status: &'static str,
    local_txid: String,
    wal_size: String,
}

/// `status`: each database's local position (highest L0 TXID in its meta directory) and WAL
/// size, read from disk without opening the database; `filter` keeps the one whose configured
/// path is exactly that string, as Litestream compares it.
pub fn write_status(
    cfg: &Config,
    filter: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let rows: Vec<StatusRow> = cfg
        .dbs
        .iter()
        .filter(|d| filter.is_none_or(|f| d.path.as_os_str() == f))
        .map(|d| db_status(&d.path, &d.meta_path))
        .collect();
    if json {
        return write_json(&rows, out);
    }
    let mut table = vec![["database", "status", "local txid", "wal size"]
        .map(str::to_owned)
        .to_vec()];
    table.extend(
        rows.into_iter()
            .map(|r| vec![r.database, r.status.to_owned(), r.local_txid, r.wal_size]),
    );
    out.write_all(tabulate(&table).as_bytes())
}

fn db_status(db: &Path, meta: &Path) -> StatusRow {
    let mut row = StatusRow {
        database: db.display().to_string(),
        status: "unknown",
        local_txid: "-".to_owned(),
        wal_size: "-".to_owned(),
    };
    if std::fs::metadata(db).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        row.status = "no database";
        return row;
    }
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::metadata(&wal) {
        Ok(m) => row.wal_size = si_bytes(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => row.wal_size = "0 B".to_owned(),
        Err(_) => {}
    }
    match crate::meta::MetaDir::new(meta).max_l0() {
        Ok(t) if t.0 > 0 => {
            row.local_txid = format!("{:016x}", t.0);
            row.status = "ok";
        }
        Ok(_) => row.status = "not initialized",
        Err(_) => row.status = "error",
    }
    row
}

/// Sizes as go-humanize's `Bytes` writes them: SI units, one decimal below 10.
pub fn si_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let mut e = 0;
    let mut scale = 1f64;
    while e + 1 < UNITS.len() && n as f64 >= scale * 1000.0 {
        scale *= 1000.0;
        e += 1;
    }
    let val = (n as f64 / scale * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// `reset`: removes the local LTX files of a database (`<meta>/ltx`), so that the next sync
/// starts over with a snapshot; with `dry_run`, only lists them. Messages as Litestream's.
pub fn reset(db: &Path, meta: &Path, dry_run: bool, out: &mut dyn Write) -> Result<(), String> {
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}").map_err(|e| format!("write to stdout: {e}"))
    };
    match std::fs::metadata(db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("database does not exist: {}", db.display()))
        }
        Err(e) => return Err(format!("cannot access database: {e}")),
    }
    if std::fs::metadata(meta).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        w(out, format!("No local state to reset for {}", db.display()))?;
        return w(
            out,
            format!("Meta directory does not exist: {}", meta.display()),
        );
    }
    let ltx = meta.join("ltx");
    if dry_run {
        let files = files_under(&ltx).map_err(|e| format!("dry run failed: {e}"))?;
        w(
            out,
            format!(
                "Dry run: local Litestream state would be reset for: {}",
                db.display()
            ),
        )?;
        w(out, format!("Would remove: {}", ltx.display()))?;
        if files.is_empty() {
            return w(out, "No local LTX files would be removed.".to_owned());
        }
        w(out, "Files that would be removed:".to_owned())?;
        for f in files {
            w(out, format!("  {}", f.display()))?;
        }
        return w(out, "No files were removed.".to_owned());
    }
    w(
        out,
        format!("Resetting local Litestream state for: {}", db.display()),
    )?;
    w(out, format!("Removing: {}", ltx.display()))?;
    match std::fs::remove_dir_all(&ltx) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reset failed: remove {}: {e}", ltx.display())),
    }
    w(
        out,
        "Reset complete. Next replication sync will create a fresh snapshot.".to_owned(),
    )
}

/// Every file below `root`, in lexical walk order (Go's `filepath.WalkDir`); none if absent.
fn files_under(root: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut entries = match std::fs::read_dir(root) {
        Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_type()?.is_dir() {
            out.extend(files_under(&e.path())?);
        } else {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// The configured database at `db` (made absolute), as Litestream matches `DB_PATH`.
pub fn find_db<'a>(cfg: &'a Config, db: &Path) -> Option<&'a crate::config::DbConfig> {
    let abs = std::path::absolute(db).ok()?;
    cfg.dbs.iter().find(|d| d.path == abs)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use ltx_codec::TxId;

    use super::*;

    #[test]
    fn tables_are_padded_like_go_tabwriter() {
        let t = tabulate(&[
            vec!["level".into(), "min_txid".into(), "size".into()],
            vec!["0".into(), "0000000000000001".into(), "9459".into()],
        ]);
        assert_eq!(
            t,
            "level  min_txid          size\n0      0000000000000001  9459\n"
        );
    }

    #[test]
    fn ltx_output_matches_litestream() {
        let f = LtxFileInfo {
            level: Level(9),
            min_txid: TxId(1),
            max_txid: TxId(2),
            size: 18429,
            created_at: UNIX_EPOCH + Duration::from_secs(1_795_699_085),
        };
        let mut text = Vec::new();
        write_ltx(std::slice::from_ref(&f), false, &mut text).expect("text");
        assert_eq!(
            String::from_utf8_lossy(&text),
            "level  min_txid          max_txid          size   created\n\
             9      0000000000000001  0000000000000002  18429  2026-11-26T13:18:05Z\n"
        );
        let mut json = Vec::new();
        write_ltx(&[f], true, &mut json).expect("json");
        assert_eq!(
            String::from_utf8_lossy(&json),
            "[\n  {\n    \"level\": 9,\n    \"min_txid\": \"0000000000000001\",\n    \
             \"max_txid\": \"0000000000000002\",\n    \"size\": 18429,\n    \
             \"timestamp\": \"2026-11-26T13:18:05Z\"\n  }\n]\n"
        );
        let mut empty = Vec::new();
        write_ltx(&[], true, &mut empty).expect("json");
        assert_eq!(empty, b"[]\n");
    }

    #[test]
    fn sizes_like_go_humanize() {
        for (n, s) in [
            (0, "0 B"),
            (9, "9 B"),
            (10, "10 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (4152, "4.2 kB"),
            (9_950, "10 kB"),
            (82_432, "82 kB"),
            (4_120_032, "4.1 MB"),
            (1_073_741_824, "1.1 GB"),
        ] {
            assert_eq!(si_bytes(n), s, "{n}");
        }
    }

    #[test]
    fn levels() {
        assert_eq!(LevelSel::parse("all"), Ok(LevelSel::All));
        assert_eq!(LevelSel::parse("9"), Ok(LevelSel::One(Level(9))));
        assert!(LevelSel::parse("10").is_err());
        assert!(LevelSel::parse("x").is_err());
        assert_eq!(LevelSel::All.levels().len(), 10);
    }
}
