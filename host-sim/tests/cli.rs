//! The `spark-sim` binary end to end: every subcommand on small models written to a temp
//! dir (random weights from `testmodel`, a BPE tokenizer trained on a short text), bad
//! input of every kind (one-line error, exit code 1 or 2, never a panic), determinism of
//! `generate --json` across runs and backends, the `.npy` writer, quiet exit on a closed
//! stdout, `convert` on a random checkpoint and on the Hugging Face directory
//! `tests/hf/tiny-gemma2`, and the limits: non-regular input files, sizes that overflow,
//! bench rotations on large caches, huge `--tokens`, arenas the host cannot give (under
//! `ulimit -v`), and the exit status of an internal error.
//!
//! The tests that join `spark-sim` with `spark-core` and the golden data (oracle, golden
//! models, the bundled model, format, session, tokenizer) are in the top-level `tests/`
//! package (`spark-tests`).

use spark_core::{AttnKind, Config, FfnKind, Model};
use spark_sim::checkpoint::{to_writer, F32Checkpoint};
use spark_sim::npy;
use spark_sim::testmodel::{random_writer, small_spark_config};
use spark_sim::tokenizer::BpeTokenizer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CORPUS: &str = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat by the log. \
                      the small cat ran to the big dog and the dog ran to the cat. ";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spark-sim"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("spark-sim runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Success, and nothing alarming on stderr.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    let e = stderr(&o);
    assert!(o.status.success(), "spark-sim {args:?} failed ({:?}): {e}", o.status.code());
    assert_no_panic(&e);
    stdout(&o)
}

fn assert_no_panic(e: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "internal error", "stack backtrace"] {
        assert!(!e.contains(bad), "stderr mentions {bad:?}: {e}");
    }
}

/// Fails with `code`, a first stderr line `error: ...` containing every `needles` (case
/// insensitive); runtime errors (code 1) are exactly one line.
fn err(args: &[&str], code: i32, needles: &[&str]) -> String {
    check_err(&run(args), args, code, needles)
}

/// [`run`], but a run still going after `limit` is killed and fails the test (for input
/// that could make the command block or run away).
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spark-sim starts");
    let start = Instant::now();
    while child.try_wait().expect("wait for spark-sim").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spark-sim {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("spark-sim output")
}

/// [`err`] on an output already run.
fn check_err(o: &Output, args: &[&str], code: i32, needles: &[&str]) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "spark-sim {args:?}: expected exit {code}, stderr: {e}");
    assert_no_panic(&e);
    let first = e.lines().next().unwrap_or("");
    assert!(first.starts_with("error:"), "spark-sim {args:?}: first stderr line is not an error: {e}");
    for n in needles {
        assert!(first.to_lowercase().contains(&n.to_lowercase()), "spark-sim {args:?}: {n:?} not in {first:?}");
    }
    if code == 1 {
        assert_eq!(e.trim_end().lines().count(), 1, "spark-sim {args:?}: error is not one line: {e}");
    }
    first.to_string()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("spark-sim {args:?}: stdout is not JSON ({e}): {out}"))
}

fn text_config(vocab: u32) -> Config {
    Config {
        vocab_size: vocab,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        d_ff: 96,
        ffn_kind: FfnKind::Spark,
        ffn_r: 12,
        ffn_k: 9,
        attn_kind: AttnKind::Spark,
        attn_r: 4,
        attn_k: 5,
        max_seq_len: 32,
        rope_theta: 10_000.0,
        norm_eps: 1e-6,
        query_pre_attn_scalar: 8.0,
        attn_logit_softcap: 0.0,
        final_logit_softcap: 0.0,
        sliding_window: 6,
        embed_scale: 32f32.sqrt(),
        tie_embeddings: true,
        post_norms: true,
        topk_cap_factor: 2.0,
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    tok: BpeTokenizer,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

/// Files shared by the tests: `text.spark` (random Spark model + tokenizer), `ids.spark`
/// (no tokenizer), `tokenizer.json`, `story.txt`, `ck.safetensors` (train/ naming).
fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let tok = BpeTokenizer::train_with_specials(CORPUS.as_bytes(), 300);
        let cfg = text_config(tok.vocab_size() as u32);
        let mut w = random_writer(&cfg, 11);
        tok.write_into(&mut w);
        std::fs::write(dir.path().join("text.spark"), w.finish()).unwrap();
        std::fs::write(dir.path().join("ids.spark"), random_writer(&text_config(64), 5).finish()).unwrap();
        let tj = serde_json::json!({
            "tokens": tok.tokens, "merges": tok.merges.iter().map(|&(a, b, c)| [a, b, c]).collect::<Vec<_>>(),
            "bos_id": tok.bos_id, "eos_id": tok.eos_id,
        });
        std::fs::write(dir.path().join("tokenizer.json"), tj.to_string()).unwrap();
        std::fs::write(dir.path().join("story.txt"), CORPUS.repeat(2)).unwrap();
        let ck = F32Checkpoint::random(&cfg, 3);
        std::fs::write(dir.path().join("ck.safetensors"), ck.to_safetensors_bytes().unwrap()).unwrap();
        Fixture { dir, tok }
    })
}

#[test]
fn help_has_an_example_for_every_subcommand() {
    let top = ok(&["--help"]);
    for sub in ["convert", "inspect", "generate", "eval", "logits", "bench", "plan", "random-model"] {
        assert!(top.contains(sub), "top-level help lacks {sub}");
        let h = ok(&[sub, "--help"]);
        assert!(h.contains("Example"), "{sub} --help has no example:\n{h}");
    }
    let plan = ok(&["plan", "--help"]);
    assert!(plan.contains("mps2-an386") && plan.contains("mps3-an547"), "plan presets not documented");
    err(&["frobnicate"], 2, &["unrecognized subcommand"]);
}

#[test]
fn npy_header_hand_computed_and_parsed_back() {
    // magic, v1.0, HLEN = 118 (little endian), the dict, spaces to byte 127, newline.
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }";
    let mut want = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    want.extend_from_slice(dict.as_bytes());
    want.extend(std::iter::repeat_n(b' ', 128 - 10 - dict.len() - 1));
    want.push(b'\n');
    assert_eq!(npy::header_f32(&[3, 5]), want);
    for shape in [vec![3usize, 5], vec![7], vec![1, 300], vec![2, 3, 4]] {
        let h = npy::header_f32(&shape);
        assert_eq!(h.len() % 64, 0, "{shape:?}");
        let p = npy::parse_header(&h).unwrap();
        assert_eq!((p.descr.as_str(), p.fortran_order, &p.shape, p.data_offset), ("<f4", false, &shape, h.len()));
    }
}

#[test]
fn inspect_text_and_json() {
    let f = fx();
    let t = ok(&["inspect", &f.p("text.spark")]);
    assert!(t.contains("arena") && t.contains("dense twin") && t.contains("ByteBpe"), "{t}");
    let v = json(&["inspect", &f.p("text.spark"), "--json"]);
    assert!(v["arena_bytes"].as_u64().unwrap() > 0);
    let m = &v["macs_per_token"];
    assert!(m["dense_twin"]["ffn"].as_u64().unwrap() > m["model"]["ffn"].as_u64().unwrap());
}

#[test]
fn generate_streams_text_and_is_deterministic() {
    let f = fx();
    let m = f.p("text.spark");
    let out = ok(&["generate", "--model", &m, "--prompt", "the cat", "--tokens", "6"]);
    assert!(out.starts_with("the cat"), "prompt not echoed: {out:?}");
    let args = [
        "generate",
        "--model",
        &m,
        "--prompt",
        "the dog",
        "--tokens",
        "10",
        "--temperature",
        "0.9",
        "--top-p",
        "0.95",
        "--seed",
        "42",
        "--json",
    ];
    let strip = |mut v: serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("tokens_per_s");
        o.remove("prefill_tokens_per_s");
        o.remove("backend");
        v
    };
    let a = strip(json(&args));
    let b = strip(json(&args));
    assert_eq!(a, b, "same seed, different output");
    assert_eq!(a["logits_digest"].as_str().unwrap().len(), 16);
    let ids = a["token_ids"].as_array().unwrap();
    assert!(!ids.is_empty() && ids.len() <= 10);
    let expected_text = String::from_utf8_lossy(
        &f.tok
            .decode(
                &ids.iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .filter(|&i| Some(i) != f.tok.eos_id)
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
    )
    .into_owned();
    assert_eq!(a["text"].as_str().unwrap(), expected_text);
    assert!(a["stats"]["layers"].as_array().unwrap().len() == 2);

    let mut scalar_args = args.to_vec();
    scalar_args.extend(["--backend", "scalar"]);
    let s = strip(json(&scalar_args));
    let mut auto_args = args.to_vec();
    auto_args.extend(["--backend", "auto"]);
    let n = strip(json(&auto_args));
    assert_eq!(s["token_ids"], n["token_ids"]);
    assert_eq!(s["logits_digest"], n["logits_digest"], "scalar and auto backends differ");
}

#[test]
fn generate_ids_model_and_stats() {
    let f = fx();
    let m = f.p("ids.spark");
    let o = run(&["generate", "--model", &m, "--prompt-ids", "1,2,3", "--tokens", "5", "--stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (out, e) = (stdout(&o), stderr(&o));
    assert!(out.starts_with("1 2 3 |") && out.split_whitespace().count() == 4 + 5, "{out:?}");
    assert!(e.contains("ffn active") && e.contains("tok/s"), "{e}");
    // Context full: 30 prompt ids + 8 tokens > 32.
    let long: Vec<String> = (0..30).map(|i| (i % 60).to_string()).collect();
    let o = run(&["generate", "--model", &m, "--prompt-ids", &long.join(","), "--tokens", "8"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("context is full"), "{}", stderr(&o));
}

#[test]
fn generate_errors() {
    let f = fx();
    let m = f.p("text.spark");
    err(&["generate", "--model", &m, "--tokens", "0"], 2, &["--tokens"]);
    err(&["generate", "--model", &f.p("missing.spark")], 1, &["missing.spark", "not found"]);
    let d = f.path("a_directory.spark");
    std::fs::create_dir_all(&d).unwrap();
    err(&["generate", "--model", d.to_str().unwrap()], 1, &["a_directory.spark", "is a directory"]);
    std::fs::write(f.path("empty.spark"), b"").unwrap();
    err(&["generate", "--model", &f.p("empty.spark")], 1, &["empty.spark", "not a valid .spark model"]);
    let long = "the cat sat on the mat ".repeat(40);
    err(&["generate", "--model", &m, "--prompt", &long], 1, &["prompt", "context"]);
    err(&["generate", "--model", &f.p("ids.spark"), "--prompt", "hi"], 1, &["no tokenizer", "--prompt-ids"]);
    err(&["generate", "--model", &f.p("ids.spark"), "--prompt-ids", "1,x"], 2, &["token id"]);
    err(&["generate", "--model", &f.p("ids.spark"), "--prompt-ids", "1,999"], 1, &["999", "vocabulary"]);
    err(&["generate", "--model", &m, "--temperature", "-1"], 2, &["temperature"]);
    // A truncated .spark file.
    let blob = std::fs::read(f.path("text.spark")).unwrap();
    let cut = f.path("truncated.spark");
    std::fs::write(&cut, &blob[..blob.len() / 2]).unwrap();
    err(&["generate", "--model", cut.to_str().unwrap()], 1, &["truncated.spark", "truncated"]);
    err(&["inspect", cut.to_str().unwrap()], 1, &["truncated"]);
    // Not a model at all.
    err(&["inspect", &f.p("story.txt")], 1, &["not a valid .spark", "magic"]);
}

#[test]
fn logits_print_json_and_npy() {
    let f = fx();
    let m = f.p("ids.spark");
    let t = ok(&["logits", "--model", &m, "--ids", "1,2,3"]);
    assert_eq!(t.lines().filter(|l| l.starts_with("pos")).count(), 3, "{t}");
    let v = json(&["logits", "--model", &m, "--ids", "1,2,3", "--json"]);
    let rows = v["logits"].as_array().unwrap();
    assert_eq!((rows.len(), rows[0].as_array().unwrap().len()), (3, 64));
    let npy_path = f.path("l.npy");
    ok(&["logits", "--model", &m, "--ids", "4,5,6,7", "--out", npy_path.to_str().unwrap()]);
    let bytes = std::fs::read(&npy_path).unwrap();
    let h = npy::parse_header(&bytes).unwrap();
    assert_eq!((h.descr.as_str(), h.fortran_order, h.shape.clone()), ("<f4", false, vec![4, 64]));
    assert_eq!(bytes.len(), h.data_offset + 4 * 64 * 4);
    // The first row equals the JSON logits of the same ids.
    let v = json(&["logits", "--model", &m, "--ids", "4,5,6,7", "--json"]);
    let first = f32::from_le_bytes(bytes[h.data_offset..h.data_offset + 4].try_into().unwrap());
    assert_eq!(first, v["logits"][0][0].as_f64().unwrap() as f32);
    // The f32 oracle is close to the int8 runtime on the same (dequantized) weights.
    let o = json(&["logits", "--model", &m, "--ids", "4,5,6,7", "--oracle", "f32", "--json"]);
    let d = (o["logits"][3][0].as_f64().unwrap() - v["logits"][3][0].as_f64().unwrap()).abs();
    assert!(d < 0.5, "oracle and int8 far apart: {d}");
    err(&["logits", "--model", &m, "--ids", "1,2,64"], 1, &["64", "vocabulary"]);
}

#[test]
fn eval_text_json_and_plot() {
    let f = fx();
    let svg = f.path("ffn.svg");
    let t = ok(&["eval", "--model", &f.p("text.spark"), "--text", &f.p("story.txt"), "--plot", svg.to_str().unwrap()]);
    assert!(t.contains("perplexity") && t.contains("dequantized int8 weights"), "{t}");
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains("<svg") && s.contains("configured k/f"), "not an SVG plot");
    let v = json(&["eval", "--model", &f.p("text.spark"), "--text", &f.p("story.txt"), "--max-tokens", "40", "--json"]);
    assert!(v["perplexity_int8"].as_f64().unwrap() > 1.0);
    assert!(v["top1_agreement"].as_f64().unwrap() > 0.0);
    assert!(v["windows"].as_u64().unwrap() >= 2, "40 tokens in a 32-token context need 2 windows");
    // With the float checkpoint (same config) as the oracle's weights.
    let v = json(&[
        "eval",
        "--model",
        &f.p("text.spark"),
        "--text",
        &f.p("story.txt"),
        "--max-tokens",
        "20",
        "--checkpoint",
        &f.p("ck.safetensors"),
        "--json",
    ]);
    assert!(v["oracle"].as_str().unwrap().contains("unquantized"));
    err(&["eval", "--model", &f.p("ids.spark"), "--text", &f.p("story.txt")], 1, &["no tokenizer"]);
    err(&["eval", "--model", &f.p("text.spark"), "--text", &f.p("nope.txt")], 1, &["nope.txt", "not found"]);
}

#[test]
fn convert_train_checkpoint_with_tokenizer_and_bad_inputs() {
    let f = fx();
    let out = f.path("conv.spark");
    let t =
        ok(&["convert", &f.p("ck.safetensors"), "-o", out.to_str().unwrap(), "--tokenizer", &f.p("tokenizer.json")]);
    assert!(t.contains("worst rel L2") && t.contains("tokenizer"), "{t}");
    let v = json(&["inspect", out.to_str().unwrap(), "--json"]);
    assert_eq!(v["tokenizer"]["kind"], "ByteBpe");
    ok(&["generate", "--model", out.to_str().unwrap(), "--prompt", "a cat", "--tokens", "3"]);

    // Tokenizer whose vocabulary differs from the model's.
    let small = f.path("small_tok.json");
    let bt = BpeTokenizer::bytes_only();
    std::fs::write(
        &small,
        serde_json::json!({"tokens": bt.tokens, "merges": [], "bos_id": null, "eos_id": null}).to_string(),
    )
    .unwrap();
    err(
        &["convert", &f.p("ck.safetensors"), "-o", out.to_str().unwrap(), "--tokenizer", small.to_str().unwrap()],
        1,
        &["256 tokens", "vocab_size"],
    );

    // A checkpoint with a missing and one with a mis-shaped tensor.
    let ck = F32Checkpoint::random(&text_config(f.tok.vocab_size() as u32), 4);
    let mut missing = ck.clone();
    missing.tensors.remove("layers.1.ffn.k2");
    let mp = write_st(f.dir.path(), "missing.safetensors", &missing);
    err(&["convert", &mp, "-o", out.to_str().unwrap()], 1, &["layers.1.ffn.k2", "missing"]);
    let mut bad = ck.clone();
    let (_, v) = bad.tensors.remove("layers.0.attn.wq").unwrap();
    bad.tensors.insert("layers.0.attn.wq".into(), (vec![16, 64], v));
    let bp = write_st(f.dir.path(), "misshaped.safetensors", &bad);
    err(&["convert", &bp, "-o", out.to_str().unwrap()], 1, &["layers.0.attn.wq", "expected shape"]);
    err(&["convert", &f.p("nothing.safetensors"), "-o", out.to_str().unwrap()], 1, &["not found"]);
    err(&["convert", &f.p("story.txt"), "-o", out.to_str().unwrap()], 1, &["safetensors"]);
}

fn write_st(dir: &Path, name: &str, ck: &F32Checkpoint) -> String {
    let p = dir.join(name);
    std::fs::write(&p, ck.to_safetensors_bytes().unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bench_small_shapes() {
    let f = fx();
    let m = f.p("text.spark");
    let ids = f.p("ids.spark");
    let v = json(&["bench", "ffn", "--shape", &m, "--iters", "3", "--llc", "256K", "--json"]);
    for k in [
        "spark_ms",
        "dense_ms",
        "speedup",
        "bandwidth_gbs",
        "spark_of_bound",
        "speedup_paired_median",
        "interleaved_read_gbs",
        "spark_of_interleaved_read",
        "dense_of_interleaved_read",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k} missing: {v}");
    }
    let q = |k: &str| v[k].as_f64().unwrap();
    assert!(
        q("speedup_paired_q1") <= q("speedup_paired_median") && q("speedup_paired_median") <= q("speedup_paired_q3")
    );
    // Output-product rows read: at most the selection (zero coefficients are skipped).
    assert!(q("spark_v_rows_mean") > 0.0 && q("spark_v_rows_mean") <= q("active_mean"), "{v}");
    assert!(q("dense_wd_rows_mean") > 0.0 && q("dense_wd_rows_mean") <= q("f_g"), "{v}");
    let t = ok(&["bench", "attn", "--shape", &m, "--ctx", "64", "--iters", "3", "--llc", "256K"]);
    assert!(t.contains("speedup") && t.contains("GB/s") && t.contains("V rows read"), "{t}");
    let v = json(&["bench", "attn", "--shape", &m, "--ctx", "64", "--iters", "3", "--llc", "256K", "--json"]);
    let q = |k: &str| v[k].as_f64().unwrap();
    assert!(q("spark_v_rows_mean") > 0.0 && q("spark_v_rows_mean") <= q("attended_mean"), "{v}");
    assert!(q("dense_v_rows_mean") > 0.0 && q("dense_v_rows_mean") <= q("ctx"), "{v}");
    let v = json(&[
        "bench",
        "model",
        "--shape",
        &m,
        "--dense",
        &f.p("ids.spark"),
        "--ctx",
        "4",
        "--iters",
        "3",
        "--llc",
        "256K",
        "--json",
    ]);
    assert!(v["speedup"].as_f64().unwrap() > 0.0);
    // A context list: one JSON object per context, in the order given, over the same two
    // models, with the byte ceiling beside the speedup; by synthetic KV fill or --prefill.
    for fill in ["synthetic", "prefill"] {
        let mut args = vec!["bench", "model", "--shape", &m, "--dense", &ids, "--ctx", "6,2", "--iters", "3", "--json"];
        if fill == "prefill" {
            args.push("--prefill");
        }
        let out = ok(&args);
        let vs: Vec<serde_json::Value> =
            serde_json::Deserializer::from_str(&out).into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(vs.iter().map(|v| v["ctx"].as_u64().unwrap()).collect::<Vec<_>>(), [6, 2], "{out}");
        for v in &vs {
            assert_eq!(v["kv_fill"], fill);
            let q = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
            assert!(q("ceiling") > 0.0 && q("spark_bytes") > 0.0 && q("dense_bytes") > 0.0, "{v}");
            assert!((q("ceiling") - q("dense_bytes") / q("spark_bytes")).abs() < 1e-9);
            assert!((q("of_ceiling") - q("speedup") / q("ceiling")).abs() < 1e-9);
            assert!(!v["cpu_model"].as_str().unwrap().is_empty());
            assert_eq!(v["spark_ffn_active_mean"].as_array().unwrap().len(), 2, "one mean per layer");
        }
    }
    // With more than one thread every variant also runs on one thread in the same rounds:
    // the thread speedup is a ratio within the run. One thread: no such fields.
    let base = ["bench", "model", "--shape", &m, "--dense", &ids, "--ctx", "4", "--iters", "3", "--json", "--threads"];
    let v = json(&[&base[..], &["2"]].concat());
    let q = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert!(q("spark_ms_one_thread") > 0.0 && q("dense_ms_one_thread") > 0.0, "{v}");
    assert!((q("thread_speedup_spark") - q("spark_ms_one_thread") / q("spark_ms")).abs() < 1e-9, "{v}");
    assert!((q("thread_speedup_dense") - q("dense_ms_one_thread") / q("dense_ms")).abs() < 1e-9, "{v}");
    assert!(q("thread_speedup_spark_paired_q1") <= q("thread_speedup_spark_paired_median"), "{v}");
    assert!(q("thread_speedup_spark_paired_median") <= q("thread_speedup_spark_paired_q3"), "{v}");
    let v = json(&[&base[..], &["1"]].concat());
    assert!(v["spark_ms"].as_f64().is_some() && v.get("spark_ms_one_thread").is_none(), "{v}");
    assert!(v.get("bandwidth_one_thread_gbs").is_none(), "{v}");
    let t = ok(&["bench", "model", "--shape", &m, "--dense", &ids, "--ctx", "6,2", "--iters", "3", "--threads", "2"]);
    assert!(t.contains("ceiling") && t.contains("synthetic KV-cache fill") && t.contains("cpu "), "{t}");
    assert!(t.contains("2 threads against 1") && t.contains("Spark 1-thr ms"), "{t}");
    err(&["bench", "model", "--shape", &m, "--layers", "2"], 2, &["--layers", "synthetic"]);
    err(&["bench", "attn", "--ctx", "64,128"], 2, &["--ctx", "one context"]);
    // The KV-cache copies can start past their page: the offset is used and reported.
    let v = json(&[
        "bench",
        "attn",
        "--shape",
        &m,
        "--ctx",
        "64",
        "--iters",
        "2",
        "--llc",
        "256K",
        "--cache-offset",
        "64",
        "--json",
    ]);
    assert_eq!(v["cache_offset"], 64, "{v}");
    assert!(v["speedup"].as_f64().unwrap() > 0.0, "{v}");
    err(&["bench", "ffn", "--cache-offset", "64"], 2, &["--cache-offset", "bench attn"]);
    err(&["bench", "model", "--cache-offset", "64"], 2, &["--cache-offset", "bench attn"]);
    err(&["bench", "attn", "--cache-offset", "24"], 2, &["--cache-offset", "multiple of 16"]);
    err(&["bench", "ffn", "--prefill"], 2, &["--prefill", "bench model"]);
    err(&["bench", "model", "--ctx", "65536", "--iters", "2"], 2, &["--ctx", "65536"]);
    err(&["bench", "ffn", "--shape", "gemma9-9000b"], 2, &["unknown shape", "gemma9-9000b"]);
    for bad in ["0", "257", "99999999999999999999", "lots"] {
        err(&["bench", "ffn", "--threads", bad], 2, &["--threads", "thread count"]);
        err(&["generate", "--threads", bad], 2, &["--threads"]);
    }
    // The report says the thread count it ran with.
    let v = json(&["bench", "ffn", "--shape", &m, "--iters", "3", "--llc", "256K", "--threads", "2", "--json"]);
    assert_eq!(v["threads"].as_u64(), Some(2), "{v}");
    // The one-thread read bound, measured interleaved with the 2-thread one, beside it.
    let (b2, b1) = (v["bandwidth_gbs"].as_f64().unwrap(), v["bandwidth_one_thread_gbs"].as_f64().unwrap());
    assert!(b1 > 0.0 && (v["bandwidth_thread_ratio"].as_f64().unwrap() - b2 / b1).abs() < 1e-9, "{v}");
    // And both variants on one thread in the same iterations: the thread speedups.
    for what in ["ffn", "attn"] {
        let v = json(&["bench", what, "--shape", &m, "--iters", "3", "--llc", "256K", "--threads", "2", "--json"]);
        let q = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{what}: {k} missing: {v}"));
        assert!((q("thread_speedup_spark") - q("spark_ms_one_thread") / q("spark_ms")).abs() < 1e-9, "{v}");
        assert!((q("thread_speedup_dense") - q("dense_ms_one_thread") / q("dense_ms")).abs() < 1e-9, "{v}");
        assert!((q("speedup_one_thread") - q("dense_ms_one_thread") / q("spark_ms_one_thread")).abs() < 1e-9, "{v}");
        assert!(q("thread_speedup_spark_paired_median") > 0.0 && q("thread_speedup_dense_paired_median") > 0.0);
        let v1 = json(&["bench", what, "--shape", &m, "--iters", "3", "--llc", "256K", "--threads", "1", "--json"]);
        assert!(v1.get("spark_ms_one_thread").is_none() && v1.get("bandwidth_one_thread_gbs").is_none(), "{v1}");
    }
    err(&["bench", "model", "--shape", &m, "--ctx", "30", "--iters", "5", "--llc", "256K"], 1, &["--ctx", "context"]);
}

#[test]
fn plan_fits_and_does_not_fit() {
    let f = fx();
    let m = f.p("text.spark");
    let t = ok(&["plan", "--model", &m, "--target", "cortex-m4"]);
    assert!(t.contains("verdict FITS") && t.contains("mps2-an386"), "{t}");
    let t = ok(&["plan", "--model", &m, "--target", "cortex-m55", "--ram", "20K"]);
    assert!(t.contains("DOES NOT FIT") && t.contains("--max-seq"), "{t}");
    let v = json(&["plan", "--model", &m, "--target", "cortex-m33", "--flash", "44K", "--code", "16K", "--json"]);
    assert_eq!(v["fits"], false);
    assert!(v["fixes"][0].as_str().unwrap().contains("1 of its 2 layers would fit"), "{v}");
    err(&["plan", "--model", &m, "--target", "cortex-m4", "--ram", "1K", "--check"], 1, &["does not fit"]);
    err(&["plan", "--model", &m, "--target", "z80"], 2, &["z80"]);
    err(&["plan", "--model", &m, "--target", "host", "--ram", "lots"], 2, &["lots"]);
}

#[test]
fn closed_stdout_exits_quietly() {
    let f = fx();
    let ids: Vec<String> = (0..30).map(|i| (i % 60).to_string()).collect();
    let mut child = bin()
        .args(["logits", "--model", &f.p("ids.spark"), "--ids", &ids.join(","), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before anything is written
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_no_panic(&e);
    assert!(e.trim().is_empty(), "unexpected stderr: {e}");
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn convert_cli_writes_a_loadable_model() {
    let dir = std::env::temp_dir().join(format!("spark-oracle-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = small_spark_config();
    let ck = F32Checkpoint::random(&cfg, 8);
    let input = dir.join("m.safetensors");
    std::fs::write(&input, ck.to_safetensors_bytes().unwrap()).unwrap();
    let out = dir.join("m.spark");
    let bin = env!("CARGO_BIN_EXE_spark-sim");
    let r = std::process::Command::new(bin).arg("convert").arg(&input).arg("-o").arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{stdout}{}", String::from_utf8_lossy(&r.stderr));
    assert!(stdout.contains("layers.1.ffn.k2") && stdout.contains("rel L2") && stdout.contains("bytes"), "{stdout}");
    let blob = std::fs::read(&out).unwrap();
    let model = Model::load(&blob).unwrap();
    assert_eq!(*model.config(), cfg);
    let (w, _) = to_writer(&ck).unwrap();
    assert_eq!(w.finish(), blob, "convert is deterministic and equals to_writer");

    // Bad input: one line on stderr, exit code 1.
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let r =
        std::process::Command::new(bin).arg("convert").arg(&bad).arg("-o").arg(dir.join("x.spark")).output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tests/hf/tiny-gemma2` (written by `train/make_hf_gemma2.py`; its conversion is tested
/// against transformers in the top-level `tests/hf_gemma2.rs`).
fn tiny_gemma2_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/hf/tiny-gemma2")
}

#[test]
fn convert_subcommand_reads_the_hf_directory() {
    let out = std::env::temp_dir().join(format!("tiny-gemma2-{}.spark", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_spark-sim"))
        .args(["convert", tiny_gemma2_dir().to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "convert failed: {stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("layers.1.ffn.wd_t") && stdout.contains("worst rel L2"), "{stdout}");
    let blob = std::fs::read(&out).unwrap();
    let m = Model::load(&blob).expect("loads");
    assert_eq!(m.config().sliding_window, 8);
    let _ = std::fs::remove_file(&out);
}

#[test]
#[cfg(unix)]
fn inputs_that_are_not_regular_files_are_refused_without_blocking() {
    let f = fx();
    let fifo = f.path("pipe.spark");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    let (p, m, out) = (fifo.to_str().unwrap(), f.p("text.spark"), f.p("from_fifo.spark"));
    let (story, ck) = (f.p("story.txt"), f.p("ck.safetensors"));
    let cases: [&[&str]; 9] = [
        &["inspect", p],
        &["generate", "--model", p],
        &["logits", "--model", p, "--ids", "1"],
        &["plan", "--model", p, "--target", "cortex-m4"],
        &["bench", "ffn", "--shape", p, "--iters", "1"],
        &["eval", "--model", &m, "--text", p],
        &["eval", "--model", &m, "--text", &story, "--checkpoint", p],
        &["convert", p, "-o", &out],
        &["convert", &ck, "-o", &out, "--tokenizer", p],
    ];
    for args in cases {
        let o = run_within(args, Duration::from_secs(60));
        check_err(&o, args, 1, &["pipe.spark", "not a regular file", "FIFO"]);
    }
    assert!(!f.path("from_fifo.spark").exists());
}

#[test]
fn plan_sizes_whose_sum_overflows_are_usage_errors() {
    let f = fx();
    let m = f.p("text.spark");
    let max = u64::MAX.to_string();
    // Arena + stack and model + code would wrap to a small total and print FITS.
    for (flag, target) in [("--code", "cortex-m4"), ("--stack", "cortex-m4"), ("--stack", "host"), ("--code", "host")] {
        err(&["plan", "--model", &m, "--target", target, flag, &max], 2, &[flag, "64-bit"]);
        err(&["plan", "--model", &m, "--target", target, flag, &max, "--json"], 2, &[flag]);
    }
    // The largest values that do not overflow are plans that do not fit.
    let v = json(&["plan", "--model", &m, "--target", "cortex-m4", "--code", "16777216G", "--json"]);
    assert_eq!((v["fits"].as_bool(), v["fits_flash"].as_bool()), (Some(false), Some(false)), "{v}");
    // A separate code region takes the estimate alone: no sum, the region does not fit it.
    let v = json(&["plan", "--model", &m, "--target", "cortex-m55", "--code", &max, "--json"]);
    assert_eq!(v["fits"], false, "{v}");
    assert!(v["fixes"].as_array().unwrap().iter().any(|x| x.as_str().unwrap().starts_with("code:")), "{v}");
}

#[test]
fn bench_rotation_is_bounded_and_impossible_caches_are_usage_errors() {
    let f = fx();
    let m = f.p("text.spark");
    // A 7 kB FFN on a 16 MiB cache wants about 4600 copies per variant (and on the 480 MiB
    // a VM may report, 140 000 of them, each a few memory mappings): at most 4096.
    let limit = Duration::from_secs(300);
    let o = run_within(&["bench", "ffn", "--shape", &m, "--iters", "1", "--llc", "16M", "--json"], limit);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // (the padded [K2 | V] records make a Spark copy 8.4 kB: about 4000 copies; the dense
    // twin's 4600 are capped)
    assert!(v["weight_copies"].as_u64().unwrap() <= 4096 && v["copies_capped"] == true, "{v}");
    // (at most 2x LLC rounded up to whole copies)
    assert!(v["spark_total_bytes"].as_u64().unwrap() < 2 * (16 << 20) + 16384, "{v}");
    // One key of context: 56-byte caches, capped the same way, and said so in the text.
    let o = run_within(&["bench", "attn", "--shape", &m, "--ctx", "1", "--iters", "1", "--llc", "16M"], limit);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("capped at 4096 copies"), "{}", stdout(&o));
    // Shapes that fill 2x LLC are not capped.
    let v = json(&["bench", "attn", "--shape", &m, "--ctx", "64", "--iters", "2", "--llc", "256K", "--json"]);
    assert_eq!(v["copies_capped"], false, "{v}");
    assert!(v["dense_total_bytes"].as_u64().unwrap() >= 2 * (256 << 10), "{v}");
    // Caches no machine has are usage errors, not a huge mapping and a panic.
    for llc in ["18446744073709551615", "100G", "3G", "0"] {
        err(&["bench", "ffn", "--shape", &m, "--iters", "1", "--llc", llc], 2, &["--llc", llc, "2.00 GiB"]);
    }
}

/// `spark-sim args` with its address space limited to `kib` KiB (`ulimit -v`), so an
/// allocation the host cannot give fails at once, the same way on every machine.
#[cfg(unix)]
fn run_limited(args: &[&str], kib: u64) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_spark-sim"))
        .args(args)
        .output()
        .expect("sh runs spark-sim")
}

#[test]
#[cfg(unix)]
fn generate_tokens_past_the_context_stop_there_without_a_huge_reservation() {
    let f = fx();
    // 4294967295 tokens would reserve 16 GiB up front; with 2 GiB of address space that
    // aborts. The count is bounded by the context left: 32 - 3 + 1 tokens, then a message.
    let args = ["generate", "--model", &f.p("ids.spark"), "--prompt-ids", "1,2,3", "--tokens", "4294967295"];
    let o = run_limited(&args, 2 << 20);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("context is full (32 tokens") && stderr(&o).contains("after 30 generated"),
        "{}",
        stderr(&o)
    );
    let mut j = args.to_vec();
    j.push("--json");
    let o = run_limited(&j, 2 << 20);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["stop"].as_str(), v["token_ids"].as_array().map(Vec::len)), (Some("context_full"), Some(30)));
    // The same run asked for exactly the context left gives the same tokens and digest.
    let exact = json(&["generate", "--model", &f.p("ids.spark"), "--prompt-ids", "1,2,3", "--tokens", "30", "--json"]);
    assert_eq!((&exact["token_ids"], &exact["logits_digest"]), (&v["token_ids"], &v["logits_digest"]));
    assert_eq!(exact["stop"], "tokens");
    let help = ok(&["generate", "--help"]);
    assert!(help.contains("context is full"), "--tokens help does not say where it stops:\n{help}");
}

#[test]
#[cfg(unix)]
fn an_arena_the_host_cannot_give_is_named_with_its_size() {
    let f = fx();
    // 64 kv heads of width 1024 at 65536 positions: an arena of about 8.3 GiB, from a
    // model file of a few MiB.
    let cfg = Config {
        vocab_size: 64,
        d_model: 8,
        n_layers: 1,
        n_heads: 64,
        n_kv_heads: 64,
        head_dim: 1024,
        d_ff: 16,
        ffn_r: 4,
        ffn_k: 4,
        attn_r: 8,
        max_seq_len: 65536,
        query_pre_attn_scalar: 1024.0,
        sliding_window: 0,
        embed_scale: 8f32.sqrt(),
        ..text_config(64)
    };
    let p = f.path("huge_arena.spark");
    std::fs::write(&p, random_writer(&cfg, 9).finish()).unwrap();
    let m = p.to_str().unwrap();
    let cases: [&[&str]; 2] = [
        &["generate", "--model", m, "--prompt-ids", "1", "--tokens", "65536"],
        &["bench", "model", "--shape", m, "--ctx", "65000", "--iters", "2", "--llc", "1M"],
    ];
    for args in cases {
        let o = run_limited(args, 2 << 20);
        let e = check_err(&o, args, 1, &["session arena", "GiB", "bytes", "context of"]);
        assert!(!e.contains("cannot write output"), "{e}");
    }
}

#[test]
fn internal_errors_have_their_own_exit_status_and_every_status_is_documented() {
    let f = fx();
    let o = bin().args(["inspect", &f.p("text.spark")]).env("SPARK_SIM_TEST_PANIC", "1").output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(101), "a panic must not exit like an input error (1): {e}");
    assert!(e.starts_with("error: internal error") && e.contains("please report it"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    let help = ok(&["--help"]);
    for status in ["0 success", "1 runtime or input error", "2 usage error", "101 internal error"] {
        assert!(help.contains(status), "--help does not document exit status {status:?}:\n{help}");
    }
}
