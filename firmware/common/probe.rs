//! Runtime support for the real boards (included with `#[macro_use] #[path]` in place of
//! `rt.rs`, with the same interface): output over defmt (`defmt-rtt`, read by
//! `probe-rs run`), panics through `panic-probe`, the DWT cycle counter as the clock
//! (cycles, not instructions), and each board's start-up:
//!
//! - `pico2` (RP2350): the IMAGE_DEF boot block the boot ROM looks for in the first 4 KiB
//!   (from rp235x-hal, placed by `boards/pico2/memory.x`), and the clocks at the board's
//!   normal 150 MHz (12 MHz crystal, PLL_SYS) through rp235x-hal;
//! - `nucleo-h743zi` (STM32H743): the Cortex-M7 I- and D-caches on (they are off after
//!   reset); the core runs from the 64 MHz HSI oscillator it resets to.
//!
//! Text goes out line by line: `out!` / `outln!` format into a line buffer with
//! `core::fmt`, and each complete line is sent as one `defmt::println!("{=str}")`, so the
//! JSON line arrives as one line, the same text as under QEMU.
//!
//! Needs `cortex-m`, `cortex-m-rt`, `defmt`, `defmt-rtt`, `panic-probe` (and `rp235x-hal`
//! on the Pico 2).

use core::cell::{Cell, RefCell};
use core::fmt::{self, Write as _};

use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::DWT;
use defmt_rtt as _;
use panic_probe as _;

/// Prints (defmt, line-buffered).
#[allow(unused_macros)]
macro_rules! out {
    ($($t:tt)*) => { $crate::rt::write_fmt(format_args!($($t)*)) };
}

/// Prints a line (defmt).
#[allow(unused_macros)]
macro_rules! outln {
    () => { $crate::rt::write_fmt(format_args!("\n")) };
    ($($t:tt)*) => { $crate::rt::write_fmt(format_args!("{}\n", format_args!($($t)*))) };
}

/// What [`Clock::count`] counts.
pub const UNIT: &str = "cycles";

/// Longest line sent as one defmt message (longer ones go out in pieces).
const LINE: usize = 2048;

struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl Line {
    fn flush(&mut self) {
        let bytes = &self.buf[..self.len];
        // A piece cut inside a UTF-8 sequence (only when a line overflows) is sent up to
        // its last whole character.
        let s = match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        };
        defmt::println!("{=str}", s);
        self.len = 0;
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                self.flush();
                continue;
            }
            if self.len == LINE {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

static OUT: Mutex<RefCell<Line>> = Mutex::new(RefCell::new(Line { buf: [0; LINE], len: 0 }));

/// Formats into the line buffer (used by `out!` / `outln!`).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    cortex_m::interrupt::free(|cs| {
        // Line::write_str never fails.
        let _ = OUT.borrow(cs).borrow_mut().write_fmt(args);
    });
}

/// The DWT cycle counter, extended to 64 bits (it wraps every 2^32 cycles: 28 s at
/// 150 MHz, 67 s at 64 MHz; the firmware reads it at least once per token step).
pub struct Clock {
    hz: u32,
    last: Cell<u32>,
    high: Cell<u64>,
}

/// Sets the board up (clocks, caches) and starts the cycle counter.
pub fn start(p: &mut cortex_m::Peripherals) -> Clock {
    let hz = board::init(p);
    p.DCB.enable_trace();
    #[cfg(feature = "nucleo-h743zi")]
    DWT::unlock();
    if !DWT::has_cycle_counter() {
        fail("clock", &"this core has no DWT cycle counter");
    }
    p.DWT.set_cycle_count(0);
    p.DWT.enable_cycle_counter();
    Clock { hz, last: Cell::new(0), high: Cell::new(0) }
}

impl Clock {
    /// Prints how the clock counts.
    pub fn report(&self, _nominal_milli: u64) {
        outln!("clock: DWT CYCCNT at {} Hz (core cycles, not instructions)", self.hz);
    }

    /// A timestamp in cycles.
    pub fn now(&self) -> u64 {
        let c = DWT::cycle_count();
        if c < self.last.get() {
            self.high.set(self.high.get() + (1 << 32));
        }
        self.last.set(c);
        self.high.get() + c as u64
    }

    /// Cycles between two timestamps (0 if they are out of order).
    pub fn count(&self, t0: u64, t1: u64) -> u64 {
        t1.saturating_sub(t0)
    }
}

/// `a / b` printed with three decimals (`compare-dense`).
#[allow(dead_code)]
pub struct Ratio(pub u64, pub u64);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = (self.0 * 1000).checked_div(self.1).unwrap_or(0);
        write!(f, "{}.{:03}", m / 1000, m % 1000)
    }
}

/// Ends the run: on success a breakpoint, where `probe-rs run` stops and exits with
/// status 0; on failure a panic, which panic-probe reports over defmt and turns into a
/// HardFault (`udf`), so `probe-rs run` exits with an error.
pub fn exit(ok: bool) -> ! {
    if !ok {
        defmt::panic!("{=str}: failed", super::PROG);
    }
    loop {
        cortex_m::asm::bkpt();
    }
}

/// Prints `<prog>: <what>: <error>` and fails the run.
pub fn fail(what: &str, e: &dyn fmt::Display) -> ! {
    outln!("{}: {}: {}", super::PROG, what, e);
    exit(false)
}

#[path = "stack.rs"]
mod stack;
pub use stack::{paint_stack, stack_high_water};

#[cfg(feature = "pico2")]
mod board {
    use rp235x_hal as hal;

    /// The RP2350 boot ROM's IMAGE_DEF: a secure Arm executable (`boards/pico2/memory.x`
    /// places `.start_block` right after the vector table, in the first 4 KiB).
    #[link_section = ".start_block"]
    #[used]
    pub static IMAGE_DEF: hal::block::ImageDef = hal::block::ImageDef::secure_exe();

    /// The Pico 2's crystal.
    const XTAL_HZ: u32 = 12_000_000;

    /// Clocks at the board's normal speed: XOSC 12 MHz, PLL_SYS to 150 MHz.
    pub fn init(_p: &mut cortex_m::Peripherals) -> u32 {
        use hal::Clock as _;
        let Some(mut pac) = hal::pac::Peripherals::take() else { super::fail("RP2350 peripherals", &"already taken") };
        let mut watchdog = hal::watchdog::Watchdog::new(pac.WATCHDOG);
        match hal::clocks::init_clocks_and_plls(
            XTAL_HZ,
            pac.XOSC,
            pac.CLOCKS,
            pac.PLL_SYS,
            pac.PLL_USB,
            &mut pac.RESETS,
            &mut watchdog,
        ) {
            Ok(clocks) => clocks.system_clock.freq().to_Hz(),
            Err(_) => super::fail("clocks", &"the crystal oscillator or a PLL did not start"),
        }
    }
}

#[cfg(feature = "nucleo-h743zi")]
mod board {
    /// The STM32H7's reset clock: the 64 MHz HSI oscillator.
    const HSI_HZ: u32 = 64_000_000;

    /// Caches on (both are off after reset); the clock stays at the reset HSI.
    pub fn init(p: &mut cortex_m::Peripherals) -> u32 {
        p.SCB.enable_icache();
        p.SCB.enable_dcache(&mut p.CPUID);
        HSI_HZ
    }
}
