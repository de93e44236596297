//! The L1's metadata per entry, beyond key and value, measured with a counting allocator:
//! every byte the cache holds (nodes, tables, sketch, read buffers, shards) divided by the
//! entries it holds, minus the size of a key and a value. Its own binary, so the global
//! allocator counts nothing but this test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use patternbank::cache::{Cache, Policy};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes of metadata per entry of a full cache of `u64 → u64` after `churn` evictions.
fn metadata_per_entry(policy: Policy, capacity: usize, churn: u64) -> f64 {
    // Let the epoch collector's own structures exist before we count.
    drop(crossbeam_epoch::pin());
    let before = LIVE.load(Ordering::Relaxed);
    let cache = Cache::<u64, u64>::new(capacity, policy);
    for k in 0..capacity as u64 + churn {
        cache.insert(k, k);
    }
    // Retired nodes wait for the epoch to advance: pin and flush until they are freed, so
    // what remains is what the cache holds.
    for _ in 0..256 {
        cache.reclaim();
        crossbeam_epoch::pin().flush();
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let len = cache.len();
    assert!(len <= capacity && len >= capacity * 9 / 10, "{policy:?}: {len} entries");
    held as f64 / len as f64 - 16.0
}

#[test]
fn metadata_per_entry_is_at_most_32_bytes() {
    for policy in [Policy::Adaptive, Policy::Lru, Policy::Lfu, Policy::Clock] {
        for churn in [0, 300_000] {
            let bytes = metadata_per_entry(policy, 100_000, churn);
            println!("{policy:?}, churn {churn}: {bytes:.1} bytes of metadata per entry");
            assert!(bytes <= 32.0, "{policy:?} churn {churn}: {bytes:.1} bytes per entry");
        }
    }
}
