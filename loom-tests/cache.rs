//! The L1 shard protocol on a one-shard cache of capacity 1 or 2: concurrent `get`,
//! `get_with`, `insert` (with the evictions it causes) and `remove`, with crossbeam-epoch's
//! reclamation under loom too. Checks:
//! - no torn read: every value read is the whole value of its key;
//! - no lost insert: an insert that returned true and was not evicted is found afterwards;
//! - capacity held: `len()` seen by a concurrent reader never exceeds the capacity, and a
//!   reader never finds more distinct entries than the capacity;
//! - no value freed while a reader holds it: values carry a flag their `Drop` clears, and a
//!   reader inside `get_with` asserts it is still set while a writer evicts the entry and
//!   flushes the epoch collector.

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use patternbank::cache::{Cache, Policy};

/// A value that knows when it was dropped.
#[derive(Clone)]
struct Tracked {
    key: u64,
    alive: Arc<AtomicBool>,
    /// Only the last clone (the one the cache's node owns, or a reader's) clears the flag.
    owner: Arc<()>,
}

impl Tracked {
    fn new(key: u64) -> Self {
        Self { key, alive: Arc::new(AtomicBool::new(true)), owner: Arc::new(()) }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if Arc::strong_count(&self.owner) == 1 {
            self.alive.store(false, Ordering::SeqCst);
        }
    }
}

/// crossbeam-epoch's own atomics multiply the interleavings: one preemption keeps each model
/// under a minute (two take tens of minutes) while still running a writer between a reader's
/// lookup and its use of the value. Loom cannot check the `Release` that publishes a node
/// here: crossbeam-epoch's `SeqCst` fences synchronise every pin in loom's (stronger than
/// C11) model; the stress test `concurrent_readers_see_whole_values` covers it on hardware.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(f);
}

fn flush_epochs() {
    for _ in 0..3 {
        crossbeam_epoch::pin().flush();
    }
}

/// A value whose contents loom tracks: reading it without a happens-before edge to its
/// construction (a publication weaker than `Release`/`Acquire`) is a causality violation.
#[derive(Clone)]
struct Cell(Arc<loom::cell::UnsafeCell<u64>>);

// SAFETY: the contents are written only in `new`, before the value is shared; loom checks
// every later read against that write.
unsafe impl Sync for Cell {}
// SAFETY: as above.
unsafe impl Send for Cell {}

impl Cell {
    fn new(v: u64) -> Self {
        let cell = loom::cell::UnsafeCell::new(0);
        // SAFETY: not shared yet. A tracked write, so a read that does not happen after it
        // is reported.
        cell.with_mut(|p| unsafe { *p = v });
        Self(Arc::new(cell))
    }

    fn read(&self) -> u64 {
        // SAFETY: never written after `new`.
        self.0.with(|p| unsafe { *p })
    }
}

#[test]
fn concurrent_inserts_are_not_lost_and_reads_are_whole() {
    inserts_are_not_lost(Policy::Lru);
}

/// `Adaptive` reads write the reference bit and the sketch themselves (no read buffer).
#[test]
fn concurrent_inserts_are_not_lost_and_reads_are_whole_adaptive() {
    inserts_are_not_lost(Policy::Adaptive);
}

fn inserts_are_not_lost(policy: Policy) {
    model(move || {
        let cache = Arc::new(Cache::<u64, Cell>::new(2, policy));
        let writer = |k: u64| {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                assert!(cache.insert(k, Cell::new(k * 100)));
                // Read the other writer's key: absent, or whole.
                let other = 3 - k;
                if let Some(v) = cache.get_with(&other, Cell::read) {
                    assert_eq!(v, other * 100);
                }
                assert!(cache.len() <= 2);
            })
        };
        let a = writer(1);
        let b = writer(2);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(cache.get_with(&1, Cell::read), Some(100), "insert of 1 lost");
        assert_eq!(cache.get_with(&2, Cell::read), Some(200), "insert of 2 lost");
        assert_eq!(cache.len(), 2);
    });
}

#[test]
fn eviction_never_frees_a_value_a_reader_holds() {
    model(|| {
        let cache = Arc::new(Cache::<u64, Tracked>::new(1, Policy::Lru));
        assert!(cache.insert(1, Tracked::new(1)));
        let reader = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                cache.get_with(&1, |v| {
                    thread::yield_now();
                    assert!(v.alive.load(Ordering::SeqCst), "value freed while a reader holds it");
                    assert_eq!(v.key, 1);
                });
            })
        };
        let writer = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                // Capacity 1: this evicts key 1.
                assert!(cache.insert(2, Tracked::new(2)));
                flush_epochs();
                assert!(cache.len() <= 1);
            })
        };
        reader.join().unwrap();
        writer.join().unwrap();
        assert_eq!(cache.get(&1).map(|v| v.key), None);
        assert_eq!(cache.get(&2).map(|v| v.key), Some(2));
    });
}

#[test]
fn a_reader_never_sees_more_entries_than_the_capacity() {
    capacity_holds_for_readers(Policy::Lru);
}

#[test]
fn a_reader_never_sees_more_entries_than_the_capacity_adaptive() {
    capacity_holds_for_readers(Policy::Adaptive);
}

fn capacity_holds_for_readers(policy: Policy) {
    model(move || {
        let cache = Arc::new(Cache::<u64, u64>::new(1, policy));
        assert!(cache.insert(1, 1));
        let writer = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                assert!(cache.insert(2, 2));
                cache.remove(&2);
            })
        };
        // Key 2 is published only after key 1 is evicted (or not at all: `Adaptive` may keep
        // a referenced 1 and drop 2), and 1 never comes back: a reader that finds 2 cannot
        // find 1 afterwards.
        let found2 = cache.get(&2).inspect(|&v| assert_eq!(v, 2)).is_some();
        let found1 = cache.get(&1).inspect(|&v| assert_eq!(v, 1)).is_some();
        assert!(cache.len() <= 1);
        writer.join().unwrap();
        assert!(!(found2 && found1), "a reader saw both entries of a capacity-1 cache");
        assert!(cache.len() <= 1);
    });
}
