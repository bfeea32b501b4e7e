//! `spark-sim`: the desktop side of the Spark Transformer runtime — model writer,
//! quantizer, test-model generator, f32 oracle, converter and the CLI subcommands.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod arena;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod eval;
pub mod files;
pub mod format;
pub mod generate;
pub mod hf;
pub mod hugemem;
pub mod inputs;
pub mod logits;
pub mod metrics;
pub mod npy;
pub mod oracle;
pub mod plan;
pub mod quant;
pub mod rng;
pub mod stats;
pub mod testmodel;
pub mod tokenizer;
pub mod ui;
