//! What several test files share (each includes it with `mod common;`).

use spark_core::digest::Fnv1a64;
use spark_core::exec::Executor;
use spark_core::sampler::argmax;
use spark_core::{Model, Session};
use spark_hal::Kernels;

/// Greedy decode of `n` tokens after `prompt` on backend `K` and executor `e`: the tokens
/// and the digest of every step's logits (prompt steps included), as
/// `models/expected_int8.json` records them. The arena holds one attention head slot per
/// thread of `e` (`Model::arena_bytes_threads`), so heads run at once where they split.
pub fn greedy_digest<K: Kernels, E: Executor>(model: &Model<'_>, e: E, prompt: &[u32], n: usize) -> (Vec<u32>, String) {
    let slots = e.threads();
    greedy_digest_slots::<K, E>(model, e, slots, prompt, n)
}

/// [`greedy_digest`] with an arena of `slots` attention head slots (1: heads one at a
/// time, their products split for `e`).
#[allow(dead_code)] // (not every test file that includes this module uses it)
pub fn greedy_digest_slots<K: Kernels, E: Executor>(
    model: &Model<'_>,
    e: E,
    slots: usize,
    prompt: &[u32],
    n: usize,
) -> (Vec<u32>, String) {
    let max_seq = model.config().max_seq_len as usize;
    let mut arena = vec![0u8; model.arena_bytes_threads(max_seq, slots)];
    let mut s = Session::<K, E>::with_executor(model, &mut arena, max_seq, e).unwrap();
    let mut digest = Fnv1a64::new();
    let mut logits = Vec::new();
    for &t in prompt {
        logits = s.step(t).unwrap().to_vec();
        digest.update_f32(&logits);
    }
    let mut out = Vec::new();
    for i in 0..n {
        let next = argmax(&logits).expect("finite logits");
        out.push(next);
        if i + 1 < n {
            logits = s.step(next).unwrap().to_vec();
            digest.update_f32(&logits);
        }
    }
    (out, digest.to_string())
}
