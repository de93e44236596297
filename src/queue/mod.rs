//! The write path's queues: one bounded MPSC ring per kind of write (control first, then
//! puts, then outcomes), the writer's wake-up protocol, and bounded blocking for producers.
//!
//! Producers never take a lock to enqueue. The writer sleeps when there is not a batch's worth
//! of work and is woken by a producer whose push fills a batch (or by any flush), or by its
//! own timer after `batch_interval`. A producer that finds its ring full wakes the writer,
//! then waits on a condition variable that the writer signals after every drain, for at most
//! `enqueue_timeout`.

pub mod ring;

use std::time::{Duration, Instant};

use crate::codec::{Dictionary, Trajectory};
use crate::error::{Error, ErrorKind, Result};
pub(crate) use crate::id::SmallId;
use crate::pattern::{Outcome, Pattern};
use crate::payload::{DictionaryInfo, Encoded, Payload};
use crate::sync::{thread, Arc, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use ring::{Consumer, Producer};

/// A queued write of the put lane: a pattern, a pattern's deletion, or a trajectory.
pub(crate) struct PutOp {
    pub seq: u64,
    pub write: Write,
}

/// What a [`PutOp`] writes.
pub(crate) enum Write {
    /// A pattern and its encoded data.
    Pattern { pattern: Arc<Pattern>, payload: Payload },
    /// The deletion of pattern `id`.
    Delete { id: Box<str> },
    /// A trajectory, its encoded blob and its size as JSON.
    Trajectory { trajectory: Arc<Trajectory>, blob: Vec<u8>, json_len: usize },
}

impl PutOp {
    /// The id written (a pattern's, or a trajectory's).
    pub fn id(&self) -> &str {
        match &self.write {
            Write::Pattern { pattern, .. } => &pattern.id,
            Write::Delete { id } => id,
            Write::Trajectory { trajectory, .. } => &trajectory.id,
        }
    }

    /// The operation's name in failure reports.
    pub fn op_name(&self) -> &'static str {
        match &self.write {
            Write::Pattern { .. } => "put",
            Write::Delete { .. } => "delete",
            Write::Trajectory { .. } => "put_trajectory",
        }
    }

    /// Whether it writes a pattern id (a put or a delete), as opposed to a trajectory.
    pub fn is_pattern_write(&self) -> bool {
        !matches!(self.write, Write::Trajectory { .. })
    }
}

/// A queued `record_outcome`.
pub(crate) struct OutcomeOp {
    pub seq: u64,
    pub id: SmallId,
    pub outcome: Outcome,
    pub at_ms: i64,
}

/// A control message, served before any write.
pub(crate) enum Control {
    /// Commit everything queued before this message, then acknowledge `ticket`.
    Flush { ticket: u64 },
    /// Flush, checkpoint and stop.
    Shutdown { ticket: u64 },
    /// Store a trained dictionary, then make it the one new values use.
    AddDictionary {
        dict: Box<Dictionary>,
        info: DictionaryInfo,
        reply: std::sync::mpsc::SyncSender<Result<()>>,
    },
    /// Replace stored blobs with re-encoded ones of the same content: (pid, hash, new value).
    Recode { items: Vec<(i64, [u8; 16], Encoded)>, reply: std::sync::mpsc::SyncSender<Result<Vec<bool>>> },
}

/// What producers share with the writer.
pub(crate) struct Lanes {
    pub control: Producer<Control>,
    pub puts: Producer<PutOp>,
    pub outcomes: Producer<OutcomeOp>,
    /// Write sequence numbers: a total order of writes consistent with each thread's order.
    pub next_seq: AtomicU64,
    pub batch_puts: usize,
    pub batch_outcomes: usize,
    pub enqueue_timeout: Duration,
    writer: Mutex<Option<thread::Thread>>,
    writer_sleeping: AtomicBool,
    /// Set when the writer has stopped; producers then fail fast with `Closed`.
    pub closed: AtomicBool,
    space: Mutex<()>,
    space_cv: Condvar,
    waiting: AtomicUsize,
}

/// The writer's ends of the rings.
pub(crate) struct Receivers {
    pub control: Consumer<Control>,
    pub puts: Consumer<PutOp>,
    pub outcomes: Consumer<OutcomeOp>,
}

/// Why a blocking enqueue failed; carries the item back.
pub(crate) enum EnqueueError<T> {
    /// Full (still full after `enqueue_timeout`, for a blocking push).
    Full(T),
    /// The writer has stopped; the item is handed back.
    Closed(T),
}

impl Lanes {
    pub fn new(
        put_capacity: usize,
        outcome_capacity: usize,
        batch_puts: usize,
        batch_outcomes: usize,
        enqueue_timeout: Duration,
    ) -> (Arc<Self>, Receivers) {
        let (control, control_rx) = ring::ring(1024);
        let (puts, puts_rx) = ring::ring(put_capacity);
        let (outcomes, outcomes_rx) = ring::ring(outcome_capacity);
        let lanes = Arc::new(Self {
            control,
            puts,
            outcomes,
            next_seq: AtomicU64::new(1),
            batch_puts: batch_puts.min(put_capacity),
            batch_outcomes: batch_outcomes.min(outcome_capacity),
            enqueue_timeout,
            writer: Mutex::new(None),
            writer_sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            space: Mutex::new(()),
            space_cv: Condvar::new(),
            waiting: AtomicUsize::new(0),
        });
        (lanes, Receivers { control: control_rx, puts: puts_rx, outcomes: outcomes_rx })
    }

    /// Registers the writer thread to wake.
    pub fn set_writer(&self, t: thread::Thread) {
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    /// The next write sequence number.
    #[inline]
    pub fn take_seq(&self) -> u64 {
        // Relaxed: the counter's own modification order is the total order we need; each
        // thread's writes get increasing numbers because its fetch_adds are sequenced.
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Wakes the writer unconditionally (a flush, a full ring).
    pub fn wake_writer(&self) {
        if let Some(t) = &*self.writer.lock().unwrap_or_else(|e| e.into_inner()) {
            t.unpark();
        }
    }

    /// Wakes the writer if it sleeps and `depth` reached a batch. Only the producer that
    /// flips the sleeping flag pays for the wake-up: the others see it cleared and go on,
    /// so a backlog never turns every push into a syscall.
    #[inline]
    fn wake_if_batch(&self, depth: usize, batch: usize) {
        // SeqCst: pairs with the SeqCst store in `writer_parking`, so either the writer
        // sees our item when it rechecks the rings, or we see it sleeping and wake it.
        if depth >= batch
            && self.writer_sleeping.load(Ordering::Relaxed)
            && self.writer_sleeping.swap(false, Ordering::SeqCst)
        {
            self.wake_writer();
        }
    }

    /// The writer announces it is about to sleep (`true`) or has woken (`false`).
    pub fn writer_parking(&self, sleeping: bool) {
        // SeqCst: see `wake_if_batch`.
        self.writer_sleeping.store(sleeping, Ordering::SeqCst);
    }

    /// Enqueues without waiting: hands the item back if its ring is full, and refuses it if
    /// the writer has stopped.
    #[inline]
    pub fn try_push<T>(&self, ring: &Producer<T>, batch: usize, item: T) -> Result<(), EnqueueError<T>> {
        // Acquire: pairs with the Release store when the writer stops, so a closed store is
        // seen before we queue (or wait) on a ring that nobody drains.
        if self.closed.load(Ordering::Acquire) {
            return Err(EnqueueError::Closed(item));
        }
        ring.push(item).map_err(EnqueueError::Full)?;
        self.wake_if_batch(ring.len(), batch);
        Ok(())
    }

    /// Enqueues, waiting up to `enqueue_timeout` for room.
    pub fn push_blocking<T>(&self, ring: &Producer<T>, batch: usize, item: T) -> Result<(), EnqueueError<T>> {
        let mut item = match self.try_push(ring, batch, item) {
            Err(EnqueueError::Full(back)) => back,
            done => return done,
        };
        let deadline = Instant::now() + self.enqueue_timeout;
        // Relaxed: the count only decides whether the writer bothers to notify; a missed
        // notify costs one 1 ms wait below, never correctness.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let result = loop {
            self.wake_writer();
            let guard = self.space.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if now >= deadline {
                break Err(EnqueueError::Full(item));
            }
            let wait = (deadline - now).min(Duration::from_millis(1));
            drop(self.space_cv.wait_timeout(guard, wait).unwrap_or_else(|e| e.into_inner()));
            // Acquire: as above.
            if self.closed.load(Ordering::Acquire) {
                break Err(EnqueueError::Closed(item));
            }
            match ring.push(item) {
                Ok(()) => break Ok(()),
                Err(back) => item = back,
            }
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// The writer signals that it freed room.
    pub fn notify_space(&self) {
        // Relaxed: see `push_blocking`.
        if self.waiting.load(Ordering::Relaxed) > 0 {
            let _guard = self.space.lock().unwrap_or_else(|e| e.into_inner());
            self.space_cv.notify_all();
        }
    }
}

impl<T> EnqueueError<T> {
    /// The error a blocking call reports.
    pub fn into_error(self, what: &str, timeout: Duration) -> Error {
        match self {
            EnqueueError::Full(_) => Error::new(
                ErrorKind::QueueFull,
                format!("{what}: the write queue stayed full for {timeout:?}; nothing was enqueued"),
            ),
            EnqueueError::Closed(_) => Error::new(ErrorKind::Closed, format!("{what}: the store is closed")),
        }
    }
}
