//! Runtime support shared by the firmware crates (included with `#[path]`): the executed-
//! instruction clock (SysTick under QEMU `-icount shift=0`, SPEC section 10), the
//! semihosting exit, the panic and HardFault handlers (both exit with status 1 through
//! semihosting, never hang), and stack painting for the measured stack high-water mark.
//!
//! Needs `cortex-m`, `cortex-m-rt` and `cortex-m-semihosting`. Include it with
//! `#[macro_use]`: it defines `out!` and `outln!` (print and print a line, over
//! semihosting here, over defmt in `probe.rs`, the real boards' counterpart with the same
//! interface).

/// Prints (semihosting).
#[allow(unused_macros)]
macro_rules! out {
    ($($t:tt)*) => { cortex_m_semihosting::hprint!($($t)*) };
}

/// Prints a line (semihosting).
#[allow(unused_macros)]
macro_rules! outln {
    ($($t:tt)*) => { cortex_m_semihosting::hprintln!($($t)*) };
}

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};

/// What [`Clock::count`] counts.
pub const UNIT: &str = "instructions";

/// Starts the board's clock (nothing else to set up under QEMU).
pub fn start(p: &mut cortex_m::Peripherals) -> Clock {
    Clock::start(&mut p.SYST)
}

/// SysTick reload: the full 24-bit range, one wrap per 2^24 ticks.
const RELOAD: u32 = 0x00FF_FFFF;
/// SysTick wraps since [`Clock::start`].
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    // Load + store, not `fetch_add` (ARMv6-M has no atomic read-modify-write): this
    // handler is the only writer, and readers read with interrupts off.
    WRAPS.store(WRAPS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Executed-instruction clock (valid under QEMU `-icount shift=0` only: on silicon SysTick
/// counts core cycles).
pub struct Clock {
    /// Instructions per SysTick tick, in thousandths (calibrated).
    pub ipt_milli: u64,
}

impl Clock {
    /// Starts SysTick on the processor clock and calibrates it with a loop of known length.
    pub fn start(syst: &mut SYST) -> Clock {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // The cleared counter reads 0 until its first tick loads RELOAD (that load is no
        // wrap and raises no interrupt): start counting from there.
        while SYST::get_current() == 0 {}
        // A loop of exactly 2 * N instructions (`subs` + `bne`).
        const N: u32 = 2_000_000;
        let t0 = Self::ticks();
        spin(N);
        let t = (Self::ticks() - t0).max(1);
        Clock { ipt_milli: 2 * N as u64 * 1000 / t }
    }

    /// Ticks since start. The wrap count and the counter are read with interrupts off; a
    /// wrap whose interrupt is still pending is counted when the counter already restarted
    /// (it reads in the upper half then, since only a few instructions separate the reads).
    fn ticks() -> u64 {
        cortex_m::interrupt::free(|_| {
            let mut w = WRAPS.load(Ordering::Relaxed) as u64;
            let cur = SYST::get_current();
            if SCB::is_pendst_pending() && cur > RELOAD / 2 {
                w += 1;
            }
            w * (RELOAD as u64 + 1) + (RELOAD - cur) as u64
        })
    }

    /// A timestamp in ticks.
    pub fn now(&self) -> u64 {
        Self::ticks()
    }

    /// Prints how the clock counts.
    pub fn report(&self, nominal_milli: u64) {
        hprintln!(
            "icount: {} instructions per SysTick tick (calibrated; nominal {})",
            Ratio(self.ipt_milli, 1000),
            Ratio(nominal_milli, 1000)
        );
    }

    /// Executed instructions between two timestamps (0 if they are out of order).
    pub fn count(&self, t0: u64, t1: u64) -> u64 {
        t1.saturating_sub(t0) * self.ipt_milli / 1000
    }
}

/// Counts `n` down to zero: `subs` + `bne` per iteration, `2 * n` instructions.
fn spin(n: u32) {
    // SAFETY: a register-only countdown loop; touches no memory, only the flags.
    unsafe {
        core::arch::asm!("2:", "subs {n}, {n}, #1", "bne 2b", n = inout(reg) n => _, options(nomem, nostack));
    }
}

/// `a / b` printed with three decimals.
pub struct Ratio(pub u64, pub u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = (self.0 * 1000).checked_div(self.1).unwrap_or(0);
        write!(f, "{}.{:03}", m / 1000, m % 1000)
    }
}

/// Exits QEMU through semihosting with status 0 (`ok`) or 1.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Prints `<prog>: <what>: <error>` and exits with status 1.
pub fn fail(what: &str, e: &dyn core::fmt::Display) -> ! {
    hprintln!("{}: {}: {}", super::PROG, what, e);
    exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("{}: PANIC {}", super::PROG, info);
    exit(false)
}

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    hprintln!("{}: HardFault at pc {:#010x}", super::PROG, ef.pc());
    exit(false)
}

#[path = "stack.rs"]
mod stack;
pub use stack::{paint_stack, stack_high_water};
