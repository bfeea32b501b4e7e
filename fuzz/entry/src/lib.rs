//! Entry functions of the fuzz targets in `fuzz/fuzz_targets/`.
//!
//! Each target is one line calling a function here, so the same code runs under libFuzzer
//! (nightly, `cargo fuzz run <target>`) and on stable in `cargo test`, which replays every
//! file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through it
//! (`tests/replay.rs`). Every function returns normally on any input: bad input must come
//! back as a typed error, and every property checked here panics only on a runtime bug.
//!
//! | target              | function                 | what it drives                                   |
//! |---------------------|--------------------------|--------------------------------------------------|
//! | `loader`            | [`loader`]               | `Model::load` on raw bytes, then a short session |
//! | `loader_structured` | [`loader_structured`]    | valid-CRC files built from `arbitrary` values    |
//! | `tokenizer`         | [`tokenizer`]            | encode, decode, round trips, `Utf8Stream`        |
//! | `convert`           | [`convert`]              | `spark-sim convert`'s parsers                    |
//! | `ffi`               | [`ffi`]                  | a sequence of C API calls                        |

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use arbitrary::{Arbitrary, Unstructured};
use spark_core::tokenizer::{Tokenizer, TokenizerError, Utf8Stream};
use spark_core::{AttnKind, Config, DType, FfnKind, Model, RunError, Session, TensorId, TokenizerMeta};
use spark_sim::format::ModelWriter;
use spark_sim::testmodel::for_each_weight;
use std::path::Path;
use std::sync::OnceLock;

/// Largest context a fuzzed session runs (keeps one execution in the millisecond range).
pub const FUZZ_MAX_SEQ: usize = 6;

/// The bundled demo model (with its byte-level BPE tokenizer).
pub fn demo_blob() -> &'static [u8] {
    static BLOB: OnceLock<Vec<u8>> = OnceLock::new();
    BLOB.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/demo.spark");
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

// ---------------------------------------------------------------------------------------
// (a) the .spark loader

/// First byte selecting [`loader`]'s structure-aware mode (a `.spark` file starts with
/// `S`, never this).
pub const STRUCTURED: u8 = 0xA5;

/// `Model::load` on `data`; for a blob that loads: a session over an exactly sized arena
/// prefills and steps a few tokens, every logit is finite or the run is documented, and
/// the context-full, invalid-token and small-arena cases return their typed errors.
///
/// An input starting with [`STRUCTURED`] runs [`loader_structured`] on the rest instead,
/// so one 30-minute run of this target covers both modes.
pub fn loader(data: &[u8]) {
    if let Some((&STRUCTURED, rest)) = data.split_first() {
        return loader_structured(rest);
    }
    let Ok(model) = Model::load(data) else { return };
    run_loaded(&model, data);
}

fn run_loaded(model: &Model<'_>, seed: &[u8]) {
    let cfg = *model.config();
    assert!(cfg.validate().is_ok(), "a loaded config validates");
    let vocab = cfg.vocab_size;
    let max_seq = (cfg.max_seq_len as usize).min(FUZZ_MAX_SEQ);
    let need = model.arena_bytes(max_seq);
    // One byte short must be refused with the typed error, never used.
    let mut small = vec![0u8; need - 1];
    match Session::<spark_hal::Native>::with_max_seq(model, &mut small, max_seq) {
        Err(RunError::ArenaTooSmall { .. }) => {}
        Err(e) => panic!("arena one byte short: unexpected error {e:?}"),
        Ok(_) => panic!("arena one byte short: accepted"),
    }
    drop(small);
    let mut arena = vec![0u8; need];
    let mut s = Session::<spark_hal::Native>::with_max_seq(model, &mut arena, max_seq).expect("exact arena");
    match s.step(vocab) {
        Err(RunError::InvalidToken { .. }) => {}
        other => panic!("token == vocab_size: {:?}", other.map(|l| l.len())),
    }
    assert_eq!(s.pos(), 0, "a refused token must not advance the session");
    let ids: Vec<u32> = seed.iter().rev().take(3).map(|&b| b as u32 % vocab).collect();
    let n_prefill = ids.len().clamp(1, max_seq);
    let ids = if ids.is_empty() { vec![0] } else { ids };
    let logits = s.prefill(&ids[..n_prefill]).expect("prefill within max_seq");
    assert_eq!(logits.len(), vocab as usize);
    let mut next = spark_core::sampler::argmax(logits).unwrap_or(0);
    while s.pos() < max_seq {
        let l = s.step(next).expect("step within max_seq");
        next = spark_core::sampler::argmax(l).unwrap_or(0);
    }
    match s.step(next) {
        Err(RunError::ContextFull { .. }) => {}
        other => panic!("step past max_seq: {:?}", other.map(|l| l.len())),
    }
    for st in s.stats() {
        assert!(st.ffn_active_max as u64 <= cfg.d_ff as u64, "active neurons above d_ff");
    }
    if let Ok(tok) = Tokenizer::new(model) {
        tokenizer_with(&tok, seed);
    }
}

/// Values the structure-aware loader mode starts from: a config near the valid region,
/// tensor contents, and edits that break one rule at a time.
#[derive(Arbitrary, Debug)]
pub struct ModelSpec {
    vocab: u8,
    d_model: u8,
    n_layers: u8,
    heads: u8,
    kv_div: u8,
    head_dim: u8,
    d_ff: u8,
    spark_ffn: bool,
    ffn_r: u8,
    ffn_k: u8,
    spark_attn: bool,
    attn_r: u8,
    attn_k: u8,
    max_seq: u8,
    floats: [f32; 8],
    sliding_window: u8,
    tie: bool,
    post_norms: bool,
    with_tokenizer: bool,
    corpus: Vec<u8>,
    fill: Vec<u8>,
    scales: Vec<f32>,
    raw_config: Option<RawConfig>,
    edits: Vec<Edit>,
}

/// Any value of every numeric config field (to reach each `BadConfig` rule).
#[derive(Arbitrary, Debug)]
pub struct RawConfig {
    field: u8,
    value: u32,
    fvalue: f32,
}

/// One change to the tensor table or the header before the file is laid out (CRCs are
/// then computed over the changed bytes, so the checks behind the checksums run).
#[derive(Arbitrary, Debug)]
pub enum Edit {
    /// Remove entry `i`.
    Drop(u8),
    /// Add a copy of entry `i`.
    Duplicate(u8),
    /// Change entry `i`'s dtype.
    DType(u8, u8),
    /// Change entry `i`'s shape.
    Shape(u8, u32, u32),
    /// Change entry `i`'s layer.
    Layer(u8, u16),
    /// Truncate entry `i`'s bytes.
    Shorten(u8, u16),
    /// Set one f32 of entry `i`.
    Float(u8, u16, f32),
    /// Tokenizer metadata.
    TokMeta(u32, u32, Option<u32>, Option<u32>),
    /// Swap two entries (order of the table).
    Swap(u8, u8),
}

fn f_or(v: f32, default: f32) -> f32 {
    if v.is_finite() && v > 0.0 && v < 1e6 {
        v
    } else {
        default
    }
}

fn spec_config(s: &ModelSpec) -> Config {
    let heads = 1 + (s.heads % 4) as u32;
    let kv = {
        let d = 1 + (s.kv_div % heads as u8) as u32;
        if heads.is_multiple_of(d) {
            heads / d
        } else {
            heads
        }
    };
    let head_dim = 2 * (1 + (s.head_dim % 8) as u32);
    let d_model = 2 + (s.d_model % 40) as u32;
    let d_ff = 1 + (s.d_ff % 64) as u32;
    let spark_ffn = s.spark_ffn;
    let spark_attn = s.spark_attn && head_dim > 2;
    let mut c = Config {
        vocab_size: 2 + (s.vocab % 60) as u32,
        d_model,
        n_layers: 1 + (s.n_layers % 3) as u32,
        n_heads: heads,
        n_kv_heads: kv,
        head_dim,
        d_ff,
        ffn_kind: if spark_ffn { FfnKind::Spark } else { FfnKind::Geglu },
        ffn_r: if spark_ffn { 1 + (s.ffn_r as u32 % (d_model - 1)) } else { 0 },
        ffn_k: 1 + (s.ffn_k as u32 % d_ff),
        attn_kind: if spark_attn { AttnKind::Spark } else { AttnKind::Dense },
        attn_r: if spark_attn { 2 * (1 + s.attn_r as u32 % ((head_dim - 1) / 2)) } else { 0 },
        attn_k: 1 + (s.attn_k % 8) as u32,
        max_seq_len: 1 + (s.max_seq % 8) as u32,
        rope_theta: f_or(s.floats[0], 10_000.0),
        norm_eps: if s.floats[1].is_finite() && s.floats[1] >= 0.0 && s.floats[1] < 1.0 { s.floats[1] } else { 1e-6 },
        query_pre_attn_scalar: f_or(s.floats[2], head_dim as f32),
        attn_logit_softcap: if s.floats[3] > 0.0 && s.floats[3] < 1e3 { s.floats[3] } else { 0.0 },
        final_logit_softcap: if s.floats[4] > 0.0 && s.floats[4] < 1e3 { s.floats[4] } else { 0.0 },
        sliding_window: (s.sliding_window % 5) as u32,
        embed_scale: f_or(s.floats[5], 1.0),
        tie_embeddings: s.tie,
        post_norms: s.post_norms,
        topk_cap_factor: if s.floats[6] >= 1.0 && s.floats[6] <= 64.0 { s.floats[6] } else { 2.0 },
    };
    if s.with_tokenizer {
        c.vocab_size = 258 + (s.vocab % 40) as u32;
    }
    if let Some(r) = &s.raw_config {
        let (v, f) = (r.value, r.fvalue);
        match r.field % 22 {
            0 => c.vocab_size = v,
            1 => c.d_model = v,
            2 => c.n_layers = v,
            3 => c.n_heads = v,
            4 => c.n_kv_heads = v,
            5 => c.head_dim = v,
            6 => c.d_ff = v,
            7 => c.ffn_r = v,
            8 => c.ffn_k = v,
            9 => c.attn_r = v,
            10 => c.attn_k = v,
            11 => c.max_seq_len = v,
            12 => c.rope_theta = f,
            13 => c.norm_eps = f,
            14 => c.query_pre_attn_scalar = f,
            15 => c.attn_logit_softcap = f,
            16 => c.final_logit_softcap = f,
            17 => c.sliding_window = v,
            18 => c.embed_scale = f,
            19 => c.topk_cap_factor = f,
            20 => c.ffn_kind = if v & 1 == 0 { FfnKind::Spark } else { FfnKind::Geglu },
            _ => c.attn_kind = if v & 1 == 0 { AttnKind::Spark } else { AttnKind::Dense },
        }
    }
    c
}

/// Build a complete file from a [`ModelSpec`] (valid CRCs), apply its edits and run
/// [`loader`]'s checks on it. Returns the blob (for seeding and replays).
pub fn model_from_spec(s: &ModelSpec) -> Vec<u8> {
    let cfg = spec_config(s);
    let mut w = ModelWriter::new(cfg, TokenizerMeta::NONE);
    // Refuse to lay out absurd sizes (the raw config may be anything): the loader checks
    // the config before any tensor, so a file with an empty table still exercises it.
    let small = cfg.validate().is_ok() && (cfg.vocab_size as u64 * cfg.d_model as u64) < 1 << 16;
    if small {
        let mut fill = s.fill.iter().copied().cycle();
        let mut scales = s.scales.iter().copied().cycle();
        for_each_weight(&cfg, |id, dtype, rows, cols| match dtype {
            DType::I8 => {
                let bytes: Vec<u8> = (0..rows * cols).map(|_| fill.next().unwrap_or(1)).collect();
                w.add_raw(id, DType::I8, [rows as u32, cols as u32], bytes);
                let sc: Vec<f32> = (0..rows).map(|_| scales.next().unwrap_or(0.01)).collect();
                w.add_f32(TensorId { kind: id.kind.scale().expect("matrix"), layer: id.layer }, &sc);
            }
            _ => {
                let v: Vec<f32> = (0..rows).map(|_| scales.next().unwrap_or(1.0)).collect();
                w.add_f32(id, &v);
            }
        });
        if s.with_tokenizer {
            let tok = spark_sim::tokenizer::BpeTokenizer::train_with_specials(&s.corpus, cfg.vocab_size as usize);
            // Training may stop early: pad with extra byte strings so vocab matches.
            if tok.vocab_size() == cfg.vocab_size as usize {
                tok.write_into(&mut w);
            }
        }
    }
    for e in &s.edits {
        let n = w.tensors.len();
        let pick = |i: u8| if n == 0 { None } else { Some(i as usize % n) };
        match *e {
            Edit::Drop(i) => {
                if let Some(i) = pick(i) {
                    w.tensors.remove(i);
                }
            }
            Edit::Duplicate(i) => {
                if let Some(i) = pick(i) {
                    let t = w.tensors[i].clone();
                    w.tensors.push(t);
                }
            }
            Edit::DType(i, d) => {
                if let Some(i) = pick(i) {
                    w.tensors[i].dtype = [DType::I8, DType::F32, DType::U8, DType::U32][d as usize % 4];
                }
            }
            Edit::Shape(i, r, c) => {
                if let Some(i) = pick(i) {
                    w.tensors[i].shape = [r, c];
                }
            }
            Edit::Layer(i, l) => {
                if let Some(i) = pick(i) {
                    w.tensors[i].id.layer = l;
                }
            }
            Edit::Shorten(i, k) => {
                if let Some(i) = pick(i) {
                    let b = &mut w.tensors[i].bytes;
                    let keep = b.len().saturating_sub(k as usize);
                    b.truncate(keep);
                }
            }
            Edit::Float(i, at, v) => {
                if let Some(i) = pick(i) {
                    let is_f32 = w.tensors[i].dtype == DType::F32;
                    let b = &mut w.tensors[i].bytes;
                    let at = 4 * at as usize;
                    if is_f32 && at + 4 <= b.len() {
                        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            Edit::TokMeta(bytes_len, n_merges, bos, eos) => {
                w.tokenizer.bytes_len = bytes_len;
                w.tokenizer.n_merges = n_merges;
                w.tokenizer.bos_id = bos;
                w.tokenizer.eos_id = eos;
            }
            Edit::Swap(i, j) => {
                if let (Some(i), Some(j)) = (pick(i), pick(j)) {
                    w.tensors.swap(i, j);
                }
            }
        }
    }
    if w.tensors.iter().map(|t| t.bytes.len() as u64).sum::<u64>() > 64 << 20 {
        return Vec::new();
    }
    w.finish()
}

/// The structure-aware loader mode: a [`ModelSpec`] from the fuzzer's bytes, laid out
/// with valid CRCs, then [`loader`]. An unedited spec with a valid config must load.
pub fn loader_structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(spec) = ModelSpec::arbitrary(&mut u) else { return };
    let blob = model_from_spec(&spec);
    let unedited_valid = spec.edits.is_empty()
        && spec.raw_config.is_none()
        && !spec.with_tokenizer
        && spec.scales.iter().all(|v| v.is_finite() && v.abs() < 1e30)
        && !spec.scales.is_empty();
    match Model::load(&blob) {
        Ok(model) => run_loaded(&model, data),
        Err(e) => {
            if unedited_valid {
                // Only the documented value limits (DESIGN.md, "Model value limits") may
                // refuse an unedited file with a valid config.
                assert!(
                    matches!(
                        e,
                        spark_core::ModelError::ValueOutOfRange { .. } | spark_core::ModelError::BadConfig { .. }
                    ),
                    "an unedited file was refused: {e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (b) the tokenizer

fn demo_tokenizer() -> &'static Tokenizer<'static> {
    static T: OnceLock<(Model<'static>, Tokenizer<'static>)> = OnceLock::new();
    &T.get_or_init(|| {
        let m = Model::load(demo_blob()).expect("demo model loads");
        let t = Tokenizer::new(&m).expect("demo model has a tokenizer");
        (m, t)
    })
    .1
}

/// The demo model's tokenizer on `data`: encode arbitrary bytes (round trip must hold:
/// the tokenizer has every single byte), decode arbitrary ids (each id checked, sizes
/// exact), small buffers refused with their typed error, `Utf8Stream` independent of how
/// the bytes are split and equal to a lossy UTF-8 decode; and `Tokenizer::from_tables`
/// over tables cut from `data` (refused or usable, never a panic).
pub fn tokenizer(data: &[u8]) {
    tokenizer_with(demo_tokenizer(), data);
    // Raw tables: [len_bytes u8][len_offs u8] then the rest split three ways.
    if data.len() >= 2 {
        let (a, b) = (data[0] as usize, data[1] as usize);
        let rest = &data[2..];
        let a = a.min(rest.len());
        let b = (4 * b).min(rest.len() - a);
        let (bytes, r) = rest.split_at(a);
        let (offs, merges) = r.split_at(b);
        if let Ok(t) = Tokenizer::from_tables(bytes, offs, merges, None, None) {
            tokenizer_with(&t, merges);
        }
    }
}

fn tokenizer_with(tok: &Tokenizer<'_>, data: &[u8]) {
    let vocab = tok.vocab_size();
    let has_all_bytes = (0..=255u8).all(|b| tok.byte_token(b).is_some());
    // encode: out needs text.len() ids
    let mut ids = vec![0u32; data.len()];
    match tok.encode(data, &mut ids) {
        Ok(n) => {
            assert!(n <= data.len());
            let mut back = vec![0u8; data.len()];
            let m = tok.decode(&ids[..n], &mut back).expect("decode of encoded ids");
            assert_eq!(&back[..m], data, "decode(encode(x)) == x");
        }
        Err(TokenizerError::UnknownByte(b)) => assert!(!has_all_bytes && tok.byte_token(b).is_none()),
        Err(e) => panic!("encode: unexpected error {e:?}"),
    }
    if !data.is_empty() {
        let mut short = vec![0u32; data.len() - 1];
        assert!(matches!(tok.encode(data, &mut short), Err(TokenizerError::BufferTooSmall { .. })));
    }
    if let Some(bos) = tok.bos_id() {
        let mut out = vec![0u32; data.len() + 1];
        if let Ok(n) = tok.encode_with_bos(data, &mut out) {
            assert!(n >= 1 && out[0] == bos);
        }
    }
    // decode arbitrary ids (u16 LE pairs, so most are in range)
    let raw: Vec<u32> = data.chunks(2).map(|c| c.iter().fold(0u32, |a, &b| (a << 8) | b as u32)).collect();
    let mut out = vec![0u8; 4 * data.len() + 16];
    match tok.decode(&raw, &mut out) {
        Ok(n) => {
            let want: usize = raw.iter().map(|&id| tok.decode_token(id).expect("in range").len()).sum();
            assert_eq!(n, want);
            let mut at = 0;
            for &id in &raw {
                let t = tok.decode_token(id).expect("in range");
                assert_eq!(&out[at..at + t.len()], t);
                at += t.len();
            }
        }
        Err(TokenizerError::InvalidId { id, .. }) => assert!(id >= vocab && raw.contains(&id)),
        Err(TokenizerError::BufferTooSmall { needed, available }) => assert!(needed > available),
        Err(e) => panic!("decode: unexpected error {e:?}"),
    }
    // Utf8Stream: split at every position given by the data itself.
    let mut whole = String::new();
    let mut s = Utf8Stream::new();
    s.push(data, &mut |p: &str| whole.push_str(p));
    s.finish(&mut |p: &str| whole.push_str(p));
    let mut pieces = String::new();
    let mut s = Utf8Stream::new();
    let mut rest = data;
    while !rest.is_empty() {
        let k = 1 + (rest[0] as usize % 5).min(rest.len() - 1);
        let (a, b) = rest.split_at(k);
        s.push(a, &mut |p: &str| pieces.push_str(p));
        rest = b;
    }
    s.finish(&mut |p: &str| pieces.push_str(p));
    assert_eq!(whole, pieces, "Utf8Stream output depends on how the bytes are split");
    assert_eq!(whole, String::from_utf8_lossy(data), "Utf8Stream differs from a lossy UTF-8 decode");
}

// ---------------------------------------------------------------------------------------
// (c) spark-sim convert's input parsing

/// `spark-sim convert`'s parsers on `data`. The first byte picks the input kind:
/// 0 a native `config.json` ([`spark_sim::checkpoint::config_from_json`]), 1 a Gemma-2
/// `config.json` ([`spark_sim::hf::config_from_hf`]), 2 a native f32 safetensors
/// checkpoint (parse, validate, quantize, write: what loads must then load as `.spark`),
/// 3 a Hugging Face safetensors file with the tiny Gemma-2 config.
pub fn convert(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(cfg) = spark_sim::checkpoint::config_from_json(text) {
                    // the written form parses back to the same config
                    let again = spark_sim::checkpoint::config_from_json(&spark_sim::checkpoint::config_to_json(&cfg));
                    assert_eq!(again.ok(), Some(cfg), "config.json round trip");
                }
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let max_seq = rest.first().map(|&b| b as u32);
                if let Ok(cfg) = spark_sim::hf::config_from_hf(text, Path::new("config.json"), max_seq) {
                    assert!(cfg.validate().is_ok());
                }
            }
        }
        2 => {
            if let Ok(ck) = spark_sim::checkpoint::F32Checkpoint::from_safetensors_bytes(rest) {
                if let Ok((w, _)) = spark_sim::checkpoint::to_writer(&ck) {
                    let blob = w.finish();
                    if let Err(e) = Model::load(&blob) {
                        // Values the quantizer cannot represent are the documented refusals.
                        assert!(
                            matches!(
                                e,
                                spark_core::ModelError::NonFiniteValue { .. }
                                    | spark_core::ModelError::ValueOutOfRange { .. }
                            ),
                            "a validated checkpoint converted to an unloadable file: {e}"
                        );
                    }
                }
            }
        }
        _ => {
            if let Ok(map) = spark_sim::hf::tensors_from_bytes(rest, "model.safetensors") {
                let cfg_text = tiny_gemma2_config();
                let cfg = spark_sim::hf::config_from_hf(cfg_text, Path::new("config.json"), None).expect("fixture");
                let _ = spark_sim::hf::from_hf_tensors(cfg, map);
            }
        }
    }
}

fn tiny_gemma2_config() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hf/tiny-gemma2/config.json");
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

// ---------------------------------------------------------------------------------------
// (d) the C API

mod ffi_seq;
pub use ffi_seq::ffi;

// ---------------------------------------------------------------------------------------
// Seeds

/// A fuzz target's entry function.
pub type Target = fn(&[u8]);

/// The targets, as named in `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 5] = [
    ("loader", loader),
    ("loader_structured", loader_structured),
    ("tokenizer", tokenizer),
    ("convert", convert),
    ("ffi", ffi),
];

fn repo(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Seed inputs of `target` made from the repository's real files: small random models of
/// each kind, the demo model's first bytes, truncations and bit flips of a small model;
/// text for the tokenizer; both kinds of `config.json` and the golden and Hugging Face
/// safetensors files (with their header-only truncations) for `convert`. The full demo
/// model and the large golden files are added by `fuzz/run.sh` (not committed).
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    use spark_sim::testmodel::{random_model, small_spark_config};
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    match target {
        "loader" => {
            let spark = small_spark_config();
            let mut dense = spark;
            dense.ffn_kind = FfnKind::Geglu;
            dense.ffn_r = 0;
            dense.attn_kind = AttnKind::Dense;
            dense.attn_r = 0;
            dense.tie_embeddings = false;
            dense.post_norms = true;
            dense.sliding_window = 4;
            let small = random_model(&spark, 1);
            out.push(("small_spark".into(), small.clone()));
            out.push(("small_dense".into(), random_model(&dense, 2)));
            let demo = demo_blob();
            out.push(("demo_head_4k".into(), demo[..4096].to_vec()));
            for cut in [0, 3, 16, 40, 200, small.len() / 2, small.len() - 1] {
                out.push((format!("small_spark_cut_{cut}"), small[..cut].to_vec()));
            }
            for at in [5, 9, 13, 20, 64, 300, small.len() - 2] {
                let mut v = small.clone();
                v[at] ^= 0x10;
                out.push((format!("small_spark_flip_{at}"), v));
            }
            let mut long = small.clone();
            long.push(0);
            out.push(("small_spark_long".into(), long));
            for (name, bytes) in seeds("loader_structured") {
                let mut v = vec![STRUCTURED];
                v.extend(bytes);
                out.push((format!("structured_{name}"), v));
            }
        }
        "loader_structured" => {
            for i in 0..8u8 {
                let bytes: Vec<u8> = (0..600u32).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i * 17)).collect();
                out.push((format!("pattern_{i}"), bytes));
            }
        }
        "tokenizer" => {
            let story = b"Once upon a time, there was a little girl named Lily. She loved to play outside.";
            out.push(("story".into(), story.to_vec()));
            out.push(("utf8".into(), "caf\u{e9} \u{1F600} \u{4e2d}\u{6587} na\u{ef}ve".as_bytes().to_vec()));
            out.push(("invalid_utf8".into(), vec![0xff, 0xc3, 0x28, 0xe2, 0x82, b'a', 0xf0, 0x9f, 0x98]));
            out.push(("ids".into(), (0u16..200).flat_map(|i| (i * 7).to_be_bytes()).collect()));
            out.push(("empty".into(), Vec::new()));
        }
        "convert" => {
            let with = |mode: u8, b: &[u8]| {
                let mut v = vec![mode];
                v.extend_from_slice(b);
                v
            };
            let cfg = spark_sim::checkpoint::config_to_json(&small_spark_config());
            out.push(("native_config".into(), with(0, cfg.as_bytes())));
            let hf_cfg = repo("tests/hf/tiny-gemma2/config.json");
            out.push(("hf_config".into(), with(1, &hf_cfg)));
            let ck = spark_sim::checkpoint::F32Checkpoint::random(&small_spark_config(), 3);
            let st = ck.to_safetensors_bytes().expect("writes");
            out.push(("native_checkpoint".into(), with(2, &st)));
            let hlen = 8 + u64::from_le_bytes(st[..8].try_into().expect("8 bytes")) as usize;
            out.push(("native_checkpoint_header".into(), with(2, &st[..hlen])));
            let hf = repo("tests/hf/tiny-gemma2/model.safetensors");
            let hlen = 8 + u64::from_le_bytes(hf[..8].try_into().expect("8 bytes")) as usize;
            out.push(("hf_header".into(), with(3, &hf[..hlen])));
            let golden = repo("tests/golden/spark_basic.safetensors");
            let hlen = 8 + u64::from_le_bytes(golden[..8].try_into().expect("8 bytes")) as usize;
            out.push(("golden_header".into(), with(2, &golden[..hlen])));
        }
        "ffi" => {
            // Open the demo model, init a session and a sampler, run a little.
            out.push(("open_only".into(), vec![0, 0]));
            for i in 0..6u8 {
                let bytes: Vec<u8> = (0..200u32).map(|j| (j as u8).wrapping_mul(13).wrapping_add(i * 29)).collect();
                let mut v = vec![0, 0];
                v.extend(bytes);
                out.push((format!("pattern_{i}"), v));
            }
        }
        _ => {}
    }
    out
}
