//! `spark-sim generate`: stream text (or token ids) from a `.spark` model with the int8
//! runtime, greedy or sampled, with optional sparsity statistics and a JSON report whose
//! `logits_digest` (FNV-1a-64 over every step's logits) pins the exact numerics.

use crate::arena::session_arena;
use crate::inputs::{load_model, model_tokenizer, prompt_ids, read_model_file, resolve_model};
use crate::stats::{stats_json, stats_table};
use crate::threads::Pool;
use crate::ui::{fail, note, print_json, progress, usage, Backend, CliResult};
use crate::with_backend;
use spark_core::digest::Fnv1a64;
use spark_core::sampler::{Sampler, Sampling};
use spark_core::tokenizer::{Tokenizer, Utf8Stream};
use spark_core::{Executor, Model, Session};
use spark_hal::Kernels;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `spark-sim generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// The `.spark` model [default: the bundled models/demo.spark].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Prompt text (the model must carry a tokenizer). Empty or absent: start from the BOS token.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// Prompt as comma-separated token ids (for models without a tokenizer), e.g. 1,2,3.
    #[arg(long, value_name = "IDS")]
    pub prompt_ids: Option<String>,
    /// Number of tokens to generate (at least 1). Generation stops earlier, with a message
    /// on stderr (`stop` in --json), at the end-of-sequence token or when the model's
    /// context is full: at most max_seq_len - (prompt tokens) + 1 tokens are generated,
    /// whatever --tokens asks.
    #[arg(long, short = 'n', default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub tokens: u32,
    /// Seed of the sampler's generator (xoshiro128**).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampling temperature; 0 = greedy (argmax).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens holding this probability mass (needs --temperature > 0).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Kernel backend: auto = fastest for this CPU, scalar = the portable oracle kernels.
    #[arg(long, value_enum, default_value_t)]
    pub backend: Backend,
    /// Threads that run the int8 runtime's integer products and attention heads (1 to 256)
    /// [default: the cores available]. Any count gives the same tokens and logits.
    #[arg(long, value_parser = crate::threads::parse_threads, value_name = "N")]
    pub threads: Option<usize>,
    /// Do not prepend the tokenizer's BOS token to a text prompt.
    #[arg(long)]
    pub no_bos: bool,
    /// Print per-layer sparsity statistics (to stderr) after the text.
    #[arg(long)]
    pub stats: bool,
    /// Print one JSON object (ids, text, logits digest, speed, statistics) instead of streaming.
    #[arg(long)]
    pub json: bool,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Tokens,
    Eos,
    Context,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Tokens => "tokens",
            Stop::Eos => "eos",
            Stop::Context => "context_full",
        }
    }
}

/// `spark-sim generate`.
pub fn generate(a: &GenerateArgs) -> CliResult {
    let path = resolve_model(a.model.as_deref())?;
    let blob = read_model_file(&path)?;
    let model = load_model(&blob, &path)?;
    let tok = model_tokenizer(&model)?;
    if a.temperature < 0.0 || !a.temperature.is_finite() {
        return Err(usage(format!("--temperature {} must be >= 0 (0 = greedy)", a.temperature)));
    }
    let sampling = match (a.temperature, a.top_p) {
        (0.0, _) => Sampling::Greedy,
        (t, Some(p)) => Sampling::TopP { t, p },
        (t, None) => Sampling::Temperature { t },
    };
    sampling.validate().map_err(|e| usage(format!("{e}")))?;
    if a.temperature == 0.0 && a.top_p.is_some() {
        note("note: --top-p has no effect with --temperature 0 (greedy)");
    }
    let prompt =
        prompt_ids(tok.as_ref(), a.prompt.as_deref(), a.prompt_ids.as_deref(), !a.no_bos, model.config().vocab_size)?;
    let max_seq = model.config().max_seq_len as usize;
    if prompt.len() > max_seq {
        return Err(fail(format!(
            "the prompt is {} tokens but the model's context holds {max_seq} (max_seq_len): shorten the prompt",
            prompt.len()
        )));
    }
    let pool = Pool::new(a.threads)?;
    pool.run(|| with_backend!(a.backend, run(&model, tok.as_ref(), &prompt, sampling, a, &path, &pool)))
}

/// The text of a run: streamed to stdout as it is decoded (unless `--json`) and collected
/// for the JSON report. Token bytes go through one UTF-8 stream, so a character split
/// across tokens (or across the prompt and the first generated token) prints whole.
struct TextOut<'t, 'o> {
    out: io::StdoutLock<'o>,
    tok: Option<&'t Tokenizer<'t>>,
    stream: Utf8Stream,
    /// The generated text (the prompt is not part of it).
    text: String,
    /// Stream to stdout (false with `--json`).
    show: bool,
}

impl<'t> TextOut<'t, '_> {
    fn new(tok: Option<&'t Tokenizer<'t>>, show: bool) -> Self {
        TextOut { out: io::stdout().lock(), tok, stream: Utf8Stream::new(), text: String::new(), show }
    }

    /// Echo the prompt so the continuation reads naturally (text without BOS, or the ids).
    fn echo_prompt(&mut self, prompt: &[u32], bos: Option<u32>) -> CliResult {
        if !self.show {
            return Ok(());
        }
        let out = &mut self.out;
        if let Some(t) = self.tok {
            let mut res = Ok(());
            for &id in prompt.iter().filter(|&&id| Some(id) != bos) {
                let bytes = t.decode_token(id).map_err(|e| fail(e.to_string()))?;
                self.stream.push(bytes, &mut |s: &str| {
                    if res.is_ok() {
                        res = write!(out, "{s}");
                    }
                });
            }
            res?;
            out.flush()?;
        } else {
            let ids: Vec<String> = prompt.iter().map(|i| i.to_string()).collect();
            write!(out, "{} |", ids.join(" "))?;
        }
        Ok(())
    }

    /// One generated token: its text (or ` id` for a model without a tokenizer).
    fn token(&mut self, id: u32) -> CliResult {
        let (out, show, text) = (&mut self.out, self.show, &mut self.text);
        match self.tok {
            Some(t) => {
                let bytes = t.decode_token(id).map_err(|e| fail(e.to_string()))?;
                let mut res = Ok(());
                self.stream.push(bytes, &mut |s: &str| {
                    if show && res.is_ok() {
                        res = write!(out, "{s}");
                    }
                    text.push_str(s);
                });
                res?;
            }
            None if show => write!(out, " {id}")?,
            None => {}
        }
        if show {
            out.flush()?;
        }
        Ok(())
    }

    /// The end of the text: an incomplete character left in the stream prints as U+FFFD.
    fn finish(&mut self) -> CliResult {
        let (out, show, text) = (&mut self.out, self.show, &mut self.text);
        let mut res = Ok(());
        self.stream.finish(&mut |s: &str| {
            if show && res.is_ok() {
                res = write!(out, "{s}");
            }
            text.push_str(s);
        });
        Ok(res?)
    }
}

/// Feed the prompt; every step's logits go into the digest. Returns the seconds taken.
fn prefill<K: Kernels, E: Executor>(
    sess: &mut Session<'_, '_, K, E>,
    prompt: &[u32],
    digest: &mut Fnv1a64,
    show: bool,
) -> CliResult<f64> {
    let pb = progress(prompt.len() as u64, show && prompt.len() >= 32, "prefill");
    let t0 = Instant::now();
    for &t in prompt {
        let logits = sess.step(t).map_err(|e| fail(e.to_string()))?;
        digest.update_f32(logits);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(t0.elapsed().as_secs_f64())
}

/// Sample, print and feed tokens until `tokens`, the end-of-sequence token or the end of
/// the model's context `max_seq` (the session may be shorter: it ends where `tokens`
/// does); every fed token's logits go into the digest.
#[allow(clippy::too_many_arguments)]
fn decode<K: Kernels, E: Executor>(
    sess: &mut Session<'_, '_, K, E>,
    sampler: &mut Sampler,
    digest: &mut Fnv1a64,
    eos: Option<u32>,
    tokens: usize,
    max_seq: usize,
    text: &mut TextOut<'_, '_>,
) -> CliResult<(Vec<u32>, Stop)> {
    let mut scratch = vec![0u32; sess.logits().len()];
    // At most the context left after the prompt, plus the last (sampled, not fed) token.
    let room = max_seq - sess.pos() + 1;
    let mut generated: Vec<u32> = Vec::with_capacity(tokens.min(room));
    let stop = loop {
        let next = sampler.sample(sess.logits(), &mut scratch).map_err(|e| fail(format!("sampling failed: {e}")))?;
        generated.push(next);
        if Some(next) == eos {
            break Stop::Eos;
        }
        text.token(next)?;
        if generated.len() >= tokens {
            break Stop::Tokens;
        }
        if sess.pos() >= sess.max_seq() {
            break Stop::Context;
        }
        let logits = sess.step(next).map_err(|e| fail(e.to_string()))?;
        digest.update_f32(logits);
    };
    Ok((generated, stop))
}

fn run<K: Kernels>(
    model: &Model<'_>,
    tok: Option<&Tokenizer<'_>>,
    prompt: &[u32],
    sampling: Sampling,
    a: &GenerateArgs,
    path: &std::path::Path,
    pool: &Pool,
) -> CliResult {
    let cfg = *model.config();
    let max_seq = cfg.max_seq_len as usize;
    // The last generated token is sampled, not fed: the session holds the prompt and
    // `--tokens - 1` generated tokens, at most the model's context.
    let tokens = a.tokens as usize;
    let session_len = prompt.len().saturating_add(tokens - 1).min(max_seq);
    let mut arena = session_arena(model, session_len, pool.threads())?;
    let mut sess =
        Session::<K, _>::with_executor(model, &mut arena, session_len, pool).map_err(|e| fail(e.to_string()))?;
    let mut sampler = Sampler::new(sampling, a.seed).map_err(|e| usage(e.to_string()))?;
    let mut digest = Fnv1a64::new();
    let eos = tok.and_then(|t| t.eos_id()).or(model.tokenizer_meta().eos_id);
    let bos = tok.and_then(|t| t.bos_id());

    let prefill_s = prefill(&mut sess, prompt, &mut digest, !a.json)?;
    let mut text = TextOut::new(tok, !a.json);
    text.echo_prompt(prompt, bos)?;
    let t1 = Instant::now();
    let (generated, stop) = decode(&mut sess, &mut sampler, &mut digest, eos, tokens, max_seq, &mut text)?;
    let decode_s = t1.elapsed().as_secs_f64();
    text.finish()?;
    let tps = generated.len() as f64 / decode_s.max(1e-9);
    let prefill_tps = prompt.len() as f64 / prefill_s.max(1e-9);
    if a.json {
        drop(text.out);
        let v = serde_json::json!({
            "model": path.display().to_string(),
            "backend": a.backend.kernel_name(),
            "threads": pool.threads(),
            "prompt_ids": prompt,
            "token_ids": generated,
            "text": if tok.is_some() { serde_json::Value::String(text.text) } else { serde_json::Value::Null },
            "stop": stop.name(),
            "logits_digest": digest.to_string(),
            "tokens_per_s": tps,
            "prefill_tokens_per_s": prefill_tps,
            "stats": stats_json(&cfg, sess.stats()),
        });
        return print_json(&v);
    }
    let mut out = text.out;
    writeln!(out)?;
    out.flush()?;
    drop(out);
    match stop {
        Stop::Eos => note("[stopped at the end-of-sequence token]"),
        Stop::Context => note(format!(
            "[stopped: the context is full ({max_seq} tokens, the model's max_seq_len) after {} generated tokens]",
            generated.len()
        )),
        Stop::Tokens => {}
    }
    note(format!(
        "[{} prompt tokens at {prefill_tps:.1} tok/s, {} generated at {tps:.1} tok/s, kernels {}, {} thread(s), logits digest {}]",
        prompt.len(),
        generated.len(),
        a.backend.kernel_name(),
        pool.threads(),
        digest
    ));
    if a.stats {
        let _ = write!(io::stderr(), "{}", stats_table(&cfg, sess.stats()));
    }
    Ok(())
}
