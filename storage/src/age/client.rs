//! [`AgeReplica`]: a [`ReplicaClient`] that encrypts what it writes and decrypts what it
//! reads, around any other replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::Level;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::keys::AgeKeys;
use super::layout::{sniff, AgeHead, Format, FIRST_READ, MAX_PREFIX};
use super::open::{open_range, Opener};
use super::seal::seal;
use crate::{
    Body, LtxFileInfo, LtxName, RangeStream, Ranged, ReplicaClient, Result, SharedReplica,
    StorageError,
};

/// Files whose first bytes are read at once while listing.
const SNIFF_PARALLEL: usize = 16;

/// A replica whose files are age files (see the [module docs](super)).
pub struct AgeReplica {
    inner: SharedReplica,
    keys: Arc<AgeKeys>,
    /// What each file listed or written is, by name, with the stored size it was seen at: a
    /// file replaced by one of another size is looked at again. Bounded by the listings: a
    /// level's entries are pruned to the files its latest listing holds.
    formats: Mutex<HashMap<LtxName, Format>>,
}

impl std::fmt::Debug for AgeReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeReplica")
            .field("inner", &self.inner)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn stored_size(f: &Format) -> Option<u64> {
    match f {
        Format::Plain => None,
        Format::Age(h) => Some(h.size),
    }
}

/// Reads the first bytes of `f` and says what it is.
async fn look(inner: &SharedReplica, f: &LtxFileInfo) -> Result<Format> {
    let label = f.ltx_name().to_string();
    let mut want = f.size.min(FIRST_READ);
    loop {
        let first = inner.read_range(f.ltx_name(), 0, Some(want)).await?;
        if let Some(fmt) = sniff(&first, f.size, &label)? {
            return Ok(fmt);
        }
        want = f.size.min(MAX_PREFIX);
    }
}

impl AgeReplica {
    /// Wraps `inner`. The keys decide what can be done: writing needs recipients, reading an
    /// encrypted file needs an identity; listing needs neither.
    pub fn new(inner: SharedReplica, keys: AgeKeys) -> AgeReplica {
        AgeReplica {
            inner,
            keys: Arc::new(keys),
            formats: Mutex::new(HashMap::new()),
        }
    }

    /// [`AgeReplica::new`] as a shared replica.
    pub fn wrap(inner: SharedReplica, keys: AgeKeys) -> SharedReplica {
        Arc::new(AgeReplica::new(inner, keys))
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<LtxName, Format>> {
        self.formats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets what a file is (after an error opening it, so that a file replaced under the
    /// same name and size is looked at afresh next time).
    fn forget(&self, key: LtxName) {
        self.cached().remove(&key);
    }

    /// The format of every file in `files` (one level's listing, stored sizes), looking at
    /// the first bytes of those not seen before, some at once.
    async fn formats_of(&self, files: &[LtxFileInfo]) -> Result<Vec<Format>> {
        let mut out: Vec<Option<Format>> = {
            let cache = self.cached();
            files
                .iter()
                .map(|f| {
                    cache
                        .get(&f.ltx_name())
                        .filter(|fmt| stored_size(fmt).is_none_or(|s| s == f.size))
                        .cloned()
                })
                .collect()
        };
        let sem = Arc::new(Semaphore::new(SNIFF_PARALLEL));
        let mut set = JoinSet::new();
        for (i, f) in files.iter().enumerate().filter(|(i, _)| out[*i].is_none()) {
            let (inner, f, sem) = (Arc::clone(&self.inner), f.clone(), Arc::clone(&sem));
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, look(&inner, &f).await)
            });
        }
        while let Some(joined) = set.join_next().await {
            let (i, fmt) =
                joined.map_err(|e| StorageError::fatal(format!("reading age headers: {e}")))?;
            out[i] = Some(fmt?);
        }
        let mut cache = self.cached();
        if let Some(level) = files.first().map(|f| f.level) {
            let keep: std::collections::HashSet<LtxName> =
                files.iter().map(|f| f.ltx_name()).collect();
            cache.retain(|k, _| k.level != level || keep.contains(k));
        }
        let mut formats = Vec::with_capacity(files.len());
        for (f, fmt) in files.iter().zip(out) {
            let fmt = fmt.ok_or_else(|| StorageError::fatal("reading age headers: lost a file"))?;
            cache.insert(f.ltx_name(), fmt.clone());
            formats.push(fmt);
        }
        Ok(formats)
    }

    /// One level as callers see it: plaintext sizes; plain files refused unless migrating.
    async fn list(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        let mut files = self.inner.ltx_files(level).await?;
        if files.is_empty() {
            self.cached().retain(|k, _| k.level != level);
        }
        let formats = self.formats_of(&files).await?;
        for (f, fmt) in files.iter_mut().zip(formats) {
            match fmt {
                Format::Age(h) => f.size = h.plain,
                Format::Plain if self.keys.migrate => {}
                Format::Plain => {
                    return Err(StorageError::fatal(format!(
                        "{}: not encrypted, in a replica configured for age encryption; a replica \
                         mixing plain and encrypted files is refused unless \
                         age.migrate-from-plaintext is set (docs/encryption.md#migrating-a-plain-replica)",
                        f.ltx_name()
                    )))
                }
            }
        }
        Ok(files)
    }

    /// What one file is, from the cache or else from a listing of its level.
    async fn format(&self, name: LtxName) -> Result<Format> {
        if let Some(f) = self.cached().get(&name) {
            return Ok(f.clone());
        }
        self.list(name.level).await?;
        self.cached()
            .get(&name)
            .cloned()
            .ok_or_else(|| StorageError::not_found(name.to_string()))
    }

    async fn write(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
        create_only: bool,
    ) -> Result<LtxFileInfo> {
        let label = name.to_string();
        let keys = Arc::clone(&self.keys);
        let sealed = tokio::task::spawn_blocking(move || seal(&keys, &body, &label))
            .await
            .map_err(|e| StorageError::fatal(format!("encrypting: {e}")))??;
        let body = sealed.body.clone();
        let mut info = if create_only {
            self.inner.create_ltx(name, body, created_at).await?
        } else {
            self.inner.write_ltx(name, body, created_at).await?
        };
        let head = sealed.head.clone();
        info.size = head.plain;
        self.cached().insert(name, Format::Age(head));
        Ok(info)
    }
}

/// Bounds of a plaintext read: `len` bytes at `offset`, or to the end with `None`.
fn bounds(head: &AgeHead, offset: u64, len: Option<u64>, label: &str) -> Result<u64> {
    let len = len.unwrap_or(head.plain.saturating_sub(offset));
    match offset.checked_add(len) {
        Some(end) if end <= head.plain => Ok(len),
        _ => Err(StorageError::fatal(format!(
            "{label}: range {offset}+{len} is past the end ({} bytes)",
            head.plain
        ))),
    }
}

#[async_trait]
impl ReplicaClient for AgeReplica {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn ltx_files(&self, level: Level) -> Result<Vec<LtxFileInfo>> {
        self.list(level).await
    }

    async fn read_range(&self, name: LtxName, offset: u64, len: Option<u64>) -> Result<Bytes> {
        let head = match self.format(name).await? {
            Format::Plain => return self.inner.read_range(name, offset, len).await,
            Format::Age(h) => h,
        };
        let label = name.to_string();
        let len = bounds(&head, offset, len, &label)?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let (start, span) = head.sealed_span(&head.chunks_for(offset, len));
        let sealed = self.inner.read_range(name, start, Some(span)).await?;
        let keys = Arc::clone(&self.keys);
        let opened = tokio::task::spawn_blocking(move || {
            open_range(&head, &keys, sealed, offset, len, &label)
        })
        .await
        .map_err(|e| StorageError::fatal(format!("decrypting: {e}")))?;
        if opened.is_err() {
            self.forget(name);
        }
        opened
    }

    async fn read_range_stream<'a>(&'a self, name: LtxName, offset: u64, len: u64) -> Ranged<'a> {
        let head = match self.format(name).await? {
            Format::Plain => return self.inner.read_range_stream(name, offset, len).await,
            Format::Age(h) => h,
        };
        let label = name.to_string();
        let len = bounds(&head, offset, Some(len), &label)?;
        let chunks = head.chunks_for(offset, len.max(1));
        let opener = if len == 0 {
            None
        } else {
            Some(Opener::new(&head, &self.keys, &label)?)
        };
        let (start, span) = head.sealed_span(&chunks);
        let inner = if len == 0 {
            None
        } else {
            Some(self.inner.read_range_stream(name, start, span).await?)
        };
        Ok(Box::new(AgeStream {
            owner: self,
            key: name,
            label,
            inner,
            opener,
            next: chunks.start,
            skip: (offset - chunks.start * super::layout::CHUNK) as usize,
            left: len,
            sealed: Vec::new(),
            out: Bytes::new(),
            head,
        }))
    }

    async fn write_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        self.write(name, body, created_at, false).await
    }

    async fn create_ltx(
        &self,
        name: LtxName,
        body: Body,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo> {
        self.write(name, body, created_at, true).await
    }

    fn supports_create_only(&self) -> bool {
        self.inner.supports_create_only()
    }

    async fn delete_ltx(&self, files: &[LtxFileInfo]) -> Result<()> {
        {
            let mut cache = self.cached();
            for f in files {
                cache.remove(&f.ltx_name());
            }
        }
        self.inner.delete_ltx(files).await
    }

    async fn delete_all(&self) -> Result<()> {
        self.cached().clear();
        self.inner.delete_all().await
    }

    /// Litestream 0.3.x's `generations/` tree is passed through as stored: this layer
    /// encrypts LTX files only (docs/encryption.md#litestream-and-encryption).
    async fn legacy_objects(&self) -> Result<Vec<crate::backend::ObjectInfo>> {
        self.inner.legacy_objects().await
    }

    async fn open_legacy<'a>(&'a self, name: &str) -> Ranged<'a> {
        self.inner.open_legacy(name).await
    }

    async fn write_legacy(&self, name: &str, body: Body, created_at: SystemTime) -> Result<()> {
        self.inner.write_legacy(name, body, created_at).await
    }

    /// Forgets the wrapped replica's listings; what files are is kept, checked against the
    /// stored size of each listing, and dropped on any error opening a file.
    fn invalidate_cache(&self) {
        self.inner.invalidate_cache();
    }
}

/// A plaintext range streamed from the stored chunks holding it: each chunk is opened as soon
/// as its last byte arrives, so memory stays at one chunk, whatever the range.
struct AgeStream<'a> {
    owner: &'a AgeReplica,
    key: LtxName,
    label: String,
    head: AgeHead,
    inner: Option<Box<dyn RangeStream + 'a>>,
    opener: Option<Opener>,
    /// The chunk being collected.
    next: u64,
    /// Plaintext bytes to drop from the front of the next chunk opened (the first one only).
    skip: usize,
    /// Plaintext bytes of the range not yet handed out or buffered in `out`.
    left: u64,
    /// Stored bytes of chunk `next` received so far.
    sealed: Vec<u8>,
    /// Opened plaintext not yet handed out.
    out: Bytes,
}

impl AgeStream<'_> {
    /// Receives and opens the next chunk into `out`.
    async fn fill(&mut self) -> Result<()> {
        let (Some(inner), Some(opener)) = (self.inner.as_mut(), self.opener.as_mut()) else {
            return Ok(());
        };
        let want = self.head.sealed_len(self.next) as usize;
        while self.sealed.len() < want {
            let need = (want - self.sealed.len()) as u64;
            match inner.next_piece(need).await? {
                Some(p) if !p.is_empty() => self.sealed.extend_from_slice(&p),
                _ => {
                    return Err(StorageError::fatal(format!(
                        "{}: short read: chunk {} ended after {} of {want} bytes",
                        self.label,
                        self.next,
                        self.sealed.len()
                    )))
                }
            }
        }
        let sealed = Bytes::from(std::mem::take(&mut self.sealed));
        let plain = match opener.open_chunk(&self.head, self.next, sealed, &self.label) {
            Ok(p) => p,
            Err(e) => {
                self.owner.forget(self.key);
                return Err(e);
            }
        };
        self.next += 1;
        let mut plain = Bytes::from(plain);
        let skip = std::mem::take(&mut self.skip).min(plain.len());
        plain = plain.slice(skip..);
        let take = (plain.len() as u64).min(self.left) as usize;
        self.left -= take as u64;
        self.out = plain.slice(..take);
        Ok(())
    }
}

#[async_trait]
impl RangeStream for AgeStream<'_> {
    async fn next_piece(&mut self, max: u64) -> Result<Option<Bytes>> {
        if self.out.is_empty() {
            if self.left == 0 {
                return Ok(None);
            }
            self.fill().await?;
        }
        let n = (self.out.len() as u64).min(max.max(1)) as usize;
        Ok(Some(self.out.split_to(n)))
    }
}
