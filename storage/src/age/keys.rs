//! The keys of an encrypted replica, read as the `age` tool reads them: recipients are
//! `age1...` X25519 public keys or SSH public key lines (`ssh-ed25519 ...`, `ssh-rsa ...`);
//! identities are identity files (age secret keys, one per line, or one unencrypted SSH
//! private key) or age secret keys written inline. Parsing is the `age` crate's.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

use super::AgeConfig;
use crate::{Result, StorageError};

pub(crate) type DynIdentity = Box<dyn age::Identity + Send + Sync>;
pub(crate) type DynRecipient = Box<dyn age::Recipient + Send + Sync>;

/// Identity files are small; anything larger is not one (the `age` crate stops at 16 MiB).
const MAX_IDENTITY_FILE: u64 = 1 << 20;

/// Loaded recipients and identities. Its `Debug` shows counts and file names, never a key.
#[derive(Default)]
pub struct AgeKeys {
    pub(crate) recipients: Vec<DynRecipient>,
    pub(crate) identities: Vec<DynIdentity>,
    /// Where the identities came from, for messages: file paths, or `age.identities[i]`.
    pub(crate) identity_sources: Vec<String>,
    pub(crate) migrate: bool,
}

impl std::fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeKeys")
            .field("recipients", &self.recipients.len())
            .field("identities", &self.identity_sources)
            .field("migrate", &self.migrate)
            .finish()
    }
}

fn bad(what: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::config(format!("{what}: {why}"))
}

/// One recipient as written in the config: an X25519 key or an SSH public key line.
fn parse_recipient(s: &str, what: &str) -> Result<DynRecipient> {
    let s = s.trim();
    if s.starts_with("age1") {
        return age::x25519::Recipient::from_str(s)
            .map(|r| Box::new(r) as DynRecipient)
            .map_err(|e| bad(what, format!("not a valid age recipient: {e}")));
    }
    if s.starts_with("ssh-") {
        use age::ssh::ParseRecipientKeyError as E;
        return age::ssh::Recipient::from_str(s)
            .map(|r| Box::new(r) as DynRecipient)
            .map_err(|e| {
                let why = match e {
                    E::Invalid(why) => format!("not a valid SSH public key ({why})"),
                    E::RsaModulusTooLarge => "an RSA key larger than age supports".into(),
                    E::RsaModulusTooSmall => "an RSA key under 2048 bits".into(),
                    _ => "an SSH key type age cannot encrypt to".into(),
                };
                bad(what, why)
            });
    }
    Err(bad(
        what,
        "expected an age public key (age1...) or an SSH public key (ssh-ed25519 ..., ssh-rsa ...)",
    ))
}

/// Whether a configured identity is a key written inline rather than a file path.
pub(crate) fn is_inline_key(s: &str) -> bool {
    s.trim_start().starts_with("AGE-SECRET-KEY-")
}

impl AgeKeys {
    /// Loads the keys of a config block. Identity files are read now, so a missing or
    /// unreadable one is an error at start-up, naming it.
    pub fn load(cfg: &AgeConfig) -> Result<AgeKeys> {
        let mut keys = AgeKeys {
            migrate: cfg.migrate_from_plaintext,
            ..AgeKeys::default()
        };
        for (i, r) in cfg.recipients.iter().enumerate() {
            let r = parse_recipient(r, &format!("age.recipients[{i}]"))?;
            keys.recipients.push(r);
        }
        for (i, id) in cfg.identities.iter().enumerate() {
            let t = id.trim();
            if is_inline_key(t) {
                keys.add_identities(t.as_bytes(), &format!("age.identities[{i}]"))?;
            } else if t.is_empty() {
                return Err(bad(
                    &format!("age.identities[{i}]"),
                    "empty (an unset environment variable?)",
                ));
            } else {
                keys.add_identity_file(Path::new(t))?;
            }
        }
        Ok(keys)
    }

    /// Adds the identities of one file (`ls-restore -age-identity FILE`).
    pub fn add_identity_file(&mut self, path: &Path) -> Result<()> {
        let what = path.display().to_string();
        let f = std::fs::File::open(path)
            .map_err(|e| bad(&what, format!("cannot read identity file: {e}")))?;
        let mut text = Vec::new();
        f.take(MAX_IDENTITY_FILE + 1)
            .read_to_end(&mut text)
            .map_err(|e| bad(&what, format!("cannot read identity file: {e}")))?;
        if text.len() as u64 > MAX_IDENTITY_FILE {
            return Err(bad(&what, "too large for an identity file"));
        }
        self.add_identities(&text, &what)
    }

    fn add_identities(&mut self, text: &[u8], what: &str) -> Result<()> {
        if super::is_age_file(text) {
            return Err(bad(
                what,
                "a passphrase-encrypted identity file; give the decrypted identity",
            ));
        }
        let n = self.identities.len();
        if text.windows(11).any(|w| w == b"-----BEGIN ") {
            use age::ssh::Identity as Ssh;
            let id = Ssh::from_buffer(BufReader::new(text), Some(what.to_owned()))
                .map_err(|e| bad(what, format!("not a usable SSH private key: {e}")))?;
            match id {
                Ssh::Unencrypted(_) => self.identities.push(Box::new(id)),
                Ssh::Encrypted(_) => {
                    return Err(bad(
                        what,
                        "a passphrase-protected SSH key; use an unencrypted key or an age identity",
                    ))
                }
                Ssh::Unsupported(_) => {
                    return Err(bad(what, "an SSH key type age does not support"))
                }
            }
        } else {
            let ids = age::IdentityFile::from_buffer(BufReader::new(text))
                .and_then(|f| f.into_identities().map_err(std::io::Error::other))
                .map_err(|e| bad(what, format!("not an age identity file: {e}")))?;
            self.identities.extend(ids);
        }
        if self.identities.len() == n {
            return Err(bad(what, "holds no identity"));
        }
        self.identity_sources.push(what.to_owned());
        Ok(())
    }

    /// Whether files can be written (there is a recipient).
    pub fn can_encrypt(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// Whether files can be read (there is an identity).
    pub fn can_decrypt(&self) -> bool {
        !self.identities.is_empty()
    }

    /// Whether plain LTX files are accepted next to encrypted ones.
    pub fn migrating(&self) -> bool {
        self.migrate
    }

    /// Checks that the identities open what is encrypted to the recipients, so that a writer
    /// that must read its own files back (compaction) finds a key mismatch at start-up.
    pub fn check_round_trip(&self) -> Result<()> {
        if !self.can_encrypt() || !self.can_decrypt() {
            return Ok(());
        }
        let fail = |e: &dyn std::fmt::Display| StorageError::config(format!("age: {e}"));
        let enc = age::Encryptor::with_recipients(self.recipient_refs()).map_err(|e| fail(&e))?;
        let mut sealed = Vec::new();
        let mut w = enc.wrap_output(&mut sealed).map_err(|e| fail(&e))?;
        w.write_all(b"ls").map_err(|e| fail(&e))?;
        w.finish().map_err(|e| fail(&e))?;
        let opened = age::Decryptor::new(&sealed[..])
            .and_then(|d| d.decrypt(self.identity_refs()))
            .map(|mut r| {
                let mut out = Vec::new();
                r.read_to_end(&mut out).map(|_| out)
            });
        match opened {
            Ok(Ok(out)) if out == b"ls" => Ok(()),
            _ => Err(StorageError::config(
                "age: none of age.identities decrypts files encrypted to age.recipients \
                 (the identity of at least one recipient must be given, to read the replica back)",
            )),
        }
    }

    pub(crate) fn recipient_refs(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.recipients
            .iter()
            .map(|r| r.as_ref() as &dyn age::Recipient)
    }

    pub(crate) fn identity_refs(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity)
    }
}
