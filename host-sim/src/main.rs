//! `spark-sim`: the desktop simulator and tooling CLI for Spark Transformer models.

use clap::{Parser, Subcommand};
use spark_sim::cli;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "spark-sim", version, about = "Spark Transformer desktop simulator and model tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a model's config, parameter counts and tensor table.
    ///
    /// Example: spark-sim inspect models/demo.spark
    Inspect {
        /// The `.spark` model file.
        model: PathBuf,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a random model of a small built-in config (for tests and trying the tools).
    ///
    /// Example: spark-sim random-model -o /tmp/random.spark --seed 3
    RandomModel {
        /// Output path.
        #[arg(short, long)]
        out: PathBuf,
        /// PRNG seed for the weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Convert a float safetensors checkpoint (f32/bf16/f16, train/ naming, config in the
    /// `spark_config` metadata) to an int8 `.spark` model; prints per-tensor quantization error.
    ///
    /// Example: spark-sim convert model.safetensors -o model.spark
    Convert {
        /// The input `.safetensors` checkpoint.
        input: PathBuf,
        /// Output `.spark` path.
        #[arg(short, long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Inspect { model, json } => cli::inspect(&model, json),
        Cmd::RandomModel { out, seed } => cli::random_model(&out, seed),
        Cmd::Convert { input, out } => cli::convert(&input, &out),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
