//! The command line of `spark-sim bench`: what to time and on which shape.

use crate::inputs::parse_size;
use crate::ui::{human_bytes, Backend};
use std::path::PathBuf;

/// What `bench` times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWhat {
    /// One FFN block: Spark FFN vs its dense GeGLU twin (f_g = f / 1.5, same parameters).
    Ffn,
    /// One attention layer at --ctx keys: Spark attention vs dense attention, all query heads.
    Attn,
    /// Whole-token decode of a model (Spark vs --dense twin, or a gemma2-2b-shaped 1-layer pair).
    Model,
}

/// Arguments of `spark-sim bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// ffn, attn or model.
    #[arg(value_enum)]
    pub what: BenchWhat,
    /// Named shape (gemma2-2b) or a .spark model whose shape (ffn, attn) or weights (model) to use.
    #[arg(long, default_value = "gemma2-2b", value_name = "gemma2-2b|MODEL.spark")]
    pub shape: String,
    /// Context length: keys attended (attn, default 4096) or tokens in the cache before the timed
    /// decode steps (model, default 256).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub ctx: Option<u64>,
    /// Threads that run the timed calls and the read-bandwidth bound (1 to 256) [default: the
    /// cores available].
    #[arg(long, value_parser = crate::threads::parse_threads, value_name = "N")]
    pub threads: Option<usize>,
    /// Timed iterations (medians are reported).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100000))]
    pub iters: u64,
    /// Kernel backend.
    #[arg(long, value_enum, default_value_t)]
    pub backend: Backend,
    /// `bench model`: the dense twin model file to compare --shape MODEL.spark against.
    #[arg(long, value_name = "OTHER.spark")]
    pub dense: Option<PathBuf>,
    /// Last-level cache size to plan the weight rotation and the bandwidth buffer for: 1 byte
    /// to 2 GiB, K/M/G suffixes [default: read from /sys/devices/system/cpu/cpu0/cache (at
    /// most 2 GiB), else 64 MiB]. The rotation keeps enough copies of each variant's weights
    /// (KV cache) to touch 2x LLC between two uses of one copy, but at most 4096 copies and
    /// 8 GiB per variant (a smaller working set is reported as partly cached); the bandwidth
    /// buffer is 4x LLC, at least 16 MiB.
    #[arg(long, value_parser = parse_llc, value_name = "BYTES")]
    pub llc: Option<u64>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// The largest last-level cache a rotation is planned for: a larger `--llc` is a usage
/// error, a larger size read from the system is taken as this.
pub const MAX_LLC: u64 = 2 << 30;

/// `--llc`: a byte count (K/M/G suffixes) from 1 byte to [`MAX_LLC`].
pub fn parse_llc(s: &str) -> Result<u64, String> {
    let v = parse_size(s)?;
    if v == 0 || v > MAX_LLC {
        return Err(format!("{s:?} is not a last-level cache size: give 1 byte to {}", human_bytes(MAX_LLC)));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llc_sizes_outside_the_range_are_refused() {
        assert_eq!(parse_llc("480M"), Ok(480 << 20));
        assert_eq!(parse_llc("2G"), Ok(MAX_LLC));
        for bad in ["0", "2049M", "100G", "18446744073709551615", "lots", ""] {
            assert!(parse_llc(bad).is_err(), "{bad:?} accepted");
        }
    }
}
