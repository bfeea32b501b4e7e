//! Byte-level BPE tokenizer over the tables stored in a `.spark` file (SPEC section 8),
//! with no allocator: encoding works in place in the caller's id buffer, decoding copies
//! token byte strings into the caller's byte buffer.
//!
//! # Tables
//!
//! - `tokenizer.bytes` (`TokBytes`, u8): every token's byte string, concatenated;
//! - `tokenizer.offsets` (`TokOffsets`, u32 `[vocab + 1, 1]`): token `i` is
//!   `bytes[off[i]..off[i + 1]]`;
//! - `tokenizer.merges` (`TokMerges`, u32 `[n_merges, 3]`): `(left, right, result)`, the
//!   rank of a merge being its row index. `bytes(result) == bytes(left) ++ bytes(right)`
//!   for every row (checked at load and again by [`Tokenizer::from_tables`]), which is
//!   what makes `decode(encode(x)) == x`.
//!
//! # Encoding
//!
//! [`Tokenizer::encode`] starts from one token per byte, using the single-byte tokens
//! (the lowest id whose string is that one byte). The converter and the `spark-sim`
//! trainer always store all 256 of them; a byte without one is
//! [`TokenizerError::UnknownByte`]. Then, as in GPT-2's reference `bpe()`: while some
//! adjacent pair is a merge, take the pair of lowest rank (a pair listed twice has the
//! rank of its first row) and replace all its non-overlapping occurrences, left to right,
//! by the merge result. There is no pre-tokenization: the whole text is one sequence.
//!
//! Finding "the lowest-rank pair present" needs a pair -> rank index, which the file does
//! not store and which would need memory. Instead ranks are walked in increasing order
//! and each merge is applied across the whole sequence in one left-to-right sweep. Every
//! application only creates pairs that contain its result `c`, so the walk stays exactly
//! on the lowest present rank when each merge that takes `c` as an input has a higher
//! rank than every merge producing `c`. Tables where result ids strictly increase with
//! rank and every input id is below its result (all trained BPE tables, including the
//! `spark-sim` trainer's) have that property; [`Tokenizer::is_ordered`] reports it and
//! the walk then needs nothing more. For any other table, after each application the
//! merges of rank up to the current one that use `c` are searched and the walk resumes at
//! the lowest one present, so the result is the reference result for every valid table.
//!
//! Cost: `O(n_merges + len * m)` for ordered tables, where `m` is the number of merges
//! whose two inputs may be present (a 2048-bit id filter on the stack skips the others),
//! so at worst `O(len * n_merges)`; unordered tables add a rescan per application.
//!
//! # Decoding
//!
//! Tokens are raw bytes; a UTF-8 character may be split across tokens. [`Utf8Stream`]
//! turns a stream of token byte strings into `&str` pieces without allocating, exactly
//! as `String::from_utf8_lossy` would over the concatenation.
//!
//! Testing: `core/tests/tokenizer.rs` builds tables by hand (including shuffled,
//! unordered and duplicated merges) and checks `encode` against a naive allocating
//! reference, round trips, every error and `Utf8Stream` against `from_utf8_lossy`, all
//! with proptest; `tests/tokenizer.rs` trains tables with `spark-sim`, writes
//! them into `.spark` files and checks them through `Model::load` and `Tokenizer::new`.

use crate::format::{Model, TokenizerKind};
use crate::tensor::TensorKind;
use core::fmt;

/// Why a tokenizer could not be built or could not encode or decode.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The model stores no tokenizer.
    NoTokenizer,
    /// The tables are inconsistent (only reachable through [`Tokenizer::from_tables`] or
    /// a model whose public metadata was edited after loading).
    BadTable {
        /// What is wrong.
        reason: &'static str,
    },
    /// A token id at or above the vocabulary size.
    InvalidId {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: u32,
    },
    /// The output buffer is too short.
    BufferTooSmall {
        /// Elements needed.
        needed: usize,
        /// Elements available.
        available: usize,
    },
    /// A byte with no single-byte token.
    UnknownByte(u8),
    /// [`Tokenizer::encode_with_bos`] on a tokenizer without a BOS token.
    NoBos,
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TokenizerError::NoTokenizer => f.write_str("the model has no tokenizer"),
            TokenizerError::BadTable { reason } => write!(f, "tokenizer tables: {reason}"),
            TokenizerError::InvalidId { id, vocab } => {
                write!(f, "token id {id} is out of range (vocabulary size {vocab})")
            }
            TokenizerError::BufferTooSmall { needed, available } => {
                write!(f, "output buffer too small: needs {needed} elements, has {available}")
            }
            TokenizerError::UnknownByte(b) => write!(f, "byte {b:#04x} has no single-byte token"),
            TokenizerError::NoBos => f.write_str("the tokenizer has no beginning-of-sequence token"),
        }
    }
}

impl core::error::Error for TokenizerError {}

const NO_TOKEN: u32 = u32::MAX;

fn le_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at.wrapping_add(4)) {
        Some(&[x0, x1, x2, x3]) => u32::from_le_bytes([x0, x1, x2, x3]),
        _ => 0,
    }
}

/// A byte-level BPE tokenizer reading its tables in place. See the module docs.
#[derive(Clone, Debug)]
pub struct Tokenizer<'a> {
    bytes: &'a [u8],
    offsets: &'a [u8],
    merges: &'a [u8],
    vocab: u32,
    n_merges: u32,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    byte_ids: [u32; 256],
    ordered: bool,
}

impl<'a> Tokenizer<'a> {
    /// The tokenizer stored in `model`; [`TokenizerError::NoTokenizer`] when it has none.
    /// Cost `O(vocab + n_merges + merged bytes)` (the tables are re-checked, so no later
    /// call can panic even if the model's public metadata was edited).
    pub fn new(model: &Model<'a>) -> Result<Self, TokenizerError> {
        if model.tokenizer_meta().kind != TokenizerKind::ByteBpe {
            return Err(TokenizerError::NoTokenizer);
        }
        Self::from_tables(
            model.global_bytes(TensorKind::TokBytes),
            model.global_bytes(TensorKind::TokOffsets),
            model.global_bytes(TensorKind::TokMerges),
            model.tokenizer_meta().bos_id,
            model.tokenizer_meta().eos_id,
        )
    }

    /// A tokenizer over raw tables in the file's layout: `bytes`, `offsets` as
    /// little-endian u32 (`vocab + 1` of them), `merges` as little-endian u32 triples.
    /// Validates them completely ([`TokenizerError::BadTable`] otherwise).
    pub fn from_tables(
        bytes: &'a [u8],
        offsets: &'a [u8],
        merges: &'a [u8],
        bos_id: Option<u32>,
        eos_id: Option<u32>,
    ) -> Result<Self, TokenizerError> {
        let bad = |reason| Err(TokenizerError::BadTable { reason });
        if offsets.len() % 4 != 0 || offsets.len() < 4 {
            return bad("offsets must be a non-empty array of u32");
        }
        let Ok(vocab) = u32::try_from(offsets.len() / 4 - 1) else {
            return bad("vocabulary larger than u32");
        };
        if merges.len() % 12 != 0 {
            return bad("merges must be an array of u32 triples");
        }
        let Ok(n_merges) = u32::try_from(merges.len() / 12) else {
            return bad("more merges than u32");
        };
        let mut tok = Tokenizer {
            bytes,
            offsets,
            merges,
            vocab,
            n_merges,
            bos_id,
            eos_id,
            byte_ids: [NO_TOKEN; 256],
            ordered: true,
        };
        let mut prev = 0usize;
        for i in 0..=vocab as usize {
            let o = le_u32(offsets, 4 * i) as usize;
            if (i == 0 && o != 0) || o < prev || o > bytes.len() {
                return bad("token offsets must start at 0, be non-decreasing and stay inside the bytes");
            }
            prev = o;
        }
        if prev != bytes.len() {
            return bad("last token offset must equal the length of the bytes");
        }
        let mut prev_result = None;
        for r in 0..n_merges as usize {
            let (a, b, c) = tok.merge_at(r);
            if a >= vocab || b >= vocab || c >= vocab {
                return bad("merge refers to a token id >= vocab_size");
            }
            let (ta, tb, tc) = (tok.token(a), tok.token(b), tok.token(c));
            if tc.len() != ta.len() + tb.len() || !tc.starts_with(ta) || !tc.ends_with(tb) {
                return bad("merge result bytes differ from left bytes followed by right bytes");
            }
            if a >= c || b >= c || prev_result.is_some_and(|p| p >= c) {
                tok.ordered = false;
            }
            prev_result = Some(c);
        }
        for id in [bos_id, eos_id].into_iter().flatten() {
            if id >= vocab {
                return bad("bos/eos id >= vocab_size");
            }
        }
        for id in (0..vocab).rev() {
            if let &[b] = tok.token(id) {
                tok.byte_ids[b as usize] = id;
            }
        }
        Ok(tok)
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> u32 {
        self.vocab
    }

    /// Number of merges.
    pub fn n_merges(&self) -> u32 {
        self.n_merges
    }

    /// Beginning-of-sequence token, if any.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// End-of-sequence token, if any.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The single-byte token encoding starts from for byte `b`.
    pub fn byte_token(&self, b: u8) -> Option<u32> {
        let id = self.byte_ids[b as usize];
        (id != NO_TOKEN).then_some(id)
    }

    /// Merge of rank `rank` as `(left, right, result)`.
    pub fn merge(&self, rank: u32) -> Option<(u32, u32, u32)> {
        (rank < self.n_merges).then(|| self.merge_at(rank as usize))
    }

    /// True when result ids strictly increase with rank and every merge input is below
    /// its result: encoding then walks the ranks once (see the module docs).
    pub fn is_ordered(&self) -> bool {
        self.ordered
    }

    /// Token `id` as bytes, for `id < vocab` (empty otherwise, never reached).
    fn token(&self, id: u32) -> &'a [u8] {
        let i = id as usize;
        let (s, e) = (le_u32(self.offsets, 4 * i) as usize, le_u32(self.offsets, 4 * i + 4) as usize);
        self.bytes.get(s..e).unwrap_or(&[])
    }

    fn merge_at(&self, r: usize) -> (u32, u32, u32) {
        let at = 12 * r;
        (le_u32(self.merges, at), le_u32(self.merges, at + 4), le_u32(self.merges, at + 8))
    }

    /// The byte string of token `id`.
    pub fn decode_token(&self, id: u32) -> Result<&'a [u8], TokenizerError> {
        if id >= self.vocab {
            return Err(TokenizerError::InvalidId { id, vocab: self.vocab });
        }
        Ok(self.token(id))
    }

    /// Concatenate the byte strings of `ids` into `out`; returns the bytes written.
    /// Special tokens (BOS/EOS) decode to their stored strings like any other token.
    /// Checks every id and the total size before writing anything:
    /// [`TokenizerError::BufferTooSmall`] carries the full size needed.
    pub fn decode(&self, ids: &[u32], out: &mut [u8]) -> Result<usize, TokenizerError> {
        let mut needed = 0usize;
        for &id in ids {
            needed = needed.saturating_add(self.decode_token(id)?.len());
        }
        if needed > out.len() {
            return Err(TokenizerError::BufferTooSmall { needed, available: out.len() });
        }
        let mut at = 0;
        for &id in ids {
            let t = self.token(id);
            if let Some(dst) = out.get_mut(at..at + t.len()) {
                dst.copy_from_slice(t);
            }
            at += t.len();
        }
        Ok(at)
    }

    /// Encode `text` into `out` (which must hold at least `text.len()` ids: encoding works
    /// in place from one token per byte); returns the number of tokens.
    pub fn encode(&self, text: &[u8], out: &mut [u32]) -> Result<usize, TokenizerError> {
        let n = text.len();
        let Some(seq) = out.get_mut(..n) else {
            return Err(TokenizerError::BufferTooSmall { needed: n, available: out.len() });
        };
        let mut present = IdFilter::default();
        for (slot, &b) in seq.iter_mut().zip(text) {
            let id = self.byte_ids[b as usize];
            if id == NO_TOKEN {
                return Err(TokenizerError::UnknownByte(b));
            }
            *slot = id;
            present.insert(id);
        }
        Ok(self.merge_in_place(seq, &mut present))
    }

    /// [`Tokenizer::encode`] preceded by the BOS token (`out` must hold
    /// `text.len() + 1` ids); [`TokenizerError::NoBos`] when there is none.
    pub fn encode_with_bos(&self, text: &[u8], out: &mut [u32]) -> Result<usize, TokenizerError> {
        let bos = self.bos_id.ok_or(TokenizerError::NoBos)?;
        let needed = text.len().saturating_add(1);
        match out.split_first_mut() {
            Some((first, rest)) if rest.len() >= text.len() => {
                *first = bos;
                Ok(1 + self.encode(text, rest)?)
            }
            _ => Err(TokenizerError::BufferTooSmall { needed, available: out.len() }),
        }
    }

    fn merge_in_place(&self, seq: &mut [u32], present: &mut IdFilter) -> usize {
        let mut n = seq.len();
        let mut r = 0usize;
        while r < self.n_merges as usize && n >= 2 {
            let (a, b, c) = self.merge_at(r);
            if present.may_contain(a) && present.may_contain(b) {
                let m = apply_merge(&mut seq[..n], a, b, c);
                if m < n {
                    n = m;
                    present.insert(c);
                    if !self.ordered {
                        if let Some(back) = self.lowest_present_using(&seq[..n], c, r) {
                            r = back;
                            continue;
                        }
                    }
                }
            }
            r += 1;
        }
        n
    }

    /// Lowest rank `<= upto` of a merge with `c` as an input whose pair occurs in `seq`.
    fn lowest_present_using(&self, seq: &[u32], c: u32, upto: usize) -> Option<usize> {
        (0..=upto).find(|&r| {
            let (a, b, _) = self.merge_at(r);
            (a == c || b == c) && seq.windows(2).any(|w| w[0] == a && w[1] == b)
        })
    }
}

/// Replace every non-overlapping `(a, b)`, left to right, by `c`; returns the new length.
fn apply_merge(seq: &mut [u32], a: u32, b: u32, c: u32) -> usize {
    let n = seq.len();
    let Some(first) = seq.windows(2).position(|w| w[0] == a && w[1] == b) else {
        return n;
    };
    let (mut i, mut w) = (first, first);
    while i < n {
        if i + 1 < n && seq[i] == a && seq[i + 1] == b {
            seq[w] = c;
            i += 2;
        } else {
            seq[w] = seq[i];
            i += 1;
        }
        w += 1;
    }
    w
}

/// A 2048-bit filter of token ids present in a sequence (no false negatives).
struct IdFilter([u32; 64]);

impl Default for IdFilter {
    fn default() -> Self {
        IdFilter([0; 64])
    }
}

impl IdFilter {
    fn insert(&mut self, id: u32) {
        self.0[(id as usize >> 5) & 63] |= 1 << (id & 31);
    }
    fn may_contain(&self, id: u32) -> bool {
        self.0[(id as usize >> 5) & 63] & (1 << (id & 31)) != 0
    }
}

/// Turns a stream of byte chunks (decoded tokens) into `&str` pieces without allocating,
/// holding back at most 3 bytes of an incomplete UTF-8 character between chunks. Invalid
/// sequences become U+FFFD exactly as `String::from_utf8_lossy` does over the whole
/// stream; call [`Utf8Stream::finish`] at the end to flush an incomplete tail.
///
/// ```
/// # use spark_core::tokenizer::Utf8Stream;
/// let mut s = Utf8Stream::new();
/// let mut text = String::new();
/// for chunk in [&b"caf"[..], &[0xC3], &[0xA9, b'!']] {
///     s.push(chunk, &mut |p: &str| text.push_str(p));
/// }
/// s.finish(&mut |p: &str| text.push_str(p));
/// assert_eq!(text, "café!");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    pending: [u8; 4],
    len: u8,
}

impl Utf8Stream {
    /// An empty stream.
    pub const fn new() -> Self {
        Utf8Stream { pending: [0; 4], len: 0 }
    }

    /// Bytes held back (the start of an incomplete character).
    pub fn pending(&self) -> &[u8] {
        &self.pending[..self.len as usize]
    }

    /// Feed `bytes`; `emit` receives every complete piece of text, in order.
    pub fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&str)) {
        while self.len > 0 {
            let Some((&b, rest)) = bytes.split_first() else { return };
            bytes = rest;
            let mut buf = self.pending;
            buf[self.len as usize] = b;
            let n = self.len as usize + 1;
            let tail = emit_lossy(&buf[..n], emit);
            self.len = (n - tail) as u8;
            self.pending[..n - tail].copy_from_slice(&buf[tail..n]);
        }
        let tail = emit_lossy(bytes, emit);
        let held = &bytes[tail..];
        self.pending[..held.len()].copy_from_slice(held);
        self.len = held.len() as u8;
    }

    /// End of stream: an incomplete character left over becomes one U+FFFD.
    pub fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        if self.len > 0 {
            emit("\u{FFFD}");
            self.len = 0;
        }
    }
}

/// Emit the valid text and U+FFFD for invalid sequences; returns where an incomplete
/// trailing character (at most 3 bytes) starts, `bytes.len()` when there is none.
fn emit_lossy(mut bytes: &[u8], emit: &mut impl FnMut(&str)) -> usize {
    let total = bytes.len();
    loop {
        match core::str::from_utf8(bytes) {
            Ok(s) => {
                if !s.is_empty() {
                    emit(s);
                }
                return total;
            }
            Err(e) => {
                let (valid, after) = bytes.split_at(e.valid_up_to());
                if let Ok(s) = core::str::from_utf8(valid) {
                    if !s.is_empty() {
                        emit(s);
                    }
                }
                match e.error_len() {
                    Some(bad) => {
                        emit("\u{FFFD}");
                        bytes = after.get(bad..).unwrap_or(&[]);
                    }
                    None => return total - after.len(),
                }
            }
        }
    }
}
