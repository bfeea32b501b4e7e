//! The int8 decoder: one [`Session`] decodes tokens over a caller-provided arena.
//!
//! Reads like a plain C inference loop: [`Session::step`] embeds a token, runs every layer
//! (attention, then FFN, SPEC sections 3-5) and computes the logits. The blocks live in
//! their own modules ([`crate::attention`], [`crate::ffn`], [`crate::ops`]); this module
//! holds the arena plan (every buffer, its shape and its exact byte count, declared once)
//! and the decode loop that wires the blocks to it. Every matrix product is one of the
//! `spark-hal` kernels over int8 weights read in place from the model; all float work
//! happens in core in a fixed order with `libm`, with no fused multiply-add, so a model
//! gives bit-identical logits on every target and backend.
//!
//! Quantisation points (SPEC section 7): every activation vector is quantized per vector
//! right before its matvec; the sparse vector-matrix coefficients are quantized to int8
//! with one scale per call; the KV cache stores int8 with one f32 scale per (position,
//! kv head, part): key part 1 as a dense stream, key part 2 and the value bundled in one
//! record per position, so a selected key is one contiguous read.
//!
//! Tested in the workspace's `tests/` package: the rows each step reads (a recording
//! kernel backend), the arena is exactly [`Model::arena_bytes`], random models through
//! every path, logits and active sets against the f32 oracle on the golden models, and
//! the bundled model's token ids and logits digests on every backend.

use crate::attention::{attend_heads_on, AttnParams, AttnRun, AttnScratch, HeadSlot, KvView, MAX_HEAD_SLOTS};
use crate::config::{AttnKind, Config, FfnKind, MAX_LAYERS};
use crate::error::RunError;
use crate::exec::{Executor, Sequential};
use crate::ffn::{geglu_ffn_on, spark_ffn_on, FfnPlan, FfnScratch, GegluFfn, SparkFfn};
use crate::format::{Model, QMatrix};
use crate::ops::{matvec, rmsnorm, rope};
use crate::stats::{LayerStats, Observer};
use crate::tensor::TensorKind as T;
use core::marker::PhantomData;
use spark_hal::arena::{arena_cost, Arena};
use spark_hal::Kernels;

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
    /// Attention heads the session may run at once (head slots, 1 ..= `MAX_HEAD_SLOTS`).
    slots: usize,
}

impl Dims {
    fn new(c: &Config, max_seq: usize, slots: usize) -> Dims {
        let dh = c.head_dim as usize;
        let ra = if c.attn_kind == AttnKind::Spark { c.attn_r as usize } else { dh };
        let f = c.d_ff as usize;
        let cap_f = FfnPlan::for_model(c).cap;
        let cap_a = AttnParams::max_cap(c, max_seq);
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
            slots,
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
    /// Head slots beyond the first (whose scratch is the shared buffers).
    fn extra_slots(&self) -> usize {
        self.slots - 1
    }
    /// Quantized vector of an extra head slot: the query parts, the value coefficients.
    fn slot_xq_len(&self) -> usize {
        self.dh.max(self.cap_a)
    }
    /// Accumulator of an extra head slot: key scores, `V` product (unsplit).
    fn slot_acc_len(&self) -> usize {
        self.max_seq.max(self.dh)
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
    /// Scratch of the head slots beyond the first (heads run at once on several threads;
    /// none with one slot): scores `[slots - 1, max_seq]`, selected positions, weights and
    /// `V` rows read `[slots - 1, cap_a]`, quantized vectors `[slots - 1, max(dh, cap_a)]`,
    /// accumulators `[slots - 1, max(max_seq, dh)]`.
    slot_scores: f32 = s.extra_slots() * s.max_seq,
    slot_idx: u32 = s.extra_slots() * s.cap_a,
    slot_w: f32 = s.extra_slots() * s.cap_a,
    slot_kept: u32 = s.extra_slots() * s.cap_a,
    slot_xq: i8 = s.extra_slots() * s.slot_xq_len(),
    slot_acc: i32 = s.extra_slots() * s.slot_acc_len(),
    /// RoPE inverse frequencies of part 1 `[ra / 2]` and part 2 `[rb / 2]`.
    inv_freq1: f32 = s.ra / 2,
    inv_freq2: f32 = s.rb / 2,
    /// RoPE cos/sin of the current position, part 1 `[ra / 2]`, part 2 `[rb / 2]`.
    cos1: f32 = s.ra / 2,
    sin1: f32 = s.ra / 2,
    cos2: f32 = s.rb / 2,
    sin2: f32 = s.rb / 2,
    /// Key cache part 1 `[n_layers, n_kv_heads, max_seq, ra]` (read in full per step).
    k1_cache: i8 = s.n_layers * s.n_kv * s.max_seq * s.ra,
    /// Key part 2 and value of each position, bundled `[n_layers, n_kv_heads, max_seq, rb + dh]`
    /// (read for the selected keys only: one run per key).
    kv_cache: i8 = s.n_layers * s.n_kv * s.max_seq * (s.rb + s.dh),
    /// Key part 1 scales `[n_layers, n_kv_heads, max_seq]`.
    k1_scale: f32 = s.n_layers * s.n_kv * s.max_seq,
    /// Key part 2 and value scales `[n_layers, n_kv_heads, max_seq, 2]`.
    kv_scale: f32 = s.n_layers * s.n_kv * s.max_seq * 2,
}

impl Model<'_> {
    /// Exact arena size a [`Session`] with context `max_seq` needs: KV cache, scratch
    /// vectors and active sets, plus up to 15 bytes to align an arbitrary start.
    pub fn arena_bytes(&self, max_seq: usize) -> usize {
        arena_bytes(self.config(), max_seq)
    }

    /// The arena of a session that runs up to `threads` attention heads at once (one
    /// head slot per thread, at most the head count and
    /// [`crate::attention::MAX_HEAD_SLOTS`]): [`Model::arena_bytes`] plus the extra
    /// slots' scratch. `threads <= 1`: exactly [`Model::arena_bytes`].
    pub fn arena_bytes_threads(&self, max_seq: usize, threads: usize) -> usize {
        arena_bytes_threads(self.config(), max_seq, threads)
    }
}

/// [`Model::arena_bytes`] for a configuration that passes [`Config::validate`], without
/// a model (for planning: what a variant of a model would need).
pub fn arena_bytes(cfg: &Config, max_seq: usize) -> usize {
    arena_bytes_threads(cfg, max_seq, 1)
}

/// [`Model::arena_bytes_threads`] for a configuration that passes [`Config::validate`].
pub fn arena_bytes_threads(cfg: &Config, max_seq: usize, threads: usize) -> usize {
    buffers_bytes(&Dims::new(cfg, max_seq, head_slots(cfg, threads))) + spark_hal::arena::ARENA_ALIGN - 1
}

/// Head slots for `threads` threads: `1 ..= min(n_heads, MAX_HEAD_SLOTS)`.
fn head_slots(cfg: &Config, threads: usize) -> usize {
    threads.clamp(1, (cfg.n_heads as usize).min(MAX_HEAD_SLOTS))
}

/// A decoding session: the KV cache and scratch of one sequence, over a borrowed arena.
/// Generic over the kernel backend `K` (static dispatch, no `dyn`) and the executor `E`
/// that runs the chunks of its integer products ([`Sequential`] unless built with
/// [`Session::with_executor`]; the logits are the same bits for every executor).
pub struct Session<'m, 'a, K: Kernels = spark_hal::Native, E: Executor = Sequential> {
    model: &'m Model<'m>,
    /// Runs the chunks of the integer products.
    exec: E,
    cfg: Config,
    dims: Dims,
    b: Buffers<'a>,
    /// Tokens in the cache.
    pos: usize,
    /// The FFN's top-k settings (computed once).
    ffn: FfnPlan,
    /// Per-layer counters `[n_layers]`.
    stats: heapless::Vec<LayerStats, MAX_LAYERS>,
    /// The backend is a type only (`fn() -> K`: the session is `Send` and `Sync` whatever
    /// `K` is).
    _k: PhantomData<fn() -> K>,
}

impl<'m, 'a, K: Kernels> Session<'m, 'a, K, Sequential> {
    /// A session with the model's full context (`max_seq_len`).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, RunError> {
        Self::with_max_seq(model, arena, model.config().max_seq_len as usize)
    }

    /// A session with a shorter context `max_seq` (less arena).
    pub fn with_max_seq(model: &'m Model<'m>, arena: &'a mut [u8], max_seq: usize) -> Result<Self, RunError> {
        Self::with_executor(model, arena, max_seq, Sequential)
    }
}

impl<'m, 'a, K: Kernels, E: Executor> Session<'m, 'a, K, E> {
    /// A session with context `max_seq` whose integer products run on `exec` (the same
    /// arena as any other session: the chunks write disjoint parts of its buffers). An
    /// arena of [`Model::arena_bytes_threads`]`(max_seq, t)` bytes or more also holds the
    /// scratch of `t` attention head slots (the most that fit), so that up to `t` heads
    /// run at once when the executor has the threads; the results are the same bits.
    pub fn with_executor(model: &'m Model<'m>, arena: &'a mut [u8], max_seq: usize, exec: E) -> Result<Self, RunError> {
        let cfg = *model.config();
        if max_seq == 0 || max_seq > cfg.max_seq_len as usize {
            return Err(RunError::BadMaxSeq { requested: max_seq, max_seq_len: cfg.max_seq_len });
        }
        let needed = model.arena_bytes(max_seq);
        if arena.len() < needed {
            return Err(RunError::ArenaTooSmall { needed, available: arena.len() });
        }
        // The most head slots the arena holds (at least one: `needed` fits).
        let mut slots = head_slots(&cfg, MAX_HEAD_SLOTS);
        while slots > 1 && arena_bytes_threads(&cfg, max_seq, slots) > arena.len() {
            slots -= 1;
        }
        let dims = Dims::new(&cfg, max_seq, slots);
        let available = arena.len();
        let mut a = Arena::new(arena);
        let b = carve(&mut a, &dims).ok_or(RunError::ArenaTooSmall { needed, available })?;
        let ffn = FfnPlan::for_model(&cfg);
        let theta = cfg.rope_theta as f64;
        // inv_freq_i = theta^(-2i/w), computed in f64 once, stored as f32.
        for (i, v) in b.inv_freq1.iter_mut().enumerate() {
            *v = libm::pow(theta, -2.0 * i as f64 / dims.ra as f64) as f32;
        }
        for (i, v) in b.inv_freq2.iter_mut().enumerate() {
            *v = libm::pow(theta, -2.0 * i as f64 / dims.rb as f64) as f32;
        }
        let mut stats = heapless::Vec::new();
        for _ in 0..dims.n_layers {
            // Cannot fail: a loaded model has at most MAX_LAYERS layers (Config::validate).
            let _ = stats.push(LayerStats::EMPTY);
        }
        Ok(Session { model, exec, cfg, dims, b, pos: 0, ffn, stats, _k: PhantomData })
    }

    /// The executor that runs the chunks of the integer products.
    pub fn executor(&self) -> &E {
        &self.exec
    }

    /// The executor, to change (a new one takes effect at the next step; results do not
    /// change).
    pub fn executor_mut(&mut self) -> &mut E {
        &mut self.exec
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
        self.stats.fill(LayerStats::EMPTY);
    }

    /// Per-layer sparsity statistics since the last reset.
    pub fn stats(&self) -> &[LayerStats] {
        &self.stats
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

    fn matvec(e: &E, m: &QMatrix<'_>, x: &[f32], xq: &mut [i8], acc: &mut [i32], out: &mut [f32]) -> f32 {
        matvec::<K, E>(e, m, x, xq, acc, out)
    }

    /// Attention block of layer `l`: reads `h`, writes `y` (after `Wo`).
    fn attention<O: Observer>(&mut self, l: usize, obs: &mut O) {
        let m = self.model;
        let d = self.dims;
        let e = &self.exec;
        let b = &mut self.b;
        Self::matvec(e, &m.layer_matrix(l, T::Wq), b.h, b.xq, b.acc, b.q);
        Self::matvec(e, &m.layer_matrix(l, T::Wk), b.h, b.xq, b.acc, b.k);
        Self::matvec(e, &m.layer_matrix(l, T::Wv), b.h, b.xq, b.acc, b.v);

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

        // Append this position to the cache: key part 1, then the [K2 | V] record.
        let p = self.pos;
        let rec = d.rb + d.dh; // bytes per [K2 | V] record
        for hd in 0..d.n_kv {
            let slot = (l * d.n_kv + hd) * d.max_seq + p; // [layer, kv head, pos]
            let kh = &b.k[hd * d.dh..(hd + 1) * d.dh];
            b.k1_scale[slot] = K::quantize_sym_i8(&kh[..d.ra], &mut b.k1_cache[slot * d.ra..(slot + 1) * d.ra]);
            let (k2q, vq) = b.kv_cache[slot * rec..(slot + 1) * rec].split_at_mut(d.rb);
            b.kv_scale[2 * slot] = K::quantize_sym_i8(&kh[d.ra..], k2q);
            b.kv_scale[2 * slot + 1] = K::quantize_sym_i8(&b.v[hd * d.dh..(hd + 1) * d.dh], vq);
        }

        // Visible positions start..=p, and the top-k parameters shared by all heads.
        let (start, params) = AttnParams::for_step(&self.cfg, l, p);
        let group = d.n_heads / d.n_kv;
        let (k1_cache, kv_cache, k1_scale, kv_scale) = (&*b.k1_cache, &*b.kv_cache, &*b.k1_scale, &*b.kv_scale);
        let view = |hd: usize| {
            let base = (l * d.n_kv + hd / group) * d.max_seq; // first cache slot of this [layer, kv head]
            KvView {
                k1: &k1_cache[base * d.ra..(base + d.max_seq) * d.ra],
                kv: &kv_cache[base * rec..(base + d.max_seq) * rec],
                k1_scale: &k1_scale[base..base + d.max_seq],
                kv_scale: &kv_scale[2 * base..2 * (base + d.max_seq)],
                ra: d.ra,
                rb: d.rb,
            }
        };
        // Slot 0 is the shared scratch; the others (with more than one) are carved per slot.
        let mut slot0 = HeadSlot::new(AttnScratch {
            scores: &mut *b.att_scores,
            idx: &mut *b.att_idx,
            w: &mut *b.att_w,
            xq: &mut *b.xq,
            kept: &mut *b.att_kept,
            acc: &mut *b.acc,
        });
        let stats = &mut self.stats[l];
        let done = |hd: usize, positions: &[u32], run: &AttnRun| {
            obs.attn(l, hd, positions, run.sel.as_ref());
            stats.attn(run.len, run.sel.as_ref());
        };
        if d.slots == 1 || e.threads() == 1 {
            let slots = core::slice::from_mut(&mut slot0);
            attend_heads_on::<K, E>(e, b.q, view, start, p, &params, slots, b.att, done);
        } else {
            let mut slots: heapless::Vec<HeadSlot<'_>, MAX_HEAD_SLOTS> = heapless::Vec::new();
            let _ = slots.push(slot0);
            let extra = b
                .slot_scores
                .chunks_mut(d.max_seq)
                .zip(b.slot_idx.chunks_mut(d.cap_a.max(1)))
                .zip(b.slot_w.chunks_mut(d.cap_a.max(1)))
                .zip(b.slot_kept.chunks_mut(d.cap_a.max(1)))
                .zip(b.slot_xq.chunks_mut(d.slot_xq_len()))
                .zip(b.slot_acc.chunks_mut(d.slot_acc_len()));
            for (((((scores, idx), w), kept), xq), acc) in extra {
                // Cannot fail: at most MAX_HEAD_SLOTS - 1 extra slots (head_slots).
                let _ = slots.push(HeadSlot::new(AttnScratch { scores, idx, w, xq, kept, acc }));
            }
            attend_heads_on::<K, E>(e, b.q, view, start, p, &params, &mut slots, b.att, done);
        }
        Self::matvec(e, &m.layer_matrix(l, T::Wo), b.att, b.xq, b.acc, b.y);
    }

    /// Spark FFN of layer `l` (SPEC section 4): reads `h`, writes `y`.
    fn ffn_spark<O: Observer>(&mut self, l: usize, obs: &mut O) {
        let m = self.model;
        let w = SparkFfn::for_layer(m, l, self.ffn);
        let b = &mut self.b;
        let sel = spark_ffn_on::<K, E>(&self.exec, &w, b.h, &mut ffn_scratch!(b), b.y).sel;
        obs.ffn(l, &b.ffn_idx[..sel.len], &sel);
        self.stats[l].ffn(sel.len, &sel);
    }

    /// GeGLU FFN of layer `l` (optionally top-k on the gate): reads `h`, writes `y`.
    fn ffn_geglu<O: Observer>(&mut self, l: usize, obs: &mut O) {
        let m = self.model;
        let w = GegluFfn::for_layer(m, l, self.ffn);
        let b = &mut self.b;
        let sel = geglu_ffn_on::<K, E>(&self.exec, &w, b.h, &mut ffn_scratch!(b), b.y).sel;
        obs.ffn(l, &b.ffn_idx[..sel.len], &sel);
        self.stats[l].ffn(sel.len, &sel);
    }

    /// Final norm, logits and the optional final soft-cap.
    fn compute_logits(&mut self) {
        let m = self.model;
        let b = &mut self.b;
        rmsnorm(b.h, b.x, m.global_f32(T::FinalNorm), self.cfg.norm_eps);
        Self::matvec(&self.exec, &m.head_matrix(), b.h, b.xq, b.acc, b.logits);
        let cap = self.cfg.final_logit_softcap;
        if cap > 0.0 {
            K::softcap_f32(b.logits, cap);
        }
    }

    /// For benchmarks only: fills the whole KV cache (every int8 cache buffer and every
    /// cache-scale buffer, all positions) with deterministic pseudo-random int8 values in
    /// `-127..=127` and scales in `[1/128, 3/128)` from `seed` (xorshift64), sets the
    /// context to `n` tokens and resets the statistics, so that the next [`Session::step`]
    /// decodes at position `n` without prefilling `n` tokens. The cache holds no real
    /// sequence afterwards. `ContextFull` when `n > max_seq`.
    #[doc(hidden)]
    pub fn fill_kv_synthetic(&mut self, n: usize, seed: u64) -> Result<(), RunError> {
        if n > self.dims.max_seq {
            return Err(RunError::ContextFull { max_seq: self.dims.max_seq });
        }
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let b = &mut self.b;
        for buf in [&mut *b.k1_cache, &mut *b.kv_cache] {
            for v in buf.iter_mut() {
                *v = ((next() >> 56) as u8 as i8).max(-127);
            }
        }
        for buf in [&mut *b.k1_scale, &mut *b.kv_scale] {
            for v in buf.iter_mut() {
                *v = (1.0 + (next() >> 40) as f32 / (1u64 << 23) as f32) / 128.0;
            }
        }
        self.pos = n;
        self.stats.fill(LayerStats::EMPTY);
        Ok(())
    }
}
