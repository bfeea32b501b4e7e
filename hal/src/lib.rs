//! `spark-hal`: the integer kernels of the Spark Transformer runtime.
//!
//! Everything heavy in the model is one of four int8 kernels (SPEC section 7):
//!
//! | kernel | computes | used for |
//! |---|---|---|
//! | [`Kernels::dot_i8`] | `a . b` | single dot products |
//! | [`Kernels::gemv_i8`] | `y[i] = W[i] . x` for every row | Q/K/V/O projections, FFN predictor, logits |
//! | [`Kernels::gemv_rows_i8`] | `y[j] = W[rows[j]] . x` | K2 row gather, attention over selected keys |
//! | [`Kernels::gemv_t_rows_i8`] | `y += sum_j c[j] * W[rows[j]]` | sparse vector-matrix (FFN `V`, attention values) |
//!
//! plus [`Kernels::quantize_sym_i8`], the symmetric per-vector activation quantizer.
//!
//! # Layout
//! Matrices are row-major `[rows, cols]` int8 slices: row `i` is `w[i*cols .. (i+1)*cols]`.
//! Row lists are `u32` indices; they may be in any order and may repeat.
//!
//! # Accumulators and overflow
//! Products of two int8 values lie in `[-16256, 16384]` (`-128 * -128 = 16384`), and all
//! sums are accumulated in `i32`. A sum of at most [`MAX_ACC_TERMS`] = 131071 products
//! cannot overflow (`131071 * 16384 = 2147467264 < i32::MAX`). Every kernel asserts that
//! each of its sums has at most that many terms: `cols` for the dot-product kernels and
//! `rows.len()` for [`Kernels::gemv_t_rows_i8`] (whose caller must start `y` at zero or keep
//! the total across calls under the bound).
//!
//! # Backends
//! [`Scalar`] is always compiled and is the oracle: plain loops, no `unsafe`. Every other
//! backend must give bit-identical results; [`kernel_suite!`] runs the full differential
//! suite (proptest plus named edge cases) for a backend in one line.
//!
//! # Testing
//! `tests/scalar.rs` checks the scalar oracle against a naive `i64` reference, then runs
//! [`kernel_suite!`] on every backend compiled for the target.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod arena;
mod scalar;
#[doc(hidden)]
pub mod testing;

pub use scalar::Scalar;

/// Maximum number of int8 x int8 products one `i32` accumulator may receive.
///
/// `MAX_ACC_TERMS * 128 * 128 <= i32::MAX`, so no sum of this many products overflows,
/// even with `-128` on both sides.
pub const MAX_ACC_TERMS: usize = (i32::MAX as usize) / (128 * 128);

const _: () = assert!(MAX_ACC_TERMS as u64 * 16384 <= i32::MAX as u64);

/// The kernel contract every backend implements. Associated functions only (no `self`):
/// a backend is a zero-sized type chosen at compile time, so the model code is
/// monomorphised per backend and never uses `dyn`.
///
/// All kernels panic on shape violations (lengths that disagree, an out-of-range row
/// index, or a sum longer than [`MAX_ACC_TERMS`]); callers in `spark-core` validate model
/// shapes once at load so these are programming errors, never input errors.
pub trait Kernels {
    /// Short backend name for logs and benchmarks (`"scalar"`, `"avx2"`, `"neon-sdot"` ...).
    const NAME: &'static str;

    /// `sum_i a[i] * b[i]` in `i32`. `a.len() == b.len() <= MAX_ACC_TERMS`.
    fn dot_i8(a: &[i8], b: &[i8]) -> i32;

    /// `y[i] = W[i] . x` for every row `i`.
    ///
    /// Shapes: `w` `[rows, cols]`, `x` `[cols]`, `y` `[rows]` with `rows = y.len()`.
    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]);

    /// `y[j] = W[rows[j]] . x` for every listed row.
    ///
    /// Shapes: `w` `[n_rows, cols]`, `rows` `[m]` (each `< n_rows`), `x` `[cols]`, `y` `[m]`.
    fn gemv_rows_i8(w: &[i8], cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]);

    /// `y[col] += sum_j c[j] * W[rows[j]][col]`: the sparse vector-matrix product.
    ///
    /// Shapes: `w` `[n_rows, cols]`, `rows` `[m]` (each `< n_rows`, `m <= MAX_ACC_TERMS`),
    /// `c` `[m]`, `y` `[cols]` (accumulated into, not overwritten).
    fn gemv_t_rows_i8(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]);

    /// Symmetric per-vector quantization: returns `scale = absmax / 127` and writes
    /// `q[i] = clamp(round_half_away(x[i] * (127 / absmax)), -127, 127)`.
    ///
    /// `absmax` is taken over the finite entries; non-finite entries quantize to 0.
    /// All-zero (or all non-finite) input gives scale 0 and all-zero `q`.
    /// `q.len() == x.len()`.
    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32;
}

/// Reinterpret raw model bytes as int8 weights (zero-copy).
#[inline]
pub fn bytes_as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have identical size (1) and alignment (1), every bit pattern is
    // valid for both, and the returned slice borrows `b` for the same lifetime.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}

/// The backend `spark-core` uses by default on this target: the fastest one compiled in,
/// or [`Scalar`] with the `force-scalar` feature.
pub type Native = Scalar;
