//! Puts the memory map of the QEMU board for this target where cortex-m-rt's `link.x`
//! finds it: `memory-an386.x` (thumbv7em, Cortex-M4) or `memory-an505.x` (thumbv8m.main,
//! Cortex-M33).
use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap();
    let src = if target.starts_with("thumbv8m.main") { "memory-an505.x" } else { "memory-an386.x" };
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::copy(src, out.join("memory.x")).unwrap();
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=memory-an386.x");
    println!("cargo::rerun-if-changed=memory-an505.x");
}
