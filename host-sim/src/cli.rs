//! Subcommand implementations for `inspect`, `random-model` and `convert` (the others have
//! their own modules). Each returns a one-line error (exit code 1) instead of panicking.
//! Tested by `tests/cli.rs`, which runs the binary.

use crate::format::parse_table;
use crate::inputs::{load_model, read_model_file};
use crate::tokenizer::BpeTokenizer;
use crate::ui::{fail, human_bytes, note, print_json, CliResult};
use spark_core::tensor::DType;
use spark_core::{AttnKind, Config, FfnKind, Model};
use std::fmt;
use std::io::{self, Write};
use std::path::Path;

/// Parameter counts by part.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ParamCounts {
    /// Embedding (and untied head).
    pub embedding: u64,
    /// Attention projections, all layers.
    pub attention: u64,
    /// FFN matrices, all layers.
    pub ffn: u64,
    /// Norm weights.
    pub norms: u64,
}

/// Count parameters by part from the config.
pub fn param_counts(c: &Config) -> ParamCounts {
    let (d, f, l) = (c.d_model as u64, c.d_ff as u64, c.n_layers as u64);
    let emb = c.vocab_size as u64 * d * if c.tie_embeddings { 1 } else { 2 };
    let attn = l * (2 * c.q_dim() as u64 * d + 2 * c.kv_dim() as u64 * d);
    let ffn = l * match c.ffn_kind {
        FfnKind::Spark => f * c.ffn_r as u64 + f * (d - c.ffn_r as u64) + f * d,
        FfnKind::Geglu => 3 * f * d,
    };
    let norms = d * (1 + l * if c.post_norms { 4 } else { 2 });
    ParamCounts { embedding: emb, attention: attn, ffn, norms }
}

/// Multiply-accumulates per decoded token, by part, for a model and for its dense twin.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MacCounts {
    /// Q/K/V/O projections, all layers.
    pub attn_proj: u64,
    /// Attention over the KV cache at the given context (scores and values), all layers.
    pub attn_cache: u64,
    /// FFN, all layers.
    pub ffn: u64,
    /// Logits (`vocab * d`).
    pub logits: u64,
    /// Sum of the above.
    pub total: u64,
}

/// MACs per token at context `n` for the model as configured (Spark parts at their nominal
/// `k`/`ka`) and for its dense twin: the same `d`, layers, heads and vocabulary with a dense
/// GeGLU FFN of width `f_g = f / 1.5` (the same FFN parameter count; `f_g = f` for a GeGLU
/// model) and dense attention.
pub fn mac_counts(c: &Config, n: usize) -> (MacCounts, MacCounts) {
    let (d, f, l) = (c.d_model as u64, c.d_ff as u64, c.n_layers as u64);
    let (qd, kvd, dh) = (c.q_dim() as u64, c.kv_dim() as u64, c.head_dim as u64);
    let proj = l * (d * qd + 2 * d * kvd + qd * d);
    let fg = match c.ffn_kind {
        FfnKind::Spark => (2 * f).div_ceil(3),
        FfnKind::Geglu => f,
    };
    let k = (c.ffn_k as u64).min(f);
    let ffn = l * match c.ffn_kind {
        FfnKind::Spark => c.ffn_r as u64 * f + k * (d - c.ffn_r as u64) + k * d,
        FfnKind::Geglu if k >= f => 3 * d * f,
        FfnKind::Geglu => d * f + 2 * k * d,
    };
    let (mut cache, mut cache_dense) = (0u64, 0u64);
    for layer in 0..c.n_layers as usize {
        let nl = (n - c.first_visible(layer, n.saturating_sub(1))) as u64;
        let heads = c.n_heads as u64;
        cache_dense += heads * 2 * nl * dh;
        cache += heads
            * match c.attn_kind {
                AttnKind::Dense => 2 * nl * dh,
                AttnKind::Spark => {
                    let ra = c.attn_r as u64;
                    nl * ra + nl.min(c.attn_k as u64) * (dh - ra + dh)
                }
            };
    }
    let logits = c.vocab_size as u64 * d;
    let m = MacCounts { attn_proj: proj, attn_cache: cache, ffn, logits, total: proj + cache + ffn + logits };
    let dffn = l * 3 * d * fg;
    let dt = MacCounts {
        attn_proj: proj,
        attn_cache: cache_dense,
        ffn: dffn,
        logits,
        total: proj + cache_dense + dffn + logits,
    };
    (m, dt)
}

fn mega(x: u64) -> String {
    if x >= 10_000_000 {
        format!("{:.1}M", x as f64 / 1e6)
    } else if x >= 10_000 {
        format!("{:.1}k", x as f64 / 1e3)
    } else {
        x.to_string()
    }
}

/// What `inspect` reports of a model besides its config.
struct Facts<'m> {
    path: &'m Path,
    model: &'m Model<'m>,
    file_bytes: usize,
    entries: &'m [spark_core::tensor::TensorEntry],
    params: ParamCounts,
    /// Session arena bytes at `ctx`.
    arena: usize,
    /// The model's `max_seq_len`.
    ctx: usize,
    macs: MacCounts,
    twin: MacCounts,
}

/// What "dense twin" means in the MAC comparison.
const TWIN_DEF: &str = "dense twin: same d, layers, heads and vocabulary; dense GeGLU FFN of width f_g = f/1.5 \
                        (same FFN parameters; f_g = f for a GeGLU model) and dense attention";

/// `spark-sim inspect`.
pub fn inspect(path: &Path, json: bool) -> CliResult {
    let blob = read_model_file(path)?;
    let model = load_model(&blob, path)?;
    let (_, entries, _) = parse_table(&blob).ok_or("tensor table unreadable")?;
    let c = *model.config();
    let ctx = c.max_seq_len as usize;
    let (macs, twin) = mac_counts(&c, ctx);
    let f = Facts {
        path,
        model: &model,
        file_bytes: blob.len(),
        entries: &entries,
        params: param_counts(&c),
        arena: model.arena_bytes(ctx),
        ctx,
        macs,
        twin,
    };
    if json {
        inspect_json(&f)
    } else {
        inspect_text(&f)
    }
}

/// `inspect --json`.
fn inspect_json(f: &Facts<'_>) -> CliResult {
    let Facts { model, entries, arena, ctx, macs, twin, .. } = *f;
    let (c, p, twin_def) = (model.config(), f.params, TWIN_DEF);
    let blob_len = f.file_bytes;
    let tensors: Vec<_> = entries
        .iter()
        .map(|e| serde_json::json!({"name": e.id.to_string(), "dtype": e.dtype.name(), "shape": e.shape, "bytes": e.len}))
        .collect();
    let v = serde_json::json!({
        "file_bytes": blob_len, "format_version": model.version(),
        "config": serde_json::to_value(c).map_err(|e| e.to_string())?,
        "tokenizer": serde_json::json!({
            "kind": format!("{:?}", model.tokenizer_meta().kind), "n_merges": model.tokenizer_meta().n_merges,
            "bos_id": model.tokenizer_meta().bos_id, "eos_id": model.tokenizer_meta().eos_id,
        }),
        "params": p,
        "arena_bytes": arena,
        "arena_max_seq": ctx,
        "macs_per_token": {"context": ctx, "model": macs, "dense_twin": twin,
                           "ratio": twin.total as f64 / macs.total.max(1) as f64, "dense_twin_means": twin_def},
        "tensors": tensors,
    });
    print_json(&v)
}

/// `inspect` as text: shape, math settings, tokenizer, parameters, arena, MACs, tensors.
fn inspect_text(f: &Facts<'_>) -> CliResult {
    let Facts { path, model, entries, arena, ctx, macs, twin, .. } = *f;
    let (c, p, twin_def) = (model.config(), f.params, TWIN_DEF);
    let mut o = io::stdout().lock();
    writeln!(o, "model      {}", path.display())?;
    writeln!(
        o,
        "file       {} bytes ({}), format version {}",
        f.file_bytes,
        human_bytes(f.file_bytes as u64),
        model.version()
    )?;
    writeln!(
        o,
        "shape      vocab {}  d {}  layers {}  heads {}/{} x {}  ffn {:?} f {} r {} k {}  attn {:?} ra {} ka {}  ctx {}",
        c.vocab_size,
        c.d_model,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.ffn_kind,
        c.d_ff,
        c.ffn_r,
        c.ffn_k,
        c.attn_kind,
        c.attn_r,
        c.attn_k,
        c.max_seq_len
    )?;
    writeln!(
        o,
        "math       rope_theta {}  eps {}  qpas {}  softcap attn {} final {}  window {}  embed_scale {}  tied {}  post_norms {}",
        c.rope_theta,
        c.norm_eps,
        c.query_pre_attn_scalar,
        c.attn_logit_softcap,
        c.final_logit_softcap,
        c.sliding_window,
        c.embed_scale,
        c.tie_embeddings,
        c.post_norms
    )?;
    writeln!(
        o,
        "tokenizer  {:?}  merges {}  bos {:?}  eos {:?}",
        model.tokenizer_meta().kind,
        model.tokenizer_meta().n_merges,
        model.tokenizer_meta().bos_id,
        model.tokenizer_meta().eos_id
    )?;
    writeln!(
        o,
        "params     embedding {}  attention {}  ffn {}  norms {}  total {}",
        p.embedding,
        p.attention,
        p.ffn,
        p.norms,
        p.embedding + p.attention + p.ffn + p.norms
    )?;
    writeln!(o, "arena      {arena} bytes ({}) for a session at max_seq_len {ctx}", human_bytes(arena as u64))?;
    writeln!(o, "MACs/token at context {ctx}     this model   dense twin")?;
    for (name, a, b) in [
        ("  attention projections", macs.attn_proj, twin.attn_proj),
        ("  attention over cache", macs.attn_cache, twin.attn_cache),
        ("  ffn", macs.ffn, twin.ffn),
        ("  logits", macs.logits, twin.logits),
        ("  total", macs.total, twin.total),
    ] {
        writeln!(o, "{name:<30} {:>10} {:>12}", mega(a), mega(b))?;
    }
    writeln!(o, "  ratio dense twin / model {:.2}x; {twin_def}", twin.total as f64 / macs.total.max(1) as f64)?;
    writeln!(o, "tensors    {}", entries.len())?;
    for e in entries {
        let dt = match e.dtype {
            DType::I8 => "i8 ",
            DType::F32 => "f32",
            DType::U8 => "u8 ",
            DType::U32 => "u32",
        };
        writeln!(o, "  {:<28} {dt} [{:>6}, {:>6}] {:>10} B", e.id.to_string(), e.shape[0], e.shape[1], e.len)?;
    }
    Ok(())
}

/// `spark-sim random-model`.
pub fn random_model(out: &Path, seed: u64) -> CliResult {
    let blob = crate::testmodel::random_model(&crate::testmodel::small_spark_config(), seed);
    std::fs::write(out, &blob).map_err(|e| fail(format!("cannot write {}: {e}", out.display())))?;
    writeln!(io::stdout(), "wrote {} ({} bytes)", out.display(), blob.len())?;
    Ok(())
}

/// A problem with a `--tokenizer` JSON file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerFileError {
    /// The file could not be read.
    Read {
        /// Path.
        path: String,
        /// OS message.
        message: String,
    },
    /// Not JSON, or not the expected structure.
    Format {
        /// Path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer's vocabulary differs from the model's.
    VocabMismatch {
        /// Path.
        path: String,
        /// Tokens in the file.
        tokenizer: usize,
        /// The model's `vocab_size`.
        model: u32,
    },
}

impl fmt::Display for TokenizerFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerFileError::Read { path, message } => write!(f, "cannot read tokenizer {path}: {message}"),
            TokenizerFileError::Format { path, message } => write!(f, "tokenizer {path}: {message}"),
            TokenizerFileError::VocabMismatch { path, tokenizer, model } => write!(
                f,
                "tokenizer {path} has {tokenizer} tokens but the model's vocab_size is {model}: use the tokenizer the model was trained with"
            ),
        }
    }
}

impl std::error::Error for TokenizerFileError {}

/// Read a tokenizer JSON file: `{"tokens": [[byte, ...], ...], "merges": [[left, right,
/// result], ...], "bos_id": int|null, "eos_id": int|null}` (merges in rank order), checked
/// completely (bytes in 0..=255, ids below the vocabulary, `bytes(result) = bytes(left) ++
/// bytes(right)`) and against `vocab_size` when given.
pub fn load_tokenizer_json(path: &Path, vocab_size: Option<u32>) -> Result<BpeTokenizer, TokenizerFileError> {
    let ps = path.display().to_string();
    let bad = |m: String| TokenizerFileError::Format { path: ps.clone(), message: m };
    let text = crate::files::read_regular_to_string(path)
        .map_err(|e| TokenizerFileError::Read { path: ps.clone(), message: e.to_string() })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let o = v.as_object().ok_or_else(|| bad("expected a JSON object".into()))?;
    if !o.contains_key("tokens") && o.contains_key("model") {
        return Err(bad("this is a Hugging Face tokenizer.json; spark-sim reads the {\"tokens\", \"merges\", \"bos_id\", \"eos_id\"} format written by train/bpe.py".into()));
    }
    let toks = o.get("tokens").and_then(|t| t.as_array()).ok_or_else(|| bad("missing \"tokens\" array".into()))?;
    let mut tokens = Vec::with_capacity(toks.len());
    for (i, t) in toks.iter().enumerate() {
        let arr = t.as_array().ok_or_else(|| bad(format!("tokens[{i}] is not an array of byte values")))?;
        let bytes = arr
            .iter()
            .map(|b| b.as_u64().filter(|&x| x <= 255).map(|x| x as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad(format!("tokens[{i}] holds a value that is not a byte (0..=255)")))?;
        tokens.push(bytes);
    }
    let n = tokens.len();
    if let Some(m) = vocab_size {
        if n != m as usize {
            return Err(TokenizerFileError::VocabMismatch { path: ps, tokenizer: n, model: m });
        }
    }
    let mut merges = Vec::new();
    if let Some(ms) = o.get("merges") {
        let ms = ms.as_array().ok_or_else(|| bad("\"merges\" is not an array".into()))?;
        for (r, m) in ms.iter().enumerate() {
            let ids = m
                .as_array()
                .filter(|a| a.len() == 3)
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_u64().filter(|&v| v < n as u64).map(|v| v as u32))
                        .collect::<Option<Vec<u32>>>()
                })
                .ok_or_else(|| bad(format!("merges[{r}] is not [left, right, result] with ids below {n}")))?;
            let (a, b, c) = (ids[0], ids[1], ids[2]);
            if tokens[c as usize] != [&tokens[a as usize][..], &tokens[b as usize][..]].concat() {
                return Err(bad(format!("merges[{r}]: token {c} is not the concatenation of tokens {a} and {b}")));
            }
            merges.push((a, b, c));
        }
    }
    let special = |k: &str| -> Result<Option<u32>, TokenizerFileError> {
        match o.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .filter(|&v| v < n as u64)
                .map(|v| Some(v as u32))
                .ok_or_else(|| bad(format!("{k} must be null or a token id below {n}"))),
        }
    };
    Ok(BpeTokenizer { tokens, merges, bos_id: special("bos_id")?, eos_id: special("eos_id")? })
}

/// `spark-sim convert`: a float checkpoint (train/ naming with the config in the
/// `spark_config` metadata, or a Hugging Face Gemma-2 checkpoint with `config.json`) to an
/// int8 `.spark` file, optionally with a tokenizer, with a per-tensor quantization error
/// summary. The written file is loaded back and checked before the command succeeds.
pub fn convert(input: &Path, out: &Path, tokenizer: Option<&Path>, max_seq: Option<u32>, json: bool) -> CliResult {
    use crate::checkpoint::to_writer;
    let spin = crate::ui::spinner(!json, "reading");
    let ck = crate::hf::load_any(input, max_seq).map_err(fail)?;
    let tok = match tokenizer {
        Some(p) => Some(load_tokenizer_json(p, Some(ck.config.vocab_size)).map_err(|e| fail(e.to_string()))?),
        None => None,
    };
    spin.set_message("quantizing");
    let (mut writer, errors) = to_writer(&ck).map_err(|e| fail(format!("{}: {e}", input.display())))?;
    if let Some(t) = &tok {
        t.write_into(&mut writer);
    }
    let blob = writer.finish();
    spin.finish_and_clear();
    Model::load(&blob).map_err(|e| fail(format!("converted model does not load (a converter bug): {e}")))?;
    std::fs::write(out, &blob).map_err(|e| fail(format!("cannot write {}: {e}", out.display())))?;
    let quantized: Vec<_> = writer.tensors.iter().filter(|t| t.dtype == DType::I8).collect();
    let worst = errors.iter().max_by(|a, b| a.1.rel_l2.total_cmp(&b.1.rel_l2));
    let worst_abs = errors.iter().map(|(_, e)| e.max_abs).fold(0.0, f64::max);
    if json {
        let tensors: Vec<_> = errors
            .iter()
            .zip(&quantized)
            .map(|((name, e), t)| serde_json::json!({"name": name, "shape": t.shape, "rel_l2": e.rel_l2, "max_abs": e.max_abs}))
            .collect();
        return print_json(&serde_json::json!({
            "input": input.display().to_string(), "out": out.display().to_string(), "bytes": blob.len(),
            "tensors": writer.tensors.len(), "config": serde_json::to_value(ck.config).map_err(|e| e.to_string())?,
            "tokenizer": tok.as_ref().map(|t| t.vocab_size()),
            "quantization": tensors,
            "worst_rel_l2": worst.map(|w| w.1.rel_l2), "worst_max_abs": worst_abs,
        }));
    }
    let mut o = io::stdout().lock();
    writeln!(o, "{:<28} {:>14} {:>12} {:>12}", "tensor", "shape", "rel L2", "max abs")?;
    for ((name, e), t) in errors.iter().zip(&quantized) {
        let shape = format!("[{}, {}]", t.shape[0], t.shape[1]);
        writeln!(o, "{name:<28} {shape:>14} {:>12.3e} {:>12.3e}", e.rel_l2, e.max_abs)?;
    }
    if let Some((name, e)) = worst {
        writeln!(o, "worst rel L2 {:.3e} ({name}); worst max abs {worst_abs:.3e}", e.rel_l2)?;
    }
    if let Some(t) = &tok {
        writeln!(
            o,
            "tokenizer  {} tokens, {} merges, bos {:?}, eos {:?}",
            t.vocab_size(),
            t.merges.len(),
            t.bos_id,
            t.eos_id
        )?;
    }
    writeln!(
        o,
        "wrote {} ({} bytes = {}, format version {}, {} tensors)",
        out.display(),
        blob.len(),
        human_bytes(blob.len() as u64),
        writer.version,
        crate::format::parse_table(&blob).map_or(0, |(_, e, _)| e.len())
    )?;
    if tok.is_none() {
        note("note: no --tokenizer given: the model runs on token ids only (generate --prompt-ids)");
    }
    Ok(())
}
