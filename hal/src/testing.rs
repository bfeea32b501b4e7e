//! The differential test suite for kernel backends.
//!
//! [`kernel_suite!`](crate::kernel_suite) expands to a test module that checks one backend
//! bit-exact against the [`Scalar`](crate::Scalar) oracle: the shared case table of this
//! module ([`cases`], checked by [`check_case`]: every kernel at the named edge lengths,
//! rows of all -127 / all -128 values, max-length rows, quantization ties and non-finite
//! values, the float kernels a backend may replace (`above_masks_f32`, `dequantize_f32`) on
//! fixtures with signed zeros, subnormals and non-finite values, the strided gathers on
//! bundled layouts ([`Case::Strided`]: paddings, views at an offset inside a bundle, long
//! rows), and [`RANDOM_CASES`] pseudo-random shapes), proptest over shapes and values
//! (including random seeds of the table's generator), and the elementwise float kernels. A
//! new ISA backend gets the whole suite with one line:
//!
//! ```ignore
//! spark_hal::kernel_suite!(neon_suite, spark_hal::arm::neon::Neon);
//! // A backend that needs a CPU feature: its tests print that they skipped where it is missing.
//! use spark_hal::arm::neon::NeonDot;
//! spark_hal::kernel_suite!(dot_suite, super::NeonDot, available = super::NeonDot::available());
//! ```
//!
//! The calling crate needs `proptest` as a dev-dependency.
//!
//! The case table and [`check_case`] are `no_std` and allocate nothing (the caller lends
//! the buffers, [`Buffers`]): the Cortex-M kernel test (`firmware/kernel-test`) runs the
//! same cases on the target, where proptest cannot run.

use crate::{Kernels, Scalar, MAX_ACC_TERMS};

/// Named lengths every kernel is checked at (tile = 16 bytes: 0, 1, tile - 1, tile,
/// tile + 1, 13 * tile; 64-byte vectors full, short and one over; the 128- and 256-byte
/// steps of the AVX-512 row loops with every kind of remainder; the `gemma2-2b` predictor
/// row and a long row with a ragged end; the AVX2 `gemv` row loops' bounds: short rows
/// up to 256, rows of 64-byte steps from 320 to 4096, and 4160 just past them).
#[rustfmt::skip]
pub const EDGE_LENGTHS: &[usize] = &[
    0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192,
    13 * 16, 13 * 16 + 5, 255, 256, 257, 320, 384 + 63, 1024, 2304 + 128 + 1, 4096, 4096 + 64,
];

/// Row lengths of [`Case::Strided`]: the [`EDGE_LENGTHS`] and two rows longer than 4096.
pub const STRIDED_COLS: &[usize] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    127,
    128,
    129,
    191,
    192,
    13 * 16,
    13 * 16 + 5,
    255,
    256,
    257,
    384 + 63,
    1024,
    2304 + 128 + 1,
    4097,
    4096 + 64 + 5,
];

/// Paddings between rows of [`Case::Strided`] (`stride - cols` of its one-part records):
/// none, one byte, a 16-byte tile less one, a tile, one cache line, and odd ones.
pub const STRIDED_PADS: &[usize] = &[0, 1, 15, 16, 64, 3, 17, 63, 65];

/// The value pairs of [`Case::Extreme`]: all -127, all -128, -128 against 127, all 127.
pub const EXTREMES: [(i8, i8); 4] = [(-127, -127), (-128, -128), (-128, 127), (127, 127)];

/// Pseudo-random cases in the table ([`Case::Random`] with seeds `0..RANDOM_CASES`).
pub const RANDOM_CASES: u32 = 400;

/// Quantization fixtures ([`Case::Quant`]).
pub const QUANT_FIXTURES: usize = 12;

/// Float-kernel fixtures ([`Case::Float`]).
pub const FLOAT_FIXTURES: usize = 6;

/// A deterministic pseudo-random int8 vector (xorshift), for edge-case fixtures.
pub fn pattern_i8(len: usize, seed: u32) -> impl Iterator<Item = i8> {
    let mut r = Rng::new(seed);
    (0..len).map(move |_| r.i8())
}

/// xorshift32, seeded like [`pattern_i8`].
struct Rng(u32);

impl Rng {
    fn new(seed: u32) -> Rng {
        Rng(seed.wrapping_mul(2654435761).wrapping_add(1) | 1)
    }
    fn next(&mut self) -> u32 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.0 = s;
        s
    }
    fn i8(&mut self) -> i8 {
        (self.next() >> 24) as u8 as i8
    }
    /// Uniform-ish in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.next() as usize % n
        }
    }
    fn fill(&mut self, s: &mut [i8]) {
        for v in s {
            *v = self.i8();
        }
    }
}

fn fill_pattern(s: &mut [i8], seed: u32) {
    for (v, p) in s.iter_mut().zip(pattern_i8(usize::MAX, seed)) {
        *v = p;
    }
}

/// One case of the shared table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Every kernel at `EDGE_LENGTHS[n]` (`len`) with pseudo-random values: `dot_i8`,
    /// `gemv_i8` (5 rows), `gemv_rows_i8` and `gemv_t_rows_i8` (a row list with repeats and
    /// an empty one), `quantize_sym_i8`.
    Edge {
        /// Index into [`EDGE_LENGTHS`] (the seed of the values).
        n: usize,
        /// The length.
        len: usize,
    },
    /// Every int8 kernel at length `len` with vectors of all `a` and all `b` (the gathers
    /// also strided: rows 17 bytes of other values apart, in a view at an odd offset).
    Extreme {
        /// The length.
        len: usize,
        /// The first vector's value.
        a: i8,
        /// The second vector's value.
        b: i8,
    },
    /// Rows of [`MAX_ACC_TERMS`] columns of -128 (the largest exact sum), and
    /// `gemv_t_rows_i8` over `MAX_ACC_TERMS` rows; both gathers also strided (rows 33 bytes
    /// apart in a view at offset 31; `MAX_ACC_TERMS` rows alternating between two).
    MaxLength,
    /// The strided gathers (`gemv_rows_strided_i8`, `gemv_t_rows_strided_i8`) on rows of
    /// `cols` bytes: (1) one-part records `[row | pad]` (`stride = cols + pad`) in a view
    /// that ends where its last row ends; (2) bundles `[A (cols) | pad | B | pad2]` with
    /// `B` longer than `A` and an odd `pad2`, gathered through a view of the `A` parts from
    /// the bundle's start and one of the `B` parts from their offset inside the first
    /// record (`&bundle[cols + pad..]`), each ending exactly at its last row. Padding bytes
    /// hold other values, so a read outside a row shows. Row lists with repeats and the last
    /// row, a single row and an empty one.
    Strided {
        /// The row length (`STRIDED_COLS`).
        cols: usize,
        /// The padding after each row (`STRIDED_PADS`).
        pad: usize,
    },
    /// `quantize_sym_i8` on fixture `0..QUANT_FIXTURES`: empty, zeros, NaN and infinities,
    /// subnormals, exact ties, `f32::MAX`.
    Quant(usize),
    /// `above_masks_f32` over thresholds at, between and around the scores of fixture
    /// `0..FLOAT_FIXTURES` (NaN, both infinities, signed zeros, subnormals, every bit
    /// position, ragged tails, one mask more than there are whole groups), and
    /// `dequantize_f32` of the fixture's values as row scales (aligned and not) over scales
    /// `a` from subnormal to infinite and NaN, at lengths 0 to 128.
    Float(usize),
    /// Pseudo-random shapes and values from a seed: rows 0..12, columns 0..800, row lists
    /// of 0..24 entries, initial accumulators within +-2^19, 0..300 floats for quantization.
    Random(u32),
}

impl core::fmt::Display for Case {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Case::Edge { n, len } => write!(f, "edge length {len} (#{n})"),
            Case::Extreme { len, a, b } => write!(f, "extreme values {a}/{b}, length {len}"),
            Case::MaxLength => write!(f, "max-length rows ({MAX_ACC_TERMS})"),
            Case::Strided { cols, pad } => write!(f, "strided rows of {cols} with padding {pad}"),
            Case::Quant(i) => write!(f, "quantization fixture {i}"),
            Case::Float(i) => write!(f, "float-kernel fixture {i}"),
            Case::Random(s) => write!(f, "random seed {s}"),
        }
    }
}

/// Every case of the table, in order: edge lengths, extreme values, max-length rows,
/// strided gathers, quantization fixtures, float-kernel fixtures, then the random cases.
pub fn cases() -> impl Iterator<Item = Case> {
    let edge = EDGE_LENGTHS.iter().enumerate().map(|(n, &len)| Case::Edge { n, len });
    let extreme = EDGE_LENGTHS.iter().flat_map(|&len| EXTREMES.iter().map(move |&(a, b)| Case::Extreme { len, a, b }));
    let strided =
        STRIDED_COLS.iter().flat_map(|&cols| STRIDED_PADS.iter().map(move |&pad| Case::Strided { cols, pad }));
    edge.chain(extreme)
        .chain(core::iter::once(Case::MaxLength))
        .chain(strided)
        .chain((0..QUANT_FIXTURES).map(Case::Quant))
        .chain((0..FLOAT_FIXTURES).map(Case::Float))
        .chain((0..RANDOM_CASES).map(Case::Random))
}

/// Length of [`Buffers::w`] the table needs (two max-length rows and a padding between).
pub const W_LEN: usize = 2 * MAX_ACC_TERMS + 64;
/// Length of [`Buffers::x`], [`Buffers::c`] and [`Buffers::idx`].
pub const X_LEN: usize = MAX_ACC_TERMS;
/// Length of [`Buffers::y0`], [`Buffers::y1`], [`Buffers::f`], [`Buffers::q0`] and
/// [`Buffers::q1`] (the longest row of [`Case::Strided`] fits).
pub const Y_LEN: usize = 8192;

/// The working memory of [`check_case`], lent by the caller (at least the lengths
/// [`W_LEN`], [`X_LEN`], [`Y_LEN`]).
pub struct Buffers<'a> {
    /// Weight rows.
    pub w: &'a mut [i8],
    /// Activations.
    pub x: &'a mut [i8],
    /// A second vector / coefficients.
    pub c: &'a mut [i8],
    /// Row lists.
    pub idx: &'a mut [u32],
    /// Oracle outputs.
    pub y0: &'a mut [i32],
    /// Backend outputs.
    pub y1: &'a mut [i32],
    /// Floats to quantize.
    pub f: &'a mut [f32],
    /// Oracle quantized values.
    pub q0: &'a mut [i8],
    /// Backend quantized values.
    pub q1: &'a mut [i8],
}

/// A backend result that differs from the oracle's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The kernel.
    pub kernel: &'static str,
    /// The case.
    pub case: Case,
    /// Rows (or row-list entries) of the call.
    pub rows: usize,
    /// Columns (or length) of the call.
    pub cols: usize,
    /// Row stride of a strided gather (`cols` for the other kernels).
    pub stride: usize,
}

impl core::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} differs from the scalar oracle: {}, rows {} cols {}",
            self.kernel, self.case, self.rows, self.cols
        )?;
        if self.stride != self.cols {
            write!(f, " stride {}", self.stride)?;
        }
        Ok(())
    }
}

/// Runs `case` on backend `B` and on the scalar oracle; `Ok(n)`: `n` kernel calls gave
/// the oracle's bits.
pub fn check_case<B: Kernels>(case: Case, b: &mut Buffers<'_>) -> Result<u32, Mismatch> {
    let mut k = Checker { case, calls: 0 };
    match case {
        Case::Edge { n, len } => {
            let n = n as u32;
            fill_pattern(&mut b.x[..len], n);
            fill_pattern(&mut b.c[..len], 1000 + n);
            k.dot::<B>(&b.x[..len], &b.c[..len])?;
            // 13 rows: a block of 8 rows reduced together and a ragged tail of 5.
            let rows = 13;
            fill_pattern(&mut b.w[..rows * len], 2000 + n);
            let w = &b.w[..rows * len];
            k.gemv::<B>(w, len, &b.x[..len], rows, b.y0, b.y1)?;
            k.gemv::<B>(&w[..5 * len], len, &b.x[..len], 5, b.y0, b.y1)?;
            k.gemv_rows::<B>(w, len, &[4, 0, 2, 2], &b.x[..len], b.y0, b.y1)?;
            k.gemv_rows::<B>(w, len, &[12, 4, 0, 2, 2, 7, 8, 11, 1, 12, 3], &b.x[..len], b.y0, b.y1)?;
            k.gemv_rows::<B>(w, len, &[], &b.x[..len], b.y0, b.y1)?;
            let mut c = [0i8; 4];
            fill_pattern(&mut c, 3000 + n);
            k.gemv_t_rows::<B>(w, len, &[1, 3, 3, 0], &c, 11, b.y0, b.y1)?;
            k.gemv_t_rows::<B>(w, len, &[], &[], 0, b.y0, b.y1)?;
            for (f, &v) in b.f[..len].iter_mut().zip(b.x.iter()) {
                *f = v as f32 * 0.37 - 1.5;
            }
            k.quant::<B>(&b.f[..len], b.q0, b.q1)?;
        }
        Case::Extreme { len, a, b: vb } => {
            b.x[..len].fill(a);
            b.c[..len].fill(vb);
            k.dot::<B>(&b.x[..len], &b.c[..len])?;
            b.w[..len].fill(a);
            b.w[len..2 * len].fill(vb);
            b.w[2 * len..3 * len].fill(a);
            let w = &b.w[..3 * len];
            k.gemv::<B>(w, len, &b.c[..len], 3, b.y0, b.y1)?;
            k.gemv_rows::<B>(w, len, &[2, 1, 0], &b.x[..len], b.y0, b.y1)?;
            // Eleven rows (a block of 8 reduced together and a tail), and a list as long.
            for r in 0..11 {
                b.w[r * len..(r + 1) * len].fill(if r % 3 == 1 { vb } else { a });
            }
            let w = &b.w[..11 * len];
            k.gemv::<B>(w, len, &b.c[..len], 11, b.y0, b.y1)?;
            k.gemv_rows::<B>(w, len, &[10, 1, 0, 4, 4, 7, 2, 9, 1, 3, 5], &b.x[..len], b.y0, b.y1)?;
            // (rows 0, 1, 2 are a, b, a as above)
            k.gemv_t_rows::<B>(w, len, &[0, 1, 2], &[vb, a, -128], 0, b.y0, b.y1)?;
            // The same rows 17 bytes of other values apart, in a view at offset 5.
            let (off, stride) = (5, len + 17);
            fill_pattern(&mut b.w[..off + 3 * stride], 4000 + len as u32);
            for (r, v) in [a, vb, a].into_iter().enumerate() {
                b.w[off + r * stride..][..len].fill(v);
            }
            let w = &b.w[off..off + 2 * stride + len];
            k.gemv_rows_strided::<B>(w, stride, len, &[2, 1, 0, 2], &b.x[..len], b.y0, b.y1)?;
            k.gemv_t_rows_strided::<B>(w, stride, len, &[0, 1, 2], &[vb, a, -128], 0, b.y0, b.y1)?;
        }
        Case::MaxLength => {
            let len = MAX_ACC_TERMS;
            b.x[..len].fill(-128);
            let a = &b.x[..len];
            k.dot::<B>(a, a)?;
            k.expect(B::dot_i8(a, a) == len as i32 * 16384, "dot_i8 (exact maximum)", 1, len)?;
            b.w[..len].fill(-128);
            fill_pattern(&mut b.w[len..2 * len], 9);
            let w = &b.w[..2 * len];
            k.gemv::<B>(w, len, a, 2, b.y0, b.y1)?;
            k.gemv_rows::<B>(w, len, &[1, 0], a, b.y0, b.y1)?;
            // gemv_t_rows with the maximum number of rows (all the same row).
            let w1 = [-128i8; 8];
            b.idx[..len].fill(0);
            b.c[..len].fill(-128);
            k.gemv_t_rows::<B>(&w1, 8, &b.idx[..len], &b.c[..len], 0, b.y0, b.y1)?;
            k.expect(b.y1[..8].iter().all(|&v| v == len as i32 * 16384), "gemv_t_rows_i8 (exact maximum)", len, 8)?;
            // Strided: the two max-length rows 33 bytes of other values apart, in a view at
            // offset 31 that ends where the second row ends (exactly `W_LEN` bytes in all).
            let (off, stride) = (31, len + 33);
            fill_pattern(&mut b.w[..W_LEN], 10);
            b.w[off..off + len].fill(-128);
            let w = &b.w[off..off + stride + len];
            debug_assert_eq!(off + stride + len, W_LEN);
            k.gemv_rows_strided::<B>(w, stride, len, &[1, 0], a, b.y0, b.y1)?;
            k.expect(b.y1[1] == len as i32 * 16384, "gemv_rows_strided_i8 (exact maximum)", 2, len)?;
            // `MAX_ACC_TERMS` rows alternating between two rows of 8 x -128, 16 bytes apart
            // (the padding holds other values), in a view at offset 5.
            let mut w2 = [99i8; 40];
            w2[5..13].fill(-128);
            w2[21..29].fill(-128);
            for (j, i) in b.idx[..len].iter_mut().enumerate() {
                *i = (j % 2) as u32;
            }
            k.gemv_t_rows_strided::<B>(&w2[5..29], 16, 8, &b.idx[..len], &b.c[..len], 0, b.y0, b.y1)?;
            k.expect(
                b.y1[..8].iter().all(|&v| v == len as i32 * 16384),
                "gemv_t_rows_strided_i8 (exact maximum)",
                len,
                8,
            )?;
        }
        Case::Strided { cols, pad } => {
            const R: usize = 6;
            let seed = (cols * 131 + pad) as u32;
            let lists: [&[u32]; 4] = [&[5, 0, 2, 2, 5, 1, 3, 4, 0], &[5], &[3, 3, 3], &[]];
            let mut c = [0i8; 9];
            fill_pattern(&mut c, 5000 + seed);
            let init = (seed as i32 % 1000) - 500;
            // (1) One-part records `[row | pad]`.
            let stride = cols + pad;
            fill_pattern(&mut b.w[..R * stride + 64], seed);
            let w = &b.w[..(R - 1) * stride + cols];
            fill_pattern(&mut b.x[..2 * cols + 2], 6000 + seed);
            let x = &b.x[..cols];
            for idx in lists {
                k.gemv_rows_strided::<B>(w, stride, cols, idx, x, b.y0, b.y1)?;
                k.gemv_t_rows_strided::<B>(w, stride, cols, idx, &c[..idx.len()], init, b.y0, b.y1)?;
            }
            // (2) Bundles `[A (cols) | pad | B (cols_b) | pad2]`, a view of each part.
            let cols_b = cols + cols / 4 + pad % 3;
            let pad2 = (pad * 5 + 7) % 67;
            let off_b = cols + pad;
            let stride = off_b + cols_b + pad2;
            fill_pattern(&mut b.w[..R * stride + 64], 7000 + seed);
            let wa = &b.w[..(R - 1) * stride + cols];
            let wb = &b.w[off_b..off_b + (R - 1) * stride + cols_b];
            let xb = &b.x[..cols_b];
            for idx in lists {
                k.gemv_rows_strided::<B>(wa, stride, cols, idx, x, b.y0, b.y1)?;
                k.gemv_rows_strided::<B>(wb, stride, cols_b, idx, xb, b.y0, b.y1)?;
                k.gemv_t_rows_strided::<B>(wa, stride, cols, idx, &c[..idx.len()], init, b.y0, b.y1)?;
                k.gemv_t_rows_strided::<B>(wb, stride, cols_b, idx, &c[..idx.len()], 0, b.y0, b.y1)?;
            }
        }
        Case::Quant(i) => {
            let n = quant_fixture(i, b.f);
            k.quant::<B>(&b.f[..n], b.q0, b.q1)?;
        }
        Case::Float(i) => {
            let n = float_fixture(i, b.f);
            let x = &b.f[..n];
            for theta in [0.0f32, -0.0, 0.125, -6.25, 6.25, 1e-40, -1e-40, f32::NEG_INFINITY, f32::INFINITY, f32::NAN] {
                let groups = (n / 32).min(16);
                let (mut m0, mut m1) = ([7u32; 17], [7u32; 17]);
                Scalar::above_masks_f32(x, theta, &mut m0[..groups + 1]);
                B::above_masks_f32(x, theta, &mut m1[..groups + 1]);
                k.expect(m0 == m1, "above_masks_f32", groups + 1, n)?;
            }
            // Row scales: the fixture's values as little-endian bytes, at an aligned and an
            // odd address.
            const D: usize = 128;
            #[repr(C, align(4))]
            struct ScaleBytes([u8; 4 * D + 4]);
            let mut sb = ScaleBytes([0; 4 * D + 4]);
            for (s, v) in sb.0[..4 * D].chunks_exact_mut(4).zip(x.iter().cycle()) {
                s.copy_from_slice(&v.to_le_bytes());
            }
            let mut acc = [0i32; D];
            let mut r = Rng::new(0xDE0 + i as u32);
            for (j, v) in acc.iter_mut().enumerate() {
                *v = match j % 7 {
                    0 => 0,
                    1 => r.next() as i32,
                    2 => i32::MIN,
                    3 => (r.next() >> 20) as i32 - 2048,
                    _ => (r.next() >> 8) as i32 - (1 << 23),
                };
            }
            let scales_a = [0.02f32, 1.0, -0.5, 0.0, 1e-30, 1e-41, f32::MAX, f32::INFINITY, f32::NAN];
            for (t, &a) in scales_a.iter().enumerate() {
                for (len, offset) in
                    [(0usize, 0usize), (1, 0), (3, 1), (4, 0), (5, 1), (17, 0), (64, 0), (D, 0), (D - 1, 1)]
                {
                    let rs = &sb.0[offset..offset + 4 * len];
                    let (mut o0, mut o1) = ([0f32; D], [1f32; D]);
                    let acc = &acc[(t + len) % 3..][..len.min(D - 2)];
                    Scalar::dequantize_f32(acc, a, rs, &mut o0);
                    B::dequantize_f32(acc, a, rs, &mut o1);
                    let n = acc.len();
                    let same = o0[..n].iter().zip(&o1[..n]).all(|(p, q)| p.to_bits() == q.to_bits());
                    k.expect(same && o1[n..].iter().all(|&v| v == 1.0), "dequantize_f32", 1, n)?;
                }
            }
        }
        Case::Random(seed) => {
            let mut r = Rng::new(seed ^ 0x5EED_0000);
            let rows = r.below(13);
            let cols = r.below(800);
            let m = r.below(25);
            r.fill(&mut b.w[..rows * cols]);
            r.fill(&mut b.x[..cols]);
            r.fill(&mut b.c[..m]);
            for i in &mut b.idx[..m] {
                *i = r.below(rows) as u32;
            }
            let init = (r.next() >> 12) as i32 - (1 << 19);
            let w = &b.w[..rows * cols];
            let x = &b.x[..cols];
            if rows > 0 {
                k.dot::<B>(&w[..cols], x)?;
            }
            k.gemv::<B>(w, cols, x, rows, b.y0, b.y1)?;
            if rows > 0 {
                k.gemv_rows::<B>(w, cols, &b.idx[..m], x, b.y0, b.y1)?;
                k.gemv_t_rows::<B>(w, cols, &b.idx[..m], &b.c[..m], init, b.y0, b.y1)?;
            }
            let nf = r.below(300);
            for f in &mut b.f[..nf] {
                *f = (r.next() >> 8) as f32 * (2e6 / (1u32 << 24) as f32) - 1e6;
            }
            k.quant::<B>(&b.f[..nf], b.q0, b.q1)?;
            // The same row list over rows `pad` bytes apart, in a view at offset `off`.
            if rows > 0 {
                let stride = cols + r.below(70);
                let off = r.below(64);
                r.fill(&mut b.w[..off + rows * stride]);
                let w = &b.w[off..off + (rows - 1) * stride + cols];
                k.gemv_rows_strided::<B>(w, stride, cols, &b.idx[..m], x, b.y0, b.y1)?;
                k.gemv_t_rows_strided::<B>(w, stride, cols, &b.idx[..m], &b.c[..m], init, b.y0, b.y1)?;
            }
        }
    }
    Ok(k.calls)
}

/// Fills `f` with quantization fixture `i` and returns its length.
fn quant_fixture(i: usize, f: &mut [f32]) -> usize {
    let mut n = 0;
    let mut push = |v: f32| {
        f[n] = v;
        n += 1;
    };
    match i {
        0 => {}
        1 => (0..33).for_each(|_| push(0.0)),
        2 => [f32::NAN, 1.0, -2.0, f32::INFINITY, 0.5].into_iter().for_each(push),
        3 => (0..17).for_each(|_| push(f32::NEG_INFINITY)),
        4 => [1e-40, -1e-40, 0.0].into_iter().for_each(push),
        5 => [0.5, -0.5, 1.5, -1.5, 2.5, 127.0, -127.0].into_iter().for_each(push),
        6 => (-300..300).for_each(|i| push(i as f32 * 0.5)),
        7 => [f32::MAX, -f32::MAX, 1.0].into_iter().for_each(push),
        // Long vectors (SIMD paths, not just tails): exact ties at inv = 1 and 0.5,
        // non-finite values, and a denormal absmax whose inverse is +inf (0 * inf = NaN).
        8 => (-254..=254).for_each(|i| push(i as f32 * 0.5)),
        9 => (-254..=254).for_each(|i| push(i as f32)),
        10 => {
            let specials = [f32::NAN, 3.5, f32::INFINITY, -2.5, f32::NEG_INFINITY, 0.0, -0.0, 7.0];
            (0..101).for_each(|i| push(specials[i % 8] * (1 + i / 8) as f32));
        }
        _ => (0..75).for_each(|i| push([1e-40, 0.0, -1e-40, -0.0, 5e-41][i % 5])),
    }
    n
}

/// Fills `f` with float-kernel fixture `i` and returns its length.
fn float_fixture(i: usize, f: &mut [f32]) -> usize {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e-40,
        -1e-40,
        f32::MAX,
        f32::MIN,
        0.125,
        -0.125,
        f32::MIN_POSITIVE,
        6.25,
        -6.25,
        1.0,
        1.0,
    ];
    match i {
        // scores spread around the thresholds, then the specials, rotated so every
        // special meets every bit position of some mask
        0..=3 => {
            let n = 300 + specials.len();
            for (j, v) in f[..n].iter_mut().enumerate() {
                let k = (j + [0, 5, 17, 31][i]) % n;
                *v = if k < 300 { ((k * 37 % 101) as f32 - 50.0) * 0.125 } else { specials[k - 300] };
            }
            n
        }
        // subnormals and signed zeros only
        4 => {
            for (j, v) in f[..96].iter_mut().enumerate() {
                *v = [1e-40, 0.0, -1e-40, -0.0, 5e-41, -1e-45][j % 6];
            }
            96
        }
        // magnitudes from 2^-100 to 2^100, both signs
        _ => {
            let mut r = Rng::new(0xF10A7);
            for v in &mut f[..517] {
                let e = (r.next() % 200) as i32 - 100;
                let m = 1.0 + (r.next() >> 9) as f32 / (1u32 << 23) as f32;
                let s = if r.next() & 1 == 1 { -1.0 } else { 1.0 };
                *v = s * m * f32::from_bits(((e + 127) as u32) << 23);
            }
            517
        }
    }
}

/// One case's kernel comparisons.
struct Checker {
    case: Case,
    calls: u32,
}

impl Checker {
    fn expect(&mut self, ok: bool, kernel: &'static str, rows: usize, cols: usize) -> Result<(), Mismatch> {
        self.expect_strided(ok, kernel, rows, cols, cols)
    }

    fn expect_strided(
        &mut self,
        ok: bool,
        kernel: &'static str,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<(), Mismatch> {
        self.calls += 1;
        if ok {
            Ok(())
        } else {
            Err(Mismatch { kernel, case: self.case, rows, cols, stride })
        }
    }

    fn dot<B: Kernels>(&mut self, a: &[i8], b: &[i8]) -> Result<(), Mismatch> {
        self.expect(B::dot_i8(a, b) == Scalar::dot_i8(a, b), "dot_i8", 1, a.len())
    }

    #[allow(clippy::too_many_arguments)]
    fn gemv<B: Kernels>(
        &mut self,
        w: &[i8],
        cols: usize,
        x: &[i8],
        rows: usize,
        y0: &mut [i32],
        y1: &mut [i32],
    ) -> Result<(), Mismatch> {
        let (y0, y1) = (&mut y0[..rows], &mut y1[..rows]);
        y0.fill(0);
        y1.fill(7);
        Scalar::gemv_i8(w, cols, x, y0);
        B::gemv_i8(w, cols, x, y1);
        self.expect(y0 == y1, "gemv_i8", rows, cols)
    }

    fn gemv_rows<B: Kernels>(
        &mut self,
        w: &[i8],
        cols: usize,
        idx: &[u32],
        x: &[i8],
        y0: &mut [i32],
        y1: &mut [i32],
    ) -> Result<(), Mismatch> {
        let (y0, y1) = (&mut y0[..idx.len()], &mut y1[..idx.len()]);
        y0.fill(0);
        y1.fill(-3);
        Scalar::gemv_rows_i8(w, cols, idx, x, y0);
        B::gemv_rows_i8(w, cols, idx, x, y1);
        self.expect(y0 == y1, "gemv_rows_i8", idx.len(), cols)
    }

    #[allow(clippy::too_many_arguments)]
    fn gemv_t_rows<B: Kernels>(
        &mut self,
        w: &[i8],
        cols: usize,
        idx: &[u32],
        c: &[i8],
        init: i32,
        y0: &mut [i32],
        y1: &mut [i32],
    ) -> Result<(), Mismatch> {
        let (y0, y1) = (&mut y0[..cols], &mut y1[..cols]);
        y0.fill(init);
        y1.fill(init);
        Scalar::gemv_t_rows_i8(w, cols, idx, c, y0);
        B::gemv_t_rows_i8(w, cols, idx, c, y1);
        self.expect(y0 == y1, "gemv_t_rows_i8", idx.len(), cols)
    }

    #[allow(clippy::too_many_arguments)]
    fn gemv_rows_strided<B: Kernels>(
        &mut self,
        w: &[i8],
        stride: usize,
        cols: usize,
        idx: &[u32],
        x: &[i8],
        y0: &mut [i32],
        y1: &mut [i32],
    ) -> Result<(), Mismatch> {
        let (y0, y1) = (&mut y0[..idx.len()], &mut y1[..idx.len()]);
        y0.fill(0);
        y1.fill(-3);
        Scalar::gemv_rows_strided_i8(w, stride, cols, idx, x, y0);
        B::gemv_rows_strided_i8(w, stride, cols, idx, x, y1);
        self.expect_strided(y0 == y1, "gemv_rows_strided_i8", idx.len(), cols, stride)
    }

    #[allow(clippy::too_many_arguments)]
    fn gemv_t_rows_strided<B: Kernels>(
        &mut self,
        w: &[i8],
        stride: usize,
        cols: usize,
        idx: &[u32],
        c: &[i8],
        init: i32,
        y0: &mut [i32],
        y1: &mut [i32],
    ) -> Result<(), Mismatch> {
        let (y0, y1) = (&mut y0[..cols], &mut y1[..cols]);
        y0.fill(init);
        y1.fill(init);
        Scalar::gemv_t_rows_strided_i8(w, stride, cols, idx, c, y0);
        B::gemv_t_rows_strided_i8(w, stride, cols, idx, c, y1);
        self.expect_strided(y0 == y1, "gemv_t_rows_strided_i8", idx.len(), cols, stride)
    }

    fn quant<B: Kernels>(&mut self, x: &[f32], q0: &mut [i8], q1: &mut [i8]) -> Result<(), Mismatch> {
        let (q0, q1) = (&mut q0[..x.len()], &mut q1[..x.len()]);
        q0.fill(0);
        q1.fill(1);
        let s0 = Scalar::quantize_sym_i8(x, q0);
        let s1 = B::quantize_sym_i8(x, q1);
        self.expect(s0.to_bits() == s1.to_bits() && q0 == q1, "quantize_sym_i8", 1, x.len())
    }
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
            use $crate::testing::{cases, check_case, pattern_i8, Buffers, Case, EDGE_LENGTHS, W_LEN, X_LEN, Y_LEN};
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

            fn check_gemv_rows_strided(w: &[i8], stride: usize, cols: usize, idx: &[u32], x: &[i8]) {
                let mut y0 = vec![0i32; idx.len()];
                let mut y1 = vec![-3i32; idx.len()];
                Scalar::gemv_rows_strided_i8(w, stride, cols, idx, x, &mut y0);
                <B as Kernels>::gemv_rows_strided_i8(w, stride, cols, idx, x, &mut y1);
                assert_eq!(y0, y1, "gemv_rows_strided_i8 m {} cols {cols} stride {stride}", idx.len());
            }

            fn check_gemv_t_rows_strided(w: &[i8], stride: usize, cols: usize, idx: &[u32], c: &[i8], init: i32) {
                let mut y0 = vec![init; cols];
                let mut y1 = vec![init; cols];
                Scalar::gemv_t_rows_strided_i8(w, stride, cols, idx, c, &mut y0);
                <B as Kernels>::gemv_t_rows_strided_i8(w, stride, cols, idx, c, &mut y1);
                assert_eq!(y0, y1, "gemv_t_rows_strided_i8 m {} cols {cols} stride {stride}", idx.len());
            }

            /// `f` panics, with a message containing `msg`.
            fn panics_with(f: impl FnOnce(), msg: &str) {
                let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .expect_err(&format!("no panic (expected one with {msg:?})"));
                let text = e
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| e.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                assert!(text.contains(msg), "panic message {text:?} lacks {msg:?}");
            }

            fn check_quant(x: &[f32]) {
                let mut q0 = vec![0i8; x.len()];
                let mut q1 = vec![1i8; x.len()];
                let s0 = Scalar::quantize_sym_i8(x, &mut q0);
                let s1 = <B as Kernels>::quantize_sym_i8(x, &mut q1);
                assert_eq!(s0.to_bits(), s1.to_bits(), "quantize scale len {}", x.len());
                assert_eq!(q0, q1, "quantize values len {}", x.len());
            }

            /// Runs the shared table's cases that `keep` selects (at least one).
            fn table(keep: impl Fn(&Case) -> bool) {
                assert!(run_cases(cases().filter(|c| keep(c))) > 0, "no case selected");
            }

            /// Checks `cases` with [`check_case`]; returns how many ran.
            fn run_cases(cases: impl Iterator<Item = Case>) -> usize {
                let (mut w, mut x, mut c) = (vec![0i8; W_LEN], vec![0i8; X_LEN], vec![0i8; X_LEN]);
                let mut idx = vec![0u32; X_LEN];
                let (mut y0, mut y1, mut f) = (vec![0i32; Y_LEN], vec![0i32; Y_LEN], vec![0f32; Y_LEN]);
                let (mut q0, mut q1) = (vec![0i8; Y_LEN], vec![0i8; Y_LEN]);
                let mut bufs = Buffers {
                    w: &mut w,
                    x: &mut x,
                    c: &mut c,
                    idx: &mut idx,
                    y0: &mut y0,
                    y1: &mut y1,
                    f: &mut f,
                    q0: &mut q0,
                    q1: &mut q1,
                };
                let mut n = 0;
                for case in cases {
                    if let Err(m) = check_case::<B>(case, &mut bufs) {
                        panic!("{m}");
                    }
                    n += 1;
                }
                n
            }

            #[test]
            fn edge_lengths_all_kernels() {
                if skip() {
                    return;
                }
                table(|c| matches!(c, Case::Edge { .. }));
            }

            #[test]
            fn extreme_values() {
                if skip() {
                    return;
                }
                table(|c| matches!(c, Case::Extreme { .. }));
            }

            #[test]
            // Rows of 131071 terms take hours under Miri; the same code paths run at the
            // edge lengths there.
            #[cfg_attr(miri, ignore)]
            fn max_length_rows() {
                if skip() {
                    return;
                }
                table(|c| matches!(c, Case::MaxLength));
            }

            #[test]
            fn quantize_edge_cases() {
                if skip() {
                    return;
                }
                table(|c| matches!(c, Case::Quant(_)));
            }

            /// The table's float-kernel fixtures (`above_masks_f32`, `dequantize_f32`).
            #[test]
            fn float_kernel_fixtures() {
                if skip() {
                    return;
                }
                table(|c| matches!(c, Case::Float(_)));
            }

            /// The table's strided gathers: one-part records with every padding, views of both
            /// parts of a bundle, long rows.
            #[test]
            // (about a minute under Miri; the proptests cover the strided kernels there)
            #[cfg_attr(miri, ignore)]
            fn strided_cases() {
                if skip() {
                    return;
                }
                table(|c| matches!(c, Case::Strided { .. }));
            }

            /// The strided gathers' panics: `stride < cols`, and a listed row that does not
            /// lie inside `w` (one byte short at the end of the view, far out, overflowing),
            /// also late in a list (the grouped paths check a group before loading it);
            /// short rows and the grouped / long-row paths.
            #[test]
            fn strided_panics() {
                if skip() {
                    return;
                }
                for cols in [16usize, 300] {
                    let stride = cols + 20;
                    let buf = vec_i8(12 * stride, 9);
                    let x = vec_i8(cols, 10);
                    let c = vec_i8(12, 11);
                    let mut yr = vec![0i32; 12];
                    let mut yt = vec![0i32; cols];
                    panics_with(
                        || <B as Kernels>::gemv_rows_strided_i8(&buf, cols - 1, cols, &[0], &x, &mut yr[..1]),
                        "stride < cols",
                    );
                    panics_with(
                        || <B as Kernels>::gemv_t_rows_strided_i8(&buf, cols - 1, cols, &[0], &c[..1], &mut yt),
                        "stride < cols",
                    );
                    // Rows 0..=9 exist in `w` only up to row 8: row 9 ends one byte past it.
                    let w = &buf[3..3 + 9 * stride + cols - 1];
                    let ok: Vec<u32> = (0..9).collect();
                    check_gemv_rows_strided(w, stride, cols, &ok, &x);
                    check_gemv_t_rows_strided(w, stride, cols, &ok, &c[..9], 5);
                    for bad in [9u32, 1_000_000, u32::MAX] {
                        for at in [0usize, 9] {
                            let mut idx = ok.clone();
                            idx.insert(at, bad);
                            let m = idx.len();
                            panics_with(
                                || <B as Kernels>::gemv_rows_strided_i8(w, stride, cols, &idx, &x, &mut yr[..m]),
                                "",
                            );
                            panics_with(
                                || <B as Kernels>::gemv_t_rows_strided_i8(w, stride, cols, &idx, &c[..m], &mut yt),
                                "",
                            );
                        }
                    }
                }
                // The unstrided forms keep their own checks and messages.
                let w = vec_i8(40, 12);
                panics_with(
                    || <B as Kernels>::gemv_rows_i8(&w[..39], 8, &[0], &[0; 8], &mut [0; 1]),
                    "gemv_rows_i8: w length not a multiple of cols",
                );
                panics_with(
                    || <B as Kernels>::gemv_t_rows_i8(&w[..39], 8, &[0], &[1], &mut [0; 8]),
                    "gemv_t_rows_i8: w length not a multiple of cols",
                );
                panics_with(|| <B as Kernels>::gemv_rows_i8(&w, 8, &[5], &[0; 8], &mut [0; 1]), "");
            }

            /// The table's random cases (the ones the Cortex-M kernel test runs).
            #[test]
            fn random_table_cases() {
                if skip() {
                    return;
                }
                table(|c| matches!(c, Case::Random(_)));
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

                /// Strided rows (`stride = cols + pad`) in a view that starts `off` bytes into
                /// its buffer and ends where the last row ends.
                #[test]
                fn prop_gemv_rows_strided(n_rows in 1usize..12, cols in 0usize..300, pad in 0usize..80,
                                          off in 0usize..70, idx in proptest::collection::vec(any::<u32>(), 0..20),
                                          seed in any::<u32>()) {
                    if skip() {
                        return Ok(());
                    }
                    let stride = cols + pad;
                    let buf = vec_i8(off + n_rows * stride, seed);
                    let w = &buf[off..off + (n_rows - 1) * stride + cols];
                    let x = vec_i8(cols, seed ^ 0xAA);
                    let idx: Vec<u32> = idx.iter().map(|&i| i % n_rows as u32).collect();
                    check_gemv_rows_strided(w, stride, cols, &idx, &x);
                }

                #[test]
                fn prop_gemv_t_rows_strided(n_rows in 1usize..12, cols in 0usize..300, pad in 0usize..80,
                                            off in 0usize..70, idx in proptest::collection::vec(any::<u32>(), 0..20),
                                            init in -1000i32..1000, seed in any::<u32>()) {
                    if skip() {
                        return Ok(());
                    }
                    let stride = cols + pad;
                    let buf = vec_i8(off + n_rows * stride, seed);
                    let w = &buf[off..off + (n_rows - 1) * stride + cols];
                    let idx: Vec<u32> = idx.iter().map(|&i| i % n_rows as u32).collect();
                    let c = vec_i8(idx.len(), seed ^ 0x33);
                    check_gemv_t_rows_strided(w, stride, cols, &idx, &c, init);
                }

                /// The table's random-case generator at any seed.
                #[test]
                fn prop_table_random_case(seed in any::<u32>()) {
                    if skip() {
                        return Ok(());
                    }
                    run_cases(core::iter::once(Case::Random(seed)));
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
