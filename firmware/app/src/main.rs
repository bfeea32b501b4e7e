//! Cortex-M firmware: one Spark model, chosen at build time, on a board chosen by a cargo
//! feature (see `build.rs` for every build-time setting, `firmware/boards` for the boards).
//!
//! One run, as `spark-sim generate --json` does it: the prompt (tokenized on the target,
//! with BOS) is stepped through a `Session<spark_hal::Native>` over a `static` arena sized
//! at build time, then tokens are sampled with `spark_core::sampler` (greedy, or
//! temperature / top-p with the seed) until `SPARK_TOKENS`, the end-of-sequence token or the
//! end of the context; the logits of every step that is run go into the FNV-1a-64 digest.
//! It prints one JSON line
//! `{"prompt": ..., "seed": ..., "temperature": ..., "top_p": ..., "tokens": N, "token_ids": [...], "logits_digest": "..."}`
//! whose `token_ids` and `logits_digest` must equal spark-sim's, then the executed
//! instructions of every token step (SysTick under QEMU `-icount shift=0`) and the per-layer
//! active counts.
//!
//! With `compare-dense`, the dense twin replays the same token sequence and its
//! instructions per token are printed beside the Spark model's. With `expected-int8`, the
//! prompts of `models/expected_int8.json` run greedy and must reproduce the committed ids
//! and digests bit for bit, on the native and on the scalar backend.
//!
//! Exit status (semihosting): 0 on success; 1 on a typed error, a failed check, a panic or
//! a HardFault (never a hang).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ptr::addr_of_mut;

use spark_core::digest::Fnv1a64;
use spark_core::sampler::{Sampler, Sampling};
use spark_core::tokenizer::Tokenizer;
use spark_core::{LayerStats, Model, RunError, Session};
use spark_hal::{native_backend_name, Native};

#[cfg(not(feature = "probe"))]
#[macro_use]
#[path = "../../common/rt.rs"]
mod rt;
#[cfg(feature = "probe")]
#[macro_use]
#[path = "../../common/probe.rs"]
mod rt;
use rt::{fail, Clock, UNIT};

/// Program name in messages.
const PROG: &str = "spark-app";

/// Bytes aligned like the model file's tensors (64).
#[repr(C, align(64))]
pub struct Aligned<T: ?Sized>(pub T);

/// One prompt of `models/expected_int8.json`.
#[allow(dead_code)]
pub struct Expected {
    /// The prompt text.
    pub prompt: &'static str,
    /// Its ids (`<bos>` + BPE ids).
    pub prompt_ids: &'static [u32],
    /// The committed greedy continuation.
    pub generated: &'static [u32],
    /// FNV-1a-64 over every step's logits.
    pub digest: u64,
}

/// Written by build.rs: board, model bytes, sizes and run settings.
#[allow(dead_code)]
mod gen {
    #[allow(unused_imports)]
    use super::{Aligned, Expected};
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
use gen::*;

#[cfg(feature = "compare-dense")]
const ARENA_LEN: usize = if ARENA_BYTES > DENSE_ARENA_BYTES { ARENA_BYTES } else { DENSE_ARENA_BYTES };
#[cfg(not(feature = "compare-dense"))]
const ARENA_LEN: usize = ARENA_BYTES;

/// The session arena: exactly `Model::arena_bytes(SPARK_MAX_SEQ)` (the dense twin's, if
/// larger, with `compare-dense`).
static mut ARENA: Aligned<[u8; ARENA_LEN]> = Aligned([0; ARENA_LEN]);
/// The sampler's top-p scratch (one id per vocabulary entry).
static mut SCRATCH: [u32; VOCAB] = [0; VOCAB];

/// One run: generated ids, digest, per-step instruction counts, layer statistics.
struct Run {
    ids: [u32; TOKENS],
    n: usize,
    digest: u64,
    steps: usize,
    step_instr: [u64; MAX_STEPS],
    stats: [LayerStats; N_LAYERS],
    stop: &'static str,
}

impl Run {
    fn mean(&self) -> u64 {
        self.step_instr[..self.steps].iter().sum::<u64>() / self.steps.max(1) as u64
    }
}

/// Why a run failed.
enum Error {
    Run(RunError),
    Sample(spark_core::sampler::SampleError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Run(e) => write!(f, "{e}"),
            Error::Sample(e) => write!(f, "sampling failed: {e}"),
        }
    }
}

/// `spark-sim generate`'s loop: prefill, then sample / feed until `tokens`, EOS or the
/// end of the context. With `forced`, the tokens after the prompt are `forced` (the dense
/// twin replays the Spark model's sequence) and no EOS stop applies.
#[allow(clippy::too_many_arguments)]
fn generate(
    model: &Model<'_>,
    arena: &mut [u8],
    clock: &Clock,
    prompt: &[u32],
    sampling: Sampling,
    eos: Option<u32>,
    forced: Option<&[u32]>,
    scratch: &mut [u32],
) -> Result<Run, Error> {
    let session_len = (prompt.len() + TOKENS - 1).min(MAX_SEQ);
    let mut s = Session::<Native>::with_max_seq(model, arena, session_len).map_err(Error::Run)?;
    let mut sampler = Sampler::new(sampling, SEED).map_err(Error::Sample)?;
    let mut run = Run {
        ids: [0; TOKENS],
        n: 0,
        digest: 0,
        steps: 0,
        step_instr: [0; MAX_STEPS],
        stats: [LayerStats::EMPTY; N_LAYERS],
        stop: "tokens",
    };
    let mut digest = Fnv1a64::new();
    let mut step = |s: &mut Session<'_, '_, Native>, t: u32, run: &mut Run| -> Result<(), Error> {
        let t0 = clock.now();
        let logits = s.step(t).map_err(Error::Run)?;
        let t1 = clock.now();
        if run.steps < MAX_STEPS {
            run.step_instr[run.steps] = clock.count(t0, t1);
        }
        run.steps += 1;
        digest.update_f32(logits);
        Ok(())
    };
    for &t in prompt {
        step(&mut s, t, &mut run)?;
    }
    loop {
        let next = match forced {
            Some(f) => f[run.n],
            None => sampler.sample(s.logits(), scratch).map_err(Error::Sample)?,
        };
        run.ids[run.n] = next;
        run.n += 1;
        if forced.is_none() && Some(next) == eos {
            run.stop = "eos";
            break;
        }
        if run.n >= TOKENS || forced.is_some_and(|f| run.n >= f.len()) {
            break;
        }
        if s.pos() >= s.max_seq() {
            run.stop = "context_full";
            break;
        }
        step(&mut s, next, &mut run)?;
    }
    run.digest = digest.value();
    let st = s.stats();
    run.stats[..st.len()].copy_from_slice(st);
    Ok(run)
}

/// A JSON string (quotes, backslashes and control characters escaped).
fn print_json_str(s: &str) {
    out!("\"");
    for c in s.chars() {
        match c {
            '"' => out!("\\\""),
            '\\' => out!("\\\\"),
            '\n' => out!("\\n"),
            '\r' => out!("\\r"),
            '\t' => out!("\\t"),
            c if (c as u32) < 0x20 => out!("\\u{:04x}", c as u32),
            c => out!("{}", c),
        }
    }
    out!("\"");
}

fn print_list(xs: &[impl core::fmt::Display]) {
    out!("[");
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            out!(", ");
        }
        out!("{}", x);
    }
    out!("]");
}

/// The JSON line of a run (one line: the fields `spark-sim generate --json` defines, plus
/// the run's settings).
fn print_json(run: &Run) {
    out!("{}", "{\"prompt\": ");
    print_json_str(PROMPT);
    out!(", \"seed\": {}, \"temperature\": {:?}, \"top_p\": ", SEED, TEMPERATURE);
    match TOP_P {
        Some(p) => out!("{:?}", p),
        None => out!("null"),
    }
    out!(", \"tokens\": {}, \"token_ids\": ", run.n);
    print_list(&run.ids[..run.n]);
    outln!(
        ", \"logits_digest\": \"{:016x}\", \"stop\": \"{}\", \"board\": \"{}\", \"backend\": \"{}\"{}",
        run.digest,
        run.stop,
        BOARD,
        native_backend_name(),
        "}"
    );
}

fn print_layers(model: &Model<'_>, stats: &[LayerStats]) {
    let c = model.config();
    for (l, s) in stats[..c.n_layers as usize].iter().enumerate() {
        outln!(
            "layer {}: FFN active {}..{} (mean {}) of {}; keys per head {}..{} (mean {}); overflows {}/{}",
            l,
            s.ffn_active_min,
            s.ffn_active_max,
            s.ffn_active_sum / s.tokens.max(1) as u64,
            c.d_ff,
            s.attn_keys_min,
            s.attn_keys_max,
            s.attn_keys_sum / s.attn_queries.max(1) as u64,
            s.ffn_overflows,
            s.attn_overflows
        );
    }
}

#[cfg_attr(not(feature = "pico2"), cortex_m_rt::entry)]
#[cfg_attr(feature = "pico2", rp235x_hal::entry)]
fn main() -> ! {
    rt::paint_stack();
    let Some(mut p) = cortex_m::Peripherals::take() else { fail("peripherals", &"already taken") };
    // SAFETY: `main` runs once and these are the only references ever made to ARENA and
    // SCRATCH (no interrupt handler touches them).
    let (arena, scratch): (&'static mut [u8], &'static mut [u32]) =
        unsafe { (&mut (*addr_of_mut!(ARENA)).0, &mut *addr_of_mut!(SCRATCH)) };

    let clock = rt::start(&mut p);
    outln!("{}: board {} ({}), kernels {} (Native)", PROG, BOARD, CORE, native_backend_name());
    if !CHIP.is_empty() {
        outln!("probe-rs chip {}", CHIP);
    }
    clock.report(IPT_MILLI);
    let t0 = clock.now();
    let model = Model::load(&MODEL.0).unwrap_or_else(|e| fail(MODEL_NAME, &e));
    let t1 = clock.now();
    let c = *model.config();
    outln!(
        "model {}: {} bytes, {:?} FFN (d {}, f {}, k {}), {:?} attention, {} layers; loaded and validated in {} {}",
        MODEL_NAME,
        MODEL_BYTES,
        c.ffn_kind,
        c.d_model,
        c.d_ff,
        c.ffn_k,
        c.attn_kind,
        c.n_layers,
        clock.count(t0, t1),
        UNIT
    );
    outln!("arena: static {} bytes = Model::arena_bytes({})", ARENA_BYTES, MAX_SEQ);

    // The prompt: tokenized here, as spark-sim does (BOS when the tokenizer has one).
    let tok = Tokenizer::new(&model).ok();
    let mut prompt_buf = [0u32; PROMPT_TEXT_BYTES + 1];
    let prompt: &[u32] = match (PROMPT_IDS, &tok) {
        (Some(ids), _) => ids,
        (None, Some(t)) => {
            let r = if t.bos_id().is_some() {
                t.encode_with_bos(PROMPT.as_bytes(), &mut prompt_buf)
            } else {
                t.encode(PROMPT.as_bytes(), &mut prompt_buf)
            };
            let n = r.unwrap_or_else(|e| fail("tokenizer", &e));
            &prompt_buf[..n]
        }
        (None, None) => fail("prompt", &"the model has no tokenizer: build with SPARK_PROMPT_IDS"),
    };
    if prompt.is_empty() || prompt.len() > MAX_SEQ {
        fail("prompt", &"empty, or longer than the context");
    }
    let sampling = match (TEMPERATURE, TOP_P) {
        (0.0, _) => Sampling::Greedy,
        (t, Some(p)) => Sampling::TopP { t, p },
        (t, None) => Sampling::Temperature { t },
    };
    let eos = tok.as_ref().and_then(|t| t.eos_id()).or(model.tokenizer_meta().eos_id);

    let run = generate(&model, arena, &clock, prompt, sampling, eos, None, scratch).unwrap_or_else(|e| fail("run", &e));
    print_json(&run);
    out!(
        "{} per token step ({} steps: {} prompt, {} generated fed back): ",
        UNIT,
        run.steps,
        prompt.len(),
        run.steps - prompt.len()
    );
    print_list(&run.step_instr[..run.steps.min(MAX_STEPS)]);
    outln!("");
    outln!(
        "{} per token: mean {} over {} steps ({})",
        UNIT,
        run.mean(),
        run.steps,
        if UNIT == "cycles" { "DWT core cycles" } else { "executed instructions, not cycles" }
    );
    print_layers(&model, &run.stats);

    #[allow(unused_mut)]
    let mut ok = true;
    #[cfg(feature = "compare-dense")]
    {
        let dense = Model::load(&DENSE.0).unwrap_or_else(|e| fail("dense twin", &e));
        let d = generate(&dense, arena, &clock, prompt, Sampling::Greedy, None, Some(&run.ids[..run.n]), scratch)
            .unwrap_or_else(|e| fail("dense run", &e));
        outln!(
            "compare-dense on {}: same {} token steps; Spark {} {u}/token, dense twin {} {u}/token; dense / Spark = {}",
            BOARD,
            d.steps,
            run.mean(),
            d.mean(),
            rt::Ratio(d.mean(), run.mean()),
            u = UNIT
        );
    }
    #[cfg(feature = "expected-int8")]
    {
        ok &= expected::check(&model, arena, &clock, tok.as_ref());
    }
    outln!("stack high-water: {} bytes (measured by stack painting)", rt::stack_high_water());
    outln!("{}: {}", PROG, if ok { "done" } else { "FAIL" });
    rt::exit(ok)
}

/// The committed int8 continuations of `models/expected_int8.json`, bit for bit.
#[cfg(feature = "expected-int8")]
mod expected {
    use super::*;
    use spark_core::sampler::argmax;
    use spark_hal::{Kernels, Scalar};

    /// Greedy ids and digest of one prompt on backend `K` (`tests/demo_model.rs::run_int8`:
    /// the last generated token is not run).
    fn run<K: Kernels>(model: &Model<'_>, arena: &mut [u8], p: &[u32], ids: &mut [u32]) -> Result<u64, RunError> {
        let mut s = Session::<K>::with_max_seq(model, arena, p.len() + X_NEW_TOKENS - 1)?;
        let mut d = Fnv1a64::new();
        let mut next = 0;
        for &t in p {
            let l = s.step(t)?;
            d.update_f32(l);
            next = argmax(l).unwrap_or(0);
        }
        for i in 0..ids.len() {
            ids[i] = next;
            if i + 1 < ids.len() {
                let l = s.step(next)?;
                d.update_f32(l);
                next = argmax(l).unwrap_or(0);
            }
        }
        Ok(d.value())
    }

    pub fn check(model: &Model<'_>, arena: &mut [u8], clock: &Clock, tok: Option<&Tokenizer<'_>>) -> bool {
        let mut ok = true;
        let mut matched = 0;
        let t0 = clock.now();
        for (i, e) in X_PROMPTS.iter().enumerate() {
            if let Some(t) = tok {
                let mut ids = [0u32; 256];
                let n = t.encode_with_bos(e.prompt.as_bytes(), &mut ids).unwrap_or(0);
                if ids[..n] != *e.prompt_ids {
                    outln!("expected_int8 prompt {}: the tokenizer gives other ids", i + 1);
                    ok = false;
                }
            }
            let mut ids = [0u32; X_NEW_TOKENS];
            let d = run::<Native>(model, arena, e.prompt_ids, &mut ids).unwrap_or_else(|e| fail("run", &e));
            let good = ids[..] == *e.generated && d == e.digest;
            outln!(
                "expected_int8 prompt {} {:?}: digest {:016x} (expected {:016x}) {}",
                i + 1,
                e.prompt,
                d,
                e.digest,
                if good { "MATCH" } else { "MISMATCH" }
            );
            if good {
                matched += 1;
            }
            ok &= good;
            if i == 0 {
                let mut sids = [0u32; X_NEW_TOKENS];
                let sd = run::<Scalar>(model, arena, e.prompt_ids, &mut sids).unwrap_or_else(|e| fail("run", &e));
                let same = sids == ids && sd == d;
                outln!(
                    "expected_int8 prompt 1 on the scalar backend: {}",
                    if same { "equal to the native run" } else { "DIFFERENT" }
                );
                ok &= same;
            }
        }
        outln!(
            "expected_int8.json: {}/{} prompts match bit for bit ({} {} in all)",
            matched,
            X_PROMPTS.len(),
            clock.count(t0, clock.now()),
            UNIT
        );
        ok
    }
}
