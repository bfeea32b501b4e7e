#!/usr/bin/env python3
"""Create a tiny random Gemma-2 checkpoint with HF transformers and its golden logits.

    python train/make_hf_gemma2.py [--out tests/hf/tiny-gemma2]

Writes
  <out>/config.json, <out>/model.safetensors   Gemma2ForCausalLM.save_pretrained (float32)
  <out>/golden_logits.safetensors              ids int32 [T], logits float32 [T, vocab]
                                               computed by transformers itself (eager
                                               attention, float32), from the reloaded files
(tests/hf/tiny-gemma2/README.md, written by hand, describes the files and the conventions.)
Regeneration is deterministic (byte-identical files).

Shape: vocab 128, hidden 64, 2 layers (layer 0 sliding / local, layer 1 global), 4 heads,
2 kv heads, head_dim 16, intermediate 128, sliding_window 8, attn_logit_softcapping 50,
final_logit_softcapping 30, query_pre_attn_scalar 16 (scale 1/4), max_position_embeddings 64,
rope_theta 10000, rms_norm_eps 1e-6, tied embeddings, T = 24 ids (positions 0..7 see every
earlier key on the local layer, 8..23 only the last 8: both regimes).

Weights are drawn (seed 20240) with scales chosen so the soft-caps and the `1 + w` RMSNorm
fold matter: every RMSNorm weight w ~ N(0, 0.3^2) (HF multiplies by 1 + w), embeddings
N(0, 1) (logits reach the final soft-cap region), q/k projections N(0, 0.5^2) (attention
scores reach the attention soft-cap region), the other matrices N(0, 1/fan_in).

As an independent cross-check (not the golden), the same weights are mapped to this
project's checkpoint convention (norm weight -> 1 + w, geglu FFN, dense attention, post norms,
embed_scale sqrt(hidden)) and run through train/spark_model.py; its logits must agree with
transformers' to 1e-4 relative L2. The soft-caps are shown to be active by rerunning with
them off.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SEED = 20240
T = 24


def build_config():
    from transformers import Gemma2Config
    return Gemma2Config(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=64,
        rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        query_pre_attn_scalar=16, sliding_window=8,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
        attn_implementation="eager", dtype="float32",
    )


@torch.no_grad()
def randomize(model, gen):
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm" in name:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        elif "embed_tokens" in name:
            p.copy_(torch.randn(p.shape, generator=gen))
        elif name.endswith(("q_proj.weight", "k_proj.weight")):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        else:
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def to_spark(hf_model, cfg) -> tuple:
    """Map HF Gemma-2 weights to this project's checkpoint names (norm weights folded)."""
    sd = {k: v.detach().float() for k, v in hf_model.state_dict().items()}
    d = cfg.hidden_size
    c = {
        "vocab_size": cfg.vocab_size, "d_model": d, "n_layers": cfg.num_hidden_layers,
        "n_heads": cfg.num_attention_heads, "n_kv_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim, "d_ff": cfg.intermediate_size, "ffn_kind": "geglu",
        "ffn_r": 0, "ffn_k": cfg.intermediate_size, "attn_kind": "dense", "attn_r": 0,
        "attn_k": 256, "max_seq_len": cfg.max_position_embeddings,
        "rope_theta": cfg.rope_parameters["rope_theta"], "norm_eps": cfg.rms_norm_eps,
        "query_pre_attn_scalar": float(cfg.query_pre_attn_scalar),
        "attn_logit_softcap": cfg.attn_logit_softcapping or 0.0,
        "final_logit_softcap": cfg.final_logit_softcapping or 0.0,
        "sliding_window": cfg.sliding_window, "embed_scale": math.sqrt(d),
        "tie_embeddings": True, "post_norms": True, "topk_cap_factor": 2.0,
    }
    w = {"embed": sd["model.embed_tokens.weight"], "final_norm": 1.0 + sd["model.norm.weight"]}
    for i in range(cfg.num_hidden_layers):
        h, p = f"model.layers.{i}.", f"layers.{i}."
        w[p + "attn_norm"] = 1.0 + sd[h + "input_layernorm.weight"]
        w[p + "post_attn_norm"] = 1.0 + sd[h + "post_attention_layernorm.weight"]
        w[p + "ffn_norm"] = 1.0 + sd[h + "pre_feedforward_layernorm.weight"]
        w[p + "post_ffn_norm"] = 1.0 + sd[h + "post_feedforward_layernorm.weight"]
        for a, b in (("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")):
            w[p + "attn." + a] = sd[h + f"self_attn.{b}.weight"]
        w[p + "ffn.wg"] = sd[h + "mlp.gate_proj.weight"]
        w[p + "ffn.wu"] = sd[h + "mlp.up_proj.weight"]
        w[p + "ffn.wd"] = sd[h + "mlp.down_proj.weight"]
    return c, w


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "tests", "hf", "tiny-gemma2"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from transformers import Gemma2ForCausalLM
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    cfg = build_config()
    model = Gemma2ForCausalLM(cfg).float().eval()
    gen = torch.Generator().manual_seed(SEED)
    randomize(model, gen)
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(args.out, extra)
        if os.path.exists(p):
            os.remove(p)

    # golden from the reloaded files (what a converter reads)
    m2 = Gemma2ForCausalLM.from_pretrained(args.out, attn_implementation="eager",
                                           dtype=torch.float32).eval()
    sd1, sd2 = model.state_dict(), m2.state_dict()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), f"reload changed {k}"
    rng = np.random.default_rng(SEED)
    ids = rng.integers(0, cfg.vocab_size, size=T).astype(np.int64)
    with torch.no_grad():
        logits = m2(torch.from_numpy(ids)[None], use_cache=False).logits[0].float()
    save_file({"ids": torch.from_numpy(ids.astype(np.int32)), "logits": logits.contiguous()},
              os.path.join(args.out, "golden_logits.safetensors"))
    # (no metadata: safetensors writes a multi-key metadata map in random order, and the
    # files are meant to be byte-identical on every regeneration)

    # independent cross-check through this project's SPEC math (train/spark_model.py)
    import spark_model as SM
    c, w = to_spark(m2, cfg)
    sm = SM.SparkLM(c).eval()
    sm.load_state_dict(w, strict=True)
    with torch.no_grad():
        ours = sm(torch.from_numpy(ids)[None])[0]
    rel = float((ours - logits).norm() / logits.norm())
    assert rel < 1e-4, rel
    # local-window convention: the same model with the window off must differ
    c_nowin = dict(c, sliding_window=0)
    sm2 = SM.SparkLM(c_nowin).eval()
    sm2.load_state_dict(w)
    with torch.no_grad():
        nowin = sm2(torch.from_numpy(ids)[None])[0]
    first_diff = int(torch.nonzero((nowin - logits).abs().amax(-1) > 1e-4)[0])
    # window off by one (W+1 keys) must differ too
    c_w9 = dict(c, sliding_window=cfg.sliding_window + 1)
    sm3 = SM.SparkLM(c_w9).eval()
    sm3.load_state_dict(w)
    with torch.no_grad():
        w9 = sm3(torch.from_numpy(ids)[None])[0]
    rel_w9 = float((w9 - logits).norm() / logits.norm())
    # soft-caps active?
    c_nocap = dict(c, attn_logit_softcap=0.0, final_logit_softcap=0.0)
    sm4 = SM.SparkLM(c_nocap).eval()
    sm4.load_state_dict(w)
    with torch.no_grad():
        nocap = sm4(torch.from_numpy(ids)[None])[0]
    rel_nocap = float((nocap - logits).norm() / logits.norm())
    # norm fold: without the "1 +" (HF weights used directly) the result must differ
    w_nofold = {k: (v - 1.0 if "norm" in k else v) for k, v in w.items()}
    sm5 = SM.SparkLM(c).eval()
    sm5.load_state_dict(w_nofold)
    with torch.no_grad():
        nofold = sm5(torch.from_numpy(ids)[None])[0]
    rel_nofold = float((nofold - logits).norm() / logits.norm())
    summary = {
        "T": T, "sliding_window": cfg.sliding_window, "layer_types": list(cfg.layer_types),
        "spark_model_vs_transformers_rel_l2": rel,
        "window_off_first_differing_position": first_diff,
        "window_plus_one_rel_l2": rel_w9,
        "softcaps_off_rel_l2": rel_nocap,
        "norm_fold_missing_rel_l2": rel_nofold,
        "logits_absmax": float(logits.abs().max()),
        "ids": ids.tolist(),
    }
    print(json.dumps(summary, indent=1))
    files = sorted(os.listdir(args.out))
    print("files:", {f: os.path.getsize(os.path.join(args.out, f)) for f in files})
    return 0


if __name__ == "__main__":
    sys.exit(main())
