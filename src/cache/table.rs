//! One shard's hash table: open addressing over epoch-managed node pointers.
//!
//! Readers probe it with no lock: they pin an epoch (crossbeam-epoch), load slot pointers with
//! `Acquire` and compare keys. The shard's writer (holding the shard lock) is the only one that
//! stores into slots, and it never frees a node or a table directly: it retires them to the
//! epoch collector, which frees them only once every reader pinned before the retirement has
//! unpinned. So a reader never sees a node freed under it, and a value it clones is whole.
//!
//! Slots are never moved while a table is published (deletion leaves a tombstone), so a
//! reader's probe can miss only keys inserted after it started. Tombstones are cleared by a
//! rebuild into a fresh table, published with `Release` and the old one retired.
//!
//! This file and `shard.rs`'s node accessors are the cache's only unsafe code.

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use crate::sync::{AtomicBool, AtomicU32, AtomicU8, Ordering};

/// Slots a rebuild reads ahead (see `Table::rebuilt`).
pub(super) const REBUILD_CHUNK: usize = 16;

/// Per-entry expiry storage: `()` for caches without TTL (zero bytes), a deadline otherwise.
pub trait Expiry: Copy + Send + Sync + 'static + sealed::Sealed {
    /// Whether entries carry a deadline at all (a constant, so a cache without TTL pays no
    /// clock read on `get`).
    #[doc(hidden)]
    const EXPIRES: bool;
    #[doc(hidden)]
    fn new(deadline_ns: u64) -> Self;
    /// Nanoseconds since the cache's base instant after which the entry is gone.
    #[doc(hidden)]
    fn deadline_ns(self) -> u64;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl Sealed for super::Deadline {}
}

/// No expiry: the default.
impl Expiry for () {
    const EXPIRES: bool = false;
    fn new(_: u64) -> Self {}
    fn deadline_ns(self) -> u64 {
        u64::MAX
    }
}

/// An entry's deadline, in nanoseconds since its cache was made (`u64::MAX`: never).
#[derive(Clone, Copy, Debug)]
pub struct Deadline(u64);

impl Expiry for Deadline {
    const EXPIRES: bool = true;
    fn new(deadline_ns: u64) -> Self {
        Self(deadline_ns)
    }
    fn deadline_ns(self) -> u64 {
        self.0
    }
}

/// An entry. `prev`, `next` and `region` belong to the shard's policy and are touched only
/// under the shard lock (atomics, `Relaxed`, because readers share the node).
///
/// Aligned to 16 so a slot's pointer has 4 free low bits: they carry 4 bits of the key's hash
/// (`tag_of`), and a probe derefs only the nodes whose tag matches (1 in 16 of the others).
/// A node of a `u64` key and value is 32 bytes either way.
#[repr(align(16))]
pub(super) struct Node<K, V, E> {
    pub key: K,
    pub value: V,
    /// The high 32 bits of the key's hash: a cheap first comparison and the sketch's input.
    pub hash: u32,
    /// The policy list the entry is on (`shard::Region`).
    pub region: AtomicU8,
    /// CLOCK's reference bit: set by readers, cleared under the lock; plain loads and stores
    /// (`Relaxed`), no read-modify-write on either side. A reader's set racing the writer's
    /// clear can be lost, which costs that entry one second chance. It has a byte of its own
    /// so that the writer's region changes need no read-modify-write either.
    pub referenced: AtomicBool,
    pub prev: AtomicU32,
    pub next: AtomicU32,
    pub expiry: E,
}

impl<K, V, E> Node<K, V, E> {
    pub fn new(key: K, value: V, hash: u32, expiry: E) -> Self {
        Self {
            key,
            value,
            hash,
            region: AtomicU8::new(0),
            referenced: AtomicBool::new(false),
            prev: AtomicU32::new(super::shard::NIL),
            next: AtomicU32::new(super::shard::NIL),
            expiry,
        }
    }
}

/// A tombstone: a null pointer tagged 1. An empty slot is an untagged null.
const TOMBSTONE: usize = 1;

/// The tag a node's slot pointer carries: the hash's top 4 bits.
#[inline]
fn tag_of(hash: u32) -> usize {
    (hash >> 28) as usize
}

pub(super) struct Table<K, V, E> {
    slots: Box<[Atomic<Node<K, V, E>>]>,
}

/// Where a probe for a new key may put it.
pub(super) struct Vacancy {
    pub slot: u32,
    /// The slot was empty (not a tombstone): the table's used count grows.
    pub was_empty: bool,
}

impl<K, V, E> Table<K, V, E> {
    pub fn with_len(len: usize) -> Self {
        Self { slots: (0..len.max(1)).map(|_| Atomic::null()).collect() }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The home slot of `hash`: a multiplicative spread of its 32 bits, then multiply-shift
    /// over the table length (which need not be a power of two, so the table can be sized to
    /// the load it needs).
    fn home(&self, hash: u32) -> usize {
        let spread = (hash as u64 | (hash as u64) << 32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((spread as u128 * self.slots.len() as u128) >> 64) as usize
    }

    /// Finds the node of `key`. Any thread, pinned by `guard`.
    #[inline]
    pub fn find<'g, Q>(&self, hash: u32, key: &Q, guard: &'g Guard) -> Option<(u32, &'g Node<K, V, E>)>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let tag = tag_of(hash);
        let home = self.home(hash);
        // From the home slot to the end, then round from the start: two plain slice walks,
        // with no bounds check, wrap-around test or counter in the loop (they were 8 % of an
        // L1 `get`'s instructions in the 90/10 mix, measured with cachegrind).
        let (before_home, from_home) = self.slots.split_at(home);
        for (part, first) in [(from_home, home), (before_home, 0)] {
            for (offset, slot) in part.iter().enumerate() {
                // Acquire: pairs with the Release store that published the node, so its
                // fields are visible whole.
                let p = slot.load(Ordering::Acquire, guard);
                if p.is_null() {
                    if p.tag() != TOMBSTONE {
                        return None;
                    }
                } else if p.tag() == tag {
                    if let Some(node) = node_ref(p) {
                        if node.hash == hash && node.key.borrow() == key {
                            return Some(((first + offset) as u32, node));
                        }
                    }
                }
            }
        }
        None
    }

    /// The first free slot (tombstone or empty) on `hash`'s probe path. Writer only; the
    /// caller has checked that the key is absent and that the table has room.
    pub fn vacancy(&self, hash: u32, guard: &Guard) -> Vacancy {
        let n = self.slots.len();
        let mut i = self.home(hash);
        loop {
            let p = self.slots[i].load(Ordering::Relaxed, guard);
            if p.is_null() {
                return Vacancy { slot: i as u32, was_empty: p.tag() != TOMBSTONE };
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// The node in `slot`, if any. Writer only (under the shard lock), or a pinned reader.
    pub fn get<'g>(&self, slot: u32, guard: &'g Guard) -> Option<&'g Node<K, V, E>> {
        // Acquire: as in `find`.
        node_ref(self.slots[slot as usize].load(Ordering::Acquire, guard))
    }

    /// Publishes `node` in a vacant `slot`. Writer only.
    pub fn publish(&self, slot: u32, node: Shared<'_, Node<K, V, E>>) {
        let tag = node_ref(node).map_or(0, |n| tag_of(n.hash));
        // Release: the node's fields are written before any reader can reach it.
        self.slots[slot as usize].store(node.with_tag(tag), Ordering::Release);
    }

    /// Replaces the node in `slot` and retires the old one. Writer only.
    ///
    /// A load and a store, not a swap: only the writer (holding the shard lock, which orders
    /// it after earlier writers) stores into slots, so no other store can come between, and
    /// the locked instruction of a swap is not needed. Readers write nothing in a node but
    /// its `referenced` byte, a hint.
    pub fn replace(&self, slot: u32, node: Owned<Node<K, V, E>>, guard: &Guard) {
        let tag = tag_of(node.hash);
        // Relaxed: our own earlier store, or one ordered before us by the shard lock.
        let old = self.slots[slot as usize].load(Ordering::Relaxed, guard);
        // Release: the new node's fields are written before any reader can reach it.
        self.slots[slot as usize].store(node.with_tag(tag), Ordering::Release);
        retire(old, guard);
    }

    /// Empties `slot` (leaving a tombstone) and retires its node. Writer only; a load and a
    /// store, as in `replace`.
    pub fn remove(&self, slot: u32, guard: &Guard) {
        // Relaxed: as in `replace`.
        let old = self.slots[slot as usize].load(Ordering::Relaxed, guard);
        // Relaxed: a tombstone publishes no data; a reader that still sees the old node is
        // pinned, and the node is freed only after it unpins.
        self.slots[slot as usize].store(Shared::null().with_tag(TOMBSTONE), Ordering::Relaxed);
        retire(old, guard);
    }

    /// Turns the tombstone in `slot` back into an empty slot if it ends its cluster, with the
    /// tombstones just before it. Writer only, and never while a probed vacancy is still to
    /// be filled (it could be the empty slot this relies on). Returns how many slots became
    /// empty, which the caller takes off its count of used slots.
    ///
    /// A tombstone must stay while a later slot of its cluster is occupied: a probe that
    /// stopped there would miss the keys beyond. But where the next slot is empty, no probe
    /// reaches past it (every key lies before the first empty slot after its home), so it
    /// can be emptied, and then so can a tombstone before it. Without this, an eviction-heavy
    /// shard filled with tombstones and rebuilt its table every ~0.3 × its entries
    /// evictions, reading every node each time (the largest cost of an insert that evicts,
    /// measured). A reader racing the change sees a tombstone or an empty slot; both end its
    /// probe with the same answer, since no key lies beyond.
    pub fn clear_tombstone(&self, slot: u32, guard: &Guard) -> usize {
        let n = self.slots.len();
        let after = |i: usize| if i + 1 == n { 0 } else { i + 1 };
        let before = |i: usize| if i == 0 { n - 1 } else { i - 1 };
        // Relaxed: only the writer (us) changes slots, and no data is published here.
        let is_tombstone = |i: usize| {
            let p = self.slots[i].load(Ordering::Relaxed, guard);
            p.is_null() && p.tag() == TOMBSTONE
        };
        let i = slot as usize;
        let next = self.slots[after(i)].load(Ordering::Relaxed, guard);
        let next_empty = next.is_null() && next.tag() != TOMBSTONE;
        if !(is_tombstone(i) && next_empty) {
            return 0;
        }
        let mut emptied = 0;
        let mut j = i;
        while is_tombstone(j) {
            self.slots[j].store(Shared::null(), Ordering::Relaxed);
            emptied += 1;
            j = before(j);
            if j == i {
                break;
            }
        }
        emptied
    }

    /// Copies every live node pointer into a fresh table of `len` slots (no tombstones) and
    /// returns it with the map from old slot to new slot. Writer only; the nodes now belong
    /// to both tables until the caller publishes the new one and retires this one.
    pub fn rebuilt(&self, len: usize, guard: &Guard) -> (Table<K, V, E>, Vec<u32>) {
        let fresh = Table::with_len(len);
        let mut moved = vec![super::shard::NIL; self.slots.len()];
        // In chunks: first every node's hash (independent loads, so their cache misses
        // overlap; a rebuild reads thousands of nodes), then their places.
        for (c, chunk) in self.slots.chunks(REBUILD_CHUNK).enumerate() {
            let mut found = [(Shared::null(), 0u32); REBUILD_CHUNK];
            for (f, slot) in found.iter_mut().zip(chunk) {
                let p = slot.load(Ordering::Relaxed, guard);
                *f = (p, node_ref(p).map_or(0, |n| n.hash));
            }
            for (j, &(p, hash)) in found[..chunk.len()].iter().enumerate() {
                if !p.is_null() {
                    let v = fresh.vacancy(hash, guard);
                    fresh.slots[v.slot as usize].store(p, Ordering::Relaxed);
                    moved[c * REBUILD_CHUNK + j] = v.slot;
                }
            }
        }
        (fresh, moved)
    }

    /// Retires every node in the table (freed once no reader holds it). Writer only, for a
    /// table just replaced, whose nodes no other table holds.
    pub fn retire_nodes(&self, guard: &Guard) {
        for slot in self.slots.iter() {
            // Relaxed: only the writer (us) stores into slots.
            retire(slot.load(Ordering::Relaxed, guard), guard);
        }
    }

    /// Frees every node and then the table. Only when no reader can exist (`&mut` on the
    /// cache, in its `Drop`).
    pub fn destroy_with_nodes(owned: Shared<'_, Self>) {
        if owned.is_null() {
            return;
        }
        // SAFETY: called from `Drop` of the shard with exclusive access: no reader is pinned
        // on this cache, and the table and the nodes it points to are owned by it alone
        // (retired ones went to the collector and are not in the current table).
        unsafe {
            let table = owned.into_owned();
            for slot in table.slots.iter() {
                let p = slot.load(Ordering::Relaxed, crossbeam_epoch::unprotected());
                if !p.is_null() {
                    drop(p.into_owned());
                }
            }
        }
    }
}

fn node_ref<'g, K, V, E>(p: Shared<'g, Node<K, V, E>>) -> Option<&'g Node<K, V, E>> {
    // SAFETY: every non-null pointer in a slot was published from an `Owned` node and is
    // freed only through `retire` (epoch-deferred) or `destroy_with_nodes` (no readers), so
    // it is valid for as long as the guard `'g` it was loaded under is pinned.
    unsafe { p.as_ref() }
}

fn retire<T>(p: Shared<'_, T>, guard: &Guard) {
    if p.is_null() {
        return;
    }
    // SAFETY: `p` was just swapped out of its slot by the only writer, so no new reader can
    // reach it; readers that already hold it are pinned, and the collector frees it only
    // after they unpin. The cache's `K`, `V` are `Send + 'static`, so freeing it later on
    // another thread is sound.
    unsafe { guard.defer_destroy(p) }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Hashes whose home is `home` in a table of `len` slots, each with a different tag.
    fn colliding(table: &Table<u64, u64, ()>, home: usize, n: usize) -> Vec<u32> {
        (0u32..).step_by(7919).filter(|&h| table.home(h) == home).take(n).collect()
    }

    fn insert(table: &Table<u64, u64, ()>, key: u64, hash: u32, guard: &Guard) -> u32 {
        let v = table.vacancy(hash, guard);
        table.publish(v.slot, Owned::new(Node::new(key, key, hash, ())).into_shared(guard));
        v.slot
    }

    fn state(table: &Table<u64, u64, ()>, guard: &Guard) -> String {
        (0..table.len())
            .map(|i| {
                let p = table.slots[i].load(Ordering::Relaxed, guard);
                if !p.is_null() {
                    'x'
                } else if p.tag() == TOMBSTONE {
                    't'
                } else {
                    '.'
                }
            })
            .collect()
    }

    #[test]
    fn removal_empties_cluster_ends_and_keeps_every_other_key_reachable() {
        let guard = &crossbeam_epoch::pin();
        let table = Table::<u64, u64, ()>::with_len(16);
        let hashes = colliding(&table, 14, 4);
        // A cluster of four keys from slot 14, wrapping: 14, 15, 0, 1.
        let slots: Vec<u32> = (0..4).map(|k| insert(&table, k, hashes[k as usize], guard)).collect();
        assert_eq!(slots, [14, 15, 0, 1]);
        let found = |k: u64| table.find(hashes[k as usize], &k, guard).map(|(s, n)| (s, n.value));
        // Inside the cluster: the tombstone stays, so the keys beyond stay reachable.
        table.remove(15, guard);
        assert_eq!(table.clear_tombstone(15, guard), 0);
        assert_eq!(state(&table, guard), "xx............xt");
        assert_eq!((found(0), found(2), found(3)), (Some((14, 0)), Some((0, 2)), Some((1, 3))));
        assert_eq!(found(1), None);
        // At the end: emptied, and the tombstones just before it with it, up to a key.
        table.remove(1, guard);
        assert_eq!(table.clear_tombstone(1, guard), 1);
        assert_eq!(state(&table, guard), "x.............xt");
        table.remove(0, guard);
        assert_eq!(table.clear_tombstone(0, guard), 2, "slot 0 and the tombstone at 15");
        assert_eq!(state(&table, guard), "..............x.");
        assert_eq!(found(0), Some((14, 0)));
        table.remove(14, guard);
        assert_eq!(table.clear_tombstone(14, guard), 1);
        assert_eq!(table.clear_tombstone(14, guard), 0, "already empty");
        assert_eq!(state(&table, guard), "................");
        assert_eq!(found(0), None);
        Table::destroy_with_nodes(Owned::new(table).into_shared(guard));
    }
}
