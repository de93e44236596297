//! Prints the search measurements: CPU and kernel, recall@10 of each quantization on the shared
//! data, and one-thread top-10 latency at 20,000 (real), 100,000 and 1,000,000 (synthetic)
//! vectors against peers measured in the same run: a plain sequential read of the same code
//! bytes (the memory bound), the scalar int8 kernel and an f32 brute-force scan.
//!
//! `cargo run --release --example measure [-- --quick]` (`--quick` skips 1,000,000).
//!
//! Synthetic data: patternbank's `workload::synthetic_embeddings(n, 384, 256, 42 ^ 0xE11B)`:
//! 256 Gaussian clusters (centres N(0, I)), each vector a random centre plus N(0, 0.6²·I)
//! noise, normalised; queries are 100 further vectors of the same stream (held out).

#[path = "../tests/search_support/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{f32_scan, global_calibrated, shared_recall, synthetic, Index, SharedData};
use patternbank::search::{
    scan_block_with, Kernel, Quantization, QueryCodes, Scored, Scratch, SearchParams, TopK,
    UNIT_NORM_GLOBAL_SCALE,
};

const SYNTH_SEED: u64 = 42 ^ 0xE11B;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernels: Vec<_> = Kernel::available().map(Kernel::name).collect();
    println!(
        "CPU: {cpu}, {threads} threads; kernels available {kernels:?}, selected {}",
        Kernel::selected().name()
    );

    let shared = SharedData::load();
    match &shared {
        Some(data) => recall_table(data),
        None => println!("shared data not found: recall on real embeddings skipped"),
    }

    println!("\nlatency per query, one thread, top-10 (GB/s = code bytes per second)");
    if let Some(data) = &shared {
        let queries: Vec<&[f32]> = (0..data.n_queries()).map(|i| data.query(i)).collect();
        let index = Index::build(data.base.clone(), data.dim, Quantization::PerVector);
        latency("D(20,000) real", &index, &queries, true);
    }
    for n in [100_000usize, if quick { 0 } else { 1_000_000 }] {
        if n == 0 {
            continue;
        }
        let t = Instant::now();
        let mut all = synthetic(n + 100, 384, 256, SYNTH_SEED);
        let qs = all.split_off(n * 384);
        let index = Index::build(all, 384, Quantization::PerVector);
        println!("  (generated {n} synthetic vectors in {:.1} s)", t.elapsed().as_secs_f64());
        let queries: Vec<&[f32]> = qs.chunks_exact(384).collect();
        synthetic_recall(&index, &queries[..if n > 100_000 { 30 } else { 100 }]);
        latency(&format!("D({n}) synthetic"), &index, &queries, n <= 100_000);
    }
}

fn recall_table(data: &SharedData) {
    println!("\nrecall@10 on shared base (20,000 × 384), 500 dev queries, exact top-100 ground truth");
    let first_batch = global_calibrated(&data.base[..1_000 * data.dim]);
    for (name, q) in [
        ("per-vector scale (default)", Quantization::PerVector),
        ("global, calibrated on all 20,000", global_calibrated(&data.base)),
        ("global, calibrated on first 1,000", first_batch),
        ("global, fixed 0.5/127 (no data)", Quantization::Global { scale: UNIT_NORM_GLOBAL_SCALE }),
    ] {
        let index = Index::build(data.base.clone(), data.dim, q);
        let r: Vec<String> = [0, 2, 4]
            .iter()
            .map(|&rr| format!("R={rr}: {:.4}", shared_recall(data, &index, 10, rr)))
            .collect();
        println!("  {name:<36} {}", r.join("  "));
    }
}

/// Exact top-10 by f32 brute force against the default search with R = 0 and 2.
fn synthetic_recall(index: &Index, queries: &[&[f32]]) {
    let mut scratch = Scratch::new();
    let mut sums = [0.0f64; 2];
    for q in queries {
        let mut top = TopK::new(10);
        for (i, v) in index.originals.chunks_exact(index.dim).enumerate() {
            top.push(i as u64, Kernel::selected().dot_f32(q, v));
        }
        let mut truth = Vec::new();
        top.drain_sorted_into(&mut truth);
        for (s, rerank) in sums.iter_mut().zip([0, 2]) {
            let hits = index.search(&mut scratch, q, &SearchParams { rerank, ..SearchParams::top(10) });
            *s += truth.iter().filter(|t| hits.iter().any(|h| h.slot == t.slot)).count() as f64 / 10.0;
        }
    }
    let n = queries.len() as f64;
    println!(
        "  recall@10 vs f32 brute force ({} queries): R=0 {:.4}, R=2 {:.4}",
        queries.len(),
        sums[0] / n,
        sums[1] / n
    );
}

/// Sums the words: a loop the compiler vectorises, bounded by memory bandwidth.
fn read_all(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for c in words.chunks_exact(8) {
        for (a, w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*w);
        }
    }
    acc.iter().fold(0, |a, b| a.wrapping_add(*b))
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The int8 scan alone (no rescoring) with one kernel: the figure compared with the read.
fn scan_only(kernel: Kernel, index: &Index, q: &QueryCodes, top: &mut TopK) -> Vec<Scored> {
    top.reset(20);
    for b in index.blocks() {
        scan_block_with(kernel, q, &b, top, |_| true).unwrap();
    }
    let mut v = Vec::new();
    top.drain_sorted_into(&mut v);
    v
}

/// The variants that read the same code bytes alternate query by query, so that the noise of
/// a shared machine falls on all of them alike; p10 shows what a quiet machine gives.
fn latency(label: &str, index: &Index, queries: &[&[f32]], peers: bool) {
    let n = queries.len().min(if index.n > 100_000 { 100 } else { 500 });
    let queries = &queries[..n];
    let codes: Vec<QueryCodes> = queries
        .iter()
        .map(|q| {
            let mut c = QueryCodes::new();
            c.encode(q, index.dim).unwrap();
            c
        })
        .collect();
    let mut scratch = Scratch::new();
    let mut top = TopK::new(20);
    let kind = |slot: u64| slot % 8 == 3; // one kind in eight
    let min_conf = |slot: u64| (slot.wrapping_mul(0x9E37_79B9) >> 7) % 10 >= 3; // ~70 % pass
    let both = |slot: u64| kind(slot) && min_conf(slot);
    let fparams = SearchParams { filter: Some(&both), ..SearchParams::top(10) };
    let rare = |slot: u64| slot.is_multiple_of(1000); // the worst case: the threshold rises late
    let rparams = SearchParams { filter: Some(&rare), ..SearchParams::top(10) };
    let params = SearchParams::top(10);
    let reference: Vec<Vec<Scored>> =
        codes.iter().map(|c| scan_only(Kernel::selected(), index, c, &mut top)).collect();

    let mut names: Vec<String> = vec![
        "search (scan + rescore R=2)".into(),
        format!("int8 scan only, {}", Kernel::selected().name()),
        "sequential read of the codes".into(),
        "search + kind/min-conf filter".into(),
        "search + filter passing 0.1 %".into(),
    ];
    // The scan and the read again, each in a loop of its own: the cache state then differs
    // (at 100,000 rows the 38 MB of codes just overflow L3), so both pairings are shown.
    names.push("alone: sequential read".into());
    names.push(format!("alone: int8 scan, {}", Kernel::selected().name()));
    if peers {
        for k in [Kernel::Avx2, Kernel::Scalar] {
            if k.is_available() && k != Kernel::selected() {
                names.push(format!("alone: int8 scan, {}", k.name()));
            }
        }
        names.push("alone: f32 brute force (SIMD dot)".into());
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let rounds = if index.n > 100_000 { 2 } else { 3 };
    for _ in 0..rounds {
        // The first five variants read the same code bytes: they alternate query by query.
        for (q, c) in queries.iter().zip(&codes) {
            for (v, name) in times.iter_mut().zip(&names).take(5) {
                let t = Instant::now();
                match name.as_str() {
                    "search (scan + rescore R=2)" => drop(black_box(index.search(&mut scratch, q, &params))),
                    "sequential read of the codes" => drop(black_box(read_all(black_box(index.words())))),
                    "search + kind/min-conf filter" => {
                        drop(black_box(index.search(&mut scratch, q, &fparams)))
                    }
                    "search + filter passing 0.1 %" => {
                        drop(black_box(index.search(&mut scratch, q, &rparams)))
                    }
                    _ => drop(black_box(scan_only(Kernel::selected(), index, c, &mut top))),
                }
                v.push(t.elapsed());
            }
        }
        // Peers each in their own loop (the f32 data would evict the codes between variants).
        for (v, name) in times.iter_mut().zip(&names).skip(5) {
            for (i, (q, c)) in queries.iter().zip(&codes).enumerate() {
                let t = Instant::now();
                if name.contains("f32") {
                    black_box(f32_scan(index, q, &mut top));
                    v.push(t.elapsed());
                } else if name.contains("read") {
                    black_box(read_all(black_box(index.words())));
                    v.push(t.elapsed());
                } else {
                    let k = Kernel::available().find(|k| name.ends_with(k.name())).unwrap();
                    let got = scan_only(k, index, c, &mut top);
                    v.push(t.elapsed());
                    assert_eq!(got, reference[i], "{k:?} differs");
                }
            }
        }
    }
    let mb = index.words().len() as f64 * 8.0 / 1e6;
    println!("  {label}: {n} queries × {rounds} rounds, {mb:.1} MB of codes; ratios to the alternating scan");
    let p50: Vec<Duration> = times.iter_mut().map(|v| pct(v, 0.5)).collect();
    for ((name, v), p) in names.iter().zip(&mut times).zip(&p50) {
        println!(
            "    {name:<34} p10 {:>8.3}  p50 {:>8.3}  p99 {:>8.3} ms  {:>5.1} GB/s  {:>5.2}× the scan",
            ms(pct(v, 0.1)),
            ms(*p),
            ms(pct(v, 0.99)),
            mb / 1e3 / p.as_secs_f64(),
            p.as_secs_f64() / p50[1].as_secs_f64()
        );
    }
    for (how, scan, read) in [("alternating", 1, 2), ("alone", 6, 5)] {
        println!(
            "    int8 scan / sequential read ({how}) = {:.2} at p50, {:.2} at p10",
            p50[scan].as_secs_f64() / p50[read].as_secs_f64(),
            pct(&mut times[scan], 0.1).as_secs_f64() / pct(&mut times[read], 0.1).as_secs_f64()
        );
    }
}
