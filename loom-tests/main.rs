//! Loom model checks of the lock-free parts, compiled against the real `src/` with
//! `--cfg loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom --test loom
//! ```
#![cfg(all(loom, feature = "loom"))]

mod ring;
