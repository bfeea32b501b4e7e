//! The two FFN blocks (SPEC section 4) and their settings: the Spark FFN ([`spark_ffn`]:
//! predictor matvec, statistical top-k, `K2` row gather, sparse `V` product) and the
//! GeGLU FFN ([`geglu_ffn`], dense or with top-k on the gate).
//!
//! [`FfnPlan`] is the one place the FFN's derived settings are computed (target `k`,
//! `z = Phi^-1(1 - k/f)`, active-set capacity): the session, `spark-sim bench` and the
//! firmware all take them from here. The block functions take their weights, plan and
//! scratch explicitly, so a benchmark or a test can run one layer on any buffers.
//!
//! Tested by the session tests (`tests/`: the rows each call reads, recorded by a
//! kernel backend; whole forward passes against the f32 oracle) and by the unit tests
//! of the plan below.

use crate::config::Config;
use crate::exec::{self, Executor, Sequential};
use crate::format::{F32Slice, Model, QMatrix};
use crate::ops::{gelu, matvec, sparse_rows_out};
use crate::tensor::TensorKind as T;
use crate::topk::{
    select_above_with, stat_topk_threshold, stat_topk_with, topk_capacity, topk_z, Selection, StatAccumulator,
};
use spark_hal::Kernels;

/// The derived top-k settings of one FFN layer: the one place they are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FfnPlan {
    /// Neurons `f`.
    pub f: usize,
    /// Target active neurons `k` (`k >= f`: every neuron, no top-k).
    pub k: usize,
    /// `Phi^-1(1 - k/f)` when `k < f`, else 0.
    pub z: f32,
    /// Active-set capacity: `min(f, ceil(cap_factor * k))` when `k < f`, else `f`.
    pub cap: usize,
}

impl FfnPlan {
    /// The plan for `f` neurons, target `k` and capacity factor `cap_factor` (SPEC
    /// section 6).
    pub fn new(f: usize, k: usize, cap_factor: f32) -> FfnPlan {
        if k < f {
            FfnPlan { f, k, z: topk_z(f, k), cap: topk_capacity(f, k, cap_factor) }
        } else {
            FfnPlan { f, k, z: 0.0, cap: f }
        }
    }

    /// The plan of every FFN layer of a model with this configuration (all layers share
    /// `d_ff`, `ffn_k` and the capacity factor).
    pub fn for_model(cfg: &Config) -> FfnPlan {
        FfnPlan::new(cfg.d_ff as usize, cfg.ffn_k as usize, cfg.topk_cap_factor)
    }

    /// Whether a top-k selection runs (`k < f`).
    pub fn is_sparse(&self) -> bool {
        self.k < self.f
    }
}

/// Predictor rows computed per chunk before their scores feed the top-k statistics
/// (256 f32 scores = 1 KiB, resident in L1 on every target).
const PREDICTOR_CHUNK: usize = 256;

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
    /// Selected neurons `[cap]` ([`FfnPlan::cap`]).
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
    /// Second key part `[f, d - r]` (rows `k2.stride` apart: bundled with `v`, or plain).
    pub k2: QMatrix<'m>,
    /// Values, one row per neuron `[f, d]` (rows `v.stride` apart).
    pub v: QMatrix<'m>,
    /// Target active neurons, `z` and the active-set capacity.
    pub plan: FfnPlan,
}

impl<'m> SparkFfn<'m> {
    /// The weights of layer `layer` of a Spark-FFN model, with the model's plan.
    pub fn for_layer(model: &Model<'m>, layer: usize, plan: FfnPlan) -> SparkFfn<'m> {
        SparkFfn {
            k1: model.layer_matrix(layer, T::K1),
            k2: model.layer_matrix(layer, T::K2),
            v: model.layer_matrix(layer, T::V),
            plan,
        }
    }
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
    spark_ffn_on::<K, Sequential>(&Sequential, w, h, s, y)
}

/// [`spark_ffn`] with its integer products split into chunks run by `e` (see
/// [`crate::exec`]): the same bits for every executor.
pub fn spark_ffn_on<K: Kernels, E: Executor>(
    e: &E,
    w: &SparkFfn<'_>,
    h: &[f32],
    s: &mut FfnScratch<'_>,
    y: &mut [f32],
) -> FfnRun {
    let (f, r) = (w.k1.rows, w.k1.cols);
    // Predictor s = K1 h[0..r) over all neurons, chunk by chunk, each chunk's scores
    // pushed into the top-k statistics while they are still in L1; then the selection.
    // With threads the whole predictor gemv runs first, split by rows; the scores and
    // their statistics follow in the same fixed order either way.
    let xs = K::quantize_sym_i8(&h[..r], &mut s.xq[..r]);
    let predicted = exec::splits(e, f * r);
    if predicted {
        exec::gemv::<K, E>(e, w.k1.data, r, &s.xq[..r], &mut s.acc[..f]);
    }
    let mut stats = StatAccumulator::new();
    let mut c0 = 0;
    while c0 < f {
        let c1 = (c0 + PREDICTOR_CHUNK).min(f);
        if !predicted {
            K::gemv_i8(&w.k1.data[c0 * r..c1 * r], r, &s.xq[..r], &mut s.acc[c0..c1]);
        }
        // scores[i] = acc[i] * xs * scale_i
        K::dequantize_f32(&s.acc[c0..c1], xs, &w.k1.scales.0[4 * c0..4 * c1], &mut s.scores[c0..c1]);
        stats.push_slice(&s.scores[c0..c1]);
        c0 = c1;
    }
    let scores = &s.scores[..f];
    let (k, z) = (w.plan.k, w.plan.z);
    let sel = if k >= f {
        stat_topk_with::<K>(scores, k, z, s.idx, s.t) // the identity
    } else {
        select_above_with::<K>(scores, stat_topk_threshold(&stats.finish(), z), s.idx, s.t)
    };
    let idx = &s.idx[..sel.len];
    // The row scales of the selected neurons are a gather too (one f32 per row, spread
    // over the whole scale vector): start fetching them now. (The K2 and V row kernels
    // prefetch their own rows.)
    K::prefetch_rows(w.k2.scales.0, 4, idx);
    K::prefetch_rows(w.v.scales.0, 4, idx);

    // u_i = K2_i . h[r..d) for the selected neurons only. With bundled rows (format v2)
    // `K2` and `V` are the two parts of one record per neuron (rows `stride` apart); the
    // record is visited twice, the `V` pass needing every coefficient first.
    let h2 = &h[r..];
    let hs = K::quantize_sym_i8(h2, &mut s.xq[..h2.len()]);
    let (k2, v) = (&w.k2, &w.v);
    exec::gemv_rows::<K, E>(e, k2.data, k2.stride, k2.cols, idx, &s.xq[..h2.len()], &mut s.acc[..sel.len]);

    // coef_i = gelu(t_i) * u_i * scale_V_i, then y = sum_i coef_i V_i.
    let coef = &mut s.t[..sel.len];
    gated_coefficients(coef, idx, &s.acc[..sel.len], hs, w.k2.scales, w.v.scales);
    let out_rows = sparse_rows_out::<K, E>(e, v.data, v.stride, v.cols, idx, coef, s.xq, s.kept, s.acc, y);
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
    /// Target active neurons (`k >= f`: dense), `z` and the active-set capacity.
    pub plan: FfnPlan,
}

impl<'m> GegluFfn<'m> {
    /// The weights of layer `layer` of a GeGLU-FFN model, with the model's plan.
    pub fn for_layer(model: &Model<'m>, layer: usize, plan: FfnPlan) -> GegluFfn<'m> {
        GegluFfn {
            wg: model.layer_matrix(layer, T::Wg),
            wu: model.layer_matrix(layer, T::Wu),
            wd_t: model.layer_matrix(layer, T::WdT),
            plan,
        }
    }
}

/// GeGLU FFN: `y = Wd (gelu(g) * (Wu h))` with `g = Wg h`, optionally statistical top-k on
/// the gate (Gemma 3n style), in which case `Wu` and `Wd` rows of the selected neurons only
/// are read. Either way `Wd` rows whose int8 coefficient is zero are skipped.
pub fn geglu_ffn<K: Kernels>(w: &GegluFfn<'_>, h: &[f32], s: &mut FfnScratch<'_>, y: &mut [f32]) -> FfnRun {
    geglu_ffn_on::<K, Sequential>(&Sequential, w, h, s, y)
}

/// [`geglu_ffn`] with its integer products split into chunks run by `e` (see
/// [`crate::exec`]): the same bits for every executor.
pub fn geglu_ffn_on<K: Kernels, E: Executor>(
    e: &E,
    w: &GegluFfn<'_>,
    h: &[f32],
    s: &mut FfnScratch<'_>,
    y: &mut [f32],
) -> FfnRun {
    // Gate g = Wg h, then top-k on the gate (identity when k >= f).
    let hs = matvec::<K, E>(e, &w.wg, h, s.xq, s.acc, s.scores);
    let sel = stat_topk_with::<K>(&s.scores[..w.wg.rows], w.plan.k, w.plan.z, s.idx, s.t);
    let idx = &s.idx[..sel.len];

    // u_i = Wu_i . h for the selected neurons (s.xq still holds h quantized); when every
    // neuron is selected (dense) the plain gemv streams Wu without an index list.
    if sel.len == w.wu.rows {
        exec::gemv::<K, E>(e, w.wu.data, w.wu.cols, &s.xq[..h.len()], &mut s.acc[..sel.len]);
    } else {
        K::prefetch_rows(w.wu.scales.0, 4, idx); // as in `spark_ffn`
        K::prefetch_rows(w.wd_t.scales.0, 4, idx);
        exec::gemv_rows::<K, E>(e, w.wu.data, w.wu.stride, w.wu.cols, idx, &s.xq[..h.len()], &mut s.acc[..sel.len]);
    }
    let coef = &mut s.t[..sel.len];
    gated_coefficients(coef, idx, &s.acc[..sel.len], hs, w.wu.scales, w.wd_t.scales);
    let out_rows =
        sparse_rows_out::<K, E>(e, w.wd_t.data, w.wd_t.stride, w.wd_t.cols, idx, coef, s.xq, s.kept, s.acc, y);
    FfnRun { sel, out_rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_spec_section_6() {
        // gemma2-2b Spark FFN: f 13824, k 1106 (8 %): z = Phi^-1(0.92), cap = 2k.
        let p = FfnPlan::new(13824, 1106, 2.0);
        assert!((p.z - 1.405_071_6).abs() < 2e-4, "z {}", p.z);
        assert_eq!((p.cap, p.is_sparse()), (2212, true));
        // k >= f: dense, no threshold, every neuron fits.
        assert_eq!(FfnPlan::new(720, 720, 2.0), FfnPlan { f: 720, k: 720, z: 0.0, cap: 720 });
        assert_eq!(FfnPlan::new(720, 900, 2.0).cap, 720);
        // The capacity never exceeds f.
        assert_eq!(FfnPlan::new(100, 60, 2.0).cap, 100);
    }
}
