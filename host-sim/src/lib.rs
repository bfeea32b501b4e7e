//! `spark-sim`: the desktop side of the Spark Transformer runtime — model writer,
//! quantizer, test-model generator (and, as they land, the f32 oracle, converter and CLI).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod cli;
pub mod format;
pub mod oracle;
pub mod quant;
pub mod rng;
pub mod testmodel;
pub mod tokenizer;
