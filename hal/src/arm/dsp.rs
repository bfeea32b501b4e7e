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
//! and eight `smlad` (an asm loop, four groups per iteration). `gemv_t_rows` pairs rows
//! for `smlad`: the words `A` and `B` of two rows give `[a0 a1 b0 b1]` (`pkhbt`) and
//! `[a2 a3 b2 b3]` (`pkhtb`), whose `sxtb16` (plain and `ror #8`) are the int16 pairs
//! `(a_k, b_k)` that one `smlad` with `(c_a, c_b)` adds to `y_k`: 12 instructions per two
//! rows and four columns. It runs column-block major: four columns of `y` stay in
//! registers over the whole row list, which the asm walks as a table of four-row groups,
//! each loaded (with its continuation address, into `pc`) by one `ldm`, so the row loop has
//! no counter: 25 instructions per 16 MACs (see `t_table`; 1.583 - 1.600 instructions per MAC
//! measured, against 2.09 - 2.18 for the earlier three-rows-per-pass `smla<x><y>` loop).
//! There is no float SIMD on these cores, so `quantize_sym_i8` is the scalar oracle's. The gathers are the
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
    ///
    /// Not inlined (one call per 256 columns): inlined, its registers changed with
    /// unrelated edits elsewhere in the crate and cost `gemv_i8`'s row loop up to 0.013
    /// instructions per MAC on Cortex-M4 (1.458 against 1.446 at 256 columns).
    #[inline(never)]
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

/// Rows per table group of [`t_table`] (two coefficient pairs).
const T_GROUP: usize = 4;
/// Table groups per [`t_table`] call (64 rows; 16 * 32 = 512 bytes of table on the stack;
/// the asm's `#512` is this).
const T_GROUPS: usize = 16;

/// Two int8 coefficients as the int16 halves of a word (`a` low, `b` high): the `smlad`
/// operand that adds `a * lo + b * hi`.
#[inline(always)]
fn pack_pair(a: i8, b: i8) -> u32 {
    a as i16 as u16 as u32 | ((b as i16 as u16 as u32) << 16)
}

/// The asm text of one row pair of a [`t_table`] group: the words `A` (row a, columns
/// 4b..4b+4) in `$a` and `B` in `$b`, coefficients `(c_a, c_b)` in `$c`; `r12` is scratch.
/// `pkhbt` gives the bytes `[a0 a1 b0 b1]`, `pkhtb` `[a2 a3 b2 b3]`; `sxtb16` (and with
/// `ror #8`) turns each into the int16 pairs `(a_k, b_k)`, and `smlad` adds
/// `c_a * a_k + c_b * b_k` to `y_k` in `r8..r11`.
macro_rules! t_pair {
    ($a:literal, $b:literal, $c:literal) => {
        concat!(
            "pkhbt r12, ",
            $a,
            ", ",
            $b,
            ", lsl #16\n",
            "pkhtb ",
            $b,
            ", ",
            $b,
            ", ",
            $a,
            ", asr #16\n",
            "sxtb16 ",
            $a,
            ", r12\n",
            "smlad r8, ",
            $a,
            ", ",
            $c,
            ", r8\n",
            "sxtb16 r12, r12, ror #8\n",
            "smlad r9, r12, ",
            $c,
            ", r9\n",
            "sxtb16 ",
            $a,
            ", ",
            $b,
            "\n",
            "smlad r10, ",
            $a,
            ", ",
            $c,
            ", r10\n",
            "sxtb16 ",
            $b,
            ", ",
            $b,
            ", ror #8\n",
            "smlad r11, ",
            $b,
            ", ",
            $c,
            ", r11\n"
        )
    };
}

/// The asm text of one group of a [`t_table`] build: the four row indices below `r8`, their
/// bounds check against `r11` (out of range: to `9f`), their addresses `r * stride + base`
/// (`lr`, `r10`), the coefficient pairs from the word below `r9`, and the record with the
/// chain word `r0` (the record above) and continuation `r7` stored below `r12`, whose
/// address becomes the next chain word.
macro_rules! t_build {
    () => {
        concat!(
            "ldmdb r8!, {{r1-r4}}\n",
            "cmp r1, r11\n",
            "ittt lo\n",
            "cmplo r2, r11\n",
            "cmplo r3, r11\n",
            "cmplo r4, r11\n",
            "bhs 9f\n",
            "mla r1, r1, lr, r10\n",
            "mla r2, r2, lr, r10\n",
            "mla r3, r3, lr, r10\n",
            "mla r4, r4, lr, r10\n",
            "ldr r5, [r9, #-4]!\n",
            "sxtb16 r6, r5, ror #8\n",
            "sxtb16 r5, r5\n",
            "stmdb r12!, {{r0-r7}}\n",
            "mov r0, r12\n"
        )
    };
}

/// `y[k] += sum_j c[j] * r_j[k]` for the `k < y.len()` (a multiple of 4, at least 4) and
/// the listed rows `r_j` (at least one), row `r` at `base - y.len() + r * stride` (`base`
/// is row 0's address plus `y.len()`), the rows `r < n_inside` inside the caller's slice.
///
/// One asm block takes the rows in chunks of at most [`T_GROUPS`] groups of four, from
/// the end of the list: the first chunk holds the ragged remainder (1 to 64 rows, a last
/// partial group included), every later one 64 rows. For each chunk it builds a table of
/// row groups on the stack, then walks it once per block of four columns (integer sums:
/// the order of rows and chunks does not change them).
///
/// A group is a record of eight words, loaded by one `ldm r0, {r0-r6, pc}`: the address of
/// the next record (`r0`, the chain the walk follows, so no table pointer is reset per
/// block), the addresses of its four rows `j .. j + 4` (`r1..r4`, pre-offset so that
/// `ldr rX, [rX, lr]` with the block offset in `lr` reads the block's word), the
/// coefficient pairs `(c_j, c_{j+2})` (`r5`) and `(c_{j+1}, c_{j+3})` (`r6`), which pair
/// the rows `(r1, r3)` and `(r2, r4)`, and the address to continue at, which `ldm` loads
/// into `pc`: the group code for every record but the first. The chain is a cycle: the
/// last record leads back to the first, whose continuation is the block end. So the row
/// loop costs no counter and no branch (per group of four rows and four columns one `ldm`,
/// four `ldr`, four `pkh`, eight `sxtb16` and eight `smlad`: 25 instructions per 16 MACs),
/// and a block costs four more: the block end stores `y`'s four sums, steps the offset,
/// leaves after the last block, loads the next four sums and falls into the group code
/// with the first group, which the first record's `ldm` has just loaded.
///
/// The table build (last group first, downwards from the table's top to the stack
/// pointer, which ends the loop): per group one `ldmdb` of four row indices, their bounds
/// check against `n_inside` (a compare and three compares in one `it` block, then one
/// branch: an index out of range leaves before anything is computed, and the caller
/// panics), one `mla` per row address, one `ldr` of four coefficients and two `sxtb16`
/// (bytes 0 and 2, then 1 and 3: the pairs above), one `stmdb` with the chain word (the
/// record above): 16 instructions per four rows (`t_build!`), four groups per pass (the
/// first pass enters where a multiple of four groups is left), plus the loop test per
/// pass. A last partial group (its missing rows repeat the first under zero coefficients)
/// is prepared in Rust and copied first, as the top record of the first chunk. `r6` and `r7` (not allowed as asm
/// operands) are saved and restored on the stack.
#[inline(always)]
fn t_table(w: &[i8], stride: usize, n_inside: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    // The asm's constants: 16 records of 32 bytes (`#512`), `ubfx ... #4` (mod 16) and
    // `movs r5, #16` for the chunks after the first.
    const { assert!(T_GROUPS == 16 && T_GROUP == 4) };
    let (cols, m) = (y.len(), rows.len());
    debug_assert!(cols >= 4 && cols <= stride && m >= 1 && c.len() == m);
    let (nf, rest) = (m / T_GROUP, m % T_GROUP);
    // The partial last group (null: none): its row addresses and coefficient pairs, as the
    // asm copies them into the top record of the first chunk.
    let mut part = core::mem::MaybeUninit::<[u32; 6]>::uninit();
    let part_ptr: *const u32 = if rest == 0 {
        core::ptr::null()
    } else {
        let (r_rest, c_rest) = (&rows[nf * T_GROUP..], &c[nf * T_GROUP..]);
        let max = r_rest.iter().fold(0, |a, &r| a.max(r));
        assert!((max as usize) < n_inside, "gemv_t_rows_strided_i8: row index out of range");
        // The missing rows repeat the first under zero coefficients.
        let (mut r, mut k) = ([r_rest[0]; 4], [0i8; 4]);
        r[..rest].copy_from_slice(r_rest);
        k[..rest].copy_from_slice(c_rest);
        // Row start + `body` (`cols & !3`), as the asm forms its addresses.
        let base = (w.as_ptr() as usize).wrapping_add(cols & !3);
        let at = |r: u32| -> u32 { base.wrapping_add(r as usize * stride) as u32 };
        part.write([at(r[0]), at(r[1]), at(r[2]), at(r[3]), pack_pair(k[0], k[2]), pack_pair(k[1], k[3])]);
        part.as_ptr().cast()
    };
    let bad: usize;
    // SAFETY: the asm pushes `r6`, `r7` and eight operands above a table of `T_GROUPS`
    // records (512 bytes) it reserves below them, and frees all of it on every exit, so
    // the stack is balanced. It works on `body = cols & !3 >= 4` columns of `y` (`cols =
    // y.len()`) and `nf = m / 4` whole groups (`m = rows.len() = c.len()`). Each chunk's
    // build reads `rows` as groups of four `u32` downwards from `rows[4 nf]` (`ldmdb`,
    // 4-byte aligned) and `c` as words downwards from `c[4 nf]` (`ldr` handles unaligned
    // addresses on Cortex-M3 and later): `nf` groups over all chunks and never below
    // `rows[0]` (the chunks' group counts add up to `nf`; the last chunk ends at the list
    // start, which ends the chunk loop); and `part` (six words, written above) when there
    // is a partial group. It writes the chunk's records `ng - 1 .. 0` of the reserved
    // table (`ng <= T_GROUPS`), the last at the stack pointer, which ends the build loop,
    // then the first record's continuation word. Every row index is compared with
    // `n_inside` before its address is formed; one out of range branches to the exit with
    // `lr = 1` (0 when done) before anything is read through a row address or `y` is
    // touched further (earlier chunks' sums stay in `y`; the caller panics). Otherwise the
    // walk reads only the chunk's records (each chain word is the start of one of them),
    // each holding four addresses of rows inside `w` (`r * stride + cols <= w.len()`, so
    // each has `cols >= body` bytes) plus `body`; block `b < body / 4` reads the word at
    // byte `4 b` of each (`lr = 4 b - body`), inside the row. `y` is read and written as
    // `body / 4` blocks of four `i32` through `r7` (4-byte aligned, as `ldm`/`stm` need;
    // the next block is loaded only when one remains). The `pc` words are Thumb addresses
    // (bit 0 set) of labels inside this block, so control never leaves it but through its
    // end. Every register written is declared or restored, and the flags are clobbered.
    unsafe {
        asm!(
            dsp_ext!(),
            // body = cols & !3; base: row 0 + body (the rows' addresses are pre-offset by
            // body); r8, r9: the rows and coefficients of the whole groups' end (4 nf
            // entries); r5: groups of the first chunk, ((m - 1) / 4) % 16 + 1
            "mov lr, r2",
            "bic r12, r12, #3",
            "add r10, r0, r12",
            "rsb r2, r12, #0",
            "bic r12, r5, #3",
            "add r8, r3, r12, lsl #2",
            "add r9, r9, r12",
            "subs r5, r5, #1",
            "ubfx r5, r5, #2, #4",
            "adds r5, r5, #1",
            "push {{r6, r7}}",
            // [sp + 512 ..]: y, -body, the list start, the rows and coefficient pointers
            // between chunks, base, n_inside, stride (above the table)
            "push {{r1, r2, r3, r8, r9, r10, r11, lr}}",
            "sub sp, sp, #512",
            // chunk: r5 records (r4: the partial group's words, or 0)
            "10:",
            // r12: the table's top; r0: the top record leads to the first, at sp
            "add r12, sp, r5, lsl #5",
            "mov r0, sp",
            // continuation of every record but the first: the group code (Thumb bit set)
            "adr.w r7, 2f + 1",
            "cbz r4, 15f",
            "ldm r4, {{r1-r6}}",
            "stmdb r12!, {{r0-r7}}",
            "mov r0, r12",
            "cmp r12, sp",
            "beq 7f",
            // build, downwards, four groups of four rows per pass: the first pass enters
            // at the group that leaves a multiple of four (r1: the groups to build mod 4)
            "mov r1, sp",
            "sub r1, r12, r1",
            "ubfx r1, r1, #5, #2",
            "b 16f",
            "15:",
            "and r1, r5, #3",
            "16:",
            "cbz r1, 11f",
            "cmp r1, #2",
            "beq 13f",
            "bhi 12f",
            "b 14f",
            "11:",
            t_build!(),
            "12:",
            t_build!(),
            "13:",
            t_build!(),
            "14:",
            t_build!(),
            "cmp r12, sp",
            "bne 11b",
            "7:",
            "strd r8, r9, [sp, #524]",
            // the first record (at sp) continues at the block end
            "adr.w r7, 4f + 1",
            "str r7, [sp, #28]",
            "ldrd r7, lr, [sp, #512]",
            "ldm sp, {{r0-r6}}",
            // per block of four columns: its four sums, then the groups
            "3:",
            "ldm r7, {{r8-r11}}",
            // per group of four rows (falls through at a block's start, then reached
            // through `ldm ... pc`)
            "2:",
            "ldr r1, [r1, lr]",
            "ldr r2, [r2, lr]",
            "ldr r3, [r3, lr]",
            "ldr r4, [r4, lr]",
            t_pair!("r1", "r3", "r5"),
            t_pair!("r2", "r4", "r6"),
            "ldm r0, {{r0-r6, pc}}",
            // block end (the first record's continuation; reached only through
            // `ldm ... pc`, so the alignment padding before it never runs)
            ".p2align 2",
            "4:",
            "stm r7!, {{r8-r11}}",
            "adds lr, lr, #4",
            "bne 3b",
            // the chunk is done: the next 64 rows below, until the list start
            "ldrd r1, r8, [sp, #520]",
            "cmp r8, r1",
            "beq 8f",
            "add r12, sp, #524",
            "ldm r12, {{r8-r11, lr}}",
            "movs r5, #16",
            "movs r4, #0",
            "b 10b",
            // a row index out of range: nothing more computed (`lr` = 1)
            "9:",
            "mov lr, #1",
            // done (`lr` = 0 when every chunk ran)
            "8:",
            "add sp, sp, #544",
            "pop {{r6, r7}}",
            inout("r0") w.as_ptr() => _,
            inout("r1") y.as_mut_ptr() => _,
            inout("r2") stride => _,
            inout("r3") rows.as_ptr() => _,
            inout("r4") part_ptr => _,
            inout("r5") m => _,
            out("r8") _,
            inout("r9") c.as_ptr() => _,
            out("r10") _,
            inout("r11") n_inside => _,
            inout("r12") cols => _,
            out("lr") bad,
        );
    }
    assert!(bad == 0, "gemv_t_rows_strided_i8: row index out of range");
}

/// `y += sum_j c[j] * row rows[j]` over rows `stride` bytes apart (`cols = y.len() > 0`):
/// the last 0-3 columns in plain code ([`t_tail`]), then [`t_table`] over the columns in
/// whole groups of four.
///
/// Executed instructions per MAC on Cortex-M4, 64 listed rows of 256 / 512 / 1024 columns
/// (`measure` in `firmware/kernel-test`): docs/PERFORMANCE.md, "Cortex-M". Produced by
/// `test.sh`'s step "Cortex-M4 DSP kernels" (QEMU 7.2):
///
/// ```sh
/// cd firmware/kernel-test
/// cargo build --release --target thumbv7em-none-eabihf --no-default-features --features mps2-an386
/// qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -icount shift=0 \
///   -semihosting-config enable=on,target=native -kernel target/thumbv7em-none-eabihf/release/spark-kernel-test
/// ```
///
/// # Safety
///
/// `y.len() == cols`, `0 < cols <= stride` and `c.len() == rows.len()` (what
/// `check::gemv_t_rows_strided` asserts): the asm reads `c` and `y` by these lengths.
#[inline(always)]
unsafe fn gemv_t_rows(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    if cols % 4 != 0 {
        t_tail(w, stride, cols, cols & !3, rows, c, y);
    }
    if cols >= 4 && !rows.is_empty() {
        // SAFETY: the caller's contract, and the two conditions just tested.
        unsafe { t_body(w, stride, rows, c, y) };
    }
}

/// The whole groups of four columns of [`gemv_t_rows`]: [`t_table`] with the bounds of
/// the rows inside `w` (its own function: no call in it, so its operands stay where they
/// arrive).
///
/// # Safety
///
/// `4 <= y.len() <= stride`, `c.len() == rows.len() >= 1`.
#[inline(never)]
unsafe fn t_body(w: &[i8], stride: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    // SAFETY: the caller's contract.
    unsafe {
        core::hint::assert_unchecked(y.len() >= 4 && y.len() <= stride && c.len() == rows.len() && !rows.is_empty())
    };
    let cols = y.len();
    // Row `r` lies inside `w` exactly when `r * stride + cols <= w.len()`, i.e. when
    // `r < n_inside` (one division per call instead of an overflow-checked multiply and a
    // slice check per row; `stride >= cols >= 4`). `t_table` forms the addresses (row
    // start + `body`, the asm adding the block offset in `-body..0`), each after the row's
    // bounds check.
    let n_inside = if w.len() >= cols { (w.len() - cols) / stride + 1 } else { 0 };
    t_table(w, stride, n_inside, rows, c, y);
}

/// The last `cols - body` (1 to 3) columns of [`gemv_t_rows`], in plain code.
#[inline(never)]
fn t_tail(w: &[i8], stride: usize, cols: usize, body: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    for (&r, &cj) in rows.iter().zip(c) {
        let row = check::row(w, stride, cols, r);
        for k in body..cols {
            y[k] = y[k].wrapping_add(cj as i32 * row[k] as i32);
        }
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
            // SAFETY: the check asserted `y.len() == cols <= stride`, `c.len() ==
            // rows.len()`, and returned `cols != 0`.
            unsafe { gemv_t_rows(w, stride, cols, rows, c, y) };
        }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        Scalar::quantize_sym_i8(x, q)
    }
}
