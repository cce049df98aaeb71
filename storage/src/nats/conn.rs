//! The NATS connection of one replica: made on first use (never in `open`), shared by every
//! operation, re-made after the client gave up on it, and closed after a while without use so
//! an idle replica sends nothing, not even the client's PINGs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::object_store::ObjectStore;
use async_nats::{Client, ConnectErrorKind, ConnectOptions};

use super::settings::NatsSettings;

/// How often the client PINGs a connection in use: Litestream's `PingInterval`.
pub const PING_INTERVAL: Duration = Duration::from_secs(120);

/// How long a connection stays open without an operation. Shorter than [`PING_INTERVAL`],
/// so an idle replica closes its connection before the first PING.
pub const IDLE_CLOSE: Duration = Duration::from_secs(90);

/// An error of the NATS client, with what decides whether to try again.
#[derive(Debug, Clone)]
pub(crate) struct NatsError {
    pub msg: String,
    pub retryable: bool,
    pub not_found: bool,
    /// Short label for the error metrics.
    pub code: &'static str,
}

impl NatsError {
    pub fn fatal(msg: impl Into<String>, code: &'static str) -> Self {
        NatsError {
            msg: msg.into(),
            retryable: false,
            not_found: false,
            code,
        }
    }

    pub fn transient(msg: impl Into<String>, code: &'static str) -> Self {
        NatsError {
            retryable: true,
            ..NatsError::fatal(msg, code)
        }
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        NatsError {
            not_found: true,
            ..NatsError::fatal(msg, "NotFound")
        }
    }

    /// Classifies an error of the client by its kind's debug name and its message: what
    /// names a missing object, a bad name or a refusal is final, while time-outs, lost
    /// connections and a JetStream that does not answer yet heal by themselves.
    pub fn classify(kind: &str, msg: &str) -> Self {
        let msg = msg.to_owned();
        let lower = msg.to_ascii_lowercase();
        if kind == "NotFound" {
            return NatsError::not_found(msg);
        }
        let fatal_kind = matches!(
            kind,
            "InvalidName" | "ReadChunks" | "BucketLink" | "InvalidBucketName"
        );
        let fatal_text = [
            "authorization",
            "permission",
            "insufficient resources",
            "maximum bytes",
            "maximum messages",
            "stream not found",
            "invalid",
            "wrong digest",
        ]
        .iter()
        .any(|t| lower.contains(t));
        if fatal_kind || fatal_text {
            NatsError::fatal(msg, "Fatal")
        } else {
            NatsError::transient(
                msg,
                if kind == "TimedOut" {
                    "TimedOut"
                } else {
                    "Transient"
                },
            )
        }
    }
}

impl NatsError {
    /// What kind of failure this is for callers: refusals of the credentials are told apart.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind;
        let lower = self.msg.to_ascii_lowercase();
        if self.not_found {
            ErrorKind::NotFound
        } else if self.retryable {
            ErrorKind::Transient
        } else if lower.contains("authorization") || lower.contains("permission") {
            ErrorKind::Auth
        } else {
            ErrorKind::Fatal
        }
    }
}

impl crate::transport::retry::Retryable for NatsError {
    fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl std::fmt::Display for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Joins an error with its source chain.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !msg.contains(&m) {
            msg = format!("{msg}: {m}");
        }
        src = s.source();
    }
    msg
}

/// The kind of an async-nats error as its `Debug` name (`NotFound`, `TimedOut`, ...).
pub(crate) fn kind_name<K: std::fmt::Debug>(k: K) -> String {
    format!("{k:?}")
}

#[derive(Clone)]
struct Live {
    client: Client,
    store: ObjectStore,
    generation: u64,
}

struct Inner {
    settings: NatsSettings,
    live: tokio::sync::Mutex<Option<Live>>,
    generation: AtomicUsize,
    /// Operations holding the connection now.
    busy: AtomicUsize,
    last_used: Mutex<Instant>,
    idle_close: Duration,
    /// Connections made so far, for tests.
    connects: AtomicUsize,
}

/// The lazily made connection of one replica.
#[derive(Clone)]
pub(crate) struct Conn {
    inner: Arc<Inner>,
}

/// Marks the connection as in use until dropped.
pub(crate) struct InUse {
    inner: Arc<Inner>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        *self
            .inner
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.inner.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    pub fn new(settings: NatsSettings, idle_close: Duration) -> Conn {
        Conn {
            inner: Arc::new(Inner {
                settings,
                live: tokio::sync::Mutex::new(None),
                generation: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                last_used: Mutex::new(Instant::now()),
                idle_close,
                connects: AtomicUsize::new(0),
            }),
        }
    }

    pub fn settings(&self) -> &NatsSettings {
        &self.inner.settings
    }

    /// Connections made so far.
    pub fn connects(&self) -> usize {
        self.inner.connects.load(Ordering::SeqCst)
    }

    /// Whether a connection is open now.
    pub async fn is_open(&self) -> bool {
        self.inner.live.lock().await.is_some()
    }

    /// The bucket, connecting first when there is no usable connection.
    pub async fn store(&self) -> Result<(ObjectStore, InUse), NatsError> {
        let mut live = self.inner.live.lock().await;
        if let Some(l) = live.as_ref() {
            // A client that gave up reconnecting (or whose runtime is gone) stays
            // disconnected: start over rather than wait on it.
            if l.client.connection_state() == State::Disconnected {
                *live = None;
            }
        }
        let l = match live.as_ref() {
            Some(l) => l.clone(),
            None => {
                let l = self.connect().await?;
                *live = Some(l.clone());
                l
            }
        };
        self.inner.busy.fetch_add(1, Ordering::SeqCst);
        Ok((
            l.store,
            InUse {
                inner: self.inner.clone(),
            },
        ))
    }

    /// Forgets the connection after an error that may have come from it, so the next
    /// attempt connects again instead of waiting on a dead one.
    pub async fn reset_if_disconnected(&self) {
        let mut live = self.inner.live.lock().await;
        if live
            .as_ref()
            .is_some_and(|l| l.client.connection_state() != State::Connected)
        {
            *live = None;
        }
    }

    async fn connect(&self) -> Result<Live, NatsError> {
        let s = &self.inner.settings;
        let opts = options(s).await?;
        let server = s.server_url().to_owned();
        let client = opts.connect(server.as_str()).await.map_err(|e| {
            let msg = format!("nats: failed to connect to {server}: {}", chain(&e));
            // A certificate the client refuses comes back as an I/O error; asking again
            // gets the same certificate.
            let tls = msg.contains("certificate") || msg.contains("TLS");
            match e.kind() {
                ConnectErrorKind::Io
                | ConnectErrorKind::TimedOut
                | ConnectErrorKind::Dns
                | ConnectErrorKind::MaxReconnects
                    if !tls =>
                {
                    NatsError::transient(msg, "Connect")
                }
                _ => NatsError::fatal(msg, "Connect"),
            }
        })?;
        let js = async_nats::jetstream::new(client.clone());
        let store = match js.get_object_store(&s.bucket).await {
            Ok(store) => store,
            Err(e) => {
                let mut err = NatsError::classify(&kind_name(e.kind()), &chain(&e));
                err.msg = format!(
                    "nats: failed to access object store bucket {:?} on {server} (bucket must be \
                     created beforehand): {}",
                    s.bucket, err.msg
                );
                if err.msg.contains("not found") {
                    err.retryable = false;
                }
                let _ = client.drain().await;
                return Err(err);
            }
        };
        self.inner.connects.fetch_add(1, Ordering::SeqCst);
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        *self
            .inner
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        tokio::spawn(close_when_idle(Arc::downgrade(&self.inner), generation));
        Ok(Live {
            client,
            store,
            generation,
        })
    }
}

/// Closes connection `generation` once it has not been used for `idle_close`; ends when the
/// replica is gone or the connection was replaced.
async fn close_when_idle(inner: Weak<Inner>, generation: u64) {
    loop {
        let wait = {
            let Some(inner) = inner.upgrade() else { return };
            let since = inner
                .last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed();
            inner
                .idle_close
                .saturating_sub(since)
                .max(Duration::from_millis(100))
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else { return };
        let mut live = inner.live.lock().await;
        match live.as_ref() {
            Some(l) if l.generation == generation => {}
            _ => return,
        }
        let idle = inner
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        if inner.busy.load(Ordering::SeqCst) == 0 && idle >= inner.idle_close {
            if let Some(l) = live.take() {
                drop(live);
                tracing::debug!(bucket = %inner.settings.bucket, "nats: closing idle connection");
                let _ = l.client.drain().await;
            }
            return;
        }
    }
}

/// The client options Litestream sets: authentication (JWT and seed, creds file, NKey,
/// user and password, token, in that order), TLS, reconnects, time-outs and PINGs.
async fn options(s: &NatsSettings) -> Result<ConnectOptions, NatsError> {
    let bad = |key: &str, m: String| {
        NatsError::fatal(format!("nats: {}: {key}: {m}", s.source), "Config")
    };
    let mut o = ConnectOptions::new()
        .connection_timeout(s.timeout)
        .ping_interval(PING_INTERVAL)
        .max_reconnects(if s.max_reconnects < 0 {
            None
        } else {
            // async-nats reads 0 as unlimited; Go's 0 means no reconnect.
            Some((s.max_reconnects as usize).max(1))
        });
    // The client asks before every attempt, the first one of a (re)connect included.
    let wait = s.reconnect_wait;
    o = o.reconnect_delay_callback(
        move |attempt| {
            if attempt <= 1 {
                Duration::ZERO
            } else {
                wait
            }
        },
    );
    if !s.jwt.is_empty() && !s.seed.is_empty() {
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            s.jwt.expose(),
            s.seed.expose()
        );
        o = o
            .credentials(&creds)
            .map_err(|e| bad("jwt/seed", e.to_string()))?;
    } else if !s.creds.is_empty() {
        o = o
            .credentials_file(&s.creds)
            .await
            .map_err(|e| bad("creds", e.to_string()))?;
    } else if !s.nkey.is_empty() {
        if !s.nkey.expose().starts_with('S') {
            return Err(bad(
                "nkey",
                "needs the NKey seed (SU...); a public key cannot sign the server's nonce".into(),
            ));
        }
        o = o.nkey(s.nkey.expose().to_owned());
    } else if !s.username.is_empty() && !s.password.is_empty() {
        o = o.user_and_password(s.username.clone(), s.password.expose().to_owned());
    } else if !s.token.is_empty() {
        o = o.token(s.token.expose().to_owned());
    }
    if s.tls {
        o = o.require_tls(true);
    }
    if !s.client_cert.is_empty() && !s.client_key.is_empty() {
        o = o.add_client_certificate(s.client_cert.clone().into(), s.client_key.clone().into());
    }
    for ca in &s.root_cas {
        o = o.add_root_certificates(ca.into());
    }
    Ok(o)
}
