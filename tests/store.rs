//! The Store end to end: read your writes (invariant 1), no silent loss (2), bad input (5),
//! metrics without side effects (7), the outcome rules, and a multi-thread stress test
//! against a single-threaded model.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pattern, small, temp_db};
use patternbank::{Config, ErrorKind, Outcome, Pattern, Store, TryError};

fn eta_step(c: f64, o: Outcome, eta: f64) -> f64 {
    c + eta * (if o == Outcome::Success { 1.0 } else { 0.0 } - c)
}

#[test]
fn put_get_flush_reopen_round_trip() {
    let (_dir, path) = temp_db();
    let store = small(&path).open().unwrap();
    let p = pattern("alpha", 8).with_confidence(0.25);
    store.put(p.clone()).unwrap();
    assert_eq!(*store.get("alpha").unwrap().unwrap(), p, "visible before commit");
    assert_eq!(store.get("missing").unwrap(), None);
    store.flush().unwrap();
    assert_eq!(store.count().unwrap(), 1);
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    assert_eq!(*store.get("alpha").unwrap().unwrap(), p, "durable across reopen");
    assert_eq!(store.metrics().get_hits.sqlite, 1);
    assert_eq!(
        store.get_many(&["alpha", "nope"]).unwrap().iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false]
    );
}

#[test]
fn outcomes_follow_the_moving_average_and_show_after_flush() {
    let (_dir, path) = temp_db();
    let store = small(&path).learning_rate(0.1).open().unwrap();
    store.put(pattern("x", 8)).unwrap();
    store.flush().unwrap();
    // Cache it, so the writer's in-place L1 update is exercised too.
    assert_eq!(store.get("x").unwrap().unwrap().confidence, 0.5);
    let seq = [Outcome::Success, Outcome::Success, Outcome::Failure, Outcome::Success];
    let mut c = 0.5f64;
    for o in seq {
        store.record_outcome("x", o).unwrap();
        c = eta_step(c, o, 0.1);
    }
    store.flush().unwrap();
    let got = store.get("x").unwrap().unwrap();
    assert!((got.confidence - c).abs() < 1e-12, "{} vs {c}", got.confidence);
    assert_eq!((got.usage_count, got.success_count, got.failure_count), (4, 3, 1));
    assert!(got.last_used_ms > 0);
    let m = store.metrics();
    assert_eq!(m.writer.committed_outcomes, 4);
    assert_eq!(m.writer.coalesced_updates, 1, "four outcomes, one UPDATE");
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    let got = store.get("x").unwrap().unwrap();
    assert!((got.confidence - c).abs() < 1e-12);
    assert_eq!(got.usage_count, 4);
}

#[test]
fn put_then_outcome_applies_in_order_and_outcome_then_put_is_superseded() {
    let (_dir, path) = temp_db();
    let store = small(&path).batch_interval(Duration::from_secs(30)).open().unwrap();
    // A new id, its outcome queued right after: both land, in order.
    store.put(pattern("new", 8)).unwrap();
    store.record_outcome("new", Outcome::Success).unwrap();
    // An outcome, then a put that replaces the pattern: the put wins.
    store.put(pattern("old", 8)).unwrap();
    store.flush().unwrap();
    store.record_outcome("old", Outcome::Failure).unwrap();
    store.put(pattern("old", 8).with_confidence(0.9)).unwrap();
    store.flush().unwrap();
    let new = store.get("new").unwrap().unwrap();
    assert!((new.confidence - 0.55).abs() < 1e-12, "{}", new.confidence);
    assert_eq!(new.usage_count, 1);
    let old = store.get("old").unwrap().unwrap();
    assert_eq!((old.confidence, old.usage_count), (0.9, 0));
    assert_eq!(store.metrics().writer.superseded_outcomes, 1);
}

#[test]
fn outcome_for_an_unknown_id_is_reported_not_dropped() {
    let (_dir, path) = temp_db();
    let store = small(&path).open().unwrap();
    store.put(pattern("known", 8)).unwrap();
    store.record_outcome("ghost", Outcome::Success).unwrap();
    store.record_outcome("known", Outcome::Success).unwrap();
    let err = store.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WriteFailed);
    let failed = store.failed_writes();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].op.as_str(), failed[0].id.as_str()), ("record_outcome", "ghost"));
    assert_eq!(store.metrics().writer.failed_writes, 1);
    assert_eq!(store.get("known").unwrap().unwrap().usage_count, 1);
    store.flush().expect("each failure is reported once");
}

/// Invariant 1: after `put` returns, every thread sees it (or newer), before and after
/// commit, with an L1 so small that it evicts almost everything.
#[test]
fn read_your_writes_under_eviction_from_every_thread() {
    let (_dir, path) = temp_db();
    let store = Arc::new(
        small(&path)
            .l1_capacity_bytes(2048)
            .batch_interval(Duration::from_secs(60))
            .batch_patterns(1_000_000)
            .put_queue_capacity(8192)
            .open()
            .unwrap(),
    );
    let n = 2000;
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in (t..n).step_by(2) {
                    let p = pattern(&format!("id-{i:05}"), 8).with_confidence((i % 100) as f64 / 100.0);
                    store.put(p.clone()).unwrap();
                    // The writer itself, right away.
                    assert_eq!(*store.get(&p.id).unwrap().unwrap(), p);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(store.metrics().l1.entries < 10, "the L1 evicted: {:?}", store.metrics().l1);
    let check = |store: &Arc<Store>| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(store);
                std::thread::spawn(move || {
                    for i in 0..n {
                        let p = store.get(&format!("id-{i:05}")).unwrap().expect("read your writes");
                        assert_eq!(p.confidence, (i % 100) as f64 / 100.0);
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
    };
    check(&store);
    assert!(store.metrics().get_hits.pending > 0, "served from the overlay before commit");
    store.flush().unwrap();
    assert_eq!(store.metrics().l1.pending_entries, 0);
    check(&store);
    assert_eq!(store.count().unwrap(), n as u64);
}

/// Invariant 2: `flush` returns only after everything before it is committed; checked by an
/// independent SQLite connection.
#[test]
fn flush_means_committed_as_seen_by_another_connection() {
    let (_dir, path) = temp_db();
    let store = small(&path).batch_interval(Duration::from_secs(60)).open().unwrap();
    for round in 0..5 {
        for i in 0..300 {
            store.put(pattern(&format!("r{round}-{i}"), 8)).unwrap();
        }
        store.flush().unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM patterns", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 300 * (round + 1));
    }
}

/// Invariant 2: a batch with one bad write commits the others and reports the bad one.
#[test]
fn a_failing_write_is_isolated_and_reported() {
    let (_dir, path) = temp_db();
    let store = small(&path).batch_interval(Duration::from_secs(60)).open().unwrap();
    store.put(pattern("seed", 8)).unwrap();
    store.flush().unwrap();
    common::poison(&path, "poison");
    for i in 0..100 {
        let id = if i == 57 { "poison".to_owned() } else { format!("ok-{i}") };
        store.put(pattern(&id, 8)).unwrap();
    }
    let err = store.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WriteFailed, "{err}");
    assert_eq!(store.count().unwrap(), 100, "seed + 99 good rows");
    let failed = store.failed_writes();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, "poison");
    assert!(failed[0].error.contains("poisoned row"), "{}", failed[0].error);
    assert_eq!(store.get("poison").unwrap(), None, "a failed put is withdrawn from the read path");
    let m = store.metrics();
    assert_eq!(m.writer.failed_writes, 1);
    assert!(m.writer.batch_retries >= 1);
    assert!(store.report().contains("failed 1"));
}

/// Writes of one id in one batch: only the last is applied, every one counts as committed,
/// and a delete in the chain is honoured in order.
#[test]
fn repeated_writes_of_an_id_in_one_batch_keep_the_last() {
    let (_dir, path) = temp_db();
    let store = small(&path).batch_interval(Duration::from_secs(60)).open().unwrap();
    for (i, c) in [0.1, 0.2, 0.3, 0.4].into_iter().enumerate() {
        store.put(pattern("same", 8).with_confidence(c)).unwrap();
        store.put(pattern(&format!("other-{i}"), 8)).unwrap();
    }
    store.put(pattern("gone", 8)).unwrap();
    store.put(pattern("gone", 8).with_confidence(0.9)).unwrap();
    store.delete("gone").unwrap();
    store.put(pattern("back", 8)).unwrap();
    store.delete("back").unwrap();
    store.put(pattern("back", 8).with_confidence(0.7)).unwrap();
    store.flush().unwrap();
    let m = store.metrics();
    assert_eq!(m.writer.batches, 1, "one batch, so the writes of an id coalesced");
    assert_eq!(m.writer.committed_puts, 14, "superseded writes count as committed");
    assert_eq!(m.writer.failed_writes, 0);
    assert_eq!(store.count().unwrap(), 6, "same, other-0..3, back");
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    assert_eq!(store.get("same").unwrap().unwrap().confidence, 0.4, "the last put is the one stored");
    assert_eq!(store.get("gone").unwrap(), None, "a delete after puts wins");
    assert_eq!(store.get("back").unwrap().unwrap().confidence, 0.7, "a put after a delete wins");
    let hits = store.search(&pattern("same", 8).embedding.unwrap(), 10).unwrap();
    assert_eq!(hits.iter().filter(|h| h.id == "same").count(), 1, "one search record per id");
    assert!(hits.iter().all(|h| h.id != "gone"));
    assert_eq!(store.check().unwrap().problems, Vec::<String>::new());
}

/// Invariant 2 with coalescing: when an id's last write fails, the earlier writes it had
/// superseded still commit (the batch is retried with every write as submitted).
#[test]
fn a_failing_last_write_does_not_take_the_superseded_ones_with_it() {
    let (_dir, path) = temp_db();
    let store = small(&path).batch_interval(Duration::from_secs(60)).open().unwrap();
    store.put(pattern("target", 8).with_confidence(0.1)).unwrap();
    store.flush().unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER bad_kind BEFORE UPDATE ON patterns WHEN NEW.kind = 'bad' \
         BEGIN SELECT RAISE(ABORT, 'poisoned update'); END;",
    )
    .unwrap();
    drop(conn);
    store.put(pattern("target", 8).with_confidence(0.5)).unwrap();
    let mut bad = pattern("target", 8).with_confidence(0.9);
    bad.kind = "bad".into();
    store.put(bad).unwrap();
    let err = store.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WriteFailed, "{err}");
    let failed = store.failed_writes();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].error.contains("poisoned update"), "{}", failed[0].error);
    let m = store.metrics();
    assert_eq!(m.writer.failed_writes, 1);
    assert!(m.writer.batch_retries >= 1);
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    let stored = store.get("target").unwrap().unwrap();
    assert_eq!((stored.kind.as_str(), stored.confidence), ("coordination", 0.5), "the earlier put committed");
}

/// Invariant 2: a full queue blocks for the configured time then errors, and `try_put`
/// hands the pattern back; nothing is dropped, and all accepted writes commit afterwards.
#[test]
fn full_queue_blocks_bounded_then_errors_and_try_hands_back() {
    let (_dir, path) = temp_db();
    let store = small(&path)
        .put_queue_capacity(4)
        .batch_patterns(2)
        .enqueue_timeout(Duration::from_millis(100))
        .busy_timeout(Duration::from_secs(20))
        .open()
        .unwrap();
    // Another connection holds the write lock, so the writer cannot commit.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut accepted = Vec::new();
    let mut full_at = None;
    for i in 0..64 {
        let p = pattern(&format!("q{i}"), 8);
        let started = Instant::now();
        match store.put(p.clone()) {
            Ok(()) => accepted.push(p.id),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}");
                let waited = started.elapsed();
                assert!(waited >= Duration::from_millis(90) && waited < Duration::from_secs(5), "{waited:?}");
                assert_eq!(store.get(&p.id).unwrap(), None, "a rejected put changes nothing");
                full_at = Some(i);
                break;
            }
        }
    }
    assert!(full_at.is_some(), "the ring never filled");
    let p = pattern("handed-back", 8);
    match store.try_put(p.clone()) {
        Err(TryError::Full(back)) => assert_eq!(back, p),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(store.get("handed-back").unwrap(), None);
    let m = store.metrics();
    assert!(m.queues.timeouts >= 1 && m.queues.handed_back >= 1, "{:?}", m.queues);
    blocker.execute_batch("ROLLBACK").unwrap();
    store.flush().unwrap();
    assert_eq!(store.count().unwrap(), accepted.len() as u64);
    for id in &accepted {
        assert!(store.get(id).unwrap().is_some());
    }
}

/// Invariant 5: every kind of bad input gets `InvalidInput` and changes nothing.
#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (_dir, path) = temp_db();
    let store = small(&path).max_data_bytes(1024).open().unwrap();
    let good = pattern("good", 8);
    store.put(good.clone()).unwrap();
    store.flush().unwrap();
    let before_count = store.count().unwrap();
    let mut nan = pattern("nan", 8);
    nan.embedding.as_mut().unwrap()[3] = f32::NAN;
    let mut inf = pattern("inf", 8);
    inf.embedding.as_mut().unwrap()[0] = f32::INFINITY;
    let mut same_id_bad = good.clone();
    same_id_bad.confidence = 2.0;
    let cases: Vec<(&str, Pattern)> = vec![
        ("empty id", pattern("", 8)),
        ("over-long id", pattern(&"x".repeat(257), 8)),
        ("NUL in id", pattern("a\0b", 8)),
        ("NaN embedding", nan),
        ("infinite embedding", inf),
        ("wrong dimension", pattern("dim", 7)),
        ("wrong model", pattern("model", 8).with_embedding_model("text-embedding-3-small")),
        ("oversized data", Pattern::new("big", "k", vec![b'x'; 1025])),
        ("confidence above 1", pattern("c1", 8).with_confidence(1.5)),
        ("confidence below 0", pattern("c0", 8).with_confidence(-0.1)),
        ("confidence NaN", pattern("cn", 8).with_confidence(f64::NAN)),
        ("empty kind", Pattern::new("k", "", vec![])),
        ("bad update of an existing id", same_id_bad),
    ];
    for (what, p) in cases {
        let id = p.id.clone();
        let err = store.put(p.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        assert!(!err.to_string().is_empty());
        match store.try_put(p) {
            Err(TryError::Rejected(e)) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        if !id.is_empty() && id.len() <= 256 && !id.contains('\0') {
            assert_eq!(
                store.get(&id).unwrap().as_deref().map(|p| p.confidence),
                if id == "good" { Some(0.5) } else { None },
                "{what}"
            );
        }
    }
    for id in ["", &"y".repeat(300)] {
        assert_eq!(store.record_outcome(id, Outcome::Success).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(store.get(id).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(store.get_many(&["good", id]).unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    assert_eq!(store.search(&[0.0; 7], 10).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(store.search(&[f32::NAN; 8], 10).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(store.search(&[0.1; 8], 0).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(store.search(&[0.1; 8], 10_001).unwrap_err().kind(), ErrorKind::InvalidInput);
    let hits = store.search(&[0.1; 8], 10).unwrap();
    assert!(hits.iter().all(|h| h.id == "good"), "only the good pattern was stored: {hits:?}");
    store.flush().unwrap();
    assert_eq!(store.count().unwrap(), before_count);
    assert_eq!(*store.get("good").unwrap().unwrap(), good);
    assert_eq!(store.metrics().writer.failed_writes, 0);

    // Config errors.
    for cfg in [
        small(&path).embedding_dim(0),
        small(&path).learning_rate(0.0),
        small(&path).page_size(1000),
        small(&path).reader_pool_size(0),
    ] {
        assert_eq!(cfg.open().err().map(|e| e.kind()), Some(ErrorKind::InvalidInput));
    }
}

/// Invariant 5: a corrupt or foreign file, or a store of another model or dimension, is
/// refused at open with a clear error and left as it was.
#[test]
fn foreign_or_mismatched_files_are_refused_at_open() {
    let (dir, path) = temp_db();
    small(&path).open().unwrap().close().unwrap();
    for (cfg, what) in [
        (Config::new(&path).embedding_dim(16), "dimension"),
        (small(&path).embedding_model("other-model"), "model"),
    ] {
        let err = cfg.open().err().expect(what);
        assert_eq!(err.kind(), ErrorKind::Incompatible, "{what}: {err}");
    }
    let junk = dir.path().join("junk.db");
    let bytes: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&junk, &bytes).unwrap();
    let err = small(&junk).open().err().expect("junk");
    assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    assert_eq!(std::fs::read(&junk).unwrap(), bytes, "left untouched");
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t(x)").unwrap();
    let err = small(&foreign).open().err().expect("foreign");
    assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    assert!(err.to_string().contains("not a patternbank store"), "{err}");
}

/// Invariant 4 (in-process part): a second writer on the same file is refused, a reader is not.
#[test]
fn second_writer_is_refused_readers_are_welcome() {
    let (_dir, path) = temp_db();
    let writer = small(&path).open().unwrap();
    writer.put(pattern("w", 8)).unwrap();
    writer.flush().unwrap();
    let err = small(&path).open().err().expect("second writer");
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains("read_only"), "{err}");
    let reader = small(&path).read_only(true).open().unwrap();
    assert!(reader.get("w").unwrap().is_some());
    assert_eq!(reader.put(pattern("r", 8)).unwrap_err().kind(), ErrorKind::ReadOnly);
    writer.close().unwrap();
    small(&path).open().expect("the lock is released on close").close().unwrap();
}

/// Invariant 7: reading metrics changes nothing.
#[test]
fn metrics_have_no_side_effects() {
    let (_dir, path) = temp_db();
    let store = small(&path).open().unwrap();
    store.put(pattern("m", 8)).unwrap();
    store.get("m").unwrap();
    store.flush().unwrap();
    let strip = |mut m: patternbank::Metrics| {
        m.rss_bytes = 0;
        m
    };
    let a = strip(store.metrics());
    let _ = store.report();
    let json = serde_json::to_string(&store.metrics()).unwrap();
    let b = strip(store.metrics());
    assert_eq!(a, b);
    assert_eq!(a.ops.get, 1);
    assert_eq!(a.ops.put, 1);
    assert_eq!(a.ops.flush, 1);
    let back: patternbank::Metrics = serde_json::from_str(&json).unwrap();
    assert_eq!(strip(back), a);
    // And the store behaves the same afterwards.
    assert!(store.get("m").unwrap().is_some());
    assert_eq!(store.metrics().ops.get, 2);
}

/// Stress: 4 threads of mixed operations for a few seconds; final counters and confidences
/// equal a single-threaded model of the same operations.
#[test]
fn stress_mixed_operations_match_a_single_threaded_model() {
    stress_against_a_model(|c| c);
}

/// The same with transactions of at most 8 writes, so that the writer cuts what is queued
/// into many transactions while the threads write (the ordering of an id's writes across
/// them).
#[test]
fn stress_with_small_transactions_matches_the_model() {
    stress_against_a_model(|c| c.max_txn_ops(8));
}

fn stress_against_a_model(tune: impl Fn(patternbank::Config) -> patternbank::Config) {
    let (_dir, path) = temp_db();
    let eta = 0.1;
    let store = Arc::new(
        tune(small(&path).l1_capacity_bytes(16 << 10).batch_outcomes(64).batch_patterns(32)).open().unwrap(),
    );
    let threads = 4;
    let ids_per_thread = 50;
    let deadline = Instant::now() + Duration::from_secs(2);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut rng = patternbank::workload::Rng::new(t);
                // Model: id -> (confidence, usage, success, failure); every thread owns its ids.
                let mut model: HashMap<String, (f64, u64, u64, u64)> = HashMap::new();
                let mut ops = 0u64;
                while Instant::now() < deadline || ops < 2000 {
                    let id = format!("t{t}-{}", rng.below(ids_per_thread));
                    match rng.below(10) {
                        0 => {
                            let c = rng.below(101) as f64 / 100.0;
                            store.put(pattern(&id, 8).with_confidence(c)).unwrap();
                            model.insert(id, (c, 0, 0, 0));
                        }
                        1..=4 => {
                            if let Some(m) = model.get_mut(&id) {
                                let o = if rng.below(3) == 0 { Outcome::Failure } else { Outcome::Success };
                                store.record_outcome(&id, o).unwrap();
                                m.0 = eta_step(m.0, o, eta);
                                m.1 += 1;
                                if o == Outcome::Success {
                                    m.2 += 1
                                } else {
                                    m.3 += 1
                                }
                            }
                        }
                        5 => store.flush().unwrap(),
                        _ => {
                            let other = format!("t{}-{}", rng.below(threads), rng.below(ids_per_thread));
                            let got = store.get(&other).unwrap();
                            if let (Some(p), Some(m)) = (&got, model.get(&other)) {
                                // Own ids: at least what this thread put (counters only grow).
                                assert!(p.usage_count <= m.1, "{other}: {} > {}", p.usage_count, m.1);
                            }
                        }
                    }
                    ops += 1;
                }
                model
            })
        })
        .collect();
    let models: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    store.flush().unwrap();
    let mut checked = 0;
    for model in &models {
        for (id, &(c, uses, s, f)) in model {
            let p = store.get(id).unwrap().unwrap_or_else(|| panic!("{id} lost"));
            assert!((p.confidence - c).abs() < 1e-9, "{id}: {} vs model {c}", p.confidence);
            assert_eq!((p.usage_count, p.success_count, p.failure_count), (uses, s, f), "{id}");
            checked += 1;
        }
    }
    assert_eq!(store.count().unwrap(), checked);
    assert_eq!(store.metrics().writer.failed_writes, 0);
    // The same through a fresh store: what SQLite holds, not only the L1.
    let store = Arc::into_inner(store).unwrap();
    store.close().unwrap();
    let reopened = tune(small(&path)).open().unwrap();
    for model in &models {
        for (id, &(c, uses, _, _)) in model {
            let p = reopened.get(id).unwrap().unwrap();
            assert!((p.confidence - c).abs() < 1e-9 && p.usage_count == uses, "{id} after reopen");
        }
    }
    assert!(reopened.check().unwrap().problems.is_empty());
}

/// Outcomes committed in several batches while the pattern sits in the L1 are folded into
/// the cached copy (by the writer, at each commit), in order, exactly once.
#[test]
fn cached_pattern_folds_outcomes_of_several_batches_once() {
    let (_dir, path) = temp_db();
    let store = small(&path).learning_rate(0.3).open().unwrap();
    store.put(pattern("hot", 8)).unwrap();
    store.flush().unwrap();
    assert!(store.get("hot").unwrap().is_some());
    let mut c = 0.5;
    for batch in [
        [Outcome::Success, Outcome::Failure],
        [Outcome::Failure, Outcome::Failure],
        [Outcome::Success, Outcome::Success],
    ] {
        for o in batch {
            store.record_outcome("hot", o).unwrap();
            c = eta_step(c, o, 0.3);
        }
        store.flush().unwrap();
    }
    let hits_before = store.metrics().get_hits.l1;
    for _ in 0..3 {
        let p = store.get("hot").unwrap().unwrap();
        assert!((p.confidence - c).abs() < 1e-12, "{} vs {c}", p.confidence);
        assert_eq!((p.usage_count, p.success_count, p.failure_count), (6, 3, 3));
    }
    assert_eq!(store.metrics().get_hits.l1 - hits_before, 3, "served by the L1, not SQLite");
    drop(store);
    let p = small(&path).open().unwrap().get("hot").unwrap().unwrap();
    assert!((p.confidence - c).abs() < 1e-12, "SQLite agrees");
}

/// A read-only store beside a writer sees the writer's commits: it caches nothing it could
/// not invalidate.
#[test]
fn read_only_store_sees_the_writers_later_commits() {
    let (_dir, path) = temp_db();
    let writer = small(&path).open().unwrap();
    writer.put(pattern("shared", 8)).unwrap();
    writer.flush().unwrap();
    let reader = small(&path).read_only(true).open().unwrap();
    assert_eq!(reader.get("shared").unwrap().unwrap().confidence, 0.5);
    writer.put(pattern("shared", 8).with_confidence(0.9)).unwrap();
    writer.record_outcome("shared", Outcome::Success).unwrap();
    writer.flush().unwrap();
    let p = reader.get("shared").unwrap().unwrap();
    assert!((p.confidence - 0.91).abs() < 1e-12, "{}", p.confidence);
    assert_eq!(p.usage_count, 1);
    assert_eq!(reader.metrics().l1.entries, 0);
    assert_eq!(reader.flush().map_err(|e| e.kind()), Ok(()), "flush on a read-only store is a no-op");
}

/// When no transaction can start (another process holds the database past the busy
/// timeout), every write of the batch is reported at once, without bisecting; the store
/// recovers when the database is free again.
#[test]
fn a_database_locked_elsewhere_fails_the_batch_visibly_and_recovers() {
    let (_dir, path) = temp_db();
    let store = small(&path).busy_timeout(Duration::from_millis(50)).open().unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in 0..10 {
        store.put(pattern(&format!("b{i}"), 8)).unwrap();
    }
    let err = store.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WriteFailed, "{err}");
    let failed = store.failed_writes();
    assert_eq!(failed.len(), 10);
    assert!(failed.iter().all(|f| f.op == "put" && f.error.contains("locked")), "{failed:?}");
    assert_eq!(store.metrics().writer.batch_retries, 0, "nothing to bisect");
    assert_eq!(store.get("b3").unwrap(), None, "failed puts are withdrawn");
    blocker.execute_batch("ROLLBACK").unwrap();
    store.put(pattern("after", 8)).unwrap();
    store.flush().unwrap();
    assert_eq!(store.count().unwrap(), 1);
}

/// Issue 3: warming at open loads the most confident patterns, as far as the L1 holds them.
#[test]
fn warming_at_open_loads_the_most_confident_patterns() {
    let (_dir, path) = temp_db();
    let store = small(&path).open().unwrap();
    for i in 0..50 {
        store.put(pattern(&format!("w{i:02}"), 8).with_confidence(i as f64 / 50.0)).unwrap();
    }
    store.close().unwrap();
    let store = small(&path).l1_warm(10).open().unwrap();
    let m = store.metrics();
    assert_eq!((m.l1.warmed, m.l1.entries), (10, 10));
    for i in 40..50 {
        assert!(store.get(&format!("w{i:02}")).unwrap().is_some());
    }
    let m = store.metrics();
    assert_eq!((m.get_hits.l1, m.get_hits.sqlite), (10, 0), "the ten most confident are L1 hits");
    assert!(store.get("w00").unwrap().is_some());
    assert_eq!(store.metrics().get_hits.sqlite, 1);
    store.close().unwrap();
    let store = small(&path).l1_warm(10).l1_capacity_entries(4).open().unwrap();
    assert_eq!(store.metrics().l1.warmed, 4, "warming stops at the L1's capacity");
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    assert_eq!(store.metrics().l1.warmed, 0, "off by default");
}

/// `get_with` answers what `get` answers from every tier (the overlay and the L1 before a
/// commit, SQLite after a reopen, then the L1), counts as a `get`, and calls its closure
/// once, or not at all for a missing id or a bad one.
#[test]
fn get_with_borrows_what_get_returns_from_every_tier() {
    let (_dir, path) = temp_db();
    let store = small(&path).open().unwrap();
    let p = pattern("beta", 8).with_confidence(0.75);
    store.put(p.clone()).unwrap();
    let calls = std::cell::Cell::new(0);
    let read = |s: &Store, id: &str| {
        s.get_with(id, |q| {
            calls.set(calls.get() + 1);
            q.clone()
        })
    };
    assert_eq!(read(&store, "beta").unwrap(), Some(p.clone()), "before commit");
    store.flush().unwrap();
    store.close().unwrap();

    let store = small(&path).open().unwrap();
    assert_eq!(read(&store, "beta").unwrap(), Some(p.clone()), "from SQLite");
    assert_eq!(read(&store, "beta").unwrap(), Some(p.clone()), "from the L1");
    let m = store.metrics();
    assert_eq!((m.ops.get, m.get_hits.sqlite, m.get_hits.l1), (2, 1, 1));
    assert_eq!(store.get_with("beta", |q| q.confidence).unwrap(), Some(0.75));
    assert_eq!(calls.get(), 3);

    assert_eq!(read(&store, "missing").unwrap(), None);
    assert_eq!(read(&store, "").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(read(&store, "nul\0id").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(calls.get(), 3, "no call for a missing or a bad id");
    store.close().unwrap();

    let reader = small(&path).read_only(true).open().unwrap();
    assert_eq!(reader.get_with("beta", |q| q.id.clone()).unwrap().as_deref(), Some("beta"));
}

/// Outcomes submitted before a put are superseded by it, also when the writer cuts the
/// queued writes into several transactions (`max_txn_ops`): they used to be applied on top of
/// the put in a later one, and the cached copy missed the outcome after the put. (The same
/// fix covers an outcome held behind a slot another producer was still writing, the race
/// the stress test above hit once in CI; that race is not reproduced here.)
#[test]
fn outcomes_before_a_put_stay_superseded_when_a_batch_is_cut() {
    let (_dir, path) = temp_db();
    let open = || {
        small(&path)
            .max_txn_ops(4)
            .batch_outcomes(1000)
            .batch_patterns(1000)
            .batch_interval(Duration::from_secs(60))
            .open()
            .unwrap()
    };
    let store = open();
    store.put(pattern("x", 8)).unwrap();
    store.flush().unwrap();
    for _ in 0..10 {
        store.record_outcome("x", Outcome::Success).unwrap();
    }
    store.put(pattern("x", 8).with_confidence(0.3)).unwrap();
    store.record_outcome("x", Outcome::Failure).unwrap();
    store.flush().unwrap();
    let want = eta_step(0.3, Outcome::Failure, 0.1);
    let check = |s: &Store, when: &str| {
        let p = s.get("x").unwrap().unwrap();
        assert_eq!((p.usage_count, p.success_count, p.failure_count), (1, 0, 1), "{when}");
        assert!((p.confidence - want).abs() < 1e-12, "{when}: {} vs {want}", p.confidence);
    };
    check(&store, "cached");
    store.close().unwrap();
    check(&open(), "after reopen");
}
