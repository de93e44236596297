//! Bounded top-k selection without allocation once warm.

#![forbid(unsafe_code)]

use std::cmp::Ordering;

/// A scored record: its slot in the arena and its similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// The record's slot index.
    pub slot: u64,
    /// Higher is more similar.
    pub score: f32,
}

/// The ranking order, best first: higher score (`total_cmp`, so even NaN has a fixed place),
/// then lower slot, which makes every result deterministic.
#[inline]
pub fn rank(a: &Scored, b: &Scored) -> Ordering {
    b.score.total_cmp(&a.score).then(a.slot.cmp(&b.slot))
}

/// `a` ranks strictly below `b`.
#[inline]
fn worse(a: &Scored, b: &Scored) -> bool {
    rank(a, b) == Ordering::Greater
}

/// The best `k` of a stream of [`Scored`], as a binary heap with the worst kept at the root.
///
/// Once full, a candidate costs one comparison against [`threshold`](Self::threshold) and
/// only improvements touch the heap (O(log k)). The buffer is kept across
/// [`reset`](Self::reset), so a reused `TopK` allocates only when `k` grows past any earlier
/// `k` (and then grows lazily: a huge `k` over few records never reserves `k` slots).
#[derive(Clone, Debug, Default)]
pub struct TopK {
    k: usize,
    heap: Vec<Scored>,
}

/// Slots reserved up front by `new`/`reset`; beyond this the heap grows as records arrive.
const PREALLOC: usize = 1024;

impl TopK {
    /// An empty selection of the best `k`.
    pub fn new(k: usize) -> Self {
        Self { k, heap: Vec::with_capacity(k.min(PREALLOC)) }
    }

    /// Empties the selection and sets a new `k`, keeping the buffer.
    pub fn reset(&mut self, k: usize) {
        self.k = k;
        self.heap.clear();
        self.heap.reserve(k.min(PREALLOC));
    }

    /// The `k` this selection keeps.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Candidates held (at most `k`).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no candidate is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// A score below this can never enter (−∞ until `k` candidates are held). A score equal
    /// to it may still enter with a lower slot, so scans pre-filter with `>=`.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.first().map_or(f32::INFINITY, |s| s.score)
        }
    }

    /// Offers a candidate; returns whether it was kept.
    #[inline]
    pub fn push(&mut self, slot: u64, score: f32) -> bool {
        let c = Scored { slot, score };
        if self.heap.len() < self.k {
            self.heap.push(c);
            self.sift_up(self.heap.len() - 1);
            true
        } else if self.heap.first().is_some_and(|root| worse(root, &c)) {
            self.heap[0] = c;
            self.sift_down(0);
            true
        } else {
            false
        }
    }

    /// The held candidates in heap order (not sorted).
    pub fn as_unsorted(&self) -> &[Scored] {
        &self.heap
    }

    /// Appends the held candidates to `out`, best first, and empties the selection (keeping
    /// its buffer). Sorts in place: no allocation beyond `out`'s own growth.
    pub fn drain_sorted_into(&mut self, out: &mut Vec<Scored>) {
        self.heap.sort_unstable_by(rank);
        out.extend_from_slice(&self.heap);
        self.heap.clear();
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !worse(&self.heap[i], &self.heap[parent]) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut w = i;
            if l < n && worse(&self.heap[l], &self.heap[w]) {
                w = l;
            }
            if r < n && worse(&self.heap[r], &self.heap[w]) {
                w = r;
            }
            if w == i {
                break;
            }
            self.heap.swap(i, w);
            i = w;
        }
    }
}
