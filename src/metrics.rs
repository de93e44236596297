//! Counters, latency histograms, the slow-query log, and the human-readable report.
//!
//! Everything here is written on hot paths, so every counter is striped over cache-padded
//! cells (a thread bumps its own stripe: a plain load and store while the stripe is its
//! alone, see [`stripe`]) and every histogram is a fixed array of atomic buckets (one relaxed
//! `fetch_add` a record); reading sums the stripes. Reading never
//! writes anything (invariant 7).
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sync::{AtomicU64, CachePadded, Mutex, Ordering};

pub(crate) const STRIPES: usize = 16;
const _: () = assert!(STRIPES.is_power_of_two());

/// The stripe of threads beyond the first `STRIPES - 1`, which share it.
const SHARED_STRIPE: usize = STRIPES - 1;

/// Whether a thread's own stripe is written by it alone. Not under loom, whose model
/// threads all run on one OS thread and so share one thread-local.
const EXCLUSIVE_STRIPES: bool = cfg!(not(all(loom, feature = "loom")));

/// Stripes handed out (the first `.0` were, at some point) and stripes given back.
static STRIPE_POOL: Mutex<(usize, Vec<usize>)> = Mutex::new((0, Vec::new()));

/// A thread's claim on a stripe of its own, given back when the thread ends.
struct StripeClaim(usize);

impl StripeClaim {
    fn claim() -> Self {
        let mut pool = STRIPE_POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = pool.1.pop() {
            return Self(s);
        }
        if pool.0 < SHARED_STRIPE {
            pool.0 += 1;
            return Self(pool.0 - 1);
        }
        Self(SHARED_STRIPE)
    }
}

impl Drop for StripeClaim {
    fn drop(&mut self) {
        // The thread's later counts (other thread-locals' destructors) go to the shared stripe.
        STRIPE_CACHE.with(|c| c.set(SHARED_STRIPE));
        if self.0 != SHARED_STRIPE {
            // The pool's lock orders this thread's last writes to the stripe before the next
            // owner's first.
            STRIPE_POOL.lock().unwrap_or_else(|e| e.into_inner()).1.push(self.0);
        }
    }
}

/// `STRIPE_CACHE` before the thread's first `stripe()`.
const UNCLAIMED: usize = usize::MAX;

thread_local! {
    /// The thread's claim, given back by its destructor when the thread ends.
    static STRIPE_CLAIM: StripeClaim = StripeClaim::claim();
    /// The claimed stripe, read on every count: a constant-initialized cell with no
    /// destructor is one load from thread-local storage, without the lazy-initialization and
    /// teardown checks that reading `STRIPE_CLAIM` costs.
    static STRIPE_CACHE: std::cell::Cell<usize> = const { std::cell::Cell::new(UNCLAIMED) };
}

/// The stripe of the calling thread: its own while fewer than `STRIPES - 1` threads hold
/// one, else the shared last one (also during the thread's teardown).
#[inline]
pub(crate) fn stripe() -> usize {
    let cached = STRIPE_CACHE.with(std::cell::Cell::get);
    if cached != UNCLAIMED {
        return cached;
    }
    claim_stripe()
}

/// The first `stripe()` of a thread: claims one and caches it.
#[cold]
fn claim_stripe() -> usize {
    match STRIPE_CLAIM.try_with(|c| c.0) {
        Ok(s) => {
            STRIPE_CACHE.with(|c| c.set(s));
            s
        }
        // The claim is already destroyed (thread teardown): the shared stripe, uncached.
        Err(_) => SHARED_STRIPE,
    }
}

/// A counter that threads bump without sharing a cache line.
pub(crate) struct Counter {
    cells: Box<[CachePadded<AtomicU64>; STRIPES]>,
}

impl Default for Counter {
    fn default() -> Self {
        Self { cells: Box::new(std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0)))) }
    }
}

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        let s = stripe();
        // A power of two: the mask proves the index in bounds, so no check is compiled in.
        let cell = &self.cells[s & (STRIPES - 1)];
        // Relaxed: a statistic; no data is published through it.
        if EXCLUSIVE_STRIPES && s != SHARED_STRIPE {
            // Only this thread writes its stripe: a load and a store, exact without the
            // locked read-modify-write (measured: 5–8 % of an L1 hit).
            cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        // Relaxed: a statistic.
        self.cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Sub-buckets per power of two: values are kept within 1/16 (6 %).
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// A log-linear histogram of `u64` values (nanoseconds, sizes) with atomic buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: Counter,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: Counter::default(),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB + sub
}

/// The largest value that falls in bucket `b`.
fn bucket_high(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let exp = (b / SUB) as u32 + SUB_BITS - 1;
    let sub = (b % SUB) as u64;
    let low = (1u64 << exp) | (sub << (exp - SUB_BITS));
    low + ((1u64 << (exp - SUB_BITS)) - 1)
}

impl Histogram {
    #[inline]
    pub fn record(&self, v: u64) {
        // Relaxed: statistics; readers accept a snapshot that is not atomic as a whole.
        self.buckets[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.count.incr();
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn summary(&self) -> Summary {
        // Relaxed: statistics.
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let max = self.max.load(Ordering::Relaxed);
        let quantile = |q: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (b, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_high(b).min(max);
                }
            }
            max
        };
        Summary { count: total, p50: quantile(0.50), p99: quantile(0.99), p999: quantile(0.999), max }
    }
}

/// Percentiles of a histogram (upper bounds of their buckets: at most 6 % high).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

/// A statement that ran longer than the slow-query threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowQuery {
    /// The statement's SQL text.
    pub sql: String,
    /// How long it ran, microseconds.
    pub micros: u64,
}

/// Statements over a threshold: counted, and the most recent kept with their SQL.
pub(crate) struct SlowLog {
    threshold: Duration,
    count: AtomicU64,
    recent: Mutex<std::collections::VecDeque<SlowQuery>>,
}

const SLOW_KEPT: usize = 32;

impl SlowLog {
    pub fn new(threshold: Duration) -> Self {
        Self { threshold, count: AtomicU64::new(0), recent: Mutex::new(Default::default()) }
    }

    #[inline]
    pub fn observe(&self, sql: &str, elapsed: Duration) {
        if elapsed < self.threshold {
            return;
        }
        // Relaxed: a statistic.
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == SLOW_KEPT {
            recent.pop_front();
        }
        recent.push_back(SlowQuery { sql: sql.to_owned(), micros: elapsed.as_micros() as u64 });
    }

    pub fn count(&self) -> u64 {
        // Relaxed: a statistic.
        self.count.load(Ordering::Relaxed)
    }

    pub fn recent(&self) -> Vec<SlowQuery> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// Every counter and histogram the store keeps.
#[derive(Default)]
pub(crate) struct Registry {
    pub gets: Counter,
    pub puts: Counter,
    pub outcomes: Counter,
    pub flushes: Counter,
    pub searches: Counter,
    pub hits_l1: Counter,
    pub hits_pending: Counter,
    pub hits_sqlite: Counter,
    pub not_found: Counter,
    pub enqueue_blocked: Counter,
    pub enqueue_timeouts: Counter,
    pub try_full: Counter,
    /// Transactions committed.
    pub batches: Counter,
    /// Puts committed.
    pub committed_puts: Counter,
    /// Outcomes committed.
    pub committed_outcomes: Counter,
    pub coalesced_updates: Counter,
    pub superseded_outcomes: Counter,
    pub failed_writes: Counter,
    pub batch_retries: Counter,
    pub vacuum_runs: Counter,
    pub l1_warmed: Counter,
    pub l1_fills_refused: Counter,
    pub batch_ops: Histogram,
    pub commit_ns: Histogram,
    pub get_ns: Histogram,
    pub put_ns: Histogram,
    pub outcome_ns: Histogram,
    pub flush_ns: Histogram,
    pub search_ns: Histogram,
    /// `get` calls answered by the L1 (sampled like `get_ns`).
    pub get_l1_ns: Histogram,
}

/// Operations per kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpCounts {
    /// `get` calls.
    pub get: u64,
    /// `put` calls.
    pub put: u64,
    /// `record_outcome` calls.
    pub record_outcome: u64,
    /// `flush` calls.
    pub flush: u64,
    /// `search` calls.
    pub search: u64,
}

/// Where each `get` was answered; every request is counted once, at the tier that answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TierHits {
    /// Answered by the L1 cache.
    pub l1: u64,
    /// Answered by the overlay of written but not yet committed patterns.
    pub pending: u64,
    /// Answered by SQLite.
    pub sqlite: u64,
    /// The id exists nowhere.
    pub not_found: u64,
}

/// The write queues.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Puts queued now.
    pub put_depth: u64,
    /// Slots in the put ring.
    pub put_capacity: u64,
    /// Outcomes queued now.
    pub outcome_depth: u64,
    /// Slots in the outcome ring.
    pub outcome_capacity: u64,
    /// Writes that found their ring full and waited.
    pub blocked: u64,
    /// Writes that waited the whole `enqueue_timeout` and failed with `QueueFull`.
    pub timeouts: u64,
    /// `try_*` writes handed back because their ring was full.
    pub handed_back: u64,
}

/// The writer thread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Puts committed.
    pub committed_puts: u64,
    /// Outcomes committed.
    pub committed_outcomes: u64,
    /// `UPDATE`s issued for outcomes after coalescing per id.
    pub coalesced_updates: u64,
    /// Outcomes overridden by a later `put` of the same id in the same batch.
    pub superseded_outcomes: u64,
    /// Writes that could not be committed (listed by `Store::failed_writes`).
    pub failed_writes: u64,
    /// Sub-batches re-run while isolating a failing write.
    pub batch_retries: u64,
    /// Highest write sequence number committed.
    pub committed_seq: u64,
    /// Incremental vacuums run while idle.
    pub idle_vacuums: u64,
    /// Operations per transaction.
    pub batch_size: Summary,
    /// `BEGIN IMMEDIATE` … `COMMIT`, nanoseconds.
    pub commit_ns: Summary,
}

/// Per-operation latency in nanoseconds (sampled: one call in 8 is timed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// `get` calls.
    pub get: Summary,
    /// `put` calls.
    pub put: Summary,
    /// `record_outcome` calls.
    pub record_outcome: Summary,
    /// `flush` calls.
    pub flush: Summary,
    /// `search` calls (all of them; not sampled).
    pub search: Summary,
    /// `get` calls answered by the L1.
    pub get_l1_hit: Summary,
}

/// The L1 cache.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Patterns cached.
    pub entries: u64,
    /// Bytes of cached patterns.
    pub bytes: u64,
    /// The byte bound.
    pub capacity_bytes: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Writes not yet committed, served from the overlay.
    pub pending_entries: u64,
    /// Patterns loaded into the L1 at open (`Config::l1_warm`).
    pub warmed: u64,
    /// Misses whose SQLite read was not installed in the L1 because a commit or a `put` of
    /// the same overlay shard raced it (the next `get` of the id misses again).
    #[serde(default)]
    pub fills_refused: u64,
}

/// Slow statements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowQueries {
    /// The threshold, microseconds.
    pub threshold_us: u64,
    /// Statements over it since open.
    pub count: u64,
    /// The most recent ones (up to 32).
    pub recent: Vec<SlowQuery>,
}

/// A snapshot of the store's metrics. Taking it changes nothing (invariant 7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Operations per kind.
    pub ops: OpCounts,
    /// Where gets were answered.
    pub get_hits: TierHits,
    /// The write queues.
    pub queues: QueueStats,
    /// The writer thread.
    pub writer: WriterStats,
    /// Per-operation latency.
    pub latency_ns: Latencies,
    /// The L1 cache.
    pub l1: CacheStats,
    /// Slow statements.
    pub slow_queries: SlowQueries,
    /// The L2 arena and the L3 query cache (`None`: a read-only store without an arena).
    pub l2: Option<crate::l2::L2Metrics>,
    /// Payload codecs, dedup and dictionaries.
    pub codec: crate::payload::CodecMetrics,
    /// Resident set size of the process (0 where the platform does not tell).
    pub rss_bytes: u64,
}

impl Registry {
    pub fn fill(&self, m: &mut Metrics) {
        m.ops = OpCounts {
            get: self.gets.get(),
            put: self.puts.get(),
            record_outcome: self.outcomes.get(),
            flush: self.flushes.get(),
            search: self.searches.get(),
        };
        m.get_hits = TierHits {
            l1: self.hits_l1.get(),
            pending: self.hits_pending.get(),
            sqlite: self.hits_sqlite.get(),
            not_found: self.not_found.get(),
        };
        m.queues.blocked = self.enqueue_blocked.get();
        m.queues.timeouts = self.enqueue_timeouts.get();
        m.queues.handed_back = self.try_full.get();
        m.writer = WriterStats {
            batches: self.batches.get(),
            committed_puts: self.committed_puts.get(),
            committed_outcomes: self.committed_outcomes.get(),
            coalesced_updates: self.coalesced_updates.get(),
            superseded_outcomes: self.superseded_outcomes.get(),
            failed_writes: self.failed_writes.get(),
            batch_retries: self.batch_retries.get(),
            committed_seq: 0,
            idle_vacuums: self.vacuum_runs.get(),
            batch_size: self.batch_ops.summary(),
            commit_ns: self.commit_ns.summary(),
        };
        m.latency_ns = Latencies {
            get: self.get_ns.summary(),
            put: self.put_ns.summary(),
            record_outcome: self.outcome_ns.summary(),
            flush: self.flush_ns.summary(),
            search: self.search_ns.summary(),
            get_l1_hit: self.get_l1_ns.summary(),
        };
    }
}

/// Whether the calling thread should time this call: one call in 8, per thread.
#[inline]
pub(crate) fn sample_latency() -> bool {
    thread_local! { static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) }; }
    TICK.with(|t| {
        let v = t.get().wrapping_add(1);
        t.set(v);
        v & 7 == 0
    })
}

/// Resident set size from `/proc/self/statm` (Linux); 0 elsewhere.
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

impl Metrics {
    /// A readable multi-line table.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let o = &self.ops;
        let _ = writeln!(s, "patternbank report");
        let _ = writeln!(
            s,
            "  operations      get {}  put {}  record_outcome {}  flush {}  search {}",
            o.get, o.put, o.record_outcome, o.flush, o.search
        );
        let h = &self.get_hits;
        let answered = (h.l1 + h.pending + h.sqlite + h.not_found).max(1) as f64;
        let _ = writeln!(
            s,
            "  get answered by l1 {} ({:.1} %)  pending {}  sqlite {}  not found {}",
            h.l1,
            100.0 * h.l1 as f64 / answered,
            h.pending,
            h.sqlite,
            h.not_found
        );
        let _ = writeln!(
            s,
            "  {:<16}{:>8}{:>12}{:>12}{:>12}{:>12}",
            "latency", "count", "p50", "p99", "p99.9", "max"
        );
        for (name, l) in [
            ("get", &self.latency_ns.get),
            ("put", &self.latency_ns.put),
            ("record_outcome", &self.latency_ns.record_outcome),
            ("flush", &self.latency_ns.flush),
            ("commit", &self.writer.commit_ns),
        ] {
            let _ = writeln!(
                s,
                "  {:<16}{:>8}{:>12}{:>12}{:>12}{:>12}",
                name,
                l.count,
                fmt_ns(l.p50),
                fmt_ns(l.p99),
                fmt_ns(l.p999),
                fmt_ns(l.max)
            );
        }
        let q = &self.queues;
        let _ = writeln!(
            s,
            "  queues          puts {}/{}  outcomes {}/{}  blocked {}  timed out {}  handed back {}",
            q.put_depth,
            q.put_capacity,
            q.outcome_depth,
            q.outcome_capacity,
            q.blocked,
            q.timeouts,
            q.handed_back
        );
        let w = &self.writer;
        let _ = writeln!(
            s,
            "  writer          batches {}  puts {}  outcomes {} ({} updates, {} superseded)  failed {}  retries {}  batch p50 {} p99 {}",
            w.batches,
            w.committed_puts,
            w.committed_outcomes,
            w.coalesced_updates,
            w.superseded_outcomes,
            w.failed_writes,
            w.batch_retries,
            w.batch_size.p50,
            w.batch_size.p99
        );
        let c = &self.l1;
        let _ = writeln!(
            s,
            "  l1              {} entries  {:.1}/{:.1} MiB  evictions {}  pending {}",
            c.entries,
            c.bytes as f64 / 1048576.0,
            c.capacity_bytes as f64 / 1048576.0,
            c.evictions,
            c.pending_entries
        );
        let k = &self.codec;
        let (raw_in, stored): (u64, u64) =
            k.by_codec.iter().fold((0, 0), |(a, b), c| (a + c.bytes_in, b + c.bytes_stored));
        let _ = writeln!(
            s,
            "  codec           {} (dictionary {} of {})  {} B in, {} B stored ({:.1} % saved)  dedup hits {}  trainings {}  encode p50 {}  decode p50 {}",
            k.codec,
            k.dictionary_id,
            k.dictionaries,
            raw_in,
            stored,
            if raw_in == 0 { 0.0 } else { 100.0 * (1.0 - stored as f64 / raw_in as f64) },
            k.dedup_hits,
            k.trainings,
            fmt_ns(k.encode_ns.p50),
            fmt_ns(k.decode_ns.p50)
        );
        let _ = writeln!(
            s,
            "  slow queries    {} over {} µs",
            self.slow_queries.count, self.slow_queries.threshold_us
        );
        for q in &self.slow_queries.recent {
            let _ = writeln!(s, "    {} µs  {}", q.micros, q.sql);
        }
        let _ = writeln!(s, "  resident memory {:.1} MiB", self.rss_bytes as f64 / 1048576.0);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact under contention: more threads than stripes at once (the extra ones share the
    /// last stripe), then waves of threads taking the stripes of ended ones.
    #[test]
    fn striped_counters_are_exact_with_more_threads_than_stripes() {
        let counter = Counter::default();
        let per_thread = 20_000u64;
        std::thread::scope(|s| {
            for _ in 0..STRIPES * 3 {
                s.spawn(|| (0..per_thread).for_each(|_| counter.incr()));
            }
        });
        assert_eq!(counter.get(), per_thread * STRIPES as u64 * 3);
        for _ in 0..4 {
            std::thread::scope(|s| {
                for _ in 0..STRIPES / 2 {
                    s.spawn(|| (0..per_thread).for_each(|_| counter.add(2)));
                }
            });
        }
        assert_eq!(counter.get(), per_thread * (STRIPES as u64 * 3 + 4 * STRIPES as u64 / 2 * 2));
    }

    #[test]
    fn buckets_bound_values_within_a_sixteenth() {
        for v in [0u64, 1, 15, 16, 17, 100, 1000, 12345, 1 << 40, u64::MAX] {
            let b = bucket_of(v);
            assert!(bucket_high(b) >= v, "{v}");
            if v >= 16 {
                assert!((bucket_high(b) - v) as f64 <= v as f64 / 16.0, "{v}");
            }
            if b > 0 {
                assert!(bucket_high(b - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, 1_000_000);
        assert!((500_000..=532_000).contains(&s.p50), "{}", s.p50);
        assert!((990_000..=1_000_000).contains(&s.p99), "{}", s.p99);
    }
}
