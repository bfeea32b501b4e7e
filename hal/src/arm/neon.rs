//! The aarch64 NEON backends: [`Neon`] (every aarch64 CPU) and [`NeonDot`] (`sdot`, the
//! Armv8.2 dot-product extension), plus the run-time dispatching [`Auto`] in `std` builds.
//!
//! - [`Neon`] multiplies int8 lanes with the widening `smull`/`smull2`
//!   ([`vmull_s8`]/[`vmull_high_s8`]) into int16 (each product fits: `-128 * -128 = 16384`)
//!   and adds adjacent int16 pairs into int32 lanes with `sadalp` ([`vpadalq_s16`]). One
//!   product pair is at most 32768, which would overflow int16, so products are never
//!   summed in int16 (no `smlal`).
//! - [`NeonDot`] uses `sdot` (four int8 products summed into each int32 lane, exact). The
//!   `vdotq_s32` intrinsic is not stable, so `sdot` is emitted with `asm!` inside functions
//!   compiled with `#[target_feature(enable = "neon,dotprod")]`; they are only called after
//!   [`NeonDot::available`] (compile-time `cfg(target_feature = "dotprod")`, or
//!   `is_aarch64_feature_detected!("dotprod")` with `std`).
//!
//! `gemv` kernels do four rows per pass so each activation load feeds four rows. The
//! gathers are the strided kernels (row `r` at `w[r * stride ..]`, the bundled layouts of
//! `Kernels::gemv_rows_strided_i8`; the unstrided ones are them with `stride = cols`):
//! only the row addresses differ, the inner loops are the same. There is no software
//! prefetch here.
//! `gemv_t_rows` interleaves rows so each int32 lane accumulates one column over several
//! rows: `Neon` zips two rows (`(W_a[k], W_b[k])` byte pairs times `(c_a, c_b)`, then
//! `sadalp`), `NeonDot` zips four (`sdot` against `(c0, c1, c2, c3)`). i32 lane sums wrap,
//! and every true total fits in i32 (see [`crate::MAX_ACC_TERMS`]), so results are exact.
//! `quantize_sym_i8` runs the oracle's float steps four lanes at a time (`frintz` for the
//! truncation), bit-identical to [`Scalar`](crate::Scalar).
//!
//! Tested bit-exact against the scalar oracle by `kernel_suite!` in `tests/backends.rs`,
//! run by `test.sh` under `qemu-aarch64 -cpu max` (both backends) and `-cpu cortex-a53`
//! (no `dotprod`: `NeonDot` is skipped there and [`Auto`] must fall back to `Neon`).

use core::arch::aarch64::*;
use core::arch::asm;

use crate::scalar::{absmax_finite, quantize_one};
use crate::{check, Kernels};

/// The NEON backend (widening multiply + pairwise accumulate). Runs on every aarch64 CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Neon;

/// The NEON dot-product backend (`sdot`). Its kernels panic if the CPU lacks `dotprod`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NeonDot;

impl NeonDot {
    /// Whether this CPU has the dot-product instructions.
    #[inline]
    pub fn available() -> bool {
        #[cfg(target_feature = "dotprod")]
        {
            true
        }
        #[cfg(all(not(target_feature = "dotprod"), feature = "std"))]
        {
            std::arch::is_aarch64_feature_detected!("dotprod")
        }
        #[cfg(all(not(target_feature = "dotprod"), not(feature = "std")))]
        {
            false
        }
    }

    #[inline(always)]
    fn require() {
        assert!(Self::available(), "spark-hal: the NeonDot backend needs a CPU with the dotprod extension");
    }
}

/// Loads 16 bytes of `s` from `at`.
///
/// # Safety
/// `at + 16 <= s.len()`.
#[inline(always)]
unsafe fn ld(s: &[i8], at: usize) -> int8x16_t {
    debug_assert!(at + 16 <= s.len());
    // SAFETY: the caller guarantees the 16 bytes are inside `s`; `ld1` needs no alignment.
    unsafe { vld1q_s8(s.as_ptr().add(at)) }
}

/// Exact `sum a[k]*b[k]` for `k >= from` with wrapping arithmetic (the ragged tail).
#[inline(always)]
fn tail_dot(a: &[i8], b: &[i8], from: usize) -> i32 {
    let mut s = 0i32;
    for k in from..a.len().min(b.len()) {
        s = s.wrapping_add(a[k] as i32 * b[k] as i32);
    }
    s
}

/// `out(i, row(i) . x)` for `i in 0..m` with a four-row kernel and a one-row kernel.
#[inline(always)]
fn gemv_by<'w>(
    m: usize,
    row: impl Fn(usize) -> &'w [i8],
    x: &[i8],
    mut out: impl FnMut(usize, i32),
    dot4: impl Fn([&[i8]; 4], &[i8]) -> [i32; 4],
    dot1: impl Fn(&[i8], &[i8]) -> i32,
) {
    let mut i = 0;
    while i + 4 <= m {
        let s = dot4([row(i), row(i + 1), row(i + 2), row(i + 3)], x);
        for (q, v) in s.into_iter().enumerate() {
            out(i + q, v);
        }
        i += 4;
    }
    while i < m {
        out(i, dot1(row(i), x));
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------
// Neon: smull + sadalp
// ---------------------------------------------------------------------------------------

/// `acc += a .* b` (16 products, pairwise summed into 4 i32 lanes).
#[inline]
#[target_feature(enable = "neon")]
fn mac_neon(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    vpadalq_s16(acc, vmull_high_s8(a, b))
}

#[target_feature(enable = "neon")]
fn dot_neon(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (mut acc0, mut acc1) = (vdupq_n_s32(0), vdupq_n_s32(0));
    let mut k = 0;
    while k + 32 <= n {
        // SAFETY: `k + 32 <= n <= a.len(), b.len()`.
        unsafe {
            acc0 = mac_neon(acc0, ld(a, k), ld(b, k));
            acc1 = mac_neon(acc1, ld(a, k + 16), ld(b, k + 16));
        }
        k += 32;
    }
    if k + 16 <= n {
        // SAFETY: `k + 16 <= n <= a.len(), b.len()`.
        acc0 = unsafe { mac_neon(acc0, ld(a, k), ld(b, k)) };
        k += 16;
    }
    vaddvq_s32(vaddq_s32(acc0, acc1)).wrapping_add(tail_dot(a, b, k))
}

#[target_feature(enable = "neon")]
fn dot4_neon(r: [&[i8]; 4], x: &[i8]) -> [i32; 4] {
    let n = x.len();
    let r = r.map(|s| &s[..n]);
    let mut acc = [vdupq_n_s32(0); 4];
    let mut k = 0;
    while k + 16 <= n {
        // SAFETY: `k + 16 <= n` and `x` and every row have exactly `n` elements.
        unsafe {
            let xv = ld(x, k);
            for q in 0..4 {
                acc[q] = mac_neon(acc[q], ld(r[q], k), xv);
            }
        }
        k += 16;
    }
    [0, 1, 2, 3].map(|q| vaddvq_s32(acc[q]).wrapping_add(tail_dot(r[q], x, k)))
}

/// Packs two int8 coefficients into the low 16 bits of a u32 as bytes `(a, b)`.
#[inline(always)]
fn pack2(a: i8, b: i8) -> u16 {
    u16::from_le_bytes([a as u8, b as u8])
}

/// `y += sum_p (c_a W_a + c_b W_b)` over `P` row pairs; `cp[p]` holds the bytes `(c_a, c_b)`.
#[target_feature(enable = "neon")]
fn t_pairs_neon<const P: usize>(r: [(&[i8], &[i8]); P], cp: [u16; P], y: &mut [i32]) {
    let n = y.len();
    let r = r.map(|(a, b)| (&a[..n], &b[..n]));
    let cv = cp.map(|c| vreinterpretq_s8_u16(vdupq_n_u16(c)));
    let mut k = 0;
    while k + 16 <= n {
        let mut acc = [vdupq_n_s32(0); 4];
        for p in 0..P {
            // SAFETY: `k + 16 <= n` and both rows have exactly `n` elements.
            let (wa, wb) = unsafe { (ld(r[p].0, k), ld(r[p].1, k)) };
            // Bytes (W_a[k], W_b[k]) for columns k..k+8 and k+8..k+16.
            let z0 = vzip1q_s8(wa, wb);
            let z1 = vzip2q_s8(wa, wb);
            // Each i16 product is exact; sadalp adds the (a, b) pair of a column into i32.
            acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(z0), vget_low_s8(cv[p])));
            acc[1] = vpadalq_s16(acc[1], vmull_high_s8(z0, cv[p]));
            acc[2] = vpadalq_s16(acc[2], vmull_s8(vget_low_s8(z1), vget_low_s8(cv[p])));
            acc[3] = vpadalq_s16(acc[3], vmull_high_s8(z1, cv[p]));
        }
        add_to_y(&mut y[k..k + 16], acc);
        k += 16;
    }
    for col in k..n {
        let mut s = 0i32;
        for p in 0..P {
            let [ca, cb] = cp[p].to_le_bytes();
            s = s.wrapping_add(ca as i8 as i32 * r[p].0[col] as i32).wrapping_add(cb as i8 as i32 * r[p].1[col] as i32);
        }
        y[col] = y[col].wrapping_add(s);
    }
}

/// `y[0..16] += acc` (four vectors of four columns, in order).
#[inline(always)]
fn add_to_y(y: &mut [i32], acc: [int32x4_t; 4]) {
    assert!(y.len() >= 16);
    for (q, a) in acc.into_iter().enumerate() {
        // SAFETY: `y` has at least 16 elements, so `y[4q..4q+4]` (q < 4) is inside it;
        // `ld1`/`st1` need no alignment.
        unsafe {
            let p = y.as_mut_ptr().add(4 * q);
            vst1q_s32(p, vaddq_s32(vld1q_s32(p), a));
        }
    }
}

/// `y += sum_j c[j] * row rows[j]` over rows `stride` bytes apart (`cols = y.len() > 0`).
#[target_feature(enable = "neon")]
fn gemv_t_rows_neon(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    let row = |j: usize| check::row(w, stride, cols, rows[j]);
    let m = rows.len();
    let mut j = 0;
    while j + 8 <= m {
        let r = [(row(j), row(j + 1)), (row(j + 2), row(j + 3)), (row(j + 4), row(j + 5)), (row(j + 6), row(j + 7))];
        let cp =
            [pack2(c[j], c[j + 1]), pack2(c[j + 2], c[j + 3]), pack2(c[j + 4], c[j + 5]), pack2(c[j + 6], c[j + 7])];
        t_pairs_neon(r, cp, y);
        j += 8;
    }
    while j + 2 <= m {
        t_pairs_neon([(row(j), row(j + 1))], [pack2(c[j], c[j + 1])], y);
        j += 2;
    }
    if j < m {
        // The odd row pairs with itself under a zero coefficient.
        t_pairs_neon([(row(j), row(j))], [pack2(c[j], 0)], y);
    }
}

/// The oracle's quantization, four lanes at a time (shared by both backends).
#[target_feature(enable = "neon")]
fn quantize_neon(x: &[f32], q: &mut [i8]) -> f32 {
    let n = x.len().min(q.len());
    let (x, q) = (&x[..n], &mut q[..n]);
    let inf = vdupq_n_f32(f32::INFINITY);
    let mut m = vdupq_n_f32(0.0);
    let mut k = 0;
    while k + 4 <= n {
        // SAFETY: `k + 4 <= n = x.len()`.
        let a = vabsq_f32(unsafe { vld1q_f32(x.as_ptr().add(k)) });
        // Non-finite lanes (NaN compares false) become +0.0.
        let finite = vcltq_f32(a, inf);
        m = vmaxq_f32(m, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(a), finite)));
        k += 4;
    }
    let vm = vmaxvq_f32(m);
    let tail = absmax_finite(&x[k..]);
    let absmax = if tail > vm { tail } else { vm };
    if absmax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let inv = 127.0 / absmax;
    let invv = vdupq_n_f32(inv);
    let one = vreinterpretq_u32_f32(vdupq_n_f32(1.0));
    let quant4 = |at: usize| -> int32x4_t {
        // SAFETY: every call below has `at + 4 <= n = x.len()`.
        let v = unsafe { vld1q_f32(x.as_ptr().add(at)) };
        let p = vmulq_f32(v, invv);
        let t = vrndq_f32(p); // truncation toward zero
        let frac = vsubq_f32(p, t);
        let up = vreinterpretq_f32_u32(vandq_u32(vcgeq_f32(frac, vdupq_n_f32(0.5)), one));
        let down = vreinterpretq_f32_u32(vandq_u32(vcleq_f32(frac, vdupq_n_f32(-0.5)), one));
        let r = vsubq_f32(vaddq_f32(t, up), down);
        let r = vminq_f32(vmaxq_f32(r, vdupq_n_f32(-127.0)), vdupq_n_f32(127.0));
        // Zero where x is non-finite or the product is NaN (0 * inf).
        let ok = vandq_u32(vcltq_f32(vabsq_f32(v), inf), vceqq_f32(p, p));
        let r = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(r), ok));
        vcvtq_s32_f32(r)
    };
    let mut k = 0;
    while k + 16 <= n {
        let lo = vcombine_s16(vqmovn_s32(quant4(k)), vqmovn_s32(quant4(k + 4)));
        let hi = vcombine_s16(vqmovn_s32(quant4(k + 8)), vqmovn_s32(quant4(k + 12)));
        // SAFETY: `k + 16 <= n = q.len()`.
        unsafe { vst1q_s8(q.as_mut_ptr().add(k), vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi))) };
        k += 16;
    }
    for i in k..n {
        q[i] = quantize_one(x[i], inv);
    }
    absmax / 127.0
}

impl Kernels for Neon {
    const NAME: &'static str = "neon";

    fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        check::dot(a, b);
        // SAFETY: NEON is enabled for the whole target (`build.rs` only sets `spark_neon`,
        // which compiles this module, when it is).
        unsafe { dot_neon(a, b) }
    }

    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        check::gemv(w, cols, x, y);
        gemv_by(
            y.len(),
            |i| &w[i * cols..(i + 1) * cols],
            x,
            |i, v| y[i] = v,
            // SAFETY: NEON is enabled for the whole target.
            |r, x| unsafe { dot4_neon(r, x) },
            // SAFETY: as above.
            |a, b| unsafe { dot_neon(a, b) },
        );
    }

    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows_strided(stride, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        gemv_by(
            rows.len(),
            |j| check::row(w, stride, cols, rows[j]),
            x,
            |j, v| y[j] = v,
            // SAFETY: NEON is enabled for the whole target.
            |r, x| unsafe { dot4_neon(r, x) },
            // SAFETY: as above.
            |a, b| unsafe { dot_neon(a, b) },
        );
    }

    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if check::gemv_t_rows_strided(stride, cols, rows, c, y) {
            // SAFETY: NEON is enabled for the whole target.
            unsafe { gemv_t_rows_neon(w, stride, cols, rows, c, y) };
        }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        // SAFETY: NEON is enabled for the whole target.
        unsafe { quantize_neon(x, q) }
    }
}

// ---------------------------------------------------------------------------------------
// NeonDot: sdot
// ---------------------------------------------------------------------------------------

/// `acc += sdot(a, b)`: each i32 lane gains the sum of its four int8 x int8 products.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` only reads the three vector registers and writes `acc`; the dotprod
    // extension is enabled on this function, which is only reached after
    // `NeonDot::available()` (or with `dotprod` enabled for the whole target).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// # Safety
/// The CPU supports `dotprod`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_sdot(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (mut acc0, mut acc1) = (vdupq_n_s32(0), vdupq_n_s32(0));
    let mut k = 0;
    while k + 32 <= n {
        // SAFETY: `k + 32 <= n <= a.len(), b.len()`.
        unsafe {
            acc0 = sdot(acc0, ld(a, k), ld(b, k));
            acc1 = sdot(acc1, ld(a, k + 16), ld(b, k + 16));
        }
        k += 32;
    }
    if k + 16 <= n {
        // SAFETY: `k + 16 <= n <= a.len(), b.len()`.
        acc0 = sdot(acc0, unsafe { ld(a, k) }, unsafe { ld(b, k) });
        k += 16;
    }
    vaddvq_s32(vaddq_s32(acc0, acc1)).wrapping_add(tail_dot(a, b, k))
}

/// # Safety
/// The CPU supports `dotprod`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot4_sdot(r: [&[i8]; 4], x: &[i8]) -> [i32; 4] {
    let n = x.len();
    let r = r.map(|s| &s[..n]);
    let mut acc = [vdupq_n_s32(0); 4];
    let mut k = 0;
    while k + 16 <= n {
        // SAFETY: `k + 16 <= n` and `x` and every row have exactly `n` elements.
        let xv = unsafe { ld(x, k) };
        for q in 0..4 {
            // SAFETY: as above.
            acc[q] = sdot(acc[q], unsafe { ld(r[q], k) }, xv);
        }
        k += 16;
    }
    [0, 1, 2, 3].map(|q| vaddvq_s32(acc[q]).wrapping_add(tail_dot(r[q], x, k)))
}

/// `y += sum_q sum_j c_qj * row_qj` over `Q` groups of four rows; every row has `y.len()`
/// elements.
///
/// # Safety
/// The CPU supports `dotprod`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn t_quads_sdot<const Q: usize>(r: [[&[i8]; 4]; Q], c: [[i8; 4]; Q], y: &mut [i32]) {
    let n = y.len();
    let r = r.map(|g| g.map(|s| &s[..n]));
    let cv = c.map(|g| vreinterpretq_s8_s32(vdupq_n_s32(i32::from_le_bytes(g.map(|v| v as u8)))));
    let mut k = 0;
    while k + 16 <= n {
        let mut acc = [vdupq_n_s32(0); 4];
        for g in 0..Q {
            // SAFETY: `k + 16 <= n` and every row has exactly `n` elements.
            let [r0, r1, r2, r3] = r[g].map(|s| unsafe { ld(s, k) });
            let (z01l, z01h) = (vzip1q_s8(r0, r1), vzip2q_s8(r0, r1));
            let (z23l, z23h) = (vzip1q_s8(r2, r3), vzip2q_s8(r2, r3));
            // Each i32 lane: the bytes (W_0, W_1, W_2, W_3) of one column, columns in order.
            let v = [
                vreinterpretq_s8_s16(vzip1q_s16(vreinterpretq_s16_s8(z01l), vreinterpretq_s16_s8(z23l))),
                vreinterpretq_s8_s16(vzip2q_s16(vreinterpretq_s16_s8(z01l), vreinterpretq_s16_s8(z23l))),
                vreinterpretq_s8_s16(vzip1q_s16(vreinterpretq_s16_s8(z01h), vreinterpretq_s16_s8(z23h))),
                vreinterpretq_s8_s16(vzip2q_s16(vreinterpretq_s16_s8(z01h), vreinterpretq_s16_s8(z23h))),
            ];
            for b in 0..4 {
                acc[b] = sdot(acc[b], v[b], cv[g]);
            }
        }
        add_to_y(&mut y[k..k + 16], acc);
        k += 16;
    }
    for col in k..n {
        let mut s = 0i32;
        for g in 0..Q {
            for t in 0..4 {
                s = s.wrapping_add(c[g][t] as i32 * r[g][t][col] as i32);
            }
        }
        y[col] = y[col].wrapping_add(s);
    }
}

/// `y += sum_j c[j] * row rows[j]` over rows `stride` bytes apart.
///
/// # Safety
/// The CPU supports `dotprod`; shapes checked by [`check::gemv_t_rows_strided`] with
/// `cols > 0`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn gemv_t_rows_sdot(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    let row = |j: usize| check::row(w, stride, cols, rows[j]);
    let quad = |j: usize| [row(j), row(j + 1), row(j + 2), row(j + 3)];
    let cq = |j: usize| [c[j], c[j + 1], c[j + 2], c[j + 3]];
    let m = rows.len();
    let mut j = 0;
    while j + 8 <= m {
        // SAFETY: dotprod is enabled on this function.
        unsafe { t_quads_sdot([quad(j), quad(j + 4)], [cq(j), cq(j + 4)], y) };
        j += 8;
    }
    while j + 4 <= m {
        // SAFETY: as above.
        unsafe { t_quads_sdot([quad(j)], [cq(j)], y) };
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
        unsafe { t_quads_sdot([rq], [cc], y) };
    }
}

impl Kernels for NeonDot {
    const NAME: &'static str = "neon-sdot";

    fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        check::dot(a, b);
        Self::require();
        // SAFETY: dotprod is available (checked just above).
        unsafe { dot_sdot(a, b) }
    }

    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        check::gemv(w, cols, x, y);
        Self::require();
        gemv_by(
            y.len(),
            |i| &w[i * cols..(i + 1) * cols],
            x,
            |i, v| y[i] = v,
            // SAFETY: dotprod is available (checked just above).
            |r, x| unsafe { dot4_sdot(r, x) },
            // SAFETY: as above.
            |a, b| unsafe { dot_sdot(a, b) },
        );
    }

    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows_strided(stride, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        Self::require();
        gemv_by(
            rows.len(),
            |j| check::row(w, stride, cols, rows[j]),
            x,
            |j, v| y[j] = v,
            // SAFETY: dotprod is available (checked just above).
            |r, x| unsafe { dot4_sdot(r, x) },
            // SAFETY: as above.
            |a, b| unsafe { dot_sdot(a, b) },
        );
    }

    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if !check::gemv_t_rows_strided(stride, cols, rows, c, y) {
            return;
        }
        Self::require();
        // SAFETY: dotprod is available (checked just above).
        unsafe { gemv_t_rows_sdot(w, stride, cols, rows, c, y) }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        // SAFETY: NEON is enabled for the whole target.
        unsafe { quantize_neon(x, q) }
    }
}

#[cfg(feature = "std")]
pub use auto::Auto;

#[cfg(feature = "std")]
mod auto {
    use super::{Neon, NeonDot};
    use crate::Kernels;

    /// Run-time dispatch: [`NeonDot`] when the CPU has `dotprod`, else [`Neon`]. The check is
    /// `is_aarch64_feature_detected!`, cached by `std` after the first call.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Auto;

    macro_rules! dispatch {
        ($f:ident($($a:expr),*)) => {
            if NeonDot::available() { NeonDot::$f($($a),*) } else { Neon::$f($($a),*) }
        };
    }

    impl Auto {
        /// Name of the backend [`Auto`] dispatches to on this CPU.
        pub fn selected_name() -> &'static str {
            if NeonDot::available() {
                NeonDot::NAME
            } else {
                Neon::NAME
            }
        }
    }

    crate::dispatching_kernels!(Auto, dispatch);
}
