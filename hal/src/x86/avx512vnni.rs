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
//! `gemv` streams one row at a time (see the note above `avx2::gemv`). Ragged ends use
//! AVX-512 masked loads and stores (masked-off bytes read as zero and are
//! never accessed), so there is no scalar tail: a zero `x` byte cancels whatever `u` holds.
//! `gemv_t_rows` interleaves the bytes of four rows so each i32 lane holds one column of
//! all four, `vpdpbusd` against the broadcast coefficients `(c0, c1, c2, c3)` then gives
//! `sum_j c_j * W_j[col]`; a 4x4 transpose of 128-bit blocks restores column order.
//! `quantize_sym_i8` is the AVX2 one.
//!
//! Tested bit-exact against the scalar oracle by `kernel_suite!(avx512vnni_suite, ..)` in
//! `tests/backends.rs` (skipped, with a message, on CPUs without AVX-512 VNNI).

use core::arch::x86_64::*;

use super::avx2::{prefetch, PREFETCH_ROWS};
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
        let mut out = 0;
        // SAFETY: the CPU features are available (checked just above).
        unsafe { gemv_by(a.len(), 1, |_| a, b, 0, |_, v| out = v) };
        out
    }

    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        check::gemv(w, cols, x, y);
        Self::require();
        if cols == 0 {
            y.fill(0);
            return;
        }
        // SAFETY: the CPU features are available (checked just above).
        unsafe { gemv_by(cols, y.len(), |i| &w[i * cols..(i + 1) * cols], x, 0, |i, v| y[i] = v) };
    }

    fn gemv_rows_i8(w: &[i8], cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows(w, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        Self::require();
        // SAFETY: the CPU features are available (checked just above).
        unsafe { gemv_by(cols, rows.len(), |j| check::row(w, cols, rows[j]), x, PREFETCH_ROWS, |j, v| y[j] = v) };
    }

    fn gemv_t_rows_i8(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if !check::gemv_t_rows(w, cols, rows, c, y) {
            return;
        }
        Self::require();
        // SAFETY: the CPU features are available (checked just above).
        unsafe { gemv_t_rows(w, cols, rows, c, y) }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        Self::require();
        // SAFETY: AVX2 is available (part of the check just above).
        unsafe { super::avx2::quantize(x, q) }
    }
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

/// `sum x` (wrapping i32), via `vpdpbusd` with all-ones unsigned bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn sum_i8(x: &[i8]) -> i32 {
    let ones = _mm512_set1_epi8(1);
    let mut acc = _mm512_setzero_si512();
    let mut k = 0;
    while k < x.len() {
        // SAFETY: `k < x.len()`; AVX-512 F/BW are enabled here.
        acc = _mm512_dpbusd_epi32(acc, ones, unsafe { load64(x, k) });
        k += 64;
    }
    _mm512_reduce_add_epi32(acc)
}

/// `out(i, row(i) . x)` for `i in 0..m`, one row at a time (see the note above
/// `avx2::gemv`), prefetching `row(i + pf)` unless `pf == 0`. Every `row(i)` has
/// `cols = x.len()` elements.
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_by<'w>(
    cols: usize,
    m: usize,
    row: impl Fn(usize) -> &'w [i8],
    x: &[i8],
    pf: usize,
    mut out: impl FnMut(usize, i32),
) {
    let x = &x[..cols];
    let corr = sum_i8(x).wrapping_mul(128);
    let flip = _mm512_set1_epi8(-128);
    for i in 0..m {
        let r = &row(i)[..cols];
        let next = if pf > 0 && i + pf < m { row(i + pf) } else { &[][..] };
        let mut acc = _mm512_setzero_si512();
        let mut k = 0;
        while k + 64 <= cols {
            prefetch(next, k);
            // SAFETY: `k + 64 <= cols` and both slices have exactly `cols` elements, so
            // the two full 64-byte loads are in bounds (`loadu`: no alignment needed).
            let (u0, x0) =
                unsafe { (_mm512_loadu_si512(r.as_ptr().add(k).cast()), _mm512_loadu_si512(x.as_ptr().add(k).cast())) };
            acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(u0, flip), x0);
            k += 64;
        }
        if k < cols {
            // The last 1-63 columns, masked (zero activations cancel the flipped weights).
            // SAFETY: `k < cols` and both slices have exactly `cols` elements.
            let (u0, x0) = unsafe { (load64(r, k), load64(x, k)) };
            acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(u0, flip), x0);
        }
        out(i, _mm512_reduce_add_epi32(acc).wrapping_sub(corr));
    }
}

/// Packs four int8 coefficients into the bytes of an i32 (`c[0]` lowest).
#[inline(always)]
fn pack4(c: [i8; 4]) -> i32 {
    i32::from_le_bytes(c.map(|v| v as u8))
}

/// `y += sum_q sum_j c_qj * row_qj` over `Q` groups of four rows; every row has `y.len()`
/// elements.
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn t_quads<const Q: usize>(r: [[&[i8]; 4]; Q], c: [[i8; 4]; Q], y: &mut [i32]) {
    let n = y.len();
    let r = r.map(|q| q.map(|s| &s[..n]));
    let cv = c.map(|q| _mm512_set1_epi32(pack4(q)));
    let csum: i32 = c.iter().flatten().map(|&v| v as i32).sum();
    let corr = _mm512_set1_epi32(-128 * csum);
    let flip = _mm512_set1_epi8(-128);
    let mut k = 0;
    while k < n {
        let mut acc = [corr; 4];
        for q in 0..Q {
            // SAFETY: `k < n` and every row has exactly `n` elements.
            let [u0, u1, u2, u3] = r[q].map(|s| _mm512_xor_si512(unsafe { load64(s, k) }, flip));
            let lo01 = _mm512_unpacklo_epi8(u0, u1);
            let hi01 = _mm512_unpackhi_epi8(u0, u1);
            let lo23 = _mm512_unpacklo_epi8(u2, u3);
            let hi23 = _mm512_unpackhi_epi8(u2, u3);
            // Per 128-bit lane L, these hold columns 16L+0..4, +4..8, +8..12, +12..16, each
            // i32 lane as the bytes (u0, u1, u2, u3) of one column.
            acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_unpacklo_epi16(lo01, lo23), cv[q]);
            acc[1] = _mm512_dpbusd_epi32(acc[1], _mm512_unpackhi_epi16(lo01, lo23), cv[q]);
            acc[2] = _mm512_dpbusd_epi32(acc[2], _mm512_unpacklo_epi16(hi01, hi23), cv[q]);
            acc[3] = _mm512_dpbusd_epi32(acc[3], _mm512_unpackhi_epi16(hi01, hi23), cv[q]);
        }
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
        for (b, v) in out.into_iter().enumerate() {
            let at = k + 16 * b;
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
        k += 64;
    }
}

/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; shapes checked by [`check::gemv_t_rows`] with
/// `cols > 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_t_rows(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    let row = |j: usize| check::row(w, cols, rows[j]);
    let quad = |j: usize| [row(j), row(j + 1), row(j + 2), row(j + 3)];
    let cq = |j: usize| [c[j], c[j + 1], c[j + 2], c[j + 3]];
    let m = rows.len();
    let mut j = 0;
    while j + 16 <= m {
        // SAFETY: the CPU features are enabled on this function; rows have `cols` elements.
        unsafe {
            t_quads([quad(j), quad(j + 4), quad(j + 8), quad(j + 12)], [cq(j), cq(j + 4), cq(j + 8), cq(j + 12)], y)
        };
        j += 16;
    }
    while j + 4 <= m {
        // SAFETY: as above.
        unsafe { t_quads([quad(j)], [cq(j)], y) };
        j += 4;
    }
    if j < m {
        // The last 1-3 rows, padded with zero coefficients on a repeated row.
        let mut rq = [row(j); 4];
        let mut cc = [0i8; 4];
        for t in 0..m - j {
            rq[t] = row(j + t);
            cc[t] = c[j + t];
        }
        // SAFETY: as above.
        unsafe { t_quads([rq], [cc], y) };
    }
}
