//! Random int8 weights for the benchmarks, built directly in huge-page-advised memory.

use crate::hugemem::HugeBytes;
use spark_core::format::{F32Slice, FfnBundle, QMatrix};
use std::io;

/// xorshift64* filler for random weights (fast: 8 bytes per step).
pub(super) struct Fill(pub(super) u64);

impl Fill {
    /// The next 64 random bits.
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// `n` uniform int8 values in [-127, 127], in a huge-page-advised buffer.
    pub(super) fn i8s(&mut self, n: usize) -> io::Result<HugeBytes> {
        let mut v = HugeBytes::zeroed(n)?;
        self.i8s_into(&mut v);
        Ok(v)
    }
    /// Fill `dst` with uniform int8 values in [-127, 127].
    pub(super) fn i8s_into(&mut self, dst: &mut [u8]) {
        for ch in dst.chunks_mut(8) {
            let w = self.next().to_le_bytes();
            for (o, &b) in ch.iter_mut().zip(&w) {
                *o = if b == 0x80 { 0x81 } else { b };
            }
        }
    }
    /// Standard normal-ish f32 (sum of four uniforms, scaled).
    pub(super) fn gauss(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let x = self.next();
                let s: f32 = (0..4).map(|i| ((x >> (16 * i)) & 0xFFFF) as f32 / 65536.0).sum::<f32>() - 2.0;
                s * 1.732
            })
            .collect()
    }
    /// Per-row scales (LE f32 bytes) around `base`.
    pub(super) fn scales(&mut self, rows: usize, base: f32) -> Vec<u8> {
        let mut v = vec![0; 4 * rows];
        self.scales_into(&mut v, base);
        v
    }
    /// Fill `dst` (a whole number of LE f32) with per-row scales around `base`.
    pub(super) fn scales_into(&mut self, dst: &mut [u8], base: f32) {
        for o in dst.chunks_exact_mut(4) {
            o.copy_from_slice(&(base * (0.75 + 0.5 * (self.next() >> 40) as f32 / (1u64 << 24) as f32)).to_le_bytes());
        }
    }
}

/// The centre of the random row scales of a matrix with `cols` columns (products of
/// about unit size for inputs of about unit size).
pub(super) fn matrix_scale(cols: usize) -> f32 {
    1.0 / (127.0 * (cols as f32).sqrt()) * 1.7
}

/// A random int8 matrix with row scales, both in one huge-page-advised buffer (as in a
/// model file: the scale gathers of a sparse layer then hit the same 2 MiB pages):
/// `data [rows, cols]`, padding to 64 bytes, `scales [rows]` (f32 little-endian).
pub(super) struct RandMatrix {
    mem: HugeBytes,
    rows: usize,
    cols: usize,
}

impl RandMatrix {
    pub(super) fn new(fill: &mut Fill, rows: usize, cols: usize) -> io::Result<Self> {
        let base = matrix_scale(cols);
        let at = (rows * cols).next_multiple_of(64);
        let mut mem = fill.i8s(at + 4 * rows)?;
        let scales = fill.scales(rows, base);
        mem[at..].copy_from_slice(&scales);
        Ok(RandMatrix { mem, rows, cols })
    }
    pub(super) fn data(&self) -> &[i8] {
        &self.mem.as_i8()[..self.rows * self.cols]
    }
    pub(super) fn scales(&self) -> &[u8] {
        &self.mem[(self.rows * self.cols).next_multiple_of(64)..]
    }
    pub(super) fn q(&self) -> QMatrix<'_> {
        QMatrix {
            data: self.data(),
            scales: F32Slice(self.scales()),
            rows: self.rows,
            cols: self.cols,
            stride: self.cols,
        }
    }
}

/// A Spark FFN's `K2` and `V` rows bundled as in a version 2 model file ([`FfnBundle`]
/// records `[K2 | pad | V | pad]`), with both parts' row scales, in one huge-page-advised
/// buffer: `records [f, stride]`, then `K2 scales [f]`, `V scales [f]`.
pub(super) struct RandBundle {
    mem: HugeBytes,
    rows: usize,
    b: FfnBundle,
}

impl RandBundle {
    pub(super) fn new(fill: &mut Fill, rows: usize, d: usize, r: usize) -> io::Result<Self> {
        let b = FfnBundle::of_dims(d, r);
        let k2_cols = b.k2_cols;
        let at = rows * b.stride;
        let mut mem = fill.i8s(at + 8 * rows)?;
        let k2s = fill.scales(rows, 1.0 / (127.0 * (k2_cols as f32).sqrt()) * 1.7);
        let vs = fill.scales(rows, 1.0 / (127.0 * (d as f32).sqrt()) * 1.7);
        mem[at..at + 4 * rows].copy_from_slice(&k2s);
        mem[at + 4 * rows..].copy_from_slice(&vs);
        Ok(RandBundle { mem, rows, b })
    }
    /// The `K2` part (`v == false`) or the `V` part of every record, as the model's
    /// `layer_matrix` gives them.
    pub(super) fn part(&self, v: bool) -> QMatrix<'_> {
        let (rows, b) = (self.rows, self.b);
        let at = rows * b.stride;
        let (off, cols, sc) = if v { (b.v_offset, b.v_cols, at + 4 * rows) } else { (0, b.k2_cols, at) };
        let data = &self.mem.as_i8()[off..at];
        QMatrix { data, scales: F32Slice(&self.mem[sc..sc + 4 * rows]), rows, cols, stride: b.stride }
    }
}
