//! `bench model`: whole-token decode of a Spark model against its dense twin (given as
//! files, or the synthetic gemma2-2b-shaped pair: 26 layers and a 256,000-token vocabulary
//! by default, `--layers` and `--vocab` for smaller ones), through `Session::step`, at
//! every context of `--ctx` in one process over the same two models, beside the byte
//! ceiling of each context ([`super::ceiling`]).
//!
//! Each context is reached by filling the KV caches with synthetic int8 values
//! (`Session::fill_kv_synthetic`) or, with `--prefill`, by decoding tokens up to it; the
//! timed steps are real decode steps either way, Spark and dense interleaved token by
//! token, each variant taking every place of the round in turn. With `--threads N > 1`
//! each model also has a one-thread session stepped in the same rounds, so the N-thread
//! speedup is a ratio within one run (`thread_speedup_*`).

use super::args::{BenchArgs, MAX_CTX};
use super::ceiling::{token_bytes, TokenBytes};
use super::machine::{measure_common, Common};
use super::report::{paired_speedup, Variant};
use super::shape::GEMMA2_2B;
use super::weights::{matrix_scale, Fill};
use crate::arena::session_arena;
use crate::format::FileLayout;
use crate::hugemem::HugeBytes;
use crate::inputs::{load_model, read_model_file};
use crate::testmodel::for_each_weight;
use crate::threads::Pool;
use crate::ui::{fail, human_bytes, median, print_json, progress, spinner, usage, CliResult};
use spark_core::exec::Executor;
use spark_core::format::FfnBundle;
use spark_core::{AttnKind, Config, DType, FfnKind, LayerStats, Model, Session, TensorId, TensorKind, TokenizerMeta};
use spark_hal::Kernels;
use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A `.spark` file for `cfg` with uniform random int8 weights (row scales around
/// `1.7 / (127 sqrt(cols))`, norm weights 1), written straight into one huge-page-advised
/// buffer of the file's size (no other copy of the weights is made); fails only when the
/// buffer cannot be mapped or the file would exceed the format's 32-bit offsets.
pub fn synthetic_model(cfg: &Config, seed: u64) -> io::Result<HugeBytes> {
    synthetic_model_with(cfg, seed, &mut |_| {})
}

/// Bytes of all tensors of a model of `cfg` without a tokenizer (its file less the header
/// and the alignment padding).
pub fn tensor_bytes(cfg: &Config) -> u64 {
    let mut total = 0;
    for_each_weight(cfg, |_, dtype, rows, cols| {
        total += (rows * cols * dtype.size()) as u64 + if dtype == DType::I8 { 4 * rows as u64 } else { 0 };
    });
    total
}

/// What a tensor of a synthetic model holds.
#[derive(Clone, Copy)]
enum Content {
    /// Random int8 weights.
    Weights,
    /// The row scales of a matrix with this many columns.
    Scales(usize),
    /// Norm weights (1.0).
    Ones,
}

/// [`synthetic_model`], calling `written(bytes)` after each tensor it writes.
pub(super) fn synthetic_model_with(cfg: &Config, seed: u64, written: &mut dyn FnMut(u64)) -> io::Result<HugeBytes> {
    // Every tensor in file order, each matrix followed by its scales (as ModelWriter lays
    // them out).
    let mut specs = Vec::new();
    let mut content = Vec::new();
    // A Spark FFN's K2 and V are stored as one bundled `ffn.k2v` tensor (format version 2,
    // `FfnBundle`) at K2's place, each part keeping its scales.
    let bundle = (cfg.ffn_kind == FfnKind::Spark).then(|| FfnBundle::of(cfg));
    for_each_weight(cfg, |id, dtype, rows, cols| {
        match (id.kind, bundle) {
            (TensorKind::K2, Some(b)) => {
                specs.push((TensorId { kind: TensorKind::K2V, ..id }, dtype, [rows as u32, b.stride as u32]));
                content.push(Content::Weights);
            }
            (TensorKind::V, Some(_)) => {} // inside the layer's ffn.k2v
            _ => {
                specs.push((id, dtype, [rows as u32, cols as u32]));
                content.push(if dtype == DType::I8 { Content::Weights } else { Content::Ones });
            }
        }
        if let (DType::I8, Some(scale)) = (dtype, id.kind.scale()) {
            specs.push((TensorId { kind: scale, layer: id.layer }, DType::F32, [rows as u32, 1]));
            content.push(Content::Scales(cols));
        }
    });
    let layout = FileLayout::new(cfg, &TokenizerMeta::NONE, &specs).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the model is larger than a .spark file can be (4 GiB)")
    })?;
    let mut file = HugeBytes::zeroed(layout.file_len())?;
    let mut fill = Fill(seed | 1);
    for (i, c) in content.iter().enumerate() {
        let dst = &mut file[layout.range(i)];
        match *c {
            Content::Weights => fill.i8s_into(dst),
            Content::Scales(cols) => fill.scales_into(dst, matrix_scale(cols)),
            Content::Ones => dst.chunks_exact_mut(4).for_each(|o| o.copy_from_slice(&1f32.to_le_bytes())),
        }
        written(dst.len() as u64);
    }
    layout.seal(&mut file);
    Ok(file)
}

/// The gemma2-2b-shaped Spark model (Spark FFN and Spark attention) with `layers` layers and
/// a `vocab`-token tied embedding, and its dense twin (GeGLU FFN of width f / 1.5, dense
/// attention): SPEC section 11's shape. `layers` 26 and `vocab` 256000 is the whole model.
pub fn gemma2_2b_pair(layers: u32, vocab: u32, max_seq: u32) -> (Config, Config) {
    let (s, d) = gemma2_2b_layer_pair(max_seq);
    let with = |c: Config| Config { n_layers: layers, vocab_size: vocab, ..c };
    (with(s), with(d))
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

/// The measurements of one variant at one context.
struct Timed {
    /// Seconds of each timed step.
    times: Vec<f64>,
    /// Mean active FFN neurons per layer over the timed steps.
    ffn_active: Vec<f64>,
    /// Mean keys attended per query head, per layer, over the timed steps.
    attn_keys: Vec<f64>,
}

/// Per-layer means of what the steps between `before` and `after` selected.
fn stat_means(before: &[LayerStats], after: &[LayerStats]) -> (Vec<f64>, Vec<f64>) {
    let per = |f: &dyn Fn(&LayerStats) -> (u64, u64)| {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| {
                let ((sb, nb), (sa, na)) = (f(b), f(a));
                (sa - sb) as f64 / (na - nb).max(1) as f64
            })
            .collect::<Vec<_>>()
    };
    (per(&|s| (s.ffn_active_sum, s.tokens as u64)), per(&|s| (s.attn_keys_sum, s.attn_queries as u64)))
}

/// Every context of `ctxs` in turn: bring each session to the context (synthetic KV fill,
/// or with `--prefill` decoding tokens up to it), then `--iters` timed steps, the variants
/// interleaved token by token. Returns per context the measurements of each model on
/// `pool`, then, when `pool` has more than one thread, of each model on one thread (its
/// own session, stepped in the same rounds: the thread speedup is a ratio within one run).
fn time_decode<K: Kernels>(
    a: &BenchArgs,
    pool: &Pool,
    models: &[(&str, &Model<'_>)],
    ctxs: &[usize],
) -> CliResult<Vec<Vec<Timed>>> {
    let iters = a.iters as usize;
    let max_seq = ctxs.iter().max().copied().unwrap_or(0) + iters;
    let one = Pool::single();
    let mut runs: Vec<(&str, &Model<'_>, &Pool)> = models.iter().map(|&(n, m)| (n, m, pool)).collect();
    if pool.threads() > 1 {
        runs.extend(models.iter().map(|&(n, m)| (n, m, &one)));
    }
    let mut arenas =
        runs.iter().map(|(_, m, p)| session_arena(m, max_seq, p.threads())).collect::<CliResult<Vec<_>>>()?;
    let mut sessions = Vec::new();
    for ((name, m, p), arena) in runs.iter().zip(arenas.iter_mut()) {
        sessions.push(Session::<K, _>::with_executor(m, arena, max_seq, *p).map_err(|e| fail(format!("{name}: {e}")))?);
    }
    let vocab = models.iter().map(|(_, m)| m.config().vocab_size).min().unwrap_or(1);
    let mut fill = Fill(a.seed | 1);
    // The token at each position (the same stream for every context and variant).
    let toks: Vec<u32> = (0..max_seq).map(|_| (fill.next() % vocab as u64) as u32).collect();
    let run_err = |e: spark_core::RunError| fail(e.to_string());
    let mut out = Vec::new();
    for &ctx in ctxs {
        if a.prefill {
            // Continue the sequence where the previous context left it when it can.
            for s in sessions.iter_mut().filter(|s| s.pos() > ctx) {
                s.reset();
            }
            let todo: usize = sessions.iter().map(|s| ctx - s.pos()).sum();
            let pb = progress(todo as u64, !a.json, &format!("prefill {ctx}"));
            for s in sessions.iter_mut() {
                for &t in &toks[s.pos()..ctx] {
                    s.step(t).map_err(run_err)?;
                    pb.inc(1);
                }
            }
            pb.finish_and_clear();
        } else {
            for s in sessions.iter_mut() {
                s.fill_kv_synthetic(ctx, a.seed ^ ctx as u64).map_err(run_err)?;
            }
        }
        let before: Vec<Vec<LayerStats>> = sessions.iter().map(|s| s.stats().to_vec()).collect();
        let mut times = vec![Vec::new(); sessions.len()];
        let pb = progress(iters as u64, !a.json, &format!("ctx {ctx}"));
        for (step, &t) in toks[ctx..ctx + iters].iter().enumerate() {
            // Each variant takes every place of the round in turn: the first step of a
            // round measured up to 20 % slower than the others on the demo model.
            let n = sessions.len();
            for k in 0..n {
                let i = (k + step) % n;
                let s = &mut sessions[i];
                let t0 = Instant::now();
                black_box(s.step(t).map_err(run_err)?);
                times[i].push(t0.elapsed().as_secs_f64());
            }
            pb.inc(1);
        }
        pb.finish_and_clear();
        let timed = times
            .into_iter()
            .zip(sessions.iter().zip(&before))
            .map(|(times, (s, b))| {
                let (ffn_active, attn_keys) = stat_means(b, s.stats());
                Timed { times, ffn_active, attn_keys }
            })
            .collect();
        out.push(timed);
    }
    Ok(out)
}

/// The models of `bench model`, each in one huge-page-advised buffer (the dense twin may be
/// absent).
struct Blobs {
    spark: HugeBytes,
    dense: Option<HugeBytes>,
    /// What they are, for the report.
    label: String,
    /// Seconds to build (synthetic) or read (files) them.
    build_s: f64,
}

/// The two models of `bench model` with room for a context of `max_seq`: the synthetic
/// pair (`--layers`, `--vocab`), or the files.
fn model_blobs(a: &BenchArgs, file: Option<&Path>, max_seq: usize) -> CliResult<Blobs> {
    let t0 = Instant::now();
    match file {
        None => {
            let (layers, vocab) = (a.layers.unwrap_or(26), a.vocab.unwrap_or(256_000));
            let (sc, dc) = gemma2_2b_pair(layers, vocab, max_seq as u32);
            let mapped = |e: io::Error| fail(format!("bench model: cannot build the synthetic models: {e}"));
            let total = tensor_bytes(&sc) + tensor_bytes(&dc);
            let pb = progress(total >> 20, !a.json, "build MiB");
            let mut done = 0u64;
            let mut written = |b: u64| {
                done += b;
                pb.set_position(done >> 20);
            };
            let s = synthetic_model_with(&sc, a.seed, &mut written).map_err(mapped)?;
            let d = synthetic_model_with(&dc, a.seed + 1, &mut written).map_err(mapped)?;
            pb.finish_and_clear();
            let label = format!(
                "gemma2-2b-shaped {layers}-layer pair, vocab {vocab} (tied embedding): \
                 Spark (Spark FFN + Spark attention) vs dense twin (GeGLU FFN + dense attention)"
            );
            Ok(Blobs { spark: s, dense: Some(d), label, build_s: t0.elapsed().as_secs_f64() })
        }
        Some(p) => {
            let spark = read_model_file(p)?;
            let dense = match &a.dense {
                Some(dp) => Some(read_model_file(dp)?),
                None => None,
            };
            let label = match &a.dense {
                Some(dp) => format!("{} vs dense twin {}", p.display(), dp.display()),
                None => format!("{} (no --dense twin given: Spark only)", p.display()),
            };
            Ok(Blobs { spark, dense, label, build_s: t0.elapsed().as_secs_f64() })
        }
    }
}

/// `bench model`.
pub(super) fn bench_model<K: Kernels>(a: &BenchArgs, pool: &Pool, file: Option<&Path>) -> CliResult {
    let iters = a.iters as usize;
    let ctxs = match (&a.ctx, file) {
        (Some(c), _) => c.0.clone(),
        (None, None) => vec![512, 4096, 8192],
        (None, Some(_)) => vec![256],
    };
    let max_seq = ctxs.iter().max().copied().unwrap_or(0) + iters;
    if max_seq > MAX_CTX {
        return Err(usage(format!("the largest --ctx plus --iters must be at most {MAX_CTX}")));
    }
    let common = measure_common(a, pool)?;
    let blobs = model_blobs(a, file, max_seq)?;
    let t_load = Instant::now();
    let sp_path = file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<synthetic spark>"));
    let dn_path = a.dense.clone().unwrap_or_else(|| PathBuf::from("<synthetic dense>"));
    let pb = spinner(!a.json, "checking the models");
    let sm = load_model(&blobs.spark, &sp_path)?;
    let dm = match &blobs.dense {
        Some(b) => Some(load_model(b, &dn_path)?),
        None => None,
    };
    pb.finish_and_clear();
    let load_s = t_load.elapsed().as_secs_f64();
    for (m, p) in std::iter::once((&sm, &sp_path)).chain(dm.iter().map(|m| (m, &dn_path))) {
        if max_seq > m.config().max_seq_len as usize {
            return Err(fail(format!(
                "--ctx {} + --iters {iters} exceeds {}'s context ({}): lower --ctx or --iters",
                max_seq - iters,
                p.display(),
                m.config().max_seq_len
            )));
        }
    }
    let mut list: Vec<(&str, &Model<'_>)> = vec![("spark", &sm)];
    if let Some(d) = &dm {
        list.push(("dense", d));
    }
    let res = time_decode::<K>(a, pool, &list, &ctxs)?;
    let setup = Setup {
        label: &blobs.label,
        common: &common,
        spark: &sm,
        dense: dm.as_ref(),
        build_s: blobs.build_s,
        load_s,
        synthetic: file.is_none(),
    };
    let rows: Vec<Row> = ctxs.iter().zip(&res).map(|(&ctx, r)| Row::new(a, &setup, ctx, r)).collect();
    report_model(a, &setup, &rows)
}

/// What every context of a report shares.
struct Setup<'s, 'm> {
    label: &'s str,
    common: &'s Common,
    spark: &'s Model<'m>,
    dense: Option<&'s Model<'m>>,
    /// Seconds to build (or read) the models, and to validate them (`Model::load`).
    build_s: f64,
    load_s: f64,
    /// The synthetic pair (not files).
    synthetic: bool,
}

/// One context's figures.
struct Row {
    ctx: usize,
    /// Visible positions at the median timed step (what the byte ceiling counts).
    visible: usize,
    spark: Variant,
    dense: Option<Variant>,
    spark_bytes: TokenBytes,
    dense_bytes: Option<TokenBytes>,
    /// Per-iteration speedups (median, quartiles).
    paired: Option<(f64, f64, f64)>,
    spark_ffn_active: Vec<f64>,
    spark_attn_keys: Vec<f64>,
    /// With more than one thread: the same steps on one thread.
    one_thread: Option<OneThread>,
}

/// The single-threaded twins of one context's runs, stepped in the same rounds.
struct OneThread {
    /// The JSON fields ([`super::report::thread_fields`]).
    fields: serde_json::Value,
    spark_ms: f64,
    dense_ms: Option<f64>,
    /// Per-step (one-thread ms / N-thread ms): median, quartiles.
    spark_paired: (f64, f64, f64),
    dense_paired: Option<(f64, f64, f64)>,
}

impl Row {
    fn new(a: &BenchArgs, s: &Setup<'_, '_>, ctx: usize, r: &[Timed]) -> Row {
        // The timed steps decode positions ctx..ctx+iters; the median one sees this many.
        let visible = ctx + (a.iters as usize).div_ceil(2);
        let sb = token_bytes(s.spark.config(), visible, &r[0].ffn_active, &r[0].attn_keys);
        let db = s.dense.zip(r.get(1)).map(|(m, t)| token_bytes(m.config(), visible, &t.ffn_active, &t.attn_keys));
        Row {
            ctx,
            visible,
            spark: Variant::new(&r[0].times, 0.0, sb.total()),
            dense: db.zip(r.get(1)).map(|(b, t)| Variant::new(&t.times, 0.0, b.total())),
            spark_bytes: sb,
            dense_bytes: db,
            paired: r.get(1).map(|d| paired_speedup(&r[0].times, &d.times)),
            spark_ffn_active: r[0].ffn_active.clone(),
            spark_attn_keys: r[0].attn_keys.clone(),
            one_thread: OneThread::new(r, 1 + usize::from(s.dense.is_some())),
        }
    }
    fn speedup(&self) -> Option<f64> {
        self.dense.map(|d| d.ms / self.spark.ms.max(1e-12))
    }
    /// Dense bytes / Spark bytes.
    fn ceiling(&self) -> Option<f64> {
        self.dense.map(|d| d.bytes / self.spark.bytes.max(1.0))
    }
}

impl OneThread {
    /// From the runs of [`time_decode`] over `n` models (`None`: no one-thread runs).
    fn new(r: &[Timed], n: usize) -> Option<OneThread> {
        let (multi, one) = (r.get(..n)?, r.get(n..2 * n)?);
        let ms = |t: &Timed| median(&t.times) * 1e3;
        let twin = |i: usize| multi.get(i).map(|m| m.times.as_slice()).zip(one.get(i).map(|o| o.times.as_slice()));
        Some(OneThread {
            fields: super::report::thread_fields(twin(0)?, twin(1)),
            spark_ms: ms(&one[0]),
            dense_ms: one.get(1).map(ms),
            spark_paired: paired_speedup(&multi[0].times, &one[0].times),
            dense_paired: multi.get(1).zip(one.get(1)).map(|(m, o)| paired_speedup(&m.times, &o.times)),
        })
    }
}

/// The mean of `v` (0 when empty).
fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The text or JSON report of `bench model` (JSON: one object per context).
fn report_model(a: &BenchArgs, s: &Setup<'_, '_>, rows: &[Row]) -> CliResult {
    let c = s.common;
    let bw_gbs = c.bw / 1e9;
    let fill = if a.prefill { "prefill" } else { "synthetic" };
    let (scfg, dcfg) = (s.spark.config(), s.dense.map(|m| *m.config()));
    if a.json {
        for r in rows {
            let mut j = serde_json::json!({
                "bench": "model", "shape": s.label, "backend": a.backend.kernel_name(), "threads": c.threads,
                "iters": a.iters, "cpu_model": c.cpu, "ctx": r.ctx, "visible_at_median_step": r.visible,
                "kv_fill": fill, "synthetic_models": s.synthetic,
                "layers": scfg.n_layers, "vocab": scfg.vocab_size,
                "spark_ms": r.spark.ms, "dense_ms": r.dense.map(|v| v.ms),
                "speedup": r.speedup(),
                "speedup_paired_median": r.paired.map(|p| p.0), "speedup_paired_q1": r.paired.map(|p| p.1),
                "speedup_paired_q3": r.paired.map(|p| p.2),
                "spark_tokens_per_s": 1e3 / r.spark.ms, "dense_tokens_per_s": r.dense.map(|v| 1e3 / v.ms),
                "spark_bytes": r.spark.bytes, "dense_bytes": r.dense.map(|v| v.bytes),
                "spark_bytes_parts": r.spark_bytes, "dense_bytes_parts": r.dense_bytes,
                "ceiling": r.ceiling(), "of_ceiling": r.speedup().zip(r.ceiling()).map(|(x, y)| x / y),
                "spark_gbs": r.spark.gbs, "dense_gbs": r.dense.map(|v| v.gbs),
                "bandwidth_gbs": bw_gbs, "bandwidth_plain_gbs": c.bw_plain / 1e9,
                "spark_of_bound": r.spark.gbs / bw_gbs, "dense_of_bound": r.dense.map(|v| v.gbs / bw_gbs),
                "spark_file_bytes": s.spark.blob().len(), "dense_file_bytes": s.dense.map(|m| m.blob().len()),
                "spark_ffn_active_mean": r.spark_ffn_active, "spark_attn_keys_mean": r.spark_attn_keys,
                "spark_d_ff": scfg.d_ff, "dense_d_ff": dcfg.map(|d| d.d_ff),
                "build_s": s.build_s, "load_s": s.load_s, "llc_bytes": c.llc,
            });
            super::report::add_one_thread_bound(&mut j, c);
            // With more than one thread: the one-thread twins of the same steps.
            if let (Some(o), Some(t)) = (j.as_object_mut(), r.one_thread.as_ref().and_then(|t| t.fields.as_object())) {
                o.extend(t.clone());
            }
            print_json(&j)?;
        }
        return Ok(());
    }
    let mut o = io::stdout().lock();
    writeln!(o, "bench model  {}", s.label)?;
    writeln!(
        o,
        "cpu {}; kernels {}, {} thread(s); read bandwidth {bw_gbs:.2} GB/s ({} thread(s), best of 7)",
        c.cpu,
        a.backend.kernel_name(),
        c.threads,
        c.threads
    )?;
    super::report::one_thread_bound_line(&mut o, c)?;
    let files = match s.dense {
        Some(d) => {
            format!("Spark {} / dense {}", human_bytes(s.spark.blob().len() as u64), human_bytes(d.blob().len() as u64))
        }
        None => format!("Spark {}", human_bytes(s.spark.blob().len() as u64)),
    };
    writeln!(
        o,
        "models {files}, {} in {:.1} s, validated in {:.1} s",
        if s.synthetic { "built" } else { "read" },
        s.build_s,
        s.load_s
    )?;
    writeln!(
        o,
        "each context reached by {}; then {} timed decode steps, Spark and dense interleaved (rotating), medians",
        if a.prefill {
            "decoding random tokens up to it (--prefill)"
        } else {
            "a synthetic KV-cache fill (random int8; --prefill decodes real tokens instead)"
        },
        a.iters
    )?;
    writeln!(
        o,
        "{:>6} {:>9} {:>9} {:>8} {:>6} | {:>10} {:>10} {:>8} {:>7} | {:>13} {:>13} | {:>6} {:>6}",
        "ctx",
        "Spark ms",
        "dense ms",
        "speedup",
        "pairs",
        "Spark MB/t",
        "dense MB/t",
        "ceiling",
        "of ceil",
        "Spark GB/s",
        "dense GB/s",
        "FFN",
        "keys"
    )?;
    let dash = "-";
    for r in rows {
        let pct = |v: &Variant| format!("{:.1} ({:.0}%)", v.gbs, 100.0 * v.gbs / bw_gbs);
        writeln!(
            o,
            "{:>6} {:>9.3} {:>9} {:>8} {:>6} | {:>10.1} {:>10} {:>8} {:>7} | {:>13} {:>13} | {:>5.1}% {:>6.0}",
            r.ctx,
            r.spark.ms,
            r.dense.map_or(dash.into(), |v| format!("{:.3}", v.ms)),
            r.speedup().map_or(dash.into(), |x| format!("{x:.2}x")),
            r.paired.map_or(dash.into(), |p| format!("{:.2}x", p.0)),
            r.spark.bytes / 1e6,
            r.dense.map_or(dash.into(), |v| format!("{:.1}", v.bytes / 1e6)),
            r.ceiling().map_or(dash.into(), |x| format!("{x:.2}x")),
            r.speedup().zip(r.ceiling()).map_or(dash.into(), |(x, y)| format!("{:.0}%", 100.0 * x / y)),
            pct(&r.spark),
            r.dense.as_ref().map_or(dash.into(), pct),
            100.0 * mean(&r.spark_ffn_active) / scfg.d_ff as f64,
            mean(&r.spark_attn_keys),
        )?;
    }
    if rows.iter().any(|r| r.one_thread.is_some()) {
        writeln!(
            o,
            "{} threads against 1 (the same steps on a one-thread session of each model, in the same rounds):",
            c.threads
        )?;
        writeln!(
            o,
            "{:>6} {:>13} {:>8} {:>6} | {:>13} {:>8} {:>6}",
            "ctx", "Spark 1-thr ms", "speedup", "pairs", "dense 1-thr ms", "speedup", "pairs"
        )?;
        for r in rows {
            let Some(t) = &r.one_thread else { continue };
            writeln!(
                o,
                "{:>6} {:>13.3} {:>8} {:>6} | {:>13} {:>8} {:>6}",
                r.ctx,
                t.spark_ms,
                format!("{:.2}x", t.spark_ms / r.spark.ms.max(1e-12)),
                format!("{:.2}x", t.spark_paired.0),
                t.dense_ms.map_or(dash.into(), |x| format!("{x:.3}")),
                t.dense_ms.zip(r.dense).map_or(dash.into(), |(x, d)| format!("{:.2}x", x / d.ms.max(1e-12))),
                t.dense_paired.map_or(dash.into(), |p| format!("{:.2}x", p.0)),
            )?;
        }
    }
    writeln!(
        o,
        "speedup = dense / Spark median ms; pairs = median of the per-step ratios; MB/t = bytes each step must read \
         (weights and scales, KV rows at the median step, norms; bench::ceiling); ceiling = dense / Spark bytes; \
         of ceil = speedup / ceiling; FFN = Spark's mean active neurons (% of f); keys = Spark's mean keys per query head"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmodel::{small_dense_config, small_spark_config};
    use spark_core::Sequential;

    #[test]
    fn synthetic_models_load_and_decode_after_a_synthetic_kv_fill() {
        for (i, cfg) in [small_spark_config(), small_dense_config()].iter().enumerate() {
            let blob = synthetic_model(cfg, 5 + i as u64).unwrap();
            let m = Model::load(&blob).expect("a synthetic model is a valid file");
            let max_seq = cfg.max_seq_len as usize;
            let mut arena = vec![0u8; m.arena_bytes(max_seq)];
            let mut s = Session::<spark_hal::Native, Sequential>::with_max_seq(&m, &mut arena, max_seq).unwrap();
            s.step(3).unwrap();
            let n = 20;
            s.fill_kv_synthetic(n, 9).unwrap();
            assert_eq!(s.pos(), n);
            assert!(s.stats().iter().all(|l| l.tokens == 0), "the fill resets the statistics");
            for t in [1, 2, 3] {
                let logits = s.step(t).unwrap();
                assert!(logits.iter().all(|x| x.is_finite()));
            }
            assert_eq!(s.pos(), n + 3);
            let l0 = s.stats()[0];
            assert_eq!(l0.tokens, 3);
            // Spark: ka = 5 of the 21..23 visible keys (up to the capacity); dense: all.
            let keys = l0.attn_keys_mean();
            if cfg.attn_kind == AttnKind::Spark {
                assert!(keys > 0.0 && keys <= 10.0, "{keys}");
            } else {
                assert_eq!(keys, 22.0);
            }
            // The fill is deterministic: the same seed gives the same next logits.
            let mut again = |seed| {
                s.fill_kv_synthetic(n, seed).unwrap();
                s.step(4).unwrap().to_vec()
            };
            let (a, b, c) = (again(9), again(9), again(10));
            assert_eq!(a, b);
            assert_ne!(a, c);
            // Past the context: refused, nothing changed.
            assert!(s.fill_kv_synthetic(max_seq + 1, 1).is_err());
            assert_eq!(s.pos(), n + 1);
            s.fill_kv_synthetic(max_seq, 1).unwrap();
            assert!(s.step(0).is_err(), "a full context");
        }
    }

    #[test]
    fn the_full_pair_has_the_gemma2_2b_shape_and_fits_the_file_format() {
        let (s, d) = gemma2_2b_pair(26, 256_000, 8192 + 64);
        for c in [&s, &d] {
            c.validate().unwrap();
            assert_eq!((c.n_layers, c.vocab_size, c.d_model, c.tie_embeddings), (26, 256_000, 2304, true));
            // About 2.6 GB of int8, inside the format's 32-bit offsets.
            let bytes = tensor_bytes(c);
            assert!((2.55e9..2.7e9).contains(&(bytes as f64)), "{bytes}");
        }
        assert_eq!((s.d_ff, s.ffn_kind, s.attn_kind), (13824, FfnKind::Spark, AttnKind::Spark));
        assert_eq!((d.d_ff, d.ffn_kind, d.attn_kind), (9216, FfnKind::Geglu, AttnKind::Dense));
        let (one, _) = gemma2_2b_layer_pair(300);
        assert_eq!((one.n_layers, one.vocab_size), (1, 4096));
    }

    #[test]
    fn stat_means_count_only_the_steps_between_two_snapshots() {
        let mut a = LayerStats::EMPTY;
        a.tokens = 4;
        a.ffn_active_sum = 40;
        a.attn_queries = 8;
        a.attn_keys_sum = 80;
        let mut b = a;
        b.tokens += 2;
        b.ffn_active_sum += 30;
        b.attn_queries += 4;
        b.attn_keys_sum += 10;
        assert_eq!(stat_means(&[a], &[b]), (vec![15.0], vec![2.5]));
    }
}
