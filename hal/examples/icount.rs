//! One kernel, called `REPS` times, for counting executed instructions under QEMU.
//!
//! `hal/icount-aarch64.sh` runs it under `qemu-aarch64` with one guest instruction per
//! translation block and an execution log, once with `REPS = 1` and once with `REPS = 2`:
//! the difference of the two counts is one call, startup and exit cancelling exactly.
//! Shapes and row order follow `firmware/kernel-test`'s Cortex-M measurement: 64 rows of
//! `COLS` int8 weights, list kernels taking the rows in the order `(i * 37) % 64`, `dot`
//! one row.
//!
//! Usage: `icount BACKEND KERNEL COLS REPS`, BACKEND `scalar` or `native` (and on aarch64
//! `neon` or `neon-sdot`), KERNEL `gemv`, `gemv_rows`, `gemv_t_rows` or `dot`. Prints the
//! backend's name and a checksum of the outputs (so no call can be optimised away).

use std::hint::black_box;
use std::process::ExitCode;

use spark_hal::{Kernels, Native, Scalar};

const ROWS: usize = 64;

/// A deterministic int8 pattern (xorshift).
fn pattern(len: usize, seed: u32) -> Vec<i8> {
    spark_hal::testing::pattern_i8(len, seed).collect()
}

/// Runs `kernel` `reps` times with backend `K`; returns a checksum of the outputs.
fn run<K: Kernels>(kernel: &str, cols: usize, reps: usize) -> Option<i64> {
    let w = pattern(ROWS * cols, 1);
    let x = pattern(cols, 2);
    let c = pattern(ROWS, 3);
    let idx: Vec<u32> = (0..ROWS).map(|i| ((i * 37) % ROWS) as u32).collect();
    let mut y = vec![0i32; ROWS.max(cols)];
    for _ in 0..reps {
        match kernel {
            "gemv" => K::gemv_i8(black_box(&w), cols, &x, &mut y[..ROWS]),
            "gemv_rows" => K::gemv_rows_i8(black_box(&w), cols, &idx, &x, &mut y[..ROWS]),
            "gemv_t_rows" => K::gemv_t_rows_i8(black_box(&w), cols, &idx, &c, &mut y[..cols]),
            "dot" => y[0] = K::dot_i8(black_box(&w[..cols]), &x),
            _ => return None,
        }
        // Only the kernel call is in the loop (what one more repetition adds is one call).
        black_box(&mut y);
    }
    Some(y.iter().fold(0i64, |s, &v| s.wrapping_add(v as i64)))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: icount BACKEND KERNEL COLS REPS (BACKEND scalar|native|neon|neon-sdot, \
                 KERNEL gemv|gemv_rows|gemv_t_rows|dot, COLS 1..=65536, REPS >= 1)";
    let [backend, kernel, cols, reps] = args.as_slice() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let (Ok(cols), Ok(reps)) = (cols.parse::<usize>(), reps.parse::<usize>()) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    if !(1..=65536).contains(&cols) || reps == 0 {
        eprintln!("{usage}");
        return ExitCode::from(2);
    }
    let (name, sum) = match backend.as_str() {
        "scalar" => (Scalar::NAME, run::<Scalar>(kernel, cols, reps)),
        "native" => (spark_hal::native_backend_name(), run::<Native>(kernel, cols, reps)),
        #[cfg(spark_neon)]
        "neon" => (spark_hal::arm::neon::Neon::NAME, run::<spark_hal::arm::neon::Neon>(kernel, cols, reps)),
        #[cfg(spark_neon)]
        "neon-sdot" if spark_hal::arm::neon::NeonDot::available() => {
            (spark_hal::arm::neon::NeonDot::NAME, run::<spark_hal::arm::neon::NeonDot>(kernel, cols, reps))
        }
        _ => {
            eprintln!("icount: backend {backend:?} is not available here\n{usage}");
            return ExitCode::from(2);
        }
    };
    match sum {
        Some(s) => {
            println!("{name} {kernel} {ROWS}x{cols} reps {reps} checksum {s}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("icount: unknown kernel {kernel:?}\n{usage}");
            ExitCode::from(2)
        }
    }
}
