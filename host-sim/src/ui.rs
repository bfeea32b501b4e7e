//! Plumbing shared by the `spark-sim` subcommands: the error type and exit codes, stdout
//! writing that survives a closed pipe, progress bars, the kernel backend switch, and
//! number formatting. What the subcommands read (files, models, prompts) is in
//! the `inputs` module.
//!
//! Exit statuses: 0 success (also when stdout is closed early, e.g.
//! piped into `head`), 1 runtime or input error, 2 usage error (clap's own, or
//! [`CliError::Usage`]), [`EXIT_INTERNAL`] (101) internal error: a panic, reported by the
//! binary's panic hook.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

/// The exit status of an internal error (a panic: a bug in spark-sim), distinct from the
/// statuses of input (1) and usage (2) errors. Rust's own status for a panicking thread.
pub const EXIT_INTERNAL: u8 = 101;

/// Why a subcommand stopped.
#[derive(Debug)]
pub enum CliError {
    /// A runtime or input problem: one line, exit code 1.
    Failed(String),
    /// The command line is inconsistent in a way clap cannot check: exit code 2.
    Usage(String),
    /// stdout was closed by the reader (EPIPE): stop quietly, exit code 0.
    BrokenPipe,
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::BrokenPipe => 0,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Failed(m) | CliError::Usage(m) => f.write_str(m),
            CliError::BrokenPipe => f.write_str("output closed"),
        }
    }
}

impl From<String> for CliError {
    fn from(m: String) -> Self {
        CliError::Failed(m)
    }
}

impl From<&str> for CliError {
    fn from(m: &str) -> Self {
        CliError::Failed(m.to_string())
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Failed(format!("cannot write output: {e}"))
        }
    }
}

/// Result of a subcommand.
pub type CliResult<T = ()> = Result<T, CliError>;

/// A runtime/input error (exit 1).
pub fn fail(msg: impl Into<String>) -> CliError {
    CliError::Failed(msg.into())
}

/// A usage error (exit 2).
pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Print a line to stderr, ignoring failures (stderr is for humans; losing it is harmless).
pub fn note(msg: impl fmt::Display) {
    let _ = writeln!(io::stderr(), "{msg}");
}

/// Pretty-print a JSON value on stdout.
pub fn print_json(v: &serde_json::Value) -> CliResult {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).map_err(|e| match e.io_error_kind() {
        Some(io::ErrorKind::BrokenPipe) => CliError::BrokenPipe,
        _ => fail(format!("cannot write JSON: {e}")),
    })?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A progress bar on stderr with `len` steps, drawn only when `show` is true and stderr is a
/// terminal (hidden otherwise, so pipes, files and `--json` runs get no escape codes).
pub fn progress(len: u64, show: bool, what: &str) -> ProgressBar {
    if !show || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:>10} [{bar:32}] {pos}/{len} ({per_sec}, eta {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// An indeterminate spinner on stderr (same visibility rules as [`progress`]).
pub fn spinner(show: bool, what: &str) -> ProgressBar {
    if !show || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Kernel backend choice of `generate`, `eval`, `logits` and `bench`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The fastest kernels for this CPU (`spark_hal::Native`, detected at run time).
    #[default]
    Auto,
    /// The portable scalar oracle kernels (`spark_hal::Scalar`).
    Scalar,
}

impl Backend {
    /// The name of the kernels that actually run.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Backend::Auto => spark_hal::native_backend_name(),
            Backend::Scalar => <spark_hal::Scalar as spark_hal::Kernels>::NAME,
        }
    }
}

/// Call `$f::<K>($args...)` with `K` the kernels of `$backend`.
#[macro_export]
macro_rules! with_backend {
    ($backend:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $backend {
            $crate::ui::Backend::Auto => $f::<spark_hal::Native>($($arg),*),
            $crate::ui::Backend::Scalar => $f::<spark_hal::Scalar>($($arg),*),
        }
    };
}

/// Human-readable byte count (`1.50 MiB`): the board table's formatter, so `plan` and the
/// firmware build print the same figures.
pub use spark_boards::human_bytes;

/// Median of a sample (sorts a copy); 0 for an empty one.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
