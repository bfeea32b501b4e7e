//! `spark-sim bench`: single-thread timings of the Spark FFN, Spark attention and whole
//! decode steps against their dense twins, measured in the same run (SPEC section 11),
//! with a single-thread read-bandwidth measurement as the memory bound.
//!
//! Weights and KV caches are random int8 built directly in memory. Several copies are
//! kept and rotated so that the bytes touched between two uses of one copy exceed the
//! last-level cache: every timed call reads its weights from DRAM, as decode does.
//! Timings are medians over `--iters` calls after a short warm-up.

use crate::format::ModelWriter;
use crate::hugemem::HugeBytes;
use crate::testmodel::for_each_weight;
use crate::ui::{
    fail, human_bytes, load_model, median, print_json, progress, read_model_file, usage, Backend, CliResult,
};
use crate::with_backend;
use spark_core::format::{F32Slice, QMatrix};
use spark_core::session::{
    attend_head, geglu_ffn, spark_ffn, AttnParams, AttnScratch, FfnScratch, GegluFfn, KvView, SparkFfn,
};
use spark_core::topk::{stat_topk_with, topk_capacity, topk_z};
use spark_core::{AttnKind, Config, DType, FfnKind, Model, Session, TensorId, TokenizerMeta};
use spark_hal::Kernels;
use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `bench` times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWhat {
    /// One FFN block: Spark FFN vs its dense GeGLU twin (f_g = f / 1.5, same parameters).
    Ffn,
    /// One attention layer at --ctx keys: Spark attention vs dense attention, all query heads.
    Attn,
    /// Whole-token decode of a model (Spark vs --dense twin, or a gemma2-2b-shaped 1-layer pair).
    Model,
}

/// Arguments of `spark-sim bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// ffn, attn or model.
    #[arg(value_enum)]
    pub what: BenchWhat,
    /// Named shape (gemma2-2b) or a .spark model whose shape (ffn, attn) or weights (model) to use.
    #[arg(long, default_value = "gemma2-2b", value_name = "gemma2-2b|MODEL.spark")]
    pub shape: String,
    /// Context length: keys attended (attn, default 4096) or tokens in the cache before the timed
    /// decode steps (model, default 256).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub ctx: Option<u64>,
    /// Threads (the runtime is single-threaded: only 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1))]
    pub threads: u32,
    /// Timed iterations (medians are reported).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100000))]
    pub iters: u64,
    /// Kernel backend.
    #[arg(long, value_enum, default_value_t)]
    pub backend: Backend,
    /// `bench model`: the dense twin model file to compare --shape MODEL.spark against.
    #[arg(long, value_name = "OTHER.spark")]
    pub dense: Option<PathBuf>,
    /// Last-level cache size to plan the weight rotation and the bandwidth buffer for
    /// [default: read from /sys/devices/system/cpu/cpu0/cache, else 64 MiB].
    #[arg(long, value_parser = crate::plan::parse_size, value_name = "BYTES")]
    pub llc: Option<u64>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

// ---------------------------------------------------------------------------------------
// Shapes, memory facts
// ---------------------------------------------------------------------------------------

/// The FFN and attention shape of a benchmark.
#[derive(Clone, Copy, Debug)]
pub struct BenchShape {
    /// Display name.
    pub name: &'static str,
    /// Residual width.
    pub d: usize,
    /// Spark FFN width.
    pub f: usize,
    /// Spark predictor width.
    pub r: usize,
    /// Spark target active neurons.
    pub k: usize,
    /// Dense twin GeGLU width (`f / 1.5`).
    pub fg: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv: usize,
    /// Head width.
    pub dh: usize,
    /// Spark attention predictor width.
    pub ra: usize,
    /// Spark attention key budget.
    pub ka: usize,
    /// `query_pre_attn_scalar`.
    pub qpas: f32,
    /// Attention logit soft-cap.
    pub softcap: f32,
    /// Top-k capacity factor.
    pub cap_factor: f32,
}

/// SPEC section 11's `gemma2-2b` shape.
pub const GEMMA2_2B: BenchShape = BenchShape {
    name: "gemma2-2b",
    d: 2304,
    f: 13824,
    r: 1024,
    k: 1106,
    fg: 9216,
    n_heads: 8,
    n_kv: 4,
    dh: 256,
    ra: 128,
    ka: 256,
    qpas: 256.0,
    softcap: 50.0,
    cap_factor: 2.0,
};

/// The shape of a model's config. A GeGLU model's Spark twin gets `f = 1.5 f_g`,
/// `r = d * 1024 / 2304` (the gemma2-2b ratio, even) and `k = 8%` of `f`; a dense-attention
/// model's Spark twin gets `ra = dh / 2`, `ka = 256`.
pub fn shape_of(c: &Config) -> BenchShape {
    let (d, dh) = (c.d_model as usize, c.head_dim as usize);
    let (f, r, k, fg) = match c.ffn_kind {
        FfnKind::Spark => (c.d_ff as usize, c.ffn_r as usize, c.ffn_k as usize, (c.d_ff as usize * 2).div_ceil(3)),
        FfnKind::Geglu => {
            let fg = c.d_ff as usize;
            let f = fg * 3 / 2;
            ((f), (d * 1024 / 2304).clamp(1, d - 1), (f * 8).div_ceil(100), fg)
        }
    };
    let (ra, ka) = match c.attn_kind {
        AttnKind::Spark => (c.attn_r as usize, c.attn_k as usize),
        AttnKind::Dense => ((dh / 2) & !1, 256),
    };
    BenchShape {
        name: "model",
        d,
        f,
        r,
        k,
        fg,
        n_heads: c.n_heads as usize,
        n_kv: c.n_kv_heads as usize,
        dh,
        ra: ra.max(2),
        ka,
        qpas: c.query_pre_attn_scalar,
        softcap: c.attn_logit_softcap,
        cap_factor: c.topk_cap_factor,
    }
}

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
fn read_pass(buf: &[u64], prefetch: bool) -> f64 {
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

/// xorshift64* filler for random weights (fast: 8 bytes per step).
struct Fill(u64);

impl Fill {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform int8 in [-127, 127].
    /// `n` uniform int8 values in [-127, 127], in a huge-page-advised buffer.
    fn i8s(&mut self, n: usize) -> HugeBytes {
        let mut v = HugeBytes::zeroed(n).expect("bench: anonymous mapping for the weights");
        for ch in v.chunks_mut(8) {
            let w = self.next().to_le_bytes();
            for (o, &b) in ch.iter_mut().zip(&w) {
                *o = if b == 0x80 { 0x81 } else { b };
            }
        }
        v
    }
    /// Standard normal-ish f32 (sum of four uniforms, scaled).
    fn gauss(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let x = self.next();
                let s: f32 = (0..4).map(|i| ((x >> (16 * i)) & 0xFFFF) as f32 / 65536.0).sum::<f32>() - 2.0;
                s * 1.732
            })
            .collect()
    }
    /// Per-row scales (LE f32 bytes) around `base`.
    fn scales(&mut self, rows: usize, base: f32) -> Vec<u8> {
        (0..rows)
            .flat_map(|_| (base * (0.75 + 0.5 * (self.next() >> 40) as f32 / (1u64 << 24) as f32)).to_le_bytes())
            .collect()
    }
}

/// A random int8 matrix with row scales, both in one huge-page-advised buffer (as in a
/// model file: the scale gathers of a sparse layer then hit the same 2 MiB pages):
/// `data [rows, cols]`, padding to 64 bytes, `scales [rows]` (f32 little-endian).
struct RandMatrix {
    mem: HugeBytes,
    rows: usize,
    cols: usize,
}

impl RandMatrix {
    fn new(fill: &mut Fill, rows: usize, cols: usize) -> Self {
        let base = 1.0 / (127.0 * (cols as f32).sqrt()) * 1.7;
        let at = (rows * cols).next_multiple_of(64);
        let mut mem = fill.i8s(at + 4 * rows);
        let scales = fill.scales(rows, base);
        mem[at..].copy_from_slice(&scales);
        RandMatrix { mem, rows, cols }
    }
    fn data(&self) -> &[i8] {
        &self.mem.as_i8()[..self.rows * self.cols]
    }
    fn scales(&self) -> &[u8] {
        &self.mem[(self.rows * self.cols).next_multiple_of(64)..]
    }
    fn q(&self) -> QMatrix<'_> {
        QMatrix { data: self.data(), scales: F32Slice(self.scales()), rows: self.rows, cols: self.cols }
    }
}

fn copies_for(bytes_per_copy: usize, llc: u64) -> usize {
    ((2 * llc) as usize).div_ceil(bytes_per_copy.max(1)).max(2)
}

fn fmt_count(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Measurements of one variant.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Variant {
    /// Median milliseconds per call.
    pub ms: f64,
    /// MACs per call.
    pub macs: f64,
    /// Bytes read per call (weights / cache, with scales).
    pub bytes: f64,
    /// Achieved GB/s (`bytes / median time`).
    pub gbs: f64,
}

impl Variant {
    fn new(times: &[f64], macs: f64, bytes: f64) -> Self {
        let s = median(times);
        Variant { ms: s * 1e3, macs, bytes, gbs: bytes / s.max(1e-12) / 1e9 }
    }
}

struct Common {
    llc: u64,
    llc_known: bool,
    /// The bound: the faster of the two read passes, bytes/s.
    bw: f64,
    /// The plain summing pass alone (the bound before page-entry prefetching), bytes/s.
    bw_plain: f64,
}

fn measure_common(a: &BenchArgs) -> Common {
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

fn resolve_shape(s: &str) -> CliResult<(BenchShape, Option<PathBuf>)> {
    if s == "gemma2-2b" {
        return Ok((GEMMA2_2B, None));
    }
    let p = Path::new(s);
    if s.ends_with(".spark") || p.is_file() {
        let blob = read_model_file(p)?;
        let m = load_model(&blob, p)?;
        return Ok((shape_of(&m.config), Some(p.to_path_buf())));
    }
    Err(usage(format!("unknown shape {s:?}: use gemma2-2b or the path of a .spark model")))
}

/// `spark-sim bench`.
pub fn bench(a: &BenchArgs) -> CliResult {
    let (shape, file) = resolve_shape(&a.shape)?;
    if a.dense.is_some() && a.what != BenchWhat::Model {
        return Err(usage("--dense only applies to `bench model`"));
    }
    match a.what {
        BenchWhat::Ffn => with_backend!(a.backend, bench_ffn(a, &shape)),
        BenchWhat::Attn => with_backend!(a.backend, bench_attn(a, &shape)),
        BenchWhat::Model => with_backend!(a.backend, bench_model(a, file.as_deref())),
    }
}

fn shape_label(a: &BenchArgs, s: &BenchShape) -> String {
    if s.name == "gemma2-2b" {
        "gemma2-2b".into()
    } else {
        a.shape.clone()
    }
}

// ---------------------------------------------------------------------------------------
// FFN
// ---------------------------------------------------------------------------------------

fn bench_ffn<K: Kernels>(a: &BenchArgs, s: &BenchShape) -> CliResult {
    let (d, f, r, k, fg) = (s.d, s.f, s.r, s.k, s.fg);
    let show = !a.json;
    let common = measure_common(a);
    let mut fill = Fill(a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let spark_bytes_copy = f * r + f * (d - r) + f * d + 12 * f;
    let dense_bytes_copy = 3 * fg * d + 12 * fg;
    let n_spark = copies_for(spark_bytes_copy, common.llc);
    let n_dense = copies_for(dense_bytes_copy, common.llc);
    let pb = progress((n_spark + n_dense) as u64, show, "weights");
    let mut spark = Vec::new();
    for _ in 0..n_spark {
        spark.push([
            RandMatrix::new(&mut fill, f, r),
            RandMatrix::new(&mut fill, f, d - r),
            RandMatrix::new(&mut fill, f, d),
        ]);
        pb.inc(1);
    }
    let mut dense = Vec::new();
    for _ in 0..n_dense {
        dense.push([
            RandMatrix::new(&mut fill, fg, d),
            RandMatrix::new(&mut fill, fg, d),
            RandMatrix::new(&mut fill, fg, d),
        ]);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let hs: Vec<Vec<f32>> = (0..8).map(|_| fill.gauss(d)).collect();
    let z = if k < f { topk_z(f, k) } else { 0.0 };
    let cap = if k < f { topk_capacity(f, k, s.cap_factor) } else { f };

    let (mut scores, mut idx, mut t) = (vec![0f32; f.max(fg)], vec![0u32; cap.max(fg)], vec![0f32; cap.max(fg)]);
    let mut xq = vec![0i8; d.max(cap).max(fg)];
    let mut kept = vec![0u32; cap.max(fg)];
    let mut acc = vec![0i32; d.max(f).max(fg)];
    let mut y = vec![0f32; d];
    let warm = (a.iters as usize / 10).clamp(2, 10);
    let total = warm + a.iters as usize;
    let (mut ts, mut td, mut active, mut tk) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Output-product rows each variant read (its selection less the zero coefficients).
    let (mut out_s, mut out_d) = (Vec::new(), Vec::new());
    // A page-prefetched read pass over as many bytes as the dense twin reads (at least
    // 1 MiB) after every Spark/dense pair: the read bandwidth under the same host
    // conditions as the pair.
    let mut read_mem = HugeBytes::zeroed(dense_bytes_copy.max(1 << 20) / 32 * 32)
        .map_err(|e| fail(format!("bench: anonymous mapping for the read buffer: {e}")))?;
    for (i, b) in read_mem.iter_mut().enumerate() {
        *b = i as u8;
    }
    let read_buf: &[u64] = bytemuck::cast_slice(&read_mem[..]);
    let mut tr = Vec::new();
    // Statistical top-k alone, timed on a copy of each call's own predictor scores.
    let (mut k_scores, mut k_idx, mut k_t) = (vec![0f32; f], vec![0u32; cap], vec![0f32; cap]);
    // Both variants share the scratch buffers (a macro so the borrows end with each call).
    macro_rules! scratch {
        () => {
            FfnScratch { scores: &mut scores, idx: &mut idx, t: &mut t, xq: &mut xq, kept: &mut kept, acc: &mut acc }
        };
    }
    let pb = progress(total as u64, show, "ffn");
    for it in 0..total {
        let h = &hs[it % hs.len()];
        let w = &spark[it % n_spark];
        let sw = SparkFfn { k1: w[0].q(), k2: w[1].q(), v: w[2].q(), k, z };
        let t0 = Instant::now();
        let run_s = spark_ffn::<K>(&sw, black_box(h), &mut scratch!(), &mut y);
        black_box(&y);
        let e1 = t0.elapsed().as_secs_f64();
        k_scores.copy_from_slice(&scores[..f]);
        let tk0 = Instant::now();
        black_box(stat_topk_with::<K>(black_box(&k_scores), k, z, &mut k_idx, &mut k_t));
        let e3 = tk0.elapsed().as_secs_f64();
        let w = &dense[it % n_dense];
        let dw = GegluFfn { wg: w[0].q(), wu: w[1].q(), wd_t: w[2].q(), k: fg, z: 0.0 };
        let t1 = Instant::now();
        let run_d = geglu_ffn::<K>(&dw, black_box(h), &mut scratch!(), &mut y);
        black_box(&y);
        let e2 = t1.elapsed().as_secs_f64();
        let e4 = read_pass(read_buf, true);
        if it >= warm {
            ts.push(e1);
            td.push(e2);
            active.push(run_s.sel.len as f64);
            out_s.push(run_s.out_rows as f64);
            out_d.push(run_d.out_rows as f64);
            tk.push(e3);
            tr.push(e4);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (act, v_rows, wd_rows) = (mean(&active), mean(&out_s), mean(&out_d));
    // What each variant read: Spark K1 and its scales, K2 rows and both scales of the
    // selected neurons, `V` rows with a non-zero coefficient; dense `Wg`, `Wu`, their
    // scales and the `Wd` rows with a non-zero coefficient.
    let sv = Variant::new(
        &ts,
        (f * r) as f64 + act * (d - r) as f64 + v_rows * d as f64,
        (f * r + 4 * f) as f64 + act * (d - r + 8) as f64 + v_rows * d as f64,
    );
    let dv =
        Variant::new(&td, (2 * d * fg) as f64 + wd_rows * d as f64, (2 * d * fg + 12 * fg) as f64 + wd_rows * d as f64);
    let nominal_spark_macs = (f * r + k * (d - r) + k * d) as f64;
    let topk_ms = 1e3 * median(&tk);
    // Per iteration: each variant's bandwidth over the bandwidth of that iteration's read
    // pass (medians over the iterations).
    let read_bytes = (read_buf.len() * 8) as f64;
    let of_read = |t: &[f64], bytes: f64| {
        let r: Vec<f64> =
            t.iter().zip(&tr).map(|(&tv, &trd)| (bytes / tv.max(1e-12)) / (read_bytes / trd.max(1e-12))).collect();
        median(&r)
    };
    let (spark_of_read, dense_of_read) = (of_read(&ts, sv.bytes), of_read(&td, dv.bytes));
    let read_gbs = read_bytes / median(&tr).max(1e-12) / 1e9;
    if show {
        println!(
            "statistical top-k alone (stats + selection on each call's predictor scores): {:.1} us = {:.2}% of the Spark FFN median (same run)",
            1e3 * topk_ms,
            100.0 * topk_ms / sv.ms.max(1e-12)
        );
    }
    report(
        a,
        "ffn",
        &shape_label(a, s),
        &format!(
            "d {d}, Spark f {f} r {r} k {k} (active mean {act:.0}, V rows read {v_rows:.0}); \
             dense twin GeGLU f_g {fg} (Wd rows read {wd_rows:.0}; rows with a zero int8 coefficient are skipped)"
        ),
        &common,
        (n_spark, n_spark * spark_bytes_copy, n_dense * dense_bytes_copy),
        (sv, dv, paired_speedup(&ts, &td)),
        ("Spark FFN", "dense GeGLU"),
        serde_json::json!({
            "d": d, "f": f, "r": r, "k": k, "f_g": fg, "active_mean": act,
            "spark_v_rows_mean": v_rows, "dense_wd_rows_mean": wd_rows,
            "nominal_spark_macs": nominal_spark_macs, "nominal_mac_ratio": dv.macs / nominal_spark_macs,
            "topk_ms": topk_ms, "topk_share": topk_ms / sv.ms.max(1e-12),
            "interleaved_read_gbs": read_gbs, "spark_of_interleaved_read": spark_of_read,
            "dense_of_interleaved_read": dense_of_read,
        }),
    )?;
    if show {
        println!(
            "interleaved read (one page-prefetched pass over {} after every Spark/dense pair, same run): median {read_gbs:.2} GB/s; \
             per iteration Spark {:.1}% / dense {:.1}% of that pass's bandwidth (medians)",
            human_bytes(read_bytes as u64),
            100.0 * spark_of_read,
            100.0 * dense_of_read
        );
    }
    Ok(())
}

/// The speedups of the individual iterations (`dense_i / spark_i`: each pair ran back to
/// back, so a slow phase of the host that spans both cancels), as (median, first quartile,
/// third quartile).
fn paired_speedup(spark: &[f64], dense: &[f64]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = spark.iter().zip(dense).map(|(s, d)| d / s.max(1e-12)).collect();
    if r.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    r.sort_by(f64::total_cmp);
    let q = |f: f64| r[((r.len() - 1) as f64 * f).round() as usize];
    (median(&r), q(0.25), q(0.75))
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &BenchArgs,
    what: &str,
    shape: &str,
    detail: &str,
    c: &Common,
    (copies, spark_total, dense_total): (usize, usize, usize),
    (sv, dv, paired): (Variant, Variant, (f64, f64, f64)),
    (sname, dname): (&str, &str),
    extra: serde_json::Value,
) -> CliResult {
    let bw_gbs = c.bw / 1e9;
    let speedup = dv.ms / sv.ms.max(1e-12);
    if a.json {
        let mut v = serde_json::json!({
            "bench": what, "shape": shape, "backend": a.backend.kernel_name(), "threads": 1, "iters": a.iters,
            "spark_ms": sv.ms, "dense_ms": dv.ms, "speedup": speedup,
            "speedup_paired_median": paired.0, "speedup_paired_q1": paired.1, "speedup_paired_q3": paired.2,
            "spark_macs": sv.macs, "dense_macs": dv.macs, "mac_ratio": dv.macs / sv.macs.max(1.0),
            "spark_bytes": sv.bytes, "dense_bytes": dv.bytes,
            "spark_gbs": sv.gbs, "dense_gbs": dv.gbs,
            "bandwidth_gbs": bw_gbs, "spark_of_bound": sv.gbs / bw_gbs, "dense_of_bound": dv.gbs / bw_gbs,
            "bandwidth_plain_gbs": c.bw_plain / 1e9,
            "llc_bytes": c.llc, "llc_detected": c.llc_known, "weight_copies": copies,
            "spark_total_bytes": spark_total, "dense_total_bytes": dense_total,
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        return print_json(&v);
    }
    let mut o = io::stdout().lock();
    writeln!(o, "bench {what}  shape {shape}: {detail}")?;
    writeln!(
        o,
        "kernels {}, 1 thread, {} iterations (median); working set Spark {} / dense {} rotated over copies, LLC {}{}",
        a.backend.kernel_name(),
        a.iters,
        human_bytes(spark_total as u64),
        human_bytes(dense_total as u64),
        human_bytes(c.llc),
        if c.llc_known { "" } else { " (assumed)" }
    )?;
    writeln!(
        o,
        "{:<16} {:>10} {:>12} {:>14} {:>8} {:>9}",
        "", "median ms", "MACs/token", "bytes/token", "GB/s", "of bound"
    )?;
    for (n, v) in [(sname, sv), (dname, dv)] {
        writeln!(
            o,
            "{n:<16} {:>10.3} {:>12} {:>14} {:>8.2} {:>8.1}%",
            v.ms,
            fmt_count(v.macs),
            human_bytes(v.bytes as u64),
            v.gbs,
            100.0 * v.gbs / bw_gbs
        )?;
    }
    writeln!(
        o,
        "speedup {speedup:.2}x (dense / Spark medians, same run); per-iteration pairs {:.2}x (quartiles {:.2}-{:.2}x); \
         MAC ratio {:.2}x, byte ratio {:.2}x",
        paired.0,
        paired.1,
        paired.2,
        dv.macs / sv.macs.max(1.0),
        dv.bytes / sv.bytes.max(1.0)
    )?;
    writeln!(
        o,
        "read bandwidth (single thread, huge-page-advised buffer of 4x LLC, the faster of a plain and a page-entry-prefetched \
         sum, best of 7 each): {bw_gbs:.2} GB/s (plain sum {:.2} GB/s: {:.1}% / {:.1}% of that)",
        c.bw_plain / 1e9,
        100.0 * sv.gbs / (c.bw_plain / 1e9),
        100.0 * dv.gbs / (c.bw_plain / 1e9)
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------

/// One layer's int8 KV cache for all kv heads, with its row scales, in one
/// huge-page-advised buffer as in the session arena (separate mappings per head part or
/// per scale vector would be too small for a 2 MiB page): per kv head
/// `K1 [n, ra] | K2 [n, rb] | V [n, dh]`, then per kv head the f32 scales
/// `K1 [n] | K2 [n] | V [n]`.
struct KvCopy {
    mem: HugeBytes,
    n: usize,
    ra: usize,
    rb: usize,
    dh: usize,
    nkv: usize,
}

impl KvCopy {
    fn new(fill: &mut Fill, nkv: usize, n: usize, ra: usize, rb: usize, dh: usize) -> Self {
        let i8_len = nkv * n * (ra + rb + dh);
        let mut mem = fill.i8s(i8_len.next_multiple_of(64) + nkv * 3 * n * 4);
        let scales: &mut [f32] = bytemuck::cast_slice_mut(&mut mem[i8_len.next_multiple_of(64)..]);
        for (part, sc) in scales.chunks_exact_mut(n).enumerate() {
            let w = [ra, rb, dh][part % 3];
            let base = 1.0 / 127.0 * (w.max(1) as f32).sqrt().recip() * 4.0;
            for (v, b) in sc.iter_mut().zip(fill.scales(n, base).chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        KvCopy { mem, n, ra, rb, dh, nkv }
    }
    fn view(&self, h: usize) -> KvView<'_> {
        let (n, ra, rb, dh) = (self.n, self.ra, self.rb, self.dh);
        let i8_len = self.nkv * n * (ra + rb + dh);
        let head = &self.mem.as_i8()[h * n * (ra + rb + dh)..(h + 1) * n * (ra + rb + dh)];
        let (k1, rest) = head.split_at(n * ra);
        let (k2, v) = rest.split_at(n * rb);
        let scales: &[f32] = bytemuck::cast_slice(&self.mem[i8_len.next_multiple_of(64)..]);
        let hs = &scales[h * 3 * n..(h + 1) * 3 * n];
        let k2_scale = if rb > 0 { &hs[n..2 * n] } else { &hs[n..n] };
        KvView { k1, k2, v, k1_scale: &hs[..n], k2_scale, v_scale: &hs[2 * n..], ra, rb }
    }
}

fn bench_attn<K: Kernels>(a: &BenchArgs, s: &BenchShape) -> CliResult {
    let n = a.ctx.unwrap_or(4096) as usize;
    let (nh, nkv, dh, ra, ka) = (s.n_heads, s.n_kv, s.dh, s.ra, s.ka);
    let rb = dh - ra;
    let show = !a.json;
    let common = measure_common(a);
    let mut fill = Fill(a.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let spark_copy = nkv * n * (dh + dh + 12);
    let dense_copy = nkv * n * (2 * dh + 8);
    let copies = copies_for(spark_copy.min(dense_copy), common.llc);
    let pb = progress((2 * copies) as u64, show, "kv cache");
    let mut spark = Vec::new();
    let mut dense = Vec::new();
    for _ in 0..copies {
        spark.push(KvCopy::new(&mut fill, nkv, n, ra, rb, dh));
        pb.inc(1);
        dense.push(KvCopy::new(&mut fill, nkv, n, dh, 0, dh));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let qs: Vec<Vec<f32>> = (0..8).map(|_| fill.gauss(nh * dh)).collect();
    let c = 1.0 / s.qpas.sqrt();
    let sparse = n > ka;
    let sp = AttnParams {
        spark: true,
        c,
        softcap: s.softcap,
        ka,
        sparse,
        z: if sparse { topk_z(n, ka) } else { 0.0 },
        cap: if sparse { topk_capacity(n, ka, s.cap_factor) } else { n },
    };
    let dp = AttnParams { spark: false, c, softcap: s.softcap, ka, sparse: false, z: 0.0, cap: n };
    let (mut scores, mut idx, mut w) = (vec![0f32; n], vec![0u32; n], vec![0f32; n]);
    let mut xq = vec![0i8; n.max(dh)];
    let mut kept = vec![0u32; n];
    let mut acc = vec![0i32; n.max(dh)];
    let mut out = vec![0f32; nh * dh];
    let group = nh / nkv;
    let warm = (a.iters as usize / 10).clamp(2, 10);
    let total = warm + a.iters as usize;
    let (mut ts, mut td, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    // V rows read per head (attended keys less those with a zero int8 coefficient).
    let (mut v_s, mut v_d) = (Vec::new(), Vec::new());
    let pb = progress(total as u64, show, "attn");
    for it in 0..total {
        let q = &qs[it % qs.len()];
        let mut run = |kv: &KvCopy, p: &AttnParams| -> (f64, usize, usize) {
            let t0 = Instant::now();
            let (mut sel, mut v_rows) = (0, 0);
            for hd in 0..nh {
                let view = kv.view(hd / group);
                let mut sc = AttnScratch {
                    scores: &mut scores,
                    idx: &mut idx,
                    w: &mut w,
                    xq: &mut xq,
                    kept: &mut kept,
                    acc: &mut acc,
                };
                let r = attend_head::<K>(
                    black_box(&q[hd * dh..(hd + 1) * dh]),
                    &view,
                    0,
                    n - 1,
                    p,
                    &mut sc,
                    &mut out[hd * dh..(hd + 1) * dh],
                );
                sel += r.len;
                v_rows += r.v_rows;
            }
            black_box(&out);
            (t0.elapsed().as_secs_f64(), sel, v_rows)
        };
        let (e1, sel, vs) = run(&spark[it % copies], &sp);
        let (e2, _, vd) = run(&dense[it % copies], &dp);
        if it >= warm {
            ts.push(e1);
            td.push(e2);
            keys.push(sel as f64 / nh as f64);
            v_s.push(vs as f64 / nh as f64);
            v_d.push(vd as f64 / nh as f64);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (sel, vs, vd) = (mean(&keys), mean(&v_s), mean(&v_d));
    let h = nh as f64;
    let nf = n as f64;
    // Per head: K1 rows and scales of every key; Spark also the K2 rows and both scales of
    // the attended keys, dense the V scales of every key; then the V rows read.
    let sv = Variant::new(
        &ts,
        h * (nf * ra as f64 + sel * rb as f64 + vs * dh as f64),
        h * (nf * (ra + 4) as f64 + sel * (rb + 8) as f64 + vs * dh as f64),
    );
    let dv = Variant::new(&td, h * (nf + vd) * dh as f64, h * (nf * (dh + 8) as f64 + vd * dh as f64));
    let kmin = (ka as f64).min(nf);
    let ceiling = 2.0 * nf * dh as f64 / (nf * ra as f64 + kmin * (rb + dh) as f64);
    report(
        a,
        "attn",
        &shape_label(a, s),
        &format!(
            "{nh} q heads / {nkv} kv heads, dh {dh}, Spark ra {ra} ka {ka}; ctx {n} keys (attended mean {sel:.0}; V rows read: Spark {vs:.0}, dense {vd:.0}, \
             a zero int8 coefficient skips its row); SPEC byte ceiling per kv head {ceiling:.2}x"
        ),
        &common,
        (copies, copies * spark_copy, copies * dense_copy),
        (sv, dv, paired_speedup(&ts, &td)),
        ("Spark attention", "dense attention"),
        serde_json::json!({"ctx": n, "n_heads": nh, "n_kv_heads": nkv, "head_dim": dh, "ra": ra, "ka": ka,
                           "attended_mean": sel, "spark_v_rows_mean": vs, "dense_v_rows_mean": vd,
                           "byte_ceiling": ceiling}),
    )
}

// ---------------------------------------------------------------------------------------
// Whole model
// ---------------------------------------------------------------------------------------

/// A `.spark` file for `cfg` with uniform random int8 weights (fast to build at any size).
pub fn synthetic_model(cfg: &Config, seed: u64) -> Vec<u8> {
    let mut fill = Fill(seed | 1);
    let mut w = ModelWriter::new(*cfg, TokenizerMeta::NONE);
    for_each_weight(cfg, |id, dtype, rows, cols| match dtype {
        DType::I8 => {
            let m = RandMatrix::new(&mut fill, rows, cols);
            w.add_raw(id, DType::I8, [rows as u32, cols as u32], bytemuck::cast_slice(m.data()).to_vec());
            let scale_kind = id.kind.scale().unwrap_or(id.kind);
            w.add_raw(
                TensorId { kind: scale_kind, layer: id.layer },
                DType::F32,
                [rows as u32, 1],
                m.scales().to_vec(),
            );
        }
        _ => w.add_f32(id, &vec![1.0f32; rows]),
    });
    w.finish()
}

/// The gemma2-2b-shaped one-layer Spark model and its dense twin (vocab 4096).
pub fn gemma2_2b_layer_pair(max_seq: u32) -> (Config, Config) {
    let s = GEMMA2_2B;
    let spark = Config {
        vocab_size: 4096,
        d_model: s.d as u32,
        n_layers: 1,
        n_heads: s.n_heads as u32,
        n_kv_heads: s.n_kv as u32,
        head_dim: s.dh as u32,
        d_ff: s.f as u32,
        ffn_kind: FfnKind::Spark,
        ffn_r: s.r as u32,
        ffn_k: s.k as u32,
        attn_kind: AttnKind::Spark,
        attn_r: s.ra as u32,
        attn_k: s.ka as u32,
        max_seq_len: max_seq,
        rope_theta: 10_000.0,
        norm_eps: 1e-6,
        query_pre_attn_scalar: s.qpas,
        attn_logit_softcap: s.softcap,
        final_logit_softcap: 30.0,
        sliding_window: 0,
        embed_scale: (s.d as f32).sqrt(),
        tie_embeddings: true,
        post_norms: true,
        topk_cap_factor: s.cap_factor,
    };
    let dense = Config {
        d_ff: s.fg as u32,
        ffn_kind: FfnKind::Geglu,
        ffn_r: 0,
        ffn_k: s.fg as u32,
        attn_kind: AttnKind::Dense,
        attn_r: 0,
        ..spark
    };
    (spark, dense)
}

struct Decoder<'m, 'a, K: Kernels> {
    sess: Session<'m, 'a, K>,
}

fn time_decode<K: Kernels>(
    a: &BenchArgs,
    models: &[(&str, &Model<'_>)],
    ctx: usize,
) -> CliResult<Vec<(Vec<f64>, Vec<spark_core::LayerStats>)>> {
    let iters = a.iters as usize;
    let max_seq = ctx + iters;
    let mut arenas =
        models.iter().map(|(_, m)| HugeBytes::zeroed(m.arena_bytes(max_seq))).collect::<io::Result<Vec<_>>>()?;
    let mut decs = Vec::new();
    for ((name, m), arena) in models.iter().zip(arenas.iter_mut()) {
        let sess = Session::<K>::with_max_seq(m, arena, max_seq).map_err(|e| fail(format!("{name}: {e}")))?;
        decs.push(Decoder { sess });
    }
    let vocab = models.iter().map(|(_, m)| m.config.vocab_size).min().unwrap_or(1);
    let mut fill = Fill(a.seed | 1);
    let toks: Vec<u32> = (0..max_seq).map(|_| (fill.next() % vocab as u64) as u32).collect();
    let pb = progress((ctx * decs.len()) as u64, !a.json, "prefill");
    for d in decs.iter_mut() {
        for &t in &toks[..ctx] {
            d.sess.step(t).map_err(|e| fail(e.to_string()))?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    let mut times = vec![Vec::new(); decs.len()];
    let pb = progress(iters as u64, !a.json, "decode");
    for &t in &toks[ctx..] {
        for (i, d) in decs.iter_mut().enumerate() {
            let t0 = Instant::now();
            black_box(d.sess.step(t).map_err(|e| fail(e.to_string()))?);
            times[i].push(t0.elapsed().as_secs_f64());
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(times.into_iter().zip(decs.iter()).map(|(t, d)| (t, d.sess.stats().to_vec())).collect())
}

fn bench_model<K: Kernels>(a: &BenchArgs, file: Option<&Path>) -> CliResult {
    let ctx = a.ctx.unwrap_or(256) as usize;
    let iters = a.iters as usize;
    let show = !a.json;
    let common = measure_common(a);
    let (spark_blob, dense_blob, label) = match file {
        None => {
            let (sc, dc) = gemma2_2b_layer_pair((ctx + iters).min(65536) as u32);
            if ctx + iters > 65536 {
                return Err(usage("--ctx + --iters must be <= 65536"));
            }
            let pb = progress(2, show, "model");
            // In huge-page-advised buffers, as `read_model_file` reads model files.
            let s = HugeBytes::copy_of(&synthetic_model(&sc, a.seed))?;
            pb.inc(1);
            let d = HugeBytes::copy_of(&synthetic_model(&dc, a.seed + 1))?;
            pb.finish_and_clear();
            (s, Some(d), "gemma2-2b-shaped 1-layer model (vocab 4096), Spark vs dense twin".to_string())
        }
        Some(p) => {
            let s = read_model_file(p)?;
            let d = match &a.dense {
                Some(dp) => Some(read_model_file(dp)?),
                None => None,
            };
            let label = match &a.dense {
                Some(dp) => format!("{} vs dense twin {}", p.display(), dp.display()),
                None => format!("{} (no --dense twin given: Spark only)", p.display()),
            };
            (s, d, label)
        }
    };
    let sp_path = file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<synthetic spark>"));
    let dn_path = a.dense.clone().unwrap_or_else(|| PathBuf::from("<synthetic dense>"));
    let sm = load_model(&spark_blob, &sp_path)?;
    let dm = match &dense_blob {
        Some(b) => Some(load_model(b, &dn_path)?),
        None => None,
    };
    for (m, p) in std::iter::once((&sm, &sp_path)).chain(dm.iter().map(|m| (m, &dn_path))) {
        if ctx + iters > m.config.max_seq_len as usize {
            return Err(fail(format!(
                "--ctx {ctx} + --iters {iters} exceeds {}'s context ({}): lower --ctx or --iters",
                p.display(),
                m.config.max_seq_len
            )));
        }
    }
    let mut list: Vec<(&str, &Model<'_>)> = vec![("spark", &sm)];
    if let Some(d) = &dm {
        list.push(("dense", d));
    }
    let res = time_decode::<K>(a, &list, ctx)?;
    let per_token_bytes = |m: &Model<'_>| m.blob().len() as f64;
    let sv = Variant::new(&res[0].0, 0.0, per_token_bytes(&sm));
    let dv = match (&dm, res.get(1)) {
        (Some(d), Some(r)) => Some(Variant::new(&r.0, 0.0, per_token_bytes(d))),
        _ => None,
    };
    let bw_gbs = common.bw / 1e9;
    let ffn_mean: Vec<f64> = res[0].1.iter().map(|s| s.ffn_active_mean()).collect();
    if a.json {
        return print_json(&serde_json::json!({
            "bench": "model", "shape": label, "backend": a.backend.kernel_name(), "threads": 1, "iters": a.iters,
            "ctx": ctx,
            "spark_ms": sv.ms, "dense_ms": dv.map(|v| v.ms),
            "speedup": dv.map(|v| v.ms / sv.ms.max(1e-12)),
            "spark_tokens_per_s": 1e3 / sv.ms, "dense_tokens_per_s": dv.map(|v| 1e3 / v.ms),
            "spark_file_bytes": sv.bytes, "dense_file_bytes": dv.map(|v| v.bytes),
            "bandwidth_gbs": bw_gbs, "spark_ffn_active_mean": ffn_mean,
            "llc_bytes": common.llc,
        }));
    }
    let mut o = io::stdout().lock();
    writeln!(o, "bench model  {label}")?;
    writeln!(
        o,
        "kernels {}, 1 thread, decode at context {ctx}..{} ({iters} timed steps, median)",
        a.backend.kernel_name(),
        ctx + iters
    )?;
    writeln!(o, "{:<8} {:>10} {:>10} {:>14}", "", "ms/token", "tokens/s", "file bytes")?;
    writeln!(o, "{:<8} {:>10.3} {:>10.1} {:>14}", "Spark", sv.ms, 1e3 / sv.ms, human_bytes(sv.bytes as u64))?;
    if let Some(v) = dv {
        writeln!(o, "{:<8} {:>10.3} {:>10.1} {:>14}", "dense", v.ms, 1e3 / v.ms, human_bytes(v.bytes as u64))?;
        writeln!(o, "speedup {:.2}x (dense / Spark, same run)", v.ms / sv.ms.max(1e-12))?;
    }
    let f = sm.config.d_ff as f64;
    let fr: Vec<String> = ffn_mean.iter().map(|m| format!("{:.1}%", 100.0 * m / f)).collect();
    writeln!(o, "Spark active FFN per layer: {}", fr.join(" "))?;
    writeln!(o, "read bandwidth (single thread): {bw_gbs:.2} GB/s")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::paired_speedup;

    #[test]
    fn paired_speedup_is_the_median_of_per_iteration_ratios() {
        // Ratios 3, 2, 1, 4, 5 (dense / Spark per pair): sorted 1 2 3 4 5.
        let spark = [1.0, 2.0, 4.0, 1.0, 1.0];
        let dense = [3.0, 4.0, 4.0, 4.0, 5.0];
        assert_eq!(paired_speedup(&spark, &dense), (3.0, 2.0, 4.0));
        // A slow host phase that slows both calls of one pair leaves its ratio unchanged.
        let (m, _, _) = paired_speedup(&[1.0, 10.0, 1.0], &[3.0, 30.0, 3.0]);
        assert_eq!(m, 3.0);
        assert_eq!(paired_speedup(&[], &[]), (0.0, 0.0, 0.0));
    }
}
