//! Model configuration (SPEC section 3) and its sanity checks.
//!
//! The config is stored postcard-encoded in the model file header. [`Config::validate`]
//! runs once at load and rejects every value the forward pass could not run safely, so a
//! model that loads can run any token sequence up to `max_seq_len` without panicking.
//! Tested by `core/tests/format.rs` (one test per rejected field class).

use crate::error::ModelError;
use serde::{Deserialize, Serialize};

/// Largest number of layers a model file may have (the per-layer tensor table is a fixed
/// array of this size inside [`crate::Model`]).
pub const MAX_LAYERS: usize = 48;
/// Largest `d_model`, `d_ff`, head width and vocabulary accepted (keeps every kernel sum
/// far below `spark_hal::MAX_ACC_TERMS` and every byte count inside `u32`).
pub const MAX_DIM: u32 = 65_536;
/// Largest vocabulary accepted.
pub const MAX_VOCAB: u32 = 1 << 20;
/// Largest context accepted.
pub const MAX_SEQ: u32 = 1 << 16;

/// Largest RoPE base accepted (SPEC models use 1e4; long-context models up to about 1e7).
/// The base is also at least 1, so every rotation frequency `theta^(-2i/dh)` is at most 1.
pub const MAX_ROPE_THETA: f32 = 1e12;
/// Smallest `query_pre_attn_scalar` (the attention scale `q^-0.5` is then at most 16).
pub const MIN_QUERY_PRE_ATTN_SCALAR: f32 = 1.0 / 256.0;
/// Largest `query_pre_attn_scalar`.
pub const MAX_QUERY_PRE_ATTN_SCALAR: f32 = 16_777_216.0;
/// Smallest non-zero logit soft-cap.
pub const MIN_SOFTCAP: f32 = 1.0 / 256.0;
/// Largest logit soft-cap.
pub const MAX_SOFTCAP: f32 = 16_777_216.0;
/// Largest `embed_scale` (Gemma-2 uses `sqrt(d_model)`, at most 256 here).
pub const MAX_EMBED_SCALE: f32 = 65_536.0;

/// FFN flavour of every layer (SPEC section 4).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnKind {
    /// Spark FFN: low-rank predictor `K1`, statistical top-k, gathered `K2`, sparse `V`.
    Spark,
    /// Gated GELU FFN (the dense twin and Gemma-2), optionally with top-k on the gate.
    Geglu,
}

/// Attention flavour of every layer (SPEC section 5).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnKind {
    /// Spark attention: predictor over `ra` dims, top-`ka` keys, softmax x softplus.
    Spark,
    /// Standard softmax attention.
    Dense,
}

/// Everything that defines a model's shape and math. Field names follow SPEC section 3.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Residual width `d`.
    pub d_model: u32,
    /// Number of decoder layers.
    pub n_layers: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: u32,
    /// Head width `dh` (even).
    pub head_dim: u32,
    /// FFN width `f` (neurons).
    pub d_ff: u32,
    /// FFN flavour.
    pub ffn_kind: FfnKind,
    /// Spark predictor width `r` (0 for GeGLU).
    pub ffn_r: u32,
    /// Target active neurons `k` (`k >= f` means dense).
    pub ffn_k: u32,
    /// Attention flavour.
    pub attn_kind: AttnKind,
    /// Spark attention predictor width `ra` (0 for dense).
    pub attn_r: u32,
    /// Spark attention key budget `ka`.
    pub attn_k: u32,
    /// Longest context a session may hold.
    pub max_seq_len: u32,
    /// RoPE base.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Attention scale is `query_pre_attn_scalar^-0.5`.
    pub query_pre_attn_scalar: f32,
    /// Attention logit soft-cap (0 = off).
    pub attn_logit_softcap: f32,
    /// Final logit soft-cap (0 = off).
    pub final_logit_softcap: f32,
    /// Sliding window on even layers (0 = off).
    pub sliding_window: u32,
    /// Embedding multiplier (Gemma-2: `sqrt(d)`).
    pub embed_scale: f32,
    /// Logits use the embedding matrix (no separate `lm_head`).
    pub tie_embeddings: bool,
    /// Post-attention and post-FFN RMSNorms present (Gemma-2 style).
    pub post_norms: bool,
    /// Active-set capacity factor: `cap = min(n, ceil(topk_cap_factor * k))` (SPEC section 6).
    pub topk_cap_factor: f32,
}

fn bad(field: &'static str, reason: &'static str) -> ModelError {
    ModelError::BadConfig { field, reason }
}

fn check(ok: bool, field: &'static str, reason: &'static str) -> Result<(), ModelError> {
    if ok {
        Ok(())
    } else {
        Err(bad(field, reason))
    }
}

impl Config {
    /// Query width `n_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads as usize * self.head_dim as usize
    }
    /// Key/value width `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads as usize * self.head_dim as usize
    }
    /// True when layer `layer` uses the sliding window (even layers, window on).
    pub fn is_local_layer(&self, layer: usize) -> bool {
        self.sliding_window > 0 && layer % 2 == 0
    }

    /// First position a query at `pos` sees in layer `layer`: `pos - W + 1` on local
    /// layers once `pos >= W` (window `W`), else 0. The query sees `first..=pos`.
    pub fn first_visible(&self, layer: usize, pos: usize) -> usize {
        let w = self.sliding_window as usize;
        if self.is_local_layer(layer) && pos + 1 > w {
            pos + 1 - w
        } else {
            0
        }
    }

    /// Check every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ModelError> {
        let c = self;
        check(c.vocab_size >= 2 && c.vocab_size <= MAX_VOCAB, "vocab_size", "must be in 2..=1048576")?;
        check(c.d_model >= 2 && c.d_model <= MAX_DIM, "d_model", "must be in 2..=65536")?;
        check(c.n_layers >= 1 && c.n_layers as usize <= MAX_LAYERS, "n_layers", "must be in 1..=48")?;
        check(c.n_heads >= 1 && c.n_heads <= 1024, "n_heads", "must be in 1..=1024")?;
        check(c.n_kv_heads >= 1, "n_kv_heads", "must be at least 1")?;
        check(c.n_heads % c.n_kv_heads == 0, "n_kv_heads", "must divide n_heads")?;
        check(c.head_dim >= 2 && c.head_dim <= 1024, "head_dim", "must be in 2..=1024")?;
        check(c.head_dim % 2 == 0, "head_dim", "must be even (RoPE pairs)")?;
        check((c.q_dim() as u64) <= MAX_DIM as u64, "n_heads", "n_heads * head_dim must be <= 65536")?;
        check(c.d_ff >= 1 && c.d_ff <= MAX_DIM, "d_ff", "must be in 1..=65536")?;
        check(c.ffn_k >= 1, "ffn_k", "must be at least 1")?;
        check(c.ffn_k <= c.d_ff, "ffn_k", "must be <= d_ff")?;
        match c.ffn_kind {
            FfnKind::Spark => {
                check(c.ffn_r >= 1, "ffn_r", "must be at least 1 for a Spark FFN")?;
                check(c.ffn_r < c.d_model, "ffn_r", "must be < d_model for a Spark FFN")?;
            }
            FfnKind::Geglu => check(c.ffn_r == 0, "ffn_r", "must be 0 for a GeGLU FFN")?,
        }
        match c.attn_kind {
            AttnKind::Spark => {
                check(c.attn_r >= 2, "attn_r", "must be at least 2 for Spark attention")?;
                check(c.attn_r < c.head_dim, "attn_r", "must be < head_dim for Spark attention")?;
                check(c.attn_r % 2 == 0, "attn_r", "must be even (RoPE pairs in each part)")?;
                check(c.attn_k >= 1, "attn_k", "must be at least 1 for Spark attention")?;
            }
            AttnKind::Dense => check(c.attn_r == 0, "attn_r", "must be 0 for dense attention")?,
        }
        check(c.max_seq_len >= 1 && c.max_seq_len <= MAX_SEQ, "max_seq_len", "must be in 1..=65536")?;
        check(
            c.rope_theta.is_finite() && (1.0..=MAX_ROPE_THETA).contains(&c.rope_theta),
            "rope_theta",
            "must be in 1..=1e12",
        )?;
        check(c.norm_eps.is_finite() && (0.0..=1.0).contains(&c.norm_eps), "norm_eps", "must be in 0..=1")?;
        check(
            c.query_pre_attn_scalar.is_finite()
                && (MIN_QUERY_PRE_ATTN_SCALAR..=MAX_QUERY_PRE_ATTN_SCALAR).contains(&c.query_pre_attn_scalar),
            "query_pre_attn_scalar",
            "must be in 2^-8..=2^24",
        )?;
        let cap_ok = |x: f32| x.is_finite() && (x == 0.0 || (MIN_SOFTCAP..=MAX_SOFTCAP).contains(&x));
        check(cap_ok(c.attn_logit_softcap), "attn_logit_softcap", "must be 0 (off) or in 2^-8..=2^24")?;
        check(cap_ok(c.final_logit_softcap), "final_logit_softcap", "must be 0 (off) or in 2^-8..=2^24")?;
        check(
            c.embed_scale.is_finite() && c.embed_scale > 0.0 && c.embed_scale <= MAX_EMBED_SCALE,
            "embed_scale",
            "must be in (0, 65536]",
        )?;
        check(
            c.topk_cap_factor.is_finite() && c.topk_cap_factor >= 1.0 && c.topk_cap_factor <= 64.0,
            "topk_cap_factor",
            "must be in 1.0..=64.0",
        )?;
        check(
            self.session_bytes_estimate() <= isize::MAX as u64,
            "max_seq_len",
            "a session at max_seq_len would not fit this target's address space",
        )?;
        Ok(())
    }

    /// An upper bound, in u64, on the arena a session at `max_seq_len` needs (KV cache with
    /// its scales, plus every scratch vector with room for alignment). `validate` requires it
    /// to fit `isize`, so the exact `usize` arithmetic of the arena plan can never overflow,
    /// also on 32-bit microcontrollers.
    pub fn session_bytes_estimate(&self) -> u64 {
        let (l, kv, s) = (self.n_layers as u64, self.n_kv_heads as u64, self.max_seq_len as u64);
        let dh = self.head_dim as u64;
        let kv_cache = l * kv * s * (2 * dh + 3 * 4 + 3 * 16);
        let vectors = self.d_model as u64 + self.q_dim() as u64 + self.d_ff as u64 + self.vocab_size as u64 + s;
        kv_cache + 64 * vectors + 64 * 1024
    }
}
