//! Decoding with 1, 2, 3 and 4 threads gives bit-identical results: the bundled model's
//! greedy continuations and logits digests equal `models/expected_int8.json` (written by
//! the single-threaded scalar runtime) for every thread count, and every golden model of
//! `tests/golden/` gives the same token ids and digests with every thread count as with
//! the sequential executor. The multi-threaded runs use `Grain::FINEST` (every product
//! split into one-row chunks and the narrowest column ranges, so even these small models
//! exercise every split path) and the default grain (the thresholds the CLI uses), with
//! arenas of one attention head slot per thread (heads run at once) and, with 2 threads
//! at the finest grain, of one slot (heads one at a time, their products split).
//!
//! `test.sh` runs this file natively and on aarch64 under `qemu-aarch64` (user-mode QEMU
//! runs the threads).

use spark_core::exec::{Executor, Grain};
use spark_core::tokenizer::Tokenizer;
use spark_core::Model;
use spark_hal::Native;
use spark_sim::checkpoint::{to_writer, F32Checkpoint};
use spark_sim::threads::Pool;
use std::path::PathBuf;

mod common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array of ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// Greedy decode of `n` tokens after `prompt` with `pool` (on one of its threads, as the
/// CLI runs) and an arena of `slots` attention head slots.
fn greedy_on(model: &Model<'_>, pool: &Pool, slots: usize, prompt: &[u32], n: usize) -> (Vec<u32>, String) {
    pool.run(|| common::greedy_digest_slots::<Native, _>(model, pool, slots, prompt, n))
}

/// Greedy decode on the native backend and executor `e` (tokens, digest of every step).
fn greedy<E: Executor>(model: &Model<'_>, e: E, prompt: &[u32], n: usize) -> (Vec<u32>, String) {
    common::greedy_digest::<Native, E>(model, e, prompt, n)
}

/// The pools every test compares, with the head slots of their arenas: 2 threads at the
/// finest grain with one slot, 2, 3 and 4 threads at the finest grain with one slot per
/// thread, and 2 threads at the default grain (which splits only the bundled model's
/// logits here).
fn pools() -> Vec<(String, Pool, usize)> {
    let finest = |t| Pool::new(Some(t)).unwrap().with_grain(Grain::FINEST);
    let mut v = vec![("2 threads, finest grain, heads one at a time".to_string(), finest(2), 1)];
    for t in 2..=4 {
        v.push((format!("{t} threads, finest grain, {t} heads at once"), finest(t), t));
    }
    v.push(("2 threads".to_string(), Pool::new(Some(2)).unwrap(), 2));
    v
}

#[test]
fn bundled_model_is_the_committed_output_with_1_to_4_threads() {
    let blob = std::fs::read(root().join("models/demo.spark")).expect("models/demo.spark");
    let model = Model::load(&blob).expect("bundled model loads");
    let tok = Tokenizer::new(&model).expect("tokenizer");
    let text = std::fs::read_to_string(root().join("models/expected_int8.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pools = pools();
    for p in expected["prompts"].as_array().unwrap() {
        let prompt_text = p["prompt"].as_str().unwrap();
        let mut buf = vec![0u32; prompt_text.len() + 1];
        let n = tok.encode_with_bos(prompt_text.as_bytes(), &mut buf).unwrap();
        let want = (ids(&p["generated_ids"]), p["logits_digest"].as_str().unwrap().to_string());
        let one = greedy(&model, Pool::single(), &buf[..n], want.0.len());
        assert_eq!(one, want, "{prompt_text}: 1 thread differs from models/expected_int8.json");
        for (name, pool, slots) in &pools {
            let got = greedy_on(&model, pool, *slots, &buf[..n], want.0.len());
            assert_eq!(got, want, "{prompt_text}: {name} differs from models/expected_int8.json");
        }
        println!("{prompt_text:<24} 1-4 threads: {} tokens, digest {}", want.0.len(), want.1);
    }
}

#[test]
fn golden_models_decode_identically_with_1_to_4_threads() {
    let dir = root().join("tests/golden");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let pools = pools();
    for name in manifest["models"].as_object().unwrap().keys() {
        let ck = F32Checkpoint::load(&dir.join(format!("{name}.safetensors"))).expect("golden checkpoint");
        let blob = to_writer(&ck).expect("converts").0.finish();
        let model = Model::load(&blob).expect("loads");
        let max_seq = model.config().max_seq_len as usize;
        let prompt: Vec<u32> = (0..8).map(|i| (i * 7 + 1) % model.config().vocab_size).collect();
        // Past the window (64) and the attention budgets (12-32) of every golden model.
        let n = (max_seq - prompt.len()).min(72);
        let want = greedy(&model, spark_core::Sequential, &prompt, n);
        assert_eq!(greedy(&model, Pool::single(), &prompt, n), want, "{name}: 1 thread");
        for (pname, pool, slots) in &pools {
            assert_eq!(greedy_on(&model, pool, *slots, &prompt, n), want, "{name}: {pname} differs from sequential");
        }
        println!("{name:<20} 1-4 threads: {n} tokens, digest {}", want.1);
    }
}
