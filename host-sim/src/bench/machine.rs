//! Facts about the machine the benchmarks plan around: the last-level cache size, the
//! read bandwidth with the benchmark's thread count (the memory bound of every report) and
//! the number of weight copies the rotation needs so that each timed call reads from DRAM.

use super::args::{BenchArgs, MAX_LLC};
use crate::hugemem::HugeBytes;
use crate::threads::Pool;
use crate::ui::{fail, human_bytes, progress, CliResult};
use std::hint::black_box;
use std::io;
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
/// Fails only when the buffer cannot be mapped.
pub fn read_bandwidth(bytes: usize, passes: usize) -> io::Result<(f64, f64)> {
    read_bandwidth_on(&Pool::single(), bytes, passes)
}

/// [`read_bandwidth`] with every thread of `pool` summing its own equal part of the
/// buffer at once (each pass timed from the hand-off to the last thread's end).
pub fn read_bandwidth_on(pool: &Pool, bytes: usize, passes: usize) -> io::Result<(f64, f64)> {
    Ok(read_bandwidths(&[pool], bytes, passes)?[0])
}

/// [`read_bandwidth_on`] for each pool of `pools` over one buffer, their passes
/// interleaved (so that a slow phase of the host falls on all of them): `(plain,
/// page-prefetched)` bytes/s per pool.
pub fn read_bandwidths(pools: &[&Pool], bytes: usize, passes: usize) -> io::Result<Vec<(f64, f64)>> {
    let words = bytes / 8;
    // Huge-page-advised like the benchmarks' weights and KV caches (`hugemem`).
    let mut mem = HugeBytes::zeroed(words * 8)?;
    let buf: &mut [u64] = bytemuck::cast_slice_mut(&mut mem[..]);
    for (i, w) in buf.iter_mut().enumerate() {
        *w = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    let buf: &[u64] = buf;
    let mut best = vec![(f64::INFINITY, f64::INFINITY); pools.len()];
    for _ in 0..passes.max(1) {
        for (pool, (plain, pf)) in pools.iter().zip(best.iter_mut()) {
            for prefetch in [false, true] {
                let e = read_pass_on(pool, buf, prefetch);
                let b = if prefetch { &mut *pf } else { &mut *plain };
                *b = b.min(e);
            }
        }
    }
    let total = (words * 8) as f64;
    Ok(best.into_iter().map(|(plain, pf)| (total / plain, total / pf)).collect())
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

/// Seconds for one summing pass over `buf` split into one equal part per thread of
/// `pool`, all threads at once (from the hand-off to the last thread's end).
pub(super) fn read_pass_on(pool: &Pool, buf: &[u64], prefetch: bool) -> f64 {
    use spark_core::Executor;
    let n = pool.threads();
    if n == 1 {
        return read_pass(buf, prefetch);
    }
    let part = buf.len().div_ceil(n).next_multiple_of(4); // words per thread
    let t = Instant::now();
    pool.on_every_thread(|i| read_pass(buf.chunks(part).nth(i).unwrap_or(&[]), prefetch));
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

/// The most copies of one variant's weights (or KV cache) a rotation keeps: each copy is
/// a few memory mappings, and a small shape on a large cache would otherwise want
/// millions of them.
pub const MAX_COPIES: usize = 4096;
/// The most bytes the copies of one variant take together.
pub const MAX_WORKING_SET: u64 = 8 << 30;

/// How many copies of a variant's weights a benchmark rotates over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Copies to build (at least 2).
    pub copies: usize,
    /// Fewer copies than twice the last-level cache needs ([`MAX_COPIES`] or
    /// [`MAX_WORKING_SET`] bound them): part of the working set is read from cache.
    pub capped: bool,
}

/// The rotation for copies of `bytes_per_copy` bytes each (the variant with the larger
/// copy takes `largest_copy` bytes): enough copies that the bytes touched between two uses
/// of one copy are at least twice the last-level cache `llc`, at least 2, at most
/// [`MAX_COPIES`] and at most [`MAX_WORKING_SET`] bytes of the larger variant. An error
/// (what is too big) when two copies of the larger variant exceed [`MAX_WORKING_SET`].
pub fn rotation(bytes_per_copy: usize, largest_copy: usize, llc: u64) -> Result<Rotation, String> {
    let largest = largest_copy.max(bytes_per_copy).max(1) as u64;
    let limit = (MAX_COPIES as u64).min(MAX_WORKING_SET / largest);
    if limit < 2 {
        return Err(format!(
            "one copy is {}; the two copies a rotation needs exceed the {} limit per variant",
            human_bytes(largest),
            human_bytes(MAX_WORKING_SET)
        ));
    }
    let want = llc.saturating_mul(2).div_ceil(bytes_per_copy.max(1) as u64).max(2);
    Ok(Rotation { copies: want.min(limit) as usize, capped: want > limit })
}

/// The machine facts every report states.
pub(super) struct Common {
    /// Threads of the timed calls and of the read bound.
    pub(super) threads: usize,
    /// Last-level cache bytes the rotation is planned for.
    pub(super) llc: u64,
    /// Whether `llc` was given or read (not assumed).
    pub(super) llc_known: bool,
    /// The bound: the faster of the two read passes, bytes/s.
    pub(super) bw: f64,
    /// The plain summing pass alone (the bound before page-entry prefetching), bytes/s.
    pub(super) bw_plain: f64,
    /// With more than one thread: the same bound on one thread, its passes interleaved
    /// with the N-thread ones (what the N-thread speedup of a read-bound product is
    /// limited to: `bw / bw_one_thread`).
    pub(super) bw_one_thread: Option<f64>,
    /// The CPU's model name ([`cpu_model`]).
    pub(super) cpu: String,
}

/// The CPU's model name as `lscpu` prints it (`Model name:`), else the first `model name`
/// of `/proc/cpuinfo`, else `"unknown"`.
pub fn cpu_model() -> String {
    let from_lscpu = std::process::Command::new("lscpu").env("LC_ALL", "C").output().ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines().find_map(|l| l.strip_prefix("Model name:").map(|v| v.trim().to_string()))
    });
    let from_cpuinfo = || {
        let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
    };
    from_lscpu.or_else(from_cpuinfo).filter(|m| !m.is_empty()).unwrap_or_else(|| "unknown".into())
}

/// The last-level cache (from `--llc`, else detected and at most [`MAX_LLC`]) and the read
/// bandwidth bound with every thread of `pool`, measured over a buffer of 4x the cache (at
/// least 16 MiB).
pub(super) fn measure_common(a: &BenchArgs, pool: &Pool) -> CliResult<Common> {
    let show = !a.json;
    let (llc, llc_known) = match a.llc {
        Some(b) => (b.max(1), true),
        None => {
            let (b, known) = llc_bytes();
            (b.min(MAX_LLC), known)
        }
    };
    let bytes = ((4 * llc) as usize).max(16 << 20);
    let pb = progress(1, show, "bandwidth");
    use spark_core::Executor;
    let one = Pool::single();
    let pools: &[&Pool] = if pool.threads() > 1 { &[pool, &one] } else { &[pool] };
    let bws = read_bandwidths(pools, bytes, 7).map_err(|e| {
        fail(format!(
            "bench: cannot map the {} read-bandwidth buffer (4x LLC): {e}; lower --llc",
            human_bytes(bytes as u64)
        ))
    })?;
    pb.finish_and_clear();
    let (bw_plain, bw_pf) = bws[0];
    Ok(Common {
        threads: pool.threads(),
        llc,
        llc_known,
        bw: bw_plain.max(bw_pf),
        bw_plain,
        bw_one_thread: bws.get(1).map(|&(p, f)| p.max(f)),
        cpu: cpu_model(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_fills_twice_the_cache_within_its_bounds() {
        // gemma2-2b's Spark FFN (about 64 MB a copy) on a 32 MiB cache: 2 copies.
        assert_eq!(rotation(64_000_000, 64_000_000, 32 << 20), Ok(Rotation { copies: 2, capped: false }));
        // 1 MB copies, 480 MiB cache: ceil(960 MiB / 1 MB) = 1007.
        assert_eq!(rotation(1_000_000, 1_000_000, 480 << 20), Ok(Rotation { copies: 1007, capped: false }));
        // A 7 kB copy on a 480 MiB cache would want 143 797 copies: capped.
        assert_eq!(rotation(7_000, 7_000, 480 << 20), Ok(Rotation { copies: MAX_COPIES, capped: true }));
        // 3 GiB copies on the largest cache: 2 of them fill 2x LLC.
        assert_eq!(rotation(3 << 30, 3 << 30, MAX_LLC), Ok(Rotation { copies: 2, capped: false }));
        // The larger variant sets the working-set bound (attention: one count for both),
        // which binds before the copy cap: at most 2 copies of 3 GiB.
        assert_eq!(rotation(1 << 20, 3 << 30, MAX_LLC), Ok(Rotation { copies: 2, capped: true }));
        assert!(rotation(5 << 30, 5 << 30, 1).unwrap_err().contains("8.00 GiB"));
        // No overflow at the extremes.
        assert_eq!(rotation(0, 0, u64::MAX), Ok(Rotation { copies: MAX_COPIES, capped: true }));
    }
}
