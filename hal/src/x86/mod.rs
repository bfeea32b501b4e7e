//! x86-64 backends: `avx2::Avx2`, `avx512vnni::Avx512Vnni` and, with `std`, the
//! run-time dispatching `Auto` (each compiled with `std` or when the target enables its
//! features, so the names are not links: a `no_std` build has none of them).
//!
//! Each backend is tested bit-exact against the scalar oracle by `kernel_suite!` in
//! `tests/backends.rs`; a backend the CPU cannot run is skipped there with a message.

#[cfg(any(feature = "std", target_feature = "avx2"))]
pub mod avx2;
#[cfg(any(feature = "std", all(target_feature = "avx512vnni", target_feature = "avx512bw")))]
pub mod avx512vnni;

#[cfg(feature = "std")]
pub use auto::Auto;

/// The elementwise f32 kernels and the row prefetch hint of an x86 backend, as methods of
/// its `impl Kernels`: the portable loops of [`crate::math`] compiled with `$feature`
/// enabled (the same exactly rounded IEEE operations on wider vectors, so the same bits as
/// the scalar oracle; `kernel_suite!` checks it), and [`prefetch::rows_l2`].
#[cfg(any(feature = "std", target_feature = "avx2"))]
macro_rules! elementwise_methods {
    ($feature:literal) => {
        fn softcap_f32(z: &mut [f32], cap: f32) {
            #[target_feature(enable = $feature)]
            fn wide(z: &mut [f32], cap: f32) {
                $crate::math::softcap_in_place(z, cap)
            }
            Self::require();
            // SAFETY: the CPU supports `$feature` (checked just above).
            unsafe { wide(z, cap) }
        }

        fn exp_shifted_f32(x: &mut [f32], max: f32) {
            #[target_feature(enable = $feature)]
            fn wide(x: &mut [f32], max: f32) {
                $crate::math::exp_shifted_in_place(x, max)
            }
            Self::require();
            // SAFETY: the CPU supports `$feature` (checked just above).
            unsafe { wide(x, max) }
        }

        fn scores_f32(acc: &[i32], a: f32, row_scale: &[f32], c: f32, softcap: f32, out: &mut [f32]) {
            #[target_feature(enable = $feature)]
            fn wide(acc: &[i32], a: f32, row_scale: &[f32], c: f32, softcap: f32, out: &mut [f32]) {
                $crate::math::scores_in_place(acc, a, row_scale, c, softcap, out)
            }
            Self::require();
            // The AVX2 backend only: the AVX-512 one keeps the compiled loop (no AVX-512
            // machine was at hand to measure the explicit path against it).
            if softcap > 0.0 && $feature == "avx2" {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { super::scores_softcap_avx2(acc, a, row_scale, c, softcap, out) }
            } else {
                // SAFETY: the CPU supports `$feature` (checked just above).
                unsafe { wide(acc, a, row_scale, c, softcap, out) }
            }
        }

        fn prefetch_rows<T>(w: &[T], cols: usize, rows: &[u32]) {
            super::prefetch::rows_l2(w, cols, rows);
        }

        fn above_masks_f32(scores: &[f32], theta: f32, masks: &mut [u32]) {
            Self::require();
            // SAFETY: the CPU supports AVX2 (every x86 backend's `require` implies it).
            unsafe { super::above_masks_avx2(scores, theta, masks) }
        }
    };
}
#[cfg(any(feature = "std", target_feature = "avx2"))]
pub(crate) use elementwise_methods;

/// [`crate::math::scores_in_place`] with a soft-cap (`softcap > 0`), 8 scores per AVX2
/// vector: each group's arguments `acc * a * scale * c / softcap` (the oracle's operations
/// in its order); when all 8 are below `TANH_SMALL` in magnitude (no NaN), `tanh` is the
/// odd series that `tanh_f32` selects for them, computed with the same operations, so the
/// `exp` and the division are skipped (attention logits under Gemma-2's cap of 50 mostly
/// are); otherwise, and for the last `n % 8` scores, `tanh_f32` of each. Same bits as the
/// oracle either way.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(any(feature = "std", target_feature = "avx2"))]
#[target_feature(enable = "avx2")]
unsafe fn scores_softcap_avx2(acc: &[i32], a: f32, row_scale: &[f32], c: f32, softcap: f32, out: &mut [f32]) {
    use crate::math::{tanh_f32, T11, T13, T3, T5, T7, T9, TANH_SMALL};
    use core::arch::x86_64::*;
    let inv = 1.0 / softcap;
    let n = out.len().min(acc.len()).min(row_scale.len());
    let (va, vc, vinv, vcap) = (_mm256_set1_ps(a), _mm256_set1_ps(c), _mm256_set1_ps(inv), _mm256_set1_ps(softcap));
    let small = _mm256_set1_ps(TANH_SMALL);
    let sign = _mm256_set1_ps(-0.0);
    let k = |v: f32| _mm256_set1_ps(v);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, the length of all three slices' prefixes; `loadu` and
        // `storeu` need no alignment.
        let (x, r) =
            unsafe { (_mm256_loadu_si256(acc.as_ptr().add(i).cast()), _mm256_loadu_ps(row_scale.as_ptr().add(i))) };
        let u = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(x), va), r), vc), vinv);
        let ab = _mm256_andnot_ps(sign, u);
        if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(ab, small)) == 0xff {
            let a2 = _mm256_mul_ps(ab, ab);
            let p = k(T13);
            let p = _mm256_add_ps(_mm256_mul_ps(p, a2), k(T11));
            let p = _mm256_add_ps(_mm256_mul_ps(p, a2), k(T9));
            let p = _mm256_add_ps(_mm256_mul_ps(p, a2), k(T7));
            let p = _mm256_add_ps(_mm256_mul_ps(p, a2), k(T5));
            let p = _mm256_add_ps(_mm256_mul_ps(p, a2), k(T3));
            let t = _mm256_add_ps(ab, _mm256_mul_ps(_mm256_mul_ps(ab, a2), p));
            // copysign(t, u)
            let t = _mm256_or_ps(_mm256_andnot_ps(sign, t), _mm256_and_ps(sign, u));
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(vcap, t)) };
        } else {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), u) };
            for (o, &v) in out[i..i + 8].iter_mut().zip(&lanes) {
                *o = softcap * tanh_f32(v);
            }
        }
        i += 8;
    }
    for j in i..n {
        out[j] = softcap * tanh_f32(acc[j] as f32 * a * row_scale[j] * c * inv);
    }
}

/// [`crate::math::above_masks`] with AVX2: eight ordered comparisons per instruction
/// (`_CMP_GT_OQ` and `_CMP_LT_OQ` are false for NaN, like the scalar `>` and `<`), their
/// sign bits gathered by `vmovmskps`.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(any(feature = "std", target_feature = "avx2"))]
#[target_feature(enable = "avx2")]
unsafe fn above_masks_avx2(scores: &[f32], theta: f32, masks: &mut [u32]) {
    use core::arch::x86_64::*;
    let t = _mm256_set1_ps(theta);
    let inf = _mm256_set1_ps(f32::INFINITY);
    for (m, group) in masks.iter_mut().zip(scores.chunks_exact(32)) {
        let mut bits = 0u32;
        for q in 0..4 {
            // SAFETY: `group` has 32 floats; `loadu` needs no alignment.
            let v = unsafe { _mm256_loadu_ps(group.as_ptr().add(8 * q)) };
            let pass = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, t), _mm256_cmp_ps::<_CMP_LT_OQ>(v, inf));
            bits |= (_mm256_movemask_ps(pass) as u32) << (8 * q);
        }
        *m = bits;
    }
}

#[cfg(any(feature = "std", target_feature = "avx2"))]
pub(crate) mod prefetch {
    //! Software prefetch policy shared by the x86 backends (measured on the Zen 4 VM of
    //! docs/PERFORMANCE.md, where DRAM sits behind 4 KiB pages and nested paging).
    //!
    //! - **Streams** (consecutive rows): the hardware prefetchers stop at every 4 KiB page
    //!   and each new page costs a (nested) page walk. One prefetch of the line
    //!   [`PAGE_AHEAD`] bytes ahead, issued when a load enters a new page, keeps the walks
    //!   and the prefetcher restarts off the critical path: a plain 16-byte-load sum went
    //!   from 21 to about 29 GB/s, VNNI `gemv_i8` from 1.15-1.5x to 0.75-0.95x the time of
    //!   that plain sum. Prefetching every line instead measured slower than none.
    //! - **Gathers** (listed rows, unless [`in_stream`]): every line of the
    //!   row about [`GATHER_AHEAD`] bytes ahead in the list is prefetched into L2
    //!   (`prefetcht1`; into L1 measured slower), with a prologue for the first rows
    //!   ([`Gather`]). The AVX-512 `gemv_rows` and `gemv_t_rows` on long rows instead
    //!   read a group of 8 rows across their columns and prefetch, line by line, the
    //!   same columns of the rows a few groups later: that steady schedule kept more
    //!   lines in flight (a 1081-of-13824 gather of 1280-byte rows went from 35-36 % to
    //!   39-40 % of the read bandwidth, every 8th 2304-byte row from 35-37 % to 43-44 %).
    //!
    //! - **Strided gathers** (bundled layouts, row `r` at `r * stride`, see
    //!   `Kernels::gemv_rows_strided_i8`): the gather prefetchers take the rows' `stride` and
    //!   a `span`, the bytes prefetched from each row's start. Both gathers pass
    //!   `span = cols`: `gemv_rows` with `span = stride` (the K2 pass over a bundle bringing
    //!   each neuron's V part along for the `gemv_t_rows` pass, the grouped schedule adding
    //!   the rest of each record once the group's columns were done) was measured in interleaved runs on the Zen 4 VM and was slower: Spark FFN 2.80 -
    //!   2.87x against 2.95 - 2.97x over 8 and 12 rounds (docs/PERFORMANCE.md). The gather distances count `span` bytes per row, so the bytes in
    //!   flight stay the same. Page-entry prefetches of rows [`in_stream`] cover the whole
    //!   `stride` of each record (every page boundary of a run of consecutive records, gaps
    //!   included). With `stride == span == cols` all of this is the unstrided schedule.
    //!
    //! Prefetching is a hint: it never faults and is not a memory access, so the
    //! addresses may lie outside the slices (they are formed with `wrapping_add` /
    //! `wrapping_mul` and never dereferenced; a record's padding or second part may lie
    //! past the end of the view a gather was given). A stream thus keeps prefetching past
    //! the end of a slice, which is what a caller streaming one matrix in chunks (the Spark
    //! FFN predictor) needs.

    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};

    /// How far ahead of a streaming load the page-entry prefetch reaches (16 pages).
    pub(crate) const PAGE_AHEAD: usize = 64 * 1024;
    /// Bytes of listed rows kept in flight ahead of the row being computed.
    pub(crate) const GATHER_AHEAD: usize = 64 * 1024;
    const PAGE: usize = 4096;

    /// Page-entry prefetch for the `len` bytes at `p`, part of a stream: for every 4 KiB
    /// page boundary in `[p, p + len)`, prefetch the line [`PAGE_AHEAD`] bytes past it into
    /// L1. Called once per row rather than per load (nothing to do for most short rows), it
    /// issues exactly one prefetch per page of a run of consecutive rows.
    #[inline(always)]
    pub(crate) fn pages_ahead(p: *const i8, len: usize) {
        let a = p as usize;
        let end = a.saturating_add(len);
        let mut b = a.div_ceil(PAGE) * PAGE;
        while b < end {
            // SAFETY: `_mm_prefetch` is a hint (SSE, baseline on x86-64) that never
            // faults and accesses no memory; the pointer is never dereferenced.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(b - a + PAGE_AHEAD)) };
            b += PAGE;
        }
    }

    /// Prefetches every cache line of the `len` bytes at `p` into L2.
    #[inline(always)]
    pub(crate) fn lines_l2(p: *const i8, len: usize) {
        if len == 0 {
            return;
        }
        let off = (p as usize) & 63;
        let mut q = 0;
        while q < len + off {
            // SAFETY: as in `pages_ahead`: a hint, never dereferenced.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(q).wrapping_sub(off)) };
            q += 64;
        }
    }

    /// Every line of every listed row of `w` (`[n_rows, cols]`) into L2; rows outside `w`
    /// are skipped (`Kernels::prefetch_rows`).
    #[inline]
    pub(crate) fn rows_l2<T>(w: &[T], cols: usize, rows: &[u32]) {
        let n_rows = w.len().checked_div(cols).unwrap_or(0);
        let row_bytes = cols * core::mem::size_of::<T>();
        let base = w.as_ptr().cast::<i8>();
        for &r in rows {
            if (r as usize) < n_rows {
                lines_l2(base.wrapping_add(r as usize * row_bytes), row_bytes);
            }
        }
    }

    /// How many listed rows of `cols` bytes ahead the gather prefetch runs (at least 2).
    #[inline(always)]
    pub(crate) fn gather_rows_ahead(cols: usize) -> usize {
        (GATHER_AHEAD / cols.max(1)).max(2)
    }

    /// Whether listed row `j` is at least the fourth of a run of rows consecutive in
    /// memory: such a row is part of a stream the hardware prefetchers already follow, and
    /// gets page-entry prefetches instead of gather prefetches. (Skipping the gather
    /// prefetch for every row that merely follows its predecessor left the 8 % of such rows
    /// in a Spark FFN selection unprefetched: 1.47x instead of 1.1-1.2x the bound.)
    #[inline(always)]
    pub(crate) fn in_stream(rows: &[u32], j: usize) -> bool {
        j >= 3
            && j < rows.len()
            && rows[j] == rows[j - 1].wrapping_add(1)
            && rows[j - 1] == rows[j - 2].wrapping_add(1)
            && rows[j - 2] == rows[j - 3].wrapping_add(1)
    }

    /// Listed rows per group of the grouped gather kernels (`gemv_rows` on rows of
    /// [`GROUP_MIN_COLS`] bytes and more).
    pub(crate) const GROUP: usize = 8;
    /// Rows shorter than this (a few cache lines, e.g. Spark attention's 128-byte K2 rows)
    /// are gathered row after row with [`Gather`] instead, which measured 5-10 % faster
    /// for them.
    pub(crate) const GROUP_MIN_COLS: usize = 256;
    /// A grouped gather prefetches at least this many groups ahead...
    const GROUPS_AHEAD: usize = 2;
    /// ...and at least this many bytes of rows ahead (shorter rows: more groups).
    const GROUP_BYTES_AHEAD: usize = 32 * 1024;

    /// Prefetcher of a grouped gather, which reads [`GROUP`] listed rows at a time across
    /// their columns: at every 64-column step the same line of the rows at least
    /// [`GROUPS_AHEAD`] groups and [`GROUP_BYTES_AHEAD`] bytes (of `span` bytes per row)
    /// later is prefetched into L2, the first of them whole, up front
    /// ([`GroupGather::start`]). That steady, line by line schedule kept more lines in flight
    /// than [`Gather`]'s whole rows 64 KiB ahead (docs/performance-history.md, "Update 2").
    pub(crate) struct GroupGather<'r> {
        base: *const i8,
        stride: usize,
        rows: &'r [u32],
        ahead: usize,
    }

    impl<'r> GroupGather<'r> {
        /// Prefetches the rows (row `r` at `w + r * stride`, `span` bytes each) before the
        /// first prefetched group, whole.
        #[inline(always)]
        pub(crate) fn start(w: &[i8], stride: usize, span: usize, rows: &'r [u32]) -> Self {
            let ahead = GROUP * GROUP_BYTES_AHEAD.div_ceil(GROUP * span.max(1)).max(GROUPS_AHEAD);
            let g = GroupGather { base: w.as_ptr(), stride, rows, ahead };
            for j in 0..ahead.min(rows.len()) {
                lines_l2(g.row_start(j), span);
            }
            g
        }

        /// Start address of listed row `j`, for prefetching only (never dereferenced).
        #[inline(always)]
        fn row_start(&self, j: usize) -> *const i8 {
            self.base.wrapping_add((self.rows[j] as usize).wrapping_mul(self.stride))
        }

        /// The rows to prefetch while computing the group that starts at list position
        /// `j`: their start addresses (the first `n` valid, the rest null) and `n`.
        #[inline(always)]
        pub(crate) fn next(&self, j: usize) -> ([*const i8; GROUP], usize) {
            let nj = j + self.ahead;
            let n = self.rows.len().saturating_sub(nj).min(GROUP);
            (core::array::from_fn(|t| if t < n { self.row_start(nj + t) } else { core::ptr::null() }), n)
        }
    }

    /// Prefetches into L2 the line at column `k` of each row starting at `next`.
    #[inline(always)]
    pub(crate) fn line_of_each(next: &[*const i8], k: usize) {
        for &p in next {
            lines_l2(p.wrapping_add(k), 1);
        }
    }

    /// Row-list prefetcher: call [`Gather::start`] once, then [`Gather::at`] before
    /// computing listed row `j` (in increasing `j`). Each prefetched row is the `span` bytes
    /// from `w + r * stride`.
    pub(crate) struct Gather<'r> {
        base: *const i8,
        stride: usize,
        span: usize,
        rows: &'r [u32],
        ahead: usize,
    }

    impl<'r> Gather<'r> {
        /// Prefetches the first rows of the list (those not [`in_stream`]), about
        /// [`GATHER_AHEAD`] bytes (`span` per row) of them.
        #[inline(always)]
        pub(crate) fn start(w: &[i8], stride: usize, span: usize, rows: &'r [u32]) -> Self {
            let g = Gather { base: w.as_ptr(), stride, span, rows, ahead: gather_rows_ahead(span) };
            for j in 0..g.ahead.min(rows.len()) {
                g.row(j);
            }
            g
        }

        /// Prefetches listed row `j + ahead` (unless it is [`in_stream`]).
        #[inline(always)]
        pub(crate) fn at(&self, j: usize) {
            let t = j + self.ahead;
            if t < self.rows.len() {
                self.row(t);
            }
        }

        #[inline(always)]
        fn row(&self, t: usize) {
            if !in_stream(self.rows, t) {
                let at = (self.rows[t] as usize).wrapping_mul(self.stride);
                lines_l2(self.base.wrapping_add(at), self.span);
            }
        }
    }
}

#[cfg(feature = "std")]
mod auto {
    use super::avx2::Avx2;
    use super::avx512vnni::Avx512Vnni;
    use crate::{Kernels, Scalar};

    /// Run-time dispatch to the fastest backend this CPU supports: [`Avx512Vnni`], then
    /// [`Avx2`], then [`Scalar`]. The CPU check is `is_x86_feature_detected!`, which `std`
    /// caches after the first call, so dispatch costs a load and a branch per kernel call.
    ///
    /// There is no size-based choice: with page-entry prefetching (`x86::prefetch`)
    /// `Avx512Vnni` measured within run-to-run noise of `Avx2` on the DRAM-streaming shapes
    /// of `hal/benches/kernels.rs` and faster on the cache-resident and gathered ones
    /// (docs/performance-history.md).
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Auto;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Level {
        Vnni,
        Avx2,
        Scalar,
    }

    #[inline(always)]
    fn level() -> Level {
        if Avx512Vnni::available() {
            Level::Vnni
        } else if Avx2::available() {
            Level::Avx2
        } else {
            Level::Scalar
        }
    }

    macro_rules! dispatch {
        ($f:ident($($a:expr),*)) => {
            match level() {
                Level::Vnni => Avx512Vnni::$f($($a),*),
                Level::Avx2 => Avx2::$f($($a),*),
                Level::Scalar => Scalar::$f($($a),*),
            }
        };
    }

    impl Auto {
        /// Name of the backend [`Auto`] dispatches to on this CPU.
        pub fn selected_name() -> &'static str {
            match level() {
                Level::Vnni => Avx512Vnni::NAME,
                Level::Avx2 => Avx2::NAME,
                Level::Scalar => Scalar::NAME,
            }
        }
    }

    crate::dispatching_kernels!(Auto, dispatch);
}
