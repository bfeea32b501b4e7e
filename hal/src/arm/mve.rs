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
//! Every sum is exact integer arithmetic: `vmladava.s8` adds the 16 int8 x int8 products
//! of a vector into a 32-bit register, `vmla.s32` multiplies int8 values held in 32-bit
//! lanes; both wrap like the scalar oracle's `wrapping_add`, and no true sum overflows
//! (see [`crate::MAX_ACC_TERMS`]). The results are the oracle's bit for bit.
//!
//! Float work (`quantize_sym_i8`, the soft-cap, softmax and statistics loops) is the scalar
//! code: see `docs/PERFORMANCE.md` ("Cortex-M55 with Helium") for the measured share of
//! that work per token.
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

/// `[r[0] . x, r[1] . x, r[2] . x, r[3] . x]` (each row at least `x.len()` long): one
/// activation load feeds four rows, 10 instructions per 16 columns.
#[inline(always)]
fn dot4(r: [&[i8]; 4], x: &[i8]) -> [i32; 4] {
    let n = x.len();
    // Bounds: every row has the `n` bytes read (panics otherwise).
    let r = r.map(|s| &s[..n]);
    let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
    if n == 0 {
        return [0; 4];
    }
    // SAFETY: the tail-predicated loop runs `ceil(n / 16)` times (`n >= 1`); iteration `i`
    // reads the `min(16, n - 16 i)` active bytes at offset `16 i` of `x` and of each of the
    // four row slices (all `n` long; predicated-off lanes are not accessed). It writes the
    // accumulators `r0, r2, r4, r8`, `lr`, `q0..q3` (= `s0..s15`) and the tail predicate,
    // and no memory.
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
            n = in(reg) n,
            px = inout(reg) x.as_ptr() => _,
            p0 = inout(reg) r[0].as_ptr() => _,
            p1 = inout(reg) r[1].as_ptr() => _,
            p2 = inout(reg) r[2].as_ptr() => _,
            p3 = inout(reg) r[3].as_ptr() => _,
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

/// `y[i] = row(i) . x` for `i in 0..y.len()`; every `row(i)` has at least `x.len()` elements.
#[inline(always)]
fn gemv_by<'w>(row: impl Fn(usize) -> &'w [i8], x: &[i8], y: &mut [i32]) {
    let m = y.len();
    let mut i = 0;
    while i + 4 <= m {
        let s = dot4([row(i), row(i + 1), row(i + 2), row(i + 3)], x);
        y[i..i + 4].copy_from_slice(&s);
        i += 4;
    }
    while i < m {
        y[i] = dot(&row(i)[..x.len()], x);
        i += 1;
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
            "vldrb.s32 q1, [{p0}], #4",
            "vmla.s32 q0, q1, {c0}",
            "vldrb.s32 q2, [{p1}], #4",
            "vmla.s32 q0, q2, {c1}",
            "vldrb.s32 q3, [{p2}], #4",
            "vmla.s32 q0, q3, {c2}",
            "vldrb.s32 q1, [{p3}], #4",
            "vmla.s32 q0, q1, {c3}",
            "vstrw.32 q0, [{py}], #16",
            "letp lr, 2b",
            n = in(reg) n,
            py = inout(reg) y.as_mut_ptr() => _,
            p0 = inout(reg) r[0].as_ptr() => _,
            p1 = inout(reg) r[1].as_ptr() => _,
            p2 = inout(reg) r[2].as_ptr() => _,
            p3 = inout(reg) r[3].as_ptr() => _,
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

fn gemv_t_rows(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
    for (rg, cg) in rows.chunks(4).zip(c.chunks(4)) {
        // A partial group repeats its first row under a zero coefficient.
        let rp = check::group::<4>(w, cols, rg);
        let mut cc = [0i8; 4];
        cc[..cg.len()].copy_from_slice(cg);
        t_rows4(rp, cc, y);
    }
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
        gemv_by(|i| &w[i * cols..(i + 1) * cols], x, y);
    }

    fn gemv_rows_i8(w: &[i8], cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        if !check::gemv_rows(w, cols, rows, x, y) {
            y.fill(0);
            return;
        }
        gemv_by(|j| check::row(w, cols, rows[j]), x, y);
    }

    fn gemv_t_rows_i8(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        if check::gemv_t_rows(w, cols, rows, c, y) {
            gemv_t_rows(w, cols, rows, c, y);
        }
    }

    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        check::quantize(x, q);
        Scalar::quantize_sym_i8(x, q)
    }
}
