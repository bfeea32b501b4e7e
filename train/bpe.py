#!/usr/bin/env python3
"""Byte-level BPE with no pre-tokenization (the format the Rust side embeds).

Definition (kept exactly as the Rust encoder implements it):

* ids 0..255 are the single bytes;
* training: repeatedly take the most frequent adjacent pair of ids in the training
  sequence(s) (ties: the lowest (left, right) pair), create a new id for it (256, 257, ...
  in rank order) and replace its occurrences left to right (non-overlapping: in a run
  ``a a a`` of the pair (a, a) only the first two merge);
  the frequency of a pair is the number of adjacent positions holding it (overlapping
  occurrences counted, as in the classic BPE count); pairs never cross document
  boundaries (each document is its own sequence);
* encode: start from the UTF-8 bytes and apply the merges in rank order, each merge across
  the whole sequence left to right (non-overlapping);
* optional special tokens ``<bos>`` / ``<eos>`` get the ids after the merges; they are
  never produced by encode (the caller adds them) and decode to their UTF-8 names.

JSON file::

    {"tokens": [[byte values] per id], "merges": [[left, right, result], ...] (rank order),
     "bos_id": int | null, "eos_id": int | null}

Training is vectorised with numpy: each merge step recounts all pairs with one
``np.bincount`` over pair codes and applies the merge with array operations, so a few
hundred merges on ~1 MB take seconds. ``train_slow`` is a plain-Python version of the same
definition used by the tests.

Usage:
    python train/bpe.py train --input train/out/train.txt --vocab-size 1024 --out models/tokenizer.json
    python train/bpe.py encode --tokenizer models/tokenizer.json "Ownership is"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Iterable, List, Optional

import numpy as np

SEP = -1  # document separator inside the training array (never part of a pair)


def _merge_array(arr: np.ndarray, a: int, b: int, new: int) -> np.ndarray:
    """Replace the occurrences of (a, b) in arr by new, left to right, non-overlapping."""
    if arr.shape[0] < 2:
        return arr
    m = (arr[:-1] == a) & (arr[1:] == b)
    if not m.any():
        return arr
    pos = np.flatnonzero(m)
    if a == b:
        # runs of consecutive candidate positions: keep offsets 0, 2, 4, ... within a run
        starts = np.ones(pos.shape[0], dtype=bool)
        starts[1:] = pos[1:] != pos[:-1] + 1
        run_id = np.cumsum(starts) - 1
        run_start = pos[starts][run_id]
        pos = pos[((pos - run_start) % 2) == 0]
    out = arr.copy()
    out[pos] = new
    keep = np.ones(arr.shape[0], dtype=bool)
    keep[pos + 1] = False
    return out[keep]


class BPE:
    def __init__(self, merges: Optional[List[tuple]] = None, specials: Iterable[str] = ()):
        self.merges = [tuple(int(v) for v in m) for m in (merges or [])]
        self.tokens: List[bytes] = [bytes([i]) for i in range(256)]
        for rank, (a, b, r) in enumerate(self.merges):
            assert r == 256 + rank, (rank, a, b, r)
            assert a < r and b < r
            self.tokens.append(self.tokens[a] + self.tokens[b])
        self.bos_id = None
        self.eos_id = None
        for s in specials:
            self.add_special(s)

    def add_special(self, name: str) -> int:
        i = len(self.tokens)
        self.tokens.append(name.encode("utf-8"))
        if name == "<bos>":
            self.bos_id = i
        elif name == "<eos>":
            self.eos_id = i
        else:
            raise ValueError(f"unknown special token {name!r}")
        return i

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # -- training ---------------------------------------------------------------------
    @classmethod
    def train(cls, docs: List[bytes], vocab_size: int, specials=("<bos>", "<eos>"),
              verbose: bool = False) -> "BPE":
        n_merges = vocab_size - 256 - len(specials)
        assert n_merges >= 0
        parts = []
        for d in docs:
            parts.append(np.frombuffer(d, dtype=np.uint8).astype(np.int64))
            parts.append(np.array([SEP], dtype=np.int64))
        arr = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        merges = []
        nid = 256
        t0 = time.time()
        for rank in range(n_merges):
            if arr.shape[0] < 2:
                break
            left, right = arr[:-1], arr[1:]
            valid = (left != SEP) & (right != SEP)
            base = nid  # ids in use: 0 .. nid-1
            codes = left[valid] * base + right[valid]
            if codes.shape[0] == 0:
                break
            counts = np.bincount(codes, minlength=base * base)
            best = int(np.argmax(counts))  # first maximum = lowest code = lowest (left, right)
            if counts[best] < 1:
                break
            a, b = divmod(best, base)
            merges.append((a, b, nid))
            arr = _merge_array(arr, a, b, nid)
            nid += 1
            if verbose and (rank % 100 == 0 or rank == n_merges - 1):
                print(f"  merge {rank:4d}: ({a},{b}) -> {nid - 1} count {int(counts[best])} "
                      f"len {arr.shape[0]} [{time.time() - t0:.1f}s]", file=sys.stderr)
        return cls(merges, specials)

    @classmethod
    def train_slow(cls, docs: List[bytes], vocab_size: int, specials=("<bos>", "<eos>")) -> "BPE":
        """Plain-Python statement of the same definition (for tests; quadratic)."""
        seqs = [list(d) for d in docs]
        merges = []
        nid = 256
        for _ in range(vocab_size - 256 - len(specials)):
            counts = {}
            for s in seqs:
                for i in range(len(s) - 1):
                    counts[(s[i], s[i + 1])] = counts.get((s[i], s[i + 1]), 0) + 1
            if not counts:
                break
            best = min(counts, key=lambda p: (-counts[p], p))
            merges.append((best[0], best[1], nid))
            seqs = [cls._merge_list(s, best[0], best[1], nid) for s in seqs]
            nid += 1
        return cls(merges, specials)

    @staticmethod
    def _merge_list(s, a, b, new):
        out = []
        i = 0
        while i < len(s):
            if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                out.append(new)
                i += 2
            else:
                out.append(s[i])
                i += 1
        return out

    # -- encode / decode --------------------------------------------------------------
    def encode(self, text, bos: bool = False, eos: bool = False) -> List[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        for a, b, r in self.merges:
            arr = _merge_array(arr, a, b, r)
        ids = arr.tolist()
        if bos:
            assert self.bos_id is not None
            ids = [self.bos_id] + ids
        if eos:
            assert self.eos_id is not None
            ids = ids + [self.eos_id]
        return ids

    def encode_slow(self, text) -> List[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        s = list(data)
        for a, b, r in self.merges:
            s = self._merge_list(s, a, b, r)
        return s

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.tokens[i] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- file format ------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"tokens": [list(t) for t in self.tokens],
                "merges": [list(m) for m in self.merges],
                "bos_id": self.bos_id, "eos_id": self.eos_id}

    def save(self, path: str) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_json(), fh, separators=(",", ":"))
            fh.write("\n")

    @classmethod
    def load(cls, path: str) -> "BPE":
        with open(path) as fh:
            j = json.load(fh)
        tok = cls(j["merges"])
        n_base = len(tok.tokens)
        for i in range(n_base, len(j["tokens"])):
            name = bytes(j["tokens"][i]).decode("utf-8")
            tok.add_special(name)
        assert tok.bos_id == j["bos_id"] and tok.eos_id == j["eos_id"]
        assert [list(t) for t in tok.tokens] == j["tokens"], "token table inconsistent with merges"
        return tok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--input", required=True, help="text file; documents separated by form feed \\f")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--out", required=True)
    e = sub.add_parser("encode")
    e.add_argument("--tokenizer", required=True)
    e.add_argument("text")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        docs = [d.encode("utf-8") for d in open(args.input, encoding="utf-8").read().split("\f") if d]
        t0 = time.time()
        tok = BPE.train(docs, args.vocab_size, verbose=True)
        tok.save(args.out)
        print(f"trained {len(tok.merges)} merges on {sum(map(len, docs))} bytes in "
              f"{time.time() - t0:.1f}s -> {args.out} (vocab {tok.vocab_size})")
    else:
        tok = BPE.load(args.tokenizer)
        ids = tok.encode(args.text)
        print(ids)
        print([tok.tokens[i] for i in ids])
    return 0


if __name__ == "__main__":
    sys.exit(main())
