//! Shape checks shared by the scalar oracle, the ISA backends and the provided unstrided
//! gathers of [`Kernels`](crate::Kernels), with one set of conditions and panic messages,
//! so every backend rejects exactly the calls [`Scalar`](crate::Scalar) rejects. Row
//! indices are not checked by the shape checks: backends slice each listed row out of `w`
//! with safe indexing ([`row`], [`group`]) before any `unsafe` load, which panics on an
//! out-of-range index.
//!
//! Exercised through every backend's `kernel_suite!` run and the panic tests in
//! `tests/backends.rs`.
#![cfg_attr(
    not(any(spark_neon, spark_dsp, all(target_arch = "x86_64", any(feature = "std", target_feature = "avx2")))),
    allow(dead_code)
)]

use crate::MAX_ACC_TERMS;

#[inline]
pub(crate) fn dot(a: &[i8], b: &[i8]) {
    assert_eq!(a.len(), b.len(), "dot_i8: length mismatch");
    assert!(a.len() <= MAX_ACC_TERMS, "dot_i8: length exceeds MAX_ACC_TERMS");
}

#[inline]
pub(crate) fn gemv(w: &[i8], cols: usize, x: &[i8], y: &[i32]) {
    assert_eq!(x.len(), cols, "gemv_i8: x length != cols");
    assert_eq!(w.len(), y.len() * cols, "gemv_i8: w length != rows * cols");
    assert!(cols <= MAX_ACC_TERMS, "gemv_i8: cols exceeds MAX_ACC_TERMS");
}

/// The checks of the unstrided `gemv_rows_i8` (which then forwards with `stride = cols`).
#[inline]
pub(crate) fn gemv_rows(w: &[i8], cols: usize, rows: &[u32], x: &[i8], y: &[i32]) {
    assert_eq!(x.len(), cols, "gemv_rows_i8: x length != cols");
    assert_eq!(rows.len(), y.len(), "gemv_rows_i8: rows length != y length");
    assert!(cols <= MAX_ACC_TERMS, "gemv_rows_i8: cols exceeds MAX_ACC_TERMS");
    if cols != 0 {
        assert_eq!(w.len() % cols, 0, "gemv_rows_i8: w length not a multiple of cols");
    }
}

/// The checks of the unstrided `gemv_t_rows_i8` (which then forwards with `stride = cols`).
#[inline]
pub(crate) fn gemv_t_rows(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &[i32]) {
    assert_eq!(y.len(), cols, "gemv_t_rows_i8: y length != cols");
    assert_eq!(rows.len(), c.len(), "gemv_t_rows_i8: rows length != c length");
    assert!(rows.len() <= MAX_ACC_TERMS, "gemv_t_rows_i8: too many rows");
    if cols != 0 {
        assert_eq!(w.len() % cols, 0, "gemv_t_rows_i8: w length not a multiple of cols");
    }
}

/// The shape checks of `gemv_rows_strided_i8`; returns `false` when `cols == 0` (the
/// caller then zero-fills `y`, as the oracle does).
#[inline]
pub(crate) fn gemv_rows_strided(stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &[i32]) -> bool {
    assert!(cols <= stride, "gemv_rows_strided_i8: stride < cols");
    assert_eq!(x.len(), cols, "gemv_rows_strided_i8: x length != cols");
    assert_eq!(rows.len(), y.len(), "gemv_rows_strided_i8: rows length != y length");
    assert!(cols <= MAX_ACC_TERMS, "gemv_rows_strided_i8: cols exceeds MAX_ACC_TERMS");
    cols != 0
}

/// The shape checks of `gemv_t_rows_strided_i8`; returns `false` when `cols == 0`
/// (nothing to do).
#[inline]
pub(crate) fn gemv_t_rows_strided(stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &[i32]) -> bool {
    assert!(cols <= stride, "gemv_t_rows_strided_i8: stride < cols");
    assert_eq!(y.len(), cols, "gemv_t_rows_strided_i8: y length != cols");
    assert_eq!(rows.len(), c.len(), "gemv_t_rows_strided_i8: rows length != c length");
    assert!(rows.len() <= MAX_ACC_TERMS, "gemv_t_rows_strided_i8: too many rows");
    cols != 0
}

#[inline]
pub(crate) fn quantize(x: &[f32], q: &[i8]) {
    assert_eq!(x.len(), q.len(), "quantize_sym_i8: length mismatch");
}

/// Row `r` of a strided matrix view, `w[r*stride .. r*stride + cols]`, bounds-checked
/// (panics on an index whose row does not lie inside `w`, overflow included).
#[inline(always)]
pub(crate) fn row(w: &[i8], stride: usize, cols: usize, r: u32) -> &[i8] {
    let start = (r as usize).checked_mul(stride).expect("row index out of range");
    let end = start.checked_add(cols).expect("row index out of range");
    // (`w[start..end]`, not `w[start..][..cols]`: the generated x86 gathers of the second
    // form made Spark attention about 30 % slower whenever the cache sat on a 256-byte
    // boundary, docs/performance-history.md "Update 9")
    &w[start..end]
}

/// The rows listed in `rows` (1 to `G` of them), bounds-checked, as a group of `G` for the
/// grouped gather kernels: a partial group repeats its first row in the missing places
/// (the kernels give those a zero coefficient or never store their sums).
#[inline(always)]
#[cfg_attr(
    not(any(spark_mve, all(target_arch = "x86_64", any(feature = "std", target_feature = "avx2")))),
    allow(dead_code)
)]
pub(crate) fn group<'w, const G: usize>(w: &'w [i8], stride: usize, cols: usize, rows: &[u32]) -> [&'w [i8]; G] {
    debug_assert!(!rows.is_empty() && rows.len() <= G);
    let mut rp = [row(w, stride, cols, rows[0]); G];
    for (p, &r) in rp.iter_mut().zip(rows).skip(1) {
        *p = row(w, stride, cols, r);
    }
    rp
}
