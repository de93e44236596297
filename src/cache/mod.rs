//! L1: sharded tables of decoded values, bounded by entries and by weight.
//!
//! This is the spine's placeholder L1: each shard is a `HashMap` under a short `Mutex` with
//! CLOCK (second-chance FIFO) eviction. It already keeps the two promises the Store relies
//! on: the capacity holds at every moment (room is made *before* an entry goes in, under the
//! shard lock), and a value handed out is an owned clone (an `Arc`), so eviction never frees
//! what a reader holds. The lock-free, adaptive L1 replaces the internals behind the same API.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

use crate::sync::{AtomicU64, CachePadded, Mutex, MutexGuard, Ordering};

/// Eviction policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Second-chance FIFO: an entry read since it was last examined survives one pass.
    #[default]
    Clock,
}

type Weigher<K, V> = Box<dyn Fn(&K, &V) -> u64 + Send + Sync>;

struct Slot<V> {
    value: V,
    weight: u64,
    referenced: bool,
}

struct Shard<K, V> {
    map: HashMap<K, Slot<V>, foldhash::fast::RandomState>,
    clock: VecDeque<K>,
    weight: u64,
}

type ShardCell<K, V> = CachePadded<Mutex<Shard<K, V>>>;

/// A concurrent cache bounded by entries and by total weight.
pub struct Cache<K, V> {
    shards: Box<[ShardCell<K, V>]>,
    hasher: foldhash::fast::RandomState,
    shard_capacity_entries: usize,
    shard_capacity_weight: u64,
    capacity_entries: usize,
    capacity_weight: u64,
    weigher: Weigher<K, V>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// Shards: four per core, rounded up to a power of two, at least 8, so two threads rarely
/// meet on one lock.
fn default_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 4).next_power_of_two().max(8)
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache of at most `capacity_entries` entries (each of weight 1).
    pub fn new(capacity_entries: usize, policy: Policy) -> Self {
        Self::with_weigher(capacity_entries, u64::MAX, policy, |_, _| 1)
    }

    /// A cache bounded by entries and by the total `weigher` weight.
    ///
    /// An entry heavier than a shard's share of the weight is not cached at all.
    pub fn with_weigher(
        capacity_entries: usize,
        capacity_weight: u64,
        _policy: Policy,
        weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static,
    ) -> Self {
        let n = default_shards().min(capacity_entries.max(1)).next_power_of_two();
        let n = if n > capacity_entries.max(1) { (n / 2).max(1) } else { n };
        Self {
            shards: (0..n)
                .map(|_| {
                    CachePadded::new(Mutex::new(Shard {
                        map: HashMap::with_hasher(Default::default()),
                        clock: VecDeque::new(),
                        weight: 0,
                    }))
                })
                .collect(),
            hasher: Default::default(),
            shard_capacity_entries: capacity_entries / n,
            shard_capacity_weight: capacity_weight / n as u64,
            capacity_entries,
            capacity_weight,
            weigher: Box::new(weigher),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V>> {
        let h = self.hasher.hash_one(key) as usize;
        let i = (h >> 7) & (self.shards.len() - 1);
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value for `key`, cloned. Takes the shard lock briefly; never allocates.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key);
        match shard.map.get_mut(key) {
            Some(slot) => {
                slot.referenced = true;
                // Relaxed: statistics.
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(slot.value.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Inserts or replaces. Returns false (and caches nothing) if the value alone is heavier
    /// than a shard's share of the capacity.
    pub fn insert(&self, key: K, value: V) -> bool {
        let weight = (self.weigher)(&key, &value);
        let mut shard = self.shard(&key);
        self.insert_locked(&mut shard, key, value, weight)
    }

    /// Inserts only if `key` is absent; returns whether it inserted.
    pub fn insert_if_absent(&self, key: K, value: V) -> bool {
        let weight = (self.weigher)(&key, &value);
        let mut shard = self.shard(&key);
        if shard.map.contains_key(&key) {
            return false;
        }
        self.insert_locked(&mut shard, key, value, weight)
    }

    /// Replaces the value of a present `key` with `f(&old)` when `f` returns `Some`.
    pub fn update<Q>(&self, key: &Q, f: impl FnOnce(&V) -> Option<V>) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key);
        let Some((k, slot)) = shard.map.get_key_value(key) else {
            return false;
        };
        let Some(new) = f(&slot.value) else {
            return false;
        };
        let (weight, old_weight) = ((self.weigher)(k, &new), slot.weight);
        if weight > old_weight && shard.weight - old_weight + weight > self.shard_capacity_weight {
            // Heavier and no room: the general path evicts first.
            let k = k.clone();
            return self.insert_locked(&mut shard, k, new, weight);
        }
        // Same key, fits: swap the value in place (no key clone, no rehash, no eviction).
        let old = match shard.map.get_mut(key) {
            Some(slot) => {
                slot.weight = weight;
                std::mem::replace(&mut slot.value, new)
            }
            None => return false,
        };
        shard.weight = shard.weight - old_weight + weight;
        drop(shard);
        // The old value is dropped outside the shard lock.
        drop(old);
        true
    }

    /// Removes `key` when `pred(&value)` holds; returns whether it removed.
    pub fn remove_if<Q>(&self, key: &Q, pred: impl FnOnce(&V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key);
        if !shard.map.get(key).is_some_and(|s| pred(&s.value)) {
            return false;
        }
        if let Some(slot) = shard.map.remove(key) {
            shard.weight -= slot.weight;
        }
        true
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key);
        let slot = shard.map.remove(key)?;
        shard.weight -= slot.weight;
        Some(slot.value)
    }

    fn insert_locked(&self, shard: &mut Shard<K, V>, key: K, value: V, weight: u64) -> bool {
        if weight > self.shard_capacity_weight || self.shard_capacity_entries == 0 {
            if let Some(old) = shard.map.remove(&key) {
                shard.weight -= old.weight;
            }
            return false;
        }
        if let Some(old) = shard.map.remove(&key) {
            shard.weight -= old.weight;
        } else {
            shard.clock.push_back(key.clone());
        }
        // Make room first, so the bound holds at every moment.
        while shard.map.len() + 1 > self.shard_capacity_entries
            || shard.weight + weight > self.shard_capacity_weight
        {
            let Some(victim) = shard.clock.pop_front() else {
                break;
            };
            if victim == key {
                shard.clock.push_back(victim);
                continue;
            }
            match shard.map.get_mut(&victim) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    shard.clock.push_back(victim);
                }
                Some(_) => {
                    if let Some(slot) = shard.map.remove(&victim) {
                        shard.weight -= slot.weight;
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {} // removed earlier: a stale clock entry
            }
        }
        shard.weight += weight;
        shard.map.insert(key, Slot { value, weight, referenced: false });
        if shard.clock.len() > 2 * shard.map.len() + 16 {
            let Shard { map, clock, .. } = shard;
            let mut seen = std::collections::HashSet::with_capacity_and_hasher(
                map.len(),
                foldhash::fast::RandomState::default(),
            );
            clock.retain(|k| map.contains_key(k) && seen.insert(k.clone()));
        }
        true
    }

    /// Entries held (a snapshot; never above `capacity()`).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len()).sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held (a snapshot; never above `capacity_weight()`).
    pub fn weight(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).weight).sum()
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
        self.evictions.load(Ordering::Relaxed)
    }

    /// (hits, misses) of `get`.
    pub fn hits_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn capacity_holds_and_referenced_entries_survive() {
        let c = Cache::new(64, Policy::Clock);
        for i in 0..10_000u64 {
            c.insert(i, i);
            if i % 2 == 0 {
                assert_eq!(c.get(&i), Some(i));
            }
            assert!(c.len() <= 64);
        }
        assert!(c.evictions() > 0);
    }

    #[test]
    fn weight_bound_holds() {
        let c = Cache::with_weigher(usize::MAX, 8_000, Policy::Clock, |_: &u32, v: &Vec<u8>| v.len() as u64);
        for i in 0..1000u32 {
            c.insert(i, vec![0; 100 + (i as usize % 50)]);
            assert!(c.weight() <= 8_000);
        }
        assert!(!c.insert(1, vec![0; 100_000]), "heavier than a shard: not cached");
        assert_eq!(c.get(&1), None);
    }
}
