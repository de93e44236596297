//! One error type for the whole crate: [`Error`] with a [`ErrorKind`], a written message and,
//! where there is one, the underlying cause as `source()`.
#![forbid(unsafe_code)]

use std::fmt;

/// What went wrong, as a value a caller can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument was rejected (empty or over-long id, NaN in an embedding, wrong dimension
    /// or model, oversized data, confidence outside [0, 1], …). Nothing was changed.
    InvalidInput,
    /// A write queue stayed full for longer than the configured bounded wait.
    QueueFull,
    /// The store is closed, or its writer thread has stopped.
    Closed,
    /// Another process holds the write lock on this database file.
    Locked,
    /// The operation needs a writable store, but this one was opened read-only.
    ReadOnly,
    /// The file is not a patternbank database, or was made with another embedding model,
    /// dimension or schema version.
    Incompatible,
    /// SQLite reported an error (the message carries its text and extended code).
    Sqlite,
    /// The file is damaged (an integrity or consistency check failed).
    Corrupt,
    /// An operating-system I/O error.
    Io,
    /// A write was committed by no batch: see [`crate::Store::failed_writes`].
    WriteFailed,
    /// Not available here (for example `search` on a read-only store with no valid arena).
    Unsupported,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::QueueFull => "write queue full",
            ErrorKind::Closed => "store closed",
            ErrorKind::Locked => "database locked by another writer",
            ErrorKind::ReadOnly => "store is read-only",
            ErrorKind::Incompatible => "incompatible database",
            ErrorKind::Sqlite => "sqlite error",
            ErrorKind::Corrupt => "database corrupt",
            ErrorKind::Io => "i/o error",
            ErrorKind::WriteFailed => "write failed",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The crate's error: a kind, a message written for people, and an optional cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), source: None }
    }

    /// Attaches the underlying cause, reported by `source()`.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, context).with_source(err)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a `try_*` write did not enqueue.
pub enum TryError<T> {
    /// The queue was full: nothing was enqueued and the item is handed back at once.
    Full(T),
    /// The write was rejected (bad input, closed or read-only store); nothing was enqueued.
    Rejected(Error),
}

impl<T> TryError<T> {
    /// The item, if it was handed back because the queue was full.
    pub fn into_full(self) -> Option<T> {
        match self {
            TryError::Full(item) => Some(item),
            TryError::Rejected(_) => None,
        }
    }
}

impl<T> fmt::Debug for TryError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryError::Full(_) => f.write_str("Full(..)"),
            TryError::Rejected(e) => f.debug_tuple("Rejected").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for TryError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryError::Full(_) => f.write_str("write queue full; the item was handed back"),
            TryError::Rejected(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T> std::error::Error for TryError<T> {}
