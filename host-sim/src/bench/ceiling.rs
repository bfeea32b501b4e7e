//! The byte ceiling of `bench model`: every byte one decode step of a model must read,
//! from its config, the context and what the step selected. Decode is memory-bound (SPEC
//! section 11), so dense bytes / Spark bytes is the most a Spark model can gain over its
//! dense twin on a machine that streams both at the same rate.
//!
//! A ceiling assumes each byte is fetched from DRAM once per token: bytes are counted
//! once even where the code reads them more than once (the query heads of one kv head
//! read the same cache rows; the tied embedding is both the embedding row and the logits
//! head, counted in both since they are read at the two ends of the step). Weights come
//! with their f32 row scales. Tested below on a small config against hand-computed
//! counts, and against the tensor bytes of the model file.

use spark_core::{AttnKind, Config, FfnKind};

/// Bytes one decode step reads, by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct TokenBytes {
    /// The token's embedding row and its scale.
    pub embed_row: f64,
    /// `Wq`, `Wk`, `Wv`, `Wo` of every layer, with scales.
    pub attn_proj: f64,
    /// The KV cache rows attention reads, with their scales.
    pub kv_cache: f64,
    /// The FFN weights read, with scales.
    pub ffn: f64,
    /// The logits head (`vocab x d`, the embedding when tied), with scales.
    pub head: f64,
    /// Every norm weight vector (per layer and final).
    pub norms: f64,
}

impl TokenBytes {
    /// All bytes of the step.
    pub fn total(&self) -> f64 {
        self.embed_row + self.attn_proj + self.kv_cache + self.ffn + self.head + self.norms
    }
}

/// The bytes a decode step of `cfg` must read with `n` visible positions (the step at
/// position `p` sees `p + 1`, fewer on sliding-window layers), given the mean active FFN
/// neurons per layer `ffn_active[l]` and the mean keys each query head attended per layer
/// `attn_keys[l]` (the session's [`spark_core::LayerStats`] means; a missing entry counts
/// the config's target: `ffn_k`, `min(n, attn_k)`).
///
/// Per layer: the four attention projections; the KV cache: key part 1 of every visible
/// position and kv head (dense: the whole key), and key part 2 and the value row of the
/// selected positions (dense: every visible one), where the query heads of one kv head
/// select `attn_keys` each, counted as distinct up to all `n` (what the code fetches when
/// their selections do not overlap); the FFN: Spark all of `K1` and the `K2` and `V` rows
/// of the active neurons, GeGLU all of `Wg` and the `Wu` and `Wd` (stored transposed)
/// rows of the active neurons (every neuron in a dense twin).
pub fn token_bytes(cfg: &Config, n: usize, ffn_active: &[f64], attn_keys: &[f64]) -> TokenBytes {
    const S: f64 = 4.0; // one f32 scale
    let d = cfg.d_model as f64;
    let (nh, nkv, dh) = (cfg.n_heads as f64, cfg.n_kv_heads as f64, cfg.head_dim as f64);
    let (q, kv) = (nh * dh, nkv * dh);
    let group = (cfg.n_heads / cfg.n_kv_heads.max(1)) as f64;
    let (ra, rb) = match cfg.attn_kind {
        AttnKind::Spark => (cfg.attn_r as f64, dh - cfg.attn_r as f64),
        AttnKind::Dense => (dh, 0.0),
    };
    let f = cfg.d_ff as f64;
    let norms_per_layer = if cfg.post_norms { 4.0 } else { 2.0 };
    let mut t = TokenBytes {
        embed_row: d + S,
        attn_proj: 0.0,
        kv_cache: 0.0,
        ffn: 0.0,
        head: cfg.vocab_size as f64 * (d + S),
        norms: d * S,
    };
    for l in 0..cfg.n_layers as usize {
        let local = cfg.sliding_window > 0 && l % 2 == 0;
        let nl = if local { n.min(cfg.sliding_window as usize) } else { n } as f64;
        t.attn_proj += q * (d + S) + 2.0 * kv * (d + S) + d * (q + S);
        let keys = attn_keys.get(l).copied().unwrap_or(match cfg.attn_kind {
            AttnKind::Spark => nl.min(cfg.attn_k as f64),
            AttnKind::Dense => nl,
        });
        let sel = (group * keys).min(nl);
        let part2 = if rb > 0.0 { rb + S } else { 0.0 };
        t.kv_cache += nkv * (nl * (ra + S) + sel * (part2 + dh + S));
        let active = ffn_active.get(l).copied().unwrap_or((cfg.ffn_k as f64).min(f));
        t.ffn += match cfg.ffn_kind {
            FfnKind::Spark => {
                let r = cfg.ffn_r as f64;
                f * (r + S) + active * ((d - r + S) + (d + S))
            }
            FfnKind::Geglu => f * (d + S) + 2.0 * active * (d + S),
        };
        t.norms += norms_per_layer * d * S;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmodel::{for_each_weight, small_dense_config, small_spark_config};
    use spark_core::format::expected;

    #[test]
    fn spark_bytes_by_hand() {
        // vocab 48, d 32, 2 layers, 4 q / 2 kv heads of 8, f 96 r 12, ra 4, no post norms.
        let c = small_spark_config();
        let t = token_bytes(&c, 10, &[9.0, 7.0], &[5.0, 3.0]);
        assert_eq!(t.embed_row, 36.0);
        // Wq 32x32 + 32 scales, Wk and Wv 16x32 + 16, Wo 32x32 + 32: 1152 + 2 * 576 + 1152.
        assert_eq!(t.attn_proj, 2.0 * 3456.0);
        // Per kv head: K1 10 x (4 + 4); selected min(10, 2 heads x keys) x (K2 4 + 4, V 8 + 4):
        // layer 0: 80 + 10 x 20 = 280, layer 1: 80 + 6 x 20 = 200; two kv heads each.
        assert_eq!(t.kv_cache, 2.0 * 280.0 + 2.0 * 200.0);
        // K1 96 x (12 + 4) = 1536 per layer; K2 (20 + 4) and V (32 + 4) rows of 9 and 7.
        assert_eq!(t.ffn, 2.0 * 1536.0 + 60.0 * 16.0);
        assert_eq!(t.head, 48.0 * 36.0);
        assert_eq!(t.norms, 2.0 * 2.0 * 128.0 + 128.0);
        assert_eq!(t.total(), 14308.0);
        // Missing measurements fall back to the targets: k = 9 neurons, min(n, ka = 5) keys.
        let d = token_bytes(&c, 10, &[9.0], &[5.0]);
        assert_eq!(d.ffn, 2.0 * (1536.0 + 9.0 * 60.0));
        assert_eq!(d.kv_cache, 4.0 * 280.0);
        // Below ka every key is attended and read once however many heads share it.
        assert_eq!(token_bytes(&c, 3, &[], &[]).kv_cache, 4.0 * (3.0 * 8.0 + 3.0 * 20.0));
    }

    #[test]
    fn dense_bytes_by_hand() {
        let c = small_dense_config();
        let t = token_bytes(&c, 10, &[64.0, 64.0], &[10.0, 10.0]);
        assert_eq!(t.attn_proj, 2.0 * 3456.0);
        // K 10 x (8 + 4) and V 10 x (8 + 4) per kv head, two kv heads, two layers.
        assert_eq!(t.kv_cache, 4.0 * 240.0);
        // Wg, Wu, Wd^T: 64 x (32 + 4) each per layer.
        assert_eq!(t.ffn, 2.0 * 3.0 * 64.0 * 36.0);
        assert_eq!(t.total(), 24100.0);
        // Sliding window 4 on the even layers, post norms: 4 norm vectors per layer.
        let w = Config { sliding_window: 4, post_norms: true, ..c };
        let t = token_bytes(&w, 10, &[], &[]);
        assert_eq!(t.kv_cache, 2.0 * (4.0 * 24.0) + 2.0 * (10.0 * 24.0));
        assert_eq!(t.norms, 2.0 * 4.0 * 128.0 + 128.0);
    }

    #[test]
    fn a_dense_step_reads_every_tensor_byte_of_its_file() {
        // Weights and norms of a dense twin (tied embedding = logits head) are the whole
        // model file's tensors: the step reads all of them, plus the embedding row and cache.
        for c in [small_dense_config(), Config { post_norms: true, ..small_dense_config() }] {
            let mut file = 0.0;
            for_each_weight(&c, |id, _, _, _| {
                for k in [Some(id.kind), id.kind.scale()].into_iter().flatten() {
                    if let Some((dt, [r, cols])) = expected(&c, k) {
                        file += (r as usize * cols as usize * dt.size()) as f64;
                    }
                }
            });
            let t = token_bytes(&c, 7, &[], &[]);
            assert_eq!(t.attn_proj + t.ffn + t.head + t.norms, file);
        }
    }
}
