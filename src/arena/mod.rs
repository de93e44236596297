//! L2: the memory-mapped int8 arena.
//!
//! One file per store (`<db>.arena`) holds, for every pattern with an embedding, its int8 code
//! vector and f32 quantization scale, its f32 original (for rescoring) and the metadata that
//! scoring reads. A scan streams
//! the codes chunk by chunk ([`View::chunks`]); readers take no lock and allocate nothing; one
//! writer appends and publishes. The file is a cache of SQLite: on any doubt at open it is
//! rejected with a specific error, replaced by an empty one ([`Arena::create_new`]) and rebuilt.
//!
//! # File format, version 1
//!
//! All integers and floats in the machine's native byte order (the endianness mark tells a
//! foreign file apart); offsets in bytes.
//!
//! ```text
//!  file offset
//!  0x00000  ┌────────────────────────────┐
//!           │ header copy A (152 bytes)  │  rest of the 4 KiB block zero
//!  0x01000  ├────────────────────────────┤
//!           │ header copy B (152 bytes)  │  rest zero up to 64 KiB
//!  0x10000  ├────────────────────────────┤ ← data_offset
//!           │ chunk 0                    │  chunk_bytes (a multiple of 64 KiB)
//!           ├────────────────────────────┤ ← data_offset + chunk_bytes
//!           │ chunk 1                    │
//!           │ …                          │  chunks are reserved whole (posix_fallocate)
//!           └────────────────────────────┘
//! ```
//!
//! Header copy (A at 0, B at 4096):
//!
//! ```text
//!  off size  field           value
//!    0    8  magic           "PBARENA\0"
//!    8    4  endian mark     u32 0x01020304 (reads 0x04030201 on a foreign machine)
//!   12    4  version         u32 1
//!   16    4  header_len      u32 148: bytes the checksum covers = offset of the checksum
//!   20    4  dim             u32 1..=16384
//!   24    4  stride          u32 dim rounded up to 64 (bytes per code)
//!   28    4  quant kind      u32 0 = one global symmetric scale, 1 = a scale per vector
//!   32    4  scale           f32 global scale: value ≈ code × scale (kind 0)
//!   36    4  chunk_records   u32 C, a power of two in 1..=2^20 (default 16384)
//!   40   64  model id        UTF-8, NUL padded: the embedding model
//!  104    8  chunk_bytes     u64 derived from dim and C (checked)
//!  112    8  data_offset     u64 65536 (checked)
//!  120    8  committed       u64 records 0..committed are valid
//!  128    8  generation      u64 +1 at every header write
//!  136    8  user_seq        u64 the caller's sequence number (last SQLite batch applied)
//!  144    4  reserved        u32 0
//!  148    4  checksum        u32 CRC-32 (IEEE) of bytes 0..148
//! ```
//!
//! Magic, endian mark, version and header_len keep their offsets in every version, so a
//! reader verifies the checksum before trusting anything else and tells "another version" or
//! "another byte order" (incompatible) from "damaged" (corrupt).
//!
//! Chunk `k` at `data_offset + k·chunk_bytes`, records `k·C .. (k+1)·C`; four regions, each
//! 64-byte aligned:
//!
//! ```text
//!  scales_off  = align64(C·stride)
//!  f32_off     = align64(scales_off + C·4)
//!  meta_off    = align64(f32_off + C·dim·4)
//!  chunk_bytes = align(meta_off + C·64, 64 KiB)
//!
//!  chunk offset
//!  0           codes      C × stride  i8; record i at i·stride, zero-padded past dim
//!  scales_off  scales     C × 4       f32; record i at scales_off + i·4
//!  f32_off     originals  C × dim     f32; record i at f32_off + i·dim·4
//!  meta_off    metadata   C × 64 bytes; record i at meta_off + i·64:
//!
//!              off size  field
//!                0    8  rowid          i64  SQLite rowid
//!                8    4  flags          u32  ┐ one atomic 8-byte word (bit 0: FLAG_DEAD)
//!               12    4  confidence     f32  ┘
//!               16    8  last_used_ms   i64  atomic
//!               24    8  created_at_ms  i64
//!               32    4  kind           u32  interned kind id
//!               36   28  reserved       zero
//! ```
//!
//! The scales region holds each record's [`RecordMeta::scale`] (the vector's own scale, quant
//! kind 1; with kind 0 whatever the caller appended), one f32 per record and nowhere else, so
//! a scan kernel reads a chunk's scales as one contiguous array next to its codes: the two
//! regions a scan streams form one prefix of the chunk. Like the codes, it is written once
//! at append and never updated in place.
//!
//! With the default C = 16,384 and dim = 384 a chunk is 31 MiB + 64 KiB (6 MiB of codes, a
//! good unit to stream; 64 KiB of scales; 24 MiB of originals; 1 MiB of metadata) and
//! 1,000,000 records take 62 chunks: few mappings, and a small store wastes at most one partly
//! filled chunk. 65,536 would make the first chunk of every small store over 124 MiB.
//!
//! # Protocol
//!
//! * **Append** writes records at slots ≥ the committed count; **publish** makes them visible
//!   in memory (the count is stored with `Release`; readers load it with `Acquire` and never
//!   look past it); **commit** also makes them durable: with [`Durability::Sync`] it flushes
//!   the written records (their bytes in all four regions; msync + fdatasync) *before*
//!   writing the new header (count, generation + 1) to the copy holding the *older*
//!   generation, then syncs that. A torn header write therefore leaves the other copy valid,
//!   and a valid header never names records that were not yet on disk. Uncommitted appends
//!   are invisible after reopening.
//! * **In-place updates** (flags, confidence, last use) are atomic stores to published
//!   records (codes, scales, originals and the other metadata never change once published);
//!   the next commit flushes them. They need no header change.
//! * **Growth** reserves a whole chunk with `posix_fallocate` (a full disk is an error then,
//!   not a SIGBUS later), maps it alone, and installs it in a fixed table before any record in
//!   it is published: no mapping a reader holds ever moves.
//! * **One writer** across processes: an exclusive `flock` on the arena file (another writer
//!   gets [`ArenaError::Locked`]); read-only opens take no lock and see the file as committed.
//!   Slots below the committed count are never written again, so readers of any process are
//!   safe from later writers; a writer dropped with records published but not committed
//!   leaves the lock to its readers' mappings until they are gone.
//! * **Open** reads the two header copies and maps the committed chunks without touching their
//!   pages: constant time in the arena's size. It validates magic, byte order, version,
//!   checksum, the caller's dimension, quantization and model, the internal consistency of the
//!   header, and the file length against the committed count; it picks the valid copy with the
//!   highest generation and reports a damaged other copy ([`OpenReport::damaged_copy`]), which
//!   the next commit overwrites.
//!
//! Not detected: damage inside the record bytes themselves (no per-record checksum; the arena
//! is rebuildable, and `check` can compare it with SQLite). With [`Durability::NoSync`] a
//! power loss (not a process kill) can leave a valid header over lost records.

mod error;
mod file;
mod format;
mod raw;
mod reader;
mod sys;
mod writer;

pub use error::{ArenaError, ArenaErrorKind};
pub use file::{Arena, OpenReport};
pub use raw::{ChunkView, Chunks, Snapshot, View};
pub use reader::ArenaReader;
pub use writer::ArenaWriter;

/// Records per chunk unless the caller chooses otherwise (see the module docs).
pub const DEFAULT_CHUNK_RECORDS: u32 = 16384;

/// Flag bit: the pattern was deleted (scans skip it). Other bits are the caller's.
pub const FLAG_DEAD: u32 = 1;

/// How codes are scaled back to values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum QuantKind {
    /// One symmetric scale for every vector (the header's): `value ≈ code × scale`.
    Global = 0,
    /// Each record's own scale ([`RecordMeta::scale`], stored contiguously per chunk:
    /// [`ChunkView::scales`]).
    PerVector = 1,
}

impl QuantKind {
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(QuantKind::Global),
            1 => Some(QuantKind::PerVector),
            _ => None,
        }
    }
}

/// What an arena holds; all but `chunk_records` must match an existing file.
#[derive(Clone, Debug, PartialEq)]
pub struct ArenaParams {
    /// Vector dimension, 1..=16384.
    pub dim: u32,
    /// How codes are scaled.
    pub quant: QuantKind,
    /// The global scale (`QuantKind::Global`); finite and positive. Ignored for `PerVector`.
    pub scale: f32,
    /// The embedding model, at most 64 bytes of UTF-8 without NUL.
    pub model_id: String,
    /// Records per chunk for a new file, a power of two up to 2^20; an existing file keeps its
    /// own (see [`OpenReport::params`]).
    pub chunk_records: u32,
}

impl ArenaParams {
    /// Global symmetric quantization of unit vectors (`scale = 1/127`), default chunk size.
    pub fn new(dim: u32, model_id: impl Into<String>) -> Self {
        ArenaParams {
            dim,
            quant: QuantKind::Global,
            scale: 1.0 / 127.0,
            model_id: model_id.into(),
            chunk_records: DEFAULT_CHUNK_RECORDS,
        }
    }

    /// Sets the quantization kind and global scale.
    pub fn quant(mut self, quant: QuantKind, scale: f32) -> Self {
        self.quant = quant;
        self.scale = scale;
        self
    }

    /// Sets the records per chunk (for new files).
    pub fn chunk_records(mut self, n: u32) -> Self {
        self.chunk_records = n;
        self
    }

    pub(crate) fn validate(&self) -> Result<(format::Layout, [u8; format::MODEL_ID_LEN]), ArenaError> {
        let layout = format::Layout::new(self.dim, self.chunk_records).map_err(ArenaError::InvalidInput)?;
        let model = format::model_id_bytes(&self.model_id).map_err(ArenaError::InvalidInput)?;
        if self.quant == QuantKind::Global && !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(ArenaError::InvalidInput(format!(
                "global scale {} must be finite and > 0",
                self.scale
            )));
        }
        Ok((layout, model))
    }
}

/// How hard [`ArenaWriter::commit`] works to make a commit survive a power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fdatasync the records, then the header: a commit survives power loss. Two device
    /// flushes per commit, so commit once per batch.
    #[default]
    Sync,
    /// No fsync: a commit survives the process being killed (the page cache keeps it) but not
    /// a power loss. For tests and benchmarks.
    NoSync,
}

/// How to open an arena file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Map what is committed; no writer, no lock.
    ReadOnly,
    /// Take the writer's lock and get an [`ArenaWriter`].
    ReadWrite(Durability),
}

/// One record's metadata, as appended and as read back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordMeta {
    /// The pattern's SQLite rowid.
    pub rowid: i64,
    /// Flag bits ([`FLAG_DEAD`]); updated in place by [`ArenaWriter::set_flags`].
    pub flags: u32,
    /// Interned kind id.
    pub kind: u32,
    /// In [0, 1]; updated in place by [`ArenaWriter::set_confidence`].
    pub confidence: f32,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Last use, ms since the Unix epoch; updated in place by [`ArenaWriter::touch`].
    pub last_used_ms: i64,
    /// The vector's dequantization scale (`QuantKind::PerVector`); finite, ≥ 0. Stored in the
    /// chunk's scales region, not the 64-byte metadata: read it in bulk from
    /// [`ChunkView::scales`], or one at a time with [`View::scale_of`].
    pub scale: f32,
}
