//! `spark-ffi`: the C API of the Spark runtime (`libspark.a` + `spark.h`).
//!
//! Everything the runtime needs lives in memory the caller owns; nothing is allocated:
//!
//! - the model blob (a `.spark` file, typically in flash), read in place, aligned to
//!   [`SPARK_MODEL_ALIGN`] bytes;
//! - a [`spark_model_t`], a [`spark_session_t`] and a [`spark_sampler_t`]: fixed-size C structs
//!   (declare them as variables; their contents are private);
//! - the session's arena, exactly [`spark_arena_size`] bytes, any alignment.
//!
//! Every function returns a [`spark_status_t`] (or a value that cannot fail), checks every
//! pointer and length, and never panics across the boundary: all input is validated
//! before it reaches `spark-core`.
//!
//! Thread-safety: an opened [`spark_model_t`] is immutable and may be shared by any number
//! of sessions on any threads. A [`spark_session_t`] and a [`spark_sampler_t`] are not
//! thread-safe: use each from one thread at a time.
//!
//! Multi-core decode (host builds, the `std` feature): [`spark_session_set_executor`]
//! gives a session the caller's thread pool as a [`spark_executor_fn`]; the session then
//! hands the chunks of its large integer products to it (`spark_core::exec`), and, with an
//! arena of [`spark_arena_size_threads`] bytes, whole attention heads too, with the same
//! logits, bit for bit, as without. Bare-metal builds keep the sequential path and answer
//! `SPARK_E_UNSUPPORTED`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![allow(non_camel_case_types)]

#[cfg(feature = "std")]
extern crate std;

use core::ffi::{c_char, c_void};
use core::mem::{align_of, size_of};
use core::ptr;
use spark_core::error::{ModelError, RunError};
use spark_core::sampler::{SampleError, Sampler, Sampling};
use spark_core::tokenizer::{Tokenizer, TokenizerError};
use spark_core::{AttnKind, FfnKind, Model, Session};

/// Alignment in bytes the model blob must have (the file aligns every tensor to 64 bytes
/// from its start, so a 64-byte-aligned blob has every tensor cache-line aligned).
pub const SPARK_MODEL_ALIGN: usize = 64;
/// The value of a token id field that has no token (no BOS / EOS).
pub const SPARK_NO_TOKEN: u32 = 0xFFFF_FFFF;
/// 64-bit words of private storage in a [`spark_model_t`].
pub const SPARK_MODEL_WORDS: usize = 800;
/// 64-bit words of private storage in a [`spark_session_t`].
pub const SPARK_SESSION_WORDS: usize = 512;
/// 64-bit words of private storage in a [`spark_sampler_t`].
pub const SPARK_SAMPLER_WORDS: usize = 6;

/// Result of every fallible call. `SPARK_OK` is 0; every error is a positive value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum spark_status_t {
    /// Success.
    SPARK_OK = 0,
    /// A required pointer argument is NULL.
    SPARK_E_NULL = 1,
    /// The model blob is not aligned to `SPARK_MODEL_ALIGN` bytes.
    SPARK_E_MISALIGNED = 2,
    /// The blob is shorter than its header says (truncated file).
    SPARK_E_MODEL_TRUNCATED = 3,
    /// The blob is not a `.spark` file (bad magic) or is a version this library cannot read.
    SPARK_E_MODEL_FORMAT = 4,
    /// The blob is corrupted: checksum mismatch, bad header, bad tensor table or values.
    SPARK_E_MODEL_CORRUPT = 5,
    /// The object was not initialised (or its last initialisation failed).
    SPARK_E_NOT_INITIALIZED = 6,
    /// The arena is smaller than `spark_arena_size` reported.
    SPARK_E_ARENA_TOO_SMALL = 7,
    /// The requested context is longer than the model's `max_seq_len`.
    SPARK_E_BAD_MAX_SEQ = 8,
    /// The session's context is full: reset it.
    SPARK_E_CONTEXT_FULL = 9,
    /// A token id is not below the vocabulary size.
    SPARK_E_INVALID_TOKEN = 10,
    /// An input sequence is empty where at least one element is needed.
    SPARK_E_EMPTY_INPUT = 11,
    /// An output buffer is too small (the needed length is reported).
    SPARK_E_BUFFER_TOO_SMALL = 12,
    /// The model has no tokenizer (or no BOS token when one was asked for).
    SPARK_E_NO_TOKENIZER = 13,
    /// The text holds a byte the tokenizer has no token for.
    SPARK_E_UNKNOWN_BYTE = 14,
    /// Sampler configuration out of range (temperature < 0 or not finite, top-p not in (0, 1]).
    SPARK_E_BAD_SAMPLER = 15,
    /// No logits to sample from: nothing has run since init/reset, or every logit is NaN.
    SPARK_E_NO_LOGITS = 16,
    /// An argument is out of range (e.g. a layer index).
    SPARK_E_INVALID_ARGUMENT = 17,
    /// A length is too large for this machine's address space.
    SPARK_E_TOO_LARGE = 18,
    /// Not available in this build of the library (executors: bare-metal builds).
    SPARK_E_UNSUPPORTED = 19,
}

use spark_status_t::*;

/// An opened model (contents private). Declare one per model, open it with
/// `spark_model_open`, and keep it (and the blob) in place while any session uses it.
#[repr(C)]
pub struct spark_model_t {
    _magic: u64,
    _storage: [u64; SPARK_MODEL_WORDS],
}

/// A decoding session (contents private): the state of one sequence over a caller arena.
/// Declare it zero-initialised (`= {0}` or `static`) so calls before `spark_session_init`
/// report `SPARK_E_NOT_INITIALIZED`.
#[repr(C)]
pub struct spark_session_t {
    _magic: u64,
    _storage: [u64; SPARK_SESSION_WORDS],
}

/// A token sampler (contents private): the rule and its random generator.
#[repr(C)]
pub struct spark_sampler_t {
    _magic: u64,
    _storage: [u64; SPARK_SAMPLER_WORDS],
}

/// Sampler settings, as `spark-sim generate` takes them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct spark_sampler_config_t {
    /// 0 = greedy (argmax, ties to the lowest id); otherwise the softmax temperature (> 0, finite).
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 = no nucleus filtering. Ignored when greedy.
    pub top_p: f32,
    /// Seed of the generator (xoshiro128**, as `spark-sim --seed`).
    pub seed: u64,
}

/// What a model is (filled by `spark_model_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct spark_model_info_t {
    /// Vocabulary size (token ids are `0..vocab_size`).
    pub vocab_size: u32,
    /// Model width.
    pub d_model: u32,
    /// Transformer layers.
    pub n_layers: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads.
    pub n_kv_heads: u32,
    /// Width of one head.
    pub head_dim: u32,
    /// FFN hidden width.
    pub d_ff: u32,
    /// Longest context the model supports (`max_seq_len`).
    pub max_seq_len: u32,
    /// FFN kind: 0 = Spark FFN (statistical top-k), 1 = dense GeGLU.
    pub ffn_kind: u32,
    /// Attention kind: 0 = Spark attention (statistical top-k), 1 = dense.
    pub attn_kind: u32,
    /// 1 when the model carries a tokenizer (text in and out), else 0.
    pub has_tokenizer: u32,
    /// Beginning-of-sequence token, or `SPARK_NO_TOKEN`.
    pub bos_id: u32,
    /// End-of-sequence token, or `SPARK_NO_TOKEN`.
    pub eos_id: u32,
}

/// Per-layer counters since the last init/reset (filled by `spark_layer_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct spark_layer_stats_t {
    /// Tokens run through the layer.
    pub tokens: u32,
    /// Fewest active FFN neurons in one token (`UINT32_MAX` before any token).
    pub ffn_active_min: u32,
    /// Most active FFN neurons in one token.
    pub ffn_active_max: u32,
    /// Sum of active FFN neurons over all tokens (mean = sum / tokens).
    pub ffn_active_sum: u64,
    /// FFN capacity events: more neurons passed the threshold than the capacity holds.
    pub ffn_overflows: u32,
    /// FFN selections that kept fewer than the target count.
    pub ffn_underflows: u32,
    /// Attention queries (heads x tokens).
    pub attn_queries: u32,
    /// Fewest keys attended by one query (`UINT32_MAX` before any query).
    pub attn_keys_min: u32,
    /// Most keys attended by one query.
    pub attn_keys_max: u32,
    /// Sum of attended keys over all queries.
    pub attn_keys_sum: u64,
    /// Attention capacity events (more keys passed than the capacity holds).
    pub attn_overflows: u32,
    /// Attention selections that kept fewer than the target count.
    pub attn_underflows: u32,
}

/// Called by `spark_generate` with each generated token; return 0 to go on, any other
/// value to stop after this token.
pub type spark_token_callback_t = Option<unsafe extern "C" fn(user: *mut c_void, token: u32) -> i32>;

// ---------------------------------------------------------------------------------------
// Private state behind the C structs.

const MODEL_MAGIC: u64 = 0x4C44_4F4D_4B52_5053; // "SPRKMODL"
const SESSION_MAGIC: u64 = 0x5353_4553_4B52_5053; // "SPRKSESS"
const SAMPLER_MAGIC: u64 = 0x504D_4153_4B52_5053; // "SPRKSAMP"

struct ModelInner {
    model: Model<'static>,
    tok: Option<Tokenizer<'static>>,
    eos: Option<u32>,
}

/// The executor of a session: the caller's callback on host builds, none on bare metal.
#[cfg(feature = "std")]
type SessionExec = CallbackExecutor;
#[cfg(not(feature = "std"))]
type SessionExec = spark_core::Sequential;

struct SessionInner {
    sess: Session<'static, 'static, spark_hal::Native, SessionExec>,
    /// Top-p scratch, `[vocab]`, carved from the arena.
    scratch: &'static mut [u32],
    eos: Option<u32>,
    /// False until a token has run since init/reset (the logits are undefined before).
    has_logits: bool,
}

// The private state must fit the public storage on every target this crate builds for.
const _: () = assert!(size_of::<ModelInner>() <= 8 * SPARK_MODEL_WORDS);
const _: () = assert!(align_of::<ModelInner>() <= 8);
const _: () = assert!(size_of::<SessionInner>() <= 8 * SPARK_SESSION_WORDS);
const _: () = assert!(align_of::<SessionInner>() <= 8);
const _: () = assert!(size_of::<Sampler>() <= 8 * SPARK_SAMPLER_WORDS);
const _: () = assert!(align_of::<Sampler>() <= 8);

type Res<T> = Result<T, spark_status_t>;

fn status(r: Res<()>) -> spark_status_t {
    match r {
        Ok(()) => SPARK_OK,
        Err(s) => s,
    }
}

fn model_err(e: ModelError) -> spark_status_t {
    match e {
        ModelError::Truncated { .. } => SPARK_E_MODEL_TRUNCATED,
        ModelError::BadMagic { .. } | ModelError::UnsupportedVersion { .. } => SPARK_E_MODEL_FORMAT,
        _ => SPARK_E_MODEL_CORRUPT,
    }
}

fn run_err(e: RunError) -> spark_status_t {
    match e {
        RunError::ArenaTooSmall { .. } => SPARK_E_ARENA_TOO_SMALL,
        RunError::BadMaxSeq { .. } => SPARK_E_BAD_MAX_SEQ,
        RunError::ContextFull { .. } => SPARK_E_CONTEXT_FULL,
        RunError::InvalidToken { .. } => SPARK_E_INVALID_TOKEN,
        RunError::EmptyInput => SPARK_E_EMPTY_INPUT,
        _ => SPARK_E_INVALID_ARGUMENT,
    }
}

fn tok_err(e: TokenizerError) -> spark_status_t {
    match e {
        TokenizerError::NoTokenizer | TokenizerError::NoBos => SPARK_E_NO_TOKENIZER,
        TokenizerError::InvalidId { .. } => SPARK_E_INVALID_TOKEN,
        TokenizerError::BufferTooSmall { .. } => SPARK_E_BUFFER_TOO_SMALL,
        TokenizerError::UnknownByte(_) => SPARK_E_UNKNOWN_BYTE,
        _ => SPARK_E_MODEL_CORRUPT,
    }
}

fn sample_err(e: SampleError) -> spark_status_t {
    match e {
        SampleError::EmptyLogits | SampleError::AllNan => SPARK_E_NO_LOGITS,
        SampleError::ScratchTooSmall { .. } => SPARK_E_BUFFER_TOO_SMALL,
        _ => SPARK_E_BAD_SAMPLER,
    }
}

/// A checked shared slice from a C pointer and element count (`p` may be NULL only when
/// `n` is 0).
///
/// # Safety
/// When `p` is not NULL it must point to `n` readable, initialised `T`s that nothing
/// writes for `'a`.
unsafe fn in_slice<'a, T>(p: *const T, n: usize) -> Res<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(SPARK_E_NULL);
    }
    if !p.is_aligned() {
        return Err(SPARK_E_INVALID_ARGUMENT);
    }
    if n.checked_mul(size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(SPARK_E_TOO_LARGE);
    }
    // SAFETY: non-null, aligned, size within isize::MAX (checked above); validity and
    // lifetime are the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(p, n) })
}

/// A checked mutable slice from a C pointer and element count (NULL only when `n` is 0).
///
/// # Safety
/// When `p` is not NULL it must point to `n` writable `T`s used by nothing else for `'a`.
unsafe fn out_slice<'a, T>(p: *mut T, n: usize) -> Res<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(SPARK_E_NULL);
    }
    if !p.is_aligned() {
        return Err(SPARK_E_INVALID_ARGUMENT);
    }
    if n.checked_mul(size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(SPARK_E_TOO_LARGE);
    }
    // SAFETY: as in `in_slice`, plus exclusive access per the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, n) })
}

/// Write `v` through a required output pointer.
///
/// # Safety
/// `p` is NULL or points to a writable `T`.
unsafe fn put<T>(p: *mut T, v: T) -> Res<()> {
    if p.is_null() {
        return Err(SPARK_E_NULL);
    }
    if !p.is_aligned() {
        return Err(SPARK_E_INVALID_ARGUMENT);
    }
    // SAFETY: non-null and aligned (checked); writable per the caller's contract.
    unsafe { p.write(v) };
    Ok(())
}

/// The opened model behind a C handle.
///
/// # Safety
/// `m` is NULL or points to a `spark_model_t` the caller keeps alive and unmodified for `'a`.
unsafe fn model_ref<'a>(m: *const spark_model_t) -> Res<&'a ModelInner> {
    if m.is_null() {
        return Err(SPARK_E_NULL);
    }
    if !m.is_aligned() {
        return Err(SPARK_E_INVALID_ARGUMENT);
    }
    // SAFETY: non-null, aligned, points to a spark_model_t (caller contract).
    let m = unsafe { &*m };
    if m._magic != MODEL_MAGIC {
        return Err(SPARK_E_NOT_INITIALIZED);
    }
    // SAFETY: the magic is only set by spark_model_open after writing a ModelInner at the
    // start of the storage, which is large and aligned enough (const assertions above).
    Ok(unsafe { &*(m._storage.as_ptr() as *const ModelInner) })
}

/// The live session behind a C handle.
///
/// # Safety
/// `s` is NULL or points to a `spark_session_t` used by no one else during the call.
unsafe fn session_mut<'a>(s: *mut spark_session_t) -> Res<&'a mut SessionInner> {
    if s.is_null() {
        return Err(SPARK_E_NULL);
    }
    if !s.is_aligned() {
        return Err(SPARK_E_INVALID_ARGUMENT);
    }
    // SAFETY: non-null, aligned, exclusive (caller contract).
    let s = unsafe { &mut *s };
    if s._magic != SESSION_MAGIC {
        return Err(SPARK_E_NOT_INITIALIZED);
    }
    // SAFETY: the magic is only set by spark_session_init after writing a SessionInner at
    // the start of the storage (size and alignment asserted above).
    Ok(unsafe { &mut *(s._storage.as_mut_ptr() as *mut SessionInner) })
}

/// The configured sampler behind a C handle.
///
/// # Safety
/// `s` is NULL or points to a `spark_sampler_t` used by no one else during the call.
unsafe fn sampler_mut<'a>(s: *mut spark_sampler_t) -> Res<&'a mut Sampler> {
    if s.is_null() {
        return Err(SPARK_E_NULL);
    }
    if !s.is_aligned() {
        return Err(SPARK_E_INVALID_ARGUMENT);
    }
    // SAFETY: non-null, aligned, exclusive (caller contract).
    let s = unsafe { &mut *s };
    if s._magic != SAMPLER_MAGIC {
        return Err(SPARK_E_NOT_INITIALIZED);
    }
    // SAFETY: the magic is only set by spark_sampler_init after writing a Sampler there.
    Ok(unsafe { &mut *(s._storage.as_mut_ptr() as *mut Sampler) })
}

// ---------------------------------------------------------------------------------------
// Executor hook

/// Runs chunk `chunk` of the job `job` (passed to a [`spark_executor_fn`], which calls it).
pub type spark_run_chunk_fn = Option<unsafe extern "C" fn(job: *mut c_void, chunk: usize)>;

/// The caller's executor: must call `run_chunk(job, i)` exactly once for every `i` in
/// `0..n_chunks`, from any of its threads and in any order (never twice for one `i`), and
/// return only when all calls have returned. `ctx` is the pointer given to
/// [`spark_session_set_executor`].
pub type spark_executor_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, n_chunks: usize, run_chunk: spark_run_chunk_fn, job: *mut c_void)>;

/// A [`spark_executor_fn`] with its context and thread count, as a `spark_core` executor.
#[cfg(feature = "std")]
#[derive(Clone, Copy)]
struct CallbackExecutor {
    exec: spark_executor_fn,
    ctx: *mut c_void,
    threads: usize,
}

#[cfg(feature = "std")]
impl Default for CallbackExecutor {
    fn default() -> Self {
        CallbackExecutor { exec: None, ctx: ptr::null_mut(), threads: 1 }
    }
}

/// One product's chunks as the C executor sees them: `out.chunks_mut(chunk_len)` and the
/// closure that fills one.
#[cfg(feature = "std")]
struct ChunkJob<'f, T, F> {
    out: *mut T,
    len: usize,
    chunk_len: usize,
    n_chunks: usize,
    f: &'f F,
}

/// The [`spark_run_chunk_fn`] of a [`ChunkJob`]: runs chunk `i` (an `i` out of range does
/// nothing).
///
/// # Safety
/// `job` is the `ChunkJob<T, F>` handed to the executor, alive for the call, and every `i`
/// runs at most once per job (the executor's contract), so the chunks never alias.
#[cfg(feature = "std")]
unsafe extern "C" fn run_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(job: *mut c_void, i: usize) {
    // SAFETY: caller contract: `job` points to a live ChunkJob<T, F>, only read here.
    let job = unsafe { &*(job as *const ChunkJob<'_, T, F>) };
    if i >= job.n_chunks {
        return;
    }
    let start = i * job.chunk_len;
    let len = job.chunk_len.min(job.len - start);
    // SAFETY: `start + len <= job.len` (i < n_chunks), inside the `&mut [T]` the job was
    // built from, which stays borrowed until the executor returns; chunk `i` is disjoint
    // from every other chunk and runs once (contract), so this is the only reference to it;
    // `T: Send` lets it be written on the executor's thread.
    let chunk = unsafe { core::slice::from_raw_parts_mut(job.out.add(start), len) };
    (job.f)(i, chunk);
}

#[cfg(feature = "std")]
impl spark_core::Executor for CallbackExecutor {
    fn threads(&self) -> usize {
        if self.exec.is_some() {
            self.threads
        } else {
            1
        }
    }

    fn for_each_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(&self, out: &mut [T], chunk_len: usize, f: F) {
        let Some(exec) = self.exec else {
            for (i, c) in out.chunks_mut(chunk_len).enumerate() {
                f(i, c);
            }
            return;
        };
        let n_chunks = out.len().div_ceil(chunk_len);
        let job = ChunkJob { out: out.as_mut_ptr(), len: out.len(), chunk_len, n_chunks, f: &f };
        // SAFETY: the executor calls `run_chunk::<T, F>` with this job, each chunk at most
        // once, and returns after all calls returned (the contract of
        // spark_session_set_executor), while `out` and `f` are borrowed here.
        unsafe { exec(self.ctx, n_chunks, Some(run_chunk::<T, F>), &job as *const ChunkJob<'_, T, F> as *mut c_void) };
    }
}

/// Give `session` an executor: from the next token on, the chunks of its large integer
/// products (row blocks of the projections and logits, the FFN's row gathers, parts of the
/// sparse output products) are handed to `exec(ctx, n_chunks, run_chunk, job)`.
/// `threads` is how many threads `exec` runs chunks on; products are only split when it is
/// above 1 and they read at least 96 KiB (below that a hand-off costs more than it saves).
/// `exec` NULL or `threads <= 1`: back to the sequential path. Any executor gives exactly
/// the same logits. `SPARK_E_UNSUPPORTED` on bare-metal builds (without the `std`
/// feature), which always decode sequentially.
///
/// # Safety
/// `session` as for `spark_session_reset`; `exec` keeps the contract of
/// [`spark_executor_fn`] and `ctx` stays valid for it while the session uses it.
#[no_mangle]
pub unsafe extern "C" fn spark_session_set_executor(
    session: *mut spark_session_t,
    exec: spark_executor_fn,
    ctx: *mut c_void,
    threads: u32,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        #[cfg(feature = "std")]
        {
            let threads = if exec.is_some() { (threads as usize).max(1) } else { 1 };
            *s.sess.executor_mut() = CallbackExecutor { exec, ctx, threads };
            Ok(())
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = (s, exec, ctx, threads);
            Err(SPARK_E_UNSUPPORTED)
        }
    })())
}

// ---------------------------------------------------------------------------------------
// Library

/// The library version, a static NUL-terminated string such as "0.1.0".
#[no_mangle]
pub extern "C" fn spark_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A static NUL-terminated English description of a status code (any value: unknown
/// codes give "unknown status").
#[no_mangle]
pub extern "C" fn spark_status_str(status: i32) -> *const c_char {
    let s: &'static str = match status {
        0 => "ok\0",
        1 => "a required pointer argument is NULL\0",
        2 => "the model blob is not aligned to SPARK_MODEL_ALIGN bytes\0",
        3 => "the model blob is truncated\0",
        4 => "not a .spark model, or an unsupported format version\0",
        5 => "the model blob is corrupted\0",
        6 => "the object is not initialised (or its initialisation failed)\0",
        7 => "the arena is smaller than spark_arena_size reported\0",
        8 => "the context length exceeds the model's max_seq_len\0",
        9 => "the session's context is full (reset it)\0",
        10 => "a token id is out of the vocabulary's range\0",
        11 => "the input sequence is empty\0",
        12 => "an output buffer is too small (see the needed length)\0",
        13 => "the model has no tokenizer (or no BOS token)\0",
        14 => "the text holds a byte the tokenizer cannot encode\0",
        15 => "sampler configuration out of range\0",
        16 => "no logits to sample from (run a token first)\0",
        17 => "an argument is out of range\0",
        18 => "a length is too large for this machine\0",
        19 => "not available in this build of the library\0",
        _ => "unknown status\0",
    };
    s.as_ptr().cast()
}

/// Bytes of a `spark_model_t` (`sizeof(spark_model_t)`).
#[no_mangle]
pub extern "C" fn spark_model_size() -> usize {
    size_of::<spark_model_t>()
}

/// Bytes of a `spark_session_t` (`sizeof(spark_session_t)`). The session object lives in the
/// caller's `spark_session_t`; its KV cache and scratch live in the arena.
#[no_mangle]
pub extern "C" fn spark_session_size() -> usize {
    size_of::<spark_session_t>()
}

/// Bytes of a `spark_sampler_t` (`sizeof(spark_sampler_t)`).
#[no_mangle]
pub extern "C" fn spark_sampler_size() -> usize {
    size_of::<spark_sampler_t>()
}

// ---------------------------------------------------------------------------------------
// Model

/// Validate the `.spark` file in `blob[0..len]` (once: structure, checksums, tensor table,
/// tokenizer) and open it into `model`, which reads the blob in place from then on.
///
/// `blob` must be aligned to `SPARK_MODEL_ALIGN` bytes (`SPARK_E_MISALIGNED` otherwise).
/// The blob and `model` must stay valid, unmodified and in place while the model or any
/// session over it is used. On failure `model` is left not initialised.
///
/// # Safety
/// `model` is NULL or points to a writable `spark_model_t`; `blob` is NULL or points to
/// `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn spark_model_open(model: *mut spark_model_t, blob: *const u8, len: usize) -> spark_status_t {
    status((|| {
        if model.is_null() {
            return Err(SPARK_E_NULL);
        }
        if !model.is_aligned() {
            return Err(SPARK_E_INVALID_ARGUMENT);
        }
        // SAFETY: non-null, aligned, writable (caller contract).
        let m = unsafe { &mut *model };
        m._magic = 0;
        // (after the reset: a failed open never leaves an earlier model usable)
        if blob.is_null() {
            return Err(SPARK_E_NULL);
        }
        if !(blob as usize).is_multiple_of(SPARK_MODEL_ALIGN) {
            return Err(SPARK_E_MISALIGNED);
        }
        // SAFETY: the caller keeps `len` bytes at `blob` valid and unmodified while the model
        // is used (documented contract), which is what the 'static stands for here.
        let bytes: &'static [u8] = unsafe { in_slice(blob, len) }?;
        let loaded = Model::load(bytes).map_err(model_err)?;
        let tok = match Tokenizer::new(&loaded) {
            Ok(t) => Some(t),
            Err(TokenizerError::NoTokenizer) => None,
            Err(e) => return Err(tok_err(e)),
        };
        let eos = tok.as_ref().and_then(|t| t.eos_id()).or(loaded.tokenizer_meta().eos_id);
        let inner = ModelInner { model: loaded, tok, eos };
        // SAFETY: the storage is large and aligned enough for a ModelInner (asserted at
        // compile time) and exclusively ours; any previous content is plain data.
        unsafe { ptr::write(m._storage.as_mut_ptr() as *mut ModelInner, inner) };
        m._magic = MODEL_MAGIC;
        Ok(())
    })())
}

/// Describe an opened model.
///
/// # Safety
/// `model` is NULL or an opened-or-zeroed `spark_model_t`; `info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_model_info(
    model: *const spark_model_t,
    info: *mut spark_model_info_t,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract (see above).
        let m = unsafe { model_ref(model) }?;
        let c = m.model.config();
        let meta = m.model.tokenizer_meta();
        let v = spark_model_info_t {
            vocab_size: c.vocab_size,
            d_model: c.d_model,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            d_ff: c.d_ff,
            max_seq_len: c.max_seq_len,
            ffn_kind: match c.ffn_kind {
                FfnKind::Spark => 0,
                FfnKind::Geglu => 1,
            },
            attn_kind: match c.attn_kind {
                AttnKind::Spark => 0,
                AttnKind::Dense => 1,
            },
            has_tokenizer: m.tok.is_some() as u32,
            bos_id: m.tok.as_ref().and_then(|t| t.bos_id()).or(meta.bos_id).unwrap_or(SPARK_NO_TOKEN),
            eos_id: m.eos.unwrap_or(SPARK_NO_TOKEN),
        };
        // SAFETY: caller contract.
        unsafe { put(info, v) }
    })())
}

fn max_seq_of(m: &ModelInner, max_seq: usize) -> Res<usize> {
    let limit = m.model.config().max_seq_len as usize;
    match max_seq {
        0 => Ok(limit),
        n if n <= limit => Ok(n),
        _ => Err(SPARK_E_BAD_MAX_SEQ),
    }
}

/// Arena bytes for a session of context `max_seq` (0 = the model's `max_seq_len`) with
/// `threads` attention head slots: the sampler's scratch (`4 * vocab_size` bytes + 3 for
/// alignment) plus the KV cache and working vectors. Any alignment; exactly this many
/// bytes or more.
fn arena_total(m: &ModelInner, max_seq: usize, threads: usize) -> Res<usize> {
    let scratch = (m.model.config().vocab_size as usize).checked_mul(4).and_then(|b| b.checked_add(3));
    scratch.and_then(|s| s.checked_add(m.model.arena_bytes_threads(max_seq, threads))).ok_or(SPARK_E_TOO_LARGE)
}

/// The arena bytes a session with context `max_seq` needs (0 = the model's full
/// `max_seq_len`), written to `*bytes`.
///
/// # Safety
/// `model` is NULL or an opened-or-zeroed `spark_model_t`; `bytes` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_arena_size(
    model: *const spark_model_t,
    max_seq: usize,
    bytes: *mut usize,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let m = unsafe { model_ref(model) }?;
        let n = arena_total(m, max_seq_of(m, max_seq)?, 1)?;
        // SAFETY: caller contract.
        unsafe { put(bytes, n) }
    })())
}

/// The arena bytes a session with context `max_seq` (0 = the model's full `max_seq_len`)
/// needs to run up to `threads` attention heads at once under an executor
/// ([`spark_session_set_executor`]), written to `*bytes`: [`spark_arena_size`] plus the
/// scratch of one head slot per thread beyond the first (at most the model's head count,
/// and 16). A session whose arena holds that many slots runs the heads of a layer in
/// waves, one head per chunk, when its executor has the threads; the logits are the same
/// bits. `threads` 0 or 1: exactly [`spark_arena_size`].
///
/// # Safety
/// `model` is NULL or an opened-or-zeroed `spark_model_t`; `bytes` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_arena_size_threads(
    model: *const spark_model_t,
    max_seq: usize,
    threads: u32,
    bytes: *mut usize,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let m = unsafe { model_ref(model) }?;
        let n = arena_total(m, max_seq_of(m, max_seq)?, threads as usize)?;
        // SAFETY: caller contract.
        unsafe { put(bytes, n) }
    })())
}

// ---------------------------------------------------------------------------------------
// Session

/// Start a session over `model` with context `max_seq` (0 = the model's `max_seq_len`) in
/// `arena[0..arena_len]` (at least `spark_arena_size(model, max_seq)` bytes, any
/// alignment). The session object is stored in `*session`; the arena holds the KV cache,
/// the working vectors and the sampler's scratch. Both, and the model, must stay in place
/// and untouched by the caller while the session is used. On failure the session is left
/// not initialised.
///
/// # Safety
/// `session` is NULL or a writable `spark_session_t`; `model` is NULL or an opened-or-zeroed
/// `spark_model_t`; `arena` is NULL or `arena_len` writable bytes owned by the session from now on.
#[no_mangle]
pub unsafe extern "C" fn spark_session_init(
    session: *mut spark_session_t,
    model: *const spark_model_t,
    arena: *mut u8,
    arena_len: usize,
    max_seq: usize,
) -> spark_status_t {
    status((|| {
        if session.is_null() {
            return Err(SPARK_E_NULL);
        }
        if !session.is_aligned() {
            return Err(SPARK_E_INVALID_ARGUMENT);
        }
        // SAFETY: non-null, aligned, writable (caller contract).
        let s = unsafe { &mut *session };
        s._magic = 0;
        // SAFETY: caller contract: the model stays opened and in place while the session
        // lives (the 'static stands for that).
        let m: &'static ModelInner = unsafe { model_ref(model) }?;
        if arena.is_null() {
            return Err(SPARK_E_NULL);
        }
        let max_seq = max_seq_of(m, max_seq)?;
        if arena_len < arena_total(m, max_seq, 1)? {
            return Err(SPARK_E_ARENA_TOO_SMALL);
        }
        // SAFETY: caller contract: `arena_len` writable bytes, the session's alone until
        // it is re-initialised or dropped by the caller.
        let bytes: &'static mut [u8] = unsafe { out_slice(arena, arena_len) }?;
        let vocab = m.model.config().vocab_size as usize;
        let pad = bytes.as_ptr().align_offset(align_of::<u32>());
        if pad > 3 {
            return Err(SPARK_E_INVALID_ARGUMENT);
        }
        let (head, rest) = bytes.split_at_mut(pad + 4 * vocab);
        let (_, scratch_bytes) = head.split_at_mut(pad);
        // SAFETY: `scratch_bytes` is 4-aligned (align_offset above), `4 * vocab` bytes long,
        // and exclusively borrowed; any bit pattern is a valid u32.
        let scratch: &'static mut [u32] =
            unsafe { core::slice::from_raw_parts_mut(scratch_bytes.as_mut_ptr().cast::<u32>(), vocab) };
        let sess = Session::with_executor(&m.model, rest, max_seq, SessionExec::default()).map_err(run_err)?;
        let inner = SessionInner { sess, scratch, eos: m.eos, has_logits: false };
        // SAFETY: the storage is large and aligned enough (compile-time assertions) and
        // exclusively ours; a previous session in it is plain data and is overwritten.
        unsafe { ptr::write(s._storage.as_mut_ptr() as *mut SessionInner, inner) };
        s._magic = SESSION_MAGIC;
        Ok(())
    })())
}

/// Forget the sequence and the statistics; the session starts again at position 0.
///
/// # Safety
/// `session` is NULL or a `spark_session_t` no other thread uses during the call.
#[no_mangle]
pub unsafe extern "C" fn spark_session_reset(session: *mut spark_session_t) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        s.sess.reset();
        s.has_logits = false;
        Ok(())
    })())
}

/// Tokens in the session's context (`*pos`) and its context length (`*max_seq`).
///
/// # Safety
/// `session` as for `spark_session_reset`; `pos` and `max_seq` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_session_pos(
    session: *mut spark_session_t,
    pos: *mut usize,
    max_seq: *mut usize,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        if pos.is_null() || max_seq.is_null() {
            return Err(SPARK_E_NULL);
        }
        // SAFETY: caller contract.
        unsafe { put(pos, s.sess.pos()) }?;
        // SAFETY: caller contract.
        unsafe { put(max_seq, s.sess.max_seq()) }
    })())
}

fn out_logits(s: &SessionInner, logits: *mut *const f32, n_logits: *mut usize) -> Res<()> {
    let l = s.sess.logits();
    // SAFETY: both checked non-null by the callers before running; writable per contract.
    unsafe { put(logits, l.as_ptr()) }?;
    // SAFETY: as above.
    unsafe { put(n_logits, l.len()) }
}

/// Run `ids[0..n]` (at least one) through the model; `*logits` / `*n_logits` receive the
/// last token's logits (`vocab_size` floats inside the arena, valid until the next call
/// on this session). All ids and the context are checked before any token runs.
///
/// # Safety
/// `session` as for `spark_session_reset`; `ids` is NULL or `n` readable ids; `logits` and
/// `n_logits` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_prefill(
    session: *mut spark_session_t,
    ids: *const u32,
    n: usize,
    logits: *mut *const f32,
    n_logits: *mut usize,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        if logits.is_null() || n_logits.is_null() {
            return Err(SPARK_E_NULL);
        }
        // SAFETY: caller contract.
        let ids = unsafe { in_slice(ids, n) }?;
        s.sess.prefill(ids).map_err(run_err)?;
        s.has_logits = true;
        out_logits(s, logits, n_logits)
    })())
}

/// Run one token; `*logits` / `*n_logits` receive its logits (valid until the next call
/// on this session). `SPARK_E_CONTEXT_FULL` once the session holds `max_seq` tokens.
///
/// # Safety
/// As for `spark_prefill`.
#[no_mangle]
pub unsafe extern "C" fn spark_step(
    session: *mut spark_session_t,
    token: u32,
    logits: *mut *const f32,
    n_logits: *mut usize,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        if logits.is_null() || n_logits.is_null() {
            return Err(SPARK_E_NULL);
        }
        if s.sess.pos() >= s.sess.max_seq() {
            return Err(SPARK_E_CONTEXT_FULL);
        }
        if token >= s.sess.logits().len() as u32 {
            return Err(SPARK_E_INVALID_TOKEN);
        }
        s.sess.step(token).map_err(run_err)?;
        s.has_logits = true;
        out_logits(s, logits, n_logits)
    })())
}

/// Per-layer statistics of layer `layer` (0-based) since the last init/reset.
///
/// # Safety
/// `session` as for `spark_session_reset`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_layer_stats(
    session: *mut spark_session_t,
    layer: u32,
    out: *mut spark_layer_stats_t,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        let st = s.sess.stats().get(layer as usize).ok_or(SPARK_E_INVALID_ARGUMENT)?;
        let v = spark_layer_stats_t {
            tokens: st.tokens,
            ffn_active_min: st.ffn_active_min,
            ffn_active_max: st.ffn_active_max,
            ffn_active_sum: st.ffn_active_sum,
            ffn_overflows: st.ffn_overflows,
            ffn_underflows: st.ffn_underflows,
            attn_queries: st.attn_queries,
            attn_keys_min: st.attn_keys_min,
            attn_keys_max: st.attn_keys_max,
            attn_keys_sum: st.attn_keys_sum,
            attn_overflows: st.attn_overflows,
            attn_underflows: st.attn_underflows,
        };
        // SAFETY: caller contract.
        unsafe { put(out, v) }
    })())
}

// ---------------------------------------------------------------------------------------
// Tokenizer

/// Encode `text[0..text_len]` (bytes, usually UTF-8) into `ids[0..cap]`, preceded by the
/// BOS token when `add_bos` is true. Encoding works in place, so `cap` must be at least
/// `text_len` (+1 with BOS) even though the result is usually shorter: when it is not,
/// the call returns `SPARK_E_BUFFER_TOO_SMALL` with that needed capacity in `*n_ids`.
/// On success `*n_ids` is the number of ids written.
///
/// # Safety
/// `model` is NULL or an opened-or-zeroed `spark_model_t`; `text` is NULL or `text_len`
/// readable bytes; `ids` is NULL or `cap` writable ids; `n_ids` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_encode(
    model: *const spark_model_t,
    text: *const u8,
    text_len: usize,
    add_bos: bool,
    ids: *mut u32,
    cap: usize,
    n_ids: *mut usize,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let m = unsafe { model_ref(model) }?;
        if n_ids.is_null() || ids.is_null() {
            return Err(SPARK_E_NULL);
        }
        let tok = m.tok.as_ref().ok_or(SPARK_E_NO_TOKENIZER)?;
        if add_bos && tok.bos_id().is_none() {
            return Err(SPARK_E_NO_TOKENIZER);
        }
        // SAFETY: caller contract.
        let text = unsafe { in_slice(text, text_len) }?;
        let needed = text_len.checked_add(add_bos as usize).ok_or(SPARK_E_TOO_LARGE)?;
        if cap < needed {
            // SAFETY: caller contract.
            unsafe { put(n_ids, needed) }?;
            return Err(SPARK_E_BUFFER_TOO_SMALL);
        }
        // SAFETY: caller contract.
        let out = unsafe { out_slice(ids, cap) }?;
        let n = if add_bos { tok.encode_with_bos(text, out) } else { tok.encode(text, out) }.map_err(tok_err)?;
        // SAFETY: caller contract.
        unsafe { put(n_ids, n) }
    })())
}

/// Decode `ids[0..n]` into the bytes `out[0..cap]` (not NUL-terminated; a token may end
/// inside a UTF-8 character). On success `*n_bytes` is the number of bytes written; when
/// `cap` is too small nothing is written, `*n_bytes` is the size needed and the call
/// returns `SPARK_E_BUFFER_TOO_SMALL`. `out` may be NULL when `cap` is 0 (a size query).
///
/// # Safety
/// `model` as for `spark_encode`; `ids` is NULL or `n` readable ids; `out` is NULL or `cap`
/// writable bytes; `n_bytes` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_decode(
    model: *const spark_model_t,
    ids: *const u32,
    n: usize,
    out: *mut u8,
    cap: usize,
    n_bytes: *mut usize,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let m = unsafe { model_ref(model) }?;
        if n_bytes.is_null() {
            return Err(SPARK_E_NULL);
        }
        let tok = m.tok.as_ref().ok_or(SPARK_E_NO_TOKENIZER)?;
        // SAFETY: caller contract.
        let ids = unsafe { in_slice(ids, n) }?;
        // SAFETY: caller contract.
        let out = unsafe { out_slice(out, cap) }?;
        match tok.decode(ids, out) {
            Ok(len) => {
                // SAFETY: caller contract.
                unsafe { put(n_bytes, len) }
            }
            Err(TokenizerError::BufferTooSmall { needed, .. }) => {
                // SAFETY: caller contract.
                unsafe { put(n_bytes, needed) }?;
                Err(SPARK_E_BUFFER_TOO_SMALL)
            }
            Err(e) => Err(tok_err(e)),
        }
    })())
}

// ---------------------------------------------------------------------------------------
// Sampling and generation

fn sampling_of(c: &spark_sampler_config_t) -> Res<Sampling> {
    let (t, p) = (c.temperature, c.top_p);
    if !t.is_finite() || t < 0.0 {
        return Err(SPARK_E_BAD_SAMPLER);
    }
    if t == 0.0 {
        return Ok(Sampling::Greedy);
    }
    if !(p > 0.0 && p <= 1.0) {
        return Err(SPARK_E_BAD_SAMPLER);
    }
    let s = if p == 1.0 { Sampling::Temperature { t } } else { Sampling::TopP { t, p } };
    s.validate().map_err(sample_err)?;
    Ok(s)
}

/// Configure `sampler` from `*config` (validated: temperature finite and >= 0, top-p in
/// (0, 1] unless greedy) and seed its generator. The same settings and seed draw the same
/// tokens as `spark-sim generate --temperature T --top-p P --seed S` (top-p 1 = no
/// `--top-p`). On failure the sampler is left not initialised.
///
/// # Safety
/// `sampler` is NULL or a writable `spark_sampler_t`; `config` is NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn spark_sampler_init(
    sampler: *mut spark_sampler_t,
    config: *const spark_sampler_config_t,
) -> spark_status_t {
    status((|| {
        if sampler.is_null() {
            return Err(SPARK_E_NULL);
        }
        if !sampler.is_aligned() {
            return Err(SPARK_E_INVALID_ARGUMENT);
        }
        // SAFETY: non-null, aligned, writable (caller contract).
        let s = unsafe { &mut *sampler };
        s._magic = 0;
        // (after the reset: a failed init never leaves an earlier sampler usable)
        if config.is_null() {
            return Err(SPARK_E_NULL);
        }
        if !config.is_aligned() {
            return Err(SPARK_E_INVALID_ARGUMENT);
        }
        // SAFETY: non-null, aligned, readable (caller contract); every bit pattern is a valid
        // spark_sampler_config_t (two floats and an integer).
        let c = unsafe { config.read() };
        let smp = Sampler::new(sampling_of(&c)?, c.seed).map_err(sample_err)?;
        // SAFETY: the storage is large and aligned enough (compile-time assertions).
        unsafe { ptr::write(s._storage.as_mut_ptr() as *mut Sampler, smp) };
        s._magic = SAMPLER_MAGIC;
        Ok(())
    })())
}

fn sample_in(s: &mut SessionInner, smp: &mut Sampler) -> Res<u32> {
    if !s.has_logits {
        return Err(SPARK_E_NO_LOGITS);
    }
    smp.sample(s.sess.logits(), s.scratch).map_err(sample_err)
}

/// Pick the next token from the session's current logits (those of its last token) with
/// `sampler` (one generator draw unless greedy), into `*token`. Does not run the token:
/// pass it to `spark_step`. `SPARK_E_NO_LOGITS` before any token has run.
///
/// # Safety
/// `sampler` is NULL or a `spark_sampler_t`, `session` NULL or a `spark_session_t`, neither
/// used by another thread during the call; `token` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn spark_sample(
    sampler: *mut spark_sampler_t,
    session: *mut spark_session_t,
    token: *mut u32,
) -> spark_status_t {
    status((|| {
        // SAFETY: caller contract.
        let smp = unsafe { sampler_mut(sampler) }?;
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        if token.is_null() {
            return Err(SPARK_E_NULL);
        }
        let t = sample_in(s, smp)?;
        // SAFETY: caller contract.
        unsafe { put(token, t) }
    })())
}

/// Generate up to `max_tokens` tokens after `prompt[0..n_prompt]`, exactly as
/// `spark-sim generate` does: run the prompt (it may be empty when the session already
/// holds tokens), then repeatedly sample a token, report it to `callback(user, token)`,
/// and stop when it is the model's EOS token, when `max_tokens` are generated, when the
/// context is full, or when the callback returns non-zero; otherwise run it and go on.
/// `*n_generated` receives the number of tokens reported (also on failure). `callback`
/// may be NULL (then nothing is reported); `user` is passed through untouched. The callback
/// runs inside this call and must not use `session` or `sampler` (the model is fine).
///
/// # Safety
/// `session`, `sampler` as for `spark_sample`; `prompt` is NULL or `n_prompt` readable ids;
/// `n_generated` is NULL or writable; `callback` is NULL or a function safe to call with
/// `user`.
#[no_mangle]
pub unsafe extern "C" fn spark_generate(
    session: *mut spark_session_t,
    sampler: *mut spark_sampler_t,
    prompt: *const u32,
    n_prompt: usize,
    max_tokens: usize,
    callback: spark_token_callback_t,
    user: *mut c_void,
    n_generated: *mut usize,
) -> spark_status_t {
    let mut count = 0usize;
    let r = (|| {
        // SAFETY: caller contract.
        let s = unsafe { session_mut(session) }?;
        // SAFETY: caller contract.
        let smp = unsafe { sampler_mut(sampler) }?;
        if n_generated.is_null() {
            return Err(SPARK_E_NULL);
        }
        // SAFETY: caller contract.
        let prompt = unsafe { in_slice(prompt, n_prompt) }?;
        if !prompt.is_empty() {
            s.sess.prefill(prompt).map_err(run_err)?;
            s.has_logits = true;
        }
        if max_tokens == 0 {
            return Ok(());
        }
        loop {
            let next = sample_in(s, smp)?;
            count += 1;
            let stop = match callback {
                // SAFETY: caller contract: `cb` is safe to call with `user`.
                Some(cb) => (unsafe { cb(user, next) }) != 0,
                None => false,
            };
            if stop || Some(next) == s.eos || count >= max_tokens || s.sess.pos() >= s.sess.max_seq() {
                return Ok(());
            }
            s.sess.step(next).map_err(run_err)?;
        }
    })();
    if !n_generated.is_null() && n_generated.is_aligned() {
        // SAFETY: non-null, aligned, writable (caller contract).
        unsafe { n_generated.write(count) };
    }
    status(r)
}

#[cfg(test)]
mod tests;

/// Traps on a panic in bare-metal builds of the static library. No input reaches a panic
/// (everything is validated first); this only keeps an internal bug from returning into C.
#[cfg(all(feature = "panic-handler", not(feature = "std"), not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        #[cfg(target_arch = "arm")]
        // SAFETY: `udf` raises an undefined-instruction fault and touches no memory.
        unsafe {
            core::arch::asm!("udf #0")
        };
    }
}
