#![no_main]
//! Fuzz target `loader`: see `spark_fuzz_entry::loader`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spark_fuzz_entry::loader(data));
