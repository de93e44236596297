//! Loom model checks of the lock-free parts, compiled against the real `src/` with
//! `--cfg loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p patternbank-loom
//! ```
#![cfg(loom)]

mod arena;
mod cache;
mod ring;
