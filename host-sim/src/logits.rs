//! `spark-sim logits`: the logits at every position of a token sequence, from the int8
//! runtime or the f32 oracle, printed, as JSON, or written as a float32 `.npy`
//! `[positions, vocab]`.

use crate::arena::session_arena;
use crate::checkpoint::F32Checkpoint;
use crate::inputs::{load_model, model_tokenizer, oracle_checkpoint, prompt_ids, read_model_file, resolve_model};
use crate::oracle::OracleSession;
use crate::ui::{fail, print_json, progress, Backend, CliResult};
use crate::with_backend;
use spark_core::{Model, Session};
use spark_hal::Kernels;
use std::io::{self, Write};
use std::path::PathBuf;

/// Which implementation produces the logits.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The int8 runtime (`spark_core::Session`).
    #[default]
    Int8,
    /// The f32 reference forward pass (on --checkpoint weights, else the dequantized int8 weights).
    F32,
}

/// Arguments of `spark-sim logits`.
#[derive(clap::Args, Debug)]
pub struct LogitsArgs {
    /// The `.spark` model [default: the bundled models/demo.spark].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Token ids, comma-separated (e.g. 1,2,3).
    #[arg(long, value_name = "IDS", required_unless_present = "prompt")]
    pub ids: Option<String>,
    /// Text to tokenize instead of --ids (models with a tokenizer; BOS is prepended).
    #[arg(long, conflicts_with = "ids")]
    pub prompt: Option<String>,
    /// Which forward pass: int8 (the runtime) or f32 (the oracle).
    #[arg(long, value_enum, default_value_t, value_name = "f32|int8")]
    pub oracle: Engine,
    /// Float weights for the f32 oracle (train/ safetensors or a Hugging Face Gemma-2 dir).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Write float32 [positions, vocab] logits to this .npy file instead of printing.
    #[arg(long, short = 'o', value_name = "FILE.npy")]
    pub out: Option<PathBuf>,
    /// How many logits to print per position (text output).
    #[arg(long, default_value_t = 8)]
    pub show: usize,
    /// Kernel backend of the int8 runtime.
    #[arg(long, value_enum, default_value_t)]
    pub backend: Backend,
    /// Print JSON: {"ids": [...], "vocab": V, "logits": [[...], ...]}.
    #[arg(long)]
    pub json: bool,
}

fn run_int8<K: Kernels>(model: &Model<'_>, ids: &[u32]) -> CliResult<Vec<Vec<f32>>> {
    let mut arena = session_arena(model, ids.len(), 1)?;
    let mut s = Session::<K>::with_max_seq(model, &mut arena, ids.len()).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::with_capacity(ids.len());
    for &t in ids {
        out.push(s.step(t).map_err(|e| fail(e.to_string()))?.to_vec());
    }
    Ok(out)
}

/// The f32 oracle's logits for `ids` on `ck`.
pub fn run_f32(ck: &F32Checkpoint, ids: &[u32], show_progress: bool) -> CliResult<Vec<Vec<f32>>> {
    let mut s = OracleSession::new(ck).map_err(|e| fail(e.to_string()))?;
    let pb = progress(ids.len() as u64, show_progress, "oracle");
    let mut out = Vec::with_capacity(ids.len());
    for &t in ids {
        out.push(s.step(t).map_err(|e| fail(e.to_string()))?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// `spark-sim logits`.
pub fn logits(a: &LogitsArgs) -> CliResult {
    let path = resolve_model(a.model.as_deref())?;
    let blob = read_model_file(&path)?;
    let model = load_model(&blob, &path)?;
    let tok = model_tokenizer(&model)?;
    let ids = prompt_ids(tok.as_ref(), a.prompt.as_deref(), a.ids.as_deref(), true, model.config().vocab_size)?;
    let max_seq = model.config().max_seq_len as usize;
    if ids.len() > max_seq {
        return Err(fail(format!(
            "{} ids but the model's context holds {max_seq} (max_seq_len): pass fewer ids",
            ids.len()
        )));
    }
    let (rows, what) = match a.oracle {
        Engine::Int8 => {
            (with_backend!(a.backend, run_int8(&model, &ids))?, format!("int8 runtime ({})", a.backend.kernel_name()))
        }
        Engine::F32 => {
            let (ck, what) = oracle_checkpoint(&model, a.checkpoint.as_deref())?;
            (run_f32(&ck, &ids, !a.json)?, what)
        }
    };
    let vocab = model.config().vocab_size as usize;
    if let Some(out) = &a.out {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let mut buf = Vec::new();
        crate::npy::write_f32(&mut buf, &[rows.len(), vocab], &flat)?;
        std::fs::write(out, &buf).map_err(|e| fail(format!("cannot write {}: {e}", out.display())))?;
        if a.json {
            return print_json(&serde_json::json!({
                "out": out.display().to_string(), "shape": [rows.len(), vocab], "engine": what,
            }));
        }
        writeln!(io::stdout(), "wrote {} (float32 [{}, {vocab}], {what})", out.display(), rows.len())?;
        return Ok(());
    }
    if a.json {
        return print_json(&serde_json::json!({"ids": ids, "vocab": vocab, "engine": what, "logits": rows}));
    }
    let mut o = io::stdout().lock();
    writeln!(o, "# {what}; {} positions x {vocab} logits; showing the first {}", rows.len(), a.show.min(vocab))?;
    for (p, (row, id)) in rows.iter().zip(&ids).enumerate() {
        let first: Vec<String> = row.iter().take(a.show).map(|x| format!("{x:.4}")).collect();
        match spark_core::sampler::argmax(row) {
            Ok(top) => {
                writeln!(o, "pos {p:>4} id {id:>6} argmax {top:>6} ({:.4})  [{}]", row[top as usize], first.join(", "))?
            }
            Err(e) => writeln!(o, "pos {p:>4} id {id:>6} argmax none ({e})  [{}]", first.join(", "))?,
        }
    }
    Ok(())
}
