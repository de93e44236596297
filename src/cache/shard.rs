//! One shard: a lock-free table for reads (`table.rs`) and, under a `Mutex`, the eviction
//! policy that writes drive.
//!
//! Entries sit on one of three intrusive lists, linked by table slot:
//!
//! - **window**: where new entries start;
//! - **probation** and **protected**: the main space, a segmented LRU (protected gets 80 %).
//!
//! An entry leaving the window competes with the main space's victim, and enters only if a
//! TinyLFU frequency sketch has seen it more often (W-TinyLFU). `Lru` is the same machine with
//! a window as large as the shard (an exact LRU); `Lfu` uses a fixed 1 % window.
//!
//! **`Adaptive`** moves the window by ghost-entry feedback (after ARC): a key that leaves the
//! cache is remembered in a small direct-mapped table of 16-bit fingerprints, tagged with the
//! side that evicted it. A new key found there is a miss the other split would have saved:
//! one evicted from the window grows the window, one evicted from the main space shrinks it,
//! each by a step weighted (as ARC does) by how much rarer its side's ghosts are. Hill
//! climbing on the sampled hit rate was measured first and dropped: on shared/traces its
//! window wandered with the sampling noise (orm-busy 74.6–77.6 % across its tunings; ghosts:
//! 78.8 %). Its lists are CLOCKs: a hit sets the entry's reference bit and moves nothing, and
//! a referenced entry reaching a list's cold end is given its next place then (window: back
//! to the head; probation: promoted; protected: back to the head), losing the bit.
//!
//! **Reads take no lock.** `Clock` and `Adaptive` reads set the reference bit (a load, and a
//! store only if it was clear, so a hot entry's line is not written on every read). An
//! `Adaptive` miss, or a hit that sets the bit, also bumps the sketch's four counters in
//! place (relaxed loads and stores: two readers racing on one counter can lose an increment,
//! which a frequency estimate tolerates; a saturated counter is not written) and counts the
//! increment on the thread's stripe, which passes the count to the shard every 64, for the
//! sketch's aging. Counting a hit once per reference bit, not once per read, keeps a hot
//! entry's reads from writing the sketch's shared lines (2 threads, read-only: 0.92× to
//! 1.12× quick_cache), and measured no worse on shared/traces (OLTP +0.9 points, the rest
//! within 0.02).
//!
//! `Lru` and `Lfu` move entries on every hit, so their reads record the access in the
//! thread's stripe of the shard's read buffer (one relaxed store and a `Release` bump of the
//! stripe's tail: lines no other thread writes, unless more threads than stripes share one).
//! The next write, or the reader that fills a stripe (with `try_lock`, never waiting), drains
//! the buffer into the policy in order. A single thread therefore drives the policy exactly
//! as if every read had taken the lock; under contention an access can be dropped when a
//! stripe is full and its shard busy (the policy is then approximate, never the bound).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use super::table::{Expiry, Node, Table, REBUILD_CHUNK};
use super::Policy;
use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, CachePadded, Ordering, ShardMutex, ShardMutexGuard};

pub(crate) const NIL: u32 = u32::MAX;

/// The 32 bits of a key's hash that its shard's table uses: the high ones (the shard index
/// comes from bits 7 and up).
#[inline]
pub(super) fn table_hash(hash: u64) -> u32 {
    (hash >> 32) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

impl Region {
    fn of(code: u8) -> Self {
        match code {
            0 => Region::Window,
            1 => Region::Probation,
            _ => Region::Protected,
        }
    }
}

#[derive(Clone, Copy)]
struct List {
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    /// In 128 bits: with a weight bound near `u64::MAX`, the sums the policy compares (and a
    /// list's own weight, for a moment, with a new entry in) can pass 2^64.
    weight: u128,
    len: u64,
}

impl List {
    const EMPTY: Self = Self { head: NIL, tail: NIL, weight: 0, len: 0 };
}

/// A count-min sketch of 4-bit saturating counters, sixteen to a `u64` (half a byte per
/// counter: the sketch is part of each entry's metadata), halved every `reset_after`
/// increments so that old popularity fades (TinyLFU's aging).
///
/// Blocked (after Caffeine's `FrequencySketch`): a key's four counters lie in one 64-byte
/// block, one in each pair of its words, so an increment touches one cache line, not four.
///
/// The words are atomics because `Adaptive` readers increment in place, with no lock:
/// relaxed loads and stores, not read-modify-writes, so two racing increments of one word
/// can lose one (and an increment racing the halving can undo it for that word). The sketch
/// is an estimate; one thread's increments are exact.
struct Sketch {
    blocks: Box<[SketchBlock]>,
    reset_after: u64,
}

#[repr(align(64))]
struct SketchBlock([AtomicU64; 8]);

impl Sketch {
    fn new(entries: usize) -> Self {
        // Four counters an entry, sixteen to a word, eight words to a block.
        let blocks = (entries.clamp(16, 1 << 24).next_power_of_two() * 4 / 16 / 8).max(1);
        Self {
            blocks: (0..blocks).map(|_| SketchBlock(std::array::from_fn(|_| AtomicU64::new(0)))).collect(),
            reset_after: 10 * entries.max(16) as u64,
        }
    }

    /// The block of `hash`, and for each row the word in it and the counter's bit shift.
    #[inline]
    fn index(&self, hash: u64) -> (&SketchBlock, [(usize, u32); 4]) {
        let spread = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let block = &self.blocks[(spread >> 32) as usize & (self.blocks.len() - 1)];
        // Five bits a row from the low half: which word of the row's pair, which counter.
        let rows = std::array::from_fn(|row| {
            let h = (spread >> (row * 5)) as usize;
            (row * 2 + (h & 1), ((h >> 1) & 15) as u32 * 4)
        });
        (block, rows)
    }

    #[inline]
    fn increment(&self, hash: u64) {
        let (block, rows) = self.index(hash);
        for (w, shift) in rows {
            // Relaxed: a frequency estimate; no data is published through it (see above).
            let word = block.0[w].load(Ordering::Relaxed);
            if (word >> shift) & 0xF < 15 {
                block.0[w].store(word + (1 << shift), Ordering::Relaxed);
            }
        }
    }

    /// Halves every counter (sixteen to a word at once).
    fn age(&self) {
        for w in self.blocks.iter().flat_map(|b| b.0.iter()) {
            // Relaxed: as in `increment`.
            w.store((w.load(Ordering::Relaxed) >> 1) & 0x7777_7777_7777_7777, Ordering::Relaxed);
        }
    }

    fn frequency(&self, hash: u64) -> u8 {
        let (block, rows) = self.index(hash);
        rows.iter()
            // Relaxed: as in `increment`.
            .map(|&(w, shift)| ((block.0[w].load(Ordering::Relaxed) >> shift) & 0xF) as u8)
            .min()
            .unwrap_or(0)
    }
}

/// Where a ghost's key was evicted from.
const GHOST_MAIN: u16 = 0x8000;

/// Keys recently evicted, for `Adaptive`'s window feedback: a direct-mapped table of 16-bit
/// entries (15 bits of fingerprint, never zero, and the side that evicted the key), a quarter
/// as many as the shard's entries, so half a byte of metadata an entry. A newer ghost
/// overwrites an older one in its place; a false match (1 in 32,768) only nudges the window.
struct Ghosts {
    tags: Box<[u16]>,
    /// Live ghosts evicted from [the window, the main space].
    counts: [u64; 2],
}

impl Ghosts {
    fn new(entries: usize) -> Self {
        Self { tags: vec![0; (entries / 4).max(16).next_power_of_two()].into(), counts: [0; 2] }
    }

    /// The place and the tag (without the side bit) of a key's 32-bit table hash: place from
    /// the low bits, fingerprint from the high ones.
    fn locate(&self, hash: u32) -> (usize, u16) {
        (hash as usize & (self.tags.len() - 1), (hash >> 17) as u16 | 1)
    }

    fn remember(&mut self, hash: u32, from_main: bool) {
        let (at, tag) = self.locate(hash);
        let old = self.tags[at];
        if old != 0 {
            self.counts[(old >> 15) as usize] -= 1;
        }
        self.counts[from_main as usize] += 1;
        self.tags[at] = tag | if from_main { GHOST_MAIN } else { 0 };
    }

    /// Forgets the key's ghost if there is one; returns whether it was evicted from the main
    /// space, and the ghost counts before.
    fn recall(&mut self, hash: u32) -> Option<(bool, [u64; 2])> {
        let (at, tag) = self.locate(hash);
        let found = self.tags[at];
        if found == 0 || found & !GHOST_MAIN != tag {
            return None;
        }
        let counts = self.counts;
        let from_main = found & GHOST_MAIN != 0;
        self.counts[from_main as usize] -= 1;
        self.tags[at] = 0;
        Some((from_main, counts))
    }
}

/// Second chances one write may give (`Clock`, `Adaptive`). When nearly every entry is
/// referenced (a hot, hit-heavy workload), a CLOCK sweep passes many entries, each a cache
/// miss under the shard lock; the bound keeps one write's lock short. It spreads the sweep
/// over writes rather than saving any: on the 90/10 mix of `benches/cache.rs` a bound of 3
/// executed as many instructions and missed as often as 8 (`perf-scripts/l1-instructions.sh`:
/// 257 against 256 instructions an operation), and cost hit ratio. Measured on shared/traces
/// against an unbounded sweep: hit ratios within 0.35 points at 8 (gli -0.32, OLTP -0.27;
/// at 3, gli -0.57).
const SECOND_CHANCES: u32 = 8;

/// Accesses a reader counts on its stripe before adding them to the shard's total.
const ACCESS_BATCH: u64 = 64;

/// Events a stripe holds before its reader tries to drain the shard.
const STRIPE_EVENTS: usize = 32;
/// An access event is two words: the key's full hash (the sketch's input) and `slot + 1` of
/// a hit, or `MISS`.
const MISS: u64 = 0;

/// One thread's (or a few threads') slice of a shard's read buffer.
struct Stripe {
    /// Written by readers (`Release`): events below it are written.
    tail: AtomicU32,
    /// Written by the drainer under the shard lock.
    head: AtomicU32,
    hashes: [AtomicU64; STRIPE_EVENTS],
    slots: [AtomicU32; STRIPE_EVENTS],
}

impl Stripe {
    fn new() -> Self {
        Self {
            tail: AtomicU32::new(0),
            head: AtomicU32::new(0),
            hashes: std::array::from_fn(|_| AtomicU64::new(0)),
            slots: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// The policy state, under the shard lock.
struct State {
    lists: [List; 3],
    capacity_weight: u64,
    capacity_entries: usize,
    window_max: u64,
    /// `Adaptive`: how far one ghost hit moves the window (see `follow_ghost`).
    window_step: f64,
    /// `Adaptive`'s window feedback.
    ghosts: Option<Ghosts>,
    /// Nodes linked in the lists.
    live: usize,
    /// Table slots not empty (live nodes and tombstones).
    used: usize,
}

/// The cache's weigher; `None`: unit weights.
type Weigher<'a, K, V> = Option<&'a (dyn Fn(&K, &V) -> u64 + Send + Sync)>;

/// An entry's weight under `weigher`.
#[inline]
fn weigh<K, V>(weigher: Weigher<'_, K, V>, key: &K, value: &V) -> u64 {
    weigher.map_or(1, |w| w(key, value))
}

struct WriterSide {
    state: ShardMutex<State>,
    /// Published after each locked operation, so `len()` needs no lock.
    len: AtomicUsize,
    weight: AtomicU64,
    evictions: AtomicU64,
}

pub(super) struct Shard<K, V, E> {
    table: Atomic<Table<K, V, E>>,
    /// The cache's key hasher: the sketch counts full 64-bit hashes, recomputed from a key
    /// when an admission decision needs one.
    hasher: foldhash::fast::FixedState,
    /// The read buffer (`Lru`, `Lfu`).
    stripes: Box<[CachePadded<Stripe>]>,
    /// Per-thread access counts, passed on to `accesses` in batches (`Adaptive`).
    access_stripes: Box<[CachePadded<AtomicU64>]>,
    /// The frequency sketch (`Lfu`, `Adaptive`): outside the lock, for `Adaptive`'s readers.
    sketch: Option<Sketch>,
    /// Sketch increments since its last aging (its own line: `Adaptive` readers add to it).
    accesses: CachePadded<AtomicU64>,
    /// What writers change, on lines apart from the fields above, which every read loads.
    writer: CachePadded<WriterSide>,
    /// Reads record accesses in the buffer (`Lru`, `Lfu`).
    buffered: bool,
    /// Misses are recorded too (`Lfu`: its sketch counts them).
    record_misses: bool,
    /// Reads set the entry's reference bit (`Clock`, `Adaptive`), and the policy moves an
    /// entry when it reaches a list's cold end rather than on each hit (module docs).
    referenced: bool,
    /// Reads increment the sketch themselves (`Adaptive`).
    inline_sketch: bool,
}

/// Sizes a table for `live` entries at a load of 0.65; rebuilt (cleared of tombstones, grown
/// or shrunk) when live entries and tombstones pass 0.8. The 0.65 keeps probes short (a
/// lookup derefs each node it passes) and the table at 12.3 bytes an entry.
fn table_len_for(live: usize) -> usize {
    (live.saturating_mul(20) / 13).max(16)
}

impl<K, V, E> Shard<K, V, E>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    E: Expiry,
{
    pub fn new(
        policy: Policy,
        capacity_entries: usize,
        capacity_weight: u64,
        shards: usize,
        hasher: foldhash::fast::FixedState,
    ) -> Self {
        // The cache's 2^24 bound on expected entries (see `expected_entries`), shared out.
        let expected =
            super::expected_entries(capacity_entries, capacity_weight).min((1 << 24) / shards.max(1)).max(16);
        let (window_max, sketch, ghosts) = match policy {
            Policy::Lru | Policy::Clock => (capacity_weight, None, None),
            Policy::Lfu => ((capacity_weight / 100).max(1), Some(Sketch::new(expected)), None),
            // Starts as W-TinyLFU's usual 1 %; the ghosts move it from there.
            Policy::Adaptive => {
                ((capacity_weight / 100).max(1), Some(Sketch::new(expected)), Some(Ghosts::new(expected)))
            }
        };
        let buffered = matches!(policy, Policy::Lru | Policy::Lfu);
        let inline_sketch = policy == Policy::Adaptive;
        Self {
            table: Atomic::new(Table::with_len(16)),
            hasher,
            stripes: if buffered {
                (0..crate::metrics::STRIPES).map(|_| CachePadded::new(Stripe::new())).collect()
            } else {
                Box::new([])
            },
            access_stripes: if inline_sketch {
                (0..crate::metrics::STRIPES).map(|_| CachePadded::new(AtomicU64::new(0))).collect()
            } else {
                Box::new([])
            },
            sketch,
            accesses: CachePadded::new(AtomicU64::new(0)),
            writer: CachePadded::new(WriterSide {
                state: ShardMutex::new(State {
                    lists: [List::EMPTY; 3],
                    capacity_weight,
                    capacity_entries,
                    window_max,
                    // 0.01 % of the whole cache: a shard sees 1/`shards` of the ghost hits,
                    // so its steps are that much larger, and the window adapts as fast per
                    // request whatever the shard count.
                    window_step: (capacity_weight as f64 * shards as f64 / 10_000.0).max(1.0),
                    ghosts,
                    live: 0,
                    used: 0,
                }),
                len: AtomicUsize::new(0),
                weight: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }),
            buffered,
            record_misses: policy == Policy::Lfu,
            referenced: matches!(policy, Policy::Clock | Policy::Adaptive),
            inline_sketch,
        }
    }

    pub fn len(&self) -> usize {
        // Relaxed: a snapshot of a count published under the lock.
        self.writer.len.load(Ordering::Relaxed)
    }

    pub fn weight(&self) -> u64 {
        // Relaxed: as in `len`.
        self.writer.weight.load(Ordering::Relaxed)
    }

    pub fn evictions(&self) -> u64 {
        // Relaxed: a statistic.
        self.writer.evictions.load(Ordering::Relaxed)
    }

    /// Lock-free lookup: the node of `key`, recording the access for the policy. `expired`
    /// says whether a deadline has passed; an expired node is reported as a miss.
    #[inline]
    pub fn find<'g, Q>(
        &self,
        key: &Q,
        hash: u64,
        guard: &'g Guard,
        expired: impl Fn(E) -> bool,
        weigher: Weigher<'_, K, V>,
    ) -> Option<&'g Node<K, V, E>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // Acquire: pairs with the Release that published a rebuilt table.
        let table = self.table.load(Ordering::Acquire, guard);
        // SAFETY: see `table_ref`.
        let table = unsafe { table_ref(table) };
        let found =
            table.find(table_hash(hash), key, guard).filter(|(_, n)| !(E::EXPIRES && expired(n.expiry)));
        if self.referenced {
            // Relaxed: a hint for the policy. Load first so a hot entry's line is not written
            // on every read.
            let newly_referenced = found.is_some_and(|(_, node)| {
                let clear = !node.referenced.load(Ordering::Relaxed);
                if clear {
                    // A store, not a `fetch_or`: two readers racing here both count the
                    // access, which the sketch tolerates (see `Node::referenced`).
                    node.referenced.store(true, Ordering::Relaxed);
                }
                clear
            });
            if self.inline_sketch && (found.is_none() || newly_referenced) {
                self.count_access(hash);
            }
        } else if self.buffered && (found.is_some() || self.record_misses) {
            let slot_code = found.map_or(MISS as u32, |(slot, _)| slot + 1);
            self.record(hash, slot_code, guard, weigher);
        }
        found.map(|(_, n)| n)
    }

    /// A lock-free probe with no effect on the policy. A writer calls it before taking the
    /// lock, so that the probe it repeats under the lock finds the table's and the node's
    /// lines in its cache: the lock is then held for a few nanoseconds, not for two misses
    /// to memory (measured: without it, two threads inserting spent a third of their time
    /// waiting for shard locks).
    #[inline]
    pub fn peek<'g, Q>(&self, key: &Q, hash: u64, guard: &'g Guard) -> Option<&'g Node<K, V, E>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // Acquire: as in `find`.
        let table = self.table.load(Ordering::Acquire, guard);
        // SAFETY: see `table_ref`.
        unsafe { table_ref(table) }.find(table_hash(hash), key, guard).map(|(_, n)| n)
    }

    /// A node for `insert_new` or `replace`, allocated before the lock is taken.
    pub fn new_node(key: K, value: V, hash: u64, expiry: E) -> Owned<Node<K, V, E>> {
        Owned::new(Node::new(key, value, table_hash(hash), expiry))
    }

    /// Increments the sketch for an access (hit or miss) and counts it: on this thread's
    /// stripe, passed on to the shard every `ACCESS_BATCH`, where a total past the sketch's
    /// `reset_after` ages it (by whichever thread gets the lock; never waiting for it).
    #[inline]
    fn count_access(&self, hash: u64) {
        let Some(sketch) = &self.sketch else { return };
        sketch.increment(hash);
        let stripe = &self.access_stripes[crate::metrics::stripe()];
        // Relaxed, and a load and a store: a per-thread count (a race with a thread sharing
        // the stripe loses a count, which only delays the aging).
        let n = stripe.load(Ordering::Relaxed).wrapping_add(1);
        stripe.store(n, Ordering::Relaxed);
        if n.is_multiple_of(ACCESS_BATCH) {
            // Relaxed: a count; the aging it triggers needs no ordering with the increments.
            let total = self.accesses.fetch_add(ACCESS_BATCH, Ordering::Relaxed) + ACCESS_BATCH;
            if total >= sketch.reset_after {
                if let Ok(_st) = self.writer.state.try_lock() {
                    self.age_if_due(sketch);
                }
            }
        }
    }

    /// Halves the sketch if `reset_after` increments have passed since the last time; the
    /// caller holds the shard lock, so one thread ages it once.
    fn age_if_due(&self, sketch: &Sketch) {
        // Relaxed: under the lock; see `count_access`.
        if self.accesses.load(Ordering::Relaxed) >= sketch.reset_after {
            sketch.age();
            self.accesses.fetch_sub(sketch.reset_after / 2, Ordering::Relaxed);
        }
    }

    /// Appends an access event to this thread's stripe; drains the shard when it fills.
    #[inline]
    fn record(&self, hash: u64, slot_code: u32, guard: &Guard, weigher: Weigher<'_, K, V>) {
        let stripe = &self.stripes[crate::metrics::stripe()];
        // Relaxed: only this thread (or a few sharing the stripe) writes `tail`; a lost race
        // loses an event, which the policy tolerates.
        let tail = stripe.tail.load(Ordering::Relaxed);
        // Acquire: pairs with the drainer's Release of `head`, so the slot we reuse is read.
        let head = stripe.head.load(Ordering::Acquire);
        let pending = tail.wrapping_sub(head) as usize;
        if pending < STRIPE_EVENTS {
            // Relaxed, then Release on `tail`: the drainer reads events below the tail it
            // loads with Acquire.
            stripe.hashes[tail as usize % STRIPE_EVENTS].store(hash, Ordering::Relaxed);
            stripe.slots[tail as usize % STRIPE_EVENTS].store(slot_code, Ordering::Relaxed);
            stripe.tail.store(tail.wrapping_add(1), Ordering::Release);
        }
        if pending + 1 >= STRIPE_EVENTS {
            // Full: drain now if the shard is free; never wait for it.
            if let Ok(mut st) = self.writer.state.try_lock() {
                self.drain(&mut st, guard, weigher);
            }
        }
    }

    /// The shard's policy state, locked; started over if a write panicked holding it.
    #[inline]
    fn lock(&self, guard: &Guard) -> ShardMutexGuard<'_, State> {
        let (mut st, poisoned) = crate::sync::lock_shard(&self.writer.state);
        if poisoned {
            self.start_over(&mut st, guard);
        }
        st
    }

    /// Empties the shard after a panic under its lock. A write calls user code midway (the
    /// weigher, the key's `Hash` and `Eq`, a value's `Drop`); a panic there can leave the
    /// lists, the counts and the table disagreeing, and a cache may always drop what it
    /// holds, so it starts over rather than work on a broken state. The table held each live
    /// node exactly once (slots change by single stores), so retiring them all is sound; a
    /// node that was linked but not yet published is leaked.
    #[cold]
    fn start_over(&self, st: &mut State, guard: &Guard) {
        let old = self.table.load(Ordering::Acquire, guard);
        // Release: readers that load the fresh table see it whole.
        self.table.store(Owned::new(Table::with_len(16)), Ordering::Release);
        // SAFETY: see `table_ref`; unreachable for new readers from here on.
        unsafe { table_ref(old) }.retire_nodes(guard);
        // SAFETY: as in `rebuild`: pinned readers keep the old table alive until they unpin.
        unsafe { guard.defer_destroy(old) };
        st.lists = [List::EMPTY; 3];
        st.live = 0;
        st.used = 0;
        // Relaxed: as in `with_lock`.
        self.writer.len.store(0, Ordering::Relaxed);
        self.writer.weight.store(0, Ordering::Relaxed);
    }

    /// Applies buffered accesses to the policy, stripe by stripe, in order (`Lru`, `Lfu`;
    /// nothing for the others, decided inline so that their writes pay no call).
    #[inline]
    fn drain(&self, st: &mut State, guard: &Guard, weigher: Weigher<'_, K, V>) {
        if self.buffered {
            self.drain_buffered(st, guard, weigher);
        }
    }

    fn drain_buffered(&self, st: &mut State, guard: &Guard, weigher: Weigher<'_, K, V>) {
        let mut locked = self.locked(st, guard, weigher);
        for stripe in self.stripes.iter() {
            // Acquire: pairs with the readers' Release of `tail`.
            let tail = stripe.tail.load(Ordering::Acquire);
            let mut head = stripe.head.load(Ordering::Relaxed);
            if tail.wrapping_sub(head) as usize > STRIPE_EVENTS {
                // Readers sharing a stripe (past `STRIPES` threads) append with a load and a
                // store, so a slow one can store a tail older than a drain that has already
                // passed it: `tail` then lies behind `head`. Those events are lost (hints);
                // skip to the tail rather than replay 2^32 stale slots under the lock.
                head = tail;
            }
            while head != tail {
                // Relaxed: ordered by the Acquire on `tail`.
                let i = head as usize % STRIPE_EVENTS;
                locked.access(
                    stripe.hashes[i].load(Ordering::Relaxed),
                    stripe.slots[i].load(Ordering::Relaxed),
                );
                head = head.wrapping_add(1);
            }
            // Release: the slots below `head` are free to reuse.
            stripe.head.store(head, Ordering::Release);
        }
    }

    fn locked<'a, 'g>(
        &'a self,
        st: &'a mut State,
        guard: &'g Guard,
        weigher: Weigher<'a, K, V>,
    ) -> Locked<'a, 'g, K, V, E> {
        // Acquire: we are the only writer, but the table may have been published by another
        // thread's earlier write.
        let table = self.table.load(Ordering::Acquire, guard);
        Locked {
            shard: self,
            // SAFETY: see `table_ref`.
            table: unsafe { table_ref(table) },
            table_ptr: table,
            st,
            guard,
            weigher,
            pending: None,
            evicted: 0,
            second_chances: SECOND_CHANCES,
            to_clear: [NIL; 4],
            to_clear_len: 0,
        }
    }

    /// Runs `f` under the shard lock with buffered reads applied first, then publishes the
    /// counts.
    pub fn with_lock<R>(
        &self,
        guard: &Guard,
        weigher: Weigher<'_, K, V>,
        f: impl FnOnce(&mut Locked<'_, '_, K, V, E>) -> R,
    ) -> R {
        let mut st = self.lock(guard);
        self.drain(&mut st, guard, weigher);
        let mut locked = self.locked(&mut st, guard, weigher);
        let r = f(&mut locked);
        let evicted = locked.evicted;
        let weight = st.lists.iter().map(|l| l.weight).sum::<u128>().min(u64::MAX as u128) as u64;
        // Relaxed: snapshots for `len()`/`weight()`; the lock orders the writers.
        self.writer.len.store(st.live, Ordering::Relaxed);
        self.writer.weight.store(weight, Ordering::Relaxed);
        if evicted > 0 {
            self.writer.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        r
    }
}

impl<K, V, E> Drop for Shard<K, V, E> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader holds this shard, so nothing is pinned on it.
        let table = self.table.load(Ordering::Relaxed, unsafe { crossbeam_epoch::unprotected() });
        Table::destroy_with_nodes(table);
    }
}

/// # Safety
/// `p` must be loaded from a shard's `table` under `guard` (or under the shard lock): tables
/// are replaced only by the writer and retired through the epoch collector, so it stays
/// valid while the guard is pinned, and it is never null (a shard always has a table).
unsafe fn table_ref<'g, K, V, E>(p: Shared<'g, Table<K, V, E>>) -> &'g Table<K, V, E> {
    // SAFETY: the caller's contract.
    unsafe { p.deref() }
}

/// A node linked but not yet published, and its slot.
type Pending<'g, K, V, E> = (u32, Shared<'g, Node<K, V, E>>);

/// A shard's policy, borrowed under its lock.
pub(super) struct Locked<'a, 'g, K, V, E> {
    shard: &'a Shard<K, V, E>,
    table: &'g Table<K, V, E>,
    table_ptr: Shared<'g, Table<K, V, E>>,
    st: &'a mut State,
    guard: &'g Guard,
    weigher: Weigher<'a, K, V>,
    /// A new node linked in the lists but not yet in the table: published only after the
    /// evictions it causes, so readers never see the shard over its capacity.
    pending: Option<Pending<'g, K, V, E>>,
    evicted: u64,
    /// Second chances left to this write (see `take_reference`).
    second_chances: u32,
    /// Slots removed while a node was pending: their tombstones are cleared once it is
    /// published (`Table::clear_tombstone`; beyond four, they stay tombstones).
    to_clear: [u32; 4],
    to_clear_len: usize,
}

impl<'g, K, V, E> Locked<'_, 'g, K, V, E>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    E: Expiry,
{
    fn node(&self, slot: u32) -> &'g Node<K, V, E> {
        if let Some((s, p)) = self.pending {
            if s == slot {
                // SAFETY: the pending node is owned by this operation (converted from an
                // `Owned` under our guard) and not yet freed.
                return unsafe { p.deref() };
            }
        }
        self.table.get(slot, self.guard).expect("a linked slot holds a node")
    }

    fn weight_of(&self, node: &Node<K, V, E>) -> u64 {
        weigh(self.weigher, &node.key, &node.value)
    }

    fn region(&self, slot: u32) -> Region {
        // Relaxed: the region changes only under this lock.
        Region::of(self.node(slot).region.load(Ordering::Relaxed))
    }

    fn set_region(&self, slot: u32, region: Region) {
        // Relaxed: as in `region`.
        self.node(slot).region.store(region as u8, Ordering::Relaxed);
    }

    // Relaxed on `prev`/`next` throughout: policy links, touched only under this lock.
    //
    // Each list is a ring (the head's `prev` is the tail), so a second chance, which sends
    // the tail to the head, only moves the list's ends: it writes no node.

    /// Takes `slot` out of its list, and out of the list's counts.
    fn unlink(&mut self, slot: u32) {
        let node = self.node(slot);
        let weight = self.weight_of(node);
        let region = self.region(slot);
        self.detach(slot, region);
        let list = &mut self.st.lists[region as usize];
        // Saturating: a weigher that answers differently now than when the entry came in
        // (against its contract) skews the count, and must not wrap it round.
        list.weight = list.weight.saturating_sub(weight as u128);
        list.len -= 1;
    }

    /// Takes `slot` out of `region`'s ring, leaving the counts alone.
    fn detach(&mut self, slot: u32, region: Region) {
        let node = self.node(slot);
        let (prev, next) = (node.prev.load(Ordering::Relaxed), node.next.load(Ordering::Relaxed));
        let list = &mut self.st.lists[region as usize];
        if next == slot {
            // Alone in its ring.
            list.head = NIL;
            list.tail = NIL;
            return;
        }
        if list.head == slot {
            list.head = next;
        }
        if list.tail == slot {
            list.tail = prev;
        }
        self.node(prev).next.store(next, Ordering::Relaxed);
        self.node(next).prev.store(prev, Ordering::Relaxed);
    }

    /// Puts `slot` into `region`'s ring between its tail and its head, as the new head (or
    /// the new tail), leaving the counts and the region bits alone.
    fn attach(&mut self, slot: u32, region: Region, as_tail: bool) {
        let List { head, tail, .. } = self.st.lists[region as usize];
        let node = self.node(slot);
        let list = &mut self.st.lists[region as usize];
        if head == NIL {
            node.prev.store(slot, Ordering::Relaxed);
            node.next.store(slot, Ordering::Relaxed);
            list.head = slot;
            list.tail = slot;
            return;
        }
        node.prev.store(tail, Ordering::Relaxed);
        node.next.store(head, Ordering::Relaxed);
        if as_tail {
            list.tail = slot;
        } else {
            list.head = slot;
        }
        self.node(tail).next.store(slot, Ordering::Relaxed);
        self.node(head).prev.store(slot, Ordering::Relaxed);
    }

    /// Adds `slot` (in no list) to `region` as its most recently used entry.
    fn push_head(&mut self, slot: u32, region: Region) {
        self.push(slot, region, false);
    }

    /// Adds `slot` (in no list) to `region` as its least recently used entry.
    fn push_tail(&mut self, slot: u32, region: Region) {
        self.push(slot, region, true);
    }

    fn push(&mut self, slot: u32, region: Region, as_tail: bool) {
        self.attach(slot, region, as_tail);
        self.set_region(slot, region);
        let weight = self.weight_of(self.node(slot));
        let list = &mut self.st.lists[region as usize];
        list.weight += weight as u128;
        list.len += 1;
    }

    /// Makes `slot` the most recently used entry of `region`.
    fn move_to(&mut self, slot: u32, region: Region) {
        if self.region(slot) != region {
            self.unlink(slot);
            self.push_head(slot, region);
            return;
        }
        let List { head, tail, .. } = self.st.lists[region as usize];
        if slot == head {
            return;
        }
        if slot == tail {
            // The ring's order already has the tail just before the head: move the ends.
            let prev = self.node(slot).prev.load(Ordering::Relaxed);
            let list = &mut self.st.lists[region as usize];
            list.head = slot;
            list.tail = prev;
            return;
        }
        self.detach(slot, region);
        self.attach(slot, region, false);
    }

    fn main_max(&self) -> u64 {
        self.st.capacity_weight.saturating_sub(self.st.window_max)
    }

    fn protected_max(&self) -> u64 {
        // In 128 bits: a weight bound near `u64::MAX` must not overflow.
        (self.main_max() as u128 * 4 / 5) as u64
    }

    fn main_weight(&self) -> u128 {
        self.st.lists[Region::Probation as usize].weight + self.st.lists[Region::Protected as usize].weight
    }

    fn total_weight(&self) -> u128 {
        self.st.lists.iter().map(|l| l.weight).sum()
    }

    /// Applies one buffered access event.
    fn access(&mut self, hash: u64, slot_code: u32) {
        if let Some(sketch) = &self.shard.sketch {
            sketch.increment(hash);
            // Relaxed: under the lock; see `Shard::count_access`.
            self.shard.accesses.fetch_add(1, Ordering::Relaxed);
            self.shard.age_if_due(sketch);
        }
        if slot_code == MISS as u32 {
            return;
        }
        let slot = slot_code - 1;
        // The slot may have been emptied or reused since the read (only under contention,
        // when accesses are approximate anyway): then there is nothing to promote.
        if slot as usize >= self.table.len()
            || self.table.get(slot, self.guard).is_none_or(|n| n.hash != table_hash(hash))
        {
            return;
        }
        match self.region(slot) {
            Region::Window => self.move_to(slot, Region::Window),
            Region::Probation => {
                self.move_to(slot, Region::Protected);
                self.demote_protected_overflow();
            }
            Region::Protected => self.move_to(slot, Region::Protected),
        }
    }

    /// The node of `key` (writer side; ignores expiry).
    pub fn find<Q>(&self, key: &Q, hash: u64) -> Option<(u32, &'g Node<K, V, E>)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table.find(table_hash(hash), key, self.guard)
    }

    /// Replaces the entry in `slot` with `fresh` (same key: same links, same policy
    /// position); the old node is retired. Returns false, removing the entry, if the new
    /// weight alone exceeds the shard.
    pub fn replace(&mut self, slot: u32, fresh: Owned<Node<K, V, E>>) -> bool {
        let old = self.node(slot);
        debug_assert_eq!(old.hash, fresh.hash);
        let new_weight = weigh(self.weigher, &fresh.key, &fresh.value);
        if new_weight > self.st.capacity_weight {
            self.remove_slot(slot);
            return false;
        }
        // Relaxed: links, region and reference bit move with the entry, under the lock.
        fresh.prev.store(old.prev.load(Ordering::Relaxed), Ordering::Relaxed);
        fresh.next.store(old.next.load(Ordering::Relaxed), Ordering::Relaxed);
        fresh.region.store(old.region.load(Ordering::Relaxed), Ordering::Relaxed);
        fresh.referenced.store(old.referenced.load(Ordering::Relaxed), Ordering::Relaxed);
        let old_weight = self.weight_of(old);
        // Relaxed: the region changes only under this lock.
        let list = &mut self.st.lists[Region::of(old.region.load(Ordering::Relaxed)) as usize];
        list.weight = list.weight.saturating_sub(old_weight as u128) + new_weight as u128;
        self.table.replace(slot, fresh, self.guard);
        // No heavier: every bound that held still holds (the entry count is the same).
        if new_weight > old_weight {
            self.enforce_bounds();
        }
        true
    }

    /// Inserts the node of a key known to be absent. Returns false (caching nothing) if its
    /// weight alone exceeds the shard.
    pub fn insert_new(&mut self, node: Owned<Node<K, V, E>>) -> bool {
        let weight = weigh(self.weigher, &node.key, &node.value);
        let hash = node.hash;
        if weight > self.st.capacity_weight || self.st.capacity_entries == 0 || self.st.capacity_weight == 0 {
            return false;
        }
        if self.st.used + 1 > self.table.len() * 4 / 5 {
            self.rebuild(table_len_for(self.st.live + 1));
        }
        self.follow_ghost(hash);
        let vacancy = self.table.vacancy(hash, self.guard);
        let node = node.into_shared(self.guard);
        self.pending = Some((vacancy.slot, node));
        self.st.live += 1;
        self.push_head(vacancy.slot, Region::Window);
        self.enforce_bounds();
        if let Some((slot, node)) = self.pending.take() {
            self.table.publish(slot, node);
            self.st.used += vacancy.was_empty as usize;
        }
        for &slot in &self.to_clear[..std::mem::take(&mut self.to_clear_len)] {
            self.st.used -= self.table.clear_tombstone(slot, self.guard);
        }
        true
    }

    /// Removes the entry in `slot`; its node is retired (freed once no reader holds it).
    pub fn remove_slot(&mut self, slot: u32) {
        self.unlink(slot);
        self.st.live -= 1;
        match self.pending {
            Some((s, node)) if s == slot => {
                self.pending = None;
                // SAFETY: the pending node never reached the table, so no reader can hold
                // it; this operation owns it.
                drop(unsafe { node.into_owned() });
            }
            _ => {
                self.table.remove(slot, self.guard);
                if self.pending.is_none() {
                    self.st.used -= self.table.clear_tombstone(slot, self.guard);
                } else if self.to_clear_len < self.to_clear.len() {
                    // The pending node's vacancy may be the empty slot after this one: clear
                    // only once the node is in it.
                    self.to_clear[self.to_clear_len] = slot;
                    self.to_clear_len += 1;
                }
            }
        }
    }

    /// Copies the live nodes into a table of `len` slots, relinks the lists by the new
    /// slots, publishes it and retires the old one.
    fn rebuild(&mut self, len: usize) {
        debug_assert!(self.pending.is_none(), "rebuild before a node is pending");
        let (fresh, moved) = self.table.rebuilt(len, self.guard);
        let remap = |slot: u32| if slot == NIL { NIL } else { moved[slot as usize] };
        // In chunks, loads first, as in `Table::rebuilt`.
        for start in (0..fresh.len() as u32).step_by(REBUILD_CHUNK) {
            let end = (start + REBUILD_CHUNK as u32).min(fresh.len() as u32);
            let mut links = [None; REBUILD_CHUNK];
            for (slot, l) in (start..end).zip(links.iter_mut()) {
                // Relaxed: links, under the lock; published with the table below.
                *l = fresh
                    .get(slot, self.guard)
                    .map(|n| (n, n.prev.load(Ordering::Relaxed), n.next.load(Ordering::Relaxed)));
            }
            for (node, prev, next) in links.into_iter().flatten() {
                node.prev.store(remap(prev), Ordering::Relaxed);
                node.next.store(remap(next), Ordering::Relaxed);
            }
        }
        for list in self.st.lists.iter_mut() {
            list.head = remap(list.head);
            list.tail = remap(list.tail);
        }
        let fresh = Owned::new(fresh).into_shared(self.guard);
        // Release: readers that load the new table see its slots filled.
        self.shard.table.store(fresh, Ordering::Release);
        // SAFETY: the old table is unreachable for new readers now; pinned readers keep it
        // alive until they unpin. Its nodes are not freed with it (tables don't own nodes).
        unsafe { self.guard.defer_destroy(self.table_ptr) };
        self.table_ptr = fresh;
        // SAFETY: just published; see `table_ref`.
        self.table = unsafe { table_ref(fresh) };
        self.st.used = self.st.live;
    }

    /// Clears the entry's reference bit; returns whether it was set, which earns the entry
    /// a second chance. At most `SECOND_CHANCES` per write: past them, entries are taken as
    /// unreferenced (bits left as they are), so a write never sweeps a whole list.
    fn take_reference(&mut self, slot: u32) -> bool {
        if self.second_chances == 0 {
            return false;
        }
        // Relaxed, and a load then a store: a policy hint (see `Node::referenced`).
        let bit = &self.node(slot).referenced;
        let referenced = bit.load(Ordering::Relaxed);
        if referenced {
            bit.store(false, Ordering::Relaxed);
        }
        self.second_chances -= referenced as u32;
        referenced
    }

    fn evict(&mut self, slot: u32) {
        if self.st.ghosts.is_some() {
            let from_main = self.region(slot) != Region::Window;
            let hash = self.node(slot).hash;
            if let Some(ghosts) = self.st.ghosts.as_mut() {
                ghosts.remember(hash, from_main);
            }
        }
        self.remove_slot(slot);
        self.evicted += 1;
    }

    /// Keeps protected within its share by demoting its LRU entries to probation.
    fn demote_protected_overflow(&mut self) {
        let max = self.protected_max();
        while self.st.lists[Region::Protected as usize].weight > max as u128 {
            let tail = self.st.lists[Region::Protected as usize].tail;
            if tail == NIL {
                break;
            }
            // A referenced entry stays protected, at the head, without its bit.
            let region = if self.shard.referenced && self.take_reference(tail) {
                Region::Protected
            } else {
                Region::Probation
            };
            self.move_to(tail, region);
        }
    }

    fn frequency(&self, slot: u32) -> u8 {
        self.shard
            .sketch
            .as_ref()
            .map_or(0, |s| s.frequency(self.shard.hasher.hash_one(&self.node(slot).key)))
    }

    /// The main space's next victim: probation's coldest, else protected's. With reference
    /// bits (`Adaptive`), a referenced entry met there is first given its due and loses its
    /// bit (promoted from probation, sent round in protected), until an unreferenced one is
    /// found; each turn clears a bit, so this ends.
    fn main_victim(&mut self) -> u32 {
        loop {
            let probation = self.st.lists[Region::Probation as usize].tail;
            let victim =
                if probation != NIL { probation } else { self.st.lists[Region::Protected as usize].tail };
            if victim == NIL || !self.shard.referenced || !self.take_reference(victim) {
                return victim;
            }
            self.move_to(victim, Region::Protected);
            self.demote_protected_overflow();
        }
    }

    /// Moves window overflow into the main space through the admission filter, then
    /// evicts until the weight and entry bounds hold.
    fn enforce_bounds(&mut self) {
        while self.st.lists[Region::Window as usize].weight > self.st.window_max as u128 {
            let candidate = self.st.lists[Region::Window as usize].tail;
            if candidate == NIL {
                break;
            }
            if self.shard.referenced && self.take_reference(candidate) {
                // Used since it entered the window: back to its head (CLOCK's second chance).
                self.move_to(candidate, Region::Window);
                continue;
            }
            let weight = self.weight_of(self.node(candidate));
            if self.main_weight() + weight as u128 <= self.main_max() as u128 {
                self.move_to(candidate, Region::Probation);
                continue;
            }
            // TinyLFU: the candidate must have been seen more often than each victim it
            // displaces.
            let candidate_freq = self.frequency(candidate);
            let mut admitted = true;
            while self.main_weight() + weight as u128 > self.main_max() as u128 {
                let victim = self.main_victim();
                if victim == NIL {
                    break;
                }
                if candidate_freq > self.frequency(victim) {
                    self.evict(victim);
                } else {
                    admitted = false;
                    break;
                }
            }
            if admitted && self.main_weight() + weight as u128 <= self.main_max() as u128 {
                self.move_to(candidate, Region::Probation);
            } else {
                self.evict(candidate);
            }
        }
        // The hard bounds, whatever the regions hold.
        while self.total_weight() > self.st.capacity_weight as u128 || self.st.live > self.st.capacity_entries
        {
            let victim = [Region::Probation, Region::Protected, Region::Window]
                .iter()
                .map(|r| self.st.lists[*r as usize].tail)
                .find(|&t| t != NIL);
            match victim {
                Some(v) if self.shard.referenced && self.take_reference(v) => {
                    // Second chance: the bit is cleared; send it round again.
                    self.move_to(v, Region::Window);
                }
                Some(v) => self.evict(v),
                None => break,
            }
        }
    }

    /// `Adaptive`: a new key that left the cache recently says which split would have kept
    /// it. Window ghost: grow the window; main ghost: shrink it. The step is 0.01 % of the
    /// shard (at least one unit), times the other side's ghosts over this side's when this
    /// side has fewer (ARC's weighting: a hit among rare ghosts is the stronger evidence).
    /// Tuned on shared/traces: steps of 0.01 % and 0.1 % gave the same hit ratios to 0.2
    /// points, 0.5 % cost gli 1.6 points; ghost tables of 1/8 to 1/2 the entries within 0.7.
    fn follow_ghost(&mut self, hash: u32) {
        let Some((from_main, [window, main])) = self.st.ghosts.as_mut().and_then(|g| g.recall(hash)) else {
            return;
        };
        let step = self.st.window_step;
        let (this, other) = if from_main { (main, window) } else { (window, main) };
        let amount = step * (other as f64 / this.max(1) as f64).max(1.0);
        self.resize_window(if from_main { -amount } else { amount });
    }

    /// Moves the window boundary by `amount` weight units (positive: a larger window).
    fn resize_window(&mut self, amount: f64) {
        // Clamped in integers: above 2^53 the bound as an `f64` may round up past itself.
        let target = ((self.st.window_max as f64 + amount).max(1.0) as u64).min(self.st.capacity_weight);
        self.st.window_max = target;
        // Shrinking the window spills its LRU entries into the main space next insert; growing
        // it takes from probation's LRU into the window now, so the main space fits its share.
        while self.main_weight() > self.main_max() as u128 {
            let victim = self.main_victim();
            if victim == NIL {
                break;
            }
            // Older than everything in the window: it goes to the window's cold end.
            self.unlink(victim);
            self.push_tail(victim, Region::Window);
        }
        self.demote_protected_overflow();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Readers sharing a stripe can leave its tail behind a drained head (see
    /// `drain_buffered`): the drain skips to the tail instead of replaying 2^32 stale slots
    /// under the lock, and the stripe takes events again.
    #[test]
    fn a_tail_behind_the_head_is_skipped_not_replayed() {
        let shard =
            Shard::<u64, u64, ()>::new(Policy::Lfu, 64, 64, 1, foldhash::fast::FixedState::with_seed(1));
        let stripe = &shard.stripes[0];
        // Relaxed: one thread.
        stripe.head.store(7, Ordering::Relaxed);
        stripe.tail.store(6, Ordering::Relaxed);
        let guard = &crossbeam_epoch::pin();
        shard.with_lock(guard, None, |_| ());
        assert_eq!(stripe.head.load(Ordering::Relaxed), 6);
        assert_eq!(shard.accesses.load(Ordering::Relaxed), 0, "no stale event replayed");
        shard.record(42, MISS as u32, guard, None);
        assert_eq!(stripe.tail.load(Ordering::Relaxed), 7);
        shard.with_lock(guard, None, |_| ());
        assert_eq!(shard.accesses.load(Ordering::Relaxed), 1, "the new event is applied");
    }
}
