//! # patternbank
//!
//! An embedded, lock-free, allocation-aware pattern store for AI agent loops.
//!
//! Agents keep *patterns* (memories of what worked: data, an embedding, a confidence) and
//! consult them on every step: fetch by id, find the most similar, and record whether using
//! one succeeded. patternbank keeps them in SQLite (the source of truth, WAL mode, raw FFI)
//! behind an in-memory L1 cache, and takes writes through lock-free ring buffers that one
//! writer thread commits in batches.
//!
//! ```no_run
//! use patternbank::{Config, Outcome, Pattern, Store};
//!
//! # fn main() -> patternbank::Result<()> {
//! let store = Config::new("patterns.db").embedding_dim(384).open()?;
//! store.put(Pattern::new("01J0000000000000000000000A", "coordination", br#"{"title":"t"}"#.to_vec())
//!     .with_embedding(vec![0.05; 384]))?;
//! let p = store.get("01J0000000000000000000000A")?.expect("read your writes");
//! assert_eq!(p.kind, "coordination");
//! store.record_outcome(&p.id, Outcome::Success)?;
//! store.flush()?;                      // durability barrier
//! println!("{}", store.report());
//! store.close()?;                      // flush + join the writer
//! # Ok(()) }
//! ```
//!
//! ## Durability
//!
//! `put` and `record_outcome` return once the write is queued and (for `put`) visible to
//! every thread's `get`. [`Store::flush`] returns once everything submitted before it is
//! committed: with the default [`Synchronous::Normal`] a committed write survives the
//! process being killed (`kill -9`) at any moment; with [`Synchronous::Full`] it also
//! survives power loss. Without a flush, writes are committed within `batch_interval`
//! (50 ms) or as soon as a batch fills.
//!
//! ## Configuration
//!
//! Every knob and its default, with the reason for it, is on [`Config`].
//!
//! ## Safety
//!
//! `unsafe` code lives in `src/sqlite/ffi.rs` (the SQLite C API) and `src/queue/ring.rs`
//! (the ring buffer's slots), each block with its `SAFETY` argument. The concurrency
//! primitives come from `src/sync.rs` only, so the loom suite can model them.

#![warn(missing_docs)]

pub mod arena;
pub mod cache;
pub mod codec;
mod config;
mod error;
mod id;
mod l2;
pub mod metrics;
mod pattern;
mod payload;
mod queue;
pub mod search;
mod sqlite;
mod store;
mod sync;
pub mod trace;
pub mod workload;

pub use codec::{Step, Trajectory};
pub use config::{Config, Synchronous};
pub use error::{Error, ErrorKind, Result, TryError};
pub use l2::{L2Metrics, SearchOptions};
pub use metrics::Metrics;
pub use pattern::{Hit, Outcome, Pattern};
pub use payload::{CodecBytes, CodecMetrics, DictionaryInfo, RecompressReport, StorageStats};
pub use store::{CheckReport, FailedWrite, Store};

/// Internals exposed to the loom suite only.
#[cfg(all(loom, feature = "loom"))]
#[doc(hidden)]
pub mod __loom {
    pub use crate::queue::ring::{ring, Consumer, Producer};

    /// Names of the facade's atomic and cell types, so the suite can check it models them.
    pub fn facade_types() -> [&'static str; 2] {
        [
            std::any::type_name::<crate::sync::AtomicUsize>(),
            std::any::type_name::<crate::sync::UnsafeCell<u8>>(),
        ]
    }
}

/// Internals exposed to benchmarks (not part of the API; may change at any time).
#[doc(hidden)]
pub mod __bench {
    pub use crate::queue::ring::{ring, Consumer, Producer};

    /// W3's ceiling: the store's schema and statements in a plain loop (see
    /// `sqlite::writer::raw_put_loop`).
    pub fn raw_put_loop(
        cfg: &crate::Config,
        patterns: &[crate::Pattern],
        per_txn: usize,
    ) -> crate::Result<std::time::Duration> {
        crate::sqlite::writer::raw_put_loop(cfg, patterns, per_txn)
    }
}
