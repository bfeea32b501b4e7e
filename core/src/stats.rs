//! What a session reports about its sparsity: per-layer counters ([`LayerStats`]: active
//! FFN neurons, attended keys, top-k capacity overflows and underflows) and the
//! [`Observer`] hook that sees every selection as it is made (tests, `eval`, tracing).
//!
//! Tested by the session tests (`tests/`): the counters against the selections an
//! observer records, and `merge` against one long run.

use crate::topk::Selection;

/// Sparsity counters of one layer, accumulated over every token since the last reset.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerStats {
    /// Tokens seen.
    pub tokens: u32,
    /// Fewest active FFN neurons in one token.
    pub ffn_active_min: u32,
    /// Most active FFN neurons in one token.
    pub ffn_active_max: u32,
    /// Sum of active FFN neurons (mean = sum / tokens).
    pub ffn_active_sum: u64,
    /// FFN top-k capacity overflows.
    pub ffn_overflows: u32,
    /// FFN top-k underflows (nothing passed the threshold).
    pub ffn_underflows: u32,
    /// (token, head) pairs seen.
    pub attn_queries: u32,
    /// Fewest keys attended by one head.
    pub attn_keys_min: u32,
    /// Most keys attended by one head.
    pub attn_keys_max: u32,
    /// Sum of attended keys (mean = sum / attn_queries).
    pub attn_keys_sum: u64,
    /// Attention top-k capacity overflows.
    pub attn_overflows: u32,
    /// Attention top-k underflows.
    pub attn_underflows: u32,
}

impl Default for LayerStats {
    fn default() -> Self {
        LayerStats::EMPTY
    }
}

impl LayerStats {
    /// No tokens seen (minima start at `u32::MAX`).
    pub const EMPTY: LayerStats = LayerStats {
        tokens: 0,
        ffn_active_min: u32::MAX,
        ffn_active_max: 0,
        ffn_active_sum: 0,
        ffn_overflows: 0,
        ffn_underflows: 0,
        attn_queries: 0,
        attn_keys_min: u32::MAX,
        attn_keys_max: 0,
        attn_keys_sum: 0,
        attn_overflows: 0,
        attn_underflows: 0,
    };
    /// Count one FFN call that selected `n` neurons.
    pub(crate) fn ffn(&mut self, n: usize, sel: &Selection) {
        let n = n as u32;
        self.tokens += 1;
        self.ffn_active_min = self.ffn_active_min.min(n);
        self.ffn_active_max = self.ffn_active_max.max(n);
        self.ffn_active_sum += n as u64;
        self.ffn_overflows += sel.overflow as u32;
        self.ffn_underflows += sel.underflow as u32;
    }
    /// Count one attention head call that attended `n` keys.
    pub(crate) fn attn(&mut self, n: usize, sel: Option<&Selection>) {
        let n = n as u32;
        self.attn_queries += 1;
        self.attn_keys_min = self.attn_keys_min.min(n);
        self.attn_keys_max = self.attn_keys_max.max(n);
        self.attn_keys_sum += n as u64;
        if let Some(s) = sel {
            self.attn_overflows += s.overflow as u32;
            self.attn_underflows += s.underflow as u32;
        }
    }
    /// `self += other`: sums and counts add, minima and maxima combine (for statistics
    /// gathered over several sessions or windows).
    pub fn merge(&mut self, o: &LayerStats) {
        self.tokens += o.tokens;
        self.ffn_active_min = self.ffn_active_min.min(o.ffn_active_min);
        self.ffn_active_max = self.ffn_active_max.max(o.ffn_active_max);
        self.ffn_active_sum += o.ffn_active_sum;
        self.ffn_overflows += o.ffn_overflows;
        self.ffn_underflows += o.ffn_underflows;
        self.attn_queries += o.attn_queries;
        self.attn_keys_min = self.attn_keys_min.min(o.attn_keys_min);
        self.attn_keys_max = self.attn_keys_max.max(o.attn_keys_max);
        self.attn_keys_sum += o.attn_keys_sum;
        self.attn_overflows += o.attn_overflows;
        self.attn_underflows += o.attn_underflows;
    }

    /// Mean active FFN neurons per token.
    pub fn ffn_active_mean(&self) -> f64 {
        self.ffn_active_sum as f64 / self.tokens.max(1) as f64
    }
    /// Mean attended keys per (token, head).
    pub fn attn_keys_mean(&self) -> f64 {
        self.attn_keys_sum as f64 / self.attn_queries.max(1) as f64
    }
}

/// Receives every selection a step makes (for tests, `eval` and tracing). All methods
/// default to doing nothing; `()` is the no-op observer.
pub trait Observer {
    /// FFN of `layer` selected these neurons (ascending ids).
    fn ffn(&mut self, layer: usize, active: &[u32], sel: &Selection) {
        let _ = (layer, active, sel);
    }
    /// Query head `head` of `layer` attends these key positions (ascending); `sel` is
    /// `None` when every visible key was taken (dense attention or `n <= ka`).
    fn attn(&mut self, layer: usize, head: usize, positions: &[u32], sel: Option<&Selection>) {
        let _ = (layer, head, positions, sel);
    }
}

impl Observer for () {}
