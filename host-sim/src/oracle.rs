//! The f32 reference forward pass: the oracle the int8 path is measured against.
//!
//! Written directly from SPEC sections 3-6, independently of `spark-core`'s int8 forward
//! pass (only [`spark_core::topk::phi_inv`] is shared, which is tested against published
//! quantile tables). Plain float math over an [`F32Checkpoint`]: vectors are `f32`, every
//! dot product, norm, softmax, statistic and weighted sum is accumulated in `f64`, and
//! `std` math functions are used freely. Tokens are processed one position at a time with
//! an `f32` KV cache (keys stored after RoPE), exactly as a decoder runs.
//!
//! Per layer: `h = rmsnorm(x, attn_norm)`, attention, optional `post_attn_norm`, residual;
//! `h = rmsnorm(x, ffn_norm)`, FFN, optional `post_ffn_norm`, residual. Then the final
//! norm, the logits through the tied embedding or `lm_head`, and the optional final
//! soft-cap. The statistical top-k of SPEC section 6 is implemented here too
//! ([`stat_topk_ref`]), with the statistics in `f64`.
//!
//! To run the oracle on exactly the int8 weights of a `.spark` file, dequantize it with
//! [`F32Checkpoint::from_spark`]. Tested by `tests/oracle.rs`: unit checks against direct
//! formulas, and the golden files of `train/reference.py` (an independent float64
//! implementation) in `tests/golden/`.

use crate::checkpoint::{CheckpointError, F32Checkpoint};
use spark_core::{AttnKind, Config, FfnKind};
use std::fmt;

/// Top-k event code: nothing special happened.
pub const EVENT_NONE: u8 = 0;
/// Top-k event code: more than `cap` entries passed; the `cap` largest were kept.
pub const EVENT_OVERFLOW: u8 = 1;
/// Top-k event code: nothing passed; the single largest entry was kept with `t = 0`.
pub const EVENT_UNDERFLOW: u8 = 2;

/// Everything the oracle records for a token sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OracleTrace {
    /// Logits, `[pos][vocab]`.
    pub logits: Vec<Vec<f32>>,
    /// Active FFN neurons, `[pos][layer]`, ascending.
    pub ffn_active: Vec<Vec<Vec<u32>>>,
    /// FFN top-k threshold, `[pos][layer]`; NaN for the identity (`k >= f`).
    pub ffn_theta: Vec<Vec<f32>>,
    /// FFN top-k events, `[pos][layer]` ([`EVENT_NONE`], [`EVENT_OVERFLOW`], [`EVENT_UNDERFLOW`]).
    pub ffn_events: Vec<Vec<u8>>,
    /// Key positions used by each query head, `[pos][layer][head]`, ascending (every
    /// visible position for dense attention or when the visible count is `<= ka`).
    pub attn_active: Vec<Vec<Vec<Vec<u32>>>>,
    /// Attention top-k events, `[pos][layer][head]`.
    pub attn_events: Vec<Vec<Vec<u8>>>,
}

/// What the oracle records for one position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OracleStep {
    /// Logits `[vocab]`.
    pub logits: Vec<f32>,
    /// Active FFN neurons per layer, ascending.
    pub ffn_active: Vec<Vec<u32>>,
    /// FFN threshold per layer (NaN for the identity).
    pub ffn_theta: Vec<f32>,
    /// FFN event per layer.
    pub ffn_events: Vec<u8>,
    /// Key positions per layer and query head, ascending.
    pub attn_active: Vec<Vec<Vec<u32>>>,
    /// Attention event per layer and query head.
    pub attn_events: Vec<Vec<u8>>,
}

/// Active sets imposed on [`OracleSession::step_forced`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForcedSets {
    /// FFN neurons per layer, ascending.
    pub ffn: Vec<Vec<u32>>,
    /// Key positions (from the sequence start) per layer and query head, ascending.
    pub attn: Vec<Vec<Vec<u32>>>,
}

/// Why the oracle refused to run.
#[derive(Clone, Debug, PartialEq)]
pub enum OracleError {
    /// The checkpoint is inconsistent with its config.
    Checkpoint(CheckpointError),
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// Position of the token in the sequence.
        pos: usize,
        /// The token id.
        token: u32,
        /// Vocabulary size.
        vocab: u32,
    },
    /// The sequence does not fit in `max_seq_len`.
    ContextFull {
        /// The model's context length.
        max_seq_len: u32,
    },
}

impl fmt::Display for OracleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OracleError::Checkpoint(e) => write!(f, "{e}"),
            OracleError::TokenOutOfRange { pos, token, vocab } => {
                write!(f, "token {token} at position {pos} is out of range (vocab_size {vocab})")
            }
            OracleError::ContextFull { max_seq_len } => {
                write!(f, "sequence longer than the context (max_seq_len {max_seq_len})")
            }
        }
    }
}

impl std::error::Error for OracleError {}

impl From<CheckpointError> for OracleError {
    fn from(e: CheckpointError) -> Self {
        OracleError::Checkpoint(e)
    }
}

// ---------------------------------------------------------------------------------------
// Elementary functions
// ---------------------------------------------------------------------------------------

/// `sum a_i b_i`, accumulated in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// `W x` for a row-major `[rows, cols]` matrix (f64 accumulation, f32 result).
pub fn matvec(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    (0..rows).map(|r| dot(&w[r * cols..(r + 1) * cols], x) as f32).collect()
}

/// `rmsnorm(x, w)_i = x_i / sqrt(mean(x^2) + eps) * w_i`.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len().max(1) as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    x.iter().zip(w).map(|(&v, &g)| (v as f64 * inv * g as f64) as f32).collect()
}

/// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// `softplus(x) = ln(1 + e^x)`, stable: `x > 20 -> x`.
pub fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// Soft-cap `c * tanh(z / c)`; `c = 0` is off.
pub fn softcap(z: f64, c: f32) -> f64 {
    if c > 0.0 {
        let c = c as f64;
        c * (z / c).tanh()
    } else {
        z
    }
}

/// Rotate-half RoPE over the whole (even-width) slice `x` at position `pos`: for
/// `i < w/2`, `freq = theta^(-2i/w)`, `angle = pos * freq`,
/// `(x_i, x_{i+w/2}) -> (x_i cos - x_{i+w/2} sin, x_{i+w/2} cos + x_i sin)`.
pub fn rope(x: &mut [f32], pos: usize, theta: f32) {
    let w = x.len();
    let half = w / 2;
    for i in 0..half {
        let freq = (theta as f64).powf(-(2.0 * i as f64) / w as f64);
        let (sin, cos) = (pos as f64 * freq).sin_cos();
        let (a, b) = (x[i] as f64, x[i + half] as f64);
        x[i] = (a * cos - b * sin) as f32;
        x[i + half] = (b * cos + a * sin) as f32;
    }
}

// ---------------------------------------------------------------------------------------
// Statistical top-k (SPEC section 6)
// ---------------------------------------------------------------------------------------

/// Result of [`stat_topk_ref`].
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// Selected indices, ascending.
    pub idx: Vec<u32>,
    /// Soft-thresholded values `x_i - theta` aligned with `idx` (`x_i` for the identity,
    /// 0 for the underflow fallback).
    pub t: Vec<f32>,
    /// The threshold (NaN for the identity).
    pub theta: f32,
    /// [`EVENT_NONE`], [`EVENT_OVERFLOW`] or [`EVENT_UNDERFLOW`].
    pub event: u8,
}

/// Statistical top-k of `x` for target `k` with capacity factor `cap_factor`.
///
/// `k >= n`: the identity (every finite entry, `t = x`, theta NaN). Otherwise mean and
/// population std of the finite entries in f64, `z = phi_inv(1 - k/n)`,
/// `theta = mu + z sigma`, `S = {i : x_i > theta}`, `t = x - theta`; more than
/// `cap = min(n, ceil(factor k))` passing keeps the `cap` largest (ties: lower index)
/// with an overflow event; none passing keeps the largest (lowest index on ties) with
/// `t = 0` and an underflow event.
pub fn stat_topk_ref(x: &[f32], k: usize, cap_factor: f32) -> TopK {
    let n = x.len();
    let finite = |i: &usize| x[*i].is_finite();
    if k >= n {
        let idx: Vec<usize> = (0..n).filter(finite).collect();
        return TopK {
            t: idx.iter().map(|&i| x[i]).collect(),
            idx: idx.iter().map(|&i| i as u32).collect(),
            theta: f32::NAN,
            event: EVENT_NONE,
        };
    }
    let vals: Vec<f64> = x.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
    if vals.is_empty() {
        return TopK { idx: vec![], t: vec![], theta: f32::NAN, event: EVENT_NONE };
    }
    let nf = vals.len() as f64;
    let mu = vals.iter().sum::<f64>() / nf;
    let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / nf;
    let z = spark_core::topk::phi_inv(1.0 - k as f64 / n as f64);
    let theta = mu + z * var.sqrt();
    let mut pass: Vec<usize> = (0..n).filter(|&i| x[i].is_finite() && x[i] as f64 > theta).collect();
    let cap = spark_core::topk::topk_capacity(n, k, cap_factor);
    let mut event = EVENT_NONE;
    if pass.len() > cap {
        event = EVENT_OVERFLOW;
        pass.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(a.cmp(&b)));
        pass.truncate(cap);
        pass.sort_unstable();
    }
    if pass.is_empty() {
        let mut best = None::<usize>;
        for i in (0..n).filter(finite) {
            if best.is_none_or(|b| x[i] > x[b]) {
                best = Some(i);
            }
        }
        let b = best.unwrap_or(0);
        return TopK { idx: vec![b as u32], t: vec![0.0], theta: theta as f32, event: EVENT_UNDERFLOW };
    }
    TopK {
        t: pass.iter().map(|&i| (x[i] as f64 - theta) as f32).collect(),
        idx: pass.iter().map(|&i| i as u32).collect(),
        theta: theta as f32,
        event,
    }
}

// ---------------------------------------------------------------------------------------
// The decoder
// ---------------------------------------------------------------------------------------

enum FfnWeights<'a> {
    Spark { k1: &'a [f32], k2: &'a [f32], v: &'a [f32] },
    Geglu { wg: &'a [f32], wu: &'a [f32], wd: &'a [f32] },
}

struct LayerWeights<'a> {
    attn_norm: &'a [f32],
    post_attn_norm: Option<&'a [f32]>,
    ffn_norm: &'a [f32],
    post_ffn_norm: Option<&'a [f32]>,
    wq: &'a [f32],
    wk: &'a [f32],
    wv: &'a [f32],
    wo: &'a [f32],
    ffn: FfnWeights<'a>,
}

/// A step-wise oracle decoder over a borrowed checkpoint, with an f32 KV cache.
pub struct OracleSession<'a> {
    cfg: Config,
    embed: &'a [f32],
    final_norm: &'a [f32],
    head: &'a [f32],
    layers: Vec<LayerWeights<'a>>,
    /// Per layer, `[pos][n_kv_heads * head_dim]` keys (after RoPE) and values.
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
    pos: usize,
}

impl<'a> OracleSession<'a> {
    /// Validate the checkpoint and start an empty session.
    pub fn new(ck: &'a F32Checkpoint) -> Result<Self, OracleError> {
        ck.validate()?;
        let cfg = ck.config;
        let get = |name: &str| -> Result<&'a [f32], OracleError> {
            ck.get(name).ok_or_else(|| OracleError::Checkpoint(CheckpointError::MissingTensor { name: name.into() }))
        };
        let mut layers = Vec::with_capacity(cfg.n_layers as usize);
        for l in 0..cfg.n_layers as usize {
            let n = |s: &str| format!("layers.{l}.{s}");
            let ffn = match cfg.ffn_kind {
                FfnKind::Spark => {
                    FfnWeights::Spark { k1: get(&n("ffn.k1"))?, k2: get(&n("ffn.k2"))?, v: get(&n("ffn.v"))? }
                }
                FfnKind::Geglu => {
                    FfnWeights::Geglu { wg: get(&n("ffn.wg"))?, wu: get(&n("ffn.wu"))?, wd: get(&n("ffn.wd"))? }
                }
            };
            layers.push(LayerWeights {
                attn_norm: get(&n("attn_norm"))?,
                post_attn_norm: if cfg.post_norms { Some(get(&n("post_attn_norm"))?) } else { None },
                ffn_norm: get(&n("ffn_norm"))?,
                post_ffn_norm: if cfg.post_norms { Some(get(&n("post_ffn_norm"))?) } else { None },
                wq: get(&n("attn.wq"))?,
                wk: get(&n("attn.wk"))?,
                wv: get(&n("attn.wv"))?,
                wo: get(&n("attn.wo"))?,
                ffn,
            });
        }
        let embed = get("embed")?;
        Ok(OracleSession {
            cfg,
            embed,
            final_norm: get("final_norm")?,
            head: if cfg.tie_embeddings { embed } else { get("lm_head")? },
            layers,
            k_cache: vec![Vec::new(); cfg.n_layers as usize],
            v_cache: vec![Vec::new(); cfg.n_layers as usize],
            pos: 0,
        })
    }

    /// Number of tokens processed so far (the position of the next token).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The model configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Forget every token (empty KV cache).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.k_cache.iter_mut().for_each(Vec::clear);
        self.v_cache.iter_mut().for_each(Vec::clear);
    }

    /// Process one token and return its logits.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>, OracleError> {
        self.step_trace(token).map(|s| s.logits)
    }

    /// Process one token and return its logits with the active sets and events.
    pub fn step_trace(&mut self, token: u32) -> Result<OracleStep, OracleError> {
        self.step_forced(token, None)
    }

    /// [`OracleSession::step_trace`], but with the FFN and attention active sets imposed
    /// (e.g. the int8 runtime's), so a comparison measures numeric error alone, without
    /// selection flips near the threshold. The oracle still computes its own statistics:
    /// a forced FFN neuron gets `t = max(s - theta, 0)` (`t = s` for the identity).
    pub fn step_forced(&mut self, token: u32, forced: Option<&ForcedSets>) -> Result<OracleStep, OracleError> {
        let cfg = self.cfg;
        if token >= cfg.vocab_size {
            return Err(OracleError::TokenOutOfRange { pos: self.pos, token, vocab: cfg.vocab_size });
        }
        if self.pos >= cfg.max_seq_len as usize {
            return Err(OracleError::ContextFull { max_seq_len: cfg.max_seq_len });
        }
        let d = cfg.d_model as usize;
        let tok = token as usize;
        let mut x: Vec<f32> = self.embed[tok * d..(tok + 1) * d].iter().map(|&e| e * cfg.embed_scale).collect();
        let mut out = OracleStep::default();
        for l in 0..self.layers.len() {
            let lw = &self.layers[l];
            let h = rmsnorm(&x, lw.attn_norm, cfg.norm_eps);
            let (a, active, events) = self.attention(l, &h, forced.map(|f| &f.attn[l][..]));
            let a = match self.layers[l].post_attn_norm {
                Some(w) => rmsnorm(&a, w, cfg.norm_eps),
                None => a,
            };
            x.iter_mut().zip(&a).for_each(|(xi, ai)| *xi += ai);
            out.attn_active.push(active);
            out.attn_events.push(events);

            let lw = &self.layers[l];
            let h = rmsnorm(&x, lw.ffn_norm, cfg.norm_eps);
            let (m, sel) = ffn(&cfg, &lw.ffn, &h, forced.map(|f| &f.ffn[l][..]));
            let m = match lw.post_ffn_norm {
                Some(w) => rmsnorm(&m, w, cfg.norm_eps),
                None => m,
            };
            x.iter_mut().zip(&m).for_each(|(xi, mi)| *xi += mi);
            out.ffn_active.push(sel.idx);
            out.ffn_theta.push(sel.theta);
            out.ffn_events.push(sel.event);
        }
        let xf = rmsnorm(&x, self.final_norm, cfg.norm_eps);
        out.logits = (0..cfg.vocab_size as usize)
            .map(|v| softcap(dot(&self.head[v * d..(v + 1) * d], &xf), cfg.final_logit_softcap) as f32)
            .collect();
        self.pos += 1;
        Ok(out)
    }

    /// Attention of layer `l` for the current position; appends this position's key and
    /// value to the cache. Returns the output (after `Wo`), the key positions used per
    /// query head and the events per query head.
    fn attention(&mut self, l: usize, h: &[f32], forced: Option<&[Vec<u32>]>) -> (Vec<f32>, Vec<Vec<u32>>, Vec<u8>) {
        let cfg = self.cfg;
        let lw = &self.layers[l];
        let (d, dh) = (cfg.d_model as usize, cfg.head_dim as usize);
        let (nh, nkv) = (cfg.n_heads as usize, cfg.n_kv_heads as usize);
        let (qd, kvd) = (nh * dh, nkv * dh);
        let p = self.pos;
        let mut q = matvec(lw.wq, qd, d, h);
        let mut k = matvec(lw.wk, kvd, d, h);
        let v = matvec(lw.wv, kvd, d, h);
        let ra = match cfg.attn_kind {
            AttnKind::Spark => cfg.attn_r as usize,
            AttnKind::Dense => dh,
        };
        for head in q.chunks_exact_mut(dh).chain(k.chunks_exact_mut(dh)) {
            rope(&mut head[..ra], p, cfg.rope_theta);
            if ra < dh {
                rope(&mut head[ra..], p, cfg.rope_theta);
            }
        }
        self.k_cache[l].extend_from_slice(&k);
        self.v_cache[l].extend_from_slice(&v);
        let (kc, vc) = (&self.k_cache[l], &self.v_cache[l]);

        let lo = cfg.first_visible(l, p);
        let c = (cfg.query_pre_attn_scalar as f64).powf(-0.5);
        let group = nh / nkv;
        let mut o = vec![0f32; qd];
        let mut active = Vec::with_capacity(nh);
        let mut events = Vec::with_capacity(nh);
        for j in 0..nh {
            let g = j / group;
            let qj = &q[j * dh..(j + 1) * dh];
            let key = |t: usize| &kc[t * kvd + g * dh..t * kvd + (g + 1) * dh];
            let val = |t: usize| &vc[t * kvd + g * dh..t * kvd + (g + 1) * dh];
            let mut acc = vec![0f64; dh];
            match cfg.attn_kind {
                AttnKind::Dense => {
                    let s: Vec<f64> = (lo..=p).map(|t| softcap(c * dot(qj, key(t)), cfg.attn_logit_softcap)).collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|&si| (si - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (i, t) in (lo..=p).enumerate() {
                        let w = e[i] / z;
                        acc.iter_mut().zip(val(t)).for_each(|(a, &vv)| *a += w * vv as f64);
                    }
                    active.push((lo as u32..=p as u32).collect());
                    events.push(EVENT_NONE);
                }
                AttnKind::Spark => {
                    let s1: Vec<f32> = (lo..=p)
                        .map(|t| softcap(c * dot(&qj[..ra], &key(t)[..ra]), cfg.attn_logit_softcap) as f32)
                        .collect();
                    let mut sel = stat_topk_ref(&s1, cfg.attn_k as usize, cfg.topk_cap_factor);
                    if let Some(f) = forced {
                        sel.idx = f[j].iter().map(|&t| t - lo as u32).collect();
                    }
                    let m = sel.idx.iter().map(|&i| s1[i as usize] as f64).fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = sel.idx.iter().map(|&i| (s1[i as usize] as f64 - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (n, &i) in sel.idx.iter().enumerate() {
                        let t = lo + i as usize;
                        let gate = softplus(c * dot(&qj[ra..], &key(t)[ra..]));
                        let w = e[n] / z * gate;
                        acc.iter_mut().zip(val(t)).for_each(|(a, &vv)| *a += w * vv as f64);
                    }
                    active.push(sel.idx.iter().map(|&i| lo as u32 + i).collect());
                    events.push(sel.event);
                }
            }
            o[j * dh..(j + 1) * dh].iter_mut().zip(&acc).for_each(|(oi, &a)| *oi = a as f32);
        }
        (matvec(lw.wo, d, qd, &o), active, events)
    }
}

/// The FFN of one layer (SPEC section 4). Returns the output and the selection.
fn ffn(cfg: &Config, w: &FfnWeights<'_>, h: &[f32], forced: Option<&[u32]>) -> (Vec<f32>, TopK) {
    let select = |x: &[f32]| {
        let mut sel = stat_topk_ref(x, cfg.ffn_k as usize, cfg.topk_cap_factor);
        if let Some(f) = forced {
            sel.idx = f.to_vec();
            sel.t = f
                .iter()
                .map(|&i| if sel.theta.is_nan() { x[i as usize] } else { (x[i as usize] - sel.theta).max(0.0) })
                .collect();
        }
        sel
    };
    let (d, f) = (cfg.d_model as usize, cfg.d_ff as usize);
    let mut y = vec![0f64; d];
    let sel = match *w {
        FfnWeights::Spark { k1, k2, v } => {
            let r = cfg.ffn_r as usize;
            let s = matvec(k1, f, r, &h[..r]);
            let sel = select(&s);
            for (&i, &t) in sel.idx.iter().zip(&sel.t) {
                let i = i as usize;
                let a = gelu(t as f64);
                let u = dot(&k2[i * (d - r)..(i + 1) * (d - r)], &h[r..]);
                let coef = a * u;
                y.iter_mut().zip(&v[i * d..(i + 1) * d]).for_each(|(yo, &vv)| *yo += coef * vv as f64);
            }
            sel
        }
        FfnWeights::Geglu { wg, wu, wd } => {
            let g = matvec(wg, f, d, h);
            let sel = select(&g);
            let mut act = vec![0f64; f];
            for (&i, &t) in sel.idx.iter().zip(&sel.t) {
                let i = i as usize;
                act[i] = gelu(t as f64) * dot(&wu[i * d..(i + 1) * d], h);
            }
            for (o, yo) in y.iter_mut().enumerate() {
                let row = &wd[o * f..(o + 1) * f];
                *yo = sel.idx.iter().map(|&i| row[i as usize] as f64 * act[i as usize]).sum();
            }
            sel
        }
    };
    (y.iter().map(|&v| v as f32).collect(), sel)
}

/// Run the oracle over `tokens` from position 0 and record everything.
pub fn run_oracle(ck: &F32Checkpoint, tokens: &[u32]) -> Result<OracleTrace, OracleError> {
    let cfg = ck.config;
    if let Some((pos, &token)) = tokens.iter().enumerate().find(|(_, &t)| t >= cfg.vocab_size) {
        return Err(OracleError::TokenOutOfRange { pos, token, vocab: cfg.vocab_size });
    }
    if tokens.len() > cfg.max_seq_len as usize {
        return Err(OracleError::ContextFull { max_seq_len: cfg.max_seq_len });
    }
    let mut s = OracleSession::new(ck)?;
    let mut tr = OracleTrace::default();
    for &t in tokens {
        let st = s.step_trace(t)?;
        tr.logits.push(st.logits);
        tr.ffn_active.push(st.ffn_active);
        tr.ffn_theta.push(st.ffn_theta);
        tr.ffn_events.push(st.ffn_events);
        tr.attn_active.push(st.attn_active);
        tr.attn_events.push(st.attn_events);
    }
    Ok(tr)
}
