//! What the subcommands read, with one-line errors that say what to do: model files (in
//! huge-page-advised buffers) and input files, the bundled model, the model's tokenizer,
//! text and prompt encoding, the oracle's float checkpoint, and the byte-count and id-list
//! arguments.

use crate::checkpoint::F32Checkpoint;
use crate::files::{not_regular, open_regular, read_regular};
use crate::hugemem::HugeBytes;
use crate::ui::{fail, usage, CliError, CliResult};
use spark_core::tokenizer::{Tokenizer, TokenizerError};
use spark_core::Model;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// One kibibyte.
pub const KIB: u64 = 1024;
/// One mebibyte.
pub const MIB: u64 = 1024 * KIB;
/// One gibibyte.
pub const GIB: u64 = 1024 * MIB;

/// Read a whole model file into a huge-page-advised buffer (`hugemem`: the sparse row
/// gathers of a large model then cost no page walk per row), with a one-line message that
/// says what to do.
pub fn read_model_file(path: &Path) -> CliResult<HugeBytes> {
    let what = "model file";
    let err = |e: io::Error| read_error(e, path, what);
    let mut f = open_regular(path).map_err(err)?;
    let meta = f.metadata().map_err(err)?;
    let len = usize::try_from(meta.len())
        .map_err(|_| fail(format!("{what} {} is too large for this machine", path.display())))?;
    let mut buf = HugeBytes::zeroed(len).map_err(err)?;
    f.read_exact(&mut buf).map_err(err)?;
    // The file must not have grown meanwhile: a truncated read would fail validation, a
    // longer file would be silently cut.
    let mut probe = [0u8; 1];
    if f.read(&mut probe).map_err(err)? != 0 {
        return Err(fail(format!("{what} {} changed while it was read: try again", path.display())));
    }
    Ok(buf)
}

/// Read a whole input file (`what` names it in messages).
pub fn read_input(path: &Path, what: &str) -> CliResult<Vec<u8>> {
    read_regular(path).map_err(|e| read_error(e, path, what))
}

/// The one-line message for an I/O error reading `path` (`what` names it).
fn read_error(e: io::Error, path: &Path, what: &str) -> CliError {
    match e.kind() {
        io::ErrorKind::NotFound => fail(format!("{what} {} not found: check the path", path.display())),
        io::ErrorKind::IsADirectory => fail(format!("{what} {} is a directory: give a file", path.display())),
        _ => match not_regular(&e) {
            Some(n) => fail(format!("{what} {} is {n}: give a file", path.display())),
            None => fail(format!("cannot read {what} {}: {e}", path.display())),
        },
    }
}

/// Validate a `.spark` blob, with a message naming the file and the fix.
pub fn load_model<'a>(blob: &'a [u8], path: &Path) -> CliResult<Model<'a>> {
    Model::load(blob).map_err(|e| {
        fail(format!(
            "{} is not a valid .spark model: {e} (re-create it with `spark-sim convert`, or check the path)",
            path.display()
        ))
    })
}

/// The bundled demo model: `models/demo.spark` relative to the current directory, then
/// relative to the workspace (`CARGO_MANIFEST_DIR/../models`).
pub fn bundled_model_candidates() -> [PathBuf; 2] {
    [
        PathBuf::from("models/demo.spark"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("models").join("demo.spark"),
    ]
}

/// `--model` if given, else the first bundled candidate that exists.
pub fn resolve_model(model: Option<&Path>) -> CliResult<PathBuf> {
    if let Some(m) = model {
        return Ok(m.to_path_buf());
    }
    let c = bundled_model_candidates();
    c.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        fail(format!(
            "no --model given and the bundled model is missing (looked for {} and {}): pass --model FILE.spark",
            c[0].display(),
            c[1].display()
        ))
    })
}

/// Parse a comma-separated id list (`1,2,3`).
pub fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty id list: expected comma-separated token ids like 1,2,3".into());
    }
    s.split(',')
        .map(|p| {
            let p = p.trim();
            p.parse::<u32>().map_err(|_| format!("{p:?} is not a token id: expected comma-separated ids like 1,2,3"))
        })
        .collect()
}

/// Parse `4194304`, `4096K`, `4M`, `1G` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], KIB),
        Some('M') => (&t[..t.len() - 1], MIB),
        Some('G') => (&t[..t.len() - 1], GIB),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(mul))
        .ok_or_else(|| format!("{s:?} is not a byte count (e.g. 4194304, 512K, 4M)"))
}

/// The model's tokenizer, `None` when it stores none.
pub fn model_tokenizer<'a>(model: &Model<'a>) -> CliResult<Option<Tokenizer<'a>>> {
    match Tokenizer::new(model) {
        Ok(t) => Ok(Some(t)),
        Err(TokenizerError::NoTokenizer) => Ok(None),
        Err(e) => Err(fail(format!("the model's tokenizer is unusable: {e}"))),
    }
}

/// Encode text with the model's tokenizer (BOS first when it has one and `bos` is set).
pub fn encode_text(tok: &Tokenizer<'_>, text: &[u8], bos: bool) -> CliResult<Vec<u32>> {
    let mut ids = vec![0u32; text.len() + 1];
    let n =
        if bos && tok.bos_id().is_some() { tok.encode_with_bos(text, &mut ids) } else { tok.encode(text, &mut ids) }
            .map_err(|e| fail(format!("cannot tokenize the text: {e}")))?;
    ids.truncate(n);
    Ok(ids)
}

/// The prompt ids from `--prompt` / `--prompt-ids`.
pub fn prompt_ids(
    tok: Option<&Tokenizer<'_>>,
    text: Option<&str>,
    ids: Option<&str>,
    bos: bool,
    vocab: u32,
) -> CliResult<Vec<u32>> {
    let ids = match (ids, text, tok) {
        (Some(s), _, _) => parse_ids(s).map_err(usage)?,
        (None, text, Some(t)) => encode_text(t, text.unwrap_or("").as_bytes(), bos)?,
        (None, Some(_), None) => {
            return Err(fail("this model has no tokenizer, so it cannot read --prompt text: pass --prompt-ids 1,2,3"))
        }
        (None, None, None) => return Err(usage("this model has no tokenizer: give the prompt as --prompt-ids 1,2,3")),
    };
    if ids.is_empty() {
        return Err(fail("the prompt is empty and the tokenizer has no BOS token: give a non-empty --prompt"));
    }
    if let Some(&bad) = ids.iter().find(|&&t| t >= vocab) {
        return Err(fail(format!("prompt token id {bad} is out of range: the model's vocabulary has {vocab} tokens")));
    }
    Ok(ids)
}

/// Load `--checkpoint` and check it has the model's shape.
pub fn oracle_checkpoint(
    model: &Model<'_>,
    checkpoint: Option<&std::path::Path>,
) -> CliResult<(F32Checkpoint, String)> {
    match checkpoint {
        Some(p) => {
            let ck = crate::hf::load_any(p, Some(model.config().max_seq_len)).map_err(fail)?;
            let (a, b) = (ck.config, model.config());
            let same = (a.vocab_size, a.d_model, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim, a.d_ff, a.ffn_kind)
                == (b.vocab_size, b.d_model, b.n_layers, b.n_heads, b.n_kv_heads, b.head_dim, b.d_ff, b.ffn_kind);
            if !same {
                return Err(fail(format!(
                    "checkpoint {} does not have the model's shape: convert it to a .spark and compare that instead",
                    p.display()
                )));
            }
            Ok((ck, format!("f32 oracle on the unquantized weights of {}", p.display())))
        }
        None => {
            let ck = F32Checkpoint::from_spark(model).map_err(|e| fail(format!("cannot dequantize the model: {e}")))?;
            Ok((ck, "f32 oracle on the dequantized int8 weights of the model".to_string()))
        }
    }
}
