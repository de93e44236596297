//! The L1 alone against the best Rust caches: `patternbank::cache::Cache` (default
//! `Adaptive`, and `Clock`) beside quick_cache, moka and an `RwLock<HashMap>` (no eviction
//! policy at all: the cost of a plain locked map, the floor a cache's bookkeeping adds to).
//!
//! Workload (issue 3's, not one of DESIGN.md's W1–W5 but the L1 under W1): keys drawn
//! Zipf(0.99) over 1,000,000 `u64`s, capacity 100,000 entries, values `u64`. Every cache is
//! pre-warmed by replaying the key stream once (get, insert on miss), so the hot set is in.
//! - `read_only`: `get` of each key in the stream;
//! - `read_90_insert_10`: every tenth operation inserts its key (a new value), the others get.
//!
//! 1 and 2 threads. Each thread walks its own offset of one pre-drawn stream of 2^20 keys, so
//! no RNG is inside the timed loop. Timing: `iter_custom` with the threads started once per
//! sample, released by a barrier, and timed from the first thread's start to the last one's
//! end;
//! throughput is operations (all threads together) per second.
//!
//! Checks: every `get` that returns a value must return the key's own value (each inserts
//! `key` or `key + 1`), counted hits must be non-zero; a mismatch panics.
//!
//! Run: `cargo bench --bench cache` (add `-- --quick` for a short run).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use patternbank::cache::{Cache, Policy};
use patternbank::workload::{Rng, Zipf};

// The allocator of the patternbank binary (a library leaves the choice to its users; this
// benchmark makes it for every contender): ours allocates a node per insert and per replace.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: usize = 1_000_000;
const CAPACITY: usize = 100_000;
const STREAM: usize = 1 << 20;
/// Operations per thread per iteration.
const OPS: usize = 10_000;

trait Bench: Send + Sync + 'static {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}

impl Bench for Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        Cache::insert(self, k, v);
    }
}

impl Bench for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v);
    }
}

impl Bench for moka::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        moka::sync::Cache::insert(self, k, v);
    }
}

/// A plain map under a reader-writer lock; refuses new keys once full (no policy).
struct LockedMap(RwLock<HashMap<u64, u64>>);

impl Bench for LockedMap {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.read().unwrap().get(&k).copied()
    }
    fn insert(&self, k: u64, v: u64) {
        let mut m = self.0.write().unwrap();
        if m.len() < CAPACITY || m.contains_key(&k) {
            m.insert(k, v);
        }
    }
}

fn stream() -> Arc<Vec<u64>> {
    let zipf = Zipf::new(KEYS, 0.99);
    let mut rng = Rng::new(0x5eed);
    // Scatter ranks over the key space so hot keys are not neighbours.
    Arc::new(
        (0..STREAM).map(|_| (zipf.sample(&mut rng) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect(),
    )
}

fn warm(cache: &dyn Bench, keys: &[u64]) {
    for &k in keys {
        if cache.get(k).is_none() {
            cache.insert(k, k);
        }
    }
}

/// One thread's share: `OPS × iters` operations from `offset`, every `insert_every`-th an
/// insert (0: none). Returns the hits.
fn run(cache: &dyn Bench, keys: &[u64], offset: usize, iters: u64, insert_every: usize) -> u64 {
    let mut hits = 0u64;
    for n in 0..OPS * iters as usize {
        let k = keys[(offset + n) & (STREAM - 1)];
        if insert_every != 0 && n % insert_every == 0 {
            cache.insert(k, k + (n & 1) as u64);
        } else if let Some(v) = cache.get(k) {
            assert!(v == k || v == k + 1, "wrong value {v} for key {k}");
            hits += 1;
        }
    }
    black_box(hits)
}

fn timed(
    cache: &Arc<dyn Bench>,
    keys: &Arc<Vec<u64>>,
    threads: usize,
    iters: u64,
    insert_every: usize,
) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (cache, keys, barrier) = (Arc::clone(cache), Arc::clone(keys), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let hits = run(&*cache, &keys, t * (STREAM / 2) + iters as usize * 7919, iters, insert_every);
                (hits, start, Instant::now())
            })
        })
        .collect();
    barrier.wait();
    // From the first thread's start to the last one's end (the main thread may be scheduled
    // after the workers finish on a small machine, so it does not time them itself).
    let mut span: Option<(Instant, Instant)> = None;
    let mut hits = 0;
    for h in handles {
        let (h, start, end) = h.join().unwrap();
        hits += h;
        span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
    }
    assert!(hits > 0, "a warmed cache must hit");
    span.map_or(Duration::ZERO, |(s, e)| e - s)
}

fn contenders(keys: &[u64]) -> Vec<(&'static str, Arc<dyn Bench>)> {
    let all: Vec<(&'static str, Arc<dyn Bench>)> = vec![
        ("patternbank_adaptive", Arc::new(Cache::<u64, u64>::new(CAPACITY, Policy::Adaptive))),
        ("patternbank_clock", Arc::new(Cache::<u64, u64>::new(CAPACITY, Policy::Clock))),
        ("quick_cache", Arc::new(quick_cache::sync::Cache::<u64, u64>::new(CAPACITY))),
        ("moka", Arc::new(moka::sync::Cache::<u64, u64>::new(CAPACITY as u64))),
        ("rwlock_hashmap", Arc::new(LockedMap(RwLock::new(HashMap::with_capacity(CAPACITY))))),
    ];
    for (_, c) in &all {
        warm(&**c, keys);
    }
    all
}

fn bench(c: &mut Criterion) {
    let keys = stream();
    let caches = contenders(&keys);
    for (workload, insert_every) in [("read_only", 0usize), ("read_90_insert_10", 10)] {
        for threads in [1usize, 2] {
            let mut group = c.benchmark_group(format!("cache/{workload}/{threads}t"));
            group.throughput(Throughput::Elements((OPS * threads) as u64));
            group.measurement_time(Duration::from_secs(3));
            group.warm_up_time(Duration::from_secs(1));
            for (name, cache) in &caches {
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter_custom(|iters| timed(cache, &keys, threads, iters, insert_every))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
