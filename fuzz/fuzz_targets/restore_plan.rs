//! The restore planner and executor against a hostile replica: a temporary file replica holds
//! LTX files built from the input (valid files with crafted header fields, page index lengths
//! and flipped bytes, or raw bytes), and its listing can lie about sizes. `calc_plan` and
//! `execute` must answer with an error or a restored database, never panic, hang or allocate
//! by a value they did not check (`fuzz/run.sh` caps the memory with `-rss_limit_mb`). A
//! restore that succeeds must have published a database of Commit pages; one that fails must
//! have published nothing.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ltx_codec::{Encoder, Header, Level, TxId};
use restore::progress::Progress;
use restore::{calc_plan, execute, prepare_output, ExecOptions, Listing, Target};
use storage::file::FileReplica;
use storage::{Body, LtxFileInfo, LtxName, ReplicaClient, SharedReplica};

/// Reads the input front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

const PAGE_SIZES: [u32; 3] = [512, 1024, 4096];
const LEVELS: [u8; 4] = [0, 1, 2, 9];

/// One file: a valid encoding of a few pages, then the input's edits to it.
fn build_file(inp: &mut Input<'_>, min: u64, max: u64) -> Vec<u8> {
    let kind = inp.u8();
    if kind % 8 == 7 {
        let n = usize::from(inp.u16() % 2048);
        return inp.bytes(n).to_vec();
    }
    let ps = PAGE_SIZES[usize::from(inp.u8()) % PAGE_SIZES.len()];
    let snapshot = min == 1;
    let pages = u32::from(inp.u8() % 6) + 1;
    let header = Header::new(ps, pages, TxId(min), TxId(max.max(min)), 0);
    let Ok(mut enc) = Encoder::new(Vec::new(), header) else {
        return Vec::new();
    };
    for pgno in 1..=pages {
        if !snapshot && inp.u8() % 2 == 0 {
            continue;
        }
        let fill = inp.u8();
        let page: Vec<u8> = (0..ps).map(|i| fill ^ (i as u8)).collect();
        if enc.encode_page(pgno, &page).is_err() {
            return Vec::new();
        }
    }
    let Ok((mut bytes, _)) = enc.finish() else {
        return Vec::new();
    };
    let n = bytes.len();
    // Crafted header fields and index length, the values restore sizes things by.
    if kind & 1 != 0 {
        bytes[12..16].copy_from_slice(&inp.u32().to_be_bytes());
    }
    if kind & 2 != 0 && n >= 24 {
        let len = u64::from(inp.u32()) << (inp.u8() % 32);
        bytes[n - 24..n - 16].copy_from_slice(&len.to_be_bytes());
    }
    if kind & 4 != 0 {
        for _ in 0..inp.u8() % 4 {
            let at = usize::from(inp.u16()) % n;
            bytes[at] ^= inp.u8() | 1;
        }
    }
    bytes
}

/// A file replica whose listing reports sizes the input chose.
#[derive(Debug)]
struct Lying {
    inner: FileReplica,
    size_deltas: Vec<i64>,
}

#[async_trait]
impl ReplicaClient for Lying {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn ltx_files(&self, level: Level) -> storage::Result<Vec<LtxFileInfo>> {
        let mut files = self.inner.ltx_files(level).await?;
        for (i, f) in files.iter_mut().enumerate() {
            let d = self
                .size_deltas
                .get(i + usize::from(level.0) * 3)
                .copied()
                .unwrap_or(0);
            f.size = f.size.saturating_add_signed(d);
        }
        Ok(files)
    }

    async fn read_range(
        &self,
        name: LtxName,
        offset: u64,
        len: Option<u64>,
    ) -> storage::Result<Bytes> {
        self.inner.read_range(name, offset, len).await
    }

    async fn write_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> storage::Result<LtxFileInfo> {
        self.inner.write_ltx(name, body, created_at).await
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> storage::Result<()> {
        self.inner.delete_ltx(files).await
    }

    async fn delete_all(&self) -> storage::Result<()> {
        self.inner.delete_all().await
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    // On tmpfs where there is one: the restore's fsyncs cost nothing there.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    let Ok(dir) = dir else {
        return;
    };
    let root = dir.path().join("replica");
    let files = 1 + inp.u8() % 4;
    let mut txid = 1u64;
    for _ in 0..files {
        let level = LEVELS[usize::from(inp.u8()) % LEVELS.len()];
        // Mostly continuing TXID ranges (so the planner gets past its checks), sometimes not.
        let jump = inp.u8();
        let min = if jump % 8 == 0 {
            u64::from(jump) + 1
        } else {
            txid
        };
        let max = min + u64::from(inp.u8() % 3);
        txid = max + 1;
        let bytes = build_file(&mut inp, min, max);
        let d = root.join("ltx").join(level.to_string());
        let name = format!("{}-{}.ltx", TxId(min), TxId(max));
        if std::fs::create_dir_all(&d).is_err() || std::fs::write(d.join(name), bytes).is_err() {
            return;
        }
    }
    let size_deltas = (0..12)
        .map(|_| match inp.u8() {
            b @ 1..=8 => i64::from(b) - 5,
            200 => i64::from(inp.u32()),
            _ => 0,
        })
        .collect();
    let client: SharedReplica = Arc::new(Lying {
        inner: FileReplica::new(&root),
        size_deltas,
    });
    let out = dir.path().join("out.db");
    let opts = ExecOptions {
        parallelism: 2,
        chunk_size: 4096,
        write_batch: 8192,
        ..ExecOptions::default()
    };
    runtime().block_on(async {
        let Ok(listing) = Listing::fetch(client.as_ref()).await else {
            return;
        };
        let Ok(plan) = calc_plan(&listing, Target::Latest) else {
            return;
        };
        let Ok(prepared) = prepare_output(&out, false) else {
            return;
        };
        let progress = Arc::new(Progress::hidden());
        match execute(&client, &plan, prepared, &opts, &progress).await {
            Ok(r) => {
                let len = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
                assert_eq!(
                    len,
                    u64::from(r.commit) * u64::from(r.page_size),
                    "published database size"
                );
            }
            Err(_) => assert!(!out.exists(), "a failed restore published its output"),
        }
    });
});
