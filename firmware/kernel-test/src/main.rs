//! Cortex-M kernel test for QEMU: the `spark-hal` DSP backend ([`Dsp`]) against the scalar
//! oracle, then executed-instruction counts per MAC for `gemv_i8`.
//!
//! Proptest does not run on a microcontroller, so this binary sweeps deterministic cases:
//! the edge lengths of the host suite (0..4, 7, 8, 15..17, 31..33, 13*16, ...), lengths
//! around the 256-column expansion chunk, rows of all -127 / all -128 / mixed extremes,
//! a few hundred pseudo-random shapes (xorshift), and maximum-length rows
//! (`MAX_ACC_TERMS` columns, and `MAX_ACC_TERMS` rows for `gemv_t_rows`). Every kernel is
//! compared bit-exact with [`Scalar`]. It prints `kernel-test: N passed, M failed` and exits
//! through semihosting with status 0 only when nothing failed; a panic or HardFault exits
//! with status 1 (a hang would otherwise only end at the caller's timeout).
//!
//! Instruction counts: run under `-icount shift=0` (one virtual ns per instruction), SysTick
//! on the processor clock (CLKSOURCE = 1) ticks once per 40 instructions on mps2-an386; the
//! instructions per tick are calibrated with a loop of known length, so the board's clock
//! does not matter. These are executed-instruction counts, not cycles. The issue target,
//! `gemv_i8` at most 1.5 instructions per MAC for rows of 256-1024 columns, is enforced.
//!
//! Run: `cargo run --release` here (thumbv7em / mps2-an386 by default) or
//! `cargo run --release --target thumbv8m.main-none-eabihf` (mps2-an505, Cortex-M33); the
//! runners are in `.cargo/config.toml`. `test.sh` runs both under `timeout`.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::asm;
use core::ptr::addr_of_mut;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use spark_hal::arm::dsp::Dsp;
use spark_hal::{native_backend_name, Kernels, Scalar, MAX_ACC_TERMS};

const W_LEN: usize = 2 * MAX_ACC_TERMS + 64;
const X_LEN: usize = MAX_ACC_TERMS + 64;
const Y_LEN: usize = MAX_ACC_TERMS;

static mut W: [i8; W_LEN] = [0; W_LEN];
static mut X: [i8; X_LEN] = [0; X_LEN];
static mut C: [i8; MAX_ACC_TERMS] = [0; MAX_ACC_TERMS];
static mut IDX: [u32; MAX_ACC_TERMS] = [0; MAX_ACC_TERMS];
static mut Y0: [i32; Y_LEN] = [0; Y_LEN];
static mut Y1: [i32; Y_LEN] = [0; Y_LEN];

/// The test's working buffers.
struct Bufs {
    w: &'static mut [i8],
    x: &'static mut [i8],
    c: &'static mut [i8],
    idx: &'static mut [u32],
    y0: &'static mut [i32],
    y1: &'static mut [i32],
}

/// xorshift32: deterministic inputs.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.0 = s;
        s
    }
    fn i8(&mut self) -> i8 {
        (self.next() >> 24) as u8 as i8
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() as usize) % n
        }
    }
    fn fill(&mut self, s: &mut [i8]) {
        for v in s {
            *v = self.i8();
        }
    }
}

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, ok: bool, what: &str, a: usize, b: usize) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            if self.failed <= 20 {
                hprintln!("FAIL {} ({}, {})", what, a, b);
            }
        }
    }
}

/// All kernels of `Dsp` vs `Scalar` on `w[..rows*cols]`, `x[..cols]`, the row list
/// `idx[..m]` with coefficients `c[..m]`, and an initial `y` for `gemv_t_rows`.
fn check_all(t: &mut Tally, b: &mut Bufs, rows: usize, cols: usize, m: usize, init: i32) {
    let w = &b.w[..rows * cols];
    let x = &b.x[..cols];
    if rows > 0 {
        let r = &w[..cols];
        t.check(Dsp::dot_i8(r, x) == Scalar::dot_i8(r, x), "dot_i8", cols, 0);
    }
    let (y0, y1) = (&mut b.y0[..rows], &mut b.y1[..rows]);
    y1.fill(0x5555);
    Scalar::gemv_i8(w, cols, x, y0);
    Dsp::gemv_i8(w, cols, x, y1);
    t.check(y0 == y1, "gemv_i8", rows, cols);
    if rows > 0 {
        let idx = &b.idx[..m];
        let (y0, y1) = (&mut b.y0[..m], &mut b.y1[..m]);
        y1.fill(-7);
        Scalar::gemv_rows_i8(w, cols, idx, x, y0);
        Dsp::gemv_rows_i8(w, cols, idx, x, y1);
        t.check(y0 == y1, "gemv_rows_i8", m, cols);
        let c = &b.c[..m];
        let (y0, y1) = (&mut b.y0[..cols], &mut b.y1[..cols]);
        y0.fill(init);
        y1.fill(init);
        Scalar::gemv_t_rows_i8(w, cols, idx, c, y0);
        Dsp::gemv_t_rows_i8(w, cols, idx, c, y1);
        t.check(y0 == y1, "gemv_t_rows_i8", m, cols);
    }
}

/// Random rows, activations, row list (indices `< rows`) and coefficients.
fn randomize(rng: &mut Rng, b: &mut Bufs, rows: usize, cols: usize, m: usize) {
    rng.fill(&mut b.w[..rows * cols]);
    rng.fill(&mut b.x[..cols]);
    rng.fill(&mut b.c[..m]);
    for i in 0..m {
        b.idx[i] = rng.below(rows) as u32;
    }
}

const EDGE: &[usize] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    13 * 16,
    13 * 16 + 5,
    255,
    256,
    257,
    258,
    259,
    511,
    512,
    513,
    700,
];

fn correctness(t: &mut Tally, b: &mut Bufs) {
    let mut rng = Rng(0x2545_f491);
    // Edge lengths x small row counts (1-9 rows: the 4-row passes, their remainders, and
    // the under-4-rows direct path).
    for &cols in EDGE {
        for &rows in &[1usize, 2, 3, 4, 5, 8, 9] {
            for &m in &[0usize, 1, 2, 3, 4, 5, 7, 8, 9] {
                randomize(&mut rng, b, rows, cols, m);
                check_all(t, b, rows, cols, m, rng.i8() as i32 * 1000);
            }
        }
    }
    // Extremes: rows and activations of all -127, all -128, and -128 against 127.
    for &cols in EDGE {
        for &(vw, vx) in &[(-127i8, -127i8), (-128, -128), (-128, 127), (127, 127)] {
            let rows = 5;
            b.w[..rows * cols].fill(vw);
            b.x[..cols].fill(vx);
            b.c[..9].fill(vx);
            for i in 0..9 {
                b.idx[i] = (i % rows) as u32;
            }
            check_all(t, b, rows, cols, 9, 0);
        }
    }
    // Random shapes.
    for _ in 0..400 {
        let rows = 1 + rng.below(20);
        let cols = rng.below(800);
        let m = rng.below(25);
        randomize(&mut rng, b, rows, cols, m);
        let init = (rng.next() >> 12) as i32 - (1 << 19);
        check_all(t, b, rows, cols, m, init);
    }
    // Maximum-length rows: MAX_ACC_TERMS columns of -128 (the largest exact sum) and a
    // random row; MAX_ACC_TERMS rows of -128 with -128 coefficients for gemv_t_rows.
    let n = MAX_ACC_TERMS;
    b.w[..n].fill(-128);
    rng.fill(&mut b.w[n..2 * n]);
    b.x[..n].fill(-128);
    t.check(Dsp::dot_i8(&b.w[..n], &b.x[..n]) == n as i32 * 16384, "dot_i8 max", n, 0);
    b.idx[0] = 1;
    b.idx[1] = 0;
    check_all(t, b, 2, n, 2, 0);
    let cols = 8;
    b.w[..cols].fill(-128);
    b.idx[..n].fill(0);
    b.c[..n].fill(-128);
    let (y0, y1) = (&mut b.y0[..cols], &mut b.y1[..cols]);
    y0.fill(0);
    y1.fill(0);
    Scalar::gemv_t_rows_i8(&b.w[..cols], cols, &b.idx[..n], &b.c[..n], y0);
    Dsp::gemv_t_rows_i8(&b.w[..cols], cols, &b.idx[..n], &b.c[..n], y1);
    t.check(y0 == y1 && y1[0] == n as i32 * 16384, "gemv_t_rows_i8 max rows", n, cols);
    // Quantization (the scalar oracle's on this backend).
    let xf = [0.5f32, -1.5, 2.5, 127.0, -3.25, f32::NAN, 1e-3];
    let (mut q0, mut q1) = ([0i8; 7], [1i8; 7]);
    let (s0, s1) = (Scalar::quantize_sym_i8(&xf, &mut q0), Dsp::quantize_sym_i8(&xf, &mut q1));
    t.check(s0.to_bits() == s1.to_bits() && q0 == q1, "quantize_sym_i8", 7, 0);
}

/// SysTick ticks `f` takes (the counter is 24 bits, reload 0xFF_FFFF: intervals under
/// 2^24 ticks are exact modulo the wrap).
fn ticks(f: impl FnOnce()) -> u32 {
    let t0 = SYST::get_current();
    f();
    let t1 = SYST::get_current();
    t0.wrapping_sub(t1) & 0x00FF_FFFF
}

/// A loop of exactly `2 * n` instructions (`subs` + `bne` per iteration).
fn spin(n: u32) {
    // SAFETY: a register-only countdown loop; touches no memory and only the flags.
    unsafe {
        asm!("2:", "subs {n}, {n}, #1", "bne 2b", n = inout(reg) n => _, options(nomem, nostack));
    }
}

/// Instructions per tick, in thousandths, from a loop of known length.
fn calibrate() -> u64 {
    const N: u32 = 1_000_000;
    let t = ticks(|| spin(N));
    2 * N as u64 * 1000 / t as u64
}

/// Executed instructions per MAC (thousandths) of `f` doing `macs` MACs `reps` times.
fn per_mac(ipt_milli: u64, macs: usize, reps: u32, mut f: impl FnMut()) -> u64 {
    let t = ticks(|| {
        for _ in 0..reps {
            f();
        }
    });
    t as u64 * ipt_milli / (macs as u64 * reps as u64)
}

struct Milli(u64);

impl core::fmt::Display for Milli {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

fn measure(t: &mut Tally, b: &mut Bufs, syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00FF_FFFF);
    syst.clear_current();
    syst.enable_counter();
    let ipt = calibrate();
    hprintln!("icount: {} instructions per SysTick tick (calibrated, -icount shift=0)", Milli(ipt));
    let mut rng = Rng(7);
    let rows = 64;
    for &cols in &[256usize, 512, 1024] {
        rng.fill(&mut b.w[..rows * cols]);
        rng.fill(&mut b.x[..cols]);
        let (w, x, y) = (&b.w[..rows * cols], &b.x[..cols], &mut b.y0[..rows]);
        let macs = rows * cols;
        let s = per_mac(ipt, macs, 4, || Scalar::gemv_i8(w, cols, x, y));
        let d = per_mac(ipt, macs, 4, || Dsp::gemv_i8(w, cols, x, y));
        hprintln!(
            "icount gemv_i8 {}x{}: scalar {} instr/MAC, dsp {} instr/MAC ({}x fewer)",
            rows,
            cols,
            Milli(s),
            Milli(d),
            Milli(s * 1000 / d)
        );
        t.check(d <= 1500, "gemv_i8 target <= 1.5 instructions/MAC", cols, d as usize);
        for i in 0..rows {
            b.idx[i] = ((i * 37) % rows) as u32;
        }
        rng.fill(&mut b.c[..rows]);
        let (idx, c) = (&b.idx[..rows], &b.c[..rows]);
        let s = per_mac(ipt, macs, 4, || Scalar::gemv_rows_i8(w, cols, idx, x, y));
        let d = per_mac(ipt, macs, 4, || Dsp::gemv_rows_i8(w, cols, idx, x, y));
        hprintln!("icount gemv_rows_i8 {}x{}: scalar {}, dsp {} instr/MAC", rows, cols, Milli(s), Milli(d));
        let yt = &mut b.y1[..cols];
        let s = per_mac(ipt, macs, 4, || Scalar::gemv_t_rows_i8(w, cols, idx, c, yt));
        let d = per_mac(ipt, macs, 4, || Dsp::gemv_t_rows_i8(w, cols, idx, c, yt));
        hprintln!("icount gemv_t_rows_i8 {}x{}: scalar {}, dsp {} instr/MAC", rows, cols, Milli(s), Milli(d));
        let s = per_mac(ipt, cols, 16, || {
            core::hint::black_box(Scalar::dot_i8(&w[..cols], x));
        });
        let d = per_mac(ipt, cols, 16, || {
            core::hint::black_box(Dsp::dot_i8(&w[..cols], x));
        });
        hprintln!("icount dot_i8 {}: scalar {}, dsp {} instr/MAC", cols, Milli(s), Milli(d));
    }
}

#[entry]
fn main() -> ! {
    // SAFETY: `main` runs once, before any other code touches these statics, and the
    // references are the only ones ever created (no interrupts use them).
    let mut b = unsafe {
        Bufs {
            w: &mut *addr_of_mut!(W),
            x: &mut *addr_of_mut!(X),
            c: &mut *addr_of_mut!(C),
            idx: &mut *addr_of_mut!(IDX),
            y0: &mut *addr_of_mut!(Y0),
            y1: &mut *addr_of_mut!(Y1),
        }
    };
    let mut p = cortex_m::Peripherals::take().unwrap();
    hprintln!("kernel-test: backend dsp vs scalar (Native = {})", native_backend_name());
    let mut t = Tally { passed: 0, failed: 0 };
    correctness(&mut t, &mut b);
    measure(&mut t, &mut b, &mut p.SYST);
    hprintln!("kernel-test: {} passed, {} failed", t.passed, t.failed);
    debug::exit(if t.failed == 0 { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("kernel-test: PANIC {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    hprintln!("kernel-test: HardFault at pc {:#010x}", ef.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
