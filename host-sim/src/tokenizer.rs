//! Byte-level BPE on the desktop: a small deterministic trainer, the writer of the three
//! tokenizer tensors of a `.spark` file, and a naive allocating reference `encode` /
//! `decode` that `spark_core::tokenizer::Tokenizer` is tested against.
//!
//! Ids `0..256` are the single bytes (id = byte value), merges get ids from 256 in the
//! order they are learned (so result ids increase with rank and every table is
//! "ordered" in the sense of `Tokenizer::is_ordered`), and optional `<bos>` / `<eos>`
//! tokens come last. The reference encoder is GPT-2's `bpe()` over the whole text: while
//! some adjacent pair is a merge, replace every non-overlapping occurrence (left to right)
//! of the lowest-rank one (a pair listed twice ranks by its first row).
//!
//! Tested in `host-sim/tests/tokenizer.rs` (training, the reference against the no-alloc
//! core tokenizer, and round trips through `ModelWriter::finish` and `Model::load`).

use crate::format::ModelWriter;
use spark_core::{DType, TensorId, TensorKind, TokenizerKind, TokenizerMeta};
use std::collections::{BTreeMap, HashMap};

/// A byte-level BPE tokenizer held in ordinary collections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpeTokenizer {
    /// Byte string of every token, indexed by id.
    pub tokens: Vec<Vec<u8>>,
    /// Merges `(left, right, result)` in rank order.
    pub merges: Vec<(u32, u32, u32)>,
    /// Beginning-of-sequence token, if any.
    pub bos_id: Option<u32>,
    /// End-of-sequence token, if any.
    pub eos_id: Option<u32>,
}

/// Replace every non-overlapping `(a, b)` in `seq`, left to right, by `c`.
fn merge_pair(seq: &[u32], a: u32, b: u32, c: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(seq.len());
    let mut i = 0;
    while i < seq.len() {
        if i + 1 < seq.len() && seq[i] == a && seq[i + 1] == b {
            out.push(c);
            i += 2;
        } else {
            out.push(seq[i]);
            i += 1;
        }
    }
    out
}

impl BpeTokenizer {
    /// The 256 single-byte tokens and no merges.
    pub fn bytes_only() -> Self {
        BpeTokenizer { tokens: (0..=255u8).map(|b| vec![b]).collect(), merges: Vec::new(), bos_id: None, eos_id: None }
    }

    /// Learn merges on `corpus` until there are `vocab_size` tokens (at least 256): each
    /// step merges the most frequent adjacent pair of the current sequence (overlapping
    /// occurrences counted), ties broken by the lowest `(left, right)`. Stops early when
    /// no pair occurs twice, so the vocabulary may come out smaller; read
    /// [`BpeTokenizer::vocab_size`]. Cost `O(len * log(len) * merges)`.
    pub fn train(corpus: &[u8], vocab_size: usize) -> Self {
        let mut tok = Self::bytes_only();
        let mut seq: Vec<u32> = corpus.iter().map(|&b| b as u32).collect();
        while tok.tokens.len() < vocab_size {
            let mut counts: BTreeMap<(u32, u32), usize> = BTreeMap::new();
            for w in seq.windows(2) {
                *counts.entry((w[0], w[1])).or_default() += 1;
            }
            let mut best: Option<((u32, u32), usize)> = None;
            for (&pair, &n) in &counts {
                if best.is_none_or(|(_, m)| n > m) {
                    best = Some((pair, n));
                }
            }
            let Some(((a, b), n)) = best else { break };
            if n < 2 {
                break;
            }
            let c = tok.tokens.len() as u32;
            let bytes = [&tok.tokens[a as usize][..], &tok.tokens[b as usize][..]].concat();
            tok.tokens.push(bytes);
            tok.merges.push((a, b, c));
            seq = merge_pair(&seq, a, b, c);
        }
        tok
    }

    /// [`BpeTokenizer::train`] with `vocab_size - 2` tokens, then `<bos>` and `<eos>`
    /// appended as the last two ids.
    pub fn train_with_specials(corpus: &[u8], vocab_size: usize) -> Self {
        let mut tok = Self::train(corpus, vocab_size.saturating_sub(2));
        tok.add_specials();
        tok
    }

    /// Append `<bos>` and `<eos>` tokens and set their ids.
    pub fn add_specials(&mut self) {
        self.bos_id = Some(self.tokens.len() as u32);
        self.tokens.push(b"<bos>".to_vec());
        self.eos_id = Some(self.tokens.len() as u32);
        self.tokens.push(b"<eos>".to_vec());
    }

    /// Number of tokens (the model's `vocab_size` must equal it).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The header metadata for these tables.
    pub fn meta(&self) -> TokenizerMeta {
        TokenizerMeta {
            kind: TokenizerKind::ByteBpe,
            bytes_len: self.tokens.iter().map(|t| t.len() as u32).sum(),
            n_merges: self.merges.len() as u32,
            bos_id: self.bos_id,
            eos_id: self.eos_id,
        }
    }

    /// The three tables in file layout: concatenated bytes, `vocab + 1` offsets,
    /// flattened merge triples.
    pub fn tables(&self) -> (Vec<u8>, Vec<u32>, Vec<u32>) {
        let bytes: Vec<u8> = self.tokens.concat();
        let mut offsets = Vec::with_capacity(self.tokens.len() + 1);
        let mut at = 0u32;
        offsets.push(at);
        for t in &self.tokens {
            at += t.len() as u32;
            offsets.push(at);
        }
        let merges = self.merges.iter().flat_map(|&(a, b, c)| [a, b, c]).collect();
        (bytes, offsets, merges)
    }

    /// Set `w.tokenizer` and add `tokenizer.bytes` `[bytes_len, 1]` u8,
    /// `tokenizer.offsets` `[vocab + 1, 1]` u32 and `tokenizer.merges` `[n_merges, 3]` u32.
    pub fn write_into(&self, w: &mut ModelWriter) {
        let (bytes, offsets, merges) = self.tables();
        w.tokenizer = self.meta();
        w.add_raw(TensorId::global(TensorKind::TokBytes), DType::U8, [bytes.len() as u32, 1], bytes);
        w.add_u32(TensorId::global(TensorKind::TokOffsets), &offsets, 1);
        w.add_u32(TensorId::global(TensorKind::TokMerges), &merges, 3);
    }

    /// Reference encoder (see the module docs); `Err(byte)` for a byte without a
    /// single-byte token (the lowest such id is used for each byte).
    pub fn encode(&self, text: &[u8]) -> Result<Vec<u32>, u8> {
        let mut byte_id = [None; 256];
        for (id, t) in self.tokens.iter().enumerate().rev() {
            if let [b] = t[..] {
                byte_id[b as usize] = Some(id as u32);
            }
        }
        let mut seq = text.iter().map(|&b| byte_id[b as usize].ok_or(b)).collect::<Result<Vec<u32>, u8>>()?;
        let mut rank: HashMap<(u32, u32), usize> = HashMap::new();
        for (r, &(a, b, _)) in self.merges.iter().enumerate() {
            rank.entry((a, b)).or_insert(r);
        }
        loop {
            let best = seq.windows(2).filter_map(|w| rank.get(&(w[0], w[1])).copied()).min();
            let Some(r) = best else { return Ok(seq) };
            let (a, b, c) = self.merges[r];
            seq = merge_pair(&seq, a, b, c);
        }
    }

    /// Reference decoder: the concatenated byte strings; `None` for an id out of range.
    pub fn decode(&self, ids: &[u32]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.tokens.get(id as usize)?);
        }
        Some(out)
    }
}
