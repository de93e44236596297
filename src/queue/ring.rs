//! A bounded lock-free MPSC ring buffer.
//!
//! Dmitry Vyukov's bounded queue specialised to one consumer: every slot carries a stamp that
//! says whose turn it is. A producer claims position `t` by a CAS on `tail` when the slot's
//! stamp equals `t`, writes the value, then publishes it with stamp `t + 1`. The single
//! consumer reads the slot at `head` when its stamp is `head + 1`, then frees it for the next
//! lap with stamp `head + capacity`. Producers never wait for each other to finish writing:
//! a slow producer only delays the consumer at its own slot.
//!
//! The consumer half is a separate, non-`Clone` [`Consumer`] whose `pop` takes `&mut self`,
//! so "single consumer" is enforced by the type system rather than by a comment.
//!
//! Model: crossbeam-queue `src/array_queue.rs` (same stamps, `CachePadded` head and tail).

use std::mem::MaybeUninit;

use crate::sync::{spin_hint, Arc, AtomicUsize, CachePadded, Ordering, UnsafeCell};

struct Slot<T> {
    /// `pos` when free for the producer of lap position `pos`, `pos + 1` when it holds that
    /// producer's value.
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

struct Shared<T> {
    /// Next position to pop. Written only by the consumer; read by `len()`.
    head: CachePadded<AtomicUsize>,
    /// Next position to claim by a producer.
    tail: CachePadded<AtomicUsize>,
    slots: Box<[Slot<T>]>,
    mask: usize,
}

// SAFETY: values of `T` move from producer threads to the consumer thread through the slots,
// so `T: Send` is required and sufficient; a slot's value is accessed by exactly one thread
// at a time, as arbitrated by its stamp (see `push` and `pop`).
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above; shared references only reach slot values through the stamp protocol.
unsafe impl<T: Send> Sync for Shared<T> {}

/// The producing half; clone it for each producer.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

/// The single consuming half.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

/// A ring of at least `capacity` slots (rounded up to a power of two, at least 2).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots = (0..capacity)
        .map(|i| Slot { stamp: AtomicUsize::new(i), value: UnsafeCell::new(MaybeUninit::uninit()) })
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        slots,
        mask: capacity - 1,
    });
    (Producer { shared: Arc::clone(&shared) }, Consumer { shared })
}

impl<T> Shared<T> {
    fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Items queued, exact when no push or pop is in progress; never above capacity.
    fn len(&self) -> usize {
        // Relaxed: a statistic; both counters only grow, and tail is read last so the
        // difference is never negative.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        tail.wrapping_sub(head).min(self.capacity())
    }
}

impl<T> Producer<T> {
    /// Enqueues `value`, or hands it back at once if the ring is full. Lock-free; never
    /// allocates.
    pub fn push(&self, value: T) -> Result<(), T> {
        let shared = &*self.shared;
        // Relaxed: only a starting guess; the CAS below decides.
        let mut tail = shared.tail.load(Ordering::Relaxed);
        loop {
            let slot = &shared.slots[tail & shared.mask];
            // Acquire: pairs with the Release store in `pop` that freed this slot, so our
            // write of the value below happens after the consumer's read of the old one.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                // The slot is free for position `tail`: try to claim it.
                // Relaxed: the claim needs no ordering of its own; the value is published by
                // the Release store of the stamp below.
                match shared.tail.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the successful CAS made this producer the only owner of
                        // position `tail`; the stamp (== tail) shows the consumer has
                        // finished with the slot's previous value and will not touch it until
                        // we store `tail + 1`.
                        slot.value.with_mut(|p| unsafe { (*p).write(value) });
                        // Release: pairs with the Acquire load in `pop`, publishing the value.
                        slot.stamp.store(tail.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => {
                        tail = current;
                        spin_hint();
                    }
                }
            } else if stamp.wrapping_add(shared.capacity()) == tail.wrapping_add(1) {
                // The slot still holds the value of the previous lap: the ring is full,
                // unless the consumer popped it since we read `tail`.
                // Relaxed: a retry hint; correctness rests on the stamp check.
                let current = shared.tail.load(Ordering::Relaxed);
                if current == tail {
                    return Err(value);
                }
                tail = current;
            } else {
                // Another producer claimed `tail` and has not published yet, or our `tail`
                // is stale: reload and retry.
                spin_hint();
                // Relaxed: see above.
                tail = shared.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Items queued (a snapshot).
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether the ring looked empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }
}

impl<T> Consumer<T> {
    /// Dequeues the oldest published value, or `None` if there is none yet. Wait-free.
    pub fn pop(&mut self) -> Option<T> {
        let shared = &*self.shared;
        // Relaxed: only this consumer writes `head`.
        let head = shared.head.load(Ordering::Relaxed);
        let slot = &shared.slots[head & shared.mask];
        // Acquire: pairs with the Release store of the stamp in `push`, so the value written
        // by the producer is visible here.
        let stamp = slot.stamp.load(Ordering::Acquire);
        if stamp != head.wrapping_add(1) {
            return None;
        }
        // SAFETY: the stamp says a producer published a value at `head` and nobody else
        // reads it (single consumer, enforced by `&mut self`); we move it out exactly once
        // and mark the slot free right after.
        let value = slot.value.with(|p| unsafe { (*p).assume_init_read() });
        // Relaxed: `len()` statistics only; the stamp carries the synchronisation.
        shared.head.store(head.wrapping_add(1), Ordering::Relaxed);
        // Release: pairs with the Acquire stamp load in `push`; our read of the value
        // happens before the next producer overwrites the slot.
        slot.stamp.store(head.wrapping_add(shared.capacity()), Ordering::Release);
        Some(value)
    }

    /// Dequeues the oldest value if `keep(&value)` says so; leaves it queued otherwise.
    pub fn pop_if(&mut self, keep: impl FnOnce(&T) -> bool) -> Option<T> {
        let shared = &*self.shared;
        // Relaxed: only this consumer writes `head`.
        let head = shared.head.load(Ordering::Relaxed);
        let slot = &shared.slots[head & shared.mask];
        // Acquire: as in `pop`.
        if slot.stamp.load(Ordering::Acquire) != head.wrapping_add(1) {
            return None;
        }
        // SAFETY: the value at `head` is published and only this consumer may read it; we
        // take a shared reference and do not move it unless `keep` says so.
        let take = slot.value.with(|p| keep(unsafe { (*p).assume_init_ref() }));
        if take {
            self.pop()
        } else {
            None
        }
    }

    /// Items queued (a snapshot).
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether the ring looked empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the oldest claimed slot holds a value yet (false when the ring is empty, or a
    /// producer has claimed the slot and is still writing it).
    pub fn head_is_written(&self) -> bool {
        let shared = &*self.shared;
        // Relaxed: only this consumer writes `head`.
        let head = shared.head.load(Ordering::Relaxed);
        // Acquire: as in `pop`.
        shared.slots[head & shared.mask].stamp.load(Ordering::Acquire) == head.wrapping_add(1)
    }

    /// The position of the next pop.
    pub fn position(&self) -> usize {
        // Relaxed: only this consumer writes `head`.
        self.shared.head.load(Ordering::Relaxed)
    }

    /// Positions claimed by producers so far. Every push that happened before the caller's
    /// last synchronisation with its producer has a position below this.
    pub fn claimed(&self) -> usize {
        // Acquire: see `push`; coherence makes any claim that happened-before us visible.
        self.shared.tail.load(Ordering::Acquire)
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both halves are gone, so no push is in progress: drop every published value.
        // Relaxed: we have exclusive access (`&mut self`).
        let mut head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        while head != tail {
            let slot = &self.slots[head & self.mask];
            if slot.stamp.load(Ordering::Relaxed) == head.wrapping_add(1) {
                // SAFETY: the stamp says the slot holds an initialised, unconsumed value and
                // no other reference to it exists.
                slot.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
            }
            head = head.wrapping_add(1);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_and_wraparound() {
        let (tx, mut rx) = ring::<u32>(3);
        assert_eq!(tx.capacity(), 4);
        for round in 0..5u32 {
            for i in 0..4 {
                tx.push(round * 10 + i).unwrap();
            }
            assert_eq!(tx.push(99), Err(99), "a full ring hands the value back");
            assert_eq!(tx.len(), 4);
            for i in 0..4 {
                assert_eq!(rx.pop(), Some(round * 10 + i));
            }
            assert_eq!(rx.pop(), None);
        }
    }

    #[test]
    fn pop_if_leaves_the_value() {
        let (tx, mut rx) = ring::<u32>(4);
        tx.push(5).unwrap();
        assert_eq!(rx.pop_if(|v| *v < 5), None);
        assert_eq!(rx.pop_if(|v| *v <= 5), Some(5));
        assert_eq!(rx.pop_if(|_| true), None);
    }

    #[test]
    fn head_is_written_only_while_a_value_waits() {
        let (tx, mut rx) = ring::<u32>(4);
        assert!(!rx.head_is_written(), "empty");
        tx.push(1).unwrap();
        assert!(rx.head_is_written());
        assert_eq!(rx.pop_if(|_| false), None);
        assert!(rx.head_is_written(), "left by pop_if");
        assert_eq!(rx.pop(), Some(1));
        assert!(!rx.head_is_written(), "empty again");
    }

    #[test]
    fn unconsumed_values_are_dropped() {
        let marker = Arc::new(());
        {
            let (tx, _rx) = ring::<Arc<()>>(8);
            for _ in 0..5 {
                tx.push(Arc::clone(&marker)).unwrap();
            }
            assert_eq!(Arc::strong_count(&marker), 6);
        }
        assert_eq!(Arc::strong_count(&marker), 1);
    }

    #[test]
    fn many_producers_lose_and_reorder_nothing() {
        let (tx, mut rx) = ring::<(usize, usize)>(64);
        let per = 20_000;
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let tx = tx.clone();
                crate::sync::thread::spawn(move || {
                    for i in 0..per {
                        let mut v = (t, i);
                        while let Err(back) = tx.push(v) {
                            v = back;
                            crate::sync::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0usize; 4];
        let mut got = 0;
        while got < 4 * per {
            if let Some((t, i)) = rx.pop() {
                assert_eq!(i, next[t], "producer {t} out of order");
                next[t] += 1;
                got += 1;
            }
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(next, [per; 4]);
        assert_eq!(rx.pop(), None);
    }
}
