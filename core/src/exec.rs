//! Splitting a decode step's integer work into fixed chunks for a caller-provided
//! [`Executor`] (SPEC section 7's determinism contract holds for any thread count).
//!
//! `spark-core` has no threads: it describes the big integer products of a step as chunks
//! that write disjoint slices of one output buffer, and hands them to an executor. The
//! [`Sequential`] executor (the default of [`crate::Session`], what microcontrollers use)
//! runs them in the caller; `spark-sim` has a thread pool, and the C API a callback hook.
//!
//! The split products are the three kernels of `spark-hal`:
//!
//! - [`gemv`] (projections, FFN predictor, logits, attention key scores): fixed blocks of
//!   rows, [`Grain::row_block`] rows each;
//! - [`gemv_rows`] (the `K2` / `Wu` row gathers of the FFN, `K2` rows of attention):
//!   fixed blocks of the selected-row list;
//! - [`gemv_t_rows`] (the sparse output products, FFN `V` / `Wd` and attention values):
//!   [`Grain::parts`] equal parts of the row list, each summed into its own partial output
//!   vector in spare accumulator space the caller already has, then added into `y` in part
//!   order.
//!
//! Attention also splits across query heads ([`crate::attention::attend_heads_on`]): one
//! whole head per chunk, in its own head slot's scratch, when the session's arena holds
//! more than one slot.
//!
//! Every chunk computes exact `i32` sums of exactly the products the single call would
//! (and the partial vectors add exactly: the same total as one call, which never
//! overflows), so the results are bit-identical for every thread count, every chunk order
//! and the single-threaded path. Chunk boundaries depend only on the shape; none of the float work
//! is split (the top-k statistics, the dequantization and softmax loops stay in the
//! caller's fixed order). Products reading fewer than [`Grain::min_bytes`] bytes run as
//! one kernel call in the caller, whatever the executor: a pool costs more than it saves
//! there, and the result is the same either way.
//!
//! Tested by the unit tests below (every chunking against one kernel call, with a
//! shuffling executor) and by the workspace's `tests/threads.rs` (whole models with 1 to
//! 4 threads against each other and the committed expected results).

use spark_hal::Kernels;

/// Runs the chunks of one product. A chunk is one `chunk_len`-element slice of the output
/// (`out.chunks_mut(chunk_len)`, the last one possibly shorter) and its index.
pub trait Executor {
    /// Threads that run chunks; with 1 every product runs in the caller as one kernel
    /// call and [`Executor::for_each_chunk`] is never called.
    fn threads(&self) -> usize;

    /// How finely products are split ([`Grain::DEFAULT`]; tests use [`Grain::FINEST`] to
    /// split even tiny models). Never changes results.
    fn grain(&self) -> Grain {
        Grain::DEFAULT
    }

    /// Calls `f(i, chunk_i)` exactly once for every chunk `i` of
    /// `out.chunks_mut(chunk_len)`, in any order and on any threads, and returns when all
    /// have finished. `chunk_len > 0`.
    fn for_each_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(&self, out: &mut [T], chunk_len: usize, f: F);
}

/// Runs every chunk in the caller, in order (no threads; the microcontroller path).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl Executor for Sequential {
    fn threads(&self) -> usize {
        1
    }
    fn for_each_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(&self, out: &mut [T], chunk_len: usize, f: F) {
        for (i, c) in out.chunks_mut(chunk_len).enumerate() {
            f(i, c);
        }
    }
}

impl<E: Executor> Executor for &E {
    fn threads(&self) -> usize {
        (**self).threads()
    }
    fn grain(&self) -> Grain {
        (**self).grain()
    }
    fn for_each_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(&self, out: &mut [T], chunk_len: usize, f: F) {
        (**self).for_each_chunk(out, chunk_len, f)
    }
}

/// How finely the products are split: fixed settings of an executor, independent of its
/// thread count and of the data. Results never depend on them (integer sums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grain {
    /// Weight bytes a product must read before it is split (below: one kernel call in the
    /// caller, as a pool's hand-off would cost more than it saves).
    pub min_bytes: usize,
    /// Weight bytes per chunk of a row-split product (rows are never split): see
    /// [`Grain::row_block`].
    pub chunk_bytes: usize,
    /// Most partial output vectors a sparse output product is split into.
    pub max_parts: usize,
}

impl Grain {
    /// Splits products of 96 KiB and more into chunks of about 128 KiB (at least 4),
    /// sparse output products into at most 8 parts (measured in `docs/PERFORMANCE.md`,
    /// "Chunks of 128 KiB, in multiples of 4" and "Thread scaling").
    pub const DEFAULT: Grain = Grain { min_bytes: 96 * 1024, chunk_bytes: 128 * 1024, max_parts: 8 };
    /// Splits everything as finely as possible: one row per chunk (for tests on small
    /// models; slow).
    pub const FINEST: Grain = Grain { min_bytes: 0, chunk_bytes: 1, max_parts: 8 };

    /// Rows (or selected rows) per chunk of a product over `rows` rows of `cols` bytes:
    /// the rows cut into `ceil(rows * cols / chunk_bytes)` blocks rounded up to a multiple
    /// of 4, of equal size (the last one shorter by less than a block). So 2 or 4 threads
    /// get the same share of a product of a few chunks (5 chunks on 2 threads: 3 and 2).
    pub fn row_block(&self, rows: usize, cols: usize) -> usize {
        let blocks = (rows * cols).div_ceil(self.chunk_bytes.max(1)).next_multiple_of(4).clamp(1, rows.max(1));
        rows.div_ceil(blocks).max(1)
    }

    /// The fewest rows of `cols` bytes that make one chunk's worth: `chunk_bytes / cols`,
    /// at least 1.
    pub fn chunk_rows(&self, cols: usize) -> usize {
        (self.chunk_bytes / cols.max(1)).max(1)
    }

    /// Parts of a sparse output product over `m` listed rows of `cols` bytes with room
    /// for `room` partial vectors: the largest of 8, 6, 4, 3, 2 that is at most
    /// `max_parts` and `room` and leaves every part at least [`Grain::chunk_rows`] rows;
    /// else 1 (not split). Depends only on the shape and the selection's size.
    pub fn parts(&self, m: usize, cols: usize, room: usize) -> usize {
        for p in [8, 6, 4, 3, 2] {
            if p <= self.max_parts && p <= room && m / p >= self.chunk_rows(cols) {
                return p;
            }
        }
        1
    }
}

/// Whether a product reading `bytes` weight bytes is handed to `e` (more than one thread
/// and at least its [`Grain::min_bytes`]).
pub fn splits<E: Executor>(e: &E, bytes: usize) -> bool {
    e.threads() > 1 && bytes >= e.grain().min_bytes
}

/// `y[i] = W[i] . x` for every row (`w` `[rows, cols]`, `x` `[cols]`, `y` `[rows]`): as
/// `K::gemv_i8`, in blocks of [`Grain::row_block`] rows.
pub fn gemv<K: Kernels, E: Executor>(e: &E, w: &[i8], cols: usize, x: &[i8], y: &mut [i32]) {
    if !splits(e, y.len() * cols) {
        K::gemv_i8(w, cols, x, y);
        return;
    }
    let rb = e.grain().row_block(y.len(), cols);
    e.for_each_chunk(y, rb, |c, yc| {
        let r0 = c * rb; // first row of this block
        K::gemv_i8(&w[r0 * cols..(r0 + yc.len()) * cols], cols, x, yc);
    });
}

/// `y[j] = W[rows[j]] . x` for every listed row (row `r` of `w` is
/// `w[r * stride..r * stride + cols]`, `rows` `[m]`, `y` `[m]`): as
/// `K::gemv_rows_strided_i8`, in blocks of [`Grain::row_block`] list entries.
pub fn gemv_rows<K: Kernels, E: Executor>(
    e: &E,
    w: &[i8],
    stride: usize,
    cols: usize,
    rows: &[u32],
    x: &[i8],
    y: &mut [i32],
) {
    if !splits(e, rows.len() * cols) {
        K::gemv_rows_strided_i8(w, stride, cols, rows, x, y);
        return;
    }
    let rb = e.grain().row_block(rows.len(), cols);
    e.for_each_chunk(y, rb, |c, yc| {
        let j0 = c * rb; // first list entry of this block
        K::gemv_rows_strided_i8(w, stride, cols, &rows[j0..j0 + yc.len()], x, yc);
    });
}

/// `y[col] += sum_j c[j] * W[rows[j]][col]` (row `r` of `w` is
/// `w[r * stride..r * stride + cols]`, `rows` `[m]`, `c` `[m]`, `y` `[cols]`): as
/// `K::gemv_t_rows_strided_i8`, with the row list cut into
/// [`Grain::parts`] equal parts (the last one shorter). Part `p` sums its rows into its own
/// zeroed partial vector `spare[p * cols..(p + 1) * cols]` (one kernel call); then
/// `y += part 0 + part 1 + ...`, in part order. `spare` is accumulator space the caller
/// has beyond `y` (its length bounds the number of parts; empty: not split). Integer
/// sums: the same bits as one call.
#[allow(clippy::too_many_arguments)]
pub fn gemv_t_rows<K: Kernels, E: Executor>(
    e: &E,
    w: &[i8],
    stride: usize,
    cols: usize,
    rows: &[u32],
    c: &[i8],
    y: &mut [i32],
    spare: &mut [i32],
) {
    let m = rows.len();
    let n = if cols == 0 { 1 } else { e.grain().parts(m, cols, spare.len() / cols) };
    if n == 1 || !splits(e, m * cols) {
        K::gemv_t_rows_strided_i8(w, stride, cols, rows, c, y);
        return;
    }
    let per = m.div_ceil(n); // listed rows per part
    let parts = &mut spare[..n * cols]; // [n, cols]
    e.for_each_chunk(parts, cols, |p, part| {
        let (j0, j1) = ((p * per).min(m), ((p + 1) * per).min(m));
        part.fill(0);
        K::gemv_t_rows_strided_i8(w, stride, cols, &rows[j0..j1], &c[j0..j1], part);
    });
    for p in 0..n {
        let part = &parts[p * cols..(p + 1) * cols];
        for i in 0..cols {
            y[i] += part[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes as bytes;
    use proptest::prelude::*;
    use spark_hal::Scalar;
    use std::sync::Mutex;
    use std::vec::Vec;

    /// Runs the chunks in a scrambled order (as threads might), `threads` and grain as given.
    struct Shuffled(usize, Grain);
    impl Executor for Shuffled {
        fn threads(&self) -> usize {
            self.0
        }
        fn grain(&self) -> Grain {
            self.1
        }
        fn for_each_chunk<T: Send, F: Fn(usize, &mut [T]) + Sync>(&self, out: &mut [T], chunk_len: usize, f: F) {
            let mut chunks: Vec<(usize, &mut [T])> = out.chunks_mut(chunk_len).enumerate().collect();
            let n = chunks.len();
            for i in 0..n {
                chunks.swap(i, (i * 7 + 3) % n);
            }
            let seen = Mutex::new(Vec::new());
            for (i, c) in chunks {
                seen.lock().unwrap().push(i);
                f(i, c);
            }
            let mut s = seen.into_inner().unwrap();
            s.sort();
            assert_eq!(s, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn shapes_give_fixed_chunks() {
        let g = Grain::DEFAULT;
        assert_eq!(g.chunk_rows(2304), 56);
        assert_eq!(g.chunk_rows(1 << 20), 1);
        // 9216 rows of 2304 bytes (162 x 128 KiB, rounded up to 164 blocks): blocks of 57
        // rows (162 chunks, the last 39 rows); 1024 rows of 160 bytes (160 KiB): 4 chunks
        // of 256 rows (with 2 threads 2 each), not 819 + 205.
        assert_eq!(g.row_block(9216, 2304), 57);
        assert_eq!(g.row_block(1024, 160), 256);
        assert_eq!(g.row_block(1001, 160), 251); // 3 x 251 + 248
        assert_eq!(g.row_block(3, 1 << 20), 1);
        assert_eq!(g.row_block(0, 100), 1);
        assert_eq!(g.parts(1106, 2304, 5), 4); // Spark FFN V: 4 parts in acc[d..f]
        assert_eq!(g.parts(4096, 256, 15), 8); // dense attention values at ctx 4096
        assert_eq!(g.parts(20, 2304, 5), 1); // too few rows per part
        assert_eq!(g.parts(1106, 2304, 0), 1); // no room
        assert_eq!(Grain::FINEST.row_block(500, 40), 1);
        assert_eq!(Grain::FINEST.parts(3, 40, 100), 3);
    }

    proptest! {
        // (4 cases under Miri, which interprets every product: this module has no `unsafe`)
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 48 }))]
        #[test]
        fn every_chunking_equals_one_kernel_call(
            rows in 1usize..200, cols_i in 0usize..8, m in 0usize..300, seed in any::<u64>(), threads in 1usize..5,
            finest in any::<bool>(), spare_parts in 0usize..10, pad in 0usize..70,
        ) {
            let cols = [1, 40, 64, 96, 256, 768, 1152, 2304][cols_i];
            let w = bytes(seed, rows * cols);
            let x = bytes(seed ^ 1, cols);
            let list: Vec<u32> = bytes(seed ^ 2, m).iter().map(|&b| (b as u8 as usize % rows) as u32).collect();
            let c = bytes(seed ^ 3, m);
            let e = Shuffled(threads, if finest { Grain::FINEST } else { Grain::DEFAULT });
            // (small products stay below PAR_MIN_BYTES and are not split: both paths compared)
            let (mut a, mut b) = (vec![0i32; rows], vec![0i32; rows]);
            Scalar::gemv_i8(&w, cols, &x, &mut a);
            gemv::<Scalar, _>(&e, &w, cols, &x, &mut b);
            prop_assert_eq!(&a, &b);
            let (mut a, mut b) = (vec![0i32; m], vec![0i32; m]);
            Scalar::gemv_rows_i8(&w, cols, &list, &x, &mut a);
            gemv_rows::<Scalar, _>(&e, &w, cols, cols, &list, &x, &mut b);
            prop_assert_eq!(&a, &b);
            let (mut a, mut b) = (vec![5i32; cols], vec![5i32; cols]);
            let mut spare = vec![7i32; spare_parts * cols];
            Scalar::gemv_t_rows_i8(&w, cols, &list, &c, &mut a);
            gemv_t_rows::<Scalar, _>(&e, &w, cols, cols, &list, &c, &mut b, &mut spare);
            prop_assert_eq!(&a, &b);
            // Bundled rows: the same products over rows `stride = cols + pad` apart.
            let stride = cols + pad;
            let mut wb = vec![0i8; rows * stride];
            for r in 0..rows {
                wb[r * stride..r * stride + cols].copy_from_slice(&w[r * cols..(r + 1) * cols]);
            }
            let mut b = vec![0i32; m];
            gemv_rows::<Scalar, _>(&e, &wb, stride, cols, &list, &x, &mut b);
            let mut a = vec![0i32; m];
            Scalar::gemv_rows_i8(&w, cols, &list, &x, &mut a);
            prop_assert_eq!(&a, &b);
            let (mut a, mut b) = (vec![5i32; cols], vec![5i32; cols]);
            Scalar::gemv_t_rows_i8(&w, cols, &list, &c, &mut a);
            gemv_t_rows::<Scalar, _>(&e, &wb, stride, cols, &list, &c, &mut b, &mut spare);
            prop_assert_eq!(&a, &b);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of products; safe code, run natively")]
    fn large_products_are_split_and_equal() {
        // Above PAR_MIN_BYTES: the chunked paths run.
        let (rows, cols, m) = (600, 2304, 500);
        let w = bytes(9, rows * cols);
        let x = bytes(10, cols);
        let list: Vec<u32> = (0..m as u32).map(|j| (j * 37) % rows as u32).collect();
        let c = bytes(11, m);
        for t in 1..=4 {
            let e = Shuffled(t, Grain::DEFAULT);
            let (mut a, mut b) = (vec![0i32; rows], vec![0i32; rows]);
            Scalar::gemv_i8(&w, cols, &x, &mut a);
            gemv::<Scalar, _>(&e, &w, cols, &x, &mut b);
            assert_eq!(a, b);
            let (mut a, mut b) = (vec![0i32; m], vec![0i32; m]);
            Scalar::gemv_rows_i8(&w, cols, &list, &x, &mut a);
            gemv_rows::<Scalar, _>(&e, &w, cols, cols, &list, &x, &mut b);
            assert_eq!(a, b);
            let (mut a, mut b) = (vec![0i32; cols], vec![0i32; cols]);
            let mut spare = vec![0i32; 8 * cols];
            Scalar::gemv_t_rows_i8(&w, cols, &list, &c, &mut a);
            gemv_t_rows::<Scalar, _>(&e, &w, cols, cols, &list, &c, &mut b, &mut spare);
            assert_eq!(a, b);
        }
    }
}
