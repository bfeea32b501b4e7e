//! The differential test suite for kernel backends.
//!
//! [`kernel_suite!`](crate::kernel_suite) expands to a test module that checks one backend
//! bit-exact against the [`Scalar`](crate::Scalar) oracle: proptest over shapes and values
//! plus named edge cases (length 0, 1, 15, 16, 17, 13*16, rows of all -127 and all -128,
//! max-length rows, quantization ties and non-finite values on SIMD-length vectors). A new
//! ISA backend gets the whole suite with one line:
//!
//! ```ignore
//! spark_hal::kernel_suite!(neon_suite, spark_hal::arm::neon::Neon);
//! // A backend that needs a CPU feature: its tests print that they skipped where it is missing.
//! use spark_hal::arm::neon::NeonDot;
//! spark_hal::kernel_suite!(dot_suite, super::NeonDot, available = super::NeonDot::available());
//! ```
//!
//! The calling crate needs `proptest` as a dev-dependency.

/// Named lengths every kernel is checked at (tile = 16 bytes; 64-byte vectors full, short
/// and one over; the 128- and 256-byte steps of the AVX-512 row loops with every kind of
/// remainder; the `gemma2-2b` predictor row and a long row with a ragged end).
#[rustfmt::skip]
pub const EDGE_LENGTHS: &[usize] = &[
    0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192,
    13 * 16, 13 * 16 + 5, 255, 256, 257, 384 + 63, 1024, 2304 + 128 + 1,
];

/// A deterministic pseudo-random int8 vector (xorshift), for edge-case fixtures.
pub fn pattern_i8(len: usize, seed: u32) -> impl Iterator<Item = i8> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1) | 1;
    (0..len).map(move |_| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s >> 24) as u8 as i8
    })
}

/// Generate the bit-exact differential suite for backend `$backend` as module `$name`.
///
/// With `available = EXPR` every test first evaluates `EXPR` (e.g. a run-time CPU feature
/// check) and, when it is false, prints that the backend was skipped and passes. Paths in
/// `$backend` and `EXPR` resolve inside the generated module: use full paths or `super::`.
#[macro_export]
macro_rules! kernel_suite {
    ($name:ident, $backend:ty) => {
        $crate::kernel_suite!($name, $backend, available = true);
    };
    ($name:ident, $backend:ty, available = $avail:expr) => {
        #[cfg(test)]
        mod $name {
            #![allow(unused_imports)]
            use proptest::prelude::*;
            use $crate::testing::{pattern_i8, EDGE_LENGTHS};
            use $crate::{Kernels, Scalar, MAX_ACC_TERMS};
            type B = $backend;

            /// True (after printing why) when this machine cannot run the backend.
            fn skip() -> bool {
                static NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                let available: bool = $avail;
                if !available && !NOTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!("skipped: backend {} is not supported on this CPU", <B as Kernels>::NAME);
                }
                !available
            }

            fn vec_i8(len: usize, seed: u32) -> Vec<i8> {
                pattern_i8(len, seed).collect()
            }

            fn check_dot(a: &[i8], b: &[i8]) {
                assert_eq!(<B as Kernels>::dot_i8(a, b), Scalar::dot_i8(a, b), "dot_i8 len {}", a.len());
            }

            fn check_gemv(w: &[i8], cols: usize, x: &[i8], rows: usize) {
                let mut y0 = vec![0i32; rows];
                let mut y1 = vec![7i32; rows];
                Scalar::gemv_i8(w, cols, x, &mut y0);
                <B as Kernels>::gemv_i8(w, cols, x, &mut y1);
                assert_eq!(y0, y1, "gemv_i8 rows {rows} cols {cols}");
            }

            fn check_gemv_rows(w: &[i8], cols: usize, idx: &[u32], x: &[i8]) {
                let mut y0 = vec![0i32; idx.len()];
                let mut y1 = vec![-3i32; idx.len()];
                Scalar::gemv_rows_i8(w, cols, idx, x, &mut y0);
                <B as Kernels>::gemv_rows_i8(w, cols, idx, x, &mut y1);
                assert_eq!(y0, y1, "gemv_rows_i8 m {} cols {cols}", idx.len());
            }

            fn check_gemv_t_rows(w: &[i8], cols: usize, idx: &[u32], c: &[i8], init: i32) {
                let mut y0 = vec![init; cols];
                let mut y1 = vec![init; cols];
                Scalar::gemv_t_rows_i8(w, cols, idx, c, &mut y0);
                <B as Kernels>::gemv_t_rows_i8(w, cols, idx, c, &mut y1);
                assert_eq!(y0, y1, "gemv_t_rows_i8 m {} cols {cols}", idx.len());
            }

            fn check_quant(x: &[f32]) {
                let mut q0 = vec![0i8; x.len()];
                let mut q1 = vec![1i8; x.len()];
                let s0 = Scalar::quantize_sym_i8(x, &mut q0);
                let s1 = <B as Kernels>::quantize_sym_i8(x, &mut q1);
                assert_eq!(s0.to_bits(), s1.to_bits(), "quantize scale len {}", x.len());
                assert_eq!(q0, q1, "quantize values len {}", x.len());
            }

            #[test]
            fn edge_lengths_all_kernels() {
                if skip() {
                    return;
                }
                for (n, &len) in EDGE_LENGTHS.iter().enumerate() {
                    let a = vec_i8(len, n as u32);
                    let b = vec_i8(len, 1000 + n as u32);
                    check_dot(&a, &b);
                    let rows = 5;
                    let w = vec_i8(rows * len, 2000 + n as u32);
                    check_gemv(&w, len, &a, rows);
                    check_gemv_rows(&w, len, &[4, 0, 2, 2], &a);
                    check_gemv_rows(&w, len, &[], &a);
                    let c = vec_i8(4, 3000 + n as u32);
                    check_gemv_t_rows(&w, len, &[1, 3, 3, 0], &c, 11);
                    check_gemv_t_rows(&w, len, &[], &[], 0);
                    let xf: Vec<f32> = a.iter().map(|&v| v as f32 * 0.37 - 1.5).collect();
                    check_quant(&xf);
                }
            }

            #[test]
            fn extreme_values() {
                if skip() {
                    return;
                }
                for &len in EDGE_LENGTHS {
                    for &(va, vb) in &[(-127i8, -127i8), (-128, -128), (-128, 127), (127, 127)] {
                        let a = vec![va; len];
                        let b = vec![vb; len];
                        check_dot(&a, &b);
                        let w: Vec<i8> = [a.clone(), b.clone(), a.clone()].concat();
                        check_gemv(&w, len, &b, 3);
                        check_gemv_rows(&w, len, &[2, 1, 0], &a);
                        check_gemv_t_rows(&w, len, &[0, 1, 2], &[vb, va, -128], 0);
                    }
                }
            }

            #[test]
            // Rows of 131071 terms take hours under Miri; the same code paths run at the
            // edge lengths there.
            #[cfg_attr(miri, ignore)]
            fn max_length_rows() {
                if skip() {
                    return;
                }
                let len = MAX_ACC_TERMS;
                let a = vec![-128i8; len];
                check_dot(&a, &a);
                assert_eq!(<B as Kernels>::dot_i8(&a, &a), (len as i32) * 16384);
                let w = [vec![-128i8; len], vec_i8(len, 9)].concat();
                check_gemv(&w, len, &a, 2);
                check_gemv_rows(&w, len, &[1, 0], &a);
                // gemv_t_rows with the maximum number of rows (all the same row).
                let w1 = vec![-128i8; 8];
                let idx = vec![0u32; len];
                let c = vec![-128i8; len];
                check_gemv_t_rows(&w1, 8, &idx, &c, 0);
            }

            /// The elementwise kernels give the scalar oracle's bits: every length up to
            /// 70 (vector bodies and tails), values across both `tanh` branches, the clamps,
            /// subnormals and non-finite inputs.
            #[test]
            fn elementwise_f32_kernels() {
                if skip() {
                    return;
                }
                let mut vals: Vec<f32> = (0..600).map(|i| ((i as f32) - 300.0) * 0.037).collect();
                vals.extend([0.4, -0.4, 9.0, 10.0, -88.0, 89.0, 1e-40, -0.0, 1e30, f32::MAX]);
                vals.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE]);
                // Bit for bit; under Miri any NaN equals any NaN (Miri picks NaN payloads
                // at random, as Rust's float semantics allow).
                let same = |a: &[f32], b: &[f32]| {
                    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (cfg!(miri) && x.is_nan() && y.is_nan()))
                };
                for len in (0..70).chain([vals.len()]) {
                    let x = &vals[vals.len() - len..];
                    for cap in [1.0f32, 3.0, 30.0, 50.0] {
                        let (mut a, mut b) = (x.to_vec(), x.to_vec());
                        Scalar::softcap_f32(&mut a, cap);
                        <B as Kernels>::softcap_f32(&mut b, cap);
                        assert!(same(&a, &b), "softcap_f32 len {len} cap {cap}");
                    }
                    let acc: Vec<i32> = x.iter().map(|v| (v * 1000.0) as i32).collect();
                    let rs: Vec<f32> = x.iter().map(|v| v.abs().min(1e3) * 1e-3).collect();
                    for cap in [0.0f32, 3.0, 50.0] {
                        let (mut a, mut b) = (vec![0.0f32; len], vec![1.0f32; len]);
                        Scalar::scores_f32(&acc, 0.02, &rs, 0.0625, cap, &mut a);
                        <B as Kernels>::scores_f32(&acc, 0.02, &rs, 0.0625, cap, &mut b);
                        assert!(same(&a, &b), "scores_f32 len {len} cap {cap}");
                    }
                    for max in [0.0f32, 2.5, -3.0] {
                        let (mut a, mut b) = (x.to_vec(), x.to_vec());
                        Scalar::exp_shifted_f32(&mut a, max);
                        <B as Kernels>::exp_shifted_f32(&mut b, max);
                        assert!(same(&a, &b), "exp_shifted_f32 len {len} max {max}");
                    }
                }
            }

            /// `above_masks_f32` gives the oracle's bits: thresholds at, between and
            /// around the scores, NaN, both infinities, signed zeros and subnormals, every
            /// bit position, ragged tails and short mask buffers.
            #[test]
            fn above_masks_f32_kernel() {
                if skip() {
                    return;
                }
                let mut vals: Vec<f32> = (0..300).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.125).collect();
                vals.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-40, -1e-40, f32::MAX]);
                vals.extend([f32::MIN, 0.125, -0.125, f32::MIN_POSITIVE, 6.25, -6.25, 1.0, 1.0]);
                for rot in [0usize, 5, 17, 31] {
                    let mut x = vals.clone();
                    x.rotate_left(rot);
                    for theta in [0.0f32, -0.0, 0.125, -6.25, 6.25, 1e-40, f32::NEG_INFINITY, f32::INFINITY, f32::NAN] {
                        for len in [0usize, 31, 32, 33, 64, 95, x.len()] {
                            let n = len / 32;
                            for m in [n, n.saturating_sub(1), n + 2] {
                                let (mut a, mut b) = (vec![7u32; m], vec![7u32; m]);
                                Scalar::above_masks_f32(&x[..len], theta, &mut a);
                                <B as Kernels>::above_masks_f32(&x[..len], theta, &mut b);
                                assert_eq!(a, b, "above_masks_f32 len {len} masks {m} theta {theta} rot {rot}");
                            }
                        }
                    }
                }
            }

            /// `prefetch_rows` is a hint: rows outside the matrix, `cols = 0` and empty
            /// matrices are ignored without a fault, and a later row kernel over the same
            /// rows still equals the scalar oracle.
            #[test]
            fn prefetch_rows_is_harmless() {
                if skip() {
                    return;
                }
                let w = vec_i8(7 * 40, 3);
                let rows = [6u32, 0, 7, 1_000_000, u32::MAX, 3];
                <B as Kernels>::prefetch_rows(&w, 40, &rows);
                <B as Kernels>::prefetch_rows(&w, 0, &rows);
                <B as Kernels>::prefetch_rows::<i8>(&[], 40, &rows);
                <B as Kernels>::prefetch_rows(&[1.5f32; 9], 1, &rows);
                <B as Kernels>::prefetch_rows(&w[..5], 40, &rows);
                let x = vec_i8(40, 4);
                check_gemv_rows(&w, 40, &[6, 0, 3], &x);
                check_gemv_t_rows(&w, 40, &[6, 0, 3], &[5, -7, 127], 1);
            }

            #[test]
            fn quantize_edge_cases() {
                if skip() {
                    return;
                }
                check_quant(&[]);
                check_quant(&[0.0; 33]);
                check_quant(&[f32::NAN, 1.0, -2.0, f32::INFINITY, 0.5]);
                check_quant(&[f32::NEG_INFINITY; 17]);
                check_quant(&[1e-40, -1e-40, 0.0]);
                check_quant(&[0.5, -0.5, 1.5, -1.5, 2.5, 127.0, -127.0]);
                let halves: Vec<f32> = (-300..300).map(|i| i as f32 * 0.5).collect();
                check_quant(&halves);
                check_quant(&[f32::MAX, -f32::MAX, 1.0]);
                // Long vectors (SIMD paths, not just tails): exact ties at inv = 1 and 0.5,
                // non-finite values, and a denormal absmax whose inverse is +inf (0 * inf = NaN).
                let ties: Vec<f32> = (-254..=254).map(|i| i as f32 * 0.5).collect();
                check_quant(&ties);
                let ties2: Vec<f32> = (-254..=254).map(|i| i as f32).collect();
                check_quant(&ties2);
                let specials = [f32::NAN, 3.5, f32::INFINITY, -2.5, f32::NEG_INFINITY, 0.0, -0.0, 7.0];
                let mixed: Vec<f32> = (0..101).map(|i| specials[i % 8] * (1 + i / 8) as f32).collect();
                check_quant(&mixed);
                let tiny: Vec<f32> = (0..75).map(|i| [1e-40, 0.0, -1e-40, -0.0, 5e-41][i % 5]).collect();
                check_quant(&tiny);
            }

            proptest! {
                // (a few cases under Miri, which interprets every operation)
                #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

                #[test]
                fn prop_dot(a in proptest::collection::vec(any::<i8>(), 0..600), seed in any::<u32>()) {
                    if skip() {
                        return Ok(());
                    }
                    let b = vec_i8(a.len(), seed);
                    check_dot(&a, &b);
                }

                #[test]
                fn prop_gemv(rows in 0usize..9, cols in 0usize..300, seed in any::<u32>()) {
                    if skip() {
                        return Ok(());
                    }
                    let w = vec_i8(rows * cols, seed);
                    let x = vec_i8(cols, seed ^ 0x55);
                    check_gemv(&w, cols, &x, rows);
                }

                #[test]
                fn prop_gemv_rows(n_rows in 1usize..12, cols in 0usize..300,
                                  idx in proptest::collection::vec(any::<u32>(), 0..20), seed in any::<u32>()) {
                    if skip() {
                        return Ok(());
                    }
                    let w = vec_i8(n_rows * cols, seed);
                    let x = vec_i8(cols, seed ^ 0xAA);
                    let idx: Vec<u32> = idx.iter().map(|&i| i % n_rows as u32).collect();
                    check_gemv_rows(&w, cols, &idx, &x);
                }

                #[test]
                fn prop_gemv_t_rows(n_rows in 1usize..12, cols in 0usize..300,
                                    idx in proptest::collection::vec(any::<u32>(), 0..20),
                                    init in -1000i32..1000, seed in any::<u32>()) {
                    if skip() {
                        return Ok(());
                    }
                    let w = vec_i8(n_rows * cols, seed);
                    let idx: Vec<u32> = idx.iter().map(|&i| i % n_rows as u32).collect();
                    let c = vec_i8(idx.len(), seed ^ 0x33);
                    check_gemv_t_rows(&w, cols, &idx, &c, init);
                }

                #[test]
                fn prop_quantize(x in proptest::collection::vec(-1e6f32..1e6, 0..300)) {
                    if skip() {
                        return Ok(());
                    }
                    check_quant(&x);
                }
            }
        }
    };
}
