//! Cortex-M firmware: the bundled demo model on the DSP kernels, under QEMU or on a board.
//!
//! 1. **Cross-target determinism.** Loads `models/demo.spark` (bundled with
//!    `include_bytes!`, read in place from flash) and runs the prompts of
//!    `models/expected_int8.json` on `Session<spark_hal::Native>` (the `Dsp` backend on
//!    thumbv7em / thumbv8m.main) over a `static` arena sized at build time, greedy for the
//!    same number of tokens, hashing every step's logits with FNV-1a-64 exactly as
//!    `tests/demo_model.rs::run_int8` does. The generated ids and the digest of
//!    each prompt must equal the committed ones (written on x86 by the scalar oracle); the
//!    first prompt also runs on `Session<spark_hal::Scalar>` and must equal the DSP run.
//!    The firmware's tokenizer must reproduce the committed prompt ids.
//! 2. **Executed-instruction counts** (SPEC section 10): under `-icount shift=0` SysTick on
//!    the processor clock counts instructions (once per 40 on the mps2 boards); the ratio is
//!    calibrated with a loop of known length and the 24-bit counter is extended to 64 bits
//!    by its wrap interrupt. Reported per token for the Spark model and for its dense twin
//!    (same token sequences, same positions), and per FFN layer: `spark_ffn` on layer 0 of
//!    `demo.spark` against `geglu_ffn` on layer 0 of the dense twin, on the same inputs.
//!    These are instruction counts, not cycles or time.
//!
//! Exit status (semihosting): 0 iff every prompt matches and the scalar run equals the DSP
//! run; 1 on any mismatch, error, panic or HardFault (never a hang).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprint, hprintln};
use spark_core::digest::Fnv1a64;
use spark_core::ffn::{geglu_ffn, spark_ffn, FfnPlan, FfnScratch, GegluFfn, SparkFfn};
use spark_core::ops::rmsnorm;
use spark_core::sampler::argmax;
use spark_core::tokenizer::Tokenizer;
use spark_core::{Config, LayerStats, Model, RunError, Session, TensorKind};
use spark_hal::{native_backend_name, Kernels, Native, Scalar};

/// One prompt of `models/expected_int8.json`.
pub struct Expected {
    /// The prompt text.
    pub prompt: &'static str,
    /// Its ids (`<bos>` + BPE ids).
    pub prompt_ids: &'static [u32],
    /// The committed greedy continuation.
    pub generated: &'static [u32],
    /// FNV-1a-64 over the little-endian bytes of every step's f32 logits.
    pub digest: u64,
}

/// Written by build.rs: arena sizes, model dimensions and the expected continuations.
mod gen {
    use super::Expected;
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
use gen::{DENSE_ARENA_BYTES, D_MODEL, MAX_D_FF, MAX_PROMPT, NEW_TOKENS, N_LAYERS, PROMPTS, SPARK_ARENA_BYTES};

/// Bytes aligned like the model file's tensors (64); `Model::load` itself needs none.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The bundled Spark model (read in place from flash).
static SPARK_MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../../../models/demo.spark"));
/// Its dense twin (GeGLU FFN, dense attention), converted by test.sh; path from build.rs.
static DENSE_MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("SPARK_DENSE_MODEL")));

/// One arena serves every session in turn: the larger of the two models' needs.
const ARENA_BYTES: usize = if SPARK_ARENA_BYTES > DENSE_ARENA_BYTES { SPARK_ARENA_BYTES } else { DENSE_ARENA_BYTES };
static mut ARENA: Aligned<[u8; ARENA_BYTES]> = Aligned([0; ARENA_BYTES]);
const _: () = assert!(ARENA_BYTES >= SPARK_ARENA_BYTES && ARENA_BYTES >= DENSE_ARENA_BYTES);

/// Token steps of one prompt: the prompt, then every generated token but the last.
const MAX_STEPS: usize = MAX_PROMPT + NEW_TOKENS - 1;

// ---------------------------------------------------------------------------------------
// Instruction counter: SysTick on the processor clock, extended to 64 bits by its wrap
// interrupt.
// ---------------------------------------------------------------------------------------

/// SysTick reload: the full 24-bit range, one wrap per 2^24 ticks.
const RELOAD: u32 = 0x00FF_FFFF;
/// SysTick wraps since [`Clock::start`].
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Executed-instruction clock (valid under QEMU `-icount shift=0` only).
struct Clock {
    /// Instructions per SysTick tick, in thousandths (calibrated).
    ipt_milli: u64,
}

impl Clock {
    fn start(syst: &mut SYST) -> Clock {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // The cleared counter reads 0 until its first tick loads RELOAD (that load is no
        // wrap and raises no interrupt): start counting from there.
        while SYST::get_current() == 0 {}
        // A loop of exactly 2 * N instructions (`subs` + `bne`).
        const N: u32 = 2_000_000;
        let t0 = Self::ticks();
        spin(N);
        let t = Self::ticks() - t0;
        Clock { ipt_milli: 2 * N as u64 * 1000 / t }
    }

    /// Ticks since start. The wrap count and the counter are read with interrupts off; a
    /// wrap whose interrupt is still pending is counted when the counter already restarted
    /// (it reads in the upper half then, since only a few instructions separate the reads).
    fn ticks() -> u64 {
        cortex_m::interrupt::free(|_| {
            let mut w = WRAPS.load(Ordering::Relaxed) as u64;
            let cur = SYST::get_current();
            if SCB::is_pendst_pending() && cur > RELOAD / 2 {
                w += 1;
            }
            w * (RELOAD as u64 + 1) + (RELOAD - cur) as u64
        })
    }

    /// A timestamp in ticks.
    fn now(&self) -> u64 {
        Self::ticks()
    }

    /// Executed instructions between two timestamps.
    fn instructions(&self, t0: u64, t1: u64) -> u64 {
        let dt = t1.checked_sub(t0).expect("the SysTick clock went backwards");
        dt * self.ipt_milli / 1000
    }
}

/// Counts `n` down to zero: `subs` + `bne` per iteration, `2 * n` instructions.
fn spin(n: u32) {
    // SAFETY: a register-only countdown loop; touches no memory, only the flags.
    unsafe {
        core::arch::asm!("2:", "subs {n}, {n}, #1", "bne 2b", n = inout(reg) n => _, options(nomem, nostack));
    }
}

/// `a / b` printed with three decimals.
struct Ratio(u64, u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = (self.0 * 1000).checked_div(self.1).unwrap_or(0);
        write!(f, "{}.{:03}", m / 1000, m % 1000)
    }
}

// ---------------------------------------------------------------------------------------
// Greedy runs
// ---------------------------------------------------------------------------------------

/// One greedy run and its instruction counts.
struct Run {
    ids: [u32; NEW_TOKENS],
    digest: u64,
    steps: usize,
    /// Instructions of each `Session::step`.
    step_instr: [u64; MAX_STEPS],
    stats: [LayerStats; N_LAYERS],
}

impl Run {
    fn total(&self) -> u64 {
        self.step_instr[..self.steps].iter().sum()
    }
    fn mean(&self) -> u64 {
        self.total() / self.steps as u64
    }
}

/// `tests/demo_model.rs::run_int8` on backend `K`: step through the prompt, then
/// greedy for `NEW_TOKENS`, hashing the logits of every step (the last generated token is
/// not run). With `forced`, the tokens after the prompt are `forced` instead of the argmax
/// (the dense twin replays the Spark model's sequences).
fn run_prompt<K: Kernels>(
    model: &Model<'_>,
    arena: &mut [u8],
    clock: &Clock,
    prompt: &[u32],
    forced: Option<&[u32]>,
) -> Result<Run, RunError> {
    let mut s = Session::<K>::new(model, arena)?;
    let mut run = Run {
        ids: [0; NEW_TOKENS],
        digest: 0,
        steps: 0,
        step_instr: [0; MAX_STEPS],
        stats: [LayerStats::EMPTY; N_LAYERS],
    };
    let mut digest = Fnv1a64::new();
    let mut next = 0;
    let mut step = |s: &mut Session<'_, '_, K>, t: u32, run: &mut Run| -> Result<u32, RunError> {
        let t0 = clock.now();
        let logits = s.step(t)?;
        let t1 = clock.now();
        run.step_instr[run.steps] = clock.instructions(t0, t1);
        run.steps += 1;
        digest.update_f32(logits);
        // Finite logits always have an argmax; token 0 stands in for the impossible case.
        Ok(argmax(logits).unwrap_or(0))
    };
    for &t in prompt {
        next = step(&mut s, t, &mut run)?;
    }
    for i in 0..NEW_TOKENS {
        let t = forced.map_or(next, |f| f[i]);
        run.ids[i] = t;
        if i + 1 < NEW_TOKENS {
            next = step(&mut s, t, &mut run)?;
        }
    }
    run.digest = digest.value();
    let st = s.stats();
    run.stats[..st.len()].copy_from_slice(st);
    Ok(run)
}

fn print_ids(ids: &[u32]) {
    hprint!("  ids [");
    for (i, t) in ids.iter().enumerate() {
        if i > 0 {
            hprint!(", ");
        }
        hprint!("{}", t);
    }
    hprintln!("]");
}

fn print_text(tok: Option<&Tokenizer<'_>>, ids: &[u32]) {
    let Some(tok) = tok else { return };
    let mut buf = [0u8; 1024];
    if let Ok(n) = tok.decode(ids, &mut buf) {
        let text = match core::str::from_utf8(&buf[..n]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or(""),
        };
        hprintln!("  text {:?}", text);
    }
}

// ---------------------------------------------------------------------------------------
// One FFN layer: Spark vs the dense twin
// ---------------------------------------------------------------------------------------

/// `h = rmsnorm(E[token] * embed_scale, w_pre_ffn of layer 0)` of the Spark model: a
/// realistic layer-0 FFN input for each prompt token (the same `h` feeds both FFNs).
fn ffn_input(model: &Model<'_>, token: u32, h: &mut [f32; D_MODEL]) {
    let c = model.config();
    let e = model.global_matrix(TensorKind::Embed);
    let (row, s) = (e.row(token as usize), e.scales.get(token as usize));
    let mut x = [0f32; D_MODEL];
    for (xi, &q) in x.iter_mut().zip(row) {
        *xi = q as f32 * s * c.embed_scale;
    }
    rmsnorm(h, &x, model.layer_f32(0, TensorKind::FfnNorm), c.norm_eps);
}

/// Mean instructions of `spark_ffn` (layer 0 of `spark`) and `geglu_ffn` (layer 0 of
/// `dense`) over the same inputs, one per prompt token; returns (spark, dense).
fn ffn_layer(spark: &Model<'_>, dense: &Model<'_>, clock: &Clock) -> (u64, u64) {
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
    let (mut n, mut is, mut id, mut active_s, mut active_d) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut out_s, mut out_d) = (0u64, 0u64);
    for p in PROMPTS {
        for &tok in p.prompt_ids {
            ffn_input(spark, tok, &mut h);
            let mut s = FfnScratch {
                scores: &mut scores,
                idx: &mut idx[..cap_s],
                t: &mut t[..cap_s],
                xq: &mut xq,
                kept: &mut kept[..cap_s],
                acc: &mut acc,
            };
            let t0 = clock.now();
            let run = spark_ffn::<Native>(&ws, &h, &mut s, &mut y);
            let t1 = clock.now();
            is += clock.instructions(t0, t1);
            active_s += run.sel.len as u64;
            out_s += run.out_rows as u64;
            let mut s = FfnScratch {
                scores: &mut scores,
                idx: &mut idx[..cap_d],
                t: &mut t[..cap_d],
                xq: &mut xq,
                kept: &mut kept[..cap_d],
                acc: &mut acc,
            };
            let t0 = clock.now();
            let run = geglu_ffn::<Native>(&wd, &h, &mut s, &mut y);
            let t1 = clock.now();
            id += clock.instructions(t0, t1);
            active_d += run.sel.len as u64;
            out_d += run.out_rows as u64;
            n += 1;
        }
    }
    let (is, id) = (is / n, id / n);
    hprintln!(
        "FFN layer 0, d {}, {} inputs h (the prompt tokens' embeddings, rmsnorm'd):\n  \
         spark_ffn (f {}, r {}, k {}): {} instructions/call, {}.{} neurons active on average, {}.{} V rows read\n  \
         geglu_ffn (dense twin, f {}): {} instructions/call ({} active, {}.{} Wd rows read)\n  \
         dense / Spark = {} (issue target >= 2.5: {})",
        D_MODEL,
        n,
        sc.d_ff,
        sc.ffn_r,
        sc.ffn_k,
        is,
        active_s / n,
        active_s * 10 / n % 10,
        out_s / n,
        out_s * 10 / n % 10,
        dc.d_ff,
        id,
        active_d / n,
        out_d / n,
        out_d * 10 / n % 10,
        Ratio(id, is),
        if id * 10 >= is * 25 { "met" } else { "NOT met" }
    );
    (is, id)
}

// ---------------------------------------------------------------------------------------

fn fail(what: &str, e: &dyn core::fmt::Display) -> ! {
    hprintln!("spark-app: {}: {}", what, e);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

fn describe(name: &str, blob: &[u8], c: &Config) {
    hprintln!(
        "{}: {} bytes, {:?} FFN (d {}, f {}, k {}), {:?} attention, {} layers, max_seq_len {}",
        name,
        blob.len(),
        c.ffn_kind,
        c.d_model,
        c.d_ff,
        c.ffn_k,
        c.attn_kind,
        c.n_layers,
        c.max_seq_len
    );
}

#[entry]
fn main() -> ! {
    let mut p = cortex_m::Peripherals::take().unwrap();
    // SAFETY: `main` runs once and this is the only reference ever made to ARENA (no
    // interrupt handler touches it).
    let arena: &'static mut [u8] = unsafe { &mut (*addr_of_mut!(ARENA)).0 };

    hprintln!("spark-app: kernels {} (Native), Cortex-M under QEMU -icount shift=0", native_backend_name());
    let clock = Clock::start(&mut p.SYST);
    hprintln!("icount: {} instructions per SysTick tick (calibrated)", Ratio(clock.ipt_milli, 1000));

    let t0 = clock.now();
    let spark = Model::load(&SPARK_MODEL.0).unwrap_or_else(|e| fail("models/demo.spark", &e));
    let t1 = clock.now();
    let dense = Model::load(&DENSE_MODEL.0).unwrap_or_else(|e| fail("dense twin", &e));
    describe("demo.spark", &SPARK_MODEL.0, spark.config());
    describe("dense twin", &DENSE_MODEL.0, dense.config());
    hprintln!("Model::load(demo.spark), full validation with CRC32: {} instructions", clock.instructions(t0, t1));
    let max_seq = spark.config().max_seq_len as usize;
    hprintln!(
        "arena: static {} bytes; Model::arena_bytes({}) = {} (Spark), {} (dense twin)",
        arena.len(),
        max_seq,
        spark.arena_bytes(max_seq),
        dense.arena_bytes(dense.config().max_seq_len as usize)
    );
    let tok = Tokenizer::new(&spark).ok();
    if tok.is_none() {
        hprintln!("note: demo.spark has no tokenizer; prompt ids are not re-encoded, text not shown");
    }

    // 1. The committed continuations on the DSP backend.
    let mut ok = true;
    let mut matched = 0;
    let mut first: Option<Run> = None;
    let (mut spark_instr, mut spark_steps) = (0u64, 0usize);
    let mut stats = [LayerStats::EMPTY; N_LAYERS];
    for (i, e) in PROMPTS.iter().enumerate() {
        hprintln!("prompt {} {:?}: {} prompt ids", i + 1, e.prompt, e.prompt_ids.len());
        if let Some(tok) = &tok {
            let mut ids = [0u32; 256];
            let n = tok.encode_with_bos(e.prompt.as_bytes(), &mut ids).unwrap_or(0);
            if ids[..n] != *e.prompt_ids {
                hprintln!("  MISMATCH: the tokenizer gives {:?}", &ids[..n]);
                ok = false;
            }
        }
        let run = run_prompt::<Native>(&spark, arena, &clock, e.prompt_ids, None).unwrap_or_else(|e| fail("run", &e));
        print_ids(&run.ids);
        print_text(tok.as_ref(), &run.ids);
        let good = run.ids[..] == *e.generated && run.digest == e.digest;
        hprintln!(
            "  digest {:016x} (expected {:016x}) {}; {} steps, {} instructions/token",
            run.digest,
            e.digest,
            if good { "MATCH" } else { "MISMATCH" },
            run.steps,
            run.mean()
        );
        if good {
            matched += 1;
        } else {
            ok = false;
            if run.ids[..] != *e.generated {
                hprintln!("  expected ids {:?}", e.generated);
            }
        }
        spark_instr += run.total();
        spark_steps += run.steps;
        for (a, b) in stats.iter_mut().zip(&run.stats) {
            a.merge(b);
        }
        if first.is_none() {
            first = Some(run);
        }
    }
    let first = first.unwrap();

    // The scalar oracle on the M4, first prompt.
    let e = &PROMPTS[0];
    let sc = run_prompt::<Scalar>(&spark, arena, &clock, e.prompt_ids, None).unwrap_or_else(|e| fail("run", &e));
    let same = sc.ids == first.ids && sc.digest == first.digest;
    ok &= same;
    hprintln!(
        "scalar backend, prompt 1: ids and digest {} the dsp run's; {} instructions/token (dsp {}: {}x fewer)",
        if same { "equal" } else { "DIFFER FROM" },
        sc.mean(),
        first.mean(),
        Ratio(sc.mean(), first.mean())
    );

    // 2. Whole-model instructions per token: Spark vs the dense twin on the same sequences.
    let (mut dense_instr, mut dense_steps) = (0u64, 0usize);
    for e in PROMPTS {
        let run = run_prompt::<Native>(&dense, arena, &clock, e.prompt_ids, Some(e.generated))
            .unwrap_or_else(|e| fail("dense run", &e));
        dense_instr += run.total();
        dense_steps += run.steps;
    }
    let (sm, dm) = (spark_instr / spark_steps as u64, dense_instr / dense_steps as u64);
    hprintln!(
        "whole model, {} tokens (5 prompts, positions 0..{}): Spark {} instructions/token, \
         dense twin {} instructions/token; dense / Spark = {}",
        spark_steps,
        MAX_STEPS - 1,
        sm,
        dm,
        Ratio(dm, sm)
    );
    hprintln!(
        "  Spark token at position 0: {}, at position {}: {} instructions (prompt 1)",
        first.step_instr[0],
        first.steps - 1,
        first.step_instr[first.steps - 1]
    );
    for (l, s) in stats[..spark.config().n_layers as usize].iter().enumerate() {
        hprintln!(
            "  Spark layer {}: FFN active {}..{} (mean {}) of {}; keys per head {}..{} (mean {}); overflows {}/{}",
            l,
            s.ffn_active_min,
            s.ffn_active_max,
            s.ffn_active_sum / s.tokens.max(1) as u64,
            spark.config().d_ff,
            s.attn_keys_min,
            s.attn_keys_max,
            s.attn_keys_sum / s.attn_queries.max(1) as u64,
            s.ffn_overflows,
            s.attn_overflows
        );
    }

    // One FFN layer.
    ffn_layer(&spark, &dense, &clock);

    hprintln!(
        "spark-app: {}/{} prompts match expected_int8.json, scalar == dsp: {} -> {}",
        matched,
        PROMPTS.len(),
        same,
        if ok { "PASS" } else { "FAIL" }
    );
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("spark-app: PANIC {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    hprintln!("spark-app: HardFault at pc {:#010x}", ef.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
