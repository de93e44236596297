//! Encode and decode of D(N)-style payloads: lz4 and zlib, with and without a dictionary, and
//! `lz4_flex`'s own block functions as the peer, side by side.
//!
//! ```text
//! cargo bench --bench codec
//! ```
//!
//! Workload: the first 1,000 items of D(20,000) with seed 42 (DESIGN.md "Dataset D(N)"),
//! dictionaries trained on 2,000 items of it; synthetic JSON items when `shared/` is absent.
#[path = "../tests/codec_support/dstyle.rs"]
mod dstyle;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use patternbank::codec::{Codec, Decoder, Dictionary, DictionarySet, Encoder};

fn workload() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    match dstyle::shared_dir() {
        Some(shared) => {
            let all = dstyle::payloads(20_000, 42, &dstyle::base_texts(&shared));
            let train = all.iter().step_by(10).cloned().collect();
            (all.into_iter().take(1_000).collect(), train)
        }
        None => {
            eprintln!("shared/data/corpus.jsonl not found: benchmarking synthetic JSON items instead");
            (dstyle::synthetic_payloads(1_000, 42), dstyle::synthetic_payloads(2_000, 43))
        }
    }
}

fn bench(c: &mut Criterion) {
    let (items, train) = workload();
    let samples: Vec<&[u8]> = train.iter().map(Vec::as_slice).collect();
    let lz4_dict = Dictionary::train(1, &samples, 64 << 10).expect("dictionary");
    let zlib_dict = Dictionary::train(2, &samples, 32 << 10).expect("dictionary");
    let dicts: DictionarySet = [lz4_dict.clone(), zlib_dict.clone()].into_iter().collect();
    // `Encoder::new` uses the store's defaults: zlib at level 9 (`codec::DEFAULT_ZLIB_LEVEL`).
    assert_eq!(patternbank::codec::DEFAULT_ZLIB_LEVEL, 9, "rename the zlib benchmarks");
    let configs = [
        ("lz4", Codec::Lz4, None),
        ("lz4+dict64k", Codec::Lz4, Some(&lz4_dict)),
        ("zlib9", Codec::Zlib, None),
        ("zlib9+dict32k", Codec::Zlib, Some(&zlib_dict)),
    ];

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(items.len() as u64));
    for (name, codec, dict) in configs {
        let mut enc = Encoder::new(codec);
        let mut out = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                for item in &items {
                    enc.encode_into(dict, item, &mut out).expect("encode");
                }
            })
        });
    }
    for (name, ext) in [("peer_lz4_flex", &[][..]), ("peer_lz4_flex+dict64k", lz4_dict.bytes())] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for item in &items {
                    criterion::black_box(lz4_flex::block::compress_with_dict(item, ext));
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(items.len() as u64));
    for (name, codec, dict) in configs {
        let mut enc = Encoder::new(codec);
        let blobs: Vec<Vec<u8>> = items.iter().map(|i| enc.encode(dict, i).expect("encode")).collect();
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                for blob in &blobs {
                    dec.decode_into(blob, &dicts, &mut out).expect("decode");
                }
            })
        });
    }
    for (name, ext) in [("peer_lz4_flex", &[][..]), ("peer_lz4_flex+dict64k", lz4_dict.bytes())] {
        let blocks: Vec<(Vec<u8>, usize)> =
            items.iter().map(|i| (lz4_flex::block::compress_with_dict(i, ext), i.len())).collect();
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || vec![0u8; 2048],
                |out| {
                    for (block, len) in &blocks {
                        lz4_flex::block::decompress_into_with_dict(block, &mut out[..*len], ext)
                            .expect("decode");
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
