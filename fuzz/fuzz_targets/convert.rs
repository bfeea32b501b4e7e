#![no_main]
//! Fuzz target `convert`: see `spark_fuzz_entry::convert`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spark_fuzz_entry::convert(data));
