//! `spark_core::sampler`: the PRNG against published reference outputs and a hand-written
//! `u64` model, greedy ties and NaN, temperature frequencies against `f64` softmax
//! probabilities, the exact top-p nucleus, parameter errors, determinism and a golden
//! sequence that every target must reproduce bit for bit.

use proptest::prelude::*;
use spark_core::sampler::{argmax, Rng, SampleError, Sampler, Sampling};

// ---------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------

#[test]
fn xoshiro128ss_published_reference_values() {
    // Reference implementation v1.1 (xoshiro.di.unimi.it/xoshiro128starstar.c) from
    // s = {1, 2, 3, 4}, as published in rand_xoshiro's test suite.
    let mut rng = Rng::from_state([1, 2, 3, 4]);
    let expected =
        [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804];
    for e in expected {
        assert_eq!(rng.next_u32(), e);
    }
}

#[test]
fn seeding_is_splitmix64() {
    // Published SplitMix64 outputs for seed 0: 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4.
    assert_eq!(Rng::new(0).state(), [0x7B1D_CDAF, 0xE220_A839, 0xA1B9_65F4, 0x6E78_9E6A]);
    assert_ne!(Rng::new(1).state(), Rng::new(0).state());
    assert_eq!(Rng::from_state([0; 4]).state(), Rng::new(0).state(), "all-zero state replaced");
}

/// xoshiro128** written out independently with `u64` arithmetic and explicit masks.
struct Model64 {
    s: [u64; 4],
}

impl Model64 {
    fn next(&mut self) -> u64 {
        const M: u64 = 0xFFFF_FFFF;
        let rotl = |x: u64, k: u32| ((x << k) | (x >> (32 - k))) & M;
        let result = (rotl((self.s[1] * 5) & M, 7) * 9) & M;
        let t = (self.s[1] << 9) & M;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = rotl(self.s[3], 11);
        result
    }
}

#[test]
fn matches_u64_model() {
    for seed in [0u64, 1, 42, 0xDEAD_BEEF, u64::MAX] {
        let mut rng = Rng::new(seed);
        let mut model = Model64 { s: rng.state().map(u64::from) };
        for _ in 0..10_000 {
            assert_eq!(rng.next_u32() as u64, model.next());
        }
    }
}

#[test]
fn next_f32_is_top_24_bits() {
    let mut a = Rng::new(3);
    let mut b = Rng::new(3);
    for _ in 0..10_000 {
        let f = a.next_f32();
        let want = (b.next_u32() >> 8) as f64 / 16_777_216.0;
        assert_eq!(f as f64, want);
        assert!((0.0..1.0).contains(&f));
    }
}

// ---------------------------------------------------------------------------------------
// Greedy
// ---------------------------------------------------------------------------------------

#[test]
fn greedy_ties_and_nan() {
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Ok(1));
    assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN, 5.0, f32::NAN]), Ok(3));
    assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY]), Ok(1));
    assert_eq!(argmax(&[0.0, -0.0]), Ok(0));
    assert_eq!(argmax(&[-0.0, 0.0]), Ok(0));
    assert_eq!(argmax(&[2.0, f32::INFINITY, f32::INFINITY]), Ok(1));
    assert_eq!(argmax(&[f32::NAN, f32::NAN]), Err(SampleError::AllNan));
    assert_eq!(argmax(&[]), Err(SampleError::EmptyLogits));
    let mut s = Sampler::new(Sampling::Greedy, 9).unwrap();
    let before = *s.rng();
    assert_eq!(s.sample(&[0.5, 7.0, 7.0], &mut []), Ok(1));
    assert_eq!(*s.rng(), before, "greedy draws nothing");
    assert_eq!(s.sample(&[f32::NAN], &mut []), Err(SampleError::AllNan));
}

// ---------------------------------------------------------------------------------------
// Temperature
// ---------------------------------------------------------------------------------------

fn softmax64(logits: &[f32], t: f64) -> Vec<f64> {
    let max = logits.iter().filter(|x| !x.is_nan()).fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let w: Vec<f64> = logits.iter().map(|&x| if x.is_nan() { 0.0 } else { ((x as f64 - max) / t).exp() }).collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|x| x / s).collect()
}

/// Empirical frequencies over `n` draws.
fn frequencies(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<f64> {
    let mut scratch = vec![0u32; logits.len()];
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..n {
        counts[s.sample(logits, &mut scratch).unwrap() as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Each frequency within 5 standard errors (plus a hair) of its probability; zero
/// probabilities never drawn.
fn assert_close(freq: &[f64], prob: &[f64], n: usize) {
    for (i, (&f, &p)) in freq.iter().zip(prob).enumerate() {
        if p == 0.0 {
            assert_eq!(f, 0.0, "token {i} has probability 0");
        } else {
            let tol = 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-4;
            assert!((f - p).abs() <= tol, "token {i}: frequency {f}, probability {p}, tolerance {tol}");
        }
    }
}

#[test]
fn temperature_frequencies_match_softmax() {
    let logits = [1.0, 2.0, 0.5, -1.0, f32::NAN, f32::NEG_INFINITY, 3.0, 2.0];
    for (t, seed) in [(1.0f32, 1u64), (0.8, 2), (2.5, 3)] {
        let n = 200_000;
        let mut s = Sampler::new(Sampling::Temperature { t }, seed).unwrap();
        let freq = frequencies(&mut s, &logits, n);
        assert_close(&freq, &softmax64(&logits, t as f64), n);
    }
}

#[test]
fn temperature_limits() {
    let logits = [0.0, 1.0, 2.0];
    let mut cold = Sampler::new(Sampling::Temperature { t: 1e-6 }, 5).unwrap();
    for _ in 0..1000 {
        assert_eq!(cold.sample(&logits, &mut []), Ok(2));
    }
    let n = 60_000;
    let mut hot = Sampler::new(Sampling::Temperature { t: 1e30 }, 5).unwrap();
    assert_close(&frequencies(&mut hot, &logits, n), &[1.0 / 3.0; 3], n);
    // +inf takes all the mass, shared; all -inf is uniform.
    let mut s = Sampler::new(Sampling::Temperature { t: 1.0 }, 6).unwrap();
    let inf = [1.0, f32::INFINITY, 2.0, f32::INFINITY];
    assert_close(&frequencies(&mut s, &inf, n), &[0.0, 0.5, 0.0, 0.5], n);
    let ninf = [f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY];
    assert_close(&frequencies(&mut s, &ninf, n), &[0.5, 0.0, 0.5], n);
}

#[test]
fn pick_is_inverse_cdf() {
    let logits = [f32::NAN, 0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0];
    let rule = Sampling::Temperature { t: 1.0 };
    let pick = |u: f32| rule.pick(&logits, &mut [], u).unwrap();
    assert_eq!(pick(0.0), 1);
    assert_eq!(pick(0.2499), 1);
    assert_eq!(pick(0.25), 2);
    assert_eq!(pick(0.5), 4);
    assert_eq!(pick(0.99999994), 5);
    assert_eq!(pick(1.0), 5, "clamped below 1");
    assert_eq!(pick(7.0), 5);
    assert_eq!(pick(-3.0), 1);
    assert_eq!(pick(f32::NAN), 1);
}

// ---------------------------------------------------------------------------------------
// Top-p
// ---------------------------------------------------------------------------------------

/// The nucleus computed in f64: ids by logit descending (ties by lower id), smallest
/// prefix with cumulative probability >= p.
fn nucleus64(logits: &[f32], t: f64, p: f64) -> Vec<usize> {
    let prob = softmax64(logits, t);
    let mut ids: Vec<usize> = (0..logits.len()).filter(|&i| !logits[i].is_nan()).collect();
    ids.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap().then(a.cmp(&b)));
    let mut cum = 0.0;
    for (k, &id) in ids.iter().enumerate() {
        cum += prob[id];
        if cum >= p {
            return ids[..=k].to_vec();
        }
    }
    ids
}

#[test]
fn top_p_keeps_exactly_the_nucleus() {
    let logits = [0.3, 2.0, f32::NAN, 1.2, -0.5, 2.0, 0.9, -3.0];
    let t = 1.0;
    let prob = softmax64(&logits, t);
    // p between cumulative boundaries (computed in f64), so the nucleus is unambiguous.
    for p in [0.1f64, 0.5, 0.7, 0.85, 0.95, 0.999] {
        let nucleus = nucleus64(&logits, t, p);
        let mass: f64 = nucleus.iter().map(|&i| prob[i]).sum();
        let want: Vec<f64> =
            (0..logits.len()).map(|i| if nucleus.contains(&i) { prob[i] / mass } else { 0.0 }).collect();
        let n = 100_000;
        let mut s = Sampler::new(Sampling::TopP { t: t as f32, p: p as f32 }, 11).unwrap();
        let freq = frequencies(&mut s, &logits, n);
        assert_close(&freq, &want, n);
        for &i in &nucleus {
            assert!(freq[i] > 0.0, "p {p}: nucleus member {i} never drawn");
        }
        // The ends of the draw range pick the first and last nucleus members.
        let rule = Sampling::TopP { t: t as f32, p: p as f32 };
        let mut scratch = [0u32; 8];
        assert_eq!(rule.pick(&logits, &mut scratch, 0.0).unwrap() as usize, nucleus[0]);
        assert_eq!(rule.pick(&logits, &mut scratch, 0.99999994).unwrap() as usize, *nucleus.last().unwrap());
    }
}

#[test]
fn top_p_small_is_argmax_and_ties_go_to_lower_id() {
    let logits = [2.0, 5.0, 5.0, 1.0, f32::NAN];
    let mut scratch = [0u32; 5];
    for p in [0.0f32, 1e-6, 0.4] {
        let mut s = Sampler::new(Sampling::TopP { t: 1.0, p }, 4).unwrap();
        for _ in 0..500 {
            assert_eq!(s.sample(&logits, &mut scratch), Ok(1), "p {p}");
        }
    }
    // Both tied tokens hold ~0.47 each: p = 0.6 keeps exactly {1, 2}.
    let mut s = Sampler::new(Sampling::TopP { t: 1.0, p: 0.6 }, 4).unwrap();
    let n = 20_000;
    assert_close(&frequencies(&mut s, &logits, n), &[0.0, 0.5, 0.5, 0.0, 0.0], n);
    // -0.0 and +0.0 are one logit value: the tie goes to the lower id.
    let mut s = Sampler::new(Sampling::TopP { t: 1.0, p: 0.0 }, 4).unwrap();
    assert_eq!(s.sample(&[-1.0, -0.0, 0.0], &mut scratch), Ok(1));
    assert_eq!(s.sample(&[-1.0, 0.0, -0.0], &mut scratch), Ok(1));
}

#[test]
fn top_p_one_is_temperature() {
    let logits = [1.0, -2.0, 0.5, 3.0, f32::NEG_INFINITY];
    let n = 100_000;
    let mut s = Sampler::new(Sampling::TopP { t: 1.3, p: 1.0 }, 8).unwrap();
    assert_close(&frequencies(&mut s, &logits, n), &softmax64(&logits, 1.3), n);
}

#[test]
fn top_p_scratch_too_small() {
    let mut s = Sampler::new(Sampling::TopP { t: 1.0, p: 0.9 }, 1).unwrap();
    let before = *s.rng();
    let mut scratch = [0u32; 2];
    assert_eq!(s.sample(&[1.0, 2.0, 3.0], &mut scratch), Err(SampleError::ScratchTooSmall { needed: 3, available: 2 }));
    assert_eq!(*s.rng(), before, "no draw on error");
    assert_eq!(
        Sampling::TopP { t: 1.0, p: 0.9 }.pick(&[1.0, 2.0, 3.0], &mut [], 0.5),
        Err(SampleError::ScratchTooSmall { needed: 3, available: 0 })
    );
}

// ---------------------------------------------------------------------------------------
// Parameters, determinism
// ---------------------------------------------------------------------------------------

#[test]
fn bad_parameters() {
    for t in [0.0f32, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(matches!(Sampler::new(Sampling::Temperature { t }, 0), Err(SampleError::BadTemperature { .. })));
        assert!(matches!(Sampler::new(Sampling::TopP { t, p: 0.5 }, 0), Err(SampleError::BadTemperature { .. })));
        assert!(matches!(
            Sampling::Temperature { t }.pick(&[1.0], &mut [], 0.5),
            Err(SampleError::BadTemperature { .. })
        ));
    }
    for p in [-0.1f32, 1.0001, f32::NAN, f32::INFINITY] {
        assert!(matches!(Sampler::new(Sampling::TopP { t: 1.0, p }, 0), Err(SampleError::BadTopP { .. })));
    }
    let mut s = Sampler::new(Sampling::Temperature { t: 1.0 }, 0).unwrap();
    assert_eq!(s.sample(&[], &mut []), Err(SampleError::EmptyLogits));
    assert_eq!(s.sample(&[f32::NAN; 3], &mut []), Err(SampleError::AllNan));
    for e in [
        SampleError::EmptyLogits,
        SampleError::TooManyLogits { len: usize::MAX },
        SampleError::AllNan,
        SampleError::BadTemperature { t: 0.0 },
        SampleError::BadTopP { p: 2.0 },
        SampleError::ScratchTooSmall { needed: 2, available: 1 },
    ] {
        assert!(!e.to_string().is_empty());
    }
}

fn test_logits(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (r.next_f32() - 0.5) * 8.0).collect()
}

#[test]
fn same_seed_same_sequence() {
    for cfg in [Sampling::Temperature { t: 0.9 }, Sampling::TopP { t: 0.7, p: 0.9 }] {
        let run = |seed| {
            let mut s = Sampler::new(cfg, seed).unwrap();
            let mut scratch = vec![0u32; 300];
            (0..200).map(|i| s.sample(&test_logits(i, 300), &mut scratch).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}

/// Recorded on x86-64; every target (Cortex-M, aarch64) must produce these exact tokens:
/// the arithmetic is fixed-order f32 with `libm::expf` and a u32 generator.
#[test]
fn golden_sequence() {
    let mut temp = Sampler::new(Sampling::Temperature { t: 0.9 }, 2024).unwrap();
    let mut top = Sampler::new(Sampling::TopP { t: 0.7, p: 0.9 }, 2024).unwrap();
    let mut scratch = vec![0u32; 300];
    let a: Vec<u32> = (0..12).map(|i| temp.sample(&test_logits(i, 300), &mut scratch).unwrap()).collect();
    let b: Vec<u32> = (0..12).map(|i| top.sample(&test_logits(i, 300), &mut scratch).unwrap()).collect();
    assert_eq!(a, GOLDEN_TEMPERATURE, "temperature");
    assert_eq!(b, GOLDEN_TOP_P, "top-p");
}

const GOLDEN_TEMPERATURE: [u32; 12] = [33, 85, 238, 7, 244, 220, 256, 19, 271, 277, 258, 175];
const GOLDEN_TOP_P: [u32; 12] = [33, 5, 148, 214, 80, 142, 159, 247, 129, 249, 8, 233];

proptest! {
    #[test]
    fn never_panics_and_never_picks_nan(
        logits in proptest::collection::vec(prop_oneof![
            any::<f32>(), Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY), -5.0f32..5.0
        ], 0..40),
        t in prop_oneof![Just(1.0f32), 1e-3f32..100.0, any::<f32>()],
        p in prop_oneof![0.0f32..=1.0, any::<f32>()],
        u in any::<f32>(),
    ) {
        let mut scratch = vec![0u32; logits.len()];
        for rule in [Sampling::Greedy, Sampling::Temperature { t }, Sampling::TopP { t, p }] {
            match rule.pick(&logits, &mut scratch, u) {
                Ok(id) => {
                    prop_assert!((id as usize) < logits.len());
                    prop_assert!(!logits[id as usize].is_nan());
                }
                Err(e) => prop_assert!(
                    logits.is_empty() || logits.iter().all(|x| x.is_nan()) || rule.validate().is_err(),
                    "unexpected {e:?}"
                ),
            }
        }
    }
}
