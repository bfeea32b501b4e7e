//! `spark-sim bench`: timings of the Spark FFN, Spark attention and whole decode steps
//! against their dense twins, measured in the same run (SPEC section 11), on `--threads N`
//! threads (the runtime's chunks on a [`Pool`]), with the read bandwidth of the same
//! number of threads as the memory bound.
//!
//! Weights and KV caches are random int8 built directly in memory. Several copies are
//! kept and rotated so that the bytes touched between two uses of one copy exceed the
//! last-level cache: every timed call reads its weights from DRAM, as decode does.
//! Timings are medians over `--iters` calls after a short warm-up.
//!
//! One file per job: [`args`] (the command line), [`shape`] (benchmark shapes),
//! [`machine`] (cache size, read bandwidth, weight rotation), `weights` (random int8
//! matrices), [`report`] (medians and the shared report), and one file per benchmark:
//! `ffn`, `attn`, [`model`], and [`ceiling`] (the bytes a decode step must read).

pub mod args;
mod attn;
pub mod ceiling;
mod ffn;
pub mod machine;
pub mod model;
pub mod report;
pub mod shape;
mod weights;

pub use args::{BenchArgs, BenchWhat};
pub use machine::{llc_bytes, read_bandwidth, read_bandwidth_on};
pub use model::{gemma2_2b_layer_pair, gemma2_2b_pair, synthetic_model, tensor_bytes};
pub use report::Variant;
pub use shape::{shape_of, BenchShape, GEMMA2_2B};

use crate::threads::Pool;
use crate::ui::{usage, CliResult};
use crate::with_backend;
use attn::bench_attn;
use ffn::bench_ffn;
use model::bench_model;

/// `spark-sim bench`.
pub fn bench(a: &BenchArgs) -> CliResult {
    let (shape, file) = shape::resolve_shape(&a.shape)?;
    if a.what != BenchWhat::Attn && a.cache_offset.is_some() {
        return Err(usage("--cache-offset only applies to `bench attn`"));
    }
    if a.what != BenchWhat::Model {
        let model_only = [
            ("--dense", a.dense.is_some()),
            ("--layers", a.layers.is_some()),
            ("--vocab", a.vocab.is_some()),
            ("--prefill", a.prefill),
        ];
        if let Some((opt, _)) = model_only.iter().find(|(_, given)| *given) {
            return Err(usage(format!("{opt} only applies to `bench model`")));
        }
        if a.ctx.as_ref().is_some_and(|c| c.0.len() > 1) {
            return Err(usage("--ctx takes one context here (a list only for `bench model`)"));
        }
    } else if file.is_some() && (a.layers.is_some() || a.vocab.is_some()) {
        return Err(usage("--layers and --vocab shape the synthetic gemma2-2b pair; a model file has its own"));
    }
    // The whole benchmark runs on a pool thread (Pool::run): the timed calls' thread
    // works on the split products with the others.
    let pool = Pool::new(a.threads)?;
    pool.run(|| match a.what {
        BenchWhat::Ffn => with_backend!(a.backend, bench_ffn(a, &pool, &shape)),
        BenchWhat::Attn => with_backend!(a.backend, bench_attn(a, &pool, &shape)),
        BenchWhat::Model => with_backend!(a.backend, bench_model(a, &pool, file.as_deref())),
    })
}
