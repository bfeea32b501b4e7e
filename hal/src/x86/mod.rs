//! x86-64 backends: [`avx2::Avx2`], [`avx512vnni::Avx512Vnni`] and, with `std`, the
//! run-time dispatching [`Auto`].
//!
//! Each backend is tested bit-exact against the scalar oracle by `kernel_suite!` in
//! `tests/backends.rs`; a backend the CPU cannot run is skipped there with a message.

#[cfg(any(feature = "std", target_feature = "avx2"))]
pub mod avx2;
#[cfg(any(feature = "std", all(target_feature = "avx512vnni", target_feature = "avx512bw")))]
pub mod avx512vnni;

#[cfg(feature = "std")]
pub use auto::Auto;

#[cfg(feature = "std")]
mod auto {
    use super::avx2::Avx2;
    use super::avx512vnni::Avx512Vnni;
    use crate::{Kernels, Scalar};

    /// Run-time dispatch to the fastest backend this CPU supports: [`Avx512Vnni`], then
    /// [`Avx2`], then [`Scalar`]. The CPU check is `is_x86_feature_detected!`, which `std`
    /// caches after the first call, so dispatch costs a load and a branch per kernel call.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Auto;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Level {
        Vnni,
        Avx2,
        Scalar,
    }

    #[inline(always)]
    fn level() -> Level {
        if Avx512Vnni::available() {
            Level::Vnni
        } else if Avx2::available() {
            Level::Avx2
        } else {
            Level::Scalar
        }
    }

    macro_rules! dispatch {
        ($f:ident($($a:expr),*)) => {
            match level() {
                Level::Vnni => Avx512Vnni::$f($($a),*),
                Level::Avx2 => Avx2::$f($($a),*),
                Level::Scalar => Scalar::$f($($a),*),
            }
        };
    }

    impl Auto {
        /// Name of the backend [`Auto`] dispatches to on this CPU.
        pub fn selected_name() -> &'static str {
            match level() {
                Level::Vnni => Avx512Vnni::NAME,
                Level::Avx2 => Avx2::NAME,
                Level::Scalar => Scalar::NAME,
            }
        }
    }

    impl Kernels for Auto {
        const NAME: &'static str = "auto";

        fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
            dispatch!(dot_i8(a, b))
        }
        fn gemv_i8(w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
            dispatch!(gemv_i8(w, cols, x, y))
        }
        fn gemv_rows_i8(w: &[i8], cols: usize, rows: &[u32], x: &[i8], y: &mut [i32]) {
            dispatch!(gemv_rows_i8(w, cols, rows, x, y))
        }
        fn gemv_t_rows_i8(w: &[i8], cols: usize, rows: &[u32], c: &[i8], y: &mut [i32]) {
            dispatch!(gemv_t_rows_i8(w, cols, rows, c, y))
        }
        fn quantize_sym_i8(x: &[f32], q: &mut [i8]) -> f32 {
            dispatch!(quantize_sym_i8(x, q))
        }
    }
}
