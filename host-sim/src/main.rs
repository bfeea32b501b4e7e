//! `spark-sim`: the desktop simulator and tooling CLI for Spark Transformer models.
//!
//! Exit statuses (also in `--help`): 0 success, 1
//! runtime or input error (one line on stderr saying what to do), 2 usage error, 101
//! internal error (a panic: a bug in spark-sim). Output piped into a reader that closes
//! early (`| head`) ends the command quietly with status 0.
//!
//! Setting the environment variable `SPARK_SIM_TEST_PANIC` makes the command panic after
//! its arguments are parsed: the tests use it to check the exit status of an internal
//! error end to end.

use clap::{Parser, Subcommand};
use spark_sim::bench::BenchArgs;
use spark_sim::eval::EvalArgs;
use spark_sim::generate::GenerateArgs;
use spark_sim::logits::LogitsArgs;
use spark_sim::plan::PlanArgs;
use spark_sim::ui::{CliError, EXIT_INTERNAL};
use spark_sim::{bench, cli, eval, generate, logits, plan};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "spark-sim",
    version,
    about = "Spark Transformer desktop simulator and model tools: convert, inspect, generate, eval, logits, bench, plan",
    after_help = "Examples:\n  \
        spark-sim convert model.safetensors -o model.spark --tokenizer tokenizer.json\n  \
        spark-sim inspect models/demo.spark\n  \
        spark-sim generate --prompt 'Once upon a time' --tokens 40\n  \
        spark-sim eval --model models/demo.spark --text story.txt --plot sparsity.svg\n  \
        spark-sim bench ffn --shape gemma2-2b\n  \
        spark-sim plan --model models/demo.spark --target cortex-m4\n\n\
        Exit status: 0 success (also when the output is closed early, e.g. by `| head`); 1 runtime or input \
        error, one line on stderr saying what to do (also `plan --check` when the model does not fit); 2 usage \
        error; 101 internal error (a bug in spark-sim: please report it)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert a float checkpoint to an int8 .spark model (train/ naming or Hugging Face Gemma-2).
    ///
    /// Inputs: a safetensors checkpoint in the train/ naming with the config in its
    /// `spark_config` metadata, or a Hugging Face Gemma-2 checkpoint (a model.safetensors
    /// file or a directory with model.safetensors or sharded model-*.safetensors, and
    /// config.json beside it). f32, bf16 and f16 tensors are read. Prints the quantization
    /// error of every matrix.
    #[command(after_help = "Examples:\n  \
        spark-sim convert models/demo_spark.safetensors -o models/demo.spark --tokenizer models/tokenizer.json\n  \
        spark-sim convert tests/hf/tiny-gemma2 -o /tmp/tiny-gemma2.spark")]
    Convert {
        /// The input checkpoint (.safetensors file, or a Hugging Face model directory).
        input: PathBuf,
        /// Output .spark path.
        #[arg(short, long)]
        out: PathBuf,
        /// Tokenizer JSON ({"tokens": [[bytes]...], "merges": [[l, r, result]...], "bos_id", "eos_id"}).
        #[arg(long, value_name = "FILE")]
        tokenizer: Option<PathBuf>,
        /// Override the context length (max_seq_len) stored in the model.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
        max_seq: Option<u32>,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a model's config, parameters, arena size, MACs per token (vs its dense twin) and tensors.
    #[command(after_help = "Example:\n  spark-sim inspect models/demo.spark --json")]
    Inspect {
        /// The .spark model file.
        model: PathBuf,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate text (or token ids) with the int8 runtime, streaming as it is produced.
    #[command(after_help = "Examples:\n  \
        spark-sim generate --prompt 'The little robot' --tokens 60 --temperature 0.8 --top-p 0.95 --seed 3\n  \
        spark-sim generate --model random.spark --prompt-ids 1,2,3 --tokens 8 --json")]
    Generate(GenerateArgs),
    /// Perplexity of the int8 runtime vs the f32 oracle on a text, agreement, and per-layer sparsity.
    #[command(after_help = "Example:\n  \
        spark-sim eval --model models/demo.spark --text story.txt --max-tokens 1024 --plot ffn.svg")]
    Eval(EvalArgs),
    /// Logits at every position of a token sequence (int8 runtime or f32 oracle), printed or as .npy.
    #[command(after_help = "Examples:\n  \
        spark-sim logits --model m.spark --ids 1,2,3 --out logits.npy\n  \
        spark-sim logits --model m.spark --ids 1,2,3 --oracle f32 --json")]
    Logits(LogitsArgs),
    /// Time Spark vs its dense twin (FFN, attention or whole decode) on --threads N, with the bandwidth bound.
    #[command(after_help = "Examples:\n  \
        spark-sim bench ffn --shape gemma2-2b\n  \
        spark-sim bench attn --ctx 8192 --json\n  \
        spark-sim bench model --ctx 512,4096,8192 --iters 10        # full gemma2-2b pair, 2 x 2.6 GB\n  \
        spark-sim bench model --layers 1 --vocab 4096 --ctx 256     # the quick one-layer pair\n  \
        spark-sim bench model --shape spark.spark --dense dense.spark --ctx 512 --prefill")]
    Bench(BenchArgs),
    /// Check whether a model fits a target's RAM and flash, and which knob fixes it if not.
    ///
    /// Presets (the QEMU boards the project runs on; override with --ram / --flash):
    ///   cortex-m4   mps2-an386: RAM 4 MiB (SSRAM2/3 @0x20000000), flash 4 MiB (SSRAM1 @0x0, code + model)
    ///   cortex-m7   mps2-an500: RAM 4 MiB (SSRAM2/3 @0x20000000), flash 4 MiB (SSRAM1 @0x0, code + model)
    ///   cortex-m33  mps2-an505: RAM 4 MiB (SSRAM2/3 @0x38000000), flash 4 MiB (SSRAM1 @0x10000000)
    ///   cortex-m55  mps3-an547: RAM 4 MiB (SRAM @0x21000000), code 512 KiB ITCM, model 8 MiB QSPI @0x28000000
    ///   cortex-a53  a Raspberry Pi 3 class board: RAM 1 GiB, storage 8 GiB
    ///   host        this machine: RAM from /proc/meminfo, storage unlimited
    /// Estimates: code 128 KiB and stack 16 KiB on Cortex-M (2 MiB / 8 MiB on a53 and host).
    #[command(
        verbatim_doc_comment,
        after_help = "Example:\n  \
        spark-sim plan --model models/demo.spark --target cortex-m4 --max-seq 256"
    )]
    Plan(PlanArgs),
    /// Write a random model of a small built-in config (for tests and trying the tools).
    #[command(after_help = "Example:\n  spark-sim random-model -o /tmp/random.spark --seed 3")]
    RandomModel {
        /// Output path.
        #[arg(short, long)]
        out: PathBuf,
        /// PRNG seed for the weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    // A panic is a bug: report it in one line, without a backtrace hint, with its own
    // exit status (not 1, which is a problem with the input).
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let _ = writeln!(std::io::stderr(), "error: internal error{at}: {msg} (a bug in spark-sim; please report it)");
        std::process::exit(EXIT_INTERNAL.into());
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if std::env::var_os("SPARK_SIM_TEST_PANIC").is_some() {
        panic!("SPARK_SIM_TEST_PANIC is set");
    }
    let res = match cli.cmd {
        Cmd::Convert { input, out, tokenizer, max_seq, json } => {
            cli::convert(&input, &out, tokenizer.as_deref(), max_seq, json)
        }
        Cmd::Inspect { model, json } => cli::inspect(&model, json),
        Cmd::Generate(a) => generate::generate(&a),
        Cmd::Eval(a) => eval::eval(&a),
        Cmd::Logits(a) => logits::logits(&a),
        Cmd::Bench(a) => bench::bench(&a),
        Cmd::Plan(a) => plan::plan(&a),
        Cmd::RandomModel { out, seed } => cli::random_model(&out, seed),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
