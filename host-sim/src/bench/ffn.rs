//! `bench ffn`: one FFN block, Spark FFN vs its dense GeGLU twin, each call reading its
//! weights from DRAM, with the statistical top-k timed alone and a read pass after every
//! Spark/dense pair.

use super::args::BenchArgs;
use super::machine::{measure_common, read_pass_on, rotation, Common};
use super::report::{paired_speedup, report, OneThreadSamples, Variant, WorkingSet};
use super::shape::{shape_label, BenchShape};
use super::weights::{Fill, RandBundle, RandMatrix};
use crate::hugemem::HugeBytes;
use crate::threads::Pool;
use crate::ui::{fail, human_bytes, median, progress, usage, CliResult};
use spark_core::exec::Executor;
use spark_core::ffn::{geglu_ffn_on, spark_ffn_on, FfnPlan, FfnScratch, GegluFfn, SparkFfn};
use spark_core::format::FfnBundle;
use spark_core::topk::stat_topk_with;
use spark_hal::Kernels;
use std::hint::black_box;
use std::io;
use std::time::Instant;

/// The weight copies of both variants, rotated so that every call reads its weights from
/// DRAM: Spark `K1 [f, r]` and the bundled `[K2 | V]` records (as in a version 2 model
/// file), dense `[Wg, Wu, Wd^T]` (`[f_g, d]` each), every matrix with its row scales.
struct FfnWeights {
    spark: Vec<(RandMatrix, RandBundle)>,
    dense: Vec<[RandMatrix; 3]>,
    /// Either rotation was capped below 2x LLC.
    capped: bool,
    /// Bytes of one Spark copy (with scales).
    spark_bytes: usize,
    /// Bytes of one dense copy (with scales).
    dense_bytes: usize,
}

impl FfnWeights {
    fn build(fill: &mut Fill, s: &BenchShape, llc: u64, show: bool) -> CliResult<Self> {
        let (d, f, r, fg) = (s.d, s.f, s.r, s.fg);
        let spark_bytes = f * r + 4 * f + FfnBundle::of_dims(d, r).stride * f + 8 * f;
        let dense_bytes = 3 * fg * d + 12 * fg;
        let plan = |bytes: usize, what: &str| {
            rotation(bytes, bytes, llc)
                .map_err(|e| usage(format!("bench ffn: the {what} weights of this shape are too large: {e}")))
        };
        let rs = plan(spark_bytes, "Spark")?;
        let rd = plan(dense_bytes, "dense")?;
        let (n_spark, n_dense) = (rs.copies, rd.copies);
        let mapped = |e: io::Error| fail(format!("bench ffn: cannot map the weight copies: {e}"));
        let pb = progress((n_spark + n_dense) as u64, show, "weights");
        let mut spark = Vec::new();
        for _ in 0..n_spark {
            spark.push((RandMatrix::new(fill, f, r).map_err(mapped)?, RandBundle::new(fill, f, d, r).map_err(mapped)?));
            pb.inc(1);
        }
        let mut dense = Vec::new();
        for _ in 0..n_dense {
            dense.push([
                RandMatrix::new(fill, fg, d).map_err(mapped)?,
                RandMatrix::new(fill, fg, d).map_err(mapped)?,
                RandMatrix::new(fill, fg, d).map_err(mapped)?,
            ]);
            pb.inc(1);
        }
        pb.finish_and_clear();
        Ok(FfnWeights { spark, dense, capped: rs.capped || rd.capped, spark_bytes, dense_bytes })
    }
}

/// The statistical top-k settings of both variants: the Spark FFN's (target `k`) and its
/// dense twin's (every neuron).
fn ffn_plans(s: &BenchShape) -> (FfnPlan, FfnPlan) {
    (FfnPlan::new(s.f, s.k, s.cap_factor), FfnPlan::new(s.fg, s.fg, s.cap_factor))
}

/// The buffer of the interleaved read pass: as many bytes as the dense twin reads (at
/// least 1 MiB), filled.
fn interleaved_read_buffer(dense_bytes: usize) -> CliResult<HugeBytes> {
    let mut read_mem = HugeBytes::zeroed(dense_bytes.max(1 << 20) / 32 * 32)
        .map_err(|e| fail(format!("bench: anonymous mapping for the read buffer: {e}")))?;
    for (i, b) in read_mem.iter_mut().enumerate() {
        *b = i as u8;
    }
    Ok(read_mem)
}

/// What the timed iterations measured (after the warm-up), one entry per iteration.
#[derive(Default)]
struct FfnSamples {
    /// Seconds of the Spark FFN call.
    spark: Vec<f64>,
    /// Seconds of the dense GeGLU call.
    dense: Vec<f64>,
    /// Seconds of the statistical top-k alone on the call's predictor scores.
    topk: Vec<f64>,
    /// Seconds of the interleaved read pass.
    read: Vec<f64>,
    /// Neurons the Spark FFN selected.
    active: Vec<f64>,
    /// Output-product rows the Spark FFN read (its selection less the zero coefficients).
    spark_v_rows: Vec<f64>,
    /// `Wd` rows the dense twin read.
    dense_wd_rows: Vec<f64>,
    /// With more than one thread: both variants again on one thread, each iteration.
    one: OneThreadSamples,
}

/// The timed loop: per iteration one Spark call, the top-k alone on a copy of its
/// predictor scores, one dense call (both on `pool`), and one page-prefetched read pass
/// over `read_buf` with every thread of `pool` (the read bandwidth under the same host
/// conditions as the pair); with more than one thread, then one Spark and one dense call
/// on one thread, on the copies half a rotation away.
fn time_ffn<K: Kernels>(
    a: &BenchArgs,
    pool: &Pool,
    s: &BenchShape,
    w: &FfnWeights,
    hs: &[Vec<f32>],
    read_buf: &[u64],
) -> FfnSamples {
    let (d, f, k, fg) = (s.d, s.f, s.k, s.fg);
    let (plan, dense_plan) = ffn_plans(s);
    let (z, cap) = (plan.z, plan.cap);
    let (n_spark, n_dense) = (w.spark.len(), w.dense.len());
    let (mut scores, mut idx, mut t) = (vec![0f32; f.max(fg)], vec![0u32; cap.max(fg)], vec![0f32; cap.max(fg)]);
    let mut xq = vec![0i8; d.max(cap).max(fg)];
    let mut kept = vec![0u32; cap.max(fg)];
    let mut acc = vec![0i32; d.max(f).max(fg)];
    let mut y = vec![0f32; d];
    let warm = (a.iters as usize / 10).clamp(2, 10);
    let total = warm + a.iters as usize;
    let mut out = FfnSamples::default();
    // Statistical top-k alone, timed on a copy of each call's own predictor scores.
    let (mut k_scores, mut k_idx, mut k_t) = (vec![0f32; f], vec![0u32; cap], vec![0f32; cap]);
    // Both variants share the scratch buffers (a macro so the borrows end with each call).
    macro_rules! scratch {
        () => {
            FfnScratch { scores: &mut scores, idx: &mut idx, t: &mut t, xq: &mut xq, kept: &mut kept, acc: &mut acc }
        };
    }
    let one = Pool::single();
    let pb = progress(total as u64, !a.json, "ffn");
    for it in 0..total {
        let h = &hs[it % hs.len()];
        let ws = &w.spark[it % n_spark];
        let sw = SparkFfn { k1: ws.0.q(), k2: ws.1.part(false), v: ws.1.part(true), plan };
        let t0 = Instant::now();
        let run_s = spark_ffn_on::<K, _>(pool, &sw, black_box(h), &mut scratch!(), &mut y);
        black_box(&y);
        let e1 = t0.elapsed().as_secs_f64();
        k_scores.copy_from_slice(&scores[..f]);
        let tk0 = Instant::now();
        black_box(stat_topk_with::<K>(black_box(&k_scores), k, z, &mut k_idx, &mut k_t));
        let e3 = tk0.elapsed().as_secs_f64();
        let wd = &w.dense[it % n_dense];
        let dw = GegluFfn { wg: wd[0].q(), wu: wd[1].q(), wd_t: wd[2].q(), plan: dense_plan };
        let t1 = Instant::now();
        let run_d = geglu_ffn_on::<K, _>(pool, &dw, black_box(h), &mut scratch!(), &mut y);
        black_box(&y);
        let e2 = t1.elapsed().as_secs_f64();
        let e4 = read_pass_on(pool, read_buf, true);
        let twins = (pool.threads() > 1).then(|| {
            let ws = &w.spark[(it + n_spark / 2) % n_spark];
            let sw = SparkFfn { k1: ws.0.q(), k2: ws.1.part(false), v: ws.1.part(true), plan };
            let t0 = Instant::now();
            spark_ffn_on::<K, _>(&one, &sw, black_box(h), &mut scratch!(), &mut y);
            black_box(&y);
            let e5 = t0.elapsed().as_secs_f64();
            let wd = &w.dense[(it + n_dense / 2) % n_dense];
            let dw = GegluFfn { wg: wd[0].q(), wu: wd[1].q(), wd_t: wd[2].q(), plan: dense_plan };
            let t1 = Instant::now();
            geglu_ffn_on::<K, _>(&one, &dw, black_box(h), &mut scratch!(), &mut y);
            black_box(&y);
            (e5, t1.elapsed().as_secs_f64())
        });
        if let (true, Some((e5, e6))) = (it >= warm, twins) {
            out.one.spark.push(e5);
            out.one.dense.push(e6);
        }
        if it >= warm {
            out.spark.push(e1);
            out.dense.push(e2);
            out.active.push(run_s.sel.len as f64);
            out.spark_v_rows.push(run_s.out_rows as f64);
            out.dense_wd_rows.push(run_d.out_rows as f64);
            out.topk.push(e3);
            out.read.push(e4);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    out
}

/// `bench ffn`.
pub(super) fn bench_ffn<K: Kernels>(a: &BenchArgs, pool: &Pool, s: &BenchShape) -> CliResult {
    let common = measure_common(a, pool)?;
    let mut fill = Fill(a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let w = FfnWeights::build(&mut fill, s, common.llc, !a.json)?;
    let hs: Vec<Vec<f32>> = (0..8).map(|_| fill.gauss(s.d)).collect();
    let read_mem = interleaved_read_buffer(w.dense_bytes)?;
    let read_buf: &[u64] = bytemuck::cast_slice(&read_mem[..]);
    let samples = time_ffn::<K>(a, pool, s, &w, &hs, read_buf);
    report_ffn(a, s, &common, &w, &samples, (read_buf.len() * 8) as f64)
}

/// Bytes and MACs of each variant from the measured selections, the top-k share, the
/// interleaved read figures, and the report.
fn report_ffn(
    a: &BenchArgs,
    s: &BenchShape,
    common: &Common,
    w: &FfnWeights,
    m: &FfnSamples,
    read_bytes: f64,
) -> CliResult {
    let (d, f, r, k, fg) = (s.d, s.f, s.r, s.k, s.fg);
    let show = !a.json;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (act, v_rows, wd_rows) = (mean(&m.active), mean(&m.spark_v_rows), mean(&m.dense_wd_rows));
    // What each variant read: Spark K1 and its scales, K2 rows and both scales of the
    // selected neurons, `V` rows with a non-zero coefficient; dense `Wg`, `Wu`, their
    // scales and the `Wd` rows with a non-zero coefficient.
    let sv = Variant::new(
        &m.spark,
        (f * r) as f64 + act * (d - r) as f64 + v_rows * d as f64,
        (f * r + 4 * f) as f64 + act * (d - r + 8) as f64 + v_rows * d as f64,
    );
    let dv = Variant::new(
        &m.dense,
        (2 * d * fg) as f64 + wd_rows * d as f64,
        (2 * d * fg + 12 * fg) as f64 + wd_rows * d as f64,
    );
    let nominal_spark_macs = (f * r + k * (d - r) + k * d) as f64;
    let topk_ms = 1e3 * median(&m.topk);
    // Per iteration: each variant's bandwidth over the bandwidth of that iteration's read
    // pass (medians over the iterations).
    let of_read = |t: &[f64], bytes: f64| {
        let r: Vec<f64> =
            t.iter().zip(&m.read).map(|(&tv, &trd)| (bytes / tv.max(1e-12)) / (read_bytes / trd.max(1e-12))).collect();
        median(&r)
    };
    let (spark_of_read, dense_of_read) = (of_read(&m.spark, sv.bytes), of_read(&m.dense, dv.bytes));
    let read_gbs = read_bytes / median(&m.read).max(1e-12) / 1e9;
    if show {
        println!(
            "statistical top-k alone (stats + selection on each call's predictor scores): {:.1} us = {:.2}% of the Spark FFN median (same run)",
            1e3 * topk_ms,
            100.0 * topk_ms / sv.ms.max(1e-12)
        );
    }
    let (n_spark, n_dense) = (w.spark.len(), w.dense.len());
    let twins = m.one.report(common.threads, &m.spark, &m.dense);
    let extra = serde_json::json!({
        "d": d, "f": f, "r": r, "k": k, "f_g": fg, "active_mean": act,
        "spark_v_rows_mean": v_rows, "dense_wd_rows_mean": wd_rows,
        "nominal_spark_macs": nominal_spark_macs, "nominal_mac_ratio": dv.macs / nominal_spark_macs,
        "topk_ms": topk_ms, "topk_share": topk_ms / sv.ms.max(1e-12),
        "interleaved_read_gbs": read_gbs, "spark_of_interleaved_read": spark_of_read,
        "dense_of_interleaved_read": dense_of_read,
    });
    report(
        a,
        "ffn",
        &shape_label(a, s),
        &format!(
            "d {d}, Spark f {f} r {r} k {k} (active mean {act:.0}, V rows read {v_rows:.0}); \
             dense twin GeGLU f_g {fg} (Wd rows read {wd_rows:.0}; rows with a zero int8 coefficient are skipped)"
        ),
        common,
        WorkingSet {
            copies: n_spark,
            capped: w.capped,
            spark_total: n_spark * w.spark_bytes,
            dense_total: n_dense * w.dense_bytes,
        },
        (sv, dv, paired_speedup(&m.spark, &m.dense)),
        ("Spark FFN", "dense GeGLU"),
        extra,
        twins,
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
