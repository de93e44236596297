//! W2 search: one-thread top-10 over D(20,000) (the shared real embeddings; synthetic if
//! absent) and D(100,000) (synthetic: patternbank's generator, 256 Gaussian clusters,
//! seed 42 ^ 0xE11B). Peers in each group: the same search with the scalar int8 kernel, a plain
//! f32 brute-force scan (SIMD dot per row into a top-10), and a sequential read of the code
//! bytes (the memory bound). `cargo bench --bench search`.

#[path = "../tests/search_support/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{f32_scan, synthetic, Index, SharedData};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use patternbank::search::{Kernel, Quantization, Scratch, SearchParams, TopK};

fn read_all(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for c in words.chunks_exact(8) {
        for (a, w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*w);
        }
    }
    acc.iter().fold(0, |a, b| a.wrapping_add(*b))
}

fn dataset(n: usize) -> (Index, Vec<f32>, &'static str) {
    if n == 20_000 {
        if let Some(d) = SharedData::load() {
            let queries = d.queries[..100 * d.dim].to_vec();
            return (Index::build(d.base, d.dim, Quantization::PerVector), queries, "real");
        }
    }
    let mut all = synthetic(n + 100, 384, 256, 42 ^ 0xE11B);
    let queries = all.split_off(n * 384);
    (Index::build(all, 384, Quantization::PerVector), queries, "synthetic")
}

fn bench(c: &mut Criterion) {
    for n in [20_000usize, 100_000] {
        let (index, queries, source) = dataset(n);
        let queries: Vec<&[f32]> = queries.chunks_exact(384).collect();
        let blocks = index.blocks();
        let originals = index.originals();
        let mut g = c.benchmark_group(format!("w2_top10_{source}"));
        g.throughput(Throughput::Elements(n as u64))
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        let params = SearchParams::top(10);
        for (name, kernel) in [
            (format!("int8_{}", Kernel::selected().name()), Kernel::selected()),
            ("int8_scalar".to_owned(), Kernel::Scalar),
        ] {
            let mut scratch = Scratch::with_kernel(kernel);
            let mut i = 0;
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    let s = &mut scratch;
                    black_box(
                        patternbank::search::search_with(
                            s,
                            queries[i],
                            384,
                            blocks.iter().copied(),
                            &originals,
                            &params,
                        )
                        .unwrap(),
                    )
                })
            });
        }
        let mut top = TopK::new(10);
        let mut i = 0;
        g.bench_function(BenchmarkId::new("f32_brute_force", n), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(f32_scan(&index, queries[i], &mut top))
            })
        });
        g.bench_function(BenchmarkId::new("sequential_read_of_codes", n), |b| {
            b.iter(|| black_box(read_all(black_box(index.words()))))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
