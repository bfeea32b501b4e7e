//! The Helium (M-profile Vector Extension, MVE) backend for Cortex-M55 / M85
//! (`thumbv8m.main` with MVE, `cfg(spark_mve)`): 16 int8 lanes per 128-bit vector, whole
//! dot products accumulated across the vector into a general-purpose register.
//!
//! # How the instructions are reached on stable Rust
//! Stable rustc knows no `mve` target feature (`-C target-feature=+mve` is accepted with an
//! "unstable feature" warning), and the target triple `thumbv8m.main-none-eabihf` does not
//! tell an M55 from an M33. So the backend is opt-in: the `spark-hal` cargo feature `mve`
//! makes `build.rs` set `cfg(spark_mve)` on `thumbv8m.main` targets, and every `asm!` block
//! starts with the assembler directive `.cpu cortex-m55` (v8.1-M Mainline with MVE), which
//! LLVM's integrated assembler scopes to that one block. Nothing else in the crate is
//! compiled with MVE, so the compiler never uses the vector registers on its own; each
//! block declares the `s` registers that alias the `q` registers it writes (`q0..q3` =
//! `s0..s15`, caller-saved in the AAPCS) and `lr` when it runs a low-overhead loop. The
//! tail predicate `P0`/`VPR` is not a register Rust allocates; only these blocks use it.
//! (`.arch_extension mve` is not accepted by LLVM's assembler; `.cpu cortex-m55` is.)
//! Running the code on a core without MVE is undefined (an UsageFault), which is why the
//! feature is opt-in.
//!
//! # The kernels
//! The gathers are the strided kernels (row `r` at `w[r * stride ..]`, the bundled layouts
//! of `Kernels::gemv_rows_strided_i8`; `gemv_rows_i8`/`gemv_t_rows_i8` are them with
//! `stride = cols`): only the row addresses differ.
//!
//! - `dot_i8`, `gemv_i8`, `gemv_rows_i8`: a tail-predicated low-overhead loop
//!   (`dlstp.8 lr, n` ... `letp lr`) over 16 columns per iteration: one `vldrb.8` of `x`
//!   feeds four rows (`vldrb.8` of each, `vmladava.s8` into four even GPRs `r0, r2, r4,
//!   r8`; the instruction encodes only even accumulators): 10 instructions per 64 MACs.
//!   The last partial chunk is predicated (inactive lanes neither load nor add), so any
//!   `cols` works without a scalar tail. Rows go four per pass; the last 1-3 rows one at a
//!   time through the one-row loop (4 instructions per 16 MACs).
//! - `gemv_t_rows_i8` (`y[col] += sum_j c[j] * W[rows[j]][col]`): four rows per pass over
//!   four columns of `y` per iteration (`dlstp.32`): one `vldrw` of `y`, per row one
//!   widening `vldrb.s32` (four bytes into four 32-bit lanes) and one `vmla.s32` by the
//!   row's coefficient in a GPR, one `vstrw`: 11 instructions per 16 MACs. The last 1-3
//!   rows repeat a row under a zero coefficient.
//!
//! Every integer sum is exact integer arithmetic: `vmladava.s8` adds the 16 int8 x int8 products
//! of a vector into a 32-bit register, `vmla.s32` multiplies int8 values held in 32-bit
//! lanes; both wrap like the scalar oracle's `wrapping_add`, and no true sum overflows
//! (see [`crate::MAX_ACC_TERMS`]). The results are the oracle's bit for bit.
//!
//! Float kernels, each the oracle's bits:
//! - `quantize_sym_i8`: the absolute maximum in integer arithmetic on the bit patterns,
//!   then `vmul.f32` + `vcvta.s32.f32` (round half away from zero) + clamp + narrowing store.
//! - `dequantize_f32` (`acc as f32 * a * scale`): `vcvt.f32.s32` and two `vmul.f32`.
//! - `above_masks_f32`: integer compares of order keys (no float compare at all).
//!
//! The vector unit's float arithmetic does not treat subnormals (and NaN payloads) as the
//! scalar FPU does: under QEMU, with the guards below removed, the kernel test's fixtures
//! with subnormal values differ. So each float kernel either avoids float arithmetic
//! (`above_masks_f32`) or runs the vector loop only where no subnormal or NaN can change a
//! bit and falls back to the scalar code otherwise (`quantize_sym_i8`: an absolute maximum
//! below `2^-60`; `dequantize_f32`: any zero-from-non-zero, subnormal or NaN result). No
//! fused multiply-add anywhere. The soft-cap (`tanh` needs a division per element, and MVE
//! has no vector divide), softmax numerators and the top-k statistics stay the scalar code;
//! `docs/PERFORMANCE.md` ("Cortex-M55 with Helium") has the measurements.
//!
//! # Testing
//! `firmware/kernel-test` built with its `mve` feature runs `spark_hal::testing`'s case
//! table (edge lengths, extreme values, max-length rows, random cases) on [`Mve`] against
//! [`Scalar`] bit for bit under `qemu-system-arm -machine mps3-an547 -cpu cortex-m55`, and
//! measures executed instructions per MAC; `firmware/run-qemu.sh` runs the bundled model on
//! the same board with `Native = Mve` against `spark-sim` and `models/expected_int8.json`.
//! Both run in `test.sh`.

use core::arch::asm;

use crate::{check, Kernels, Scalar};

/// The Cortex-M55/M85 Helium backend (`vldrb` + `vmladava.s8`, tail-predicated loops).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mve;

/// Assembler preamble of every MVE block (see the module docs).
macro_rules! mve_ext {
    () => {
        ".cpu cortex-m55"
    };
}

/// `a . b` over `n = a.len() = b.len()` columns: one accumulator, 16 columns per iteration.
#[inline(always)]
fn dot(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len();
    let b = &b[..n];
    let mut acc = 0i32;
    if n == 0 {
        return acc;
    }
    // SAFETY: the tail-predicated loop runs `ceil(n / 16)` times (`n >= 1`); iteration `i`
    // reads the `min(16, n - 16 i)` active bytes at offset `16 i` of `a` and of `b` (both
    // `n` long; predicated-off lanes are not accessed). It writes `r0` (the accumulator),
    // `lr`, `q0`/`q1` (= `s0..s7`) and the tail predicate, and no memory.
    unsafe {
        asm!(
            mve_ext!(),
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.8 q0, [{pa}], #16",
            "vldrb.8 q1, [{pb}], #16",
            "vmladava.s8 r0, q0, q1",
            "letp lr, 2b",
            n = in(reg) n,
            pa = inout(reg) a.as_ptr() => _,
            pb = inout(reg) b.as_ptr() => _,
            inout("r0") acc,
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            options(nostack, readonly)
        );
    }
    acc
}

/// `[r0 . x, r1 . x, r2 . x, r3 . x]` for four rows starting at `r[q]`: one activation
/// load feeds four rows, 10 instructions per 16 columns.
///
/// # Safety
/// `x.len() >= 1` and each `r[q]` points at `x.len()` readable bytes.
#[inline(always)]
unsafe fn dot4(r: [*const i8; 4], x: &[i8]) -> [i32; 4] {
    let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
    // SAFETY: the tail-predicated loop runs `ceil(n / 16)` times (`n = x.len() >= 1`, the
    // caller's promise); iteration `i` reads the `min(16, n - 16 i)` active bytes at offset
    // `16 i` of `x` and of each row (`n` readable bytes each, the caller's promise;
    // predicated-off lanes are not accessed). It writes the accumulators `r0, r2, r4, r8`,
    // `lr`, `q0..q3` (= `s0..s15`) and the tail predicate, and no memory.
    unsafe {
        asm!(
            mve_ext!(),
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.8 q0, [{px}], #16",
            "vldrb.8 q1, [{p0}], #16",
            "vmladava.s8 r0, q1, q0",
            "vldrb.8 q2, [{p1}], #16",
            "vmladava.s8 r2, q2, q0",
            "vldrb.8 q3, [{p2}], #16",
            "vmladava.s8 r4, q3, q0",
            "vldrb.8 q1, [{p3}], #16",
            "vmladava.s8 r8, q1, q0",
            "letp lr, 2b",
            n = in(reg) x.len(),
            px = inout(reg) x.as_ptr() => _,
            p0 = inout(reg) r[0] => _,
            p1 = inout(reg) r[1] => _,
            p2 = inout(reg) r[2] => _,
            p3 = inout(reg) r[3] => _,
            inout("r0") a0,
            inout("r2") a1,
            inout("r4") a2,
            inout("r8") a3,
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            options(nostack, readonly)
        );
    }
    [a0, a1, a2, a3]
}

/// `y[i] = W[i] . x` for the consecutive rows of `w` (`[y.len(), x.len()]`, `x` not empty).
#[inline(always)]
fn gemv_contiguous(w: &[i8], x: &[i8], y: &mut [i32]) {
    let cols = x.len();
    // Bounds: the rows read are all inside `w` (panics otherwise).
    let w = &w[..y.len() * cols];
    let done = y.len() / 4 * 4;
    let mut chunks = y.chunks_exact_mut(4);
    let mut p = w.as_ptr();
    for yq in &mut chunks {
        // SAFETY: `cols >= 1`; this chunk's four rows, `cols` bytes each from `p + q * cols`,
        // lie inside `w` (`p` advances by four rows per chunk of `y`).
        let s = unsafe { dot4([p, p.add(cols), p.add(2 * cols), p.add(3 * cols)], x) };
        yq.copy_from_slice(&s);
        p = p.wrapping_add(4 * cols);
    }
    for (i, yi) in chunks.into_remainder().iter_mut().enumerate() {
        let r = (done + i) * cols;
        *yi = dot(&w[r..r + cols], x);
    }
}

/// `y[j] = W[rows[j]] . x` over rows `stride` bytes apart (`x` not empty); each listed row
/// is bounds-checked.
#[inline(always)]
fn gemv_listed(w: &[i8], stride: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
    let cols = x.len();
    let row = |r: u32| check::row(w, stride, cols, r).as_ptr();
    let done = y.len() / 4 * 4;
    let mut chunks = y.chunks_exact_mut(4);
    for (yq, rq) in (&mut chunks).zip(rows.chunks_exact(4)) {
        let p = [row(rq[0]), row(rq[1]), row(rq[2]), row(rq[3])];
        // SAFETY: `cols >= 1` and each pointer starts a `cols`-byte row of `w`
        // (`check::row` bounds-checks it).
        yq.copy_from_slice(&unsafe { dot4(p, x) });
    }
    for (yi, &r) in chunks.into_remainder().iter_mut().zip(&rows[done..]) {
        *yi = dot(check::row(w, stride, cols, r), x);
    }
}

/// `y[k] += c[0]*r[0][k] + c[1]*r[1][k] + c[2]*r[2][k] + c[3]*r[3][k]` for every column
/// `k < y.len()` (each row at least `y.len()` long): 11 instructions per 4 columns.
#[inline(always)]
fn t_rows4(r: [&[i8]; 4], c: [i8; 4], y: &mut [i32]) {
    let n = y.len();
    // Bounds: every row has the `n` bytes read (panics otherwise).
    let r = r.map(|s| &s[..n]);
    if n == 0 {
        return;
    }
    let c = c.map(i32::from);
    // SAFETY: the tail-predicated loop runs `ceil(n / 4)` times (`n >= 1`); iteration `i`
    // reads the `min(4, n - 4 i)` active bytes at offset `4 i` of each row slice (all `n`
    // long) and reads and writes the same number of active `i32` at offset `4 i` of `y`
    // (`n` long; predicated-off lanes are neither loaded nor stored). `y` is 4-byte
    // aligned (an `&mut [i32]`), as `vldrw`/`vstrw` need. It writes `lr`, `q0..q3`
    // (= `s0..s15`), the tail predicate, and no memory but `y`.
    unsafe {
        asm!(
            mve_ext!(),
            "dlstp.32 lr, {n}",
            "2:",
            "vldrw.u32 q0, [{py}]",
            "vldrb.s32 q1, [r0], #4",
            "vmla.s32 q0, q1, {c0}",
            "vldrb.s32 q2, [r1], #4",
            "vmla.s32 q0, q2, {c1}",
            "vldrb.s32 q3, [r2], #4",
            "vmla.s32 q0, q3, {c2}",
            "vldrb.s32 q1, [r3], #4",
            "vmla.s32 q0, q1, {c3}",
            "vstrw.32 q0, [{py}], #16",
            "letp lr, 2b",
            n = in(reg) n,
            py = inout(reg) y.as_mut_ptr() => _,
            // (the widening `vldrb.s32` addresses through r0-r7 only)
            inout("r0") r[0].as_ptr() => _,
            inout("r1") r[1].as_ptr() => _,
            inout("r2") r[2].as_ptr() => _,
            inout("r3") r[3].as_ptr() => _,
            c0 = in(reg) c[0],
            c1 = in(reg) c[1],
            c2 = in(reg) c[2],
            c3 = in(reg) c[3],
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            options(nostack)
        );
    }
}

/// `y += sum_j c[j] * row rows[j]` over rows `stride` bytes apart (`cols = y.len()`).
fn gemv_t_rows(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    for (rg, cg) in rows.chunks(4).zip(c.chunks(4)) {
        // A partial group repeats its first row under a zero coefficient.
        let rp = check::group::<4>(w, stride, cols, rg);
        let mut cc = [0i8; 4];
        cc[..cg.len()].copy_from_slice(cg);
        t_rows4(rp, cc, y);
    }
}

/// `2^-60`: the smallest absolute maximum [`quantize`] quantizes with vector float
/// multiplies; below it the scalar oracle runs (see there).
const VECTOR_QUANT_MIN_ABSMAX: f32 = 1.0 / (1u64 << 60) as f32;

/// `max |x[i]|` over the finite entries (0 when there are none), in integer arithmetic:
/// `bits << 1` drops the sign, an entry is finite exactly when that is below
/// `0xff00_0000`, and for non-negative floats the order of the bit patterns is the order
/// of the values, so the largest pattern is the oracle's maximum, bit for bit.
#[inline(always)]
fn absmax_finite(x: &[f32]) -> f32 {
    let mut m2 = 0u32;
    if x.is_empty() {
        return 0.0;
    }
    // SAFETY: the tail-predicated loop runs `ceil(n / 4)` times (`n = x.len() >= 1`);
    // iteration `i` reads the `min(4, n - 4 i)` active `f32` at offset `4 i` of `x`
    // (4-byte aligned, as `vldrw` needs; predicated-off lanes are not accessed). It writes
    // `m2`, `lr`, `q0`, `q2`, `q3` (= `s0..s3`, `s8..s15`), the predicates, and no memory.
    unsafe {
        asm!(
            mve_ext!(),
            "vmov.i32 q2, #0",
            "vdup.32 q3, {lim}",
            "dlstp.32 lr, {n}",
            "2:",
            "vldrw.u32 q0, [{px}], #16",
            "vshl.i32 q0, q0, #1",
            "vpt.u32 hi, q3, q0",
            "vmaxt.u32 q2, q2, q0",
            "letp lr, 2b",
            "vmaxv.u32 {m2}, q2",
            n = in(reg) x.len(),
            px = inout(reg) x.as_ptr() => _,
            lim = in(reg) 0xff00_0000u32,
            m2 = inout(reg) m2,
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            options(nostack, readonly)
        );
    }
    f32::from_bits(m2 >> 1)
}

/// The oracle's `quantize_sym_i8`, bit for bit. Per four entries: one `vmul.f32` by
/// `inv = 127 / absmax` (one IEEE multiply rounded to nearest, as the scalar `x * inv`),
/// `vcvta.s32.f32` (round to nearest, ties away from zero: the oracle's
/// `round_half_away`), a clamp to `[-127, 127]`, zero for the non-finite entries, a
/// narrowing `vstrb.32`.
///
/// Vector float arithmetic may flush subnormal inputs and results to zero where the
/// scalar FPU does not, so the vector loop runs only when `absmax >= 2^-60`: then
/// `inv <= 127 * 2^60`, a subnormal `x[i]` (below `2^-126`) gives `|x[i] * inv| < 2^-59`,
/// and a subnormal product is below `2^-126`; both quantize to 0 flushed or not. Smaller
/// maxima (subnormal ones included, whose `inv` may be infinite) take the scalar code.
fn quantize(x: &[f32], q: &mut [i8]) -> f32 {
    let absmax = absmax_finite(x);
    if absmax < VECTOR_QUANT_MIN_ABSMAX {
        return Scalar::quantize_sym_i8(x, q);
    }
    let inv = 127.0 / absmax;
    let q = &mut q[..x.len()];
    // SAFETY: `x` is not empty (`absmax > 0`). The tail-predicated loop runs
    // `ceil(n / 4)` times (`n = x.len() = q.len()`); iteration `i` reads the
    // `min(4, n - 4 i)` active `f32` at offset `4 i` of `x` (4-byte aligned) and writes as
    // many bytes at offset `4 i` of `q` (predicated-off lanes are not accessed). It writes
    // `lr`, `q0..q4` (= `s0..s19`), the predicates, and no memory but `q`.
    unsafe {
        asm!(
            mve_ext!(),
            "vmov.i32 q2, #0",
            "vmov.i32 q3, #127",
            "vmvn.i32 q4, #126",
            "dlstp.32 lr, {n}",
            "2:",
            "vldrw.u32 q0, [{px}], #16",
            "vshl.i32 q1, q0, #1",
            "vmul.f32 q0, q0, {inv}",
            "vcvta.s32.f32 q0, q0",
            "vmin.s32 q0, q0, q3",
            "vmax.s32 q0, q0, q4",
            "vcmp.u32 cs, q1, {lim}",
            "vpsel q0, q2, q0",
            "vstrb.32 q0, [r0], #4",
            "letp lr, 2b",
            n = in(reg) x.len(),
            px = inout(reg) x.as_ptr() => _,
            // (the narrowing `vstrb.32` addresses through r0-r7 only)
            inout("r0") q.as_mut_ptr() => _,
            inv = in(reg) inv.to_bits(),
            lim = in(reg) 0xff00_0000u32,
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            out("s16") _, out("s17") _, out("s18") _, out("s19") _,
            options(nostack)
        );
    }
    absmax / 127.0
}

/// The `f32` bits as an integer that orders like the value for every non-NaN float
/// (`+0` and `-0` both 0): the magnitude, negated for a negative sign.
#[inline(always)]
fn order_key(v: f32) -> i32 {
    let b = v.to_bits();
    let m = (b & 0x7fff_ffff) as i32;
    if b >> 31 == 1 {
        -m
    } else {
        m
    }
}

/// `[1, 2, 4, 8]`: the mask bit of each lane of the first vector of a group.
#[repr(C, align(16))]
struct LaneBits([u32; 4]);

static LANE_BITS: LaneBits = LaneBits([1, 2, 4, 8]);

/// The asm text for one vector of four scores of [`above_masks`]: load, order keys
/// (`(magnitude ^ sign) - sign` with `sign` = 0 or -1), the two compares, the predicated
/// sum of the lanes' bits into `r0`, then the bits of the next vector.
macro_rules! mask_vector {
    () => {
        concat!(
            "vldrw.u32 q0, [{ps}], #16\n",
            "vshr.s32 q1, q0, #31\n",
            "vbic.i32 q0, #0x80000000\n",
            "veor q0, q0, q1\n",
            "vsub.i32 q0, q0, q1\n",
            "vpt.s32 gt, q0, {tk}\n",
            "vcmpt.s32 lt, q0, {ik}\n",
            "vpst\n",
            "vaddvat.u32 r0, q2\n",
            "vshl.i32 q2, q2, #4\n"
        )
    };
}

/// The oracle's [`math::above_masks`](crate::math::above_masks), bit for bit, in integer
/// compares: with `k` = [`order_key`], a non-NaN `s > theta` is `k(s) > k(theta)`
/// (subnormals and signed zeros included) and a non-NaN `s < +inf` is `k(s) < k(+inf)`; a
/// NaN score has a key above `k(+inf)` or below `k(-inf)` and fails one of the two, as it
/// fails both float compares; a NaN `theta` passes nothing. Per four scores: one `vldrw`,
/// four instructions for the keys, two compares, a predicated `vaddva` of the lanes' bit
/// values (`[1, 2, 4, 8] << 4 v` for vector `v` of the group) and a shift of those.
fn above_masks(scores: &[f32], theta: f32, masks: &mut [u32]) {
    let groups = masks.len().min(scores.len() / 32);
    if theta.is_nan() {
        masks[..groups].fill(0);
        return;
    }
    let (tk, ik) = (order_key(theta), order_key(f32::INFINITY));
    for (m, group) in masks[..groups].iter_mut().zip(scores.chunks_exact(32)) {
        let mut bits = 0u32;
        // SAFETY: reads the 32 `f32` of `group` (8 vectors of 4; `f32` is 4-byte aligned as
        // `vldrw` needs) and the 16-byte-aligned `LANE_BITS`; writes `bits` (`r0`),
        // `q0..q2` (= `s0..s11`), the predicates, and no memory.
        unsafe {
            asm!(
                mve_ext!(),
                "vldrw.u32 q2, [{lb}]",
                mask_vector!(),
                mask_vector!(),
                mask_vector!(),
                mask_vector!(),
                mask_vector!(),
                mask_vector!(),
                mask_vector!(),
                mask_vector!(),
                ps = inout(reg) group.as_ptr() => _,
                lb = in(reg) LANE_BITS.0.as_ptr(),
                tk = in(reg) tk,
                ik = in(reg) ik,
                inout("r0") bits,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                options(nostack, readonly)
            );
        }
        *m = bits;
    }
}

/// The oracle's [`math::dequantize`](crate::math::dequantize), bit for bit: per four
/// entries `vcvt.f32.s32` (exact or rounded to nearest, as the scalar `as f32`),
/// `vmul.f32` by `a` and `vmul.f32` by the four row scales (two roundings, no fused
/// multiply-add, as the oracle), `vstrw`. A vector unit may flush subnormal inputs,
/// intermediates and results to zero and give NaNs another payload; where that could
/// change a bit the result shows it: a zero or subnormal result from a non-zero `acc`, or a
/// NaN. The loop counts those lanes, and if there is any the whole call is redone by the
/// scalar code (normal model values never get there; the kernel-test fixtures do). Scales
/// that are not 4-byte aligned, and the last 0-3 entries, take the scalar code too.
fn dequantize(acc: &[i32], a: f32, row_scale: &[u8], out: &mut [f32]) {
    let n = acc.len().min(out.len()).min(row_scale.len() / 4);
    let (acc, out, row_scale) = (&acc[..n], &mut out[..n], &row_scale[..4 * n]);
    if row_scale.as_ptr() as usize % 4 != 0 {
        return crate::math::dequantize(acc, a, row_scale, out);
    }
    let body = n / 4 * 4;
    let mut suspects = 0u32;
    if body > 0 {
        // SAFETY: the low-overhead loop runs `body / 4 >= 1` times; iteration `i` reads the
        // four `i32` at offset `4 i` of `acc`, the 16 bytes at offset `16 i` of `row_scale`
        // (4-byte aligned, checked above, as `vldrw` needs) and writes the four `f32` at
        // offset `4 i` of `out`: `body <= n` entries of each. It writes `suspects` (`r0`),
        // `lr`, `q0..q4` (= `s0..s19`), the predicates, and no memory but `out`.
        unsafe {
            asm!(
                mve_ext!(),
                "vdup.32 q3, {lim}",
                "vmov.i32 q4, #1",
                "wls lr, {cnt}, 3f",
                "2:",
                "vldrw.u32 q0, [{pa}], #16",
                "vcvt.f32.s32 q1, q0",
                "vmul.f32 q1, q1, {a}",
                "vldrw.u32 q2, [{ps}], #16",
                "vmul.f32 q1, q1, q2",
                "vstrw.32 q1, [{po}], #16",
                // |result| bits: zero or subnormal below 0x0100_0000, NaN above 0xff00_0000
                "vshl.i32 q2, q1, #1",
                "vpt.i32 ne, q0, {zero}",
                "vcmpt.u32 hi, q3, q2",
                "vpst",
                "vaddvat.u32 r0, q4",
                "vpt.u32 hi, q2, {nan}",
                "vaddvat.u32 r0, q4",
                "le lr, 2b",
                "3:",
                cnt = in(reg) body / 4,
                pa = inout(reg) acc.as_ptr() => _,
                ps = inout(reg) row_scale.as_ptr() => _,
                po = inout(reg) out.as_mut_ptr() => _,
                a = in(reg) a.to_bits(),
                lim = in(reg) 0x0100_0000u32,
                nan = in(reg) 0xff00_0000u32,
                zero = in(reg) 0u32,
                inout("r0") suspects,
                out("lr") _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _,
                options(nostack)
            );
        }
    }
    if suspects != 0 {
        return crate::math::dequantize(acc, a, row_scale, out);
    }
    crate::math::dequantize(&acc[body..], a, &row_scale[4 * body..], &mut out[body..]);
}

impl Kernels for Mve {
    const NAME: &'static str = "mve";

    fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        check::dot(a, b);
        dot(a, b)
    }

    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        check::gemv(w, cols, x, y);
        if cols == 0 {
            y.fill(0);
            return;
        }
        gemv_contiguous(w, x, y);
    }

    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows_strided(stride, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        gemv_listed(w, stride, rows, x, y);
    }

    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if check::gemv_t_rows_strided(stride, cols, rows, c, y) {
            gemv_t_rows(w, stride, cols, rows, c, y);
        }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        quantize(x, q)
    }

    fn above_masks_f32(scores: &[f32], theta: f32, masks: &mut [u32]) {
        above_masks(scores, theta, masks)
    }

    fn dequantize_f32(acc: &[i32], a: f32, row_scale: &[u8], out: &mut [f32]) {
        dequantize(acc, a, row_scale, out)
    }
}
