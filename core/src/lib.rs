//! `spark-core`: Spark Transformer inference without std or an allocator.
//!
//! Modules, in the order data flows: [`format`] loads and validates a `.spark` file into a
//! [`Model`] that reads weights in place; [`topk`] is the statistical top-k operator
//! (SPEC section 6).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod format;
pub mod sampler;
pub mod session;
pub mod tensor;
pub mod tokenizer;
pub mod topk;

pub use config::{AttnKind, Config, FfnKind};
pub use error::{ModelError, RunError};
pub use format::{Model, TokenizerKind, TokenizerMeta};
pub use session::{LayerStats, Observer, Session};
pub use tensor::{DType, TensorId, TensorKind};
