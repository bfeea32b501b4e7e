//! The desktop executor: a [`Pool`] of threads (rayon) that runs the chunks `spark-core`
//! splits a decode step into ([`spark_core::exec`]), and the `--threads N` option of
//! `generate`, `eval` and `bench`.
//!
//! The pool is built once per command and lives as long as its sessions (no thread is
//! spawned per token); the command's decode loop runs on one of its threads
//! ([`Pool::run`]), which then works on every split product with the others. While it
//! runs, the other threads spin for chunks instead of sleeping in rayon's idle loop, so a
//! split product starts on them within a microsecond or so, not after a futex wake-up;
//! they fall back to short sleeps when no chunk has come for 50 ms, and they do not spin
//! at all when there are more threads than cores. (On the 2-core VM of
//! docs/PERFORMANCE.md, "Thread scaling", this took the 2-thread whole token of the
//! 1-layer `gemma2-2b` pair from 1.09 - 1.11x the one-thread token of the same run, two
//! runs, to 1.27x, the median of 20.) With one thread there is no pool: every product runs
//! in the caller, exactly the single-threaded path. Any thread count gives the same bits (the chunks are fixed by
//! the shape and write disjoint outputs).
//!
//! Tested by the unit tests below (option parsing, every chunk once, `run`'s result and a
//! panic inside it) and by `tests/threads.rs` in the workspace's `tests/` package (models
//! decoded with 1 to 4 threads, token ids and logits digests equal to each other and to
//! `models/expected_int8.json`).

use crate::ui::{fail, CliResult};
use spark_core::exec::{Executor, Grain};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sets its flag when dropped (also when the job panics, so the helpers stop).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// How long a helper keeps spinning for work after its last chunk before it starts to
/// sleep between looks. A decode step's split products come microseconds apart; this is
/// long enough to stay awake across `bench model`'s one-thread twin steps (a few ms on
/// the 1-layer pairs) and short enough that a job waiting on something else (I/O, a
/// long sequential part) stops the spinning soon.
const SPIN_IDLE: Duration = Duration::from_millis(50);
/// The longest sleep between looks of an idle helper (the first is 50 us, then doubling).
const MAX_IDLE_SLEEP: Duration = Duration::from_millis(1);

/// A helper thread's loop while [`Pool::run`]'s job runs, until `done`: take any chunk the
/// pool has (`rayon::yield_now`, which also runs broadcasts such as
/// [`Pool::on_every_thread`]); until none has come for [`SPIN_IDLE`], spin (handing
/// the core over now and then), after that sleep between looks (50 us doubling up to
/// [`MAX_IDLE_SLEEP`]), so a job busy elsewhere does not keep the helpers' cores busy.
fn help_until(done: &AtomicBool) {
    let mut last_work = Instant::now();
    let mut sleep = Duration::ZERO;
    let mut polls = 0u32;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            last_work = Instant::now();
            sleep = Duration::ZERO;
            continue;
        }
        polls = polls.wrapping_add(1);
        if polls % 64 != 0 {
            std::hint::spin_loop();
        } else if last_work.elapsed() < SPIN_IDLE {
            std::thread::yield_now();
        } else {
            sleep = (sleep * 2).clamp(Duration::from_micros(50), MAX_IDLE_SLEEP);
            std::thread::sleep(sleep);
        }
    }
}

/// The most threads `--threads` accepts.
pub const MAX_THREADS: usize = 256;

/// `--threads`: a thread count from 1 to [`MAX_THREADS`].
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a thread count: give 1 to {MAX_THREADS}")),
    }
}

/// The default thread count: the cores available to this process (1 when unknown), at
/// most [`MAX_THREADS`].
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS)
}

/// Runs chunks on `threads` threads (the caller's thread among them); `threads == 1`: in
/// the caller, no pool.
pub struct Pool {
    threads: usize,
    grain: Grain,
    pool: Option<rayon::ThreadPool>,
    /// The helpers spin for chunks during [`Pool::run`] (not when there are more threads
    /// than cores: spinning threads would take the cores from the ones with work).
    spin: bool,
}

impl Pool {
    /// A pool of `threads` threads (`None`: [`available_threads`]); fails when the
    /// operating system refuses the threads.
    pub fn new(threads: Option<usize>) -> CliResult<Pool> {
        let threads = threads.unwrap_or_else(available_threads).clamp(1, MAX_THREADS);
        if threads == 1 {
            return Ok(Pool { threads, grain: Grain::DEFAULT, pool: None, spin: false });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("spark-worker-{i}"))
            .build()
            .map_err(|e| fail(format!("cannot start {threads} threads: {e}")))?;
        Ok(Pool { threads, grain: Grain::DEFAULT, pool: Some(pool), spin: threads <= available_threads() })
    }

    /// A pool of exactly one thread (no pool: every product runs in the caller).
    pub fn single() -> Pool {
        Pool { threads: 1, grain: Grain::DEFAULT, pool: None, spin: false }
    }

    /// Runs `f` on one of the pool's threads and returns its result (one thread: in the
    /// caller). Commands run their whole decode loop this way, so the thread that steps the
    /// session takes part in every split product instead of waiting for the pool, while the
    /// other threads look for chunks until `f` returns (or panics: the panic goes on to
    /// the caller once they have stopped). With more threads than cores they do not spin:
    /// they wait in rayon's idle loop.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let Some(p) = &self.pool else { return f() };
        if !self.spin {
            return p.install(f);
        }
        let done = AtomicBool::new(false);
        let job = Mutex::new(Some(f));
        let out = Mutex::new(None);
        p.broadcast(|ctx| {
            if ctx.index() == 0 {
                let _done = SetOnDrop(&done);
                let f = job.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(f) = f {
                    *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(f());
                }
            } else {
                help_until(&done);
            }
        });
        out.into_inner().unwrap_or_else(|e| e.into_inner()).expect("the pool ran the job")
    }

    /// Runs `f(i)` once on each of the pool's threads (`i` in `0..threads`) and returns
    /// the results in thread order (one thread: in the caller). For measurements that
    /// load every thread at once (the benchmarks' read bandwidth).
    pub fn on_every_thread<R: Send>(&self, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
        match &self.pool {
            Some(p) => p.broadcast(|ctx| f(ctx.index())),
            None => vec![f(0)],
        }
    }

    /// The same pool splitting products as `grain` says (tests: [`Grain::FINEST`]).
    pub fn with_grain(self, grain: Grain) -> Pool {
        Pool { grain, ..self }
    }
}

impl Executor for Pool {
    fn threads(&self) -> usize {
        self.threads
    }

    fn grain(&self) -> Grain {
        self.grain
    }

    fn for_each_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(&self, out: &mut [T], chunk_len: usize, f: F) {
        use rayon::prelude::*;
        match &self.pool {
            Some(p) => p.install(|| out.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c))),
            None => {
                for (i, c) in out.chunks_mut(chunk_len).enumerate() {
                    f(i, c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_outside_the_range_are_refused() {
        assert_eq!(parse_threads("1"), Ok(1));
        assert_eq!(parse_threads("256"), Ok(256));
        for bad in ["0", "257", "-1", "99999999999999999999999", "two", ""] {
            assert!(parse_threads(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_thread_runs_once() {
        assert_eq!(Pool::new(Some(3)).unwrap().on_every_thread(|i| i * 10), vec![0, 10, 20]);
        assert_eq!(Pool::single().on_every_thread(|i| i + 1), vec![1]);
    }

    #[test]
    fn run_returns_the_jobs_result_with_its_products_split() {
        for t in 1..=3 {
            let p = Pool::new(Some(t)).unwrap();
            let total = p.run(|| {
                let mut v = vec![1u64; 10_000];
                p.for_each_chunk(&mut v, 100, |i, c| c.iter_mut().for_each(|x| *x += i as u64));
                // Broadcasts still reach the helpers while they wait for chunks.
                let seen = p.on_every_thread(|i| i);
                (v.iter().sum::<u64>(), seen)
            });
            // 100 chunks of 100: sum (1 + i) * 100 over i < 100.
            assert_eq!(total, (100 * 100 + 100 * 4950, (0..t).collect::<Vec<_>>()), "{t} threads");
        }
    }

    #[test]
    fn a_panic_in_run_reaches_the_caller_and_the_pool_still_works() {
        let p = Pool::new(Some(2)).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.run(|| -> u32 { panic!("job failed") })));
        assert!(r.is_err());
        assert_eq!(p.run(|| 7), 7);
    }

    #[test]
    fn every_chunk_runs_once() {
        let p = Pool::new(Some(3)).unwrap();
        let mut v = vec![0u32; 1000];
        p.for_each_chunk(&mut v, 7, |i, c| {
            for x in c.iter_mut() {
                *x += i as u32 + 1;
            }
        });
        for (j, x) in v.iter().enumerate() {
            assert_eq!(*x, (j / 7) as u32 + 1);
        }
    }
}
