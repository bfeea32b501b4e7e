//! Float checkpoints in the project's `train/` naming: read from safetensors (f32, bf16 or
//! f16), quantize into a `.spark` writer (SPEC section 7), and dequantize a loaded `.spark`
//! back to f32 so that the oracle (the `oracle` module) can run on exactly the int8 weights.
//!
//! Naming (row-major, HF layout):
//!
//! ```text
//! embed [vocab, d]   final_norm [d]   lm_head [vocab, d] (untied only)
//! layers.{i}.attn_norm, layers.{i}.ffn_norm [d]
//! layers.{i}.post_attn_norm, layers.{i}.post_ffn_norm [d]          (post_norms only)
//! layers.{i}.attn.wq [n_heads*dh, d]   attn.wk, attn.wv [n_kv*dh, d]   attn.wo [d, n_heads*dh]
//! Spark FFN: layers.{i}.ffn.k1 [f, r]   ffn.k2 [f, d-r]   ffn.v [f, d]
//! GeGLU:     layers.{i}.ffn.wg, ffn.wu [f, d]   ffn.wd [d, f]
//! ```
//!
//! `ffn.wd` is stored transposed in the `.spark` file as `ffn.wd_t` [f, d], one row per
//! neuron. Norm weights are the multiplier itself (no `1 +`).
//! The config is the JSON string in `__metadata__["spark_config"]` with the field names of
//! [`spark_core::Config`] (`ffn_kind` `"spark"`|`"geglu"`, `attn_kind` `"spark"`|`"dense"`;
//! `topk_cap_factor` defaults to 2.0).
//!
//! Every problem with the input is a typed [`CheckpointError`]; nothing here panics on bad
//! input. Tested by `tests/oracle.rs` (round trip through `.spark`, error messages).

use crate::format::ModelWriter;
use crate::quant::QuantError;
use crate::rng::SplitMix64;
use safetensors::{Dtype, SafeTensors};
use spark_core::format::expected;
use spark_core::tensor::{DType, GLOBAL_KINDS, LAYER_KINDS};
use spark_core::{AttnKind, Config, FfnKind, Model, ModelError, TensorId, TensorKind, TokenizerMeta};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Metadata key that holds the config JSON.
pub const CONFIG_KEY: &str = "spark_config";

/// A float checkpoint: the config and every tensor by name (`shape`, row-major values).
#[derive(Clone, Debug, PartialEq)]
pub struct F32Checkpoint {
    /// Model configuration.
    pub config: Config,
    /// Tensors by checkpoint name: (shape, values).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Everything that can be wrong with a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckpointError {
    /// The file could not be read.
    Io {
        /// Path.
        path: String,
        /// OS message.
        message: String,
    },
    /// The bytes are not a valid safetensors file.
    Safetensors(String),
    /// `__metadata__["spark_config"]` is missing or not a valid config JSON.
    BadMetadata(String),
    /// The config parsed but fails `Config::validate`.
    BadConfig(ModelError),
    /// A tensor the config requires is absent.
    MissingTensor {
        /// Checkpoint name.
        name: String,
    },
    /// A tensor the config does not use is present.
    UnexpectedTensor {
        /// Checkpoint name.
        name: String,
    },
    /// A tensor has the wrong shape.
    WrongShape {
        /// Checkpoint name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// A tensor's element count does not match its shape.
    WrongLength {
        /// Checkpoint name.
        name: String,
        /// Product of the shape.
        expected: usize,
        /// Values found.
        found: usize,
    },
    /// A tensor has a dtype other than F32, BF16 or F16.
    UnsupportedDtype {
        /// Checkpoint name.
        name: String,
        /// The safetensors dtype.
        dtype: String,
    },
    /// The quantized model would not fit the 32-bit offsets of the `.spark` format.
    TooLarge {
        /// Estimated file size in bytes.
        bytes: u64,
    },
    /// A tensor holds NaN or an infinity.
    NonFinite {
        /// Checkpoint name.
        name: String,
        /// Flat index of the first bad value.
        index: usize,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointError::*;
        match self {
            Io { path, message } => write!(f, "cannot read {path}: {message}"),
            Safetensors(m) => write!(f, "not a valid safetensors file: {m}"),
            BadMetadata(m) => write!(f, "bad metadata: {m}"),
            BadConfig(e) => write!(f, "bad config: {e}"),
            MissingTensor { name } => write!(f, "tensor {name}: missing"),
            UnexpectedTensor { name } => write!(f, "tensor {name}: not used by this config"),
            WrongShape { name, expected, found } => {
                write!(f, "tensor {name}: expected shape {expected:?}, found {found:?}")
            }
            WrongLength { name, expected, found } => {
                write!(f, "tensor {name}: shape implies {expected} values, found {found}")
            }
            UnsupportedDtype { name, dtype } => {
                write!(f, "tensor {name}: unsupported dtype {dtype} (expected F32, BF16 or F16)")
            }
            NonFinite { name, index } => write!(f, "tensor {name}: non-finite value at flat index {index}"),
            TooLarge { bytes } => {
                write!(f, "model too large for the .spark format: about {bytes} bytes (limit 4 GiB)")
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

/// Checkpoint name of a `.spark` tensor kind (`WdT` maps to the HF-layout `ffn.wd`), or
/// `None` for kinds that have no checkpoint counterpart (scales, tokenizer tables).
pub fn checkpoint_name(kind: TensorKind, layer: usize) -> Option<String> {
    use TensorKind::*;
    let base = match kind {
        TokBytes | TokOffsets | TokMerges => return None,
        k if k.name().ends_with(".scale") => return None,
        WdT => "ffn.wd",
        k => k.name(),
    };
    Some(if kind.is_layer() { format!("layers.{layer}.{base}") } else { base.to_string() })
}

/// The tensors `cfg` requires, in canonical order (globals, then each layer in
/// [`LAYER_KINDS`] order), as (checkpoint name, kind, layer, shape in checkpoint layout).
pub fn expected_tensors(cfg: &Config) -> Vec<(String, TensorKind, usize, Vec<usize>)> {
    let mut out = Vec::new();
    let mut push = |kind: TensorKind, layer: usize| {
        let Some((dtype, [rows, cols])) = expected(cfg, kind) else { return };
        let Some(name) = checkpoint_name(kind, layer) else { return };
        let shape = match (dtype, kind) {
            (DType::F32, _) => vec![rows as usize],
            (_, TensorKind::WdT) => vec![cols as usize, rows as usize],
            _ => vec![rows as usize, cols as usize],
        };
        out.push((name, kind, layer, shape));
    };
    for &k in GLOBAL_KINDS {
        push(k, 0);
    }
    for l in 0..cfg.n_layers as usize {
        for &k in LAYER_KINDS {
            push(k, l);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Config JSON
// ---------------------------------------------------------------------------------------

fn meta(msg: String) -> CheckpointError {
    CheckpointError::BadMetadata(msg)
}

/// Parse the `spark_config` JSON (field names of [`Config`], lower-case kind strings,
/// `topk_cap_factor` optional with default 2.0) and validate it.
pub fn config_from_json(text: &str) -> Result<Config, CheckpointError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| meta(format!("{CONFIG_KEY} is not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| meta(format!("{CONFIG_KEY} is not a JSON object")))?;
    let get = |k: &str| obj.get(k).ok_or_else(|| meta(format!("{CONFIG_KEY} field {k}: missing")));
    let u = |k: &str| -> Result<u32, CheckpointError> {
        get(k)?
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| meta(format!("{CONFIG_KEY} field {k}: expected an integer in 0..=4294967295")))
    };
    let fl = |k: &str| -> Result<f32, CheckpointError> {
        get(k)?.as_f64().map(|x| x as f32).ok_or_else(|| meta(format!("{CONFIG_KEY} field {k}: expected a number")))
    };
    let b = |k: &str| -> Result<bool, CheckpointError> {
        get(k)?.as_bool().ok_or_else(|| meta(format!("{CONFIG_KEY} field {k}: expected true or false")))
    };
    let s = |k: &str| -> Result<&str, CheckpointError> {
        get(k)?.as_str().ok_or_else(|| meta(format!("{CONFIG_KEY} field {k}: expected a string")))
    };
    let ffn_kind = match s("ffn_kind")? {
        "spark" => FfnKind::Spark,
        "geglu" => FfnKind::Geglu,
        o => return Err(meta(format!("{CONFIG_KEY} field ffn_kind: expected \"spark\" or \"geglu\", found {o:?}"))),
    };
    let attn_kind = match s("attn_kind")? {
        "spark" => AttnKind::Spark,
        "dense" => AttnKind::Dense,
        o => return Err(meta(format!("{CONFIG_KEY} field attn_kind: expected \"spark\" or \"dense\", found {o:?}"))),
    };
    let topk_cap_factor = if obj.contains_key("topk_cap_factor") { fl("topk_cap_factor")? } else { 2.0 };
    let cfg = Config {
        vocab_size: u("vocab_size")?,
        d_model: u("d_model")?,
        n_layers: u("n_layers")?,
        n_heads: u("n_heads")?,
        n_kv_heads: u("n_kv_heads")?,
        head_dim: u("head_dim")?,
        d_ff: u("d_ff")?,
        ffn_kind,
        ffn_r: u("ffn_r")?,
        ffn_k: u("ffn_k")?,
        attn_kind,
        attn_r: u("attn_r")?,
        attn_k: u("attn_k")?,
        max_seq_len: u("max_seq_len")?,
        rope_theta: fl("rope_theta")?,
        norm_eps: fl("norm_eps")?,
        query_pre_attn_scalar: fl("query_pre_attn_scalar")?,
        attn_logit_softcap: fl("attn_logit_softcap")?,
        final_logit_softcap: fl("final_logit_softcap")?,
        sliding_window: u("sliding_window")?,
        embed_scale: fl("embed_scale")?,
        tie_embeddings: b("tie_embeddings")?,
        post_norms: b("post_norms")?,
        topk_cap_factor,
    };
    cfg.validate().map_err(CheckpointError::BadConfig)?;
    Ok(cfg)
}

/// The `spark_config` JSON for `cfg` (the inverse of [`config_from_json`]).
pub fn config_to_json(cfg: &Config) -> String {
    let c = cfg;
    serde_json::json!({
        "vocab_size": c.vocab_size, "d_model": c.d_model, "n_layers": c.n_layers,
        "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads, "head_dim": c.head_dim, "d_ff": c.d_ff,
        "ffn_kind": match c.ffn_kind { FfnKind::Spark => "spark", FfnKind::Geglu => "geglu" },
        "ffn_r": c.ffn_r, "ffn_k": c.ffn_k,
        "attn_kind": match c.attn_kind { AttnKind::Spark => "spark", AttnKind::Dense => "dense" },
        "attn_r": c.attn_r, "attn_k": c.attn_k, "max_seq_len": c.max_seq_len,
        "rope_theta": c.rope_theta as f64, "norm_eps": c.norm_eps as f64,
        "query_pre_attn_scalar": c.query_pre_attn_scalar as f64,
        "attn_logit_softcap": c.attn_logit_softcap as f64, "final_logit_softcap": c.final_logit_softcap as f64,
        "sliding_window": c.sliding_window, "embed_scale": c.embed_scale as f64,
        "tie_embeddings": c.tie_embeddings, "post_norms": c.post_norms,
        "topk_cap_factor": c.topk_cap_factor as f64,
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------
// Reading and writing safetensors
// ---------------------------------------------------------------------------------------

fn decode_values(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, CheckpointError> {
    let v = match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(CheckpointError::UnsupportedDtype { name: name.to_string(), dtype: format!("{other}") }),
    };
    Ok(v)
}

impl F32Checkpoint {
    /// Parse a safetensors file held in memory, then [`validate`](Self::validate) it.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let (_, metadata) =
            SafeTensors::read_metadata(bytes).map_err(|e| CheckpointError::Safetensors(e.to_string()))?;
        let text = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CONFIG_KEY))
            .ok_or_else(|| meta(format!("__metadata__ has no \"{CONFIG_KEY}\" entry")))?;
        let config = config_from_json(text)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Safetensors(e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.iter() {
            let values = decode_values(name, view.dtype(), view.data())?;
            tensors.insert(name.to_string(), (view.shape().to_vec(), values));
        }
        let ck = F32Checkpoint { config, tensors };
        ck.validate()?;
        Ok(ck)
    }

    /// Read and parse a safetensors file.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = crate::files::read_regular(path)
            .map_err(|e| CheckpointError::Io { path: path.display().to_string(), message: e.to_string() })?;
        Self::from_safetensors_bytes(&bytes)
    }

    /// Serialize as an f32 safetensors file with the config in the metadata.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, (s, v))| (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (n, s, b) in &bytes {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map_err(|e| CheckpointError::Safetensors(format!("tensor {n}: {e}")))?;
            views.push((n.clone(), view));
        }
        let meta = HashMap::from([(CONFIG_KEY.to_string(), config_to_json(&self.config))]);
        safetensors::serialize(views, Some(meta)).map_err(|e| CheckpointError::Safetensors(e.to_string()))
    }

    /// Check the config and that exactly the tensors it requires are present, with the
    /// right shapes, consistent lengths and finite values.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        self.config.validate().map_err(CheckpointError::BadConfig)?;
        let want = expected_tensors(&self.config);
        for (name, _, _, shape) in &want {
            let Some((s, v)) = self.tensors.get(name) else {
                return Err(CheckpointError::MissingTensor { name: name.clone() });
            };
            if s != shape {
                return Err(CheckpointError::WrongShape {
                    name: name.clone(),
                    expected: shape.clone(),
                    found: s.clone(),
                });
            }
            let n: usize = shape.iter().product();
            if v.len() != n {
                return Err(CheckpointError::WrongLength { name: name.clone(), expected: n, found: v.len() });
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(CheckpointError::NonFinite { name: name.clone(), index: i });
            }
        }
        if self.tensors.len() != want.len() {
            let mut extra: Vec<&String> = self.tensors.keys().filter(|k| !want.iter().any(|(n, ..)| n == *k)).collect();
            extra.sort();
            if let Some(name) = extra.first() {
                return Err(CheckpointError::UnexpectedTensor { name: (*name).clone() });
            }
        }
        Ok(())
    }

    /// Values of a tensor by checkpoint name.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.tensors.get(name).map(|(_, v)| v.as_slice())
    }

    /// Dequantize a loaded `.spark` model (`q * row scale`, f32; `ffn.wd_t` transposed back
    /// to `ffn.wd` [d, f]) so that the oracle runs on exactly the int8 weights.
    pub fn from_spark(model: &Model<'_>) -> Result<Self, CheckpointError> {
        let cfg = *model.config();
        let mut tensors = HashMap::new();
        for (name, kind, layer, shape) in expected_tensors(&cfg) {
            let values = if kind.scale().is_some() {
                let m = if kind.is_layer() { model.layer_matrix(layer, kind) } else { model.global_matrix(kind) };
                // (rows `stride` apart: a version 2 file's K2 and V are parts of bundled records)
                let fits = m.rows == 0 || (m.rows - 1) * m.stride + m.cols <= m.data.len();
                if m.data.is_empty() && m.rows * m.cols > 0 || !fits || m.scales.len() != m.rows {
                    return Err(CheckpointError::MissingTensor { name });
                }
                let mut w = vec![0f32; m.rows * m.cols];
                for r in 0..m.rows {
                    let s = m.scales.get(r);
                    for (c, &q) in m.row(r).iter().enumerate() {
                        let v = q as f32 * s;
                        if kind == TensorKind::WdT {
                            w[c * m.rows + r] = v; // wd [d, f] from wd_t [f, d]
                        } else {
                            w[r * m.cols + c] = v;
                        }
                    }
                }
                w
            } else {
                let v = if kind.is_layer() { model.layer_f32(layer, kind) } else { model.global_f32(kind) };
                (0..v.len()).map(|i| v.get(i)).collect()
            };
            tensors.insert(name, (shape, values));
        }
        let ck = F32Checkpoint { config: cfg, tensors };
        ck.validate()?;
        Ok(ck)
    }

    /// A random checkpoint for `cfg` (tests, benchmarks): matrices Gaussian scaled by
    /// `1/sqrt(fan_in)`, norm weights `1 +- 0.1`. Deterministic in `seed`.
    pub fn random(cfg: &Config, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let mut tensors = HashMap::new();
        for (name, _, _, shape) in expected_tensors(cfg) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if shape.len() == 1 {
                (0..n).map(|_| (1.0 + 0.1 * rng.normal()) as f32).collect()
            } else {
                let s = 1.0 / (shape[1] as f64).sqrt(); // fan-in: columns in checkpoint layout
                (0..n).map(|_| (rng.normal() * s) as f32).collect()
            };
            tensors.insert(name, (shape, values));
        }
        F32Checkpoint { config: *cfg, tensors }
    }
}

/// Quantize every matrix of a validated checkpoint (per-row int8, SPEC section 7) into a
/// [`ModelWriter`] in canonical order (globals, then each layer in [`LAYER_KINDS`] order),
/// with no tokenizer. Returns the writer and the quantization error of each matrix, named
/// by its `.spark` tensor id.
pub fn to_writer(ck: &F32Checkpoint) -> Result<(ModelWriter, Vec<(String, QuantError)>), CheckpointError> {
    ck.validate()?;
    let cfg = &ck.config;
    let bytes: u64 = expected_tensors(cfg)
        .iter()
        .map(|(_, kind, _, shape)| {
            let n: u64 = shape.iter().map(|&x| x as u64).product();
            let rows = shape[0] as u64;
            64 + if kind.scale().is_some() { n + 4 * rows + 64 } else { 4 * n }
        })
        .sum::<u64>()
        + 256 * 1024;
    if bytes > u32::MAX as u64 {
        return Err(CheckpointError::TooLarge { bytes });
    }
    let mut w = ModelWriter::new(*cfg, TokenizerMeta::NONE);
    let mut errors = Vec::new();
    for (name, kind, layer, shape) in expected_tensors(cfg) {
        let id = if kind.is_layer() { TensorId::layer(layer, kind) } else { TensorId::global(kind) };
        let values = ck.get(&name).ok_or_else(|| CheckpointError::MissingTensor { name: name.clone() })?;
        if kind.scale().is_some() {
            let (rows, cols, data) = if kind == TensorKind::WdT {
                // wd [d, f] -> wd_t [f, d]: one row per neuron.
                let (d, f) = (shape[0], shape[1]);
                let mut t = vec![0f32; d * f];
                for o in 0..d {
                    for i in 0..f {
                        t[i * d + o] = values[o * f + i];
                    }
                }
                (f, d, t)
            } else {
                (shape[0], shape[1], values.to_vec())
            };
            let e = w.add_quantized(id, &data, rows, cols);
            errors.push((id.to_string(), e));
        } else {
            w.add_f32(id, values);
        }
    }
    Ok((w, errors))
}
