//! The desktop executor: a [`Pool`] of threads (rayon) that runs the chunks `spark-core`
//! splits a decode step into ([`spark_core::exec`]), and the `--threads N` option of
//! `generate`, `eval` and `bench`.
//!
//! The pool is built once per command and lives as long as its sessions (no thread is
//! spawned per token); the command's decode loop runs on one of its threads
//! ([`Pool::run`]), which then works on every split product with the others. With one thread there is no pool: every product runs in the
//! caller, exactly the single-threaded path. Any thread count gives the same bits (the
//! chunks are fixed by the shape and write disjoint outputs).
//!
//! Tested by the unit tests below (option parsing) and by `tests/threads.rs` in the
//! workspace's `tests/` package (models decoded with 1 to 4 threads, token ids and logits
//! digests equal to each other and to `models/expected_int8.json`).

use crate::ui::{fail, CliResult};
use spark_core::exec::{Executor, Grain};

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
}

impl Pool {
    /// A pool of `threads` threads (`None`: [`available_threads`]); fails when the
    /// operating system refuses the threads.
    pub fn new(threads: Option<usize>) -> CliResult<Pool> {
        let threads = threads.unwrap_or_else(available_threads).clamp(1, MAX_THREADS);
        if threads == 1 {
            return Ok(Pool { threads, grain: Grain::DEFAULT, pool: None });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("spark-worker-{i}"))
            .build()
            .map_err(|e| fail(format!("cannot start {threads} threads: {e}")))?;
        Ok(Pool { threads, grain: Grain::DEFAULT, pool: Some(pool) })
    }

    /// A pool of exactly one thread (no pool: every product runs in the caller).
    pub fn single() -> Pool {
        Pool { threads: 1, grain: Grain::DEFAULT, pool: None }
    }

    /// Runs `f` on one of the pool's threads and returns its result (one thread: in the
    /// caller). Commands run their whole decode loop this way, so the thread that steps the
    /// session takes part in every split product instead of waiting for the pool.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
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
