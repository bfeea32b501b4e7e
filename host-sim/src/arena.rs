//! The session arena of `generate`, `eval`, `logits` and `bench model`: one zeroed,
//! huge-page-advised buffer (`hugemem`), allocated fallibly. When the host cannot give it,
//! the error names the arena, its size and the context it is for, instead of an
//! allocation abort or a bare OS message.

use crate::hugemem::HugeBytes;
use crate::ui::{fail, human_bytes, CliResult};
use spark_core::Model;

/// The arena of a session of `model` with a context of `max_seq` tokens that runs on
/// `threads` threads (one attention head slot per thread: `Model::arena_bytes_threads`).
pub fn session_arena(model: &Model<'_>, max_seq: usize, threads: usize) -> CliResult<HugeBytes> {
    let bytes = model.arena_bytes_threads(max_seq, threads);
    HugeBytes::zeroed(bytes).map_err(|e| {
        fail(format!(
            "cannot allocate the session arena: {} ({bytes} bytes) for a context of {max_seq} tokens: {e}; \
             this machine cannot give it (a shorter context needs less)",
            human_bytes(bytes as u64)
        ))
    })
}
