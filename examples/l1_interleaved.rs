//! Our L1 against quick_cache, one thread, in interleaved slices: a steadier ratio than two
//! criterion runs taken minutes apart on a noisy machine (see `benches/cache.rs` for the
//! acceptance figures).
//!
//! Both caches hold `u64 → u64`, capacity 100,000, warmed by one pass over a Zipf(0.99)
//! stream of 2^20 keys drawn from 1,000,000. Then `rounds` times, each cache runs 300,000
//! operations of the chosen workload (which one goes first alternates), and the median time
//! per operation and the median per-round ratio are printed. Workloads:
//! - `mix`: the stream, every tenth operation an insert (criterion's `read_90_insert_10`);
//! - `get`: the stream, reads only;
//! - `rep`: inserts of keys both caches hold (replaces);
//! - `new`: inserts of keys never seen (each evicts).
//!
//! Run: `cargo run --release --example l1_interleaved -- mix 30`

use std::time::Instant;

use patternbank::cache::{Cache, Policy};
use patternbank::workload::{Rng, Zipf};

// The benches' and the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STREAM: usize = 1 << 20;
const SLICE: usize = 300_000;

trait Contender {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}

impl Contender for Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        Cache::insert(self, k, v);
    }
}

impl Contender for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v)
    }
}

/// Nanoseconds per operation of one slice starting at operation `n0`.
fn slice(c: &dyn Contender, keys: &[u64], present: &[u64], mode: &str, n0: usize) -> f64 {
    let started = Instant::now();
    let mut hits = 0u64;
    for n in n0..n0 + SLICE {
        match mode {
            "mix" | "get" => {
                let k = keys[n % STREAM];
                if mode == "mix" && n % 10 == 0 {
                    c.insert(k, k + (n & 1) as u64);
                } else if c.get(k).is_some() {
                    hits += 1;
                }
            }
            "rep" => {
                let k = present[n % present.len()];
                c.insert(k, k + (n & 1) as u64);
            }
            _ => c.insert((n as u64 + (1 << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15), n as u64),
        }
    }
    std::hint::black_box(hits);
    started.elapsed().as_secs_f64() * 1e9 / SLICE as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "mix".into());
    if !["mix", "get", "rep", "new"].contains(&mode.as_str()) {
        eprintln!("usage: l1_interleaved [mix|get|rep|new] [rounds]");
        std::process::exit(2);
    }
    let rounds: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(30).max(1);
    let zipf = Zipf::new(1_000_000, 0.99);
    let mut rng = Rng::new(0x5eed);
    let keys: Vec<u64> =
        (0..STREAM).map(|_| (zipf.sample(&mut rng) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let ours = Cache::<u64, u64>::new(100_000, Policy::Adaptive);
    let peer = quick_cache::sync::Cache::<u64, u64>::new(100_000);
    let both: [&dyn Contender; 2] = [&ours, &peer];
    for c in both {
        for &k in &keys {
            if c.get(k).is_none() {
                c.insert(k, k);
            }
        }
    }
    let present: Vec<u64> =
        keys.iter().copied().filter(|&k| both.iter().all(|c| c.get(k).is_some())).take(1 << 16).collect();
    let (mut our_ns, mut peer_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let n0 = round * SLICE;
        let (a, b) = if round % 2 == 0 {
            let a = slice(&ours, &keys, &present, &mode, n0);
            (a, slice(&peer, &keys, &present, &mode, n0))
        } else {
            let b = slice(&peer, &keys, &present, &mode, n0);
            (slice(&ours, &keys, &present, &mode, n0), b)
        };
        our_ns.push(a);
        peer_ns.push(b);
        ratios.push(b / a);
    }
    println!(
        "{mode}: ours {:.1} ns/op, quick_cache {:.1} ns/op; our speed / quick_cache's, median of {rounds} rounds: {:.2}",
        median(&mut our_ns),
        median(&mut peer_ns),
        median(&mut ratios)
    );
}
