//! The boards the Spark firmware is built for, in one table: memory sizes, the QEMU
//! machine and CPU that run the QEMU boards, the instruction clock (SysTick ticks per
//! executed instruction under `-icount shift=0`, SPEC section 10), and the budget logic
//! that decides whether a model fits: used by `spark-sim plan` and by the firmware's
//! build script (`firmware/app/build.rs`), so both give the same numbers and wording.
//!
//! Each board's linker map is `firmware/boards/<name>/memory.x` (see [`Board::memory_x`]).
//! No dependencies, std only (host tools and build scripts).

use std::fmt::Write as _;

/// One KiB.
pub const KIB: u64 = 1024;
/// One MiB.
pub const MIB: u64 = 1024 * KIB;

/// Code size estimate for Cortex-M firmware: spark-core (session, tokenizer, sampler,
/// top-k, loader), the DSP kernels, libm, postcard and the cortex-m-rt runtime, release
/// build with LTO. An estimate, not a measurement (the firmware's measured sizes are in
/// `firmware/README.md`).
pub const CODE_M: u64 = 128 * KIB;
/// Stack estimate for a session on Cortex-M: the `Session` value (~3 KiB: 48 layer
/// statistics records of 56 bytes plus dimensions), the call frames of one decode step
/// (a few hundred bytes each, no recursion), the tokenizer's 256-byte id filter, and the
/// application's own frames, with a 2x margin.
pub const STACK_M: u64 = 16 * KIB;

/// How a board runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Under `qemu-system-arm -machine <machine> -cpu <cpu>`; SysTick counts executed
    /// instructions, one tick per `instructions_per_tick_milli / 1000` instructions.
    Qemu {
        /// `-machine`.
        machine: &'static str,
        /// `-cpu`.
        cpu: &'static str,
        /// Nominal executed instructions per SysTick tick, in thousandths.
        instructions_per_tick_milli: u32,
    },
    /// On silicon, flashed with `probe-rs run --chip <chip>`; DWT CYCCNT counts cycles.
    Probe {
        /// probe-rs chip name.
        chip: &'static str,
    },
}

/// A board: its memory and how it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// Board name (the firmware's cargo feature and `firmware/boards/<name>/`).
    pub name: &'static str,
    /// The core.
    pub core: &'static str,
    /// The Rust target the firmware is built for on this board.
    pub target: &'static str,
    /// Where the figures come from, and what holds what.
    pub source: &'static str,
    /// RAM for the arena, the statics and the stack.
    pub ram: u64,
    /// Read-only memory for the model (and the code, unless `code_region` is set).
    pub flash: u64,
    /// A separate code region (mps3-an547's ITCM), if any.
    pub code_region: Option<u64>,
    /// Estimated code size.
    pub code: u64,
    /// Estimated stack.
    pub stack: u64,
    /// How it runs.
    pub runs: Runs,
}

const fn qemu(machine: &'static str, cpu: &'static str, instructions_per_tick_milli: u32) -> Runs {
    Runs::Qemu { machine, cpu, instructions_per_tick_milli }
}

/// Every board, QEMU boards first.
pub const BOARDS: &[Board] = &[
    Board {
        name: "mps2-an385",
        core: "Cortex-M3 (running the ARMv6-M build: the M0/M0+ path, scalar kernels)",
        target: "thumbv6m-none-eabi",
        source: "QEMU mps2-an385: 4 MiB SSRAM1 @0x0 (code + model), 4 MiB SSRAM2/3 @0x20000000 (RAM)",
        ram: 4 * MIB,
        flash: 4 * MIB,
        code_region: None,
        code: CODE_M,
        stack: STACK_M,
        runs: qemu("mps2-an385", "cortex-m3", 40_000),
    },
    Board {
        name: "mps2-an386",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        source: "QEMU mps2-an386: 4 MiB SSRAM1 @0x0 (code + model), 4 MiB SSRAM2/3 @0x20000000 (RAM), as firmware/boards/mps2-an386/memory.x",
        ram: 4 * MIB,
        flash: 4 * MIB,
        code_region: None,
        code: CODE_M,
        stack: STACK_M,
        runs: qemu("mps2-an386", "cortex-m4", 40_000),
    },
    Board {
        name: "mps2-an500",
        core: "Cortex-M7",
        target: "thumbv7em-none-eabihf",
        source: "QEMU mps2-an500: 4 MiB SSRAM1 @0x0 (code + model), 4 MiB SSRAM2/3 @0x20000000 (RAM)",
        ram: 4 * MIB,
        flash: 4 * MIB,
        code_region: None,
        code: CODE_M,
        stack: STACK_M,
        runs: qemu("mps2-an500", "cortex-m7", 40_000),
    },
    Board {
        name: "mps2-an505",
        core: "Cortex-M33",
        target: "thumbv8m.main-none-eabihf",
        source: "QEMU mps2-an505: 4 MiB SSRAM1 @0x10000000 (code + model), 4 MiB SSRAM2/3 @0x38000000 (RAM), as firmware/boards/mps2-an505/memory.x",
        ram: 4 * MIB,
        flash: 4 * MIB,
        code_region: None,
        code: CODE_M,
        stack: STACK_M,
        runs: qemu("mps2-an505", "cortex-m33", 50_000),
    },
    Board {
        name: "mps3-an547",
        core: "Cortex-M55",
        target: "thumbv8m.main-none-eabihf",
        source: "QEMU mps3-an547: 512 KiB ITCM @0x0 (code), 8 MiB QSPI @0x28000000 (model), 4 MiB SRAM @0x21000000 (RAM)",
        ram: 4 * MIB,
        flash: 8 * MIB,
        code_region: Some(512 * KIB),
        code: CODE_M,
        stack: STACK_M,
        runs: qemu("mps3-an547", "cortex-m55", 31_250),
    },
    Board {
        name: "pico2",
        core: "Cortex-M33 (RP2350)",
        target: "thumbv8m.main-none-eabihf",
        source: "Raspberry Pi Pico 2: 4 MiB XIP flash @0x10000000 (code + model), 512 KiB SRAM @0x20000000 (RAM)",
        ram: 512 * KIB,
        flash: 4 * MIB,
        code_region: None,
        code: CODE_M,
        stack: STACK_M,
        runs: Runs::Probe { chip: "RP235x" },
    },
    Board {
        name: "nucleo-h743zi",
        core: "Cortex-M7 (STM32H743)",
        target: "thumbv7em-none-eabihf",
        source: "ST Nucleo-H743ZI: 2 MiB flash @0x08000000 (code + model), 512 KiB AXI SRAM @0x24000000 (RAM)",
        ram: 512 * KIB,
        flash: 2 * MIB,
        code_region: None,
        code: CODE_M,
        stack: STACK_M,
        runs: Runs::Probe { chip: "STM32H743ZITx" },
    },
];

/// The board called `name`.
pub fn board(name: &str) -> Option<&'static Board> {
    BOARDS.iter().find(|b| b.name == name)
}

/// The board a firmware build script builds for: of `features` (board names, each a cargo
/// feature of the firmware crate) exactly one must be on (`is_on`), it must be in the
/// table, and `target` must be its target triple. The error is the message the build
/// script prints. Used by `firmware/app/build.rs` and `firmware/kernel-test/build.rs`.
pub fn select_board(features: &[&str], is_on: impl Fn(&str) -> bool, target: &str) -> Result<&'static Board, String> {
    let on: Vec<&str> = features.iter().copied().filter(|f| is_on(f)).collect();
    let name = match on.as_slice() {
        [one] => *one,
        [] => return Err(format!("no board feature: enable one of {features:?}")),
        many => {
            return Err(format!("several board features {many:?}: build with --no-default-features --features <board>"))
        }
    };
    let b = board(name).ok_or_else(|| format!("{name} is not in the board table"))?;
    if target != b.target {
        return Err(format!(
            "board {name} ({}) runs the {} build, not {target}: pass --target {}",
            b.core, b.target, b.target
        ));
    }
    Ok(b)
}

/// Whether the cargo feature `name` is on, in a build script (`CARGO_FEATURE_<NAME>`).
pub fn cargo_feature_on(name: &str) -> bool {
    std::env::var_os(format!("CARGO_FEATURE_{}", name.to_uppercase().replace('-', "_"))).is_some()
}

impl Board {
    /// Path of the board's linker map, relative to `firmware/boards/`.
    pub fn memory_x(&self) -> String {
        format!("{}/memory.x", self.name)
    }

    /// What a model of `model_bytes` with a session arena of `arena` bytes needs of this
    /// board; `None` when a sum does not fit 64 bits.
    pub fn budget(&self, model_bytes: u64, arena: u64) -> Option<Budget> {
        Budget::of(&self.into(), model_bytes, arena)
    }
}

impl Budget {
    /// What a model of `model_bytes` with a session arena of `arena` bytes needs of `m`;
    /// `None` when a sum does not fit 64 bits.
    pub fn of(m: &Memory, model_bytes: u64, arena: u64) -> Option<Budget> {
        let ram = arena.checked_add(m.stack)?;
        let (flash, code_fits) = match m.code_region {
            Some(region) => (model_bytes, m.code <= region),
            None => (model_bytes.checked_add(m.code)?, true),
        };
        Some(Budget {
            arena,
            ram,
            model_bytes,
            flash,
            code_fits,
            fits_ram: ram <= m.ram,
            fits_flash: flash <= m.flash && code_fits,
        })
    }
}

impl Memory {
    /// Whether a session arena of `arena` bytes plus the stack fits the RAM.
    pub fn arena_fits(&self, arena: u64) -> bool {
        arena.checked_add(self.stack).is_some_and(|need| need <= self.ram)
    }
}

/// What a model needs of a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Session arena bytes.
    pub arena: u64,
    /// Arena plus stack.
    pub ram: u64,
    /// The model file's bytes.
    pub model_bytes: u64,
    /// Model plus code, or the model alone where the code has its own region.
    pub flash: u64,
    /// The code fits its own region (true where there is none).
    pub code_fits: bool,
    /// Arena plus stack fit the RAM.
    pub fits_ram: bool,
    /// Model (and code) fit the flash, and the code its region.
    pub fits_flash: bool,
}

impl Budget {
    /// RAM and flash both fit.
    pub fn fits(&self) -> bool {
        self.fits_ram && self.fits_flash
    }
}

/// Bytes in binary units: `512 B`, `1.40 MiB`.
pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

/// A memory size, or `unlimited` for the host's stand-in for no limit.
fn big(v: u64) -> String {
    if v >= u64::MAX / 8 {
        "unlimited".to_string()
    } else {
        human_bytes(v)
    }
}

fn pct(x: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * x as f64 / of as f64
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "TOO BIG"
    }
}

/// The memory a budget is measured against (a board, or `spark-sim plan`'s overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// RAM.
    pub ram: u64,
    /// Read-only memory for the model (and the code unless `code_region`).
    pub flash: u64,
    /// Separate code region.
    pub code_region: Option<u64>,
    /// Code estimate.
    pub code: u64,
    /// Stack estimate.
    pub stack: u64,
}

impl From<&Board> for Memory {
    fn from(b: &Board) -> Memory {
        Memory { ram: b.ram, flash: b.flash, code_region: b.code_region, code: b.code, stack: b.stack }
    }
}

/// The `RAM` and `flash` lines of a plan (`spark-sim plan` and the firmware build print
/// these), for a session context of `max_seq` tokens.
pub fn budget_lines(m: &Memory, n: &Budget, max_seq: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "RAM     arena {} (KV cache + scratch, context {}) + stack {} (estimate) = {} of {}  ({:.0}%)  {}",
        human_bytes(n.arena),
        max_seq,
        human_bytes(m.stack),
        human_bytes(n.ram),
        big(m.ram),
        pct(n.ram, m.ram),
        verdict(n.fits_ram)
    );
    let _ = match m.code_region {
        Some(r) => writeln!(
            o,
            "flash   model {} of {} ({:.0}%); code {} (estimate) of {} code region  {}",
            human_bytes(n.model_bytes),
            big(m.flash),
            pct(n.model_bytes, m.flash),
            human_bytes(m.code),
            human_bytes(r),
            verdict(n.fits_flash)
        ),
        None => writeln!(
            o,
            "flash   model {} + code {} (estimate) = {} of {}  ({:.0}%)  {}",
            human_bytes(n.model_bytes),
            human_bytes(m.code),
            human_bytes(n.flash),
            big(m.flash),
            pct(n.flash, m.flash),
            verdict(n.fits_flash)
        ),
    };
    o
}

/// Largest `x` in `lo..=hi` with `ok(x)` (monotone: ok up to some point), if any.
pub fn largest(lo: u64, hi: u64, ok: impl Fn(u64) -> bool) -> Option<u64> {
    if hi < lo || !ok(lo) {
        return None;
    }
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let m = a + (b - a).div_ceil(2);
        if ok(m) {
            a = m;
        } else {
            b = m - 1;
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_selection_from_features() {
        let f = ["mps2-an386", "mps3-an547"];
        let b = select_board(&f, |x| x == "mps3-an547", "thumbv8m.main-none-eabihf").unwrap();
        assert_eq!(b.name, "mps3-an547");
        assert!(select_board(&f, |_| false, "x").unwrap_err().starts_with("no board feature"));
        assert!(select_board(&f, |_| true, "x").unwrap_err().starts_with("several board features"));
        let e = select_board(&f, |x| x == "mps2-an386", "thumbv6m-none-eabi").unwrap_err();
        assert!(e.contains("pass --target thumbv7em-none-eabihf"), "{e}");
        assert!(select_board(&["no-such"], |_| true, "x").unwrap_err().contains("not in the board table"));
    }

    #[test]
    fn every_qemu_board_and_its_clock() {
        for name in ["mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"] {
            let b = board(name).unwrap();
            assert!(matches!(b.runs, Runs::Qemu { machine, .. } if machine == name));
        }
        assert!(matches!(board("mps2-an505").unwrap().runs, Runs::Qemu { instructions_per_tick_milli: 50_000, .. }));
        assert!(board("z80").is_none());
    }

    #[test]
    fn budget_fits_and_overflows() {
        let b = board("mps2-an386").unwrap();
        let n = b.budget(MIB, 100 * KIB).unwrap();
        assert!(n.fits());
        assert_eq!(n.flash, MIB + CODE_M);
        let n = b.budget(4 * MIB, 100 * KIB).unwrap();
        assert!(!n.fits_flash && n.fits_ram);
        assert!(budget_lines(&b.into(), &n, 256).contains("TOO BIG"));
        assert!(b.budget(u64::MAX, 0).is_none());
        let m55 = board("mps3-an547").unwrap().budget(6 * MIB, KIB).unwrap();
        assert!(m55.fits() && m55.flash == 6 * MIB);
        assert_eq!(largest(1, 100, |x| x <= 37), Some(37));
        assert_eq!(human_bytes(1536), "1.50 KiB");
    }
}
