//! Subcommand implementations for the `spark-sim` binary. Each returns a one-line error
//! message (exit code 1) instead of panicking. Tested by `tests/cli.rs`, which runs the
//! binary.

use crate::format::parse_table;
use spark_core::tensor::DType;
use spark_core::{Config, FfnKind, Model};
use std::path::Path;

/// Read a whole model file, with a message that names the file on failure.
pub fn read_model_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read model file {}: {e}", path.display()))
}

/// Parameter counts by part.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ParamCounts {
    /// Embedding (and untied head).
    pub embedding: u64,
    /// Attention projections, all layers.
    pub attention: u64,
    /// FFN matrices, all layers.
    pub ffn: u64,
    /// Norm weights.
    pub norms: u64,
}

/// Count parameters by part from the config.
pub fn param_counts(c: &Config) -> ParamCounts {
    let (d, f, l) = (c.d_model as u64, c.d_ff as u64, c.n_layers as u64);
    let emb = c.vocab_size as u64 * d * if c.tie_embeddings { 1 } else { 2 };
    let attn = l * (2 * c.q_dim() as u64 * d + 2 * c.kv_dim() as u64 * d);
    let ffn = l * match c.ffn_kind {
        FfnKind::Spark => f * c.ffn_r as u64 + f * (d - c.ffn_r as u64) + f * d,
        FfnKind::Geglu => 3 * f * d,
    };
    let norms = d * (1 + l * if c.post_norms { 4 } else { 2 });
    ParamCounts { embedding: emb, attention: attn, ffn, norms }
}

/// `spark-sim inspect`.
pub fn inspect(path: &Path, json: bool) -> Result<(), String> {
    let blob = read_model_file(path)?;
    let model = Model::load(&blob).map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, entries, _) = parse_table(&blob).ok_or("tensor table unreadable")?;
    let c = model.config;
    let p = param_counts(&c);
    if json {
        let tensors: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({"name": e.id.to_string(), "dtype": e.dtype.name(), "shape": e.shape, "bytes": e.len}))
            .collect();
        let v = serde_json::json!({
            "file_bytes": blob.len(),
            "config": serde_json::to_value(c).map_err(|e| e.to_string())?,
            "params": p,
            "tensors": tensors,
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("model      {}", path.display());
    println!("file       {} bytes", blob.len());
    println!(
        "shape      vocab {}  d {}  layers {}  heads {}/{} x {}  ffn {:?} f {} r {} k {}  attn {:?} ra {} ka {}  ctx {}",
        c.vocab_size,
        c.d_model,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.ffn_kind,
        c.d_ff,
        c.ffn_r,
        c.ffn_k,
        c.attn_kind,
        c.attn_r,
        c.attn_k,
        c.max_seq_len
    );
    println!(
        "params     embedding {}  attention {}  ffn {}  norms {}  total {}",
        p.embedding,
        p.attention,
        p.ffn,
        p.norms,
        p.embedding + p.attention + p.ffn + p.norms
    );
    println!("tensors    {}", entries.len());
    for e in &entries {
        let dt = match e.dtype {
            DType::I8 => "i8 ",
            DType::F32 => "f32",
            DType::U8 => "u8 ",
            DType::U32 => "u32",
        };
        println!("  {:<28} {dt} [{:>6}, {:>6}] {:>10} B", e.id.to_string(), e.shape[0], e.shape[1], e.len);
    }
    Ok(())
}

/// `spark-sim random-model`.
pub fn random_model(out: &Path, seed: u64) -> Result<(), String> {
    let blob = crate::testmodel::random_model(&crate::testmodel::small_spark_config(), seed);
    std::fs::write(out, &blob).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("wrote {} ({} bytes)", out.display(), blob.len());
    Ok(())
}

/// `spark-sim convert`: a float safetensors checkpoint (train/ naming, config in
/// `__metadata__["spark_config"]`) to an int8 `.spark` file, with a per-tensor
/// quantization error summary. The written file is loaded back and checked before the
/// command succeeds.
pub fn convert(input: &Path, out: &Path) -> Result<(), String> {
    use crate::checkpoint::{to_writer, F32Checkpoint};
    let ck = F32Checkpoint::load(input).map_err(|e| match e {
        crate::checkpoint::CheckpointError::Io { .. } => e.to_string(),
        _ => format!("{}: {e}", input.display()),
    })?;
    let (writer, errors) = to_writer(&ck).map_err(|e| format!("{}: {e}", input.display()))?;
    let blob = writer.finish();
    Model::load(&blob).map_err(|e| format!("converted model does not load (a converter bug): {e}"))?;
    println!("{:<28} {:>14} {:>12} {:>12}", "tensor", "shape", "rel L2", "max abs");
    for ((name, e), t) in errors.iter().zip(writer.tensors.iter().filter(|t| t.dtype == DType::I8)) {
        let shape = format!("[{}, {}]", t.shape[0], t.shape[1]);
        println!("{name:<28} {shape:>14} {:>12.3e} {:>12.3e}", e.rel_l2, e.max_abs);
    }
    let worst = errors.iter().max_by(|a, b| a.1.rel_l2.total_cmp(&b.1.rel_l2));
    if let Some((name, e)) = worst {
        println!("worst rel L2 {:.3e} ({name}); worst max abs {:.3e}", e.rel_l2, {
            errors.iter().map(|(_, e)| e.max_abs).fold(0.0, f64::max)
        });
    }
    std::fs::write(out, &blob).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("wrote {} ({} bytes, {} tensors)", out.display(), blob.len(), writer.tensors.len());
    Ok(())
}
