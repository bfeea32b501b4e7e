//! The Cortex-M DSP-extension backend (`thumbv7em`: M4/M7, `thumbv8m.main`: M33/M35P/M55):
//! two int16 multiply-accumulates per `smlad`, int8 unpacked to int16 pairs by `sxtb16`.
//!
//! The `core::arch::arm` DSP intrinsics are nightly-only, so the instructions are emitted
//! with `asm!`: single instructions the compiler schedules and allocates (`dot`, the
//! activation expansion, ragged ends) and three hand-written inner loops:
//!
//! - `sxtb16 rd, rm` sign-extends bytes 0 and 2 of a word into the two int16 halves;
//!   `sxtb16 rd, rm, ror #8` does bytes 1 and 3.
//! - `smlad rd, rn, rm, ra` adds `rn.lo*rm.lo + rn.hi*rm.hi` to `ra` (wrapping; it may set
//!   the sticky Q flag, so no `preserves_flags`). Each int16 x int16 product of int8 values
//!   is exact and every true total fits in i32 (see [`crate::MAX_ACC_TERMS`]), so the
//!   wrapped result is exact.
//! - `smlabb`/`smlabt`/`smlatb`/`smlatt` (one 16x16 product each) for `gemv_t_rows`.
//!
//! `gemv`/`gemv_rows` expand the activation vector once per call (per 256-column chunk, in
//! a 512-byte stack buffer) into the int16 lane order `sxtb16` produces from a weight word,
//! `[(x0, x2), (x1, x3)]` per four columns, then process four rows per pass: per four
//! columns and four rows one `ldrd` of activations feeds four weight loads, eight `sxtb16`
//! and eight `smlad` (an asm loop, four groups per iteration). `gemv_t_rows` takes three
//! rows per pass with four columns of `y` in registers (`ldm`/`stm`): per row and four
//! columns one load, two `sxtb16` and four `smla<x><y>` (the products cannot be paired for
//! `smlad` without a transposing `pkh` per pair, which costs as much). There is no float
//! SIMD on these cores, so `quantize_sym_i8` is the scalar oracle's. The gathers are the
//! strided kernels (row `r` at `w[r * stride ..]`, the bundled layouts of
//! `Kernels::gemv_rows_strided_i8`; `gemv_rows_i8`/`gemv_t_rows_i8` are them with
//! `stride = cols`): only the row addresses differ. No software prefetch (no caches to
//! speak of on M4/M33).
//!
//! Tested on QEMU (`mps2-an386` Cortex-M4, `mps2-an505` Cortex-M33) by the no_std
//! `firmware/kernel-test` binary, which compares every kernel with [`Scalar`] over edge
//! lengths and a deterministic sweep of random shapes, and measures executed instructions
//! per MAC (`test.sh`, `docs/PERFORMANCE.md`).

use core::arch::asm;

use crate::{check, Kernels, Scalar};

/// The Cortex-M DSP backend (`smlad` + `sxtb16`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Dsp;

/// Assembler preamble of every DSP snippet. On `thumbv8m.main` the DSP extension is
/// optional and rustc enables it only with the unstable `-C target-feature=+dsp`, so the
/// snippets select `.cpu cortex-m33` (v8-M Mainline with DSP) for the assembler. The backend
/// is chosen there on the SPEC's premise that the part has DSP (Cortex-M33/M35P parts
/// nearly always do); build with the `force-scalar` feature for one that does not.
#[cfg(spark_dsp_v8m)]
macro_rules! dsp_ext {
    () => {
        ".cpu cortex-m33"
    };
}
#[cfg(not(spark_dsp_v8m))]
macro_rules! dsp_ext {
    () => {
        ""
    };
}

/// Columns per activation-expansion chunk (the stack buffer holds `CHUNK / 2` words).
const CHUNK: usize = 256;

/// `(sext(x.b0), sext(x.b2))` as int16 halves.
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r;
    // SAFETY: register-only instruction without memory access or flag effects.
    unsafe {
        asm!(dsp_ext!(), "sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// `(sext(x.b1), sext(x.b3))` as int16 halves.
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r;
    // SAFETY: register-only instruction without memory access or flag effects.
    unsafe {
        asm!(dsp_ext!(), "sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// `acc + a.lo*b.lo + a.hi*b.hi` (wrapping).
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r;
    // SAFETY: register-only instruction without memory access; it may set the sticky Q
    // flag, which no Rust code relies on (flags are declared clobbered).
    unsafe {
        asm!(dsp_ext!(), "smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, acc = in(reg) acc, options(pure, nomem, nostack))
    };
    r
}

/// The little-endian word of `s[at..at + 4]`.
///
/// # Safety
/// `at + 4 <= s.len()`.
#[inline(always)]
unsafe fn word(s: &[i8], at: usize) -> u32 {
    debug_assert!(at + 4 <= s.len());
    // SAFETY: the caller guarantees the four bytes are inside `s`; `read_unaligned` has no
    // alignment requirement (Cortex-M3+ `ldr` handles unaligned normal memory).
    unsafe { core::ptr::read_unaligned(s.as_ptr().add(at).cast::<u32>()) }
}

/// Exact `sum a[k]*b[k]` for `k` in `from..to` with wrapping arithmetic.
#[inline(always)]
fn tail_dot(a: &[i8], b: &[i8], from: usize, to: usize) -> i32 {
    let mut s = 0i32;
    for k in from..to {
        s = s.wrapping_add(a[k] as i32 * b[k] as i32);
    }
    s
}

/// `a . b` without expansion (both operands unpacked on the fly).
fn dot(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (mut s0, mut s1) = (0i32, 0i32);
    let mut k = 0;
    while k + 4 <= n {
        // SAFETY: `k + 4 <= n` = both lengths.
        let (wa, wb) = unsafe { (word(a, k), word(b, k)) };
        s0 = smlad(sxtb16(wa), sxtb16(wb), s0);
        s1 = smlad(sxtb16_ror8(wa), sxtb16_ror8(wb), s1);
        k += 4;
    }
    s0.wrapping_add(s1).wrapping_add(tail_dot(a, b, k, n))
}

/// One chunk of expanded activations, stored at the *end* of the buffer:
/// `[(x[4g], x[4g+2]), (x[4g+1], x[4g+3])]` for each group `g` of four columns. The buffer
/// is aligned to its own size (512 bytes), so the asm loops stop when the activation
/// pointer reaches a 512-byte boundary (`lsls` + `bne`) and need no end-pointer register.
#[repr(C, align(512))]
struct XBuf([u32; CHUNK / 2]);

const _: () = assert!(core::mem::size_of::<XBuf>() == 512 && CHUNK % 8 == 0);

impl XBuf {
    /// Expands `x` (`x.len()` a multiple of 4, at most [`CHUNK`]) into the last `x.len() / 2`
    /// words and returns them.
    #[inline(always)]
    fn expand(&mut self, x: &[i8]) -> &[u32] {
        let ng = x.len() / 4;
        let start = CHUNK / 2 - 2 * ng;
        for (g, pair) in self.0[start..].chunks_exact_mut(2).enumerate() {
            // SAFETY: `g < ng = x.len() / 4`, so `4g + 4 <= x.len()`.
            let w = unsafe { word(x, 4 * g) };
            pair[0] = sxtb16(w);
            pair[1] = sxtb16_ror8(w);
        }
        &self.0[start..]
    }
}

/// `acc + w[0..4] . x[4g..4g+4]` for one weight word against one expanded group.
#[inline(always)]
fn mac_group(acc: i32, w: u32, xa: u32, xb: u32) -> i32 {
    smlad(sxtb16_ror8(w), xb, smlad(sxtb16(w), xa, acc))
}

/// One row against the expanded activations (`row.len() >= 2 * xe.len()`).
#[inline(always)]
fn dot1_expanded(row: &[i8], xe: &[u32], acc: i32) -> i32 {
    let mut acc = acc;
    for (g, pair) in xe.chunks_exact(2).enumerate() {
        // SAFETY: `4g + 4 <= 2 * xe.len() <= row.len()`.
        acc = mac_group(acc, unsafe { word(row, 4 * g) }, pair[0], pair[1]);
    }
    acc
}

/// The asm text multiplying one weight word, loaded by `$load` into `{w}`, with the
/// expanded group `({xa}, {xb})` into accumulator `{$a}`.
macro_rules! mac_row {
    ($load:literal, $a:literal) => {
        concat!(
            $load,
            "\n",
            "sxtb16 {t}, {w}\n",
            "smlad {",
            $a,
            "}, {t}, {xa}, {",
            $a,
            "}\n",
            "sxtb16 {t}, {w}, ror #8\n",
            "smlad {",
            $a,
            "}, {t}, {xb}, {",
            $a,
            "}\n"
        )
    };
}

/// Four consecutive rows (`block[q*s ..]`, `q < 4`) against the expanded activations:
/// `acc[q] += block[q*s .. q*s + 2*xe.len()] . x`. Per group of four columns: one `ldrd`
/// of activations, four weight loads, eight `sxtb16`, eight `smlad`; four groups per
/// loop iteration.
///
/// `xe` must end at the end of an [`XBuf`] (as returned by [`XBuf::expand`]).
#[inline(always)]
fn mac4_stride(block: &[i8], s: usize, xe: &[u32], acc: &mut [i32; 4]) {
    let n = 2 * xe.len();
    // Bounds: all four row segments lie inside `block` (panics otherwise).
    let block = &block[..3 * s + n];
    // The asm loop does four groups per iteration; the first `ng % 4` groups run here.
    let pre = (xe.len() / 2) % 4;
    for g in 0..pre {
        for q in 0..4 {
            // SAFETY: `q*s + 4g + 4 <= 3s + n = block.len()` since `g < ng = n / 4`.
            acc[q] = mac_group(acc[q], unsafe { word(block, q * s + 4 * g) }, xe[2 * g], xe[2 * g + 1]);
        }
    }
    let xe = &xe[2 * pre..];
    let off = 4 * pre;
    if xe.is_empty() {
        return;
    }
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    let p0 = block[off..].as_ptr();
    let p2 = block[2 * s + off..].as_ptr();
    // SAFETY: the loop runs `xe.len() / 8 >= 1` times (it ends when the activation pointer
    // reaches the 512-byte boundary that ends `xe`, see `XBuf`), reading `xe` forward and,
    // per row q, the `2 * xe.len()` bytes from `block[q*s + off]`, all inside `block`
    // (`3s + off + 2*xe.len() = 3s + n`). It writes only the listed registers and flags.
    unsafe {
        asm!(
            dsp_ext!(),
            "2:",
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}, {s}]", "a1"),
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p2}, {s}]", "a3"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}, {s}]", "a1"),
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p2}, {s}]", "a3"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}, {s}]", "a1"),
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p2}, {s}]", "a3"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}, {s}]", "a1"),
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p2}, {s}]", "a3"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "lsls {t}, {xp}, #23",
            "bne 2b",
            xp = inout(reg) xe.as_ptr() => _,
            p0 = inout(reg) p0 => _,
            p2 = inout(reg) p2 => _,
            s = in(reg) s,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            xa = out(reg) _,
            xb = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly)
        );
    }
    *acc = [a0, a1, a2, a3];
}

/// Three arbitrary rows against the expanded activations: `acc[q] += r[q][..2*xe.len()] . x`.
/// Per group: one `ldrd` of activations, three weight loads, six `sxtb16`, six `smlad`;
/// four groups per loop iteration.
///
/// `xe` must end at the end of an [`XBuf`] (as returned by [`XBuf::expand`]).
#[inline(always)]
fn mac3(r: [&[i8]; 3], xe: &[u32], acc: &mut [i32; 3]) {
    let n = 2 * xe.len();
    // Bounds: every row has the `n` bytes read (panics otherwise).
    let r = r.map(|s| &s[..n]);
    // The asm loop does four groups per iteration; the first `ng % 4` groups run here.
    let pre = (xe.len() / 2) % 4;
    for g in 0..pre {
        for q in 0..3 {
            // SAFETY: `4g + 4 <= n = r[q].len()` since `g < ng = n / 4`.
            acc[q] = mac_group(acc[q], unsafe { word(r[q], 4 * g) }, xe[2 * g], xe[2 * g + 1]);
        }
    }
    let (xe, r) = (&xe[2 * pre..], r.map(|s| &s[4 * pre..]));
    if xe.is_empty() {
        return;
    }
    let [mut a0, mut a1, mut a2] = *acc;
    // SAFETY: the loop runs `xe.len() / 8 >= 1` times (it ends when the activation pointer
    // reaches the 512-byte boundary that ends `xe`, see `XBuf`), reading `xe` forward and
    // the `2 * xe.len()` bytes of each row slice. It writes only the listed registers and flags.
    unsafe {
        asm!(
            dsp_ext!(),
            "2:",
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p1}], #4", "a1"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p1}], #4", "a1"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p1}], #4", "a1"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "ldrd {xa}, {xb}, [{xp}], #8",
            mac_row!("ldr {w}, [{p0}], #4", "a0"),
            mac_row!("ldr {w}, [{p1}], #4", "a1"),
            mac_row!("ldr {w}, [{p2}], #4", "a2"),
            "lsls {t}, {xp}, #23",
            "bne 2b",
            xp = inout(reg) xe.as_ptr() => _,
            p0 = inout(reg) r[0].as_ptr() => _,
            p1 = inout(reg) r[1].as_ptr() => _,
            p2 = inout(reg) r[2].as_ptr() => _,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            xa = out(reg) _,
            xb = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly)
        );
    }
    *acc = [a0, a1, a2];
}

/// `y[i] = row(i) . x` for `i in 0..m`; every `row(i)` has `x.len()` elements. With
/// `Some(w)`, the rows are consecutive rows of `w` (`row(i) = w[i*cols..]`) and go four per
/// pass; otherwise three per pass.
#[inline(always)]
fn gemv_by<'w>(m: usize, row: impl Fn(usize) -> &'w [i8], contiguous: Option<&[i8]>, x: &[i8], y: &mut [i32]) {
    let cols = x.len();
    let y = &mut y[..m];
    if m < 3 {
        // Too few rows to pay for the expansion.
        for i in 0..m {
            y[i] = dot(row(i), x);
        }
        return;
    }
    y.fill(0);
    let mut xbuf = XBuf([0; CHUNK / 2]);
    let mut c0 = 0;
    while c0 < cols {
        let c1 = (c0 + CHUNK).min(cols);
        // Whole groups of four columns go through `smlad`; the last 0-3 columns are a tail.
        let body = c0 + (c1 - c0) / 4 * 4;
        let xe = xbuf.expand(&x[c0..body]);
        let mut i = 0;
        if let Some(w) = contiguous {
            for yq in y.chunks_exact_mut(4) {
                let yq: &mut [i32; 4] = yq.try_into().unwrap();
                mac4_stride(&w[i * cols + c0..], cols, xe, yq);
                i += 4;
            }
        }
        for yt in y[i..].chunks_exact_mut(3) {
            let yt: &mut [i32; 3] = yt.try_into().unwrap();
            mac3([&row(i)[c0..], &row(i + 1)[c0..], &row(i + 2)[c0..]], xe, yt);
            i += 3;
        }
        for yi in &mut y[i..] {
            *yi = dot1_expanded(&row(i)[c0..], xe, *yi);
            i += 1;
        }
        if body < c1 {
            for (i, yi) in y.iter_mut().enumerate() {
                *yi = yi.wrapping_add(tail_dot(row(i), x, body, c1));
            }
        }
        c0 = c1;
    }
}

/// The asm text for one weight row of [`t_rows3`]: load four bytes, unpack them to
/// `(w0, w2)` / `(w1, w3)` and add `w[k] * coef` to `y[k]` in `r0..r3`, where `coef` is the
/// `$h` (`b`ottom or `t`op) half of `{$c}`.
macro_rules! t_row {
    ($p:literal, $c:literal, $h:literal) => {
        concat!(
            "ldr {w}, [{",
            $p,
            "}], #4\n",
            "sxtb16 {e}, {w}\n",
            "sxtb16 {w}, {w}, ror #8\n",
            "smlab",
            $h,
            " r0, {e}, {",
            $c,
            "}, r0\n",
            "smlat",
            $h,
            " r2, {e}, {",
            $c,
            "}, r2\n",
            "smlab",
            $h,
            " r1, {w}, {",
            $c,
            "}, r1\n",
            "smlat",
            $h,
            " r3, {w}, {",
            $c,
            "}, r3\n"
        )
    };
}

/// `y[k] += c[0]*r[0][k] + c[1]*r[1][k] + c[2]*r[2][k]` for every column `k < y.len()`.
///
/// The asm loop keeps four columns of `y` in `r0..r3` (`ldm`/`stm`), and per row one word
/// load, two `sxtb16` and four 16x16 multiply-accumulates (`smla<x><y>`) with the
/// coefficient half picked by `<y>`: 23 instructions per 12 MACs, eight columns per
/// iteration. The loop counter lives in the top half of the register holding `c[2]` (only
/// its bottom half is multiplied), which leaves enough registers for three rows.
#[inline(always)]
fn t_rows3(r: [&[i8]; 3], c: [i8; 3], y: &mut [i32]) {
    let n = y.len();
    // Bounds: every row has the `n` bytes read (panics otherwise).
    let r = r.map(|s| &s[..n]);
    let body = n / 8 * 8;
    if body > 0 {
        let c01 = c[0] as i16 as u16 as u32 | ((c[1] as i16 as u16 as u32) << 16);
        // Iterations left after the first, in the top half; `c[2]` in the bottom half.
        let c2n = (((body / 8 - 1) as u32) << 16) | c[2] as i16 as u16 as u32;
        // SAFETY: the loop runs `body / 8` times (the top half of `c2n` counts down to a
        // borrow) and each iteration reads 8 bytes from each row pointer and reads and
        // writes 8 i32 at the `y` pointer, all advancing: `body <= n` = every row's length
        // and `y.len()`. `y` is 4-byte aligned (an `&mut [i32]`), as `ldm`/`stm` need.
        // Only the listed registers and the flags are written; `y` is the only memory written.
        unsafe {
            asm!(
                dsp_ext!(),
                "2:",
                "ldm {yp}, {{r0-r3}}",
                t_row!("pa", "c01", "b"),
                t_row!("pb", "c01", "t"),
                t_row!("pc", "c2n", "b"),
                "stm {yp}!, {{r0-r3}}",
                "ldm {yp}, {{r0-r3}}",
                t_row!("pa", "c01", "b"),
                t_row!("pb", "c01", "t"),
                t_row!("pc", "c2n", "b"),
                "stm {yp}!, {{r0-r3}}",
                "subs {c2n}, {c2n}, #0x10000",
                "bhs 2b",
                yp = inout(reg) y.as_mut_ptr() => _,
                pa = inout(reg) r[0].as_ptr() => _,
                pb = inout(reg) r[1].as_ptr() => _,
                pc = inout(reg) r[2].as_ptr() => _,
                c01 = in(reg) c01,
                c2n = inout(reg) c2n => _,
                w = out(reg) _,
                e = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                options(nostack)
            );
        }
    }
    let (c0, c1, c2) = (c[0] as i32, c[1] as i32, c[2] as i32);
    for k in body..n {
        let s = c0 * r[0][k] as i32 + c1 * r[1][k] as i32 + c2 * r[2][k] as i32;
        y[k] = y[k].wrapping_add(s);
    }
}

/// `y += sum_j c[j] * row rows[j]` over rows `stride` bytes apart (`cols = y.len() > 0`).
fn gemv_t_rows(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    let row = |j: usize| check::row(w, stride, cols, rows[j]);
    let m = rows.len();
    let mut j = 0;
    while j + 3 <= m {
        t_rows3([row(j), row(j + 1), row(j + 2)], [c[j], c[j + 1], c[j + 2]], y);
        j += 3;
    }
    if j < m {
        // The last 1-2 rows; missing ones repeat row `j` under a zero coefficient.
        let cc = |t: usize| if j + t < m { c[j + t] } else { 0 };
        let rr = |t: usize| if j + t < m { row(j + t) } else { row(j) };
        t_rows3([rr(0), rr(1), rr(2)], [cc(0), cc(1), cc(2)], y);
    }
}

impl Kernels for Dsp {
    const NAME: &'static str = "dsp";

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
        gemv_by(y.len(), |i| &w[i * cols..(i + 1) * cols], Some(w), x, y);
    }

    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows_strided(stride, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        gemv_by(rows.len(), |j| check::row(w, stride, cols, rows[j]), None, x, y);
    }

    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if check::gemv_t_rows_strided(stride, cols, rows, c, y) {
            gemv_t_rows(w, stride, cols, rows, c, y);
        }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        Scalar::quantize_sym_i8(x, q)
    }
}
