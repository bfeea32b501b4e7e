#![no_main]
//! Fuzz target `loader_structured`: see `spark_fuzz_entry::loader_structured`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spark_fuzz_entry::loader_structured(data));
