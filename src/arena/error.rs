//! The arena's errors: what went wrong, with the path and the reason in the message.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error from the arena. [`ArenaError::needs_rebuild`] tells the store when to replace the
/// file ([`crate::arena::Arena::create_new`]) and rebuild it from SQLite.
#[derive(Debug)]
pub enum ArenaError {
    /// A system call failed (`context` says which, on what file).
    Io {
        /// What was being done, e.g. "reserving chunk 3 of /db/x.arena".
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is damaged: truncated, overwritten, checksum mismatch, inconsistent fields.
    Corrupt(String),
    /// The file is valid but not for this build or caller: another format version or byte
    /// order, another dimension, quantization or embedding model.
    Incompatible(String),
    /// Another writer (this process or another) holds the file.
    Locked(PathBuf),
    /// A bad argument: wrong vector length, a non-finite value, a slot never appended, an
    /// invalid parameter, a full arena. Nothing was changed.
    InvalidInput(String),
}

/// The kind of an [`ArenaError`], for matching without the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaErrorKind {
    /// See [`ArenaError::Io`].
    Io,
    /// See [`ArenaError::Corrupt`].
    Corrupt,
    /// See [`ArenaError::Incompatible`].
    Incompatible,
    /// See [`ArenaError::Locked`].
    Locked,
    /// See [`ArenaError::InvalidInput`].
    InvalidInput,
}

impl ArenaError {
    /// The kind of error.
    pub fn kind(&self) -> ArenaErrorKind {
        match self {
            ArenaError::Io { .. } => ArenaErrorKind::Io,
            ArenaError::Corrupt(_) => ArenaErrorKind::Corrupt,
            ArenaError::Incompatible(_) => ArenaErrorKind::Incompatible,
            ArenaError::Locked(_) => ArenaErrorKind::Locked,
            ArenaError::InvalidInput(_) => ArenaErrorKind::InvalidInput,
        }
    }

    /// True for a file that should be replaced by a fresh arena and rebuilt from the source of
    /// truth (corrupt or incompatible); false for errors that replacing would not fix or would
    /// make worse (I/O, locked by a live writer, bad input).
    pub fn needs_rebuild(&self) -> bool {
        matches!(self, ArenaError::Corrupt(_) | ArenaError::Incompatible(_))
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ArenaError::Io { context: context.into(), source }
    }
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::Io { context, source } => write!(f, "arena I/O error while {context}: {source}"),
            ArenaError::Corrupt(r) => write!(f, "arena file is corrupt: {r}"),
            ArenaError::Incompatible(r) => write!(f, "arena file is incompatible: {r}"),
            ArenaError::Locked(p) => write!(f, "arena file {} is locked by another writer", p.display()),
            ArenaError::InvalidInput(r) => write!(f, "invalid arena input: {r}"),
        }
    }
}

impl std::error::Error for ArenaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ArenaError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
