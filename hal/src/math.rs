//! Elementwise f32 functions of the int8 path that run once per visible key, neuron or
//! logit: `tanh` (the Gemma-2 logit soft-caps, GELU) and `exp` (softmax).
//!
//! This module is the scalar oracle of the elementwise kernels
//! ([`Kernels::softcap_f32`](crate::Kernels::softcap_f32),
//! [`Kernels::exp_shifted_f32`](crate::Kernels::exp_shifted_f32)); the x86 backends compile
//! the very same loops with AVX2 / AVX-512 enabled, and `kernel_suite!` checks they give
//! these bits.
//!
//! Why not `libm`: `libm::tanhf` is one branchy scalar call per element (about 12 ns
//! here), and at long contexts the attention soft-cap (one `tanh` per visible key per
//! query head) cost as much as reading the whole predictor half of the KV cache
//! (docs/performance-history.md). These versions are branch-free, so a plain loop over a slice
//! vectorises, and they use only IEEE-754 operations that are exactly rounded on every
//! target (`+ - * /`, comparisons, `abs`, `copysign`, integer bit moves; Rust never
//! contracts `a * b + c` into a fused multiply-add). A vectorised loop therefore gives the
//! same bits as the scalar function, on x86-64, aarch64 and Cortex-M alike; none of our
//! targets flushes subnormals.
//!
//! Accuracy (tested against `f64` over sweeps of the whole useful range): [`exp_f32`]
//! within 1.5 ulp (1.21 seen), [`tanh_f32`] within 2.5 ulp (1.86 seen). Tests: the unit tests below (accuracy against
//! `f64`, symmetry, saturation, NaN, slice == per-element bits), which test.sh also runs
//! under `qemu-aarch64`, and `kernel_suite!` (every backend == these bits).

/// `log2(e)`.
const LOG2_E: f32 = core::f32::consts::LOG2_E;
/// `ln 2` split Cody-Waite style: `LN2_HI` has 9 trailing zero bits, so `n * LN2_HI` is
/// exact for the `|n| <= 128` that occur.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0.693_145_751_953_125
/// `ln 2 - LN2_HI`.
const LN2_LO: f32 = 1.428_606_8e-6;
/// `1.5 * 2^23`: adding it rounds an `f32` of magnitude below `2^22` to an integer, which
/// then sits in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` for `x` in `[EXP_MIN, EXP_MAX]` (inputs outside are clamped: `e^x` saturates at
/// about `1.6e-38` and `1.7e38`; NaN gives NaN).
pub const EXP_MIN: f32 = -87.0;
/// Upper clamp of [`exp_f32`].
pub const EXP_MAX: f32 = 88.0;

/// `e^x`, branch-free: `x = n ln2 + r` with `|r| <= ln2 / 2`, `e^r` by its Taylor
/// polynomial to degree 7 (truncation below `6e-9` relative), times `2^n` built in the
/// exponent bits.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Clamp with comparisons that let NaN through to the end.
    let y = if x < EXP_MIN { EXP_MIN } else { x };
    let y = if y > EXP_MAX { EXP_MAX } else { y };
    let t = y * LOG2_E + ROUND_MAGIC;
    let nf = t - ROUND_MAGIC;
    // The rounded integer sits in the low bits of `t` (|n| < 2^22).
    let n = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = (y - nf * LN2_HI) - nf * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // n in [-126, 127]: a normal power of two.
    let scale = f32::from_bits((n.wrapping_add(127) as u32) << 23);
    let e = p * scale;
    if x.is_nan() {
        x
    } else {
        e
    }
}

/// Below this `|x|`, `tanh` is its odd Taylor series; above, `1 - 2 / (e^{2|x|} + 1)`.
pub(crate) const TANH_SMALL: f32 = 0.4;
/// `tanh(x)` rounds to `+-1` in `f32` for `|x| >= 9.011`; clamping at 10 keeps `e^{2|x|}`
/// finite.
const TANH_CLAMP: f32 = 10.0;
/// Taylor coefficients of `tanh x = x + T3 x^3 + T5 x^5 + ...` (`2^2n (2^2n - 1) B_2n / (2n)!`).
pub(crate) const T3: f32 = -1.0 / 3.0;
pub(crate) const T5: f32 = 2.0 / 15.0;
pub(crate) const T7: f32 = -17.0 / 315.0;
pub(crate) const T9: f32 = 62.0 / 2835.0;
pub(crate) const T11: f32 = -1382.0 / 155_925.0;
pub(crate) const T13: f32 = 21_844.0 / 6_081_075.0;

/// `tanh(x)`, branch-free. For `|x| < 0.4` the series to `x^13` (truncation below `5e-9`
/// relative); above, `1 - 2 / (e^{2|x|} + 1)` with [`exp_f32`]; the sign is copied from
/// `x`. NaN gives NaN, `+-inf` gives `+-1`.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let a = if a < TANH_CLAMP { a } else { TANH_CLAMP };
    let a2 = a * a;
    let p = T13;
    let p = p * a2 + T11;
    let p = p * a2 + T9;
    let p = p * a2 + T7;
    let p = p * a2 + T5;
    let p = p * a2 + T3;
    let small = a + a * a2 * p;
    let big = 1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0);
    let t = if a < TANH_SMALL { small } else { big };
    let t = t.copysign(x);
    if x.is_nan() {
        x
    } else {
        t
    }
}

/// `ln(1 + e^x)`, branch-free: `max(x, 0) + log1p(e^-|x|)`, where `log1p(u)` for
/// `u` in `(0, 1]` is `2 atanh(s)` with `s = u / (2 + u)` in `(0, 1/3]` (no cancellation for
/// small `u`), by its odd series to `s^15` (truncation below `3e-9` relative). NaN gives
/// NaN; `+inf` gives `+inf`.
#[inline(always)]
pub fn softplus_f32(x: f32) -> f32 {
    let u = exp_f32(-x.abs());
    let s = u / (2.0 + u);
    let s2 = s * s;
    let p = 1.0 / 15.0;
    let p = p * s2 + 1.0 / 13.0;
    let p = p * s2 + 1.0 / 11.0;
    let p = p * s2 + 1.0 / 9.0;
    let p = p * s2 + 1.0 / 7.0;
    let p = p * s2 + 1.0 / 5.0;
    let p = p * s2 + 1.0 / 3.0;
    let l = 2.0 * (s + s * s2 * p);
    let m = if x > 0.0 { x } else { 0.0 };
    let r = m + l;
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// Logit soft-cap of every element: `z <- cap * tanh(z * (1 / cap))` (`cap > 0`; the
/// reciprocal is rounded once). The loop vectorises; each element gets exactly the bits of
/// the scalar expression. The oracle of [`Kernels::softcap_f32`](crate::Kernels::softcap_f32).
#[inline(always)]
pub fn softcap_in_place(z: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in z.iter_mut() {
        *v = cap * tanh_f32(*v * inv);
    }
}

/// Dequantized kernel outputs: `out[i] = acc[i] as f32 * a * scale_i` (in that order,
/// `f32`, two roundings), where `scale_i` is the little-endian `f32` at
/// `row_scale[4 i .. 4 i + 4]` (a model's stored row scales, read in place). The oracle of
/// [`Kernels::dequantize_f32`](crate::Kernels::dequantize_f32). Shapes: `acc`, `out` and
/// the whole scales of `row_scale` (the shortest decides).
#[inline(always)]
pub fn dequantize(acc: &[i32], a: f32, row_scale: &[u8], out: &mut [f32]) {
    for ((o, &x), s) in out.iter_mut().zip(acc).zip(row_scale.chunks_exact(4)) {
        *o = x as f32 * a * f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

/// Threshold bit masks: bit `j` of `masks[g]` is set when `scores[32 g + j]` is finite
/// and above `theta` (`s > theta && s < +inf`: NaN fails both comparisons, `-inf` the
/// first). Only whole groups of 32 are tested: `min(masks.len(), scores.len() / 32)`
/// of them, the rest of `masks` is left as it is. The oracle of
/// [`Kernels::above_masks_f32`](crate::Kernels::above_masks_f32); comparisons only, so
/// every backend gives the same bits.
#[inline(always)]
pub fn above_masks(scores: &[f32], theta: f32, masks: &mut [u32]) {
    for (m, group) in masks.iter_mut().zip(scores.chunks_exact(32)) {
        let mut bits = 0u32;
        for (j, &s) in group.iter().enumerate() {
            bits |= (((s > theta) & (s < f32::INFINITY)) as u32) << j;
        }
        *m = bits;
    }
}

/// Attention scores from a predictor matvec: `out[j] = acc[j] * a * row_scale[j] * c`
/// (in that order, `f32`), then, when `softcap > 0`, the soft-cap of
/// [`softcap_in_place`] on each, in one pass. The oracle of
/// [`Kernels::scores_f32`](crate::Kernels::scores_f32). Shapes: `acc`, `row_scale` and
/// `out` of equal length (the shortest decides).
#[inline(always)]
pub fn scores_in_place(acc: &[i32], a: f32, row_scale: &[f32], c: f32, softcap: f32, out: &mut [f32]) {
    if softcap > 0.0 {
        let inv = 1.0 / softcap;
        for ((o, &x), &r) in out.iter_mut().zip(acc).zip(row_scale) {
            *o = softcap * tanh_f32(x as f32 * a * r * c * inv);
        }
    } else {
        for ((o, &x), &r) in out.iter_mut().zip(acc).zip(row_scale) {
            *o = x as f32 * a * r * c;
        }
    }
}

/// `x[j] <- e^(x[j] - max)` for every `j` (the softmax numerators). Vectorises like
/// [`softcap_in_place`]. The oracle of
/// [`Kernels::exp_shifted_f32`](crate::Kernels::exp_shifted_f32).
#[inline(always)]
pub fn exp_shifted_in_place(x: &mut [f32], max: f32) {
    for v in x.iter_mut() {
        *v = exp_f32(*v - max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place of `want` (rounded to f32).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        ((got as f64) - want).abs() / ulp
    }

    /// Every `step`-th f32 bit pattern in `[lo, hi]` (positive values).
    fn sweep(lo: f32, hi: f32, step: u32) -> impl Iterator<Item = f32> {
        (lo.to_bits()..=hi.to_bits()).step_by(step as usize).map(f32::from_bits)
    }

    /// The largest error in ulps of `f` against the `f64` reference `want` (skipped where
    /// it is `None`) over `x` and `-x` for every `step`-th bit pattern `x` in `[lo, hi]`,
    /// and the `x` where it occurs.
    fn worst_ulps(f: fn(f32) -> f32, want: impl Fn(f32) -> Option<f64>, lo: f32, hi: f32, step: u32) -> (f64, f32) {
        let mut worst = (0.0, 0.0f32);
        for m in sweep(lo, hi, step) {
            for x in [m, -m] {
                if let Some(w) = want(x) {
                    let u = ulps(f(x), w);
                    if u > worst.0 {
                        worst = (u, x);
                    }
                }
            }
        }
        worst
    }

    #[test]
    fn exp_is_within_1_5_ulp_of_f64() {
        let worst = worst_ulps(exp_f32, |x| Some((x as f64).exp()), 1e-8, 87.0, 331);
        assert!(worst.0 <= 1.5, "exp_f32: {} ulp at x = {:e}", worst.0, worst.1);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
    }

    #[test]
    fn exp_clamps_and_propagates_nan() {
        assert_eq!(exp_f32(f32::NEG_INFINITY), exp_f32(EXP_MIN));
        assert!(exp_f32(EXP_MIN) > 0.0 && exp_f32(EXP_MIN).is_normal());
        assert_eq!(exp_f32(1000.0), exp_f32(EXP_MAX));
        assert!(exp_f32(f32::INFINITY).is_finite());
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_within_2_5_ulp_of_f64() {
        let worst = worst_ulps(tanh_f32, |x| Some((x as f64).tanh()), 1e-30, 10.0, 997);
        assert!(worst.0 <= 2.5, "tanh_f32: {} ulp at x = {:e}", worst.0, worst.1);
    }

    #[test]
    fn softplus_is_within_3_ulp_of_f64() {
        let want = |x: f32| {
            let w = if x > 30.0 { x as f64 } else { (x as f64).exp().ln_1p() };
            (w >= 1e-37).then_some(w) // exp_f32 clamps below e^-87
        };
        let worst = worst_ulps(softplus_f32, want, 1e-30, 40.0, 997);
        assert!(worst.0 <= 3.0, "softplus_f32: {} ulp at x = {:e}", worst.0, worst.1);
        assert_eq!(softplus_f32(0.0), core::f32::consts::LN_2);
        assert_eq!(softplus_f32(100.0), 100.0);
        assert_eq!(softplus_f32(f32::INFINITY), f32::INFINITY);
        assert!(softplus_f32(f32::NEG_INFINITY) >= 0.0 && softplus_f32(-200.0) < 1e-37);
        assert!(softplus_f32(f32::NAN).is_nan());
    }

    #[test]
    fn scores_equal_the_two_step_computation() {
        let acc: Vec<i32> = (0..300).map(|i| (i * 7919 % 20011) - 10005).collect();
        let rs: Vec<f32> = (0..300).map(|i| 1e-3 * (1.0 + (i % 13) as f32)).collect();
        for cap in [0.0f32, 50.0, 3.0] {
            let mut got = vec![0.0f32; 300];
            scores_in_place(&acc, 0.013, &rs, 0.0625, cap, &mut got);
            let mut want: Vec<f32> = acc.iter().zip(&rs).map(|(&x, &r)| x as f32 * 0.013 * r * 0.0625).collect();
            if cap > 0.0 {
                softcap_in_place(&mut want, cap);
            }
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "cap {cap}");
        }
    }

    #[test]
    fn tanh_edge_cases() {
        assert_eq!(tanh_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        // Subnormal inputs: tanh x = x.
        let tiny = f32::from_bits(1);
        assert_eq!(tanh_f32(tiny), tiny);
        assert_eq!(tanh_f32(-tiny), -tiny);
        for x in [9.02f32, 9.5, 10.0, 20.0, 1e30, f32::MAX, f32::INFINITY] {
            assert_eq!(tanh_f32(x), 1.0, "tanh({x})");
            assert_eq!(tanh_f32(-x), -1.0, "tanh(-{x})");
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        // Odd and monotone across the branch point.
        let mut prev = -1.0f32;
        for x in sweep(0.3, 0.5, 1) {
            let t = tanh_f32(x);
            assert_eq!(tanh_f32(-x), -t);
            assert!(t >= prev, "tanh not monotone at {x:e}");
            prev = t;
        }
    }

    #[test]
    fn slices_give_the_scalar_bits() {
        // Values over the whole range, including the branch points, clamps and specials.
        let mut z: Vec<f32> = (0..4099).map(|i| (i as f32 - 2049.0) * 0.0173).collect();
        z.extend([0.4, -0.4, 9.0, -9.0, 1e-40, f32::NAN, f32::INFINITY, -f32::INFINITY, 1e9]);
        let cap = 7.5;
        let mut got = z.clone();
        softcap_in_place(&mut got, cap);
        for (g, &x) in got.iter().zip(&z) {
            let want = cap * tanh_f32(x * (1.0 / cap));
            assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()), "softcap({x})");
            // Within 1e-6 relative of the f64 soft-cap.
            if x.is_finite() {
                let r = cap as f64 * (x as f64 / cap as f64).tanh();
                assert!((*g as f64 - r).abs() <= 1e-6 * r.abs().max(1e-30), "softcap({x}) = {g} vs {r}");
            }
        }
        let mut e = z.clone();
        exp_shifted_in_place(&mut e, 3.0);
        for (g, &x) in e.iter().zip(&z) {
            let want = exp_f32(x - 3.0);
            assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()), "exp({x} - 3)");
        }
    }
}
