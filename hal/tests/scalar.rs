//! The scalar oracle against a naive `i64` reference, and the differential suite for
//! every backend compiled for this target.

use proptest::prelude::*;
use spark_hal::{Kernels, Scalar};

fn dot_ref(a: &[i8], b: &[i8]) -> i64 {
    a.iter().zip(b).map(|(&x, &y)| x as i64 * y as i64).sum()
}

/// Quantization reference in f64: round half away from zero of x * 127 / absmax.
fn quant_ref(x: &[f32]) -> (f32, Vec<i8>) {
    let absmax = x.iter().filter(|v| v.is_finite()).fold(0.0f32, |m, v| m.max(v.abs()));
    if absmax == 0.0 {
        return (0.0, vec![0; x.len()]);
    }
    let inv = 127.0f32 / absmax;
    let q = x
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return 0;
            }
            let p = (v * inv) as f64; // the product is the f32 product, as in the contract
            p.round().clamp(-127.0, 127.0) as i8 // f64::round is half away from zero
        })
        .collect();
    (absmax / 127.0, q)
}

#[test]
fn dot_named_values() {
    assert_eq!(Scalar::dot_i8(&[], &[]), 0);
    assert_eq!(Scalar::dot_i8(&[3], &[-4]), -12);
    assert_eq!(Scalar::dot_i8(&[-128, -128], &[-128, 127]), 16384 - 16256);
}

#[test]
fn quantize_named_values() {
    let mut q = [0i8; 4];
    let s = Scalar::quantize_sym_i8(&[0.0, 0.0, 0.0, 0.0], &mut q);
    assert_eq!((s, q), (0.0, [0; 4]));
    // absmax 254 -> inv 0.5: 1.0*0.5 = 0.5 rounds away from zero to 1; -3*0.5 = -1.5 -> -2.
    let s = Scalar::quantize_sym_i8(&[1.0, -3.0, 254.0, -254.0], &mut q);
    assert_eq!(s, 2.0);
    assert_eq!(q, [1, -2, 127, -127]);
}

#[test]
#[should_panic(expected = "length mismatch")]
fn dot_length_mismatch_panics() {
    Scalar::dot_i8(&[1, 2], &[1]);
}

proptest! {
    // (a few cases under Miri, which interprets every operation)
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

    #[test]
    fn scalar_dot_matches_i64(a in proptest::collection::vec(any::<i8>(), 0..500), s in any::<u64>()) {
        let b: Vec<i8> = a.iter().enumerate().map(|(i, _)| ((s >> (i % 57)) as u8) as i8).collect();
        prop_assert_eq!(Scalar::dot_i8(&a, &b) as i64, dot_ref(&a, &b));
    }

    #[test]
    fn scalar_gemv_kernels_match_reference(rows in 1usize..8, cols in 0usize..70,
                                           w in proptest::collection::vec(any::<i8>(), 8 * 70),
                                           x in proptest::collection::vec(any::<i8>(), 70),
                                           idx in proptest::collection::vec(0u32..8, 0..12),
                                           c in proptest::collection::vec(any::<i8>(), 12)) {
        let w = &w[..rows * cols];
        let x = &x[..cols];
        let mut y = vec![0i32; rows];
        Scalar::gemv_i8(w, cols, x, &mut y);
        for i in 0..rows {
            prop_assert_eq!(y[i] as i64, dot_ref(&w[i * cols..(i + 1) * cols], x));
        }
        let idx: Vec<u32> = idx.iter().map(|&i| i % rows as u32).collect();
        let mut yr = vec![0i32; idx.len()];
        Scalar::gemv_rows_i8(w, cols, &idx, x, &mut yr);
        for (j, &r) in idx.iter().enumerate() {
            prop_assert_eq!(yr[j], y[r as usize]);
        }
        let c = &c[..idx.len()];
        let mut yt = vec![5i32; cols];
        Scalar::gemv_t_rows_i8(w, cols, &idx, c, &mut yt);
        for k in 0..cols {
            let e: i64 = 5 + idx.iter().zip(c).map(|(&r, &cj)| cj as i64 * w[r as usize * cols + k] as i64).sum::<i64>();
            prop_assert_eq!(yt[k] as i64, e);
        }
    }

    #[test]
    fn scalar_quantize_matches_reference(x in proptest::collection::vec(prop_oneof![
            -1e4f32..1e4, Just(0.0f32), Just(f32::NAN), Just(0.5f32), Just(-0.5f32)], 0..200)) {
        let mut q = vec![0i8; x.len()];
        let s = Scalar::quantize_sym_i8(&x, &mut q);
        let (s_ref, q_ref) = quant_ref(&x);
        prop_assert_eq!(s.to_bits(), s_ref.to_bits());
        prop_assert_eq!(q, q_ref);
    }
}

// The oracle against itself: proves the suite runs; ISA backends add one line each.
spark_hal::kernel_suite!(scalar_suite, spark_hal::Scalar);

/// The scalar threshold masks against a plain per-score test.
#[test]
fn above_masks_match_a_per_score_test() {
    let vals = [0.5f32, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 2.0, 1e-40];
    let x: Vec<f32> = (0..100).map(|i| vals[(i * 7 + i / 9) % vals.len()]).collect();
    for theta in [0.0f32, 0.5, -2.0, f32::NAN] {
        let mut m = vec![0u32; 3];
        Scalar::above_masks_f32(&x, theta, &mut m);
        for (g, &bits) in m.iter().enumerate() {
            for j in 0..32 {
                let s = x[32 * g + j];
                let want = s.is_finite() && s > theta;
                assert_eq!(bits >> j & 1 == 1, want, "score {s} theta {theta}");
            }
        }
    }
}
