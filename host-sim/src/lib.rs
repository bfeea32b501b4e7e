//! `spark-sim`: the desktop side of the Spark Transformer runtime — model writer,
//! quantizer, test-model generator, f32 oracle, converter and the CLI subcommands.
//!
//! Modules by job:
//!
//! - Models on the desktop: [`quant`] (int8 rows) and [`format`](mod@format) (the `.spark` writer),
//!   [`checkpoint`] (float checkpoints in the `train/` naming) and [`hf`] (Hugging Face
//!   Gemma-2), [`tokenizer`] (byte-level BPE), [`testmodel`] and [`rng`] (random models),
//!   [`oracle`] (the f32 reference forward pass).
//! - What the subcommands share: [`files`] (only regular files are read), [`inputs`]
//!   (model and input files, tokenizer, prompts, the oracle's checkpoint), [`arena`] (the
//!   session arena), [`hugemem`] (huge-page-advised buffers), [`metrics`]
//!   (log-softmax, KL), [`stats`] (sparsity tables), [`npy`], and [`ui`]
//!   (errors and exit statuses, output, progress, the kernel backend switch), [`threads`]
//!   (the thread pool that runs the runtime's chunks, `--threads`).
//! - One module per subcommand: [`cli`] (`inspect`, `convert`, `random-model`),
//!   [`generate`], [`eval`], [`logits`], [`bench`](mod@bench) (one file per benchmark), [`plan`].
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
pub mod threads;
pub mod tokenizer;
pub mod ui;
