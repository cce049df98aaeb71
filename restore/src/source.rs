//! Where a restore reads from: a replica location opened as a client, wrapped for decryption
//! when identities are given, with what restore needs beyond the client (the kind, a file
//! replica's root, S3's metadata timestamps).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage::s3::S3Replica;
use storage::{ReplicaClient, ReplicaUrl, SharedReplica};

use crate::plan::{Listing, Target};
use crate::Result;

/// Where to restore from: the replica client, its kind, its local root for a file replica
/// (whose files' modes the output copies), and for S3 the concrete client, which can also read
/// metadata timestamps.
pub(crate) struct Source {
    pub(crate) client: SharedReplica,
    pub(crate) kind: &'static str,
    pub(crate) local_root: Option<PathBuf>,
    pub(crate) s3: Option<Arc<S3Replica>>,
}

impl Source {
    pub(crate) fn s3(r: S3Replica) -> Source {
        let r = Arc::new(r);
        Source {
            kind: ReplicaClient::kind(r.as_ref()),
            client: Arc::clone(&r) as SharedReplica,
            local_root: None,
            s3: Some(r),
        }
    }

    /// A replica of a backend with nothing restore-specific (no v0.3.x files, CreatedAt from
    /// the listing).
    pub(crate) fn remote(client: SharedReplica) -> Source {
        Source {
            kind: client.kind(),
            client,
            local_root: None,
            s3: None,
        }
    }

    /// Opens a replica location. S3 and OSS keep their concrete client, which can also read
    /// metadata timestamps.
    pub(crate) fn open(url: ReplicaUrl) -> Result<Source> {
        Ok(match url {
            ReplicaUrl::File(p) => Source::file(p),
            ReplicaUrl::S3(s) => Source::s3(S3Replica::new(*s)?),
            other => Source::remote(other.open()?),
        })
    }

    /// Decrypts the replica with the identities of `cfg`, of `-age-identity` and of
    /// `$LS_AGE_IDENTITY`, if any is given (docs/encryption.md#configuration).
    pub(crate) fn with_age(
        mut self,
        cfg: &storage::age::AgeConfig,
        identities: &[PathBuf],
    ) -> Result<Source> {
        let env = std::env::var_os(AGE_IDENTITY_ENV).filter(|v| !v.is_empty());
        if !cfg.is_set() && identities.is_empty() && env.is_none() {
            return Ok(self);
        }
        let mut keys = storage::age::AgeKeys::load(cfg)?;
        for f in identities.iter().map(PathBuf::as_path) {
            keys.add_identity_file(f)?;
        }
        if let Some(f) = env {
            keys.add_identity_file(Path::new(&f))?;
        }
        self.client = storage::age::AgeReplica::wrap(self.client, keys);
        Ok(self)
    }

    pub(crate) fn file(root: PathBuf) -> Source {
        Source {
            client: Arc::new(storage::file::FileReplica::new(root.clone())),
            kind: "file",
            local_root: Some(root),
            s3: None,
        }
    }

    /// The listing a plan for `target` is computed from: with `-timestamp` over S3, CreatedAt
    /// comes from object metadata, as Litestream reads it; otherwise `plain` is used as is.
    pub(crate) async fn plan_listing(&self, plain: Listing, target: Target) -> Result<Listing> {
        match (&self.s3, target) {
            (Some(s3), Target::Timestamp(_)) => {
                // Sizes from the replica client: over an encrypted replica they are the
                // plaintext sizes the reads are computed from, not the stored ones.
                let mut with_meta = Listing::fetch_with_metadata(s3).await?;
                with_meta.take_sizes_from(&plain);
                Ok(with_meta)
            }
            _ => Ok(plain),
        }
    }
}

/// An identity file for an encrypted replica, as `-age-identity` gives one.
pub const AGE_IDENTITY_ENV: &str = "LS_AGE_IDENTITY";
