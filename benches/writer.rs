//! DESIGN.md W3 (durable writes), scaled down so a sample takes well under a second.
//!
//! `writer_puts`: 5,000 new patterns of D(5,000) (seed `PUT_SEED`, generated once, outside
//! the timing) into a fresh store in a fresh temporary folder per iteration:
//! - `patternbank_put_flush`: `Store::put` each, then `flush()` (open, the clones handed to
//!   `put`, and close are outside the timed region);
//! - `put_ceiling`: `__bench::raw_put_loop(.., 1000)`, the store's own schema and statements
//!   in a plain loop, 1,000 rows per transaction (the ceiling of DESIGN.md);
//! - `rusqlite_put`: the same schema, pragmas and statements driven by rusqlite
//!   (`prepare_cached`, 1,000 rows per transaction);
//! - `put_ceiling_no_id_index`: `rusqlite_put` on a schema without `UNIQUE` on `patterns.id`
//!   and a plain `INSERT` instead of the upsert: against `rusqlite_put`, the write cost of
//!   that index;
//! - `put_floor_unbatched`: `raw_put_loop(.., 1)`, one transaction per row, over the first
//!   `FLOOR_ROWS` patterns only; throughput is set to those rows so elements/s compare.
//!
//! The loops time first `BEGIN` to last `COMMIT` (that is what `raw_put_loop` returns); ours
//! times first `put` to `flush()` returning.
//!
//! `writer_outcomes`: D(10,000) preloaded once into a template store (outside the timing);
//! each iteration copies it into a fresh folder, then applies `OUTCOMES` outcomes on ids
//! drawn Zipf(0.99) (75 % success, seeded, the same sequence for every variant):
//! - `patternbank_record_outcome_flush`: `record_outcome` each from the bench thread, then
//!   `flush()`;
//! - `rusqlite_update_per_outcome`: one `UPDATE stats …` per outcome, 500 per transaction.
//!
//! Every iteration asserts what was committed: row counts after puts, and the sums of
//! `usage_count` and `success_count` after outcomes (the template's are 0).
//!
//! Run: `cargo bench --bench writer` (add `-- --quick` for a short run).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use patternbank::workload::{dataset, Rng, Zipf};
use patternbank::{Config, Outcome, Pattern};
use rusqlite::{params, Connection, TransactionBehavior};

const PUTS: usize = 5_000;
const PUT_SEED: u64 = 42 ^ 0xF00D;
const PER_TXN: usize = 1_000;
const FLOOR_ROWS: usize = 500;
const PRELOAD: usize = 10_000;
const PRELOAD_SEED: u64 = 42;
const OUTCOMES: usize = 100_000;
const OUTCOMES_PER_TXN: usize = 500;
const OUTCOME_SEED: u64 = 42 ^ 0xABCD;
const DB: &str = "bench.db";

/// The store's pragmas (src/sqlite/schema.rs), for the rusqlite peer.
const PRAGMAS_BEFORE_TABLES: &str = "PRAGMA page_size = 4096; PRAGMA auto_vacuum = INCREMENTAL;";
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA cache_size = -16384; PRAGMA mmap_size = 0; PRAGMA temp_store = MEMORY; \
     PRAGMA wal_autocheckpoint = 10000;";

/// The store's schema (src/sqlite/schema.rs).
const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE patterns(rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    data BLOB NOT NULL, embedding BLOB, created_at_ms INTEGER NOT NULL);
CREATE TABLE stats(id TEXT PRIMARY KEY, confidence REAL NOT NULL, usage_count INTEGER NOT NULL,
    success_count INTEGER NOT NULL, failure_count INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL) WITHOUT ROWID;
";
/// The same without `UNIQUE` on `patterns.id` (no automatic index).
const SCHEMA_NO_ID_INDEX: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE patterns(rid INTEGER PRIMARY KEY, id TEXT NOT NULL, kind TEXT NOT NULL,
    data BLOB NOT NULL, embedding BLOB, created_at_ms INTEGER NOT NULL);
CREATE TABLE stats(id TEXT PRIMARY KEY, confidence REAL NOT NULL, usage_count INTEGER NOT NULL,
    success_count INTEGER NOT NULL, failure_count INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL) WITHOUT ROWID;
";

const UPSERT_PATTERN: &str = "INSERT INTO patterns(id, kind, data, embedding, created_at_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, \
     data = excluded.data, embedding = excluded.embedding, created_at_ms = excluded.created_at_ms";
const INSERT_PATTERN: &str =
    "INSERT INTO patterns(id, kind, data, embedding, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)";
const UPSERT_STATS: &str = "INSERT OR REPLACE INTO stats(id, confidence, usage_count, \
     success_count, failure_count, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const UPDATE_OUTCOME: &str = "UPDATE stats SET confidence = confidence + 0.1*(?2 - confidence), \
     usage_count = usage_count+1, success_count = success_count + ?3, \
     failure_count = failure_count + ?4 WHERE id = ?1";

fn fresh_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB);
    (dir, path)
}

/// Little-endian f32 bytes, borrowed where the machine is little-endian (as the store does).
fn embedding_bytes(e: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(e))
    } else {
        std::borrow::Cow::Owned(e.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// A rusqlite connection with the store's pragmas, creating `schema` on a new file.
fn rusqlite_open(path: &Path, schema: &str) -> Connection {
    let conn = Connection::open(path).expect("open");
    let fresh: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).expect("schema");
    if fresh == 0 {
        conn.execute_batch(PRAGMAS_BEFORE_TABLES).expect("pragmas");
    }
    conn.execute_batch(PRAGMAS).expect("pragmas");
    if fresh == 0 {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {schema} COMMIT;")).expect("schema");
    }
    conn
}

fn count_rows(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).expect("open");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("count")
}

/// The rusqlite peer of `raw_put_loop`: `per_txn` rows per `BEGIN IMMEDIATE … COMMIT`, with
/// `pattern_sql` (upsert or plain insert) and the stats upsert. Times first BEGIN to last
/// COMMIT.
fn rusqlite_put_loop(
    conn: &mut Connection,
    patterns: &[Pattern],
    per_txn: usize,
    pattern_sql: &str,
) -> Duration {
    let started = Instant::now();
    for chunk in patterns.chunks(per_txn) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin");
        {
            let mut put_pattern = tx.prepare_cached(pattern_sql).expect("prepare");
            let mut put_stats = tx.prepare_cached(UPSERT_STATS).expect("prepare");
            for p in chunk {
                let emb = p.embedding.as_deref().map(embedding_bytes);
                put_pattern
                    .execute(params![p.id, p.kind, p.data, emb.as_deref(), p.created_at_ms])
                    .expect("insert pattern");
                put_stats
                    .execute(params![
                        p.id,
                        p.confidence,
                        p.usage_count as i64,
                        p.success_count as i64,
                        p.failure_count as i64,
                        p.last_used_ms
                    ])
                    .expect("insert stats");
            }
        }
        tx.commit().expect("commit");
    }
    started.elapsed()
}

fn writer_puts(c: &mut Criterion) {
    let patterns = dataset(PUTS, PUT_SEED).expect("dataset");
    let mut g = c.benchmark_group("writer_puts");
    g.throughput(Throughput::Elements(PUTS as u64));

    g.bench_function(BenchmarkId::new("patternbank_put_flush", PUTS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, path) = fresh_db();
                let store = Config::new(&path).open().expect("open store");
                let batch = patterns.clone();
                let started = Instant::now();
                for p in batch {
                    store.put(p).expect("put");
                }
                store.flush().expect("flush");
                total += started.elapsed();
                assert_eq!(store.count().expect("count"), PUTS as u64, "committed rows");
                assert_eq!(store.metrics().writer.committed_puts, PUTS as u64, "committed puts");
                store.close().expect("close");
                assert_eq!(count_rows(&path, "patterns"), PUTS as i64);
            }
            total
        })
    });

    g.bench_function(BenchmarkId::new("put_ceiling", PUTS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, path) = fresh_db();
                total += patternbank::__bench::raw_put_loop(&Config::new(&path), &patterns, PER_TXN)
                    .expect("raw_put_loop");
                assert_eq!(count_rows(&path, "patterns"), PUTS as i64, "committed rows");
                assert_eq!(count_rows(&path, "stats"), PUTS as i64, "committed stats rows");
            }
            total
        })
    });

    g.bench_function(BenchmarkId::new("rusqlite_put", PUTS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, path) = fresh_db();
                let mut conn = rusqlite_open(&path, SCHEMA);
                total += rusqlite_put_loop(&mut conn, &patterns, PER_TXN, UPSERT_PATTERN);
                drop(conn);
                assert_eq!(count_rows(&path, "patterns"), PUTS as i64, "committed rows");
                assert_eq!(count_rows(&path, "stats"), PUTS as i64, "committed stats rows");
            }
            total
        })
    });

    g.bench_function(BenchmarkId::new("put_ceiling_no_id_index", PUTS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, path) = fresh_db();
                let mut conn = rusqlite_open(&path, SCHEMA_NO_ID_INDEX);
                total += rusqlite_put_loop(&mut conn, &patterns, PER_TXN, INSERT_PATTERN);
                drop(conn);
                assert_eq!(count_rows(&path, "patterns"), PUTS as i64, "committed rows");
            }
            total
        })
    });

    let floor = &patterns[..FLOOR_ROWS];
    g.throughput(Throughput::Elements(FLOOR_ROWS as u64));
    g.bench_function(BenchmarkId::new("put_floor_unbatched", FLOOR_ROWS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, path) = fresh_db();
                total +=
                    patternbank::__bench::raw_put_loop(&Config::new(&path), floor, 1).expect("raw_put_loop");
                assert_eq!(count_rows(&path, "patterns"), FLOOR_ROWS as i64, "committed rows");
            }
            total
        })
    });
    g.finish();
}

/// The template store with D(PRELOAD), built once; each iteration copies it.
struct Template {
    _dir: tempfile::TempDir,
    path: PathBuf,
    ids: Vec<String>,
}

impl Template {
    fn build() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB);
        let data = dataset(PRELOAD, PRELOAD_SEED).expect("dataset");
        let ids = data.iter().map(|p| p.id.clone()).collect();
        let store = Config::new(&path).open().expect("open store");
        for p in data {
            store.put(p).expect("put");
        }
        store.flush().expect("flush");
        assert_eq!(store.count().expect("count"), PRELOAD as u64);
        store.close().expect("close");
        Self { _dir: dir, path, ids }
    }

    /// A copy of the template in a fresh folder (with its WAL and shm, should close leave any).
    fn copy(&self) -> (tempfile::TempDir, PathBuf) {
        let (dir, path) = fresh_db();
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", self.path.display()));
            if from.exists() {
                std::fs::copy(&from, format!("{}{suffix}", path.display())).expect("copy template");
            }
        }
        (dir, path)
    }
}

/// `(usage_count, success_count)` summed over the store.
fn outcome_sums(path: &Path) -> (i64, i64) {
    let conn = Connection::open(path).expect("open");
    conn.query_row("SELECT total(usage_count), total(success_count) FROM stats", [], |r| {
        Ok((r.get::<_, f64>(0)? as i64, r.get::<_, f64>(1)? as i64))
    })
    .expect("sums")
}

fn writer_outcomes(c: &mut Criterion) {
    let template = Template::build();
    let zipf = Zipf::new(template.ids.len(), 0.99);
    let mut rng = Rng::new(OUTCOME_SEED);
    let outcomes: Vec<(usize, Outcome)> = (0..OUTCOMES)
        .map(|_| {
            let o = if rng.below(4) == 0 { Outcome::Failure } else { Outcome::Success };
            (zipf.sample(&mut rng), o)
        })
        .collect();
    let successes = outcomes.iter().filter(|(_, o)| *o == Outcome::Success).count() as i64;

    let mut g = c.benchmark_group("writer_outcomes");
    g.throughput(Throughput::Elements(OUTCOMES as u64));

    g.bench_function(BenchmarkId::new("patternbank_record_outcome_flush", OUTCOMES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, path) = template.copy();
                let store = Config::new(&path).open().expect("open store");
                let before = store.metrics().writer.committed_outcomes;
                let started = Instant::now();
                for &(i, o) in &outcomes {
                    store.record_outcome(&template.ids[i], o).expect("record_outcome");
                }
                store.flush().expect("flush");
                total += started.elapsed();
                let committed = store.metrics().writer.committed_outcomes - before;
                assert_eq!(committed, OUTCOMES as u64, "committed outcomes");
                store.close().expect("close");
                assert_eq!(outcome_sums(&path), (OUTCOMES as i64, successes), "usage/success sums");
            }
            total
        })
    });

    g.bench_function(BenchmarkId::new("rusqlite_update_per_outcome", OUTCOMES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, path) = template.copy();
                let mut conn = rusqlite_open(&path, SCHEMA);
                let started = Instant::now();
                for chunk in outcomes.chunks(OUTCOMES_PER_TXN) {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin");
                    {
                        let mut update = tx.prepare_cached(UPDATE_OUTCOME).expect("prepare");
                        for &(i, o) in chunk {
                            let (target, s, f) = match o {
                                Outcome::Success => (1.0f64, 1i64, 0i64),
                                Outcome::Failure => (0.0, 0, 1),
                            };
                            let n = update.execute(params![template.ids[i], target, s, f]).expect("update");
                            assert_eq!(n, 1, "outcome for a missing id");
                        }
                    }
                    tx.commit().expect("commit");
                }
                total += started.elapsed();
                drop(conn);
                assert_eq!(outcome_sums(&path), (OUTCOMES as i64, successes), "usage/success sums");
            }
            total
        })
    });
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
    targets = writer_puts, writer_outcomes
}
criterion_main!(benches);
