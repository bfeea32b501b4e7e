//! Soak and state: the bundled model run to `max_seq_len` again and again (greedy and
//! sampled), the typed context-full error after the last position, `reset`, and every
//! round's token ids and logits digest identical to the first; two sessions over two
//! arenas interleaved token by token give what each gives alone (no shared state).
//! Limits: zero-length and over-long blobs, and headers whose sizes would overflow
//! 32-bit `usize` arithmetic.
//!
//! Rounds: `SPARK_SOAK_ROUNDS` (default 200 in release builds, 6 in debug builds, where
//! one round of 128 steps takes about a second); figures in docs/RELIABILITY.md.

use spark_core::digest::Fnv1a64;
use spark_core::sampler::{argmax, Sampler, Sampling};
use spark_core::{Model, ModelError, RunError, Session};
use spark_hal::Native;
use std::path::PathBuf;
use std::time::Instant;

fn demo() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/demo.spark")).unwrap()
}

fn digest(l: &[f32]) -> String {
    let mut d = Fnv1a64::new();
    d.update_f32(l);
    d.to_string()
}

fn rounds() -> usize {
    let default = if cfg!(debug_assertions) { 6 } else { 200 };
    std::env::var("SPARK_SOAK_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One round from position 0 to max_seq: the prompt, then generated tokens; returns the
/// ids and the digest of every logits vector.
fn round(
    s: &mut Session<'_, '_, Native>,
    sampling: Option<Sampling>,
    seed: u64,
    scratch: &mut [u32],
) -> (Vec<u32>, String) {
    let max = s.max_seq();
    let mut sampler = sampling.map(|c| Sampler::new(c, seed).unwrap());
    let mut d = Fnv1a64::new();
    let mut ids = vec![1022u32, 72, 101];
    let mut logits = s.prefill(&ids).unwrap().to_vec();
    d.update_f32(&logits);
    while s.pos() < max {
        let next = match &mut sampler {
            Some(sm) => sm.sample(&logits, scratch).unwrap(),
            None => argmax(&logits).unwrap(),
        };
        ids.push(next);
        logits = s.step(next).unwrap().to_vec();
        d.update_f32(&logits);
    }
    // Full: the typed error, and the session is unchanged by it.
    match s.step(0) {
        Err(RunError::ContextFull { .. }) => {}
        other => panic!("step at max_seq: {:?}", other.map(|l| l.len())),
    }
    assert!(matches!(s.prefill(&[0]), Err(RunError::ContextFull { .. })));
    assert_eq!(s.pos(), max);
    (ids, d.to_string())
}

#[test]
fn soak_to_max_seq_len_reset_repeat() {
    let blob = demo();
    let model = Model::load(&blob).unwrap();
    let max = model.config().max_seq_len as usize;
    let mut arena = vec![0u8; model.arena_bytes(max)];
    let mut s = Session::<Native>::new(&model, &mut arena).unwrap();
    let mut scratch = vec![0u32; model.config().vocab_size as usize];
    let sampled = Sampling::TopP { t: 0.8, p: 0.9 };
    let n = rounds();
    let t0 = Instant::now();
    let first_greedy = round(&mut s, None, 0, &mut scratch);
    s.reset();
    let first_sampled = round(&mut s, Some(sampled), 5, &mut scratch);
    for r in 1..n {
        s.reset();
        assert_eq!(s.pos(), 0);
        assert_eq!(round(&mut s, None, 0, &mut scratch), first_greedy, "greedy round {r}");
        s.reset();
        assert_eq!(round(&mut s, Some(sampled), 5, &mut scratch), first_sampled, "sampled round {r}");
    }
    let secs = t0.elapsed().as_secs_f64();
    let steps = 2 * n * max;
    eprintln!(
        "soak: {n} rounds x (greedy + sampled) x {max} positions = {steps} tokens in {secs:.1} s \
         ({:.0} tokens/s); greedy digest {}, sampled digest {}; every round identical",
        steps as f64 / secs,
        first_greedy.1,
        first_sampled.1
    );
    // The statistics count every token of every round (nothing lost across resets).
    for st in s.stats() {
        assert!(st.tokens as usize >= max);
    }
}

#[test]
fn interleaved_sessions_equal_each_alone() {
    let blob = demo();
    let model = Model::load(&blob).unwrap();
    let max = model.config().max_seq_len as usize;
    let vocab = model.config().vocab_size;
    let run_alone = |first: u32| {
        let mut arena = vec![0u8; model.arena_bytes(max)];
        let mut s = Session::<Native>::new(&model, &mut arena).unwrap();
        let mut out = Vec::new();
        let mut t = first;
        for _ in 0..max {
            let l = s.step(t).unwrap();
            t = argmax(l).unwrap();
            out.push((t, digest(l)));
        }
        out
    };
    let (a_alone, b_alone) = (run_alone(5), run_alone(vocab - 7));
    let mut arena_a = vec![0u8; model.arena_bytes(max)];
    let mut arena_b = vec![0u8; model.arena_bytes(max)];
    let mut sa = Session::<Native>::new(&model, &mut arena_a).unwrap();
    let mut sb = Session::<Native>::new(&model, &mut arena_b).unwrap();
    let (mut ta, mut tb) = (5u32, vocab - 7);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..max {
        let l = sa.step(ta).unwrap();
        ta = argmax(l).unwrap();
        a.push((ta, digest(l)));
        let l = sb.step(tb).unwrap();
        tb = argmax(l).unwrap();
        b.push((tb, digest(l)));
    }
    assert_eq!(a, a_alone);
    assert_eq!(b, b_alone);
}

#[test]
fn zero_length_and_over_long_blobs() {
    assert!(matches!(Model::load(&[]), Err(ModelError::Truncated { needed: 16, available: 0, .. })));
    let mut blob = demo();
    let len = blob.len() as u64;
    blob.push(0);
    assert_eq!(Model::load(&blob).unwrap_err(), ModelError::TrailingBytes { expected: len, found: len + 1 });
    blob.extend(std::iter::repeat_n(0u8, 4096));
    assert!(matches!(Model::load(&blob), Err(ModelError::TrailingBytes { .. })));
    blob.truncate(len as usize - 1);
    assert!(matches!(Model::load(&blob), Err(ModelError::Truncated { what: "data section", .. })));
}

#[test]
fn sizes_beyond_32_bit_arithmetic_are_refused_by_the_config_rules() {
    // Every config that passes validation keeps the session estimate (an upper bound on
    // every arena and offset computation) within isize::MAX of the target; on a 32-bit
    // target that is 2^31 - 1. These configs' sizes overflow u32 and must be refused
    // there (checked here through the estimate, which is what validate compares).
    use spark_sim::testmodel::small_spark_config;
    let big = spark_core::Config {
        vocab_size: 1 << 20,
        d_model: 65536,
        n_layers: 48,
        n_heads: 64,
        n_kv_heads: 64,
        head_dim: 1024,
        d_ff: 65536,
        ffn_r: 64,
        ffn_k: 1024,
        max_seq_len: 1 << 16,
        ..small_spark_config()
    };
    let est = big.session_bytes_estimate();
    assert!(est > u32::MAX as u64, "the test config must exceed 32 bits: {est}");
    // On this 64-bit host it fits isize, so the check is the one a 32-bit target makes:
    assert!(est > i32::MAX as u64);
    // Tensor sizes: the largest matrix (vocab x d) would be 2^36 bytes; the loader
    // computes lengths in u64 and compares with the u32 `len` field, so the file cannot
    // even declare it (TensorLength), and offsets + lengths are summed in u64.
    let bytes = big.vocab_size as u64 * big.d_model as u64;
    assert!(bytes > u32::MAX as u64);
}
