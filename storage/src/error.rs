//! The one error type of every backend. It is opaque on purpose: callers ask what kind of
//! failure it is ([`StorageError::kind`] or the `is_*` predicates) instead of matching text,
//! and new kinds can be added without breaking them. The message always names the object,
//! key, URL or setting it is about.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, as far as a caller needs to decide what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object (or file) does not exist.
    NotFound,
    /// A create-only write found the object already there (see
    /// [`ReplicaClient::create_ltx`](crate::ReplicaClient::create_ltx)).
    AlreadyExists,
    /// The credentials were refused or may not do this.
    Auth,
    /// The service asked us to slow down; asking again later should work.
    Throttled,
    /// A failure that may heal by itself: a dropped connection, a timeout, a server error.
    Transient,
    /// The settings (URL, keys, credentials file) are wrong; nothing was sent.
    InvalidConfig,
    /// Anything else that asking again will not cure (a bad request, a range past the end,
    /// an object that changed while being read, an operation the backend cannot do).
    Fatal,
}

impl ErrorKind {
    /// Whether the same request may succeed if made again.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Transient)
    }

    /// The kind of an HTTP answer (or of no answer, `None`): the status, refined by the
    /// service's error code where one says more (S3 and Azure throttle with codes).
    pub fn from_http(status: Option<u16>, code: &str) -> ErrorKind {
        const THROTTLED: &[&str] = &[
            "SlowDown",
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestThrottled",
            "RequestThrottledException",
            "TooManyRequestsException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "BandwidthLimitExceeded",
            "EC2ThrottledException",
            "ServerBusy",
        ];
        const TRANSIENT: &[&str] = &[
            "TransactionInProgressException",
            "RequestTimeout",
            "RequestTimeoutException",
            "RequestCanceled",
            "InternalError",
            "ServiceUnavailable",
            "PriorRequestNotComplete",
            "OperationTimedOut",
        ];
        if THROTTLED.contains(&code) {
            return ErrorKind::Throttled;
        }
        if TRANSIENT.contains(&code) {
            return ErrorKind::Transient;
        }
        match status {
            None | Some(408 | 500 | 502 | 503 | 504 | 509) => ErrorKind::Transient,
            Some(429) => ErrorKind::Throttled,
            Some(401 | 403) => ErrorKind::Auth,
            Some(404) => ErrorKind::NotFound,
            Some(_) => ErrorKind::Fatal,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "exists",
            ErrorKind::Auth => "auth",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transport",
            ErrorKind::InvalidConfig => "config",
            ErrorKind::Fatal => "error",
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed replica operation: a kind and a message that names what it was about.
pub struct StorageError {
    kind: ErrorKind,
    message: String,
    /// The metrics label of the failure (an S3 or Azure error code, an HTTP status, ...).
    code: Cow<'static, str>,
    source: Option<Source>,
}

impl StorageError {
    /// An error of `kind` with a message that names the object it is about.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> StorageError {
        StorageError {
            kind,
            message: message.into(),
            code: Cow::Borrowed(kind.label()),
            source: None,
        }
    }

    /// `key` does not exist.
    pub fn not_found(key: impl fmt::Display) -> StorageError {
        StorageError::new(ErrorKind::NotFound, format!("{key}: not found"))
    }

    /// A create-only write of `key` found it already written.
    pub fn already_exists(key: impl fmt::Display) -> StorageError {
        StorageError::new(
            ErrorKind::AlreadyExists,
            format!("{key}: already exists (written by someone else)"),
        )
    }

    /// A local I/O error about `key`; a missing file is [`ErrorKind::NotFound`].
    pub fn io(key: impl Into<String>, source: std::io::Error) -> StorageError {
        use std::io::ErrorKind as Io;
        let key = key.into();
        let kind = match source.kind() {
            Io::NotFound => return StorageError::not_found(key),
            Io::AlreadyExists => ErrorKind::AlreadyExists,
            Io::PermissionDenied => ErrorKind::Auth,
            Io::TimedOut | Io::Interrupted | Io::ConnectionReset | Io::ConnectionAborted => {
                ErrorKind::Transient
            }
            _ => ErrorKind::Fatal,
        };
        StorageError {
            kind,
            message: format!("{key}: {source}"),
            code: Cow::Borrowed(kind.label()),
            source: Some(Box::new(source)),
        }
    }

    /// A replica URL (or entry) that cannot be used. The URL is shown without its secrets
    /// ([`crate::secret::redact_url`]), whoever calls this.
    pub fn invalid_url(url: impl AsRef<str>, reason: impl fmt::Display) -> StorageError {
        let url = crate::secret::redact_url(url.as_ref());
        StorageError::new(
            ErrorKind::InvalidConfig,
            format!("invalid replica URL {url:?}: {reason}"),
        )
    }

    /// Settings that cannot be used (the message names the setting).
    pub fn config(message: impl Into<String>) -> StorageError {
        StorageError::new(ErrorKind::InvalidConfig, message)
    }

    /// A failure asking again will not cure.
    pub fn fatal(message: impl Into<String>) -> StorageError {
        StorageError::new(ErrorKind::Fatal, message)
    }

    /// The metrics label of this failure, when it is more precise than its kind.
    pub(crate) fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> StorageError {
        self.code = code.into();
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the object (or file) does not exist ([`ErrorKind::NotFound`]).
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Whether a create-only write found the object already there ([`ErrorKind::AlreadyExists`]).
    pub fn is_already_exists(&self) -> bool {
        self.kind == ErrorKind::AlreadyExists
    }

    /// Whether the credentials were refused ([`ErrorKind::Auth`]).
    pub fn is_auth(&self) -> bool {
        self.kind == ErrorKind::Auth
    }

    /// Whether the service asked us to slow down ([`ErrorKind::Throttled`]).
    pub fn is_throttled(&self) -> bool {
        self.kind == ErrorKind::Throttled
    }

    /// A failure that may heal by itself (throttling included).
    pub fn is_transient(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Whether the settings are wrong ([`ErrorKind::InvalidConfig`]).
    pub fn is_invalid_config(&self) -> bool {
        self.kind == ErrorKind::InvalidConfig
    }

    /// Whether asking again will not cure it ([`ErrorKind::Fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.kind == ErrorKind::Fatal
    }

    /// The label this failure is counted under in the replica error metrics.
    pub(crate) fn metric_code(&self) -> &str {
        &self.code
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("code", &self.code)
            .finish()
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// The result of a storage operation; errors are [`StorageError`]s.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_http_answers() {
        use ErrorKind::*;
        for (status, code, want) in [
            (Some(503), "SlowDown", Throttled),
            (Some(500), "", Transient),
            (Some(400), "RequestTimeout", Transient),
            (None, "", Transient),
            (Some(429), "", Throttled),
            (Some(503), "ServerBusy", Throttled),
            (Some(403), "SignatureDoesNotMatch", Auth),
            (Some(401), "", Auth),
            (Some(404), "NoSuchKey", NotFound),
            (Some(400), "InvalidArgument", Fatal),
            (Some(412), "", Fatal),
        ] {
            assert_eq!(
                ErrorKind::from_http(status, code),
                want,
                "{status:?} {code}"
            );
        }
        assert!(Throttled.is_retryable() && Transient.is_retryable());
        assert!(!Auth.is_retryable() && !NotFound.is_retryable() && !Fatal.is_retryable());
    }

    #[test]
    fn io_errors_keep_their_source_and_kind() {
        let e = StorageError::io("/r/x.ltx", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(e.is_fatal());
        assert!(e.to_string().starts_with("/r/x.ltx: "), "{e}");
        let src = std::error::Error::source(&e).expect("source");
        assert!(src.downcast_ref::<std::io::Error>().is_some());
        let e = StorageError::io("/r/y", std::io::ErrorKind::NotFound.into());
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "/r/y: not found");
        assert!(
            StorageError::io("/r/z", std::io::ErrorKind::AlreadyExists.into()).is_already_exists()
        );
    }
}
