//! One shard's eviction policy, single-threaded (the caller holds the shard's lock).
//!
//! Entries live in a slab and sit on one of three intrusive LRU lists:
//!
//! - **window**: where new entries start, an LRU;
//! - **probation** and **protected**: the main space, a segmented LRU (protected gets 80 %).
//!
//! An entry leaving the window competes with the main space's LRU victim, and enters only if
//! a TinyLFU frequency sketch has seen it more often (W-TinyLFU). `Lru` is the same machine
//! with a window as large as the shard (an exact LRU); `Lfu` uses a fixed 1 % window;
//! `Adaptive` moves the window between 0 % and 100 % by hill climbing on the hit rate sampled
//! every `sample` requests: keep going while the hit rate improves, turn around when it drops.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use super::Policy;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

/// A map entry: the value lives here, so a CLOCK read touches one cache line region.
struct Entry<V> {
    index: u32,
    /// CLOCK's reference bit: read since the hand last passed.
    referenced: bool,
    value: V,
}

struct Node<K> {
    key: K,
    weight: u64,
    hash: u64,
    /// The shard's access tick when the node last moved to the head of its list.
    stamp: u64,
    prev: u32,
    next: u32,
    region: Region,
}

#[derive(Clone, Copy)]
struct List {
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    weight: u64,
    len: u64,
}

impl List {
    const EMPTY: Self = Self { head: NIL, tail: NIL, weight: 0, len: 0 };
}

/// A count-min sketch of 4-bit-saturating counters (stored in bytes for simplicity), halved
/// every `reset_after` increments so that old popularity fades (TinyLFU's aging).
struct Sketch {
    counters: Vec<u8>,
    mask: usize,
    increments: u64,
    reset_after: u64,
}

impl Sketch {
    fn new(entries: usize) -> Self {
        let width = entries.clamp(16, 1 << 24).next_power_of_two();
        Self {
            counters: vec![0; width * 4],
            mask: width - 1,
            increments: 0,
            reset_after: 10 * entries.max(16) as u64,
        }
    }

    fn index(&self, hash: u64, row: usize) -> usize {
        let h =
            hash.wrapping_add(row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ ((row as u64) << 32 | 0x5bd1));
        row * (self.mask + 1) + ((h >> 32) as usize & self.mask)
    }

    fn increment(&mut self, hash: u64) {
        for row in 0..4 {
            let i = self.index(hash, row);
            if self.counters[i] < 15 {
                self.counters[i] += 1;
            }
        }
        self.increments += 1;
        if self.increments >= self.reset_after {
            self.increments /= 2;
            self.counters.iter_mut().for_each(|c| *c /= 2);
        }
    }

    fn frequency(&self, hash: u64) -> u8 {
        (0..4).map(|row| self.counters[self.index(hash, row)]).min().unwrap_or(0)
    }
}

/// Hill climbing on the sampled hit rate (after Caffeine's `HillClimberWindowTinyLfuPolicy`).
struct Climber {
    sample: u64,
    hits: u64,
    requests: u64,
    previous_rate: f64,
    /// Signed change of the window per sample, in weight units.
    step: f64,
    initial_step: f64,
}

impl Climber {
    fn new(capacity: u64, sample: u64) -> Self {
        let initial_step = (capacity as f64 * 0.0625).max(1.0);
        Self { sample, hits: 0, requests: 0, previous_rate: 0.0, step: initial_step, initial_step }
    }

    /// Records a request; returns how far to move the window when a sample completes.
    fn record(&mut self, hit: bool) -> Option<f64> {
        self.requests += 1;
        self.hits += hit as u64;
        if self.requests < self.sample {
            return None;
        }
        let rate = self.hits as f64 / self.requests as f64;
        let change = rate - self.previous_rate;
        let amount = if change >= 0.0 { self.step } else { -self.step };
        // A jump of 5 points means the workload changed: climb again with the full step.
        // Otherwise the step decays, so the window settles.
        self.step = if change.abs() >= 0.05 { self.initial_step * amount.signum() } else { 0.98 * amount };
        self.previous_rate = rate;
        self.hits = 0;
        self.requests = 0;
        Some(amount)
    }
}

pub(crate) struct Shard<K, V> {
    map: HashMap<K, Entry<V>, foldhash::fast::RandomState>,
    slots: Vec<Option<Node<K>>>,
    free: Vec<u32>,
    lists: [List; 3],
    capacity_weight: u64,
    capacity_entries: usize,
    window_max: u64,
    sketch: Option<Sketch>,
    climber: Option<Climber>,
    /// Hits so far: the clock of lazy promotion.
    tick: u64,
    /// See `touch`.
    pub lazy_promotion: bool,
    /// `Policy::Clock`: reads set a bit instead of reordering.
    clock: bool,
    pub evictions: u64,
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    pub fn new(policy: Policy, capacity_entries: usize, capacity_weight: u64) -> Self {
        // Entries expected, to size the sketch and the climber's sample: the entry bound of
        // a unit-weight cache; for a weight-bounded one (the Store's, in bytes), entries of
        // about 1 KiB.
        let expected = if capacity_entries as u64 <= capacity_weight {
            capacity_entries
        } else {
            (capacity_weight / 1024).min(1 << 24) as usize
        }
        .max(16);
        let (window_max, sketch, climber) = match policy {
            Policy::Lru | Policy::Clock => (capacity_weight, None, None),
            Policy::Lfu => ((capacity_weight / 100).max(1), Some(Sketch::new(expected)), None),
            Policy::Adaptive => (
                (capacity_weight / 100).max(1),
                Some(Sketch::new(expected)),
                // A sample of twice the entries: long enough to rise above the noise, short
                // enough to follow a workload that changes (tuned on shared/traces).
                Some(Climber::new(capacity_weight, (2 * expected as u64).clamp(1024, 1 << 17))),
            ),
        };
        Self {
            map: HashMap::with_hasher(Default::default()),
            slots: Vec::new(),
            free: Vec::new(),
            lists: [List::EMPTY; 3],
            capacity_weight,
            capacity_entries,
            window_max,
            sketch,
            climber,
            tick: 0,
            lazy_promotion: false,
            clock: policy == Policy::Clock,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn weight(&self) -> u64 {
        self.lists.iter().map(|l| l.weight).sum()
    }

    fn node(&self, i: u32) -> &Node<K> {
        self.slots[i as usize].as_ref().expect("linked slot is occupied")
    }

    fn node_mut(&mut self, i: u32) -> &mut Node<K> {
        self.slots[i as usize].as_mut().expect("linked slot is occupied")
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, region, weight) = {
            let n = self.node(i);
            (n.prev, n.next, n.region, n.weight)
        };
        let list = &mut self.lists[region as usize];
        list.weight -= weight;
        list.len -= 1;
        if prev == NIL {
            list.head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        let list = &mut self.lists[region as usize];
        if next == NIL {
            list.tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
    }

    fn push_head(&mut self, i: u32, region: Region) {
        let head = self.lists[region as usize].head;
        {
            let n = self.node_mut(i);
            n.prev = NIL;
            n.next = head;
            n.region = region;
        }
        let weight = self.node(i).weight;
        if head != NIL {
            self.node_mut(head).prev = i;
        }
        let list = &mut self.lists[region as usize];
        list.head = i;
        if list.tail == NIL {
            list.tail = i;
        }
        list.weight += weight;
        list.len += 1;
    }

    fn move_to(&mut self, i: u32, region: Region) {
        self.unlink(i);
        self.push_head(i, region);
        let tick = self.tick;
        self.node_mut(i).stamp = tick;
    }

    /// A hit on an entry of the window or protected list: moves it to the head. With lazy
    /// promotion, an entry that moved there within the last eighth of the list's length of
    /// hits is still in the list's hottest part and stays put: moving it costs cache misses
    /// on its neighbours for no change that matters (the order is LRU up to that slack).
    fn touch(&mut self, i: u32, region: Region) {
        let since = self.tick - self.node(i).stamp;
        if !self.lazy_promotion || since > self.lists[region as usize].len / 8 {
            self.move_to(i, region);
        }
    }

    /// Appends `i` (already unlinked) as the least recently used entry of `region`.
    fn push_tail(&mut self, i: u32, region: Region) {
        let tail = self.lists[region as usize].tail;
        let weight = self.node(i).weight;
        {
            let n = self.node_mut(i);
            n.prev = tail;
            n.next = NIL;
            n.region = region;
        }
        if tail != NIL {
            self.node_mut(tail).next = i;
        }
        let list = &mut self.lists[region as usize];
        list.tail = i;
        if list.head == NIL {
            list.head = i;
        }
        list.weight += weight;
        list.len += 1;
    }

    fn main_max(&self) -> u64 {
        self.capacity_weight - self.window_max
    }

    fn protected_max(&self) -> u64 {
        self.main_max() * 4 / 5
    }

    /// Looks `key` up, recording the access for the policy.
    pub fn get<Q>(&mut self, key: &Q, hash: u64) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.clock {
            // CLOCK: a read only sets the entry's reference bit; the list is reordered at
            // eviction, so the slab is not touched.
            let entry = self.map.get_mut(key)?;
            entry.referenced = true;
            return Some(&entry.value);
        }
        if let Some(s) = self.sketch.as_mut() {
            s.increment(hash);
        }
        let found = self.map.get(key).map(|e| e.index);
        if let Some(amount) = self.climber.as_mut().and_then(|c| c.record(found.is_some())) {
            self.resize_window(amount);
        }
        let i = found?;
        self.tick += 1;
        match self.node(i).region {
            Region::Window => self.touch(i, Region::Window),
            Region::Probation => {
                self.move_to(i, Region::Protected);
                self.demote_protected_overflow();
            }
            Region::Protected => self.touch(i, Region::Protected),
        }
        self.map.get(key).map(|e| &e.value)
    }

    /// The value for `key` without recording an access.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|e| &e.value)
    }

    /// The stored key for `key` (to clone it) and its value.
    pub fn peek_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_key_value(key).map(|(k, e)| (k, &e.value))
    }

    /// Sets the weight of the entry at slab index `i`, keeping its list's total right.
    fn reweigh(&mut self, i: u32, weight: u64) {
        let region = self.node(i).region;
        let old_weight = self.node(i).weight;
        self.lists[region as usize].weight = self.lists[region as usize].weight - old_weight + weight;
        self.node_mut(i).weight = weight;
    }

    /// Replaces the value of a present key in place; returns the old value.
    pub fn replace<Q>(&mut self, key: &Q, value: V, weight: u64) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.map.get_mut(key)?;
        let i = entry.index;
        let old = std::mem::replace(&mut entry.value, value);
        self.reweigh(i, weight);
        self.enforce_bounds();
        Some(old)
    }

    /// Inserts or replaces; returns false (caching nothing) if `weight` alone exceeds the
    /// shard. Evicted values are handed to `evicted` so the caller can drop them after
    /// releasing its lock.
    pub fn insert(&mut self, key: K, value: V, weight: u64, hash: u64, evicted: &mut Vec<V>) -> bool {
        if let Some(entry) = self.map.get_mut(&key) {
            let i = entry.index;
            if weight > self.capacity_weight {
                if let Some(v) = self.remove_index(i) {
                    evicted.push(v);
                }
                return false;
            }
            evicted.push(std::mem::replace(&mut entry.value, value));
            self.reweigh(i, weight);
            self.enforce_bounds_into(evicted);
            return true;
        }
        if weight > self.capacity_weight || self.capacity_entries == 0 {
            return false;
        }
        let map_key = key.clone();
        let node = Node { key, weight, hash, stamp: self.tick, prev: NIL, next: NIL, region: Region::Window };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(node);
                i
            }
            None => {
                self.slots.push(Some(node));
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(map_key, Entry { index: i, referenced: false, value });
        self.push_head(i, Region::Window);
        self.enforce_bounds_into(evicted);
        true
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.map.get(key)?.index;
        self.remove_index(i)
    }

    fn remove_index(&mut self, i: u32) -> Option<V> {
        self.unlink(i);
        let node = self.slots[i as usize].take()?;
        self.free.push(i);
        self.map.remove(&node.key).map(|e| e.value)
    }

    /// CLOCK's second chance: clears and reports the reference bit of slab entry `i`.
    fn take_reference(&mut self, i: u32) -> bool {
        let Some(node) = self.slots[i as usize].as_ref() else { return false };
        self.map.get_mut(&node.key).is_some_and(|e| std::mem::take(&mut e.referenced))
    }

    fn evict(&mut self, i: u32, evicted: &mut Vec<V>) {
        if let Some(v) = self.remove_index(i) {
            self.evictions += 1;
            evicted.push(v);
        }
    }

    /// Keeps protected within its share by demoting its LRU entries to probation.
    fn demote_protected_overflow(&mut self) {
        let max = self.protected_max();
        while self.lists[Region::Protected as usize].weight > max {
            let tail = self.lists[Region::Protected as usize].tail;
            if tail == NIL {
                break;
            }
            self.move_to(tail, Region::Probation);
        }
    }

    fn frequency(&self, i: u32) -> u8 {
        self.sketch.as_ref().map_or(0, |s| s.frequency(self.node(i).hash))
    }

    /// The main space's next victim: probation's LRU, else protected's.
    fn main_victim(&self) -> u32 {
        let probation = self.lists[Region::Probation as usize].tail;
        if probation != NIL {
            probation
        } else {
            self.lists[Region::Protected as usize].tail
        }
    }

    fn main_weight(&self) -> u64 {
        self.lists[Region::Probation as usize].weight + self.lists[Region::Protected as usize].weight
    }

    /// Moves window overflow into the main space through the admission filter, then
    /// evicts until the weight and entry bounds hold.
    fn enforce_bounds_into(&mut self, evicted: &mut Vec<V>) {
        while self.lists[Region::Window as usize].weight > self.window_max {
            let candidate = self.lists[Region::Window as usize].tail;
            if candidate == NIL {
                break;
            }
            let weight = self.node(candidate).weight;
            if self.main_weight() + weight <= self.main_max() {
                self.move_to(candidate, Region::Probation);
                continue;
            }
            // TinyLFU: the candidate must have been seen more often than each victim it
            // displaces.
            let candidate_freq = self.frequency(candidate);
            let mut admitted = true;
            while self.main_weight() + weight > self.main_max() {
                let victim = self.main_victim();
                if victim == NIL {
                    break;
                }
                if candidate_freq > self.frequency(victim) {
                    self.evict(victim, evicted);
                } else {
                    admitted = false;
                    break;
                }
            }
            if admitted && self.main_weight() + weight <= self.main_max() {
                self.move_to(candidate, Region::Probation);
            } else {
                self.evict(candidate, evicted);
            }
        }
        // The hard bounds, whatever the regions hold.
        while self.weight() > self.capacity_weight || self.map.len() > self.capacity_entries {
            let victim = [Region::Probation, Region::Protected, Region::Window]
                .iter()
                .map(|r| self.lists[*r as usize].tail)
                .find(|&t| t != NIL);
            match victim {
                Some(v) if self.clock && self.take_reference(v) => {
                    // Second chance: the bit is cleared; send it round again.
                    self.move_to(v, Region::Window);
                }
                Some(v) => self.evict(v, evicted),
                None => break,
            }
        }
    }

    fn enforce_bounds(&mut self) {
        let mut evicted = Vec::new();
        self.enforce_bounds_into(&mut evicted);
    }

    /// Moves the window boundary by `amount` weight units (positive: a larger window).
    fn resize_window(&mut self, amount: f64) {
        let target = (self.window_max as f64 + amount).clamp(1.0, self.capacity_weight as f64) as u64;
        self.window_max = target;
        // Shrinking the window spills its LRU entries into the main space next insert; growing
        // it takes from probation's LRU into the window now, so the main space fits its share.
        while self.main_weight() > self.main_max() {
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
