//! Re-ranking int8 candidates with the f32 originals, and the optional score blend.

#![forbid(unsafe_code)]

use super::kernels::Kernel;
use super::topk::{Scored, TopK};
use super::SearchError;

/// Where the f32 original of a slot lives (in patternbank: the same mapped file as the codes).
pub trait Originals {
    /// The original vector of `slot`, or `None` when the slot holds no vector (a candidate
    /// without one is dropped from the results).
    fn original(&self, slot: u64) -> Option<&[f32]>;
}

impl<T: Originals + ?Sized> Originals for &T {
    fn original(&self, slot: u64) -> Option<&[f32]> {
        (**self).original(slot)
    }
}

/// Originals stored row after row in one slice: slot `first_slot + i` is row `i`.
#[derive(Clone, Copy, Debug)]
pub struct FlatOriginals<'a> {
    data: &'a [f32],
    dim: usize,
    first_slot: u64,
}

impl<'a> FlatOriginals<'a> {
    /// Rows of `dim` floats (a trailing partial row is ignored).
    pub fn new(data: &'a [f32], dim: usize, first_slot: u64) -> Self {
        Self { data, dim, first_slot }
    }

    /// Rows straight from mapped bytes (little-endian f32, 4-byte aligned).
    pub fn from_bytes(bytes: &'a [u8], dim: usize, first_slot: u64) -> Result<Self, SearchError> {
        let data = bytemuck::try_cast_slice(bytes)
            .map_err(|_| SearchError::BadLayout("originals must be 4-byte aligned whole f32s"))?;
        Ok(Self::new(data, dim, first_slot))
    }
}

impl Originals for FlatOriginals<'_> {
    fn original(&self, slot: u64) -> Option<&[f32]> {
        let i = usize::try_from(slot.checked_sub(self.first_slot)?).ok()?;
        let start = i.checked_mul(self.dim)?;
        self.data.get(start..start.checked_add(self.dim)?)
    }
}

/// Weights of the ReasoningBank-style blend
/// `cosine·cos + recency·exp(−age_days / recency_days) + confidence·conf`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlendWeights {
    /// Weight of the cosine similarity.
    pub cosine: f32,
    /// Weight of the recency term.
    pub recency: f32,
    /// Weight of the confidence.
    pub confidence: f32,
    /// e-folding time of the recency term, in days.
    pub recency_days: f32,
}

impl Default for BlendWeights {
    /// ReasoningBank's published weights: 0.65, 0.15, 0.20 and 45 days.
    fn default() -> Self {
        Self { cosine: 0.65, recency: 0.15, confidence: 0.20, recency_days: 45.0 }
    }
}

impl BlendWeights {
    /// The blended score. A negative or NaN age counts as 0 (clock skew must not boost a
    /// record past "brand new"); confidence is clamped to [0, 1] with NaN as 0.
    pub fn score(&self, cosine: f32, inputs: BlendInputs) -> f32 {
        let age = inputs.age_days.max(0.0);
        let conf = if inputs.confidence.is_nan() { 0.0 } else { inputs.confidence.clamp(0.0, 1.0) };
        self.cosine * cosine + self.recency * (-age / self.recency_days).exp() + self.confidence * conf
    }
}

/// What the blend needs to know about a slot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlendInputs {
    /// Days since the pattern was last used (or created).
    pub age_days: f32,
    /// Its confidence in [0, 1].
    pub confidence: f32,
}

/// The blend to apply after rescoring, and where its per-slot inputs come from.
#[derive(Clone, Copy)]
pub struct Blend<'a> {
    /// The weights.
    pub weights: BlendWeights,
    /// Age and confidence of a slot.
    pub inputs: &'a dyn Fn(u64) -> BlendInputs,
}

impl std::fmt::Debug for Blend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blend").field("weights", &self.weights).finish_non_exhaustive()
    }
}

/// Re-ranks `candidates` into `out` (which keeps its own `k`): with `exact`, each score is the
/// f32 dot of `query` with the slot's original (candidates without one are dropped), else the
/// candidate's int8 estimate; then the blend, if any. A NaN score (an f32 overflow such as
/// ∞ − ∞) ranks last. Errors when an original's length differs from the query's.
pub fn rescore<O: Originals + ?Sized>(
    kernel: Kernel,
    query: &[f32],
    candidates: &[Scored],
    originals: &O,
    exact: bool,
    blend: Option<&Blend<'_>>,
    out: &mut TopK,
) -> Result<(), SearchError> {
    for c in candidates {
        let mut score = c.score;
        if exact {
            let Some(v) = originals.original(c.slot) else { continue };
            if v.len() != query.len() {
                return Err(SearchError::OriginalDimension { slot: c.slot, found: v.len() });
            }
            score = kernel.dot_f32(query, v);
        }
        if let Some(b) = blend {
            score = b.weights.score(score, (b.inputs)(c.slot));
        }
        out.push(c.slot, if score.is_nan() { f32::NEG_INFINITY } else { score });
    }
    Ok(())
}
