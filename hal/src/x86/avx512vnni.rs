//! The AVX-512 VNNI backend (x86-64): `vpdpbusd` on 512-bit vectors, 64 int8 products per
//! instruction.
//!
//! `vpdpbusd` multiplies *unsigned* bytes by signed bytes and adds each group of four
//! products to an i32 lane (without saturation). The signed weights are made unsigned by
//! the usual offset: `u = w ^ 0x80 = w + 128`, so
//! `sum w*x = sum u*x - 128 * sum x`. The correction `128 * sum x` is computed once per
//! call (it only depends on the activations), or once per row group for `gemv_t_rows`
//! (`128 * sum c`). `sum u*x` may exceed `i32` on long rows, but every lane operation wraps
//! and the true result fits in `i32` (see [`crate::MAX_ACC_TERMS`]), so the wrapped
//! result is exact.
//!
//! - `gemv`, `dot`: rows are read one after the other (each row's loads are sequential:
//!   reading adjacent rows chunk by chunk instead halved a stream's speed on the Zen 4 VM
//!   of docs/performance-history.md) into one accumulator per row (rows of up to 256 bytes, their
//!   full chunks with plain loads and only a ragged end masked; four chains of 256-byte
//!   steps on longer rows, then a 128-byte step), and 16 rows are reduced
//!   together by a transpose-and-add tree (about 2 shuffles per row instead of a full
//!   horizontal reduction per row) into one 16-lane store.
//! - `gemv_rows` (a gather) on rows of 256 bytes and more: 8 listed rows at a time across
//!   their columns, one accumulator each, with the same 16-row reduction; shorter rows
//!   like `gemv`.
//! - `gemv_t_rows` interleaves the bytes of four rows so each i32 lane holds one column of
//!   all four; `vpdpbusd` against the broadcast coefficients `(c0, c1, c2, c3)` then gives
//!   `sum_j c_j * W_j[col]`, and a 4x4 transpose of 128-bit blocks restores column order.
//!   Rows of at most 256 columns keep all of `y` in registers (16 accumulators) for the
//!   whole row list; longer rows are taken 8 at a time across all columns, `y` staying
//!   in L1.
//! - Prefetching follows `x86::prefetch`: page-entry prefetches for streams (consecutive
//!   rows); for `gemv_rows` the rows at least 2 groups (and 32 KiB) ahead, line by line
//!   as the current group advances (short rows: whole rows about 64 KiB ahead); for `gemv_t_rows` on long rows the next 8 rows, chunk by
//!   chunk; for `gemv_t_rows` on short rows, L2 prefetches of the rows about 64 KiB ahead
//!   in the list. The gathers are the strided kernels (row `r` at `r * stride`; the
//!   unstrided ones are them with `stride = cols`); both prefetch the `cols` bytes of a
//!   row they read, not the rest of its record.
//!
//! Ragged ends use AVX-512 masked loads and stores (masked-off bytes read as zero and are
//! never accessed), so there is no scalar tail: a zero `x` byte cancels whatever `u` holds,
//! and masked-off output lanes are never stored. `quantize_sym_i8` is the AVX2 one.
//!
//! Tested bit-exact against the scalar oracle by `kernel_suite!(avx512vnni_suite, ..)` in
//! `tests/backends.rs` (skipped, with a message, on CPUs without AVX-512 VNNI).

use core::arch::x86_64::*;

use super::prefetch::{in_stream, line_of_each, lines_l2, pages_ahead, Gather, GroupGather, GROUP, GROUP_MIN_COLS};
use crate::{check, Kernels};

/// The AVX-512 VNNI backend (needs `avx512f`, `avx512bw`, `avx512vnni`, and `avx2` for
/// quantization). Its kernels panic if the CPU lacks any of them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512Vnni;

impl Avx512Vnni {
    /// Whether this CPU can run the AVX-512 VNNI backend.
    #[inline]
    pub fn available() -> bool {
        #[cfg(all(
            target_feature = "avx512vnni",
            target_feature = "avx512bw",
            target_feature = "avx512f",
            target_feature = "avx2"
        ))]
        {
            true
        }
        #[cfg(all(
            not(all(
                target_feature = "avx512vnni",
                target_feature = "avx512bw",
                target_feature = "avx512f",
                target_feature = "avx2"
            )),
            feature = "std"
        ))]
        {
            std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx2")
        }
        #[cfg(all(
            not(all(
                target_feature = "avx512vnni",
                target_feature = "avx512bw",
                target_feature = "avx512f",
                target_feature = "avx2"
            )),
            not(feature = "std")
        ))]
        {
            false
        }
    }

    #[inline(always)]
    fn require() {
        assert!(Self::available(), "spark-hal: the Avx512Vnni backend needs a CPU with AVX-512 VNNI");
    }
}

impl Kernels for Avx512Vnni {
    const NAME: &'static str = "avx512-vnni";

    fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        check::dot(a, b);
        Self::require();
        if a.is_empty() {
            return 0;
        }
        let mut out = [0];
        // SAFETY: the CPU features are available (checked just above); `a` has `b.len()`
        // elements.
        unsafe { gemv_by(Rows::One(a), b, &mut out) };
        out[0]
    }

    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        check::gemv(w, cols, x, y);
        Self::require();
        if cols == 0 {
            y.fill(0);
            return;
        }
        // SAFETY: the CPU features are available (checked just above); `w` holds `y.len()`
        // rows of `cols = x.len() > 0` elements.
        unsafe { gemv_by(Rows::Stream(w), x, y) };
    }

    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows_strided(stride, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        Self::require();
        // SAFETY: the CPU features are available (checked just above); every listed row
        // (bounds-checked where it is read) has `cols = x.len() > 0` elements,
        // `y.len() = rows.len()`.
        unsafe {
            if cols < GROUP_MIN_COLS {
                gemv_by(Rows::List(w, stride, rows), x, y)
            } else {
                gemv_gather(w, stride, rows, x, y)
            }
        };
    }

    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if !check::gemv_t_rows_strided(stride, cols, rows, c, y) {
            return;
        }
        Self::require();
        // SAFETY: the CPU features are available (checked just above).
        unsafe { gemv_t_rows(w, stride, cols, rows, c, y) }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        Self::require();
        // SAFETY: AVX2 is available (part of the check just above).
        unsafe { super::avx2::quantize(x, q) }
    }

    super::elementwise_methods!("avx512f");
}

/// Mask selecting the first `n` (<= 64) bytes of a 64-byte block.
#[inline(always)]
fn byte_mask(n: usize) -> __mmask64 {
    if n >= 64 {
        !0
    } else {
        (1u64 << n) - 1
    }
}

/// Loads `min(64, s.len() - at)` bytes of `s` from `at` (the rest of the vector is zero).
///
/// # Safety
/// `at <= s.len()`; the CPU supports AVX-512 F and BW.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn load64(s: &[i8], at: usize) -> __m512i {
    debug_assert!(at <= s.len());
    let m = byte_mask(s.len() - at);
    // SAFETY: only the `m`-selected bytes, all inside `s` (`at + popcount(m) <= s.len()`),
    // are accessed; masked-off bytes are neither read nor able to fault.
    unsafe { _mm512_maskz_loadu_epi8(m, s.as_ptr().add(at)) }
}

/// Loads the full 64 bytes of `s` at `at`.
///
/// # Safety
/// `at + 64 <= s.len()`; the CPU supports AVX-512 F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load64_full(s: &[i8], at: usize) -> __m512i {
    debug_assert!(at + 64 <= s.len());
    // SAFETY: the caller guarantees the 64 bytes are inside `s`; `loadu` needs no alignment.
    unsafe { _mm512_loadu_si512(s.as_ptr().add(at).cast()) }
}

/// `sum x` (wrapping i32), via `vpdpbusd` with all-ones unsigned bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn sum_i8(x: &[i8]) -> i32 {
    let ones = _mm512_set1_epi8(1);
    let mut acc = _mm512_setzero_si512();
    let mut k = 0;
    while k < x.len() {
        // SAFETY: `k < x.len()`; AVX-512 F/BW are enabled here.
        let v = unsafe { load64(x, k) };
        acc = _mm512_dpbusd_epi32(acc, ones, v);
        k += 64;
    }
    _mm512_reduce_add_epi32(acc)
}

/// Sixteen accumulators to one vector whose lane `i` is the (wrapping) sum of the lanes
/// of `a[i]`: pairs are interleaved and added (`unpack` + `add`) until each 128-bit block
/// holds four row sums, then the four blocks of each vector are transposed and added.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce16(a: &[__m512i; 16]) -> __m512i {
    // Per 128-bit block: [sum a, sum b, sum c, sum d] of that block's lanes.
    let four = |a: __m512i, b: __m512i, c: __m512i, d: __m512i| {
        let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
        let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
        _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd))
    };
    let u0 = four(a[0], a[1], a[2], a[3]);
    let u1 = four(a[4], a[5], a[6], a[7]);
    let u2 = four(a[8], a[9], a[10], a[11]);
    let u3 = four(a[12], a[13], a[14], a[15]);
    // Blocks (0 + 2, 1 + 3) of u0 and u1, then of u2 and u3.
    let v01 =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b01_00_01_00>(u0, u1), _mm512_shuffle_i32x4::<0b11_10_11_10>(u0, u1));
    let v23 =
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0b01_00_01_00>(u2, u3), _mm512_shuffle_i32x4::<0b11_10_11_10>(u2, u3));
    // [u0, u1, u2, u3] totals, four rows each, in row order.
    _mm512_add_epi32(_mm512_shuffle_i32x4::<0b10_00_10_00>(v01, v23), _mm512_shuffle_i32x4::<0b11_01_11_01>(v01, v23))
}

/// `y[t] = ` lane `t` of the 16-row reduction of `acc`, minus `corr`, for the
/// `y.len() <= 16` rows of a block.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_rows16(acc: &[__m512i; 16], corr: __m512i, y: &mut [i32]) {
    debug_assert!(y.len() <= 16);
    let s = _mm512_sub_epi32(reduce16(acc), corr);
    let mask = ((1u32 << y.len()) - 1) as __mmask16;
    // SAFETY: only the `mask`-selected i32s, all inside `y`, are written; masked-off
    // elements are neither written nor able to fault.
    unsafe { _mm512_mask_storeu_epi32(y.as_mut_ptr(), mask, s) };
}

/// The rows a [`gemv_by`] loop reads, which also decides its prefetching (see
/// `x86::prefetch`); listed rows of [`GROUP_MIN_COLS`] bytes and more go through
/// [`gemv_gather`] instead.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// One row (a single dot product): no prefetching.
    One(&'a [i8]),
    /// All rows of `w`, consecutive in memory: page-entry prefetches.
    Stream(&'a [i8]),
    /// Rows of `w` listed by index, `stride` bytes apart (rows shorter than
    /// [`GROUP_MIN_COLS`]): rows prefetched about 64 KiB ahead in the list, page-entry
    /// prefetches for rows [`in_stream`].
    List(&'a [i8], usize, &'a [u32]),
}

/// `sum_k (r[k] ^ 0x80) * x[k]` over all of `x` (`r.len() == x.len()`) in the lanes of
/// the result, 256 columns per step into four chains, then 128 into two and a masked tail
/// (four chains measured 2.5 - 4 % faster than two in `spark-sim bench ffn`, eight slower
/// on 2304-byte rows); `page`: `r` is part of a stream of records of `page` bytes, give
/// those page-entry prefetches (0: none).
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn row_dot(r: &[i8], x: &[i8], page: usize) -> __m512i {
    let n = x.len();
    let r = &r[..n];
    let flip = _mm512_set1_epi8(-128);
    if page > 0 {
        pages_ahead(r.as_ptr(), page);
    }
    let (mut a0, mut a1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let (mut a2, mut a3) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut k = 0;
    while k + 256 <= n {
        // SAFETY: `k + 256 <= n` and both slices have exactly `n` elements.
        unsafe {
            a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(load64_full(r, k), flip), load64_full(x, k));
            a1 = _mm512_dpbusd_epi32(a1, _mm512_xor_si512(load64_full(r, k + 64), flip), load64_full(x, k + 64));
            a2 = _mm512_dpbusd_epi32(a2, _mm512_xor_si512(load64_full(r, k + 128), flip), load64_full(x, k + 128));
            a3 = _mm512_dpbusd_epi32(a3, _mm512_xor_si512(load64_full(r, k + 192), flip), load64_full(x, k + 192));
        }
        k += 256;
    }
    a0 = _mm512_add_epi32(a0, a2);
    a1 = _mm512_add_epi32(a1, a3);
    while k + 128 <= n {
        // SAFETY: `k + 128 <= n` and both slices have exactly `n` elements.
        let (u0, x0, u1, x1) =
            unsafe { (load64_full(r, k), load64_full(x, k), load64_full(r, k + 64), load64_full(x, k + 64)) };
        a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(u0, flip), x0);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_xor_si512(u1, flip), x1);
        k += 128;
    }
    while k < n {
        // The last 1-127 columns, masked (zero activations cancel the flipped weights).
        // SAFETY: `k < n` and both slices have exactly `n` elements.
        let (u0, x0) = unsafe { (load64(r, k), load64(x, k)) };
        a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(u0, flip), x0);
        k += 64;
    }
    _mm512_add_epi32(a0, a1)
}

/// `y[i] = row i . x` for every row of `src` (`y.len()` rows; each row has `x.len() > 0`
/// elements), 16 rows per reduction.
///
/// Rows of at most 256 bytes go to [`gemv_short`] (still row after row, the activations
/// in registers). (A variant for such rows that went chunk-major, each activation chunk
/// loaded once for 16 rows, measured slower on cache-resident `[4096 x 128]`: 17.5 us
/// against 14.8 us for the row-after-row loop of that time. For rows gathered from DRAM
/// the grouped schedule of [`gemv_gather`] is the faster one.)
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_by(src: Rows<'_>, x: &[i8], y: &mut [i32]) {
    let n = x.len();
    if let Rows::One(r) = src {
        let corr = _mm512_set1_epi32(sum_i8(x).wrapping_mul(128));
        let mut acc = [_mm512_setzero_si512(); 16];
        // SAFETY: the CPU features are enabled here; `r` has `n` elements.
        acc[0] = unsafe { row_dot(r, x, 0) };
        store_rows16(&acc, corr, &mut y[..1]);
        return;
    }
    // SAFETY: (all calls) forwarded from this function's contract; `n` is in the range of
    // each `gemv_short` arm, and every row passed to `row_dot` has `n` elements.
    unsafe {
        match n.div_ceil(64) {
            1 => gemv_short::<1>(src, x, y),
            2 => gemv_short::<2>(src, x, y),
            3 => gemv_short::<3>(src, x, y),
            4 => gemv_short::<4>(src, x, y),
            _ => rows16(src, x, y, |r, page| row_dot(r, x, page)),
        }
    }
}

/// The row loop of [`gemv_by`] and [`gemv_short`]: `y[i] = row i . x` over the rows of
/// `src` (`Stream` or `List`, rows of `x.len()` bytes), 16 rows per reduction, each row's
/// flipped-weight lanes from `dot(row, page)` (`page`: the row is part of a stream of
/// records of `page` bytes, give those page-entry prefetches; 0: none). List rows are
/// prefetched as [`Gather`].
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows16(src: Rows<'_>, x: &[i8], y: &mut [i32], dot: impl Fn(&[i8], usize) -> __m512i) {
    let n = x.len();
    let m = y.len();
    let corr = _mm512_set1_epi32(sum_i8(x).wrapping_mul(128));
    let gather = match src {
        Rows::List(w, stride, rows) => Some(Gather::start(w, stride, x.len(), rows)),
        _ => None,
    };
    let mut i = 0;
    while i < m {
        let g = (m - i).min(16);
        let mut acc = [_mm512_setzero_si512(); 16];
        match (src, &gather) {
            (Rows::Stream(w), _) => {
                for (a, r) in acc.iter_mut().zip(w[i * n..(i + g) * n].chunks_exact(n)) {
                    *a = dot(r, n);
                }
            }
            (Rows::List(w, stride, rows), Some(gp)) => {
                for (t, a) in acc.iter_mut().enumerate().take(g) {
                    gp.at(i + t);
                    let page = if in_stream(rows, i + t) { stride } else { 0 };
                    *a = dot(check::row(w, stride, n, rows[i + t]), page);
                }
            }
            _ => unreachable!("rows16 takes streams and lists"),
        }
        store_rows16(&acc, corr, &mut y[i..i + g]);
        i += g;
    }
}

/// [`gemv_by`] for rows of `NC * 64 - 63 ..= NC * 64` bytes (`NC` in 1..=4): the activation
/// chunks stay in registers for the whole call, so each row costs only its own `NC` loads
/// (the general loop reloads `x` for every row, which bounds short cache-resident rows,
/// such as the second query head of a GQA pair rereading Spark attention's K1, by the
/// load ports).
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; `src` is `Stream` or `List` with rows of
/// `x.len()` bytes, `x.len()` in `NC * 64 - 63 ..= NC * 64`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_short<const NC: usize>(src: Rows<'_>, x: &[i8], y: &mut [i32]) {
    let n = x.len();
    debug_assert!(n.div_ceil(64) == NC);
    let flip = _mm512_set1_epi8(-128);
    let last = byte_mask(n - 64 * (NC - 1));
    let full = n == 64 * NC;
    let xv: [__m512i; NC] = core::array::from_fn(|c| {
        // SAFETY: chunk `c < NC` starts at `64 c < n`.
        unsafe { load64(x, 64 * c) }
    });
    // `sum_k (r[k] ^ 0x80) * x[k]` for a row `r` of `n` bytes, in the lanes.
    let dot = |r: &[i8], page: usize| -> __m512i {
        debug_assert_eq!(r.len(), n);
        if page > 0 {
            pages_ahead(r.as_ptr(), page);
        }
        let (mut a0, mut a1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for (c, &xc) in xv.iter().enumerate() {
            let w = if c + 1 < NC || full {
                // SAFETY: chunk `c` is a full 64 bytes inside the row.
                unsafe { _mm512_loadu_si512(r.as_ptr().add(64 * c).cast()) }
            } else {
                // SAFETY: `last` selects bytes `64 c .. n` of the row, all inside it;
                // masked-off bytes are neither read nor able to fault (and are zero in
                // `xc`, so their flipped value cancels).
                unsafe { _mm512_maskz_loadu_epi8(last, r.as_ptr().add(64 * c)) }
            };
            let u = _mm512_xor_si512(w, flip);
            if c % 2 == 0 {
                a0 = _mm512_dpbusd_epi32(a0, u, xc);
            } else {
                a1 = _mm512_dpbusd_epi32(a1, u, xc);
            }
        }
        _mm512_add_epi32(a0, a1)
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { rows16(src, x, y, dot) }
}

/// `gemv_rows` (`y[j] = row rows[j] . x`, rows `stride` bytes apart) on rows of
/// [`GROUP_MIN_COLS`] bytes and more: [`GROUP`] listed rows at a time across all columns,
/// one accumulator per row and each activation chunk loaded once per group, prefetching as
/// [`GroupGather`] (the columns line by line); 16 rows are then reduced together as in [`gemv_by`].
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; shapes checked by
/// [`check::gemv_rows_strided`] with `cols = x.len() > 0`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_gather(w: &[i8], stride: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
    const G: usize = GROUP;
    let n = x.len();
    let m = rows.len();
    let corr = _mm512_set1_epi32(sum_i8(x).wrapping_mul(128));
    let flip = _mm512_set1_epi8(-128);
    let gp = GroupGather::start(w, stride, x.len(), rows);
    let mut i = 0;
    while i < m {
        let g16 = (m - i).min(16);
        let mut acc = [_mm512_setzero_si512(); 16];
        for (h, part) in acc.chunks_exact_mut(G).enumerate() {
            let j = i + h * G;
            if j >= i + g16 {
                break;
            }
            let g = (i + g16 - j).min(G);
            // This group's rows (a last, partial group's extra sums are never stored).
            let rp = check::group::<G>(w, stride, n, &rows[j..j + g]).map(<[i8]>::as_ptr);
            let (next, n_next) = gp.next(j);
            let mut a = [_mm512_setzero_si512(); G];
            let mut k = 0;
            while k + 64 <= n {
                line_of_each(&next[..n_next], k);
                // SAFETY: bytes `k..k + 64` lie inside `x` and inside every row in `rp`
                // (each starts `n` bytes inside `w`).
                unsafe {
                    let xv = _mm512_loadu_si512(x.as_ptr().add(k).cast());
                    for (acc_t, &r) in a.iter_mut().zip(&rp) {
                        let u = _mm512_xor_si512(_mm512_loadu_si512(r.add(k).cast()), flip);
                        *acc_t = _mm512_dpbusd_epi32(*acc_t, u, xv);
                    }
                }
                k += 64;
            }
            if k < n {
                line_of_each(&next[..n_next], k);
                let mask = byte_mask(n - k);
                // SAFETY: `mask` selects bytes `k..min(k + 64, n)` of `x` and of every row
                // in `rp` (each starts `n` bytes inside `w`); masked-off bytes are neither
                // read nor able to fault, and read as zero in `xv` too, so the flipped
                // zeros of a ragged end cancel.
                unsafe {
                    let xv = _mm512_maskz_loadu_epi8(mask, x.as_ptr().add(k));
                    for (acc_t, &r) in a.iter_mut().zip(&rp) {
                        let u = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, r.add(k)), flip);
                        *acc_t = _mm512_dpbusd_epi32(*acc_t, u, xv);
                    }
                }
            }
            part.copy_from_slice(&a);
        }
        store_rows16(&acc, corr, &mut y[i..i + g16]);
        i += g16;
    }
}

/// Packs four int8 coefficients into the bytes of an i32 (`c[0]` lowest).
#[inline(always)]
fn pack4(c: [i8; 4]) -> i32 {
    i32::from_le_bytes(c.map(|v| v as u8))
}

/// `acc[0..4] += (c0 u0 + c1 u1 + c2 u2 + c3 u3)` per column, the 64 columns of the
/// (already flipped) row chunks `u` in the lane order that [`store_add`] undoes; `cv` is
/// `(c0, c1, c2, c3)` broadcast to every i32 lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn quad_dp(acc: &mut [__m512i; 4], u: [__m512i; 4], cv: __m512i) {
    let lo01 = _mm512_unpacklo_epi8(u[0], u[1]);
    let hi01 = _mm512_unpackhi_epi8(u[0], u[1]);
    let lo23 = _mm512_unpacklo_epi8(u[2], u[3]);
    let hi23 = _mm512_unpackhi_epi8(u[2], u[3]);
    // Per 128-bit lane L, these hold columns 16L+0..4, +4..8, +8..12, +12..16, each i32
    // lane as the bytes (u0, u1, u2, u3) of one column.
    acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_unpacklo_epi16(lo01, lo23), cv);
    acc[1] = _mm512_dpbusd_epi32(acc[1], _mm512_unpackhi_epi16(lo01, lo23), cv);
    acc[2] = _mm512_dpbusd_epi32(acc[2], _mm512_unpacklo_epi16(hi01, hi23), cv);
    acc[3] = _mm512_dpbusd_epi32(acc[3], _mm512_unpackhi_epi16(hi01, hi23), cv);
}

/// `y[..min(64, y.len())] += ` the 64 column sums held by `acc` in [`quad_dp`] order.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_add(acc: [__m512i; 4], y: &mut [i32]) {
    // 4x4 transpose of 128-bit blocks: out[L] = [acc0.L, acc1.L, acc2.L, acc3.L].
    let t0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(acc[0], acc[1]);
    let t1 = _mm512_shuffle_i32x4::<0b01_00_01_00>(acc[2], acc[3]);
    let t2 = _mm512_shuffle_i32x4::<0b11_10_11_10>(acc[0], acc[1]);
    let t3 = _mm512_shuffle_i32x4::<0b11_10_11_10>(acc[2], acc[3]);
    let out = [
        _mm512_shuffle_i32x4::<0b10_00_10_00>(t0, t1),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(t0, t1),
        _mm512_shuffle_i32x4::<0b10_00_10_00>(t2, t3),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(t2, t3),
    ];
    let n = y.len().min(64);
    for (b, v) in out.into_iter().enumerate() {
        let at = 16 * b;
        if at >= n {
            break;
        }
        let left = n - at;
        let m: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
        // SAFETY: only the `m`-selected i32s `y[at..at + min(16, left)]`, all inside `y`,
        // are accessed; masked-off elements are neither read, written nor able to fault.
        unsafe {
            let p = y.as_mut_ptr().add(at);
            _mm512_mask_storeu_epi32(p, m, _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, p), v));
        }
    }
}

/// Loads up to 64 bytes of row `r` at column `k` (zero past its end), flipped to unsigned.
///
/// # Safety
/// `k <= r.len()`; the CPU supports AVX-512 F and BW.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn flipped(r: &[i8], k: usize) -> __m512i {
    // SAFETY: forwarded from the caller's contract.
    let v = unsafe { load64(r, k) };
    _mm512_xor_si512(v, _mm512_set1_epi8(-128))
}

/// Rows of the quad starting at list position `j` (the missing ones of a last partial quad
/// repeat its first row, with a zero coefficient) and their coefficients.
#[inline(always)]
fn quad<'w>(row: &impl Fn(usize) -> &'w [i8], c: &[i8], j: usize) -> ([&'w [i8]; 4], [i8; 4]) {
    let g = (c.len() - j).min(4);
    let mut r = [row(j); 4];
    let mut cc = [0i8; 4];
    for t in 0..g {
        r[t] = row(j + t);
        cc[t] = c[j + t];
    }
    (r, cc)
}

/// `gemv_t_rows` for rows of `NC * 64 - 63 ..= NC * 64` columns (`NC` in 1..=4): all of
/// `y` lives in `NC * 4` accumulators for the whole row list, one quad of rows at a time.
///
/// Rows are `stride` bytes apart; their `y.len()` bytes are prefetched as [`Gather`].
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; `y.len() <= NC * 64`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn t_short<const NC: usize>(w: &[i8], stride: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    let n = y.len();
    let row = |j: usize| check::row(w, stride, n, rows[j]);
    let csum = c.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32));
    // Every flipped weight adds 128 * c to its column: subtract 128 * sum c once.
    let corr = _mm512_set1_epi32(csum.wrapping_mul(-128));
    let mut acc = [[corr; 4]; NC];
    let gp = Gather::start(w, stride, n, rows);
    let mut j = 0;
    while j < rows.len() {
        let (r, cc) = quad(&row, c, j);
        let cv = _mm512_set1_epi32(pack4(cc));
        for t in 0..4.min(rows.len() - j) {
            gp.at(j + t);
            if in_stream(rows, j + t) {
                pages_ahead(r[t].as_ptr(), stride);
            }
        }
        for (q, a) in acc.iter_mut().enumerate() {
            if 64 * q < n {
                // SAFETY: `64 q < n` = every row's length.
                let u = unsafe { r.map(|s| flipped(s, 64 * q)) };
                quad_dp(a, u, cv);
            }
        }
        j += 4;
    }
    for (q, a) in acc.into_iter().enumerate() {
        if 64 * q < n {
            store_add(a, &mut y[64 * q..]);
        }
    }
}

/// Rows per pass of [`t_long`] (two quads).
const T_GROUP: usize = 8;

/// `gemv_t_rows` for any row length: [`T_GROUP`] listed rows at a time over all columns
/// (`y` stays in L1). At every 64-column chunk the same chunk of the next group's rows is
/// prefetched into L2, and rows [`in_stream`] also get page-entry prefetches. (Measured
/// on the dense down projection, 9216 consecutive rows of 2304: groups of 8 with both
/// prefetches 0.92-1.06x the plain-sum time, groups of 16 1.16-1.44x, page-entry
/// prefetches alone 1.7-2.1x.)
///
/// Rows are `stride` bytes apart (page-entry prefetches over the whole record).
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn t_long(w: &[i8], stride: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    const G: usize = T_GROUP;
    let n = y.len();
    let m = rows.len();
    let flip = _mm512_set1_epi8(-128);
    let mut j = 0;
    while j < m {
        let g = (m - j).min(G);
        // Row starts of this group (a last, partial group's extra rows get a zero
        // coefficient), and the coefficients.
        let rp = check::group::<G>(w, stride, n, &rows[j..j + g]).map(<[i8]>::as_ptr);
        let mut cc = [0i8; G];
        cc[..g].copy_from_slice(&c[j..j + g]);
        for t in 0..g {
            if in_stream(rows, j + t) {
                pages_ahead(rp[t], stride);
            }
        }
        let csum = cc.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32));
        let corr = _mm512_set1_epi32(csum.wrapping_mul(-128));
        let cv: [__m512i; G / 4] = core::array::from_fn(|q| {
            _mm512_set1_epi32(pack4([cc[4 * q], cc[4 * q + 1], cc[4 * q + 2], cc[4 * q + 3]]))
        });
        let nq = g.div_ceil(4);
        // The next group's rows: start addresses for the prefetches only.
        let next: [*const i8; G] = core::array::from_fn(|t| {
            rows.get(j + g + t)
                .map_or(core::ptr::null(), |&r| w.as_ptr().wrapping_add((r as usize).wrapping_mul(stride)))
        });
        let n_next = (m - j - g).min(G);
        let mut k = 0;
        while k < n {
            for &p in &next[..n_next] {
                lines_l2(p.wrapping_add(k), 1);
            }
            let mask = byte_mask(n - k);
            let mut acc = [corr; 4];
            for q in 0..nq {
                // SAFETY: every `rp[t]` starts a row of `n` bytes inside `w` and `mask`
                // selects bytes `k..min(k + 64, n)` of it; masked-off bytes are not accessed.
                let u: [__m512i; 4] = core::array::from_fn(|t| unsafe {
                    _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, rp[4 * q + t].add(k)), flip)
                });
                quad_dp(&mut acc, u, cv[q]);
            }
            store_add(acc, &mut y[k..]);
            k += 64;
        }
        j += g;
    }
}

/// `y += sum_j c[j] * row rows[j]` over rows `stride` bytes apart.
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; shapes checked by
/// [`check::gemv_t_rows_strided`] with `cols > 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_t_rows(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    debug_assert_eq!(cols, y.len());
    // SAFETY: (all arms) the CPU features are enabled on this function, `cols = y.len()`
    // is every row's length (each row bounds-checked where it is sliced) and within each
    // arm's bound.
    unsafe {
        match cols.div_ceil(64) {
            1 => t_short::<1>(w, stride, rows, c, y),
            2 => t_short::<2>(w, stride, rows, c, y),
            3 => t_short::<3>(w, stride, rows, c, y),
            4 => t_short::<4>(w, stride, rows, c, y),
            _ => t_long(w, stride, rows, c, y),
        }
    }
}
