//! The x86-64 kernels at the shapes the `gemma2-2b` model runs them at, single thread,
//! against the machine's single-thread read bandwidth measured by this same binary
//! (SPEC section 11).
//!
//! Cases (`gemma2-2b`: d 2304, dense f_g 9216, Spark f 13824 r 1024 k 1106; attention
//! ctx 4096, dh 256, ra 128, ka 256):
//!
//! - `gemv_i8`: the dense gate/up projection `[9216 x 2304]`, the same bytes as
//!   `[2304 x 9216]` rows, the Spark FFN predictor K1 `[13824 x 1024]`, the Spark attention
//!   predictor K1 `[4096 x 128]` and the dense attention keys `[4096 x 256]` (one kv head),
//!   plus two cache-resident cases: `[256 x 1024]` and the attention K1 read a second time
//!   (the second query head of a GQA pair).
//! - `gemv_rows_i8`: the Spark FFN K2 gather (1081 of `[13824 x 1280]`, a seeded random
//!   ascending selection of the density a Spark FFN selects), the Spark attention K2 gather
//!   (256 of `[4096 x 128]`) and every 8th row of `[9216 x 2304]` (the earlier
//!   benchmark's case).
//! - `gemv_t_rows_i8`: the Spark FFN V product (1081 of `[13824 x 2304]`), the dense down
//!   projection (all 9216 rows of `[9216 x 2304]`, in order), Spark attention values (256
//!   of `[4096 x 256]`), dense attention values (all 4096 of `[4096 x 256]`) and every 8th
//!   row of `[9216 x 2304]`.
//!
//! DRAM cases start every timed call from cold caches: an untimed pass over a buffer of
//! 3x the last-level cache comes first, and calls rotate over copies of the weights
//! totalling at least 2x the last-level cache (as at decode, where every other layer's
//! weights stream through the caches between two uses of one matrix). Cache-resident cases
//! run each timed call right after an untimed one on the same data.
//!
//! Bound: `bytes a call must read / bandwidth`, the bandwidth measured on the same weight
//! bytes, also from cold caches, by two read passes: a plain u64 sum and the same sum with
//! the kernels' page-entry prefetch (`x86::prefetch`; it reads about 25 % faster here). The
//! faster of the two is the bound (time / bound can still dip below 1 for kernels that
//! use the hardware better than a plain sum).
//!
//! Run: `cargo bench -p spark-hal --bench kernels` (`-- NONE` skips the criterion groups and
//! runs only the summary: per-backend medians of interleaved rounds, GB/s, time / bound).

#[cfg(target_arch = "x86_64")]
mod x86 {
    use criterion::{BatchSize, Criterion, Throughput};
    use spark_hal::testing::pattern_i8;
    use spark_hal::x86::avx2::Avx2;
    use spark_hal::x86::avx512vnni::Avx512Vnni;
    use spark_hal::x86::Auto;
    use spark_hal::{Kernels, Scalar};
    use std::hint::black_box;
    use std::time::Instant;

    const D: usize = 2304;
    const FG: usize = 9216;
    const F: usize = 13824;
    const R: usize = 1024;
    /// Rows a Spark FFN selected on average in `spark-sim bench ffn` (target k = 1106).
    const K_FFN: usize = 1081;
    const CTX: usize = 4096;
    const DH: usize = 256;
    const RA: usize = 128;
    const KA: usize = 256;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Gemv,
        Rows,
        TRows,
    }

    /// One benchmark case: a weight matrix, the kernel, the row list (gathers) and whether
    /// the weights are meant to be cache-resident.
    struct Case {
        title: String,
        rows: usize,
        cols: usize,
        kind: Kind,
        list: Vec<u32>,
        cached: bool,
        /// Copies of the weights, used in turn (one for a cache-resident case).
        w: Vec<Vec<i8>>,
        next: usize,
        x: Vec<i8>,
        c: Vec<i8>,
        y: Vec<i32>,
    }

    /// A seeded random ascending selection of about `k` of `n` rows.
    fn select(n: usize, k: usize, seed: u64) -> Vec<u32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n as u32)
            .filter(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % n as u64) < k as u64
            })
            .collect()
    }

    impl Case {
        fn new(title: &str, rows: usize, cols: usize, kind: Kind, list: Option<Vec<u32>>, cached: bool) -> Self {
            let list = list.unwrap_or_else(|| (0..rows as u32).collect());
            let base: Vec<i8> = pattern_i8(rows * cols, 12345).collect();
            // DRAM cases rotate over at least 2x the last-level cache of copies, so that a
            // small matrix is not partly L3-resident after the flush either.
            let n = if cached { 1 } else { (2 * llc_bytes()).div_ceil(rows * cols).max(2) };
            let w = vec![base; n];
            let c = pattern_i8(list.len(), 5).collect();
            Case {
                title: title.to_string(),
                rows,
                cols,
                kind,
                y: vec![0; rows.max(cols).max(list.len())],
                list,
                cached,
                w,
                next: 0,
                x: pattern_i8(cols, 99).collect(),
                c,
            }
        }
        /// Weight bytes one call must read.
        fn bytes(&self) -> usize {
            match self.kind {
                Kind::Gemv => self.rows * self.cols,
                _ => self.list.len() * self.cols,
            }
        }
        /// The weights the next call uses.
        fn weights(&mut self) -> &[i8] {
            self.next = (self.next + 1) % self.w.len();
            &self.w[self.next]
        }
        fn run<K: Kernels>(&mut self) {
            self.next = (self.next + 1) % self.w.len();
            let w = black_box(&self.w[self.next][..]);
            match self.kind {
                Kind::Gemv => K::gemv_i8(w, self.cols, black_box(&self.x), &mut self.y[..self.rows]),
                Kind::Rows => {
                    K::gemv_rows_i8(w, self.cols, &self.list, black_box(&self.x), &mut self.y[..self.list.len()])
                }
                Kind::TRows => {
                    let y = &mut self.y[..self.cols];
                    y.fill(0);
                    K::gemv_t_rows_i8(w, self.cols, &self.list, black_box(&self.c), y)
                }
            }
            black_box(&self.y);
        }
    }

    /// The cases, built one at a time (each DRAM case holds about 2x LLC of weight copies).
    fn cases() -> Vec<Box<dyn Fn() -> Case>> {
        use Kind::*;
        let every8 = || -> Vec<u32> { (0..FG as u32).step_by(8).collect() };
        vec![
            Box::new(move || Case::new(&format!("gemv_i8 ffn up/gate [{FG} x {D}]"), FG, D, Gemv, None, false)),
            Box::new(move || {
                Case::new(&format!("gemv_i8 [{D} x {FG}] (same bytes, long rows)"), D, FG, Gemv, None, false)
            }),
            Box::new(move || Case::new(&format!("gemv_i8 Spark FFN K1 [{F} x {R}]"), F, R, Gemv, None, false)),
            Box::new(move || Case::new(&format!("gemv_i8 Spark attn K1 [{CTX} x {RA}]"), CTX, RA, Gemv, None, false)),
            Box::new(move || Case::new(&format!("gemv_i8 dense attn K [{CTX} x {DH}]"), CTX, DH, Gemv, None, false)),
            Box::new(move || Case::new("gemv_i8 [256 x 1024] cached", 256, 1024, Gemv, None, true)),
            Box::new(move || {
                Case::new(
                    &format!("gemv_i8 Spark attn K1 [{CTX} x {RA}] cached (2nd q head)"),
                    CTX,
                    RA,
                    Gemv,
                    None,
                    true,
                )
            }),
            Box::new(move || {
                Case::new(
                    &format!("gemv_rows_i8 Spark FFN K2 {K_FFN} of [{F} x {}]", D - R),
                    F,
                    D - R,
                    Rows,
                    Some(select(F, K_FFN, 3)),
                    false,
                )
            }),
            Box::new(move || {
                Case::new(
                    &format!("gemv_rows_i8 Spark attn K2 {KA} of [{CTX} x {}]", DH - RA),
                    CTX,
                    DH - RA,
                    Rows,
                    Some(select(CTX, KA, 4)),
                    false,
                )
            }),
            Box::new(move || {
                Case::new(&format!("gemv_rows_i8 every 8th of [{FG} x {D}]"), FG, D, Rows, Some(every8()), false)
            }),
            Box::new(move || {
                Case::new(
                    &format!("gemv_t_rows_i8 Spark FFN V {K_FFN} of [{F} x {D}]"),
                    F,
                    D,
                    TRows,
                    Some(select(F, K_FFN, 5)),
                    false,
                )
            }),
            Box::new(move || {
                Case::new(&format!("gemv_t_rows_i8 dense down all of [{FG} x {D}]"), FG, D, TRows, None, false)
            }),
            Box::new(move || {
                Case::new(
                    &format!("gemv_t_rows_i8 Spark attn V {KA} of [{CTX} x {DH}]"),
                    CTX,
                    DH,
                    TRows,
                    Some(select(CTX, KA, 6)),
                    false,
                )
            }),
            Box::new(move || {
                Case::new(&format!("gemv_t_rows_i8 dense attn V all of [{CTX} x {DH}]"), CTX, DH, TRows, None, false)
            }),
            Box::new(move || {
                Case::new(&format!("gemv_t_rows_i8 every 8th of [{FG} x {D}]"), FG, D, TRows, Some(every8()), false)
            }),
        ]
    }

    /// Last-level cache size from sysfs (32 MiB if unknown).
    fn llc_bytes() -> usize {
        let mut best = 32 << 20;
        for i in 0..8 {
            let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
            if let Ok(size) = std::fs::read_to_string(format!("{dir}/size")) {
                let size = size.trim();
                let b = if let Some(k) = size.strip_suffix('K') {
                    k.parse::<usize>().ok().map(|v| v << 10)
                } else if let Some(m) = size.strip_suffix('M') {
                    m.parse::<usize>().ok().map(|v| v << 20)
                } else {
                    size.parse().ok()
                };
                if let Some(b) = b {
                    best = b;
                }
            }
        }
        best
    }

    /// Evicts the caches: one summing pass over a buffer of 3x the last-level cache.
    struct Flush(Vec<u64>);

    impl Flush {
        fn new() -> Self {
            Flush((0..(3 * llc_bytes() / 8) as u64).collect())
        }
        fn run(&self) {
            let mut a = [0u64; 4];
            for c in self.0.chunks_exact(4) {
                for i in 0..4 {
                    a[i] = a[i].wrapping_add(c[i]);
                }
            }
            black_box(a);
        }
    }

    /// Plain sum of every u64 in `b` (a pure streaming read, hardware prefetch only).
    fn read_sum(b: &[i8]) -> u64 {
        // SAFETY: reinterpreting initialised i8 memory as u64 words via `align_to`, which
        // only yields properly aligned, in-bounds middle words.
        let (head, mid, tail) = unsafe { b.align_to::<u64>() };
        let mut acc = [0u64; 8];
        for c in mid.chunks_exact(8) {
            for i in 0..8 {
                acc[i] = acc[i].wrapping_add(c[i]);
            }
        }
        let rest = mid.chunks_exact(8).remainder().iter().fold(0u64, |a, &v| a.wrapping_add(v));
        let edge = head.iter().chain(tail).fold(0u64, |a, &v| a.wrapping_add(v as u64));
        acc.iter().fold(rest.wrapping_add(edge), |a, &v| a.wrapping_add(v))
    }

    /// The same sum with the kernels' page-entry prefetch: when a 64-byte step enters a
    /// 4 KiB page, the line 64 KiB ahead is prefetched.
    fn read_sum_prefetch(b: &[i8]) -> u64 {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: as in `read_sum`.
        let (head, mid, tail) = unsafe { b.align_to::<u64>() };
        let mut acc = [0u64; 8];
        for c in mid.chunks_exact(8) {
            let p = c.as_ptr().cast::<i8>();
            if (p as usize) & 4095 < 64 {
                // SAFETY: a prefetch is a hint that never faults; the address is not
                // dereferenced.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 << 10)) };
            }
            for i in 0..8 {
                acc[i] = acc[i].wrapping_add(c[i]);
            }
        }
        let rest = mid.chunks_exact(8).remainder().iter().fold(0u64, |a, &v| a.wrapping_add(v));
        let edge = head.iter().chain(tail).fold(0u64, |a, &v| a.wrapping_add(v as u64));
        acc.iter().fold(rest.wrapping_add(edge), |a, &v| a.wrapping_add(v))
    }

    type Runner = (&'static str, fn(&mut Case));

    fn runners(with_scalar: bool) -> Vec<Runner> {
        let mut v: Vec<Runner> = Vec::new();
        if with_scalar {
            v.push(("scalar", |m| m.run::<Scalar>()));
        }
        if Avx2::available() {
            v.push(("avx2", |m| m.run::<Avx2>()));
        }
        if Avx512Vnni::available() {
            v.push(("avx512-vnni", |m| m.run::<Avx512Vnni>()));
        }
        v.push(("auto", |m| m.run::<Auto>()));
        v
    }

    pub fn criterion_benches() {
        let mut c = Criterion::default()
            .configure_from_args()
            .sample_size(20)
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(3));
        let flush = Flush::new();
        for make in cases().into_iter().take(2) {
            let mut m = make();
            let mut g = c.benchmark_group(format!("gemv_i8_{}x{}", m.rows, m.cols));
            g.throughput(Throughput::Bytes(m.bytes() as u64));
            for (label, f) in runners(true) {
                g.bench_function(label, |b| b.iter_batched(|| flush.run(), |_| f(&mut m), BatchSize::PerIteration));
            }
            g.bench_function("read_plain", |b| {
                b.iter_batched(|| flush.run(), |_| black_box(read_sum(m.weights())), BatchSize::PerIteration)
            });
            g.bench_function("read_page_prefetch", |b| {
                b.iter_batched(|| flush.run(), |_| black_box(read_sum_prefetch(m.weights())), BatchSize::PerIteration)
            });
            g.finish();
        }
        c.final_summary();
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    /// Interleaved timing of every backend and the two read passes, medians, ratios.
    pub fn summary() {
        let flush = Flush::new();
        println!("\nsummary (single thread, medians of interleaved rounds, Auto = {}):", Auto::selected_name());
        println!(
            "  (DRAM cases from cold caches; bound = bytes read / the faster of a plain and a page-prefetched read \
             of the same weights)"
        );
        for make in cases() {
            let mut m = make();
            let rs = runners(true);
            let rounds = if m.bytes() >= (4 << 20) { 21 } else { 101 };
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); rs.len() + 2];
            let mut timed = |i: usize, round: usize, m: &mut Case, f: &dyn Fn(&mut Case)| {
                if m.cached {
                    f(m); // warm the caches with this very call's data
                } else {
                    flush.run();
                }
                let t = Instant::now();
                f(m);
                if round > 0 {
                    times[i].push(t.elapsed().as_secs_f64());
                }
            };
            for round in 0..=rounds {
                for (i, (_, f)) in rs.iter().enumerate() {
                    timed(i, round, &mut m, f);
                }
                timed(rs.len(), round, &mut m, &|m: &mut Case| {
                    black_box(read_sum(black_box(m.weights())));
                });
                timed(rs.len() + 1, round, &mut m, &|m: &mut Case| {
                    black_box(read_sum_prefetch(black_box(m.weights())));
                });
            }
            let med: Vec<f64> = times.into_iter().map(median).collect();
            let full = m.w[0].len() as f64;
            let (plain, pf) = (full / med[rs.len()] / 1e9, full / med[rs.len() + 1] / 1e9);
            let bw = plain.max(pf);
            let gb = m.bytes() as f64 / 1e9;
            let bound = gb / bw;
            println!(
                "  {}: {:.3} MB read per call{}; read {:.1} GB/s plain, {:.1} GB/s page-prefetched",
                m.title,
                gb * 1e3,
                if m.cached { " (cache-resident)" } else { "" },
                plain,
                pf
            );
            for (i, (label, _)) in rs.iter().enumerate() {
                let t = med[i];
                println!(
                    "    {label:<12} {:9.1} us  {:6.2} GB/s  {:5.1}% of bound  ({:.2}x the bound)",
                    t * 1e6,
                    gb / t,
                    100.0 * bound / t,
                    t / bound
                );
            }
        }
    }

    type Elementwise = (&'static str, fn(&[i32], &[f32], &mut [f32]));

    /// The per-key float passes of attention over `n` cache-resident scores, per backend:
    /// predictor dequantisation + soft-cap (`scores_f32`), soft-cap alone (`softcap_f32`),
    /// softmax numerators (`exp_shifted_f32`), and the `libm::tanhf` soft-cap loop they
    /// replaced. Interleaved rounds, medians.
    pub fn elementwise_summary() {
        const CAP: f32 = 50.0;
        println!("\nelementwise f32 kernels (cache-resident, single thread, medians of interleaved rounds):");
        for n in [4096usize, 8192] {
            let acc: Vec<i32> = pattern_i8(n, 5).map(|v| v as i32 * 211).collect();
            let rs: Vec<f32> = (0..n).map(|i| 1e-3 * (1.0 + (i % 7) as f32)).collect();
            let mut out = vec![0.0f32; n];
            let mut cases: Vec<Elementwise> = vec![
                ("libm tanhf soft-cap loop", |a, r, o| {
                    for ((o, &x), &s) in o.iter_mut().zip(a).zip(r) {
                        let v = x as f32 * 0.01 * s * 0.0625;
                        *o = CAP * libm::tanhf(v / CAP);
                    }
                }),
                ("scores_f32 scalar", |a, r, o| Scalar::scores_f32(a, 0.01, r, 0.0625, CAP, o)),
                ("softcap_f32 scalar", |_, _, o| Scalar::softcap_f32(o, CAP)),
                ("exp_shifted_f32 scalar", |_, _, o| Scalar::exp_shifted_f32(o, 1.0)),
            ];
            if Avx2::available() {
                cases.push(("scores_f32 avx2", |a, r, o| Avx2::scores_f32(a, 0.01, r, 0.0625, CAP, o)));
                cases.push(("softcap_f32 avx2", |_, _, o| Avx2::softcap_f32(o, CAP)));
                cases.push(("exp_shifted_f32 avx2", |_, _, o| Avx2::exp_shifted_f32(o, 1.0)));
            }
            if Avx512Vnni::available() {
                cases.push(("scores_f32 avx512", |a, r, o| Avx512Vnni::scores_f32(a, 0.01, r, 0.0625, CAP, o)));
                cases.push(("softcap_f32 avx512", |_, _, o| Avx512Vnni::softcap_f32(o, CAP)));
                cases.push(("exp_shifted_f32 avx512", |_, _, o| Avx512Vnni::exp_shifted_f32(o, 1.0)));
            }
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
            for round in 0..=301 {
                for (i, (_, f)) in cases.iter().enumerate() {
                    // Fresh inputs each call (the in-place kernels would otherwise saturate).
                    Scalar::scores_f32(&acc, 0.01, &rs, 0.0625, 0.0, &mut out);
                    let t = Instant::now();
                    f(black_box(&acc), black_box(&rs), black_box(&mut out));
                    let e = t.elapsed().as_secs_f64();
                    black_box(&out);
                    if round > 0 {
                        times[i].push(e);
                    }
                }
            }
            println!("  {n} scores:");
            for ((label, _), t) in cases.iter().zip(times) {
                let t = median(t);
                println!("    {label:<26} {:8.2} us  {:6.2} ns/score", t * 1e6, t * 1e9 / n as f64);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !std::env::args().any(|a| a == "NONE") {
        x86::criterion_benches();
    }
    x86::summary();
    x86::elementwise_summary();
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("hal/benches/kernels.rs measures the x86-64 backends only");
}
