//! The differential suite (`kernel_suite!`) for every ISA backend compiled for this target,
//! larger shapes than the proptest ranges, the panic contract, and the native selection.
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

#[test]
fn native_big_shapes() {
    println!("native backend: {}", native_backend_name());
    big_shapes::<Native>();
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_big_shapes() {
    use spark_hal::x86::{avx2::Avx2, avx512vnni::Avx512Vnni};
    if Avx2::available() {
        big_shapes::<Avx2>();
    } else {
        eprintln!("skipped: avx2 not supported on this CPU");
    }
    if Avx512Vnni::available() {
        big_shapes::<Avx512Vnni>();
    } else {
        eprintln!("skipped: avx512-vnni not supported on this CPU");
    }
}

#[cfg(target_arch = "aarch64")]
#[test]
fn arm_big_shapes() {
    use spark_hal::arm::neon::{Neon, NeonDot};
    big_shapes::<Neon>();
    if NeonDot::available() {
        big_shapes::<NeonDot>();
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
