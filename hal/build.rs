//! Derives the ISA cfgs of `spark-hal` from the target (stable Rust sets no ARM
//! `target_feature` cfgs for the DSP extension):
//!
//! - `spark_dsp`: Cortex-M with the DSP extension (`thumbv7em-*`, `thumbv8m.main-*`): the
//!   `smlad`/`sxtb16` backend in `src/arm/dsp.rs`. `thumbv6m`/`thumbv7m`/`thumbv8m.base` lack
//!   it (the instructions do not assemble there) and get only the scalar oracle.
//! - `spark_dsp_v8m`: `thumbv8m.main-*`, where the DSP extension is optional and the
//!   assembler must be told about it (see `src/arm/dsp.rs`).
//! - `spark_mve`: the `mve` feature on a `thumbv8m.main-*` target (Cortex-M55/M85 with
//!   Helium): the backend in `src/arm/mve.rs`, which then becomes `Native`. The triple is the
//!   same for cores with and without MVE, so the feature is the opt-in; on other targets it
//!   is ignored (with a build warning).
//! - `spark_neon`: little-endian aarch64 with NEON enabled: `src/arm/neon.rs`.
use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(spark_dsp)");
    println!("cargo::rustc-check-cfg=cfg(spark_dsp_v8m)");
    println!("cargo::rustc-check-cfg=cfg(spark_mve)");
    println!("cargo::rustc-check-cfg=cfg(spark_neon)");

    let target = env::var("TARGET").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);

    if endian == "little" && (target.starts_with("thumbv7em-") || target.starts_with("thumbv8m.main-")) {
        println!("cargo::rustc-cfg=spark_dsp");
        if target.starts_with("thumbv8m.main-") {
            println!("cargo::rustc-cfg=spark_dsp_v8m");
        }
    }
    if env::var_os("CARGO_FEATURE_MVE").is_some() {
        if endian == "little" && target.starts_with("thumbv8m.main-") {
            println!("cargo::rustc-cfg=spark_mve");
        } else {
            println!("cargo::warning=spark-hal: the `mve` feature applies only to thumbv8m.main targets; ignored for {target}");
        }
    }
    if arch == "aarch64" && endian == "little" && has("neon") {
        println!("cargo::rustc-cfg=spark_neon");
    }
}
