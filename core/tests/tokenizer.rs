//! `spark_core::tokenizer` over hand-built tables (no trainer needed): `encode` against a
//! naive allocating reference (GPT-2 `bpe()` semantics) on random ordered, shuffled and
//! duplicated merge tables, round trips, every error, and `Utf8Stream` against
//! `String::from_utf8_lossy`. Trained tables inside `.spark` files are tested in
//! `tests/tokenizer.rs` (the top-level `spark-tests` package).

use proptest::prelude::*;
use spark_core::tokenizer::{Tokenizer, TokenizerError, Utf8Stream};
use std::collections::HashMap;

/// Tables in file layout, owned.
struct Tables {
    tokens: Vec<Vec<u8>>,
    merges: Vec<(u32, u32, u32)>,
    bytes: Vec<u8>,
    offsets: Vec<u8>,
    merge_bytes: Vec<u8>,
}

impl Tables {
    fn new(tokens: Vec<Vec<u8>>, merges: Vec<(u32, u32, u32)>) -> Self {
        let bytes = tokens.concat();
        let mut offsets = vec![0u32];
        for t in &tokens {
            offsets.push(offsets.last().unwrap() + t.len() as u32);
        }
        let offsets = offsets.iter().flat_map(|x| x.to_le_bytes()).collect();
        let merge_bytes = merges.iter().flat_map(|&(a, b, c)| [a, b, c]).flat_map(|x: u32| x.to_le_bytes()).collect();
        Tables { tokens, merges, bytes, offsets, merge_bytes }
    }
    fn tok(&self, bos: Option<u32>, eos: Option<u32>) -> Tokenizer<'_> {
        Tokenizer::from_tables(&self.bytes, &self.offsets, &self.merge_bytes, bos, eos).expect("valid tables")
    }
    fn try_tok(&self) -> Result<Tokenizer<'_>, TokenizerError> {
        Tokenizer::from_tables(&self.bytes, &self.offsets, &self.merge_bytes, None, None)
    }

    /// GPT-2 `bpe()` over the whole text: lowest-rank pair present (first row of a pair),
    /// all its non-overlapping occurrences left to right, repeat.
    fn reference(&self, text: &[u8]) -> Result<Vec<u32>, u8> {
        let mut byte_id = [None; 256];
        for (id, t) in self.tokens.iter().enumerate().rev() {
            if let [b] = t[..] {
                byte_id[b as usize] = Some(id as u32);
            }
        }
        let mut seq: Vec<u32> = text.iter().map(|&b| byte_id[b as usize].ok_or(b)).collect::<Result<_, _>>()?;
        let mut rank = HashMap::new();
        for (r, &(a, b, _)) in self.merges.iter().enumerate() {
            rank.entry((a, b)).or_insert(r);
        }
        while let Some(r) = seq.windows(2).filter_map(|w| rank.get(&(w[0], w[1])).copied()).min() {
            let (a, b, c) = self.merges[r];
            let mut out = Vec::new();
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
            seq = out;
        }
        Ok(seq)
    }
}

struct Mix(u64);
impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// New result ids in rank order: `is_ordered`.
    Ordered,
    /// Same merges, rows shuffled.
    Shuffled,
    /// Shuffled, with repeated pairs and results that reuse equal-bytes tokens.
    Messy,
}

const ALPHABET: &[u8] = b"abcd";

/// 256 byte tokens at permuted ids (plus a few junk tokens), then `n` merges built over the
/// alphabet `abcd` so they fire on texts from it.
fn random_tables(seed: u64, n: usize, shape: Shape) -> Tables {
    let mut rng = Mix(seed);
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    if !matches!(shape, Shape::Ordered) {
        for i in (1..tokens.len()).rev() {
            tokens.swap(i, rng.below(i + 1));
        }
        tokens.insert(rng.below(256), b"junk".to_vec());
        tokens.insert(rng.below(256), Vec::new());
    }
    let mut useful: Vec<u32> =
        ALPHABET.iter().map(|&c| tokens.iter().position(|t| t[..] == [c]).unwrap() as u32).collect();
    let mut merges = Vec::new();
    while merges.len() < n {
        let a = useful[rng.below(useful.len())];
        let b = useful[rng.below(useful.len())];
        let bytes = [&tokens[a as usize][..], &tokens[b as usize][..]].concat();
        let existing = tokens.iter().position(|t| *t == bytes);
        let c = match (shape, existing) {
            (Shape::Messy, Some(e)) if rng.below(2) == 0 => e as u32,
            _ => {
                tokens.push(bytes);
                useful.push(tokens.len() as u32 - 1);
                tokens.len() as u32 - 1
            }
        };
        merges.push((a, b, c));
        if matches!(shape, Shape::Messy) && rng.below(8) == 0 {
            let (a2, b2, _) = merges[rng.below(merges.len())];
            let bytes = [&tokens[a2 as usize][..], &tokens[b2 as usize][..]].concat();
            tokens.push(bytes);
            merges.push((a2, b2, tokens.len() as u32 - 1));
        }
    }
    if !matches!(shape, Shape::Ordered) {
        for i in (1..merges.len()).rev() {
            merges.swap(i, rng.below(i + 1));
        }
    }
    Tables::new(tokens, merges)
}

fn encode_vec(tok: &Tokenizer<'_>, text: &[u8]) -> Result<Vec<u32>, TokenizerError> {
    let mut out = vec![0u32; text.len()];
    let n = tok.encode(text, &mut out)?;
    out.truncate(n);
    Ok(out)
}

fn decode_vec(tok: &Tokenizer<'_>, ids: &[u32]) -> Vec<u8> {
    let needed = ids.iter().map(|&id| tok.decode_token(id).unwrap().len()).sum();
    let mut out = vec![0u8; needed];
    let n = tok.decode(ids, &mut out).expect("decodes");
    assert_eq!(n, needed);
    out.truncate(n);
    out
}

fn text_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(proptest::sample::select(ALPHABET.to_vec()), 0..80),
        proptest::collection::vec(any::<u8>(), 0..80),
        proptest::collection::vec(proptest::sample::select(b"aab\xff".to_vec()), 0..80),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn encode_matches_reference_on_ordered_tables(seed in any::<u64>(), n in 0usize..60, text in text_strategy()) {
        let t = random_tables(seed, n, Shape::Ordered);
        let tok = t.tok(None, None);
        prop_assert!(tok.is_ordered());
        let ids = encode_vec(&tok, &text).unwrap();
        prop_assert_eq!(&ids, &t.reference(&text).unwrap());
        prop_assert_eq!(decode_vec(&tok, &ids), text);
    }

    #[test]
    fn encode_matches_reference_on_shuffled_tables(seed in any::<u64>(), n in 0usize..60, text in text_strategy()) {
        let t = random_tables(seed, n, Shape::Shuffled);
        let tok = t.tok(None, None);
        let ids = encode_vec(&tok, &text).unwrap();
        prop_assert_eq!(&ids, &t.reference(&text).unwrap());
        prop_assert_eq!(decode_vec(&tok, &ids), text);
    }

    #[test]
    fn encode_matches_reference_on_messy_tables(seed in any::<u64>(), n in 0usize..60, text in text_strategy()) {
        let t = random_tables(seed, n, Shape::Messy);
        let tok = t.tok(None, None);
        let ids = encode_vec(&tok, &text).unwrap();
        prop_assert_eq!(&ids, &t.reference(&text).unwrap());
        prop_assert_eq!(decode_vec(&tok, &ids), text);
    }

    #[test]
    fn utf8_stream_matches_lossy(bytes in proptest::collection::vec(
        prop_oneof![any::<u8>(), proptest::sample::select(vec![0xC3u8, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, b'a'])],
        0..64), cuts in proptest::collection::vec(0usize..64, 0..8)) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut s = Utf8Stream::new();
        let mut text = String::new();
        for w in cuts.windows(2) {
            s.push(&bytes[w[0]..w[1]], &mut |p: &str| text.push_str(p));
            prop_assert!(s.pending().len() <= 3);
        }
        s.finish(&mut |p: &str| text.push_str(p));
        prop_assert_eq!(text, String::from_utf8_lossy(&bytes).into_owned());
    }
}

#[test]
fn ordered_detection() {
    let t = random_tables(5, 40, Shape::Shuffled);
    assert!(!t.tok(None, None).is_ordered(), "a shuffled table is not rank-ordered");
    let bytes_only = Tables::new((0..=255u8).map(|b| vec![b]).collect(), vec![]);
    assert!(bytes_only.tok(None, None).is_ordered());
}

/// A table where a merge creates a token that a lower-rank merge consumes: the walk must
/// go back (GPT-2 semantics), unlike a single pass in rank order.
#[test]
fn back_reference_goes_back() {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.push(b"abc".to_vec()); // 256
    tokens.push(b"bc".to_vec()); // 257
    tokens.push(b"abcd".to_vec()); // 258
                                   // rank 0: (abc, d) -> abcd, rank 1: (b, c) -> bc, rank 2: (a, bc) -> abc
    let merges = vec![(256, b'd' as u32, 258), (b'b' as u32, b'c' as u32, 257), (b'a' as u32, 257, 256)];
    let t = Tables::new(tokens, merges);
    let tok = t.tok(None, None);
    assert!(!tok.is_ordered());
    assert_eq!(encode_vec(&tok, b"abcd").unwrap(), vec![258]);
    assert_eq!(t.reference(b"abcd").unwrap(), vec![258]);
    assert_eq!(encode_vec(&tok, b"abcdxabc").unwrap(), vec![258, b'x' as u32, 256]);
}

#[test]
fn all_256_byte_tokens() {
    let t = random_tables(9, 30, Shape::Shuffled);
    let tok = t.tok(None, None);
    let all: Vec<u8> = (0..=255u8).collect();
    for b in 0..=255u8 {
        let id = tok.byte_token(b).expect("every byte has a token");
        assert_eq!(tok.decode_token(id).unwrap(), &[b]);
        assert_eq!(encode_vec(&tok, &[b]).unwrap(), vec![id]);
    }
    let ids = encode_vec(&tok, &all).unwrap();
    assert_eq!(decode_vec(&tok, &ids), all);
}

#[test]
fn lowest_id_single_byte_token_wins() {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.push(b"a".to_vec());
    let t = Tables::new(tokens, vec![]);
    assert_eq!(t.tok(None, None).byte_token(b'a'), Some(b'a' as u32));
}

#[test]
fn unknown_byte() {
    let tokens: Vec<Vec<u8>> = (1..=255u8).map(|b| vec![b]).collect();
    let t = Tables::new(tokens, vec![]);
    let tok = t.tok(None, None);
    assert_eq!(tok.byte_token(0), None);
    assert_eq!(encode_vec(&tok, b"ab\0c"), Err(TokenizerError::UnknownByte(0)));
    assert_eq!(t.reference(b"ab\0c"), Err(0));
}

#[test]
fn empty_text() {
    let t = random_tables(1, 10, Shape::Ordered);
    let tok = t.tok(None, None);
    assert_eq!(tok.encode(b"", &mut []), Ok(0));
    assert_eq!(tok.decode(&[], &mut []), Ok(0));
}

#[test]
fn invalid_ids() {
    let t = random_tables(2, 10, Shape::Ordered);
    let tok = t.tok(None, None);
    let v = tok.vocab_size();
    assert_eq!(v as usize, t.tokens.len());
    assert_eq!(tok.decode_token(v), Err(TokenizerError::InvalidId { id: v, vocab: v }));
    assert_eq!(tok.decode_token(u32::MAX), Err(TokenizerError::InvalidId { id: u32::MAX, vocab: v }));
    let mut out = [0xAAu8; 64];
    assert_eq!(tok.decode(&[b'a' as u32, v + 7], &mut out), Err(TokenizerError::InvalidId { id: v + 7, vocab: v }));
    assert!(out.iter().all(|&b| b == 0xAA), "nothing written on error");
    assert_eq!(tok.merge(tok.n_merges()), None);
    assert!(tok.merge(0).is_some());
}

#[test]
fn small_buffers() {
    let t = random_tables(3, 20, Shape::Ordered);
    let tok = t.tok(Some(b'x' as u32), None);
    let text = b"abcabcdd";
    let mut out = vec![0u32; text.len() - 1];
    assert_eq!(tok.encode(text, &mut out), Err(TokenizerError::BufferTooSmall { needed: 8, available: 7 }));
    assert_eq!(tok.encode_with_bos(text, &mut [0; 8]), Err(TokenizerError::BufferTooSmall { needed: 9, available: 8 }));
    assert_eq!(tok.encode_with_bos(text, &mut []), Err(TokenizerError::BufferTooSmall { needed: 9, available: 0 }));
    let ids = encode_vec(&tok, text).unwrap();
    let mut bytes = vec![0u8; text.len() - 1];
    assert_eq!(tok.decode(&ids, &mut bytes), Err(TokenizerError::BufferTooSmall { needed: 8, available: 7 }));
    let mut bytes = vec![0u8; text.len()];
    assert_eq!(tok.decode(&ids, &mut bytes), Ok(8));
    assert_eq!(&bytes, text);
}

#[test]
fn bos() {
    let t = random_tables(4, 20, Shape::Ordered);
    let bos = t.tokens.len() as u32 - 1;
    let tok = t.tok(Some(bos), Some(0));
    assert_eq!(tok.bos_id(), Some(bos));
    assert_eq!(tok.eos_id(), Some(0));
    let mut out = vec![0u32; 6];
    let n = tok.encode_with_bos(b"abcab", &mut out).unwrap();
    let plain = encode_vec(&tok, b"abcab").unwrap();
    assert_eq!(out[0], bos);
    assert_eq!(&out[1..n], &plain[..]);
    assert_eq!(t.tok(None, None).encode_with_bos(b"a", &mut [0; 2]), Err(TokenizerError::NoBos));
}

#[test]
fn bad_tables() {
    let bad = |t: &Tables| match t.try_tok() {
        Err(TokenizerError::BadTable { .. }) => {}
        other => panic!("expected BadTable, got {other:?}"),
    };
    let ok = random_tables(6, 10, Shape::Ordered);
    let mut t = Tables::new(ok.tokens.clone(), ok.merges.clone());
    t.offsets.pop();
    bad(&t); // not a u32 array
    let mut t = Tables::new(ok.tokens.clone(), ok.merges.clone());
    t.offsets.clear();
    bad(&t); // empty
    let mut t = Tables::new(ok.tokens.clone(), ok.merges.clone());
    t.bytes.push(0);
    bad(&t); // last offset != bytes length
    let mut t = Tables::new(ok.tokens.clone(), ok.merges.clone());
    t.offsets[0] = 1;
    bad(&t); // offsets don't start at 0
    let mut t = Tables::new(ok.tokens.clone(), ok.merges.clone());
    t.offsets[8..12].copy_from_slice(&0u32.to_le_bytes());
    bad(&t); // decreasing
    let mut t = Tables::new(ok.tokens.clone(), ok.merges.clone());
    t.merge_bytes.pop();
    bad(&t); // not triples
    let v = ok.tokens.len() as u32;
    let mut merges = ok.merges.clone();
    merges[0].2 = v;
    bad(&Tables::new(ok.tokens.clone(), merges)); // result id out of range
    let mut merges = ok.merges.clone();
    merges[0].2 = b'z' as u32;
    bad(&Tables::new(ok.tokens.clone(), merges)); // result bytes != left ++ right
    let mut merges = ok.merges.clone();
    (merges[0].0, merges[0].1) = (merges[0].1, merges[0].0);
    if ok.tokens[merges[0].0 as usize] != ok.tokens[merges[0].1 as usize] {
        bad(&Tables::new(ok.tokens.clone(), merges)); // swapped inputs
    }
    let e = Tokenizer::from_tables(&ok.bytes, &ok.offsets, &ok.merge_bytes, Some(v), None).unwrap_err();
    assert!(matches!(e, TokenizerError::BadTable { .. }));
    let e = Tokenizer::from_tables(&ok.bytes, &ok.offsets, &ok.merge_bytes, None, Some(u32::MAX)).unwrap_err();
    assert!(matches!(e, TokenizerError::BadTable { .. }));
}

#[test]
fn long_text_is_practical() {
    let t = random_tables(8, 300, Shape::Ordered);
    let tok = t.tok(None, None);
    let mut rng = Mix(1);
    let mut text = Vec::new();
    while text.len() < 20_000 {
        let id = 256 + rng.below(t.tokens.len() - 256); // a merge result: its bytes re-merge
        text.extend_from_slice(&t.tokens[id]);
    }
    let ids = encode_vec(&tok, &text).unwrap();
    assert_eq!(ids, t.reference(&text).unwrap());
    assert!(ids.len() < text.len() / 3, "merges fire: {} tokens", ids.len());
    assert_eq!(decode_vec(&tok, &ids), text);
}

#[test]
fn utf8_stream_examples() {
    let run = |chunks: &[&[u8]]| {
        let mut s = Utf8Stream::new();
        let mut out = String::new();
        for c in chunks {
            s.push(c, &mut |p: &str| out.push_str(p));
        }
        s.finish(&mut |p: &str| out.push_str(p));
        out
    };
    assert_eq!(run(&[b"\xF0\x9F", b"\x98", b"\x80ok"]), "\u{1F600}ok");
    assert_eq!(run(&[b"a\xE2\x82", b"x"]), "a\u{FFFD}x");
    assert_eq!(run(&[b"a\xE2"]), "a\u{FFFD}");
    assert_eq!(run(&[b"\xFF", b"\xC3", b"\xA9"]), "\u{FFFD}\u{e9}");
}

#[test]
fn errors_display() {
    for e in [
        TokenizerError::NoTokenizer,
        TokenizerError::BadTable { reason: "x" },
        TokenizerError::InvalidId { id: 9, vocab: 3 },
        TokenizerError::BufferTooSmall { needed: 2, available: 1 },
        TokenizerError::UnknownByte(0xFF),
        TokenizerError::NoBos,
    ] {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(TokenizerError::UnknownByte(0xFF).to_string(), "byte 0xff has no single-byte token");
}

/// The shuffled tables above have teeth: on some of them a single walk over the ranks (no
/// going back) gives a different encoding than the reference, which `encode` matches.
#[test]
fn shuffled_tables_need_going_back() {
    let single_pass = |t: &Tables, text: &[u8]| {
        let mut seq: Vec<u32> = t.reference(&[]).unwrap();
        seq.extend(text.iter().map(|&b| t.tokens.iter().position(|x| x[..] == [b]).unwrap() as u32));
        for &(a, b, c) in &t.merges {
            let mut out = Vec::new();
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
            seq = out;
        }
        seq
    };
    let mut differ = 0;
    let mut rng = Mix(77);
    for seed in 0..200 {
        let t = random_tables(seed, 40, Shape::Shuffled);
        let text: Vec<u8> = (0..40).map(|_| ALPHABET[rng.below(4)]).collect();
        let want = t.reference(&text).unwrap();
        assert_eq!(encode_vec(&t.tok(None, None), &text).unwrap(), want);
        differ += (single_pass(&t, &text) != want) as usize;
    }
    assert!(differ > 10, "only {differ} of 200 shuffled tables need going back");
}
