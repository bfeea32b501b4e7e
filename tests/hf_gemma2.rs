//! The Hugging Face Gemma-2 converter against transformers itself: `tests/hf/tiny-gemma2`
//! (written by `train/make_hf_gemma2.py`: a random float32 Gemma-2 with both soft-caps
//! active, non-trivial norm weights, GQA and a sliding window of 8 over 24 tokens) is
//! mapped by `spark_sim::hf::load_gemma2`, and the f32 oracle on the unquantized weights
//! must reproduce transformers' logits (`golden_logits.safetensors`) to a relative L2
//! error below 1e-4. The int8 path (converted `.spark`, `spark_core::Session`) is run too
//! and its error printed, not asserted. The `convert` subcommand on the directory is
//! tested with the other CLI tests in `host-sim/tests/cli.rs`.

use safetensors::SafeTensors;
use spark_core::sampler::argmax;
use spark_core::{Model, Session};
use spark_sim::checkpoint::to_writer;
use spark_sim::oracle::run_oracle;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hf/tiny-gemma2")
}

fn golden() -> (Vec<u32>, Vec<Vec<f32>>) {
    let p = dir().join("golden_logits.safetensors");
    let bytes = std::fs::read(&p).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): run train/make_hf_gemma2.py to create tests/hf/tiny-gemma2", p.display())
    });
    let st = SafeTensors::deserialize(&bytes).expect("golden_logits.safetensors parses");
    let ids = st.tensor("ids").expect("ids tensor");
    let ids: Vec<u32> = ids.data().chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as u32).collect();
    let lg = st.tensor("logits").expect("logits tensor");
    let vocab = lg.shape()[1];
    let flat: Vec<f32> = lg.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (ids, flat.chunks(vocab).map(<[f32]>::to_vec).collect())
}

fn rel_l2(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        for (&p, &q) in x.iter().zip(y) {
            num += (p as f64 - q as f64).powi(2);
            den += (q as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

#[test]
fn oracle_matches_transformers_golden_logits() {
    let (ids, want) = golden();
    let ck = spark_sim::hf::load_gemma2(&dir(), None).expect("tiny-gemma2 converts");
    let c = ck.config;
    assert_eq!((c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim), (128, 64, 2, 4, 2, 16));
    assert_eq!((c.sliding_window, c.embed_scale, c.attn_logit_softcap, c.final_logit_softcap), (8, 8.0, 50.0, 30.0));
    assert!(c.post_norms && c.tie_embeddings);

    let tr = run_oracle(&ck, &ids).expect("oracle runs");
    assert_eq!(tr.logits.len(), want.len());
    let err = rel_l2(&tr.logits, &want);
    let per_pos: Vec<String> = tr
        .logits
        .iter()
        .zip(&want)
        .map(|(a, b)| format!("{:.1e}", rel_l2(std::slice::from_ref(a), std::slice::from_ref(b))))
        .collect();
    println!("f32 oracle vs transformers: logits relative L2 {err:.3e} over {} positions", ids.len());
    println!("per position: {}", per_pos.join(" "));
    assert!(err < 1e-4, "f32 oracle vs transformers: relative L2 {err:.3e} >= 1e-4");

    // The int8 path on the converted model (reported, not asserted).
    let (w, _) = to_writer(&ck).expect("quantizes");
    let blob = w.finish();
    let model = Model::load(&blob).expect("converted model loads");
    let mut arena = vec![0u8; model.arena_bytes(ids.len())];
    let mut s = Session::<spark_hal::Scalar>::with_max_seq(&model, &mut arena, ids.len()).expect("session");
    let got: Vec<Vec<f32>> = ids.iter().map(|&t| s.step(t).expect("step").to_vec()).collect();
    let e8 = rel_l2(&got, &want);
    let agree = got.iter().zip(&want).filter(|(a, b)| argmax(a).ok() == argmax(b).ok()).count();
    println!(
        "int8 runtime vs transformers: logits relative L2 {e8:.3e}, same argmax at {agree}/{} positions",
        ids.len()
    );
}

#[test]
fn hf_errors_name_the_tensor_or_field() {
    let cfg_text = std::fs::read_to_string(dir().join("config.json")).unwrap();
    let cfg_path = dir().join("config.json");
    let cfg = spark_sim::hf::config_from_hf(&cfg_text, &cfg_path, None).unwrap();
    let tensors = spark_sim::hf::read_tensors(&[dir().join("model.safetensors")]).unwrap();

    let mut missing = tensors.clone();
    missing.remove("model.layers.1.mlp.up_proj.weight");
    let e = spark_sim::hf::from_hf_tensors(cfg, missing).unwrap_err();
    assert!(e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("missing"), "{e}");

    let mut bad = tensors.clone();
    let (_, v) = bad.remove("model.layers.0.self_attn.o_proj.weight").unwrap();
    bad.insert("model.layers.0.self_attn.o_proj.weight".into(), (vec![32, 128], v));
    let e = spark_sim::hf::from_hf_tensors(cfg, bad).unwrap_err();
    assert!(e.contains("o_proj") && e.contains("expected shape [64, 64], found [32, 128]"), "{e}");

    let mut extra = tensors;
    extra.insert("model.layers.2.input_layernorm.weight".into(), (vec![64], vec![0.0; 64]));
    let e = spark_sim::hf::from_hf_tensors(cfg, extra).unwrap_err();
    assert!(e.contains("model.layers.2.input_layernorm.weight"), "{e}");

    // A layer pattern the .spark format cannot express, and an unsupported RoPE.
    let swapped = cfg_text
        .replace("\"sliding_attention\",\n    \"full_attention\"", "\"full_attention\",\n    \"sliding_attention\"");
    assert_ne!(swapped, cfg_text);
    let e = spark_sim::hf::config_from_hf(&swapped, &cfg_path, None).unwrap_err();
    assert!(e.contains("layer_types[0]"), "{e}");
    let e = spark_sim::hf::config_from_hf(&cfg_text.replace("\"default\"", "\"linear\""), &cfg_path, None).unwrap_err();
    assert!(e.contains("rope type"), "{e}");
    let e = spark_sim::hf::config_from_hf(&cfg_text.replace("\"gemma2\"", "\"gemma3\""), &cfg_path, None).unwrap_err();
    assert!(e.contains("gemma3"), "{e}");
}
