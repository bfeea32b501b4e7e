#![no_main]
//! Fuzz target `ffi`: see `spark_fuzz_entry::ffi`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spark_fuzz_entry::ffi(data));
