#!/usr/bin/env python3
"""Export a SparkLM (or a training checkpoint written by train.py) to the safetensors
checkpoint format the Rust converter reads (same as reference.py's checkpoints):

  embed [V, d], final_norm [d], lm_head [V, d] (untied only),
  layers.{i}.attn_norm, layers.{i}.ffn_norm [d],
  layers.{i}.post_attn_norm, layers.{i}.post_ffn_norm [d] (post_norms only),
  layers.{i}.attn.wq [H*dh, d], attn.wk / attn.wv [KV*dh, d], attn.wo [d, H*dh],
  layers.{i}.ffn.k1 [f, r], ffn.k2 [f, d-r], ffn.v [f, d]      (ffn_kind = spark)
  layers.{i}.ffn.wg, ffn.wu [f, d], ffn.wd [d, f]                (ffn_kind = geglu)

all float32, contiguous; metadata key ``spark_config`` = the config JSON (SPEC field names,
float fields f32-rounded as reference.py does). Norm weights are the multiplier itself.

Usage:
    python train/export.py --ckpt train/out/demo_spark/ckpt.pt --out models/demo_spark.safetensors
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


def expected_names(c: dict) -> list:
    names = ["embed", "final_norm"]
    if not c["tie_embeddings"]:
        names.append("lm_head")
    for i in range(c["n_layers"]):
        p = f"layers.{i}."
        names += [p + "attn_norm", p + "ffn_norm"]
        if c["post_norms"]:
            names += [p + "post_attn_norm", p + "post_ffn_norm"]
        names += [p + "attn.wq", p + "attn.wk", p + "attn.wv", p + "attn.wo"]
        if c["ffn_kind"] == "spark":
            names += [p + "ffn.k1", p + "ffn.k2", p + "ffn.v"]
        else:
            names += [p + "ffn.wg", p + "ffn.wu", p + "ffn.wd"]
    return names


def model_tensors(model: SM.SparkLM) -> dict:
    sd = model.state_dict()
    c = model.config
    names = expected_names(c)
    assert set(sd) == set(names), sorted(set(sd) ^ set(names))
    return {k: sd[k].detach().to(torch.float32).cpu().contiguous() for k in names}


def save_model(model: SM.SparkLM, path: str) -> dict:
    from safetensors.torch import save_file
    cfg = SM.normalize_config(model.config)
    tensors = model_tensors(model)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    save_file(tensors, path, metadata={"spark_config": json.dumps(cfg, sort_keys=False)})
    os.chmod(path, 0o644)  # safetensors creates the file 0600
    return cfg


def load_training_checkpoint(path: str) -> SM.SparkLM:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = SM.SparkLM(ck["config"])
    model.load_state_dict(ck["model"])
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True, help="training checkpoint (train.py ckpt.pt)")
    ap.add_argument("--out", required=True, help="output .safetensors")
    args = ap.parse_args(argv)
    model = load_training_checkpoint(args.ckpt)
    cfg = save_model(model, args.out)
    print(f"wrote {args.out}: {model.num_params()} params, {os.path.getsize(args.out)} bytes")
    print(json.dumps(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
