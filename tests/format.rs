//! `.spark` versions 2 (bundled `[K2 | V]` records) and 1 (separate, still read): round
//! trips through the writer and `spark_core::Model::load`, the same decode from both
//! layouts, and one test per `ModelError` variant (every file below has valid CRCs unless
//! the test is about CRCs, so each reaches the check it targets).

use spark_core::format::{crc32, FfnBundle, Header, MAX_HEADER_BYTES, PREAMBLE_BYTES, VERSION};
use spark_core::tensor::TensorEntry;
use spark_core::{Config, DType, FfnKind, Model, ModelError, TensorId, TensorKind};
use spark_sim::format::{assemble_version, parse_table};
use spark_sim::quant::quantize_rows;
use spark_sim::testmodel::{random_model, random_writer, small_spark_config};

fn geglu_config() -> Config {
    Config {
        ffn_kind: FfnKind::Geglu,
        ffn_r: 0,
        ffn_k: 64,
        d_ff: 64,
        post_norms: true,
        tie_embeddings: false,
        ..small_spark_config()
    }
}

fn valid() -> Vec<u8> {
    random_model(&small_spark_config(), 1)
}

/// The same model as [`valid`] in the version 1 layout.
fn valid_v1() -> Vec<u8> {
    let mut w = random_writer(&small_spark_config(), 1);
    w.version = 1;
    w.finish()
}

/// Re-assemble a file after editing its table, config or data (CRCs recomputed), keeping
/// its format version.
fn edit(blob: &[u8], f: impl FnOnce(&mut Header, &mut Vec<TensorEntry>, &mut Vec<u8>)) -> Vec<u8> {
    let version = u32::from_le_bytes(blob[4..8].try_into().unwrap());
    let (mut h, mut e, mut d) = parse_table(blob).expect("valid table");
    f(&mut h, &mut e, &mut d);
    assemble_version(version, &h.config, &h.tokenizer, &e, &d)
}

fn err(blob: &[u8]) -> ModelError {
    Model::load(blob).expect_err("model must be rejected")
}

fn find(e: &[TensorEntry], id: TensorId) -> usize {
    e.iter().position(|x| x.id == id).expect("tensor present")
}

#[test]
fn round_trip_spark_and_geglu() {
    for (cfg, version) in [(small_spark_config(), 2), (small_spark_config(), 1), (geglu_config(), 2)] {
        let mut w = random_writer(&cfg, 7);
        w.version = version;
        let blob = w.finish();
        let m = Model::load(&blob).expect("loads");
        assert_eq!((*m.config(), m.version()), (cfg, version));
        // Every tensor reads back identical through the zero-copy accessors: bytes, or for
        // the bundled K2 and V of version 2, rows of their `layer_matrix` views.
        let bundled = version == 2 && cfg.ffn_kind == FfnKind::Spark;
        for t in &w.tensors {
            if bundled && matches!(t.id.kind, TensorKind::K2 | TensorKind::V) {
                let q = m.layer_matrix(t.id.layer as usize, t.id.kind);
                let b = FfnBundle::of(&cfg);
                assert_eq!((q.rows, q.stride), (cfg.d_ff as usize, b.stride));
                assert_eq!(m.layer_bytes(t.id.layer as usize, t.id.kind), &[] as &[u8], "no separate {}", t.id);
                for r in 0..q.rows {
                    let want: Vec<i8> = t.bytes[r * q.cols..(r + 1) * q.cols].iter().map(|&v| v as i8).collect();
                    assert_eq!(q.row(r), &want[..], "tensor {} row {r}", t.id);
                }
                // The record padding is zero.
                let all = m.layer_bytes(t.id.layer as usize, TensorKind::K2V);
                for rec in all.chunks_exact(b.stride) {
                    assert!(rec[b.k2_cols..b.v_offset].iter().chain(&rec[b.v_offset + b.v_cols..]).all(|&v| v == 0));
                }
                continue;
            }
            let got = if t.id.kind.is_layer() {
                m.layer_bytes(t.id.layer as usize, t.id.kind)
            } else {
                m.global_bytes(t.id.kind)
            };
            assert_eq!(got, &t.bytes[..], "tensor {}", t.id);
        }
        // Matrix accessors give the right shape and scales.
        let kind = if cfg.ffn_kind == FfnKind::Spark { TensorKind::K2 } else { TensorKind::Wu };
        let mat = m.layer_matrix(1, kind);
        assert_eq!((mat.rows, mat.cols), (cfg.d_ff as usize, if cfg.ffn_kind == FfnKind::Spark { 20 } else { 32 }));
        assert_eq!(mat.scales.len(), mat.rows);
        assert!(mat.scales.get(3) > 0.0);
        // Every tensor offset is 64-byte aligned.
        let (_, entries, _) = parse_table(&blob).unwrap();
        assert!(entries.iter().all(|e| e.offset % 64 == 0));
    }
}

#[test]
fn crc32_matches_independent_implementation() {
    let blob = valid();
    for len in [0, 1, 17, 1000, blob.len()] {
        assert_eq!(crc32(&blob[..len]), crc32fast::hash(&blob[..len]));
    }
}

#[test]
fn quantize_rows_error_is_bounded() {
    let w: Vec<f32> = (0..300).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
    let (q, s) = quantize_rows(&w, 3, 100);
    for (i, &v) in w.iter().enumerate() {
        let deq = q[i] as f32 * s[i / 100];
        assert!((v - deq).abs() <= s[i / 100] * 0.5 + 1e-6, "element {i}: {v} vs {deq}");
    }
    let (q0, s0) = quantize_rows(&[0.0; 8], 2, 4);
    assert_eq!((q0, s0), (vec![0; 8], vec![0.0; 2]));
}

#[test]
fn truncated_at_every_section_boundary() {
    let blob = valid();
    let (h, e, _) = parse_table(&blob).unwrap();
    let header_end = PREAMBLE_BYTES + u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize;
    let first_tensor = (h.data_offset + e[0].offset) as usize;
    let cuts = [
        0,
        3,
        4,
        15,
        PREAMBLE_BYTES,
        header_end - 1,
        header_end,
        h.data_offset as usize,
        first_tensor + 1,
        blob.len() - 1,
    ];
    for cut in cuts {
        match err(&blob[..cut]) {
            ModelError::Truncated { needed, available, .. } => {
                assert_eq!(available, cut as u64);
                assert!(needed > cut as u64);
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert!(matches!(err(&longer), ModelError::TrailingBytes { .. }));
}

#[test]
fn bad_magic_version_and_header_size() {
    let mut b = valid();
    b[0] = b'X';
    assert!(matches!(err(&b), ModelError::BadMagic { found } if &found == b"XPRK"));
    for v in [0u8, 3, 255] {
        let mut b = valid();
        b[4] = v;
        assert_eq!(err(&b), ModelError::UnsupportedVersion { found: v as u32, supported: VERSION });
    }
    assert!(err(&{
        let mut b = valid();
        b[4] = 3;
        b
    })
    .to_string()
    .contains("spark-sim convert"));
    let mut b = valid();
    b[8..12].copy_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
    assert_eq!(err(&b), ModelError::HeaderTooLarge { len: MAX_HEADER_BYTES + 1, limit: MAX_HEADER_BYTES });
}

#[test]
fn bad_crcs() {
    let mut b = valid();
    b[PREAMBLE_BYTES + 2] ^= 0x40;
    assert!(matches!(err(&b), ModelError::HeaderCrc { .. }));
    let mut b = valid();
    let n = b.len();
    b[n - 5] ^= 1;
    assert!(matches!(err(&b), ModelError::DataCrc { .. }));
}

#[test]
fn undecodable_header() {
    let mut b = valid();
    let hlen = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
    for x in &mut b[PREAMBLE_BYTES..PREAMBLE_BYTES + 8] {
        *x = 0xFF; // varints that never end / out-of-range enum tags
    }
    let c = crc32(&b[PREAMBLE_BYTES..PREAMBLE_BYTES + hlen]);
    b[12..16].copy_from_slice(&c.to_le_bytes());
    assert!(matches!(err(&b), ModelError::HeaderDecode { .. } | ModelError::BadConfig { .. }));
}

#[test]
fn overlapping_misaligned_out_of_bounds() {
    let blob = valid();
    let b = edit(&blob, |_, e, _| e[3].offset = e[2].offset);
    assert!(
        matches!(err(&b), ModelError::TensorOverlap { first, second } if first == b_id(&blob, 2) && second == b_id(&blob, 3))
    );
    let b = edit(&blob, |_, e, _| e[3].offset += 1);
    assert!(matches!(err(&b), ModelError::TensorMisaligned { .. }));
    let b = edit(&blob, |_, e, d| {
        let last = e.len() - 1;
        e[last].offset = (d.len() as u32).div_ceil(64) * 64 + 64;
    });
    assert!(matches!(err(&b), ModelError::TensorOutOfBounds { .. }));
}

fn b_id(blob: &[u8], i: usize) -> TensorId {
    parse_table(blob).unwrap().1[i].id
}

/// The version 1 and version 2 forms of the same file, with the tensor holding each
/// layer's `K2` rows in it (`ffn.k2`, `ffn.k2v`).
fn both_versions() -> [(Vec<u8>, TensorId); 2] {
    [(valid_v1(), TensorId::layer(1, TensorKind::K2)), (valid(), TensorId::layer(1, TensorKind::K2V))]
}

#[test]
fn layouts_of_the_other_version_are_rejected() {
    // A bundled tensor in a version 1 file, separate K2/V in a version 2 file.
    let v1 = valid_v1();
    let b = edit(&v1, |_, e, _| {
        let i = find(e, TensorId::layer(0, TensorKind::K2));
        e[i].id.kind = TensorKind::K2V;
    });
    assert!(matches!(err(&b), ModelError::UnexpectedTensor { id } if id.kind == TensorKind::K2V));
    let v2 = valid();
    let b = edit(&v2, |_, e, _| {
        let i = find(e, TensorId::layer(0, TensorKind::K2V));
        e[i].id.kind = TensorKind::K2;
    });
    assert!(matches!(err(&b), ModelError::UnexpectedTensor { id } if id.kind == TensorKind::K2));
    // Version 1 bytes labelled version 2 (and back) are refused, not misread.
    let mut b = v1.clone();
    b[4] = 2;
    assert!(Model::load(&b).is_err());
    let mut b = v2.clone();
    b[4] = 1;
    assert!(Model::load(&b).is_err());
}

/// Both layouts decode to the same bits: the bundled records are a layout change only.
#[test]
fn version_1_and_2_decode_identically() {
    let cfg = small_spark_config();
    let (v1, v2) = (valid_v1(), valid());
    assert!(v2.len() != v1.len());
    let (m1, m2) = (Model::load(&v1).unwrap(), Model::load(&v2).unwrap());
    let toks: Vec<u32> = (0..cfg.max_seq_len).map(|i| (i * 5 + 1) % cfg.vocab_size).collect();
    let run = |m: &Model<'_>| {
        let mut arena = vec![0u8; m.arena_bytes(cfg.max_seq_len as usize)];
        let mut s = spark_core::Session::<spark_hal::Native>::new(m, &mut arena).unwrap();
        toks.iter().map(|&t| s.step(t).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    assert_eq!(run(&m1), run(&m2));
}

#[test]
fn missing_duplicate_unexpected() {
    for (blob, k2) in both_versions() {
        missing_duplicate_unexpected_in(&blob, k2);
    }
}

fn missing_duplicate_unexpected_in(blob: &[u8], k2: TensorId) {
    let b = edit(blob, |_, e, _| {
        let i = find(e, k2);
        e.remove(i);
    });
    assert_eq!(err(&b), ModelError::MissingTensor { id: k2 });
    assert_eq!(format!("{}", err(&b)), format!("tensor layers.1.{}: missing", k2.kind.name()));

    let b = edit(blob, |_, e, _| {
        let i = find(e, k2);
        let dup = e[i];
        e.insert(i + 1, dup);
    });
    assert_eq!(err(&b), ModelError::DuplicateTensor { id: k2 });

    // A tensor for a layer that does not exist.
    let b = edit(blob, |_, e, _| {
        let i = find(e, k2);
        e[i].id.layer = 2;
    });
    assert!(matches!(err(&b), ModelError::UnexpectedTensor { id } if id.layer == 2));

    // A GeGLU tensor in a Spark model.
    let b = edit(blob, |_, e, _| {
        let i = find(e, k2);
        e[i].id.kind = TensorKind::Wg;
    });
    assert!(matches!(err(&b), ModelError::UnexpectedTensor { id } if id.kind == TensorKind::Wg));
}

#[test]
fn wrong_shape_dtype_length() {
    // small_spark_config: d 32, r 12, f 96: K2 [96, 20]; records of 20 + 12 pad + 32 = 64.
    for ((blob, k2), cols) in both_versions().into_iter().zip([20u32, 64]) {
        let b = edit(&blob, |_, e, _| {
            let i = find(e, k2);
            e[i].shape = [96, 12];
        });
        let e = err(&b);
        assert_eq!(e, ModelError::TensorShape { id: k2, expected: [96, cols], found: [96, 12] });
        let name = k2.kind.name();
        assert_eq!(e.to_string(), format!("tensor layers.1.{name}: expected shape [96, {cols}], found [96, 12]"));

        let b = edit(&blob, |_, e, _| {
            let i = find(e, k2);
            e[i].dtype = DType::U8;
        });
        assert!(matches!(err(&b), ModelError::TensorDType { expected: DType::I8, found: DType::U8, .. }));

        let b = edit(&blob, |_, e, _| {
            let i = find(e, k2);
            e[i].len -= 1;
        });
        let n = 96 * cols as u64;
        assert!(
            matches!(err(&b), ModelError::TensorLength { expected, found, .. } if expected == n && found as u64 == n - 1)
        );
    }
}

#[test]
fn non_finite_scale_rejected() {
    let blob = valid();
    let id = TensorId::layer(0, TensorKind::VScale);
    let b = edit(&blob, |_, e, d| {
        let i = find(e, id);
        let at = e[i].offset as usize + 4 * 5;
        d[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert_eq!(err(&b), ModelError::NonFiniteValue { id, index: 5 });
}

/// Finite but absurd values (DESIGN.md, "Model value limits"): largest-float and
/// negative scales, huge norm weights are refused with `ValueOutOfRange`; the config's
/// float fields outside their ranges with `BadConfig`. Each of these loaded before the
/// limits and produced a stream of one token.
#[test]
fn absurd_finite_values_rejected() {
    let blob = valid();
    let cases: [(TensorId, f32, f32); 5] = [
        (TensorId::layer(0, TensorKind::VScale), f32::MAX, spark_core::format::MAX_WEIGHT_SCALE),
        (TensorId::layer(1, TensorKind::WqScale), 1e6, spark_core::format::MAX_WEIGHT_SCALE),
        (TensorId::global(TensorKind::EmbedScale), -0.5, spark_core::format::MAX_WEIGHT_SCALE),
        (TensorId::layer(0, TensorKind::AttnNorm), 3e38, spark_core::format::MAX_NORM_WEIGHT),
        (TensorId::global(TensorKind::FinalNorm), -1e9, spark_core::format::MAX_NORM_WEIGHT),
    ];
    for (id, v, limit) in cases {
        let b = edit(&blob, |_, e, d| {
            let i = find(e, id);
            let at = e[i].offset as usize + 4 * 3;
            d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        });
        assert_eq!(err(&b), ModelError::ValueOutOfRange { id, index: 3, limit }, "{id} = {v}");
    }
    // Values at the limits load; a negative norm weight inside the range loads.
    for (id, v) in [
        (TensorId::layer(0, TensorKind::VScale), spark_core::format::MAX_WEIGHT_SCALE),
        (TensorId::layer(0, TensorKind::VScale), 0.0),
        (TensorId::layer(0, TensorKind::AttnNorm), -spark_core::format::MAX_NORM_WEIGHT),
    ] {
        let b = edit(&blob, |_, e, d| {
            let i = find(e, id);
            let at = e[i].offset as usize + 4 * 3;
            d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        });
        Model::load(&b).unwrap_or_else(|e| panic!("{id} = {v}: {e}"));
    }
    let base = small_spark_config();
    let cfgs: Vec<(&str, Config)> = vec![
        ("embed_scale", Config { embed_scale: 3e38, ..base }),
        ("embed_scale", Config { embed_scale: 0.0, ..base }),
        ("embed_scale", Config { embed_scale: -2.0, ..base }),
        ("rope_theta", Config { rope_theta: 1e-45, ..base }),
        ("rope_theta", Config { rope_theta: 0.5, ..base }),
        ("rope_theta", Config { rope_theta: 3e38, ..base }),
        ("norm_eps", Config { norm_eps: 2.0, ..base }),
        ("query_pre_attn_scalar", Config { query_pre_attn_scalar: 1e-40, ..base }),
        ("query_pre_attn_scalar", Config { query_pre_attn_scalar: 3e38, ..base }),
        ("attn_logit_softcap", Config { attn_logit_softcap: 1e-30, ..base }),
        ("final_logit_softcap", Config { final_logit_softcap: 3e38, ..base }),
    ];
    for (field, cfg) in cfgs {
        let b = edit(&blob, |h, _, _| h.config = cfg);
        match err(&b) {
            ModelError::BadConfig { field: f, .. } => assert_eq!(f, field, "{cfg:?}"),
            other => panic!("expected BadConfig({field}), got {other:?}"),
        }
    }
}

#[test]
fn too_many_tensors_and_bad_data_offset() {
    let blob = valid();
    let (mut h, e, d) = parse_table(&blob).unwrap();
    h.n_tensors = 100_000;
    let mut hb = postcard::to_allocvec(&h).unwrap();
    for x in &e {
        hb.extend(postcard::to_allocvec(x).unwrap());
    }
    let mut b = Vec::new();
    b.extend_from_slice(b"SPRK");
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(hb.len() as u32).to_le_bytes());
    b.extend_from_slice(&crc32(&hb).to_le_bytes());
    b.extend_from_slice(&hb);
    b.resize(h.data_offset as usize, 0);
    b.extend_from_slice(&d);
    assert_eq!(err(&b), ModelError::TooManyTensors { count: 100_000 });

    // data_offset pointing into the header.
    let (mut h, e, d) = parse_table(&blob).unwrap();
    h.data_offset = 0;
    h.n_tensors = e.len() as u32;
    let hb = postcard::to_allocvec(&h).unwrap();
    let mut b = Vec::new();
    b.extend_from_slice(b"SPRK");
    b.extend_from_slice(&1u32.to_le_bytes());
    let mut full = hb.clone();
    for x in &e {
        full.extend(postcard::to_allocvec(x).unwrap());
    }
    b.extend_from_slice(&(full.len() as u32).to_le_bytes());
    b.extend_from_slice(&crc32(&full).to_le_bytes());
    b.extend_from_slice(&full);
    b.extend_from_slice(&d);
    assert_eq!(err(&b), ModelError::BadDataOffset { offset: 0 });
}

#[test]
fn absurd_configs_rejected() {
    let base = small_spark_config();
    let cases: Vec<(&str, Config)> = vec![
        ("ffn_r", Config { ffn_r: base.d_model, ..base }),
        ("ffn_r", Config { ffn_r: 0, ..base }),
        ("ffn_k", Config { ffn_k: base.d_ff + 1, ..base }),
        ("ffn_k", Config { ffn_k: 0, ..base }),
        ("d_model", Config { d_model: 0, ..base }),
        ("n_kv_heads", Config { n_kv_heads: 3, ..base }),
        ("n_kv_heads", Config { n_kv_heads: 0, ..base }),
        ("n_heads", Config { n_heads: 0, ..base }),
        ("head_dim", Config { head_dim: 7, ..base }),
        ("attn_r", Config { attn_r: 8, ..base }),
        ("attn_r", Config { attn_r: 3, ..base }),
        ("n_layers", Config { n_layers: 0, ..base }),
        ("n_layers", Config { n_layers: 49, ..base }),
        ("vocab_size", Config { vocab_size: 1, ..base }),
        ("max_seq_len", Config { max_seq_len: 0, ..base }),
        ("rope_theta", Config { rope_theta: f32::NAN, ..base }),
        ("norm_eps", Config { norm_eps: -1.0, ..base }),
        ("query_pre_attn_scalar", Config { query_pre_attn_scalar: 0.0, ..base }),
        ("attn_logit_softcap", Config { attn_logit_softcap: f32::INFINITY, ..base }),
        ("topk_cap_factor", Config { topk_cap_factor: 0.5, ..base }),
        ("ffn_r", Config { ffn_kind: FfnKind::Geglu, ..base }),
    ];
    let blob = valid();
    for (field, cfg) in cases {
        let b = edit(&blob, |h, _, _| h.config = cfg);
        match err(&b) {
            ModelError::BadConfig { field: f, .. } => assert_eq!(f, field, "{cfg:?}"),
            other => panic!("expected BadConfig({field}), got {other:?}"),
        }
    }
}

#[test]
fn every_error_has_a_message() {
    let blob = valid();
    let msgs = [err(&blob[..10]), err(&edit(&blob, |h, _, _| h.config.d_model = 0))].map(|e| e.to_string());
    assert!(msgs[0].contains("truncated") && msgs[0].contains("preamble"));
    assert_eq!(msgs[1], "config field d_model: must be in 2..=65536");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Arbitrary corruption (byte flips, truncation) never panics the loader.
        #[test]
        fn corrupted_files_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
                                       cut in any::<usize>(), fix_crc in any::<bool>()) {
            let mut b = valid();
            for (at, v) in flips {
                let n = b.len();
                b[at % n] ^= v;
            }
            if fix_crc {
                // Re-sign the header so corruption reaches the decoder and the validators.
                let hlen = (u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize).min(b.len() - PREAMBLE_BYTES);
                let c = crc32(&b[PREAMBLE_BYTES..PREAMBLE_BYTES + hlen]);
                b[12..16].copy_from_slice(&c.to_le_bytes());
            }
            let keep = b.len() - cut % 64;
            let _ = Model::load(&b[..keep]);
        }
    }
}
