//! Weight quantization for the converter (SPEC section 7): symmetric int8 per row.
//!
//! `w = q * scale_row`, `q` in [-127, 127], `scale_row = absmax_row / 127`, round half away
//! from zero. A row of zeros gets scale 0. Tested in `tests/format.rs` (round-trip error
//! bound) and used by every `.spark` the simulator writes.

/// Quantize a row-major `[rows, cols]` f32 matrix. Returns `(q, scales)`.
pub fn quantize_rows(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(w.len(), rows * cols, "quantize_rows: shape mismatch");
    let mut q = vec![0i8; rows * cols];
    let mut scales = vec![0f32; rows];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        if absmax == 0.0 || !absmax.is_finite() {
            continue;
        }
        let scale = absmax / 127.0;
        scales[r] = scale;
        for (c, &v) in row.iter().enumerate() {
            q[r * cols + c] = (v / scale).round().clamp(-127.0, 127.0) as i8;
        }
    }
    (q, scales)
}

/// Error summary of one quantized tensor: relative L2 error and max absolute error.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct QuantError {
    /// `||w - deq(q)|| / ||w||` (0 for an all-zero tensor).
    pub rel_l2: f64,
    /// `max |w - deq(q)|`.
    pub max_abs: f64,
}

/// Measure the error of a quantization produced by [`quantize_rows`].
pub fn quant_error(w: &[f32], q: &[i8], scales: &[f32], cols: usize) -> QuantError {
    let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f64);
    for (i, &v) in w.iter().enumerate() {
        let d = v as f64 - q[i] as f64 * scales[i / cols.max(1)] as f64;
        num += d * d;
        den += v as f64 * v as f64;
        max_abs = max_abs.max(d.abs());
    }
    QuantError { rel_l2: if den > 0.0 { (num / den).sqrt() } else { 0.0 }, max_abs }
}
