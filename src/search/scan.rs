//! The int8 scan of one arena block into a [`TopK`].

#![forbid(unsafe_code)]

use super::kernels::Kernel;
use super::quant::{QueryCodes, CODE_ALIGN};
use super::topk::TopK;
use super::SearchError;

/// How the codes of a block's rows were scaled.
#[derive(Clone, Copy, Debug)]
pub enum RowScales<'a> {
    /// One scale for every row (`Quantization::Global`).
    Global(f32),
    /// One scale per row, `scales[i]` for row `i` (`Quantization::PerVector`).
    PerVector(&'a [f32]),
}

impl<'a> RowScales<'a> {
    /// Per-row scales straight from mapped bytes (little-endian f32, 4-byte aligned).
    pub fn per_vector_from_bytes(bytes: &'a [u8]) -> Result<Self, SearchError> {
        bytemuck::try_cast_slice(bytes)
            .map(RowScales::PerVector)
            .map_err(|_| SearchError::BadLayout("row scales must be 4-byte aligned whole f32s"))
    }
}

/// A validated view of one arena block: `len` code rows of `stride` bytes, contiguous, for
/// slots `first_slot..first_slot + len`.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    codes: &'a [i8],
    stride: usize,
    len: usize,
    first_slot: u64,
    scales: RowScales<'a>,
}

impl<'a> Block<'a> {
    /// Checks the layout once so that scans need no checks: `stride` a positive multiple of
    /// 64, at least `len · stride` code bytes, a scale per row, slots that fit in u64. Codes
    /// that start 64-byte aligned scan fastest (no row straddles a cache line); any address
    /// is correct.
    pub fn new(
        codes: &'a [i8],
        stride: usize,
        len: usize,
        first_slot: u64,
        scales: RowScales<'a>,
    ) -> Result<Self, SearchError> {
        if stride == 0 || !stride.is_multiple_of(CODE_ALIGN) {
            return Err(SearchError::BadLayout("stride must be a positive multiple of 64"));
        }
        if len.checked_mul(stride).is_none_or(|bytes| bytes > codes.len()) {
            return Err(SearchError::BadLayout("block holds fewer than len · stride code bytes"));
        }
        if let RowScales::PerVector(s) = scales {
            if s.len() < len {
                return Err(SearchError::BadLayout("block holds fewer row scales than rows"));
            }
        }
        if first_slot.checked_add(len as u64).is_none() {
            return Err(SearchError::BadLayout("slot numbers overflow u64"));
        }
        Ok(Self { codes: &codes[..len * stride], stride, len, first_slot, scales })
    }

    /// [`Block::new`] over mapped bytes (u8 → i8 is always a valid cast).
    pub fn from_bytes(
        codes: &'a [u8],
        stride: usize,
        len: usize,
        first_slot: u64,
        scales: RowScales<'a>,
    ) -> Result<Self, SearchError> {
        let codes = bytemuck::try_cast_slice(codes).map_err(|_| SearchError::BadLayout("code bytes"))?;
        Self::new(codes, stride, len, first_slot, scales)
    }

    /// Rows in the block.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The slot of row 0.
    pub fn first_slot(&self) -> u64 {
        self.first_slot
    }

    /// The code bytes, `len · stride`.
    pub fn codes(&self) -> &'a [i8] {
        self.codes
    }
}

/// Rows per kernel call: large enough to amortise the call and dispatch, small enough that
/// the i32 results stay in L1 (256 bytes).
const BATCH: usize = 64;

/// Scans `block` with the selected kernel, offering every row to `top` with its approximate
/// dot product `dot_i8 · query scale · row scale`.
pub fn scan_block(q: &QueryCodes, block: &Block<'_>, top: &mut TopK) -> Result<(), SearchError> {
    scan_block_with(Kernel::selected(), q, block, top, |_| true)
}

/// [`scan_block`] with a kernel of the caller's choice (one the CPU lacks runs as `Scalar`) and
/// a per-slot filter. The filter is consulted only for rows whose score would enter `top`, so
/// a cheap predicate (kind, minimum confidence) costs almost nothing: most rows never reach
/// it. Errors only when the block's stride differs from the query's.
pub fn scan_block_with<F: FnMut(u64) -> bool>(
    kernel: Kernel,
    q: &QueryCodes,
    block: &Block<'_>,
    top: &mut TopK,
    mut filter: F,
) -> Result<(), SearchError> {
    if block.stride != q.stride() {
        return Err(SearchError::BadLayout("block stride differs from the query's code stride"));
    }
    let mut dots = [0i32; BATCH];
    let mut slot = block.first_slot;
    let mut thr = top.threshold();
    for (b, rows) in block.codes.chunks(BATCH * block.stride).enumerate() {
        let n = kernel.dot_rows(q, rows, &mut dots);
        let first = b * BATCH;
        match block.scales {
            RowScales::Global(s) => {
                let f = s * q.scale();
                for &d in &dots[..n] {
                    let score = d as f32 * f;
                    if score >= thr && filter(slot) && top.push(slot, score) {
                        thr = top.threshold();
                    }
                    slot += 1;
                }
            }
            RowScales::PerVector(scales) => {
                for (&d, &s) in dots[..n].iter().zip(&scales[first..first + n]) {
                    let score = d as f32 * (s * q.scale());
                    if score >= thr && filter(slot) && top.push(slot, score) {
                        thr = top.threshold();
                    }
                    slot += 1;
                }
            }
        }
    }
    Ok(())
}
