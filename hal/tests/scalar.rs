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

/// Named strided values: records `[row | pad]` of 3 + 2 bytes, viewed from offset 1.
#[test]
fn strided_named_values() {
    let buf: [i8; 12] = [99, 1, 2, 3, 99, 99, -4, 5, -6, 99, 99, 7];
    let w = &buf[1..9]; // rows [1, 2, 3] and [-4, 5, -6]; the view ends with row 1
    let mut y = [0i32; 3];
    Scalar::gemv_rows_strided_i8(w, 5, 3, &[1, 0, 1], &[1, -1, 2], &mut y);
    assert_eq!(y, [-4 - 5 - 12, 1 - 2 + 6, -21]);
    let mut y = [10i32; 3];
    Scalar::gemv_t_rows_strided_i8(w, 5, 3, &[0, 1], &[2, -1], &mut y);
    assert_eq!(y, [10 + 2 + 4, 10 + 4 - 5, 10 + 6 + 6]);
    // cols 0: y zero-filled, row indices not looked at.
    let mut y = [5i32; 2];
    Scalar::gemv_rows_strided_i8(&[], 0, 0, &[7, 1_000], &[], &mut y);
    assert_eq!(y, [0, 0]);
}

#[test]
#[should_panic(expected = "gemv_rows_strided_i8: stride < cols")]
fn strided_stride_below_cols_panics() {
    Scalar::gemv_rows_strided_i8(&[0; 16], 3, 4, &[0], &[0; 4], &mut [0]);
}

#[test]
#[should_panic(expected = "gemv_t_rows_strided_i8: stride < cols")]
fn strided_t_stride_below_cols_panics() {
    Scalar::gemv_t_rows_strided_i8(&[0; 16], 3, 4, &[0], &[1], &mut [0; 4]);
}

#[test]
#[should_panic]
fn strided_row_past_the_end_panics() {
    // Row 1 is w[5..8]: one byte past the 7-byte view.
    Scalar::gemv_rows_strided_i8(&[0; 7], 5, 3, &[0, 1], &[0; 3], &mut [0; 2]);
}

#[test]
#[should_panic]
fn strided_t_row_past_the_end_panics() {
    Scalar::gemv_t_rows_strided_i8(&[0; 7], 5, 3, &[1], &[1], &mut [0; 3]);
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

    /// The strided gathers against the i64 reference, reading row `r` at `r * stride` of a
    /// view that starts `off` bytes into the buffer and ends where its last row ends, and
    /// with `stride == cols` against the unstrided forms.
    #[test]
    fn scalar_strided_kernels_match_reference(n_rows in 1usize..8, cols in 0usize..70, pad in 0usize..70,
                                              off in 0usize..70,
                                              buf in proptest::collection::vec(any::<i8>(), 8 * 140 + 70),
                                              x in proptest::collection::vec(any::<i8>(), 70),
                                              idx in proptest::collection::vec(0u32..8, 0..12),
                                              c in proptest::collection::vec(any::<i8>(), 12),
                                              init in any::<i16>()) {
        let stride = cols + pad;
        let w = &buf[off..off + (n_rows - 1) * stride + cols];
        let x = &x[..cols];
        let idx: Vec<u32> = idx.iter().map(|&i| i % n_rows as u32).collect();
        let row = |r: u32| &w[r as usize * stride..r as usize * stride + cols];
        let mut yr = vec![7i32; idx.len()];
        Scalar::gemv_rows_strided_i8(w, stride, cols, &idx, x, &mut yr);
        for (j, &r) in idx.iter().enumerate() {
            prop_assert_eq!(yr[j] as i64, dot_ref(row(r), x));
        }
        let c = &c[..idx.len()];
        let mut yt = vec![init as i32; cols];
        Scalar::gemv_t_rows_strided_i8(w, stride, cols, &idx, c, &mut yt);
        for k in 0..cols {
            let e: i64 = init as i64 + idx.iter().zip(c).map(|(&r, &cj)| cj as i64 * row(r)[k] as i64).sum::<i64>();
            prop_assert_eq!(yt[k] as i64, e);
        }
        // stride == cols: the unstrided kernels on the same rows, packed.
        let packed: Vec<i8> = (0..n_rows as u32).flat_map(|r| row(r).to_vec()).collect();
        let (mut a, mut b) = (vec![0i32; idx.len()], vec![1i32; idx.len()]);
        Scalar::gemv_rows_i8(&packed, cols, &idx, x, &mut a);
        Scalar::gemv_rows_strided_i8(&packed, cols, cols, &idx, x, &mut b);
        prop_assert_eq!(&a, &yr);
        prop_assert_eq!(&b, &yr);
        let (mut a, mut b) = (vec![init as i32; cols], vec![init as i32; cols]);
        Scalar::gemv_t_rows_i8(&packed, cols, &idx, c, &mut a);
        Scalar::gemv_t_rows_strided_i8(&packed, cols, cols, &idx, c, &mut b);
        prop_assert_eq!(&a, &yt);
        prop_assert_eq!(&b, &yt);
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
