//! The AVX2 backend (x86-64): int8 kernels on 256-bit integer vectors.
//!
//! Every product is exact: int8 values are sign-extended to int16
//! (`vpmovsxbw`, [`_mm256_cvtepi8_epi16`]) and multiplied pairwise into int32 lanes with
//! `vpmaddwd` ([`_mm256_madd_epi16`]), whose two-product sums (at most `2 * 16384`) cannot
//! saturate. The saturating `vpmaddubsw` is deliberately not used. Lane sums are added with
//! wrapping `i32` arithmetic; since every true total fits in `i32` (see [`crate::MAX_ACC_TERMS`])
//! the wrapped result equals the exact one regardless of the order of additions.
//!
//! - `gemv` streams one row at a time (measured faster than sharing activation loads
//!   across four rows, see the note above `gemv`), with the page-entry prefetches of
//!   `x86::prefetch`. `gemv_rows` (the strided gather; `gemv_rows_i8` is it with
//!   `stride = cols`) takes 8 listed rows at a time across their columns and prefetches,
//!   line by line, the columns of the rows a few groups later.
//! - Rows of 16 to 256 bytes in steps of 16 (`gemv_short`: attention's key part 1, its
//!   `K2` gathers and the dense keys at `gemma2-2b`) keep the widened activations in
//!   registers for the whole call and reduce the lane sums of 8 rows together, in `gemv`
//!   and in the short-row path of `gemv_rows`. Rows of 64-byte steps from 320 to 4096
//!   bytes (`gemv_mid`: the FFN predictor, projections, logits) widen the activations
//!   once per call into a stack buffer and reduce 8 rows together too.
//! - `gemv_t_rows` pairs rows: the int16 words of rows `a` and `b` are interleaved so one
//!   `vpmaddwd` against the broadcast pair `(c_a, c_b)` gives `c_a*W_a + c_b*W_b` per column;
//!   up to four pairs are summed before `y` is read and written, and the next eight listed
//!   rows are prefetched into L2 a cache line per 64 columns.
//! - `quantize_sym_i8` runs the oracle's exact float steps (absmax over finite values,
//!   `127/absmax`, truncate, compare the exact fraction with 0.5, clamp) eight lanes at a time,
//!   so it is bit-identical to [`Scalar`](crate::Scalar).
//!
//! Tested bit-exact against the scalar oracle by `kernel_suite!(avx2_suite, ..)` in
//! `tests/backends.rs` (skipped, with a message, on CPUs without AVX2).

use core::arch::x86_64::*;

use super::prefetch::{in_stream, line_of_each, lines_l2, pages_ahead, Gather, GroupGather, GROUP, GROUP_MIN_COLS};
use crate::scalar::{absmax_finite, quantize_one};
use crate::{check, Kernels};

/// The AVX2 backend. Its kernels panic if the CPU lacks AVX2 (checked with
/// `is_x86_feature_detected!` in `std` builds; `no_std` builds only compile this backend when
/// the target enables `avx2` at compile time).
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx2;

impl Avx2 {
    /// Whether this CPU can run the AVX2 backend.
    #[inline]
    pub fn available() -> bool {
        #[cfg(target_feature = "avx2")]
        {
            true
        }
        #[cfg(all(not(target_feature = "avx2"), feature = "std"))]
        {
            std::is_x86_feature_detected!("avx2")
        }
        #[cfg(all(not(target_feature = "avx2"), not(feature = "std")))]
        {
            false
        }
    }

    #[inline(always)]
    fn require() {
        assert!(Self::available(), "spark-hal: the Avx2 backend needs a CPU with AVX2");
    }
}

impl Kernels for Avx2 {
    const NAME: &'static str = "avx2";

    fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        check::dot(a, b);
        Self::require();
        // SAFETY: AVX2 is available (checked just above).
        unsafe { dot(a, b, 0) }
    }

    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        check::gemv(w, cols, x, y);
        Self::require();
        // SAFETY: AVX2 is available (checked just above).
        unsafe { gemv(w, cols, x, y) }
    }

    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows_strided(stride, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        Self::require();
        // SAFETY: AVX2 is available (checked just above).
        unsafe { gemv_rows(w, stride, cols, rows, x, y) }
    }

    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if !check::gemv_t_rows_strided(stride, cols, rows, c, y) {
            return;
        }
        Self::require();
        // SAFETY: AVX2 is available (checked just above).
        unsafe { gemv_t_rows(w, stride, cols, rows, c, y) }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        Self::require();
        // SAFETY: AVX2 is available (checked just above).
        unsafe { quantize(x, q) }
    }

    super::elementwise_methods!("avx2");
}

/// Loads 16 bytes of `s` starting at `at`.
///
/// # Safety
/// `at + 16 <= s.len()`.
#[inline(always)]
unsafe fn load16(s: &[i8], at: usize) -> __m128i {
    debug_assert!(at + 16 <= s.len());
    // SAFETY: the caller guarantees `at + 16 <= s.len()`, so the 16 bytes are inside `s`;
    // `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(s.as_ptr().add(at).cast()) }
}

/// Sign-extends 16 bytes of `s` at `at` to int16 lanes.
///
/// # Safety
/// `at + 16 <= s.len()` and the CPU supports AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn widen16(s: &[i8], at: usize) -> __m256i {
    // SAFETY: forwarded from the caller's contract.
    _mm256_cvtepi8_epi16(unsafe { load16(s, at) })
}

/// Horizontal sum of eight i32 lanes (wrapping).
#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Exact `sum a[k]*b[k]` for `k >= from` with plain wrapping arithmetic (the ragged tail).
#[inline(always)]
fn tail_dot(a: &[i8], b: &[i8], from: usize) -> i32 {
    let mut s = 0i32;
    for k in from..a.len() {
        s = s.wrapping_add(a[k] as i32 * b[k] as i32);
    }
    s
}

/// `a . b` (`a.len() == b.len()`), 64 products per iteration into four accumulators.
/// `page`: `a` is part of a stream of consecutive rows (records of `page` bytes from `a`'s
/// start), give those bytes page-entry prefetches; 0 for none.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
unsafe fn dot(a: &[i8], b: &[i8], page: usize) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    if page > 0 {
        pages_ahead(a.as_ptr(), page);
    }
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut k = 0;
    while k + 64 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `k + 16j + 16 <= k + 64 <= n` = both lengths.
            let (aj, bj) = unsafe { (widen16(a, k + 16 * j), widen16(b, k + 16 * j)) };
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(aj, bj));
        }
        k += 64;
    }
    while k + 16 <= n {
        // SAFETY: `k + 16 <= n` = both lengths.
        let (a0, b0) = unsafe { (widen16(a, k), widen16(b, k)) };
        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(a0, b0));
        k += 16;
    }
    let s = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
    hsum(s).wrapping_add(tail_dot(a, b, k))
}

// One row per pass (also in `gemv_short` and `gemv_mid`, which only keep the widened
// activations and defer the lane sums): on the x86-64 machine measured (docs/performance-history.md), streaming one
// row at a time beat four rows per pass sharing each activation load (four interleaved
// streams defeat part of the hardware prefetching); the activations stay in L1 either way.
// What the hardware prefetchers miss is the start of every 4 KiB page: the page-entry
// prefetch (`x86::prefetch`) took `gemv_i8` on DRAM-resident rows from 1.1-1.3x to
// 0.75-0.9x the time of a plain summing pass over the same bytes.

/// # Safety
/// The CPU supports AVX2; shapes checked by [`check::gemv`].
#[target_feature(enable = "avx2")]
unsafe fn gemv(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
    if cols == 0 {
        y.fill(0);
        return;
    }
    if short_rows(cols) {
        // SAFETY: AVX2 is enabled on this function; `check::gemv`: `w` holds `y.len()`
        // rows of `cols` bytes (consecutive rows: one stream).
        unsafe { gemv_short(x, y, |i| (&w[i * cols..(i + 1) * cols], cols)) };
        return;
    }
    if cols % 64 == 0 && cols <= MID_MAX_COLS {
        // SAFETY: AVX2 is enabled on this function; shapes as `check::gemv`.
        unsafe { gemv_mid(w, cols, x, y) };
        return;
    }
    for (yi, r) in y.iter_mut().zip(w.chunks_exact(cols)) {
        // SAFETY: AVX2 is enabled on this function. Consecutive rows form one stream.
        *yi = unsafe { dot(r, x, cols) };
    }
}

/// The longest rows [`gemv_mid`] takes (its widened activations: 8 KiB on the stack).
const MID_MAX_COLS: usize = 4096;

/// [`gemv`] for rows of a multiple of 64 bytes up to [`MID_MAX_COLS`]: the activations
/// are widened to int16 once per call into a stack buffer, each row then costs its own
/// loads and widening only, and the lane sums of 8 rows are reduced together.
///
/// # Safety
/// The CPU supports AVX2; `cols % 64 == 0`, `cols <= MID_MAX_COLS`, shapes as `check::gemv`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn gemv_mid(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
    let nc = cols / 16;
    // Only the `nc` chunks used are written: zeroing the whole 8 KiB buffer cost as much
    // as a few rows of a short call (the threaded products call this once per chunk).
    let mut buf = [core::mem::MaybeUninit::<__m256i>::uninit(); MID_MAX_COLS / 16];
    for (c, v) in buf[..nc].iter_mut().enumerate() {
        // SAFETY: chunk `c < cols / 16` ends inside `x` (`x.len() = cols`).
        v.write(unsafe { widen16(x, 16 * c) });
    }
    // SAFETY: the first `nc <= MID_MAX_COLS / 16` elements were written just above, and
    // `MaybeUninit<T>` has the layout of `T`.
    let xw: &[__m256i] = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<__m256i>(), nc) };
    let dot = |r: &[i8]| -> __m256i {
        pages_ahead(r.as_ptr(), cols);
        let mut acc = [_mm256_setzero_si256(); 4];
        for (k, xq) in xw.chunks_exact(4).enumerate() {
            for j in 0..4 {
                // SAFETY: `r` has `cols` bytes; chunk `4k + j` ends at `64k + 16j + 16 <= cols`.
                let p = _mm256_madd_epi16(unsafe { widen16(r, 64 * k + 16 * j) }, xq[j]);
                acc[j] = _mm256_add_epi32(acc[j], p);
            }
        }
        _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]))
    };
    rows_by_8(y, |i| dot(&w[i * cols..(i + 1) * cols]));
}

/// `y[i] = ` the lane sum of `lanes(i)` for every `i`, the lanes of 8 rows reduced
/// together (two `vphaddd` levels and one cross-lane add instead of a horizontal sum per
/// row); rows are taken in order.
#[inline]
#[target_feature(enable = "avx2")]
fn rows_by_8(y: &mut [i32], lanes: impl Fn(usize) -> __m256i) {
    let m = y.len();
    let mut i = 0;
    while i + 8 <= m {
        let a: [__m256i; 8] = core::array::from_fn(|t| lanes(i + t));
        // hadd(a, b) = [a0+a1, a2+a3, b0+b1, b2+b3 | the same for lanes 4..7]: after two
        // levels lane t of each 128-bit half holds a sum of four lanes of row t (of 4).
        let lo = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
        let hi = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
        // [rows 0..3, low halves | rows 4..7, low halves] + [the same, high halves]
        let s = _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(lo, hi), _mm256_permute2x128_si256::<0x31>(lo, hi));
        // SAFETY: `i + 8 <= m = y.len()`: the 32 bytes at `y[i]` are inside `y`.
        unsafe { _mm256_storeu_si256(y.as_mut_ptr().add(i).cast(), s) };
        i += 8;
    }
    while i < m {
        y[i] = hsum(lanes(i));
        i += 1;
    }
}

/// Whether rows of `cols` bytes go to [`gemv_short`]: a multiple of 16, at most 256.
#[inline(always)]
fn short_rows(cols: usize) -> bool {
    cols % 16 == 0 && (16..=256).contains(&cols)
}

/// `y[i] = row(i).0 . x` for rows of `x.len()` bytes, [`short_rows`] (Spark attention's
/// key part 1 and its `K2` gathers and the dense keys of `gemma2-2b`, the demo model's
/// projections): [`rows_short`] with its column count fixed at compile time.
///
/// # Safety
/// The CPU supports AVX2; `short_rows(x.len())`; every `row(i)` for `i < y.len()` has
/// `x.len()` bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn gemv_short<'a>(x: &[i8], y: &mut [i32], row: impl Fn(usize) -> (&'a [i8], usize)) {
    // SAFETY: (every arm) forwarded from this function's contract; `x.len() = 16 NC`.
    unsafe {
        match x.len() / 16 {
            1 => rows_short::<1>(x, y, row),
            2 => rows_short::<2>(x, y, row),
            3 => rows_short::<3>(x, y, row),
            4 => rows_short::<4>(x, y, row),
            5 => rows_short::<5>(x, y, row),
            6 => rows_short::<6>(x, y, row),
            7 => rows_short::<7>(x, y, row),
            8 => rows_short::<8>(x, y, row),
            9 => rows_short::<9>(x, y, row),
            10 => rows_short::<10>(x, y, row),
            11 => rows_short::<11>(x, y, row),
            12 => rows_short::<12>(x, y, row),
            13 => rows_short::<13>(x, y, row),
            14 => rows_short::<14>(x, y, row),
            15 => rows_short::<15>(x, y, row),
            _ => rows_short::<16>(x, y, row),
        }
    }
}

/// [`gemv_short`] for rows of `16 * NC` bytes (`NC` in 1..=16): the activations are
/// widened to int16 once for the whole call (the general loops widen them again for every
/// row), the rows are read one after the other (`row(i)` returns row `i` and its
/// page-entry prefetch span, 0 for none, after issuing any gather prefetch of its own),
/// and the lane sums of 8 rows are reduced together (two `vphaddd` levels and one
/// cross-lane add instead of a horizontal sum per row).
///
/// # Safety
/// The CPU supports AVX2; `x.len() == 16 * NC`; every `row(i)` for `i < y.len()` has
/// `16 * NC` bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn rows_short<'a, const NC: usize>(x: &[i8], y: &mut [i32], row: impl Fn(usize) -> (&'a [i8], usize)) {
    let n = 16 * NC;
    debug_assert_eq!(x.len(), n);
    let xv: [__m256i; NC] = core::array::from_fn(|c| {
        // SAFETY: chunk `c < NC` ends at `16 c + 16 <= n = x.len()`.
        unsafe { widen16(x, 16 * c) }
    });
    // The eight int32 lanes of row `i . x` (two accumulators: two dependency chains).
    let dot = |i: usize| -> __m256i {
        let (r, page) = row(i);
        assert_eq!(r.len(), n);
        if page > 0 {
            pages_ahead(r.as_ptr(), page);
        }
        let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for (c, &xc) in xv.iter().enumerate() {
            // SAFETY: `r` has `n = 16 NC` bytes and chunk `c < NC` ends inside it.
            let p = _mm256_madd_epi16(unsafe { widen16(r, 16 * c) }, xc);
            if c % 2 == 0 {
                a0 = _mm256_add_epi32(a0, p);
            } else {
                a1 = _mm256_add_epi32(a1, p);
            }
        }
        _mm256_add_epi32(a0, a1)
    };
    rows_by_8(y, dot);
}

/// `y[j] = row rows[j] . x`, a gather of rows `stride` bytes apart. Rows of
/// [`GROUP_MIN_COLS`] bytes and more: [`GROUP`] listed rows at a time across all columns,
/// one accumulator per row and each activation chunk widened once per group, prefetching
/// as [`GroupGather`] (the schedule of the AVX-512 kernel). Shorter rows: row after row,
/// prefetching as [`Gather`]. Either prefetches the `cols` bytes of each upcoming row.
///
/// # Safety
/// The CPU supports AVX2; shapes checked by [`check::gemv_rows_strided`] with `cols > 0`.
#[target_feature(enable = "avx2")]
unsafe fn gemv_rows(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
    const G: usize = GROUP;
    if cols < GROUP_MIN_COLS {
        // Short rows: row after row, prefetched 64 KiB ahead in the list.
        let gp = Gather::start(w, stride, cols, rows);
        if short_rows(cols) {
            let row = |j: usize| {
                gp.at(j);
                (check::row(w, stride, cols, rows[j]), if in_stream(rows, j) { stride } else { 0 })
            };
            // SAFETY: AVX2 is enabled on this function; every listed row has `cols =
            // x.len()` bytes (`check::row`).
            unsafe { gemv_short(x, y, row) };
            return;
        }
        for j in 0..rows.len() {
            gp.at(j);
            let page = if in_stream(rows, j) { stride } else { 0 };
            // SAFETY: AVX2 is enabled on this function.
            y[j] = unsafe { dot(check::row(w, stride, cols, rows[j]), x, page) };
        }
        return;
    }
    let n = cols;
    let m = rows.len();
    let gp = GroupGather::start(w, stride, cols, rows);
    let mut j = 0;
    while j < m {
        let g = (m - j).min(G);
        // This group's rows, bounds-checked (a last, partial group repeats its first row;
        // those sums are never stored).
        let rp: [&[i8]; G] = check::group(w, stride, n, &rows[j..j + g]);
        let (next, n_next) = gp.next(j);
        let mut acc = [_mm256_setzero_si256(); G];
        let mut k = 0;
        while k + 16 <= n {
            if k % 64 == 0 {
                line_of_each(&next[..n_next], k);
            }
            // SAFETY: `k + 16 <= n` = the length of `x` and of every row in `rp`.
            let xv = unsafe { widen16(x, k) };
            for (a, r) in acc.iter_mut().zip(&rp) {
                // SAFETY: as above.
                let wv = unsafe { widen16(r, k) };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(wv, xv));
            }
            k += 16;
        }
        for t in 0..g {
            y[j + t] = hsum(acc[t]).wrapping_add(tail_dot(rp[t], x, k));
        }
        j += g;
    }
}

/// `y += sum_p (c_a * row_a + c_b * row_b)` over `P` row pairs; every row has `y.len()`
/// elements. `cp[p]` packs `(c_a, c_b)` as the low and high int16 halves of an i32.
/// `next`: rows read after these, prefetched into L2 one cache line per 64 columns;
/// `stream`: the rows are part of a stream of consecutive records of `stream` bytes
/// (page-entry prefetches over each record), 0 if not.
///
/// # Safety
/// The CPU supports AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn t_pairs<const P: usize>(
    r: [(&[i8], &[i8]); P],
    cp: [i32; P],
    next: &[*const i8],
    stream: usize,
    y: &mut [i32],
) {
    let n = y.len();
    let r = r.map(|(a, b)| (&a[..n], &b[..n]));
    let cv = cp.map(|v| _mm256_set1_epi32(v));
    if stream > 0 {
        for (a, b) in r {
            pages_ahead(a.as_ptr(), stream);
            pages_ahead(b.as_ptr(), stream);
        }
    }
    let mut k = 0;
    while k + 16 <= n {
        if k % 64 == 0 {
            for &p in next {
                lines_l2(p.wrapping_add(k), 1);
            }
        }
        let mut lo = _mm256_setzero_si256();
        let mut hi = _mm256_setzero_si256();
        for p in 0..P {
            // SAFETY: `k + 16 <= n` and both rows of the pair have exactly `n` elements.
            let (wa, wb) = unsafe { (widen16(r[p].0, k), widen16(r[p].1, k)) };
            // Per 128-bit lane: lo holds columns 0-3 (| 8-11), hi columns 4-7 (| 12-15),
            // each i32 lane as the int16 pair (W_a[col], W_b[col]).
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(wa, wb), cv[p]));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(wa, wb), cv[p]));
        }
        let c0 = _mm256_permute2x128_si256::<0x20>(lo, hi); // columns 0..8
        let c1 = _mm256_permute2x128_si256::<0x31>(lo, hi); // columns 8..16
        let yk = &mut y[k..k + 16];
        // SAFETY: `yk` has 16 i32 = 2 x 32 bytes; `loadu`/`storeu` need no alignment.
        unsafe {
            let p = yk.as_mut_ptr().cast::<__m256i>();
            _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), c0));
            _mm256_storeu_si256(p.add(1), _mm256_add_epi32(_mm256_loadu_si256(p.add(1)), c1));
        }
        k += 16;
    }
    for col in k..n {
        let mut s = 0i32;
        for p in 0..P {
            let (ca, cb) = (cp[p] as i16 as i32, cp[p] >> 16);
            s = s.wrapping_add(ca * r[p].0[col] as i32).wrapping_add(cb * r[p].1[col] as i32);
        }
        y[col] = y[col].wrapping_add(s);
    }
}

/// Packs two int8 coefficients as the int16 halves of an i32 (`a` low, `b` high).
#[inline(always)]
fn pack_pair(a: i8, b: i8) -> i32 {
    (a as i16 as u16 as u32 | ((b as i16 as u16 as u32) << 16)) as i32
}

/// `y += sum_j c[j] * row rows[j]` over rows `stride` bytes apart; the next eight rows'
/// `cols` bytes are prefetched.
///
/// # Safety
/// The CPU supports AVX2; shapes checked by [`check::gemv_t_rows_strided`] with `cols > 0`.
#[target_feature(enable = "avx2")]
unsafe fn gemv_t_rows(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    let row = |j: usize| check::row(w, stride, cols, rows[j]);
    let m = rows.len();
    // Start addresses of the 8 listed rows after position `j` (for prefetching only).
    let next = |j: usize| -> [*const i8; 8] {
        core::array::from_fn(|t| {
            rows.get(j + t).map_or(core::ptr::null(), |&r| w.as_ptr().wrapping_add((r as usize).wrapping_mul(stride)))
        })
    };
    let mut j = 0;
    while j + 8 <= m {
        let nx = next(j + 8);
        let n_next = (m - j - 8).min(8);
        let r = [(row(j), row(j + 1)), (row(j + 2), row(j + 3)), (row(j + 4), row(j + 5)), (row(j + 6), row(j + 7))];
        let cp = [
            pack_pair(c[j], c[j + 1]),
            pack_pair(c[j + 2], c[j + 3]),
            pack_pair(c[j + 4], c[j + 5]),
            pack_pair(c[j + 6], c[j + 7]),
        ];
        let stream = if (j..j + 8).all(|t| in_stream(rows, t)) { stride } else { 0 };
        // SAFETY: AVX2 is enabled on this function; every row has `cols = y.len()` elements.
        unsafe { t_pairs(r, cp, &nx[..n_next], stream, y) };
        j += 8;
    }
    while j + 2 <= m {
        // SAFETY: as above.
        unsafe { t_pairs([(row(j), row(j + 1))], [pack_pair(c[j], c[j + 1])], &[], 0, y) };
        j += 2;
    }
    if j < m {
        // The odd row pairs with itself under a zero coefficient.
        // SAFETY: as above.
        unsafe { t_pairs([(row(j), row(j))], [pack_pair(c[j], 0)], &[], 0, y) };
    }
}

/// # Safety
/// The CPU supports AVX2; `q.len() == x.len()`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize(x: &[f32], q: &mut [i8]) -> f32 {
    let n = x.len().min(q.len());
    let (x, q) = (&x[..n], &mut q[..n]);
    // absmax over finite entries: max is exact and order-independent.
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let inf = _mm256_set1_ps(f32::INFINITY);
    let mut m = _mm256_setzero_ps();
    let mut k = 0;
    while k + 8 <= n {
        // SAFETY: `k + 8 <= n = x.len()`; `loadu` needs no alignment.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(k)) };
        let a = _mm256_and_ps(v, abs_mask);
        let finite = _mm256_cmp_ps::<_CMP_LT_OQ>(a, inf);
        m = _mm256_max_ps(m, _mm256_and_ps(a, finite));
        k += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` is 32 writable bytes.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    let absmax = lanes.iter().fold(absmax_finite(&x[k..]), |m, &v| if v > m { v } else { m });
    if absmax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let inv = 127.0 / absmax;
    let invv = _mm256_set1_ps(inv);
    let half = _mm256_set1_ps(0.5);
    let neg_half = _mm256_set1_ps(-0.5);
    let one = _mm256_set1_ps(1.0);
    let lim = _mm256_set1_ps(127.0);
    let neg_lim = _mm256_set1_ps(-127.0);
    // The oracle's `quantize_one` on eight lanes, as integers in i32 lanes.
    let quant8 = |at: usize| -> __m256i {
        // SAFETY: every call below has `at + 8 <= n = x.len()`.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(at)) };
        let p = _mm256_mul_ps(v, invv);
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
        let frac = _mm256_sub_ps(p, t);
        let up = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), one);
        let down = _mm256_and_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(frac, neg_half), one);
        let r = _mm256_sub_ps(_mm256_add_ps(t, up), down);
        let r = _mm256_min_ps(_mm256_max_ps(r, neg_lim), lim);
        // Zero where x is non-finite or the product is NaN (0 * inf).
        let ok = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_and_ps(v, abs_mask), inf),
            _mm256_cmp_ps::<_CMP_ORD_Q>(p, p),
        );
        _mm256_cvtps_epi32(_mm256_and_ps(r, ok))
    };
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut k = 0;
    while k + 32 <= n {
        let (v0, v1, v2, v3) = (quant8(k), quant8(k + 8), quant8(k + 16), quant8(k + 24));
        // Values are in [-127, 127]: the saturating packs are exact.
        let p = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
        let p = _mm256_permutevar8x32_epi32(p, order);
        // SAFETY: `k + 32 <= n = q.len()`; `storeu` needs no alignment.
        unsafe { _mm256_storeu_si256(q.as_mut_ptr().add(k).cast(), p) };
        k += 32;
    }
    for i in k..n {
        q[i] = quantize_one(x[i], inv);
    }
    absmax / 127.0
}
