//! The portable scalar backend: the oracle every ISA backend is tested against.
//!
//! Written as plain indexed loops with no `unsafe`, no reassociation tricks and `i32`
//! accumulators, so its results are the definition of correct. The gathers are the strided
//! kernels (row `r` at `w[r * stride ..]`, bounds-checked by `check::row`); the unstrided
//! `gemv_rows_i8` / `gemv_t_rows_i8` are the trait's provided forms with `stride = cols`.

use crate::{check, Kernels, MAX_ACC_TERMS};

/// The scalar oracle backend (always compiled).
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

#[inline]
fn dot_scalar(a: &[i8], b: &[i8]) -> i32 {
    let mut acc: i32 = 0;
    for i in 0..a.len() {
        acc += a[i] as i32 * b[i] as i32;
    }
    acc
}

/// Round half away from zero, then clamp to the int8 range used for activations.
#[inline]
pub(crate) fn quantize_one(v: f32, inv_scale: f32) -> i8 {
    if !v.is_finite() {
        return 0;
    }
    let r = round_half_away(v * inv_scale);
    if r >= 127.0 {
        127
    } else if r <= -127.0 {
        -127
    } else {
        r as i8
    }
}

/// `roundf` (half away from zero) without depending on std: `trunc(v)` and a comparison
/// of the exact fractional part `v - trunc(v)` against 0.5.
#[inline]
pub(crate) fn round_half_away(v: f32) -> f32 {
    // |v| < 2^23 here in practice; larger values are already integers.
    if v.is_nan() || v.abs() >= 8_388_608.0 {
        return v;
    }
    let t = (v as i32) as f32; // truncation toward zero, exact for |v| < 2^23
    let frac = v - t; // exact (Sterbenz)
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// Absolute maximum over the finite entries (0 when there are none).
#[inline]
pub(crate) fn absmax_finite(x: &[f32]) -> f32 {
    let mut m = 0.0f32;
    for &v in x {
        let a = v.abs();
        if a.is_finite() && a > m {
            m = a;
        }
    }
    m
}

impl Kernels for Scalar {
    const NAME: &'static str = "scalar";

    fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        assert_eq!(a.len(), b.len(), "dot_i8: length mismatch");
        assert!(a.len() <= MAX_ACC_TERMS, "dot_i8: length exceeds MAX_ACC_TERMS");
        dot_scalar(a, b)
    }

    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        assert_eq!(x.len(), cols, "gemv_i8: x length != cols");
        assert_eq!(w.len(), y.len() * cols, "gemv_i8: w length != rows * cols");
        assert!(cols <= MAX_ACC_TERMS, "gemv_i8: cols exceeds MAX_ACC_TERMS");
        for i in 0..y.len() {
            y[i] = dot_scalar(&w[i * cols..(i + 1) * cols], x);
        }
    }

    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows_strided(stride, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        for j in 0..rows.len() {
            y[j] = dot_scalar(check::row(w, stride, cols, rows[j]), x);
        }
    }

    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if !check::gemv_t_rows_strided(stride, cols, rows, c, y) {
            return;
        }
        for j in 0..rows.len() {
            let row = check::row(w, stride, cols, rows[j]);
            let cj = c[j] as i32;
            for k in 0..cols {
                y[k] += cj * row[k] as i32;
            }
        }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        assert_eq!(x.len(), q.len(), "quantize_sym_i8: length mismatch");
        let absmax = absmax_finite(x);
        if absmax == 0.0 {
            q.fill(0);
            return 0.0;
        }
        let inv = 127.0 / absmax;
        for i in 0..x.len() {
            q[i] = quantize_one(x[i], inv);
        }
        absmax / 127.0
    }
}
