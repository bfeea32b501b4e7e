//! The int8 decoder: one [`Session`] decodes tokens over a caller-provided arena.
//!
//! Reads like a plain C inference loop: [`Session::step`] embeds a token, runs every layer
//! (`attention`, then `ffn`, SPEC sections 3-5) and computes the logits. Every matrix
//! product is one of the four `spark-hal` kernels over int8 weights read in place from the
//! model; all float work (norms, RoPE, softmax, GELU, softplus, statistics, dequantisation)
//! happens here in a fixed order with `libm`, with no fused multiply-add, so a model gives
//! bit-identical logits on every target and backend.
//!
//! Sparse reads: the Spark FFN reads `K2` and `V` rows of the selected neurons only (`V`
//! and the GeGLU `Wd` rows only where the neuron's int8 coefficient is not zero), and
//! Spark attention reads the `K2`/`V` cache rows of the selected positions only (the
//! kernels receive the row lists). `host-sim/tests/session.rs` checks this with a recording
//! kernel backend, checks the arena is exactly [`Model::arena_bytes`], and runs random
//! models through every path; `host-sim/tests/int8_vs_oracle.rs` compares the logits and
//! active sets with the f32 oracle on the golden models.
//!
//! Quantisation points (SPEC section 7): every activation vector is quantized per vector
//! right before its matvec; the sparse vector-matrix coefficients (`gelu(t) * u * scale_V`
//! for the FFN, `w * g * scale_V` for attention) are quantized to int8 with one scale per
//! call; the KV cache stores int8 with one f32 scale per (position, kv head, part).

use crate::config::{AttnKind, Config, FfnKind, MAX_LAYERS};
use crate::error::RunError;
use crate::format::{F32Slice, Model, QMatrix};
use crate::tensor::TensorKind as T;
use crate::topk::{
    select_above_with, stat_topk_threshold, stat_topk_with, topk_capacity, topk_z, Selection, StatAccumulator,
};
use core::marker::PhantomData;
use spark_hal::arena::{arena_cost, Arena};
use spark_hal::math::{softplus_f32, tanh_f32};
use spark_hal::Kernels;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// Predictor rows computed per chunk before their scores feed the top-k statistics
/// (256 f32 scores = 1 KiB, resident in L1 on every target).
const PREDICTOR_CHUNK: usize = 256;

/// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
#[inline]
pub fn gelu(x: f32) -> f32 {
    let x3 = x * x * x;
    let inner = SQRT_2_OVER_PI * (x + 0.044715 * x3);
    0.5 * x * (1.0 + tanh_f32(inner))
}

/// `out = x / sqrt(mean(x^2) + eps) * w`.
fn rmsnorm(out: &mut [f32], x: &[f32], w: F32Slice<'_>, eps: f32) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    let inv = 1.0 / libm::sqrtf(ss / x.len() as f32 + eps);
    for i in 0..x.len() {
        out[i] = x[i] * inv * w.get(i);
    }
}

/// Rotate-half RoPE on one part of width `2 * cos.len()`.
#[inline]
fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}

/// `out[i] = (W x)[i]`: quantize `x` into `xq[..cols]`, integer gemv, dequantize with both
/// scales (`acc * x_scale * row_scale`). Returns the activation scale; `xq` keeps the
/// quantized `x` for a following row gather.
pub fn matvec<K: Kernels>(m: &QMatrix<'_>, x: &[f32], xq: &mut [i8], acc: &mut [i32], out: &mut [f32]) -> f32 {
    let xq = &mut xq[..m.cols];
    let acc = &mut acc[..m.rows];
    let xs = K::quantize_sym_i8(x, xq);
    K::gemv_i8(m.data, m.cols, xq, acc);
    for i in 0..m.rows {
        out[i] = acc[i] as f32 * xs * m.scales.get(i);
    }
    xs
}

/// `y = sum_j coef_j * W[rows[j]]` over the int8 rows of `w` (`cols` each): the
/// coefficients are quantized to int8 with one scale, the rows whose int8 coefficient is 0
/// are dropped (they add exactly nothing), and one sparse vector-matrix kernel call reads
/// only the rows left, listed in `kept`. Returns how many rows it read (`kept[..len]`).
#[allow(clippy::too_many_arguments)]
fn sparse_rows_out<K: Kernels>(
    w: &[i8],
    cols: usize,
    rows: &[u32],
    coef: &[f32],
    xq: &mut [i8],
    kept: &mut [u32],
    acc: &mut [i32],
    y: &mut [f32],
) -> usize {
    let n = rows.len();
    let cs = K::quantize_sym_i8(coef, &mut xq[..n]);
    // Compact in list order: xq[..m] and kept[..m] are the non-zero coefficients and
    // their rows (m <= j, so the in-place moves never overwrite an unread entry).
    // Branch-free: every entry is written, the count advances only past non-zero ones.
    let (xq, kept) = (&mut xq[..n], &mut kept[..n]);
    let mut m = 0;
    for j in 0..n {
        let c = xq[j];
        xq[m] = c;
        kept[m] = rows[j];
        m += (c != 0) as usize;
    }
    let acc = &mut acc[..cols];
    acc.fill(0);
    K::gemv_t_rows_i8(w, cols, &kept[..m], &xq[..m], acc);
    for i in 0..cols {
        y[i] = acc[i] as f32 * cs;
    }
    m
}

/// The sparse vector-matrix coefficients of an FFN: for selected neuron `i = idx[j]`,
/// `t[j] <- gelu(t[j]) * u_i * out_scale_i` with `u_i = acc[j] * x_scale * up_scale_i`
/// (the dequantized up/`K2` projection).
fn gated_coefficients(t: &mut [f32], idx: &[u32], acc: &[i32], x_scale: f32, up: F32Slice<'_>, out: F32Slice<'_>) {
    // gelu over the contiguous scores first (this loop vectorises), then the gathers.
    for v in t.iter_mut() {
        *v = gelu(*v);
    }
    for j in 0..t.len() {
        let i = idx[j] as usize;
        let u = acc[j] as f32 * x_scale * up.get(i);
        t[j] = t[j] * u * out.get(i);
    }
}

/// Scratch of one FFN call (views into the session arena, or any caller buffers).
pub struct FfnScratch<'s> {
    /// Predictor or gate scores `[f]`.
    pub scores: &'s mut [f32],
    /// Selected neurons `[cap]` (cap = `min(f, ceil(cap_factor * k))`, or `f` when dense).
    pub idx: &'s mut [u32],
    /// Soft-thresholded scores, then coefficients `[cap]`.
    pub t: &'s mut [f32],
    /// Quantized activations / coefficients `[max(d, cap)]`.
    pub xq: &'s mut [i8],
    /// Rows the output product reads: the selected neurons whose int8 coefficient is not
    /// zero `[cap]`.
    pub kept: &'s mut [u32],
    /// Kernel outputs `[max(d, f)]`.
    pub acc: &'s mut [i32],
}

/// Weights and top-k parameters of one Spark FFN layer.
pub struct SparkFfn<'m> {
    /// Predictor `[f, r]`.
    pub k1: QMatrix<'m>,
    /// Second key part `[f, d - r]`.
    pub k2: QMatrix<'m>,
    /// Values, one row per neuron `[f, d]`.
    pub v: QMatrix<'m>,
    /// Target active neurons.
    pub k: usize,
    /// `Phi^-1(1 - k/f)`.
    pub z: f32,
}

/// What one FFN call selected and read.
#[derive(Clone, Copy, Debug)]
pub struct FfnRun {
    /// The selected neurons (`s.idx[..sel.len]`, ascending; every neuron when dense).
    pub sel: Selection,
    /// Rows of the output matrix (`V`, or `Wd` stored transposed) read: the selected
    /// neurons whose int8 coefficient is not zero (`s.kept[..out_rows]`).
    pub out_rows: usize,
}

/// Spark FFN (SPEC section 4): `y = sum_{i in S} gelu(t_i) (K2_i . h2) V_i`. Reads `K2` rows
/// of the selected neurons and `V` rows of those among them whose int8 coefficient is not
/// zero.
pub fn spark_ffn<K: Kernels>(w: &SparkFfn<'_>, h: &[f32], s: &mut FfnScratch<'_>, y: &mut [f32]) -> FfnRun {
    let (f, r) = (w.k1.rows, w.k1.cols);
    // Predictor s = K1 h[0..r) over all neurons, chunk by chunk, each chunk's scores
    // pushed into the top-k statistics while they are still in L1; then the selection.
    let xs = K::quantize_sym_i8(&h[..r], &mut s.xq[..r]);
    let mut stats = StatAccumulator::new();
    let mut c0 = 0;
    while c0 < f {
        let c1 = (c0 + PREDICTOR_CHUNK).min(f);
        K::gemv_i8(&w.k1.data[c0 * r..c1 * r], r, &s.xq[..r], &mut s.acc[c0..c1]);
        for i in c0..c1 {
            s.scores[i] = s.acc[i] as f32 * xs * w.k1.scales.get(i);
        }
        stats.push_slice(&s.scores[c0..c1]);
        c0 = c1;
    }
    let scores = &s.scores[..f];
    let sel = if w.k >= f {
        stat_topk_with::<K>(scores, w.k, w.z, s.idx, s.t) // the identity
    } else {
        select_above_with::<K>(scores, stat_topk_threshold(&stats.finish(), w.z), s.idx, s.t)
    };
    let idx = &s.idx[..sel.len];
    // The row scales of the selected neurons are a gather too (one f32 per row, spread
    // over the whole scale vector): start fetching them now. (The K2 and V row kernels
    // prefetch their own rows.)
    K::prefetch_rows(w.k2.scales.0, 4, idx);
    K::prefetch_rows(w.v.scales.0, 4, idx);

    // u_i = K2_i . h[r..d) for the selected neurons only.
    let h2 = &h[r..];
    let hs = K::quantize_sym_i8(h2, &mut s.xq[..h2.len()]);
    K::gemv_rows_i8(w.k2.data, w.k2.cols, idx, &s.xq[..h2.len()], &mut s.acc[..sel.len]);

    // coef_i = gelu(t_i) * u_i * scale_V_i, then y = sum_i coef_i V_i.
    let coef = &mut s.t[..sel.len];
    gated_coefficients(coef, idx, &s.acc[..sel.len], hs, w.k2.scales, w.v.scales);
    let out_rows = sparse_rows_out::<K>(w.v.data, w.v.cols, idx, coef, s.xq, s.kept, s.acc, y);
    FfnRun { sel, out_rows }
}

/// Weights and top-k parameters of one GeGLU FFN layer.
pub struct GegluFfn<'m> {
    /// Gate `[f, d]`.
    pub wg: QMatrix<'m>,
    /// Up `[f, d]`.
    pub wu: QMatrix<'m>,
    /// Down, stored transposed, one row per neuron `[f, d]`.
    pub wd_t: QMatrix<'m>,
    /// Target active neurons (`k >= f`: dense).
    pub k: usize,
    /// `Phi^-1(1 - k/f)` (unused when dense).
    pub z: f32,
}

/// GeGLU FFN: `y = Wd (gelu(g) * (Wu h))` with `g = Wg h`, optionally statistical top-k on
/// the gate (Gemma 3n style), in which case `Wu` and `Wd` rows of the selected neurons only
/// are read. Either way `Wd` rows whose int8 coefficient is zero are skipped.
pub fn geglu_ffn<K: Kernels>(w: &GegluFfn<'_>, h: &[f32], s: &mut FfnScratch<'_>, y: &mut [f32]) -> FfnRun {
    // Gate g = Wg h, then top-k on the gate (identity when k >= f).
    let hs = matvec::<K>(&w.wg, h, s.xq, s.acc, s.scores);
    let sel = stat_topk_with::<K>(&s.scores[..w.wg.rows], w.k, w.z, s.idx, s.t);
    let idx = &s.idx[..sel.len];

    // u_i = Wu_i . h for the selected neurons (s.xq still holds h quantized); when every
    // neuron is selected (dense) the plain gemv streams Wu without an index list.
    if sel.len == w.wu.rows {
        K::gemv_i8(w.wu.data, w.wu.cols, &s.xq[..h.len()], &mut s.acc[..sel.len]);
    } else {
        K::prefetch_rows(w.wu.scales.0, 4, idx); // as in `spark_ffn`
        K::prefetch_rows(w.wd_t.scales.0, 4, idx);
        K::gemv_rows_i8(w.wu.data, w.wu.cols, idx, &s.xq[..h.len()], &mut s.acc[..sel.len]);
    }
    let coef = &mut s.t[..sel.len];
    gated_coefficients(coef, idx, &s.acc[..sel.len], hs, w.wu.scales, w.wd_t.scales);
    let out_rows = sparse_rows_out::<K>(w.wd_t.data, w.wd_t.cols, idx, coef, s.xq, s.kept, s.acc, y);
    FfnRun { sel, out_rows }
}

/// One kv head's slice of a layer's KV cache, rows indexed by position.
pub struct KvView<'c> {
    /// Key part 1 `[max_seq, ra]`.
    pub k1: &'c [i8],
    /// Key part 2 `[max_seq, rb]` (empty for dense attention).
    pub k2: &'c [i8],
    /// Values `[max_seq, dh]`.
    pub v: &'c [i8],
    /// Scales `[max_seq]` of each part.
    pub k1_scale: &'c [f32],
    /// Part 2 scales `[max_seq]`.
    pub k2_scale: &'c [f32],
    /// Value scales `[max_seq]`.
    pub v_scale: &'c [f32],
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

/// Per-step attention parameters shared by every head of a layer.
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
    /// Parameters for `n` visible keys under `cfg`.
    pub fn new(cfg: &Config, n: usize) -> AttnParams {
        let spark = cfg.attn_kind == AttnKind::Spark;
        let ka = cfg.attn_k as usize;
        let sparse = spark && n > ka;
        let (z, cap) = if sparse { (topk_z(n, ka), topk_capacity(n, ka, cfg.topk_cap_factor)) } else { (0.0, n) };
        AttnParams {
            spark,
            c: 1.0 / libm::sqrtf(cfg.query_pre_attn_scalar),
            softcap: cfg.attn_logit_softcap,
            ka,
            sparse,
            z,
            cap,
        }
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
    let (ra, rb, dh) = (kv.ra, kv.rb, kv.ra + kv.rb);
    let n = end + 1 - start;

    // Predictor scores over the visible keys.
    let qs = K::quantize_sym_i8(&q[..ra], &mut s.xq[..ra]);
    K::gemv_i8(&kv.k1[start * ra..(end + 1) * ra], ra, &s.xq[..ra], &mut s.acc[..n]);
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

    // A selection is a gather: start fetching the selected K2 and V rows and their scales
    // now, so the gathers overlap the softmax and each other instead of waiting on memory
    // in turn.
    if p.sparse {
        let sel = &s.idx[..len];
        K::prefetch_rows(&kv.k2[start * rb..], rb, sel);
        K::prefetch_rows(&kv.v[start * dh..], dh, sel);
        K::prefetch_rows(&kv.k2_scale[start..], 1, sel);
        K::prefetch_rows(&kv.v_scale[start..], 1, sel);
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
        K::gemv_rows_i8(kv.k2, rb, idx, &s.xq[..rb], &mut s.acc[..len]);
        // The scores are no longer needed: their buffer holds the softplus arguments, so
        // the softplus loop runs over a contiguous slice (and vectorises).
        let g = &mut s.scores[..len];
        for j in 0..len {
            g[j] = s.acc[j] as f32 * q2s * kv.k2_scale[idx[j] as usize] * p.c;
        }
        for j in 0..len {
            w[j] *= softplus_f32(g[j]);
        }
    }

    // o = sum_j w_j v_j: coefficients w_j * scale_v_j quantized to int8 with one scale
    // (the V rows of zero coefficients are skipped).
    for j in 0..len {
        w[j] *= kv.v_scale[idx[j] as usize];
    }
    let v_rows = sparse_rows_out::<K>(kv.v, dh, idx, w, s.xq, s.kept, s.acc, out);
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

/// The FFN scratch views into the session buffers (a macro so the borrows stay per field).
macro_rules! ffn_scratch {
    ($b:ident) => {
        FfnScratch {
            scores: &mut *$b.scores,
            idx: &mut *$b.ffn_idx,
            t: &mut *$b.ffn_t,
            xq: &mut *$b.xq,
            kept: &mut *$b.ffn_kept,
            acc: &mut *$b.acc,
        }
    };
}

/// Sizes a session is built from.
#[derive(Clone, Copy, Debug)]
struct Dims {
    d: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv: usize,
    dh: usize,
    /// Width of key part 1 (`attn_r` for Spark attention, `dh` for dense).
    ra: usize,
    /// Width of key part 2 (`dh - ra`; 0 for dense).
    rb: usize,
    f: usize,
    vocab: usize,
    max_seq: usize,
    /// Active-neuron buffer capacity.
    cap_f: usize,
    /// Selected-key buffer capacity.
    cap_a: usize,
}

impl Dims {
    fn new(c: &Config, max_seq: usize) -> Dims {
        let dh = c.head_dim as usize;
        let ra = if c.attn_kind == AttnKind::Spark { c.attn_r as usize } else { dh };
        let f = c.d_ff as usize;
        let k = c.ffn_k as usize;
        let cap_f = if k >= f { f } else { topk_capacity(f, k, c.topk_cap_factor) };
        let cap_a = match c.attn_kind {
            AttnKind::Spark => topk_capacity(max_seq, c.attn_k as usize, c.topk_cap_factor).max(1),
            AttnKind::Dense => max_seq,
        };
        Dims {
            d: c.d_model as usize,
            n_layers: c.n_layers as usize,
            n_heads: c.n_heads as usize,
            n_kv: c.n_kv_heads as usize,
            dh,
            ra,
            rb: dh - ra,
            f,
            vocab: c.vocab_size as usize,
            max_seq,
            cap_f,
            cap_a,
        }
    }
    fn q_dim(&self) -> usize {
        self.n_heads * self.dh
    }
    fn kv_dim(&self) -> usize {
        self.n_kv * self.dh
    }
    /// Longest vector quantized for a matvec.
    fn xq_len(&self) -> usize {
        self.d.max(self.q_dim()).max(self.cap_f).max(self.cap_a)
    }
    /// Longest integer accumulator.
    fn acc_len(&self) -> usize {
        self.d.max(self.q_dim()).max(self.f).max(self.vocab).max(self.max_seq).max(self.dh)
    }
}

/// Declares the arena buffers once; generates the struct, its exact byte count and the
/// carving code from the same list so they cannot disagree.
macro_rules! buffers {
    ($dims:ident; $( $(#[$m:meta])* $name:ident : $t:ty = $count:expr ),* $(,)?) => {
        struct Buffers<'a> { $( $(#[$m])* $name: &'a mut [$t], )* }
        fn buffers_bytes($dims: &Dims) -> usize { 0 $( + arena_cost::<$t>($count) )* }
        fn carve<'a>(arena: &mut Arena<'a>, $dims: &Dims) -> Option<Buffers<'a>> {
            Some(Buffers { $( $name: arena.take::<$t>($count).ok()?, )* })
        }
    };
}

buffers! { s;
    /// Residual stream `[d]`.
    x: f32 = s.d,
    /// Normalized input of a block `[d]`.
    h: f32 = s.d,
    /// Block output before the residual add `[d]`.
    y: f32 = s.d,
    /// Queries `[n_heads, dh]`.
    q: f32 = s.q_dim(),
    /// Keys of the current position `[n_kv_heads, dh]`.
    k: f32 = s.kv_dim(),
    /// Values of the current position `[n_kv_heads, dh]`.
    v: f32 = s.kv_dim(),
    /// Attention output, heads concatenated `[n_heads, dh]`.
    att: f32 = s.q_dim(),
    /// Per-neuron scores `[f]` (predictor or gate).
    scores: f32 = s.f,
    /// Attention scores over visible positions `[max_seq]`.
    att_scores: f32 = s.max_seq,
    /// Quantized activation or coefficient vector `[max(d, q_dim, cap_f, cap_a)]`.
    xq: i8 = s.xq_len(),
    /// Integer kernel outputs `[max(d, q_dim, f, vocab, max_seq, dh)]`.
    acc: i32 = s.acc_len(),
    /// Selected neuron ids `[cap_f]`.
    ffn_idx: u32 = s.cap_f,
    /// Soft-thresholded scores of the selected neurons, then their coefficients `[cap_f]`.
    ffn_t: f32 = s.cap_f,
    /// Rows the FFN output product reads (selected, non-zero coefficient) `[cap_f]`.
    ffn_kept: u32 = s.cap_f,
    /// Selected key positions `[cap_a]`.
    att_idx: u32 = s.cap_a,
    /// Attention weights of the selected keys `[cap_a]`.
    att_w: f32 = s.cap_a,
    /// `V` rows an attention head reads (attended, non-zero coefficient) `[cap_a]`.
    att_kept: u32 = s.cap_a,
    /// Logits `[vocab]`.
    logits: f32 = s.vocab,
    /// RoPE inverse frequencies of part 1 `[ra / 2]` and part 2 `[rb / 2]`.
    inv_freq1: f32 = s.ra / 2,
    inv_freq2: f32 = s.rb / 2,
    /// RoPE cos/sin of the current position, part 1 `[ra / 2]`, part 2 `[rb / 2]`.
    cos1: f32 = s.ra / 2,
    sin1: f32 = s.ra / 2,
    cos2: f32 = s.rb / 2,
    sin2: f32 = s.rb / 2,
    /// Key cache part 1 `[n_layers, n_kv_heads, max_seq, ra]`.
    k1_cache: i8 = s.n_layers * s.n_kv * s.max_seq * s.ra,
    /// Key cache part 2 `[n_layers, n_kv_heads, max_seq, rb]`.
    k2_cache: i8 = s.n_layers * s.n_kv * s.max_seq * s.rb,
    /// Value cache `[n_layers, n_kv_heads, max_seq, dh]`.
    v_cache: i8 = s.n_layers * s.n_kv * s.max_seq * s.dh,
    /// Scales of the caches `[n_layers, n_kv_heads, max_seq]` each.
    k1_scale: f32 = s.n_layers * s.n_kv * s.max_seq,
    k2_scale: f32 = s.n_layers * s.n_kv * s.max_seq,
    v_scale: f32 = s.n_layers * s.n_kv * s.max_seq,
}

impl Model<'_> {
    /// Exact arena size a [`Session`] with context `max_seq` needs: KV cache, scratch
    /// vectors and active sets, plus up to 15 bytes to align an arbitrary start.
    pub fn arena_bytes(&self, max_seq: usize) -> usize {
        buffers_bytes(&Dims::new(&self.config, max_seq)) + spark_hal::arena::ARENA_ALIGN - 1
    }
}

/// Sparsity counters of one layer, accumulated over every token since the last reset.
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
    fn ffn(&mut self, n: usize, sel: &Selection) {
        let n = n as u32;
        self.tokens += 1;
        self.ffn_active_min = self.ffn_active_min.min(n);
        self.ffn_active_max = self.ffn_active_max.max(n);
        self.ffn_active_sum += n as u64;
        self.ffn_overflows += sel.overflow as u32;
        self.ffn_underflows += sel.underflow as u32;
    }
    fn attn(&mut self, n: usize, sel: Option<&Selection>) {
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

/// A decoding session: the KV cache and scratch of one sequence, over a borrowed arena.
/// Generic over the kernel backend `K` (static dispatch, no `dyn`).
pub struct Session<'m, 'a, K: Kernels = spark_hal::Native> {
    model: &'m Model<'m>,
    cfg: Config,
    dims: Dims,
    b: Buffers<'a>,
    /// Tokens in the cache.
    pos: usize,
    /// `Phi^-1(1 - k/f)` for the FFN top-k (computed once).
    ffn_z: f32,
    stats: [LayerStats; MAX_LAYERS],
    _k: PhantomData<K>,
}

impl<'m, 'a, K: Kernels> Session<'m, 'a, K> {
    /// A session with the model's full context (`max_seq_len`).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, RunError> {
        Self::with_max_seq(model, arena, model.config.max_seq_len as usize)
    }

    /// A session with a shorter context `max_seq` (less arena).
    pub fn with_max_seq(model: &'m Model<'m>, arena: &'a mut [u8], max_seq: usize) -> Result<Self, RunError> {
        let cfg = model.config;
        if max_seq == 0 || max_seq > cfg.max_seq_len as usize {
            return Err(RunError::BadMaxSeq { requested: max_seq, max_seq_len: cfg.max_seq_len });
        }
        let needed = model.arena_bytes(max_seq);
        if arena.len() < needed {
            return Err(RunError::ArenaTooSmall { needed, available: arena.len() });
        }
        let dims = Dims::new(&cfg, max_seq);
        let available = arena.len();
        let mut a = Arena::new(arena);
        let b = carve(&mut a, &dims).ok_or(RunError::ArenaTooSmall { needed, available })?;
        let (f, k) = (cfg.d_ff as usize, cfg.ffn_k as usize);
        let ffn_z = if k < f { topk_z(f, k) } else { 0.0 };
        let theta = cfg.rope_theta as f64;
        // inv_freq_i = theta^(-2i/w), computed in f64 once, stored as f32.
        for (i, v) in b.inv_freq1.iter_mut().enumerate() {
            *v = libm::pow(theta, -2.0 * i as f64 / dims.ra as f64) as f32;
        }
        for (i, v) in b.inv_freq2.iter_mut().enumerate() {
            *v = libm::pow(theta, -2.0 * i as f64 / dims.rb as f64) as f32;
        }
        Ok(Session { model, cfg, dims, b, pos: 0, ffn_z, stats: [LayerStats::EMPTY; MAX_LAYERS], _k: PhantomData })
    }

    /// Tokens currently in the context.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The session's context length.
    pub fn max_seq(&self) -> usize {
        self.dims.max_seq
    }

    /// Forget the sequence and the statistics (the arena is reused).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.stats = [LayerStats::EMPTY; MAX_LAYERS];
    }

    /// Per-layer sparsity statistics since the last reset.
    pub fn stats(&self) -> &[LayerStats] {
        &self.stats[..self.dims.n_layers]
    }

    /// The logits of the last step.
    pub fn logits(&self) -> &[f32] {
        self.b.logits
    }

    /// Run every token of `tokens` (at least one); returns the last token's logits.
    /// Validates all ids and the context before running any.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<&[f32], RunError> {
        if tokens.is_empty() {
            return Err(RunError::EmptyInput);
        }
        if self.pos + tokens.len() > self.dims.max_seq {
            return Err(RunError::ContextFull { max_seq: self.dims.max_seq });
        }
        for &t in tokens {
            self.check_token(t)?;
        }
        for &t in tokens {
            self.step_observed(t, &mut ())?;
        }
        Ok(self.b.logits)
    }

    /// Run one token; returns its logits `[vocab]`.
    pub fn step(&mut self, token: u32) -> Result<&[f32], RunError> {
        self.step_observed(token, &mut ())?;
        Ok(self.b.logits)
    }

    fn check_token(&self, token: u32) -> Result<(), RunError> {
        if token >= self.cfg.vocab_size {
            return Err(RunError::InvalidToken { id: token, vocab_size: self.cfg.vocab_size });
        }
        Ok(())
    }

    /// [`Session::step`] reporting every selection to `obs`.
    pub fn step_observed<O: Observer>(&mut self, token: u32, obs: &mut O) -> Result<&[f32], RunError> {
        self.check_token(token)?;
        if self.pos >= self.dims.max_seq {
            return Err(RunError::ContextFull { max_seq: self.dims.max_seq });
        }
        self.embed(token);
        self.rope_tables();
        let eps = self.cfg.norm_eps;
        for l in 0..self.dims.n_layers {
            rmsnorm(self.b.h, self.b.x, self.model.layer_f32(l, T::AttnNorm), eps);
            self.attention(l, obs);
            self.residual_add(l, T::PostAttnNorm);
            rmsnorm(self.b.h, self.b.x, self.model.layer_f32(l, T::FfnNorm), eps);
            match self.cfg.ffn_kind {
                FfnKind::Spark => self.ffn_spark(l, obs),
                FfnKind::Geglu => self.ffn_geglu(l, obs),
            }
            self.residual_add(l, T::PostFfnNorm);
        }
        self.compute_logits();
        self.pos += 1;
        Ok(self.b.logits)
    }

    /// `x = E[token] * embed_scale` (dequantized row).
    fn embed(&mut self, token: u32) {
        let e = self.model.global_matrix(T::Embed);
        let row = e.row(token as usize);
        let s = e.scales.get(token as usize);
        for i in 0..self.dims.d {
            self.b.x[i] = row[i] as f32 * s * self.cfg.embed_scale;
        }
    }

    /// cos/sin of the current position for both RoPE parts.
    fn rope_tables(&mut self) {
        let p = self.pos as f32;
        let b = &mut self.b;
        for i in 0..b.inv_freq1.len() {
            let a = p * b.inv_freq1[i];
            b.cos1[i] = libm::cosf(a);
            b.sin1[i] = libm::sinf(a);
        }
        for i in 0..b.inv_freq2.len() {
            let a = p * b.inv_freq2[i];
            b.cos2[i] = libm::cosf(a);
            b.sin2[i] = libm::sinf(a);
        }
    }

    /// `x += post_norm ? rmsnorm(y, w_post) : y`.
    fn residual_add(&mut self, l: usize, post: T) {
        if self.cfg.post_norms {
            rmsnorm(self.b.h, self.b.y, self.model.layer_f32(l, post), self.cfg.norm_eps);
            for i in 0..self.dims.d {
                self.b.x[i] += self.b.h[i];
            }
        } else {
            for i in 0..self.dims.d {
                self.b.x[i] += self.b.y[i];
            }
        }
    }

    fn matvec(m: &QMatrix<'_>, x: &[f32], xq: &mut [i8], acc: &mut [i32], out: &mut [f32]) -> f32 {
        matvec::<K>(m, x, xq, acc, out)
    }

    /// Attention block of layer `l`: reads `h`, writes `y` (after `Wo`).
    fn attention<O: Observer>(&mut self, l: usize, obs: &mut O) {
        let m = self.model;
        let d = self.dims;
        let b = &mut self.b;
        Self::matvec(&m.layer_matrix(l, T::Wq), b.h, b.xq, b.acc, b.q);
        Self::matvec(&m.layer_matrix(l, T::Wk), b.h, b.xq, b.acc, b.k);
        Self::matvec(&m.layer_matrix(l, T::Wv), b.h, b.xq, b.acc, b.v);

        // RoPE on each part of every query and key head.
        for hd in 0..d.n_heads {
            let qh = &mut b.q[hd * d.dh..(hd + 1) * d.dh];
            rope(&mut qh[..d.ra], b.cos1, b.sin1);
            rope(&mut qh[d.ra..], b.cos2, b.sin2);
        }
        for hd in 0..d.n_kv {
            let kh = &mut b.k[hd * d.dh..(hd + 1) * d.dh];
            rope(&mut kh[..d.ra], b.cos1, b.sin1);
            rope(&mut kh[d.ra..], b.cos2, b.sin2);
        }

        // Append this position to the cache.
        let p = self.pos;
        for hd in 0..d.n_kv {
            let slot = (l * d.n_kv + hd) * d.max_seq + p; // [layer, kv head, pos]
            let kh = &b.k[hd * d.dh..(hd + 1) * d.dh];
            b.k1_scale[slot] = K::quantize_sym_i8(&kh[..d.ra], &mut b.k1_cache[slot * d.ra..(slot + 1) * d.ra]);
            b.k2_scale[slot] = K::quantize_sym_i8(&kh[d.ra..], &mut b.k2_cache[slot * d.rb..(slot + 1) * d.rb]);
            let vh = &b.v[hd * d.dh..(hd + 1) * d.dh];
            b.v_scale[slot] = K::quantize_sym_i8(vh, &mut b.v_cache[slot * d.dh..(slot + 1) * d.dh]);
        }

        // Visible positions start..=p, and the top-k parameters shared by all heads.
        let window = self.cfg.sliding_window as usize;
        let start = if self.cfg.is_local_layer(l) && p + 1 > window { p + 1 - window } else { 0 };
        let params = AttnParams::new(&self.cfg, p + 1 - start);
        let group = d.n_heads / d.n_kv;
        for hd in 0..d.n_heads {
            let kvh = hd / group;
            let base = (l * d.n_kv + kvh) * d.max_seq; // first cache slot of this [layer, kv head]
            let kv = KvView {
                k1: &b.k1_cache[base * d.ra..(base + d.max_seq) * d.ra],
                k2: &b.k2_cache[base * d.rb..(base + d.max_seq) * d.rb],
                v: &b.v_cache[base * d.dh..(base + d.max_seq) * d.dh],
                k1_scale: &b.k1_scale[base..base + d.max_seq],
                k2_scale: &b.k2_scale[base..base + d.max_seq],
                v_scale: &b.v_scale[base..base + d.max_seq],
                ra: d.ra,
                rb: d.rb,
            };
            let mut scratch = AttnScratch {
                scores: &mut *b.att_scores,
                idx: &mut *b.att_idx,
                w: &mut *b.att_w,
                xq: &mut *b.xq,
                kept: &mut *b.att_kept,
                acc: &mut *b.acc,
            };
            let q = &b.q[hd * d.dh..(hd + 1) * d.dh];
            let out = &mut b.att[hd * d.dh..(hd + 1) * d.dh];
            let AttnRun { len, sel, .. } = attend_head::<K>(q, &kv, start, p, &params, &mut scratch, out);
            obs.attn(l, hd, &b.att_idx[..len], sel.as_ref());
            self.stats[l].attn(len, sel.as_ref());
        }
        Self::matvec(&m.layer_matrix(l, T::Wo), b.att, b.xq, b.acc, b.y);
    }

    /// Spark FFN of layer `l` (SPEC section 4): reads `h`, writes `y`.
    fn ffn_spark<O: Observer>(&mut self, l: usize, obs: &mut O) {
        let m = self.model;
        let w = SparkFfn {
            k1: m.layer_matrix(l, T::K1),
            k2: m.layer_matrix(l, T::K2),
            v: m.layer_matrix(l, T::V),
            k: self.cfg.ffn_k as usize,
            z: self.ffn_z,
        };
        let b = &mut self.b;
        let sel = spark_ffn::<K>(&w, b.h, &mut ffn_scratch!(b), b.y).sel;
        obs.ffn(l, &b.ffn_idx[..sel.len], &sel);
        self.stats[l].ffn(sel.len, &sel);
    }

    /// GeGLU FFN of layer `l` (optionally top-k on the gate): reads `h`, writes `y`.
    fn ffn_geglu<O: Observer>(&mut self, l: usize, obs: &mut O) {
        let m = self.model;
        let w = GegluFfn {
            wg: m.layer_matrix(l, T::Wg),
            wu: m.layer_matrix(l, T::Wu),
            wd_t: m.layer_matrix(l, T::WdT),
            k: self.cfg.ffn_k as usize,
            z: self.ffn_z,
        };
        let b = &mut self.b;
        let sel = geglu_ffn::<K>(&w, b.h, &mut ffn_scratch!(b), b.y).sel;
        obs.ffn(l, &b.ffn_idx[..sel.len], &sel);
        self.stats[l].ffn(sel.len, &sel);
    }

    /// Final norm, logits and the optional final soft-cap.
    fn compute_logits(&mut self) {
        let m = self.model;
        let b = &mut self.b;
        rmsnorm(b.h, b.x, m.global_f32(T::FinalNorm), self.cfg.norm_eps);
        Self::matvec(&m.head_matrix(), b.h, b.xq, b.acc, b.logits);
        let cap = self.cfg.final_logit_softcap;
        if cap > 0.0 {
            K::softcap_f32(b.logits, cap);
        }
    }
}
