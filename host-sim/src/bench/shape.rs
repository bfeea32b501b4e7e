//! Benchmark shapes: SPEC section 11's `gemma2-2b` and the shape of a `.spark` model.

use super::args::BenchArgs;
use crate::inputs::{load_model, read_model_file};
use crate::ui::{usage, CliResult};
use spark_core::{AttnKind, Config, FfnKind};
use std::path::{Path, PathBuf};

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

/// The shape named by `--shape` and, for a model file, its path.
pub(super) fn resolve_shape(s: &str) -> CliResult<(BenchShape, Option<PathBuf>)> {
    if s == "gemma2-2b" {
        return Ok((GEMMA2_2B, None));
    }
    let p = Path::new(s);
    if s.ends_with(".spark") || p.is_file() {
        let blob = read_model_file(p)?;
        let m = load_model(&blob, p)?;
        return Ok((shape_of(m.config()), Some(p.to_path_buf())));
    }
    Err(usage(format!("unknown shape {s:?}: use gemma2-2b or the path of a .spark model")))
}

/// The shape as the report names it.
pub(super) fn shape_label(a: &BenchArgs, s: &BenchShape) -> String {
    if s.name == "gemma2-2b" {
        "gemma2-2b".into()
    } else {
        a.shape.clone()
    }
}
