//! The one error type of the codec module.

use std::fmt;

/// Why a blob could not be encoded or decoded. Every case is a plain value: decoding never
/// panics on bad input, it returns one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The blob ends before its header (or a length-prefixed field) does.
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// The format version in the first byte is not one this build reads.
    UnsupportedVersion(u8),
    /// The codec id in the first byte is not raw (0), lz4 (1) or zlib (2).
    UnknownCodec(u8),
    /// The blob was compressed with a dictionary the caller did not supply.
    UnknownDictionary(u32),
    /// The declared (or given) uncompressed length is over [`MAX_VALUE_LEN`](super::MAX_VALUE_LEN):
    /// refused before allocating, so a corrupt row cannot make us allocate gigabytes.
    TooLarge {
        /// The length declared by the header or given to the encoder.
        len: u64,
    },
    /// The body decoded to a different number of bytes than the header declares.
    LengthMismatch {
        /// From the header.
        declared: usize,
        /// What the body produced: its size for a raw body; declared + 1 when it holds more than
        /// declared; the most it could produce when it is too short to hold the declared length.
        actual: usize,
    },
    /// The decoded bytes do not hash to the checksum of the header: a flipped bit somewhere.
    ChecksumMismatch {
        /// From the header.
        expected: u32,
        /// Of the decoded bytes.
        actual: u32,
    },
    /// The lz4 or zlib body failed to decode.
    Corrupt {
        /// The codec whose decoder failed.
        codec: &'static str,
        /// The decoder's own words.
        reason: String,
    },
    /// The header is readable but inconsistent (a varint too long, a raw blob naming a dictionary).
    MalformedHeader(&'static str),
    /// A dictionary that cannot be used: id 0 (reserved for "none") or over the size limit.
    InvalidDictionary(&'static str),
    /// A trajectory body that does not parse (bad UTF-8, an action index out of range, ...).
    MalformedTrajectory(&'static str),
    /// The compressor itself failed (not expected; reported rather than panicking).
    Compress(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what } => write!(f, "blob truncated while reading the {what}"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported blob format version {v}"),
            Self::UnknownCodec(id) => write!(f, "unknown codec id {id} (expected 0 raw, 1 lz4 or 2 zlib)"),
            Self::UnknownDictionary(id) => write!(f, "blob needs dictionary {id}, which is not loaded"),
            Self::TooLarge { len } => {
                write!(f, "length {len} is over the limit of {} bytes", super::MAX_VALUE_LEN)
            }
            Self::LengthMismatch { declared, actual } => {
                write!(f, "blob declares {declared} bytes but its body holds {actual}")
            }
            Self::ChecksumMismatch { expected, actual } => {
                write!(f, "checksum mismatch: header says {expected:#010x}, data hashes to {actual:#010x}")
            }
            Self::Corrupt { codec, reason } => write!(f, "corrupt {codec} body: {reason}"),
            Self::MalformedHeader(why) => write!(f, "malformed blob header: {why}"),
            Self::InvalidDictionary(why) => write!(f, "invalid dictionary: {why}"),
            Self::MalformedTrajectory(why) => write!(f, "malformed trajectory: {why}"),
            Self::Compress(why) => write!(f, "compression failed: {why}"),
        }
    }
}

impl std::error::Error for CodecError {}
