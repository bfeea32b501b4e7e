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
    /// Whole-token decode of a model: Spark vs --dense twin, or the synthetic gemma2-2b pair
    /// (--layers, --vocab; default the full 26-layer model with a 256,000-token vocabulary).
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
    /// Context length: keys attended (attn, one value, default 4096), or for model a list of
    /// contexts, each the tokens in the cache before its timed decode steps, all timed in one
    /// process over the same two models (default 512,4096,8192 for the synthetic pair, 256 for
    /// model files). Each 1 to 65536.
    #[arg(long, value_parser = parse_ctx_list, value_name = "N[,N...]")]
    pub ctx: Option<CtxList>,
    /// `bench model`, synthetic pair only: decoder layers (1 to 48) [default: 26, gemma2-2b's
    /// depth; 1 with --vocab 4096 is the quick one-layer pair].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=48), value_name = "N")]
    pub layers: Option<u32>,
    /// `bench model`, synthetic pair only: vocabulary (2 to 1048576; tied embedding and logits
    /// head) [default: 256000, gemma2-2b's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=1 << 20), value_name = "V")]
    pub vocab: Option<u32>,
    /// `bench attn`: start each KV-cache copy this many bytes (0 to 65536, a multiple of 16)
    /// past its page-aligned mapping [default: 0], to check that the gathers do not depend
    /// on where the cache sits (docs/PERFORMANCE.md, "Where the attention cache sits"): the
    /// session arena places its caches at whatever offset the buffers before them leave.
    #[arg(long, value_parser = parse_cache_offset, value_name = "BYTES")]
    pub cache_offset: Option<usize>,
    /// `bench model`: reach each context by decoding real (random) tokens through both models
    /// (the honest path: about 10 minutes per variant for 8192 tokens of the full-size pair)
    /// instead of filling the KV caches with synthetic int8 values
    /// (`Session::fill_kv_synthetic`, the default; the timed steps are real decode steps either
    /// way).
    #[arg(long)]
    pub prefill: bool,
    /// Threads that run the timed calls and the read-bandwidth bound (1 to 256) [default: the
    /// cores available]; with more than one, every variant is also timed on one thread in
    /// the same run (the N-thread speedup), and the read bound too.
    #[arg(long, value_parser = crate::threads::parse_threads, value_name = "N")]
    pub threads: Option<usize>,
    /// Timed iterations (medians are reported); `bench model`: timed decode steps per context.
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
    /// Print machine-readable JSON (`bench model`: one object per context).
    #[arg(long)]
    pub json: bool,
}

/// The contexts of `--ctx`, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtxList(pub Vec<usize>);

/// The largest context `--ctx` accepts.
pub const MAX_CTX: usize = 65536;

/// `--ctx`: comma-separated context lengths, each 1 to [`MAX_CTX`], no repeats.
pub fn parse_ctx_list(s: &str) -> Result<CtxList, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let n: usize =
            part.trim().parse().ok().filter(|n| (1..=MAX_CTX).contains(n)).ok_or_else(|| {
                format!("{part:?} is not a context length: give 1 to {MAX_CTX} (a list: 512,4096,8192)")
            })?;
        if v.contains(&n) {
            return Err(format!("context {n} is given twice"));
        }
        v.push(n);
    }
    Ok(CtxList(v))
}

/// The largest `--cache-offset`.
pub const MAX_CACHE_OFFSET: usize = 65536;

/// `--cache-offset`: 0 to [`MAX_CACHE_OFFSET`] bytes, a multiple of 16 (the arena's
/// alignment, which keeps the f32 scales aligned).
pub fn parse_cache_offset(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .ok()
        .filter(|v| *v <= MAX_CACHE_OFFSET && v % 16 == 0)
        .ok_or_else(|| format!("{s:?} is not a cache offset: give 0 to {MAX_CACHE_OFFSET} bytes, a multiple of 16"))
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
    fn context_lists_parse_in_order_and_refuse_bad_entries() {
        assert_eq!(parse_ctx_list("4096"), Ok(CtxList(vec![4096])));
        assert_eq!(parse_ctx_list("512,4096,8192"), Ok(CtxList(vec![512, 4096, 8192])));
        assert_eq!(parse_ctx_list("8192, 1,65536"), Ok(CtxList(vec![8192, 1, 65536])));
        for bad in ["", "0", "65537", "512,", ",512", "512,,4096", "4k", "-1", "512;4096"] {
            assert!(parse_ctx_list(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_ctx_list("512,4096,512").unwrap_err().contains("twice"));
    }

    #[test]
    fn cache_offsets_are_multiples_of_16_up_to_64_kib() {
        assert_eq!(parse_cache_offset("0"), Ok(0));
        assert_eq!(parse_cache_offset("64"), Ok(64));
        assert_eq!(parse_cache_offset("65536"), Ok(65536));
        for bad in ["", "8", "65552", "-16", "1k", "x"] {
            assert!(parse_cache_offset(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_command_line_takes_a_context_list_and_the_model_options() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            b: BenchArgs,
        }
        let p = |args: &[&str]| Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.b);
        let b = p(&["model", "--ctx", "512,4096", "--iters", "5", "--layers", "1", "--vocab", "4096", "--prefill"])
            .unwrap();
        assert_eq!(b.what, BenchWhat::Model);
        assert_eq!(b.ctx, Some(CtxList(vec![512, 4096])));
        assert_eq!((b.layers, b.vocab, b.prefill, b.iters), (Some(1), Some(4096), true, 5));
        let b = p(&["model"]).unwrap();
        assert_eq!((b.ctx, b.layers, b.vocab, b.prefill), (None, None, None, false));
        for bad in [
            &["model", "--ctx", "0"][..],
            &["model", "--layers", "49"],
            &["model", "--vocab", "1"],
            &["attn", "--ctx", "x"],
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn llc_sizes_outside_the_range_are_refused() {
        assert_eq!(parse_llc("480M"), Ok(480 << 20));
        assert_eq!(parse_llc("2G"), Ok(MAX_LLC));
        for bad in ["0", "2049M", "100G", "18446744073709551615", "lots", ""] {
            assert!(parse_llc(bad).is_err(), "{bad:?} accepted");
        }
    }
}
