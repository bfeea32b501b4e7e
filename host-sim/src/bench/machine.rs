//! Facts about the machine the benchmarks plan around: the last-level cache size, the
//! single-thread read bandwidth (the memory bound of every report) and the number of
//! weight copies the rotation needs so that each timed call reads from DRAM.

use super::args::BenchArgs;
use crate::hugemem::HugeBytes;
use crate::ui::progress;
use std::hint::black_box;
use std::time::Instant;

/// Size of the last-level cache from `/sys/devices/system/cpu/cpu0/cache` (64 MiB when
/// unknown), and whether it was read.
pub fn llc_bytes() -> (u64, bool) {
    let mut best: Option<(u32, u64)> = None;
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let (Ok(level), Ok(size)) =
            (std::fs::read_to_string(format!("{dir}/level")), std::fs::read_to_string(format!("{dir}/size")))
        else {
            continue;
        };
        let (Ok(level), size) = (level.trim().parse::<u32>(), size.trim()) else { continue };
        let bytes = if let Some(k) = size.strip_suffix('K') {
            k.parse::<u64>().ok().map(|v| v * 1024)
        } else if let Some(m) = size.strip_suffix('M') {
            m.parse::<u64>().ok().map(|v| v << 20)
        } else {
            size.parse::<u64>().ok()
        };
        if let Some(b) = bytes {
            if best.is_none_or(|(l, _)| level >= l) {
                best = Some((level, b));
            }
        }
    }
    match best {
        Some((_, b)) => (b, true),
        None => (64 << 20, false),
    }
}

/// Single-thread read bandwidth in bytes/s: the fastest of `passes` sums over a buffer of
/// `bytes` bytes (u64 words, four accumulators). The best pass, not the median: the bound
/// is what the machine can do, and interference from other processes only slows passes.
///
/// Each pass is timed twice, as a plain sum and as the same sum with a software prefetch of
/// the line 64 KiB ahead whenever the loop enters a new 4 KiB page (what the x86 kernels
/// do, `spark_hal::x86`): hardware prefetchers stop at page boundaries, and on the machine
/// of docs/PERFORMANCE.md the plain sum reads about 25 % slower than the memory system
/// allows, so kernels measured above 100 % of it. Returns `(plain, page-prefetched)`; the
/// bound is the larger.
pub fn read_bandwidth(bytes: usize, passes: usize) -> (f64, f64) {
    let words = bytes / 8;
    // Huge-page-advised like the benchmarks' weights and KV caches (`hugemem`).
    let mut mem = HugeBytes::zeroed(words * 8).expect("bench: anonymous mapping for the bandwidth buffer");
    let buf: &mut [u64] = bytemuck::cast_slice_mut(&mut mem[..]);
    for (i, w) in buf.iter_mut().enumerate() {
        *w = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    let buf: &[u64] = buf;
    let (mut plain, mut pf) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..passes.max(1) {
        for prefetch in [false, true] {
            let e = read_pass(buf, prefetch);
            let best = if prefetch { &mut pf } else { &mut plain };
            *best = best.min(e);
        }
    }
    let total = (words * 8) as f64;
    (total / plain, total / pf)
}

/// Seconds for one summing pass over `buf` (four accumulators), with or without the
/// page-entry prefetch ([`read_bandwidth`]).
pub(super) fn read_pass(buf: &[u64], prefetch: bool) -> f64 {
    let t = Instant::now();
    let (mut a, mut b, mut c, mut d) = (0u64, 0u64, 0u64, 0u64);
    for ch in black_box(buf).chunks_exact(4) {
        if prefetch {
            page_prefetch(ch.as_ptr());
        }
        a = a.wrapping_add(ch[0]);
        b = b.wrapping_add(ch[1]);
        c = c.wrapping_add(ch[2]);
        d = d.wrapping_add(ch[3]);
    }
    black_box(a ^ b ^ c ^ d);
    t.elapsed().as_secs_f64()
}

/// The page-entry prefetch of [`read_bandwidth`] for a loop advancing 32 bytes per step.
#[inline(always)]
fn page_prefetch(p: *const u64) {
    #[cfg(target_arch = "x86_64")]
    if (p as usize) & 4095 < 32 {
        // SAFETY: a prefetch is a hint that never faults and accesses no memory; the
        // address is formed with `wrapping_add` and never dereferenced.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>().wrapping_add(64 << 10))
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Copies of `bytes_per_copy` bytes each that a rotation needs so that the bytes touched
/// between two uses of one copy are at least twice the last-level cache (at least 2).
pub(super) fn copies_for(bytes_per_copy: usize, llc: u64) -> usize {
    ((2 * llc) as usize).div_ceil(bytes_per_copy.max(1)).max(2)
}

/// The machine facts every report states.
pub(super) struct Common {
    /// Last-level cache bytes the rotation is planned for.
    pub(super) llc: u64,
    /// Whether `llc` was given or read (not assumed).
    pub(super) llc_known: bool,
    /// The bound: the faster of the two read passes, bytes/s.
    pub(super) bw: f64,
    /// The plain summing pass alone (the bound before page-entry prefetching), bytes/s.
    pub(super) bw_plain: f64,
}

/// The last-level cache (from `--llc` or detected) and the read bandwidth bound.
pub(super) fn measure_common(a: &BenchArgs) -> Common {
    let show = !a.json;
    let (llc, llc_known) = match a.llc {
        Some(b) => (b.max(1), true),
        None => llc_bytes(),
    };
    let bytes = ((4 * llc) as usize).max(16 << 20);
    let pb = progress(1, show, "bandwidth");
    let (bw_plain, bw_pf) = read_bandwidth(bytes, 7);
    pb.finish_and_clear();
    Common { llc, llc_known, bw: bw_plain.max(bw_pf), bw_plain }
}
