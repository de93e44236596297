//! Symmetric f32 → int8 quantization of stored vectors and of queries.
//!
//! A code is `round(x / scale)` clamped to ±127 (never −128, so codes negate safely and the
//! AVX2 sign trick stays exact). Each vector occupies `code_stride(dim)` bytes: the dimension
//! rounded up to 64, zero padded, so a 64-byte SIMD step never needs a tail and padding adds
//! nothing to a dot product.

#![forbid(unsafe_code)]

use super::SearchError;

/// Code rows are padded to a multiple of this many bytes (one AVX-512 register, one cache line).
pub const CODE_ALIGN: usize = 64;

/// The largest code magnitude.
pub const MAX_CODE: f32 = 127.0;

/// Bytes per code row for vectors of `dim` components: `dim` rounded up to a multiple of 64.
pub const fn code_stride(dim: usize) -> usize {
    dim.div_ceil(CODE_ALIGN) * CODE_ALIGN
}

/// How stored vectors are scaled to int8.
///
/// `PerVector` is the default: on the shared 384-d embeddings (500 dev queries) it gives the
/// best recall@10 without rescoring, 0.9942 against 0.9920 for a global scale calibrated on
/// the data and 0.9902 for the fixed [`UNIT_NORM_GLOBAL_SCALE`] (all 1.0000 with R = 2); it
/// needs no calibration, and it cannot clip a vector that arrives after a scale was fixed
/// (norms other than 1, a new embedding model). It costs 4 bytes per record and one f32
/// multiply per scanned row, which the memory-bound scan does not notice.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Quantization {
    /// scale = max|x| / 127 for each vector, stored beside its codes.
    #[default]
    PerVector,
    /// One scale for every vector, stored with the arena; values beyond ±127·scale clip.
    /// Choose it with [`calibrate_global_scale`] on a first batch, or
    /// [`UNIT_NORM_GLOBAL_SCALE`] for an arena that has no data yet.
    Global {
        /// The value of one code step.
        scale: f32,
    },
}

/// A global scale for unit-norm embeddings chosen before any data is seen: ±0.5 maps to ±127.
/// A component of a unit vector beyond ±0.5 is rare for dense text embeddings (they spread
/// their norm over hundreds of components: the shared 384-d data stays within ±0.27), yet such
/// a component clips, and typical vectors use only half the code range: recall@10 0.9902
/// against 0.9920 for a calibrated scale. Prefer [`calibrate_global_scale`] or `PerVector`.
pub const UNIT_NORM_GLOBAL_SCALE: f32 = 0.5 / MAX_CODE;

/// A global scale calibrated from a sample (for example the first batch written to a new
/// arena, then fixed for its life): the largest finite |x| maps to 127. `None` when the sample
/// has no finite non-zero value.
pub fn calibrate_global_scale(sample: &[f32]) -> Option<f32> {
    let m = sample.iter().filter(|x| x.is_finite()).fold(0.0f32, |m, x| m.max(x.abs()));
    (m > 0.0).then_some(m / MAX_CODE)
}

/// The per-vector scale max|x| / 127 (0 for a zero vector, whose codes are then all 0).
pub fn per_vector_scale(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs())) / MAX_CODE
}

/// Writes the codes of `v` at `scale` into `out[..v.len()]` and zeroes the rest of `out`.
/// A zero, negative or non-finite scale writes all zeros. Division (not a multiply by the
/// reciprocal) keeps subnormal scales exact enough; this runs once per stored vector.
pub fn quantize_into(v: &[f32], scale: f32, out: &mut [i8]) {
    let n = v.len().min(out.len());
    let (head, pad) = out.split_at_mut(n);
    if scale > 0.0 && scale.is_finite() {
        for (o, x) in head.iter_mut().zip(v) {
            // `as` saturates and maps NaN to 0; the clamp keeps −128 out.
            *o = (x / scale).round().clamp(-MAX_CODE, MAX_CODE) as i8;
        }
    } else {
        head.fill(0);
    }
    pad.fill(0);
}

/// Encodes one stored vector into its code row `out` (`code_stride(v.len())` bytes) and
/// returns the row scale to store with it (the global scale itself under `Global`).
pub fn encode_into(v: &[f32], quantization: Quantization, out: &mut [i8]) -> Result<f32, SearchError> {
    check_vector(v)?;
    if out.len() != code_stride(v.len()) {
        return Err(SearchError::BadLayout("a code row must be code_stride(dim) bytes"));
    }
    let scale = match quantization {
        Quantization::PerVector => per_vector_scale(v),
        Quantization::Global { scale } if scale > 0.0 && scale.is_finite() => scale,
        Quantization::Global { .. } => return Err(SearchError::BadLayout("global scale must be positive")),
    };
    quantize_into(v, scale, out);
    Ok(scale)
}

/// Rejects an empty vector and the first non-finite component.
fn check_vector(v: &[f32]) -> Result<(), SearchError> {
    if v.is_empty() {
        return Err(SearchError::EmptyVector);
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(SearchError::NonFinite { index, value: v[index] }),
        None => Ok(()),
    }
}

/// A query in int8 form, reusable across queries (its buffer grows once, then is reused).
///
/// Invariants the kernels rely on: `codes.len()` is a positive multiple of 64 (or 0 before
/// the first encode), every code lies in −127..=127, and `sum` is Σ codes.
#[derive(Clone, Debug, Default)]
pub struct QueryCodes {
    codes: Vec<i8>,
    dim: usize,
    scale: f32,
    sum: i32,
}

impl QueryCodes {
    /// An empty query buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `query` with its own scale max|q|/127 (a per-query constant, so it never
    /// changes a ranking). Checks, in this order: `dim` > 0, `query.len() == dim`, every value
    /// finite, not all zero (cosine with a zero vector is undefined). On error `self` is
    /// unchanged. Allocates only when the stride grows.
    pub fn encode(&mut self, query: &[f32], dim: usize) -> Result<(), SearchError> {
        if dim == 0 {
            return Err(SearchError::EmptyVector);
        }
        if query.len() != dim {
            return Err(SearchError::DimensionMismatch { expected: dim, found: query.len() });
        }
        check_vector(query)?;
        let scale = per_vector_scale(query);
        if scale == 0.0 {
            return Err(SearchError::ZeroQuery);
        }
        self.codes.resize(code_stride(dim), 0);
        quantize_into(query, scale, &mut self.codes);
        self.dim = dim;
        self.scale = scale;
        self.sum = self.codes.iter().map(|&c| i32::from(c)).sum();
        Ok(())
    }

    /// A query from ready-made codes (tests and benchmarks), padded to `code_stride`; the
    /// scale is 1. Rejects −128 (outside the symmetric range) and an empty slice.
    pub fn from_codes(codes: &[i8]) -> Result<Self, SearchError> {
        if codes.is_empty() {
            return Err(SearchError::EmptyVector);
        }
        if let Some(index) = codes.iter().position(|&c| c == i8::MIN) {
            return Err(SearchError::CodeOutOfRange { index });
        }
        let mut padded = codes.to_vec();
        padded.resize(code_stride(codes.len()), 0);
        let sum = codes.iter().map(|&c| i32::from(c)).sum();
        Ok(Self { codes: padded, dim: codes.len(), scale: 1.0, sum })
    }

    /// The codes, `stride()` bytes including the zero padding.
    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// Components of the original query.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes per code row this query scans: `code_stride(dim)`.
    pub fn stride(&self) -> usize {
        self.codes.len()
    }

    /// The query's own scale: query ≈ codes · scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Σ codes: the VNNI kernel's bias correction, computed once per query.
    pub fn sum(&self) -> i32 {
        self.sum
    }
}
