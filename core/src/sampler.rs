//! Choosing the next token from logits: greedy, temperature and top-p (nucleus) sampling
//! with a small seeded PRNG, no allocator, and the same bits on every target.
//!
//! - [`Rng`] is xoshiro128** (Blackman and Vigna): `u32` state and `u32` arithmetic only,
//!   so a Cortex-M draws exactly what a desktop draws. [`Rng::new`] expands a `u64` seed
//!   with SplitMix64 (exact `u64` arithmetic, once per seed).
//! - [`Sampling`] is the rule, [`Sampler`] a rule plus its generator. Greedy uses no
//!   draw; temperature and top-p use exactly one [`Rng::next_f32`] per token, so a seed
//!   fixes the whole generation. [`Sampling::pick`] is the rule for a given draw.
//!
//! Float work is plain `f32` in a fixed order (no fused multiply-add, which Rust never
//! introduces on its own) with `libm::expf`, so results are bit-identical on every
//! target. Softmax weights are `w(x) = exp((x - max) / t)`, computed as exactly `1` for
//! the largest logit(s); NaN logits weigh 0 and are never chosen, `-inf` weighs 0 unless
//! every logit is `-inf` (then all weigh 1), a `+inf` logit takes all the mass (shared
//! equally between several). Empty logits or all-NaN logits are typed errors. A draw `u`
//! picks the first token whose running weight sum exceeds `u * total`.
//!
//! Testing: `core/tests/sampler.rs` checks the generator against the published
//! reference outputs of xoshiro128** and a hand-written `u64` model of it, greedy ties
//! and NaN, temperature frequencies against `f64` softmax probabilities over many draws,
//! the exact top-p nucleus for chosen draws, parameter errors, and seed determinism.

use core::cmp::Ordering;
use core::fmt;

/// Why a token could not be sampled, or a sampling rule is invalid.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum SampleError {
    /// No logits.
    EmptyLogits,
    /// More logits than `u32` token ids.
    TooManyLogits {
        /// Number of logits.
        len: usize,
    },
    /// Every logit is NaN.
    AllNan,
    /// Temperature is not finite and positive.
    BadTemperature {
        /// The value given.
        t: f32,
    },
    /// Top-p is not in `[0, 1]`.
    BadTopP {
        /// The value given.
        p: f32,
    },
    /// The scratch buffer is shorter than the logits (top-p sorts ids in it).
    ScratchTooSmall {
        /// Elements needed (the number of logits).
        needed: usize,
        /// Elements available.
        available: usize,
    },
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SampleError::EmptyLogits => f.write_str("no logits to sample from"),
            SampleError::TooManyLogits { len } => write!(f, "{len} logits exceed the u32 token id range"),
            SampleError::AllNan => f.write_str("every logit is NaN"),
            SampleError::BadTemperature { t } => write!(f, "temperature {t} must be finite and > 0"),
            SampleError::BadTopP { p } => write!(f, "top-p {p} must lie in [0, 1]"),
            SampleError::ScratchTooSmall { needed, available } => {
                write!(f, "sampler scratch too small: needs {needed} ids, has {available}")
            }
        }
    }
}

impl core::error::Error for SampleError {}

/// xoshiro128**: 128-bit state, period `2^128 - 1`, `u32` operations only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u32; 4],
}

impl Rng {
    /// A generator seeded from `seed`: the state is the first two outputs of SplitMix64
    /// started at `seed`, each split into (low, high) `u32` halves. Never all zero.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (a, b) = (next(), next());
        // SplitMix64's output is a bijection of its distinct consecutive states, so `a != b`
        // and the state below is never all zero.
        Rng { s: [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32] }
    }

    /// A generator with the given raw state (as in the reference C code's `s[0..4]`). The
    /// all-zero state, which xoshiro never leaves, is replaced by `Rng::new(0)`'s.
    pub fn from_state(s: [u32; 4]) -> Self {
        if s == [0; 4] {
            Rng::new(0)
        } else {
            Rng { s }
        }
    }

    /// The raw state.
    pub fn state(&self) -> [u32; 4] {
        self.s
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// Uniform in `[0, 1)`: the top 24 bits of [`Rng::next_u32`] times `2^-24` (exact).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }
}

/// A sampling rule.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The highest logit; ties go to the lowest id. Uses no random draw.
    Greedy,
    /// Softmax of `logits / t` over all tokens (`t` finite and `> 0`; use [`Sampling::Greedy`]
    /// for `t = 0`).
    Temperature {
        /// Temperature.
        t: f32,
    },
    /// Nucleus sampling: tokens sorted by logit (descending, ties by lower id), the
    /// smallest prefix whose softmax(`logits / t`) mass reaches `p` of the total, then
    /// sampled renormalised. `p` in `[0, 1]`; a small `p` keeps only the top token. Sorts
    /// the ids in the caller's scratch: `O(V log V)` per token, no allocation.
    TopP {
        /// Temperature.
        t: f32,
        /// Probability mass kept.
        p: f32,
    },
}

/// Largest `f32` below 1.
const BELOW_ONE: f32 = 1.0 - 1.0 / 16_777_216.0;

impl Sampling {
    /// Check the parameters ([`SampleError::BadTemperature`], [`SampleError::BadTopP`]).
    pub fn validate(&self) -> Result<(), SampleError> {
        let check_t = |t: f32| if t.is_finite() && t > 0.0 { Ok(()) } else { Err(SampleError::BadTemperature { t }) };
        match *self {
            Sampling::Greedy => Ok(()),
            Sampling::Temperature { t } => check_t(t),
            Sampling::TopP { t, p } => {
                check_t(t)?;
                if (0.0..=1.0).contains(&p) {
                    Ok(())
                } else {
                    Err(SampleError::BadTopP { p })
                }
            }
        }
    }

    /// True when [`Sampling::pick`] uses its draw.
    pub fn uses_draw(&self) -> bool {
        !matches!(self, Sampling::Greedy)
    }

    /// The token this rule picks for uniform draw `u` (clamped into `[0, 1)`, NaN as 0).
    /// `scratch` must hold `logits.len()` ids for [`Sampling::TopP`]; the other rules do
    /// not touch it (pass `&mut []`).
    pub fn pick(&self, logits: &[f32], scratch: &mut [u32], u: f32) -> Result<u32, SampleError> {
        self.validate()?;
        let max = logits[argmax(logits)? as usize];
        let u = if u > 0.0 { u.min(BELOW_ONE) } else { 0.0 };
        match *self {
            Sampling::Greedy => argmax(logits),
            Sampling::Temperature { t } => Ok(pick_temperature(logits, max, t, u)),
            Sampling::TopP { t, p } => pick_top_p(logits, max, t, p, u, scratch),
        }
    }
}

/// Index of the largest logit, ties to the lowest id, NaN never chosen.
pub fn argmax(logits: &[f32]) -> Result<u32, SampleError> {
    if logits.is_empty() {
        return Err(SampleError::EmptyLogits);
    }
    if u32::try_from(logits.len()).is_err() {
        return Err(SampleError::TooManyLogits { len: logits.len() });
    }
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        if !x.is_nan() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i as u32).ok_or(SampleError::AllNan)
}

/// Softmax weight relative to the largest logit (see the module docs).
#[inline]
fn weight(x: f32, max: f32, t: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else if x == max {
        1.0
    } else {
        libm::expf((x - max) / t)
    }
}

fn pick_temperature(logits: &[f32], max: f32, t: f32, u: f32) -> u32 {
    let mut total = 0.0f32;
    for &x in logits {
        total += weight(x, max, t);
    }
    let target = u * total;
    let (mut cum, mut last) = (0.0f32, 0usize);
    for (i, &x) in logits.iter().enumerate() {
        let w = weight(x, max, t);
        if w > 0.0 {
            cum += w;
            last = i;
            if cum > target {
                return i as u32;
            }
        }
    }
    last as u32
}

fn pick_top_p(logits: &[f32], max: f32, t: f32, p: f32, u: f32, scratch: &mut [u32]) -> Result<u32, SampleError> {
    let Some(ids) = scratch.get_mut(..logits.len()) else {
        return Err(SampleError::ScratchTooSmall { needed: logits.len(), available: scratch.len() });
    };
    let mut n = 0;
    for (i, &x) in logits.iter().enumerate() {
        if !x.is_nan() {
            ids[n] = i as u32;
            n += 1;
        }
    }
    let ids = &mut ids[..n];
    let logit = |id: u32| logits.get(id as usize).map_or(0.0, |&x| x + 0.0); // -0.0 + 0.0 == +0.0
    ids.sort_unstable_by(|&a, &b| match logit(b).total_cmp(&logit(a)) {
        Ordering::Equal => a.cmp(&b),
        o => o,
    });
    let w = |id: u32| logits.get(id as usize).map_or(0.0, |&x| weight(x, max, t));
    let mut total = 0.0f32;
    for &id in ids.iter() {
        total += w(id);
    }
    let threshold = p * total;
    let (mut mass, mut k) = (0.0f32, ids.len());
    for (j, &id) in ids.iter().enumerate() {
        mass += w(id);
        if mass >= threshold {
            k = j + 1;
            break;
        }
    }
    let target = u * mass;
    let (mut cum, mut last) = (0.0f32, ids.first().copied().unwrap_or(0));
    for &id in &ids[..k] {
        let wi = w(id);
        if wi > 0.0 {
            cum += wi;
            last = id;
            if cum > target {
                return Ok(id);
            }
        }
    }
    Ok(last)
}

/// A sampling rule with its generator.
#[derive(Clone, Debug)]
pub struct Sampler {
    rng: Rng,
    cfg: Sampling,
}

impl Sampler {
    /// A sampler for `cfg` with `Rng::new(seed)`; fails if `cfg` is invalid.
    pub fn new(cfg: Sampling, seed: u64) -> Result<Self, SampleError> {
        Self::with_rng(cfg, Rng::new(seed))
    }

    /// A sampler for `cfg` with the given generator; fails if `cfg` is invalid.
    pub fn with_rng(cfg: Sampling, rng: Rng) -> Result<Self, SampleError> {
        cfg.validate()?;
        Ok(Sampler { rng, cfg })
    }

    /// The rule.
    pub fn config(&self) -> Sampling {
        self.cfg
    }

    /// The generator.
    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    /// Next token for `logits` (one generator draw unless greedy). `scratch` must hold
    /// `logits.len()` ids for top-p and is unused otherwise. On error no draw is used.
    pub fn sample(&mut self, logits: &[f32], scratch: &mut [u32]) -> Result<u32, SampleError> {
        if !self.cfg.uses_draw() {
            return argmax(logits);
        }
        argmax(logits)?;
        if let Sampling::TopP { .. } = self.cfg {
            if scratch.len() < logits.len() {
                return Err(SampleError::ScratchTooSmall { needed: logits.len(), available: scratch.len() });
            }
        }
        let u = self.rng.next_f32();
        self.cfg.pick(logits, scratch, u)
    }
}
