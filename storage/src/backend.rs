//! The seam every backend plugs into. A backend is a place that holds objects by key and can
//! list a prefix, read a range of an object, write one (create-only where it can), and delete
//! some; [`Replica`](crate::replica::Replica) turns any backend into a
//! [`ReplicaClient`](crate::ReplicaClient), adding what all replicas share: the key layout of
//! LTX files, the listing cache, metrics and the ranged-read stream. See `docs/storage.md`.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx_codec::types::{ltx_file_name, parse_ltx_file_name};
use ltx_codec::{Level, TxId};

use crate::{Body, RangeStream, Result};

/// Where a replica's LTX files are: `<root><level>/<min>-<max>.ltx`, the level written in
/// decimal, or as `%04x` (S3, as Litestream's S3 client writes it). The replica's own
/// directory, the `base` (`<path>/`), also holds Litestream 0.3.x's `generations/` tree
/// (docs/replica-layout.md#legacy-generations-layout); on most backends the root is
/// `<base>ltx/`, on S3 the base itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    root: String,
    base: String,
    hex_levels: bool,
}

impl Layout {
    /// `root` is the prefix of every level directory: empty, or ending in `/`.
    pub fn decimal(root: impl Into<String>) -> Layout {
        let root = root.into();
        Layout {
            base: root.clone(),
            root,
            hex_levels: false,
        }
    }

    /// Like [`Layout::decimal`], with levels written as four hex digits.
    pub fn hex(root: impl Into<String>) -> Layout {
        let root = root.into();
        Layout {
            base: root.clone(),
            root,
            hex_levels: true,
        }
    }

    /// The same layout with `base` as the replica's own directory.
    pub fn with_base(mut self, base: impl Into<String>) -> Layout {
        self.base = base.into();
        self
    }

    /// The prefix of every level directory: empty, or ending in `/`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The prefix of the replica's own directory: empty, or ending in `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `<base>/` for a replica `path` as Litestream joins it (empty for an empty path).
    pub fn base_of(path: &str) -> String {
        let p = crate::gopath::join(&[path]);
        if p.is_empty() {
            p
        } else {
            format!("{}/", p.trim_end_matches('/'))
        }
    }

    fn level_name(&self, level: Level) -> String {
        if self.hex_levels {
            format!("{:04x}", level.0)
        } else {
            level.0.to_string()
        }
    }

    /// The prefix of every file of `level` (ends in `/`).
    pub fn level_prefix(&self, level: Level) -> String {
        format!("{}{}/", self.root, self.level_name(level))
    }

    /// The key of one LTX file.
    pub fn ltx_key(&self, level: Level, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), ltx_file_name(min, max))
    }

    /// The TXID range of a key directly in `level`'s directory. A nested or dot-dot key (such
    /// as `<level>/../../<name>.ltx`) names another object than [`Layout::ltx_key`] would,
    /// and is not an LTX file of the level.
    pub fn parse_in_level(&self, level: Level, key: &str) -> Option<(TxId, TxId)> {
        parse_ltx_file_name(key.strip_prefix(&self.level_prefix(level))?)
    }

    /// The level and TXID range of any key under the root (for backends that list the whole
    /// replica at once). The level must be written exactly as we write it.
    pub fn parse(&self, key: &str) -> Option<(Level, TxId, TxId)> {
        let (level, name) = key.strip_prefix(&self.root)?.split_once('/')?;
        let n = if self.hex_levels {
            u8::from_str_radix(level, 16).ok()?
        } else {
            u8::try_from(level.parse::<u32>().ok()?).ok()?
        };
        if self.level_name(Level(n)) != level {
            return None;
        }
        let (min, max) = parse_ltx_file_name(name)?;
        Some((Level(n), min, max))
    }
}

/// One object as a listing reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Full key of the object.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The creation time the backend stores (metadata, modification time), when it has one.
    pub created_at: Option<SystemTime>,
}

/// An object as a replica's `list_prefix` reports it (`gs` and `abs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Object name: the full key from `list_prefix`, the key below the replica's directory from
    /// [`ReplicaClient::legacy_objects`](crate::ReplicaClient::legacy_objects).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The creation time kept in metadata, else the object's own creation time.
    pub created_at: Option<SystemTime>,
}

impl From<Listed> for ObjectInfo {
    fn from(o: Listed) -> ObjectInfo {
        ObjectInfo {
            name: o.key,
            size: o.size,
            created_at: o.created_at,
        }
    }
}

/// One page of a listing, and the token of the next one.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The objects on this page.
    pub entries: Vec<Listed>,
    /// Continuation token of the next page; `None` on the last one.
    pub next: Option<String>,
}

/// Whether a write may replace an existing object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Replace any object already stored under the key.
    Overwrite,
    /// Fail with [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) when the key
    /// exists; two writers racing for one key: exactly one wins.
    CreateOnly,
}

/// What [`Backend::put`] stores: `size` bytes of `body`, with `created_at` as the creation
/// time.
#[derive(Clone, Copy, Debug)]
pub struct Upload<'a> {
    /// The content to store.
    pub body: &'a Body,
    /// Size of the content in bytes.
    pub size: u64,
    /// Creation time to record with the object.
    pub created_at: SystemTime,
    /// Whether an existing object may be replaced.
    pub mode: PutMode,
}

impl Upload<'_> {
    /// Whether the write must fail when the key already exists.
    pub fn create_only(&self) -> bool {
        self.mode == PutMode::CreateOnly
    }
}

/// A byte range of an object: `len` bytes at `offset`, or to its end with `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Start of the range, in bytes from the start of the object.
    pub offset: u64,
    /// Length of the range in bytes; `None` reads to the end.
    pub len: Option<u64>,
}

/// A ranged read handed out piece by piece.
pub type Stream<'a> = Box<dyn RangeStream + 'a>;

/// How [`ReplicaClient::delete_all`](crate::ReplicaClient::delete_all) removes a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purge {
    /// Every object listed under this prefix is deleted.
    Prefix(String),
    /// The backend removes its tree itself ([`Backend::delete_tree`]).
    Tree,
}

/// An object store a replica can live in. Implementations must be safe to call from many tasks
/// at once. Errors name the object (key, URL) they are about.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Backend name as Litestream reports it: "s3", "gs", "abs", "sftp", "webdav", ...
    const KIND: &'static str;
    /// Whether [`PutMode::CreateOnly`] is honoured (else it is refused).
    const CREATE_ONLY: bool = false;
    /// Whether listings are kept and updated by our own writes (an idle replica then makes
    /// no requests). A local directory that others write is listed afresh instead.
    const CACHE_LISTINGS: bool = true;
    /// Whether operations are counted in the replica metrics.
    const METRICS: bool = true;
    /// Whether one listing of the root covers every level (one request instead of one per
    /// level).
    const WHOLE_LISTING: bool = false;
    /// Keys per [`Backend::delete_batch`] call, and calls in flight at once.
    const DELETE_BATCH: usize = 1;
    /// [`Backend::delete_batch`] calls in flight at once.
    const DELETE_PARALLEL: usize = 1;

    /// The name, when it depends on the settings (`s3` or `oss`).
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    /// Where the LTX files are.
    fn layout(&self) -> &Layout;

    /// One page of the objects whose keys start with `prefix`.
    async fn list_page(&self, prefix: &str, token: Option<String>) -> Result<Page>;

    /// The directories directly under `prefix`, as key segments, for backends with real
    /// directories, whose listings are one directory deep; `None` for flat object stores,
    /// whose listings of a prefix reach every depth.
    async fn list_dirs(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        let _ = prefix;
        Ok(None)
    }

    /// A range of `key` in one piece. A range past the end is an error; reading nothing at
    /// the very end is not. The default collects [`Backend::open_range`]; a backend
    /// implements at least one of the two.
    async fn read(&self, key: &str, span: Span) -> Result<Bytes> {
        let mut s = self.open_range(key, span).await?;
        crate::replica::collect(s.as_mut(), span.len).await
    }

    /// A range of `key` handed out as it arrives. The default reads piece by piece with
    /// [`Backend::read`], as much as the caller asks for each time.
    async fn open_range<'a>(&'a self, key: &str, span: Span) -> Result<Stream<'a>> {
        crate::replica::piecewise(self, key, span).await
    }

    /// Stores an upload under `key` so that no reader sees part of it. Returns the creation
    /// time as stored (backends that keep seconds or milliseconds round it).
    async fn put(&self, key: &str, up: Upload<'_>) -> Result<SystemTime>;

    /// Deletes one object; one already gone is not an error. Returns whether it counts as
    /// deleted in the metrics.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Deletes up to [`Backend::DELETE_BATCH`] objects; returns how many were deleted.
    async fn delete_batch(&self, keys: &[String]) -> Result<u64> {
        let mut n = 0;
        for k in keys {
            n += u64::from(self.delete(k).await?);
        }
        Ok(n)
    }

    /// What `delete_all` removes.
    fn purge(&self) -> Purge;

    /// Removes the replica's tree ([`Purge::Tree`]); returns how many objects went.
    async fn delete_tree(&self) -> Result<u64> {
        Err(crate::StorageError::fatal(format!(
            "{}: deleting a whole replica is not supported",
            self.kind()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let s3 = Layout::hex("db/");
        assert_eq!(
            s3.ltx_key(Level(10), TxId(1), TxId(2)),
            "db/000a/0000000000000001-0000000000000002.ltx"
        );
        let nats = Layout::decimal("ltx/");
        let a = "0000000000000001-0000000000000002.ltx";
        assert_eq!(
            nats.parse(&format!("ltx/9/{a}")),
            Some((Level(9), TxId(1), TxId(2)))
        );
        for bad in [
            format!("ltx/01/{a}"),
            format!("ltx/1/x/{a}"),
            format!("db/ltx/1/{a}"),
            "ltx/2/notes.txt".to_owned(),
            format!("ltx/256/{a}"),
        ] {
            assert_eq!(nats.parse(&bad), None, "{bad}");
        }
        assert_eq!(
            s3.parse(&format!("db/000a/{a}")).map(|p| p.0),
            Some(Level(10))
        );
        assert_eq!(s3.parse(&format!("db/a/{a}")), None);
        assert_eq!(
            s3.parse_in_level(Level(0), &format!("db/0000/../{a}")),
            None
        );
    }
}
