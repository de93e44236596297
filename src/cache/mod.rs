//! L1: sharded tables of decoded values, bounded by entries and by weight, with an eviction
//! policy per shard (see [`Policy`]).
//!
//! **Reads take no lock and allocate nothing.** A `get` pins an epoch (crossbeam-epoch: a
//! store to this thread's own epoch slot), probes its shard's open-addressing table
//! (`table.rs`), clones the value (or lends it to a closure, [`Cache::get_with`]), and tells
//! the policy: `Adaptive` and `Clock` set the entry's reference bit (a store only if it was
//! clear), and `Adaptive` bumps its frequency sketch on a miss or when the bit was clear;
//! `Lru` and `Lfu`, which move an entry on every hit, record the access in the thread's
//! stripe of the shard's read buffer. Hits and misses are counted on striped counters. A hot
//! entry's reads write no shared line.
//!
//! **Writes lock one shard**, after probing and allocating outside it: they apply any
//! buffered reads to the policy in order, then insert, replace or remove. The capacity holds
//! at every moment: a new entry is published in the table only after the evictions it
//! causes, so no reader ever finds a shard over its share, and `len()` never exceeds
//! `capacity()`. Evicted and replaced entries are retired to the epoch collector and freed
//! once no reader that could hold them is still pinned.
//!
//! **Memory**: beyond key and value, an entry costs a 16-byte node header (two policy links,
//! metadata bits, 32 bits of hash), 8 more with a TTL ([`ExpiringCache`]), and its share of
//! the table: 8-byte slots at a load between 0.6 and 0.8, 10 to 13 bytes an entry; `Lfu` and
//! `Adaptive` add their sketch (2 to 4 bytes), `Adaptive` its ghosts (half a byte). The
//! `cache_memory` test measures the total with a counting allocator.
//!
//! **Shards**: four per core (rounded up to a power of two, at least 8), so two threads
//! rarely meet on one lock; but no fewer than 4,096 entries a shard, so a small cache keeps
//! its policy's view of the whole workload. Each shard holds `1/n` of the capacity.

mod shard;
mod table;

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use crossbeam_epoch::Guard;

use crate::metrics::Counter;
use crate::sync::CachePadded;
use shard::Shard;
pub use table::{Deadline, Expiry};

/// Eviction policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Exact LRU per shard (exact for one thread; under concurrent reads an access can be
    /// dropped when its read-buffer stripe is full and the shard busy).
    Lru,
    /// W-TinyLFU with a fixed 1 % window: frequency first.
    Lfu,
    /// W-TinyLFU whose window is tuned as the cache runs by ghost-entry feedback (a miss on
    /// a key the window evicted grows it, one the main space evicted shrinks it): follows
    /// recency on recency-skewed traffic, frequency on looping or frequency-skewed traffic.
    /// Its lists are CLOCKs, so a read only sets a reference bit (see `shard.rs`).
    #[default]
    Adaptive,
    /// CLOCK (second chance): a read sets the entry's reference bit and records nothing
    /// else; an approximation of LRU (within 0.5 points of exact LRU's hit ratio on each of
    /// the five shared/traces).
    Clock,
}

/// `None`: every entry weighs 1 (`Cache::new`), with no call to make for it.
type Weigher<K, V> = Option<Box<dyn Fn(&K, &V) -> u64 + Send + Sync>>;

/// A concurrent cache bounded by entries and by total weight. `E` is the per-entry expiry:
/// `()` (none, the default) or [`Deadline`] for an [`ExpiringCache`].
pub struct Cache<K, V, E: Expiry = ()> {
    shards: Box<[CachePadded<Shard<K, V, E>>]>,
    hasher: foldhash::fast::FixedState,
    capacity_entries: usize,
    capacity_weight: u64,
    weigher: Weigher<K, V>,
    hits: Counter,
    misses: Counter,
    /// Deadlines count from here.
    base: Instant,
    /// The default time to live of an [`ExpiringCache`]'s entries.
    ttl: Option<Duration>,
}

/// A cache whose entries expire: a time to live per cache ([`Cache::with_ttl`]) and per
/// entry ([`Cache::insert_with_ttl`]). An expired entry is never returned; it is dropped when
/// the policy evicts it or a write replaces it.
pub type ExpiringCache<K, V> = Cache<K, V, Deadline>;

/// A fixed seed: shard choice, table layout and the policy's sketch are the same every run,
/// so hit ratios are reproducible.
const HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x7061_7474_6572_6e62);

/// The entries a cache of these bounds is expected to hold: its entry bound when that binds
/// first (a unit-weight cache), else entries of about 1 KiB (a weight-bounded cache such as
/// the Store's, in bytes). Sizes the shards, the sketch and the ghosts; at most 2^24, so an
/// unbounded capacity (`usize::MAX`) sizes them for 16 M entries rather than failing to
/// allocate them.
pub(crate) fn expected_entries(capacity_entries: usize, capacity_weight: u64) -> usize {
    if capacity_entries as u64 <= capacity_weight {
        capacity_entries.min(1 << 24)
    } else {
        (capacity_weight / 1024).min(1 << 24) as usize
    }
}

fn shard_count(capacity_entries: usize, capacity_weight: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    let by_cores = (cores * 4).next_power_of_two().max(8);
    let entries = expected_entries(capacity_entries, capacity_weight);
    let by_size = (entries / 4096).max(1).next_power_of_two();
    by_cores.min(by_size)
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity_entries` entries (each of weight 1).
    pub fn new(capacity_entries: usize, policy: Policy) -> Self {
        Self::build(capacity_entries, capacity_entries as u64, policy, None, None)
    }

    /// A cache bounded by entries and by the total `weigher` weight.
    ///
    /// An entry heavier than a shard's share of the weight is not cached at all. The weigher
    /// is called again when an entry leaves, so it must give the same weight for the same
    /// key and value.
    pub fn with_weigher(
        capacity_entries: usize,
        capacity_weight: u64,
        policy: Policy,
        weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self::build(capacity_entries, capacity_weight, policy, Some(Box::new(weigher)), None)
    }
}

impl<K, V> ExpiringCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity_entries` entries that each live `ttl` after their insert
    /// (unless inserted with [`insert_with_ttl`](Self::insert_with_ttl)).
    pub fn with_ttl(capacity_entries: usize, policy: Policy, ttl: Duration) -> Self {
        Self::build(capacity_entries, capacity_entries as u64, policy, None, Some(ttl))
    }

    /// [`with_weigher`](Cache::with_weigher) with a time to live; `None`: entries live until
    /// evicted unless inserted with their own.
    pub fn with_weigher_and_ttl(
        capacity_entries: usize,
        capacity_weight: u64,
        policy: Policy,
        weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static,
        ttl: Option<Duration>,
    ) -> Self {
        Self::build(capacity_entries, capacity_weight, policy, Some(Box::new(weigher)), ttl)
    }

    /// Inserts or replaces an entry that expires `ttl` from now, whatever the cache's TTL.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) -> bool {
        let deadline = Deadline::new(self.deadline_after(Some(ttl)));
        self.insert_entry(key, value, deadline, false)
    }
}

impl<K, V, E> Cache<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Expiry,
{
    fn build(
        capacity_entries: usize,
        capacity_weight: u64,
        policy: Policy,
        weigher: Weigher<K, V>,
        ttl: Option<Duration>,
    ) -> Self {
        let n = shard_count(capacity_entries, capacity_weight);
        Self {
            shards: (0..n)
                .map(|_| {
                    CachePadded::new(Shard::new(
                        policy,
                        capacity_entries / n,
                        capacity_weight / n as u64,
                        n,
                        HASHER,
                    ))
                })
                .collect(),
            hasher: HASHER,
            capacity_entries,
            capacity_weight,
            weigher,
            hits: Counter::default(),
            misses: Counter::default(),
            base: Instant::now(),
            ttl,
        }
    }

    /// The shard of `key` and its hash.
    #[inline]
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (&Shard<K, V, E>, u64) {
        let hash = self.hasher.hash_one(key);
        // Shard by bits 7.., probe by the high 32 (`shard::table_hash`): independent bits.
        ((&self.shards[(hash >> 7) as usize & (self.shards.len() - 1)]), hash)
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64
    }

    fn deadline_after(&self, ttl: Option<Duration>) -> u64 {
        ttl.map_or(u64::MAX, |t| self.now_ns().saturating_add(t.as_nanos().min(u64::MAX as u128) as u64))
    }

    fn find<'g, Q>(&self, key: &Q, guard: &'g Guard) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (shard, hash) = self.locate(key);
        let now = if E::EXPIRES { self.now_ns() } else { 0 };
        let found = shard.find(key, hash, guard, |e: E| now >= e.deadline_ns(), self.weigher.as_deref());
        match found {
            Some(_) => self.hits.incr(),
            None => self.misses.incr(),
        }
        found.map(|n| &n.value)
    }

    /// The value for `key`, cloned. No lock, no allocation (beyond what `V::clone` does).
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = crate::sync::epoch_pin();
        self.find(key, &guard).cloned()
    }

    /// Runs `f` on the value for `key` without cloning it: for values behind a reference
    /// count (`Arc`), a hot key's count is not bounced between cores. The entry stays alive
    /// while `f` runs even if it is evicted meanwhile; `f` should be short, because it delays
    /// the freeing of every entry retired while it runs.
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = crate::sync::epoch_pin();
        self.find(key, &guard).map(f)
    }

    fn expired(&self, expiry: E) -> bool {
        E::EXPIRES && self.now_ns() >= expiry.deadline_ns()
    }

    fn insert_entry(&self, key: K, value: V, expiry: E, only_if_absent: bool) -> bool {
        let guard = crate::sync::epoch_pin();
        let (shard, hash) = self.locate(&key);
        // Outside the lock: the probe's cache misses (`Shard::peek`) and the allocation.
        if let Some(old) = shard.peek(&key, hash, &guard) {
            if only_if_absent && !self.expired(old.expiry) {
                // Present when we looked: the insert is refused then, with no lock taken.
                return false;
            }
        }
        let node = Shard::new_node(key, value, hash, expiry);
        shard.with_lock(&guard, self.weigher.as_deref(), |locked| match locked.find(&node.key, hash) {
            Some((_, old)) if only_if_absent && !self.expired(old.expiry) => false,
            Some((slot, _)) => locked.replace(slot, node),
            None => locked.insert_new(node),
        })
    }

    /// Inserts or replaces. Returns false (and caches nothing) if the value alone is heavier
    /// than a shard's share of the capacity, or the bound is 0. True means the entry was
    /// offered to the policy: a frequency policy's admission may still evict a new key at
    /// once, in favour of the entries it would have displaced.
    ///
    /// The weigher and the key's `Hash` and `Eq` run under the shard's lock; if one panics,
    /// the panic reaches the caller and the shard is emptied at its next write (a cache may
    /// drop what it holds; a half-done write would leave its lists broken).
    pub fn insert(&self, key: K, value: V) -> bool {
        let expiry = E::new(self.deadline_after(self.ttl));
        self.insert_entry(key, value, expiry, false)
    }

    /// Inserts only if `key` is absent (or expired); returns whether it inserted.
    pub fn insert_if_absent(&self, key: K, value: V) -> bool {
        let expiry = E::new(self.deadline_after(self.ttl));
        self.insert_entry(key, value, expiry, true)
    }

    /// Replaces the value of a present, unexpired `key` with `f(&old)` when `f` returns
    /// `Some`, keeping its place in the policy and its deadline; returns whether it replaced.
    /// A new value heavier than a shard's share removes the entry (and returns false).
    ///
    /// `f` runs under the shard's lock: it must not call this cache (a deadlock).
    pub fn update<Q>(&self, key: &Q, f: impl FnOnce(&V) -> Option<V>) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = crate::sync::epoch_pin();
        let (shard, hash) = self.locate(key);
        shard.with_lock(&guard, self.weigher.as_deref(), |locked| {
            let Some((slot, node)) = locked.find(key, hash) else { return false };
            if self.expired(node.expiry) {
                return false;
            }
            let Some(new) = f(&node.value) else { return false };
            locked.replace(slot, Shard::new_node(node.key.clone(), new, hash, node.expiry))
        })
    }

    /// Removes `key` when `pred(&value)` holds; returns whether it removed. `pred` runs under
    /// the shard's lock: it must not call this cache (a deadlock).
    pub fn remove_if<Q>(&self, key: &Q, pred: impl FnOnce(&V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = crate::sync::epoch_pin();
        let (shard, hash) = self.locate(key);
        shard.with_lock(&guard, self.weigher.as_deref(), |locked| match locked.find(key, hash) {
            Some((slot, node)) if pred(&node.value) => {
                locked.remove_slot(slot);
                true
            }
            _ => false,
        })
    }

    /// Removes `key`; returns its value (a clone: a reader may still hold the entry) unless
    /// it had expired.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = crate::sync::epoch_pin();
        let (shard, hash) = self.locate(key);
        shard.with_lock(&guard, self.weigher.as_deref(), |locked| {
            let (slot, node) = locked.find(key, hash)?;
            let value = (!self.expired(node.expiry)).then(|| node.value.clone());
            locked.remove_slot(slot);
            value
        })
    }

    /// Entries held (a snapshot; never above `capacity()`). Expired entries count until they
    /// are dropped.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held (a snapshot; never above `capacity_weight()`).
    pub fn weight(&self) -> u64 {
        self.shards.iter().map(|s| s.weight()).sum()
    }

    /// The entry bound.
    pub fn capacity(&self) -> usize {
        self.capacity_entries
    }

    /// The weight bound.
    pub fn capacity_weight(&self) -> u64 {
        self.capacity_weight
    }

    /// Entries evicted to make room.
    pub fn evictions(&self) -> u64 {
        self.shards.iter().map(|s| s.evictions()).sum()
    }

    /// (hits, misses) of `get` and `get_with`.
    pub fn hits_misses(&self) -> (u64, u64) {
        (self.hits.get(), self.misses.get())
    }

    /// Hands what this thread's writes retired (replaced and evicted entries, outgrown
    /// tables) to the epoch collector and frees what no reader can still hold. Without it a
    /// thread's retirements wait in its own batch until about 64 have gathered, or the
    /// thread exits; call it after a burst of writes to return their memory at once.
    pub fn reclaim(&self) {
        crate::sync::epoch_pin().flush();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::Ordering;
    use crate::workload::{Rng, Zipf};
    use std::time::{Duration, Instant};

    const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Adaptive, Policy::Clock];

    #[test]
    fn capacity_holds_for_every_policy() {
        for policy in POLICIES {
            let c = Cache::new(64, policy);
            for i in 0..10_000u64 {
                c.insert(i % 700, i);
                if i % 3 == 0 {
                    let _ = c.get(&(i % 97));
                }
                assert!(c.len() <= 64, "{policy:?}");
            }
            assert!(c.evictions() > 0);
        }
    }

    #[test]
    fn weight_bound_holds_and_oversized_values_are_refused() {
        for policy in POLICIES {
            let c = Cache::with_weigher(usize::MAX, 8_000, policy, |_: &u32, v: &Vec<u8>| v.len() as u64);
            for i in 0..1000u32 {
                c.insert(i, vec![0; 100 + (i as usize % 50)]);
                assert!(c.weight() <= 8_000, "{policy:?}");
            }
            assert!(!c.insert(1, vec![0; 100_000]), "heavier than a shard: not cached");
            assert_eq!(c.get(&1), None);
        }
    }

    #[test]
    fn lru_is_exact() {
        let mut rng = Rng::new(3);
        let zipf = Zipf::new(2000, 0.8);
        let keys: Vec<u64> = (0..30_000).map(|_| zipf.sample(&mut rng) as u64).collect();
        let c = Cache::new(300, Policy::Lru);
        let mut hits = 0;
        for &k in &keys {
            if c.get(&k).is_some() {
                hits += 1;
            } else {
                c.insert(k, ());
            }
        }
        let mut reference = crate::trace::ExactLru::new(300);
        let expected = keys.iter().filter(|&&k| reference.access(k)).count();
        assert_eq!(hits, expected);
    }

    /// A hot set used again and again survives a long one-time scan under the frequency
    /// policies; LRU loses it.
    #[test]
    fn frequency_policies_resist_a_scan() {
        for policy in POLICIES {
            let c = Cache::new(1000, policy);
            let hot: Vec<u64> = (0..500).collect();
            for _ in 0..20 {
                for k in &hot {
                    if c.get(k).is_none() {
                        c.insert(*k, ());
                    }
                }
            }
            for k in 1_000_000..1_010_000u64 {
                if c.get(&k).is_none() {
                    c.insert(k, ());
                }
            }
            let kept = hot.iter().filter(|k| c.get(k).is_some()).count();
            match policy {
                Policy::Lru => assert_eq!(kept, 0, "LRU keeps nothing of the hot set"),
                Policy::Clock => {} // second chance only: no promise here
                _ => assert!(kept >= 450, "{policy:?} kept only {kept} of 500"),
            }
        }
    }

    /// Hits / requests of a cold cache replaying `keys` (get, insert on a miss), with the
    /// capacity checked after every insert (`trace::replay`).
    fn hit_ratio(keys: &[u64], capacity: usize, policy: Policy) -> f64 {
        let r = crate::trace::replay(keys, capacity, policy, |_| {}).unwrap();
        r.hits as f64 / r.requests as f64
    }

    #[test]
    fn adaptive_beats_lru_on_zipf() {
        let mut rng = Rng::new(5);
        let zipf = Zipf::new(5000, 0.9);
        let keys: Vec<u64> = (0..50_000).map(|_| zipf.sample(&mut rng) as u64).collect();
        let lru = hit_ratio(&keys, 500, Policy::Lru);
        let adaptive = hit_ratio(&keys, 500, Policy::Adaptive);
        assert!(adaptive > lru, "frequency helps on Zipf: {adaptive:.4} vs LRU {lru:.4}");
    }

    /// Recency-skewed traffic (each key is wanted a few times soon after it first appears,
    /// then rarely): a fixed 1 % window (`Lfu`) turns most new keys away for lack of history;
    /// `Adaptive`'s ghosts grow its window until it does about as well as LRU.
    #[test]
    fn adaptive_follows_recency() {
        let mut rng = Rng::new(11);
        let keys: Vec<u64> = (0..200_000u64)
            .map(|t| {
                // Mostly one of the last ~300 keys to appear, now and then an old one.
                let back = if rng.next_u64().is_multiple_of(10) {
                    rng.next_u64() % 20_000
                } else {
                    rng.next_u64() % 300
                };
                (t / 4).saturating_sub(back)
            })
            .collect();
        let lru = hit_ratio(&keys, 400, Policy::Lru);
        let lfu = hit_ratio(&keys, 400, Policy::Lfu);
        let adaptive = hit_ratio(&keys, 400, Policy::Adaptive);
        // Measured: LRU 0.668, Lfu 0.177, Adaptive 0.655.
        assert!(adaptive > lru - 0.02, "adaptive {adaptive:.4} vs LRU {lru:.4}");
        assert!(adaptive > lfu + 0.05, "adaptive {adaptive:.4} vs a fixed 1 % window {lfu:.4}");
    }

    /// CLOCK: a referenced entry at the cold end gets a second chance; the next one goes.
    #[test]
    fn clock_spares_a_referenced_entry() {
        let c = Cache::new(100, Policy::Clock);
        for k in 0..100u64 {
            c.insert(k, k);
        }
        assert_eq!(c.get(&0), Some(0));
        c.insert(100, 100);
        assert_eq!(c.get(&0), Some(0), "referenced: spared");
        assert_eq!(c.get(&1), None, "the oldest unreferenced entry is the victim");
        assert_eq!(c.len(), 100);
    }

    #[test]
    fn get_with_lends_the_value_and_counts_like_get() {
        let c = Cache::new(100, Policy::Adaptive);
        c.insert("a".to_string(), vec![1u8, 2, 3]);
        assert_eq!(c.get_with("a", |v| v.iter().map(|&x| x as u32).sum::<u32>()), Some(6));
        assert_eq!(c.get_with("b", |v| v.len()), None);
        assert_eq!(c.get("a"), Some(vec![1, 2, 3]));
        assert_eq!(c.hits_misses(), (2, 1));
    }

    #[test]
    fn update_remove_and_remove_if_act_on_the_right_entry() {
        let c = Cache::new(1000, Policy::Adaptive);
        for i in 0..500u64 {
            c.insert(i, i * 10);
        }
        assert!(c.update(&7, |v| Some(v + 1)));
        assert!(!c.update(&7, |_| None));
        assert!(!c.update(&9999, |v| Some(*v)));
        assert_eq!(c.get(&7), Some(71));
        assert!(!c.remove_if(&8, |v| *v == 0));
        assert!(c.remove_if(&8, |v| *v == 80));
        assert_eq!(c.get(&8), None);
        assert_eq!(c.remove(&9), Some(90));
        assert_eq!(c.remove(&9), None);
        assert!(!c.insert_if_absent(10, 0));
        assert_eq!(c.get(&10), Some(100));
        assert_eq!(c.len(), 498);
        for i in (0..500u64).filter(|i| ![8, 9].contains(i)) {
            let want = if i == 7 { 71 } else { i * 10 };
            assert_eq!(c.get(&i), Some(want), "key {i}");
        }
    }

    /// Enough inserts and removals to rebuild every shard's table many times: every key
    /// inserted and not removed is still found with its value.
    #[test]
    fn tables_rebuild_without_losing_entries() {
        let c = Cache::new(100_000, Policy::Lru);
        for round in 0..5u64 {
            for i in 0..20_000u64 {
                c.insert(i, i + round);
            }
            for i in (0..20_000u64).step_by(3) {
                assert_eq!(c.remove(&i), Some(i + round));
            }
            for i in 0..20_000u64 {
                let want = (i % 3 != 0).then_some(i + round);
                assert_eq!(c.get(&i), want, "round {round} key {i}");
            }
        }
    }

    /// Under heavy eviction every cached entry stays reachable: the keys `get` finds are
    /// exactly `len()` many, so no node is lost behind an emptied slot or held twice.
    #[test]
    fn every_entry_stays_reachable_under_eviction() {
        for policy in [Policy::Adaptive, Policy::Clock, Policy::Lru, Policy::Lfu] {
            let c = Cache::new(48, policy);
            let mut rng = crate::workload::Rng::new(11);
            let zipf = crate::workload::Zipf::new(400, 0.8);
            for op in 0..30_000u64 {
                let k = zipf.sample(&mut rng) as u64;
                // Every third op writes; the others read, and fill on a miss.
                if op % 3 == 0 || c.get(&k).is_none() {
                    c.insert(k, op);
                }
                if op % 97 == 0 {
                    let found = (0..400u64).filter(|k| c.get(k).is_some()).count();
                    assert_eq!(found, c.len(), "{policy:?}, op {op}");
                }
            }
        }
    }

    /// Every operation, checked against a model of the last value written to each key, on
    /// every policy, unweighted and weighted, at tiny and small capacities. The model can't
    /// know what was evicted, but it knows what a present key must hold, what a removed key
    /// must not, and what each call must return given whether its key was present just
    /// before; and the keys `get` finds must be `len()` many, weighing `weight()` together.
    #[test]
    fn every_operation_agrees_with_a_model() {
        use std::collections::HashMap;
        const KEYS: u64 = 300;
        let weight_of = |_: &u64, v: &u64| 1 + v % 7;
        for policy in POLICIES {
            for (capacity, weighted) in [(0, false), (1, false), (5, true), (40, false), (40, true)] {
                let c = if weighted {
                    Cache::with_weigher(capacity, capacity as u64 * 3, policy, weight_of)
                } else {
                    Cache::new(capacity, policy)
                };
                // `Some(v)`: the last value written; `None`: removed since (must be absent).
                let mut model: HashMap<u64, Option<u64>> = HashMap::new();
                let mut rng = Rng::new(capacity as u64 * 31 + weighted as u64);
                let zipf = Zipf::new(KEYS as usize, 0.9);
                let ctx = |op: u64| format!("{policy:?}, capacity {capacity}, weighted {weighted}, op {op}");
                for op in 0..20_000u64 {
                    let k = zipf.sample(&mut rng) as u64;
                    // Single-threaded: nothing changes the cache between this read and the
                    // call below, so this is what the call sees.
                    let before = c.get(&k);
                    match (before, model.get(&k)) {
                        (Some(v), Some(Some(want))) => assert_eq!(v, *want, "{}", ctx(op)),
                        (Some(v), other) => {
                            panic!("{}: found {v} for a key the model has as {other:?}", ctx(op))
                        }
                        (None, _) => {}
                    }
                    let present = before.is_some();
                    let cached = capacity > 0;
                    match rng.below(8) {
                        0..=2 => {
                            assert_eq!(c.insert(k, op), cached, "{}", ctx(op));
                            model.insert(k, Some(op));
                        }
                        3 => {
                            assert_eq!(c.insert_if_absent(k, op), !present && cached, "{}", ctx(op));
                            if !present {
                                model.insert(k, Some(op));
                            }
                        }
                        4 => {
                            assert_eq!(c.update(&k, |v| Some(v + 1)), present, "{}", ctx(op));
                            if let Some(v) = before {
                                model.insert(k, Some(v + 1));
                            }
                        }
                        5 => {
                            assert_eq!(c.remove(&k), before, "{}", ctx(op));
                            model.insert(k, None);
                        }
                        6 => {
                            let removed = c.remove_if(&k, |v| v % 2 == 0);
                            assert_eq!(removed, before.is_some_and(|v| v % 2 == 0), "{}", ctx(op));
                            if removed {
                                model.insert(k, None);
                            }
                        }
                        _ => assert_eq!(c.get_with(&k, |v| *v), before, "{}", ctx(op)),
                    }
                    if op % 101 == 0 {
                        let held: Vec<(u64, u64)> =
                            (0..KEYS).filter_map(|k| c.get(&k).map(|v| (k, v))).collect();
                        assert_eq!(held.len(), c.len(), "{}", ctx(op));
                        assert!(c.len() <= capacity, "{}", ctx(op));
                        if weighted {
                            let weight: u64 = held.iter().map(|(k, v)| weight_of(k, v)).sum();
                            assert_eq!(weight, c.weight(), "{}", ctx(op));
                            assert!(c.weight() <= c.capacity_weight(), "{}", ctx(op));
                        }
                    }
                }
                assert_eq!(c.evictions() > 0, capacity > 0, "{policy:?}, capacity {capacity}");
            }
        }
    }

    /// Bounds at the ends of their ranges: nothing allocated for an unbounded entry count,
    /// no overflow near `u64::MAX` weights, nothing cached (and no panic) at weight 0.
    #[test]
    fn extreme_bounds_neither_panic_nor_overflow() {
        for policy in POLICIES {
            let c = Cache::new(usize::MAX, policy);
            for k in 0..1000u64 {
                assert!(c.insert(k, k));
            }
            assert_eq!((c.len(), c.get(&7)), (1000, Some(7)), "{policy:?}");

            let c = Cache::with_weigher(1, 0, policy, |_: &u64, _: &u64| 0);
            for k in [1, 2, 1, 3, 1] {
                assert!(!c.insert(k, k), "{policy:?}: a zero weight bound caches nothing");
            }
            assert_eq!((c.len(), c.get(&1)), (0, None));

            // One shard bounded by `u64::MAX`, entries of 2^60..2^62: a handful fit, and the
            // sums the policy compares would pass 2^64.
            let weigh = |_: &u64, v: &u64| (1 << 60) + (v % 4) * (1 << 60);
            let c = Cache::with_weigher(1000, u64::MAX, policy, weigh);
            let mut rng = Rng::new(5);
            for op in 0..5000u64 {
                let k = rng.below(64);
                if op % 2 == 0 || c.get(&k).is_none() {
                    assert!(c.insert(k, op));
                }
                let held: Vec<(u64, u64)> = (0..64).filter_map(|k| c.get(&k).map(|v| (k, v))).collect();
                let weight: u128 = held.iter().map(|(k, v)| weigh(k, v) as u128).sum();
                assert!(
                    weight <= u64::MAX as u128,
                    "{policy:?}, op {op}: {} entries weigh {weight}",
                    held.len()
                );
                assert_eq!((held.len(), weight as u64), (c.len(), c.weight()), "{policy:?}, op {op}");
            }
            assert!(c.evictions() > 0);
        }
    }

    /// A weigher that panics midway through a write (against its contract) leaves the shard
    /// half-changed; the next write finds the lock poisoned and starts the shard over empty,
    /// so the cache goes on agreeing with itself instead of panicking on a broken list.
    #[test]
    fn a_panic_under_the_lock_leaves_a_working_cache() {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        let calls = std::sync::Arc::new(crate::sync::AtomicU64::new(0));
        let counted = std::sync::Arc::clone(&calls);
        // Panics on every 97th call during the test's writes (`Lru` and `Lfu` reads weigh
        // too, when they apply buffered accesses): on the new entry (before anything
        // changed) or on one leaving (with the lists half-moved).
        let weigh = move |_: &u64, v: &u64| {
            // Relaxed: a count, and a switch set and read by this thread.
            if counted.load(Ordering::Relaxed) & 1 == 1
                && counted.fetch_add(2, Ordering::Relaxed) % 194 == 193
            {
                panic!("weigher failure (the test's)");
            }
            1 + v % 3
        };
        let hook = std::sync::Arc::new(std::panic::take_hook());
        let inner = std::sync::Arc::clone(&hook);
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>().is_none_or(|m| !m.contains("the test's")) {
                inner(info);
            }
        }));
        for policy in POLICIES {
            let c = Cache::with_weigher(32, 40, policy, weigh.clone());
            let mut rng = Rng::new(9);
            let mut panics = 0;
            for op in 0..5000u64 {
                let k = rng.below(200);
                // Relaxed: as in `weigh`. The low bit arms the weigher.
                calls.fetch_or(1, Ordering::Relaxed);
                let r = catch_unwind(AssertUnwindSafe(|| match op % 4 {
                    0 => {
                        c.remove(&k);
                    }
                    _ => {
                        c.insert(k, op);
                    }
                }));
                calls.fetch_and(!1, Ordering::Relaxed);
                let held: Vec<(u64, u64)> = (0..200).filter_map(|k| c.get(&k).map(|v| (k, v))).collect();
                assert!(held.len() <= 32, "{policy:?}, op {op}: the table never holds more");
                if r.is_err() {
                    // `len()` and `weight()` are published when a write ends; the next one
                    // (which starts the shard over) publishes them again.
                    panics += 1;
                    continue;
                }
                assert_eq!(held.len(), c.len(), "{policy:?}, op {op}");
                let weight: u64 = held.iter().map(|(_, v)| 1 + v % 3).sum();
                assert_eq!(weight, c.weight(), "{policy:?}, op {op}");
                assert!(c.len() <= 32 && c.weight() <= 40, "{policy:?}, op {op}");
            }
            assert!(panics > 10, "{policy:?}: the weigher panicked {panics} times");
            // After the last panic, the cache still fills and serves.
            for k in 0..8 {
                c.insert(1000 + k, k);
            }
            assert!((0..8).any(|k| c.get(&(1000 + k)) == Some(k)), "{policy:?}");
        }
        std::panic::set_hook(Box::new(move |info| hook(info)));
    }

    #[test]
    fn expired_entries_are_never_returned() {
        let c = ExpiringCache::with_ttl(100, Policy::Adaptive, Duration::from_millis(60));
        c.insert(1u64, 1u64);
        c.insert_with_ttl(2, 2, Duration::from_secs(3600));
        c.insert_with_ttl(3, 3, Duration::ZERO);
        assert_eq!(c.get(&1), Some(1));
        assert_eq!(c.get(&3), None, "a zero TTL is expired at once");
        let start = Instant::now();
        loop {
            let got = c.get(&1);
            if start.elapsed() >= Duration::from_millis(60) {
                // Read after the deadline passed (the clock is monotonic): must be gone.
                assert_eq!(c.get(&1), None);
                break;
            }
            assert!(got.is_none() || start.elapsed() < Duration::from_millis(60));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(c.get(&2), Some(2), "its own TTL outlives the cache's");
        assert!(!c.update(&1, |v| Some(v + 1)), "expired: not updated");
        assert!(c.insert_if_absent(1, 5), "expired counts as absent");
        assert_eq!(c.get(&1), Some(5));
    }

    /// Readers check every value they get against its key while writers insert, replace and
    /// remove: a torn or freed value would show as a wrong pair (or crash under Miri/ASan).
    #[test]
    fn concurrent_readers_see_whole_values() {
        let c = crate::sync::Arc::new(Cache::new(512, Policy::Adaptive));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = crate::sync::Arc::clone(&c);
                crate::sync::thread::spawn(move || {
                    let mut rng = Rng::new(t);
                    let mut seen = 0u64;
                    for n in 0..100_000u64 {
                        let k = rng.below(4000);
                        match (t + n) % 8 {
                            0 => {
                                c.insert(k, vec![k; 1 + (k % 5) as usize]);
                            }
                            1 => {
                                c.remove(&k);
                            }
                            _ => {
                                if let Some(v) = c.get(&k) {
                                    assert!(v.len() == 1 + (k % 5) as usize && v.iter().all(|&x| x == k));
                                    seen += 1;
                                }
                            }
                        }
                        assert!(c.len() <= 512);
                    }
                    seen
                })
            })
            .collect();
        let seen: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(seen > 0);
    }

    #[test]
    fn concurrent_inserts_never_exceed_capacity() {
        let c = crate::sync::Arc::new(Cache::new(256, Policy::Adaptive));
        let stop = crate::sync::Arc::new(crate::sync::AtomicBool::new(false));
        let writers: Vec<_> = (0..3u64)
            .map(|t| {
                let c = crate::sync::Arc::clone(&c);
                crate::sync::thread::spawn(move || {
                    let mut rng = Rng::new(t);
                    for _ in 0..50_000 {
                        let k = rng.below(5000);
                        if c.get(&k).is_none() {
                            c.insert(k, k);
                        }
                    }
                })
            })
            .collect();
        let checker = {
            let (c, stop) = (crate::sync::Arc::clone(&c), crate::sync::Arc::clone(&stop));
            crate::sync::thread::spawn(move || {
                let mut max = 0;
                // Relaxed: a stop flag with no data behind it.
                while !stop.load(Ordering::Relaxed) {
                    max = max.max(c.len());
                }
                max
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(checker.join().unwrap() <= 256);
    }
}
