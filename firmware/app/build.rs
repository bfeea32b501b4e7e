//! Build script of the firmware. Everything board- and model-specific is decided here, on
//! the host, with the runtime's own reader:
//!
//! - the board: the one board feature that is on (`mps2-an386` by default), looked up in
//!   the shared board table (`firmware/boards`, also used by `spark-sim plan`); its
//!   `memory.x` and `model.x` go where cortex-m-rt's `link.x` finds them;
//! - the model: `SPARK_MODEL` (default `models/demo.spark`; a relative path is taken from
//!   the repository root) is loaded and fully validated with `spark_core::Model::load`;
//!   `SPARK_MAX_SEQ` (default: the model's `max_seq_len`) sets the session's context, and
//!   the `static` arena is sized to exactly `Model::arena_bytes(SPARK_MAX_SEQ)`;
//! - the budget: model + code estimate against the board's flash, arena + stack estimate
//!   against its RAM, as `spark-sim plan` computes and prints them; a model that does not
//!   fit **fails the build** with those lines and the knob that helps;
//! - the run: `SPARK_PROMPT` (default "Once upon a time"), `SPARK_PROMPT_IDS` (comma-
//!   separated ids, for models without a tokenizer), `SPARK_TOKENS` (64), `SPARK_TEMPERATURE`
//!   (0 = greedy), `SPARK_TOP_P` (unset), `SPARK_SEED` (0): the settings of
//!   `spark-sim generate`, checked with the same rules;
//! - with `compare-dense`: the dense twin `SPARK_DENSE_MODEL` (default
//!   `target/demo_dense.spark`), counted in the budget too;
//! - with `expected-int8`: the prompts, ids and digests of `models/expected_int8.json`.
//!
//! Everything goes into `OUT_DIR/generated.rs`. Errors are reported as one message and a
//! non-zero exit of the build script (no panics on bad input).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, process};

use spark_boards::{budget_lines, Board, Runs};
use spark_core::sampler::Sampling;
use spark_core::tokenizer::Tokenizer;
use spark_core::Model;

const BOARD_FEATURES: [&str; 7] =
    ["mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547", "pico2", "nucleo-h743zi"];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn var(name: &str) -> Option<String> {
    println!("cargo::rerun-if-env-changed={name}");
    env::var(name).ok().filter(|s| !s.is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> Res<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(s) => s.trim().parse().map_err(|e| format!("{name}={s:?}: {e}")),
    }
}

fn run() -> Res<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest.join("../..");
    let boards_dir = manifest.join("../boards");
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    println!("cargo::rerun-if-changed=build.rs");

    // Board.
    let target = env::var("TARGET").unwrap_or_default();
    let board: &Board = spark_boards::select_board(&BOARD_FEATURES, spark_boards::cargo_feature_on, &target)?;
    let name = board.name;
    for f in [board.memory_x(), "model.x".to_string()] {
        let src = boards_dir.join(&f);
        println!("cargo::rerun-if-changed={}", src.display());
        let dst = out.join(Path::new(&f).file_name().unwrap_or_default());
        fs::copy(&src, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
    }
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rustc-link-arg=-Tlink.x");
    println!("cargo::rustc-link-arg=-Tmodel.x");
    if let Runs::Probe { .. } = board.runs {
        // defmt's linker script (the interned format strings), on the real boards only.
        println!("cargo::rustc-link-arg=-Tdefmt.x");
    }

    // Model.
    let model_path = path_var(&root, "SPARK_MODEL", "models/demo.spark");
    let blob = read(&model_path)?;
    let model_abs = fs::canonicalize(&model_path).map_err(|e| format!("{}: {e}", model_path.display()))?;
    let model = Model::load(&blob).map_err(|e| format!("SPARK_MODEL {}: {e}", model_path.display()))?;
    let cfg = *model.config();
    let max_seq: usize = parse("SPARK_MAX_SEQ", cfg.max_seq_len as usize)?;
    if max_seq == 0 || max_seq > cfg.max_seq_len as usize {
        return Err(format!("SPARK_MAX_SEQ={max_seq}: must be 1..={} (the model's max_seq_len)", cfg.max_seq_len));
    }
    let arena = model.arena_bytes(max_seq);

    // Run settings, checked like `spark-sim generate` checks its flags.
    let tokens: u32 = parse("SPARK_TOKENS", 64)?;
    if tokens == 0 {
        return Err("SPARK_TOKENS must be at least 1".into());
    }
    let temperature: f32 = parse("SPARK_TEMPERATURE", 0.0)?;
    if temperature < 0.0 || !temperature.is_finite() {
        return Err(format!("SPARK_TEMPERATURE={temperature} must be >= 0 (0 = greedy)"));
    }
    let top_p: Option<f32> = match var("SPARK_TOP_P") {
        None => None,
        Some(s) => Some(s.trim().parse().map_err(|e| format!("SPARK_TOP_P={s:?}: {e}"))?),
    };
    let seed: u64 = parse("SPARK_SEED", 0)?;
    let sampling = match (temperature, top_p) {
        (0.0, _) => Sampling::Greedy,
        (t, Some(p)) => Sampling::TopP { t, p },
        (t, None) => Sampling::Temperature { t },
    };
    sampling.validate().map_err(|e| format!("SPARK_TEMPERATURE / SPARK_TOP_P: {e}"))?;
    let prompt = var("SPARK_PROMPT").unwrap_or_else(|| "Once upon a time".to_string());
    let tok = Tokenizer::new(&model).ok();
    let prompt_ids: Vec<u32> = match (var("SPARK_PROMPT_IDS"), &tok) {
        (Some(s), _) => s
            .split(',')
            .map(|x| x.trim().parse::<u32>().map_err(|e| format!("SPARK_PROMPT_IDS {s:?}: {e}")))
            .collect::<Res<_>>()?,
        (None, Some(t)) => {
            let mut ids = vec![0u32; prompt.len() + 1];
            let n = if t.bos_id().is_some() {
                t.encode_with_bos(prompt.as_bytes(), &mut ids)
            } else {
                t.encode(prompt.as_bytes(), &mut ids)
            }
            .map_err(|e| format!("SPARK_PROMPT: cannot tokenize the text: {e}"))?;
            ids.truncate(n);
            ids
        }
        (None, None) => return Err("this model has no tokenizer: give the prompt as SPARK_PROMPT_IDS=1,2,3".into()),
    };
    if prompt_ids.is_empty() {
        return Err("the prompt is empty and the tokenizer has no BOS token: set SPARK_PROMPT".into());
    }
    if let Some(bad) = prompt_ids.iter().find(|&&t| t >= cfg.vocab_size) {
        return Err(format!(
            "prompt token id {bad} is out of range: the model's vocabulary has {} tokens",
            cfg.vocab_size
        ));
    }
    if prompt_ids.len() > max_seq {
        return Err(format!(
            "the prompt is {} tokens but the session's context holds {max_seq} (SPARK_MAX_SEQ): shorten the prompt",
            prompt_ids.len()
        ));
    }
    let steps = (prompt_ids.len() + tokens as usize - 1).min(max_seq);

    // The dense twin.
    let dense = if env::var_os("CARGO_FEATURE_COMPARE_DENSE").is_some() {
        let p = path_var(&root, "SPARK_DENSE_MODEL", "target/demo_dense.spark");
        let b = read(&p).map_err(|e| {
            format!("{e}\n(convert it from the repository root: cargo run -p spark-sim -- convert models/demo_dense.safetensors -o target/demo_dense.spark)")
        })?;
        let m = Model::load(&b).map_err(|e| format!("SPARK_DENSE_MODEL {}: {e}", p.display()))?;
        let dc = *m.config();
        if dc.d_model != cfg.d_model || dc.n_layers != cfg.n_layers || dc.vocab_size != cfg.vocab_size {
            return Err(format!(
                "{} is not the dense twin of {} (d_model, n_layers or vocab_size differ)",
                p.display(),
                model_path.display()
            ));
        }
        if steps > dc.max_seq_len as usize {
            return Err(format!(
                "the run has {steps} steps, more than the dense twin's max_seq_len {}",
                dc.max_seq_len
            ));
        }
        let a = m.arena_bytes(steps);
        Some((p, b.len(), a, dc.d_ff))
    } else {
        None
    };

    // The budget: what `spark-sim plan` checks, plus the firmware's own statics (sampler
    // scratch, per-step counts) next to the arena, and the dense twin if bundled. With
    // `runtime-model`, the flash holds no model and the RAM holds the heap instead of the
    // arena (the model file and the arena are allocated from it at run time).
    let runtime = env::var_os("CARGO_FEATURE_RUNTIME_MODEL").is_some();
    let statics = 4 * cfg.vocab_size as u64 + 8 * steps as u64;
    let heap: u64 = parse("SPARK_HEAP_BYTES", 3 * 1024 * 1024)?;
    if runtime {
        if !matches!(board.runs, Runs::Qemu { .. }) {
            return Err(format!(
                "runtime-model reads the model through semihosting, which only the QEMU boards have; on {name} the bytes would come from external flash or a UART (firmware/README.md)"
            ));
        }
        if dense.is_some() || env::var_os("CARGO_FEATURE_EXPECTED_INT8").is_some() {
            return Err("runtime-model goes without compare-dense and expected-int8".into());
        }
        let need = blob.len() as u64 + arena as u64 + 2 * 64;
        if heap < need {
            return Err(format!(
                "SPARK_HEAP_BYTES={heap} is less than {} needs ({need} bytes: the file and the arena): raise SPARK_HEAP_BYTES",
                model_path.display()
            ));
        }
    }
    let ram_arena = if runtime { heap } else { arena.max(dense.as_ref().map_or(0, |d| d.2)) as u64 } + statics;
    let flash_model = if runtime { 0 } else { blob.len() as u64 + dense.as_ref().map_or(0, |d| d.1 as u64) };
    let mem = spark_boards::Memory::from(board);
    let budget =
        board.budget(flash_model, ram_arena).ok_or_else(|| "the model's sizes overflow 64 bits".to_string())?;
    let lines = budget_lines(&mem, &budget, max_seq);
    if !budget.fits() {
        let mut msg = format!("SPARK_MODEL {} does not fit {name} ({})\n{lines}", model_path.display(), board.source);
        if !budget.fits_ram {
            let best = spark_boards::largest(1, max_seq as u64, |s| {
                mem.arena_fits(model.arena_bytes(s as usize) as u64 + statics)
            });
            match best {
                Some(s) => {
                    writeln!(msg, "fix     RAM: a context of at most {s} tokens fits (SPARK_MAX_SEQ={s})").unwrap()
                }
                None => writeln!(
                    msg,
                    "fix     RAM: even a 1-token context does not fit: pick a smaller model (SPARK_MODEL)"
                )
                .unwrap(),
            }
        }
        if !budget.fits_flash {
            writeln!(
                msg,
                "fix     flash: the model is {} over: pick a smaller model (SPARK_MODEL){}",
                spark_boards::human_bytes(budget.flash.saturating_sub(board.flash)),
                if dense.is_some() { " or build without compare-dense" } else { "" }
            )
            .unwrap();
        }
        return Err(msg);
    }
    println!("cargo::warning=spark-app for {name}: {}", lines.trim_end().replace('\n', " | "));

    // Generated constants.
    let (ipt, chip) = match board.runs {
        Runs::Qemu { instructions_per_tick_milli, .. } => (instructions_per_tick_milli, ""),
        Runs::Probe { chip } => (0, chip),
    };
    let mut g = String::new();
    let w = &mut g;
    writeln!(w, "// Generated by build.rs.").unwrap();
    writeln!(w, "/// The board (firmware/boards).\npub const BOARD: &str = {name:?};").unwrap();
    writeln!(w, "/// Its core.\npub const CORE: &str = {:?};", board.core).unwrap();
    writeln!(w, "/// Nominal executed instructions per SysTick tick under QEMU, thousandths.\npub const IPT_MILLI: u64 = {ipt};").unwrap();
    writeln!(w, "/// probe-rs chip name (real boards; empty under QEMU).\npub const CHIP: &str = {chip:?};").unwrap();
    writeln!(w, "/// The model file.\npub const MODEL_NAME: &str = {:?};", model_abs.display().to_string()).unwrap();
    writeln!(w, "/// Its bytes.\npub const MODEL_BYTES: usize = {};", blob.len()).unwrap();
    if runtime {
        writeln!(
            w,
            "/// Heap for the model file and the arena (SPARK_HEAP_BYTES).\npub const HEAP_BYTES: usize = {heap};"
        )
        .unwrap();
    } else {
        writeln!(w, "/// Its bytes, placed in the board's MODEL region.\n#[link_section = \".spark_model\"]\npub static MODEL: Aligned<[u8; MODEL_BYTES]> = Aligned(*include_bytes!({:?}));", model_abs.display().to_string()).unwrap();
    }
    writeln!(w, "/// The session's context (SPARK_MAX_SEQ).\npub const MAX_SEQ: usize = {max_seq};").unwrap();
    writeln!(w, "/// `Model::arena_bytes(MAX_SEQ)`.\npub const ARENA_BYTES: usize = {arena};").unwrap();
    writeln!(w, "/// Vocabulary size.\npub const VOCAB: usize = {};", cfg.vocab_size).unwrap();
    writeln!(w, "/// Layers.\npub const N_LAYERS: usize = {};", cfg.n_layers).unwrap();
    writeln!(w, "/// d_model.\npub const D_MODEL: usize = {};", cfg.d_model).unwrap();
    writeln!(w, "/// The prompt text.\npub const PROMPT: &str = {prompt:?};").unwrap();
    writeln!(w, "/// The prompt ids given as SPARK_PROMPT_IDS (None: tokenize PROMPT on the target).\npub const PROMPT_IDS: Option<&[u32]> = {};",
        if var("SPARK_PROMPT_IDS").is_some() { format!("Some(&{prompt_ids:?})") } else { "None".into() }).unwrap();
    writeln!(
        w,
        "/// Prompt ids (with BOS) as the host tokenized them.\npub const PROMPT_LEN: usize = {};",
        prompt_ids.len()
    )
    .unwrap();
    writeln!(w, "/// Bytes of the prompt text.\npub const PROMPT_TEXT_BYTES: usize = {};", prompt.len()).unwrap();
    writeln!(w, "/// Tokens to generate.\npub const TOKENS: usize = {tokens};").unwrap();
    writeln!(w, "/// Token steps of the run at most (prompt + tokens - 1, capped by MAX_SEQ).\npub const MAX_STEPS: usize = {steps};").unwrap();
    writeln!(w, "/// Sampling temperature (0 = greedy).\npub const TEMPERATURE: f32 = {temperature:?};").unwrap();
    writeln!(w, "/// Nucleus sampling.\npub const TOP_P: Option<f32> = {top_p:?};").unwrap();
    writeln!(w, "/// Sampler seed.\npub const SEED: u64 = {seed};").unwrap();
    if let Some((p, _, a, dff)) = &dense {
        let p = fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
        writeln!(w, "/// The dense twin.\n#[link_section = \".spark_model\"]\npub static DENSE: Aligned<[u8; {}]> = Aligned(*include_bytes!({:?}));", fs::metadata(&p).map_err(|e| e.to_string())?.len(), p.display().to_string()).unwrap();
        writeln!(w, "/// `arena_bytes(MAX_STEPS)` of the dense twin.\npub const DENSE_ARENA_BYTES: usize = {a};")
            .unwrap();
        writeln!(w, "/// The larger d_ff of the two models.\npub const MAX_D_FF: usize = {};", dff.max(&cfg.d_ff))
            .unwrap();
    }
    if env::var_os("CARGO_FEATURE_EXPECTED_INT8").is_some() {
        expected_int8(&root, &cfg, w)?;
    }
    fs::write(out.join("generated.rs"), g).map_err(|e| e.to_string())?;
    Ok(())
}

/// A path from an environment variable (relative to the repository root) or the default.
fn path_var(root: &Path, name: &str, default: &str) -> PathBuf {
    let p = PathBuf::from(var(name).unwrap_or_else(|| default.to_string()));
    let p = if p.is_absolute() { p } else { root.join(p) };
    println!("cargo::rerun-if-changed={}", p.display());
    p
}

fn read(p: &Path) -> Res<Vec<u8>> {
    fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The prompts of models/expected_int8.json with their committed continuations.
fn expected_int8(root: &Path, cfg: &spark_core::Config, g: &mut String) -> Res<()> {
    let json_path = root.join("models/expected_int8.json");
    println!("cargo::rerun-if-changed={}", json_path.display());
    let text = fs::read_to_string(&json_path).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("expected_int8.json: {e}"))?;
    let new_tokens = json["new_tokens"].as_u64().ok_or("expected_int8.json: new_tokens")? as usize;
    let prompts = json["prompts"].as_array().ok_or("expected_int8.json: prompts")?;
    let ids = |v: &serde_json::Value, what: &str| -> Res<Vec<u32>> {
        v.as_array()
            .ok_or(format!("expected_int8.json: {what} is not an array"))?
            .iter()
            .map(|x| {
                x.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or(format!("expected_int8.json: {what}: not an id"))
            })
            .collect()
    };
    writeln!(g, "/// Greedy tokens per expected_int8.json prompt.\npub const X_NEW_TOKENS: usize = {new_tokens};")
        .unwrap();
    writeln!(g, "/// The prompts with their committed int8 continuations.\npub const X_PROMPTS: &[Expected] = &[")
        .unwrap();
    let mut max_prompt = 0;
    for (i, p) in prompts.iter().enumerate() {
        let text = p["prompt"].as_str().ok_or(format!("prompt {i}: text"))?;
        let prompt_ids = ids(&p["prompt_ids"], "prompt_ids")?;
        let gen = ids(&p["generated_ids"], "generated_ids")?;
        let d = p["logits_digest"].as_str().ok_or(format!("prompt {i}: logits_digest"))?;
        let digest = u64::from_str_radix(d, 16).map_err(|e| format!("prompt {i}: digest {d}: {e}"))?;
        if prompt_ids.is_empty()
            || gen.len() != new_tokens
            || prompt_ids.iter().chain(&gen).any(|&t| t >= cfg.vocab_size)
        {
            return Err(format!("expected_int8.json: prompt {i} is malformed"));
        }
        if prompt_ids.len() + new_tokens - 1 > cfg.max_seq_len as usize {
            return Err(format!("expected_int8.json: prompt {i} exceeds max_seq_len"));
        }
        max_prompt = max_prompt.max(prompt_ids.len());
        writeln!(g, "    Expected {{ prompt: {text:?}, prompt_ids: &{prompt_ids:?}, generated: &{gen:?}, digest: {digest:#018x} }},").unwrap();
    }
    writeln!(g, "];\n/// Longest expected_int8.json prompt.\npub const X_MAX_PROMPT: usize = {max_prompt};").unwrap();
    Ok(())
}
