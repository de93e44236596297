//! A warm search allocates exactly once: the returned `Vec`.

#[path = "search_support/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{synthetic, Index};
use patternbank::search::{search, search_with, Quantization, Scratch, SearchParams};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed); // a plain counter: orders nothing
                                                     // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The only test in this binary, so no other thread allocates while it counts.
#[test]
fn warm_search_allocates_only_its_result() {
    let dim = 384;
    let index = Index::build(synthetic(5_000, dim, 20, 30), dim, Quantization::PerVector);
    let queries = synthetic(20, dim, 20, 31);
    let blocks = index.blocks();
    let originals = index.originals();
    let filter = |slot: u64| !slot.is_multiple_of(3);
    let params = SearchParams { filter: Some(&filter), ..SearchParams::top(10) };
    let mut scratch = Scratch::new();
    // Warm up: scratch buffers, kernel detection, the thread-local scratch.
    search_with(&mut scratch, &queries[..dim], dim, blocks.iter().copied(), &originals, &params).unwrap();
    search(&queries[..dim], dim, blocks.iter().copied(), &originals, &params).unwrap();
    for q in queries.chunks_exact(dim) {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let hits = search_with(&mut scratch, q, dim, blocks.iter().copied(), &originals, &params).unwrap();
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        assert_eq!(hits.len(), 10);
        assert_eq!(after - before, 1, "search_with");
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let hits = search(q, dim, blocks.iter().copied(), &originals, &params).unwrap();
        assert_eq!(ALLOCATIONS.load(Ordering::Relaxed) - before, 1, "search");
        drop(hits);
    }
}
