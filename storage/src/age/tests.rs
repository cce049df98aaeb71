//! The age layer over a file replica: every plaintext range, streamed or not, at chunk
//! boundaries; only the chunks holding a range are fetched; each failure names the file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use age::secrecy::ExposeSecret;
use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::{Level, TxId};

use super::layout::{CHUNK, SEALED};
use super::{AgeConfig, AgeKeys, AgeReplica};
use crate::file::FileReplica;
use crate::{Body, LtxFileInfo, LtxName, Ranged, ReplicaClient, Result, SharedReplica};

struct Key {
    identity: String,
    recipient: String,
}

fn new_key() -> Key {
    let id = age::x25519::Identity::generate();
    Key {
        identity: id.to_string().expose_secret().to_owned(),
        recipient: id.to_public().to_string(),
    }
}

fn keys(recipients: &[&Key], identities: &[&Key], migrate: bool) -> AgeKeys {
    AgeKeys::load(&AgeConfig {
        recipients: recipients.iter().map(|k| k.recipient.clone()).collect(),
        identities: identities.iter().map(|k| k.identity.clone()).collect(),
        migrate_from_plaintext: migrate,
    })
    .expect("keys")
}

fn data(n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Records the stored ranges read through it.
#[derive(Debug)]
struct Recording {
    inner: SharedReplica,
    reads: Mutex<Vec<(u64, u64)>>,
}

#[async_trait]
impl ReplicaClient for Recording {
    fn kind(&self) -> &'static str {
        "file"
    }
    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        self.inner.ltx_files(level).await
    }
    async fn read_range(&self, name: LtxName, offset: u64, len: Option<u64>) -> Result<Bytes> {
        let b = self.inner.read_range(name, offset, len).await?;
        self.reads
            .lock()
            .expect("lock")
            .push((offset, b.len() as u64));
        Ok(b)
    }
    async fn read_range_stream<'a>(&'a self, name: LtxName, offset: u64, len: u64) -> Ranged<'a> {
        self.reads.lock().expect("lock").push((offset, len));
        self.inner.read_range_stream(name, offset, len).await
    }
    async fn write_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        self.inner.write_ltx(name, body, created_at).await
    }
    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        self.inner.delete_ltx(files).await
    }
    async fn delete_all(&self) -> Result<()> {
        self.inner.delete_all().await
    }
}

fn stored(root: &Path, level: u8, txid: u64) -> std::path::PathBuf {
    FileReplica::new(root).ltx_path(Level(level), TxId(txid), TxId(txid))
}

async fn stream_all(
    r: &dyn ReplicaClient,
    txid: u64,
    offset: u64,
    len: u64,
    piece: u64,
) -> Result<Vec<u8>> {
    let mut s = r
        .read_range_stream(LtxName::l0(TxId(txid)), offset, len)
        .await?;
    let mut got = Vec::new();
    while let Some(p) = s.next_piece(piece).await? {
        assert!(p.len() as u64 <= piece);
        got.extend_from_slice(&p);
    }
    Ok(got)
}

#[tokio::test]
async fn every_range_round_trips_at_chunk_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = new_key();
    let r = AgeReplica::new(
        Arc::new(FileReplica::new(dir.path())),
        keys(&[&k], &[&k], false),
    );
    let c = CHUNK as usize;
    let sizes = [100, c - 1, c, c + 1, 3 * c, 3 * c + 5];
    for (i, &n) in sizes.iter().enumerate() {
        let txid = i as u64 + 1;
        let plain = data(n);
        // Even files go up from disk, odd ones from memory.
        let body = if i % 2 == 0 {
            let p = dir.path().join(format!("src-{i}"));
            std::fs::write(&p, &plain).expect("write");
            Body::File(p)
        } else {
            Body::Bytes(Bytes::from(plain.clone()))
        };
        let info = r
            .write_ltx(LtxName::l0(TxId(txid)), body, SystemTime::now())
            .await
            .expect("write");
        assert_eq!(info.size, n as u64);
        let raw = std::fs::read(stored(dir.path(), 0, txid)).expect("stored");
        assert!(super::is_age_file(&raw));
        // No stretch of the plaintext shows through (probes spread over the file).
        for at in (0..n.saturating_sub(32)).step_by(n / 7 + 1) {
            let probe = &plain[at..at + 32];
            assert!(
                !raw.windows(32).any(|w| w == probe),
                "{n}: plaintext at {at}"
            );
        }
        // The whole file opens with the crate alone.
        let mut whole = Vec::new();
        let ids = keys(&[], &[&k], false);
        std::io::Read::read_to_end(
            &mut age::Decryptor::new(&raw[..])
                .expect("header")
                .decrypt(ids.identity_refs())
                .expect("identity"),
            &mut whole,
        )
        .expect("decrypt");
        assert_eq!(whole, plain);

        let mut points = vec![0, 1, n as u64 / 2, n as u64 - 1, n as u64];
        for b in 1..4 {
            let at = b * CHUNK;
            points.extend([at - 1, at, at + 1].into_iter().filter(|&p| p <= n as u64));
        }
        for &a in &points {
            for &b in &points {
                if b < a {
                    continue;
                }
                let got = r
                    .read_range(LtxName::l0(TxId(txid)), a, Some(b - a))
                    .await
                    .expect("read");
                assert_eq!(got[..], plain[a as usize..b as usize], "{n}: {a}..{b}");
                // One piece size per range keeps the debug build's decryption time down.
                let piece = [7, 65536, 1 << 20][(a + b) as usize % 3];
                let got = stream_all(&r, txid, a, b - a, piece).await.expect("stream");
                assert_eq!(
                    got[..],
                    plain[a as usize..b as usize],
                    "stream {n}: {a}..{b}"
                );
            }
        }
        let tail = r
            .read_range(LtxName::l0(TxId(txid)), n as u64 / 3, None)
            .await
            .expect("to the end");
        assert_eq!(tail[..], plain[n / 3..]);
        assert!(r
            .read_range(LtxName::l0(TxId(txid)), n as u64, Some(1))
            .await
            .is_err());
    }
    let listed = r.ltx_files(Level(0)).await.expect("list");
    let listed: Vec<u64> = listed.iter().map(|f| f.size).collect();
    assert_eq!(listed, sizes.iter().map(|&n| n as u64).collect::<Vec<_>>());
    // A second client (another process) learns the sizes from the headers.
    let fresh = AgeReplica::new(
        Arc::new(FileReplica::new(dir.path())),
        keys(&[], &[&k], false),
    );
    let again: Vec<u64> = fresh
        .ltx_files(Level(0))
        .await
        .expect("list")
        .iter()
        .map(|f| f.size)
        .collect();
    assert_eq!(again, listed);
}

#[tokio::test]
async fn a_range_fetches_only_its_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = new_key();
    let rec = Arc::new(Recording {
        inner: Arc::new(FileReplica::new(dir.path())),
        reads: Mutex::new(Vec::new()),
    });
    let r = AgeReplica::new(rec.clone(), keys(&[&k], &[&k], false));
    let plain = data(20 * CHUNK as usize + 123);
    r.write_ltx(
        LtxName::l0(TxId(1)),
        Body::Bytes(Bytes::from(plain.clone())),
        SystemTime::now(),
    )
    .await
    .expect("write");
    let fresh = AgeReplica::new(rec.clone(), keys(&[], &[&k], false));
    fresh.ltx_files(Level(0)).await.expect("list");
    let prefix = {
        let reads = std::mem::take(&mut *rec.reads.lock().expect("lock"));
        // The listing read the first bytes once.
        assert_eq!(reads.len(), 1, "{reads:?}");
        let raw = std::fs::read(stored(dir.path(), 0, 1)).expect("stored");
        let size = raw.len() as u64;
        size - 20 * SEALED - (123 + 16)
    };
    let at = 5 * CHUNK + 10;
    let got = fresh
        .read_range(LtxName::l0(TxId(1)), at, Some(CHUNK))
        .await
        .expect("read");
    assert_eq!(got[..], plain[at as usize..(at + CHUNK) as usize]);
    let got = stream_all(&fresh, 1, 12 * CHUNK, 2 * CHUNK, 4096)
        .await
        .expect("stream");
    assert_eq!(got[..], plain[12 * CHUNK as usize..14 * CHUNK as usize]);
    let reads = std::mem::take(&mut *rec.reads.lock().expect("lock"));
    assert_eq!(
        reads,
        vec![
            (prefix + 5 * SEALED, 2 * SEALED),
            (prefix + 12 * SEALED, 2 * SEALED)
        ]
    );
}

#[tokio::test]
async fn damage_and_wrong_keys_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (k, other) = (new_key(), new_key());
    let file: SharedReplica = Arc::new(FileReplica::new(dir.path()));
    let r = AgeReplica::new(Arc::clone(&file), keys(&[&k], &[&k], false));
    let plain = data(4 * CHUNK as usize);
    for txid in 1..=4 {
        r.write_ltx(
            LtxName::l0(TxId(txid)),
            Body::Bytes(Bytes::from(plain.clone())),
            SystemTime::now(),
        )
        .await
        .expect("write");
    }
    let name = |t: u64| format!("0/{}", ltx_codec::types::ltx_file_name(TxId(t), TxId(t)));
    let err = |e: crate::StorageError, t: u64, what: &str| {
        let m = e.to_string();
        assert!(m.contains(&name(t)) && m.contains(what), "{m}");
        e
    };

    // A flipped byte in chunk 1 of file 1: chunk 0 still reads; chunk 1 does not.
    let p1 = stored(dir.path(), 0, 1);
    let mut raw = std::fs::read(&p1).expect("read");
    let prefix = raw.len() - 4 * SEALED as usize;
    raw[prefix + SEALED as usize + 7] ^= 1;
    std::fs::write(&p1, &raw).expect("write");
    let fresh = AgeReplica::new(Arc::clone(&file), keys(&[], &[&k], false));
    fresh.ltx_files(Level(0)).await.expect("list");
    let ok = fresh
        .read_range(LtxName::l0(TxId(1)), 0, Some(CHUNK))
        .await
        .expect("chunk 0");
    assert_eq!(ok[..], plain[..CHUNK as usize]);
    let e = fresh
        .read_range(LtxName::l0(TxId(1)), CHUNK, Some(10))
        .await
        .expect_err("tampered");
    err(e, 1, "chunk 1");
    let e = stream_all(&fresh, 1, 0, 4 * CHUNK, 1 << 20)
        .await
        .expect_err("tampered stream");
    err(e, 1, "does not authenticate");

    // File 2 cut short by one byte, file 3 cut at a chunk boundary: the tail does not open.
    let p2 = stored(dir.path(), 0, 2);
    let raw2 = std::fs::read(&p2).expect("read");
    std::fs::write(&p2, &raw2[..raw2.len() - 1]).expect("truncate");
    let p3 = stored(dir.path(), 0, 3);
    let raw3 = std::fs::read(&p3).expect("read");
    std::fs::write(&p3, &raw3[..raw3.len() - SEALED as usize]).expect("truncate");
    let fresh = AgeReplica::new(Arc::clone(&file), keys(&[], &[&k], false));
    let listed = fresh.ltx_files(Level(0)).await.expect("list");
    for (t, f) in [(2u64, &listed[1]), (3, &listed[2])] {
        let e = fresh
            .read_range(LtxName::l0(TxId(t)), f.size - 100, Some(100))
            .await
            .expect_err("truncated");
        err(e, t, "does not authenticate");
    }

    // The wrong identity, and none at all.
    let wrong = AgeReplica::new(Arc::clone(&file), keys(&[], &[&other], false));
    wrong
        .ltx_files(Level(0))
        .await
        .expect("listing needs no key");
    let e = wrong
        .read_range(LtxName::l0(TxId(4)), 0, Some(10))
        .await
        .expect_err("wrong identity");
    assert!(e.is_auth());
    err(e, 4, "other recipients");
    let none = AgeReplica::new(Arc::clone(&file), AgeKeys::default());
    let e = none
        .read_range(LtxName::l0(TxId(4)), 0, Some(10))
        .await
        .expect_err("no identity");
    err(e, 4, "needs an identity");
    let e = none
        .write_ltx(
            LtxName::l0(TxId(5)),
            Body::Bytes(Bytes::from_static(b"x")),
            SystemTime::now(),
        )
        .await
        .expect_err("no recipient");
    err(e, 5, "age.recipients");

    // A plain file among encrypted ones: refused unless migrating, then read as it is.
    file.write_ltx(
        LtxName::l0(TxId(6)),
        Body::Bytes(Bytes::from(b"LTX1 plain".to_vec())),
        SystemTime::now(),
    )
    .await
    .expect("plain");
    let e = fresh.ltx_files(Level(0)).await.expect_err("mixed");
    err(e, 6, "migrate-from-plaintext");
    let migrating = AgeReplica::new(Arc::clone(&file), keys(&[&k], &[&k], true));
    let listed = migrating.ltx_files(Level(0)).await.expect("migrating");
    assert_eq!(listed.last().map(|f| f.size), Some(10));
    let got = migrating
        .read_range(LtxName::l0(TxId(6)), 0, None)
        .await
        .expect("plain read");
    assert_eq!(&got[..], b"LTX1 plain");
}

#[test]
fn keys_are_checked_at_load() {
    let (k, other) = (new_key(), new_key());
    let bad = |cfg: AgeConfig, what: &str| {
        let e = AgeKeys::load(&cfg).and_then(|k| k.check_round_trip());
        let m = e.expect_err(what).to_string();
        assert!(m.contains(what), "{m}");
        assert!(!m.contains("AGE-SECRET-KEY"), "a key in a message: {m}");
    };
    bad(
        AgeConfig {
            recipients: vec!["age1nope".into()],
            ..AgeConfig::default()
        },
        "age.recipients[0]",
    );
    bad(
        AgeConfig {
            identities: vec!["/nonexistent/key.txt".into()],
            ..AgeConfig::default()
        },
        "/nonexistent/key.txt",
    );
    bad(
        AgeConfig {
            recipients: vec![k.recipient.clone()],
            identities: vec![other.identity.clone()],
            ..AgeConfig::default()
        },
        "none of age.identities",
    );
    // Key rotation: a new recipient, the old and new identities.
    let rotated = AgeKeys::load(&AgeConfig {
        recipients: vec![other.recipient.clone()],
        identities: vec![k.identity.clone(), other.identity.clone()],
        ..AgeConfig::default()
    })
    .expect("load");
    rotated.check_round_trip().expect("round trip");
    assert!(!format!("{rotated:?}").contains("AGE-SECRET-KEY"));
}
