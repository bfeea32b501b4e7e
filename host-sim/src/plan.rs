//! `spark-sim plan`: does a model fit a target? RAM (the session arena at a context length,
//! plus a stack estimate) and flash (the model file read in place, plus a code size
//! estimate) against the memory of the QEMU boards the project runs on, and which knob
//! fixes a model that does not fit.

use crate::format::parse_table;
use crate::inputs::{load_model, parse_size, read_model_file, resolve_model, GIB, KIB, MIB};
use crate::ui::{fail, human_bytes, print_json, usage, CliResult};
use spark_core::Model;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A target preset.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// QEMU mps2-an386: RAM 4 MiB (SSRAM2/3 at 0x20000000), flash 4 MiB (SSRAM1 at 0x0, code + model).
    CortexM4,
    /// QEMU mps2-an500: RAM 4 MiB (SSRAM2/3 at 0x20000000), flash 4 MiB (SSRAM1 at 0x0, code + model).
    CortexM7,
    /// QEMU mps2-an505: RAM 4 MiB (SSRAM2/3, secure alias 0x38000000), flash 4 MiB (SSRAM1, 0x10000000).
    CortexM33,
    /// QEMU mps3-an547: RAM 4 MiB (SRAM at 0x21000000), code 512 KiB ITCM at 0x0, model 8 MiB QSPI at 0x28000000.
    CortexM55,
    /// A Cortex-A53 Linux board (e.g. Raspberry Pi 3 class): RAM 1 GiB, storage 8 GiB.
    CortexA53,
    /// This machine: RAM from /proc/meminfo, storage unlimited.
    Host,
}

/// Memory of a target.
#[derive(Clone, Debug)]
pub struct Preset {
    /// Target name.
    pub name: &'static str,
    /// Where the figures come from.
    pub source: &'static str,
    /// RAM for the arena and the stack.
    pub ram: u64,
    /// Read-only memory for the model (and the code, unless `code_region` is set).
    pub flash: u64,
    /// A separate code region (mps3-an547's ITCM), if any.
    pub code_region: Option<u64>,
    /// Estimated code size.
    pub code: u64,
    /// Estimated stack.
    pub stack: u64,
}

/// Code size estimate for Cortex-M firmware (the shared board table's).
pub use spark_boards::CODE_M;
/// Stack estimate for a session on Cortex-M (the shared board table's).
pub use spark_boards::STACK_M;

fn host_ram() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).map(|kb| kb * KIB))
        })
        .unwrap_or(8 * GIB)
}

/// The preset of a target.
pub fn preset(t: Target) -> Preset {
    // The Cortex-M presets are the QEMU boards of the shared board table (firmware/boards),
    // which the firmware's build script checks models against.
    let m = |name, board: &str| {
        let b = spark_boards::board(board).expect("a board of the shared table");
        Preset {
            name,
            source: b.source,
            ram: b.ram,
            flash: b.flash,
            code_region: b.code_region,
            code: b.code,
            stack: b.stack,
        }
    };
    match t {
        Target::CortexM4 => m("cortex-m4", "mps2-an386"),
        Target::CortexM7 => m("cortex-m7", "mps2-an500"),
        Target::CortexM33 => m("cortex-m33", "mps2-an505"),
        Target::CortexM55 => m("cortex-m55", "mps3-an547"),
        Target::CortexA53 => Preset {
            name: "cortex-a53",
            source: "a Cortex-A53 Linux board (Raspberry Pi 3 class): 1 GiB RAM, 8 GiB storage",
            ram: GIB,
            flash: 8 * GIB,
            code_region: None,
            code: 2 * MIB,
            stack: 8 * MIB,
        },
        Target::Host => Preset {
            name: "host",
            source: "this machine: RAM = MemTotal of /proc/meminfo, storage unlimited",
            ram: host_ram(),
            flash: u64::MAX / 4,
            code_region: None,
            code: 2 * MIB,
            stack: 8 * MIB,
        },
    }
}

/// Arguments of `spark-sim plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The `.spark` model [default: the bundled models/demo.spark].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Target preset (RAM / flash of the QEMU board the project runs it on).
    #[arg(long, value_enum)]
    pub target: Target,
    /// Override the target's RAM (bytes; K/M/G suffixes allowed, e.g. 512K).
    #[arg(long, value_parser = parse_size)]
    pub ram: Option<u64>,
    /// Override the target's flash (bytes; K/M/G suffixes allowed).
    #[arg(long, value_parser = parse_size)]
    pub flash: Option<u64>,
    /// Override the code size estimate (bytes).
    #[arg(long, value_parser = parse_size)]
    pub code: Option<u64>,
    /// Override the stack estimate (bytes).
    #[arg(long, value_parser = parse_size)]
    pub stack: Option<u64>,
    /// Context length the session is built for [default: the model's max_seq_len].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_seq: Option<u64>,
    /// Exit with code 1 when the model does not fit (for scripts).
    #[arg(long)]
    pub check: bool,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arena bytes of `model` with a modified config (`f` edits a copy).
fn arena_with(model: &Model<'_>, max_seq: usize, f: impl Fn(&mut spark_core::Config)) -> u64 {
    let mut c = *model.config();
    f(&mut c);
    spark_core::session::arena_bytes(&c, max_seq) as u64
}

use spark_boards::largest;

/// The target's memory: the preset with the command line's overrides.
fn target_memory(a: &PlanArgs) -> Preset {
    let mut p = preset(a.target);
    if let Some(v) = a.ram {
        p.ram = v;
    }
    if let Some(v) = a.flash {
        p.flash = v;
    }
    if let Some(v) = a.code {
        p.code = v;
    }
    if let Some(v) = a.stack {
        p.stack = v;
    }
    p
}

/// What a model needs of a target at a context length, and whether it fits.
#[derive(Clone, Debug)]
struct Needs {
    /// Context length of the session.
    max_seq: usize,
    /// Session arena bytes.
    arena: u64,
    /// Arena plus stack.
    ram: u64,
    /// The model file's bytes.
    model_bytes: u64,
    /// Model plus code, or the model alone where the code has its own region.
    flash: u64,
    /// The code fits its own region (true where there is none).
    code_fits: bool,
    /// Arena plus stack fit the RAM.
    fits_ram: bool,
    /// Model (and code) fit the flash, and the code its region.
    fits_flash: bool,
    /// The largest context whose arena plus stack fits the RAM, if any.
    best_seq: Option<u64>,
    /// Arena bytes of one more token of context.
    kv_per_token: f64,
}

impl Needs {
    /// RAM and flash both fit.
    fn fits(&self) -> bool {
        self.fits_ram && self.fits_flash
    }
}

/// What `model` (a file of `model_bytes`) needs of `p` at a context of `max_seq`. Sums
/// are checked: a `--stack` or `--code` whose sum with the arena or the model does not
/// fit 64 bits is a usage error, never a wrapped (small) total.
fn needs(model: &Model<'_>, model_bytes: u64, p: &Preset, max_seq: usize) -> CliResult<Needs> {
    let cfg = *model.config();
    let arena = model.arena_bytes(max_seq) as u64;
    // The budget of the shared board table (the firmware build checks the same sums).
    let b = spark_boards::Budget::of(&memory(p), model_bytes, arena).ok_or_else(|| {
        if arena.checked_add(p.stack).is_none() {
            usage(format!(
                "--stack {}: with the session arena ({arena} bytes) the RAM needed exceeds a 64-bit byte count",
                p.stack
            ))
        } else {
            usage(format!(
                "--code {}: with the model ({model_bytes} bytes) the flash needed exceeds a 64-bit byte count",
                p.code
            ))
        }
    })?;
    let ram_ok = |s: u64| fits_with_stack(model.arena_bytes(s as usize) as u64, p);
    let best_seq = largest(1, cfg.max_seq_len as u64, ram_ok);
    let kv_per_token = if max_seq > 1 { (arena - model.arena_bytes(max_seq - 1) as u64) as f64 } else { 0.0 };
    Ok(Needs {
        max_seq,
        arena,
        ram: b.ram,
        model_bytes,
        flash: b.flash,
        code_fits: b.code_fits,
        fits_ram: b.fits_ram,
        fits_flash: b.fits_flash,
        best_seq,
        kv_per_token,
    })
}

/// `arena` plus the stack fits the RAM (a sum past 64 bits does not).
fn fits_with_stack(arena: u64, p: &Preset) -> bool {
    memory(p).arena_fits(arena)
}

/// The preset's memory as the shared budget logic sees it.
fn memory(p: &Preset) -> spark_boards::Memory {
    spark_boards::Memory { ram: p.ram, flash: p.flash, code_region: p.code_region, code: p.code, stack: p.stack }
}

/// Which knob makes the arena fit the RAM: a shorter context, else a smaller vocabulary
/// or fewer layers.
fn ram_fix(model: &Model<'_>, p: &Preset, n: &Needs) -> String {
    let cfg = *model.config();
    if let Some(s) = n.best_seq {
        return format!(
            "RAM: a context of at most {s} tokens fits (--max-seq {s}; each token of context costs {} of KV cache and scratch)",
            human_bytes(n.kv_per_token as u64)
        );
    }
    let layers =
        largest(1, cfg.n_layers as u64, |l| fits_with_stack(arena_with(model, 1, |c| c.n_layers = l as u32), p));
    let vocab =
        largest(2, cfg.vocab_size as u64, |v| fits_with_stack(arena_with(model, 1, |c| c.vocab_size = v as u32), p));
    let mut s = "RAM: even a 1-token context does not fit".to_string();
    match vocab {
        Some(v) => s += &format!("; a vocabulary of at most {v} tokens would (logit scratch)"),
        None => s += "; shrinking the vocabulary alone does not help",
    }
    if let Some(l) = layers {
        s += &format!("; or at most {l} layers");
    }
    s + ": retrain or pick a smaller model"
}

/// How far over the flash the model is, and how many layers or vocabulary entries fit.
fn flash_fix(blob: &[u8], cfg: &spark_core::Config, p: &Preset, n: &Needs) -> String {
    let (per_layer, per_vocab) = layer_and_vocab_bytes(blob, cfg);
    let budget = p.flash.saturating_sub(if p.code_region.is_some() { 0 } else { p.code });
    let fixed = n.model_bytes.saturating_sub(per_layer * cfg.n_layers as u64);
    let layers = budget.saturating_sub(fixed).checked_div(per_layer).unwrap_or(0);
    let non_vocab = n.model_bytes.saturating_sub(per_vocab * cfg.vocab_size as u64);
    let vocab = budget.saturating_sub(non_vocab).checked_div(per_vocab).unwrap_or(0);
    let mut s = format!("flash: the model is {} over", human_bytes(n.flash - p.flash));
    if p.code_region.is_none() && p.code >= p.flash {
        s += &format!("; the code estimate alone ({}) fills the flash", human_bytes(p.code));
    } else if layers >= 1 {
        s += &format!("; {layers} of its {} layers would fit ({} per layer)", cfg.n_layers, human_bytes(per_layer));
    } else {
        s += &format!("; not even one layer fits beside the embedding ({} per layer)", human_bytes(per_layer));
    }
    if vocab >= 2 && vocab < cfg.vocab_size as u64 {
        s += &format!("; or a vocabulary of at most {vocab} tokens ({} per token)", human_bytes(per_vocab));
    }
    s
}

/// Every knob that would make the model fit (empty when it fits).
fn fixes(model: &Model<'_>, blob: &[u8], p: &Preset, n: &Needs) -> Vec<String> {
    let mut fixes = Vec::new();
    if !n.fits_ram {
        fixes.push(ram_fix(model, p, n));
    }
    if !n.code_fits {
        fixes.push(format!(
            "code: the {} estimate exceeds the {} code region",
            human_bytes(p.code),
            human_bytes(p.code_region.unwrap_or(0))
        ));
    }
    if n.flash > p.flash {
        fixes.push(flash_fix(blob, model.config(), p, n));
    }
    fixes
}

/// The plan as JSON.
fn print_plan_json(path: &Path, p: &Preset, n: &Needs, fixes: &[String]) -> CliResult {
    print_json(&serde_json::json!({
        "model": path.display().to_string(),
        "target": p.name, "source": p.source,
        "ram_bytes": p.ram, "flash_bytes": p.flash, "code_region_bytes": p.code_region,
        "max_seq": n.max_seq, "arena_bytes": n.arena, "stack_bytes_estimate": p.stack,
        "ram_needed": n.ram, "model_bytes": n.model_bytes, "code_bytes_estimate": p.code,
        "flash_needed": n.flash, "fits_ram": n.fits_ram, "fits_flash": n.fits_flash, "fits": n.fits(),
        "largest_max_seq_that_fits": n.best_seq, "kv_bytes_per_token": n.kv_per_token,
        "fixes": fixes,
    }))
}

/// The shared budget of a plan's needs.
fn budget(n: &Needs) -> spark_boards::Budget {
    spark_boards::Budget {
        arena: n.arena,
        ram: n.ram,
        model_bytes: n.model_bytes,
        flash: n.flash,
        code_fits: n.code_fits,
        fits_ram: n.fits_ram,
        fits_flash: n.fits_flash,
    }
}

/// The plan as text: RAM, flash, verdict and fixes.
fn print_plan_text(path: &Path, p: &Preset, n: &Needs, fixes: &[String]) -> CliResult {
    let mut o = io::stdout().lock();
    writeln!(o, "plan    {} on {} ({})", path.display(), p.name, p.source)?;
    write!(o, "{}", spark_boards::budget_lines(&memory(p), &budget(n), n.max_seq))?;
    writeln!(
        o,
        "assume  the model is read in place from flash (zero-copy); stack and code are estimates (override with --stack, --code)"
    )?;
    writeln!(o, "verdict {}", if n.fits() { "FITS" } else { "DOES NOT FIT" })?;
    for f in fixes {
        writeln!(o, "fix     {f}")?;
    }
    if n.fits() {
        if let Some(s) = n.best_seq {
            if s as usize > n.max_seq {
                writeln!(o, "note    a context of up to {s} tokens would still fit the RAM")?;
            }
        }
    }
    Ok(())
}

/// `spark-sim plan`.
pub fn plan(a: &PlanArgs) -> CliResult {
    let path = resolve_model(a.model.as_deref())?;
    let blob = read_model_file(&path)?;
    let model = load_model(&blob, &path)?;
    let cfg = *model.config();
    let p = target_memory(a);
    let max_seq = a.max_seq.map(|v| v as usize).unwrap_or(cfg.max_seq_len as usize);
    if max_seq > cfg.max_seq_len as usize {
        return Err(usage(format!("--max-seq {max_seq} exceeds the model's max_seq_len {}", cfg.max_seq_len)));
    }
    let n = needs(&model, blob.len() as u64, &p, max_seq)?;
    let fixes = fixes(&model, &blob, &p, &n);
    if a.json {
        print_plan_json(&path, &p, &n, &fixes)?;
    } else {
        print_plan_text(&path, &p, &n, &fixes)?;
    }
    if a.check && !n.fits() {
        return Err(fail(format!("{} does not fit {}", path.display(), p.name)));
    }
    Ok(())
}

/// File bytes per layer (all tensors of layer 0, with alignment) and per vocabulary entry
/// (embedding row + scale, head row if untied, average tokenizer bytes).
fn layer_and_vocab_bytes(blob: &[u8], cfg: &spark_core::Config) -> (u64, u64) {
    let Some((header, entries, _)) = parse_table(blob) else { return (0, 0) };
    let align = |x: u64| x.div_ceil(64) * 64;
    let per_layer: u64 =
        entries.iter().filter(|e| e.id.kind.is_layer() && e.id.layer == 0).map(|e| align(e.len as u64)).sum();
    let d = cfg.d_model as u64;
    let heads = if cfg.tie_embeddings { 1 } else { 2 };
    let tok = if cfg.vocab_size > 0 { header.tokenizer.bytes_len as u64 / cfg.vocab_size as u64 + 4 } else { 0 };
    (per_layer, heads * (d + 4) + tok)
}
