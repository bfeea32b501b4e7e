//! Extreme but accepted model data through a whole forward pass (SPEC section 6;
//! docs/RELIABILITY.md, "Adversarial numerics"): int8 weights saturated at -128 and 127,
//! every scale and norm weight at the largest value the loader accepts
//! (`MAX_WEIGHT_SCALE`, `MAX_NORM_WEIGHT`, `MAX_EMBED_SCALE`), and a predictor built so that
//! the statistical top-k must hit its capacity rule.
//!
//! Stated behaviour, checked here:
//! - no panic: every step returns `Ok` until the context is full, then `ContextFull`;
//! - every logit is finite or an infinity, never NaN, and the scalar and native backends
//!   give the same bits;
//! - the activation quantizer never writes -128 (its range is -127..=127), so neither the
//!   activations nor the KV cache (written only by that quantizer) hold -128; weights may;
//! - every selection keeps at most the capacity (`FfnPlan::cap`, `AttnParams::max_cap`);
//! - the session statistics count exactly the overflows and underflows an observer sees,
//!   and the saturated models do produce them.

use std::cell::Cell;

use spark_core::attention::AttnParams;
use spark_core::ffn::FfnPlan;
use spark_core::format::{MAX_NORM_WEIGHT, MAX_WEIGHT_SCALE};
use spark_core::stats::Observer;
use spark_core::topk::Selection;
use spark_core::{Config, DType, Model, RunError, Session, TensorKind};
use spark_hal::{Kernels, Native, Scalar};
use spark_sim::format::ModelWriter;
use spark_sim::testmodel::{for_each_weight, small_spark_config};

thread_local! {
    /// Activation quantizer calls, and how many of their outputs were -128.
    static QUANT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// The scalar oracle, with every quantizer output inspected for -128.
struct QuantSpy;
impl Kernels for QuantSpy {
    const NAME: &'static str = "quant-spy";
    fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        Scalar::dot_i8(a, b)
    }
    fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
        Scalar::gemv_i8(w, cols, x, y)
    }
    fn gemv_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
        Scalar::gemv_rows_strided_i8(w, stride, cols, rows, x, y)
    }
    fn gemv_t_rows_strided_i8(w: &[i8], stride: usize, cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
        Scalar::gemv_t_rows_strided_i8(w, stride, cols, rows, c, y)
    }
    fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
        let s = Scalar::quantize_sym_i8(x, q);
        let bad = q.iter().filter(|&&v| v == i8::MIN).count() as u64;
        QUANT.with(|c| {
            let (n, b) = c.get();
            c.set((n + 1, b + bad));
        });
        s
    }
}

/// Counts the capacity events an observer sees, and checks every kept count.
#[derive(Default)]
struct Events {
    ffn_cap: usize,
    attn_cap: usize,
    ffn_over: Vec<u32>,
    ffn_under: Vec<u32>,
    attn_over: Vec<u32>,
    attn_under: Vec<u32>,
}
impl Observer for Events {
    fn ffn(&mut self, l: usize, active: &[u32], s: &Selection) {
        assert!(active.len() <= self.ffn_cap && s.len <= self.ffn_cap, "layer {l}: {} > cap {}", s.len, self.ffn_cap);
        assert!(!s.overflow || s.len == self.ffn_cap, "an overflow keeps exactly the capacity");
        self.ffn_over[l] += s.overflow as u32;
        self.ffn_under[l] += s.underflow as u32;
    }
    fn attn(&mut self, l: usize, _h: usize, pos: &[u32], s: Option<&Selection>) {
        if let Some(s) = s {
            assert!(pos.len() <= self.attn_cap && s.len <= self.attn_cap, "layer {l}: {} keys", pos.len());
            self.attn_over[l] += s.overflow as u32;
            self.attn_under[l] += s.underflow as u32;
        }
    }
}

fn config() -> Config {
    // d_ff 96, k 9: z = 1.32, capacity 18 (2k). The predictor below puts a quarter of the
    // neurons (24 > 18) on the top score: an overflow whenever that score is positive.
    Config { max_seq_len: 40, embed_scale: spark_core::config::MAX_EMBED_SCALE, ..small_spark_config() }
}

/// A model whose int8 weights come from `int8(id, row, col)` and whose scales and norm
/// weights are all `f32s` (raw tensors, so -128 survives: the converter's quantizer never
/// writes it).
fn model(cfg: &Config, int8: impl Fn(TensorKind, usize, usize, usize) -> i8, scale: f32, norm: f32) -> Vec<u8> {
    let mut w = ModelWriter::new(*cfg, spark_core::TokenizerMeta::NONE);
    for_each_weight(cfg, |id, dtype, rows, cols| match dtype {
        DType::I8 => {
            let mut b = Vec::with_capacity(rows * cols);
            for r in 0..rows {
                for c in 0..cols {
                    b.push(int8(id.kind, id.layer as usize, r, c) as u8);
                }
            }
            w.add_raw(id, DType::I8, [rows as u32, cols as u32], b);
            let sk = id.kind.scale().expect("int8 matrix");
            w.add_f32(spark_core::TensorId { kind: sk, layer: id.layer }, &vec![scale; rows]);
        }
        _ => w.add_f32(id, &vec![norm; rows]),
    });
    w.finish()
}

/// Run to the end of the context on backend `K`, with the observer; returns every logit
/// vector and the session's statistics summed per layer as (ffn over, ffn under, attn
/// over, attn under).
fn run<K: Kernels>(m: &Model<'_>, ev: &mut Events) -> (Vec<Vec<f32>>, Vec<[u32; 4]>) {
    let cfg = m.config();
    let max = cfg.max_seq_len as usize;
    let mut arena = vec![0u8; m.arena_bytes(max)];
    let mut s = Session::<K>::new(m, &mut arena).unwrap();
    let mut out = Vec::new();
    let mut tok = 1u32;
    while s.pos() < max {
        let l = s.step_observed(tok, ev).expect("in-range model data never fails a step");
        assert!(l.iter().all(|x| !x.is_nan()), "NaN logit at position {}", s.pos());
        out.push(l.to_vec());
        // (vocab 48 is a multiple of 3: every third token is a multiple of 3)
        tok = (s.pos() as u32 * 7 + 3) % cfg.vocab_size;
    }
    assert!(matches!(s.step(0), Err(RunError::ContextFull { .. })));
    let stats =
        s.stats().iter().map(|t| [t.ffn_overflows, t.ffn_underflows, t.attn_overflows, t.attn_underflows]).collect();
    (out, stats)
}

fn events(cfg: &Config) -> Events {
    let n = cfg.n_layers as usize;
    Events {
        ffn_cap: FfnPlan::for_model(cfg).cap,
        attn_cap: AttnParams::max_cap(cfg, cfg.max_seq_len as usize),
        ffn_over: vec![0; n],
        ffn_under: vec![0; n],
        attn_over: vec![0; n],
        attn_under: vec![0; n],
    }
}

/// Runs the model on the spy, the scalar oracle and the native backend; checks the
/// statements of the module doc; returns the observed events.
fn check(blob: &[u8]) -> Events {
    let m = Model::load(blob).expect("every value is inside the load limits");
    let cfg = *m.config();
    QUANT.with(|c| c.set((0, 0)));
    let mut ev = events(&cfg);
    let (spy, stats) = run::<QuantSpy>(&m, &mut ev);
    let (calls, minus128) = QUANT.with(|c| c.get());
    assert!(calls > 0);
    assert_eq!(minus128, 0, "the activation quantizer wrote -128");
    for (l, st) in stats.iter().enumerate() {
        assert_eq!(*st, [ev.ffn_over[l], ev.ffn_under[l], ev.attn_over[l], ev.attn_under[l]], "layer {l}");
    }
    let (scalar, _) = run::<Scalar>(&m, &mut events(&cfg));
    let (native, _) = run::<Native>(&m, &mut events(&cfg));
    let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&spy), bits(&scalar));
    assert_eq!(bits(&native), bits(&scalar), "native backend {}", spark_hal::native_backend_name());
    ev
}

/// Every int8 weight -128, every scale and norm weight at the load limit: all scores of a
/// selection are equal, so every sparse selection is an underflow (one kept).
#[test]
fn all_weights_minus_128_at_the_scale_limits() {
    let cfg = config();
    let blob = model(&cfg, |_, _, _, _| i8::MIN, MAX_WEIGHT_SCALE, MAX_NORM_WEIGHT);
    let ev = check(&blob);
    let tokens = cfg.max_seq_len;
    for l in 0..cfg.n_layers as usize {
        assert_eq!(ev.ffn_under[l] + ev.ffn_over[l], tokens, "layer {l}: every FFN selection is a capacity event");
        assert!(ev.ffn_under[l] > 0);
    }
    eprintln!("attention events: over {:?} under {:?}", ev.attn_over, ev.attn_under);
}

/// Weights alternating -128 / 127 (the widest int8 products) with the limit scales and
/// negative norm weights at the limit.
#[test]
fn alternating_extremes_and_negative_norms() {
    let cfg = config();
    let pattern = |_: TensorKind, l: usize, r: usize, c: usize| if (l + r + c) % 2 == 0 { i8::MIN } else { i8::MAX };
    let blob = model(&cfg, pattern, MAX_WEIGHT_SCALE, -MAX_NORM_WEIGHT);
    check(&blob);
    let blob = model(&cfg, pattern, f32::MIN_POSITIVE, MAX_NORM_WEIGHT);
    check(&blob);
}

/// A predictor with three levels: a quarter of the neurons score `-128 a`, a quarter
/// `127 a`, the rest 0 (`a` = this token's first normalized activation). Whatever the sign
/// of `a`, a quarter (24) of the 96 neurons tie on the top score and pass the threshold
/// (`mean + 1.32 sigma` = 0.93 of the top): more than the capacity 18, an overflow, and
/// exactly 18 kept.
#[test]
fn predictor_forcing_capacity_overflows() {
    let cfg = config();
    let f = cfg.d_ff as usize;
    let int8 = |kind: TensorKind, _l: usize, r: usize, c: usize| match kind {
        TensorKind::K1 if c == 0 && r < f / 4 => i8::MIN,
        TensorKind::K1 if c == 0 && r < f / 2 => i8::MAX,
        TensorKind::K1 => 0,
        _ => (((r * 31 + c * 17) % 255) as i32 - 127) as i8,
    };
    let blob = model(&cfg, int8, 0.01, 1.0);
    let ev = check(&blob);
    eprintln!(
        "ffn over {:?} under {:?}; attention over {:?} under {:?}",
        ev.ffn_over, ev.ffn_under, ev.attn_over, ev.attn_under
    );
    for l in 0..cfg.n_layers as usize {
        assert!(ev.ffn_over[l] > 0, "layer {l}: no overflow ({:?})", ev.ffn_over);
        assert_eq!(ev.ffn_over[l] + ev.ffn_under[l], cfg.max_seq_len, "layer {l}");
    }
}

/// Keys in two camps: a third of the tokens embed as all 127, the rest as all -128, so
/// after the norm every key is `+v` or `-v` (the query and key rows that RoPE turns at
/// frequency 1 are zero, and `rope_theta` at its limit leaves the others nearly still).
/// The predictor scores of a query are then two-valued: when the query sides with the
/// third, a third of the keys pass the threshold (more than the capacity once the context
/// is long: an overflow); when it sides with the rest, nothing passes (an underflow).
#[test]
fn attention_keys_forcing_capacity_events() {
    let cfg = Config { rope_theta: spark_core::config::MAX_ROPE_THETA, ..config() };
    let dh = cfg.head_dim as usize;
    let int8 = |kind: TensorKind, _l: usize, r: usize, c: usize| match kind {
        TensorKind::Embed if r % 3 == 0 => i8::MAX,
        TensorKind::Embed => i8::MIN,
        TensorKind::Wq | TensorKind::Wk if (r % dh) % 2 == 0 => 0,
        TensorKind::Wq | TensorKind::Wk => 64,
        _ => (((r * 31 + c * 17) % 255) as i32 - 127) as i8,
    };
    let blob = model(&cfg, int8, 0.01, 1.0);
    let ev = check(&blob);
    eprintln!(
        "ffn over {:?} under {:?}; attention over {:?} under {:?}",
        ev.ffn_over, ev.ffn_under, ev.attn_over, ev.attn_under
    );
    assert!(ev.attn_over[0] > 0 && ev.attn_under[0] > 0, "layer 0: {:?} {:?}", ev.attn_over, ev.attn_under);
}
