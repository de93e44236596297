//! Shared by the tests, the `search_measure` example and the bench: the shared W2 data (read
//! with `workload::Npy`), seeded synthetic vectors (`workload`'s), and an in-memory index laid out like the arena (aligned code blocks, row scales,
//! f32 originals).
#![allow(dead_code)] // each test binary uses a different part

pub use patternbank::workload::{shared_dir, Rng};
use patternbank::workload::{synthetic_embeddings, Npy};

use patternbank::search::{
    calibrate_global_scale, code_stride, encode_into, search_with, Block, FlatOriginals, Quantization,
    RowScales, Scored, Scratch, SearchParams,
};

/// Rows per arena block (the arena's chunk size).
pub const BLOCK_ROWS: usize = 65_536;

/// The shared W2 data: base vectors, dev queries, exact top-100 per query.
pub struct SharedData {
    pub dim: usize,
    pub base: Vec<f32>,
    pub queries: Vec<f32>,
    pub gt: Vec<i32>,
    pub gt_width: usize,
}

impl SharedData {
    pub fn load() -> Option<SharedData> {
        let dir = shared_dir()?.join("data/embeddings");
        let read = |name: &str| Npy::read(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (base, queries, gt) = (read("base.npy"), read("queries_dev.npy"), read("gt_dev_top100.npy"));
        let ((n, dim), (nq, qdim), (ng, gt_width)) = (base.shape, queries.shape, gt.shape);
        let (base, queries, gt) = (base.f32s().unwrap(), queries.f32s().unwrap(), gt.i32s().unwrap());
        assert_eq!((n, dim, qdim, ng), (20_000, 384, 384, nq), "unexpected shapes");
        Some(SharedData { dim, base, queries, gt, gt_width })
    }

    pub fn n_queries(&self) -> usize {
        self.queries.len() / self.dim
    }

    pub fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }

    pub fn truth(&self, i: usize, k: usize) -> &[i32] {
        &self.gt[i * self.gt_width..i * self.gt_width + k]
    }
}

/// A random `i8` over its whole range (−128 included).
pub fn random_i8(rng: &mut Rng) -> i8 {
    rng.next_u64() as i8
}

/// Seeded synthetic unit vectors, flattened: `workload::synthetic_embeddings`.
pub fn synthetic(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    synthetic_embeddings(n, dim, clusters, seed).concat()
}

/// Vectors encoded like the arena: code rows of `code_stride(dim)` bytes in 64-byte-aligned
/// storage (as in the mapped file: unaligned rows would straddle cache lines), one scale per
/// row, and the f32 originals.
pub struct Index {
    pub dim: usize,
    pub stride: usize,
    pub n: usize,
    pub quantization: Quantization,
    buf: Vec<u64>,
    /// First word of the 64-byte-aligned codes in `buf`.
    start: usize,
    pub scales: Vec<f32>,
    pub originals: Vec<f32>,
}

/// How a test chooses the global scale.
pub fn global_calibrated(vectors: &[f32]) -> Quantization {
    Quantization::Global { scale: calibrate_global_scale(vectors).expect("non-zero data") }
}

impl Index {
    pub fn build(vectors: Vec<f32>, dim: usize, quantization: Quantization) -> Index {
        let n = vectors.len() / dim;
        let stride = code_stride(dim);
        let mut buf = vec![0u64; n * stride / 8 + 8];
        let start = (64 - buf.as_ptr() as usize % 64) % 64 / 8;
        let mut scales = Vec::with_capacity(n);
        {
            let words = &mut buf[start..start + n * stride / 8];
            let codes: &mut [i8] = bytemuck::try_cast_slice_mut(words).expect("u64 → i8");
            for (v, row) in vectors.chunks_exact(dim).zip(codes.chunks_exact_mut(stride)) {
                scales.push(encode_into(v, quantization, row).expect("finite vector"));
            }
        }
        let index = Index { dim, stride, n, quantization, buf, start, scales, originals: vectors };
        assert_eq!(index.codes().as_ptr() as usize % 64, 0);
        index
    }

    pub fn codes(&self) -> &[i8] {
        bytemuck::try_cast_slice(self.words()).expect("u64 → i8")
    }

    /// The code bytes as u64 words (for the sequential-read baseline).
    pub fn words(&self) -> &[u64] {
        &self.buf[self.start..self.start + self.n * self.stride / 8]
    }

    pub fn blocks(&self) -> Vec<Block<'_>> {
        let codes = self.codes();
        (0..self.n)
            .step_by(BLOCK_ROWS)
            .map(|start| {
                let len = BLOCK_ROWS.min(self.n - start);
                let scales = match self.quantization {
                    Quantization::PerVector => RowScales::PerVector(&self.scales[start..start + len]),
                    Quantization::Global { scale } => RowScales::Global(scale),
                };
                Block::new(&codes[start * self.stride..], self.stride, len, start as u64, scales)
                    .expect("valid block")
            })
            .collect()
    }

    pub fn originals(&self) -> FlatOriginals<'_> {
        FlatOriginals::new(&self.originals, self.dim, 0)
    }

    pub fn search(&self, scratch: &mut Scratch, query: &[f32], params: &SearchParams<'_>) -> Vec<Scored> {
        search_with(scratch, query, self.dim, self.blocks(), &self.originals(), params).expect("search")
    }
}

/// Exact top-k by f64 dot product (ties: lower index first).
pub fn brute_force(vectors: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<usize> {
    let mut s: Vec<(f64, usize)> = vectors
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (v.iter().zip(query).map(|(a, b)| *a as f64 * *b as f64).sum(), i))
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    s.into_iter().take(k).map(|(_, i)| i).collect()
}

/// |found ∩ truth| / |truth|.
pub fn recall(found: &[Scored], truth: &[i32]) -> f64 {
    let hits = truth.iter().filter(|t| found.iter().any(|f| f.slot == **t as u64)).count();
    hits as f64 / truth.len() as f64
}

/// Mean recall@k over the shared dev queries.
pub fn shared_recall(data: &SharedData, index: &Index, k: usize, rerank: usize) -> f64 {
    let mut scratch = Scratch::new();
    let params = SearchParams { rerank, ..SearchParams::top(k) };
    let total: f64 = (0..data.n_queries())
        .map(|i| recall(&index.search(&mut scratch, data.query(i), &params), data.truth(i, k)))
        .sum();
    total / data.n_queries() as f64
}

/// A plain f32 brute-force scan (SIMD dot per row) into a top-10: the baseline our int8 scan
/// is measured against. Returns the sum of the found slots, so the work cannot be elided.
pub fn f32_scan(index: &Index, q: &[f32], top: &mut patternbank::search::TopK) -> u64 {
    top.reset(10);
    let k = patternbank::search::Kernel::selected();
    for (i, v) in index.originals.chunks_exact(index.dim).enumerate() {
        let s = k.dot_f32(q, v);
        if s >= top.threshold() {
            top.push(i as u64, s);
        }
    }
    top.as_unsorted().iter().map(|s| s.slot).sum()
}
