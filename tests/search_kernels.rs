//! Every kernel this CPU can run equals the scalar reference, on random and extreme inputs.

#[path = "search_support/mod.rs"]
mod common;

use common::{random_i8, Rng};
use patternbank::search::{
    code_stride, dot_f32_scalar, dot_i8_scalar, encode_into, per_vector_scale, quantize_into, Kernel,
    Quantization, QueryCodes, SearchError,
};

/// Lengths around every SIMD width boundary (16, 32, 64) and the real dimensions.
fn lengths() -> impl Iterator<Item = usize> {
    (0..=260).chain([319, 320, 321, 383, 384, 385, 511, 512, 513, 767, 768, 1024, 1536, 4096])
}

/// Random bytes with a fair share of the extremes.
fn fill(rng: &mut Rng, v: &mut [i8], lo: i8) {
    for x in v {
        *x = match rng.below(8) {
            0 => lo,
            1 => i8::MAX,
            2 => 0,
            _ => random_i8(rng).max(lo),
        };
    }
}

#[test]
fn dispatch_picks_an_available_kernel() {
    let all: Vec<_> = Kernel::available().map(Kernel::name).collect();
    println!("available kernels: {all:?}; selected: {}", Kernel::selected().name());
    assert!(Kernel::selected().is_available());
    assert_eq!(Kernel::available().last(), Some(Kernel::Scalar));
}

#[test]
fn dot_i8_equals_scalar_for_every_kernel() {
    let mut rng = Rng::new(1);
    for kernel in Kernel::available() {
        for n in lengths() {
            for round in 0..4 {
                let (mut a, mut b) = (vec![0i8; n], vec![0i8; n]);
                fill(&mut rng, &mut a, i8::MIN);
                fill(&mut rng, &mut b, i8::MIN);
                assert_eq!(kernel.dot_i8(&a, &b), dot_i8_scalar(&a, &b), "{kernel:?} n={n} round={round}");
            }
            // Saturation and sign extremes over the whole length.
            for (x, y) in [(i8::MIN, i8::MIN), (i8::MIN, i8::MAX), (i8::MAX, i8::MAX), (i8::MIN, -1)] {
                let (a, b) = (vec![x; n], vec![y; n]);
                assert_eq!(kernel.dot_i8(&a, &b), dot_i8_scalar(&a, &b), "{kernel:?} n={n} {x}·{y}");
            }
        }
    }
}

#[test]
fn dot_rows_equals_scalar_for_every_kernel() {
    let mut rng = Rng::new(2);
    for kernel in Kernel::available() {
        for dim in [1, 17, 63, 64, 65, 100, 128, 192, 256, 384, 400, 512, 768, 1000, 1024, 1536, 2048] {
            let stride = code_stride(dim);
            for rows_n in (0..=9).chain([63, 64, 65, 130]) {
                let mut q = vec![0i8; dim];
                fill(&mut rng, &mut q, -127);
                let q = QueryCodes::from_codes(&q).unwrap();
                let mut rows = vec![0i8; rows_n * stride];
                for row in rows.chunks_exact_mut(stride) {
                    fill(&mut rng, &mut row[..dim], i8::MIN); // padding stays zero, as in the arena
                }
                let mut out = vec![i32::MIN; rows_n + 3];
                assert_eq!(kernel.dot_rows(&q, &rows, &mut out), rows_n);
                for (r, row) in rows.chunks_exact(stride).enumerate() {
                    assert_eq!(
                        out[r],
                        dot_i8_scalar(q.codes(), row),
                        "{kernel:?} dim={dim} rows={rows_n} r={r}"
                    );
                }
                assert!(out[rows_n..].iter().all(|&o| o == i32::MIN), "wrote past the rows");
                // A shorter `out` bounds the count too.
                if rows_n > 1 {
                    assert_eq!(kernel.dot_rows(&q, &rows, &mut out[..1]), 1);
                }
            }
        }
        // Worst case for the sign trick and the VNNI bias: ±127 query, −128 rows.
        let q = QueryCodes::from_codes(&[-127i8; 384]).unwrap();
        let rows = [i8::MIN; 384 * 5];
        let mut out = [0i32; 5];
        kernel.dot_rows(&q, &rows, &mut out);
        assert_eq!(out, [384 * 127 * 128; 5], "{kernel:?}");
    }
}

#[test]
fn dot_f32_matches_scalar_within_rounding() {
    let mut rng = Rng::new(3);
    for kernel in Kernel::available() {
        for n in lengths() {
            let a: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let magnitude: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
            let tol = 1e-6 * magnitude + 1e-30;
            let got = kernel.dot_f32(&a, &b) as f64;
            assert!((got - exact).abs() <= tol, "{kernel:?} n={n}: {got} vs {exact}");
            assert!((dot_f32_scalar(&a, &b) as f64 - exact).abs() <= tol);
        }
    }
}

#[test]
fn quantization_is_symmetric_bounded_and_padded() {
    let mut rng = Rng::new(4);
    for dim in [1, 5, 64, 100, 384] {
        let v: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
        let mut codes = vec![1i8; code_stride(dim)];
        let scale = encode_into(&v, Quantization::PerVector, &mut codes).unwrap();
        assert_eq!(scale, per_vector_scale(&v));
        assert!(codes[..dim].iter().any(|&c| c.abs() == 127), "the largest component maps to ±127");
        assert!(codes[dim..].iter().all(|&c| c == 0), "padding is zero");
        for (x, c) in v.iter().zip(&codes) {
            assert!((x - *c as f32 * scale).abs() <= scale * 0.5 + 1e-6, "{x} vs {c}·{scale}");
        }
        // A global scale clips instead of reaching −128.
        let mut clipped = vec![0i8; code_stride(dim)];
        quantize_into(&v, scale / 4.0, &mut clipped);
        assert!(clipped.iter().all(|&c| c != i8::MIN));
    }
    let mut row = vec![0i8; 64];
    assert!(matches!(
        encode_into(&[1.0, f32::NAN], Quantization::PerVector, &mut row),
        Err(SearchError::NonFinite { index: 1, value }) if value.is_nan()
    ));
    assert!(matches!(
        encode_into(&[1.0, f32::INFINITY], Quantization::PerVector, &mut row),
        Err(SearchError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        encode_into(&[1.0], Quantization::PerVector, &mut row[..8]),
        Err(SearchError::BadLayout(_))
    ));
    assert!(matches!(
        encode_into(&[1.0], Quantization::Global { scale: 0.0 }, &mut row),
        Err(SearchError::BadLayout(_))
    ));
    // A zero vector encodes to zeros with scale 0 (it then scores 0 against everything).
    assert_eq!(encode_into(&[0.0; 3], Quantization::PerVector, &mut row), Ok(0.0));
    assert!(row.iter().all(|&c| c == 0));
}

#[test]
fn query_codes_keep_their_invariants() {
    assert!(matches!(QueryCodes::from_codes(&[1, -128, 3]), Err(SearchError::CodeOutOfRange { index: 1 })));
    let q = QueryCodes::from_codes(&[1, -127, 3]).unwrap();
    assert_eq!((q.stride(), q.dim(), q.sum()), (64, 3, -123));
    let mut q = QueryCodes::new();
    q.encode(&[0.5, -1.0, 0.25], 3).unwrap();
    assert_eq!(&q.codes()[..4], &[64, -127, 32, 0]);
    assert_eq!(q.sum(), 64 - 127 + 32);
    // A refused query leaves the previous one intact.
    assert!(q.encode(&[f32::NAN, 0.0, 0.0], 3).is_err());
    assert_eq!(&q.codes()[..3], &[64, -127, 32]);
}
