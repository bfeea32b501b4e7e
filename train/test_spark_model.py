#!/usr/bin/env python3
"""The PyTorch training model (train/spark_model.py) against the golden files written by the
independent numpy reference (train/reference.py): same math.

Plain asserts, runnable as a script (pytest also collects the test_* functions):

    python3 train/test_spark_model.py   (a python3 that imports torch)

For every tests/golden/<name>.safetensors the checkpoint is loaded into SparkLM in eval mode
(bounded-capacity rules on), run once over the golden token sequence (one batched causal
forward, whereas the reference decodes position by position), and compared with
<name>.golden.safetensors: logits to 1e-4 relative L2 in float32 and in float64, and the FFN
and attention active sets and event codes exactly.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spark_model as SM  # noqa: E402

GOLDEN_DIR = os.path.join(os.path.dirname(HERE), "tests", "golden")
TOL = 1e-4


def golden_names():
    names = sorted(os.path.basename(p)[: -len(".safetensors")]
                   for p in glob.glob(os.path.join(GOLDEN_DIR, "*.safetensors"))
                   if not p.endswith(".golden.safetensors"))
    assert names, f"no golden checkpoints in {GOLDEN_DIR}"
    return names


def load_golden(name):
    from safetensors.numpy import load_file
    return load_file(os.path.join(GOLDEN_DIR, f"{name}.golden.safetensors"))


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_model(name, dtype):
    model = SM.load_checkpoint(os.path.join(GOLDEN_DIR, f"{name}.safetensors"), dtype=dtype)
    model.eval()
    g = load_golden(name)
    tokens = torch.tensor(g["tokens"].astype(np.int64))[None, :]
    stats = SM.new_stats()
    with torch.no_grad():
        logits = model(tokens, stats=stats)[0]
    return model, g, logits.double().numpy(), stats


def check_model(name, dtype):
    model, g, logits, stats = run_model(name, dtype)
    c = model.config
    err = rel_l2(logits, g["logits"])
    assert err < TOL, f"{name} {dtype}: logits rel L2 {err:.3e} >= {TOL}"
    T = g["tokens"].shape[0]
    for i in range(c["n_layers"]):
        p = f"layers.{i}."
        fa = stats["ffn_active"][i][0].numpy().astype(np.uint8)
        fe = stats["ffn_events"][i][0].numpy()
        assert np.array_equal(fa, g[p + "ffn_active"]), f"{name} layer {i}: ffn active set"
        assert np.array_equal(fe, g[p + "ffn_events"]), f"{name} layer {i}: ffn events"
        aa = stats["attn_active"][i][0].numpy().astype(np.uint8)       # [H, T, T]
        ae = stats["attn_events"][i][0].numpy()                         # [H, T]
        assert np.array_equal(aa.transpose(1, 0, 2), g[p + "attn_active"]), \
            f"{name} layer {i}: attention active set"
        assert np.array_equal(ae.T, g[p + "attn_events"]), f"{name} layer {i}: attention events"
    ev = {
        "ffn_overflow": int(sum((e == 1).sum() for e in stats["ffn_events"])),
        "ffn_underflow": int(sum((e == 2).sum() for e in stats["ffn_events"])),
        "attn_overflow": int(sum((e == 1).sum() for e in stats["attn_events"])),
        "attn_underflow": int(sum((e == 2).sum() for e in stats["attn_events"])),
    }
    return err, T, ev


def test_golden_logits_f32():
    for name in golden_names():
        err, T, ev = check_model(name, torch.float32)
        print(f"  {name:18s} f32  T={T:3d} rel L2 {err:.2e} events {ev}")


def test_golden_logits_f64():
    for name in golden_names():
        err, T, ev = check_model(name, torch.float64)
        print(f"  {name:18s} f64  T={T:3d} rel L2 {err:.2e}")


def test_overflow_model_needs_bounded_rules():
    """spark_overflow only matches with the overflow rule on: without it the logits differ."""
    model = SM.load_checkpoint(os.path.join(GOLDEN_DIR, "spark_overflow.safetensors"),
                               bounded=False, dtype=torch.float64)
    model.eval()
    g = load_golden("spark_overflow")
    with torch.no_grad():
        logits = model(torch.tensor(g["tokens"].astype(np.int64))[None])[0].numpy()
    err = rel_l2(logits, g["logits"])
    assert err > 1e-3, err


def test_stat_topk_basic():
    # SPEC examples of z
    assert abs(SM.z_table(8, 100)[100].item() - 1.4050716) < 1e-7
    assert abs(SM.z_table(5, 100)[100].item() - 1.6448536) < 1e-7
    for n, z in ((512, 0.0), (1024, 0.6744898), (2048, 1.1503494), (4096, 1.5341205),
                 (8192, 1.8627319)):
        assert abs(SM.z_table(256, n)[n].item() - z) < 1e-7
    torch.manual_seed(0)
    x = torch.randn(3, 1000, dtype=torch.float64)
    t, active, theta, ev = SM.stat_topk(x, 80)
    mu = x.mean(-1)
    sd = x.std(-1, unbiased=False)
    th = mu + SM.z_table(80, 1000)[1000] * sd
    assert torch.allclose(theta, th)
    assert torch.equal(active, x > th[:, None])
    assert torch.allclose(t, torch.relu(x - th[:, None]))
    # identity
    t, active, theta, ev = SM.stat_topk(x[:, :50], 80)
    assert torch.equal(t, x[:, :50]) and bool(active.all())
    # underflow: constant row
    y = torch.zeros(1, 10, dtype=torch.float64)
    t, active, theta, ev = SM.stat_topk(y, 2)
    assert active[0].tolist() == [True] + [False] * 9 and int(ev[0]) == 2 and bool((t == 0).all())
    # overflow: 5 equal maxima pass, cap 2 -> the two lowest indices
    y = torch.tensor([[0.0] * 20 + [5.0] * 5], dtype=torch.float64)
    t, active, theta, ev = SM.stat_topk(y, 1, cap_factor=2.0, bounded=True)
    assert int(ev[0]) == 1 and active[0].nonzero().flatten().tolist() == [20, 21]
    # masked statistics: entries outside the mask do not count
    m = torch.tensor([[True] * 10 + [False] * 15])
    t2, a2, th2, _ = SM.stat_topk(y.clone().fill_(0.0) + torch.arange(25.0, dtype=torch.float64),
                                  3, mask=m)
    xs = torch.arange(10.0, dtype=torch.float64)
    exp = xs.mean() + SM.z_table(3, 10)[10] * xs.std(unbiased=False)
    assert abs(th2.item() - exp.item()) < 1e-12 and not bool(a2[0, 10:].any())


def test_export_roundtrip():
    """export.save_model writes the reference checkpoint format: reloading gives the same
    tensors and config, and reference.py can read it."""
    import export
    import reference as R
    src = os.path.join(GOLDEN_DIR, "spark_gqa_window.safetensors")
    model = SM.load_checkpoint(src)
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "m.safetensors")
        export.save_model(model, out)
        c2, w2 = R.load_checkpoint(out)
        c1, w1 = R.load_checkpoint(src)
        assert c1 == c2, (c1, c2)
        assert set(w1) == set(w2)
        for k in w1:
            assert np.array_equal(w1[k], w2[k]), k


def test_hf_gemma2_golden():
    """tests/hf/tiny-gemma2 (HF transformers' own logits) through SparkLM, with the Gemma-2 ->
    SPEC mapping (norm weight -> 1 + w, geglu, dense attention, post norms, sqrt(d) embed
    scale), read straight from config.json / model.safetensors (no transformers import)."""
    from safetensors.torch import load_file
    hf = os.path.join(os.path.dirname(HERE), "tests", "hf", "tiny-gemma2")
    if not os.path.isdir(hf):
        print("  (skipped: no tests/hf/tiny-gemma2)")
        return
    hc = json.load(open(os.path.join(hf, "config.json")))
    sd = load_file(os.path.join(hf, "model.safetensors"))
    g = load_file(os.path.join(hf, "golden_logits.safetensors"))
    assert hc["layer_types"] == ["sliding_attention" if i % 2 == 0 else "full_attention"
                                 for i in range(hc["num_hidden_layers"])]
    d = hc["hidden_size"]
    c = {"vocab_size": hc["vocab_size"], "d_model": d, "n_layers": hc["num_hidden_layers"],
         "n_heads": hc["num_attention_heads"], "n_kv_heads": hc["num_key_value_heads"],
         "head_dim": hc["head_dim"], "d_ff": hc["intermediate_size"], "ffn_kind": "geglu",
         "ffn_r": 0, "ffn_k": hc["intermediate_size"], "attn_kind": "dense", "attn_r": 0,
         "attn_k": 256, "max_seq_len": hc["max_position_embeddings"],
         "rope_theta": hc["rope_parameters"]["rope_theta"], "norm_eps": hc["rms_norm_eps"],
         "query_pre_attn_scalar": hc["query_pre_attn_scalar"],
         "attn_logit_softcap": hc["attn_logit_softcapping"],
         "final_logit_softcap": hc["final_logit_softcapping"],
         "sliding_window": hc["sliding_window"], "embed_scale": math.sqrt(d),
         "tie_embeddings": True, "post_norms": True, "topk_cap_factor": 2.0}
    w = {"embed": sd["model.embed_tokens.weight"], "final_norm": 1.0 + sd["model.norm.weight"]}
    names = {"attn_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
             "ffn_norm": "pre_feedforward_layernorm", "post_ffn_norm": "post_feedforward_layernorm"}
    for i in range(c["n_layers"]):
        h, p = f"model.layers.{i}.", f"layers.{i}."
        for a, b in names.items():
            w[p + a] = 1.0 + sd[h + b + ".weight"]
        for a, b in (("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")):
            w[p + "attn." + a] = sd[h + f"self_attn.{b}.weight"]
        for a, b in (("wg", "gate_proj"), ("wu", "up_proj"), ("wd", "down_proj")):
            w[p + "ffn." + a] = sd[h + f"mlp.{b}.weight"]
    model = SM.SparkLM(c).eval()
    model.load_state_dict(w, strict=True)
    with torch.no_grad():
        logits = model(g["ids"].long()[None])[0]
    err = rel_l2(logits.numpy(), g["logits"].numpy())
    print(f"  tiny-gemma2 rel L2 vs transformers {err:.2e}")
    assert err < TOL, err


def test_param_counts():
    for name in golden_names():
        model = SM.load_checkpoint(os.path.join(GOLDEN_DIR, f"{name}.safetensors"))
        assert model.num_params() == SM.count_params(model.config)["total"], name


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    for t in tests:
        print(t.__name__)
        t()
    print(f"OK ({len(tests)} tests)")


if __name__ == "__main__":
    main()
