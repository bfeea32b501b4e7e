//! The attention head (SPEC section 5): [`attend_head`] runs one query head over one kv
//! head's cache rows ([`KvView`]), dense (softmax) or Spark (predictor scores over the
//! first key part, statistical top-`ka`, softmax times softplus of the second part, `K2`
//! and `V` rows of the selected keys only).
//!
//! [`AttnParams`] is the one place the per-step settings are derived (visible window,
//! `z = Phi^-1(1 - ka/n)`, capacity); the session, `spark-sim bench` and the tests take
//! them from here. The projections, RoPE and the cache append live in the session's
//! decode loop; this module is the part a benchmark runs alone.
//!
//! Tested by the session tests (`tests/`: rows read per call with a recording backend,
//! whole forward passes against the f32 oracle, every backend bit-exact).

use crate::config::{AttnKind, Config};
use crate::exec::{self, Executor, Sequential};
use crate::ops::sparse_rows_out;
use crate::topk::{stat_topk_with, topk_capacity, topk_z, Selection};
use spark_hal::math::softplus_f32;
use spark_hal::Kernels;

/// One kv head's slice of a layer's KV cache, rows indexed by position.
///
/// Key part 1 is a dense stream (every visible row is read for the predictor scores);
/// key part 2 and the value of a position are *bundled* in one record of `rb + dh` bytes,
/// so the gathers of a selected key read one contiguous run.
pub struct KvView<'c> {
    /// Key part 1 `[max_seq, ra]`.
    pub k1: &'c [i8],
    /// Key part 2 and value of each position `[max_seq, rb + dh]` (`rb = 0`: values only).
    pub kv: &'c [i8],
    /// Key part 1 scales `[max_seq]`.
    pub k1_scale: &'c [f32],
    /// Key part 2 and value scales `[max_seq, 2]`.
    pub kv_scale: &'c [f32],
    /// Width of key part 1 (`dh` for dense attention).
    pub ra: usize,
    /// Width of key part 2 (0 for dense attention).
    pub rb: usize,
}

/// Scratch of one attention head call.
pub struct AttnScratch<'s> {
    /// Scores over visible positions `[n]`.
    pub scores: &'s mut [f32],
    /// Selected positions `[cap]`.
    pub idx: &'s mut [u32],
    /// Weights of the selected `[cap]`.
    pub w: &'s mut [f32],
    /// Quantized query parts / coefficients `[max(ra, rb, cap)]`.
    pub xq: &'s mut [i8],
    /// `V` rows read: the selected positions whose int8 coefficient is not zero `[cap]`.
    pub kept: &'s mut [u32],
    /// Kernel outputs `[max(n, dh)]`.
    pub acc: &'s mut [i32],
}

/// Per-step attention parameters shared by every head of a layer: the one place the
/// attention's derived settings (`z`, capacity, sparse or not) are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnParams {
    /// Spark attention (softmax x softplus) rather than dense softmax.
    pub spark: bool,
    /// Score scale `query_pre_attn_scalar^-0.5`.
    pub c: f32,
    /// Logit soft-cap (0 = off).
    pub softcap: f32,
    /// Key budget `ka`.
    pub ka: usize,
    /// Statistical top-k over the visible keys (`spark` and `n > ka`).
    pub sparse: bool,
    /// `Phi^-1(1 - ka/n)` when sparse.
    pub z: f32,
    /// Active-set capacity `min(n, ceil(cap_factor * ka))` when sparse, else `n`.
    pub cap: usize,
}

impl AttnParams {
    /// The rule (SPEC sections 5 and 6), for `n` visible keys: Spark attention with more
    /// than `ka` visible keys runs statistical top-k with `z = Phi^-1(1 - ka/n)` into
    /// `min(n, ceil(cap_factor * ka))` slots; otherwise every visible key is attended.
    pub fn from_parts(
        spark: bool,
        ka: usize,
        cap_factor: f32,
        query_pre_attn_scalar: f32,
        softcap: f32,
        n: usize,
    ) -> AttnParams {
        let sparse = spark && n > ka;
        let (z, cap) = if sparse { (topk_z(n, ka), topk_capacity(n, ka, cap_factor)) } else { (0.0, n) };
        AttnParams { spark, c: 1.0 / libm::sqrtf(query_pre_attn_scalar), softcap, ka, sparse, z, cap }
    }

    /// Parameters for `n` visible keys of a model with configuration `cfg`.
    pub fn new(cfg: &Config, n: usize) -> AttnParams {
        let spark = cfg.attn_kind == AttnKind::Spark;
        AttnParams::from_parts(
            spark,
            cfg.attn_k as usize,
            cfg.topk_cap_factor,
            cfg.query_pre_attn_scalar,
            cfg.attn_logit_softcap,
            n,
        )
    }

    /// The visible positions `start..=pos` of a query at `pos` in layer `layer` and the
    /// parameters for them ([`Config::first_visible`], then [`AttnParams::new`]).
    pub fn for_step(cfg: &Config, layer: usize, pos: usize) -> (usize, AttnParams) {
        let start = cfg.first_visible(layer, pos);
        (start, AttnParams::new(cfg, pos + 1 - start))
    }

    /// The largest active-set capacity any step of a context of `max_seq` positions
    /// needs (the capacity grows with the visible count).
    pub fn max_cap(cfg: &Config, max_seq: usize) -> usize {
        AttnParams::new(cfg, max_seq).cap
    }
}

/// One query head over the visible positions `start..=end` of `kv` (SPEC section 5).
///
/// `s1_j = c q1 . k1_j` for every visible j (one gemv over contiguous cache rows), optional
/// soft-cap, selection (all visible, or statistical top-ka), softmax over the selected,
/// times `softplus(c q2 . k2_j)` for Spark (K2 rows of the selected only), then
/// `o = sum_j w_j v_j` with int8 coefficients (V rows of the selected whose coefficient is
/// not zero only). Writes `out[dh]`; returns the number of selected keys (positions in
/// `s.idx[..len]`, ascending), the top-k selection when one ran and the V rows read.
pub fn attend_head<K: Kernels>(
    q: &[f32],
    kv: &KvView<'_>,
    start: usize,
    end: usize,
    p: &AttnParams,
    s: &mut AttnScratch<'_>,
    out: &mut [f32],
) -> AttnRun {
    attend_head_on::<K, Sequential>(&Sequential, q, kv, start, end, p, s, out)
}

/// [`attend_head`] with its integer products (key scores, `K2` row gather, value product)
/// split into chunks run by `e` (see [`crate::exec`]): the same bits for every executor.
pub fn attend_head_on<K: Kernels, E: Executor>(
    e: &E,
    q: &[f32],
    kv: &KvView<'_>,
    start: usize,
    end: usize,
    p: &AttnParams,
    s: &mut AttnScratch<'_>,
    out: &mut [f32],
) -> AttnRun {
    let (ra, rb, dh) = (kv.ra, kv.rb, kv.ra + kv.rb);
    let stride = rb + dh; // one [K2 | V] record
    let n = end + 1 - start;

    // Predictor scores over the visible keys.
    let qs = K::quantize_sym_i8(&q[..ra], &mut s.xq[..ra]);
    exec::gemv::<K, E>(e, &kv.k1[start * ra..(end + 1) * ra], ra, &s.xq[..ra], &mut s.acc[..n]);
    // s1_j = acc_j * scale_q * scale_K1_j * c, soft-capped when the model says so.
    let s1 = &mut s.scores[..n];
    K::scores_f32(&s.acc[..n], qs, &kv.k1_scale[start..=end], p.c, p.softcap, s1);

    // Select keys (local indices, ascending).
    let (len, sel) = if p.sparse {
        let sel = stat_topk_with::<K>(s1, p.ka, p.z, &mut s.idx[..p.cap], &mut s.w[..p.cap]);
        (sel.len, Some(sel))
    } else {
        for j in 0..n {
            s.idx[j] = j as u32;
        }
        (n, None)
    };

    // A selection is a gather: start fetching the selected [K2 | V] records and their
    // scales now, so the gathers overlap the softmax instead of waiting on memory in turn.
    if p.sparse {
        let sel = &s.idx[..len];
        K::prefetch_rows(&kv.kv[start * stride..], stride, sel);
        K::prefetch_rows(&kv.kv_scale[2 * start..], 2, sel);
    }

    // w_j = softmax over the selected of s1_j.
    let idx = &mut s.idx[..len];
    let w = &mut s.w[..len];
    for j in 0..len {
        w[j] = s1[idx[j] as usize];
    }
    let mut mx = f32::NEG_INFINITY;
    for j in 0..len {
        mx = mx.max(w[j]);
    }
    K::exp_shifted_f32(w, mx);
    let mut sum = 0.0f32;
    for j in 0..len {
        sum += w[j];
    }
    for j in 0..len {
        w[j] /= sum;
        idx[j] += start as u32; // cache row = position
    }

    // Spark: w_j *= softplus(c q2 . k2_j), reading K2 rows of the selected only.
    if p.spark {
        let q2s = K::quantize_sym_i8(&q[ra..dh], &mut s.xq[..rb]);
        exec::gemv_rows::<K, E>(e, kv.kv, stride, rb, idx, &s.xq[..rb], &mut s.acc[..len]);
        // The scores are no longer needed: their buffer holds the softplus arguments, so
        // the softplus loop runs over a contiguous slice (and vectorises).
        let g = &mut s.scores[..len];
        for j in 0..len {
            g[j] = s.acc[j] as f32 * q2s * kv.kv_scale[2 * idx[j] as usize] * p.c;
        }
        for j in 0..len {
            w[j] *= softplus_f32(g[j]);
        }
    }

    // o = sum_j w_j v_j: coefficients w_j * scale_v_j quantized to int8 with one scale
    // (the V rows of zero coefficients are skipped).
    for j in 0..len {
        w[j] *= kv.kv_scale[2 * idx[j] as usize + 1];
    }
    let v_rows = sparse_rows_out::<K, E>(e, &kv.kv[rb..], stride, dh, idx, w, s.xq, s.kept, s.acc, out);
    AttnRun { len, sel, v_rows }
}

/// What one [`attend_head`] call selected and read.
#[derive(Clone, Copy, Debug)]
pub struct AttnRun {
    /// Attended positions (`s.idx[..len]`, ascending cache rows).
    pub len: usize,
    /// The top-k selection when one ran.
    pub sel: Option<Selection>,
    /// `V` rows read: the attended positions whose int8 coefficient is not zero
    /// (`s.kept[..v_rows]`).
    pub v_rows: usize,
}
