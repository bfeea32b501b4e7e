//! Stack painting (included by `rt.rs` and `probe.rs`): fill the free RAM between the end
//! of the statics and the current stack pointer with a pattern at start, and find the
//! lowest overwritten word at the end: the measured stack high-water mark.

const PAINT: u32 = 0x5A5A_A5A5;

extern "C" {
    /// End of `.bss` / `.uninit` (cortex-m-rt's start of the heap).
    static mut __sheap: u32;
    /// Initial stack pointer (cortex-m-rt).
    static _stack_start: u32;
}

/// Paints the unused stack: from the end of the statics up to 256 bytes below the current
/// stack pointer. Call once, first thing in `main`.
#[inline(never)]
pub fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize - 256;
    let mut p = core::ptr::addr_of_mut!(__sheap) as usize;
    while p < sp {
        // SAFETY: [__sheap, sp - 256) is RAM that no static occupies (cortex-m-rt places
        // the heap start after .bss and .uninit) and that lies below every live stack frame;
        // nothing else uses it (no heap in this firmware). Aligned word writes.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack used at most since [`paint_stack`]: from the top of the stack down to
/// the lowest word that no longer holds the pattern.
pub fn stack_high_water() -> usize {
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = core::ptr::addr_of_mut!(__sheap) as usize;
    // SAFETY: reads of the aligned words painted by `paint_stack` (below the live stack
    // or stack memory this program owns); volatile, so the compiler keeps them.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}
