//! Cortex-M kernel test for QEMU: `spark-hal`'s shared kernel cases
//! (`spark_hal::testing`, the table `kernel_suite!` runs on the host) with the DSP backend
//! ([`Dsp`]) and, with the `mve` feature (Cortex-M55, `mps3-an547`), the Helium backend
//! (`Mve`) against the scalar oracle bit for bit, then executed-instruction counts per MAC
//! of every backend in the same run.
//!
//! Proptest does not run on a microcontroller; the case table is `no_std` and allocation-free
//! and is run here over `static` buffers: every kernel at the edge lengths (0, 1, tile - 1,
//! tile, tile + 1, 13 * tile, ...), all -127 / all -128 / mixed extreme inputs, maximum-length
//! rows (`MAX_ACC_TERMS` columns, and `MAX_ACC_TERMS` rows for `gemv_t_rows`), the strided
//! gathers of bundled layouts (paddings, views at an offset inside a bundle, rows over
//! 4096 bytes), the quantization fixtures and the seeded random cases. It prints `kernel-test: ... N failed`
//! and exits through semihosting with status 0 only when nothing failed; a panic or
//! HardFault exits with status 1 (`firmware/common/rt.rs`; a hang would only end at the
//! caller's timeout).
//!
//! Instruction counts: the executed-instruction clock of `firmware/common/rt.rs` (SysTick
//! under `-icount shift=0`, calibrated with a loop of known length; SPEC section 10). These
//! are executed-instruction counts, not cycles. The targets for rows of 256-1024 columns are
//! enforced: DSP `gemv_i8` at most 1.5 instructions per MAC, DSP `gemv_t_rows_i8` and
//! `gemv_t_rows_strided_i8` at most 1.7; MVE `gemv_i8` at most 0.40 and `gemv_rows_i8` at
//! most 0.45.
//!
//! Boards are cargo features as in `firmware/app` (memory maps from `firmware/boards`):
//! `mps2-an386` (M4, default) and `mps2-an500` (M7) on thumbv7em, `mps2-an505` (M33) and
//! `mps3-an547` (M55) on thumbv8m.main, plus the `mve` feature on `mps3-an547`. `test.sh`
//! runs all five configurations under `timeout`.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ptr::addr_of_mut;

use spark_hal::arm::dsp::Dsp;
#[cfg(feature = "mve")]
use spark_hal::arm::mve::Mve;
use spark_hal::testing::{cases, check_case, Buffers, Case, W_LEN, X_LEN, Y_LEN};
use spark_hal::{native_backend_name, Kernels, Scalar};

#[macro_use]
#[path = "../../common/rt.rs"]
mod rt;
use rt::{fail, Clock, Ratio, UNIT};

/// Program name in messages.
const PROG: &str = "kernel-test";

/// Written by build.rs: the board.
mod gen {
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
use gen::*;

static mut W: [i8; W_LEN] = [0; W_LEN];
static mut X: [i8; X_LEN] = [0; X_LEN];
static mut C: [i8; X_LEN] = [0; X_LEN];
static mut IDX: [u32; X_LEN] = [0; X_LEN];
static mut Y0: [i32; Y_LEN] = [0; Y_LEN];
static mut Y1: [i32; Y_LEN] = [0; Y_LEN];
static mut F: [f32; Y_LEN] = [0.0; Y_LEN];
static mut Q0: [i8; Y_LEN] = [0; Y_LEN];
static mut Q1: [i8; Y_LEN] = [0; Y_LEN];

/// Cases and kernel calls per kind of case.
#[derive(Default)]
struct Kind {
    cases: u32,
    calls: u32,
}

/// The shared case table on `K` vs `Scalar`; returns the number of failed cases.
fn correctness<K: Kernels>(b: &mut Buffers<'_>) -> u32 {
    let mut kinds: [Kind; 7] = Default::default();
    let mut failed = 0;
    for case in cases() {
        let k = match case {
            Case::Edge { .. } => 0,
            Case::Extreme { .. } => 1,
            Case::MaxLength => 2,
            Case::Strided { .. } => 3,
            Case::Quant(_) => 4,
            Case::Float(_) => 5,
            Case::Random(_) => 6,
        };
        kinds[k].cases += 1;
        match check_case::<K>(case, b) {
            Ok(calls) => kinds[k].calls += calls,
            Err(m) => {
                failed += 1;
                if failed <= 20 {
                    outln!("FAIL {}: {}", K::NAME, m);
                }
            }
        }
    }
    let names = [
        "edge lengths",
        "extreme values",
        "max-length rows",
        "strided gathers",
        "quantization fixtures",
        "float-kernel fixtures",
        "random",
    ];
    for (k, name) in kinds.iter().zip(names) {
        outln!("cases {}: {} cases, {} kernel calls equal to the scalar oracle", name, k.cases, k.calls);
    }
    let total: u32 = kinds.iter().map(|k| k.cases).sum();
    outln!("spark_hal::testing cases on {} ({} vs scalar): {} cases, {} failed", BOARD, K::NAME, total, failed);
    failed
}

/// Executed instructions per MAC, thousandths, of `f` doing `macs` MACs `reps` times.
fn per_mac(clock: &Clock, macs: usize, reps: u32, mut f: impl FnMut()) -> u64 {
    let t0 = clock.now();
    for _ in 0..reps {
        f();
    }
    let n = clock.count(t0, clock.now());
    n * 1000 / (macs as u64 * reps as u64)
}

/// Executed instructions per call, tenths, of `f` run `reps` times.
fn per_call(clock: &Clock, reps: u32, mut f: impl FnMut()) -> u64 {
    let t0 = clock.now();
    for _ in 0..reps {
        f();
    }
    clock.count(t0, clock.now()) * 10 / reps as u64
}

/// Thousandths as a decimal.
fn milli(v: u64) -> Ratio {
    Ratio(v, 1000)
}

/// Instructions per MAC (thousandths) of `K`'s int8 kernels on the shapes of [`measure`]:
/// `gemv_i8`, `gemv_rows_i8`, `gemv_t_rows_i8`, `dot_i8` (one row), and
/// `gemv_t_rows_strided_i8` over the same row list with rows `2 * cols` bytes apart (a
/// bundled layout's V pass; `b.w` holds `2 * rows * cols` pattern bytes); and the two output
/// products' instructions per call (tenths), timed over 16 calls (the clock ticks every 40
/// instructions or so, so a figure is exact to 2.5 instructions per call).
fn kernel_counts<K: Kernels>(b: &mut Buffers<'_>, clock: &Clock, rows: usize, cols: usize) -> ([u64; 5], [u64; 2]) {
    let (w, x, y) = (&b.w[..rows * cols], &b.x[..cols], &mut b.y0[..rows]);
    let (idx, c) = (&b.idx[..rows], &b.c[..rows]);
    let macs = rows * cols;
    let gemv = per_mac(clock, macs, 4, || K::gemv_i8(w, cols, x, y));
    let gemv_rows = per_mac(clock, macs, 4, || K::gemv_rows_i8(w, cols, idx, x, y));
    let yt = &mut b.y1[..cols];
    let gemv_t = per_call(clock, 16, || K::gemv_t_rows_i8(w, cols, idx, c, yt));
    let dot = per_mac(clock, cols, 16, || {
        core::hint::black_box(K::dot_i8(&w[..cols], x));
    });
    let ws = &b.w[..(2 * rows - 1) * cols];
    let strided = per_call(clock, 16, || K::gemv_t_rows_strided_i8(ws, 2 * cols, cols, idx, c, yt));
    let milli = |tenths: u64| tenths * 100 / macs as u64;
    ([gemv, gemv_rows, milli(gemv_t), dot, milli(strided)], [gemv_t, strided])
}

/// Instructions per MAC (thousandths) of `K`'s `gemv_t_rows_strided_i8` at the demo
/// model's Spark FFN output product: 72 listed rows (its `k`) of 160 columns (`d`), rows
/// 256 bytes apart (the bundled `[K2 | V]` records of `d - r + d` bytes), over the pattern
/// bytes [`measure`] left in `b.w` (row indices `37 i mod 512`).
fn demo_v_pass<K: Kernels>(b: &mut Buffers<'_>, clock: &Clock) -> u64 {
    let (rows, cols, stride) = (72, 160, 256);
    for (i, v) in b.idx[..rows].iter_mut().enumerate() {
        *v = ((i * 37) % 512) as u32;
    }
    let (w, idx, c, y) = (&b.w[..512 * stride], &b.idx[..rows], &b.c[..rows], &mut b.y1[..cols]);
    per_mac(clock, rows * cols, 16, || K::gemv_t_rows_strided_i8(w, stride, cols, idx, c, y))
}

/// Instructions per MAC of every int8 kernel, scalar, DSP and (with `mve`) MVE, in one run;
/// returns the number of missed targets.
fn measure(b: &mut Buffers<'_>, clock: &Clock) -> u32 {
    let mut missed = 0;
    let rows = 64;
    let names = ["gemv_i8", "gemv_rows_i8", "gemv_t_rows_i8", "dot_i8", "gemv_t_rows_strided_i8 (stride 2 cols)"];
    for (n, &cols) in [256usize, 512, 1024].iter().enumerate() {
        let wl = 2 * rows * cols;
        for (v, p) in b.w[..wl].iter_mut().zip(spark_hal::testing::pattern_i8(wl, 70 + n as u32)) {
            *v = p;
        }
        for (v, p) in b.x[..cols].iter_mut().zip(spark_hal::testing::pattern_i8(cols, 80 + n as u32)) {
            *v = p;
        }
        for (v, p) in b.c[..rows].iter_mut().zip(spark_hal::testing::pattern_i8(rows, 90 + n as u32)) {
            *v = p;
        }
        for (i, v) in b.idx[..rows].iter_mut().enumerate() {
            *v = ((i * 37) % rows) as u32;
        }
        let (s, _) = kernel_counts::<Scalar>(b, clock, rows, cols);
        let (d, d_calls) = kernel_counts::<Dsp>(b, clock, rows, cols);
        #[cfg(feature = "mve")]
        let (v, _) = kernel_counts::<Mve>(b, clock, rows, cols);
        for k in 0..5 {
            let shape = if k == 3 { 1 } else { rows };
            out!(
                "{} {} {}x{}: scalar {}, dsp {} ({}x fewer)",
                BOARD,
                names[k],
                shape,
                cols,
                milli(s[k]),
                milli(d[k]),
                Ratio(s[k], d[k])
            );
            #[cfg(feature = "mve")]
            out!(
                ", mve {} ({}x fewer than scalar, {}x fewer than dsp)",
                milli(v[k]),
                Ratio(s[k], v[k]),
                Ratio(d[k], v[k])
            );
            out!(" {}/MAC", UNIT);
            if k == 2 || k == 4 {
                let t = d_calls[k / 2 - 1];
                out!("; dsp {}.{} {} per call", t / 10, t % 10, UNIT);
            }
            outln!();
        }
        if d[0] > 1500 {
            outln!("FAIL dsp gemv_i8 {}x{}: {} {}/MAC, target <= 1.5", rows, cols, milli(d[0]), UNIT);
            missed += 1;
        }
        // The sparse output product (plain and strided, one kernel): 1.59 - 1.61 measured,
        // 1.585 asymptotically (`arm::dsp`'s `gemv_t_rows`); a guard against regressions.
        for k in [2, 4] {
            if d[k] > 1700 {
                outln!("FAIL dsp {} {}x{}: {} {}/MAC, bound <= 1.7", names[k], rows, cols, milli(d[k]), UNIT);
                missed += 1;
            }
        }
        #[cfg(feature = "mve")]
        for (k, target) in [(0, 400), (1, 450)] {
            if v[k] > target {
                outln!(
                    "FAIL mve {} {}x{}: {} {}/MAC, target <= {}",
                    names[k],
                    rows,
                    cols,
                    milli(v[k]),
                    UNIT,
                    milli(target)
                );
                missed += 1;
            }
        }
    }
    let (s, d) = (demo_v_pass::<Scalar>(b, clock), demo_v_pass::<Dsp>(b, clock));
    out!(
        "{} gemv_t_rows_strided_i8 72x160 (stride 256, the demo's FFN output product): scalar {}, dsp {} ({}x fewer)",
        BOARD,
        milli(s),
        milli(d),
        Ratio(s, d)
    );
    #[cfg(feature = "mve")]
    {
        let v = demo_v_pass::<Mve>(b, clock);
        out!(", mve {} ({}x fewer than scalar, {}x fewer than dsp)", milli(v), Ratio(s, v), Ratio(d, v));
    }
    outln!(" {}/MAC", UNIT);
    missed
}

/// Instructions per element (thousandths) of the float kernels on 1024 values:
/// `quantize_sym_i8`, `dequantize_f32` and `above_masks_f32` per backend (`Dsp` runs the
/// scalar code for all three), and the soft-cap and softmax-numerator loops, which every
/// backend here runs as the shared scalar code (`spark_hal::math`).
fn measure_float(b: &mut Buffers<'_>, clock: &Clock) {
    let n = 1024;
    let fill = |f: &mut [f32]| {
        for (v, p) in f.iter_mut().zip(spark_hal::testing::pattern_i8(n, 60)) {
            *v = p as f32 * 0.0625;
        }
    };
    let (f, q) = (&mut b.f[..n], &mut b.q0[..n]);
    fill(f);
    let s = per_mac(clock, n, 8, || {
        core::hint::black_box(Scalar::quantize_sym_i8(f, q));
    });
    let d = per_mac(clock, n, 8, || {
        core::hint::black_box(Dsp::quantize_sym_i8(f, q));
    });
    out!("{} quantize_sym_i8 {}: scalar {}, dsp {}", BOARD, n, milli(s), milli(d));
    #[cfg(feature = "mve")]
    {
        let v = per_mac(clock, n, 8, || {
            core::hint::black_box(Mve::quantize_sym_i8(f, q));
        });
        out!(", mve {} ({}x fewer than scalar)", milli(v), Ratio(s, v));
    }
    outln!(" {}/element", UNIT);
    // dequantize_f32: the kernel outputs of `measure` against row scales 2^-10 .. 2^-3.
    let mut scale_bytes = [0u8; 4 * 1024];
    for (j, s) in scale_bytes.chunks_exact_mut(4).enumerate() {
        s.copy_from_slice(&(((j % 8) + 1) as f32 / 1024.0).to_le_bytes());
    }
    let acc = &b.y1[..n];
    let s = per_mac(clock, n, 8, || Scalar::dequantize_f32(acc, 0.01, &scale_bytes, core::hint::black_box(&mut *f)));
    #[cfg(feature = "mve")]
    let v = per_mac(clock, n, 8, || Mve::dequantize_f32(acc, 0.01, &scale_bytes, core::hint::black_box(&mut *f)));
    out!("{} dequantize_f32 {}: scalar {}", BOARD, n, milli(s));
    #[cfg(feature = "mve")]
    out!(", mve {} ({}x fewer)", milli(v), Ratio(s, v));
    outln!(" {}/element", UNIT);
    fill(f);
    let mut masks = [0u32; 32];
    let s = per_mac(clock, n, 8, || Scalar::above_masks_f32(f, 0.5, core::hint::black_box(&mut masks)));
    #[cfg(feature = "mve")]
    let v = per_mac(clock, n, 8, || Mve::above_masks_f32(f, 0.5, core::hint::black_box(&mut masks)));
    out!("{} above_masks_f32 {}: scalar {}", BOARD, n, milli(s));
    #[cfg(feature = "mve")]
    out!(", mve {} ({}x fewer)", milli(v), Ratio(s, v));
    outln!(" {}/element", UNIT);
    let c = per_mac(clock, n, 1, || {
        fill(f);
        Scalar::softcap_f32(f, 30.0);
    });
    let e = per_mac(clock, n, 1, || {
        fill(f);
        Scalar::exp_shifted_f32(f, 8.0);
    });
    let r = per_mac(clock, n, 1, || fill(f));
    outln!(
        "{} shared scalar float loops {}: softcap_f32 {}, exp_shifted_f32 {} {}/element (each including a refill of {})",
        BOARD,
        n,
        milli(c),
        milli(e),
        UNIT,
        milli(r)
    );
}

#[cortex_m_rt::entry]
fn main() -> ! {
    rt::paint_stack();
    // SAFETY: `main` runs once, before any other code touches these statics, and the
    // references are the only ones ever created (no interrupt handler uses them).
    let mut b = unsafe {
        Buffers {
            w: &mut *addr_of_mut!(W),
            x: &mut *addr_of_mut!(X),
            c: &mut *addr_of_mut!(C),
            idx: &mut *addr_of_mut!(IDX),
            y0: &mut *addr_of_mut!(Y0),
            y1: &mut *addr_of_mut!(Y1),
            f: &mut *addr_of_mut!(F),
            q0: &mut *addr_of_mut!(Q0),
            q1: &mut *addr_of_mut!(Q1),
        }
    };
    let Some(mut p) = cortex_m::Peripherals::take() else { fail("peripherals", &"already taken") };
    let clock = rt::start(&mut p);
    #[cfg(not(feature = "mve"))]
    let backends = "dsp";
    #[cfg(feature = "mve")]
    let backends = "mve and dsp";
    outln!(
        "{}: board {} ({}), backends {} vs scalar (Native = {})",
        PROG,
        BOARD,
        CORE,
        backends,
        native_backend_name()
    );
    clock.report(IPT_MILLI);
    let t0 = clock.now();
    #[allow(unused_mut)]
    let mut failed = correctness::<Dsp>(&mut b);
    #[cfg(feature = "mve")]
    {
        failed += correctness::<Mve>(&mut b);
    }
    outln!("cases checked in {} {}", clock.count(t0, clock.now()), UNIT);
    let missed = measure(&mut b, &clock);
    measure_float(&mut b, &clock);
    outln!("stack high-water: {} bytes (measured by stack painting)", rt::stack_high_water());
    outln!("{}: {} failed", PROG, failed + missed);
    rt::exit(failed + missed == 0)
}
