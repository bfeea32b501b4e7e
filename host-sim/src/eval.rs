//! `spark-sim eval`: perplexity of the int8 runtime and of the f32 oracle over a text
//! file, their agreement (top-1, KL), and the sparsity the runtime achieved per layer,
//! optionally plotted as an SVG.
//!
//! The text is tokenized with the model's tokenizer and cut into windows of at most
//! `max_seq_len` tokens (each starting with BOS when the tokenizer has one); each window
//! runs from an empty cache in both engines, and every token after the first of a window
//! is predicted from the ones before it.

use crate::arena::session_arena;
use crate::inputs::{
    encode_text, load_model, model_tokenizer, oracle_checkpoint, read_input, read_model_file, resolve_model,
};
/// Re-exported where callers have always found them.
use crate::metrics::{kl, log_softmax};
use crate::oracle::{OracleSession, EVENT_OVERFLOW, EVENT_UNDERFLOW};
use crate::stats::stats_json;
use crate::threads::Pool;
use crate::ui::{fail, print_json, progress, Backend, CliResult};
use crate::with_backend;
use spark_core::sampler::argmax;
use spark_core::{LayerStats, Model, Session};
use spark_hal::Kernels;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Arguments of `spark-sim eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The `.spark` model [default: the bundled models/demo.spark].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// UTF-8 (or any bytes) text file to evaluate on.
    #[arg(long, value_name = "FILE")]
    pub text: PathBuf,
    /// Evaluate at most this many tokens of the text (the f32 oracle is slow on big models).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(2..))]
    pub max_tokens: u64,
    /// Float weights for the oracle (train/ safetensors or Hugging Face Gemma-2); default:
    /// the dequantized int8 weights of --model.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Write an SVG plot of the per-layer active FFN fraction here.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Kernel backend of the int8 runtime.
    #[arg(long, value_enum, default_value_t)]
    pub backend: Backend,
    /// Threads that run the int8 runtime's integer products and attention heads (1 to 256)
    /// [default: the cores available]. Any count gives the same tokens and logits.
    #[arg(long, value_parser = crate::threads::parse_threads, value_name = "N")]
    pub threads: Option<usize>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Everything one evaluation measures.
#[derive(Debug, Default)]
pub struct EvalReport {
    /// Tokens of the text (after truncation).
    pub tokens: usize,
    /// Windows run.
    pub windows: usize,
    /// Predicted tokens.
    pub predicted: usize,
    /// Summed negative log-likelihood, int8 runtime.
    pub nll_int8: f64,
    /// Summed negative log-likelihood, oracle.
    pub nll_oracle: f64,
    /// Positions where both engines have the same argmax.
    pub top1_agree: usize,
    /// Summed `KL(oracle || int8)`.
    pub kl_sum: f64,
    /// Positions where the int8 argmax is the next token.
    pub correct_int8: usize,
    /// Positions where the oracle argmax is the next token.
    pub correct_oracle: usize,
    /// Per-layer statistics of the int8 runtime.
    pub int8_stats: Vec<LayerStats>,
    /// Per-layer mean active FFN neurons of the oracle.
    pub oracle_ffn_mean: Vec<f64>,
    /// Oracle FFN overflow / underflow events.
    pub oracle_ffn_events: (u64, u64),
    /// Oracle attention overflow / underflow events.
    pub oracle_attn_events: (u64, u64),
}

fn evaluate<K: Kernels>(
    model: &Model<'_>,
    ck: &crate::checkpoint::F32Checkpoint,
    windows: &[Vec<u32>],
    pool: &Pool,
    show: bool,
) -> CliResult<EvalReport> {
    let cfg = *model.config();
    let n_layers = cfg.n_layers as usize;
    let max_seq = windows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut arena = session_arena(model, max_seq, spark_core::Executor::threads(pool))?;
    let mut sess = Session::<K, _>::with_executor(model, &mut arena, max_seq, pool).map_err(|e| fail(e.to_string()))?;
    let mut oracle = OracleSession::new(ck).map_err(|e| fail(e.to_string()))?;
    let mut r = EvalReport { int8_stats: vec![LayerStats::EMPTY; n_layers], ..Default::default() };
    let mut oracle_ffn_sum = vec![0u64; n_layers];
    let mut oracle_tokens = 0u64;
    let total: usize = windows.iter().map(Vec::len).sum();
    let pb = progress(total as u64, show, "eval");
    for w in windows {
        sess.reset();
        oracle.reset();
        for (i, &t) in w.iter().enumerate() {
            let li = sess.step(t).map_err(|e| fail(e.to_string()))?;
            let st = oracle.step_trace(t).map_err(|e| fail(e.to_string()))?;
            oracle_tokens += 1;
            for l in 0..n_layers {
                oracle_ffn_sum[l] += st.ffn_active[l].len() as u64;
                match st.ffn_events[l] {
                    EVENT_OVERFLOW => r.oracle_ffn_events.0 += 1,
                    EVENT_UNDERFLOW => r.oracle_ffn_events.1 += 1,
                    _ => {}
                }
                for &e in &st.attn_events[l] {
                    match e {
                        EVENT_OVERFLOW => r.oracle_attn_events.0 += 1,
                        EVENT_UNDERFLOW => r.oracle_attn_events.1 += 1,
                        _ => {}
                    }
                }
            }
            if let Some(&next) = w.get(i + 1) {
                let (lpi, lpo) = (log_softmax(li), log_softmax(&st.logits));
                r.nll_int8 -= lpi[next as usize];
                r.nll_oracle -= lpo[next as usize];
                r.kl_sum += kl(&lpo, &lpi);
                let (ai, ao) = (argmax(li).ok(), argmax(&st.logits).ok());
                r.top1_agree += (ai.is_some() && ai == ao) as usize;
                r.correct_int8 += (ai == Some(next)) as usize;
                r.correct_oracle += (ao == Some(next)) as usize;
                r.predicted += 1;
            }
            pb.inc(1);
        }
        for (acc, s) in r.int8_stats.iter_mut().zip(sess.stats()) {
            acc.merge(s);
        }
    }
    pb.finish_and_clear();
    r.windows = windows.len();
    r.tokens = total;
    r.oracle_ffn_mean = oracle_ffn_sum.iter().map(|&s| s as f64 / oracle_tokens.max(1) as f64).collect();
    Ok(r)
}

/// The token ids cut into windows of at most `max_seq` tokens, each starting with BOS
/// when the tokenizer has one; windows of fewer than 2 tokens (nothing to predict) are
/// dropped.
fn windows(ids: &[u32], bos: Option<u32>, max_seq: usize, text: &Path) -> CliResult<Vec<Vec<u32>>> {
    let per_window = if bos.is_some() { max_seq - 1 } else { max_seq };
    if per_window == 0 {
        return Err(fail("the model's context (max_seq_len 1) is too short to evaluate"));
    }
    let windows: Vec<Vec<u32>> = ids
        .chunks(per_window)
        .map(|c| bos.into_iter().chain(c.iter().copied()).collect::<Vec<u32>>())
        .filter(|w| w.len() >= 2)
        .collect();
    if windows.is_empty() {
        return Err(fail(format!("{} is too short: it must give at least 2 tokens", text.display())));
    }
    Ok(windows)
}

/// What an evaluation report states besides the [`EvalReport`] itself.
struct Summary<'s> {
    path: &'s Path,
    oracle_what: &'s str,
    cfg: spark_core::Config,
    /// Bytes of the text file.
    text_bytes: usize,
    /// Tokens evaluated (after `--max-tokens`).
    tokens: usize,
    /// Predicted positions (at least 1, the divisor of the means).
    n: f64,
    ppl_i: f64,
    ppl_o: f64,
    /// The configured FFN density `k / f`.
    density: f64,
}

/// `spark-sim eval`.
pub fn eval(a: &EvalArgs) -> CliResult {
    let path = resolve_model(a.model.as_deref())?;
    let blob = read_model_file(&path)?;
    let model = load_model(&blob, &path)?;
    let cfg = *model.config();
    let tok = model_tokenizer(&model)?.ok_or_else(|| {
        fail(format!("{} has no tokenizer, so it cannot read text: convert it with --tokenizer", path.display()))
    })?;
    let text = read_input(&a.text, "text file")?;
    let mut ids = encode_text(&tok, &text, false)?;
    ids.truncate(a.max_tokens as usize);
    let windows = windows(&ids, tok.bos_id(), cfg.max_seq_len as usize, &a.text)?;
    let (ck, oracle_what) = oracle_checkpoint(&model, a.checkpoint.as_deref())?;
    let pool = Pool::new(a.threads)?;
    let r = pool.run(|| with_backend!(a.backend, evaluate(&model, &ck, &windows, &pool, !a.json)))?;
    let n = r.predicted.max(1) as f64;
    let s = Summary {
        path: &path,
        oracle_what: &oracle_what,
        cfg,
        text_bytes: text.len(),
        tokens: ids.len(),
        n,
        ppl_i: (r.nll_int8 / n).exp(),
        ppl_o: (r.nll_oracle / n).exp(),
        density: cfg.ffn_k.min(cfg.d_ff) as f64 / cfg.d_ff as f64,
    };
    if let Some(plot) = &a.plot {
        write_plot(plot, &cfg, &r, s.density)?;
    }
    if a.json {
        print_eval_json(a, &s, &r)
    } else {
        print_eval_text(a, &s, &r)
    }
}

/// The evaluation as JSON.
fn print_eval_json(a: &EvalArgs, s: &Summary<'_>, r: &EvalReport) -> CliResult {
    let Summary { path, oracle_what, cfg, n, ppl_i, ppl_o, density, .. } = *s;
    print_json(&serde_json::json!({
        "model": path.display().to_string(),
        "backend": a.backend.kernel_name(),
        "oracle": oracle_what,
        "text": a.text.display().to_string(),
        "tokens": s.tokens,
        "windows": r.windows,
        "predicted": r.predicted,
        "perplexity_int8": ppl_i,
        "perplexity_oracle": ppl_o,
        "top1_agreement": r.top1_agree as f64 / n,
        "mean_kl_oracle_int8": r.kl_sum / n,
        "next_token_accuracy_int8": r.correct_int8 as f64 / n,
        "next_token_accuracy_oracle": r.correct_oracle as f64 / n,
        "configured_ffn_density": density,
        "oracle_ffn_active_mean": r.oracle_ffn_mean,
        "oracle_events": {"ffn_overflows": r.oracle_ffn_events.0, "ffn_underflows": r.oracle_ffn_events.1,
                          "attn_overflows": r.oracle_attn_events.0, "attn_underflows": r.oracle_attn_events.1},
        "stats": stats_json(&cfg, &r.int8_stats),
        "plot": a.plot.as_ref().map(|p| p.display().to_string()),
    }))
}

/// The evaluation as text: perplexities, agreement, and the per-layer sparsity table.
fn print_eval_text(a: &EvalArgs, s: &Summary<'_>, r: &EvalReport) -> CliResult {
    let Summary { path, oracle_what, cfg, n, ppl_i, ppl_o, density, .. } = *s;
    let max_seq = cfg.max_seq_len as usize;
    let mut o = io::stdout().lock();
    writeln!(o, "model        {} (int8 runtime, kernels {})", path.display(), a.backend.kernel_name())?;
    writeln!(o, "oracle       {oracle_what}")?;
    writeln!(
        o,
        "text         {}: {} bytes -> {} tokens in {} window(s) of <= {max_seq}, {} predicted",
        a.text.display(),
        s.text_bytes,
        s.tokens,
        r.windows,
        r.predicted
    )?;
    writeln!(o, "perplexity   int8 {ppl_i:.4}   oracle {ppl_o:.4}   (int8/oracle {:.4})", ppl_i / ppl_o)?;
    writeln!(
        o,
        "agreement    top-1 {:.2}%   mean KL(oracle || int8) {:.3e} nats   next-token accuracy int8 {:.2}% oracle {:.2}%",
        100.0 * r.top1_agree as f64 / n,
        r.kl_sum / n,
        100.0 * r.correct_int8 as f64 / n,
        100.0 * r.correct_oracle as f64 / n
    )?;
    writeln!(o, "sparsity     configured FFN density k/f = {}/{} = {:.2}%", cfg.ffn_k, cfg.d_ff, 100.0 * density)?;
    writeln!(
        o,
        "layer  ffn active (int8) min/mean/max   int8 %   oracle %   attn keys min/mean/max   int8 ffn ovf/unf   attn ovf/unf"
    )?;
    for (l, s) in r.int8_stats.iter().enumerate() {
        writeln!(
            o,
            "{l:>5}  {:>8} {:>9.1} {:>8}   {:>6.2}   {:>8.2}   {:>6} {:>8.1} {:>6}   {:>8}/{:<8} {:>6}/{:<6}",
            s.ffn_active_min,
            s.ffn_active_mean(),
            s.ffn_active_max,
            100.0 * s.ffn_active_mean() / cfg.d_ff as f64,
            100.0 * r.oracle_ffn_mean[l] / cfg.d_ff as f64,
            s.attn_keys_min,
            s.attn_keys_mean(),
            s.attn_keys_max,
            s.ffn_overflows,
            s.ffn_underflows,
            s.attn_overflows,
            s.attn_underflows
        )?;
    }
    writeln!(
        o,
        "oracle top-k events: ffn overflows {} underflows {}, attention overflows {} underflows {}",
        r.oracle_ffn_events.0, r.oracle_ffn_events.1, r.oracle_attn_events.0, r.oracle_attn_events.1
    )?;
    if let Some(p) = &a.plot {
        writeln!(o, "plot         {}", p.display())?;
    }
    Ok(())
}

/// SVG of the per-layer mean active FFN fraction (int8, and the oracle's), with the
/// configured density `k/f` as a reference line.
pub fn write_plot(path: &Path, cfg: &spark_core::Config, r: &EvalReport, density: f64) -> CliResult {
    use plotters::prelude::*;
    let f = cfg.d_ff as f64;
    let int8: Vec<(f64, f64)> =
        r.int8_stats.iter().enumerate().map(|(l, s)| (l as f64, s.ffn_active_mean() / f)).collect();
    let oracle: Vec<(f64, f64)> = r.oracle_ffn_mean.iter().enumerate().map(|(l, &m)| (l as f64, m / f)).collect();
    let ymax = int8.iter().chain(&oracle).map(|p| p.1).fold(density, f64::max) * 1.25;
    let layers = r.int8_stats.len().max(1) as f64;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Active FFN fraction per layer", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..(layers - 0.5), 0.0..ymax.max(1e-6))?;
        chart
            .configure_mesh()
            .x_desc("layer")
            .y_desc("active neurons / d_ff")
            .x_labels(2 * layers as usize + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_label_formatter(&|y| format!("{:.1}%", 100.0 * y))
            .draw()?;
        chart
            .draw_series(LineSeries::new(vec![(-0.5, density), (layers - 0.5, density)], RED.stroke_width(2)))?
            .label(format!("configured k/f = {:.2}%", 100.0 * density))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_series(LineSeries::new(oracle.clone(), BLUE.mix(0.6).stroke_width(2)))?
            .label("f32 oracle")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.mix(0.6)));
        chart
            .draw_series(LineSeries::new(int8.clone(), BLACK.stroke_width(2)))?
            .label("int8 runtime")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        chart.draw_series(int8.iter().map(|&p| Circle::new(p, 4, BLACK.filled())))?;
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| fail(format!("cannot write the plot {}: {e}", path.display())))
}
