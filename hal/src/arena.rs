//! Carving typed scratch buffers out of one caller-provided byte arena.
//!
//! `spark-core` forbids `unsafe`, yet a session needs `f32`, `i32`, `u32` and `i8` buffers
//! inside a single `&mut [u8]` the caller owns (a `static` on a microcontroller). This
//! module does the one reinterpreting cast, for plain-old-data element types only, after
//! aligning the start. Tested in `tests/arena.rs`.

use core::mem::{align_of, size_of};

mod sealed {
    pub trait Sealed {}
}

/// Element types that may be carved from raw bytes: every bit pattern is a valid value
/// and there is no padding. Sealed: implemented for `u8`, `i8`, `u32`, `i32`, `f32` only.
pub trait Pod: sealed::Sealed + Copy + Default {}
macro_rules! pod {
    ($($t:ty),*) => { $(impl sealed::Sealed for $t {} impl Pod for $t {})* };
}
pod!(u8, i8, u32, i32, f32);

/// Alignment every carved buffer starts at (also the granularity of sizes).
pub const ARENA_ALIGN: usize = 16;

/// Bytes a buffer of `n` elements of `T` occupies in the arena (rounded up to
/// [`ARENA_ALIGN`]).
pub const fn arena_cost<T>(n: usize) -> usize {
    (n * size_of::<T>()).div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// A cursor over the unused part of an arena.
pub struct Arena<'a> {
    rest: &'a mut [u8],
}

/// The arena ran out (the caller sized it from a different plan).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaExhausted;

impl core::fmt::Display for ArenaExhausted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("arena exhausted: the buffer is smaller than the plan it was sized from")
    }
}

impl core::error::Error for ArenaExhausted {}

impl<'a> Arena<'a> {
    /// Start carving from `bytes`; the first [`ARENA_ALIGN`]` - 1` bytes may be skipped to
    /// align the start.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        let skip = bytes.as_ptr().align_offset(ARENA_ALIGN).min(bytes.len());
        let (_, rest) = bytes.split_at_mut(skip);
        Arena { rest }
    }

    /// Bytes still available.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Take `n` zeroed elements of `T`, consuming [`arena_cost`]`::<T>(n)` bytes.
    pub fn take<T: Pod>(&mut self, n: usize) -> Result<&'a mut [T], ArenaExhausted> {
        debug_assert!(align_of::<T>() <= ARENA_ALIGN);
        let cost = arena_cost::<T>(n);
        if cost > self.rest.len() {
            return Err(ArenaExhausted);
        }
        let rest = core::mem::take(&mut self.rest);
        let (head, tail) = rest.split_at_mut(cost);
        self.rest = tail;
        head.fill(0);
        // SAFETY: `head` starts ARENA_ALIGN-aligned (the arena start was aligned in `new`
        // and every cost is a multiple of ARENA_ALIGN), which satisfies T's alignment
        // (checked above, <= 16 for all Pod types); it holds at least n * size_of::<T>()
        // initialised (zeroed) bytes; T is Pod, so any bit pattern (here all zeros) is a
        // valid T; the new slice takes over `head`'s unique borrow for 'a.
        Ok(unsafe { core::slice::from_raw_parts_mut(head.as_mut_ptr().cast::<T>(), n) })
    }
}
