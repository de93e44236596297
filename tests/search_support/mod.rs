//! Shared by the tests, the `measure` example and the bench: NPY reading, seeded synthetic
//! vectors, and an in-memory index laid out like the arena (aligned code blocks, row scales,
//! f32 originals).
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};

use patternbank::search::{
    calibrate_global_scale, code_stride, encode_into, search_with, Block, FlatOriginals, Quantization,
    RowScales, Scored, Scratch, SearchParams,
};

/// Rows per arena block (the arena's chunk size).
pub const BLOCK_ROWS: usize = 65_536;

/// `shared/` of the project: `$PATTERNBANK_SHARED`, else `../shared` from the crate root (and
/// `../../shared`, where the scratch crate sits one level deeper than the main one).
pub fn shared_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        std::env::var_os("PATTERNBANK_SHARED").map(PathBuf::from),
        Some(root.join("../shared")),
        Some(root.join("../../shared")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("data/embeddings/base.npy").is_file())
}

/// A little-endian NPY v1.0 array (`<f4` or `<i4`, C order, 1-d or 2-d): (rows, cols, bytes).
pub fn read_npy(path: &Path, descr: &str) -> Result<(usize, usize, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |why: &str| format!("{}: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" || bytes[6] != 1 {
        return Err(bad("not an NPY v1 file"));
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data_start = 10 + header_len;
    let header = std::str::from_utf8(bytes.get(10..data_start).ok_or_else(|| bad("truncated header"))?)
        .map_err(|_| bad("header is not text"))?;
    if !header.contains(&format!("'descr': '{descr}'")) {
        return Err(bad(&format!("expected descr {descr}: {header}")));
    }
    if !header.contains("'fortran_order': False") {
        return Err(bad("Fortran order"));
    }
    let shape =
        header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let (rows, cols) = match dims[..] {
        [r] => (r, 1),
        [r, c] => (r, c),
        _ => return Err(bad("not 1-d or 2-d")),
    };
    let data = bytes[data_start..].to_vec();
    if data.len() != rows * cols * 4 {
        return Err(bad("data size does not match the shape"));
    }
    Ok((rows, cols, data))
}

pub fn read_f32(path: &Path) -> Result<(usize, usize, Vec<f32>), String> {
    let (r, c, d) = read_npy(path, "<f4")?;
    Ok((r, c, d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
}

pub fn read_i32(path: &Path) -> Result<(usize, usize, Vec<i32>), String> {
    let (r, c, d) = read_npy(path, "<i4")?;
    Ok((r, c, d.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
}

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
        let (n, dim, base) = read_f32(&dir.join("base.npy")).expect("base.npy");
        let (nq, qdim, queries) = read_f32(&dir.join("queries_dev.npy")).expect("queries_dev.npy");
        let (ng, gt_width, gt) = read_i32(&dir.join("gt_dev_top100.npy")).expect("gt_dev_top100.npy");
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

/// SplitMix64, as in patternbank's `workload::Rng`.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }
}

/// Seeded synthetic unit vectors, flattened: the generator of patternbank's
/// `workload::synthetic_embeddings(n, dim, clusters, seed)`: `clusters` centres with N(0, 1)
/// components; each vector is a uniformly chosen centre plus N(0, 0.6²) noise per component,
/// normalised to unit length.
pub fn synthetic(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f64>> =
        (0..clusters.max(1)).map(|_| (0..dim).map(|_| rng.normal()).collect()).collect();
    let mut out = Vec::with_capacity(n * dim);
    let mut v = vec![0f64; dim];
    for _ in 0..n {
        let c = &centres[rng.below(centres.len() as u64) as usize];
        for (v, c) in v.iter_mut().zip(c) {
            *v = c + 0.6 * rng.normal();
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        out.extend(v.iter().map(|x| (x / norm) as f32));
    }
    out
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
