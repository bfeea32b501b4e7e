//! The attention head (SPEC section 5): [`attend_head`] runs one query head over one kv
//! head's cache rows ([`KvView`]), dense (softmax) or Spark (predictor scores over the
//! first key part, statistical top-`ka`, softmax times softplus of the second part, `K2`
//! and `V` rows of the selected keys only).
//!
//! [`attend_heads_on`] runs every query head of a layer: one after the other (each
//! head's integer products split for the executor), or, with more than one
//! [`HeadSlot`] and a multi-threaded executor, several heads at once, each whole head one
//! chunk (its own scratch, the same code as one head alone), reported in head order.
//!
//! [`AttnParams`] is the one place the per-step settings are derived (visible window,
//! `z = Phi^-1(1 - ka/n)`, capacity); the session, `spark-sim bench` and the tests take
//! them from here. The projections, RoPE and the cache append live in the session's
//! decode loop; this module is the part a benchmark runs alone.
//!
//! Tested by the session tests (`tests/`: rows read per call with a recording backend,
//! whole forward passes against the f32 oracle, every backend bit-exact), by
//! `tests/threads.rs` (1 to 4 threads, heads split or not, the same bits) and by the unit
//! tests below (every slot count and executor against one head at a time).

use crate::config::{AttnKind, Config};
use crate::exec::{self, Executor, Sequential};
use crate::ops::sparse_rows_out;
use crate::topk::{stat_topk_with, topk_capacity, topk_z, Selection};
use spark_hal::arena::{arena_cost, Arena};
use spark_hal::math::softplus_f32;
use spark_hal::Kernels;

/// Most query heads [`attend_heads_on`] runs at once (the slots a session carves at most).
pub const MAX_HEAD_SLOTS: usize = 16;

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

impl<'s> AttnScratch<'s> {
    /// Arena bytes [`AttnScratch::carve`] takes for a head over at most `n` keys with
    /// `dh`-wide heads and at most `cap` selected keys (without the arena's start
    /// alignment).
    pub fn bytes(n: usize, dh: usize, cap: usize) -> usize {
        arena_cost::<f32>(n)
            + 2 * arena_cost::<u32>(cap)
            + arena_cost::<f32>(cap)
            + arena_cost::<i8>(dh.max(cap))
            + arena_cost::<i32>(n.max(dh))
    }

    /// The scratch of one head over at most `n` keys (`dh`-wide heads, at most `cap`
    /// selected keys), carved from `arena`; `None` when it has less than
    /// [`AttnScratch::bytes`] left.
    pub fn carve(arena: &mut Arena<'s>, n: usize, dh: usize, cap: usize) -> Option<AttnScratch<'s>> {
        Some(AttnScratch {
            scores: arena.take::<f32>(n).ok()?,
            idx: arena.take::<u32>(cap).ok()?,
            w: arena.take::<f32>(cap).ok()?,
            xq: arena.take::<i8>(dh.max(cap)).ok()?,
            kept: arena.take::<u32>(cap).ok()?,
            acc: arena.take::<i32>(n.max(dh)).ok()?,
        })
    }
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

/// The scratch one query head runs in, and what it selected: a session has one slot per
/// head it may run at once ([`attend_heads_on`]).
pub struct HeadSlot<'s> {
    /// The head's scratch (`scores` `[n]`, `acc` `[max(n, dh)]` at least).
    pub scratch: AttnScratch<'s>,
    /// What the slot's last head selected and read (its positions are
    /// `scratch.idx[..run.len]`).
    pub run: AttnRun,
}

impl<'s> HeadSlot<'s> {
    /// A slot over `scratch`, with no head run yet.
    pub fn new(scratch: AttnScratch<'s>) -> HeadSlot<'s> {
        HeadSlot { scratch, run: AttnRun { len: 0, sel: None, v_rows: 0 } }
    }
}

/// Every query head of a layer over the visible positions `start..=end`: head `hd` reads
/// `q[hd * dh..(hd + 1) * dh]` and the cache `view(hd)` (its kv head) and writes
/// `out[hd * dh..(hd + 1) * dh]` (`out` `[n_heads, dh]`, `dh = ra + rb` of the views);
/// `done(hd, positions, run)` is called for every head in head order, after the head ran.
///
/// With one usable slot (`slots.len()`, the executor's threads and the head count, at
/// most [`MAX_HEAD_SLOTS`]), or when the layer's key scores read fewer than the
/// executor's [`crate::exec::Grain::min_bytes`], the heads run one after the other in
/// `slots[0]`, each with its integer products split for `e` ([`attend_head_on`]).
/// Otherwise they run in waves of that many heads, one whole head per chunk of
/// [`Executor::for_each_chunk`] in its own slot, its products unsplit
/// ([`Sequential`]); a wave is reported, in head order, before the next starts. Each head
/// computes exactly what [`attend_head`] computes, so the bits are the same either way.
#[allow(clippy::too_many_arguments)]
pub fn attend_heads_on<'v, K: Kernels, E: Executor>(
    e: &E,
    q: &[f32],
    view: impl Fn(usize) -> KvView<'v> + Sync,
    start: usize,
    end: usize,
    p: &AttnParams,
    slots: &mut [HeadSlot<'_>],
    out: &mut [f32],
    mut done: impl FnMut(usize, &[u32], &AttnRun),
) {
    assert!(!slots.is_empty(), "attend_heads_on: no head slot");
    let v0 = view(0);
    let (ra, dh) = (v0.ra, v0.ra + v0.rb);
    let nh = out.len() / dh;
    let n = end + 1 - start;
    let par = slots.len().min(e.threads()).min(nh).min(MAX_HEAD_SLOTS);
    if par < 2 || !exec::splits(e, nh * n * ra) {
        let s = &mut slots[0];
        for hd in 0..nh {
            let (qh, oh) = (&q[hd * dh..(hd + 1) * dh], &mut out[hd * dh..(hd + 1) * dh]);
            s.run = attend_head_on::<K, E>(e, qh, &view(hd), start, end, p, &mut s.scratch, oh);
            done(hd, &s.scratch.idx[..s.run.len], &s.run);
        }
        return;
    }
    heads_in_waves::<K, E>(e, q, &view, start, end, p, &mut slots[..par], out, &mut done);
}

/// The heads of [`attend_heads_on`] in waves of `slots.len()`, one whole head per chunk
/// (its own function, so that the sequential path's stack frame, the microcontroller's,
/// does not hold the wave's list).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn heads_in_waves<'v, K: Kernels, E: Executor>(
    e: &E,
    q: &[f32],
    view: &(impl Fn(usize) -> KvView<'v> + Sync),
    start: usize,
    end: usize,
    p: &AttnParams,
    slots: &mut [HeadSlot<'_>],
    out: &mut [f32],
    done: &mut impl FnMut(usize, &[u32], &AttnRun),
) {
    let par = slots.len();
    let v0 = view(0);
    let dh = v0.ra + v0.rb;
    let nh = out.len() / dh;
    for h0 in (0..nh).step_by(par) {
        let wave = par.min(nh - h0);
        // [wave] (slot, head output) pairs: chunk i is head h0 + i.
        let mut work: heapless::Vec<(&mut HeadSlot<'_>, &mut [f32]), MAX_HEAD_SLOTS> =
            slots[..wave].iter_mut().zip(out[h0 * dh..(h0 + wave) * dh].chunks_mut(dh)).collect();
        e.for_each_chunk(&mut work, 1, |i, w| {
            let (s, oh) = &mut w[0];
            let hd = h0 + i;
            let qh = &q[hd * dh..(hd + 1) * dh];
            s.run = attend_head_on::<K, Sequential>(&Sequential, qh, &view(hd), start, end, p, &mut s.scratch, oh);
        });
        drop(work);
        for (i, s) in slots[..wave].iter().enumerate() {
            done(h0 + i, &s.scratch.idx[..s.run.len], &s.run);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Grain;
    use crate::test_bytes as bytes;
    use proptest::prelude::*;
    use spark_hal::Scalar;
    use std::sync::Mutex;
    use std::vec;
    use std::vec::Vec;

    /// Runs the chunks in reverse order (as threads might) and records each call's chunk
    /// count.
    struct Reversed(usize, Mutex<Vec<usize>>);
    impl Executor for Reversed {
        fn threads(&self) -> usize {
            self.0
        }
        fn grain(&self) -> Grain {
            Grain::FINEST
        }
        fn for_each_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(&self, out: &mut [T], chunk_len: usize, f: F) {
            let mut chunks: Vec<(usize, &mut [T])> = out.chunks_mut(chunk_len).enumerate().collect();
            self.1.lock().unwrap().push(chunks.len());
            chunks.reverse();
            for (i, c) in chunks {
                f(i, c);
            }
        }
    }

    /// `k` head slots over `n` keys of `dh`-wide heads, carved from `mem`.
    fn slots(mem: &mut [u8], k: usize, n: usize, dh: usize) -> Vec<HeadSlot<'_>> {
        let mut arena = Arena::new(mem);
        (0..k).map(|_| HeadSlot::new(AttnScratch::carve(&mut arena, n, dh, n).unwrap())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 24 }))]
        /// Every slot count and thread count gives each head exactly what one head alone
        /// gives (outputs and positions), reported once per head in head order, and the
        /// heads run in waves of `min(slots, threads, heads)` when that is at least 2.
        #[test]
        fn heads_at_once_equal_one_head_at_a_time(
            nkv in 1usize..3, group in 1usize..4, n in 1usize..80, spark in any::<bool>(),
            n_slots in 1usize..6, threads in 1usize..5, seed in any::<u64>(),
        ) {
            let (dh, ra) = (16, if spark { 8 } else { 16 });
            let rb = dh - ra;
            let nh = nkv * group;
            let (k1, kv) = (bytes(seed, nkv * n * ra), bytes(seed ^ 1, nkv * n * (rb + dh)));
            let k1s: Vec<f32> = (0..nkv * n).map(|i| 0.01 + (i % 7) as f32 * 0.003).collect();
            let kvs: Vec<f32> = (0..nkv * n * 2).map(|i| 0.02 + (i % 5) as f32 * 0.002).collect();
            let q: Vec<f32> = bytes(seed ^ 2, nh * dh).iter().map(|&b| b as f32 / 40.0).collect();
            let view = |hd: usize| {
                let h = hd / group;
                KvView {
                    k1: &k1[h * n * ra..(h + 1) * n * ra],
                    kv: &kv[h * n * (rb + dh)..(h + 1) * n * (rb + dh)],
                    k1_scale: &k1s[h * n..(h + 1) * n],
                    kv_scale: &kvs[2 * h * n..2 * (h + 1) * n],
                    ra,
                    rb,
                }
            };
            let p = AttnParams::from_parts(spark, 6, 2.0, dh as f32, 0.0, n);
            // One head at a time, sequential.
            let mut want_out = vec![0f32; nh * dh];
            let mut want_pos = Vec::new();
            let mut mem = vec![0u8; AttnScratch::bytes(n, dh, n) + 16];
            for hd in 0..nh {
                let mut s = slots(&mut mem, 1, n, dh).pop().unwrap();
                let r = attend_head::<Scalar>(&q[hd * dh..(hd + 1) * dh], &view(hd), 0, n - 1, &p, &mut s.scratch,
                    &mut want_out[hd * dh..(hd + 1) * dh]);
                want_pos.push(s.scratch.idx[..r.len].to_vec());
            }
            // Through attend_heads_on.
            let e = Reversed(threads, Mutex::new(Vec::new()));
            let mut mem = vec![0u8; n_slots * AttnScratch::bytes(n, dh, n) + 16];
            let mut ss = slots(&mut mem, n_slots, n, dh);
            let mut out = vec![0f32; nh * dh];
            let mut got_pos = Vec::new();
            let mut order = Vec::new();
            attend_heads_on::<Scalar, _>(&e, &q, view, 0, n - 1, &p, &mut ss, &mut out, |hd, pos, r| {
                order.push((hd, r.len));
                got_pos.push(pos.to_vec());
            });
            prop_assert_eq!(order, want_pos.iter().enumerate().map(|(h, p)| (h, p.len())).collect::<Vec<_>>());
            prop_assert_eq!(got_pos, want_pos);
            prop_assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want_out.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            let par = n_slots.min(threads).min(nh);
            let waves = e.1.into_inner().unwrap();
            if par >= 2 {
                // Waves of `par` heads (the last one shorter), nothing else split.
                let want: Vec<usize> = (0..nh).step_by(par).map(|h0| par.min(nh - h0)).collect();
                prop_assert_eq!(waves, want);
            } else if threads == 1 {
                prop_assert!(waves.is_empty(), "one thread: nothing handed to the executor");
            }
        }
    }
}
