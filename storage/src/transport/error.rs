//! The one error of an HTTP exchange, whatever the service: what was being done, to which
//! object, the status and the service's error code when there was an answer, and its
//! [`ErrorKind`], from which retries and callers decide.

use crate::error::{ErrorKind, StorageError};

use super::retry::Retryable;

/// A failed request of an HTTP backend.
#[derive(Debug, Clone)]
pub(crate) struct HttpError {
    /// The backend, as its messages start: "s3", "gs", "abs", "webdav".
    pub backend: &'static str,
    /// What was being done: "get object", "list blobs", ...
    pub op: &'static str,
    /// What it was about: `s3://bucket/key`, a WebDAV URL, ...
    pub target: String,
    pub status: Option<u16>,
    /// The service's error code (S3 and Azure have them), or empty.
    pub code: String,
    pub message: String,
    pub kind: ErrorKind,
    /// What to check, for the errors a user can fix (set by the backend).
    pub hint: &'static str,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} {}: ", self.backend, self.op, self.target)?;
        if let Some(s) = self.status {
            write!(f, "HTTP {s} ")?;
        }
        if !self.code.is_empty() {
            f.write_str(&self.code)?;
            if !self.message.is_empty() {
                f.write_str(": ")?;
            }
        }
        f.write_str(&self.message)?;
        f.write_str(self.hint)
    }
}

impl Retryable for HttpError {
    fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl HttpError {
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// The error of an attempt that got no answer, for `f`.
    pub fn with_fault(mut self, f: Fault) -> HttpError {
        self.kind = f.kind();
        self.message = f.message();
        self
    }

    /// Marks the error as one another try will not cure.
    pub fn fatal(mut self) -> HttpError {
        self.kind = ErrorKind::Fatal;
        self
    }

    /// Metrics label: the service's code, else the status, else "transport".
    pub fn metric_code(&self) -> String {
        if !self.code.is_empty() {
            self.code.clone()
        } else if let Some(s) = self.status {
            s.to_string()
        } else {
            "transport".to_owned()
        }
    }
}

impl From<HttpError> for StorageError {
    fn from(e: HttpError) -> StorageError {
        let code = e.metric_code();
        let err = if e.is_not_found() {
            StorageError::not_found(&e.target)
        } else {
            StorageError::new(e.kind, e.to_string())
        };
        err.with_code(code)
    }
}

/// Why one attempt got no HTTP answer.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Connection refused, reset or timed out: worth another try.
    Transport(String),
    /// Our side cannot build or read the request in a way another try would fix.
    Local(String),
    /// No usable credentials (missing, unreadable, or refused by the token endpoint).
    Auth(String),
}

impl Fault {
    pub fn message(self) -> String {
        match self {
            Fault::Transport(m) | Fault::Local(m) | Fault::Auth(m) => m,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Fault::Transport(_) => ErrorKind::Transient,
            Fault::Local(_) => ErrorKind::Fatal,
            Fault::Auth(_) => ErrorKind::Auth,
        }
    }
}
