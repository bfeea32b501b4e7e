//! `spark-hal`: the integer kernels of the Spark Transformer runtime.
//!
//! Everything heavy in the model is one of four int8 kernels (SPEC section 7):
//!
//! | kernel | computes | used for |
//! |---|---|---|
//! | [`Kernels::dot_i8`] | `a . b` | single dot products |
//! | [`Kernels::gemv_i8`] | `y[i] = W[i] . x` for every row | Q/K/V/O projections, FFN predictor, logits |
//! | [`Kernels::gemv_rows_strided_i8`] | `y[j] = W[rows[j]] . x` | K2 row gather, attention over selected keys |
//! | [`Kernels::gemv_t_rows_strided_i8`] | `y += sum_j c[j] * W[rows[j]]` | sparse vector-matrix (FFN `V`, attention values) |
//!
//! plus [`Kernels::quantize_sym_i8`], the symmetric per-vector activation quantizer, and
//! the elementwise `f32` kernels whose oracles are in [`math`] (soft-cap, attention scores,
//! [`Kernels::dequantize_f32`] of kernel outputs, softmax numerators, top-k threshold masks).
//!
//! # Layout
//! Matrices are row-major `[rows, cols]` int8 slices: row `i` is `w[i*cols .. (i+1)*cols]`.
//! The two gathers read rows `stride >= cols` elements apart instead: row `r` is
//! `w[r*stride .. r*stride + cols]`. That serves *bundled* layouts, where one record of
//! `stride` bytes holds one row of two matrices (a Spark FFN neuron's
//! `[K2 (d - r bytes) | pad | V (d bytes) | pad]`, an attention position's key part 2 and
//! value): the K2 pass gathers from `&bundle[..]`, the V pass from `&bundle[off_v..]`.
//! [`Kernels::gemv_rows_i8`] and [`Kernels::gemv_t_rows_i8`] are the same kernels with
//! `stride = cols` (provided methods). Row lists are `u32` indices; they may be in any
//! order and may repeat.
//!
//! Backends with software prefetch (x86) prefetch the `cols` bytes of each upcoming listed
//! row that the kernel reads (prefetching a bundle's whole record in its first pass was
//! measured and was not faster, docs/PERFORMANCE.md). Prefetch addresses are wrapping
//! pointer arithmetic, never dereferenced.
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
//! | module | backend | compiled for |
//! |---|---|---|
//! | `x86::avx2` | `Avx2` (`vpmovsxbw` + `vpmaddwd`) | x86-64 with `std` (run-time checked) or `target_feature = "avx2"` |
//! | `x86::avx512vnni` | `Avx512Vnni` (`vpdpbusd`, offset trick) | x86-64 with `std` (run-time checked) or the AVX-512 VNNI target features |
//! | `x86` | `Auto`: run-time dispatch to the best of the above | x86-64 with `std` |
//! | `arm::neon` | `Neon` (`smull` + `sadalp`), `NeonDot` (`sdot`), `Auto` (with `std`) | little-endian aarch64 with NEON (`cfg(spark_neon)`) |
//! | `arm::dsp` | `Dsp` (`sxtb16` + `smlad`) | `thumbv7em-*`, `thumbv8m.main-*` (`cfg(spark_dsp)`) |
//! | `arm::mve` | `Mve` (Helium: `vldrb.8` + `vmladava.s8`, tail-predicated loops) | `thumbv8m.main-*` with the `mve` feature (`cfg(spark_mve)`; Cortex-M55/M85) |
//!
//! [`Native`] is the backend `spark-core` uses by default (see its docs for the selection
//! rules) and [`native_backend_name`] says which kernels actually run.
//!
//! # Testing
//! `tests/scalar.rs` checks the scalar oracle against a naive `i64` reference;
//! `tests/backends.rs` runs [`kernel_suite!`] on every backend compiled for the target (on
//! x86-64 natively, on aarch64 under `qemu-aarch64` with and without `dotprod`, see
//! `test.sh`). Cortex-M DSP is tested on QEMU by the `firmware/kernel-test` binary, which
//! runs the same case table (`testing::cases`, `testing::check_case`: `no_std`, no
//! allocation) on M4, M7, M33 and M55, and with its `mve` feature the Helium kernels on
//! M55 (`mps3-an547`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

/// `impl Kernels for $ty` where every kernel forwards to `$dispatch!(kernel(args))`, a
/// macro of the calling module that picks a backend at run time (the `Auto` types).
#[allow(unused_macros)]
macro_rules! dispatching_kernels {
    ($ty:ident, $dispatch:ident) => {
        impl Kernels for $ty {
            const NAME: &'static str = "auto";

            fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
                $dispatch!(dot_i8(a, b))
            }
            fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
                $dispatch!(gemv_i8(w, cols, x, y))
            }
            fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
                $dispatch!(gemv_rows_strided_i8(w, stride, cols, rows, x, y))
            }
            fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
                $dispatch!(gemv_t_rows_strided_i8(w, stride, cols, rows, c, y))
            }
            fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
                $dispatch!(quantize_sym_i8(x, q))
            }
            fn softcap_f32(z: &mut [f32], cap: f32) {
                $dispatch!(softcap_f32(z, cap))
            }
            fn exp_shifted_f32(x: &mut [f32], max: f32) {
                $dispatch!(exp_shifted_f32(x, max))
            }
            fn dequantize_f32(acc: &[i32], a: f32, row_scale: &[u8], out: &mut [f32]) {
                $dispatch!(dequantize_f32(acc, a, row_scale, out))
            }
            fn scores_f32(acc: &[i32], a: f32, row_scale: &[f32], c: f32, softcap: f32, out: &mut [f32]) {
                $dispatch!(scores_f32(acc, a, row_scale, c, softcap, out))
            }
            fn prefetch_rows<T>(w: &[T], cols: usize, rows: &[u32]) {
                $dispatch!(prefetch_rows(w, cols, rows))
            }
            fn above_masks_f32(scores: &[f32], theta: f32, masks: &mut [u32]) {
                $dispatch!(above_masks_f32(scores, theta, masks))
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use dispatching_kernels;

pub mod arena;
mod check;
pub mod math;
mod scalar;
#[doc(hidden)]
pub mod testing;

#[cfg(any(spark_neon, spark_dsp))]
pub mod arm;
#[cfg(target_arch = "x86_64")]
pub mod x86;

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
    /// Shapes: `w` `[n_rows, cols]` (`w.len()` a multiple of `cols` unless `cols == 0`),
    /// `rows` `[m]` (each `< n_rows`), `x` `[cols]`, `y` `[m]`.
    ///
    /// Provided: [`Kernels::gemv_rows_strided_i8`] with `stride = cols`, after this
    /// kernel's own shape checks (same panics as before the strided kernels existed).
    #[inline]
    fn gemv_rows_i8(w: &[i8], cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        check::gemv_rows(w, cols, rows, x, y);
        Self::gemv_rows_strided_i8(w, cols, cols, rows, x, y)
    }

    /// `y[col] += sum_j c[j] * W[rows[j]][col]`: the sparse vector-matrix product.
    ///
    /// Shapes: `w` `[n_rows, cols]` (`w.len()` a multiple of `cols` unless `cols == 0`),
    /// `rows` `[m]` (each `< n_rows`, `m <= MAX_ACC_TERMS`), `c` `[m]`, `y` `[cols]`
    /// (accumulated into, not overwritten).
    ///
    /// Provided: [`Kernels::gemv_t_rows_strided_i8`] with `stride = cols`, after this
    /// kernel's own shape checks.
    #[inline]
    fn gemv_t_rows_i8(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        check::gemv_t_rows(w, cols, rows, c, y);
        Self::gemv_t_rows_strided_i8(w, cols, cols, rows, c, y)
    }

    /// `y[j] = W[rows[j]] . x` over rows laid out `stride` elements apart: row `r` is
    /// `w[r * stride .. r * stride + cols]`.
    ///
    /// This is the gather of a *bundled* layout, where each row of `w` is one part of a
    /// longer record (the Spark FFN's `[K2 | pad | V | pad]` neuron records, the attention
    /// cache's `[K2 | V]` positions): a caller passes `w = &bundle[..]` with `cols = d - r`
    /// for the K2 pass, or `w = &bundle[off_v..]` with `cols = d` for the V pass, so
    /// `w.len()` need not be a multiple of `stride` (or of `cols`): only the listed rows must
    /// lie inside `w`, the last row of the view may end exactly at its end. With
    /// `stride == cols` it is the plain row-major gather of [`Kernels::gemv_rows_i8`].
    ///
    /// Shapes: `stride >= cols`, every listed row inside `w`, `x` `[cols]`, `y` `[m]`,
    /// `cols <= MAX_ACC_TERMS`. Panics otherwise (rows are sliced out of `w` with safe
    /// indexing before any vector load); with `cols == 0` `y` is zero-filled and the row
    /// indices are not looked at. The list may be in any order and repeat.
    ///
    /// Prefetching: backends with software prefetch (x86) prefetch the `cols` bytes of each
    /// upcoming listed row (not the rest of its record: bringing a bundle's other part
    /// along in this first pass was measured and was not faster). Prefetch addresses are
    /// formed with wrapping pointer arithmetic and never dereferenced.
    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]);

    /// `y[col] += sum_j c[j] * W[rows[j]][col]` over rows laid out `stride` elements apart
    /// (row `r` is `w[r * stride .. r * stride + cols]`, `stride >= cols`; see
    /// [`Kernels::gemv_rows_strided_i8`] for the bundled layouts and views this serves). With
    /// `stride == cols` it is [`Kernels::gemv_t_rows_i8`].
    ///
    /// Shapes: `stride >= cols`, every listed row inside `w`, `rows` `[m]` with
    /// `m <= MAX_ACC_TERMS`, `c` `[m]`, `y` `[cols]` (accumulated into, not overwritten; the
    /// caller starts it at zero or keeps the total across calls in range). Panics otherwise;
    /// with `cols == 0` nothing is read and the row indices are not looked at.
    ///
    /// Prefetching: backends with software prefetch prefetch only the `cols` bytes of each
    /// upcoming row (this pass reads one part of each record; the other part was read, or
    /// will be read, by its own pass), with wrapping pointer arithmetic as above.
    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]);

    /// Symmetric per-vector quantization: returns `scale = absmax / 127` and writes
    /// `q[i] = clamp(round_half_away(x[i] * (127 / absmax)), -127, 127)`.
    ///
    /// `absmax` is taken over the finite entries; non-finite entries quantize to 0.
    /// All-zero (or all non-finite) input gives scale 0 and all-zero `q`.
    /// `q.len() == x.len()`.
    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32;

    /// Logit soft-cap in place: `z[i] <- cap * tanh(z[i] * (1 / cap))` (`cap > 0`), with
    /// exactly the bits of [`math::softcap_in_place`] (the default).
    #[inline(always)]
    fn softcap_f32(z: &mut [f32], cap: f32) {
        math::softcap_in_place(z, cap)
    }

    /// Attention scores from a predictor matvec, optionally soft-capped, in one pass:
    /// `out[j] = acc[j] * a * row_scale[j] * c`, then `softcap * tanh(out[j] / softcap)`
    /// when `softcap > 0`; exactly the bits of [`math::scores_in_place`] (the default).
    #[inline(always)]
    fn scores_f32(acc: &[i32], a: f32, row_scale: &[f32], c: f32, softcap: f32, out: &mut [f32]) {
        math::scores_in_place(acc, a, row_scale, c, softcap, out)
    }

    /// Dequantization of integer kernel outputs with a per-vector and a per-row scale:
    /// `out[i] = acc[i] as f32 * a * scale_i`, `scale_i` the little-endian `f32` at
    /// `row_scale[4 i ..]` (the model's row scales, in place); exactly the bits of
    /// [`math::dequantize`] (the default). The shortest of `acc`, `out` and the scales decides.
    #[inline(always)]
    fn dequantize_f32(acc: &[i32], a: f32, row_scale: &[u8], out: &mut [f32]) {
        math::dequantize(acc, a, row_scale, out)
    }

    /// Softmax numerators in place: `x[i] <- e^(x[i] - max)`, with exactly the bits of
    /// [`math::exp_shifted_in_place`] (the default).
    #[inline(always)]
    fn exp_shifted_f32(x: &mut [f32], max: f32) {
        math::exp_shifted_in_place(x, max)
    }

    /// A hint that the listed rows of `w` (`[n_rows, cols]`, any element type: int8
    /// weights or their `f32` row scales) are about to be read: backends with software
    /// prefetch start fetching them, so that the gathers of a selection (Spark attention's
    /// K2 rows, V rows and their scales) overlap instead of waiting on memory one after
    /// the other. No result, no memory access, never faults; listed rows
    /// outside `w` are ignored. The default does nothing.
    #[inline(always)]
    fn prefetch_rows<T>(w: &[T], cols: usize, rows: &[u32]) {
        let _ = (w, cols, rows);
    }

    /// The statistical top-k selection test, 32 scores per mask: bit `j` of `masks[g]`
    /// is set when `scores[32 g + j]` is finite and above `theta`, for the
    /// `min(masks.len(), scores.len() / 32)` whole groups (a ragged tail is the caller's).
    /// Defaults to [`math::above_masks`]; comparisons only, so every backend gives the
    /// same bits.
    #[inline(always)]
    fn above_masks_f32(scores: &[f32], theta: f32, masks: &mut [u32]) {
        math::above_masks(scores, theta, masks)
    }
}

/// Reinterpret raw model bytes as int8 weights (zero-copy).
#[inline]
pub fn bytes_as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have identical size (1) and alignment (1), every bit pattern is
    // valid for both, and the returned slice borrows `b` for the same lifetime.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}

pub use native::{native_backend_name, Native};

/// Compile-time choice of [`Native`].
mod native {
    // One `cfg` per candidate; exactly one `Native` is compiled for any target.
    macro_rules! native {
        ($(#[cfg($($c:tt)*)] $t:ty;)*) => {$(
            /// The backend `spark-core` uses by default on this target: the fastest one
            /// compiled in, or [`Scalar`](crate::Scalar) with the `force-scalar` feature.
            ///
            /// - `force-scalar`: `Scalar`.
            /// - `thumbv8m.main` with the `mve` feature (`spark_mve`): `arm::mve::Mve`.
            /// - `thumbv7em`/`thumbv8m.main` (`spark_dsp`): `arm::dsp::Dsp`.
            /// - aarch64 (`spark_neon`): with `std`, `arm::Auto` (`NeonDot` when the CPU has
            ///   `dotprod`, else `Neon`); without `std`, `NeonDot` if the target enables
            ///   `dotprod` at compile time, else `Neon`.
            /// - x86-64 with `std`: `x86::Auto` (run-time: AVX-512 VNNI, AVX2, scalar);
            ///   without `std`: the best of those the target enables at compile time.
            /// - anything else (e.g. `thumbv6m`): `Scalar`.
            #[cfg($($c)*)]
            pub type Native = $t;
        )*};
    }

    native! {
        #[cfg(feature = "force-scalar")] crate::Scalar;
        #[cfg(all(not(feature = "force-scalar"), spark_mve))] crate::arm::mve::Mve;
        #[cfg(all(not(feature = "force-scalar"), spark_dsp, not(spark_mve)))] crate::arm::dsp::Dsp;
        #[cfg(all(not(feature = "force-scalar"), spark_neon, feature = "std"))] crate::arm::Auto;
        #[cfg(all(not(feature = "force-scalar"), spark_neon, not(feature = "std"), target_feature = "dotprod"))]
            crate::arm::neon::NeonDot;
        #[cfg(all(not(feature = "force-scalar"), spark_neon, not(feature = "std"), not(target_feature = "dotprod")))]
            crate::arm::neon::Neon;
        #[cfg(all(not(feature = "force-scalar"), target_arch = "x86_64", feature = "std"))] crate::x86::Auto;
        #[cfg(all(
            not(feature = "force-scalar"),
            target_arch = "x86_64",
            not(feature = "std"),
            target_feature = "avx512vnni",
            target_feature = "avx512bw",
            target_feature = "avx512f",
            target_feature = "avx2"
        ))]
            crate::x86::avx512vnni::Avx512Vnni;
        #[cfg(all(
            not(feature = "force-scalar"),
            target_arch = "x86_64",
            not(feature = "std"),
            target_feature = "avx2",
            not(all(target_feature = "avx512vnni", target_feature = "avx512bw", target_feature = "avx512f"))
        ))]
            crate::x86::avx2::Avx2;
        #[cfg(all(
            not(feature = "force-scalar"),
            not(spark_dsp),
            not(spark_neon),
            not(all(target_arch = "x86_64", any(feature = "std", target_feature = "avx2")))
        ))]
            crate::Scalar;
    }

    /// Name of the kernels [`Native`] actually runs on this machine (for an `Auto`
    /// backend, the one it dispatches to), e.g. `"avx2"`, `"neon-sdot"`, `"dsp"`, `"mve"`, `"scalar"`.
    pub fn native_backend_name() -> &'static str {
        #[cfg(all(not(feature = "force-scalar"), any(spark_neon, target_arch = "x86_64"), feature = "std"))]
        {
            Native::selected_name()
        }
        #[cfg(not(all(not(feature = "force-scalar"), any(spark_neon, target_arch = "x86_64"), feature = "std")))]
        {
            <Native as crate::Kernels>::NAME
        }
    }
}
