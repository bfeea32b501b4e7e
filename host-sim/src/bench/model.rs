//! `bench model`: whole-token decode of a Spark model against its dense twin (given as
//! files, or a synthetic gemma2-2b-shaped one-layer pair), through `Session::step`.

use super::args::BenchArgs;
use super::machine::{measure_common, Common};
use super::report::Variant;
use super::shape::GEMMA2_2B;
use super::weights::{Fill, RandMatrix};
use crate::arena::session_arena;
use crate::format::ModelWriter;
use crate::hugemem::HugeBytes;
use crate::inputs::{load_model, read_model_file};
use crate::testmodel::for_each_weight;
use crate::threads::Pool;
use crate::ui::{fail, human_bytes, print_json, progress, usage, CliResult};
use spark_core::{AttnKind, Config, DType, FfnKind, Model, Session, TensorId, TokenizerMeta};
use spark_hal::Kernels;
use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A `.spark` file for `cfg` with uniform random int8 weights (fast to build at any size);
/// fails only when a weight buffer cannot be mapped.
pub fn synthetic_model(cfg: &Config, seed: u64) -> io::Result<Vec<u8>> {
    let mut fill = Fill(seed | 1);
    let mut w = ModelWriter::new(*cfg, TokenizerMeta::NONE);
    let mut failed = None;
    for_each_weight(cfg, |id, dtype, rows, cols| match dtype {
        DType::I8 => {
            let m = match RandMatrix::new(&mut fill, rows, cols) {
                Ok(m) => m,
                Err(e) => {
                    failed.get_or_insert(e);
                    return;
                }
            };
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
    match failed {
        Some(e) => Err(e),
        None => Ok(w.finish()),
    }
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

struct Decoder<'m, 'a, 'p, K: Kernels> {
    sess: Session<'m, 'a, K, &'p Pool>,
}

fn time_decode<K: Kernels>(
    a: &BenchArgs,
    pool: &Pool,
    models: &[(&str, &Model<'_>)],
    ctx: usize,
) -> CliResult<Vec<(Vec<f64>, Vec<spark_core::LayerStats>)>> {
    let iters = a.iters as usize;
    let max_seq = ctx + iters;
    let mut arenas = models.iter().map(|(_, m)| session_arena(m, max_seq)).collect::<CliResult<Vec<_>>>()?;
    let mut decs = Vec::new();
    for ((name, m), arena) in models.iter().zip(arenas.iter_mut()) {
        let sess = Session::<K, _>::with_executor(m, arena, max_seq, pool).map_err(|e| fail(format!("{name}: {e}")))?;
        decs.push(Decoder { sess });
    }
    let vocab = models.iter().map(|(_, m)| m.config().vocab_size).min().unwrap_or(1);
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

/// The two model files of `bench model` in huge-page-advised buffers (the dense twin may be
/// absent) and a label saying what they are.
fn model_blobs(a: &BenchArgs, file: Option<&Path>, ctx: usize) -> CliResult<(HugeBytes, Option<HugeBytes>, String)> {
    let iters = a.iters as usize;
    match file {
        None => {
            let (sc, dc) = gemma2_2b_layer_pair((ctx + iters).min(65536) as u32);
            if ctx + iters > 65536 {
                return Err(usage("--ctx + --iters must be <= 65536"));
            }
            let pb = progress(2, !a.json, "model");
            let mapped = |e: io::Error| fail(format!("bench model: cannot map the synthetic models: {e}"));
            // In huge-page-advised buffers, as `read_model_file` reads model files.
            let s = HugeBytes::copy_of(&synthetic_model(&sc, a.seed).map_err(mapped)?).map_err(mapped)?;
            pb.inc(1);
            let d = HugeBytes::copy_of(&synthetic_model(&dc, a.seed + 1).map_err(mapped)?).map_err(mapped)?;
            pb.finish_and_clear();
            Ok((s, Some(d), "gemma2-2b-shaped 1-layer model (vocab 4096), Spark vs dense twin".to_string()))
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
            Ok((s, d, label))
        }
    }
}

/// `bench model`.
pub(super) fn bench_model<K: Kernels>(a: &BenchArgs, pool: &Pool, file: Option<&Path>) -> CliResult {
    let ctx = a.ctx.unwrap_or(256) as usize;
    let iters = a.iters as usize;
    let common = measure_common(a, pool)?;
    let (spark_blob, dense_blob, label) = model_blobs(a, file, ctx)?;
    let sp_path = file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<synthetic spark>"));
    let dn_path = a.dense.clone().unwrap_or_else(|| PathBuf::from("<synthetic dense>"));
    let sm = load_model(&spark_blob, &sp_path)?;
    let dm = match &dense_blob {
        Some(b) => Some(load_model(b, &dn_path)?),
        None => None,
    };
    for (m, p) in std::iter::once((&sm, &sp_path)).chain(dm.iter().map(|m| (m, &dn_path))) {
        if ctx + iters > m.config().max_seq_len as usize {
            return Err(fail(format!(
                "--ctx {ctx} + --iters {iters} exceeds {}'s context ({}): lower --ctx or --iters",
                p.display(),
                m.config().max_seq_len
            )));
        }
    }
    let mut list: Vec<(&str, &Model<'_>)> = vec![("spark", &sm)];
    if let Some(d) = &dm {
        list.push(("dense", d));
    }
    let res = time_decode::<K>(a, pool, &list, ctx)?;
    let per_token_bytes = |m: &Model<'_>| m.blob().len() as f64;
    let sv = Variant::new(&res[0].0, 0.0, per_token_bytes(&sm));
    let dv = match (&dm, res.get(1)) {
        (Some(d), Some(r)) => Some(Variant::new(&r.0, 0.0, per_token_bytes(d))),
        _ => None,
    };
    let ffn_mean: Vec<f64> = res[0].1.iter().map(|s| s.ffn_active_mean()).collect();
    report_model(a, &label, ctx, &common, (sv, dv), &ffn_mean, sm.config().d_ff as f64)
}

/// The text or JSON report of `bench model`.
fn report_model(
    a: &BenchArgs,
    label: &str,
    ctx: usize,
    common: &Common,
    (sv, dv): (Variant, Option<Variant>),
    ffn_mean: &[f64],
    d_ff: f64,
) -> CliResult {
    let iters = a.iters as usize;
    let bw_gbs = common.bw / 1e9;
    if a.json {
        return print_json(&serde_json::json!({
            "bench": "model", "shape": label, "backend": a.backend.kernel_name(), "threads": common.threads, "iters": a.iters,
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
        "kernels {}, {} thread(s), decode at context {ctx}..{} ({iters} timed steps, median)",
        a.backend.kernel_name(),
        common.threads,
        ctx + iters
    )?;
    writeln!(o, "{:<8} {:>10} {:>10} {:>14}", "", "ms/token", "tokens/s", "file bytes")?;
    writeln!(o, "{:<8} {:>10.3} {:>10.1} {:>14}", "Spark", sv.ms, 1e3 / sv.ms, human_bytes(sv.bytes as u64))?;
    if let Some(v) = dv {
        writeln!(o, "{:<8} {:>10.3} {:>10.1} {:>14}", "dense", v.ms, 1e3 / v.ms, human_bytes(v.bytes as u64))?;
        writeln!(o, "speedup {:.2}x (dense / Spark, same run)", v.ms / sv.ms.max(1e-12))?;
    }
    let fr: Vec<String> = ffn_mean.iter().map(|m| format!("{:.1}%", 100.0 * m / d_ff)).collect();
    writeln!(o, "Spark active FFN per layer: {}", fr.join(" "))?;
    writeln!(o, "read bandwidth ({} thread(s)): {bw_gbs:.2} GB/s", common.threads)?;
    Ok(())
}
