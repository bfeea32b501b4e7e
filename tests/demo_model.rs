//! The bundled demo model (`models/`): it is the conversion of the committed checkpoint,
//! its f32 oracle reproduces the training framework's greedy continuations
//! (`models/expected_f32.json`, written by PyTorch), and the int8 runtime reproduces the
//! committed int8 continuations and logits digests exactly on every backend compiled here
//! (`models/expected_int8.json`, written by `spark-sim generate --backend scalar`).

use spark_core::sampler::argmax;
use spark_core::tokenizer::Tokenizer;
use spark_core::Model;
use spark_hal::{Kernels, Native, Scalar};
use spark_sim::checkpoint::{to_writer, F32Checkpoint};
use spark_sim::cli::load_tokenizer_json;
use spark_sim::oracle::OracleSession;
use std::path::PathBuf;

mod common;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn read_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(models_dir().join(name)).unwrap_or_else(|e| panic!("models/{name}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array of ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

#[test]
fn bundled_spark_file_is_the_conversion_of_the_checkpoint() {
    let ck = F32Checkpoint::load(&models_dir().join("demo_spark.safetensors")).expect("checkpoint");
    let (mut w, _) = to_writer(&ck).expect("converts");
    let bpe = load_tokenizer_json(&models_dir().join("tokenizer.json"), Some(ck.config.vocab_size)).expect("tokenizer");
    bpe.write_into(&mut w);
    let blob = std::fs::read(models_dir().join("demo.spark")).expect("models/demo.spark");
    assert!(blob.len() <= 3 * 1024 * 1024, "demo.spark must stay under 3 MB, is {}", blob.len());
    assert!(w.finish() == blob, "models/demo.spark differs from converting demo_spark.safetensors + tokenizer.json");
}

#[test]
fn f32_oracle_reproduces_training_framework_greedy_continuations() {
    let ck = F32Checkpoint::load(&models_dir().join("demo_spark.safetensors")).expect("checkpoint");
    let expected = read_json("expected_f32.json");
    for p in expected["prompts"].as_array().unwrap() {
        let prompt = ids(&p["prompt_ids"]);
        let want = ids(&p["generated_ids"]);
        let mut o = OracleSession::new(&ck).unwrap();
        let mut logits = Vec::new();
        for &t in &prompt {
            logits = o.step(t).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let next = argmax(&logits).expect("finite logits");
            got.push(next);
            logits = o.step(next).unwrap();
        }
        let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        println!("{:<24} f32 oracle agrees with PyTorch for {agree}/{} tokens", p["prompt"], want.len());
        assert!(agree >= 16, "{}: only {agree} tokens agree with the training framework", p["prompt"]);
    }
}

/// The version 1 layout of the demo model (separate `ffn.k2` and `ffn.v`, still read)
/// gives the committed tokens and digests too: the bundled records change the layout only.
#[test]
fn version_1_conversion_gives_the_committed_output() {
    let ck = F32Checkpoint::load(&models_dir().join("demo_spark.safetensors")).expect("checkpoint");
    let (mut w, _) = to_writer(&ck).expect("converts");
    w.version = 1;
    let blob = w.finish();
    let model = Model::load(&blob).expect("version 1 loads");
    assert_eq!(model.version(), 1);
    let expected = read_json("expected_int8.json");
    for p in expected["prompts"].as_array().unwrap() {
        let want = ids(&p["generated_ids"]);
        let (got, digest) = run_int8::<Native>(&model, &ids(&p["prompt_ids"]), want.len());
        assert_eq!((got, digest.as_str()), (want, p["logits_digest"].as_str().unwrap()), "{}", p["prompt"]);
    }
}

fn run_int8<K: Kernels>(model: &Model<'_>, prompt: &[u32], n: usize) -> (Vec<u32>, String) {
    common::greedy_digest::<K, _>(model, spark_core::Sequential, prompt, n)
}

#[test]
fn bundled_int8_output_is_exactly_the_committed_one_on_every_backend() {
    let blob = std::fs::read(models_dir().join("demo.spark")).expect("models/demo.spark");
    let model = Model::load(&blob).expect("bundled model loads");
    let tok = Tokenizer::new(&model).expect("bundled model has a tokenizer");
    let expected = read_json("expected_int8.json");
    for p in expected["prompts"].as_array().unwrap() {
        let text = p["prompt"].as_str().unwrap();
        let mut buf = vec![0u32; text.len() + 1];
        let n = tok.encode_with_bos(text.as_bytes(), &mut buf).unwrap();
        assert_eq!(buf[..n], ids(&p["prompt_ids"])[..], "{text}: tokenizer");
        let want = ids(&p["generated_ids"]);
        let (got, digest) = run_int8::<Scalar>(&model, &buf[..n], want.len());
        assert_eq!(got, want, "{text}: scalar backend tokens");
        assert_eq!(digest, p["logits_digest"].as_str().unwrap(), "{text}: scalar backend logits digest");
        let (got_n, digest_n) = run_int8::<Native>(&model, &buf[..n], want.len());
        assert_eq!((got_n, digest_n), (got, digest), "{text}: {} backend differs from scalar", Native::NAME);
        let mut text_out = vec![0u8; 4096];
        let len = tok.decode(&want, &mut text_out).unwrap();
        println!(
            "{text:<24} [{} = scalar] -> {:?}",
            spark_hal::native_backend_name(),
            String::from_utf8_lossy(&text_out[..len])
        );
    }
}
