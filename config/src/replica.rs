//! Replica sections: the typed kind, the replica's own keys, and the backend settings, with the
//! top-level replica keys as defaults (as Litestream layers them). Backend keys are checked by
//! the storage crate, which owns their meaning, so a bad one stops start-up with its key named.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml_ng::Value;

use storage::age::AgeConfig;

use crate::defaults;
use crate::env::expand_path;
use crate::error::{key_err, ConfigError};
use crate::node::Node;

/// The backend of a replica, from its `type` or its URL's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaKind {
    /// A local directory (`file`, the default).
    File,
    /// Amazon S3 and compatible stores (`s3`).
    S3,
    /// Alibaba OSS (`oss`), S3 with other defaults.
    Oss,
    /// Google Cloud Storage (`gs`).
    Gs,
    /// Azure Blob Storage (`abs`).
    Abs,
    /// SFTP (`sftp`).
    Sftp,
    /// WebDAV over HTTP (`webdav`).
    Webdav,
    /// WebDAV over HTTPS (`webdavs`).
    Webdavs,
    /// NATS JetStream object store (`nats`).
    Nats,
}

impl ReplicaKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ReplicaKind; 9] = [
        ReplicaKind::File,
        ReplicaKind::S3,
        ReplicaKind::Oss,
        ReplicaKind::Gs,
        ReplicaKind::Abs,
        ReplicaKind::Sftp,
        ReplicaKind::Webdav,
        ReplicaKind::Webdavs,
        ReplicaKind::Nats,
    ];

    /// The kind a `type` value or URL scheme names.
    pub fn from_name(name: &str) -> Option<ReplicaKind> {
        ReplicaKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The `type` value (and URL scheme) of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaKind::File => "file",
            ReplicaKind::S3 => "s3",
            ReplicaKind::Oss => "oss",
            ReplicaKind::Gs => "gs",
            ReplicaKind::Abs => "abs",
            ReplicaKind::Sftp => "sftp",
            ReplicaKind::Webdav => "webdav",
            ReplicaKind::Webdavs => "webdavs",
            ReplicaKind::Nats => "nats",
        }
    }
}

impl std::fmt::Display for ReplicaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ReplicaKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One replica. For `file`, `url` is the absolute directory; for the others it is the URL if
/// one was given (else empty) and `settings` holds the backend keys, `path` included.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `type`, else the URL's scheme (default `file`).
    pub kind: ReplicaKind,
    /// `url` for remote replicas (empty if none); for `file`, the absolute directory from `url` or
    /// `path`.
    pub url: String,
    /// `sync-interval`: how often new LTX files are uploaded (default 1s, must be > 0).
    pub sync_interval: Duration,
    /// `max-sync-ltx-files`: the most LTX files uploaded in one sync (default 256).
    pub max_sync_ltx_files: u64,
    /// `auto-recover`: reset damaged local state and snapshot again (default false).
    pub auto_recover: bool,
    /// Backend settings (`region`, `endpoint`, ...), passed through unchanged.
    pub settings: BTreeMap<String, String>,
    /// End-to-end encryption (docs/encryption.md): the replica's `age` block, else the
    /// top-level one; unset when absent or empty.
    pub age: AgeConfig,
}

/// By hand: the URL and settings may hold secrets ([`storage::secret`]).
impl std::fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaConfig")
            .field("kind", &self.kind)
            .field("url", &storage::redact_url(&self.url))
            .field("sync_interval", &self.sync_interval)
            .field("max_sync_ltx_files", &self.max_sync_ltx_files)
            .field("auto_recover", &self.auto_recover)
            .field(
                "settings",
                &storage::secret::debug_settings(
                    self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            )
            .field("age", &self.age.is_set())
            .finish()
    }
}

impl ReplicaConfig {
    /// Where the replica is, as the storage crate opens it: the file directory, or the URL
    /// with every backend setting layered as Litestream layers them.
    pub fn location(&self) -> storage::Result<storage::ReplicaUrl> {
        if self.kind == ReplicaKind::File {
            return Ok(storage::ReplicaUrl::File(self.url.clone().into()));
        }
        let url = (!self.url.is_empty()).then_some(self.url.as_str());
        storage::ReplicaUrl::from_config(
            self.kind.as_str(),
            url,
            self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// Replica fields that may appear at top level, per replica, or both. No `Debug`: the
/// settings hold secrets as written.
#[derive(Clone, Default)]
pub(crate) struct ReplicaFields {
    sync_interval: Option<Duration>,
    max_sync_ltx_files: Option<u64>,
    auto_recover: Option<bool>,
    /// Backend key -> (its key path, its value).
    settings: BTreeMap<String, (String, String)>,
    age: Option<AgeConfig>,
}

pub(crate) fn read_replica_fields(n: &mut Node<'_>) -> Result<ReplicaFields, ConfigError> {
    let mut f = ReplicaFields {
        sync_interval: n.duration("sync-interval")?,
        max_sync_ltx_files: n.uint("max-sync-ltx-files")?,
        auto_recover: n.bool("auto-recover")?,
        ..Default::default()
    };
    // Parsed but unused by Litestream too.
    n.duration("validation-interval")?;
    if let Some(v) = n.get("age") {
        // Unknown keys are errors here, not warnings: a misspelt `recipients` would
        // otherwise upload plaintext.
        let age = serde_yaml_ng::from_value::<AgeConfig>(v.clone())
            .map_err(|e| key_err(&n.key("age"), e.to_string()))?;
        f.age = Some(age).filter(AgeConfig::is_set);
    }
    for k in storage::backend_keys() {
        // `root-cas` is a list in Litestream; backends take it one path per line.
        if k == "root-cas" {
            if let Some(Value::Sequence(items)) = n.get(k) {
                let mut paths = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => paths.push(s.clone()),
                        _ => return Err(key_err(&n.key(k), "expected a list of file paths")),
                    }
                }
                f.settings
                    .insert(k.to_owned(), (n.key(k), paths.join("\n")));
                continue;
            }
        }
        if let Some(v) = n.scalar(k)? {
            f.settings.insert(k.to_owned(), (n.key(k), v));
        }
    }
    Ok(f)
}

/// One replica section, with the top-level replica keys `global` as defaults. Settings this
/// implementation does not act on yet go to `unsupported`.
pub(crate) fn read_replica(
    n: &mut Node<'_>,
    global: &ReplicaFields,
    unsupported: &mut Vec<ConfigError>,
) -> Result<ReplicaConfig, ConfigError> {
    let ty = n.string("type")?.filter(|s| !s.is_empty());
    let url = n.string("url")?.filter(|s| !s.is_empty());
    let path = n.string("path")?.filter(|s| !s.is_empty());
    n.string("name")?;
    let own = read_replica_fields(n)?;
    let scheme = url
        .as_deref()
        .and_then(|u| u.split_once("://").map(|(s, _)| s.to_owned()));
    let kind_name = ty
        .clone()
        .or(scheme.clone())
        .unwrap_or_else(|| "file".into());
    let kind_key = if ty.is_some() {
        n.key("type")
    } else {
        n.key("url")
    };
    let kind = ReplicaKind::from_name(&kind_name)
        .ok_or_else(|| key_err(&kind_key, format!("unknown replica type {kind_name:?}")))?;
    if let (Some(t), Some(s)) = (&ty, &scheme) {
        if t != s {
            return Err(key_err(
                &n.key("type"),
                format!("type {t:?} does not match the URL scheme {s:?}"),
            ));
        }
    }
    let own_settings = own.settings.clone();
    let mut settings: BTreeMap<String, (String, String)> = global
        .settings
        .iter()
        .filter(|(k, _)| storage::inherited_from_top_level(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    settings.extend(own.settings);
    let url = match kind {
        ReplicaKind::File => {
            let p = match (url, path) {
                (Some(_), Some(_)) => {
                    return Err(key_err(
                        &n.key("path"),
                        "cannot specify url & path for file replica",
                    ))
                }
                (Some(u), None) => {
                    // Litestream drops the query string of file URLs.
                    let rest = u.strip_prefix("file://").unwrap_or(&u);
                    let p = rest.split(['?', '#']).next().unwrap_or_default();
                    if !p.starts_with('/') {
                        return Err(key_err(
                            &n.key("url"),
                            "file URLs need an absolute path (file:///path)",
                        ));
                    }
                    p.to_owned()
                }
                (None, Some(p)) => {
                    if p.contains("://") {
                        return Err(key_err(&n.key("path"), "a replica path must not be a URL"));
                    }
                    p
                }
                (None, None) => return Err(key_err(&n.key("path"), "file replica path required")),
            };
            let abs = expand_path(&p).map_err(|e| key_err(&n.key("path"), e))?;
            // Top-level backend keys are defaults for the replicas they apply to; only a key
            // written on this file replica itself is a mistake worth reporting.
            if let Some((_, (key, _))) = own_settings.iter().next() {
                return Err(key_err(
                    key,
                    "this setting does not apply to a file replica",
                ));
            }
            settings.clear();
            abs.to_string_lossy().into_owned()
        }
        _ => {
            // The YAML `path` of a remote replica is the key prefix (or directory) inside it.
            if let Some(p) = path {
                settings.insert("path".into(), (n.key("path"), p));
            }
            let pairs: Vec<(&str, &str)> = settings
                .iter()
                .map(|(k, (_, v))| (k.as_str(), v.as_str()))
                .collect();
            // Parse now so a bad setting stops start-up with the key named, not later.
            storage::ReplicaUrl::from_config(kind.as_str(), url.as_deref(), pairs).map_err(
                |e| {
                    let key = if url.is_some() {
                        kind_key.clone()
                    } else {
                        n.path.clone()
                    };
                    key_err(&key, e.to_string())
                },
            )?;
            url.unwrap_or_default()
        }
    };
    let sync_interval = own
        .sync_interval
        .or(global.sync_interval)
        .unwrap_or(defaults::SYNC_INTERVAL);
    if sync_interval.is_zero() {
        return Err(key_err(&n.key("sync-interval"), "must be greater than 0"));
    }
    let age = own
        .age
        .clone()
        .or_else(|| global.age.clone())
        .unwrap_or_default();
    if let Err(e) = check_age(&age) {
        unsupported.push(key_err(&n.key("age"), e));
    }
    let auto_recover = own.auto_recover.or(global.auto_recover).unwrap_or(false);
    Ok(ReplicaConfig {
        kind,
        url,
        sync_interval,
        max_sync_ltx_files: own
            .max_sync_ltx_files
            .or(global.max_sync_ltx_files)
            .unwrap_or(defaults::MAX_SYNC_LTX_FILES),
        auto_recover,
        settings: settings.into_iter().map(|(k, (_, v))| (k, v)).collect(),
        age,
    })
}

/// What `replicate` needs of an `age` block: the engine both writes a replica (to the
/// recipients) and reads it back (compaction, the start-up position check), so an encrypted
/// replica needs both halves, and they must match. Identity files are read now so that a
/// missing one stops start-up. A restore needs only identities and does not ask this.
fn check_age(age: &AgeConfig) -> Result<(), String> {
    if !age.is_set() {
        return Ok(());
    }
    if age.recipients.is_empty() {
        return Err(
            "age.identities without age.recipients: the engine encrypts what it \
                    writes to the recipients (age1... public keys)"
                .into(),
        );
    }
    if age.identities.is_empty() {
        return Err(
            "age.recipients without age.identities: the engine reads its files back \
                    to compact them, which needs an identity of one of the recipients"
                .into(),
        );
    }
    storage::age::AgeKeys::load(age)
        .and_then(|k| k.check_round_trip())
        .map(|_| ())
        .map_err(|e| e.to_string())
}
