//! ARM backends: [`neon`] for little-endian aarch64 (`cfg(spark_neon)`) and [`dsp`] for
//! Cortex-M with the DSP extension (`cfg(spark_dsp)`, thumbv7em / thumbv8m.main); both
//! `cfg`s come from `build.rs`.
//!
//! NEON backends are tested by `kernel_suite!` in `tests/backends.rs` under `qemu-aarch64`
//! (see `test.sh`); `Dsp` by the `firmware/kernel-test` QEMU binary.

#[cfg(spark_dsp)]
pub mod dsp;
#[cfg(spark_neon)]
pub mod neon;

#[cfg(all(spark_neon, feature = "std"))]
pub use neon::Auto;
