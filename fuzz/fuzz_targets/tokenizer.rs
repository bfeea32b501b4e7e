#![no_main]
//! Fuzz target `tokenizer`: see `spark_fuzz_entry::tokenizer`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spark_fuzz_entry::tokenizer(data));
