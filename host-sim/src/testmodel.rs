//! Random valid models of any config, for tests and benchmarks.
//!
//! Weights are Gaussian scaled by `1/sqrt(fan_in)`, norm weights `1 +- 0.1`, quantized with
//! [`crate::quant::quantize_rows`] through [`ModelWriter`], so they exercise exactly the
//! loading and int8 paths a converted model does.

use crate::format::ModelWriter;
use crate::rng::SplitMix64;
use spark_core::format::expected;
use spark_core::tensor::{GLOBAL_KINDS, LAYER_KINDS};
use spark_core::{Config, DType, TensorId, TensorKind, TokenizerMeta};

/// A small Spark config (Spark FFN and attention) used by many tests.
pub fn small_spark_config() -> Config {
    Config {
        vocab_size: 48,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        d_ff: 96,
        ffn_kind: spark_core::FfnKind::Spark,
        ffn_r: 12,
        ffn_k: 9,
        attn_kind: spark_core::AttnKind::Spark,
        attn_r: 4,
        attn_k: 5,
        max_seq_len: 24,
        rope_theta: 10_000.0,
        norm_eps: 1e-6,
        query_pre_attn_scalar: 8.0,
        attn_logit_softcap: 0.0,
        final_logit_softcap: 0.0,
        sliding_window: 0,
        embed_scale: 32f32.sqrt(),
        tie_embeddings: true,
        post_norms: false,
        topk_cap_factor: 2.0,
    }
}

/// The dense twin of [`small_spark_config`]: GeGLU FFN of width 64 (same FFN parameters,
/// `f_g = f / 1.5`), dense attention.
pub fn small_dense_config() -> Config {
    Config {
        d_ff: 64,
        ffn_kind: spark_core::FfnKind::Geglu,
        ffn_r: 0,
        ffn_k: 64,
        attn_kind: spark_core::AttnKind::Dense,
        attn_r: 0,
        ..small_spark_config()
    }
}

/// Call `f(id, dtype, rows, cols)` for every tensor `cfg` requires except the scale vectors
/// of quantized matrices and the tokenizer, globals first then each layer, in the
/// canonical order of `GLOBAL_KINDS` / `LAYER_KINDS`.
pub fn for_each_weight(cfg: &Config, mut f: impl FnMut(TensorId, DType, usize, usize)) {
    let mut visit = |id: TensorId| {
        if let Some((dtype, [rows, cols])) = expected(cfg, id.kind) {
            if !is_scale(id.kind) {
                f(id, dtype, rows as usize, cols as usize);
            }
        }
    };
    for &k in GLOBAL_KINDS {
        visit(TensorId::global(k));
    }
    for l in 0..cfg.n_layers as usize {
        for &k in LAYER_KINDS {
            visit(TensorId::layer(l, k));
        }
    }
}

/// Fill a writer with random weights for every tensor `cfg` requires (no tokenizer).
pub fn random_writer(cfg: &Config, seed: u64) -> ModelWriter {
    let mut rng = SplitMix64(seed);
    let mut w = ModelWriter::new(*cfg, TokenizerMeta::NONE);
    for_each_weight(cfg, |id, dtype, rows, cols| match dtype {
        DType::I8 => {
            let s = 1.0 / (cols as f64).sqrt();
            let v: Vec<f32> = (0..rows * cols).map(|_| (rng.normal() * s) as f32).collect();
            w.add_quantized(id, &v, rows, cols);
        }
        _ => {
            let v: Vec<f32> = (0..rows).map(|_| (1.0 + 0.1 * rng.normal()) as f32).collect();
            w.add_f32(id, &v);
        }
    });
    w
}

fn is_scale(kind: TensorKind) -> bool {
    kind.name().ends_with(".scale")
}

/// A complete random `.spark` file for `cfg`.
pub fn random_model(cfg: &Config, seed: u64) -> Vec<u8> {
    random_writer(cfg, seed).finish()
}
