//! Plumbing shared by the `spark-sim` subcommands: the error type and exit codes, stdout
//! writing that survives a closed pipe, progress bars, model loading with one-line errors,
//! and the kernel backend switch.
//!
//! Exit codes: 0 success (also when stdout is closed early, e.g. piped into `head`),
//! 1 runtime or input error, 2 usage error (clap's own, or [`CliError::Usage`]).

use crate::hugemem::HugeBytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spark_core::Model;
use std::fmt;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Read a whole model file into a huge-page-advised buffer (`hugemem`: the sparse row
/// gathers of a large model then cost no page walk per row), with a one-line message that
/// says what to do.
pub fn read_model_file(path: &Path) -> CliResult<HugeBytes> {
    let what = "model file";
    let err = |e: io::Error| read_error(e, path, what);
    let mut f = std::fs::File::open(path).map_err(err)?;
    let meta = f.metadata().map_err(err)?;
    if meta.is_dir() {
        return Err(err(io::Error::from(io::ErrorKind::IsADirectory)));
    }
    let len = usize::try_from(meta.len())
        .map_err(|_| fail(format!("{what} {} is too large for this machine", path.display())))?;
    let mut buf = HugeBytes::zeroed(len).map_err(err)?;
    f.read_exact(&mut buf).map_err(err)?;
    // The file must not have grown meanwhile: a truncated read would fail validation, a
    // longer file would be silently cut.
    let mut probe = [0u8; 1];
    if f.read(&mut probe).map_err(err)? != 0 {
        return Err(fail(format!("{what} {} changed while it was read: try again", path.display())));
    }
    Ok(buf)
}

/// Read a whole input file (`what` names it in messages).
pub fn read_input(path: &Path, what: &str) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| read_error(e, path, what))
}

/// The one-line message for an I/O error reading `path` (`what` names it).
fn read_error(e: io::Error, path: &Path, what: &str) -> CliError {
    match e.kind() {
        io::ErrorKind::NotFound => fail(format!("{what} {} not found: check the path", path.display())),
        io::ErrorKind::IsADirectory => fail(format!("{what} {} is a directory: give a file", path.display())),
        _ => fail(format!("cannot read {what} {}: {e}", path.display())),
    }
}

/// Validate a `.spark` blob, with a message naming the file and the fix.
pub fn load_model<'a>(blob: &'a [u8], path: &Path) -> CliResult<Model<'a>> {
    Model::load(blob).map_err(|e| {
        fail(format!(
            "{} is not a valid .spark model: {e} (re-create it with `spark-sim convert`, or check the path)",
            path.display()
        ))
    })
}

/// The bundled demo model: `models/demo.spark` relative to the current directory, then
/// relative to the workspace (`CARGO_MANIFEST_DIR/../models`).
pub fn bundled_model_candidates() -> [PathBuf; 2] {
    [
        PathBuf::from("models/demo.spark"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("models").join("demo.spark"),
    ]
}

/// `--model` if given, else the first bundled candidate that exists.
pub fn resolve_model(model: Option<&Path>) -> CliResult<PathBuf> {
    if let Some(m) = model {
        return Ok(m.to_path_buf());
    }
    let c = bundled_model_candidates();
    c.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        fail(format!(
            "no --model given and the bundled model is missing (looked for {} and {}): pass --model FILE.spark",
            c[0].display(),
            c[1].display()
        ))
    })
}

/// Parse a comma-separated id list (`1,2,3`).
pub fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty id list: expected comma-separated token ids like 1,2,3".into());
    }
    s.split(',')
        .map(|p| {
            let p = p.trim();
            p.parse::<u32>().map_err(|_| format!("{p:?} is not a token id: expected comma-separated ids like 1,2,3"))
        })
        .collect()
}

/// Human-readable byte count (`1.50 MiB`).
pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

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
