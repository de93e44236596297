//! Bounded MPSC queues: our ring (`patternbank::__bench::ring`) against crossbeam-queue's
//! `ArrayQueue` and `std::sync::mpsc::sync_channel`, each with 1 and 2 producer threads and
//! one consumer, capacity 4096, moving `ITEMS` `u64`s per iteration.
//!
//! Workload: not one of DESIGN.md's W1–W5 but the queue under them (W1/W3's write lanes):
//! producers push as fast as they can, the consumer pops everything. Every variant uses the
//! same non-blocking calls (`push`/`try_send` and `pop`/`try_recv`) with the same back-off on
//! a full or empty queue (a few spins, then `yield_now`, which matters on 2-core machines
//! where the 3 threads of the 2-producer case share the cores).
//!
//! Timing: `iter_custom` spawns the threads once per sample, releases them together from a
//! barrier, and times from the barrier to the consumer's last pop, so thread start-up and
//! join are outside the timed region. Each sample moves `iters × ITEMS` items.
//!
//! `same_thread` variants: one thread fills each queue to capacity and drains it, over and
//! over: the uncontended cost of a push plus a pop, free of scheduling effects. On a small,
//! shared machine the threaded figures swing by several times from run to run with what the
//! scheduler does (3 threads on 2 cores, yields); `same_thread` is the stable one, the one
//! to use for regression checks (`perf-scripts/compare.sh`).
//!
//! Checks: the consumer counts the items, sums them, and checks each producer's items arrive
//! in the order pushed (all three are FIFO per producer); any mismatch panics.
//!
//! Run: `cargo bench --bench queue` (add `-- --quick` for a short run).

use std::hint::spin_loop;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use patternbank::__bench::ring;

/// Items moved per iteration (all producers together).
const ITEMS: u64 = 100_000;
/// Capacity of every queue.
const CAPACITY: usize = 4096;
/// Bits of each value that hold the per-producer sequence number; the producer index sits
/// above them.
const SEQ_BITS: u32 = 48;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Spin a little, then yield: the same policy for every queue, on full and on empty.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    #[inline]
    fn snooze(&mut self) {
        if self.0 < 6 {
            for _ in 0..(1u32 << self.0) {
                spin_loop();
            }
            self.0 += 1;
        } else {
            thread::yield_now();
        }
    }

    #[inline]
    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// The value producer `p` sends as its `seq`-th item.
#[inline]
fn value(p: usize, seq: u64) -> u64 {
    ((p as u64) << SEQ_BITS) | seq
}

/// Counts, sums and order-checks what the consumer receives.
struct Check {
    count: u64,
    sum: u64,
    /// Next expected sequence number per producer.
    next: Vec<u64>,
}

impl Check {
    fn new(producers: usize) -> Self {
        Self { count: 0, sum: 0, next: vec![0; producers] }
    }

    #[inline]
    fn see(&mut self, v: u64) {
        let p = (v >> SEQ_BITS) as usize;
        let seq = v & SEQ_MASK;
        assert_eq!(seq, self.next[p], "producer {p}: item out of order or lost");
        self.next[p] = seq + 1;
        self.count += 1;
        self.sum = self.sum.wrapping_add(v);
    }

    fn verify(&self, producers: usize, per_producer: u64) {
        let expected_sum = (0..producers).fold(0u64, |acc, p| {
            let base = value(p, 0).wrapping_mul(per_producer);
            acc.wrapping_add(base).wrapping_add(per_producer * (per_producer.saturating_sub(1)) / 2)
        });
        assert_eq!(self.count, per_producer * producers as u64, "consumer received a wrong number of items");
        assert_eq!(self.sum, expected_sum, "consumer received a wrong sum");
        assert!(self.next.iter().all(|&n| n == per_producer), "a producer's items were lost");
    }
}

/// Runs `producers` threads pushing `per_producer` items each through a queue into the
/// calling thread; returns the time from the start barrier to the last pop.
fn run<P, C>(
    producers: usize,
    per_producer: u64,
    (tx, mut rx): (P, C),
    push: impl Fn(&P, u64) -> Result<(), u64> + Sync,
    mut pop: impl FnMut(&mut C) -> Option<u64>,
) -> Duration
where
    P: Clone + Send,
{
    let barrier = Barrier::new(producers + 1);
    let total = per_producer * producers as u64;
    thread::scope(|s| {
        for p in 0..producers {
            let (tx, barrier, push) = (tx.clone(), &barrier, &push);
            s.spawn(move || {
                let mut backoff = Backoff::default();
                barrier.wait();
                for seq in 0..per_producer {
                    let mut v = value(p, seq);
                    while let Err(back) = push(&tx, v) {
                        v = back;
                        backoff.snooze();
                    }
                    backoff.reset();
                }
            });
        }
        // Only the clones held by the producers remain: for the channel, the receiver would
        // otherwise never see a disconnect (not relied on, but keeps the sender count honest).
        drop(tx);
        let mut check = Check::new(producers);
        let mut backoff = Backoff::default();
        barrier.wait();
        let started = Instant::now();
        while check.count < total {
            match pop(&mut rx) {
                Some(v) => {
                    check.see(v);
                    backoff.reset();
                }
                None => backoff.snooze(),
            }
        }
        let elapsed = started.elapsed();
        check.verify(producers, per_producer);
        elapsed
    })
}

fn per_producer(iters: u64, producers: usize) -> u64 {
    let per = ITEMS / producers as u64;
    assert_eq!(per * producers as u64, ITEMS, "ITEMS must divide evenly among producers");
    per * iters
}

fn std_push(tx: &SyncSender<u64>, v: u64) -> Result<(), u64> {
    match tx.try_send(v) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(v)) => Err(v),
        Err(TrySendError::Disconnected(_)) => panic!("receiver dropped"),
    }
}

fn std_pop(rx: &mut Receiver<u64>) -> Option<u64> {
    match rx.try_recv() {
        Ok(v) => Some(v),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => panic!("all senders dropped before the last item"),
    }
}

/// One thread fills the queue to capacity, then drains it, until `total` items have passed:
/// the cost of a push and a pop without contention or scheduling (the stable figure on a
/// loaded machine, where the threaded runs swing with what the scheduler does).
fn run_same_thread<P, C>(
    total: u64,
    (tx, mut rx): (P, C),
    push: impl Fn(&P, u64) -> Result<(), u64>,
    mut pop: impl FnMut(&mut C) -> Option<u64>,
) -> Duration {
    let mut check = Check::new(1);
    let started = Instant::now();
    let mut seq = 0;
    while seq < total {
        let end = (seq + CAPACITY as u64).min(total);
        for s in seq..end {
            assert!(push(&tx, value(0, s)).is_ok(), "queue full below capacity");
        }
        for _ in seq..end {
            check.see(pop(&mut rx).expect("queue empty before the last item"));
        }
        seq = end;
    }
    let elapsed = started.elapsed();
    assert!(pop(&mut rx).is_none(), "an extra item");
    check.verify(1, total);
    elapsed
}

/// `same_thread`, or the number of producer threads.
#[derive(Clone, Copy)]
enum Mode {
    SameThread,
    Producers(usize),
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::SameThread => f.write_str("same_thread"),
            Mode::Producers(n) => write!(f, "{n}"),
        }
    }
}

/// Runs `iters` iterations of `mode` over a fresh queue from `make`.
fn measure<P, C>(
    mode: Mode,
    iters: u64,
    make: impl FnOnce() -> (P, C),
    push: impl Fn(&P, u64) -> Result<(), u64> + Sync,
    pop: impl FnMut(&mut C) -> Option<u64>,
) -> Duration
where
    P: Clone + Send,
{
    match mode {
        Mode::SameThread => run_same_thread(ITEMS * iters, make(), push, pop),
        Mode::Producers(n) => run(n, per_producer(iters, n), make(), push, pop),
    }
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(ITEMS));
    for mode in [Mode::Producers(1), Mode::Producers(2), Mode::SameThread] {
        g.bench_with_input(BenchmarkId::new("patternbank_ring", mode), &mode, |b, &mode| {
            b.iter_custom(|iters| {
                measure(mode, iters, || ring::<u64>(CAPACITY), |tx, v| tx.push(v), |rx| rx.pop())
            })
        });
        g.bench_with_input(BenchmarkId::new("crossbeam_array_queue", mode), &mode, |b, &mode| {
            b.iter_custom(|iters| {
                let q = ArrayQueue::<u64>::new(CAPACITY);
                measure(mode, iters, || (&q, &q), |tx, v| tx.push(v), |rx| rx.pop())
            })
        });
        g.bench_with_input(BenchmarkId::new("std_sync_channel", mode), &mode, |b, &mode| {
            b.iter_custom(|iters| measure(mode, iters, || sync_channel::<u64>(CAPACITY), std_push, std_pop))
        });
    }
    g.finish();
}

/// Short by default (2-core shared machines); `--sample-size`, `--measurement-time` and
/// `--warm-up-time` on the command line override these.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = queue
}
criterion_main!(benches);
