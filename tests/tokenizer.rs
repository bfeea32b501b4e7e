//! Byte-level BPE end to end: the `spark-sim` trainer, its tables written into `.spark`
//! files through `ModelWriter::finish` and read back by `Model::load` and
//! `spark_core::tokenizer::Tokenizer`, whose no-alloc `encode` must equal the naive
//! reference `BpeTokenizer::encode` on arbitrary text.

use proptest::prelude::*;
use spark_core::tokenizer::{Tokenizer, TokenizerError};
use spark_core::{Model, ModelError, TensorKind};
use spark_sim::format::parse_table;
use spark_sim::testmodel::{random_model, random_writer, small_spark_config};
use spark_sim::tokenizer::BpeTokenizer;
use std::sync::OnceLock;

const CORPUS: &str = "Spark Transformers reactivate sparsity in the feed-forward network and in attention. \
Only about eight percent of the FFN neurons are active per token, and each token attends to at most \
256 keys. The statistical top-k operator keeps the entries above mean plus z times std. \
Ça marche aussi en français, avec des accents: é, è, à, ü, ß, 日本語のテキスト, emoji 🙂🙂. \
The the the then there these those; transformer transformers transforming. ";

fn corpus() -> Vec<u8> {
    CORPUS.repeat(3).into_bytes()
}

/// The trained tokenizer and a `.spark` file holding it (trained once per test binary).
fn trained() -> &'static (BpeTokenizer, Vec<u8>) {
    static T: OnceLock<(BpeTokenizer, Vec<u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let bpe = BpeTokenizer::train_with_specials(&corpus(), 420);
        (bpe.clone(), model_with(&bpe))
    })
}

fn model_with(bpe: &BpeTokenizer) -> Vec<u8> {
    let cfg = spark_core::Config { vocab_size: bpe.vocab_size() as u32, ..small_spark_config() };
    let mut w = random_writer(&cfg, 3);
    bpe.write_into(&mut w);
    w.finish()
}

fn encode(tok: &Tokenizer<'_>, text: &[u8]) -> Vec<u32> {
    let mut out = vec![0; text.len()];
    let n = tok.encode(text, &mut out).expect("encodes");
    out.truncate(n);
    out
}

fn decode(tok: &Tokenizer<'_>, ids: &[u32]) -> Vec<u8> {
    let mut out = vec![0; ids.iter().map(|&i| tok.decode_token(i).unwrap().len()).sum()];
    let n = tok.decode(ids, &mut out).expect("decodes");
    assert_eq!(n, out.len());
    out
}

#[test]
fn trainer_shape() {
    let (bpe, _) = trained();
    assert_eq!(bpe.vocab_size(), 420);
    for b in 0..=255u8 {
        assert_eq!(bpe.tokens[b as usize], [b]);
    }
    assert_eq!(bpe.merges.len(), 420 - 256 - 2);
    for (r, &(a, b, c)) in bpe.merges.iter().enumerate() {
        assert_eq!(c as usize, 256 + r, "results in rank order");
        assert!(a < c && b < c);
        assert_eq!(bpe.tokens[c as usize], [&bpe.tokens[a as usize][..], &bpe.tokens[b as usize][..]].concat());
    }
    assert_eq!(bpe.bos_id, Some(418));
    assert_eq!(bpe.eos_id, Some(419));
    assert_eq!(bpe.tokens[418], b"<bos>");
    // Deterministic; ties broken by the lowest pair: on "abab.." both (a,b) and (b,a)
    // occur, (a,b) more often, then ties resolved by the smaller pair.
    assert_eq!(BpeTokenizer::train(&corpus(), 300), BpeTokenizer::train(&corpus(), 300));
    let t = BpeTokenizer::train(b"xyxyzz", 300);
    assert_eq!(t.merges[0], (b'x' as u32, b'y' as u32, 256));
    let t = BpeTokenizer::train(b"bacdbacd", 257);
    assert_eq!(t.merges, vec![(b'a' as u32, b'c' as u32, 256)], "four pairs occur twice: the lowest wins");
    // Stops when no pair repeats.
    assert_eq!(BpeTokenizer::train(b"abc", 1000).vocab_size(), 256);
}

#[test]
fn through_the_model_file() {
    let (bpe, blob) = trained();
    let model = Model::load(blob).expect("loads");
    assert_eq!(*model.tokenizer_meta(), bpe.meta());
    let (bytes, offsets, merges) = bpe.tables();
    assert_eq!(model.global_bytes(TensorKind::TokBytes), &bytes[..]);
    assert_eq!(model.global_bytes(TensorKind::TokOffsets).len(), 4 * offsets.len());
    assert_eq!(model.global_bytes(TensorKind::TokMerges).len(), 4 * merges.len());
    let tok = Tokenizer::new(&model).expect("tokenizer");
    assert!(tok.is_ordered());
    assert_eq!(tok.vocab_size() as usize, bpe.vocab_size());
    assert_eq!(tok.n_merges() as usize, bpe.merges.len());
    assert_eq!((tok.bos_id(), tok.eos_id()), (bpe.bos_id, bpe.eos_id));
    for id in 0..tok.vocab_size() {
        assert_eq!(tok.decode_token(id).unwrap(), &bpe.tokens[id as usize][..]);
    }
    for b in 0..=255u8 {
        assert_eq!(tok.byte_token(b), Some(b as u32));
    }
    // The training text compresses, round trips and matches the reference.
    let text = corpus();
    let ids = encode(&tok, &text);
    assert_eq!(ids, bpe.encode(&text).unwrap());
    assert!(ids.len() * 3 < text.len(), "{} tokens for {} bytes", ids.len(), text.len());
    assert_eq!(decode(&tok, &ids), text);
    // Specials: BOS first, EOS decodes to its string; "<bos>" in text is plain bytes.
    let mut out = vec![0; 6];
    let n = tok.encode_with_bos(b"<bos>", &mut out).unwrap();
    assert_eq!(out[0], 418);
    assert!(!out[1..n].contains(&418));
    assert_eq!(tok.decode_token(419).unwrap(), b"<eos>");
    assert_eq!(bpe.decode(&[418, b'!' as u32]).unwrap(), b"<bos>!");
    assert_eq!(bpe.decode(&[420]), None);
}

#[test]
fn model_without_tokenizer() {
    let blob = random_model(&small_spark_config(), 1);
    let model = Model::load(&blob).unwrap();
    assert_eq!(Tokenizer::new(&model).unwrap_err(), TokenizerError::NoTokenizer);
}

#[test]
fn bytes_only_tokenizer() {
    let bpe = BpeTokenizer::bytes_only();
    let blob = model_with(&bpe);
    let model = Model::load(&blob).expect("a tokenizer without merges loads");
    let tok = Tokenizer::new(&model).unwrap();
    assert_eq!(tok.n_merges(), 0);
    let text: Vec<u8> = (0..=255u8).rev().collect();
    let ids = encode(&tok, &text);
    assert_eq!(ids, text.iter().map(|&b| b as u32).collect::<Vec<_>>());
    assert_eq!(decode(&tok, &ids), text);
    assert_eq!(tok.encode_with_bos(b"x", &mut [0; 2]), Err(TokenizerError::NoBos));
}

/// A merge whose result bytes are not left ++ right is rejected at load.
#[test]
fn inconsistent_merge_rejected_at_load() {
    let (bpe, _) = trained();
    let mut bad = bpe.clone();
    let last = bad.merges.len() - 1;
    bad.merges[last].2 = bad.merges[0].2; // a valid id, but the wrong bytes
    let blob = model_with(&bad);
    match Model::load(&blob) {
        Err(ModelError::BadTokenizer { reason }) => assert!(reason.contains("merge result bytes"), "{reason}"),
        other => panic!("expected BadTokenizer, got {other:?}"),
    }
    // The same file with the untouched tables loads: the edit is the only difference.
    let good = model_with(bpe);
    Model::load(&good).expect("loads");
    let (h, _, _) = parse_table(&good).unwrap();
    assert_eq!(h.tokenizer, bpe.meta());
}

#[test]
fn invalid_ids_and_small_buffers() {
    let (_, blob) = trained();
    let model = Model::load(blob).unwrap();
    let tok = Tokenizer::new(&model).unwrap();
    assert_eq!(tok.decode_token(420), Err(TokenizerError::InvalidId { id: 420, vocab: 420 }));
    assert_eq!(tok.decode(&[1, 2, 420], &mut [0; 16]), Err(TokenizerError::InvalidId { id: 420, vocab: 420 }));
    assert_eq!(tok.encode(b"hello", &mut [0; 4]), Err(TokenizerError::BufferTooSmall { needed: 5, available: 4 }));
    let ids = encode(&tok, b"the transformers");
    let len = b"the transformers".len();
    assert_eq!(
        tok.decode(&ids, &mut vec![0; len - 1]),
        Err(TokenizerError::BufferTooSmall { needed: len, available: len - 1 })
    );
}

/// GPT-2's `bpe()` (all occurrences of the lowest-rank pair per step) and the
/// priority-queue form (one leftmost lowest-rank occurrence per step, as Hugging Face
/// `tokenizers`) agree on trained tables, which is why either is "standard BPE" here.
#[test]
fn reference_agrees_with_one_merge_at_a_time() {
    let (bpe, _) = trained();
    let rank: std::collections::HashMap<(u32, u32), usize> =
        bpe.merges.iter().enumerate().rev().map(|(r, &(a, b, _))| ((a, b), r)).collect();
    let one_at_a_time = |text: &[u8]| {
        let mut seq: Vec<u32> = text.iter().map(|&b| b as u32).collect();
        loop {
            let best =
                (0..seq.len().saturating_sub(1)).filter_map(|i| rank.get(&(seq[i], seq[i + 1])).map(|&r| (r, i))).min();
            let Some((r, i)) = best else { return seq };
            seq[i] = bpe.merges[r].2;
            seq.remove(i + 1);
        }
    };
    let text = corpus();
    for start in (0..text.len()).step_by(97) {
        let piece = &text[start..(start + 150).min(text.len())];
        assert_eq!(bpe.encode(piece).unwrap(), one_at_a_time(piece));
    }
}

fn text_strategy() -> impl Strategy<Value = Vec<u8>> {
    let words: Vec<&'static str> = CORPUS.split(' ').collect();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(proptest::sample::select(words), 0..30).prop_map(|w| w.join(" ").into_bytes()),
        (0..CORPUS.len(), 0..300usize).prop_map(|(s, n)| corpus()[s..(s + n).min(corpus().len())].to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn encode_equals_reference(text in text_strategy()) {
        let (bpe, blob) = trained();
        let model = Model::load(blob).unwrap();
        let tok = Tokenizer::new(&model).unwrap();
        let ids = encode(&tok, &text);
        prop_assert_eq!(&ids, &bpe.encode(&text).unwrap());
        prop_assert_eq!(decode(&tok, &ids), text.clone());
        prop_assert_eq!(bpe.decode(&ids).unwrap(), text);
    }

    #[test]
    fn round_trip_arbitrary_bytes(text in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (_, blob) = trained();
        let model = Model::load(blob).unwrap();
        let tok = Tokenizer::new(&model).unwrap();
        prop_assert_eq!(decode(&tok, &encode(&tok, &text)), text);
    }
}
