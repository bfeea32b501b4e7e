//! `bench attn`: one attention layer over an int8 KV cache of `--ctx` keys, Spark
//! attention vs dense attention over all query heads, each call reading its cache from
//! DRAM.

use super::args::BenchArgs;
use super::machine::{measure_common, rotation, Common, Rotation};
use super::report::{paired_speedup, report, OneThreadSamples, Variant, WorkingSet};
use super::shape::{shape_label, BenchShape};
use super::weights::Fill;
use crate::hugemem::HugeBytes;
use crate::threads::Pool;
use crate::ui::{fail, human_bytes, progress, usage, CliResult};
use spark_core::attention::{attend_heads_on, AttnParams, AttnScratch, HeadSlot, KvView, MAX_HEAD_SLOTS};
use spark_core::exec::Executor;
use spark_hal::arena::Arena;
use spark_hal::Kernels;
use std::hint::black_box;
use std::io;
use std::time::Instant;

/// One layer's int8 KV cache for all kv heads, with its row scales, in one
/// huge-page-advised buffer as in the session arena (separate mappings per head part or
/// per scale vector would be too small for a 2 MiB page): per kv head
/// `K1 [n, ra] | [K2 | V] [n, rb + dh]` (the session's bundled records), then per kv head
/// the f32 scales `K1 [n] | [K2, V] [n, 2]`; all of it `off` bytes (`--cache-offset`)
/// past the page-aligned start of the mapping.
struct KvCopy {
    mem: HugeBytes,
    off: usize,
    n: usize,
    ra: usize,
    rb: usize,
    dh: usize,
    nkv: usize,
}

impl KvCopy {
    #[allow(clippy::too_many_arguments)]
    fn new(fill: &mut Fill, nkv: usize, n: usize, ra: usize, rb: usize, dh: usize, off: usize) -> io::Result<Self> {
        let i8_len = nkv * n * (ra + rb + dh);
        let mut mem = fill.i8s(off + i8_len.next_multiple_of(64) + nkv * 3 * n * 4)?;
        let scales: &mut [f32] = bytemuck::cast_slice_mut(&mut mem[off + i8_len.next_multiple_of(64)..]);
        let base = |w: usize| 1.0 / 127.0 * (w.max(1) as f32).sqrt().recip() * 4.0;
        for head in scales.chunks_exact_mut(3 * n) {
            let (k1s, kvs) = head.split_at_mut(n);
            for (v, b) in k1s.iter_mut().zip(fill.scales(n, base(ra)).chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            let (k2s, vs) = (fill.scales(n, base(rb)), fill.scales(n, base(dh)));
            for (j, pair) in kvs.chunks_exact_mut(2).enumerate() {
                let f = |b: &[u8]| f32::from_le_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]]);
                pair[0] = f(&k2s);
                pair[1] = f(&vs);
            }
        }
        Ok(KvCopy { mem, off, n, ra, rb, dh, nkv })
    }
    fn view(&self, h: usize) -> KvView<'_> {
        let (n, ra, rb, dh) = (self.n, self.ra, self.rb, self.dh);
        let i8_len = self.nkv * n * (ra + rb + dh);
        let head = &self.mem.as_i8()[self.off..][h * n * (ra + rb + dh)..(h + 1) * n * (ra + rb + dh)];
        let (k1, kv) = head.split_at(n * ra);
        let scales: &[f32] = bytemuck::cast_slice(&self.mem[self.off + i8_len.next_multiple_of(64)..]);
        let hs = &scales[h * 3 * n..(h + 1) * 3 * n];
        KvView { k1, kv, k1_scale: &hs[..n], kv_scale: &hs[n..], ra, rb }
    }
}

/// The KV-cache copies of both variants, rotated so that every call reads its cache from
/// DRAM (Spark: `K1 [n, ra] | [K2 | V] [n, dh - ra + dh]`; dense: `K [n, dh] | V`).
struct KvCopies {
    spark: Vec<KvCopy>,
    dense: Vec<KvCopy>,
    /// The rotation was capped below 2x LLC.
    capped: bool,
    /// Bytes of one Spark copy (with scales).
    spark_bytes: usize,
    /// Bytes of one dense copy (with scales).
    dense_bytes: usize,
}

impl KvCopies {
    fn build(fill: &mut Fill, s: &BenchShape, n: usize, off: usize, llc: u64, show: bool) -> CliResult<Self> {
        let (nkv, dh, ra) = (s.n_kv, s.dh, s.ra);
        let rb = dh - ra;
        let spark_bytes = nkv * n * (dh + dh + 12);
        let dense_bytes = nkv * n * (2 * dh + 8);
        let Rotation { copies, capped } = rotation(spark_bytes.min(dense_bytes), spark_bytes.max(dense_bytes), llc)
            .map_err(|e| usage(format!("bench attn: the KV cache of --ctx {n} is too large: {e}; lower --ctx")))?;
        let mapped = |e: io::Error| {
            fail(format!(
                "bench attn: cannot map {copies} copies of the KV cache ({} each): {e}",
                human_bytes(spark_bytes as u64)
            ))
        };
        let pb = progress((2 * copies) as u64, show, "kv cache");
        let mut spark = Vec::new();
        let mut dense = Vec::new();
        for _ in 0..copies {
            spark.push(KvCopy::new(fill, nkv, n, ra, rb, dh, off).map_err(mapped)?);
            pb.inc(1);
            dense.push(KvCopy::new(fill, nkv, n, dh, 0, dh, off).map_err(mapped)?);
            pb.inc(1);
        }
        pb.finish_and_clear();
        Ok(KvCopies { spark, dense, capped, spark_bytes, dense_bytes })
    }
}

/// The attention settings of both variants at `n` keys: Spark (top-k of `ka` keys when
/// `n > ka`) and dense.
fn attn_params(s: &BenchShape, n: usize) -> (AttnParams, AttnParams) {
    let sp = AttnParams::from_parts(true, s.ka, s.cap_factor, s.qpas, s.softcap, n);
    let dp = AttnParams::from_parts(false, s.ka, s.cap_factor, s.qpas, s.softcap, n);
    (sp, dp)
}

/// What the timed iterations measured (after the warm-up), one entry per iteration.
#[derive(Default)]
struct AttnSamples {
    /// Seconds of the Spark call (all query heads).
    spark: Vec<f64>,
    /// Seconds of the dense call.
    dense: Vec<f64>,
    /// Keys Spark attended, mean per head.
    keys: Vec<f64>,
    /// V rows Spark read per head (attended keys less those with a zero int8 coefficient).
    spark_v_rows: Vec<f64>,
    /// V rows dense attention read per head.
    dense_v_rows: Vec<f64>,
    /// With more than one thread: both variants again on one thread, each iteration.
    one: OneThreadSamples,
}

/// The timed loop: per iteration all query heads of one Spark call and one dense call,
/// each on its next cache copy; with more than one thread, then both again on one
/// thread, on the copies half a rotation away.
fn time_attn<K: Kernels>(
    a: &BenchArgs,
    pool: &Pool,
    s: &BenchShape,
    n: usize,
    kv: &KvCopies,
    qs: &[Vec<f32>],
) -> AttnSamples {
    let (nh, nkv, dh) = (s.n_heads, s.n_kv, s.dh);
    let copies = kv.spark.len();
    let (sp, dp) = attn_params(s, n);
    // One head slot per thread (as a session's arena has): the heads run at once.
    let slots = pool.threads().min(nh).min(MAX_HEAD_SLOTS);
    // Carved once, outside the timed calls (carving zeroes the scratch).
    let mut slot_mem = vec![0u8; slots * AttnScratch::bytes(n, dh, n) + spark_hal::arena::ARENA_ALIGN];
    let mut arena = Arena::new(&mut slot_mem);
    let mut ss: Vec<HeadSlot<'_>> = (0..slots)
        .map(|_| AttnScratch::carve(&mut arena, n, dh, n).map(HeadSlot::new).expect("sized for the slots"))
        .collect();
    let mut out = vec![0f32; nh * dh];
    let group = nh / nkv;
    let warm = (a.iters as usize / 10).clamp(2, 10);
    let total = warm + a.iters as usize;
    let mut m = AttnSamples::default();
    let one = Pool::single();
    let pb = progress(total as u64, !a.json, "attn");
    for it in 0..total {
        let q = &qs[it % qs.len()];
        let mut run = |pool: &Pool, kv: &KvCopy, p: &AttnParams| -> (f64, usize, usize) {
            let t0 = Instant::now();
            let (mut sel, mut v_rows) = (0, 0);
            let view = |hd: usize| kv.view(hd / group);
            let ss = &mut ss[..slots.min(pool.threads())];
            attend_heads_on::<K, _>(pool, black_box(q), view, 0, n - 1, p, ss, &mut out, |_, _, r| {
                sel += r.len;
                v_rows += r.v_rows;
            });
            black_box(&out);
            (t0.elapsed().as_secs_f64(), sel, v_rows)
        };
        let (e1, sel, vs) = run(pool, &kv.spark[it % copies], &sp);
        let (e2, _, vd) = run(pool, &kv.dense[it % copies], &dp);
        if pool.threads() > 1 {
            let half = (it + copies / 2) % copies;
            let (e3, _, _) = run(&one, &kv.spark[half], &sp);
            let (e4, _, _) = run(&one, &kv.dense[half], &dp);
            if it >= warm {
                m.one.spark.push(e3);
                m.one.dense.push(e4);
            }
        }
        if it >= warm {
            m.spark.push(e1);
            m.dense.push(e2);
            m.keys.push(sel as f64 / nh as f64);
            m.spark_v_rows.push(vs as f64 / nh as f64);
            m.dense_v_rows.push(vd as f64 / nh as f64);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    m
}

/// `bench attn`.
pub(super) fn bench_attn<K: Kernels>(a: &BenchArgs, pool: &Pool, s: &BenchShape) -> CliResult {
    let n = a.ctx.as_ref().map_or(4096, |c| c.0[0]);
    let common = measure_common(a, pool)?;
    let mut fill = Fill(a.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let off = a.cache_offset.unwrap_or(0);
    let kv = KvCopies::build(&mut fill, s, n, off, common.llc, !a.json)?;
    let qs: Vec<Vec<f32>> = (0..8).map(|_| fill.gauss(s.n_heads * s.dh)).collect();
    let m = time_attn::<K>(a, pool, s, n, &kv, &qs);
    report_attn(a, s, n, off, &common, &kv, &m)
}

/// Bytes and MACs of each variant from the measured selections, the SPEC byte ceiling,
/// and the report.
fn report_attn(
    a: &BenchArgs,
    s: &BenchShape,
    n: usize,
    off: usize,
    common: &Common,
    kv: &KvCopies,
    m: &AttnSamples,
) -> CliResult {
    let (nh, nkv, dh, ra, ka) = (s.n_heads, s.n_kv, s.dh, s.ra, s.ka);
    let rb = dh - ra;
    let copies = kv.spark.len();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (sel, vs, vd) = (mean(&m.keys), mean(&m.spark_v_rows), mean(&m.dense_v_rows));
    let h = nh as f64;
    let nf = n as f64;
    // Per head: K1 rows and scales of every key; Spark also the K2 rows and both scales of
    // the attended keys, dense the V scales of every key; then the V rows read.
    let sv = Variant::new(
        &m.spark,
        h * (nf * ra as f64 + sel * rb as f64 + vs * dh as f64),
        h * (nf * (ra + 4) as f64 + sel * (rb + 8) as f64 + vs * dh as f64),
    );
    let dv = Variant::new(&m.dense, h * (nf + vd) * dh as f64, h * (nf * (dh + 8) as f64 + vd * dh as f64));
    let kmin = (ka as f64).min(nf);
    let ceiling = 2.0 * nf * dh as f64 / (nf * ra as f64 + kmin * (rb + dh) as f64);
    let twins = m.one.report(common.threads, &m.spark, &m.dense);
    let extra = serde_json::json!({"ctx": n, "n_heads": nh, "n_kv_heads": nkv, "head_dim": dh, "ra": ra, "ka": ka,
                                       "attended_mean": sel, "spark_v_rows_mean": vs, "dense_v_rows_mean": vd,
                                       "byte_ceiling": ceiling, "cache_offset": off});
    report(
        a,
        "attn",
        &shape_label(a, s),
        &format!(
            "{nh} q heads / {nkv} kv heads, dh {dh}, Spark ra {ra} ka {ka}; ctx {n} keys (attended mean {sel:.0}; V rows read: Spark {vs:.0}, dense {vd:.0}, \
             a zero int8 coefficient skips its row); SPEC byte ceiling per kv head {ceiling:.2}x; caches {off} bytes past a page start"
        ),
        common,
        WorkingSet {
            copies,
            capped: kv.capped,
            spark_total: copies * kv.spark_bytes,
            dense_total: copies * kv.dense_bytes,
        },
        (sv, dv, paired_speedup(&m.spark, &m.dense)),
        ("Spark attention", "dense attention"),
        extra,
        twins,
    )
}
