#!/usr/bin/env python3
"""Expected greedy outputs of a bundled model, from the PyTorch model in eval mode
(float32, bounded-capacity top-k rules on), for the Rust runtime to compare against.

    python train/expected.py --model models/demo_spark.safetensors \\
        --tokenizer models/tokenizer.json --out models/expected_f32.json

For each prompt: prompt ids = [<bos>] + encode(prompt) (documents were trained as
<bos> text <eos>), then 32 greedy steps (argmax of the last position's logits; the whole
sequence is recomputed each step, which is the same math as decoding with a KV cache; the
ids never exceed max_seq_len here). Recorded per prompt: prompt ids, generated ids, decoded
text, the top-1 minus top-2 logit margin at every step (a small margin marks a step where
an int8 or differently-ordered float implementation may legitimately pick another token),
and the top-10 (id, logit) of the first step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spark_model as SM  # noqa: E402
from bpe import BPE  # noqa: E402

PROMPTS = ["Ownership is", "A struct", "The compiler", "fn main", "Rust's borrow checker"]


@torch.no_grad()
def run(model: SM.SparkLM, tok: BPE, prompt: str, n_new: int) -> dict:
    ids = [tok.bos_id] + tok.encode(prompt)
    prompt_ids = list(ids)
    margins = []
    first_top = None
    for _ in range(n_new):
        assert len(ids) <= model.config["max_seq_len"]
        logits = model(torch.tensor([ids], dtype=torch.long))[0, -1]
        top = torch.topk(logits, 10)
        if first_top is None:
            first_top = [[int(i), float(v)] for v, i in zip(top.values, top.indices)]
        margins.append(float(top.values[0] - top.values[1]))
        ids.append(int(torch.argmax(logits)))
    gen = ids[len(prompt_ids):]
    return {"prompt": prompt, "prompt_ids": prompt_ids, "generated_ids": gen,
            "generated_text": tok.decode(gen), "full_text": tok.decode(prompt_ids[1:] + gen),
            "step_top1_minus_top2": margins, "min_margin": min(margins),
            "first_step_top10": first_top}


def compact_json(obj) -> str:
    """Indented JSON with lists of numbers (and [id, logit] pairs) kept on one line."""
    import re
    txt = json.dumps(obj, indent=1, ensure_ascii=False)
    num = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
    flat = re.compile(r"\[\s*(" + num + r"(?:,\s*" + num + r")*)\s*\]")
    txt = flat.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", txt)
    pair = re.compile(r"\[\s*(\[[^\[\]]*\](?:,\s*\[[^\[\]]*\])*)\s*\]")
    return pair.sub(lambda m: "[" + re.sub(r"\],\s*\[", "], [", m.group(1)) + "]", txt)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = SM.load_checkpoint(args.model).eval()
    tok = BPE.load(args.tokenizer)
    res = {
        "model": os.path.basename(args.model),
        "tokenizer": os.path.basename(args.tokenizer),
        "generator": "train/expected.py (PyTorch SparkLM, float32, eval mode, bounded top-k rules on)",
        "bos_prepended": True,
        "new_tokens": args.new_tokens,
        "sampling": "greedy (argmax; ties: lowest id)",
        "prompts": [run(model, tok, p, args.new_tokens) for p in PROMPTS],
    }
    with open(args.out, "w") as fh:
        fh.write(compact_json(res) + "\n")
    for r in res["prompts"]:
        print(f"{r['prompt']!r} -> {r['generated_text']!r} (min margin {r['min_margin']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
