//! Statistical top-k vs exact top-k at the `gemma2-2b` FFN shape (n = 13824, k = 1106),
//! single thread, on seeded i.i.d. Gaussian scores (SPEC sections 6 and 11).
//!
//! Variants (each writes ascending indices and aligned soft-threshold values):
//! - `stat_topk`: copy the scores into a scratch buffer, then [`stat_topk`] (streaming
//!   stats + threshold + selection) into a 2k buffer.
//! - `exact`: copy the scores into a scratch buffer (needed: `select_nth_unstable_by`
//!   permutes), `select_nth_unstable_by` for the k-th largest value, then one pass over
//!   the original scores to gather the exact top k in index order (ties: lower index).
//! - `stat_topk_nocopy` and `copy_only`, for reference.
//!
//! The headline ratio compares `exact` with `stat_topk`; both include the same copy.
//! Run: `cargo bench -p spark-core --bench stat_topk`. After the criterion groups, a
//! plain interleaved timing loop prints per-variant medians and the ratios.

use criterion::Criterion;
use spark_core::topk::{stat_topk, topk_capacity, topk_z};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 13824;
const K: usize = 1106;

/// SplitMix64 + Box-Muller (f64), the same generator as the tests.
fn gaussian_scores(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / 9_007_199_254_740_992.0
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next(), next());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

struct Bufs {
    scratch: Vec<f32>,
    idx: Vec<u32>,
    t: Vec<f32>,
}

impl Bufs {
    fn new(cap: usize) -> Self {
        Bufs { scratch: vec![0.0; N], idx: vec![0; cap], t: vec![0.0; cap] }
    }
}

fn run_stat(scores: &[f32], z: f32, b: &mut Bufs) -> usize {
    b.scratch.copy_from_slice(scores);
    stat_topk(&b.scratch, K, z, &mut b.idx, &mut b.t).len
}

fn run_stat_nocopy(scores: &[f32], z: f32, b: &mut Bufs) -> usize {
    stat_topk(scores, K, z, &mut b.idx, &mut b.t).len
}

fn run_exact(scores: &[f32], b: &mut Bufs) -> usize {
    b.scratch.copy_from_slice(scores);
    let (_, kth, _) = b.scratch.select_nth_unstable_by(K - 1, |a, c| c.total_cmp(a));
    let kth = *kth;
    let greater = b.scratch[..K - 1].iter().filter(|&&v| v > kth).count();
    let mut ties = K - greater;
    let mut len = 0;
    for (i, &s) in scores.iter().enumerate() {
        let take = s > kth || (s == kth && ties > 0);
        if take {
            if s == kth {
                ties -= 1;
            }
            b.idx[len] = i as u32;
            b.t[len] = s - kth;
            len += 1;
        }
    }
    len
}

fn run_copy(scores: &[f32], b: &mut Bufs) -> usize {
    b.scratch.copy_from_slice(scores);
    b.scratch.len()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let scores = gaussian_scores(42, N);
    let z = topk_z(N, K);
    let cap = topk_capacity(N, K, 2.0);
    let mut b = Bufs::new(cap);

    // Sanity: the exact variant selects exactly k; the statistical one about k.
    let exact_len = run_exact(&scores, &mut b);
    let stat_len = run_stat(&scores, z, &mut b);
    assert_eq!(exact_len, K);
    println!("n = {N}, k = {K}, z = {z}, cap = {cap}: stat_topk selected {stat_len}, exact {exact_len}");

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("stat_topk_n13824_k1106");
        g.bench_function("stat_topk", |bch| bch.iter(|| run_stat(black_box(&scores), black_box(z), &mut b)));
        g.bench_function("exact_select_nth", |bch| bch.iter(|| run_exact(black_box(&scores), &mut b)));
        g.bench_function("stat_topk_nocopy", |bch| {
            bch.iter(|| run_stat_nocopy(black_box(&scores), black_box(z), &mut b))
        });
        g.bench_function("copy_only", |bch| bch.iter(|| run_copy(black_box(&scores), &mut b)));
        g.finish();
    }
    c.final_summary();

    // Plain timing: 101 interleaved rounds of 200 calls per variant; medians per call.
    const ROUNDS: usize = 101;
    const ITERS: usize = 200;
    let mut times = [[0f64; ROUNDS]; 4];
    for r in 0..ROUNDS {
        for (v, slot) in times.iter_mut().enumerate() {
            let t0 = Instant::now();
            for _ in 0..ITERS {
                let out = match v {
                    0 => run_stat(black_box(&scores), black_box(z), &mut b),
                    1 => run_exact(black_box(&scores), &mut b),
                    2 => run_stat_nocopy(black_box(&scores), black_box(z), &mut b),
                    _ => run_copy(black_box(&scores), &mut b),
                };
                black_box(out);
            }
            slot[r] = t0.elapsed().as_secs_f64() * 1e6 / ITERS as f64;
        }
    }
    let [mut ts, mut te, mut tn, mut tc] = times;
    let (ms, me, mn, mc) = (median(&mut ts), median(&mut te), median(&mut tn), median(&mut tc));
    println!("plain timing, median of {ROUNDS} rounds x {ITERS} calls, single thread:");
    println!("  stat_topk (copy + stats + select) {ms:9.2} us");
    println!("  exact (copy + select_nth + gather) {me:9.2} us");
    println!("  stat_topk without the copy        {mn:9.2} us");
    println!("  copy alone                        {mc:9.2} us");
    println!("  ratio exact / stat_topk (both with copy): {:.2}x", me / ms);
    println!("  ratio exact / stat_topk without copy:     {:.2}x", me / mn);
}
