//! Similarity search over the arena's int8 codes: quantization, SIMD scan kernels, top-k
//! selection and f32 rescoring.
//!
//! A search (1) checks and quantizes the query, (2) scans every block's int8 codes with the
//! kernel chosen once per process ([`Kernel::selected`]), keeping the best `k·R` rows by
//! approximate score, (3) recomputes those candidates' exact f32 dot products with the
//! originals, applies the optional blend and returns the best `k`, best first, ties broken by
//! lower slot. Scores are dot products: cosine similarities for the unit-norm vectors the
//! store keeps.
//!
//! Measured on the shared 384-d embeddings (20,000 base vectors, 500 dev queries): per-vector
//! int8 codes give recall@10 0.9942 alone and 1.0000 with R = 2; one thread answers a top-10
//! in about 0.13 ms at 20,000 vectors, 1.6 ms at 100,000 and 15 ms at 1,000,000 (AMD EPYC Zen 4,
//! AVX-512 VNNI), at the speed of a plain sequential read of the codes once they exceed L3.
//!
//! Unsafe code lives only in `kernels.rs`. Scratch buffers are reused (per thread, or owned by
//! the caller through [`Scratch`]), so a warm search allocates only its result `Vec`.

mod kernels;
mod quant;
mod rescore;
mod scan;
mod topk;

use std::cell::RefCell;
use std::fmt;

pub use kernels::{dot_f32, dot_f32_scalar, dot_i8, dot_i8_scalar, Kernel};
pub use quant::{
    calibrate_global_scale, code_stride, encode_into, per_vector_scale, quantize_into, Quantization,
    QueryCodes, CODE_ALIGN, MAX_CODE, UNIT_NORM_GLOBAL_SCALE,
};
pub use rescore::{rescore, Blend, BlendInputs, BlendWeights, FlatOriginals, Originals};
pub use scan::{scan_block, scan_block_with, Block, RowScales};
pub use topk::{rank, Scored, TopK};

/// Candidates per result re-ranked with f32 by default (`R` in `k·R`): on the shared 384-d
/// embeddings R = 2 lifts recall@10 from 0.9942 to 1.0000.
pub const DEFAULT_RERANK: usize = 2;

/// Why a search or an encode was refused. Nothing panics on bad input.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SearchError {
    /// The query's length is not the index's dimension.
    DimensionMismatch {
        /// The index's dimension.
        expected: usize,
        /// The query's length.
        found: usize,
    },
    /// A component is NaN or infinite.
    NonFinite {
        /// Its position.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// The query is all zeros, so no cosine is defined.
    ZeroQuery,
    /// A vector (or the index's dimension) is empty.
    EmptyVector,
    /// A code is −128, outside the symmetric range ±127.
    CodeOutOfRange {
        /// Its position.
        index: usize,
    },
    /// A block, scale or code buffer does not have the layout this module needs.
    BadLayout(&'static str),
    /// A stored original has a different length from the query.
    OriginalDimension {
        /// The candidate's slot.
        slot: u64,
        /// Its original's length.
        found: usize,
    },
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchError::DimensionMismatch { expected, found } => {
                write!(f, "query has {found} dimensions; the index holds {expected}")
            }
            SearchError::NonFinite { index, value } => {
                write!(f, "query value {index} is {value} (not finite)")
            }
            SearchError::ZeroQuery => f.write_str("query is all zeros: cosine similarity is undefined"),
            SearchError::EmptyVector => f.write_str("vector is empty"),
            SearchError::CodeOutOfRange { index } => write!(f, "code {index} is -128 (outside ±127)"),
            SearchError::BadLayout(why) => write!(f, "bad code layout: {why}"),
            SearchError::OriginalDimension { slot, found } => {
                write!(f, "stored vector of slot {slot} has {found} dimensions, unlike the query")
            }
        }
    }
}

impl std::error::Error for SearchError {}

/// What to search for, besides the query.
#[derive(Clone, Copy)]
pub struct SearchParams<'a> {
    /// Results wanted.
    pub k: usize,
    /// Re-rank the best `k·rerank` int8 candidates with f32 originals; 0 returns int8 scores.
    pub rerank: usize,
    /// Keep only slots for which this returns true (kind, minimum confidence, …). Called only
    /// for rows whose int8 score would enter the candidates.
    pub filter: Option<&'a dyn Fn(u64) -> bool>,
    /// Blend applied to the (rescored) cosine before the final top-k.
    pub blend: Option<Blend<'a>>,
}

impl<'a> SearchParams<'a> {
    /// Top `k` by cosine, re-ranked with R = [`DEFAULT_RERANK`], no filter, no blend.
    pub fn top(k: usize) -> Self {
        Self { k, rerank: DEFAULT_RERANK, filter: None, blend: None }
    }
}

impl fmt::Debug for SearchParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchParams")
            .field("k", &self.k)
            .field("rerank", &self.rerank)
            .field("filter", &self.filter.map(|_| "<fn>"))
            .field("blend", &self.blend)
            .finish()
    }
}

/// Reusable buffers of one search: the quantized query and two top-k heaps.
#[derive(Clone, Debug)]
pub struct Scratch {
    kernel: Kernel,
    query: QueryCodes,
    candidates: TopK,
    results: TopK,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// Buffers for searches with the selected kernel.
    pub fn new() -> Self {
        Self::with_kernel(Kernel::selected())
    }

    /// Buffers for searches with a given kernel (benchmarks; one the CPU lacks runs as Scalar).
    pub fn with_kernel(kernel: Kernel) -> Self {
        Self { kernel, query: QueryCodes::new(), candidates: TopK::new(0), results: TopK::new(0) }
    }

    /// The kernel these searches use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

/// Top `params.k` slots for `query` over `blocks`, best first (ties: lower slot first).
///
/// Every block must have the stride `code_stride(dim)`. Refuses, with nothing scanned: a
/// query of the wrong length, NaN or infinite values, an all-zero query, `dim` = 0. Takes no
/// lock and only reads the blocks; allocates only the returned `Vec` once `scratch` is warm.
pub fn search_with<'b, I, O>(
    scratch: &mut Scratch,
    query: &[f32],
    dim: usize,
    blocks: I,
    originals: &O,
    params: &SearchParams<'_>,
) -> Result<Vec<Scored>, SearchError>
where
    I: IntoIterator<Item = Block<'b>>,
    O: Originals + ?Sized,
{
    let Scratch { kernel, query: codes, candidates, results } = scratch;
    codes.encode(query, dim)?;
    if params.k == 0 {
        return Ok(Vec::new());
    }
    candidates.reset(params.k.saturating_mul(params.rerank.max(1)));
    for block in blocks {
        match params.filter {
            None => scan_block_with(*kernel, codes, &block, candidates, |_| true)?,
            Some(f) => scan_block_with(*kernel, codes, &block, candidates, f)?,
        }
    }
    results.reset(params.k);
    let exact = params.rerank > 0;
    rescore(*kernel, query, candidates.as_unsorted(), originals, exact, params.blend.as_ref(), results)?;
    let mut out = Vec::with_capacity(results.len());
    results.drain_sorted_into(&mut out);
    Ok(out)
}

/// [`search_with`] using this thread's scratch buffers (a fresh set if they are already in
/// use, e.g. a filter that searches, or during thread teardown).
pub fn search<'b, I, O>(
    query: &[f32],
    dim: usize,
    blocks: I,
    originals: &O,
    params: &SearchParams<'_>,
) -> Result<Vec<Scored>, SearchError>
where
    I: IntoIterator<Item = Block<'b>>,
    O: Originals + ?Sized,
{
    thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
    }
    let mut blocks = Some(blocks);
    let mut run =
        |s: &mut Scratch| search_with(s, query, dim, blocks.take().into_iter().flatten(), originals, params);
    match SCRATCH.try_with(|cell| cell.try_borrow_mut().ok().map(|mut s| run(&mut s))) {
        Ok(Some(result)) => result,
        _ => run(&mut Scratch::new()),
    }
}
