//! The MPSC ring: two producers and one consumer on a tiny ring, with wrap-around, full and
//! empty. Loom explores every interleaving (up to the preemption bound) and checks, through
//! its `UnsafeCell`, that no slot is read while written.

use loom::thread;
use patternbank::__loom::ring;

/// Every test avoids spin loops (which loom cannot bound): pushes that find the ring full
/// are recorded as handed back, and the consumer makes a fixed number of attempts. Each
/// attempt follows an explicit `yield_now`: without it loom never schedules a producer
/// between the consumer's spawn and its first pop, and a weakened ordering goes unnoticed
/// (checked: with the yields, `Release` → `Relaxed` on either stamp store fails the suite).
fn model(f: impl Fn() + Sync + Send + 'static) {
    loom::model(f);
}

#[test]
fn two_producers_one_consumer_wrap_around_in_order() {
    model(|| {
        let (tx, mut rx) = ring::<usize>(2);
        // Go once around the ring first, so the concurrent part runs on lap 1 (stamps 2, 3):
        // wrap-around under contention.
        tx.push(100).unwrap();
        tx.push(101).unwrap();
        assert_eq!(tx.push(102), Err(102), "full");
        assert_eq!((rx.pop(), rx.pop(), rx.pop()), (Some(100), Some(101), None));
        let producer = |values: Vec<usize>| {
            let tx = tx.clone();
            thread::spawn(move || values.into_iter().filter(|&v| tx.push(v).is_ok()).collect::<Vec<_>>())
        };
        let a = producer(vec![1, 2]);
        let b = producer(vec![11]);
        let mut got = Vec::new();
        for _ in 0..2 {
            // Yield points let loom run the producers before each pop, too.
            thread::yield_now();
            got.extend(rx.pop());
        }
        let accepted_a = a.join().unwrap();
        let accepted_b = b.join().unwrap();
        while let Some(v) = rx.pop() {
            got.push(v);
        }
        // Each producer's accepted values arrive exactly once, in its order.
        let from_a: Vec<_> = got.iter().copied().filter(|v| *v < 10).collect();
        let from_b: Vec<_> = got.iter().copied().filter(|v| *v > 10).collect();
        assert_eq!(from_a, accepted_a);
        assert_eq!(from_b, accepted_b);
        assert!(got.len() >= 2, "a ring of 2 accepts at least 2 of 3");
        assert_eq!(rx.pop(), None);
    });
}

#[test]
fn full_ring_hands_values_back_and_loses_none() {
    model(|| {
        let (tx, mut rx) = ring::<usize>(2);
        let tx2 = tx.clone();
        // Two producers each try three pushes once, without retrying: a push is either
        // accepted or handed back, never both, never neither.
        let producer = |tx: patternbank::__loom::Producer<usize>, base: usize| {
            thread::spawn(move || {
                let mut accepted = Vec::new();
                for v in base..base + 3 {
                    match tx.push(v) {
                        Ok(()) => accepted.push(v),
                        Err(back) => assert_eq!(back, v),
                    }
                }
                accepted
            })
        };
        let a = producer(tx, 0);
        let b = producer(tx2, 10);
        // The consumer pops concurrently, once.
        thread::yield_now();
        let early = rx.pop();
        let mut accepted = a.join().unwrap();
        accepted.extend(b.join().unwrap());
        let mut got: Vec<usize> = early.into_iter().collect();
        while let Some(v) = rx.pop() {
            got.push(v);
        }
        got.sort_unstable();
        accepted.sort_unstable();
        assert_eq!(got, accepted, "every accepted value is popped exactly once");
        assert!(accepted.len() >= 2, "a ring of 2 accepts at least 2");
    });
}

#[test]
fn empty_ring_pops_nothing_and_len_stays_in_bounds() {
    model(|| {
        let (tx, mut rx) = ring::<usize>(2);
        assert_eq!(rx.pop(), None);
        let t = thread::spawn(move || {
            tx.push(7).unwrap();
            assert!(tx.len() <= 2);
        });
        thread::yield_now();
        let first = rx.pop();
        assert!(rx.len() <= 2);
        t.join().unwrap();
        let second = rx.pop();
        assert_eq!(first.or(second), Some(7));
        assert!(first.is_none() || second.is_none());
        assert_eq!(rx.pop(), None);
    });
}

#[test]
fn the_facade_is_loom() {
    for name in patternbank::__loom::facade_types() {
        assert!(name.starts_with("loom::"), "{name}");
    }
}

/// The harness itself: loom must flag a value published with a `Relaxed` flag.
#[test]
fn sanity_loom_catches_relaxed_publication() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;
    let r = std::panic::catch_unwind(|| {
        loom::model(|| {
            let cell = Arc::new((loom::cell::UnsafeCell::new(0usize), AtomicBool::new(false)));
            let c2 = cell.clone();
            let t = thread::spawn(move || {
                c2.0.with_mut(|p| unsafe { *p = 5 });
                c2.1.store(true, Ordering::Relaxed);
            });
            if cell.1.load(Ordering::Acquire) {
                cell.0.with(|p| unsafe { assert_eq!(*p, 5) });
            }
            t.join().unwrap();
        })
    });
    assert!(r.is_err(), "loom must catch this");
}
