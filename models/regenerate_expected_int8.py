#!/usr/bin/env python3
"""Rewrite models/expected_int8.json from the int8 runtime's scalar backend.

expected_int8.json is a regression and cross-target determinism reference (every backend
and target must reproduce it bit for bit), not an accuracy reference: rerun this only when
a deliberate change of the int8 math changes the bundled model's output, and say so in
the commit. Usage (from the repository root):

    cargo build --release -p spark-sim && python3 models/regenerate_expected_int8.py
"""
import json
import subprocess
import sys

SIM = "target/release/spark-sim"
MODEL = "models/demo.spark"
N = 32


def main() -> int:
    old = json.load(open("models/expected_int8.json"))
    f32 = {p["prompt"]: p for p in json.load(open("models/expected_f32.json"))["prompts"]}
    prompts = []
    for p in old["prompts"]:
        out = subprocess.run([SIM, "generate", "--model", MODEL, "--backend", "scalar", "--tokens", str(N),
                              "--json", "--prompt", p["prompt"]], check=True, capture_output=True, text=True)
        g = json.loads(out.stdout)
        ref = f32[p["prompt"]]["generated_ids"]
        agree = 0
        while agree < min(len(ref), len(g["token_ids"])) and ref[agree] == g["token_ids"][agree]:
            agree += 1
        prompts.append({"prompt": p["prompt"], "prompt_ids": g["prompt_ids"], "generated_ids": g["token_ids"],
                        "generated_text": g["text"], "logits_digest": g["logits_digest"],
                        "agrees_with_f32_for_tokens": agree})
        changed = "unchanged" if (p["generated_ids"], p["logits_digest"]) == (g["token_ids"], g["logits_digest"]) \
            else "CHANGED"
        print(f"{p['prompt']!r}: {changed}; int8 = f32 for {agree} tokens")
    new = dict(old)
    new["prompts"] = prompts
    with open("models/expected_int8.json", "w") as fh:
        json.dump(new, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
