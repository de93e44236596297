//! Dot-product kernels: the only file of `search` with `unsafe` (SIMD loads and calls into
//! `#[target_feature]` functions after runtime detection).
//!
//! | kernel        | int8 (scan and `dot_i8`)                                   | f32 (`dot_f32`)        |
//! |---------------|------------------------------------------------------------|------------------------|
//! | `Scalar`      | i32 multiply-add: the reference                            | sequential sum         |
//! | `Avx2`        | scan: `vpsignb`/`vpabsb` + `vpmaddubsw` + `vpmaddwd`; `dot_i8`: widen to i16 + `vpmaddwd` (exact for −128 too) | FMA, 4 × 8 lanes |
//! | `Avx512Vnni`  | 256-bit `vpdpbusd` (AVX-512 VL) on (row ⊕ 0x80) = row + 128 as u8, minus the per-query correction 128·Σq | AVX-512F FMA, 4 × 16 lanes |
//! | `Neon`        | `vmull_s8` + `vpadalq_s16` (`vdotq_s32` is unstable in Rust 1.95) | FMA, 4 × 4 lanes  |
//!
//! Choices measured on this project's Zen 4 (one thread; 20,000 × 384 codes sit in L3,
//! 100,000 come from DRAM):
//! - Row scans read rows strictly in address order, four rows per step with one combined
//!   horizontal reduction. Interleaving four rows to share each query load ran 1.3–1.8×
//!   slower from DRAM: the prefetcher follows one stream, not four strided ones.
//! - The VNNI scan uses 256-bit vectors: as fast as 512-bit ones from L3 (0.10 ms at 20,000)
//!   and 1.2× faster from DRAM, where it matches a plain read of the bytes; it keeps the query
//!   in registers for strides up to 768.
//!
//! Every int8 kernel returns exactly the scalar result for vectors of up to 131,072 components
//! (|Σ| ≤ n·2^14 < 2^31); lane sums wrap, so the VNNI bias (up to n·255·128 before the
//! correction) cannot make them differ. The f32 kernels differ from the scalar sum only by
//! rounding order.

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::quant::QueryCodes;

/// One implementation of the dot products, chosen once per process by [`Kernel::selected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Portable Rust; the reference every other kernel is tested against.
    Scalar,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX2 and AVX-512 F, VL and VNNI.
    Avx512Vnni,
    /// AArch64 Advanced SIMD (part of every mainstream AArch64 target).
    Neon,
}

const ALL: [Kernel; 4] = [Kernel::Avx512Vnni, Kernel::Avx2, Kernel::Neon, Kernel::Scalar];

impl Kernel {
    /// The fastest kernel this CPU supports, detected on first use and cached.
    pub fn selected() -> Kernel {
        static SELECTED: OnceLock<Kernel> = OnceLock::new();
        *SELECTED.get_or_init(|| Kernel::available().next().unwrap_or(Kernel::Scalar))
    }

    /// Kernels this CPU supports, fastest first (always ends with `Scalar`).
    pub fn available() -> impl Iterator<Item = Kernel> {
        ALL.into_iter().filter(|k| k.is_available())
    }

    /// Whether this CPU can run the kernel (std caches the CPUID answers, so this is cheap).
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            _ => false, // not this architecture
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512-vnni",
            Kernel::Neon => "neon",
        }
    }

    /// The kernel itself if this CPU supports it, else `Scalar`: a forced kernel can never
    /// run an instruction the CPU lacks.
    fn usable(self) -> Kernel {
        if self.is_available() {
            self
        } else {
            Kernel::Scalar
        }
    }

    /// `Σ a[i]·b[i]` over the common length, exact for every i8 value including −128.
    pub fn dot_i8(self, a: &[i8], b: &[i8]) -> i32 {
        debug_assert_eq!(a.len(), b.len());
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` returned Avx2 only because avx2 and fma were detected.
            Kernel::Avx2 => unsafe { dot_i8_avx2(a, b) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` returned Avx512Vnni only because avx2 and avx512f/vl/vnni were detected.
            Kernel::Avx512Vnni => unsafe { dot_i8_vnni(a, b) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: `usable` returned Neon only because neon was detected.
            Kernel::Neon => unsafe { dot_i8_neon(a, b) },
            _ => dot_i8_scalar(a, b),
        }
    }

    /// `out[r] = Σ q[i]·rows[r·stride + i]` for consecutive rows of `stride = q.stride()`
    /// bytes, for as many rows as both `rows` and `out` hold; returns that row count. Exact
    /// for every i8 in `rows`; `QueryCodes` keeps the query within −127..=127 (the AVX2 sign
    /// trick needs it) and its stride a positive multiple of 64.
    pub fn dot_rows(self, q: &QueryCodes, rows: &[i8], out: &mut [i32]) -> usize {
        let (q, q_sum) = (q.codes(), q.sum());
        let stride = q.len();
        if stride == 0 {
            return 0; // an empty `QueryCodes` that was never encoded
        }
        let n = out.len().min(rows.len() / stride);
        let (rows, out) = (&rows[..n * stride], &mut out[..n]);
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` returned Avx2 only because avx2 and fma were detected.
            Kernel::Avx2 => unsafe { rows_avx2(q, rows, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` returned Avx512Vnni only because avx2 and avx512f/vl/vnni were detected.
            Kernel::Avx512Vnni => unsafe { rows_vnni(q, q_sum, rows, out) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => {
                let _ = q_sum;
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
                    // SAFETY: `usable` returned Neon only because neon was detected.
                    *o = unsafe { dot_i8_neon(q, row) };
                }
            }
            _ => {
                let _ = q_sum;
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(stride)) {
                    *o = dot_i8_scalar(q, row);
                }
            }
        }
        n
    }

    /// `Σ a[i]·b[i]` in f32 over the common length.
    pub fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` returned Avx2 only because avx2 and fma were detected.
            Kernel::Avx2 => unsafe { dot_f32_avx2(a, b) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` returned Avx512Vnni only because avx512f (among others) was detected.
            Kernel::Avx512Vnni => unsafe { dot_f32_avx512(a, b) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: `usable` returned Neon only because neon was detected.
            Kernel::Neon => unsafe { dot_f32_neon(a, b) },
            _ => dot_f32_scalar(a, b),
        }
    }
}

/// `Σ a[i]·b[i]` with the selected kernel (exact; over the common length).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    Kernel::selected().dot_i8(a, b)
}

/// `Σ a[i]·b[i]` in f32 with the selected kernel (over the common length).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    Kernel::selected().dot_f32(a, b)
}

/// The integer reference.
pub fn dot_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
}

/// The f32 reference: a plain left-to-right sum.
pub fn dot_f32_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------------------------------------
// x86-64. Loads take fixed-size arrays (`as_chunks`), so each one reads inside its slice by type.

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn ld128(c: &[i8; 16]) -> __m128i {
    // SAFETY: `c` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(c.as_ptr().cast()) }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn ld256(c: &[i8; 32]) -> __m256i {
    // SAFETY: `c` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(c.as_ptr().cast()) }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn hsum256(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Sign-extends 16 bytes to i16 and multiply-adds pairs into i32: exact for every i8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    let (ca, ta) = a.as_chunks::<16>();
    let (cb, tb) = b.as_chunks::<16>();
    let mut acc = _mm256_setzero_si256();
    for (x, y) in ca.iter().zip(cb) {
        let p = _mm256_madd_epi16(_mm256_cvtepi8_epi16(ld128(x)), _mm256_cvtepi8_epi16(ld128(y)));
        acc = _mm256_add_epi32(acc, p);
    }
    hsum256(acc) + dot_i8_scalar(ta, tb)
}

/// One 32-byte step of the sign trick: |r| as u8 times q·sign(r) as i8 is q·r, and
/// `vpmaddubsw` adds pairs into i16 without saturating (|sum| ≤ 2·128·127 = 32,512) as long
/// as q ≠ −128; `vpmaddwd` by ones widens the pairs to i32.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn sign_trick(acc: __m256i, q: &[i8; 32], r: &[i8; 32]) -> __m256i {
    let (q, r) = (ld256(q), ld256(r));
    let p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(r), _mm256_sign_epi8(q, r));
    _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// The sums of four i32x8 accumulators as [Σa0, Σa1, Σa2, Σa3].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn reduce4_256(a: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn st128(o: &mut [i32; 4], v: __m128i) {
    // SAFETY: `o` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(o.as_mut_ptr().cast(), v) }
}

/// Sign-trick scan. On this project's Zen 4 (20,000 × 384 codes in L3) it scans 1.3× faster
/// than widening both operands to i16 for `vpmaddwd` (0.161 against 0.207 ms); from DRAM
/// (100,000 rows) both run at the memory bound.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2(q: &[i8], rows: &[i8], out: &mut [i32]) {
    let qc = q.as_chunks::<32>().0;
    let (out4, out1) = out.as_chunks_mut::<4>();
    let (rows4, rows1) = rows.split_at(out4.len() * 4 * q.len());
    for (o, g) in out4.iter_mut().zip(rows4.as_chunks::<32>().0.chunks_exact(4 * qc.len())) {
        let mut a = [_mm256_setzero_si256(); 4];
        for (a, row) in a.iter_mut().zip(g.chunks_exact(qc.len())) {
            *a = qc.iter().zip(row).fold(*a, |a, (x, c)| sign_trick(a, x, c));
        }
        st128(o, reduce4_256(a));
    }
    for (o, row) in out1.iter_mut().zip(rows1.chunks_exact(q.len())) {
        *o = hsum256(
            qc.iter()
                .zip(row.as_chunks::<32>().0)
                .fold(_mm256_setzero_si256(), |a, (x, c)| sign_trick(a, x, c)),
        );
    }
}

/// `vpdpbusd` multiplies u8 by i8: Σ (a ⊕ 0x80)·b = Σ (a + 128)·b = Σ a·b + 128·Σ b, and Σ b
/// comes from a second `vpdpbusd` against a vector of ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn dot_i8_vnni(a: &[i8], b: &[i8]) -> i32 {
    let (ca, ta) = a.as_chunks::<32>();
    let (cb, tb) = b.as_chunks::<32>();
    let flip = _mm256_set1_epi8(i8::MIN);
    let ones = _mm256_set1_epi8(1);
    let (mut acc, mut sum_b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for (x, y) in ca.iter().zip(cb) {
        let y = ld256(y);
        acc = _mm256_dpbusd_epi32(acc, _mm256_xor_si256(ld256(x), flip), y);
        sum_b = _mm256_dpbusd_epi32(sum_b, ones, y);
    }
    let biased = hsum256(acc).wrapping_sub(128i32.wrapping_mul(hsum256(sum_b)));
    biased + dot_i8_scalar(ta, tb)
}

/// Rows are the unsigned operand (row ⊕ 0x80 = row + 128), so the correction 128·Σq is one
/// constant per query (`q_sum` = Σq, precomputed by `QueryCodes`). Exact for every i8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn rows_vnni(q: &[i8], q_sum: i32, rows: &[i8], out: &mut [i32]) {
    let qc = q.as_chunks::<32>().0;
    match qc.len() {
        2 => rows_vnni_in::<2>(qc, q_sum, rows, out),
        4 => rows_vnni_in::<4>(qc, q_sum, rows, out),
        8 => rows_vnni_in::<8>(qc, q_sum, rows, out),
        12 => rows_vnni_in::<12>(qc, q_sum, rows, out),
        16 => rows_vnni_in::<16>(qc, q_sum, rows, out),
        24 => rows_vnni_in::<24>(qc, q_sum, rows, out),
        cps => rows_vnni_loop(cps, q_sum, rows, out, |c| ld256(&qc[c])),
    }
}

/// The query's `C` 32-byte chunks in registers (AVX-512 VL has 32 of them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn rows_vnni_in<const C: usize>(qc: &[[i8; 32]], q_sum: i32, rows: &[i8], out: &mut [i32]) {
    let mut qr = [_mm256_setzero_si256(); C];
    for (r, c) in qr.iter_mut().zip(qc) {
        *r = ld256(c);
    }
    rows_vnni_loop(C, q_sum, rows, out, |c| qr[c]);
}

/// The scan proper over rows of `cps` 32-byte chunks; `query(c)` yields chunk `c` of the
/// query (from registers or from L1).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn rows_vnni_loop<Q: Fn(usize) -> __m256i>(cps: usize, q_sum: i32, rows: &[i8], out: &mut [i32], query: Q) {
    let flip = _mm256_set1_epi8(i8::MIN);
    let row_dot = |row: &[[i8; 32]]| {
        let mut a = _mm256_setzero_si256();
        for (c, r) in row.iter().enumerate() {
            a = _mm256_dpbusd_epi32(a, _mm256_xor_si256(ld256(r), flip), query(c));
        }
        a
    };
    let (out4, out1) = out.as_chunks_mut::<4>();
    let (rows4, rows1) = rows.as_chunks::<32>().0.split_at(out4.len() * 4 * cps);
    let bias = q_sum.wrapping_mul(128);
    for (o, g) in out4.iter_mut().zip(rows4.chunks_exact(4 * cps)) {
        let mut a = [_mm256_setzero_si256(); 4];
        for (a, row) in a.iter_mut().zip(g.chunks_exact(cps)) {
            *a = row_dot(row);
        }
        st128(o, _mm_sub_epi32(reduce4_256(a), _mm_set1_epi32(bias)));
    }
    for (o, row) in out1.iter_mut().zip(rows1.chunks_exact(cps)) {
        *o = hsum256(row_dot(row)).wrapping_sub(bias);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ta) = a.as_chunks::<32>();
    let (cb, tb) = b.as_chunks::<32>();
    let mut acc = [_mm256_setzero_ps(); 4];
    for (x, y) in ca.iter().zip(cb) {
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: x and y are 32 readable f32 each and i < 4, so [8i, 8i + 8) is in bounds;
            // `loadu` has no alignment requirement.
            let (vx, vy) =
                unsafe { (_mm256_loadu_ps(x.as_ptr().add(8 * i)), _mm256_loadu_ps(y.as_ptr().add(8 * i))) };
            *acc = _mm256_fmadd_ps(vx, vy, *acc);
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s) + dot_f32_scalar(ta, tb)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ta) = a.as_chunks::<64>();
    let (cb, tb) = b.as_chunks::<64>();
    let mut acc = [_mm512_setzero_ps(); 4];
    for (x, y) in ca.iter().zip(cb) {
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: x and y are 64 readable f32 each and i < 4, so [16i, 16i + 16) is in
            // bounds; `loadu` has no alignment requirement.
            let (vx, vy) =
                unsafe { (_mm512_loadu_ps(x.as_ptr().add(16 * i)), _mm512_loadu_ps(y.as_ptr().add(16 * i))) };
            *acc = _mm512_fmadd_ps(vx, vy, *acc);
        }
    }
    // Tails of 16 keep dimensions like 384 + 16k vectorised.
    let (ca16, ta) = ta.as_chunks::<16>();
    let (cb16, tb) = tb.as_chunks::<16>();
    for (x, y) in ca16.iter().zip(cb16) {
        // SAFETY: x and y are 16 readable f32 each; `loadu` has no alignment requirement.
        let (vx, vy) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr())) };
        acc[0] = _mm512_fmadd_ps(vx, vy, acc[0]);
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(v) + dot_f32_scalar(ta, tb)
}

// ---------------------------------------------------------------------------------------------
// AArch64: Advanced SIMD is part of the standard targets; it is still detected, never assumed.

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
fn dot_i8_neon(a: &[i8], b: &[i8]) -> i32 {
    let (ca, ta) = a.as_chunks::<16>();
    let (cb, tb) = b.as_chunks::<16>();
    let mut acc = vdupq_n_s32(0);
    for (x, y) in ca.iter().zip(cb) {
        // SAFETY: x and y are 16 readable bytes each; `vld1q_s8` has no alignment requirement.
        let (x, y) = unsafe { (vld1q_s8(x.as_ptr()), vld1q_s8(y.as_ptr())) };
        // i8·i8 fits i16 (|p| ≤ 16,384); pairwise add-accumulate widens to i32.
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
        acc = vpadalq_s16(acc, vmull_high_s8(x, y));
    }
    vaddvq_s32(acc) + dot_i8_scalar(ta, tb)
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
fn dot_f32_neon(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ta) = a.as_chunks::<16>();
    let (cb, tb) = b.as_chunks::<16>();
    let mut acc = [vdupq_n_f32(0.0); 4];
    for (x, y) in ca.iter().zip(cb) {
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: x and y are 16 readable f32 each and i < 4, so [4i, 4i + 4) is in bounds;
            // `vld1q_f32` has no alignment requirement.
            let (vx, vy) = unsafe { (vld1q_f32(x.as_ptr().add(4 * i)), vld1q_f32(y.as_ptr().add(4 * i))) };
            *acc = vfmaq_f32(*acc, vx, vy);
        }
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(v) + dot_f32_scalar(ta, tb)
}
