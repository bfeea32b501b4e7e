//! Statistical top-k (SPEC section 6) on adversarial scores, at the FFN shape of the
//! Gemma-sized configs (n = 13824, k = 1106, capacity 2k = 2212) and at the edges of `n`
//! and `k`. Each test states the expected behaviour; all of them also check the
//! invariants that hold for every input: no panic, `len <= capacity`, indices strictly
//! ascending and in range, only finite scores kept, `t >= 0` (or `t = score` for the
//! identity), and a finite threshold whenever the scores are finite and `1 <= k < n`.

use spark_core::topk::{stat_topk, topk_capacity, topk_z, Selection, StatAccumulator};

// (a tenth of the size under Miri, which interprets every operation; same rules)
const N: usize = if cfg!(miri) { 1382 } else { 13824 };
const K: usize = if cfg!(miri) { 111 } else { 1106 };
/// Where the outlier tests put their outlier.
const OUT: usize = N * 9 / 16;

/// Runs stat_topk with the SPEC capacity (factor 2) and checks the invariants.
fn run(scores: &[f32], k: usize) -> (Selection, Vec<u32>, Vec<f32>) {
    let n = scores.len();
    let cap = topk_capacity(n, k, 2.0);
    let z = topk_z(n, k);
    let (mut idx, mut t) = (vec![u32::MAX; cap], vec![f32::NAN; cap]);
    let sel = stat_topk(scores, k, z, &mut idx, &mut t);
    assert!(sel.len <= cap, "len {} above capacity {cap}", sel.len);
    idx.truncate(sel.len);
    t.truncate(sel.len);
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "indices not strictly ascending");
    for (&i, &ti) in idx.iter().zip(&t) {
        let x = scores[i as usize];
        assert!(x.is_finite(), "non-finite score {x} selected at {i}");
        if sel.identity {
            assert_eq!(ti.to_bits(), x.to_bits());
        } else {
            assert!(ti >= 0.0 && ti.is_finite(), "t = {ti}");
        }
    }
    let all_finite = scores.iter().all(|x| x.is_finite());
    if all_finite && k >= 1 && k < n {
        assert!(sel.theta.is_finite(), "finite scores gave theta = {}", sel.theta);
    }
    (sel, idx, t)
}

/// A deterministic stream of uniform (0, 1) values.
fn uniforms(seed: u64) -> impl Iterator<Item = f64> {
    let mut s = seed;
    std::iter::from_fn(move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Some(((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64)
    })
}

#[test]
fn all_equal_scores_keep_exactly_one_entry() {
    // sigma = 0 so theta = mean and nothing is strictly above it: the underflow rule
    // keeps the single largest entry, lowest index on ties, i.e. index 0 with t = 0.
    for v in [0.0f32, 1.5, -3.0, 1e30, -1e-30] {
        let (sel, idx, t) = run(&vec![v; N], K);
        assert!(sel.underflow && !sel.overflow && !sel.identity, "{v}: {sel:?}");
        assert_eq!((idx, t), (vec![0], vec![0.0]));
        assert_eq!(sel.theta, v);
    }
}

#[test]
fn one_huge_outlier_gives_a_finite_threshold_and_keeps_it() {
    // Zero scores plus one value from 1e10 to f32::MAX at index OUT: the statistics
    // switch to the scaled mode (no overflow), theta is finite and lies between 0 and the
    // outlier, so exactly the outlier passes.
    for big in [1e10f32, 1e19, 2e19, 1e30, 3e38, f32::MAX, -f32::MAX] {
        let mut s = vec![0.0f32; N];
        s[OUT] = big;
        let (sel, idx, _) = run(&s, K);
        assert!(sel.theta.is_finite(), "{big}: theta {}", sel.theta);
        if big > 0.0 {
            assert_eq!(idx, vec![OUT as u32], "{big}: {sel:?}");
            assert!(!sel.underflow && !sel.overflow);
        } else {
            // A huge negative outlier: sigma ~ |big| / sqrt(n) dominates the mean
            // (~ big / n), so theta = mean + 1.405 sigma > 0 and no zero passes: the
            // underflow rule keeps the largest entry, the first zero (index 0), t = 0.
            assert!(sel.theta > 0.0, "{big}: {sel:?}");
            assert!(sel.underflow && idx == vec![0], "{big}: {sel:?}");
        }
    }
}

#[test]
fn outliers_of_both_signs_at_the_float_limit() {
    // +MAX and -MAX together (the difference overflows f32): still finite statistics.
    let mut s: Vec<f32> = uniforms(3).take(N).map(|u| u as f32).collect();
    s[0] = -f32::MAX;
    s[1] = f32::MAX;
    s[2] = f32::MAX;
    let (sel, idx, _) = run(&s, K);
    assert!(sel.theta.is_finite());
    assert!(idx.contains(&1) && idx.contains(&2) && !idx.contains(&0), "{sel:?} {idx:?}");
}

#[test]
fn bimodal_scores_select_the_upper_mode_within_capacity() {
    // 90% at 0 and 10% at 10 (plus tiny jitter): mean 1, sigma 3, z = 1.405, theta = 5.2.
    // The whole upper mode (1382 entries) passes: more than k, below the capacity 2212.
    let s: Vec<f32> = uniforms(11)
        .take(N)
        .enumerate()
        .map(|(i, u)| if i % 10 == 3 { 10.0 + (u as f32) * 1e-3 } else { (u as f32) * 1e-3 })
        .collect();
    let (sel, idx, _) = run(&s, K);
    let upper = (0..N).filter(|i| i % 10 == 3).count();
    assert_eq!(sel.len, upper, "{sel:?}");
    assert!(idx.iter().all(|&i| i % 10 == 3));
    assert!(!sel.overflow && !sel.underflow);
    assert!(sel.theta > 1.0 && sel.theta < 10.0);
}

#[test]
fn cauchy_scores_overflow_the_capacity_or_stay_near_k() {
    // Heavy tails inflate sigma: the count is not k (SPEC: exactness is not promised) but
    // stays bounded by the capacity, and the kept entries are the largest scores.
    for seed in 0..4 {
        let s: Vec<f32> =
            uniforms(100 + seed).take(N).map(|u| (std::f64::consts::PI * (u - 0.5)).tan() as f32).collect();
        let (sel, idx, _) = run(&s, K);
        assert!(sel.len >= 1 && sel.len <= topk_capacity(N, K, 2.0));
        let min_kept = idx.iter().map(|&i| s[i as usize]).fold(f32::INFINITY, f32::min);
        let above = s.iter().filter(|&&x| x > min_kept).count();
        assert!(above < sel.len, "a kept entry is not among the largest");
        assert!(sel.len < K, "Cauchy: sigma is dominated by the tails, fewer than k pass: {}", sel.len);
    }
}

#[test]
fn nan_and_infinities_are_skipped_never_selected() {
    // Non-finite scores take no part in the statistics and are never selected; the finite
    // ones behave as they would alone.
    let base: Vec<f32> = uniforms(5).take(N).map(|u| u as f32).collect();
    let (alone, idx_alone, _) = run(&base, K);
    let mut s = base.clone();
    for (j, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY].iter().enumerate() {
        for i in (j..N).step_by(97) {
            s[i] = *v;
        }
    }
    let (sel, idx, _) = run(&s, K);
    assert!(sel.theta.is_finite());
    assert!(idx.iter().all(|&i| s[i as usize].is_finite()));
    assert!(sel.len > 0 && sel.len <= topk_capacity(N, K, 2.0));
    assert!(alone.len > 0 && !idx_alone.is_empty());
    // All scores non-finite: nothing at all is kept and no flag is set.
    let (sel, idx, _) = run(&vec![f32::NAN; N], K);
    assert_eq!((sel.len, sel.underflow, idx.len()), (0, false, 0));
    let (sel, _, _) = run(&vec![f32::INFINITY; 64], 3);
    assert_eq!(sel.len, 0);
}

#[test]
fn denormal_scores() {
    // Subnormal magnitudes: the statistics are exact enough that the larger half of a
    // two-valued subnormal vector is selected (capacity permitting), never a panic.
    let tiny = f32::from_bits(1); // 1.4e-45
    let s: Vec<f32> = (0..N).map(|i| if i % 2 == 0 { tiny } else { 4.0 * tiny }).collect();
    let (sel, idx, _) = run(&s, K);
    assert!(sel.len >= 1);
    assert!(idx.iter().all(|&i| i % 2 == 1), "{sel:?}");
    let (sel, _, _) = run(&vec![tiny; N], K);
    assert!(sel.underflow && sel.len == 1);
}

#[test]
fn n_equals_one_and_k_at_the_edges() {
    // n = 1, k = 1: k >= n, the identity keeps the one entry unshifted.
    let (sel, idx, t) = run(&[2.5], 1);
    assert!(sel.identity && idx == vec![0] && t == vec![2.5]);
    // k >= n: the identity, capacity n.
    let s: Vec<f32> = uniforms(9).take(100).map(|u| u as f32).collect();
    for k in [100, 101, usize::MAX] {
        let (sel, idx, _) = run(&s, k);
        assert!(sel.identity && sel.len == 100 && idx.len() == 100);
    }
    // k = 0: z = +inf, so theta = +inf and nothing passes; the underflow rule keeps the
    // single largest entry (the capacity is clamped to at least 1).
    assert_eq!(topk_z(100, 0), f32::INFINITY);
    assert_eq!(topk_capacity(100, 0, 2.0), 1);
    let (sel, idx, _) = run(&s, 0);
    let best = (0..100).max_by(|&a, &b| s[a].partial_cmp(&s[b]).unwrap().then(b.cmp(&a))).unwrap();
    assert!(sel.underflow && idx == vec![best as u32], "{sel:?}");
    // Empty input: nothing, no flag.
    let (sel, _, _) = run(&[], 1);
    assert_eq!(sel.len, 0);
}

#[test]
fn statistics_never_overflow_for_finite_input() {
    // Every finite input gives finite mean and std, whatever the magnitudes or the order.
    let cases: Vec<Vec<f32>> = vec![
        vec![f32::MAX, -f32::MAX],
        vec![-f32::MAX, f32::MAX, 0.0, 1.0],
        vec![1.0, 1e20, 1e-20, -1e20],
        (0..5000).map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX }).collect(),
        (0..5000).map(|i| (i as f32 - 2500.0) * 1e35).collect(),
    ];
    for c in &cases {
        let mut a = StatAccumulator::new();
        a.push_slice(c);
        let st = a.finish();
        assert!(st.mean.is_finite() && st.std.is_finite() && st.std >= 0.0, "{st:?}");
        // push one by one == push_slice, bit for bit, in the scaled mode too
        let mut b = StatAccumulator::new();
        for &x in c {
            b.push(x);
        }
        let sb = b.finish();
        assert_eq!((st.mean.to_bits(), st.std.to_bits()), (sb.mean.to_bits(), sb.std.to_bits()));
    }
    // {-MAX, +MAX}: mean 0 (up to rounding in the scaled units), std = MAX.
    let mut a = StatAccumulator::new();
    a.push_slice(&[f32::MAX, -f32::MAX]);
    let st = a.finish();
    assert!(st.mean.abs() <= f32::MAX * 1e-6, "{st:?}");
    assert!(st.std >= f32::MAX * 0.999, "{st:?}");
}

#[test]
fn scaled_mode_is_chunking_independent() {
    // Scores that enter the scaled mode halfway: any chunking gives the same bits.
    let mut s: Vec<f32> = uniforms(21).take(3000).map(|u| (u as f32 - 0.5) * 100.0).collect();
    s[1234] = 5e25;
    s[2999] = -7e30;
    let whole = {
        let mut a = StatAccumulator::new();
        a.push_slice(&s);
        a.finish()
    };
    for chunk in [1, 3, 7, 8, 9, 64, 255, 256, 1000] {
        let mut a = StatAccumulator::new();
        for c in s.chunks(chunk) {
            a.push_slice(c);
        }
        let st = a.finish();
        assert_eq!((st.mean.to_bits(), st.std.to_bits()), (whole.mean.to_bits(), whole.std.to_bits()), "chunk {chunk}");
    }
    assert!(whole.mean.is_finite() && whole.std.is_finite());
}
