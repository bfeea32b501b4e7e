//! Sparsity statistics as the CLI reports them: merging [`LayerStats`] across session
//! resets, JSON and table rendering.

use spark_core::{Config, LayerStats};
use std::fmt::Write as _;

fn min_or_zero(m: u32) -> u32 {
    if m == u32::MAX {
        0
    } else {
        m
    }
}

/// `{"layers": [...], "ffn_overflows": .., ...}` for per-layer statistics.
pub fn stats_json(cfg: &Config, stats: &[LayerStats]) -> serde_json::Value {
    let f = cfg.d_ff as f64;
    let layers: Vec<_> = stats
        .iter()
        .enumerate()
        .map(|(l, s)| {
            serde_json::json!({
                "layer": l,
                "tokens": s.tokens,
                "ffn_active": {"min": min_or_zero(s.ffn_active_min), "mean": s.ffn_active_mean(), "max": s.ffn_active_max},
                "ffn_active_fraction_mean": s.ffn_active_mean() / f,
                "attn_keys": {"min": min_or_zero(s.attn_keys_min), "mean": s.attn_keys_mean(), "max": s.attn_keys_max},
                "ffn_overflows": s.ffn_overflows,
                "ffn_underflows": s.ffn_underflows,
                "attn_overflows": s.attn_overflows,
                "attn_underflows": s.attn_underflows,
            })
        })
        .collect();
    let sum = |g: fn(&LayerStats) -> u32| stats.iter().map(|s| g(s) as u64).sum::<u64>();
    serde_json::json!({
        "d_ff": cfg.d_ff,
        "ffn_k": cfg.ffn_k,
        "layers": layers,
        "overflows": sum(|s| s.ffn_overflows) + sum(|s| s.attn_overflows),
        "underflows": sum(|s| s.ffn_underflows) + sum(|s| s.attn_underflows),
    })
}

/// A human table of per-layer statistics (one line per layer, ending in a newline).
pub fn stats_table(cfg: &Config, stats: &[LayerStats]) -> String {
    let mut s = String::new();
    let f = cfg.d_ff as f64;
    let _ = writeln!(
        s,
        "layer  ffn active min/mean/max of {} (mean %)   attn keys min/mean/max   ffn ovf/unf   attn ovf/unf",
        cfg.d_ff
    );
    for (l, st) in stats.iter().enumerate() {
        let _ = writeln!(
            s,
            "{l:>5}  {:>6} {:>9.1} {:>6}  ({:>5.1}%)   {:>6} {:>8.1} {:>6}   {:>5}/{:<5}   {:>5}/{:<5}",
            min_or_zero(st.ffn_active_min),
            st.ffn_active_mean(),
            st.ffn_active_max,
            100.0 * st.ffn_active_mean() / f,
            min_or_zero(st.attn_keys_min),
            st.attn_keys_mean(),
            st.attn_keys_max,
            st.ffn_overflows,
            st.ffn_underflows,
            st.attn_overflows,
            st.attn_underflows
        );
    }
    s
}
