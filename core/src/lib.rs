//! `spark-core`: Spark Transformer inference without std or an allocator.
//!
//! Modules, in the order data flows through one decoded token:
//!
//! 1. [`format`] validates a `.spark` file once and gives a [`Model`] that reads weights
//!    in place; [`config`] ([`Config`], read-only once loaded), [`tensor`] (tensor ids
//!    and dtypes) and [`error`] ([`ModelError`], [`RunError`]) describe it.
//! 2. [`tokenizer`] turns text into token ids (byte-level BPE from the model file).
//! 3. [`session`] decodes: a [`Session`] over a caller-provided arena (exactly
//!    [`Model::arena_bytes`]) embeds a token and runs every layer:
//!    - [`attention`]: projections, RoPE, the int8 KV cache, then
//!      [`attention::attend_heads_on`] runs [`attention::attend_head`] for every query head
//!      (several at once on a multi-threaded executor) with [`attention::AttnParams`]
//!      (window, `ka`, `z`, capacity);
//!    - [`ffn`]: [`ffn::spark_ffn`] or [`ffn::geglu_ffn`] with [`ffn::FfnPlan`] (`k`,
//!      `z`, capacity);
//!    - both select with [`topk`], the statistical top-k operator (SPEC section 6), and
//!      share [`ops`] (RMSNorm, RoPE, GELU, quantized matvec, sparse row output).
//! 4. [`stats`] counts what each layer selected ([`LayerStats`], [`Observer`]).
//! 5. [`sampler`] picks the next token from the logits ([`sampler::argmax`], or
//!    temperature / top-p with a seeded generator); [`digest`] fingerprints the logits
//!    (the determinism contract: the same digest on every target).
//!
//! Every integer product runs on a `spark-hal` kernel backend `K` (static dispatch);
//! every float operation is fixed-order code here, identical on every target. The big
//! integer products are split into fixed chunks for an [`exec::Executor`] `E` (the
//! session's second type parameter, [`exec::Sequential`] by default; a thread pool on a
//! desktop), with the same bits for any thread count.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attention;
pub mod config;
pub mod digest;
pub mod error;
pub mod exec;
pub mod ffn;
pub mod format;
pub mod ops;
pub mod sampler;
pub mod session;
pub mod stats;
pub mod tensor;
pub mod tokenizer;
pub mod topk;

pub use config::{AttnKind, Config, FfnKind};

/// `n` pseudo-random bytes from `seed` (xorshift64), for the unit tests.
#[cfg(test)]
pub(crate) fn test_bytes(seed: u64, n: usize) -> std::vec::Vec<i8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as i8
        })
        .collect()
}
pub use error::{ModelError, RunError};
pub use exec::{Executor, Sequential};
pub use format::{Model, TokenizerKind, TokenizerMeta};
pub use session::Session;
pub use stats::{LayerStats, Observer};
pub use tensor::{DType, TensorId, TensorKind};
