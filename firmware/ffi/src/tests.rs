//! The argument checks most likely to regress, through the C entry points: NULL pointers,
//! a blob off `SPARK_MODEL_ALIGN`, an arena one byte short, and calls on sessions that were
//! never (or not successfully) initialised. The C tests (`tests/test_api.c`) cover the rest.

use super::*;
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

/// A 64-byte-aligned copy of `models/demo.spark`, as C callers must provide it.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

struct Blob {
    lines: Vec<Line>,
    len: usize,
}

impl Blob {
    fn demo() -> Blob {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/demo.spark");
        let bytes = std::fs::read(path).expect("models/demo.spark");
        // One spare line so that `ptr() + 1` with `len` bytes stays inside the buffer.
        let mut lines = vec![Line([0; 64]); bytes.len().div_ceil(64) + 1];
        for (line, chunk) in lines.iter_mut().zip(bytes.chunks(64)) {
            line.0[..chunk.len()].copy_from_slice(chunk);
        }
        Blob { lines, len: bytes.len() }
    }

    fn ptr(&self) -> *const u8 {
        self.lines.as_ptr() as *const u8
    }
}

fn zeroed<T>() -> Box<T> {
    // SAFETY: the three handle types are plain integers; all-zero is their "not
    // initialised" state, which is what C callers declare.
    Box::new(unsafe { core::mem::zeroed() })
}

fn opened(blob: &Blob) -> Box<spark_model_t> {
    let mut model = zeroed::<spark_model_t>();
    // SAFETY: a writable model struct and `blob.len` readable, aligned bytes.
    assert_eq!(unsafe { spark_model_open(&mut *model, blob.ptr(), blob.len) }, SPARK_OK);
    model
}

#[test]
fn null_pointers_are_reported() {
    let blob = Blob::demo();
    let mut model = zeroed::<spark_model_t>();
    let mut bytes = 0usize;
    // SAFETY: every pointer is NULL or valid for the access the call makes.
    unsafe {
        assert_eq!(spark_model_open(ptr::null_mut(), blob.ptr(), blob.len), SPARK_E_NULL);
        assert_eq!(spark_model_open(&mut *model, ptr::null(), blob.len), SPARK_E_NULL);
        assert_eq!(spark_arena_size(ptr::null(), 0, &mut bytes), SPARK_E_NULL);
    }
    let model = opened(&blob);
    let mut session = zeroed::<spark_session_t>();
    let mut arena = vec![0u8; 1 << 20];
    let (mut logits, mut n) = (ptr::null::<f32>(), 0usize);
    // SAFETY: as above.
    unsafe {
        assert_eq!(spark_arena_size(&*model, 0, ptr::null_mut()), SPARK_E_NULL);
        assert_eq!(spark_session_init(&mut *session, &*model, ptr::null_mut(), arena.len(), 0), SPARK_E_NULL);
        assert_eq!(spark_session_init(ptr::null_mut(), &*model, arena.as_mut_ptr(), arena.len(), 0), SPARK_E_NULL);
        assert_eq!(spark_session_init(&mut *session, ptr::null(), arena.as_mut_ptr(), arena.len(), 0), SPARK_E_NULL);
        assert_eq!(spark_session_init(&mut *session, &*model, arena.as_mut_ptr(), arena.len(), 0), SPARK_OK);
        assert_eq!(spark_step(&mut *session, 1, ptr::null_mut(), &mut n), SPARK_E_NULL);
        assert_eq!(spark_step(&mut *session, 1, &mut logits, ptr::null_mut()), SPARK_E_NULL);
        assert_eq!(spark_step(ptr::null_mut(), 1, &mut logits, &mut n), SPARK_E_NULL);
        assert_eq!(spark_sampler_init(ptr::null_mut(), ptr::null()), SPARK_E_NULL);
    }
}

#[test]
fn misaligned_blob_is_a_status() {
    let blob = Blob::demo();
    let mut model = zeroed::<spark_model_t>();
    for offset in [1usize, 4, 8, 32] {
        // SAFETY: `offset + len` bytes are inside the buffer (one spare line).
        let st = unsafe { spark_model_open(&mut *model, blob.ptr().add(offset), blob.len) };
        assert_eq!(st, SPARK_E_MISALIGNED, "blob at offset {offset}");
    }
    // The failed opens leave the model unusable, not half-open.
    let mut bytes = 0usize;
    // SAFETY: valid pointers.
    assert_eq!(unsafe { spark_arena_size(&*model, 0, &mut bytes) }, SPARK_E_NOT_INITIALIZED);
}

#[test]
fn arena_one_byte_short_is_refused_exact_size_at_any_alignment_works() {
    let blob = Blob::demo();
    let model = opened(&blob);
    for max_seq in [0usize, 16] {
        let mut need = 0usize;
        // SAFETY: valid pointers.
        assert_eq!(unsafe { spark_arena_size(&*model, max_seq, &mut need) }, SPARK_OK);
        let mut arena = vec![0u8; need + 8];
        let mut session = zeroed::<spark_session_t>();
        let (mut logits, mut n) = (ptr::null::<f32>(), 0usize);
        // SAFETY: `arena` holds `need + 8` writable bytes; every other pointer is valid.
        unsafe {
            let st = spark_session_init(&mut *session, &*model, arena.as_mut_ptr(), need - 1, max_seq);
            assert_eq!(st, SPARK_E_ARENA_TOO_SMALL, "max_seq {max_seq}");
            // A failed init leaves the session not initialised.
            assert_eq!(spark_step(&mut *session, 1, &mut logits, &mut n), SPARK_E_NOT_INITIALIZED);
            for offset in [0usize, 1, 3, 7] {
                let st = spark_session_init(&mut *session, &*model, arena.as_mut_ptr().add(offset), need, max_seq);
                assert_eq!(st, SPARK_OK, "max_seq {max_seq}, arena at offset {offset}");
            }
            assert_eq!(spark_step(&mut *session, 1, &mut logits, &mut n), SPARK_OK);
            assert!(!logits.is_null() && n > 0);
        }
    }
}

#[test]
fn calls_before_init_report_not_initialized() {
    let blob = Blob::demo();
    let model = opened(&blob);
    let mut session = zeroed::<spark_session_t>();
    let mut sampler = zeroed::<spark_sampler_t>();
    let (mut logits, mut n, mut token) = (ptr::null::<f32>(), 0usize, 0u32);
    // SAFETY: valid pointers to zeroed (not initialised) structs.
    unsafe {
        assert_eq!(spark_step(&mut *session, 1, &mut logits, &mut n), SPARK_E_NOT_INITIALIZED);
        assert_eq!(spark_session_reset(&mut *session), SPARK_E_NOT_INITIALIZED);
        let cfg = spark_sampler_config_t { temperature: 0.0, top_p: 1.0, seed: 0 };
        assert_eq!(spark_sampler_init(&mut *sampler, &cfg), SPARK_OK);
        assert_eq!(spark_sample(&mut *sampler, &mut *session, &mut token), SPARK_E_NOT_INITIALIZED);
        let zero_model = zeroed::<spark_model_t>();
        let mut arena = vec![0u8; 1 << 20];
        let st = spark_session_init(&mut *session, &*zero_model, arena.as_mut_ptr(), arena.len(), 0);
        assert_eq!(st, SPARK_E_NOT_INITIALIZED);
    }
    drop(model);
}
