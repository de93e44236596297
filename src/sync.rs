//! The concurrency facade: the only file that names `std` or `loom` atomics, cells, `Arc`,
//! locks and threads.
//!
//! Under `all(loom, feature = "loom")` the primitives that the lock-free parts are built from
//! (atomics, `UnsafeCell`, spin hints) come from loom so its model checker can explore every
//! interleaving; a user's own `--cfg loom` without our internal feature cannot flip them.
//! `Arc` is always the standard one: it appears in the public API (`Arc<Pattern>`).
//! Blocking primitives (`Mutex`, `Condvar`, threads) stay `std` in both builds: they guard
//! only slow paths that the loom suite does not model; the exception is `ShardMutex`, the
//! L1's shard lock, which the suite does exercise. In the loom build crossbeam-epoch is
//! switched to loom too (`--cfg crossbeam_loom` and its `loom` feature).
//!
//! Model: hawkw/sharded-slab `src/sync.rs`, tokio `src/loom/`.

pub use std::sync::Arc;
pub use std::sync::{Condvar, Mutex, Once};

pub use crossbeam_utils::CachePadded;

#[cfg(all(loom, feature = "loom"))]
mod imp {
    pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

    /// Loom's cell already has the closure-based API we use.
    pub use loom::cell::UnsafeCell;

    /// A spin-wait step: under loom it must yield so the model can schedule another thread.
    #[inline]
    pub fn spin_hint() {
        loom::thread::yield_now();
    }

    /// The L1's shard locks, which the loom suite exercises (a blocked `std` lock would
    /// stall loom's scheduler).
    pub use loom::sync::{Mutex as ShardMutex, MutexGuard as ShardMutexGuard};

    /// Pins the current thread in crossbeam-epoch's default collector (loom's, here).
    #[inline]
    pub fn epoch_pin() -> crossbeam_epoch::Guard {
        crossbeam_epoch::pin()
    }

    /// Locks a shard: the guard, and whether a thread panicked holding it. A panic aborts a
    /// loom model, so under loom the lock is never found poisoned.
    #[inline]
    pub fn lock_shard<T>(m: &ShardMutex<T>) -> (ShardMutexGuard<'_, T>, bool) {
        match m.lock() {
            Ok(guard) => (guard, false),
            Err(poisoned) => (poisoned.into_inner(), true),
        }
    }
}

#[cfg(not(all(loom, feature = "loom")))]
mod imp {
    pub use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

    /// `std::cell::UnsafeCell` with loom's closure-based API, so code is written once.
    #[derive(Debug)]
    #[repr(transparent)]
    pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        #[inline]
        pub const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared raw pointer to the contents.
        #[inline]
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a mutable raw pointer to the contents.
        #[inline]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// A spin-wait step.
    #[inline]
    pub fn spin_hint() {
        std::hint::spin_loop();
    }

    /// The L1's shard locks (modelled by loom in the loom build).
    pub use std::sync::{Mutex as ShardMutex, MutexGuard as ShardMutexGuard};

    thread_local! {
        /// This thread's participant in crossbeam-epoch's default collector, held here: the
        /// lookup behind `crossbeam_epoch::pin()` is a call that is not inlined, 10 of an L1
        /// `get`'s 160 instructions (perf-scripts/l1-instructions.sh get).
        static EPOCH_HANDLE: crossbeam_epoch::LocalHandle = crossbeam_epoch::default_collector().register();
    }

    /// Pins the current thread in crossbeam-epoch's default collector, the one every guard
    /// and retirement of the L1 uses.
    #[inline]
    pub fn epoch_pin() -> crossbeam_epoch::Guard {
        // During thread teardown the handle may be gone: pin through crossbeam's own then.
        EPOCH_HANDLE.try_with(|h| h.pin()).unwrap_or_else(|_| crossbeam_epoch::pin())
    }

    /// Locks a shard: the guard, and whether a thread panicked holding it since the last
    /// lock. The poison is cleared: the caller repairs what the lock guards.
    #[inline]
    pub fn lock_shard<T>(m: &ShardMutex<T>) -> (ShardMutexGuard<'_, T>, bool) {
        match m.lock() {
            Ok(guard) => (guard, false),
            Err(poisoned) => {
                m.clear_poison();
                (poisoned.into_inner(), true)
            }
        }
    }
}

pub use imp::*;

/// Threads, always `std` (see the module docs).
pub mod thread {
    #[allow(unused_imports)]
    pub use std::thread::{park_timeout, sleep, spawn, yield_now, Builder, JoinHandle, Thread};
}
