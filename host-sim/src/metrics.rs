//! What `eval` and `logits` compute over a row of logits besides the argmax (which is
//! `spark_core::sampler::argmax`): the log-softmax and the KL divergence.

/// `log softmax(v)` in f64.
pub fn log_softmax(v: &[f32]) -> Vec<f64> {
    let m = v.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = m + v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    v.iter().map(|&x| x as f64 - lse).collect()
}

/// `KL(p || q)` from log-probabilities.
pub fn kl(logp: &[f64], logq: &[f64]) -> f64 {
    logp.iter().zip(logq).map(|(&a, &b)| if a > -700.0 { a.exp() * (a - b) } else { 0.0 }).sum()
}
