//! Hit ratios of a recorded cache trace through our L1 (every policy this build has), two
//! peer caches (quick_cache, moka) and an exact LRU, on the same keys.
//!
//! ```text
//! cargo run --release --example hitratio_peers -- TRACE FORMAT CAPACITY
//! cargo run --release --example hitratio_peers -- ../shared/traces/lirs/gli.trace.gz lirs 1000
//! ```
//!
//! FORMAT is lirs, arc, i32 or i64 (see shared/traces/README.md). Every cache sees the same
//! read-through replay: `get(k)`; on a miss `insert(k, ())`. `max_len` is the largest entry
//! count seen right after an insert: a cache that holds more than CAPACITY scores
//! impossibly well, and its row is marked `OVER` (ours cannot be: the replay fails first).
//!
//! moka applies inserts, admission and evictions in batches ("pending tasks"), so it gets
//! two rows: `moka` as an application uses it (no explicit maintenance; a new key can be
//! hit before its admission is decided, and the map can briefly hold more than CAPACITY:
//! its `max_len` is sampled with `iter().count()`, a lower bound of the true peak), and
//! `moka strict`, with `run_pending_tasks()` after every insert, so `entry_count()` is exact
//! and the bound is checked at the same points as for the others. moka seeds its frequency
//! sketch at random: its rows vary a little from run to run.

use std::process::ExitCode;
use std::time::Instant;

use patternbank::trace::{self, ExactLru, TraceFormat};

struct Row {
    name: String,
    hits: u64,
    max_len: u64,
    secs: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        eprintln!("usage: hitratio_peers TRACE FORMAT(lirs|arc|i32|i64) CAPACITY");
        return ExitCode::from(2);
    }
    match run(&args[0], &args[1], &args[2]) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hitratio_peers: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(path: &str, format: &str, capacity: &str) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let format: TraceFormat = format.parse()?;
    let capacity: usize = capacity.parse().map_err(|e| format!("CAPACITY {capacity:?}: {e}"))?;
    let keys = trace::read_trace(path.as_ref(), format)?;
    let n = keys.len() as u64;
    let mut rows = Vec::new();

    // Ours: every policy this build knows by name.
    for &name in trace::POLICY_NAMES {
        let Some(policy) = trace::parse_policy(name) else { continue };
        let started = Instant::now();
        let r = trace::replay(&keys, capacity, policy, |_| {})?;
        rows.push(Row {
            name: format!("ours {name}"),
            hits: r.hits,
            max_len: r.max_len as u64,
            secs: started.elapsed().as_secs_f64(),
        });
    }
    // The trait-free peers, one closure each.
    rows.push(measure("quick_cache", &keys, || {
        let c = quick_cache::sync::Cache::<u64, ()>::new(capacity);
        move |k: u64| {
            if c.get(&k).is_some() {
                return (true, 0);
            }
            c.insert(k, ());
            (false, c.len() as u64)
        }
    }));
    // moka as an application uses it: maintenance runs when its own buffers say so. Its
    // entry_count() lags the map, so the bound is checked by counting entries (iter), on a
    // sample of requests: this row's max_len is a lower bound of the true peak.
    let sample = capacity.max(1024) as u64;
    rows.push(measure("moka", &keys, || {
        let c = moka::sync::Cache::<u64, ()>::new(capacity as u64);
        let mut requests = 0u64;
        move |k: u64| {
            requests += 1;
            let hit = c.get(&k).is_some();
            if !hit {
                c.insert(k, ());
            }
            let len = if requests.is_multiple_of(sample) { c.iter().count() as u64 } else { 0 };
            (hit, len)
        }
    }));
    // moka with its pending tasks run after every insert: its policy without the batching,
    // and entry_count() exact at every check.
    rows.push(measure("moka strict", &keys, || {
        let c = moka::sync::Cache::<u64, ()>::new(capacity as u64);
        move |k: u64| {
            if c.get(&k).is_some() {
                return (true, 0);
            }
            c.insert(k, ());
            c.run_pending_tasks();
            (false, c.entry_count())
        }
    }));
    let started = Instant::now();
    let mut lru = ExactLru::new(capacity);
    let mut lru_max = 0;
    for &k in &keys {
        if !lru.access(k) {
            lru_max = lru_max.max(lru.len() as u64);
        }
    }
    rows.push(Row {
        name: "lru_exact".into(),
        hits: lru.hits(),
        max_len: lru_max,
        secs: started.elapsed().as_secs_f64(),
    });

    println!("{path} ({format}): {n} requests, capacity {capacity}");
    println!("{:<16} {:>8} {:>9} {:>8}", "cache", "hit %", "max_len", "time s");
    for r in &rows {
        let flag = if r.max_len > capacity as u64 { "  OVER" } else { "" };
        let pct = if n == 0 { 0.0 } else { 100.0 * r.hits as f64 / n as f64 };
        println!("{:<16} {pct:>8.2} {:>9} {:>8.2}{flag}", r.name, r.max_len, r.secs);
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays `keys` through the access function `make()` builds; it returns (hit, entries
/// held, or 0 where it did not look).
fn measure<F: FnMut(u64) -> (bool, u64)>(name: &str, keys: &[u64], make: impl FnOnce() -> F) -> Row {
    let mut access = make();
    let started = Instant::now();
    let (mut hits, mut max_len) = (0, 0);
    for &k in keys {
        let (hit, len) = access(k);
        hits += hit as u64;
        max_len = max_len.max(len);
    }
    Row { name: name.into(), hits, max_len, secs: started.elapsed().as_secs_f64() }
}
