//! The Miri run's model test (`cargo +nightly miri test -p spark-tests --test miri`, in
//! test.sh): a tiny random model written by spark-sim, loaded, run by a session to its
//! `max_seq_len` on the scalar backend and on the native one, then corrupted copies
//! loaded; statistical top-k and the tokenizer on small inputs. Small on purpose: Miri
//! interprets every operation (about a thousand times slower than native code), and what
//! it checks (undefined behaviour: out-of-bounds or misaligned access, invalid values,
//! aliasing) does not depend on the sizes.

use spark_core::sampler::argmax;
use spark_core::tokenizer::Tokenizer;
use spark_core::topk::{stat_topk, topk_capacity, topk_z};
use spark_core::{AttnKind, Config, FfnKind, Model, RunError, Session};
use spark_hal::{Kernels, Native, Scalar};
use spark_sim::format::ModelWriter;
use spark_sim::testmodel::{random_writer, small_spark_config};
use spark_sim::tokenizer::BpeTokenizer;

fn tiny(ffn: FfnKind, attn: AttnKind) -> Config {
    let mut c = Config {
        vocab_size: 260,
        d_model: 16,
        n_layers: 2,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 8,
        d_ff: 24,
        ffn_kind: ffn,
        ffn_r: 4,
        ffn_k: 3,
        attn_kind: attn,
        attn_r: 4,
        attn_k: 2,
        max_seq_len: 5,
        sliding_window: 3,
        post_norms: true,
        ..small_spark_config()
    };
    if ffn == FfnKind::Geglu {
        c.ffn_r = 0;
    }
    if attn == AttnKind::Dense {
        c.attn_r = 0;
    }
    c
}

fn with_tokenizer(cfg: &Config, seed: u64) -> Vec<u8> {
    let mut w: ModelWriter = random_writer(cfg, seed);
    let tok = BpeTokenizer::train_with_specials(b"abab abab cdcd", cfg.vocab_size as usize);
    assert_eq!(tok.vocab_size(), cfg.vocab_size as usize);
    tok.write_into(&mut w);
    w.finish()
}

fn run<K: Kernels>(model: &Model<'_>) -> Vec<u32> {
    let max = model.config().max_seq_len as usize;
    let need = model.arena_bytes(max);
    // An arena that starts one byte off alignment: the session aligns inside it.
    let mut buf = vec![0u8; need + 1];
    let mut s = Session::<K>::new(model, &mut buf[1..]).unwrap();
    let mut ids = vec![1u32, 2];
    let mut next = argmax(s.prefill(&ids).unwrap()).unwrap();
    while s.pos() < max {
        ids.push(next);
        next = argmax(s.step(next).unwrap()).unwrap();
    }
    assert!(matches!(s.step(0), Err(RunError::ContextFull { .. })));
    s.reset();
    assert!(matches!(s.step(model.config().vocab_size), Err(RunError::InvalidToken { .. })));
    ids
}

#[test]
fn tiny_models_load_and_run_to_max_seq() {
    for (i, (f, a)) in [(FfnKind::Spark, AttnKind::Spark), (FfnKind::Geglu, AttnKind::Dense)].into_iter().enumerate() {
        let blob = with_tokenizer(&tiny(f, a), 7 + i as u64);
        let model = Model::load(&blob).unwrap();
        let scalar = run::<Scalar>(&model);
        assert_eq!(run::<Native>(&model), scalar, "native backend differs from scalar");
        let tok = Tokenizer::new(&model).unwrap();
        let text = b"abab cd\xff\x00";
        let mut ids = [0u32; 16];
        let n = tok.encode(text, &mut ids).unwrap();
        let mut back = [0u8; 16];
        let m = tok.decode(&ids[..n], &mut back).unwrap();
        assert_eq!(&back[..m], text);
        // Corrupted copies: a few flips and cuts, each a typed error.
        for at in [0usize, 9, 20, blob.len() / 2, blob.len() - 1] {
            let mut b = blob.clone();
            b[at] ^= 0x40;
            assert!(Model::load(&b).is_err());
            assert!(Model::load(&blob[..at]).is_err());
        }
    }
}

#[test]
fn topk_small() {
    let scores: Vec<f32> = (0..40).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
    for k in [0usize, 1, 5, 39, 40, 41] {
        let cap = topk_capacity(scores.len(), k, 2.0);
        let (mut idx, mut t) = (vec![0u32; cap], vec![0f32; cap]);
        let sel = stat_topk(&scores, k, topk_z(scores.len(), k), &mut idx, &mut t);
        assert!(sel.len <= cap);
    }
    let mut big = scores.clone();
    big[3] = f32::MAX;
    big[4] = -f32::MAX;
    let (mut idx, mut t) = (vec![0u32; 10], vec![0f32; 10]);
    let sel = stat_topk(&big, 5, topk_z(40, 5), &mut idx, &mut t);
    assert!(sel.theta.is_finite());
}

/// The 32-bit limits (also run by Miri for `i686-unknown-linux-gnu`, where `usize` has 32
/// bits): a header whose sizes need more than `isize::MAX` bytes is refused with a typed
/// error before any `usize` arithmetic on them; on a 64-bit target the same config is
/// valid. The arena of a config that passes is computed without overflow.
#[test]
fn sizes_beyond_the_address_space_are_refused() {
    let big = Config {
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
        attn_r: 4,
        ..small_spark_config()
    };
    let r = big.validate();
    if usize::BITS == 32 {
        assert!(
            matches!(r, Err(spark_core::ModelError::BadConfig { field: "max_seq_len", .. })),
            "32-bit target: {r:?}"
        );
        // A file declaring it fails at the config check, before any tensor is read.
        let blob = spark_sim::format::assemble(&big, &spark_core::TokenizerMeta::NONE, &[], &[]);
        assert!(matches!(Model::load(&blob), Err(spark_core::ModelError::BadConfig { field: "max_seq_len", .. })));
        // Just inside the limit on 32 bits: a context that fits; the arena size is exact.
        let fits = Config { max_seq_len: 16, n_layers: 2, vocab_size: 4096, ..big };
        assert!(fits.validate().is_ok());
        let n = spark_core::session::arena_bytes(&fits, 16);
        assert!(n as u64 <= fits.session_bytes_estimate());
    } else {
        assert!(r.is_ok(), "64-bit target: {r:?}");
    }
}
