//! (d) The C API (`firmware/ffi`, crate `spark-ffi`) driven by a fuzzed sequence of calls
//! and arguments, as a C caller that keeps the documented contract would make them: valid
//! or NULL pointers, any lengths and values, objects used before, after and between
//! (re)initialisations. The model blob and arena outlive every object using them, and a
//! re-opened model first invalidates the session that borrowed it (the C contract).

use arbitrary::{Arbitrary, Unstructured};
use spark::spark_status_t::{self, *};
use spark::*;
use std::ffi::c_void;
use std::mem::size_of;

/// Which blob `spark_model_open` gets.
#[derive(Arbitrary, Debug)]
enum Blob {
    Demo,
    Null,
    Misaligned,
    Truncated(u32),
    BitFlip(u32, u8),
    Long(u8),
}

/// One call with its arguments.
#[derive(Arbitrary, Debug)]
enum Call {
    Open(Blob),
    Info(bool),
    ArenaSize(u16, bool),
    SessionInit { arena_delta: i16, max_seq: u16, null_arena: bool, misalign: bool },
    Reset,
    Pos(bool),
    Prefill(Vec<u16>, bool),
    Step(u32, bool),
    LayerStats(u32),
    Encode { text: Vec<u8>, bos: bool, cap_delta: i8, null_ids: bool },
    Decode { ids: Vec<u16>, cap: u16, null_out: bool },
    SamplerInit { t: f32, p: f32, seed: u64, null_config: bool },
    Sample(bool),
    Generate { prompt: Vec<u16>, max_tokens: u8, stop_after: u8, callback: bool },
    StatusStr(i32),
}

/// A zeroed, 8-byte aligned object of the C type `T` (the C structs are `u64` arrays).
struct Obj<T> {
    words: Vec<u64>,
    _t: std::marker::PhantomData<T>,
}

impl<T> Obj<T> {
    fn new() -> Self {
        Obj { words: vec![0u64; size_of::<T>().div_ceil(8)], _t: std::marker::PhantomData }
    }
    fn ptr(&mut self) -> *mut T {
        self.words.as_mut_ptr().cast::<T>()
    }
    fn zero(&mut self) {
        self.words.fill(0);
    }
}

/// Bytes at a chosen alignment offset from 64 (the blob must outlive the model).
struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(bytes: &[u8], misalign: usize) -> Self {
        let mut buf = vec![0u8; bytes.len() + 128];
        let start = buf.as_ptr().align_offset(64) + misalign;
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        Aligned { buf, start, len: bytes.len() }
    }
    fn ptr(&self) -> *const u8 {
        self.buf[self.start..].as_ptr()
    }
}

extern "C" fn stop_cb(user: *mut c_void, _token: u32) -> i32 {
    // SAFETY: `user` is the `&mut u8` countdown `Generate` passes with this callback.
    let left = unsafe { &mut *user.cast::<u8>() };
    if *left == 0 {
        return 1;
    }
    *left -= 1;
    0
}

fn ok(s: spark_status_t) -> bool {
    s == SPARK_OK
}

/// Run the call sequence decoded from `data`.
pub fn ffi(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let demo = crate::demo_blob();
    let mut model = Obj::<spark_model_t>::new();
    let mut session = Obj::<spark_session_t>::new();
    let mut sampler = Obj::<spark_sampler_t>::new();
    let mut blobs: Vec<Aligned> = Vec::new(); // kept alive: the model borrows the latest
    let mut arenas: Vec<Vec<u64>> = Vec::new();
    let mut model_ok = false;
    let mut session_ok = false;
    let mut sampler_ok = false;
    let mut vocab = 0u32;
    let mut steps = 0usize;
    for _ in 0..24 {
        let Ok(call) = Call::arbitrary(&mut u) else { break };
        match call {
            Call::Open(b) => {
                // A re-opened model invalidates the session borrowing it (caller contract).
                session.zero();
                session_ok = false;
                let (bytes, mis, null): (Vec<u8>, usize, bool) = match b {
                    Blob::Demo => (demo.to_vec(), 0, false),
                    Blob::Null => (Vec::new(), 0, true),
                    Blob::Misaligned => (demo.to_vec(), 1, false),
                    Blob::Truncated(n) => (demo[..n as usize % demo.len()].to_vec(), 0, false),
                    Blob::BitFlip(at, bit) => {
                        let mut v = demo.to_vec();
                        let at = at as usize % v.len();
                        v[at] ^= 1 << (bit % 8);
                        (v, 0, false)
                    }
                    Blob::Long(extra) => {
                        let mut v = demo.to_vec();
                        v.extend(std::iter::repeat_n(0u8, 1 + extra as usize));
                        (v, 0, false)
                    }
                };
                let a = Aligned::new(&bytes, mis);
                let p = if null { std::ptr::null() } else { a.ptr() };
                // SAFETY: `model` is a zeroable spark_model_t; `p` is NULL or points to
                // `a.len` readable bytes that `blobs` keeps alive for the whole run.
                let st = unsafe { spark_model_open(model.ptr(), p, a.len) };
                let want_ok = matches!(b, Blob::Demo);
                if want_ok {
                    assert_eq!(st, SPARK_OK, "the demo model opens");
                }
                if matches!(b, Blob::Null) {
                    assert_eq!(st, SPARK_E_NULL);
                }
                if matches!(b, Blob::Misaligned) {
                    assert_eq!(st, SPARK_E_MISALIGNED);
                }
                if matches!(b, Blob::Long(_)) {
                    assert_eq!(st, SPARK_E_MODEL_CORRUPT, "bytes after the data section");
                }
                model_ok = ok(st);
                blobs.push(a);
                if model_ok {
                    let mut info = std::mem::MaybeUninit::<spark_model_info_t>::zeroed();
                    // SAFETY: open model; `info` is writable storage for one struct.
                    assert!(ok(unsafe { spark_model_info(model.ptr(), info.as_mut_ptr()) }));
                    // SAFETY: spark_model_info returned SPARK_OK, so it wrote `info`.
                    vocab = unsafe { info.assume_init() }.vocab_size;
                }
            }
            Call::Info(null) => {
                let mut info = std::mem::MaybeUninit::<spark_model_info_t>::zeroed();
                let p = if null { std::ptr::null_mut() } else { info.as_mut_ptr() };
                // SAFETY: `model` is a zeroed or opened spark_model_t; `p` NULL or writable.
                let st = unsafe { spark_model_info(model.ptr(), p) };
                assert_eq!(ok(st), model_ok && !null);
            }
            Call::ArenaSize(max_seq, null) => {
                let mut n = 0usize;
                let p = if null { std::ptr::null_mut() } else { &mut n as *mut usize };
                // SAFETY: as above; `p` NULL or a writable usize.
                let st = unsafe { spark_arena_size(model.ptr(), max_seq as usize, p) };
                if !model_ok {
                    assert_eq!(st, SPARK_E_NOT_INITIALIZED);
                }
            }
            Call::SessionInit { arena_delta, max_seq, null_arena, misalign } => {
                if !model_ok {
                    // SAFETY: zeroed session, zeroed model: must report not initialised.
                    let st = unsafe { spark_session_init(session.ptr(), model.ptr(), std::ptr::null_mut(), 0, 0) };
                    assert_eq!(st, SPARK_E_NOT_INITIALIZED);
                    session_ok = false;
                    continue;
                }
                let mut need = 0usize;
                let ms = max_seq as usize % 80;
                // SAFETY: open model, writable usize.
                let st = unsafe { spark_arena_size(model.ptr(), ms, &mut need) };
                if !ok(st) {
                    assert_eq!(st, SPARK_E_BAD_MAX_SEQ);
                    continue;
                }
                let len = (need as i64 + arena_delta as i64).max(0) as usize;
                let mut arena = vec![0u64; len.div_ceil(8) + 1];
                let base = arena.as_mut_ptr().cast::<u8>();
                let p = if null_arena {
                    std::ptr::null_mut()
                } else if misalign {
                    // SAFETY: one byte into an allocation of at least len + 8 bytes.
                    unsafe { base.add(1) }
                } else {
                    base
                };
                // The previous session is replaced; its arena stays allocated (in `arenas`).
                // SAFETY: `p` NULL or `len` writable bytes kept alive in `arenas`.
                let st = unsafe { spark_session_init(session.ptr(), model.ptr(), p, len, ms) };
                arenas.push(arena);
                if null_arena {
                    assert_eq!(st, SPARK_E_NULL);
                } else if len < need {
                    assert_eq!(st, SPARK_E_ARENA_TOO_SMALL);
                } else {
                    assert_eq!(st, SPARK_OK, "arena of {len} >= {need} bytes");
                }
                session_ok = ok(st);
            }
            Call::Reset => {
                // SAFETY: zeroed or initialised session.
                let st = unsafe { spark_session_reset(session.ptr()) };
                assert_eq!(ok(st), session_ok);
            }
            Call::Pos(null) => {
                let (mut pos, mut max) = (0usize, 0usize);
                let pp = if null { std::ptr::null_mut() } else { &mut pos as *mut usize };
                // SAFETY: zeroed or initialised session; pointers NULL or writable.
                let st = unsafe { spark_session_pos(session.ptr(), pp, &mut max) };
                if session_ok && !null {
                    assert!(ok(st) && pos <= max);
                }
            }
            Call::Prefill(ids, null_out) => {
                let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
                let mut lp: *const f32 = std::ptr::null();
                let mut n = 0usize;
                let lpp = if null_out { std::ptr::null_mut() } else { &mut lp as *mut *const f32 };
                // SAFETY: session zeroed or initialised; `ids` readable; outputs NULL or writable.
                let st = unsafe { spark_prefill(session.ptr(), ids.as_ptr(), ids.len(), lpp, &mut n) };
                if ok(st) {
                    assert!(session_ok && !ids.is_empty() && ids.iter().all(|&i| i < vocab));
                    assert_eq!(n, vocab as usize);
                    steps += ids.len();
                    // SAFETY: on success `lp` points to `n` logits inside the session arena.
                    let l = unsafe { std::slice::from_raw_parts(lp, n) };
                    std::hint::black_box(l.iter().sum::<f32>());
                }
            }
            Call::Step(token, null_out) => {
                let mut lp: *const f32 = std::ptr::null();
                let mut n = 0usize;
                let lpp = if null_out { std::ptr::null_mut() } else { &mut lp as *mut *const f32 };
                let token = if token & 1 == 0 { (token >> 1) % vocab.max(1) } else { token };
                // SAFETY: as for Prefill.
                let st = unsafe { spark_step(session.ptr(), token, lpp, &mut n) };
                if ok(st) {
                    assert!(session_ok && token < vocab && n == vocab as usize);
                    steps += 1;
                } else if session_ok && !null_out && token >= vocab {
                    assert!(st == SPARK_E_INVALID_TOKEN || st == SPARK_E_CONTEXT_FULL);
                }
            }
            Call::LayerStats(layer) => {
                let mut out = std::mem::MaybeUninit::<spark_layer_stats_t>::zeroed();
                // SAFETY: session zeroed or initialised; `out` writable.
                let st = unsafe { spark_layer_stats(session.ptr(), layer, out.as_mut_ptr()) };
                if ok(st) {
                    assert!(session_ok);
                }
            }
            Call::Encode { text, bos, cap_delta, null_ids } => {
                let cap = (text.len() as i64 + bos as i64 + cap_delta as i64).max(0) as usize;
                let mut ids = vec![0u32; cap.max(1)];
                let mut n = 0usize;
                let p = if null_ids { std::ptr::null_mut() } else { ids.as_mut_ptr() };
                // SAFETY: model zeroed or open; `text` readable; `p` NULL or `cap` writable ids.
                let st = unsafe { spark_encode(model.ptr(), text.as_ptr(), text.len(), bos, p, cap, &mut n) };
                if ok(st) {
                    assert!(model_ok && n <= cap);
                    let mut back = vec![0u8; text.len() + 64];
                    let mut m = 0usize;
                    let skip = bos as usize;
                    // SAFETY: open model; `ids[skip..n]` readable; `back` writable.
                    let st = unsafe {
                        spark_decode(model.ptr(), ids[skip..].as_ptr(), n - skip, back.as_mut_ptr(), back.len(), &mut m)
                    };
                    assert_eq!(st, SPARK_OK);
                    assert_eq!(&back[..m], &text[..], "C API encode/decode round trip");
                } else if model_ok && !null_ids && cap < text.len() + bos as usize {
                    assert_eq!(st, SPARK_E_BUFFER_TOO_SMALL);
                    assert_eq!(n, text.len() + bos as usize);
                }
            }
            Call::Decode { ids, cap, null_out } => {
                let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
                let mut out = vec![0u8; cap as usize];
                let mut n = 0usize;
                let p = if null_out { std::ptr::null_mut() } else { out.as_mut_ptr() };
                // SAFETY: model zeroed or open; `ids` readable; `p` NULL or `cap` writable bytes.
                let st = unsafe { spark_decode(model.ptr(), ids.as_ptr(), ids.len(), p, cap as usize, &mut n) };
                if ok(st) {
                    assert!(model_ok && n <= cap as usize && ids.iter().all(|&i| i < vocab));
                }
            }
            Call::SamplerInit { t, p, seed, null_config } => {
                let c = spark_sampler_config_t { temperature: t, top_p: p, seed };
                let cp = if null_config { std::ptr::null() } else { &c as *const spark_sampler_config_t };
                // SAFETY: zeroable sampler storage; `cp` NULL or readable.
                let st = unsafe { spark_sampler_init(sampler.ptr(), cp) };
                let valid = t.is_finite() && (t == 0.0 || (t > 0.0 && p > 0.0 && p <= 1.0));
                if null_config {
                    assert_eq!(st, SPARK_E_NULL);
                } else if !valid {
                    assert_eq!(st, SPARK_E_BAD_SAMPLER, "t {t} p {p}");
                }
                sampler_ok = ok(st);
            }
            Call::Sample(null) => {
                let mut tok = 0u32;
                let p = if null { std::ptr::null_mut() } else { &mut tok as *mut u32 };
                // SAFETY: sampler and session zeroed or initialised; `p` NULL or writable.
                let st = unsafe { spark_sample(sampler.ptr(), session.ptr(), p) };
                if ok(st) {
                    assert!(sampler_ok && session_ok && tok < vocab);
                }
            }
            Call::Generate { prompt, max_tokens, stop_after, callback } => {
                let prompt: Vec<u32> = prompt.iter().take(4).map(|&i| i as u32 % 300).collect();
                let mut left = stop_after;
                let mut n = 0usize;
                let cb: spark_token_callback_t = if callback { Some(stop_cb) } else { None };
                // SAFETY: session and sampler zeroed or initialised; `prompt` readable;
                // `stop_cb` only reads `left`, a live u8.
                let st = unsafe {
                    spark_generate(
                        session.ptr(),
                        sampler.ptr(),
                        prompt.as_ptr(),
                        prompt.len(),
                        (max_tokens % 5) as usize,
                        cb,
                        (&mut left as *mut u8).cast::<c_void>(),
                        &mut n,
                    )
                };
                assert!(n <= (max_tokens % 5) as usize);
                if ok(st) {
                    assert!(session_ok && sampler_ok);
                    steps += prompt.len() + n;
                }
            }
            Call::StatusStr(s) => {
                let p = spark_status_str(s);
                assert!(!p.is_null());
                // SAFETY: spark_status_str returns a static NUL-terminated string.
                let text = unsafe { std::ffi::CStr::from_ptr(p) };
                assert!(!text.to_bytes().is_empty());
            }
        }
        if steps > 16 {
            break; // bounded work per input
        }
    }
}
