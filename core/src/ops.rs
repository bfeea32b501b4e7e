//! The float and glue operations every block shares: GELU, RMSNorm, RoPE, the quantized
//! matvec and the sparse row output product (SPEC sections 3 and 7).
//!
//! Everything here is fixed-order `f32` code with `libm` and no fused multiply-add, so it
//! gives the same bits on every target; every integer product goes through one of the
//! `spark-hal` kernels. Tested through the blocks that use them (`ffn`, `attention`,
//! `session`), whose tests compare whole forward passes with the f32 oracle and across
//! backends (the workspace's `tests/` package).

use crate::exec::{self, Executor};
use crate::format::{F32Slice, QMatrix};
use spark_hal::math::tanh_f32;
use spark_hal::Kernels;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
#[inline]
pub fn gelu(x: f32) -> f32 {
    let x3 = x * x * x;
    let inner = SQRT_2_OVER_PI * (x + 0.044715 * x3);
    0.5 * x * (1.0 + tanh_f32(inner))
}

/// `out = x / sqrt(mean(x^2) + eps) * w`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: F32Slice<'_>, eps: f32) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    let inv = 1.0 / libm::sqrtf(ss / x.len() as f32 + eps);
    for i in 0..x.len() {
        out[i] = x[i] * inv * w.get(i);
    }
}

/// Rotate-half RoPE on one part of width `2 * cos.len()`.
#[inline]
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}

/// `out[i] = (W x)[i]`: quantize `x` into `xq[..cols]`, integer gemv, dequantize with both
/// scales (`acc * x_scale * row_scale`). Returns the activation scale; `xq` keeps the
/// quantized `x` for a following row gather. The gemv runs in row blocks on `e`
/// ([`exec::gemv`]).
pub fn matvec<K: Kernels, E: Executor>(
    e: &E,
    m: &QMatrix<'_>,
    x: &[f32],
    xq: &mut [i8],
    acc: &mut [i32],
    out: &mut [f32],
) -> f32 {
    let xq = &mut xq[..m.cols];
    let acc = &mut acc[..m.rows];
    debug_assert!(m.is_contiguous(), "matvec: a dense product needs contiguous rows");
    let xs = K::quantize_sym_i8(x, xq);
    exec::gemv::<K, E>(e, m.data, m.cols, xq, acc);
    K::dequantize_f32(acc, xs, &m.scales.0[..4 * m.rows], &mut out[..m.rows]);
    xs
}

/// `y = sum_j coef_j * W[rows[j]]` over the int8 rows of `w` (row `r` is
/// `w[r * stride..r * stride + cols]`: a plain matrix, or one part of bundled rows): the
/// coefficients are quantized to int8 with one scale, the rows whose int8 coefficient is 0
/// are dropped (they add exactly nothing), and one sparse vector-matrix kernel call reads
/// only the rows left, listed in `kept`. Returns how many rows it read (`kept[..len]`).
/// The product runs in parts on `e` ([`exec::gemv_t_rows`]), their partial vectors in
/// `acc[cols..]`.
#[allow(clippy::too_many_arguments)]
pub fn sparse_rows_out<K: Kernels, E: Executor>(
    e: &E,
    w: &[i8],
    stride: usize,
    cols: usize,
    rows: &[u32],
    coef: &[f32],
    xq: &mut [i8],
    kept: &mut [u32],
    acc: &mut [i32],
    y: &mut [f32],
) -> usize {
    let n = rows.len();
    let cs = K::quantize_sym_i8(coef, &mut xq[..n]);
    // Compact in list order: xq[..m] and kept[..m] are the non-zero coefficients and
    // their rows (m <= j, so the in-place moves never overwrite an unread entry).
    // Branch-free: every entry is written, the count advances only past non-zero ones.
    let (xq, kept) = (&mut xq[..n], &mut kept[..n]);
    let mut m = 0;
    for j in 0..n {
        let c = xq[j];
        xq[m] = c;
        kept[m] = rows[j];
        m += (c != 0) as usize;
    }
    let (acc, spare) = acc.split_at_mut(cols);
    acc.fill(0);
    exec::gemv_t_rows::<K, E>(e, w, stride, cols, &kept[..m], &xq[..m], acc, spare);
    for i in 0..cols {
        y[i] = acc[i] as f32 * cs;
    }
    m
}
