//! Tests of the f32 oracle (`spark_sim::oracle`) and the checkpoint reader / converter
//! (`spark_sim::checkpoint`).
//!
//! (a) Checks that need no golden files: RoPE, the statistical top-k rules, whole-model
//! brute-force formulas (Spark attention with `ka >= n`, Spark FFN with `k >= f`, dense
//! GeGLU with dense attention) against the step-wise oracle, typed errors, the safetensors
//! reader and the `.spark` round trip (the `convert` CLI is tested in `host-sim/tests/cli.rs`).
//! (b) The golden files of `train/reference.py` (`tests/golden/manifest.json`): logits
//! within 1e-4 relative L2 and identical FFN / attention active sets and events.

use safetensors::{Dtype, SafeTensors};
use spark_core::attention::AttnParams;
use spark_core::ffn::FfnPlan;
use spark_core::topk::topk_capacity;
use spark_core::{AttnKind, Config, FfnKind, Model};
use spark_sim::checkpoint::{config_to_json, expected_tensors, to_writer, CheckpointError, F32Checkpoint};
use spark_sim::oracle::{
    gelu, rope, run_oracle, softplus, stat_topk_ref, OracleError, OracleSession, EVENT_NONE, EVENT_OVERFLOW,
    EVENT_UNDERFLOW,
};
use spark_sim::rng::SplitMix64;
use spark_sim::testmodel::small_spark_config;
use std::collections::HashMap;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

fn random_tokens(cfg: &Config, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64(seed);
    (0..n).map(|_| rng.below(cfg.vocab_size as u64) as u32).collect()
}

fn dense_geglu_config() -> Config {
    Config {
        vocab_size: 40,
        d_model: 24,
        n_layers: 3,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 6,
        d_ff: 40,
        ffn_kind: FfnKind::Geglu,
        ffn_r: 0,
        ffn_k: 40,
        attn_kind: AttnKind::Dense,
        attn_r: 0,
        attn_k: 256,
        max_seq_len: 20,
        rope_theta: 10_000.0,
        norm_eps: 1e-6,
        query_pre_attn_scalar: 6.0,
        attn_logit_softcap: 2.5,
        final_logit_softcap: 5.0,
        sliding_window: 5,
        embed_scale: 24f32.sqrt(),
        tie_embeddings: false,
        post_norms: true,
        topk_cap_factor: 2.0,
    }
}

/// A Spark model where every top-k is the identity: `ka >= max_seq_len`, `k = f`.
fn spark_all_config() -> Config {
    Config {
        d_ff: 48,
        ffn_k: 48,
        attn_k: 64,
        max_seq_len: 18,
        attn_logit_softcap: 3.0,
        final_logit_softcap: 7.0,
        sliding_window: 6,
        post_norms: true,
        tie_embeddings: false,
        query_pre_attn_scalar: 10.0,
        ..small_spark_config()
    }
}

// ---------------------------------------------------------------------------------------
// Brute force: the whole sequence at once, in matrix form, straight from the formulas
// ---------------------------------------------------------------------------------------

type Mat = Vec<Vec<f64>>;

fn w(ck: &F32Checkpoint, name: &str) -> Mat {
    let (s, v) = &ck.tensors[name];
    let cols = if s.len() == 2 { s[1] } else { 1 };
    v.chunks(cols).map(|r| r.iter().map(|&x| x as f64).collect()).collect()
}

fn vec1(ck: &F32Checkpoint, name: &str) -> Vec<f64> {
    ck.tensors[name].1.iter().map(|&x| x as f64).collect()
}

/// `X W^T` for rows X [n, in] and W [out, in].
fn mm_t(x: &Mat, wt: &Mat) -> Mat {
    x.iter().map(|r| wt.iter().map(|wr| r.iter().zip(wr).map(|(a, b)| a * b).sum()).collect()).collect()
}

fn norm_rows(x: &Mat, g: &[f64], eps: f64) -> Mat {
    x.iter()
        .map(|r| {
            let ms = r.iter().map(|v| v * v).sum::<f64>() / r.len() as f64;
            r.iter().zip(g).map(|(v, gi)| v / (ms + eps).sqrt() * gi).collect()
        })
        .collect()
}

/// RoPE as a complex rotation of (x_i + i x_{i+w/2}) by e^{i pos theta^(-2i/w)}.
fn rope_complex(x: &mut [f64], pos: usize, base: f64) {
    let w = x.len();
    for i in 0..w / 2 {
        let ang = pos as f64 / base.powf(2.0 * i as f64 / w as f64);
        let (re, im) = (x[i], x[i + w / 2]);
        let (c, s) = (ang.cos(), ang.sin());
        x[i] = re * c - im * s;
        x[i + w / 2] = re * s + im * c;
    }
}

fn brute_force_logits(ck: &F32Checkpoint, tokens: &[u32]) -> Mat {
    let c = ck.config;
    let (d, dh, nh, nkv) = (c.d_model as usize, c.head_dim as usize, c.n_heads as usize, c.n_kv_heads as usize);
    let n = tokens.len();
    let eps = c.norm_eps as f64;
    let cap = |z: f64, cp: f32| if cp > 0.0 { cp as f64 * (z / cp as f64).tanh() } else { z };
    let emb = w(ck, "embed");
    let mut x: Mat =
        tokens.iter().map(|&t| emb[t as usize].iter().map(|&e| (e as f32 * c.embed_scale) as f64).collect()).collect();
    for l in 0..c.n_layers as usize {
        let p = |s: &str| format!("layers.{l}.{s}");
        let h = norm_rows(&x, &vec1(ck, &p("attn_norm")), eps);
        let mut q = mm_t(&h, &w(ck, &p("attn.wq")));
        let mut k = mm_t(&h, &w(ck, &p("attn.wk")));
        let v = mm_t(&h, &w(ck, &p("attn.wv")));
        let parts: Vec<(usize, usize)> = match c.attn_kind {
            AttnKind::Dense => vec![(0, dh)],
            AttnKind::Spark => vec![(0, c.attn_r as usize), (c.attn_r as usize, dh)],
        };
        for (pos, (qr, kr)) in q.iter_mut().zip(k.iter_mut()).enumerate() {
            for head in qr.chunks_mut(dh).chain(kr.chunks_mut(dh)) {
                for &(a, b) in &parts {
                    rope_complex(&mut head[a..b], pos, c.rope_theta as f64);
                }
            }
        }
        let scale = 1.0 / (c.query_pre_attn_scalar as f64).sqrt();
        let mut o = vec![vec![0.0; nh * dh]; n];
        for pos in 0..n {
            let lo = if c.sliding_window > 0 && l % 2 == 0 {
                (pos + 1).saturating_sub(c.sliding_window as usize)
            } else {
                0
            };
            for j in 0..nh {
                let g = j * nkv / nh;
                let qj = &q[pos][j * dh..(j + 1) * dh];
                let ra = parts[0].1;
                let s: Vec<f64> = (lo..=pos)
                    .map(|t| {
                        let kt = &k[t][g * dh..(g + 1) * dh];
                        cap(scale * (0..ra).map(|i| qj[i] * kt[i]).sum::<f64>(), c.attn_logit_softcap)
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - mx).exp()).sum();
                for (ii, t) in (lo..=pos).enumerate() {
                    let kt = &k[t][g * dh..(g + 1) * dh];
                    let gate =
                        if ra < dh { softplus(scale * (ra..dh).map(|i| qj[i] * kt[i]).sum::<f64>()) } else { 1.0 };
                    let wt = (s[ii] - mx).exp() / z * gate;
                    for i in 0..dh {
                        o[pos][j * dh + i] += wt * v[t][g * dh + i];
                    }
                }
            }
        }
        let mut a = mm_t(&o, &w(ck, &p("attn.wo")));
        if c.post_norms {
            a = norm_rows(&a, &vec1(ck, &p("post_attn_norm")), eps);
        }
        for (xr, ar) in x.iter_mut().zip(&a) {
            xr.iter_mut().zip(ar).for_each(|(xi, ai)| *xi += ai);
        }
        let h = norm_rows(&x, &vec1(ck, &p("ffn_norm")), eps);
        let mut m = match c.ffn_kind {
            FfnKind::Geglu => {
                // y = Wd (gelu(Wg h) * (Wu h))
                let gg = mm_t(&h, &w(ck, &p("ffn.wg")));
                let uu = mm_t(&h, &w(ck, &p("ffn.wu")));
                let act: Mat =
                    gg.iter().zip(&uu).map(|(gr, ur)| gr.iter().zip(ur).map(|(g, u)| gelu(*g) * u).collect()).collect();
                mm_t(&act, &w(ck, &p("ffn.wd")))
            }
            FfnKind::Spark => {
                // y = V^T (gelu(K1 h1) * (K2 h2)) with every neuron active (k = f).
                let r = c.ffn_r as usize;
                let h1: Mat = h.iter().map(|row| row[..r].to_vec()).collect();
                let h2: Mat = h.iter().map(|row| row[r..].to_vec()).collect();
                let s = mm_t(&h1, &w(ck, &p("ffn.k1")));
                let u = mm_t(&h2, &w(ck, &p("ffn.k2")));
                let vv = w(ck, &p("ffn.v"));
                let vt: Mat = (0..d).map(|o| vv.iter().map(|row| row[o]).collect()).collect();
                let act: Mat =
                    s.iter().zip(&u).map(|(sr, ur)| sr.iter().zip(ur).map(|(a, b)| gelu(*a) * b).collect()).collect();
                mm_t(&act, &vt)
            }
        };
        if c.post_norms {
            m = norm_rows(&m, &vec1(ck, &p("post_ffn_norm")), eps);
        }
        for (xr, mr) in x.iter_mut().zip(&m) {
            xr.iter_mut().zip(mr).for_each(|(xi, mi)| *xi += mi);
        }
    }
    let xf = norm_rows(&x, &vec1(ck, "final_norm"), eps);
    let head = if c.tie_embeddings { emb } else { w(ck, "lm_head") };
    mm_t(&xf, &head).into_iter().map(|r| r.into_iter().map(|z| cap(z, c.final_logit_softcap)).collect()).collect()
}

fn check_against_brute_force(cfg: &Config, seed: u64) {
    let ck = F32Checkpoint::random(cfg, seed);
    let tokens = random_tokens(cfg, cfg.max_seq_len as usize, seed + 1);
    let tr = run_oracle(&ck, &tokens).unwrap();
    let bf = brute_force_logits(&ck, &tokens);
    let a: Vec<f32> = tr.logits.concat();
    let b: Vec<f32> = bf.concat().iter().map(|&v| v as f32).collect();
    let e = rel_l2(&a, &b);
    println!("brute force vs oracle: rel L2 {e:.3e}");
    assert!(e < 1e-5, "oracle deviates from the direct formula: rel L2 {e:.3e}");
    // Every key visible (window honoured) and every neuron active; no events.
    for (p, pos) in tr.attn_active.iter().enumerate() {
        for (l, layer) in pos.iter().enumerate() {
            let lo = cfg.first_visible(l, p);
            for head in layer {
                assert_eq!(*head, (lo as u32..=p as u32).collect::<Vec<_>>(), "pos {p} layer {l}");
            }
        }
    }
    assert!(tr.ffn_active.iter().flatten().all(|s| s.len() == cfg.d_ff as usize));
    assert!(tr.ffn_theta.iter().flatten().all(|t| t.is_nan()));
    assert!(tr.ffn_events.iter().flatten().chain(tr.attn_events.iter().flatten().flatten()).all(|&e| e == 0));
}

// ---------------------------------------------------------------------------------------
// (a) Unit checks
// ---------------------------------------------------------------------------------------

#[test]
fn rope_preserves_norms_and_is_identity_at_position_zero() {
    let mut rng = SplitMix64(7);
    for w in [2usize, 4, 6, 10, 16, 64] {
        for pos in [0usize, 1, 5, 100, 4095] {
            let x: Vec<f32> = (0..w).map(|_| rng.normal() as f32).collect();
            let mut y = x.clone();
            rope(&mut y, pos, 10_000.0);
            let n0: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
            let n1: f64 = y.iter().map(|&v| (v as f64).powi(2)).sum();
            assert!((n0 - n1).abs() <= 1e-6 * n0, "w {w} pos {pos}: {n0} vs {n1}");
            if pos == 0 {
                assert_eq!(x, y);
            }
        }
    }
    // Relative position property: <R_p q, R_t k> depends on p - t only.
    let q: Vec<f32> = (0..8).map(|_| rng.normal() as f32).collect();
    let k: Vec<f32> = (0..8).map(|_| rng.normal() as f32).collect();
    let dotp = |p: usize, t: usize| {
        let (mut a, mut b) = (q.clone(), k.clone());
        rope(&mut a, p, 10_000.0);
        rope(&mut b, t, 10_000.0);
        spark_sim::oracle::dot(&a, &b)
    };
    assert!((dotp(7, 3) - dotp(14, 10)).abs() < 1e-5);
}

#[test]
fn topk_identity_when_k_at_least_n() {
    let x = [0.5f32, -1.0, 3.0, 2.0, 0.0];
    for k in [5usize, 6, 100] {
        let s = stat_topk_ref(&x, k, 2.0);
        assert_eq!(s.idx, vec![0, 1, 2, 3, 4]);
        assert_eq!(s.t, x.to_vec());
        assert!(s.theta.is_nan());
        assert_eq!(s.event, EVENT_NONE);
    }
}

#[test]
fn topk_threshold_overflow_underflow_and_ties() {
    // Gaussian scores: the count is near k, t = x - theta on the selection.
    let mut rng = SplitMix64(3);
    let x: Vec<f32> = (0..4000).map(|_| rng.normal() as f32).collect();
    let s = stat_topk_ref(&x, 320, 2.0);
    assert!((250..400).contains(&s.idx.len()), "{}", s.idx.len());
    let n = x.len() as f64;
    let mu = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (x.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / n).sqrt();
    let theta = mu + 1.4050716 * sd; // Phi^-1(0.92)
    assert!((s.theta as f64 - theta).abs() < 1e-5);
    for (&i, &t) in s.idx.iter().zip(&s.t) {
        assert!(x[i as usize] as f64 > theta);
        assert!((t as f64 - (x[i as usize] as f64 - theta)).abs() < 1e-6);
    }
    assert_eq!(s.idx.len(), x.iter().filter(|&&v| v as f64 > theta).count());

    // Overflow: k = 1 of 16 with cap factor 2 -> cap 2; three entries pass (theta ~ 7.8),
    // the two largest are kept; with cap 1 the tie between indices 1 and 5 goes to the
    // lower index.
    let mut x = [0.0f32; 16];
    (x[1], x[3], x[5]) = (10.0, 9.9, 10.0);
    let s = stat_topk_ref(&x, 1, 2.0);
    assert!(s.theta > 7.0 && s.theta < 9.0, "{}", s.theta);
    assert_eq!(topk_capacity(16, 1, 2.0), 2);
    assert_eq!((s.idx.clone(), s.event), (vec![1, 5], EVENT_OVERFLOW));
    let s = stat_topk_ref(&x, 1, 1.0);
    assert_eq!((s.idx.clone(), s.event), (vec![1], EVENT_OVERFLOW));

    // Underflow: constant scores (sigma 0): the first maximum with t = 0.
    let s = stat_topk_ref(&[2.0f32; 6], 2, 2.0);
    assert_eq!((s.idx, s.t, s.event), (vec![0], vec![0.0], EVENT_UNDERFLOW));

    // Capacity in f32, clamped to n.
    assert_eq!(topk_capacity(100, 10, 1.1), 11);
    assert_eq!(topk_capacity(5, 4, 2.0), 5);
    assert_eq!(topk_capacity(100, 10, 1.5), 15);
}

#[test]
fn elementary_functions() {
    assert_eq!(gelu(0.0), 0.0);
    assert!((gelu(1.0) - 0.8411919906082768).abs() < 1e-12);
    assert!((gelu(-3.0) - -0.0036373920817729943).abs() < 1e-12);
    assert_eq!(softplus(30.0), 30.0);
    assert!((softplus(0.0) - std::f64::consts::LN_2).abs() < 1e-15);
    assert!((softplus(-40.0) - (-40f64).exp()).abs() < 1e-30);
    assert!((softplus(20.0) - 20.000000002061153).abs() < 1e-12);
}

#[test]
fn spark_model_with_full_selection_matches_brute_force() {
    check_against_brute_force(&spark_all_config(), 11);
    check_against_brute_force(&Config { attn_r: 2, tie_embeddings: true, post_norms: false, ..spark_all_config() }, 12);
}

#[test]
fn dense_geglu_model_matches_direct_matrix_formula() {
    check_against_brute_force(&dense_geglu_config(), 21);
    check_against_brute_force(
        &Config {
            sliding_window: 0,
            attn_logit_softcap: 0.0,
            final_logit_softcap: 0.0,
            tie_embeddings: true,
            n_kv_heads: 1,
            ..dense_geglu_config()
        },
        22,
    );
}

#[test]
fn sparse_model_uses_bounded_sets_and_step_matches_run() {
    let cfg = small_spark_config();
    let ck = F32Checkpoint::random(&cfg, 5);
    let tokens = random_tokens(&cfg, cfg.max_seq_len as usize, 6);
    let tr = run_oracle(&ck, &tokens).unwrap();
    let cap_f = FfnPlan::for_model(&cfg).cap;
    for p in 0..tokens.len() {
        for l in 0..cfg.n_layers as usize {
            let s = &tr.ffn_active[p][l];
            assert!(!s.is_empty() && s.len() <= cap_f && s.windows(2).all(|w| w[0] < w[1]));
            for h in &tr.attn_active[p][l] {
                let n = p + 1;
                let params = AttnParams::new(&cfg, n);
                if !params.sparse {
                    assert_eq!(h.len(), n);
                } else {
                    assert!(!h.is_empty() && h.len() <= params.cap);
                }
                assert!(h.windows(2).all(|w| w[0] < w[1]) && h.iter().all(|&t| t as usize <= p));
            }
        }
    }
    let mut s = OracleSession::new(&ck).unwrap();
    for (p, &t) in tokens.iter().enumerate() {
        assert_eq!(s.step(t).unwrap(), tr.logits[p]);
    }
    assert_eq!(s.pos(), tokens.len());
    s.reset();
    assert_eq!(s.step(tokens[0]).unwrap(), tr.logits[0]);
}

#[test]
fn context_overflow_and_bad_token_are_errors() {
    let cfg = small_spark_config();
    let ck = F32Checkpoint::random(&cfg, 1);
    let max = cfg.max_seq_len as usize;
    let long = vec![1u32; max + 1];
    assert_eq!(run_oracle(&ck, &long).unwrap_err(), OracleError::ContextFull { max_seq_len: cfg.max_seq_len });
    let bad = [1u32, 2, cfg.vocab_size, 3];
    let e = run_oracle(&ck, &bad).unwrap_err();
    assert_eq!(e, OracleError::TokenOutOfRange { pos: 2, token: cfg.vocab_size, vocab: cfg.vocab_size });
    assert!(e.to_string().contains("out of range"));
    let mut s = OracleSession::new(&ck).unwrap();
    assert!(matches!(s.step(u32::MAX), Err(OracleError::TokenOutOfRange { .. })));
    for _ in 0..max {
        s.step(0).unwrap();
    }
    assert!(matches!(s.step(0), Err(OracleError::ContextFull { .. })));
    assert_eq!(run_oracle(&ck, &[]).unwrap().logits.len(), 0);
    // A broken checkpoint is an error, not a panic.
    let mut broken = ck.clone();
    broken.tensors.remove("layers.1.ffn.v");
    assert!(matches!(run_oracle(&broken, &[1]), Err(OracleError::Checkpoint(CheckpointError::MissingTensor { .. }))));
}

#[test]
fn from_spark_round_trip_is_within_quantization_error() {
    for cfg in [small_spark_config(), dense_geglu_config(), spark_all_config()] {
        let ck = F32Checkpoint::random(&cfg, 9);
        let (writer, errs) = to_writer(&ck).unwrap();
        assert_eq!(errs.len(), writer.tensors.iter().filter(|t| t.dtype == spark_core::DType::I8).count());
        assert!(errs.iter().all(|(_, e)| e.rel_l2 < 0.01), "{errs:?}");
        let blob = writer.finish();
        let model = Model::load(&blob).unwrap();
        let back = F32Checkpoint::from_spark(&model).unwrap();
        assert_eq!(back.config, cfg);
        assert_eq!(back.tensors.len(), ck.tensors.len());
        for (name, (shape, orig)) in &ck.tensors {
            let (s2, deq) = &back.tensors[name];
            assert_eq!(shape, s2, "{name}");
            if shape.len() == 1 {
                assert_eq!(orig, deq, "{name}: norm weights are stored exactly");
                continue;
            }
            // Per-row (per output neuron) absmax; wd is stored transposed, one row per neuron.
            let (r, c) = (shape[0], shape[1]);
            let by_col = name.ends_with("ffn.wd");
            let nrows = if by_col { c } else { r };
            for row in 0..nrows {
                let idx: Vec<usize> =
                    if by_col { (0..r).map(|o| o * c + row).collect() } else { (0..c).map(|i| row * c + i).collect() };
                let absmax = idx.iter().map(|&i| orig[i].abs()).fold(0f32, f32::max);
                let bound = absmax / 127.0 * 0.5 * 1.0001 + 1e-7;
                for &i in &idx {
                    assert!((orig[i] - deq[i]).abs() <= bound, "{name}[{i}]: {} vs {}", orig[i], deq[i]);
                }
            }
        }
        // The oracle on the int8 weights stays close to the f32 oracle.
        let tokens = random_tokens(&cfg, 8, 3);
        let a = run_oracle(&ck, &tokens).unwrap().logits.concat();
        let b = run_oracle(&back, &tokens).unwrap().logits.concat();
        let e = rel_l2(&b, &a);
        println!("f32 vs dequantized int8 weights: logits rel L2 {e:.3e}");
        assert!(e < 0.1, "{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Checkpoint reader
// ---------------------------------------------------------------------------------------

fn st_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], meta: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, dt, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta).unwrap()
}

fn ck_tensors(ck: &F32Checkpoint, dtype: Dtype) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    ck.tensors
        .iter()
        .map(|(n, (s, v))| {
            let b: Vec<u8> = match dtype {
                Dtype::BF16 => v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
                Dtype::F16 => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
            };
            (n.clone(), dtype, s.clone(), b)
        })
        .collect()
}

fn meta_with(json: &str) -> Option<HashMap<String, String>> {
    Some(HashMap::from([("spark_config".to_string(), json.to_string())]))
}

fn read_err(tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)], json: &str) -> CheckpointError {
    let t: Vec<_> = tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    F32Checkpoint::from_safetensors_bytes(&st_file(&t, meta_with(json))).unwrap_err()
}

#[test]
fn safetensors_round_trip_in_f32_bf16_f16() {
    let cfg = small_spark_config();
    let ck = F32Checkpoint::random(&cfg, 4);
    let bytes = ck.to_safetensors_bytes().unwrap();
    assert_eq!(F32Checkpoint::from_safetensors_bytes(&bytes).unwrap(), ck);
    let json = config_to_json(&cfg);
    for dt in [Dtype::BF16, Dtype::F16] {
        let t = ck_tensors(&ck, dt);
        let t: Vec<_> = t.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
        let back = F32Checkpoint::from_safetensors_bytes(&st_file(&t, meta_with(&json))).unwrap();
        for (name, (_, v)) in &ck.tensors {
            let tol = if dt == Dtype::BF16 { 1.0 / 256.0 } else { 1.0 / 2048.0 };
            for (a, b) in v.iter().zip(&back.tensors[name].1) {
                assert!((a - b).abs() <= tol * a.abs() + 1e-6, "{name}: {a} vs {b}");
            }
        }
    }
    // topk_cap_factor defaults to 2.0 when absent.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v.as_object_mut().unwrap().remove("topk_cap_factor");
    let ck15 = F32Checkpoint::random(&Config { topk_cap_factor: 2.0, ..cfg }, 4);
    let t = ck_tensors(&ck15, Dtype::F32);
    let t: Vec<_> = t.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    let back = F32Checkpoint::from_safetensors_bytes(&st_file(&t, meta_with(&v.to_string()))).unwrap();
    assert_eq!(back.config.topk_cap_factor, 2.0);
}

#[test]
fn checkpoint_errors_are_typed_and_name_the_tensor() {
    let cfg = Config { d_ff: 96, ffn_r: 12, d_model: 32, ..small_spark_config() };
    let ck = F32Checkpoint::random(&cfg, 2);
    let json = config_to_json(&cfg);
    let good = ck_tensors(&ck, Dtype::F32);

    // Wrong shape.
    let mut t = good.clone();
    let i = t.iter().position(|x| x.0 == "layers.0.ffn.k2").unwrap();
    t[i].2 = vec![96, 12];
    t[i].3.truncate(96 * 12 * 4);
    let e = read_err(&t, &json);
    assert_eq!(e.to_string(), "tensor layers.0.ffn.k2: expected shape [96, 20], found [96, 12]");

    // Missing and unexpected tensors.
    let t: Vec<_> = good.iter().filter(|x| x.0 != "layers.1.attn.wo").cloned().collect();
    assert_eq!(read_err(&t, &json), CheckpointError::MissingTensor { name: "layers.1.attn.wo".into() });
    let mut t = good.clone();
    t.push(("lm_head".into(), Dtype::F32, vec![48, 32], vec![0; 48 * 32 * 4]));
    assert_eq!(read_err(&t, &json), CheckpointError::UnexpectedTensor { name: "lm_head".into() });

    // Unsupported dtype.
    let mut t = good.clone();
    let i = t.iter().position(|x| x.0 == "embed").unwrap();
    t[i].1 = Dtype::I32;
    let e = read_err(&t, &json);
    assert!(matches!(&e, CheckpointError::UnsupportedDtype { name, .. } if name == "embed"), "{e}");
    assert!(e.to_string().contains("I32"), "{e}");

    // Non-finite value.
    let mut t = good.clone();
    let i = t.iter().position(|x| x.0 == "final_norm").unwrap();
    t[i].3[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(read_err(&t, &json), CheckpointError::NonFinite { name: "final_norm".into(), index: 2 });

    // Metadata problems.
    let t: Vec<_> = good.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    let no_meta = F32Checkpoint::from_safetensors_bytes(&st_file(&t, None)).unwrap_err();
    assert!(matches!(no_meta, CheckpointError::BadMetadata(_)), "{no_meta}");
    assert!(matches!(read_err(&good, "{not json"), CheckpointError::BadMetadata(_)));
    let caps = json.replace("\"ffn_kind\":\"spark\"", "\"ffn_kind\":\"Spark\"");
    assert_ne!(caps, json);
    let e = read_err(&good, &caps);
    assert!(e.to_string().contains("ffn_kind"), "{e}");
    let e = read_err(&good, &json.replace("\"d_model\":32,", ""));
    assert_eq!(e.to_string(), "bad metadata: spark_config field d_model: missing");
    let e = read_err(&good, &json.replace("\"n_kv_heads\":2", "\"n_kv_heads\":3"));
    assert!(matches!(e, CheckpointError::BadConfig(_)), "{e}");
    let e = read_err(&good, &json.replace("\"d_model\":32", "\"d_model\":-32"));
    assert!(matches!(e, CheckpointError::BadMetadata(_)), "{e}");

    // Not a safetensors file at all; a missing file.
    for bytes in [&b""[..], b"garbage", &[0xff; 16]] {
        assert!(matches!(F32Checkpoint::from_safetensors_bytes(bytes), Err(CheckpointError::Safetensors(_))));
    }
    assert!(matches!(
        F32Checkpoint::load(std::path::Path::new("/nonexistent/x.safetensors")),
        Err(CheckpointError::Io { .. })
    ));

    // Every canonical tensor is named as train/ names it.
    let names: Vec<String> = expected_tensors(&dense_geglu_config()).into_iter().map(|t| t.0).collect();
    assert!(names.contains(&"layers.2.ffn.wd".to_string()) && names.contains(&"lm_head".to_string()));
    assert!(names.contains(&"layers.0.post_ffn_norm".to_string()));
}

// ---------------------------------------------------------------------------------------
// (b) Golden files from train/reference.py
// ---------------------------------------------------------------------------------------

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden")
}

struct Golden {
    tokens: Vec<u32>,
    logits: Vec<f32>,
    /// name -> (shape, values as f64)
    t: HashMap<String, (Vec<usize>, Vec<f64>)>,
}

fn read_golden(path: &PathBuf) -> Golden {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t = HashMap::new();
    for (name, view) in st.iter() {
        let b = view.data();
        let v: Vec<f64> = match view.dtype() {
            Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Dtype::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Dtype::U8 => b.iter().map(|&x| x as f64).collect(),
            other => panic!("{}: tensor {name} has unexpected dtype {other}", path.display()),
        };
        t.insert(name.to_string(), (view.shape().to_vec(), v));
    }
    let tokens = t["tokens"].1.iter().map(|&x| x as u32).collect();
    let logits = t["logits"].1.iter().map(|&x| x as f32).collect();
    Golden { tokens, logits, t }
}

#[test]
fn golden_reference_outputs() {
    let dir = golden_dir();
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
        panic!(
            "golden manifest {} is missing ({e}): regenerate with `python train/reference.py --out tests/golden`",
            manifest_path.display()
        )
    });
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest.json is valid JSON");
    let models = manifest["models"].as_object().expect("manifest has a models object");
    assert!(!models.is_empty(), "manifest lists no models");
    let mut failures = Vec::new();
    for (name, entry) in models {
        let ck_file = entry["checkpoint"].as_str().map(String::from).unwrap_or(format!("{name}.safetensors"));
        let g_file = entry["golden"].as_str().map(String::from).unwrap_or(format!("{name}.golden.safetensors"));
        let ck = F32Checkpoint::load(&dir.join(&ck_file)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let g = read_golden(&dir.join(&g_file));
        let cfg = ck.config;
        let (tn, vocab, f, nh) = (g.tokens.len(), cfg.vocab_size as usize, cfg.d_ff as usize, cfg.n_heads as usize);
        let tr = run_oracle(&ck, &g.tokens).unwrap_or_else(|e| panic!("{name}: {e}"));

        let logits = tr.logits.concat();
        assert_eq!(logits.len(), tn * vocab, "{name}: logits shape");
        let rel = rel_l2(&logits, &g.logits);
        let max_abs = logits.iter().zip(&g.logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);

        let (mut ffn_set_bad, mut ffn_ev_bad, mut attn_set_bad, mut attn_ev_bad) = (0, 0, 0, 0);
        let (mut theta_err, mut n_active, mut n_keys) = (0f64, 0usize, 0usize);
        let mut events = [0usize; 4]; // ffn overflow, ffn underflow, attn overflow, attn underflow
        let mut first_diff: Option<String> = None;
        for l in 0..cfg.n_layers as usize {
            let (_, fa) = &g.t[&format!("layers.{l}.ffn_active")];
            let (_, fe) = &g.t[&format!("layers.{l}.ffn_events")];
            let (_, th) = &g.t[&format!("layers.{l}.ffn_theta")];
            let (_, aa) = &g.t[&format!("layers.{l}.attn_active")];
            let (_, ae) = &g.t[&format!("layers.{l}.attn_events")];
            for p in 0..tn {
                let want: Vec<u32> = (0..f).filter(|&i| fa[p * f + i] != 0.0).map(|i| i as u32).collect();
                n_active += tr.ffn_active[p][l].len();
                if tr.ffn_active[p][l] != want {
                    ffn_set_bad += 1;
                    first_diff.get_or_insert(format!(
                        "pos {p} layer {l} FFN: oracle {:?} reference {want:?}",
                        tr.ffn_active[p][l]
                    ));
                }
                let ev = tr.ffn_events[p][l];
                if ev as f64 != fe[p] {
                    ffn_ev_bad += 1;
                }
                events[0] += (ev == EVENT_OVERFLOW) as usize;
                events[1] += (ev == EVENT_UNDERFLOW) as usize;
                let (a, b) = (tr.ffn_theta[p][l] as f64, th[p]);
                if a.is_nan() != b.is_nan() {
                    theta_err = f64::INFINITY;
                } else if !a.is_nan() {
                    theta_err = theta_err.max((a - b).abs() / (1.0 + b.abs()));
                }
                for h in 0..nh {
                    let base = (p * nh + h) * tn;
                    let want: Vec<u32> = (0..tn).filter(|&t| aa[base + t] != 0.0).map(|t| t as u32).collect();
                    n_keys += tr.attn_active[p][l][h].len();
                    if tr.attn_active[p][l][h] != want {
                        attn_set_bad += 1;
                        first_diff.get_or_insert(format!(
                            "pos {p} layer {l} head {h} attention: oracle {:?} reference {want:?}",
                            tr.attn_active[p][l][h]
                        ));
                    }
                    let ev = tr.attn_events[p][l][h];
                    if ev as f64 != ae[p * nh + h] {
                        attn_ev_bad += 1;
                    }
                    events[2] += (ev == EVENT_OVERFLOW) as usize;
                    events[3] += (ev == EVENT_UNDERFLOW) as usize;
                }
            }
        }
        let nl = cfg.n_layers as usize;
        println!(
            "golden {name:<17} T {tn:>2}: logits rel L2 {rel:.3e} max abs {max_abs:.3e}; theta max rel {theta_err:.2e}; \
             FFN sets {}/{} equal (mean {:.2} active), events {}/{} equal (ovf {} unf {}); \
             attention sets {}/{} equal (mean {:.2} keys), events {}/{} equal (ovf {} unf {})",
            tn * nl - ffn_set_bad,
            tn * nl,
            n_active as f64 / (tn * nl) as f64,
            tn * nl - ffn_ev_bad,
            tn * nl,
            events[0],
            events[1],
            tn * nl * nh - attn_set_bad,
            tn * nl * nh,
            n_keys as f64 / (tn * nl * nh) as f64,
            tn * nl * nh - attn_ev_bad,
            tn * nl * nh,
            events[2],
            events[3],
        );
        // Manifest event counts agree with what the oracle saw.
        for (key, got) in ["ffn_overflow", "ffn_underflow", "attn_overflow", "attn_underflow"].iter().zip(events) {
            if let Some(want) = entry[*key].as_u64() {
                if want as usize != got {
                    failures.push(format!("{name}: manifest {key} = {want}, oracle counted {got}"));
                }
            }
        }
        if rel.is_nan() || rel >= 1e-4 {
            failures.push(format!("{name}: logits rel L2 {rel:.3e} >= 1e-4"));
        }
        if theta_err > 1e-4 {
            failures.push(format!("{name}: FFN theta max relative error {theta_err:.3e}"));
        }
        if ffn_set_bad + ffn_ev_bad + attn_set_bad + attn_ev_bad > 0 {
            failures.push(format!(
                "{name}: {ffn_set_bad} FFN sets, {ffn_ev_bad} FFN events, {attn_set_bad} attention sets, \
                 {attn_ev_bad} attention events differ; first: {}",
                first_diff.unwrap_or_default()
            ));
        }

        // Informative: the oracle on the int8 weights of the converted model.
        let (w, _) = to_writer(&ck).unwrap();
        let blob = w.finish();
        let q = F32Checkpoint::from_spark(&Model::load(&blob).unwrap()).unwrap();
        let tq = run_oracle(&q, &g.tokens).unwrap();
        let same = (0..tn)
            .flat_map(|p| (0..nl).map(move |l| (p, l)))
            .filter(|&(p, l)| tq.ffn_active[p][l] == tr.ffn_active[p][l])
            .count();
        println!(
            "        {name:<17} on int8 weights: logits rel L2 {:.3e} vs reference; FFN sets equal {same}/{}",
            rel_l2(&tq.logits.concat(), &g.logits),
            tn * nl
        );
    }
    assert!(failures.is_empty(), "golden comparison failed:\n{}", failures.join("\n"));
}
