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
//! instructions per token are printed beside the Spark model's; then one FFN layer is
//! timed: `spark_ffn` on layer 0 of the Spark model against `geglu_ffn` on layer 0 of the
//! twin, on the same inputs (the prompt tokens' embeddings, rmsnorm'd with layer 0's
//! pre-FFN norm). With `expected-int8`, the
//! prompts of `models/expected_int8.json` run greedy and must reproduce the committed ids
//! and digests bit for bit, on the native and on the scalar backend.
//!
//! Exit status (semihosting): 0 on success; 1 on a typed error, a failed check, a panic or
//! a HardFault (never a hang). The test-only feature `force-panic` panics right after start
//! to check that.
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

#[cfg(feature = "runtime-model")]
extern crate alloc;

#[cfg(feature = "compare-dense")]
const ARENA_LEN: usize = if ARENA_BYTES > DENSE_ARENA_BYTES { ARENA_BYTES } else { DENSE_ARENA_BYTES };
#[cfg(not(any(feature = "compare-dense", feature = "runtime-model")))]
const ARENA_LEN: usize = ARENA_BYTES;
/// With `runtime-model` the arena comes from the heap.
#[cfg(feature = "runtime-model")]
const ARENA_LEN: usize = 0;

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

/// With the test-only feature `force-panic`: panics (the panic handler must exit with
/// status 1, not hang). Without it: nothing.
#[inline(never)]
fn force_panic() {
    #[cfg(feature = "force-panic")]
    panic!("forced by the force-panic feature (test of the panic exit)");
}

#[cfg_attr(not(feature = "pico2"), cortex_m_rt::entry)]
#[cfg_attr(feature = "pico2", rp235x_hal::entry)]
fn main() -> ! {
    rt::paint_stack();
    let Some(mut p) = cortex_m::Peripherals::take() else { fail("peripherals", &"already taken") };
    // SAFETY: `main` runs once and these are the only references ever made to ARENA and
    // SCRATCH (no interrupt handler touches them).
    let (arena_static, scratch): (&'static mut [u8], &'static mut [u32]) =
        unsafe { (&mut (*addr_of_mut!(ARENA)).0, &mut *addr_of_mut!(SCRATCH)) };
    #[cfg(not(feature = "runtime-model"))]
    let arena = arena_static;

    let clock = rt::start(&mut p);
    outln!("{}: board {} ({}), kernels {} (Native)", PROG, BOARD, CORE, native_backend_name());
    if !CHIP.is_empty() {
        outln!("probe-rs chip {}", CHIP);
    }
    clock.report(IPT_MILLI);
    force_panic();
    let t0 = clock.now();
    #[cfg(not(feature = "runtime-model"))]
    let (model, model_name, model_bytes) =
        (Model::load(&MODEL.0).unwrap_or_else(|e| fail(MODEL_NAME, &e)), MODEL_NAME, MODEL_BYTES);
    #[cfg(feature = "runtime-model")]
    let mut path_buf = [0u8; 256];
    #[cfg(feature = "runtime-model")]
    let (model, model_name, model_bytes, arena) = {
        let path = runtime::model_path(&mut path_buf);
        let (model, bytes, arena) = runtime::load(path).unwrap_or_else(|e| fail(path, &e));
        let _ = arena_static;
        (model, path, bytes, arena)
    };
    let t1 = clock.now();
    let c = *model.config();
    outln!(
        "model {}: {} bytes, {:?} FFN (d {}, f {}, k {}), {:?} attention, {} layers; loaded and validated in {} {}",
        model_name,
        model_bytes,
        c.ffn_kind,
        c.d_model,
        c.d_ff,
        c.ffn_k,
        c.attn_kind,
        c.n_layers,
        clock.count(t0, t1),
        UNIT
    );
    #[cfg(not(feature = "runtime-model"))]
    outln!("arena: static {} bytes = Model::arena_bytes({})", ARENA_BYTES, MAX_SEQ);
    #[cfg(feature = "runtime-model")]
    outln!(
        "arena: {} bytes from the heap = Model::arena_bytes({}); heap {} bytes, {} used",
        arena.len(),
        runtime::max_seq(&model),
        HEAP_BYTES,
        runtime::heap_used()
    );

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
        ffn_layer::measure(&model, &dense, &clock, prompt);
    }
    #[cfg(feature = "expected-int8")]
    {
        ok &= expected::check(&model, arena, &clock, tok.as_ref());
    }
    outln!("stack high-water: {} bytes (measured by stack painting)", rt::stack_high_water());
    outln!("{}: {}", PROG, if ok { "done" } else { "FAIL" });
    rt::exit(ok)
}

/// One FFN layer, Spark vs the dense twin (`compare-dense`).
#[cfg(feature = "compare-dense")]
mod ffn_layer {
    use super::*;
    use spark_core::ffn::{geglu_ffn, spark_ffn, FfnPlan, FfnScratch, GegluFfn, SparkFfn};
    use spark_core::ops::rmsnorm;
    use spark_core::TensorKind;

    /// `h = rmsnorm(E[token] * embed_scale, pre-FFN norm of layer 0)` of the Spark model (as
    /// `Session` embeds a token): the same `h` feeds both FFNs.
    fn input(model: &Model<'_>, token: u32, h: &mut [f32; D_MODEL]) {
        let c = model.config();
        let e = model.global_matrix(TensorKind::Embed);
        let (row, s) = (e.row(token as usize), e.scales.get(token as usize));
        let mut x = [0f32; D_MODEL];
        for (xi, &q) in x.iter_mut().zip(row) {
            *xi = q as f32 * s * c.embed_scale;
        }
        rmsnorm(h, &x, model.layer_f32(0, TensorKind::FfnNorm), c.norm_eps);
    }

    /// Tenths as a decimal.
    struct Tenths(u64);

    impl core::fmt::Display for Tenths {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}.{}", self.0 / 10, self.0 % 10)
        }
    }

    /// Prints the mean count of `spark_ffn` (layer 0 of `spark`) and `geglu_ffn` (layer 0 of
    /// `dense`) over the same inputs, one per prompt token.
    pub fn measure(spark: &Model<'_>, dense: &Model<'_>, clock: &Clock, prompt: &[u32]) {
        const XQ: usize = if D_MODEL > MAX_D_FF { D_MODEL } else { MAX_D_FF };
        let mut scores = [0f32; MAX_D_FF];
        let mut idx = [0u32; MAX_D_FF];
        let mut t = [0f32; MAX_D_FF];
        let mut kept = [0u32; MAX_D_FF];
        let mut xq = [0i8; XQ];
        let mut acc = [0i32; XQ];
        let mut y = [0f32; D_MODEL];
        let mut h = [0f32; D_MODEL];

        let (sc, dc) = (spark.config(), dense.config());
        let ws = SparkFfn::for_layer(spark, 0, FfnPlan::for_model(sc));
        let wd = GegluFfn::for_layer(dense, 0, FfnPlan::for_model(dc));
        let (cap_s, cap_d) = (ws.plan.cap, wd.plan.cap);
        let (mut is, mut id, mut active_s, mut active_d, mut rows_s, mut rows_d) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        for &tok in prompt {
            input(spark, tok, &mut h);
            let mut s = FfnScratch {
                scores: &mut scores[..sc.d_ff as usize],
                idx: &mut idx[..cap_s],
                t: &mut t[..cap_s],
                xq: &mut xq,
                kept: &mut kept[..cap_s],
                acc: &mut acc,
            };
            let t0 = clock.now();
            let r = spark_ffn::<Native>(&ws, &h, &mut s, &mut y);
            is += clock.count(t0, clock.now());
            active_s += r.sel.len as u64;
            rows_s += r.out_rows as u64;
            let mut s = FfnScratch {
                scores: &mut scores[..dc.d_ff as usize],
                idx: &mut idx[..cap_d],
                t: &mut t[..cap_d],
                xq: &mut xq,
                kept: &mut kept[..cap_d],
                acc: &mut acc,
            };
            let t0 = clock.now();
            let r = geglu_ffn::<Native>(&wd, &h, &mut s, &mut y);
            id += clock.count(t0, clock.now());
            active_d += r.sel.len as u64;
            rows_d += r.out_rows as u64;
        }
        let n = prompt.len().max(1) as u64;
        let (is, id) = (is / n, id / n);
        outln!(
            "compare-dense FFN layer 0 on {}, d {}, {} inputs (the prompt tokens' embeddings, rmsnorm'd): \
             spark_ffn (f {}, r {}, k {}) {} {u}/call, {} neurons active, {} V rows read; \
             geglu_ffn (dense twin, f {}) {} {u}/call, {} active, {} Wd rows read; FFN layer dense / Spark = {}",
            BOARD,
            D_MODEL,
            n,
            sc.d_ff,
            sc.ffn_r,
            sc.ffn_k,
            is,
            Tenths(active_s * 10 / n),
            Tenths(rows_s * 10 / n),
            dc.d_ff,
            id,
            Tenths(active_d * 10 / n),
            Tenths(rows_d * 10 / n),
            rt::Ratio(id, is),
            u = UNIT
        );
    }
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

/// `runtime-model`: the model file read at run time into an `embedded-alloc` heap.
#[cfg(feature = "runtime-model")]
mod runtime {
    use super::*;
    use core::alloc::Layout;
    use core::mem::MaybeUninit;
    use embedded_alloc::LlffHeap;
    use spark_core::ModelError;

    #[global_allocator]
    static HEAP: LlffHeap = LlffHeap::empty();

    /// The heap's memory (not zeroed at start: `.uninit`).
    #[link_section = ".uninit.spark_heap"]
    static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];

    /// Why the model could not be obtained.
    pub enum LoadError {
        /// The host could not open the file.
        Open,
        /// The host could not tell its length.
        Length,
        /// The host returned fewer bytes than the file's length.
        Read { got: usize, want: usize },
        /// The heap cannot hold what is asked.
        Heap { what: &'static str, needed: usize, free: usize },
        /// The bytes are not a valid model.
        Model(ModelError),
        /// The model is larger than this firmware's build-time tables (sized from SPARK_MODEL).
        Capacity { what: &'static str, model: u32, firmware: usize },
    }

    impl core::fmt::Display for LoadError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                LoadError::Open => f.write_str("the host cannot open the file (semihosting SYS_OPEN)"),
                LoadError::Length => f.write_str("the host cannot tell the file's length (semihosting SYS_FLEN)"),
                LoadError::Read { got, want } => write!(f, "read {got} of {want} bytes"),
                LoadError::Heap { what, needed, free } => {
                    write!(f, "the heap cannot hold the {what}: {needed} bytes needed, {free} free (raise SPARK_HEAP_BYTES)")
                }
                LoadError::Model(e) => write!(f, "invalid model: {e}"),
                LoadError::Capacity { what, model, firmware } => write!(
                    f,
                    "the model's {what} is {model}, this firmware's tables hold {firmware} (rebuild with SPARK_MODEL set to this model)"
                ),
            }
        }
    }

    /// The file to read: the last word of the semihosting command line (QEMU
    /// `-semihosting-config ...,arg=spark-app,arg=<path>`), else SPARK_MODEL's path.
    pub fn model_path(buf: &mut [u8; 256]) -> &str {
        let mut block = [buf.as_mut_ptr() as usize, buf.len() - 1];
        // SAFETY: SYS_GET_CMDLINE takes the address of `block` (buffer, size), writes at
        // most block[1] bytes (plus a NUL, within the buffer: its length minus one is
        // passed) into `buf` and the length into block[1].
        let r = unsafe {
            cortex_m_semihosting::syscall1(cortex_m_semihosting::nr::GET_CMDLINE, block.as_mut_ptr() as usize)
        } as isize;
        // SAFETY: the host wrote block[1] behind the compiler's back: read it volatile.
        let n = unsafe { core::ptr::read_volatile(&block[1]) }.min(buf.len() - 1);
        if r != 0 || n == 0 {
            return MODEL_NAME;
        }
        let line = core::str::from_utf8(&buf[..n]).unwrap_or("");
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        match (words.next(), words.next_back()) {
            (Some(_), Some(path)) => path,
            _ => MODEL_NAME,
        }
    }

    /// 64-byte aligned, uninitialised-then-zeroed bytes from the heap, for `'static`.
    // The returned block is fresh from the heap, not borrowed from `what`.
    #[allow(clippy::mut_from_ref)]
    fn alloc(what: &'static str, len: usize) -> Result<&'static mut [u8], LoadError> {
        let err = LoadError::Heap { what, needed: len, free: HEAP.free() };
        let layout = Layout::from_size_align(len.max(1), 64).map_err(|_| err)?;
        // SAFETY: a non-zero-sized layout; the global allocator returns null or a block
        // of `layout.size()` bytes that nothing else uses and that is never freed.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if p.is_null() {
            return Err(LoadError::Heap { what, needed: len, free: HEAP.free() });
        }
        // SAFETY: `p` points to `len` zeroed bytes owned by this slice for ever.
        Ok(unsafe { core::slice::from_raw_parts_mut(p, len) })
    }

    /// The session context: SPARK_MAX_SEQ, at most the model's.
    pub fn max_seq(model: &Model<'_>) -> usize {
        MAX_SEQ.min(model.config().max_seq_len as usize)
    }

    /// Bytes of the heap in use.
    pub fn heap_used() -> usize {
        HEAP.used()
    }

    /// Reads `path` into the heap, validates it, allocates the arena.
    pub fn load(path: &str) -> Result<(Model<'static>, usize, &'static mut [u8]), LoadError> {
        // SAFETY: called once, before any allocation; HEAP_MEM is used by nothing else.
        unsafe { HEAP.init(addr_of_mut!(HEAP_MEM) as usize, HEAP_BYTES) };
        let mut name = [0u8; 257];
        if path.len() >= name.len() {
            return Err(LoadError::Open);
        }
        name[..path.len()].copy_from_slice(path.as_bytes());
        // SAFETY: SYS_OPEN reads the NUL-terminated name (length without the NUL).
        let fd = unsafe { cortex_m_semihosting::syscall!(OPEN, name.as_ptr(), 1usize, path.len()) } as isize;
        if fd < 0 {
            return Err(LoadError::Open);
        }
        // SAFETY: SYS_FLEN on the handle just opened.
        let len = unsafe { cortex_m_semihosting::syscall!(FLEN, fd as usize) } as isize;
        if len < 0 {
            return Err(LoadError::Length);
        }
        let len = len as usize;
        let blob = alloc("model file", len)?;
        let mut got = 0;
        while got < len {
            let want = len - got;
            // SAFETY: SYS_READ writes at most `want` bytes at `blob[got..]`, inside the
            // block; it returns the number of bytes not read.
            let left = unsafe { cortex_m_semihosting::syscall!(READ, fd as usize, blob.as_mut_ptr().add(got), want) };
            if left >= want {
                break;
            }
            got += want - left;
        }
        // SAFETY: SYS_CLOSE on the handle opened above.
        unsafe { cortex_m_semihosting::syscall!(CLOSE, fd as usize) };
        if got != len {
            return Err(LoadError::Read { got, want: len });
        }
        let blob: &'static [u8] = blob;
        let model = Model::load(blob).map_err(LoadError::Model)?;
        let c = model.config();
        if c.vocab_size as usize > VOCAB {
            return Err(LoadError::Capacity { what: "vocabulary", model: c.vocab_size, firmware: VOCAB });
        }
        if c.n_layers as usize > N_LAYERS {
            return Err(LoadError::Capacity { what: "layer count", model: c.n_layers, firmware: N_LAYERS });
        }
        let arena = alloc("arena", model.arena_bytes(max_seq(&model)))?;
        Ok((model, len, arena))
    }
}
