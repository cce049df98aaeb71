//! End-to-end encrypted replicas with [age](https://age-encryption.org): an [`AgeReplica`]
//! wraps any [`ReplicaClient`] so that every file written to it is an age file whose plaintext
//! is the LTX file, and every read decrypts. Names, levels, listings, retries and backends are
//! those of the wrapped replica, untouched (docs/encryption.md).
//!
//! Reads stay ranged: age seals its payload in 64 KiB chunks, each authenticated on its own, so
//! a plaintext range is served by fetching and opening only the chunks that hold it
//! ([`layout`]). The chunks are opened with the `age` crate's own `StreamReader`, seeking over
//! a source that holds just the fetched chunks ([`open`]); nothing here is cryptography of our
//! own.
//!
//! Sizes that callers see are plaintext sizes: callers compute offsets from them (the page
//! index at the end of a file). A file's plaintext size follows from its stored size and the
//! length of its age header, which depends on the recipients (and random "grease" stanzas), so
//! the first listing of a file reads its first bytes once; our own writes are known without.

mod client;
mod keys;
mod layout;
mod open;
mod seal;

use serde::Deserialize;

pub use client::AgeReplica;
pub use keys::AgeKeys;

/// The first bytes of every age file (the version line of its header).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Whether `prefix`, the first bytes of a replica file, is the start of an age file: a reader
/// without the identity can then say so instead of "invalid LTX magic".
pub fn is_age_file(prefix: &[u8]) -> bool {
    let n = prefix.len().min(AGE_MAGIC.len());
    n >= 4 && prefix[..n] == AGE_MAGIC[..n]
}

/// The `age:` block of a replica in the config (docs/encryption.md#configuration).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgeConfig {
    /// Public keys every new file is encrypted to: `age1...` or an SSH public key line.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Private keys that decrypt: a path to an identity file (age keys, one or more, or an
    /// unencrypted SSH private key), or a key written inline (`AGE-SECRET-KEY-1...`, as
    /// Litestream 0.3.x takes it).
    #[serde(default)]
    pub identities: Vec<String>,
    /// Accept plain (unencrypted) LTX files in the replica next to encrypted ones, while an
    /// existing replica is being moved to encryption.
    #[serde(default)]
    pub migrate_from_plaintext: bool,
}

/// Identities written inline are secret keys: `Debug` shows where each identity comes from
/// and never a key.
impl std::fmt::Debug for AgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self
            .identities
            .iter()
            .map(|i| {
                if keys::is_inline_key(i) {
                    "<inline secret key>"
                } else {
                    i.as_str()
                }
            })
            .collect();
        f.debug_struct("AgeConfig")
            .field("recipients", &self.recipients)
            .field("identities", &ids)
            .field("migrate_from_plaintext", &self.migrate_from_plaintext)
            .finish()
    }
}

impl AgeConfig {
    /// Whether the block asks for encryption at all (Litestream 0.5.17 accepts an empty one).
    pub fn is_set(&self) -> bool {
        !self.recipients.is_empty() || !self.identities.is_empty()
    }
}

#[cfg(test)]
mod tests;
