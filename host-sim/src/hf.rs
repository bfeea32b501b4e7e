//! Hugging Face Gemma-2 checkpoints (`model.safetensors` or shards + `config.json`) mapped
//! into an [`F32Checkpoint`] in the project's `train/` naming, so the same quantizer
//! ([`crate::checkpoint::to_writer`]) and f32 oracle run on them.
//!
//! Mapping (HF name -> checkpoint name):
//!
//! ```text
//! model.embed_tokens.weight [vocab, d]                   -> embed (tied head)
//! model.norm.weight                                      -> final_norm        (1 + w)
//! model.layers.N.input_layernorm.weight                  -> layers.N.attn_norm     (1 + w)
//! model.layers.N.post_attention_layernorm.weight         -> layers.N.post_attn_norm (1 + w)
//! model.layers.N.pre_feedforward_layernorm.weight        -> layers.N.ffn_norm      (1 + w)
//! model.layers.N.post_feedforward_layernorm.weight       -> layers.N.post_ffn_norm (1 + w)
//! model.layers.N.self_attn.{q,k,v,o}_proj.weight         -> layers.N.attn.w{q,k,v,o}
//! model.layers.N.mlp.{gate,up}_proj.weight [f, d]        -> layers.N.ffn.w{g,u}
//! model.layers.N.mlp.down_proj.weight [d, f]             -> layers.N.ffn.wd
//! ```
//!
//! Config: `ffn_kind` geglu with `ffn_k = d_ff` (dense), `attn_kind` dense, post norms on,
//! `embed_scale = sqrt(hidden_size)` rounded to f32 (transformers multiplies by
//! `torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)`, i.e. f32 for an f32 run; a
//! bf16 run would round it to bf16), null soft-caps = 0, `topk_cap_factor` 2.0.
//!
//! RoPE: `rope_parameters.rope_theta` (transformers 5) or `rope_theta` (4.x); scaled RoPE
//! types are refused.
//!
//! Sliding window: transformers' Gemma-2 makes layer `i` sliding iff `i` is even
//! (`is_sliding = not bool(layer_idx % 2)`, later `layer_types[i] = "sliding_attention"
//! if (i + 1) % 2`) and a sliding query at `p` sees keys `j > p - W`, i.e.
//! `p - W + 1 ..= p`: the SPEC's convention. A `config.json` whose `layer_types` differs
//! from that pattern is refused (no `.spark` config field can express it).

use crate::checkpoint::F32Checkpoint;
use crate::files::{read_regular, read_regular_to_string};
use safetensors::{Dtype, SafeTensors};
use spark_core::{AttnKind, Config, FfnKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Tensors by name: (shape, row-major f32 values).
pub type TensorMap = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Name of the embedding tensor, whose presence marks a Hugging Face checkpoint.
pub const HF_EMBED: &str = "model.embed_tokens.weight";

/// True when these tensor names are a Hugging Face Gemma-style checkpoint.
pub fn looks_like_hf<'a>(mut names: impl Iterator<Item = &'a str>) -> bool {
    names.any(|n| n == HF_EMBED || (n.starts_with("model.layers.") && n.ends_with(".self_attn.q_proj.weight")))
}

fn decode(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, String> {
    Ok(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(format!("tensor {name}: unsupported dtype {other} (expected F32, BF16 or F16)")),
    })
}

/// The safetensors files of a checkpoint path (a file, or a directory holding
/// `model.safetensors` or `model.safetensors.index.json` shards) and the directory that
/// should hold `config.json`.
pub fn checkpoint_files(input: &Path) -> Result<(Vec<PathBuf>, PathBuf), String> {
    if input.is_dir() {
        let single = input.join("model.safetensors");
        if single.is_file() {
            return Ok((vec![single], input.to_path_buf()));
        }
        let index = input.join("model.safetensors.index.json");
        if index.is_file() {
            let text = read_regular_to_string(&index).map_err(|e| format!("cannot read {}: {e}", index.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", index.display()))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| format!("{} has no weight_map object", index.display()))?;
            let mut files: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
            files.sort();
            files.dedup();
            return Ok((files.into_iter().map(|f| input.join(f)).collect(), input.to_path_buf()));
        }
        return Err(format!(
            "{} holds neither model.safetensors nor model.safetensors.index.json: give the checkpoint file",
            input.display()
        ));
    }
    let dir = input.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((vec![input.to_path_buf()], if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir }))
}

/// Every tensor of the given safetensors files, decoded to f32.
pub fn read_tensors(files: &[PathBuf]) -> Result<TensorMap, String> {
    let mut out = HashMap::new();
    for f in files {
        let bytes = read_regular(f).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("checkpoint file {} not found: check the path", f.display()),
            _ => format!("cannot read {}: {e}", f.display()),
        })?;
        out.extend(tensors_from_bytes(&bytes, &f.display().to_string())?);
    }
    Ok(out)
}

/// Every tensor of one safetensors file held in memory (`label` names it in errors).
pub fn tensors_from_bytes(bytes: &[u8], label: &str) -> Result<TensorMap, String> {
    let mut out = HashMap::new();
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("{label} is not a valid safetensors file: {e}"))?;
    for (name, view) in st.iter() {
        out.insert(name.to_string(), (view.shape().to_vec(), decode(name, view.dtype(), view.data())?));
    }
    Ok(out)
}

fn cfg_err(path: &Path, msg: String) -> String {
    format!("{}: {msg}", path.display())
}

/// Refuse what no `.spark` config can express: another activation than the tanh GELU,
/// scaled RoPE, bidirectional attention.
fn check_supported(o: &serde_json::Map<String, serde_json::Value>, path: &Path) -> Result<(), String> {
    let act = o.get("hidden_activation").or_else(|| o.get("hidden_act")).and_then(|a| a.as_str());
    if let Some(a) = act {
        if a != "gelu_pytorch_tanh" && a != "gelu_new" {
            return Err(cfg_err(
                path,
                format!("activation {a:?}: only the tanh GELU (gelu_pytorch_tanh) is supported"),
            ));
        }
    }
    // RoPE: transformers 5 stores `rope_parameters: {rope_theta, rope_type}`, 4.x a top-level
    // `rope_theta` and an optional `rope_scaling`. Only the default (unscaled) RoPE is supported.
    let rope = o.get("rope_parameters").or_else(|| o.get("rope_scaling")).filter(|r| !r.is_null());
    if let Some(r) = rope {
        let kind = r.get("rope_type").or_else(|| r.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
        if kind != "default" {
            return Err(cfg_err(path, format!("rope type {kind:?}: only the default (unscaled) RoPE is supported")));
        }
    }
    if o.get("use_bidirectional_attention").and_then(|b| b.as_bool()) == Some(true) {
        return Err(cfg_err(path, "use_bidirectional_attention is true: only causal decoders convert".into()));
    }
    Ok(())
}

/// Sliding-window layers must be exactly the even ones (Gemma-2's pattern).
fn check_layer_types(o: &serde_json::Map<String, serde_json::Value>, path: &Path, window: u32) -> Result<(), String> {
    if let Some(types) = o.get("layer_types").and_then(|t| t.as_array()) {
        for (i, t) in types.iter().enumerate() {
            let sliding = t.as_str() == Some("sliding_attention");
            if sliding != (i % 2 == 0 && window > 0) {
                return Err(cfg_err(
                    path,
                    format!(
                        "layer_types[{i}] is {t}: the .spark format has sliding-window layers exactly at even indices"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Parse a Gemma-2 `config.json` into a `.spark` [`Config`]. `max_seq` overrides
/// `max_position_embeddings` (which is also capped at the format's 65536).
pub fn config_from_hf(text: &str, path: &Path, max_seq: Option<u32>) -> Result<Config, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| cfg_err(path, format!("not valid JSON: {e}")))?;
    let o = v.as_object().ok_or_else(|| cfg_err(path, "not a JSON object".into()))?;
    if let Some(mt) = o.get("model_type").and_then(|m| m.as_str()) {
        if mt != "gemma2" {
            return Err(cfg_err(path, format!("model_type is {mt:?}: only Gemma-2 (\"gemma2\") checkpoints convert")));
        }
    }
    let uint = |k: &str| -> Result<u32, String> {
        o.get(k)
            .and_then(|x| x.as_u64())
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| cfg_err(path, format!("field {k}: missing or not a non-negative integer")))
    };
    let uint_or = |k: &str, d: u32| -> Result<u32, String> {
        match o.get(k) {
            None | Some(serde_json::Value::Null) => Ok(d),
            Some(_) => uint(k),
        }
    };
    let num_or = |k: &str, d: f64| -> Result<f64, String> {
        match o.get(k) {
            None | Some(serde_json::Value::Null) => Ok(d),
            Some(x) => x.as_f64().ok_or_else(|| cfg_err(path, format!("field {k}: expected a number or null"))),
        }
    };
    check_supported(o, path)?;
    let rope = o.get("rope_parameters").or_else(|| o.get("rope_scaling")).filter(|r| !r.is_null());
    let rope_theta = match rope.and_then(|r| r.get("rope_theta")) {
        Some(t) => t.as_f64().ok_or_else(|| cfg_err(path, "rope_parameters.rope_theta: expected a number".into()))?,
        None => num_or("rope_theta", 10_000.0)?,
    };
    let d = uint("hidden_size")?;
    let n_layers = uint("num_hidden_layers")?;
    let n_heads = uint("num_attention_heads")?;
    let n_kv = uint_or("num_key_value_heads", n_heads)?;
    let head_dim = uint_or("head_dim", d / n_heads.max(1))?;
    let window = uint_or("sliding_window", 0)?;
    check_layer_types(o, path, window)?;
    let max_pos = uint_or("max_position_embeddings", 8192)?.min(spark_core::config::MAX_SEQ);
    let cfg = Config {
        vocab_size: uint("vocab_size")?,
        d_model: d,
        n_layers,
        n_heads,
        n_kv_heads: n_kv,
        head_dim,
        d_ff: uint("intermediate_size")?,
        ffn_kind: FfnKind::Geglu,
        ffn_r: 0,
        ffn_k: uint("intermediate_size")?,
        attn_kind: AttnKind::Dense,
        attn_r: 0,
        attn_k: 256,
        max_seq_len: max_seq.unwrap_or(max_pos),
        rope_theta: rope_theta as f32,
        norm_eps: num_or("rms_norm_eps", 1e-6)? as f32,
        query_pre_attn_scalar: num_or("query_pre_attn_scalar", head_dim as f64)? as f32,
        attn_logit_softcap: num_or("attn_logit_softcapping", 0.0)? as f32,
        final_logit_softcap: num_or("final_logit_softcapping", 0.0)? as f32,
        sliding_window: window,
        embed_scale: (d as f64).sqrt() as f32,
        tie_embeddings: true,
        post_norms: true,
        topk_cap_factor: 2.0,
    };
    cfg.validate().map_err(|e| cfg_err(path, format!("does not make a valid model: {e}")))?;
    Ok(cfg)
}

/// Load a Hugging Face Gemma-2 checkpoint (file or directory) with its `config.json`.
pub fn load_gemma2(input: &Path, max_seq: Option<u32>) -> Result<F32Checkpoint, String> {
    let (files, dir) = checkpoint_files(input)?;
    let cfg_path = dir.join("config.json");
    let text = read_regular_to_string(&cfg_path).map_err(|e| {
        format!(
            "cannot read {} ({e}): a Hugging Face Gemma-2 checkpoint needs its config.json beside it",
            cfg_path.display()
        )
    })?;
    let cfg = config_from_hf(&text, &cfg_path, max_seq)?;
    let tensors = read_tensors(&files)?;
    from_hf_tensors(cfg, tensors)
}

/// Map HF-named tensors into a checkpoint for `cfg` (checks names and shapes with HF names
/// in the messages; folds `1 + w` into the norms).
pub fn from_hf_tensors(mut cfg: Config, mut hf: TensorMap) -> Result<F32Checkpoint, String> {
    let (d, f) = (cfg.d_model as usize, cfg.d_ff as usize);
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let mut out = HashMap::new();
    let mut take =
        |hf: &mut TensorMap, name: String, shape: Vec<usize>, to: String, norm: bool| -> Result<(), String> {
            let (s, mut v) = hf.remove(&name).ok_or_else(|| format!("tensor {name}: missing"))?;
            if s != shape {
                return Err(format!("tensor {name}: expected shape {shape:?}, found {s:?}"));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(format!("tensor {name}: non-finite value at flat index {i}"));
            }
            if norm {
                v.iter_mut().for_each(|w| *w += 1.0);
            }
            out.insert(to, (shape, v));
            Ok(())
        };
    take(&mut hf, HF_EMBED.into(), vec![cfg.vocab_size as usize, d], "embed".into(), false)?;
    take(&mut hf, "model.norm.weight".into(), vec![d], "final_norm".into(), true)?;
    for l in 0..cfg.n_layers as usize {
        let p = format!("model.layers.{l}.");
        let t = |s: &str| format!("layers.{l}.{s}");
        take(&mut hf, format!("{p}input_layernorm.weight"), vec![d], t("attn_norm"), true)?;
        take(&mut hf, format!("{p}post_attention_layernorm.weight"), vec![d], t("post_attn_norm"), true)?;
        take(&mut hf, format!("{p}pre_feedforward_layernorm.weight"), vec![d], t("ffn_norm"), true)?;
        take(&mut hf, format!("{p}post_feedforward_layernorm.weight"), vec![d], t("post_ffn_norm"), true)?;
        take(&mut hf, format!("{p}self_attn.q_proj.weight"), vec![q, d], t("attn.wq"), false)?;
        take(&mut hf, format!("{p}self_attn.k_proj.weight"), vec![kv, d], t("attn.wk"), false)?;
        take(&mut hf, format!("{p}self_attn.v_proj.weight"), vec![kv, d], t("attn.wv"), false)?;
        take(&mut hf, format!("{p}self_attn.o_proj.weight"), vec![d, q], t("attn.wo"), false)?;
        take(&mut hf, format!("{p}mlp.gate_proj.weight"), vec![f, d], t("ffn.wg"), false)?;
        take(&mut hf, format!("{p}mlp.up_proj.weight"), vec![f, d], t("ffn.wu"), false)?;
        take(&mut hf, format!("{p}mlp.down_proj.weight"), vec![d, f], t("ffn.wd"), false)?;
    }
    if let Some((s, v)) = hf.remove("lm_head.weight") {
        let tied = out.get("embed").is_some_and(|(_, e)| e == &v);
        if !tied {
            if s != vec![cfg.vocab_size as usize, d] {
                return Err(format!(
                    "tensor lm_head.weight: expected shape {:?}, found {s:?}",
                    [cfg.vocab_size, d as u32]
                ));
            }
            cfg.tie_embeddings = false;
            out.insert("lm_head".into(), (s, v));
        }
    }
    hf.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    let mut extra: Vec<&String> = hf.keys().collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(format!(
            "tensor {name}: not part of a Gemma-2 model with {} layers (wrong config.json?)",
            cfg.n_layers
        ));
    }
    let ck = F32Checkpoint { config: cfg, tensors: out };
    ck.validate().map_err(|e| format!("converted checkpoint is inconsistent: {e}"))?;
    Ok(ck)
}

/// A float checkpoint from either naming: a Hugging Face Gemma-2 directory or file (with
/// `config.json` beside it), or a `train/` safetensors with the config in its metadata.
pub fn load_any(input: &Path, max_seq: Option<u32>) -> Result<F32Checkpoint, String> {
    if input.is_dir() {
        return load_gemma2(input, max_seq);
    }
    let bytes = read_regular(input).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("checkpoint {} not found: check the path", input.display()),
        _ => format!("cannot read {}: {e}", input.display()),
    })?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| format!("{} is not a valid safetensors file: {e}", input.display()))?;
    let is_hf = looks_like_hf(meta.tensors().keys().map(String::as_str));
    if is_hf {
        drop(bytes);
        return load_gemma2(input, max_seq);
    }
    let mut ck = F32Checkpoint::from_safetensors_bytes(&bytes).map_err(|e| format!("{}: {e}", input.display()))?;
    if let Some(m) = max_seq {
        ck.config.max_seq_len = m;
        ck.config.validate().map_err(|e| format!("--max-seq {m}: {e}"))?;
    }
    Ok(ck)
}
