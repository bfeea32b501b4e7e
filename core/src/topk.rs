//! Statistical top-k (SPEC section 6): the sparse-activation operator that keeps the
//! entries of a score vector lying above `theta = mean + z * std`, where
//! `z = Phi^-1(1 - k/n)` makes roughly `k` of `n` Gaussian scores pass.
//!
//! The module provides, with no `std`, no allocator and no `unsafe`:
//!
//! - [`phi_inv`]: the standard normal quantile (Wichura's AS 241, `PPND16`), in `f64`,
//!   and [`topk_z`] / [`topk_capacity`], the per-model constants built from it. They run
//!   at load time (FFN) or once per step (attention), never per score.
//! - [`StatAccumulator`]: the streaming mean / population-std accumulator, `f32` only (the
//!   Cortex-M4 FPU has no `f64`), with a fixed order of operations so that every target
//!   produces the same bits, however the scores are chunked.
//! - [`select_above`] and [`stat_topk`]: the bounded active set in caller-provided
//!   buffers (indices ascending, soft-threshold values aligned), with the capacity and
//!   underflow rules of SPEC section 6. Nothing here allocates or panics, for any input.
//!   [`select_above_with`] and [`stat_topk_with`] are the same with the threshold test
//!   of a kernel backend (`Kernels::above_masks_f32`, identical bits on every backend);
//!   the forward pass uses those.
//!
//! Float work follows SPEC section 7: plain IEEE `f32`/`f64` operations in the written
//! order, no fused multiply-add, and only `libm` for transcendental functions.
//!
//! Testing: `core/tests/topk.rs` checks `phi_inv` against published quantile tables
//! (plus symmetry, edges and a round trip through `libm::erfc`), the accumulator against
//! an `f64` two-pass reference and `push` against `push_slice` bit for bit, the selected
//! counts on seeded Gaussian, uniform and heavy-tailed scores, every capacity / tie /
//! underflow / identity / non-finite edge case against a sort-based reference, and a
//! proptest over arbitrary inputs. The unit tests below cover the internal heap.
//! `core/benches/stat_topk.rs` times it against exact selection.

use spark_hal::{Kernels, Scalar};

// ---------------------------------------------------------------------------------------
// Normal quantile
// ---------------------------------------------------------------------------------------

// Coefficients of Wichura, "Algorithm AS 241: The Percentage Points of the Normal
// Distribution", Applied Statistics 37(3), 477-484 (1988), routine PPND16, listed
// highest degree first for Horner evaluation. Relative accuracy about 1e-16.

/// Numerator for `|p - 0.5| <= 0.425`, polynomial in `r = 0.180625 - q^2`.
#[allow(clippy::excessive_precision)] // the published digits, kept verbatim
const PPND16_A: [f64; 8] = [
    2.509_080_928_730_122_672_7e3,
    3.343_057_558_358_812_810_5e4,
    6.726_577_092_700_870_085_3e4,
    4.592_195_393_154_987_145_7e4,
    1.373_169_376_550_946_112_5e4,
    1.971_590_950_306_551_442_7e3,
    1.331_416_678_917_843_774_5e2,
    3.387_132_872_796_366_608_0,
];
/// Denominator for `|p - 0.5| <= 0.425`.
#[allow(clippy::excessive_precision)] // the published digits, kept verbatim
const PPND16_B: [f64; 8] = [
    5.226_495_278_852_854_561_0e3,
    2.872_908_573_572_194_267_4e4,
    3.930_789_580_009_271_061_0e4,
    2.121_379_430_158_659_586_7e4,
    5.394_196_021_424_751_107_7e3,
    6.871_870_074_920_579_083_0e2,
    4.231_333_070_160_091_125_2e1,
    1.0,
];
/// Numerator for the tails with `r = sqrt(-ln(min(p, 1-p))) <= 5`, in `r - 1.6`.
#[allow(clippy::excessive_precision)] // the published digits, kept verbatim
const PPND16_C: [f64; 8] = [
    7.745_450_142_783_414_076_40e-4,
    2.272_384_498_926_918_458_33e-2,
    2.417_807_251_774_506_117_70e-1,
    1.270_458_252_452_368_382_58,
    3.647_848_324_763_204_605_04,
    5.769_497_221_460_691_405_50,
    4.630_337_846_156_545_295_90,
    1.423_437_110_749_683_577_34,
];
/// Denominator for the tails with `r <= 5`.
#[allow(clippy::excessive_precision)] // the published digits, kept verbatim
const PPND16_D: [f64; 8] = [
    1.050_750_071_644_416_843_24e-9,
    5.475_938_084_995_344_946_00e-4,
    1.519_866_656_361_645_719_66e-2,
    1.481_039_764_274_800_745_90e-1,
    6.897_673_349_851_000_045_50e-1,
    1.676_384_830_183_803_849_40,
    2.053_191_626_637_758_821_87,
    1.0,
];
/// Numerator for the far tails, `r > 5`, in `r - 5`.
#[allow(clippy::excessive_precision)] // the published digits, kept verbatim
const PPND16_E: [f64; 8] = [
    2.010_334_399_292_288_132_65e-7,
    2.711_555_568_743_487_578_15e-5,
    1.242_660_947_388_078_438_60e-3,
    2.653_218_952_657_612_309_30e-2,
    2.965_605_718_285_048_912_30e-1,
    1.784_826_539_917_291_335_80,
    5.463_784_911_164_114_369_90,
    6.657_904_643_501_103_777_20,
];
/// Denominator for the far tails.
#[allow(clippy::excessive_precision)] // the published digits, kept verbatim
const PPND16_F: [f64; 8] = [
    2.044_263_103_389_939_785_64e-15,
    1.421_511_758_316_445_888_70e-7,
    1.846_318_317_510_054_681_80e-5,
    7.868_691_311_456_132_591_00e-4,
    1.487_536_129_085_061_485_25e-2,
    1.369_298_809_227_358_053_10e-1,
    5.998_322_065_558_879_376_90e-1,
    1.0,
];

/// Horner evaluation, highest degree first: `((c0 * x + c1) * x + c2) ...`, one rounded
/// multiply and one rounded add per step (no FMA).
fn horner(c: &[f64; 8], x: f64) -> f64 {
    let mut v = c[0];
    for &ci in &c[1..] {
        v = v * x + ci;
    }
    v
}

/// Standard normal quantile `Phi^-1(p)`: the `z` with `P(Z <= z) = p` for `Z ~ N(0, 1)`.
///
/// Wichura's AS 241 (`PPND16`, Applied Statistics 37, 1988): rational approximations of
/// degree 7/7 in three regions, relative accuracy about `1e-16`; the tests hold it to
/// `1e-7` absolute (in practice about `1e-15`) over `p` in `[1e-12, 1 - 1e-12]`. Pure
/// `f64` arithmetic in a fixed order plus `libm::log` and `libm::sqrt`, so every target
/// returns the same bits.
///
/// Edges: `p <= 0` gives `-inf`, `p >= 1` gives `+inf`, NaN gives NaN. The result is
/// exactly antisymmetric, `phi_inv(1 - p) == -phi_inv(p)`, whenever `1 - p` is exact.
pub fn phi_inv(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if libm::fabs(q) <= 0.425 {
        let r = 0.180625 - q * q;
        return q * horner(&PPND16_A, r) / horner(&PPND16_B, r);
    }
    // Tail: work with the smaller of p and 1 - p (1 - p is exact here since p > 0.925).
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = libm::sqrt(-libm::log(tail));
    let v = if r <= 5.0 {
        let r = r - 1.6;
        horner(&PPND16_C, r) / horner(&PPND16_D, r)
    } else {
        let r = r - 5.0;
        horner(&PPND16_E, r) / horner(&PPND16_F, r)
    };
    if q < 0.0 {
        -v
    } else {
        v
    }
}

/// The statistical top-k threshold multiplier `z = Phi^-1(1 - k/n)`, computed in `f64`
/// (`1.0 - (k as f64) / (n as f64)`, then [`phi_inv`]) and rounded once to `f32`.
///
/// The caller guarantees `1 <= k < n`. Outside that range nothing panics: `k == 0` gives
/// `+inf`, `k >= n` gives `-inf` (use the identity path of [`stat_topk`] instead), and
/// `n == k == 0` gives NaN.
pub fn topk_z(n: usize, k: usize) -> f32 {
    let p = 1.0 - (k as f64) / (n as f64);
    phi_inv(p) as f32
}

/// Capacity of the active-set buffer: `min(n, ceil(cap_factor * k))` (SPEC section 6:
/// `cap_factor = 2` unless the model file says otherwise).
///
/// The product is computed in `f32` (`cap_factor * k as f32`, then `libm::ceilf`), so a
/// factor written as `1.1` (stored as `1.10000002`) gives `ceil(11.0) = 11` for `k = 10`,
/// not 12. The result is clamped to at least 1 (and at least `k` when
/// `cap_factor >= 1`, guarding `f32` rounding for `k > 2^24`) and at most `n`; a NaN
/// factor counts as 0. Never panics; `n == 0` gives 0.
pub fn topk_capacity(n: usize, k: usize, cap_factor: f32) -> usize {
    let c = libm::ceilf(cap_factor * k as f32);
    // `as` saturates: NaN -> 0, +inf -> usize::MAX, negative -> 0.
    let mut cap = c as usize;
    if cap_factor >= 1.0 && cap < k {
        cap = k;
    }
    cap.max(1).min(n)
}

// ---------------------------------------------------------------------------------------
// Streaming statistics
// ---------------------------------------------------------------------------------------

/// Number of interleaved partial sums in [`StatAccumulator`]: finite score number `j`
/// (from 0) goes to lane `j % STAT_LANES`. Independent lanes let
/// [`StatAccumulator::push_slice`] run eight dependency chains side by side (and the
/// compiler vectorise them) while staying bit-identical to pushing one score at a time.
const STAT_LANES: usize = 8;

/// Finite scores per block: after every `STAT_BLOCK` finite scores the lane partial sums
/// are folded into the Kahan-compensated totals and reset (32 scores per lane).
const STAT_BLOCK: u32 = 256;

/// Largest `|x - K|` accumulated at unit scale (`2^40`, about `1.1e12`): below it every
/// sum of squares stays under `2^112` for up to `2^32` scores. A larger difference
/// switches the accumulator to the scaled mode (see [`StatAccumulator`]).
const STAT_UNSCALED_MAX: f32 = 1_099_511_627_776.0; // 2^40
/// The scaled mode's unit, `2^-96` (exact power of two): every scaled difference is below
/// `2^33` in magnitude, so no sum of squares can overflow.
const STAT_SCALE: f32 = f32::from_bits(0x0F80_0000); // 2^-96
/// `1 / STAT_SCALE = 2^96`.
const STAT_UNSCALE: f32 = f32::from_bits(0x6F80_0000); // 2^96

/// Mean, population standard deviation and count of the finite scores seen by a
/// [`StatAccumulator`].
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Mean of the finite scores (0 when there are none).
    pub mean: f32,
    /// Population standard deviation `sqrt((1/n) sum (x - mean)^2)` of the finite
    /// scores (0 when there are none; never negative; always finite: saturated at
    /// `f32::MAX` in the scaled mode).
    pub std: f32,
    /// Number of finite scores accumulated (NaN and +-inf are skipped).
    pub n_finite: u32,
}

/// Streaming accumulator of [`Stats`] over scores produced chunk by chunk.
///
/// `f32` only (cheap on a Cortex-M4 FPU), with this exact order of operations, identical
/// on every target:
///
/// 1. Non-finite inputs (NaN, +-inf) are skipped: they change nothing.
/// 2. The first finite input becomes the shift `K`. Finite input number `j` (from 0)
///    goes to lane `l = j % 8`: with `d = x - K`, `p1[l] = p1[l] + d` and
///    `p2[l] = p2[l] + d * d` (plain `f32` adds; 32 scores per lane per block).
/// 3. After every 256th finite input the block is folded: `P = p[0] + p[1] + ... + p[7]`
///    (left to right), added to a Kahan pair `(s, c)` by
///    `y = P - c; u = s + y; c = (u - s) - y; s = u`, and the lanes are reset to 0;
///    separately for the first (`p1` into `(s1, c1)`) and second (`p2` into `(s2, c2)`)
///    moments.
/// 4. [`finish`](Self::finish): `S1 = ((s1 - c1) + p1[0]) + p1[1] + ... + p1[7]` (the
///    pending partial block, left to right; likewise `S2`), `m = S1 / n`,
///    `mean = K + m`, `var = S2 / n - m * m` (negative values clamped to 0),
///    `std = libm::sqrtf(var)`, with `n` the count as `f32`.
///
/// The shift keeps the sums small when the mean is large compared with the spread; each
/// block is summed in 8 short chains (error at most ~40 `f32` ulps of the block's sum of
/// magnitudes, typically far less) and the blocks are combined with compensation, so the
/// error does not grow with the stream length. Accuracy degrades only if the first finite
/// score lies many standard deviations from the mean (relative error of the variance
/// grows like `1 + ((K - mean) / std)^2`). Counts are exact as `f32` up to `2^24` finite
/// scores.
///
/// **Scaled mode** (no overflow for any finite input). When a finite score has
/// `|x - K| > 2^40` (or `x - K` overflows), the accumulator switches, before adding that
/// score, to units of `2^-96`: every lane sum and both Kahan pairs are multiplied by
/// `2^-96` (first moment) or `2^-192` (second moment, as two multiplies by `2^-96`), and
/// from then on each finite score adds `d = x * 2^-96 - K * 2^-96` (two exact
/// power-of-two multiplies, then a rounded subtract) by the same steps 2 and 3. `finish`
/// then computes `m`, `var` and `sqrtf` the same way in scaled units and returns
/// `mean = (K * 2^-96 + m) * 2^96` and `std = sqrtf(var) * 2^96`, each clamped to
/// `[-f32::MAX, f32::MAX]`. Scores whose every `|x - K|` stays within `2^40` never enter
/// it, so their statistics are the unit-scale ones, bit for bit.
///
/// [`push_slice`](Self::push_slice) performs exactly the same operations as calling
/// [`push`](Self::push) on each element, so the result never depends on how the scores
/// are chunked (up to `u32::MAX` finite scores, where the count saturates).
#[derive(Debug, Clone)]
pub struct StatAccumulator {
    shift: f32,
    n: u32,
    scaled: bool,
    p1: [f32; STAT_LANES],
    p2: [f32; STAT_LANES],
    s1: f32,
    c1: f32,
    s2: f32,
    c2: f32,
}

/// One Kahan-compensated addition of `v` into the pair `(s, c)`.
#[inline(always)]
fn kahan_add(s: &mut f32, c: &mut f32, v: f32) {
    let y = v - *c;
    let u = *s + y;
    *c = (u - *s) - y;
    *s = u;
}

/// `v[0] + v[1] + ... + v[7]`, left to right.
#[inline(always)]
fn lane_sum(v: &[f32; STAT_LANES]) -> f32 {
    let mut acc = v[0];
    for &x in &v[1..] {
        acc += x;
    }
    acc
}

impl Default for StatAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl StatAccumulator {
    /// An empty accumulator (no scores seen).
    pub const fn new() -> Self {
        Self {
            shift: 0.0,
            n: 0,
            scaled: false,
            p1: [0.0; STAT_LANES],
            p2: [0.0; STAT_LANES],
            s1: 0.0,
            c1: 0.0,
            s2: 0.0,
            c2: 0.0,
        }
    }

    /// Switches to the scaled mode: everything accumulated so far is re-expressed in
    /// units of `2^-96` (first moment) and `2^-192` (second moment).
    fn enter_scaled(&mut self) {
        self.scaled = true;
        for l in 0..STAT_LANES {
            self.p1[l] *= STAT_SCALE;
            self.p2[l] = (self.p2[l] * STAT_SCALE) * STAT_SCALE;
        }
        self.s1 *= STAT_SCALE;
        self.c1 *= STAT_SCALE;
        self.s2 = (self.s2 * STAT_SCALE) * STAT_SCALE;
        self.c2 = (self.c2 * STAT_SCALE) * STAT_SCALE;
    }

    /// Folds the lane partial sums into the compensated totals and resets them.
    #[inline(always)]
    fn fold(&mut self, p1: &mut [f32; STAT_LANES], p2: &mut [f32; STAT_LANES]) {
        kahan_add(&mut self.s1, &mut self.c1, lane_sum(p1));
        kahan_add(&mut self.s2, &mut self.c2, lane_sum(p2));
        *p1 = [0.0; STAT_LANES];
        *p2 = [0.0; STAT_LANES];
    }

    /// Adds one score; NaN and +-inf are ignored.
    #[inline]
    pub fn push(&mut self, x: f32) {
        if !x.is_finite() {
            return;
        }
        if self.n == 0 {
            self.shift = x;
        }
        let l = (self.n as usize) % STAT_LANES;
        let mut d = x - self.shift;
        // (an infinite `d` counts as beyond the limit; `x` and `K` are finite, so `d` is
        // never NaN)
        let within = libm::fabsf(d) <= STAT_UNSCALED_MAX;
        if !self.scaled && !within {
            self.enter_scaled();
        }
        if self.scaled {
            d = x * STAT_SCALE - self.shift * STAT_SCALE;
        }
        self.p1[l] += d;
        self.p2[l] += d * d;
        self.n = self.n.saturating_add(1);
        if self.n % STAT_BLOCK == 0 {
            let (mut p1, mut p2) = (self.p1, self.p2);
            self.fold(&mut p1, &mut p2);
            self.p1 = p1;
            self.p2 = p2;
        }
    }

    /// Adds every score of `xs` in order; bit-identical to calling [`push`](Self::push)
    /// on each element. Runs eight lanes at a time whenever the lane position is 0 and
    /// the next eight scores are all finite.
    pub fn push_slice(&mut self, xs: &[f32]) {
        let mut rest = xs;
        while let Some((&x, tail)) = rest.split_first() {
            if self.n != 0 && !self.scaled && (self.n as usize) % STAT_LANES == 0 {
                let used = self.push_blocks(rest);
                if used > 0 {
                    rest = &rest[used..];
                    continue;
                }
            }
            self.push(x);
            rest = tail;
        }
    }

    /// Consumes whole groups of eight finite scores from the front of `xs` (the caller
    /// checked `n > 0`, lane position 0 and unit scale), with the lane sums held in
    /// locals; stops at the first group holding a non-finite score or one whose
    /// `|x - K|` exceeds `2^40` (left to `push`, which switches to the scaled mode).
    /// Returns the number of scores used.
    /// Per element the same operations as `push`, folding at the same counts.
    fn push_blocks(&mut self, xs: &[f32]) -> usize {
        let k = self.shift;
        let (mut p1, mut p2) = (self.p1, self.p2);
        let mut n = self.n;
        let mut used = 0usize;
        for chunk in xs.chunks_exact(STAT_LANES) {
            let mut finite = n <= u32::MAX - STAT_LANES as u32;
            for &x in chunk {
                // false for NaN / infinite x and for a difference beyond 2^40
                finite &= libm::fabsf(x - k) <= STAT_UNSCALED_MAX;
            }
            if !finite {
                break;
            }
            for l in 0..STAT_LANES {
                let d = chunk[l] - k;
                p1[l] += d;
                p2[l] += d * d;
            }
            n += STAT_LANES as u32;
            used += STAT_LANES;
            if n % STAT_BLOCK == 0 {
                self.fold(&mut p1, &mut p2);
            }
        }
        self.p1 = p1;
        self.p2 = p2;
        self.n = n;
        used
    }

    /// Number of finite scores pushed so far.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// The statistics of the finite scores pushed so far (see the type documentation
    /// for the exact arithmetic). With no finite scores: mean 0, std 0, `n_finite` 0.
    pub fn finish(&self) -> Stats {
        if self.n == 0 {
            return Stats { mean: 0.0, std: 0.0, n_finite: 0 };
        }
        let mut sum1 = self.s1 - self.c1;
        let mut sum2 = self.s2 - self.c2;
        for l in 0..STAT_LANES {
            sum1 += self.p1[l];
            sum2 += self.p2[l];
        }
        let nf = self.n as f32;
        let m = sum1 / nf;
        let mut var = sum2 / nf - m * m;
        if var < 0.0 {
            var = 0.0;
        }
        if !self.scaled {
            return Stats { mean: self.shift + m, std: libm::sqrtf(var), n_finite: self.n };
        }
        let mean = ((self.shift * STAT_SCALE + m) * STAT_UNSCALE).clamp(-f32::MAX, f32::MAX);
        let std = (libm::sqrtf(var) * STAT_UNSCALE).min(f32::MAX);
        Stats { mean, std, n_finite: self.n }
    }
}

/// The threshold `theta = mean + z * std` (one rounded multiply, then one rounded add;
/// no FMA).
///
/// When `z`, `mean` and `std` are finite but the result overflows, it is computed again
/// at scale `2^-96`, `(mean * 2^-96 + z * (std * 2^-96)) * 2^96`, and clamped to
/// `[-f32::MAX, f32::MAX]`: finite statistics always give a finite threshold. A
/// non-finite `z` (`k == 0` gives `+inf`) passes through (`+inf`, or NaN when `std` is
/// 0), and the selection's no-pass rule applies.
pub fn stat_topk_threshold(stats: &Stats, z: f32) -> f32 {
    let zs = z * stats.std;
    let theta = stats.mean + zs;
    if theta.is_finite() || !(z.is_finite() && stats.mean.is_finite() && stats.std.is_finite()) {
        return theta;
    }
    let ts = stats.mean * STAT_SCALE + z * (stats.std * STAT_SCALE);
    (ts * STAT_UNSCALE).clamp(-f32::MAX, f32::MAX)
}

// ---------------------------------------------------------------------------------------
// Selection
// ---------------------------------------------------------------------------------------

/// Result of [`select_above`] / [`stat_topk`]. The selected entries are
/// `idx[..len]` (strictly ascending) and `t[..len]` (aligned) in the caller's buffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// Number of entries written to the front of `idx` and `t` (`<= cap`).
    pub len: usize,
    /// The threshold used (`-inf` for the identity).
    pub theta: f32,
    /// More entries passed the threshold than the buffer holds; the `cap` largest were
    /// kept (ties: lower index first).
    pub overflow: bool,
    /// No entry passed although finite scores exist; the single largest finite entry
    /// (lowest index on ties) was kept with `t = 0` (nothing is kept when `cap == 0`).
    pub underflow: bool,
    /// The `k >= n` identity: every finite entry is selected, `t = score` (no shift).
    pub identity: bool,
}

/// Largest slice length whose indices all fit in `u32`; later entries are ignored.
const MAX_SCORES: usize = if usize::BITS > 32 { (u32::MAX as usize).wrapping_add(1) } else { usize::MAX };

/// `a` ranks below `b`: smaller score, or equal score and higher index.
#[inline(always)]
fn worse(ta: f32, ia: u32, tb: f32, ib: u32) -> bool {
    ta < tb || (ta == tb && ia > ib)
}

/// Restores the heap property (root = worst entry) below position `i` of the heap
/// stored in `idx`/`t` (same length).
fn sift_down(idx: &mut [u32], t: &mut [f32], mut i: usize) {
    let n = idx.len();
    loop {
        let l = 2 * i + 1;
        if l >= n {
            return;
        }
        let mut m = l;
        let r = l + 1;
        if r < n && worse(t[r], idx[r], t[l], idx[l]) {
            m = r;
        }
        if worse(t[m], idx[m], t[i], idx[i]) {
            idx.swap(i, m);
            t.swap(i, m);
            i = m;
        } else {
            return;
        }
    }
}

/// Shared selection: entries with a finite score `> theta`, bounded by the buffers,
/// with the overflow / underflow rules. `shift` chooses `t = max(s - theta, 0)` (true)
/// or `t = s` (false, the identity).
fn select_impl<K: Kernels>(
    scores: &[f32],
    theta: f32,
    shift: bool,
    identity: bool,
    idx: &mut [u32],
    t: &mut [f32],
) -> Selection {
    let scores = &scores[..scores.len().min(MAX_SCORES)];
    let cap = idx.len().min(t.len());
    let idx = &mut idx[..cap];
    let t = &mut t[..cap];

    // Pass 1, phase A: collect indices in order while the buffer has room. Scores are
    // tested 32 at a time into bit masks (`K::above_masks_f32`, 16 masks per call); the
    // set bits are appended while the whole group fits. The group that would overflow the
    // buffer, and what follows it, goes through the scalar loop, which stops exactly when
    // the buffer is full. `s > theta && s < +inf` is the same test as
    // `s.is_finite() && s > theta`: NaN fails both comparisons and -inf fails the first.
    // The scores are gathered into `t` afterwards.
    let n = scores.len();
    let mut i = 0usize;
    let mut len = 0usize;
    if cap > 0 {
        let mut masks = [0u32; 16];
        'groups: for block in scores.chunks(32 * masks.len()) {
            let groups = block.len() / 32;
            K::above_masks_f32(block, theta, &mut masks[..groups]);
            for &group_mask in &masks[..groups] {
                let mut m = group_mask;
                if len + m.count_ones() as usize > cap {
                    break 'groups;
                }
                while m != 0 {
                    idx[len] = (i + m.trailing_zeros() as usize) as u32;
                    len += 1;
                    m &= m - 1;
                }
                i += 32;
            }
        }
        while i < n && len < cap {
            let s = scores[i];
            let pass = (s > theta) & (s < f32::INFINITY);
            idx[len] = i as u32;
            len += pass as usize;
            i += 1;
        }
    }
    for j in 0..len {
        t[j] = scores[idx[j] as usize];
    }
    // Phase B, once the buffer is full: turn it into a min-heap (root = worst kept
    // entry) and let better candidates replace the root. A candidate always has a
    // higher index than every kept entry, so it wins only with a strictly larger score.
    let mut passing = len;
    let mut heap = false;
    for (j, &s) in scores[i..].iter().enumerate() {
        if !(s.is_finite() && s > theta) {
            continue;
        }
        passing += 1;
        if cap == 0 {
            continue;
        }
        if !heap {
            for h in (0..cap / 2).rev() {
                sift_down(idx, t, h);
            }
            heap = true;
        }
        if s > t[0] {
            idx[0] = (i + j) as u32;
            t[0] = s;
            sift_down(idx, t, 0);
        }
    }
    let overflow = passing > cap;

    if heap {
        // The root is the cap-th best entry (score rs, index ri). The kept set is every
        // finite entry ranking at or above it; rescan to write it in index order.
        let (rs, ri) = (t[0], idx[0] as usize);
        len = 0;
        for (i, &s) in scores.iter().enumerate() {
            if s.is_finite() && (s > rs || (s == rs && i <= ri)) && len < cap {
                idx[len] = i as u32;
                t[len] = s;
                len += 1;
            }
        }
    }

    let mut underflow = false;
    if passing == 0 {
        // Fallback: the largest finite entry, lowest index on ties, with t = 0.
        let mut best: Option<(usize, f32)> = None;
        for (i, &s) in scores.iter().enumerate() {
            if s.is_finite() && best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        if let Some((i, _)) = best {
            underflow = true;
            if cap > 0 {
                idx[0] = i as u32;
                t[0] = 0.0;
                len = 1;
            }
        }
    } else if shift {
        for v in t[..len].iter_mut() {
            let d = *v - theta;
            *v = if d > 0.0 { d } else { 0.0 };
        }
    }

    Selection { len, theta, overflow, underflow, identity }
}

/// The bounded active set for a given threshold (SPEC section 6).
///
/// `S = { i : scores[i] finite and scores[i] > theta }`, `t_i = max(scores[i] - theta,
/// 0)`, written to the front of `idx` and `t` with indices strictly ascending and `t`
/// aligned; `cap = min(idx.len(), t.len())`.
///
/// - More than `cap` entries pass: the `cap` largest scores are kept (ties: lower index
///   first) and `overflow` is set. Uses the caller's buffers as a bounded min-heap,
///   `O(n log cap)` worst case plus one rescan; when nothing overflows, one `O(n)` pass
///   (32 scores at a time) plus a gather of the `len` selected scores.
/// - None passes (e.g. `theta` NaN or `+inf`, or all scores equal when `theta = mean`):
///   the single largest finite entry is kept (lowest index on ties) with `t = 0` and
///   `underflow` is set. With no finite score at all, `len = 0` and no flag.
/// - `cap == 0`: `len = 0`; the flags still describe what happened.
///
/// Non-finite scores are never selected. Indices beyond `u32::MAX` are ignored. No
/// allocation, no panic.
pub fn select_above(scores: &[f32], theta: f32, idx: &mut [u32], t: &mut [f32]) -> Selection {
    select_impl::<Scalar>(scores, theta, true, false, idx, t)
}

/// [`select_above`] with the threshold test of backend `K` ([`Kernels::above_masks_f32`],
/// the same bits on every backend): the forward pass's entry point.
pub fn select_above_with<K: Kernels>(scores: &[f32], theta: f32, idx: &mut [u32], t: &mut [f32]) -> Selection {
    select_impl::<K>(scores, theta, true, false, idx, t)
}

/// Statistical top-k of `scores` for target `k`, with `z = topk_z(n, k)` precomputed by
/// the caller (at load for the FFN, per step for attention), into buffers of capacity
/// `cap = min(idx.len(), t.len())`.
///
/// - `k >= n` (`n = scores.len()`): the identity. Every finite entry is selected in
///   order with `t_i = scores[i]` (no shift), `identity = true`, `theta = -inf` (if the
///   finite entries outnumber `cap`, the `cap` largest are kept and `overflow` is set).
/// - Otherwise: [`Stats`] from one [`StatAccumulator::push_slice`] over `scores`,
///   `theta = mean + z * std` ([`stat_topk_threshold`]), then [`select_above`].
///
/// Nothing transcendental runs here. No allocation, no panic.
pub fn stat_topk(scores: &[f32], k: usize, z: f32, idx: &mut [u32], t: &mut [f32]) -> Selection {
    stat_topk_with::<Scalar>(scores, k, z, idx, t)
}

/// [`stat_topk`] with the threshold test of backend `K` ([`Kernels::above_masks_f32`],
/// the same bits on every backend): the forward pass's entry point.
pub fn stat_topk_with<K: Kernels>(scores: &[f32], k: usize, z: f32, idx: &mut [u32], t: &mut [f32]) -> Selection {
    if k >= scores.len() {
        return select_impl::<K>(scores, f32::NEG_INFINITY, false, true, idx, t);
    }
    let mut acc = StatAccumulator::new();
    acc.push_slice(scores);
    let theta = stat_topk_threshold(&acc.finish(), z);
    select_impl::<K>(scores, theta, true, false, idx, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_heap(idx: &[u32], t: &[f32]) -> bool {
        (1..idx.len()).all(|c| !worse(t[c], idx[c], t[(c - 1) / 2], idx[(c - 1) / 2]))
    }

    #[test]
    fn sift_down_builds_a_min_heap_with_index_tiebreak() {
        let mut idx = [0u32, 1, 2, 3, 4, 5, 6];
        let mut t = [5.0f32, 1.0, 1.0, 7.0, 0.5, 1.0, 9.0];
        for j in (0..idx.len() / 2).rev() {
            sift_down(&mut idx, &mut t, j);
        }
        assert!(is_heap(&idx, &t));
        // Worst = smallest score 0.5 at index 4.
        assert_eq!((t[0], idx[0]), (0.5, 4));
        // Remove it by replacing with a large value: next worst is the score-1.0 entry
        // with the highest index (5).
        t[0] = 100.0;
        idx[0] = 10;
        sift_down(&mut idx, &mut t, 0);
        assert!(is_heap(&idx, &t));
        assert_eq!((t[0], idx[0]), (1.0, 5));
    }

    #[test]
    fn scale_constants_are_exact_powers_of_two() {
        assert_eq!(STAT_SCALE, 2f32.powi(-96));
        assert_eq!(STAT_UNSCALE, 2f32.powi(96));
        assert_eq!(STAT_UNSCALED_MAX, 2f32.powi(40));
    }

    #[test]
    fn horner_matches_expanded_polynomial() {
        let c = [1.0, -2.0, 3.0, 0.5, 0.0, 0.0, 0.0, 4.0];
        let x = 2.0;
        // 1 x^7 - 2 x^6 + 3 x^5 + 0.5 x^4 + 4
        assert_eq!(horner(&c, x), 128.0 - 128.0 + 96.0 + 8.0 + 4.0);
    }
}
