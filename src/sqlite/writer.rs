//! The writer thread: drains the rings in batches, commits each batch in one
//! `BEGIN IMMEDIATE … COMMIT`, publishes the result to the L1 and overlay, and acknowledges
//! flushes.
//!
//! ## Order of writes
//!
//! Every write carries a sequence number taken when it was submitted. A batch takes puts,
//! then outcomes, then any further puts numbered below the last outcome taken (so a thread's
//! `put(x)` followed by `record_outcome(x)` always land in one batch, in that order). Inside
//! the batch, all puts are applied first (by sequence), then each id's outcomes that come
//! after its last put, folded into one affine `UPDATE`; outcomes older than a put of the same
//! batch are superseded by it (a put replaces the whole pattern). So are the earlier puts
//! and deletes of an id written again later in the batch: only its last write is applied,
//! and the ones it replaced commit with it (under W1's Zipf(0.99) over 100,000 ids, about
//! 45 % of the puts of a 2,700-put batch repeat an id of the batch, computed from the
//! distribution; W1 ran 24 % faster with this and the L1 changes of the same pass).
//!
//! ## Failures
//!
//! If a statement or the commit fails, the transaction is rolled back and the batch is split
//! in halves, each retried, until the failing write is alone: the others commit, the failing
//! one is reported (error counter, `Store::failed_writes`, the next `flush`'s error).
//! A failing batch with superseded writes is first retried with every write applied as
//! submitted, so that a failing last write cannot take the earlier ones down with it.
//! An outcome for an id that does not exist is reported the same way, without a rollback.

use std::collections::HashMap;

/// The batch's per-id maps: hashing every id of a batch with SipHash showed in profiles.
type IdMap<'a, V> = HashMap<&'a str, V, foldhash::fast::RandomState>;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::l2::L2Writer;
use crate::pattern::OutcomeSum;
use crate::payload::{Payload, Payloads};
use crate::queue::ring::Consumer;
use crate::queue::{Control, OutcomeOp, PutOp, Receivers, Write};
use crate::sqlite::embedding_bytes;
use crate::sqlite::ffi::{Connection, Statement, Value};
use crate::store::Shared;
use crate::sync::{thread, Arc, Ordering};

/// The pattern's row, payload, vector, kind and creation time, looked up before a put or
/// delete (no `RETURNING`: it makes SQLite build an ephemeral table for every statement).
/// They are on the row's own page; comparing them here spares the arena a read of its own
/// copy, and a put that changes none of them (nor the content) the rewrite of the row.
const FIND_PATTERN: &str = "SELECT rid, pid, embedding, kind, created_at_ms FROM patterns WHERE id = ?1";
const INSERT_PATTERN: &str = "INSERT INTO patterns(id, kind, data, embedding, created_at_ms, seq, pid) \
     VALUES (?1, ?2, X'', ?3, ?4, ?5, ?6)";
const UPDATE_PATTERN: &str = "UPDATE patterns SET kind = ?2, data = X'', embedding = ?3, \
     created_at_ms = ?4, seq = ?5, pid = ?6 WHERE rid = ?1";
const DELETE_PATTERN: &str = "DELETE FROM patterns WHERE rid = ?1";
const UPSERT_STATS: &str = "INSERT OR REPLACE INTO stats(id, confidence, usage_count, \
     success_count, failure_count, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const DELETE_STATS: &str = "DELETE FROM stats WHERE id = ?1";
const FIND_PAYLOAD: &str = "SELECT pid FROM payloads WHERE hash = ?1";
const INSERT_PAYLOAD: &str = "INSERT INTO payloads(hash, refs, codec, dict, raw_len, blob) \
     VALUES (?1, 1, ?2, ?3, ?4, ?5)";
const ADD_REF: &str = "UPDATE payloads SET refs = refs + 1 WHERE pid = ?1";
/// Drops a reference that is not the last; when it changes nothing, the last goes with the row.
const DROP_REF: &str = "UPDATE payloads SET refs = refs - 1 WHERE pid = ?1 AND refs > 1";
const DELETE_PAYLOAD: &str = "DELETE FROM payloads WHERE pid = ?1";
const RECODE_PAYLOAD: &str =
    "UPDATE payloads SET codec = ?3, dict = ?4, blob = ?5 WHERE pid = ?1 AND hash = ?2";
const PUT_TRAJECTORY: &str = "INSERT OR REPLACE INTO trajectories(id, steps, raw_len, blob, created_at_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_DICTIONARY: &str = "INSERT INTO dictionaries(id, bytes, created_at_ms, samples, saved_ratio) \
     VALUES (?1, ?2, ?3, ?4, ?5)";
const APPLY_OUTCOMES: &str = "UPDATE stats SET confidence = min(1.0, max(0.0, ?2 * confidence + ?3)), \
     usage_count = usage_count + ?4, success_count = success_count + ?5, \
     failure_count = failure_count + ?6, last_used_ms = max(last_used_ms, ?7) WHERE id = ?1";
const SET_LAST_BATCH: &str = "UPDATE meta SET value = ?1 WHERE key = 'last_batch'";

/// What a put needs to know of a pattern's stored row.
#[derive(Clone, Copy)]
struct StoredRow {
    rowid: i64,
    /// The payload id; NULL for a pre-version-3 row.
    pid: Option<i64>,
    same_vector: bool,
    same_kind: bool,
    created_at_ms: i64,
}

/// The statements that write patterns and their payloads.
struct PatternStatements {
    find_pattern: Statement,
    insert_pattern: Statement,
    update_pattern: Statement,
    delete_pattern: Statement,
    upsert_stats: Statement,
    delete_stats: Statement,
    find_payload: Statement,
    insert_payload: Statement,
    add_ref: Statement,
    drop_ref: Statement,
    delete_payload: Statement,
}

impl PatternStatements {
    fn prepare(conn: &Connection) -> Result<Self> {
        Ok(Self {
            find_pattern: conn.prepare(FIND_PATTERN)?,
            insert_pattern: conn.prepare(INSERT_PATTERN)?,
            update_pattern: conn.prepare(UPDATE_PATTERN)?,
            delete_pattern: conn.prepare(DELETE_PATTERN)?,
            upsert_stats: conn.prepare(UPSERT_STATS)?,
            delete_stats: conn.prepare(DELETE_STATS)?,
            find_payload: conn.prepare(FIND_PAYLOAD)?,
            insert_payload: conn.prepare(INSERT_PAYLOAD)?,
            add_ref: conn.prepare(ADD_REF)?,
            drop_ref: conn.prepare(DROP_REF)?,
            delete_payload: conn.prepare(DELETE_PAYLOAD)?,
        })
    }

    /// The row of pattern `id`, if any; `vector` (the little-endian bytes of the one being
    /// written) and `kind` are compared with the stored ones.
    fn find(&mut self, id: &str, vector: Option<&[u8]>, kind: &str) -> Result<Option<StoredRow>> {
        self.find_pattern.query_row(&[Value::Text(id)], |row| {
            Ok(StoredRow {
                rowid: row.i64(0),
                pid: (!row.is_null(1)).then(|| row.i64(1)),
                same_vector: vector.is_some_and(|v| !row.is_null(2) && row.blob(2) == v),
                same_kind: row.text(3) == Some(kind),
                created_at_ms: row.i64(4),
            })
        })
    }

    /// A reference to the content of `p`'s data: an existing row's (one more reference,
    /// unless it is `held`, the reference the pattern already has), or a new row (encoding the
    /// data here if the caller did not). Returns the pid and whether the content was already
    /// stored.
    fn reference(
        &mut self,
        p: &crate::Pattern,
        payload: &Payload,
        held: Option<i64>,
        payloads: &Payloads,
    ) -> Result<(i64, bool)> {
        let found = self.find_payload.query_row(&[Value::Blob(payload.hash())], |row| Ok(row.i64(0)))?;
        if let Some(pid) = found {
            if held != Some(pid) {
                self.add_ref.execute(&[Value::Int(pid)])?;
            }
            return Ok((pid, true));
        }
        let encoded_here;
        let payload = match payload {
            Payload::Encoded(e) => e,
            Payload::Unchanged { .. } => {
                encoded_here = payloads.encode(&p.data)?;
                &encoded_here
            }
        };
        self.insert_payload.execute(&[
            Value::Blob(&payload.hash),
            Value::Int(payload.codec as i64),
            Value::Int(i64::from(payload.dict)),
            Value::Int(payload.raw_len as i64),
            Value::Blob(&payload.blob),
        ])?;
        Ok((self.insert_payload.last_insert_rowid(), false))
    }

    /// Drops one reference to `pid`, deleting the row with the last.
    fn release(&mut self, pid: i64) -> Result<()> {
        if self.drop_ref.execute(&[Value::Int(pid)])? == 0 {
            self.delete_payload.execute(&[Value::Int(pid)])?;
        }
        Ok(())
    }

    /// Writes pattern `p` with `payload` as part of batch `batch`; returns its rowid,
    /// whether the content was already stored, and whether the row already had `p`'s vector.
    fn put(
        &mut self,
        p: &crate::Pattern,
        payload: &Payload,
        batch: u64,
        payloads: &Payloads,
    ) -> Result<(i64, bool, bool)> {
        let vector = p.embedding.as_deref().map(embedding_bytes);
        let existing = self.find(&p.id, vector.as_deref(), &p.kind)?;
        let held = existing.and_then(|row| row.pid);
        let (pid, dedup) = self.reference(p, payload, held, payloads)?;
        // Kind, vector, creation time and content all as stored (an agent's update of the
        // counters or the confidence alone): the row stays as it is, and its page out of this
        // batch's WAL frames; `seq` stays the batch that last changed it, all the arena's
        // catch-up needs (the stats are refreshed from `stats`).
        let unchanged = existing.is_some_and(|row| {
            row.same_vector && row.same_kind && row.created_at_ms == p.created_at_ms && row.pid == Some(pid)
        });
        let emb = vector.as_deref().map_or(Value::Null, Value::Blob);
        // Both statements bind (row, kind, embedding, created_at_ms, seq, pid); the row is the
        // rowid of an update, the id of an insert.
        let row = |first| {
            [
                first,
                Value::Text(&p.kind),
                emb,
                Value::Int(p.created_at_ms),
                Value::Int(batch as i64),
                Value::Int(pid),
            ]
        };
        let rowid = match existing {
            Some(StoredRow { rowid, .. }) if unchanged => rowid,
            Some(StoredRow { rowid, .. }) => {
                self.update_pattern.execute(&row(Value::Int(rowid)))?;
                rowid
            }
            None => {
                self.insert_pattern.execute(&row(Value::Text(&p.id)))?;
                self.insert_pattern.last_insert_rowid()
            }
        };
        if let Some(old) = held.filter(|&old| old != pid) {
            self.release(old)?;
        }
        self.upsert_stats.execute(&[
            Value::Text(&p.id),
            Value::Real(p.confidence),
            Value::Int(p.usage_count as i64),
            Value::Int(p.success_count as i64),
            Value::Int(p.failure_count as i64),
            Value::Int(p.last_used_ms),
        ])?;
        Ok((rowid, dedup, existing.is_some_and(|row| row.same_vector)))
    }

    /// Deletes pattern `id`, its stats and its reference to its payload; false if it did not
    /// exist.
    fn delete(&mut self, id: &str) -> Result<bool> {
        let Some(StoredRow { rowid, pid, .. }) = self.find(id, None, "")? else { return Ok(false) };
        self.delete_pattern.execute(&[Value::Int(rowid)])?;
        self.delete_stats.execute(&[Value::Text(id)])?;
        if let Some(pid) = pid {
            self.release(pid)?;
        }
        Ok(true)
    }
}

/// Pops the head of `lane` if its number is below `below`. A head that a producer has
/// claimed but not yet written is waited for (it is being written now): it may be one of them.
fn take_below<T>(lane: &mut Consumer<T>, below: u64, seq: impl Fn(&T) -> u64) -> Option<T> {
    loop {
        if let Some(v) = lane.pop_if(|v| seq(v) < below) {
            return Some(v);
        }
        if lane.position() == lane.claimed() || lane.head_is_written() {
            // Empty, or its head is numbered `below` or above.
            return None;
        }
        thread::yield_now();
    }
}

/// Why a transaction failed.
enum Failure {
    /// It could not start: no write is to blame.
    Begin(Error),
    /// A statement or the commit failed: one of the writes may be to blame.
    Write(Error),
}

/// One unit of a batch: what bisection isolates.
enum Unit {
    /// A write of the put lane, and the earlier writes of the same pattern id in this batch
    /// that it supersedes (in order; empty once a failed batch is expanded).
    Put(PutOp, Vec<PutOp>),
    Outcomes {
        id: String,
        sum: OutcomeSum,
        min_seq: u64,
        max_seq: u64,
        count: u64,
    },
}

impl Unit {
    fn supersedes(&self) -> bool {
        matches!(self, Unit::Put(_, superseded) if !superseded.is_empty())
    }

    /// The unit with the writes it superseded as units of their own, in submission order.
    fn expanded(self) -> Vec<Unit> {
        match self {
            Unit::Put(op, superseded) => {
                superseded.into_iter().chain([op]).map(|op| Unit::Put(op, Vec::new())).collect()
            }
            other => vec![other],
        }
    }

    fn describe(&self) -> (&'static str, &str, u64) {
        match self {
            Unit::Put(op, _) => (op.op_name(), op.id(), op.seq),
            Unit::Outcomes { id, max_seq, .. } => ("record_outcome", id, *max_seq),
        }
    }
}

struct Statements {
    begin: Statement,
    commit: Statement,
    rollback: Statement,
    patterns: PatternStatements,
    apply_outcomes: Statement,
    set_last_batch: Statement,
    put_trajectory: Statement,
    recode_payload: Statement,
    insert_dictionary: Statement,
}

pub(crate) struct Writer {
    // Statements before the connection: fields drop in order (the statements also keep
    // the connection alive on their own).
    stmts: Statements,
    conn: Connection,
    rx: Receivers,
    shared: Arc<Shared>,
    /// Whether something was committed since the last idle vacuum.
    dirty_since_vacuum: bool,
    /// The arena's writer side (`crate::l2`).
    l2: L2Writer,
    /// The number of the last committed batch (`meta.last_batch`).
    batch: u64,
    /// What the current transaction learnt, per unit (a put's rowid). Consumed by `publish`.
    effects: Vec<Effect>,
}

/// What applying a unit returned.
#[derive(Clone, Copy)]
enum Effect {
    /// A put, the rowid SQLite gave it, whether its content was already stored, and whether
    /// the row already had its vector.
    Put { rowid: i64, dedup: bool, same_vector: bool },
    /// A pattern deleted (or already absent), or a trajectory written.
    Other,
    /// Outcomes applied to an existing pattern.
    Outcome,
    /// Outcomes of an id that does not exist.
    Missing,
}

/// Marks the writer stopped however it ends (normal return or panic), so no caller waits
/// forever on a flush or a full ring.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        // Release: pairs with the Acquire loads in `flush`/`push_blocking`.
        self.0.lanes.closed.store(true, Ordering::Release);
        self.0.lanes.notify_space();
        let _guard = self.0.flush.acked.lock().unwrap_or_else(|e| e.into_inner());
        self.0.flush.cv.notify_all();
    }
}

fn position_reached(head: usize, target: usize) -> bool {
    (head.wrapping_sub(target) as isize) >= 0
}

impl Writer {
    pub fn new(conn: Connection, rx: Receivers, shared: Arc<Shared>, l2: L2Writer) -> Result<Self> {
        let stmts = Statements {
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            rollback: conn.prepare("ROLLBACK")?,
            patterns: PatternStatements::prepare(&conn)?,
            apply_outcomes: conn.prepare(APPLY_OUTCOMES)?,
            set_last_batch: conn.prepare(SET_LAST_BATCH)?,
            put_trajectory: conn.prepare(PUT_TRAJECTORY)?,
            recode_payload: conn.prepare(RECODE_PAYLOAD)?,
            insert_dictionary: conn.prepare(INSERT_DICTIONARY)?,
        };
        let batch = super::schema::last_batch(&conn)?;
        Ok(Self { stmts, conn, rx, shared, dirty_since_vacuum: false, l2, batch, effects: Vec::new() })
    }

    pub fn run(mut self) {
        let _stop = StopGuard(Arc::clone(&self.shared));
        let interval = self.shared.cfg.batch_interval;
        let mut pending_since: Option<Instant> = None;
        loop {
            let mut ack = None;
            let mut shutdown = false;
            while let Some(msg) = self.rx.control.pop() {
                match msg {
                    Control::Flush { ticket } => ack = ack.max(Some(ticket)),
                    Control::Shutdown { ticket } => {
                        ack = ack.max(Some(ticket));
                        shutdown = true;
                    }
                    Control::AddDictionary { dict, info, reply } => {
                        let _ = reply.send(self.add_dictionary(*dict, &info));
                    }
                    Control::Recode { items, reply } => {
                        let _ = reply.send(self.recode(&items));
                    }
                }
            }
            // Everything submitted before a flush message was claimed in the rings before
            // we popped the message: drain up to these positions.
            let targets = ack.map(|_| (self.rx.puts.claimed(), self.rx.outcomes.claimed()));
            let lanes = Arc::clone(&self.shared.lanes);
            let queued = self.rx.puts.len() + self.rx.outcomes.len();
            if queued > 0 && pending_since.is_none() {
                pending_since = Some(Instant::now());
            }
            let due = targets.is_some()
                || self.rx.puts.len() >= lanes.batch_puts
                || self.rx.outcomes.len() >= lanes.batch_outcomes
                || pending_since.is_some_and(|t| t.elapsed() >= interval);
            if due {
                self.drain(targets);
                pending_since = None;
            }
            if let Some(ticket) = ack {
                self.shared.ack_flush(ticket);
            }
            if shutdown {
                self.sync_arena();
                let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                return;
            }
            if !due {
                let wait = match pending_since {
                    Some(t) => interval.saturating_sub(t.elapsed()),
                    None => {
                        self.sync_arena();
                        self.idle_vacuum();
                        interval
                    }
                };
                self.shared.lanes.writer_parking(true);
                // Recheck after announcing sleep (pairs with `Lanes::wake_if_batch`).
                if self.rx.control.is_empty()
                    && self.rx.puts.len() < lanes.batch_puts
                    && self.rx.outcomes.len() < lanes.batch_outcomes
                {
                    thread::park_timeout(wait.max(Duration::from_micros(100)));
                }
                self.shared.lanes.writer_parking(false);
            }
        }
    }

    /// Runs `f` in its own transaction.
    fn transaction<R>(&mut self, f: impl FnOnce(&mut Statements) -> Result<R>) -> Result<R> {
        self.begin()?;
        let done = f(&mut self.stmts).and_then(|r| self.stmts.commit.execute(&[]).map(|_| r));
        if done.is_err() && !self.conn.is_autocommit() {
            let _ = self.stmts.rollback.execute(&[]);
        }
        done
    }

    /// Stores a trained dictionary, then makes it the one new values use: any value that
    /// names it is encoded after this commit, so no committed row names a missing dictionary.
    fn add_dictionary(
        &mut self,
        dict: crate::codec::Dictionary,
        info: &crate::payload::DictionaryInfo,
    ) -> Result<()> {
        self.transaction(|st| {
            st.insert_dictionary.execute(&[
                Value::Int(i64::from(dict.id())),
                Value::Blob(dict.bytes()),
                Value::Int(crate::pattern::now_ms()),
                Value::Int(info.samples as i64),
                Value::Real(info.saved_ratio),
            ])
        })?;
        self.shared.payloads.install(dict);
        Ok(())
    }

    /// Replaces stored blobs with re-encodings of the same content (`Store::recompress`);
    /// says for each whether its row still existed.
    fn recode(&mut self, items: &[(i64, [u8; 16], crate::payload::Encoded)]) -> Result<Vec<bool>> {
        self.transaction(|st| {
            items
                .iter()
                .map(|(pid, hash, e)| {
                    let changed = st.recode_payload.execute(&[
                        Value::Int(*pid),
                        Value::Blob(hash),
                        Value::Int(e.codec as i64),
                        Value::Int(i64::from(e.dict)),
                        Value::Blob(&e.blob),
                    ])?;
                    Ok(changed > 0)
                })
                .collect()
        })
    }

    /// Commits batches until the rings are below a batch (or, for a flush, until the
    /// `targets` positions are consumed).
    fn drain(&mut self, targets: Option<(usize, usize)>) {
        let max_ops = self.shared.cfg.max_txn_ops;
        loop {
            let units = self.collect(max_ops);
            if !units.is_empty() {
                self.commit_bisecting(units);
                self.shared.lanes.notify_space();
            }
            match targets {
                Some((puts, outcomes)) => {
                    let done = position_reached(self.rx.puts.position(), puts)
                        && position_reached(self.rx.outcomes.position(), outcomes);
                    if done {
                        return;
                    }
                    if self.rx.puts.is_empty() && self.rx.outcomes.is_empty() {
                        // A producer claimed a slot before the flush and is still writing it.
                        thread::yield_now();
                    }
                }
                None => {
                    let lanes = &self.shared.lanes;
                    if self.rx.puts.len() < lanes.batch_puts && self.rx.outcomes.len() < lanes.batch_outcomes
                    {
                        // Take what is left too: it is due (or close to it) and costs little.
                        if self.rx.puts.is_empty() && self.rx.outcomes.is_empty() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Takes up to `max_ops` writes and plans them into units (see the module docs).
    fn collect(&mut self, max_ops: usize) -> Vec<Unit> {
        let mut puts: Vec<PutOp> = Vec::new();
        let mut outcomes: Vec<OutcomeOp> = Vec::new();
        while puts.len() < max_ops {
            match self.rx.puts.pop() {
                Some(p) => puts.push(p),
                None => break,
            }
        }
        while puts.len() + outcomes.len() < max_ops {
            match self.rx.outcomes.pop() {
                Some(o) => outcomes.push(o),
                None => break,
            }
        }
        // The writes of an id apply in the order they were numbered: an outcome numbered
        // below a taken put must be in this batch (to be superseded by it, or applied before
        // it), and so must a put numbered below a taken outcome. A number is taken before its
        // write is pushed, so what was submitted before a write sits at its lane's head,
        // numbered below it: take from each lane's head until both are past the other's
        // highest number. Without this, the outcomes beyond `max_ops` (or behind a slot a
        // producer was still writing) were applied on top of a later put in the next batch.
        let mut max_put = puts.iter().map(|p| p.seq).max().unwrap_or(0);
        let mut max_outcome = outcomes.iter().map(|o| o.seq).max().unwrap_or(0);
        loop {
            let mut took = false;
            while let Some(o) = take_below(&mut self.rx.outcomes, max_put, |o| o.seq) {
                max_outcome = max_outcome.max(o.seq);
                outcomes.push(o);
                took = true;
            }
            while let Some(p) = take_below(&mut self.rx.puts, max_outcome, |p| p.seq) {
                max_put = max_put.max(p.seq);
                puts.push(p);
                took = true;
            }
            if !took {
                break;
            }
        }
        if puts.is_empty() && outcomes.is_empty() {
            return Vec::new();
        }
        puts.sort_by_key(|p| p.seq);
        let mut last_put: IdMap<u64> = IdMap::with_capacity_and_hasher(puts.len(), Default::default());
        for p in puts.iter().filter(|p| p.is_pattern_write()) {
            last_put.insert(p.id(), p.seq);
        }
        let eta = self.shared.cfg.learning_rate;
        let mut sums: IdMap<(OutcomeSum, u64, u64, u64)> = IdMap::default();
        let mut superseded = 0;
        for o in &outcomes {
            let id = o.id.as_str();
            if last_put.get(id).is_some_and(|&s| s > o.seq) {
                superseded += 1;
                continue;
            }
            let e = sums.entry(id).or_insert((OutcomeSum::IDENTITY, u64::MAX, 0, 0));
            e.0.push(o.outcome, eta, o.at_ms);
            e.1 = e.1.min(o.seq);
            e.2 = e.2.max(o.seq);
            e.3 += 1;
        }
        self.shared.metrics.superseded_outcomes.add(superseded);
        // Outcome updates in id order: neighbouring keys share b-tree pages.
        let mut grouped: Vec<Unit> = sums
            .into_iter()
            .map(|(id, (sum, min_seq, max_seq, count))| Unit::Outcomes {
                id: id.to_owned(),
                sum,
                min_seq,
                max_seq,
                count,
            })
            .collect();
        grouped.sort_by(|a, b| a.describe().1.cmp(b.describe().1));
        // Only an id's last pattern write is applied; the earlier ones ride along with it.
        let is_last: Vec<bool> =
            puts.iter().map(|p| !p.is_pattern_write() || last_put.get(p.id()) == Some(&p.seq)).collect();
        drop(last_put);
        let mut waiting: HashMap<Box<str>, Vec<PutOp>, foldhash::fast::RandomState> = HashMap::default();
        let mut units: Vec<Unit> = Vec::with_capacity(puts.len() + grouped.len());
        for (p, last) in puts.into_iter().zip(is_last) {
            if !last {
                waiting.entry(p.id().into()).or_default().push(p);
            } else {
                let superseded = if p.is_pattern_write() {
                    waiting.remove(p.id()).unwrap_or_default()
                } else {
                    Vec::new()
                };
                units.push(Unit::Put(p, superseded));
            }
        }
        debug_assert!(waiting.is_empty(), "every superseded write has a last write in the batch");
        units.extend(grouped);
        units
    }

    /// Commits `units`; on failure rolls back and retries halves until the failing write is
    /// isolated.
    fn commit_bisecting(&mut self, units: Vec<Unit>) {
        let mut stack = vec![units];
        while let Some(units) = stack.pop() {
            match self.commit(&units) {
                Ok(missing) => self.publish(units, missing),
                // No transaction could be started (another process holds the database past
                // the busy timeout, an I/O error): no write is to blame, so halving would
                // only repeat the wait. Report every write of the batch.
                Err(Failure::Begin(e)) => self.fail_all(&units, &e),
                Err(Failure::Write(_)) if units.iter().any(Unit::supersedes) => {
                    self.shared.metrics.batch_retries.incr();
                    stack.push(units.into_iter().flat_map(Unit::expanded).collect());
                }
                Err(Failure::Write(e)) if units.len() == 1 => self.fail_all(&units, &e),
                Err(Failure::Write(_)) => {
                    self.shared.metrics.batch_retries.incr();
                    let mut first = units;
                    let second = first.split_off(first.len() / 2);
                    // Second half pushed first so the first half commits first (order).
                    stack.push(second);
                    stack.push(first);
                }
            }
        }
    }

    fn fail_all(&self, units: &[Unit], error: &Error) {
        for unit in units {
            match unit {
                Unit::Put(p, superseded) => {
                    for p in superseded.iter().chain([p]) {
                        self.shared.record_failure(p.op_name(), p.id(), p.seq, error);
                        self.shared.withdraw(p);
                    }
                }
                Unit::Outcomes { count, .. } => {
                    let (op, id, seq) = unit.describe();
                    for _ in 0..*count {
                        self.shared.record_failure(op, id, seq, error);
                    }
                }
            }
        }
    }

    /// One transaction. Returns the indexes of outcome units whose id did not exist.
    fn commit(&mut self, units: &[Unit]) -> Result<Vec<usize>, Failure> {
        let started = Instant::now();
        self.begin().map_err(Failure::Begin)?;
        let mut missing = Vec::new();
        self.effects.clear();
        let batch = self.batch + 1;
        let applied = (|| {
            for (i, unit) in units.iter().enumerate() {
                let effect = self.apply(unit, batch)?;
                if let Effect::Missing = effect {
                    missing.push(i);
                }
                self.effects.push(effect);
            }
            self.stmts.set_last_batch.execute(&[Value::Text(&batch.to_string())])?;
            self.shared.tier.begin_commit();
            self.stmts.commit.execute(&[])
        })();
        if let Err(e) = applied {
            if !self.conn.is_autocommit() {
                let _ = self.stmts.rollback.execute(&[]);
            }
            // The epoch may be odd if COMMIT itself failed: close it.
            self.end_commit_if_open();
            return Err(Failure::Write(e));
        }
        self.batch = batch;
        let m = &self.shared.metrics;
        m.commit_ns.record_duration(started.elapsed());
        m.batches.incr();
        m.batch_ops.record(units.len() as u64);
        Ok(missing)
    }

    /// `BEGIN IMMEDIATE`, retried a few times: SQLite's busy handler already waited up to
    /// `busy_timeout` on each try.
    fn begin(&mut self) -> Result<()> {
        let mut tries = 0;
        loop {
            match self.stmts.begin.execute(&[]) {
                Ok(_) => return Ok(()),
                Err(e) if tries < 2 && e.kind() == ErrorKind::Locked => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn end_commit_if_open(&self) {
        // The epoch is odd exactly between begin_commit and end_commit, both called only by
        // this thread; Relaxed read of our own last write.
        if self.shared.tier.commit_epoch_is_odd() {
            self.shared.tier.end_commit();
        }
    }

    /// Applies one unit as part of batch `batch`.
    fn apply(&mut self, unit: &Unit, batch: u64) -> Result<Effect> {
        match unit {
            Unit::Put(op, _) => match &op.write {
                Write::Pattern { pattern, payload } => {
                    let (rowid, dedup, same_vector) =
                        self.stmts.patterns.put(pattern, payload, batch, &self.shared.payloads)?;
                    Ok(Effect::Put { rowid, dedup, same_vector })
                }
                Write::Delete { id } => {
                    self.stmts.patterns.delete(id)?;
                    Ok(Effect::Other)
                }
                Write::Trajectory { trajectory, blob, json_len } => {
                    self.stmts.put_trajectory.execute(&[
                        Value::Text(&trajectory.id),
                        Value::Int(trajectory.steps.len() as i64),
                        Value::Int(*json_len as i64),
                        Value::Blob(blob),
                        Value::Int(crate::pattern::now_ms()),
                    ])?;
                    Ok(Effect::Other)
                }
            },
            Unit::Outcomes { id, sum, .. } => {
                // No RETURNING: it costs SQLite an ephemeral table per statement (measured as
                // a larger writer share of W1); the arena applies the same map to its copy.
                let changed = self.stmts.apply_outcomes.execute(&[
                    Value::Text(id),
                    Value::Real(sum.a),
                    Value::Real(sum.b),
                    Value::Int(sum.uses() as i64),
                    Value::Int(sum.successes as i64),
                    Value::Int(sum.failures as i64),
                    Value::Int(sum.last_used_ms),
                ])?;
                Ok(if changed > 0 { Effect::Outcome } else { Effect::Missing })
            }
        }
    }

    /// Syncs the arena to disk if it changed (idle or closing). A failure loses no write
    /// (SQLite has it; the arena catches up at the next open): it is counted in the L2
    /// metrics, not reported as a failed write.
    fn sync_arena(&mut self) {
        if let Err(e) = self.l2.idle() {
            if let Some(l2) = self.shared.l2.as_ref() {
                l2.record_error(&e);
            }
        }
    }

    /// After a commit: overlay clean-up, L1 updates, failures for unknown ids, metrics.
    fn publish(&mut self, units: Vec<Unit>, missing: Vec<usize>) {
        let sh = Arc::clone(&self.shared);
        let mut missing = missing.into_iter().peekable();
        let mut max_seq = 0;
        for (i, unit) in units.iter().enumerate() {
            match unit {
                Unit::Put(op, superseded) => {
                    // Committed too: replaced by `op`, which is now durable.
                    for earlier in superseded {
                        sh.committed(earlier);
                    }
                    sh.committed(op);
                    if let Some(Effect::Put { dedup: true, .. }) = self.effects.get(i) {
                        sh.payloads.dedup_hits.incr();
                    }
                    max_seq = max_seq.max(op.seq);
                }
                Unit::Outcomes { id, sum, min_seq, max_seq: last, count } => {
                    max_seq = max_seq.max(*last);
                    if missing.peek() == Some(&i) {
                        missing.next();
                        let err = Error::new(
                            ErrorKind::WriteFailed,
                            format!("record_outcome: no pattern with id {id:?}"),
                        );
                        self.fail_all(std::slice::from_ref(unit), &err);
                        continue;
                    }
                    sh.tier.outcomes_committed(id, sum, *min_seq, *last);
                    sh.metrics.committed_outcomes.add(*count);
                    sh.metrics.coalesced_updates.incr();
                }
            }
        }
        // The L1 is coherent again: misses may fill it while the arena catches up below.
        sh.tier.end_commit();
        // Relaxed: a statistic (flush ordering goes through the ack mutex).
        sh.committed_seq.fetch_max(max_seq, Ordering::Relaxed);
        self.dirty_since_vacuum = true;
        self.follow_in_arena(&units);
    }

    /// The arena follows SQLite: a record per committed put with an embedding, confidences
    /// in place, then the batch published to searches (before any flush of it is
    /// acknowledged). A failure loses nothing (SQLite has the write; the arena catches up at
    /// the next open) and is counted in the L2 metrics.
    fn follow_in_arena(&mut self, units: &[Unit]) {
        let Some(l2) = self.shared.l2.as_ref() else { return };
        let effects = std::mem::take(&mut self.effects);
        let mut error = None;
        for (unit, effect) in units.iter().zip(&effects) {
            let done = match (unit, effect) {
                (Unit::Put(op, _), Effect::Put { rowid, same_vector, .. }) => match &op.write {
                    Write::Pattern { pattern, .. } => self.l2.put(*rowid, pattern, *same_vector, &self.conn),
                    _ => Ok(()),
                },
                (Unit::Put(PutOp { write: Write::Delete { id }, .. }, _), _) => {
                    self.l2.delete(id, &self.conn)
                }
                (Unit::Outcomes { id, sum, .. }, Effect::Outcome) => self.l2.outcome(id, sum, &self.conn),
                _ => Ok(()),
            };
            if let Err(e) = done {
                error.get_or_insert(e);
            }
        }
        if let Err(e) = self.l2.end_batch(l2, self.batch, false) {
            error.get_or_insert(e);
        }
        if let Some(e) = error {
            l2.record_error(&e);
        }
    }

    /// Returns free pages to the file system when the writer has nothing to do.
    fn idle_vacuum(&mut self) {
        let pages = self.shared.cfg.idle_vacuum_pages;
        if pages == 0 || !self.dirty_since_vacuum {
            return;
        }
        self.dirty_since_vacuum = false;
        if self.conn.query_i64("PRAGMA freelist_count").unwrap_or(0) > 0
            && self.conn.execute_batch(&format!("PRAGMA incremental_vacuum({pages});")).is_ok()
        {
            self.shared.metrics.vacuum_runs.incr();
        }
    }
}

/// The ceiling for W3 puts: the same schema and statements driven by a plain loop on the
/// calling thread, `per_txn` rows per transaction, no queue and no writer thread; each
/// pattern's data is encoded in the loop, as `put` encodes it. Creates the store at
/// `cfg.path` if needed. Returns the time from the first `BEGIN` to the last `COMMIT`.
/// (`per_txn = 1` is the unbatched floor: one transaction per row.)
pub(crate) fn raw_put_loop(
    cfg: &crate::Config,
    patterns: &[crate::Pattern],
    per_txn: usize,
) -> Result<Duration> {
    let conn = super::schema::open_writer(cfg, None)?;
    let payloads = crate::payload::Payloads::open(cfg, &conn)?;
    let mut begin = conn.prepare("BEGIN IMMEDIATE")?;
    let mut commit = conn.prepare("COMMIT")?;
    let mut statements = PatternStatements::prepare(&conn)?;
    let started = Instant::now();
    for chunk in patterns.chunks(per_txn.max(1)) {
        begin.execute(&[])?;
        for p in chunk {
            let payload = Payload::Encoded(payloads.encode(&p.data)?);
            statements.put(p, &payload, 0, &payloads)?;
        }
        commit.execute(&[])?;
    }
    Ok(started.elapsed())
}
