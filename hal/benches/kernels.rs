//! `gemv_i8` at the `gemma2-2b` FFN shapes on x86-64, single thread, against the machine's
//! single-thread read bandwidth measured by this same binary (SPEC section 11).
//!
//! Shapes: `up` = W `[9216, 2304]` (rows of d = 2304, the gate/up projection) and `down` =
//! W `[2304, 9216]` (rows of f = 9216), 21.2 MB of int8 weights each. Each iteration uses the
//! next of `COPIES` copies of the weights (85 MB in all, more than the 32 MiB LLC of the
//! machine measured here), so the weights stream from DRAM as they do at decode time.
//! Also `l2`, a cache-resident `[256, 1024]` (4 copies = 1 MiB), and the sparse kernels
//! over every 8th row of `up` (1152 rows, about the `k = 1106` rows a Spark FFN selects):
//! `gemv_rows_i8` (the K2 gather) and `gemv_t_rows_i8` (the `V` product).
//! Backends: `scalar` (the oracle), `avx2`, `avx512-vnni` (when the CPU has it) and `auto`
//! (what `Native` dispatches to).
//!
//! Bandwidth: one pass summing every u64 of the same rotating copies (the bytes a gemv must
//! read). The bound for a kernel is `weight bytes / bandwidth`.
//!
//! Run: `cargo bench -p spark-hal --bench kernels`. After the criterion groups a plain
//! interleaved timing loop prints per-backend medians, GB/s and the ratio to the bandwidth.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use criterion::{Criterion, Throughput};
    use spark_hal::testing::pattern_i8;
    use spark_hal::x86::avx2::Avx2;
    use spark_hal::x86::avx512vnni::Avx512Vnni;
    use spark_hal::x86::Auto;
    use spark_hal::{Kernels, Scalar};
    use std::hint::black_box;
    use std::time::Instant;

    const D: usize = 2304;
    const F: usize = 9216;
    const COPIES: usize = 4;
    /// The two DRAM-streaming shapes, and a cache-resident one (4 x 256 KiB: L2-sized).
    const SHAPES: [(&str, usize, usize); 3] = [("up", F, D), ("down", D, F), ("l2", 256, 1024)];
    /// `gemv_rows_i8` over every `GATHER`-th row of `up` (1152 of 9216 rows, about the
    /// `k = 1106` rows of a Spark FFN's K2 gather).
    const GATHER: usize = 8;

    /// Rotating copies of one weight matrix (rows x cols) plus its activations.
    struct Mat {
        rows: usize,
        cols: usize,
        copies: Vec<Vec<i8>>,
        x: Vec<i8>,
        y: Vec<i32>,
        next: usize,
        /// `Some((rows, transposed))`: run `gemv_rows_i8` (or, transposed, `gemv_t_rows_i8`
        /// with coefficients `c`) over these rows instead of `gemv_i8`.
        gather: Option<(Vec<u32>, bool)>,
        c: Vec<i8>,
    }

    impl Mat {
        fn new(rows: usize, cols: usize) -> Self {
            let base: Vec<i8> = pattern_i8(rows * cols, 12345).collect();
            let copies = (0..COPIES).map(|_| base.clone()).collect();
            let y = vec![0; rows.max(cols)];
            Mat { rows, cols, copies, x: pattern_i8(cols, 99).collect(), y, next: 0, gather: None, c: Vec::new() }
        }
        fn gathering(mut self, every: usize, transposed: bool) -> Self {
            let g: Vec<u32> = (0..self.rows as u32).step_by(every).collect();
            self.c = pattern_i8(g.len(), 5).collect();
            self.gather = Some((g, transposed));
            self
        }
        /// Weight bytes one run must read.
        fn bytes(&self) -> usize {
            self.gather.as_ref().map_or(self.rows, |g| g.0.len()) * self.cols
        }
        fn run<K: Kernels>(&mut self) {
            let w = &self.copies[self.next];
            self.next = (self.next + 1) % COPIES;
            match &self.gather {
                None => K::gemv_i8(black_box(w), self.cols, black_box(&self.x), &mut self.y[..self.rows]),
                Some((g, false)) => {
                    K::gemv_rows_i8(black_box(w), self.cols, g, black_box(&self.x), &mut self.y[..g.len()])
                }
                Some((g, true)) => {
                    let y = &mut self.y[..self.cols];
                    y.fill(0);
                    K::gemv_t_rows_i8(black_box(w), self.cols, g, black_box(&self.c), y)
                }
            }
            black_box(&self.y);
        }
        fn read_all_once(&mut self) -> u64 {
            let w = &self.copies[self.next];
            self.next = (self.next + 1) % COPIES;
            read_sum(w)
        }
    }

    /// Sum of every u64 in `b` (a pure streaming read).
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

    type Runner = (&'static str, fn(&mut Mat));

    fn runners() -> Vec<Runner> {
        let mut v: Vec<Runner> = vec![("scalar", |m| m.run::<Scalar>())];
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
        for (name, rows, cols) in [("up", F, D), ("down", D, F)] {
            let mut m = Mat::new(rows, cols);
            let mut g = c.benchmark_group(format!("gemv_i8_{name}_{rows}x{cols}"));
            g.throughput(Throughput::Bytes(m.bytes() as u64));
            for (label, f) in runners() {
                g.bench_function(label, |b| b.iter(|| f(&mut m)));
            }
            g.bench_function("read_bandwidth", |b| b.iter(|| black_box(m.read_all_once())));
            g.finish();
        }
        c.final_summary();
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    /// Interleaved timing of every backend and the bandwidth pass, medians, ratios.
    pub fn summary() {
        println!("\nsummary (single thread, medians of 31 interleaved rounds, Auto = {}):", Auto::selected_name());
        println!("  (bandwidth: one pass summing the same rotating weight copies; bound = bytes read / bandwidth)");
        let mats = SHAPES
            .into_iter()
            .map(|(name, rows, cols)| (format!("gemv_i8 {name} [{rows} x {cols}]"), Mat::new(rows, cols)))
            .chain((0..2).map(|t| {
                let title = ["gemv_rows_i8", "gemv_t_rows_i8"][t];
                (format!("{title} every {GATHER}th row of up [{F} x {D}]"), Mat::new(F, D).gathering(GATHER, t == 1))
            }));
        for (title, mut m) in mats {
            let rs = runners();
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); rs.len() + 1];
            for round in 0..32 {
                for (i, (_, f)) in rs.iter().enumerate() {
                    let t = Instant::now();
                    f(&mut m);
                    if round > 0 {
                        times[i].push(t.elapsed().as_secs_f64());
                    }
                }
                let t = Instant::now();
                black_box(m.read_all_once());
                if round > 0 {
                    times[rs.len()].push(t.elapsed().as_secs_f64());
                }
            }
            let gb = m.bytes() as f64 / 1e9;
            let bw_t = median(times[rs.len()].clone());
            println!(
                "  {title}: {:.2} MB of weights read; read bandwidth {:.2} GB/s ({:.3} ms per full pass)",
                gb * 1e3,
                m.copies[0].len() as f64 / 1e9 / bw_t,
                bw_t * 1e3
            );
            // The bound: the bytes this kernel must read at the measured bandwidth.
            let bound = bw_t * m.bytes() as f64 / m.copies[0].len() as f64;
            for (i, (label, _)) in rs.iter().enumerate() {
                let t = median(times[i].clone());
                println!(
                    "    {label:<12} {:9.1} us  {:6.2} GB/s  {:5.1}% of bandwidth ({:.2}x the bound)",
                    t * 1e6,
                    gb / t,
                    100.0 * bound / t,
                    t / bound
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn main() {
    x86::criterion_benches();
    x86::summary();
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("hal/benches/kernels.rs measures the x86-64 backends only");
}
