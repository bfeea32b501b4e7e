//! What a benchmark reports: per-variant medians, paired speedups, and the text or JSON
//! report shared by `bench ffn` and `bench attn`.

use super::args::BenchArgs;
use super::machine::{Common, MAX_COPIES, MAX_WORKING_SET};
use crate::ui::{human_bytes, median, print_json, CliResult};
use std::io::{self, Write};

/// The weight copies a benchmark rotated over.
#[derive(Clone, Copy, Debug)]
pub(super) struct WorkingSet {
    /// Copies of each variant.
    pub(super) copies: usize,
    /// The rotation was capped below 2x LLC.
    pub(super) capped: bool,
    /// Bytes of all Spark copies.
    pub(super) spark_total: usize,
    /// Bytes of all dense copies.
    pub(super) dense_total: usize,
}

/// A count with a k/M/G suffix (`4.97M`).
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
    pub(super) fn new(times: &[f64], macs: f64, bytes: f64) -> Self {
        let s = median(times);
        Variant { ms: s * 1e3, macs, bytes, gbs: bytes / s.max(1e-12) / 1e9 }
    }
}

/// The speedups of the individual iterations (`dense_i / spark_i`: each pair ran back to
/// back, so a slow phase of the host that spans both cancels), as (median, first quartile,
/// third quartile).
pub(super) fn paired_speedup(spark: &[f64], dense: &[f64]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = spark.iter().zip(dense).map(|(s, d)| d / s.max(1e-12)).collect();
    if r.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    r.sort_by(f64::total_cmp);
    let q = |f: f64| r[((r.len() - 1) as f64 * f).round() as usize];
    (median(&r), q(0.25), q(0.75))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn report(
    a: &BenchArgs,
    what: &str,
    shape: &str,
    detail: &str,
    c: &Common,
    ws: WorkingSet,
    (sv, dv, paired): (Variant, Variant, (f64, f64, f64)),
    (sname, dname): (&str, &str),
    extra: serde_json::Value,
    twins: Option<(serde_json::Value, String)>,
) -> CliResult {
    let WorkingSet { copies, capped, spark_total, dense_total } = ws;
    let bw_gbs = c.bw / 1e9;
    let speedup = dv.ms / sv.ms.max(1e-12);
    if a.json {
        let mut v = serde_json::json!({
            "bench": what, "shape": shape, "backend": a.backend.kernel_name(), "threads": c.threads, "iters": a.iters,
            "spark_ms": sv.ms, "dense_ms": dv.ms, "speedup": speedup,
            "speedup_paired_median": paired.0, "speedup_paired_q1": paired.1, "speedup_paired_q3": paired.2,
            "spark_macs": sv.macs, "dense_macs": dv.macs, "mac_ratio": dv.macs / sv.macs.max(1.0),
            "spark_bytes": sv.bytes, "dense_bytes": dv.bytes,
            "spark_gbs": sv.gbs, "dense_gbs": dv.gbs,
            "bandwidth_gbs": bw_gbs, "spark_of_bound": sv.gbs / bw_gbs, "dense_of_bound": dv.gbs / bw_gbs,
            "bandwidth_plain_gbs": c.bw_plain / 1e9,
            "cpu_model": c.cpu, "llc_bytes": c.llc, "llc_detected": c.llc_known, "weight_copies": copies, "copies_capped": capped,
            "spark_total_bytes": spark_total, "dense_total_bytes": dense_total,
        });
        for e in std::iter::once(&extra).chain(twins.as_ref().map(|t| &t.0)) {
            if let (Some(o), Some(e)) = (v.as_object_mut(), e.as_object()) {
                o.extend(e.clone());
            }
        }
        add_one_thread_bound(&mut v, c);
        return print_json(&v);
    }
    let mut o = io::stdout().lock();
    writeln!(o, "bench {what}  shape {shape}: {detail}")?;
    writeln!(
        o,
        "kernels {}, {} thread(s), {} iterations (median); working set Spark {} / dense {} rotated over copies, LLC {}{}",
        a.backend.kernel_name(),
        c.threads,
        a.iters,
        human_bytes(spark_total as u64),
        human_bytes(dense_total as u64),
        human_bytes(c.llc),
        if c.llc_known { "" } else { " (assumed)" }
    )?;
    if capped {
        writeln!(
            o,
            "note: the rotation is capped at {MAX_COPIES} copies and {} per variant: the working set is below 2x LLC, so part of it is read from cache",
            human_bytes(MAX_WORKING_SET)
        )?;
    }
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
        "read bandwidth ({} thread(s), huge-page-advised buffer of 4x LLC, the faster of a plain and a page-entry-prefetched \
         sum, best of 7 each): {bw_gbs:.2} GB/s (plain sum {:.2} GB/s: {:.1}% / {:.1}% of that)",
        c.threads,
        c.bw_plain / 1e9,
        100.0 * sv.gbs / (c.bw_plain / 1e9),
        100.0 * dv.gbs / (c.bw_plain / 1e9)
    )?;
    one_thread_bound_line(&mut o, c)?;
    if let Some((_, line)) = twins {
        writeln!(o, "{line}")?;
    }
    Ok(())
}

/// JSON `bandwidth_one_thread_gbs` and `bandwidth_thread_ratio` (N-thread bound / one-thread
/// bound, measured interleaved) when the run has more than one thread.
pub(super) fn add_one_thread_bound(v: &mut serde_json::Value, c: &Common) {
    if let Some(b1) = c.bw_one_thread {
        v["bandwidth_one_thread_gbs"] = (b1 / 1e9).into();
        v["bandwidth_thread_ratio"] = (c.bw / b1.max(1.0)).into();
    }
}

/// The text line of [`add_one_thread_bound`] (nothing with one thread).
pub(super) fn one_thread_bound_line(o: &mut impl Write, c: &Common) -> io::Result<()> {
    if let Some(b1) = c.bw_one_thread {
        writeln!(
            o,
            "read bandwidth on 1 thread (passes interleaved with the {}-thread ones): {:.2} GB/s; the {}-thread bound is {:.2}x it",
            c.threads,
            b1 / 1e9,
            c.threads,
            c.bw / b1.max(1.0)
        )?;
    }
    Ok(())
}

/// The one-thread twins of an N-thread run: every iteration also runs each variant on
/// one thread (on another weight or cache copy), so the N-thread speedup is a ratio
/// within the run. Empty when the run has one thread.
#[derive(Default)]
pub(super) struct OneThreadSamples {
    /// Seconds of each one-thread Spark call.
    pub(super) spark: Vec<f64>,
    /// Seconds of each one-thread dense call.
    pub(super) dense: Vec<f64>,
}

impl OneThreadSamples {
    /// JSON fields (`spark_ms_one_thread`, `dense_ms_one_thread`, `speedup_one_thread`,
    /// `thread_speedup_spark` / `_dense` = one-thread median / N-thread median, and the
    /// medians of the per-iteration ratios) and the text line, against the N-thread samples;
    /// `None` without twins.
    pub(super) fn report(&self, threads: usize, spark: &[f64], dense: &[f64]) -> Option<(serde_json::Value, String)> {
        if self.spark.is_empty() || self.dense.is_empty() {
            return None;
        }
        let ms = |t: &[f64]| 1e3 * median(t);
        let (s1, d1, sn, dn) = (ms(&self.spark), ms(&self.dense), ms(spark), ms(dense));
        let (ps, pd) = (paired_speedup(spark, &self.spark), paired_speedup(dense, &self.dense));
        let json = thread_fields((spark, &self.spark), Some((dense, &self.dense)));
        let text = format!(
            "one thread, same iterations (other copies): Spark {s1:.3} ms, dense {d1:.3} ms (dense / Spark {:.2}x); \
             {threads} threads against 1: Spark {:.2}x (pairs {:.2}x), dense {:.2}x (pairs {:.2}x)",
            d1 / s1.max(1e-12),
            s1 / sn.max(1e-12),
            ps.0,
            d1 / dn.max(1e-12),
            pd.0
        );
        Some((json, text))
    }
}

/// The JSON fields of an N-thread run's one-thread twins, from the per-iteration seconds
/// `(N threads, one thread)` of the Spark variant and, when there is one, the dense one:
/// `spark_ms_one_thread`, `thread_speedup_spark` (one-thread median / N-thread median) and
/// the per-iteration ratios' median and quartiles (`_paired_median`, `_q1`, `_q3`); the same
/// for dense (`_paired_median` only) and `speedup_one_thread` (dense / Spark on one thread).
pub(super) fn thread_fields(spark: (&[f64], &[f64]), dense: Option<(&[f64], &[f64])>) -> serde_json::Value {
    let ms = |t: &[f64]| 1e3 * median(t);
    // `paired_speedup(a, b)` is the median of b / a per iteration.
    let ps = paired_speedup(spark.0, spark.1);
    let s1 = ms(spark.1);
    let mut j = serde_json::json!({
        "spark_ms_one_thread": s1, "thread_speedup_spark": s1 / ms(spark.0).max(1e-12),
        "thread_speedup_spark_paired_median": ps.0, "thread_speedup_spark_paired_q1": ps.1,
        "thread_speedup_spark_paired_q3": ps.2,
    });
    if let Some((dn, d1)) = dense {
        let d1ms = ms(d1);
        j["dense_ms_one_thread"] = d1ms.into();
        j["thread_speedup_dense"] = (d1ms / ms(dn).max(1e-12)).into();
        j["thread_speedup_dense_paired_median"] = paired_speedup(dn, d1).0.into();
        j["speedup_one_thread"] = (d1ms / s1.max(1e-12)).into();
    }
    j
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
