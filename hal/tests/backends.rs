//! The differential suite (`kernel_suite!`) for every ISA backend compiled for this target,
//! larger shapes than the proptest ranges (model-sized rows, and many short rows with row
//! lists that exercise the grouped reductions and the stream / gather prefetch paths), the
//! panic contract, and the native selection.
//!
//! x86-64: `Avx2`, `Avx512Vnni` (each skipped with a message when the CPU lacks it) and the
//! run-time dispatching `x86::Auto`. aarch64 (run under `qemu-aarch64` by `test.sh`, once
//! with `-cpu max` and once with `-cpu cortex-a53`, which has no `dotprod`): `Neon`,
//! `NeonDot` (skipped without `dotprod`) and `arm::Auto`.

#![allow(unused_imports)]

use spark_hal::testing::pattern_i8;
use spark_hal::{native_backend_name, Kernels, Native, Scalar};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use spark_hal::x86::avx2::Avx2;
    use spark_hal::x86::avx512vnni::Avx512Vnni;
    spark_hal::kernel_suite!(avx2_suite, super::Avx2, available = super::Avx2::available());
    spark_hal::kernel_suite!(avx512vnni_suite, super::Avx512Vnni, available = super::Avx512Vnni::available());
    spark_hal::kernel_suite!(auto_suite, spark_hal::x86::Auto);
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use spark_hal::arm::neon::{Neon, NeonDot};
    spark_hal::kernel_suite!(neon_suite, super::Neon);
    spark_hal::kernel_suite!(neon_dot_suite, super::NeonDot, available = super::NeonDot::available());
    spark_hal::kernel_suite!(auto_suite, spark_hal::arm::Auto);
}

fn v(len: usize, seed: u32) -> Vec<i8> {
    pattern_i8(len, seed).collect()
}

/// Every kernel of `B` against the oracle on model-sized shapes.
fn big_shapes<B: Kernels>() {
    for &(rows, cols) in &[(37usize, 1000usize), (8, 2304), (3, 4095), (64, 512), (17, 1)] {
        let w = v(rows * cols, (rows * 31 + cols) as u32);
        let x = v(cols, cols as u32);
        let (mut y0, mut y1) = (vec![0i32; rows], vec![1i32; rows]);
        Scalar::gemv_i8(&w, cols, &x, &mut y0);
        B::gemv_i8(&w, cols, &x, &mut y1);
        assert_eq!(y0, y1, "{} gemv {rows}x{cols}", B::NAME);
        let idx: Vec<u32> = (0..rows as u32 * 2 + 3).map(|i| (i * 7 + 3) % rows as u32).collect();
        let (mut z0, mut z1) = (vec![0i32; idx.len()], vec![1i32; idx.len()]);
        Scalar::gemv_rows_i8(&w, cols, &idx, &x, &mut z0);
        B::gemv_rows_i8(&w, cols, &idx, &x, &mut z1);
        assert_eq!(z0, z1, "{} gemv_rows {rows}x{cols}", B::NAME);
        let c = v(idx.len(), 77);
        let (mut t0, mut t1) = (vec![-5i32; cols], vec![-5i32; cols]);
        Scalar::gemv_t_rows_i8(&w, cols, &idx, &c, &mut t0);
        B::gemv_t_rows_i8(&w, cols, &idx, &c, &mut t1);
        assert_eq!(t0, t1, "{} gemv_t_rows {rows}x{cols}", B::NAME);
        assert_eq!(Scalar::dot_i8(&w[..cols], &x), B::dot_i8(&w[..cols], &x));
        let xf: Vec<f32> = w[..cols].iter().map(|&q| q as f32 * 0.013 + 0.25).collect();
        let (mut q0, mut q1) = (vec![0i8; cols], vec![0i8; cols]);
        let s0 = Scalar::quantize_sym_i8(&xf, &mut q0);
        let s1 = B::quantize_sym_i8(&xf, &mut q1);
        assert_eq!((s0.to_bits(), q0), (s1.to_bits(), q1), "{} quantize {cols}", B::NAME);
    }
}

/// Row lists that exercise every prefetch and grouping path: contiguous streams, runs of
/// 1-5 consecutive rows between gaps (a row becomes part of a stream after 3 predecessors),
/// repeats, descending order, a scattered selection, and the rows at the very end of `w`.
fn row_lists(n_rows: usize) -> Vec<Vec<u32>> {
    let n = n_rows as u32;
    let mut lists = vec![
        (0..n).collect::<Vec<u32>>(),
        (0..n).rev().collect(),
        (0..n).step_by(3).collect(),
        (0..n).filter(|i| i.wrapping_mul(2654435761) >> 28 < 2).collect(),
        vec![n - 1; 21],
        (n.saturating_sub(9)..n).chain(0..n.min(7)).collect(),
    ];
    // Runs of length 1, 2, 3, 4, 5, 1, 2, ... separated by gaps of 2 rows.
    let mut runs = Vec::new();
    let (mut at, mut len) = (0u32, 1u32);
    while at + len <= n {
        runs.extend(at..at + len);
        at += len + 2;
        len = len % 5 + 1;
    }
    lists.push(runs);
    lists
}

/// Many rows (the 16-row reductions, 4- and 8-row groups of `gemv_t_rows`, gather prefetch
/// distances longer and shorter than the list) at short and long row lengths, with `w`
/// starting at every offset modulo 64 inside its allocation.
fn many_rows<B: Kernels>() {
    let shapes: &[(usize, usize)] = &[
        (4096, 128),
        (1030, 256),
        (90, 255),
        (700, 257),
        (600, 64),
        (513, 1),
        (300, 17),
        (257, 63),
        (200, 65),
        (130, 192),
        (129, 200),
        (100, 320),
        (40, 2304),
        (33, 1280),
    ];
    for (s, &(rows, cols)) in shapes.iter().enumerate() {
        let off = (s * 23) % 64;
        let buf = v(rows * cols + off + 7, (rows * 7 + cols) as u32);
        let w = &buf[off..off + rows * cols];
        let x = v(cols, cols as u32 + 5);
        let (mut y0, mut y1) = (vec![0i32; rows], vec![9i32; rows]);
        Scalar::gemv_i8(w, cols, &x, &mut y0);
        B::gemv_i8(w, cols, &x, &mut y1);
        assert_eq!(y0, y1, "{} gemv {rows}x{cols} offset {off}", B::NAME);
        for (l, idx) in row_lists(rows).iter().enumerate() {
            let (mut z0, mut z1) = (vec![0i32; idx.len()], vec![1i32; idx.len()]);
            Scalar::gemv_rows_i8(w, cols, idx, &x, &mut z0);
            B::gemv_rows_i8(w, cols, idx, &x, &mut z1);
            assert_eq!(z0, z1, "{} gemv_rows {rows}x{cols} list {l} ({} rows)", B::NAME, idx.len());
            let c = v(idx.len(), (l * 13 + s) as u32);
            let (mut t0, mut t1) = (vec![3i32; cols], vec![3i32; cols]);
            Scalar::gemv_t_rows_i8(w, cols, idx, &c, &mut t0);
            B::gemv_t_rows_i8(w, cols, idx, &c, &mut t1);
            assert_eq!(t0, t1, "{} gemv_t_rows {rows}x{cols} list {l} ({} rows)", B::NAME, idx.len());
        }
        // Every partial group size at the end of a list (1..=17 rows).
        for m in 1..=17.min(rows) {
            let idx: Vec<u32> = (0..m as u32).map(|i| (i * 5) % rows as u32).collect();
            let c = vec![-128i8; m];
            let (mut t0, mut t1) = (vec![0i32; cols], vec![0i32; cols]);
            Scalar::gemv_t_rows_i8(w, cols, &idx, &c, &mut t0);
            B::gemv_t_rows_i8(w, cols, &idx, &c, &mut t1);
            assert_eq!(t0, t1, "{} gemv_t_rows {rows}x{cols} first {m} rows", B::NAME);
            let (mut z0, mut z1) = (vec![0i32; m], vec![1i32; m]);
            Scalar::gemv_rows_i8(w, cols, &idx, &x, &mut z0);
            B::gemv_rows_i8(w, cols, &idx, &x, &mut z1);
            assert_eq!(z0, z1, "{} gemv_rows {rows}x{cols} first {m} rows", B::NAME);
        }
        // Extreme values through the grouped paths: all -128 weights and activations.
        let wm = vec![-128i8; rows.min(40) * cols];
        let xm = vec![-128i8; cols];
        let (mut y0, mut y1) = (vec![0i32; rows.min(40)], vec![0i32; rows.min(40)]);
        Scalar::gemv_i8(&wm, cols, &xm, &mut y0);
        B::gemv_i8(&wm, cols, &xm, &mut y1);
        assert_eq!(y0, y1, "{} gemv -128 {rows}x{cols}", B::NAME);
    }
}

/// Bundled layouts (`[K2 (k2) | pad | V (d) | pad]` records of `stride` bytes, a multiple of
/// 64 as the engine lays them out, or odd) with many records: both strided gathers over
/// the K2 view (`&bundle[..]`) and the V view (`&bundle[off_v..]`, its length not a multiple
/// of the stride, the last row ending at its end), every list of [`row_lists`] (streams,
/// runs, repeats, scattered selections: all the prefetch and grouping paths), with the
/// bundle starting at several offsets modulo 64.
fn bundles<B: Kernels>() {
    // (records, k2 cols, V cols, stride)
    let shapes: &[(usize, usize, usize, usize)] = &[
        (2048, 64, 128, 192),    // attention-like K2 / V rows, stride = k2 + d
        (1200, 128, 256, 448),   // padded records
        (600, 230, 256, 512),    // K2 rows below the grouped threshold, V at it
        (300, 1024, 1280, 2368), // grouped paths, rows over 1 KiB
        (64, 2176, 2304, 4544),  // gemma-like d = 2304, r = 128
        (40, 4097, 4100, 8256),  // rows over 4096
        (500, 17, 33, 53),       // odd everything
        (257, 255, 257, 577),    // odd, grouped V
    ];
    for (s, &(n, k2, d, stride)) in shapes.iter().enumerate() {
        let off_v = k2 + (stride - k2 - d) / 2;
        let base = (s * 23) % 64;
        let buf = v(base + n * stride + 5, (n * 7 + stride) as u32);
        let bundle = &buf[base..base + n * stride];
        let views: [(&[i8], usize); 2] =
            [(&bundle[..(n - 1) * stride + k2], k2), (&bundle[off_v..off_v + (n - 1) * stride + d], d)];
        for (part, &(w, cols)) in views.iter().enumerate() {
            let x = v(cols, (cols + part) as u32);
            for (l, idx) in row_lists(n).iter().enumerate() {
                let (mut z0, mut z1) = (vec![0i32; idx.len()], vec![1i32; idx.len()]);
                Scalar::gemv_rows_strided_i8(w, stride, cols, idx, &x, &mut z0);
                B::gemv_rows_strided_i8(w, stride, cols, idx, &x, &mut z1);
                assert_eq!(z0, z1, "{} gemv_rows_strided {n}x{cols}/{stride} part {part} list {l}", B::NAME);
                let c = v(idx.len(), (l * 13 + s) as u32);
                let (mut t0, mut t1) = (vec![3i32; cols], vec![3i32; cols]);
                Scalar::gemv_t_rows_strided_i8(w, stride, cols, idx, &c, &mut t0);
                B::gemv_t_rows_strided_i8(w, stride, cols, idx, &c, &mut t1);
                assert_eq!(t0, t1, "{} gemv_t_rows_strided {n}x{cols}/{stride} part {part} list {l}", B::NAME);
            }
            // Every partial group size at the end of a list, with extreme coefficients.
            for m in 1..=17.min(n) {
                let idx: Vec<u32> = (0..m as u32).map(|i| (n as u32 - 1) - (i * 5) % n as u32).collect();
                let c = vec![-128i8; m];
                let (mut t0, mut t1) = (vec![0i32; cols], vec![0i32; cols]);
                Scalar::gemv_t_rows_strided_i8(w, stride, cols, &idx, &c, &mut t0);
                B::gemv_t_rows_strided_i8(w, stride, cols, &idx, &c, &mut t1);
                assert_eq!(t0, t1, "{} gemv_t_rows_strided {n}x{cols}/{stride} first {m} rows", B::NAME);
                let (mut z0, mut z1) = (vec![0i32; m], vec![1i32; m]);
                Scalar::gemv_rows_strided_i8(w, stride, cols, &idx, &x, &mut z0);
                B::gemv_rows_strided_i8(w, stride, cols, &idx, &x, &mut z1);
                assert_eq!(z0, z1, "{} gemv_rows_strided {n}x{cols}/{stride} first {m} rows", B::NAME);
            }
        }
        // Extreme values: all -128 in both parts, other values in the padding.
        let mut ext = buf[base..base + 40.min(n) * stride].to_vec();
        for r in ext.chunks_exact_mut(stride) {
            r[..k2].fill(-128);
            r[off_v..off_v + d].fill(-128);
        }
        let m = 40.min(n);
        let w = &ext[off_v..off_v + (m - 1) * stride + d];
        let idx: Vec<u32> = (0..m as u32).rev().collect();
        let (mut z0, mut z1) = (vec![0i32; m], vec![1i32; m]);
        Scalar::gemv_rows_strided_i8(w, stride, d, &idx, &vec![-128; d], &mut z0);
        B::gemv_rows_strided_i8(w, stride, d, &idx, &vec![-128; d], &mut z1);
        assert_eq!(z0, z1, "{} gemv_rows_strided -128 {n}x{d}/{stride}", B::NAME);
        assert!(z1.iter().all(|&y| y == d as i32 * 16384));
        let (mut t0, mut t1) = (vec![0i32; d], vec![0i32; d]);
        Scalar::gemv_t_rows_strided_i8(w, stride, d, &idx, &vec![-128; m], &mut t0);
        B::gemv_t_rows_strided_i8(w, stride, d, &idx, &vec![-128; m], &mut t1);
        assert_eq!(t0, t1, "{} gemv_t_rows_strided -128 {n}x{d}/{stride}", B::NAME);
    }
}

#[test]
fn native_big_shapes() {
    println!("native backend: {}", native_backend_name());
    big_shapes::<Native>();
    many_rows::<Native>();
    bundles::<Native>();
}

#[test]
fn scalar_many_rows_self_check() {
    // The row lists and shapes themselves are valid (the oracle against itself).
    many_rows::<Scalar>();
    bundles::<Scalar>();
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_big_shapes() {
    use spark_hal::x86::{avx2::Avx2, avx512vnni::Avx512Vnni};
    if Avx2::available() {
        big_shapes::<Avx2>();
        many_rows::<Avx2>();
        bundles::<Avx2>();
    } else {
        eprintln!("skipped: avx2 not supported on this CPU");
    }
    if Avx512Vnni::available() {
        big_shapes::<Avx512Vnni>();
        many_rows::<Avx512Vnni>();
        bundles::<Avx512Vnni>();
    } else {
        eprintln!("skipped: avx512-vnni not supported on this CPU");
    }
}

#[cfg(target_arch = "aarch64")]
#[test]
fn arm_big_shapes() {
    use spark_hal::arm::neon::{Neon, NeonDot};
    big_shapes::<Neon>();
    many_rows::<Neon>();
    bundles::<Neon>();
    if NeonDot::available() {
        big_shapes::<NeonDot>();
        many_rows::<NeonDot>();
        bundles::<NeonDot>();
    } else {
        eprintln!("skipped: neon-sdot not supported on this CPU");
    }
}

#[test]
fn native_selection_reports_what_runs() {
    let name = native_backend_name();
    println!("native backend: {name}");
    #[cfg(feature = "force-scalar")]
    assert_eq!(name, "scalar");
    #[cfg(all(target_arch = "x86_64", not(feature = "force-scalar")))]
    {
        let expect = if spark_hal::x86::avx512vnni::Avx512Vnni::available() {
            "avx512-vnni"
        } else if spark_hal::x86::avx2::Avx2::available() {
            "avx2"
        } else {
            "scalar"
        };
        assert_eq!(name, expect);
    }
    #[cfg(all(target_arch = "aarch64", not(feature = "force-scalar")))]
    {
        let expect = if spark_hal::arm::neon::NeonDot::available() { "neon-sdot" } else { "neon" };
        assert_eq!(name, expect);
    }
}

#[test]
#[should_panic(expected = "dot_i8: length mismatch")]
fn native_dot_length_mismatch_panics() {
    Native::dot_i8(&[1, 2, 3], &[1, 2]);
}

#[test]
#[should_panic(expected = "gemv_i8: w length != rows * cols")]
fn native_gemv_shape_panics() {
    Native::gemv_i8(&[0; 10], 4, &[0; 4], &mut [0; 3]);
}

#[test]
#[should_panic]
fn native_gemv_rows_bad_index_panics() {
    Native::gemv_rows_i8(&[0; 64], 16, &[0, 4], &[0; 16], &mut [0; 2]);
}

#[test]
#[should_panic]
fn native_gemv_t_rows_bad_index_panics() {
    Native::gemv_t_rows_i8(&[0; 64], 16, &[1, 2, 3, 4, 0], &[1; 5], &mut [0; 16]);
}

#[test]
#[should_panic(expected = "gemv_rows_strided_i8: stride < cols")]
fn native_gemv_rows_strided_stride_below_cols_panics() {
    Native::gemv_rows_strided_i8(&[0; 64], 15, 16, &[0], &[0; 16], &mut [0; 1]);
}

#[test]
#[should_panic(expected = "gemv_t_rows_strided_i8: stride < cols")]
fn native_gemv_t_rows_strided_stride_below_cols_panics() {
    Native::gemv_t_rows_strided_i8(&[0; 64], 15, 16, &[0], &[1], &mut [0; 16]);
}

#[test]
#[should_panic]
fn native_gemv_rows_strided_row_past_the_end_panics() {
    // Row 2 is w[40..56]: one byte past the 55-byte view.
    Native::gemv_rows_strided_i8(&[0; 55], 20, 16, &[0, 1, 2], &[0; 16], &mut [0; 3]);
}

#[test]
#[should_panic]
fn native_gemv_t_rows_strided_row_past_the_end_panics() {
    Native::gemv_t_rows_strided_i8(&[0; 55], 20, 16, &[2, 0, 1, 0, 1], &[1; 5], &mut [0; 16]);
}
