#!/usr/bin/env python3
"""Tests of train/bpe.py: the vectorised trainer / encoder against plain-Python statements
of the same definition, the JSON format, round trips. Plain asserts, runnable as a script."""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import BPE  # noqa: E402

TEXTS = [
    "Ownership is a set of rules that govern how a Rust program manages memory. "
    "aaaa aaa aa a bbbbbb abababab the the the theme thesis",
    "fn main() {\n    let s = String::from(\"hello\");\n    println!(\"{s}\");\n}\n",
    "Größe — “quotes” 日本語 🦀🦀🦀 zzzzzzzzz",
]


def test_runs_non_overlapping():
    tok = BPE([(97, 97, 256)])
    assert tok.encode("aaa") == [256, 97]
    assert tok.encode("aaaa") == [256, 256]
    assert tok.encode("aaaaa") == [256, 256, 97]
    assert tok.encode("baaab") == [98, 256, 97, 98]
    tok = BPE([(97, 97, 256), (256, 256, 257)])
    assert tok.encode("aaaaaaaaa") == [257, 257, 97]


def test_tie_break_lowest_pair():
    # pairs (a,b) and (c,d) both occur twice; (97,98) < (99,100) wins
    tok = BPE.train([b"cdab", b"abcd"], 256 + 1, specials=())
    assert tok.merges == [(97, 98, 256)], tok.merges
    # overlapping counts: "aaa" holds (a,a) twice, beats (b,c) once... and lower pair wins ties
    tok = BPE.train([b"aaa", b"bc"], 256 + 1, specials=())
    assert tok.merges == [(97, 97, 256)]


def test_fast_equals_slow():
    rng = random.Random(7)
    docs = [t.encode("utf-8") for t in TEXTS]
    docs += [bytes(rng.choice(b"abc ") for _ in range(300)) for _ in range(3)]
    fast = BPE.train(docs, 256 + 60 + 2)
    slow = BPE.train_slow(docs, 256 + 60 + 2)
    assert fast.merges == slow.merges
    for d in docs + [b"abcabc aaaa", "the thesis".encode()]:
        assert fast.encode(d) == fast.encode_slow(d)
        assert fast.decode_bytes(fast.encode(d)) == d
    # the training result equals encoding each document
    assert fast.vocab_size == 256 + 60 + 2 and fast.bos_id == 316 and fast.eos_id == 317


def test_json_roundtrip():
    docs = [t.encode("utf-8") for t in TEXTS]
    tok = BPE.train(docs, 300)
    with tempfile.TemporaryDirectory() as td:
        p = os.path.join(td, "tok.json")
        tok.save(p)
        j = json.load(open(p))
        assert set(j) == {"tokens", "merges", "bos_id", "eos_id"}
        assert len(j["tokens"]) == 300 and j["tokens"][j["bos_id"]] == list(b"<bos>")
        assert j["tokens"][j["eos_id"]] == list(b"<eos>")
        for a, b, r in j["merges"]:
            assert j["tokens"][r] == j["tokens"][a] + j["tokens"][b]
        tok2 = BPE.load(p)
        assert tok2.merges == tok.merges and tok2.tokens == tok.tokens
        s = "Ownership is 🦀"
        assert tok2.encode(s, bos=True, eos=True) == [tok.bos_id] + tok.encode(s) + [tok.eos_id]


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    for t in tests:
        print(t.__name__)
        t()
    print(f"OK ({len(tests)} tests)")


if __name__ == "__main__":
    main()
