//! The [`Store`]: ties the tiers together.
//!
//! ## Reads
//!
//! `get` looks in the L1 cache, then in the *overlay* of written-but-uncommitted patterns,
//! then in SQLite through the read pool, and fills the L1 with what SQLite returned.
//!
//! ## Read your writes (invariant 1)
//!
//! `put` inserts the pattern into the overlay and the L1 before it is enqueued. The overlay
//! is not bounded by the L1's capacity (it is bounded by the put ring), so however hard the
//! L1 evicts, an uncommitted pattern is served from the overlay until the writer has
//! committed it; after that SQLite has it.
//!
//! ## Keeping the L1 coherent without locking reads
//!
//! Three writers change what the L1 should hold: a caller's `put`, the writer thread's
//! outcome updates after a commit, and a miss that fills the L1 from SQLite. A fill must not
//! install a value older than what the other two left. Two counters arbitrate:
//!
//! - each overlay shard has a *generation*, bumped under the shard lock by every `put` (and
//!   by the clean-up of a failed put) of an id in that shard;
//! - the *commit epoch* is odd while the writer commits and publishes a batch, even between.
//!
//! A miss reads both before it looks in the overlay and SQLite, and installs its value only
//! if, under the shard lock, both are unchanged and the epoch is even. Then no commit began
//! between the snapshot and the install (so the value read from SQLite is exactly the
//! committed state, and the writer's next publish will find it and update it), and no `put`
//! of the shard raced it. Outcome publishes update cached patterns in place (affine map on
//! the confidence) when the cached copy is older than the outcomes, and leave a newer `put`
//! alone; the pattern's hidden `version` (its write sequence number) tells them apart.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::codec::Trajectory;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result, TryError};
use crate::l2::SearchOptions;
use crate::metrics::{self, Metrics, Registry, SlowLog};
use crate::pattern::{Hit, Outcome, OutcomeSum, Pattern};
use crate::payload::{DictionaryInfo, Payloads, RecompressReport};
use crate::queue::{Control, EnqueueError, Lanes, OutcomeOp, PutOp, SmallId, Write};
use crate::sqlite::{self, ReadPool};
use crate::sync::{thread, Arc, AtomicU64, CachePadded, Condvar, Mutex, Ordering};

/// A write that could not be committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedWrite {
    /// `put` or `record_outcome`.
    pub op: String,
    /// The pattern id.
    pub id: String,
    /// The write's sequence number.
    pub seq: u64,
    /// Why it failed.
    pub error: String,
}

/// Failed writes kept for `failed_writes()`; older ones are counted but dropped from the list.
const FAILED_KEPT: usize = 1024;

struct OverlayShard {
    pending: Mutex<Pending>,
    /// Bumped by every put or failed-put clean-up of this shard (see module docs).
    generation: AtomicU64,
}

type Pending = HashMap<Box<str>, PendingWrite, foldhash::fast::RandomState>;

/// An uncommitted write of an id, as the overlay serves it.
#[derive(Clone)]
pub(crate) enum PendingWrite {
    /// A put: `get` returns it.
    Put(Arc<Pattern>),
    /// A delete (write `seq`): `get` finds nothing.
    Delete { seq: u64 },
}

impl PendingWrite {
    fn seq(&self) -> u64 {
        match self {
            PendingWrite::Put(p) => p.version,
            PendingWrite::Delete { seq } => *seq,
        }
    }
}

/// Removes the overlay entry of `id` if it is still write `seq` (a newer write stays).
fn remove_pending(pending: &mut Pending, id: &str, seq: u64) {
    if pending.get(id).is_some_and(|p| p.seq() == seq) {
        pending.remove(id);
    }
}

/// A miss's view of the counters, taken before it reads SQLite.
#[derive(Clone, Copy)]
pub(crate) struct FillTicket {
    generation: u64,
    epoch: u64,
}

/// An L1 entry: a shared pattern, current to its `version`.
///
/// The writer folds committed outcomes into a fresh copy (one clone per updated id per
/// batch), so a `get` that hits the L1 only clones an `Arc`. Folding on the first `get`
/// instead (as this type did before) saved the writer that clone for patterns nobody read
/// again, but put a 2.5 KiB clone, an allocation per field and a locked L1 update on the
/// read path of every pattern read after an outcome: in W1 that was the L1-hit `get` p99
/// (2.8–3.1 µs with the fold, 1.0–1.2 µs without).
#[derive(Clone)]
pub(crate) struct Cached {
    pattern: Arc<Pattern>,
}

impl Cached {
    fn new(pattern: &Arc<Pattern>) -> Self {
        Self { pattern: Arc::clone(pattern) }
    }

    /// The write sequence number this entry reflects.
    fn version(&self) -> u64 {
        self.pattern.version
    }

    /// Whether the cached pattern's data is `data`.
    fn same_data(&self, data: &[u8]) -> bool {
        self.pattern.data == data
    }
}

/// L1 + overlay + the fill protocol of the module docs.
pub(crate) struct Tier {
    /// Keyed by the id inline (`SmallId`): a lookup compares bytes in the node it loaded
    /// anyway, and replacing an entry's value (every fold of outcomes) copies the key
    /// without allocating.
    pub l1: Cache<SmallId, Cached>,
    overlay: Box<[CachePadded<OverlayShard>]>,
    hasher: foldhash::fast::RandomState,
    commit_epoch: AtomicU64,
}

impl Tier {
    fn new(cfg: &Config) -> Self {
        let shards = 64;
        Self {
            l1: Cache::with_weigher(
                cfg.l1_capacity_entries,
                cfg.l1_capacity_bytes as u64,
                cfg.l1_policy,
                |_, c: &Cached| c.pattern.weight_bytes() as u64,
            ),
            overlay: (0..shards)
                .map(|_| {
                    CachePadded::new(OverlayShard {
                        pending: Mutex::new(HashMap::with_hasher(Default::default())),
                        generation: AtomicU64::new(0),
                    })
                })
                .collect(),
            hasher: Default::default(),
            commit_epoch: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: &str) -> &OverlayShard {
        &self.overlay[self.hasher.hash_one(id) as usize % self.overlay.len()]
    }

    /// Makes a put visible: overlay + L1, generation bumped, all under the shard lock.
    fn insert_put(&self, p: &Arc<Pattern>) {
        let shard = self.shard(&p.id);
        let mut pending = shard.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(p.id.as_str().into(), PendingWrite::Put(Arc::clone(p)));
        self.l1.insert(SmallId::new(&p.id), Cached::new(p));
        // Release: pairs with the Acquire in `ticket`; a miss that saw the old generation
        // will not install over this put.
        shard.generation.fetch_add(1, Ordering::Release);
    }

    /// Makes a delete visible: a tombstone in the overlay, the L1 entry gone, generation
    /// bumped, all under the shard lock.
    fn insert_delete(&self, id: &str, seq: u64) {
        let shard = self.shard(id);
        let mut pending = shard.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(id.into(), PendingWrite::Delete { seq });
        self.l1.remove(id.as_bytes());
        // Release: as in `insert_put`.
        shard.generation.fetch_add(1, Ordering::Release);
    }

    /// Undoes `insert_put` or `insert_delete` for a write that will never commit (full queue,
    /// failed batch).
    pub fn withdraw_put(&self, id: &str, seq: u64) {
        let shard = self.shard(id);
        let mut pending = shard.pending.lock().unwrap_or_else(|e| e.into_inner());
        remove_pending(&mut pending, id, seq);
        self.l1.remove_if(id.as_bytes(), |c| c.pattern.version == seq);
        // Release: as in `insert_put`.
        shard.generation.fetch_add(1, Ordering::Release);
    }

    /// The writer committed the put or delete `seq`: SQLite serves it from now on.
    pub fn put_committed(&self, id: &str, seq: u64) {
        let shard = self.shard(id);
        remove_pending(&mut shard.pending.lock().unwrap_or_else(|e| e.into_inner()), id, seq);
    }

    /// The writer committed outcomes `min_seq..=max_seq` of `id`: update a cached copy that
    /// predates them; leave a newer put alone.
    pub fn outcomes_committed(&self, id: &str, sum: &OutcomeSum, min_seq: u64, max_seq: u64) {
        let shard = self.shard(id);
        let _guard = shard.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.l1.update(id.as_bytes(), |cur| {
            (cur.version() < min_seq).then(|| {
                let mut p = Pattern::clone(&cur.pattern);
                sum.apply(&mut p);
                p.version = max_seq;
                Cached::new(&Arc::new(p))
            })
        });
    }

    /// The L1's pattern for `id`.
    fn cached(&self, id: &str) -> Option<Arc<Pattern>> {
        self.l1.get_with(id.as_bytes(), |c| Arc::clone(&c.pattern))
    }

    pub fn pending(&self, id: &str) -> Option<PendingWrite> {
        self.shard(id).pending.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    pub fn pending_len(&self) -> usize {
        self.overlay.iter().map(|s| s.pending.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    /// Snapshot for a miss, taken before it reads the overlay and SQLite.
    fn ticket(&self, id: &str) -> FillTicket {
        // Acquire: pairs with the Release bumps in `insert_put`/`withdraw_put` and
        // `begin_commit`/`end_commit`.
        FillTicket {
            generation: self.shard(id).generation.load(Ordering::Acquire),
            epoch: self.commit_epoch.load(Ordering::Acquire),
        }
    }

    /// Installs a pattern read from SQLite if nothing changed since `ticket`; returns whether
    /// it did.
    fn fill(&self, p: &Arc<Pattern>, ticket: FillTicket) -> bool {
        if ticket.epoch % 2 == 1 {
            return false; // a commit was in progress when we looked
        }
        let shard = self.shard(&p.id);
        let _guard = shard.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Acquire: as in `ticket`.
        if shard.generation.load(Ordering::Acquire) == ticket.generation
            && self.commit_epoch.load(Ordering::Acquire) == ticket.epoch
        {
            self.l1.insert_if_absent(SmallId::new(&p.id), Cached::new(p));
            return true;
        }
        false
    }

    /// The writer is about to commit: fills from now on are refused.
    pub fn begin_commit(&self) {
        // SeqCst: the odd epoch must be visible to any reader whose SQLite read can see the
        // commit that follows (SQLite's own locking orders the rest).
        self.commit_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a commit is in progress (only the writer thread asks, about its own state).
    pub fn commit_epoch_is_odd(&self) -> bool {
        // Relaxed: the writer reads its own last write.
        self.commit_epoch.load(Ordering::Relaxed) % 2 == 1
    }

    /// The writer has committed and published the batch.
    pub fn end_commit(&self) {
        // SeqCst: see `begin_commit`.
        self.commit_epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// Flush acknowledgements from the writer.
pub(crate) struct FlushState {
    pub acked: Mutex<u64>,
    pub cv: Condvar,
    pub next_ticket: AtomicU64,
}

/// Uncommitted trajectories by id, with the write sequence number that wrote them.
type PendingTrajectories = HashMap<Box<str>, (u64, Arc<Trajectory>)>;

/// What the Store, its writer thread and its callers share.
pub(crate) struct Shared {
    pub cfg: Config,
    pub lanes: Arc<Lanes>,
    pub tier: Tier,
    pub metrics: Registry,
    pub slow: Arc<SlowLog>,
    pub failures: Mutex<VecDeque<FailedWrite>>,
    /// Failures not yet reported by a `flush`.
    pub unreported_failures: AtomicU64,
    pub flush: FlushState,
    pub committed_seq: AtomicU64,
    /// L2 + L3; `None` for a read-only store without a valid arena.
    pub l2: Option<crate::l2::L2>,
    /// Codecs, dictionaries and their counters.
    pub payloads: Payloads,
    /// Trajectories written but not yet committed (read your writes), by id.
    pub pending_trajectories: Mutex<PendingTrajectories>,
}

impl Shared {
    pub fn record_failure(&self, op: &str, id: &str, seq: u64, error: &Error) {
        self.metrics.failed_writes.incr();
        // Relaxed: a tally; `flush` reads it after the ack, which is ordered by the mutex.
        self.unreported_failures.fetch_add(1, Ordering::Relaxed);
        let mut list = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() == FAILED_KEPT {
            list.pop_front();
        }
        list.push_back(FailedWrite { op: op.into(), id: id.into(), seq, error: error.to_string() });
    }

    /// Takes back from the read path a write that will never commit.
    pub fn withdraw(&self, op: &PutOp) {
        match &op.write {
            Write::Trajectory { trajectory, .. } => self.trajectory_done(&trajectory.id, op.seq),
            _ => self.tier.withdraw_put(op.id(), op.seq),
        }
    }

    /// The writer committed `op`: SQLite serves it from now on.
    pub fn committed(&self, op: &PutOp) {
        match &op.write {
            Write::Trajectory { trajectory, .. } => self.trajectory_done(&trajectory.id, op.seq),
            _ => {
                self.tier.put_committed(op.id(), op.seq);
                self.metrics.committed_puts.incr();
            }
        }
    }

    fn trajectory_done(&self, id: &str, seq: u64) {
        let mut pending = self.pending_trajectories.lock().unwrap_or_else(|e| e.into_inner());
        if pending.get(id).is_some_and(|(s, _)| *s == seq) {
            pending.remove(id);
        }
    }

    /// Acknowledges flush tickets up to `ticket`.
    pub fn ack_flush(&self, ticket: u64) {
        let mut acked = self.flush.acked.lock().unwrap_or_else(|e| e.into_inner());
        *acked = (*acked).max(ticket);
        self.flush.cv.notify_all();
    }
}

/// The result of [`Store::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// `PRAGMA integrity_check` said `ok`.
    pub integrity_ok: bool,
    /// Patterns (rows of `patterns`).
    pub patterns: u64,
    /// Every problem found; empty when the store is sound.
    pub problems: Vec<String>,
}

/// An embedded pattern store. Share it between threads by reference or in an `Arc`.
pub struct Store {
    shared: Arc<Shared>,
    pool: ReadPool,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
    read_only: bool,
    /// Holds the cross-process write lock for the life of the store.
    _lock: Option<std::fs::File>,
}

/// A file beside the database: `<db><suffix>` (the write lock, the arena).
pub(crate) fn sidecar(db: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

/// Takes the one-writer-per-file lock (invariant 4). Released by the OS when the process
/// dies, however it dies.
fn take_write_lock(db: &std::path::Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = sidecar(db, ".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "{} is open for writing by another process (pid {}); open it read-only \
                     with Config::read_only(true), or close the other writer",
                    db.display(),
                    holder.trim()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io(format!("locking {}", path.display()), e));
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

impl Store {
    /// Opens (or creates) `path` with the embedded defaults of [`Config::new`].
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Store> {
        Config::new(path).open()
    }

    pub(crate) fn open_with(cfg: Config) -> Result<Store> {
        let slow = Arc::new(SlowLog::new(cfg.slow_query_threshold));
        let (lanes, receivers) = Lanes::new(
            cfg.put_queue_capacity,
            cfg.outcome_queue_capacity,
            cfg.batch_patterns,
            cfg.batch_outcomes,
            cfg.enqueue_timeout,
        );
        let (lock, writer_conn, l2) = if cfg.read_only {
            // Validates the file; the pool's connections skip the check.
            drop(sqlite::schema::open_reader(&cfg, None, true)?);
            (None, None, crate::l2::open_read_only(&cfg)?.map(|l2| (l2, None)))
        } else {
            let lock = take_write_lock(&cfg.path)?;
            let conn = sqlite::schema::open_writer(&cfg, Some(Arc::clone(&slow)))?;
            let (l2, l2_writer) = crate::l2::open_writable(&cfg, &conn)?;
            (Some(lock), Some(conn), Some((l2, Some(l2_writer))))
        };
        let (l2, l2_writer) = match l2 {
            Some((l2, w)) => (Some(l2), w),
            None => (None, None),
        };
        let pool = ReadPool::open(&cfg, &slow)?;
        let payloads = match &writer_conn {
            Some(conn) => Payloads::open(&cfg, conn)?,
            None => pool.with(|r| Payloads::open(&cfg, r.conn()))?,
        };
        let read_only = cfg.read_only;
        let shared = Arc::new(Shared {
            tier: Tier::new(&cfg),
            cfg,
            lanes,
            metrics: Registry::default(),
            slow,
            failures: Mutex::new(VecDeque::new()),
            unreported_failures: AtomicU64::new(0),
            flush: FlushState { acked: Mutex::new(0), cv: Condvar::new(), next_ticket: AtomicU64::new(1) },
            committed_seq: AtomicU64::new(0),
            l2,
            payloads,
            pending_trajectories: Mutex::new(HashMap::new()),
        });
        let writer = match writer_conn.zip(l2_writer) {
            Some((conn, l2_writer)) => {
                let writer = sqlite::writer::Writer::new(conn, receivers, Arc::clone(&shared), l2_writer)?;
                let handle = thread::Builder::new()
                    .name("patternbank-writer".into())
                    .spawn(move || writer.run())
                    .map_err(|e| Error::io("spawning the writer thread", e))?;
                shared.lanes.set_writer(handle.thread().clone());
                Some(handle)
            }
            None => {
                shared.lanes.closed.store(true, Ordering::Release);
                None
            }
        };
        let store = Store { shared, pool, writer: Mutex::new(writer), read_only, _lock: lock };
        if !store.read_only && store.cfg().l1_warm > 0 {
            store.warm_l1()?;
        }
        Ok(store)
    }

    /// Loads the `l1_warm` most confident (then most used, most recent) patterns into the
    /// L1, stopping when it is full. Runs before the store is handed out, so nothing races it.
    fn warm_l1(&self) -> Result<()> {
        let ids = self.pool.with(|r| {
            let mut stmt = r.conn().prepare(
                "SELECT id FROM stats ORDER BY confidence DESC, usage_count DESC, last_used_ms DESC LIMIT ?1",
            )?;
            let mut ids = Vec::new();
            stmt.for_each(
                &[sqlite::ffi::Value::Int(self.cfg().l1_warm.min(i64::MAX as usize) as i64)],
                |row| {
                    ids.push(row.text(0).unwrap_or_default().to_owned());
                    Ok(())
                },
            )?;
            Ok(ids)
        })?;
        let (tier, payloads) = (&self.shared.tier, &self.shared.payloads);
        let mut warmed = 0;
        for id in ids {
            let Some(p) = self.pool.with(|r| r.get(&id, payloads))? else { continue };
            let p = Arc::new(p);
            let weight = p.weight_bytes() as u64;
            if tier.l1.weight() + weight > tier.l1.capacity_weight() || tier.l1.len() >= tier.l1.capacity() {
                break;
            }
            tier.l1.insert_if_absent(SmallId::new(&p.id), Cached::new(&p));
            warmed += 1;
        }
        self.shared.metrics.l1_warmed.add(warmed);
        Ok(())
    }

    fn cfg(&self) -> &Config {
        &self.shared.cfg
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, "this store was opened read-only"));
        }
        Ok(())
    }

    fn validate_id(&self, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(Error::invalid("id is empty"));
        }
        if id.len() > self.cfg().max_id_len {
            return Err(Error::invalid(format!(
                "id is {} bytes; the limit is {} (Config::max_id_len)",
                id.len(),
                self.cfg().max_id_len
            )));
        }
        // A byte loop the compiler inlines: `str::contains` calls memchr, which for a 26-byte
        // id cost 2.8 % of W1's CPU samples.
        if id.bytes().any(|b| b == 0) {
            return Err(Error::invalid("id contains a NUL character"));
        }
        Ok(())
    }

    fn validate(&self, p: &Pattern) -> Result<()> {
        let cfg = self.cfg();
        self.validate_id(&p.id)?;
        if p.kind.is_empty() || p.kind.len() > cfg.max_kind_len {
            return Err(Error::invalid(format!("kind must be 1 to {} bytes", cfg.max_kind_len)));
        }
        if p.data.len() > cfg.max_data_bytes {
            return Err(Error::invalid(format!(
                "data is {} bytes; the limit is {} (Config::max_data_bytes)",
                p.data.len(),
                cfg.max_data_bytes
            )));
        }
        if !(p.confidence.is_finite() && (0.0..=1.0).contains(&p.confidence)) {
            return Err(Error::invalid(format!("confidence {} is outside [0, 1]", p.confidence)));
        }
        if let Some(model) = &p.embedding_model {
            if *model != cfg.embedding_model {
                return Err(Error::invalid(format!(
                    "embedding from model {model:?}; this store holds {:?}",
                    cfg.embedding_model
                )));
            }
        }
        if let Some(e) = &p.embedding {
            if e.len() != cfg.embedding_dim {
                return Err(Error::invalid(format!(
                    "embedding has {} dimensions; this store holds {}",
                    e.len(),
                    cfg.embedding_dim
                )));
            }
            if let Some(i) = e.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid(format!("embedding value {i} is {} (not finite)", e[i])));
            }
        }
        Ok(())
    }

    /// Prepares a validated put: sequence number, version, made visible to readers.
    fn stage_put(&self, mut pattern: Pattern) -> Result<PutOp> {
        self.writable()?;
        self.validate(&pattern)?;
        // A put that changes only the stats (the agent loop's usual update) keeps its data:
        // then the stored value is most likely there already, and compressing it again would
        // be wasted. Compare with the cached copy (lock-free) and send just the hash.
        let unchanged =
            self.shared.tier.l1.get_with(pattern.id.as_bytes(), |c| c.same_data(&pattern.data)) == Some(true);
        let payload = self.shared.payloads.prepare(&pattern.data, unchanged)?;
        if self.shared.payloads.note_for_training(&payload) {
            self.spawn_training();
        }
        let seq = self.shared.lanes.take_seq();
        pattern.version = seq;
        pattern.embedding_model = None;
        let pattern = Arc::new(pattern);
        self.shared.tier.insert_put(&pattern);
        Ok(PutOp { seq, write: Write::Pattern { pattern, payload } })
    }

    /// Trains a dictionary in the background (the automatic triggers of `crate::payload`):
    /// on its own read connection, then installed through the writer. A failure installs
    /// nothing: the store goes on with the dictionary it has, and the trigger re-arms.
    fn spawn_training(&self) {
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new().name("patternbank-train".into()).spawn(move || {
            // The puts that triggered it may not be committed yet: give the writer a few
            // batch intervals to commit enough samples.
            let mut installed = None;
            if let Ok(conn) = sqlite::schema::open_reader(&shared.cfg, None, false) {
                for _ in 0..10 {
                    match train_and_install(&shared, &conn) {
                        Ok(None) => thread::sleep(shared.cfg.batch_interval + Duration::from_millis(10)),
                        Ok(Some(info)) => {
                            installed = Some(info);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            shared.payloads.training_done(installed.map(|i| i.saved_ratio));
        });
        if spawned.is_err() {
            self.shared.payloads.training_done(None);
        }
    }

    /// Stores `pattern`, replacing any pattern with its id (counters included).
    ///
    /// Returns once the pattern is queued for the writer and visible to `get` from every
    /// thread; it is durable after the next [`Store::flush`] (or within `batch_interval`).
    /// Lock-free on the queue; blocks only while the put ring is full, for at most
    /// `enqueue_timeout`, then fails with `QueueFull` having changed nothing. Allocates the
    /// `Arc` that readers share.
    pub fn put(&self, pattern: Pattern) -> Result<()> {
        let timed = metrics::sample_latency().then(Instant::now);
        let op = self.stage_put(pattern)?;
        let lanes = &self.shared.lanes;
        match lanes.push_blocking(&lanes.puts, lanes.batch_puts, op) {
            Ok(()) => {}
            Err(e) => {
                self.withdraw(&e);
                if matches!(e, EnqueueError::Full(_)) {
                    self.shared.metrics.enqueue_timeouts.incr();
                }
                return Err(e.into_error("put", lanes.enqueue_timeout));
            }
        }
        self.shared.metrics.puts.incr();
        if let Some(t) = timed {
            self.shared.metrics.put_ns.record_duration(t.elapsed());
        }
        Ok(())
    }

    /// Takes back from the read path a write that was not enqueued.
    fn withdraw(&self, e: &EnqueueError<PutOp>) {
        let (EnqueueError::Full(op) | EnqueueError::Closed(op)) = e;
        self.shared.withdraw(op);
    }

    /// Enqueues a staged put-lane write, blocking on a full ring like `put`.
    fn enqueue_write(&self, op: PutOp, what: &str) -> Result<()> {
        let lanes = &self.shared.lanes;
        lanes.push_blocking(&lanes.puts, lanes.batch_puts, op).map_err(|e| {
            self.withdraw(&e);
            if matches!(e, EnqueueError::Full(_)) {
                self.shared.metrics.enqueue_timeouts.incr();
            }
            e.into_error(what, lanes.enqueue_timeout)
        })
    }

    /// Deletes pattern `id` (nothing happens if it does not exist).
    ///
    /// Like `put`, returns once the delete is queued and visible: `get` finds nothing from
    /// every thread from now on; durable after the next [`Store::flush`]. The pattern's row,
    /// stats and search record go, and its reference to its stored data (the data itself goes
    /// with its last reference). Lock-free on the queue; blocks only on a full ring.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.writable()?;
        self.validate_id(id)?;
        let seq = self.shared.lanes.take_seq();
        self.shared.tier.insert_delete(id, seq);
        self.enqueue_write(PutOp { seq, write: Write::Delete { id: id.into() } }, "delete")
    }

    /// Stores trajectory `t`, replacing any with its id: its timestamps and values
    /// delta-encoded, then compressed (`crate::codec::encode_trajectory`).
    ///
    /// Goes through the same ring and writer as `put`: returns once queued, readable by
    /// [`Store::get_trajectory`] at once, durable after the next [`Store::flush`]. An empty
    /// or over-long id, more than 1,000,000 steps, a step with over 4,096 values, an action
    /// over 4 KiB or a pattern id that `put` would refuse is `InvalidInput`, and nothing is
    /// written.
    pub fn put_trajectory(&self, t: Trajectory) -> Result<()> {
        self.writable()?;
        self.validate_trajectory(&t)?;
        let (blob, json_len) = self.shared.payloads.encode_trajectory(&t)?;
        let seq = self.shared.lanes.take_seq();
        let t = Arc::new(t);
        self.shared
            .pending_trajectories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t.id.as_str().into(), (seq, Arc::clone(&t)));
        self.enqueue_write(
            PutOp { seq, write: Write::Trajectory { trajectory: t, blob, json_len } },
            "put_trajectory",
        )
    }

    fn validate_trajectory(&self, t: &Trajectory) -> Result<()> {
        self.validate_id(&t.id).map_err(|e| Error::invalid(format!("trajectory {}", e.message())))?;
        for p in &t.pattern_ids {
            self.validate_id(p).map_err(|e| Error::invalid(format!("trajectory pattern {}", e.message())))?;
        }
        if t.steps.len() > 1_000_000 {
            return Err(Error::invalid(format!(
                "trajectory {:?} has {} steps (at most 1,000,000)",
                t.id,
                t.steps.len()
            )));
        }
        if let Some(i) = t.steps.iter().position(|s| s.values.len() > 4096 || s.action.len() > 4096) {
            return Err(Error::invalid(format!(
                "trajectory {:?} step {i} has over 4,096 values or an action over 4 KiB",
                t.id
            )));
        }
        Ok(())
    }

    /// The trajectory `id`, or `None`. An uncommitted one comes from memory; a committed one
    /// is read and decoded (allocates). A row that does not decode is `Corrupt`, naming it.
    pub fn get_trajectory(&self, id: &str) -> Result<Option<Trajectory>> {
        self.validate_id(id)?;
        if let Some((_, t)) =
            self.shared.pending_trajectories.lock().unwrap_or_else(|e| e.into_inner()).get(id)
        {
            return Ok(Some(Trajectory::clone(t)));
        }
        let payloads = &self.shared.payloads;
        self.pool.with(|r| {
            let mut stmt = r.conn().prepare("SELECT blob FROM trajectories WHERE id = ?1")?;
            let blob = stmt.query_row(&[sqlite::ffi::Value::Text(id)], |row| Ok(row.blob(0).to_vec()))?;
            blob.map(|b| payloads.decode_trajectory(&b, id, r.conn())).transpose()
        })
    }

    /// Trains a new compression dictionary on the most recent stored payloads (up to 5,000)
    /// and makes it the one new values use. Rows written before keep the dictionary they name
    /// and stay readable; [`Store::recompress`] rewrites them with the new one. Blocks for
    /// the training (0.6–1.3 s for 5,000 samples on a 2-core VM) and one writer transaction.
    /// Fewer than 64 stored payloads is `InvalidInput`.
    pub fn train_dictionary(&self) -> Result<DictionaryInfo> {
        self.writable()?;
        let payloads = &self.shared.payloads;
        if payloads.training.swap(true, Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Locked, "a dictionary is being trained already"));
        }
        let result = self.pool.with(|r| train_and_install(&self.shared, r.conn()));
        payloads.training_done(result.as_ref().ok().and_then(|i| i.as_ref().map(|i| i.saved_ratio)));
        result?.ok_or_else(|| Error::invalid("train_dictionary: fewer than 64 payloads are stored"))
    }

    /// The dictionary new values are compressed with (`None` until one is trained), to
    /// measure or reuse with [`crate::codec`] directly.
    pub fn current_dictionary(&self) -> Option<crate::codec::Dictionary> {
        self.shared.payloads.latest()
    }

    /// What the store's data takes on disk, by codec, with its dictionaries and trajectories
    /// (aggregates over the tables; nothing is decoded).
    pub fn storage(&self) -> Result<crate::payload::StorageStats> {
        self.pool.with(|r| crate::payload::StorageStats::read(r.conn()))
    }

    /// Rewrites every stored value that does not use the configured codec and the latest
    /// dictionary, when that makes it smaller: decoded and re-encoded here, 1,000 to a
    /// writer transaction. Contents do not change, so reads are unaffected throughout.
    pub fn recompress(&self) -> Result<RecompressReport> {
        self.writable()?;
        let payloads = &self.shared.payloads;
        let (codec, dict) = payloads.target();
        let mut report = RecompressReport::default();
        let mut after_pid = 0i64;
        loop {
            let mut rows: Vec<(i64, [u8; 16], Vec<u8>)> = Vec::new();
            self.pool.with(|r| {
                let mut stmt = r.conn().prepare(
                    "SELECT pid, hash, blob FROM payloads WHERE pid > ?1 AND (codec != ?2 OR dict != ?3) \
                     ORDER BY pid LIMIT 1000",
                )?;
                use sqlite::ffi::Value;
                stmt.for_each(
                    &[Value::Int(after_pid), Value::Int(codec as i64), Value::Int(i64::from(dict))],
                    |row| {
                        let hash: [u8; 16] = row.blob(1).try_into().map_err(|_| {
                            Error::new(
                                ErrorKind::Corrupt,
                                format!("payload {} has a hash of {} bytes", row.i64(0), row.blob(1).len()),
                            )
                        })?;
                        rows.push((row.i64(0), hash, row.blob(2).to_vec()));
                        Ok(())
                    },
                )
            })?;
            let Some(&(last, _, _)) = rows.last() else { break };
            after_pid = last;
            report.examined += rows.len() as u64;
            let mut items = Vec::new();
            let mut before = Vec::new();
            for (pid, hash, blob) in rows {
                let raw = payloads.decode(&blob, &|| format!("payload {pid}"), None)?;
                let e = payloads.reencode(&raw)?;
                if e.blob.len() < blob.len() {
                    before.push(blob.len() as u64);
                    items.push((pid, hash, e));
                }
            }
            if items.is_empty() {
                continue;
            }
            let after: Vec<u64> = items.iter().map(|(_, _, e)| e.blob.len() as u64).collect();
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            self.send_control(Control::Recode { items, reply })?;
            let done = answer
                .recv()
                .map_err(|_| Error::new(ErrorKind::Closed, "recompress: the writer stopped"))??;
            for ((ok, b), a) in done.iter().zip(before).zip(after) {
                if *ok {
                    report.rewritten += 1;
                    report.bytes_before += b;
                    report.bytes_after += a;
                }
            }
        }
        Ok(report)
    }

    /// Like [`Store::put`] but never waits: a full ring hands the pattern back at once as
    /// `TryError::Full`, having changed nothing. Lock-free; allocates the shared `Arc`.
    // The pattern comes back by value on purpose: boxing it would allocate on the path that
    // exists to avoid waiting.
    #[allow(clippy::result_large_err)]
    pub fn try_put(&self, pattern: Pattern) -> Result<(), TryError<Pattern>> {
        let op = self.stage_put(pattern).map_err(TryError::Rejected)?;
        let lanes = &self.shared.lanes;
        match lanes.try_push(&lanes.puts, lanes.batch_puts, op) {
            Ok(()) => {
                self.shared.metrics.puts.incr();
                Ok(())
            }
            Err(EnqueueError::Full(op)) => {
                self.shared.withdraw(&op);
                self.shared.metrics.try_full.incr();
                let Write::Pattern { pattern, .. } = op.write else {
                    // `stage_put` only makes pattern writes; answer rather than panic.
                    return Err(TryError::Rejected(Error::new(
                        ErrorKind::WriteFailed,
                        "try_put: not a pattern write",
                    )));
                };
                let mut p = Arc::unwrap_or_clone(pattern);
                p.version = 0;
                Err(TryError::Full(p))
            }
            Err(closed) => {
                self.withdraw(&closed);
                Err(TryError::Rejected(closed.into_error("put", lanes.enqueue_timeout)))
            }
        }
    }

    fn outcome_op(&self, id: &str, outcome: Outcome) -> Result<OutcomeOp> {
        self.writable()?;
        self.validate_id(id)?;
        Ok(OutcomeOp {
            seq: self.shared.lanes.take_seq(),
            id: SmallId::new(id),
            outcome,
            at_ms: crate::pattern::now_ms(),
        })
    }

    /// Records that using pattern `id` succeeded or failed.
    ///
    /// Queued for the writer, which folds all queued outcomes of one id into a single
    /// `UPDATE` (DESIGN.md, Confidence). `get` shows the new confidence once the outcome is
    /// committed. An id that does not exist when the writer applies the outcome is reported
    /// as a failed write (see [`Store::failed_writes`]). Lock-free; does not allocate for ids
    /// of up to 30 bytes; blocks only on a full ring, as `put` does.
    pub fn record_outcome(&self, id: &str, outcome: Outcome) -> Result<()> {
        let timed = metrics::sample_latency().then(Instant::now);
        let op = self.outcome_op(id, outcome)?;
        let lanes = &self.shared.lanes;
        if let Err(e) = lanes.push_blocking(&lanes.outcomes, lanes.batch_outcomes, op) {
            if matches!(e, EnqueueError::Full(_)) {
                self.shared.metrics.enqueue_timeouts.incr();
            }
            return Err(e.into_error("record_outcome", lanes.enqueue_timeout));
        }
        self.shared.metrics.outcomes.incr();
        if let Some(t) = timed {
            self.shared.metrics.outcome_ns.record_duration(t.elapsed());
        }
        Ok(())
    }

    /// Like [`Store::record_outcome`] but never waits: a full ring hands the outcome back.
    /// Lock-free; does not allocate for ids of up to 30 bytes.
    pub fn try_record_outcome(&self, id: &str, outcome: Outcome) -> Result<(), TryError<Outcome>> {
        let op = self.outcome_op(id, outcome).map_err(TryError::Rejected)?;
        let lanes = &self.shared.lanes;
        match lanes.try_push(&lanes.outcomes, lanes.batch_outcomes, op) {
            Ok(()) => {
                self.shared.metrics.outcomes.incr();
                Ok(())
            }
            Err(EnqueueError::Full(op)) => {
                self.shared.metrics.try_full.incr();
                Err(TryError::Full(op.outcome))
            }
            Err(closed) => {
                Err(TryError::Rejected(closed.into_error("record_outcome", lanes.enqueue_timeout)))
            }
        }
    }

    /// The pattern `id`, or `None`.
    ///
    /// An L1 hit takes no lock and clones an `Arc` (no allocation). A miss
    /// reads the overlay, then SQLite through the read pool (allocates the decoded pattern,
    /// may wait for a pooled connection).
    pub fn get(&self, id: &str) -> Result<Option<Arc<Pattern>>> {
        self.validate_id(id)?;
        let timed = metrics::sample_latency().then(Instant::now);
        let m = &self.shared.metrics;
        m.gets.incr();
        let result = self.get_uncounted(id, timed);
        if let Some(t) = timed {
            m.get_ns.record_duration(t.elapsed());
        }
        result
    }

    /// `f` applied to the pattern `id`, or `None`: [`get`](Self::get) without the `Arc`.
    ///
    /// On an L1 hit `f` borrows the cached pattern in place (the thread stays pinned in the
    /// L1's epoch while it runs), so a hot pattern read from many threads does not bounce its
    /// reference count between their cores: in W1 the count's increment was 11 % of the CPU
    /// samples of the timed run. Keep `f` short: entries retired while it runs are freed
    /// only after it returns. Misses behave as in `get`. Counted as a `get` in the metrics.
    pub fn get_with<R>(&self, id: &str, f: impl FnOnce(&Pattern) -> R) -> Result<Option<R>> {
        self.validate_id(id)?;
        let timed = metrics::sample_latency().then(Instant::now);
        let m = &self.shared.metrics;
        m.gets.incr();
        let mut f = Some(f);
        // The L1 calls its closure only on a hit; `f` is left for the lower tiers otherwise.
        let cached = if self.read_only {
            None
        } else {
            self.shared.tier.l1.get_with(id.as_bytes(), |c| f.take().map(|f| f(&c.pattern))).flatten()
        };
        let result = match (cached, f) {
            (Some(r), _) => {
                m.hits_l1.incr();
                if let Some(t) = timed {
                    m.get_l1_ns.record_duration(t.elapsed());
                }
                Ok(Some(r))
            }
            // `f` is still here: the L1 takes it only when it answers.
            (None, f) => self.get_below_l1(id).map(|p| p.zip(f).map(|(p, f)| f(&p))),
        };
        if let Some(t) = timed {
            m.get_ns.record_duration(t.elapsed());
        }
        result
    }

    /// `get` without its call count; `timed`: when a sampled call started, so an L1 hit's
    /// latency is recorded on its own too.
    fn get_uncounted(&self, id: &str, timed: Option<Instant>) -> Result<Option<Arc<Pattern>>> {
        // A read-only store may have a writer in another process, and nothing tells it when
        // its copies go stale: it reads SQLite every time and caches nothing.
        if !self.read_only {
            if let Some(p) = self.shared.tier.cached(id) {
                let m = &self.shared.metrics;
                m.hits_l1.incr();
                if let Some(t) = timed {
                    m.get_l1_ns.record_duration(t.elapsed());
                }
                return Ok(Some(p));
            }
        }
        self.get_below_l1(id)
    }

    /// `get` past the L1: the overlay of uncommitted puts, then SQLite, whose answer fills
    /// the L1 unless a write raced the read.
    fn get_below_l1(&self, id: &str) -> Result<Option<Arc<Pattern>>> {
        let (tier, m) = (&self.shared.tier, &self.shared.metrics);
        let ticket = if self.read_only {
            None
        } else {
            let ticket = tier.ticket(id);
            match tier.pending(id) {
                Some(PendingWrite::Put(p)) => {
                    m.hits_pending.incr();
                    return Ok(Some(p));
                }
                Some(PendingWrite::Delete { .. }) => {
                    m.not_found.incr();
                    return Ok(None);
                }
                None => {}
            }
            Some(ticket)
        };
        match self.pool.with(|r| r.get(id, &self.shared.payloads))? {
            Some(p) => {
                m.hits_sqlite.incr();
                let p = Arc::new(p);
                if ticket.is_some_and(|t| !tier.fill(&p, t)) {
                    m.l1_fills_refused.incr();
                }
                Ok(Some(p))
            }
            None => {
                m.not_found.incr();
                Ok(None)
            }
        }
    }

    /// The patterns `ids`, in order; `None` where an id does not exist. All ids are checked
    /// before any is read. Allocates the result vector; each id costs what `get` costs.
    pub fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<Arc<Pattern>>>> {
        for id in ids {
            self.validate_id(id)?;
        }
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// The `k` patterns whose embeddings are most similar to `query` (cosine), best first:
    /// an int8 scan of the L2 arena, the best `2k` re-ranked with the f32 originals. A query
    /// of the wrong dimension or with a non-finite value, or `k` of 0 or over 10,000, is
    /// `InvalidInput`.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_with(query, k, &SearchOptions::default())
    }

    /// [`search`](Self::search) with filters (kind, minimum confidence), the re-ranking
    /// factor, and the ReasoningBank blend; see [`SearchOptions`]. Results with no write in
    /// between are served from the L3 query cache.
    pub fn search_with(&self, query: &[f32], k: usize, options: &SearchOptions) -> Result<Vec<Hit>> {
        if k == 0 {
            return Err(Error::invalid("k must be at least 1"));
        }
        let Some(l2) = self.shared.l2.as_ref() else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "search: this read-only store has no valid arena (open it writable once to rebuild it)",
            ));
        };
        self.shared.metrics.searches.incr();
        let started = Instant::now();
        let hits = self.pool.with(|reader| {
            l2.search(query, k, options, &mut |rowid, kind| reader.id_of_rowid(rowid, kind))
        })?;
        self.shared.metrics.search_ns.record_duration(started.elapsed());
        Ok(hits)
    }

    /// Durability barrier: returns once every write submitted before the call is committed.
    ///
    /// Blocks. Returns `WriteFailed` if any write failed since the last flush reported (the
    /// others are committed; [`Store::failed_writes`] lists the failures), and `Closed` if
    /// the writer has stopped. A no-op on a read-only store.
    pub fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let started = Instant::now();
        let sh = &self.shared;
        // Relaxed: tickets only need to be unique and increasing.
        let ticket = sh.flush.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.send_control(Control::Flush { ticket })?;
        self.wait_ack(ticket)?;
        sh.metrics.flushes.incr();
        sh.metrics.flush_ns.record_duration(started.elapsed());
        // Relaxed: the writer recorded failures before acking, and the ack mutex orders them.
        let failed = sh.unreported_failures.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(Error::new(
                ErrorKind::WriteFailed,
                format!("{failed} write(s) failed since the last flush; Store::failed_writes lists them"),
            ));
        }
        Ok(())
    }

    fn send_control(&self, msg: Control) -> Result<()> {
        send_control(&self.shared, msg)
    }

    fn wait_ack(&self, ticket: u64) -> Result<()> {
        let sh = &self.shared;
        let mut acked = sh.flush.acked.lock().unwrap_or_else(|e| e.into_inner());
        while *acked < ticket {
            // Acquire: pairs with the Release store when the writer stops.
            if sh.lanes.closed.load(Ordering::Acquire) {
                return Err(Error::new(
                    ErrorKind::Closed,
                    "the store's writer stopped before the flush completed",
                ));
            }
            acked = sh
                .flush
                .cv
                .wait_timeout(acked, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    /// Writes that could not be committed, oldest first (the last 1024). Takes a short lock;
    /// allocates the copy.
    pub fn failed_writes(&self) -> Vec<FailedWrite> {
        self.shared.failures.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// A snapshot of the metrics. Reading them changes nothing (invariant 7). Sums striped
    /// counters and takes each L1 shard lock briefly; allocates the snapshot. Meant for
    /// reporting, not for every call of a hot loop.
    pub fn metrics(&self) -> Metrics {
        let sh = &self.shared;
        let mut m = Metrics::default();
        sh.metrics.fill(&mut m);
        let lanes = &sh.lanes;
        m.queues.put_depth = lanes.puts.len() as u64;
        m.queues.put_capacity = lanes.puts.capacity() as u64;
        m.queues.outcome_depth = lanes.outcomes.len() as u64;
        m.queues.outcome_capacity = lanes.outcomes.capacity() as u64;
        // Relaxed: a statistic.
        m.writer.committed_seq = sh.committed_seq.load(Ordering::Relaxed);
        let l1 = &sh.tier.l1;
        m.l1.entries = l1.len() as u64;
        m.l1.bytes = l1.weight();
        m.l1.capacity_bytes = l1.capacity_weight();
        m.l1.evictions = l1.evictions();
        m.l1.pending_entries = sh.tier.pending_len() as u64;
        m.l1.warmed = sh.metrics.l1_warmed.get();
        m.l1.fills_refused = sh.metrics.l1_fills_refused.get();
        m.slow_queries.threshold_us = sh.cfg.slow_query_threshold.as_micros() as u64;
        m.slow_queries.count = sh.slow.count();
        m.slow_queries.recent = sh.slow.recent();
        m.l2 = sh.l2.as_ref().map(|l2| l2.metrics());
        m.codec = sh.payloads.metrics();
        m.rss_bytes = metrics::rss_bytes();
        m
    }

    /// The metrics as a readable table.
    pub fn report(&self) -> String {
        self.metrics().report()
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        self.cfg()
    }

    /// Committed patterns (a `count(*)`: linear in the store's size). Blocks on a pooled
    /// read connection.
    pub fn count(&self) -> Result<u64> {
        self.pool.with(|r| r.conn().query_i64("SELECT count(*) FROM stats")).map(|n| n as u64)
    }

    /// Calls `f` with every committed pattern, in insertion order, from one read transaction
    /// (a consistent snapshot). Holds a pooled read connection for the whole walk.
    pub fn for_each_pattern(&self, mut f: impl FnMut(Pattern) -> Result<()>) -> Result<()> {
        self.pool.with(|r| {
            let sql =
                format!("SELECT {} FROM {} ORDER BY p.rid", sqlite::PATTERN_COLUMNS, sqlite::PATTERN_FROM);
            let conn = r.conn();
            let mut stmt = conn.prepare(&sql)?;
            stmt.for_each(&[], |row| f(sqlite::pattern_from_row(row, &self.shared.payloads, Some(conn))?))
        })
    }

    /// `PRAGMA integrity_check` plus the store's own consistency checks: every pattern has
    /// its stats row and no stats row is orphaned, embeddings have the store's dimension,
    /// confidences lie in [0, 1], the recorded model and dimension match.
    pub fn check(&self) -> Result<CheckReport> {
        let dim = self.cfg().embedding_dim as i64;
        self.pool.with(|r| {
            let conn = r.conn();
            let integrity = conn.query_strings("PRAGMA integrity_check")?;
            let mut report = CheckReport {
                integrity_ok: integrity == ["ok"],
                patterns: conn.query_i64("SELECT count(*) FROM patterns")? as u64,
                problems: Vec::new(),
            };
            if !report.integrity_ok {
                report.problems.extend(integrity.into_iter().map(|s| format!("integrity: {s}")));
            }
            let checks = [
                ("patterns without stats", "SELECT count(*) FROM patterns p WHERE NOT EXISTS (SELECT 1 FROM stats s WHERE s.id = p.id)".to_owned()),
                ("stats without a pattern", "SELECT count(*) FROM stats s WHERE NOT EXISTS (SELECT 1 FROM patterns p WHERE p.id = s.id)".to_owned()),
                ("embeddings of the wrong size", format!("SELECT count(*) FROM patterns WHERE embedding IS NOT NULL AND length(embedding) != {}", dim * 4)),
                ("confidences outside [0, 1]", "SELECT count(*) FROM stats WHERE NOT (confidence BETWEEN 0.0 AND 1.0)".to_owned()),
                ("negative counters", "SELECT count(*) FROM stats WHERE usage_count < 0 OR success_count < 0 OR failure_count < 0".to_owned()),
                ("patterns whose payload row is missing", "SELECT count(*) FROM patterns p WHERE p.pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payloads b WHERE b.pid = p.pid)".to_owned()),
                ("payloads whose reference count is wrong", "SELECT count(*) FROM payloads b LEFT JOIN (SELECT pid, count(*) AS n FROM patterns WHERE pid IS NOT NULL GROUP BY pid) g ON g.pid = b.pid WHERE g.n IS NULL OR g.n != b.refs".to_owned()),
            ];
            for (what, sql) in checks {
                let n = conn.query_i64(&sql)?;
                if n != 0 {
                    report.problems.push(format!("{n} {what}"));
                }
            }
            // Every stored value decodes, whole and verified (its checksum), and hashes to
            // the content hash it is filed under.
            let mut undecodable = 0u64;
            let mut first = None;
            let mut stmt = conn.prepare("SELECT pid, hash, blob FROM payloads")?;
            stmt.for_each(&[], |row| {
                let pid = row.i64(0);
                let ok = match self.shared.payloads.decode(row.blob(2), &|| format!("payload {pid}"), Some(conn)) {
                    Ok(raw) => crate::codec::content_hash(&raw).to_be_bytes()[..] == *row.blob(1),
                    Err(e) => {
                        first.get_or_insert_with(|| e.to_string());
                        false
                    }
                };
                undecodable += u64::from(!ok);
                Ok(())
            })?;
            if undecodable > 0 {
                report.problems.push(format!(
                    "{undecodable} payloads that do not decode to their content hash{}",
                    first.map_or(String::new(), |e| format!(" (first error: {e})"))
                ));
            }
            Ok(report)
        })
    }

    /// Flushes, stops the writer, checkpoints the WAL and closes. Blocks until the writer
    /// has stopped. Reports what `flush` reports, and any failure to stop cleanly; `Drop`
    /// does the same but can only ignore errors.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        // Relaxed: ticket uniqueness only.
        let ticket = self.shared.flush.next_ticket.fetch_add(1, Ordering::Relaxed);
        let sent = self.send_control(Control::Shutdown { ticket });
        let joined = handle.join();
        sent?;
        if joined.is_err() {
            return Err(Error::new(ErrorKind::Closed, "the writer thread panicked"));
        }
        // Relaxed: the join orders the writer's last writes before this load.
        let failed = self.shared.unreported_failures.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(Error::new(
                ErrorKind::WriteFailed,
                format!("{failed} write(s) failed since the last flush; Store::failed_writes lists them"),
            ));
        }
        let acked = *self.shared.flush.acked.lock().unwrap_or_else(|e| e.into_inner());
        if acked < ticket {
            return Err(Error::new(ErrorKind::Closed, "the writer stopped before the final flush"));
        }
        Ok(())
    }
}

/// Queues a control message for the writer, waiting while the control ring is full.
fn send_control(shared: &Shared, mut msg: Control) -> Result<()> {
    let lanes = &shared.lanes;
    loop {
        // Acquire: see `Lanes::push_blocking`.
        if lanes.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "the store's writer has stopped"));
        }
        match lanes.control.push(msg) {
            Ok(()) => break,
            Err(back) => {
                msg = back;
                lanes.wake_writer();
                thread::sleep(Duration::from_micros(50));
            }
        }
    }
    lanes.wake_writer();
    Ok(())
}

/// Trains a dictionary on `conn`'s payloads and installs it through the writer; `None` when
/// too few payloads are stored.
fn train_and_install(shared: &Shared, conn: &sqlite::ffi::Connection) -> Result<Option<DictionaryInfo>> {
    let Some((dict, info)) = shared.payloads.train(conn)? else { return Ok(None) };
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    send_control(shared, Control::AddDictionary { dict: Box::new(dict), info: info.clone(), reply })?;
    answer.recv().map_err(|_| Error::new(ErrorKind::Closed, "train_dictionary: the writer stopped"))??;
    Ok(Some(info))
}

impl Drop for Store {
    /// Best effort: flushes and stops the writer, ignoring errors. Call `close` to see them.
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
