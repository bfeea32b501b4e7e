//! ARM backends: [`neon`] for little-endian aarch64 (`cfg(spark_neon)`), [`dsp`] for
//! Cortex-M with the DSP extension (`cfg(spark_dsp)`, thumbv7em / thumbv8m.main) and
//! [`mve`] for Cortex-M55/M85 with Helium (`cfg(spark_mve)`: thumbv8m.main with the
//! opt-in `mve` feature, which also keeps `dsp` compiled for A/B runs); the `cfg`s come
//! from `build.rs`.
//!
//! NEON backends are tested by `kernel_suite!` in `tests/backends.rs` under `qemu-aarch64`
//! (see `test.sh`); `Dsp` and `Mve` by the `firmware/kernel-test` QEMU binary (`Mve` on
//! `mps3-an547`, Cortex-M55).

#[cfg(spark_dsp)]
pub mod dsp;
#[cfg(spark_mve)]
pub mod mve;
#[cfg(spark_neon)]
pub mod neon;

#[cfg(all(spark_neon, feature = "std"))]
pub use neon::Auto;
