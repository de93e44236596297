//! Search through the Store (issue 4): recall on the shared data (W2), the L3 query cache,
//! filters, superseded records, and the arena's rebuild after damage.

mod common;

use std::collections::{HashMap, HashSet};

use common::{pattern, small, temp_db};
use patternbank::workload::{dataset, shared_dir, Npy};
use patternbank::{Config, ErrorKind, Pattern, SearchOptions};

fn arena_of(db: &std::path::Path) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".arena");
    p.into()
}

/// W2: D(20,000) with the real embeddings, the 500 dev queries, exact top-10 from
/// `gt_dev_top100.npy`. recall@10 ≥ 0.99 without re-ranking and ≥ 0.999 with R = 2.
#[test]
fn w2_recall_on_the_shared_data() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared not found (W2 needs shared/data/embeddings)");
        return;
    };
    let emb = shared.join("data/embeddings");
    let queries = Npy::read(&emb.join("queries_dev.npy")).unwrap();
    let gt = Npy::read(&emb.join("gt_dev_top100.npy")).unwrap();
    let (nq, dim, gt_cols) = (queries.shape.0, queries.shape.1, gt.shape.1);
    let (queries, gt) = (queries.f32s().unwrap(), gt.i32s().unwrap());
    let (_dir, path) = temp_db();
    let store = Config::new(&path).arena_sync(false).open().unwrap();
    let patterns = dataset(20_000, 42).unwrap();
    let row_of: HashMap<String, usize> =
        patterns.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
    for p in patterns {
        store.put(p).unwrap();
    }
    store.flush().unwrap();
    let recall = |rerank: usize| {
        let options = SearchOptions { rerank, ..Default::default() };
        let mut found = 0usize;
        for q in 0..nq {
            let truth: HashSet<usize> =
                gt[q * gt_cols..q * gt_cols + 10].iter().map(|&r| r as usize).collect();
            let hits = store.search_with(&queries[q * dim..(q + 1) * dim], 10, &options).unwrap();
            assert_eq!(hits.len(), 10);
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
            found += hits.iter().filter(|h| truth.contains(&row_of[&h.id])).count();
        }
        found as f64 / (10 * nq) as f64
    };
    let plain = recall(0);
    let rescored = recall(2);
    println!("W2 recall@10: {plain:.4} int8, {rescored:.4} with R = 2");
    assert!(plain >= 0.99, "recall@10 without re-ranking {plain}");
    assert!(rescored >= 0.999, "recall@10 with R = 2 {rescored}");
}

fn unit(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = patternbank::workload::Rng::new(seed);
    let v: Vec<f32> = (0..dim).map(|_| rng.below(2001) as f32 / 1000.0 - 1.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn store_of(n: u64, path: &std::path::Path) -> patternbank::Store {
    let store = small(path).open().unwrap();
    for i in 0..n {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        store.put(Pattern::new(format!("p{i}"), kind, b"{}".to_vec()).with_embedding(unit(i, 8))).unwrap();
    }
    store.flush().unwrap();
    store
}

#[test]
fn a_stored_embedding_finds_its_pattern_first() {
    let (_dir, path) = temp_db();
    let store = store_of(300, &path);
    for i in [0u64, 17, 299] {
        let hits = store.search(&unit(i, 8), 5).unwrap();
        assert_eq!(hits[0].id, format!("p{i}"));
        assert!((hits[0].score - 1.0).abs() < 1e-4, "cosine with itself: {}", hits[0].score);
    }
}

#[test]
fn a_repeated_query_is_served_by_l3_until_a_write() {
    let (_dir, path) = temp_db();
    let store = store_of(200, &path);
    let q = unit(7, 8);
    let first = store.search(&q, 10).unwrap();
    let l3 = |s: &patternbank::Store| s.metrics().l2.unwrap().l3_hits;
    assert_eq!(l3(&store), 0);
    assert_eq!(store.search(&q, 10).unwrap(), first);
    assert_eq!(l3(&store), 1, "same query, no write: served by L3");
    assert_eq!(store.search(&q, 9).unwrap(), first[..9], "another k is another key");
    assert_eq!(l3(&store), 1);
    // Any write makes it miss, and the new pattern is found.
    store.put(Pattern::new("twin", "even", b"{}".to_vec()).with_embedding(q.clone())).unwrap();
    store.flush().unwrap();
    let after = store.search(&q, 10).unwrap();
    assert_eq!(l3(&store), 1, "a write in between: not served by L3");
    assert!(after.iter().any(|h| h.id == "twin"), "{after:?}");
    store.record_outcome("p1", patternbank::Outcome::Success).unwrap();
    store.flush().unwrap();
    store.search(&q, 10).unwrap();
    assert_eq!(l3(&store), 1, "an outcome is a write too");
}

#[test]
fn filters_by_kind_and_confidence_and_the_blend() {
    let (_dir, path) = temp_db();
    let store = store_of(200, &path);
    let q = unit(3, 8);
    let even = SearchOptions { kind: Some("even".into()), ..Default::default() };
    let hits = store.search_with(&q, 20, &even).unwrap();
    assert_eq!(hits.len(), 20);
    assert!(hits.iter().all(|h| h.id[1..].parse::<u64>().unwrap() % 2 == 0), "{hits:?}");
    // Raise p10's confidence (outcomes are written in place in the arena).
    for _ in 0..10 {
        store.record_outcome("p10", patternbank::Outcome::Success).unwrap();
    }
    store.flush().unwrap();
    let confident = SearchOptions { min_confidence: Some(0.6), ..Default::default() };
    let hits = store.search_with(&q, 10, &confident).unwrap();
    assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["p10"]);
    let blended = store.search_with(&q, 10, &SearchOptions { blend: true, ..Default::default() }).unwrap();
    assert_eq!(blended.len(), 10);
    assert!(blended.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(
        store.search_with(&q, 5, &SearchOptions { kind: Some("none".into()), ..Default::default() }).unwrap(),
        []
    );
}

#[test]
fn a_new_embedding_supersedes_the_old_record() {
    let (_dir, path) = temp_db();
    let store = store_of(50, &path);
    let old = unit(5, 8);
    let new = unit(12345, 8);
    store.put(Pattern::new("p5", "odd", b"{}".to_vec()).with_embedding(new.clone())).unwrap();
    store.flush().unwrap();
    let hits = store.search(&old, 50).unwrap();
    assert_eq!(hits.iter().filter(|h| h.id == "p5").count(), 1, "one live record per pattern");
    let p5 = hits.iter().find(|h| h.id == "p5").unwrap();
    let dot: f32 = old.iter().zip(&new).map(|(a, b)| a * b).sum();
    assert!((p5.score - dot).abs() < 1e-4, "scored with the new embedding: {} vs {dot}", p5.score);
    assert_eq!(store.search(&new, 1).unwrap()[0].id, "p5");
}

/// An update that keeps the vector, row, kind and creation time (an agent rewriting a
/// pattern's text or confidence) changes the arena's record in place: the file does not grow,
/// and searches see the new confidence, also after a reopen.
#[test]
fn an_update_that_keeps_the_vector_is_made_in_place() {
    let (_dir, path) = temp_db();
    let store = store_of(50, &path);
    let records = |s: &patternbank::Store| s.metrics().l2.unwrap().records;
    assert_eq!(records(&store), 50);
    let q = unit(7, 8);
    let confident = SearchOptions { min_confidence: Some(0.85), ..Default::default() };
    for round in 0..20 {
        let mut p7 = Pattern::clone(&store.get("p7").unwrap().unwrap());
        p7.confidence = 0.86 + round as f64 * 0.005;
        p7.data = format!("{{\"round\":{round}}}").into_bytes();
        store.put(p7).unwrap();
        store.flush().unwrap();
        assert_eq!(records(&store), 50, "round {round}: no record appended");
        let hits = store.search_with(&q, 10, &confident).unwrap();
        assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["p7"], "round {round}");
    }
    // Another kind is another record: appended, the old one retired.
    let mut p7 = Pattern::clone(&store.get("p7").unwrap().unwrap());
    p7.kind = "seven".into();
    store.put(p7).unwrap();
    store.flush().unwrap();
    assert_eq!(records(&store), 51);
    let seven = SearchOptions { kind: Some("seven".into()), ..Default::default() };
    assert_eq!(
        store.search_with(&q, 10, &seven).unwrap().iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["p7"]
    );
    assert_eq!(store.search(&q, 50).unwrap().iter().filter(|h| h.id == "p7").count(), 1);
    store.close().unwrap();

    let store = small(&path).open().unwrap();
    assert_eq!(store.metrics().l2.unwrap().rebuilt, None);
    assert_eq!(records(&store), 51);
    let hits = store.search_with(&q, 10, &confident).unwrap();
    assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["p7"]);
    assert!((store.get("p7").unwrap().unwrap().confidence - 0.955).abs() < 1e-9);
    store.close().unwrap();
    assert_eq!(assert_arena_mirrors_sqlite(&path, 8), 50);
}

/// Records are retired, never reused: an arena whose dead records outnumber the live ones
/// (and fill a chunk, 16,384 records) is compacted at the next open, and searches find every
/// pattern by its newest vector.
#[test]
fn an_arena_of_mostly_dead_records_is_compacted_at_open() {
    let (_dir, path) = temp_db();
    let live = 200u64;
    let store = store_of(live, &path);
    let repaint = |store: &patternbank::Store, round: u64| {
        for i in 0..live {
            let kind = if i % 2 == 0 { "even" } else { "odd" };
            let v = unit(1_000_000 * round + i, 8);
            store.put(Pattern::new(format!("p{i}"), kind, b"{}".to_vec()).with_embedding(v)).unwrap();
        }
        // One batch per round: a batch keeps only an id's last put.
        store.flush().unwrap();
    };
    repaint(&store, 1);
    store.close().unwrap();
    // 200 dead records: under a chunk, kept.
    let store = small(&path).open().unwrap();
    assert_eq!(store.metrics().l2.unwrap().rebuilt, None);
    assert_eq!(store.metrics().l2.unwrap().records, 2 * live);
    let rounds = 16_384 / live + 1;
    for round in 2..=rounds + 1 {
        repaint(&store, round);
    }
    store.flush().unwrap();
    assert_eq!(store.metrics().l2.unwrap().records, (rounds + 2) * live);
    store.close().unwrap();

    let store = small(&path).open().unwrap();
    let l2 = store.metrics().l2.unwrap();
    assert!(l2.rebuilt.as_deref().is_some_and(|r| r.starts_with("compacted")), "{l2:?}");
    assert_eq!(l2.records, live);
    for i in [0, 7, live - 1] {
        let hits = store.search(&unit(1_000_000 * (rounds + 1) + i, 8), 1).unwrap();
        assert_eq!(hits[0].id, format!("p{i}"), "found by its newest vector");
    }
    store.close().unwrap();
    assert_eq!(small(&path).open().unwrap().metrics().l2.unwrap().rebuilt, None, "compact: kept");
    assert_eq!(assert_arena_mirrors_sqlite(&path, 8), live as usize);
}

/// The arena of a closed store mirrors SQLite: one live record per pattern with an embedding,
/// holding that pattern's row, exactly its vector, its kind, creation time and confidence.
/// Returns the live count.
fn assert_arena_mirrors_sqlite(path: &std::path::Path, dim: u32) -> usize {
    use patternbank::arena::{Arena, ArenaParams, OpenMode, QuantKind, FLAG_DEAD};
    let params = ArenaParams::new(dim, "all-MiniLM-L6-v2").quant(QuantKind::PerVector, 0.0);
    let (arena, _) = Arena::open(arena_of(path), &params, OpenMode::ReadOnly).unwrap();
    let reader = arena.reader();
    let view = reader.view();
    let conn = rusqlite::Connection::open(path).unwrap();
    // The arena's kind id: FNV-1a of the kind (src/l2.rs).
    let kind_id = |k: &str| k.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    let mut rows: HashMap<i64, (Vec<u8>, f64, u32, i64)> = HashMap::new();
    let mut stmt = conn
        .prepare(
            "SELECT p.rid, p.embedding, s.confidence, p.kind, p.created_at_ms \
             FROM patterns p JOIN stats s ON s.id = p.id WHERE p.embedding IS NOT NULL",
        )
        .unwrap();
    let read = |r: &rusqlite::Row<'_>| {
        Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, kind_id(&r.get::<_, String>(3)?), r.get(4)?)))
    };
    for row in stmt.query_map([], read).unwrap() {
        let (rid, fields) = row.unwrap();
        rows.insert(rid, fields);
    }
    let mut seen = HashSet::new();
    for chunk in view.chunks() {
        for i in 0..chunk.count {
            let m = chunk.meta(i).unwrap();
            if m.flags & FLAG_DEAD != 0 {
                continue;
            }
            assert!(seen.insert(m.rowid), "two live records of row {}", m.rowid);
            let (emb, conf, kind, created) =
                rows.get(&m.rowid).unwrap_or_else(|| panic!("live record of a missing row {}", m.rowid));
            assert_eq!(
                (m.kind, m.created_at_ms),
                (*kind, *created),
                "row {}: kind and creation time",
                m.rowid
            );
            let d = dim as usize;
            let original: Vec<u8> =
                chunk.originals[i * d..(i + 1) * d].iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(&original, emb, "row {}: the record holds the row's vector", m.rowid);
            assert!(
                (f64::from(m.confidence) - conf).abs() < 1e-6,
                "row {}: {} vs {conf}",
                m.rowid,
                m.confidence
            );
        }
    }
    assert_eq!(seen.len(), rows.len(), "every pattern with an embedding has a live record");
    seen.len()
}

/// Puts that keep or change vectors, kinds, creation times and contents (or change only the
/// confidence), deletes and outcomes, in many batches: after each round the arena still
/// mirrors SQLite, records appended only for changed vectors, kinds or creation times.
#[test]
fn the_arena_mirrors_sqlite_through_mixed_updates() {
    let (_dir, path) = temp_db();
    let n = 120u64;
    store_of(n, &path).close().unwrap();
    assert_eq!(assert_arena_mirrors_sqlite(&path, 8), n as usize);
    let mut rng = patternbank::workload::Rng::new(7);
    for round in 0..4u64 {
        let store = small(&path).open().unwrap();
        for step in 0..600u64 {
            let i = rng.below(n);
            let id = format!("p{i}");
            match rng.below(10) {
                0 => {
                    store.delete(&id).unwrap();
                }
                // An outcome for a deleted pattern is a failed write: only for live ones.
                1..=3 if store.get(&id).unwrap().is_some() => {
                    store.record_outcome(&id, patternbank::Outcome::Success).unwrap();
                }
                1..=3 => {}
                k => {
                    let mut p = match store.get(&id).unwrap() {
                        Some(p) => Pattern::clone(&p),
                        None => Pattern::new(id.as_str(), "even", b"{}".to_vec()).with_embedding(unit(i, 8)),
                    };
                    p.confidence = rng.below(1000) as f64 / 1000.0;
                    match k {
                        4 => p.embedding = Some(unit(1_000 * (round * 600 + step) + i, 8)),
                        5 => p.kind = if p.kind == "even" { "odd".into() } else { "even".into() },
                        6 => p.created_at_ms += 1,
                        // The confidence alone: the row is left as it is.
                        7 => {}
                        _ => p.data = format!("{{\"r\":{round},\"s\":{step}}}").into_bytes(),
                    }
                    store.put(p).unwrap();
                }
            }
            if step % 50 == 49 {
                store.flush().unwrap();
            }
        }
        store.close().unwrap();
        assert_arena_mirrors_sqlite(&path, 8);
    }
}

/// Each kind of damage ends in a rebuilt arena, said in the metrics, with every pattern
/// searchable.
#[test]
fn a_damaged_arena_is_rebuilt_from_sqlite() {
    let (_dir, path) = temp_db();
    store_of(120, &path).close().unwrap();
    let arena = arena_of(&path);
    type Harm<'a> = Box<dyn Fn() + 'a>;
    let damage: Vec<(&str, Harm)> = vec![
        ("missing", Box::new(|| std::fs::remove_file(&arena).unwrap())),
        (
            "truncated",
            Box::new(|| {
                let f = std::fs::OpenOptions::new().write(true).open(&arena).unwrap();
                f.set_len(70_000).unwrap();
            }),
        ),
        (
            "both headers flipped",
            Box::new(|| {
                let mut b = std::fs::read(&arena).unwrap();
                b[20] ^= 0xFF;
                b[4096 + 20] ^= 0xFF;
                std::fs::write(&arena, b).unwrap();
            }),
        ),
        ("garbage", Box::new(|| std::fs::write(&arena, vec![0x5Au8; 100_000]).unwrap())),
    ];
    for (what, harm) in damage {
        harm();
        let store = small(&path).open().unwrap_or_else(|e| panic!("{what}: {e}"));
        let l2 = store.metrics().l2.unwrap();
        if what != "missing" {
            assert!(l2.rebuilt.is_some(), "{what}: the metrics say it was rebuilt: {l2:?}");
        }
        assert_eq!(l2.records, 120, "{what}");
        for i in [0u64, 59, 119] {
            assert_eq!(store.search(&unit(i, 8), 1).unwrap()[0].id, format!("p{i}"), "{what}");
        }
        store.close().unwrap();
        // Reopened cleanly: nothing to rebuild.
        let store = small(&path).open().unwrap();
        assert_eq!(store.metrics().l2.unwrap().rebuilt, None, "{what}: clean reopen");
        store.close().unwrap();
    }
}

/// An arena made for another dimension (a store re-created at the same path) is replaced.
#[test]
fn an_arena_of_another_dimension_is_replaced() {
    let (_dir, path) = temp_db();
    store_of(10, &path).close().unwrap();
    let arena = arena_of(&path);
    let other = temp_db();
    Config::new(&other.1).embedding_dim(16).open().unwrap().close().unwrap();
    std::fs::copy(arena_of(&other.1), &arena).unwrap();
    let store = small(&path).open().unwrap();
    let l2 = store.metrics().l2.unwrap();
    assert!(l2.rebuilt.as_deref().is_some_and(|r| r.contains("16") || r.contains("dim")), "{l2:?}");
    assert_eq!(store.search(&unit(3, 8), 1).unwrap()[0].id, "p3");
}

#[test]
fn bad_queries_are_refused() {
    let (_dir, path) = temp_db();
    let store = store_of(5, &path);
    assert_eq!(store.search(&[0.0; 7], 3).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(store.search(&[f32::INFINITY; 8], 3).unwrap_err().kind(), ErrorKind::InvalidInput);
    let bad = SearchOptions { min_confidence: Some(f32::NAN), ..Default::default() };
    assert_eq!(store.search_with(&unit(1, 8), 3, &bad).unwrap_err().kind(), ErrorKind::InvalidInput);
    let _ = pattern("x", 8);
}

/// A put that changes only what `stats` holds (an agent's new confidence) leaves the
/// pattern's row as it is, `seq` included; one that changes the content rewrites it. Both
/// read back whole after a reopen.
#[test]
fn a_put_of_the_confidence_alone_leaves_the_row_alone() {
    let (_dir, path) = temp_db();
    let store = store_of(4, &path);
    let row = || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("SELECT seq, pid FROM patterns WHERE id = 'p2'", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .unwrap()
    };
    let before = row();
    let mut p2 = Pattern::clone(&store.get("p2").unwrap().unwrap());
    p2.confidence = 0.875;
    p2.usage_count = 3;
    store.put(p2.clone()).unwrap();
    store.flush().unwrap();
    assert_eq!(row(), before, "the row is not rewritten");
    p2.data = b"{\"new\":1}".to_vec();
    store.put(p2.clone()).unwrap();
    store.flush().unwrap();
    let after = row();
    assert!(after.0 > before.0 && after.1 != before.1, "{before:?} -> {after:?}: a new content is written");
    store.close().unwrap();
    let store = small(&path).open().unwrap();
    let got = store.get("p2").unwrap().unwrap();
    assert_eq!((got.confidence, got.usage_count, got.data.as_slice()), (0.875, 3, &b"{\"new\":1}"[..]));
    store.close().unwrap();
    assert_eq!(assert_arena_mirrors_sqlite(&path, 8), 4);
}
