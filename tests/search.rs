//! Top-k selection, block scans, rescoring, filters, blend and input validation.

#[path = "search_support/mod.rs"]
mod common;

use common::{brute_force, synthetic, Index, Rng};
use patternbank::search::{
    dot_f32_scalar, dot_i8_scalar, rank, scan_block, scan_block_with, search, search_with, Blend,
    BlendInputs, BlendWeights, Block, FlatOriginals, Kernel, Originals, Quantization, QueryCodes, RowScales,
    Scored, Scratch, SearchError, SearchParams, TopK,
};

fn sorted_reference(mut all: Vec<Scored>, k: usize) -> Vec<Scored> {
    all.sort_by(rank);
    all.truncate(k);
    all
}

#[test]
fn topk_equals_a_sort_with_deterministic_ties() {
    let mut rng = Rng::new(10);
    let mut top = TopK::new(0);
    for round in 0..2000 {
        let n = rng.below(300) as usize;
        let k = rng.below(40) as usize;
        // Few distinct scores, so ties are everywhere; slots arrive in random order.
        let levels = 1 + rng.below(6);
        let mut all: Vec<Scored> =
            (0..n as u64).map(|slot| Scored { slot, score: rng.below(levels) as f32 * 0.25 - 0.5 }).collect();
        for i in (1..all.len()).rev() {
            all.swap(i, rng.below(i as u64 + 1) as usize);
        }
        top.reset(k);
        for c in &all {
            top.push(c.slot, c.score);
        }
        let mut got = Vec::new();
        top.drain_sorted_into(&mut got);
        assert_eq!(got, sorted_reference(all, k), "round {round}: n={n} k={k}");
        assert!(top.is_empty());
    }
}

#[test]
fn topk_threshold_and_edge_cases() {
    let mut top = TopK::new(2);
    assert_eq!(top.threshold(), f32::NEG_INFINITY);
    assert!(top.push(5, 1.0) && top.push(7, 2.0));
    assert_eq!(top.threshold(), 1.0);
    assert!(!top.push(9, 1.0), "a tie with a higher slot stays out");
    assert!(top.push(3, 1.0), "a tie with a lower slot gets in");
    assert!(!top.push(1, 0.5));
    let mut zero = TopK::new(0);
    assert!(!zero.push(0, f32::INFINITY));
    assert_eq!(zero.threshold(), f32::INFINITY);
}

/// The scan's approximate scores, computed the slow way.
fn reference_scores(index: &Index, q: &QueryCodes) -> Vec<Scored> {
    index
        .codes()
        .chunks_exact(index.stride)
        .enumerate()
        .map(|(i, row)| {
            let row_scale = match index.quantization {
                Quantization::PerVector => index.scales[i],
                Quantization::Global { scale } => scale,
            };
            Scored { slot: i as u64, score: dot_i8_scalar(q.codes(), row) as f32 * (row_scale * q.scale()) }
        })
        .collect()
}

#[test]
fn block_scan_equals_the_scalar_reference() {
    let dim = 100; // stride 128: exercises padding
    let vectors = synthetic(1_000, dim, 8, 11);
    for quantization in [Quantization::PerVector, common::global_calibrated(&vectors)] {
        let index = Index::build(vectors.clone(), dim, quantization);
        let mut q = QueryCodes::new();
        q.encode(&synthetic(1, dim, 8, 12), dim).unwrap();
        let all = reference_scores(&index, &q);
        for kernel in Kernel::available() {
            for k in [1, 10, 20, 999, 1_000, 5_000] {
                let mut top = TopK::new(k);
                for block in index.blocks() {
                    scan_block_with(kernel, &q, &block, &mut top, |_| true).unwrap();
                }
                let mut got = Vec::new();
                top.drain_sorted_into(&mut got);
                assert_eq!(got, sorted_reference(all.clone(), k), "{kernel:?} {quantization:?} k={k}");
            }
            // Filtered: only even slots, consulted lazily.
            let mut top = TopK::new(10);
            let mut calls = 0;
            for block in index.blocks() {
                scan_block_with(kernel, &q, &block, &mut top, |s| {
                    calls += 1;
                    s % 2 == 0
                })
                .unwrap();
            }
            let mut got = Vec::new();
            top.drain_sorted_into(&mut got);
            let even: Vec<_> = all.iter().copied().filter(|s| s.slot % 2 == 0).collect();
            assert_eq!(got, sorted_reference(even, 10));
            assert!(calls < 1_000, "the filter runs only for rows that beat the threshold ({calls})");
        }
    }
}

#[test]
fn blocks_split_anywhere_give_the_same_result() {
    let dim = 64;
    let vectors = synthetic(777, dim, 4, 13);
    let index = Index::build(vectors, dim, Quantization::PerVector);
    let mut q = QueryCodes::new();
    q.encode(&synthetic(1, dim, 4, 14), dim).unwrap();
    let whole = {
        let mut top = TopK::new(15);
        scan_block(&q, &index.blocks()[0], &mut top).unwrap();
        let mut v = Vec::new();
        top.drain_sorted_into(&mut v);
        v
    };
    for cut in [0, 1, 3, 64, 65, 400, 776, 777] {
        let mut top = TopK::new(15);
        let codes = index.codes();
        let a = Block::new(codes, 64, cut, 0, RowScales::PerVector(&index.scales[..cut])).unwrap();
        let b = Block::new(
            &codes[cut * 64..],
            64,
            777 - cut,
            cut as u64,
            RowScales::PerVector(&index.scales[cut..]),
        )
        .unwrap();
        scan_block(&q, &a, &mut top).unwrap();
        scan_block(&q, &b, &mut top).unwrap();
        let mut v = Vec::new();
        top.drain_sorted_into(&mut v);
        assert_eq!(v, whole, "cut at {cut}");
    }
}

#[test]
fn rescoring_returns_exact_f32_scores_of_the_best_candidates() {
    let dim = 384;
    let vectors = synthetic(3_000, dim, 30, 15);
    let index = Index::build(vectors.clone(), dim, Quantization::PerVector);
    let mut scratch = Scratch::new();
    let mut rng = Rng::new(16);
    let queries = synthetic(50, dim, 30, 17);
    for query in queries.chunks_exact(dim) {
        let k = 1 + rng.below(12) as usize;
        for rerank in [1, 2, 4] {
            let hits = index.search(&mut scratch, query, &SearchParams { rerank, ..SearchParams::top(k) });
            assert_eq!(hits.len(), k);
            // Scores are the exact f32 dots, best first, with the candidates' order rule.
            for h in &hits {
                let v = &vectors[h.slot as usize * dim..][..dim];
                assert!((h.score - dot_f32_scalar(query, v)).abs() < 1e-5);
            }
            assert!(hits.windows(2).all(|w| rank(&w[0], &w[1]).is_lt()));
            // They are the best k of the k·R int8 candidates under f32.
            let mut q = QueryCodes::new();
            q.encode(query, dim).unwrap();
            let mut cands = TopK::new(k * rerank);
            scan_block(&q, &index.blocks()[0], &mut cands).unwrap();
            let exact: Vec<Scored> = cands
                .as_unsorted()
                .iter()
                .map(|c| Scored {
                    slot: c.slot,
                    score: Kernel::selected().dot_f32(query, index.originals().original(c.slot).unwrap()),
                })
                .collect();
            assert_eq!(hits, sorted_reference(exact, k));
        }
        // With R = 4 the result is the exact top-k on this clustered data.
        let hits = index.search(&mut scratch, query, &SearchParams { rerank: 4, ..SearchParams::top(10) });
        let truth = brute_force(&vectors, dim, query, 10);
        assert_eq!(hits.iter().map(|h| h.slot as usize).collect::<Vec<_>>(), truth);
    }
}

#[test]
fn no_rescoring_returns_int8_estimates() {
    let dim = 384;
    let vectors = synthetic(500, dim, 5, 18);
    let index = Index::build(vectors.clone(), dim, Quantization::PerVector);
    let query = &vectors[..dim];
    let hits = index.search(&mut Scratch::new(), query, &SearchParams { rerank: 0, ..SearchParams::top(3) });
    assert_eq!(hits[0].slot, 0, "a stored vector finds itself");
    assert!((hits[0].score - 1.0).abs() < 0.02, "int8 estimate of cos = 1: {}", hits[0].score);
}

#[test]
fn blend_reranks_by_recency_and_confidence() {
    let w = BlendWeights::default();
    let fresh = BlendInputs { age_days: 0.0, confidence: 1.0 };
    assert!((w.score(1.0, fresh) - 1.0).abs() < 1e-6);
    let old = BlendInputs { age_days: 45.0, confidence: 0.5 };
    assert!((w.score(0.8, old) - (0.65 * 0.8 + 0.15 * (-1f32).exp() + 0.10)).abs() < 1e-6);
    // Clock skew and junk do not boost: negative age counts as 0, confidence clamps.
    assert_eq!(w.score(0.5, BlendInputs { age_days: -100.0, confidence: 7.0 }), w.score(0.5, fresh));
    assert_eq!(
        w.score(0.5, BlendInputs { age_days: f32::NAN, confidence: f32::NAN }),
        w.score(0.5, BlendInputs { age_days: 0.0, confidence: 0.0 })
    );

    // Two near-identical vectors: the blend prefers the confident, recent one.
    let dim = 64;
    let mut vectors = synthetic(200, dim, 3, 19);
    let copy: Vec<f32> = vectors[..dim].to_vec();
    vectors[dim..2 * dim].copy_from_slice(&copy);
    let index = Index::build(vectors, dim, Quantization::PerVector);
    let inputs = |slot: u64| {
        if slot == 1 {
            BlendInputs { age_days: 1.0, confidence: 0.9 }
        } else {
            BlendInputs { age_days: 90.0, confidence: 0.1 }
        }
    };
    let plain = index.search(&mut Scratch::new(), &copy, &SearchParams::top(2));
    assert_eq!(plain.iter().map(|h| h.slot).collect::<Vec<_>>(), [0, 1], "cosine tie: lower slot first");
    let params = SearchParams { blend: Some(Blend { weights: w, inputs: &inputs }), ..SearchParams::top(2) };
    let blended = index.search(&mut Scratch::new(), &copy, &params);
    assert_eq!(blended[0].slot, 1);
    assert!((blended[0].score - w.score(plain[1].score, inputs(1))).abs() < 1e-6);
}

#[test]
fn filters_apply_before_the_top_k() {
    let dim = 384;
    let vectors = synthetic(2_000, dim, 10, 20);
    let index = Index::build(vectors.clone(), dim, Quantization::PerVector);
    let kind = |slot: u64| slot % 8 == 3;
    let params = SearchParams { filter: Some(&kind), rerank: 4, ..SearchParams::top(10) };
    let query = &synthetic(1, dim, 10, 21)[..];
    let hits = index.search(&mut Scratch::new(), query, &params);
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| kind(h.slot)));
    let kept: Vec<f32> = vectors
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| kind(*i as u64))
        .flat_map(|(_, v)| v.to_vec())
        .collect();
    let truth: Vec<u64> =
        brute_force(&kept, dim, query, 10).into_iter().map(|i| (i * 8 + 3) as u64).collect();
    assert_eq!(hits.iter().map(|h| h.slot).collect::<Vec<_>>(), truth);
    // A filter that rejects everything returns nothing.
    let none = |_: u64| false;
    assert!(index
        .search(&mut Scratch::new(), query, &SearchParams { filter: Some(&none), ..SearchParams::top(5) })
        .is_empty());
}

#[test]
fn bad_queries_get_clear_errors() {
    let dim = 8;
    let index = Index::build(synthetic(10, dim, 2, 22), dim, Quantization::PerVector);
    let run = |q: &[f32], d: usize| search(q, d, index.blocks(), &index.originals(), &SearchParams::top(3));
    assert_eq!(run(&[0.5; 7], dim), Err(SearchError::DimensionMismatch { expected: 8, found: 7 }));
    assert_eq!(run(&[0.5; 9], dim), Err(SearchError::DimensionMismatch { expected: 8, found: 9 }));
    let mut q = [0.5f32; 8];
    q[3] = f32::NAN;
    assert!(matches!(run(&q, dim), Err(SearchError::NonFinite { index: 3, .. })));
    q[3] = f32::NEG_INFINITY;
    assert_eq!(run(&q, dim), Err(SearchError::NonFinite { index: 3, value: f32::NEG_INFINITY }));
    assert_eq!(run(&[0.0; 8], dim), Err(SearchError::ZeroQuery));
    assert_eq!(run(&[], 0), Err(SearchError::EmptyVector));
    let e = run(&[0.5; 7], dim).unwrap_err();
    assert_eq!(e.to_string(), "query has 7 dimensions; the index holds 8");
    // Huge and tiny finite values are fine.
    assert_eq!(run(&[f32::MAX; 8], dim).unwrap().len(), 3);
    assert_eq!(run(&[1e-40; 8], dim).unwrap().len(), 3);
    // k = 0 and k far beyond the data.
    let ok = [0.5f32; 8];
    let params = |k| SearchParams::top(k);
    assert!(search(&ok, dim, index.blocks(), &index.originals(), &params(0)).unwrap().is_empty());
    assert_eq!(search(&ok, dim, index.blocks(), &index.originals(), &params(usize::MAX)).unwrap().len(), 10);
    // A block of another stride.
    let codes = [0i8; 128];
    let wide = Block::new(&codes, 128, 1, 0, RowScales::Global(1.0)).unwrap();
    assert!(matches!(
        search(&ok, dim, [wide], &index.originals(), &params(1)),
        Err(SearchError::BadLayout(_))
    ));
    // An original of the wrong length.
    let short = FlatOriginals::new(&[0.1; 70], 7, 0);
    assert!(matches!(
        search(&ok, dim, index.blocks(), &short, &params(1)),
        Err(SearchError::OriginalDimension { found: 7, .. })
    ));
    // Missing originals drop the candidate.
    let few = FlatOriginals::new(&index.originals[..2 * dim], dim, 0);
    assert!(search(&ok, dim, index.blocks(), &few, &params(5)).unwrap().iter().all(|h| h.slot < 2));
}

#[test]
fn block_layouts_are_checked() {
    let codes = [0i8; 256];
    let bad = |r: Result<Block<'_>, SearchError>| matches!(r, Err(SearchError::BadLayout(_)));
    assert!(bad(Block::new(&codes, 0, 1, 0, RowScales::Global(1.0))));
    assert!(bad(Block::new(&codes, 100, 1, 0, RowScales::Global(1.0))));
    assert!(bad(Block::new(&codes, 64, 5, 0, RowScales::Global(1.0))));
    assert!(bad(Block::new(&codes, 64, usize::MAX, 0, RowScales::Global(1.0))));
    assert!(bad(Block::new(&codes, 64, 4, 0, RowScales::PerVector(&[1.0; 3]))));
    assert!(bad(Block::new(&codes, 64, 4, u64::MAX - 2, RowScales::Global(1.0))));
    assert!(Block::new(&codes, 64, 4, 0, RowScales::PerVector(&[1.0; 4])).is_ok());
    assert!(Block::new(&codes, 64, 0, 0, RowScales::Global(1.0)).unwrap().is_empty());
    let bytes = [0u8; 12];
    assert!(matches!(RowScales::per_vector_from_bytes(&bytes[1..9]), Err(SearchError::BadLayout(_))));
}

#[test]
fn thread_local_scratch_survives_reentrant_searches() {
    let dim = 16;
    let index = Index::build(synthetic(100, dim, 2, 23), dim, Quantization::PerVector);
    let query = &index.originals[..dim];
    let inner =
        |_: u64| search(query, dim, index.blocks(), &index.originals(), &SearchParams::top(1)).is_ok();
    let params = SearchParams { filter: Some(&inner), ..SearchParams::top(4) };
    let hits = search(query, dim, index.blocks(), &index.originals(), &params).unwrap();
    assert_eq!(hits[0].slot, 0);
    let direct = search_with(
        &mut Scratch::new(),
        query,
        dim,
        index.blocks(),
        &index.originals(),
        &SearchParams::top(4),
    );
    assert_eq!(hits, direct.unwrap());
}
