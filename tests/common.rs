//! What several test files share (each includes it with `mod common;`).

use spark_core::digest::Fnv1a64;
use spark_core::exec::Executor;
use spark_core::sampler::argmax;
use spark_core::{Model, Session};
use spark_hal::Kernels;

/// Greedy decode of `n` tokens after `prompt` on backend `K` and executor `e`: the tokens
/// and the digest of every step's logits (prompt steps included), as
/// `models/expected_int8.json` records them.
pub fn greedy_digest<K: Kernels, E: Executor>(model: &Model<'_>, e: E, prompt: &[u32], n: usize) -> (Vec<u32>, String) {
    let max_seq = model.config().max_seq_len as usize;
    let mut arena = vec![0u8; model.arena_bytes(max_seq)];
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
