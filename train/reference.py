#!/usr/bin/env python3
"""Independent float64 reference for the Spark Transformer math (SPEC sections 3-6).

This file is written from the specification only (``/work/shared/SPEC.md`` and the
decisions listed in ``train/README.md``); it does not read or mirror any Rust code.
All arithmetic is numpy float64. Weights are drawn in float64, rounded to float32
(the checkpoint dtype) and the rounded values are what the forward pass uses, so a
consumer that reads the float32 checkpoint sees exactly the weights we computed with.
Outputs are cast to float32 only when written.

Usage::

    python train/reference.py --out tests/golden      # regenerate all golden files

Everything is deterministic: fixed seeds, no threading-dependent reductions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------

CONFIG_FIELDS = (
    "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff",
    "ffn_kind", "ffn_r", "ffn_k", "attn_kind", "attn_r", "attn_k", "max_seq_len",
    "rope_theta", "norm_eps", "query_pre_attn_scalar", "attn_logit_softcap",
    "final_logit_softcap", "sliding_window", "embed_scale", "tie_embeddings",
    "post_norms", "topk_cap_factor",
)
FLOAT_FIELDS = ("rope_theta", "norm_eps", "query_pre_attn_scalar", "attn_logit_softcap",
                "final_logit_softcap", "embed_scale", "topk_cap_factor")
INT_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim",
              "d_ff", "ffn_r", "ffn_k", "attn_r", "attn_k", "max_seq_len", "sliding_window")
BOOL_FIELDS = ("tie_embeddings", "post_norms")

EVENT_NONE, EVENT_OVERFLOW, EVENT_UNDERFLOW = 0, 1, 2


def f32(v: float) -> float:
    """Round a Python float to the nearest float32 value (returned as a Python float).

    Every float config field is stored f32-representable so that readers parsing the
    JSON into f32 and readers parsing it into f64 see the same number."""
    return float(np.float32(v))


def normalize_config(cfg: dict) -> dict:
    out = {}
    for k in CONFIG_FIELDS:
        if k not in cfg:
            raise KeyError(f"config field {k!r} missing")
        v = cfg[k]
        if k in FLOAT_FIELDS:
            out[k] = f32(float(v))
        elif k in INT_FIELDS:
            out[k] = int(v)
        elif k in BOOL_FIELDS:
            out[k] = bool(v)
        else:
            out[k] = str(v)
    extra = set(cfg) - set(CONFIG_FIELDS)
    if extra:
        raise KeyError(f"unknown config fields {sorted(extra)}")
    validate_config(out)
    return out


def validate_config(c: dict) -> None:
    d, f, dh = c["d_model"], c["d_ff"], c["head_dim"]
    assert c["ffn_kind"] in ("spark", "geglu")
    assert c["attn_kind"] in ("spark", "dense")
    assert c["n_heads"] % c["n_kv_heads"] == 0
    assert dh % 2 == 0
    assert 1 <= c["ffn_k"] <= f
    if c["ffn_kind"] == "spark":
        assert 0 < c["ffn_r"] < d
    else:
        assert c["ffn_r"] == 0
    if c["attn_kind"] == "spark":
        ra = c["attn_r"]
        assert 0 < ra < dh and ra % 2 == 0 and (dh - ra) % 2 == 0
        assert c["attn_k"] >= 1
    else:
        assert c["attn_r"] == 0
    assert c["topk_cap_factor"] >= 1.0


# ---------------------------------------------------------------------------
# Elementwise math (SPEC section 3)
# ---------------------------------------------------------------------------

def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """rmsnorm(x, w)_i = x_i / sqrt(mean(x^2) + eps) * w_i  (w is the multiplier)."""
    x = np.asarray(x, dtype=np.float64)
    return x / math.sqrt(float(np.mean(x * x)) + eps) * w


def gelu(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softplus(x):
    """softplus(x) = ln(1 + e^x), with x > 20 -> x."""
    x = np.asarray(x, dtype=np.float64)
    safe = np.minimum(x, 20.0)
    return np.where(x > 20.0, x, np.log1p(np.exp(safe)))


def softcap(x, cap: float):
    """c * tanh(x / c); cap <= 0 means off."""
    if cap > 0.0:
        return cap * np.tanh(np.asarray(x, dtype=np.float64) / cap)
    return np.asarray(x, dtype=np.float64)


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def rope_part(x: np.ndarray, pos: int, theta: float) -> np.ndarray:
    """Rotate-half RoPE over a vector part of even width w.

    For i in [0, w/2): freq_i = theta^(-2i/w), angle = pos * freq_i,
    (x_i, x_{i+w/2}) -> (x_i cos - x_{i+w/2} sin, x_{i+w/2} cos + x_i sin)."""
    w = x.shape[-1]
    assert w % 2 == 0
    half = w // 2
    i = np.arange(half, dtype=np.float64)
    freq = theta ** (-2.0 * i / w)
    ang = pos * freq
    cos, sin = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rope_head(x: np.ndarray, pos: int, theta: float, split: int) -> np.ndarray:
    """RoPE on head vectors (last axis = dh). split = 0: one part (dense attention);
    split = ra > 0: parts [0, ra) and [ra, dh) rotated separately (Spark attention)."""
    if split == 0:
        return rope_part(x, pos, theta)
    return np.concatenate([rope_part(x[..., :split], pos, theta),
                           rope_part(x[..., split:], pos, theta)], axis=-1)


# ---------------------------------------------------------------------------
# Statistical top-k (SPEC section 6 + bounded rules)
# ---------------------------------------------------------------------------

@dataclass
class TopK:
    active: np.ndarray      # bool [n]
    t: np.ndarray           # float64 [n]: shifted scores, 0 outside the active set
    theta: float            # threshold; NaN for the identity case
    event: int              # EVENT_*
    sigma: float = float("nan")
    margin: float = float("inf")  # min distance of any decision from its boundary / sigma


def stat_quantile(k: int, n: int) -> float:
    """z = Phi^-1(1 - k/n)."""
    return NormalDist().inv_cdf(1.0 - k / n)


def stat_topk(x: np.ndarray, k: int, cap_factor: float) -> TopK:
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if k >= n:
        return TopK(np.ones(n, dtype=bool), x.copy(), float("nan"), EVENT_NONE)
    fin = np.isfinite(x)
    xf = x[fin]
    mu = float(np.mean(xf))
    sigma = math.sqrt(float(np.mean((xf - mu) ** 2)))
    z = stat_quantile(k, n)
    theta = mu + z * sigma
    passed = x > theta
    cap = min(n, math.ceil(cap_factor * k))
    count = int(passed.sum())
    event = EVENT_NONE
    active = passed.copy()
    margin = float("inf")
    if sigma > 0:
        margin = float(np.min(np.abs(xf - theta))) / sigma
    if count > cap:
        event = EVENT_OVERFLOW
        idx = np.nonzero(passed)[0]
        # cap largest, ties: lower index first (primary key -x, secondary index)
        order = idx[np.lexsort((idx, -x[idx]))]
        keep = order[:cap]
        active = np.zeros(n, dtype=bool)
        active[keep] = True
        if sigma > 0:
            gap = (x[order[cap - 1]] - x[order[cap]]) / sigma
            margin = min(margin, float(gap))
    t = np.zeros(n, dtype=np.float64)
    if count == 0:
        event = EVENT_UNDERFLOW
        i = int(np.argmax(np.where(fin, x, -np.inf)))  # first max = lowest index on ties
        active = np.zeros(n, dtype=bool)
        active[i] = True
        # t stays 0
    else:
        t[active] = x[active] - theta
    return TopK(active, t, theta, event, sigma, margin)


# ---------------------------------------------------------------------------
# FFN (SPEC section 4)
# ---------------------------------------------------------------------------

def ffn_spark(h, K1, K2, V, k, cap_factor):
    r = K1.shape[1]
    h1, h2 = h[:r], h[r:]
    s = K1 @ h1
    tk = stat_topk(s, k, cap_factor)
    S = np.nonzero(tk.active)[0]
    a = gelu(tk.t[S])
    u = K2[S] @ h2
    y = (a * u) @ V[S]
    return y, tk


def ffn_geglu(h, Wg, Wu, Wd, k, cap_factor):
    f = Wg.shape[0]
    g = Wg @ h
    u = Wu @ h
    if k < f:
        tk = stat_topk(g, k, cap_factor)
        act = np.zeros(f, dtype=np.float64)
        act[tk.active] = gelu(tk.t[tk.active])
    else:
        tk = TopK(np.ones(f, dtype=bool), g.copy(), float("nan"), EVENT_NONE)
        act = gelu(g)
    y = Wd @ (act * u)
    return y, tk


# ---------------------------------------------------------------------------
# Attention (SPEC section 5), one query position against a cache
# ---------------------------------------------------------------------------

def attend_dense(q, Kc, Vc, c, cap):
    """q [dh] (rotated), Kc [n, dh] (rotated), Vc [n, dh]."""
    s = softcap(c * (Kc @ q), cap)
    w = softmax(s)
    return w @ Vc, np.ones(Kc.shape[0], dtype=bool), EVENT_NONE, float("inf")


def attend_spark(q, Kc, Vc, c, cap, ra, ka, cap_factor):
    n = Kc.shape[0]
    s1 = softcap(c * (Kc[:, :ra] @ q[:ra]), cap)
    if n <= ka:
        active = np.ones(n, dtype=bool)
        event, margin = EVENT_NONE, float("inf")
    else:
        tk = stat_topk(s1, ka, cap_factor)
        active, event, margin = tk.active, tk.event, tk.margin
    S = np.nonzero(active)[0]
    w = softmax(s1[S])
    g = softplus(c * (Kc[S, ra:] @ q[ra:]))
    o = (w * g) @ Vc[S]
    return o, active, event, margin


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

@dataclass
class Trace:
    T: int
    n_layers: int
    n_heads: int
    d_ff: int
    logits: np.ndarray = None
    ffn_theta: list = field(default_factory=list)
    ffn_active: list = field(default_factory=list)
    ffn_events: list = field(default_factory=list)
    attn_active: list = field(default_factory=list)
    attn_events: list = field(default_factory=list)
    ffn_margin: float = float("inf")
    attn_margin: float = float("inf")
    attn_selected_positions: int = 0   # (position, head) pairs with n > ka (spark only)
    attn_all_positions: int = 0        # (position, head) pairs with n <= ka or dense

    def __post_init__(self):
        T, L, H, f = self.T, self.n_layers, self.n_heads, self.d_ff
        self.ffn_theta = [np.full(T, np.nan) for _ in range(L)]
        self.ffn_active = [np.zeros((T, f), dtype=np.uint8) for _ in range(L)]
        self.ffn_events = [np.zeros(T, dtype=np.int32) for _ in range(L)]
        self.attn_active = [np.zeros((T, H, T), dtype=np.uint8) for _ in range(L)]
        self.attn_events = [np.zeros((T, H), dtype=np.int32) for _ in range(L)]


class Model:
    def __init__(self, config: dict, weights: dict):
        self.c = normalize_config(config)
        # compute in float64 from the (float32) stored values
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        check_weight_shapes(self.c, self.w)

    def layer_is_local(self, i: int) -> bool:
        return self.c["sliding_window"] > 0 and i % 2 == 0

    def forward(self, tokens) -> Trace:
        c, w = self.c, self.w
        T = len(tokens)
        assert T <= c["max_seq_len"]
        L, H, KV, dh = c["n_layers"], c["n_heads"], c["n_kv_heads"], c["head_dim"]
        group = H // KV
        eps = c["norm_eps"]
        scale = c["query_pre_attn_scalar"] ** -0.5
        split = c["attn_r"] if c["attn_kind"] == "spark" else 0
        tr = Trace(T, L, H, c["d_ff"])
        logits = np.zeros((T, c["vocab_size"]), dtype=np.float64)
        kcache = [np.zeros((T, KV, dh)) for _ in range(L)]
        vcache = [np.zeros((T, KV, dh)) for _ in range(L)]
        for p, tok in enumerate(tokens):
            x = w["embed"][int(tok)] * c["embed_scale"]
            for i in range(L):
                pre = f"layers.{i}."
                # --- attention ---
                h = rmsnorm(x, w[pre + "attn_norm"], eps)
                q = (w[pre + "attn.wq"] @ h).reshape(H, dh)
                k = (w[pre + "attn.wk"] @ h).reshape(KV, dh)
                v = (w[pre + "attn.wv"] @ h).reshape(KV, dh)
                q = rope_head(q, p, c["rope_theta"], split)
                k = rope_head(k, p, c["rope_theta"], split)
                kcache[i][p] = k
                vcache[i][p] = v
                lo = max(0, p - c["sliding_window"] + 1) if self.layer_is_local(i) else 0
                o = np.zeros((H, dh))
                for j in range(H):
                    kv = j // group
                    Kc = kcache[i][lo:p + 1, kv]
                    Vc = vcache[i][lo:p + 1, kv]
                    if c["attn_kind"] == "spark":
                        o[j], act, ev, mg = attend_spark(
                            q[j], Kc, Vc, scale, c["attn_logit_softcap"], c["attn_r"],
                            c["attn_k"], c["topk_cap_factor"])
                        if Kc.shape[0] > c["attn_k"]:
                            tr.attn_selected_positions += 1
                        else:
                            tr.attn_all_positions += 1
                    else:
                        o[j], act, ev, mg = attend_dense(q[j], Kc, Vc, scale,
                                                         c["attn_logit_softcap"])
                        tr.attn_all_positions += 1
                    tr.attn_active[i][p, j, lo:p + 1] = act
                    tr.attn_events[i][p, j] = ev
                    tr.attn_margin = min(tr.attn_margin, mg)
                a = w[pre + "attn.wo"] @ o.reshape(H * dh)
                if c["post_norms"]:
                    a = rmsnorm(a, w[pre + "post_attn_norm"], eps)
                x = x + a
                # --- FFN ---
                h = rmsnorm(x, w[pre + "ffn_norm"], eps)
                if c["ffn_kind"] == "spark":
                    m, tk = ffn_spark(h, w[pre + "ffn.k1"], w[pre + "ffn.k2"],
                                      w[pre + "ffn.v"], c["ffn_k"], c["topk_cap_factor"])
                else:
                    m, tk = ffn_geglu(h, w[pre + "ffn.wg"], w[pre + "ffn.wu"],
                                      w[pre + "ffn.wd"], c["ffn_k"], c["topk_cap_factor"])
                tr.ffn_theta[i][p] = tk.theta
                tr.ffn_active[i][p] = tk.active
                tr.ffn_events[i][p] = tk.event
                tr.ffn_margin = min(tr.ffn_margin, tk.margin)
                if c["post_norms"]:
                    m = rmsnorm(m, w[pre + "post_ffn_norm"], eps)
                x = x + m
            xf = rmsnorm(x, w["final_norm"], eps)
            head = w["embed"] if c["tie_embeddings"] else w["lm_head"]
            logits[p] = softcap(head @ xf, c["final_logit_softcap"])
        tr.logits = logits
        return tr


def expected_shapes(c: dict) -> dict:
    V, d, f, dh = c["vocab_size"], c["d_model"], c["d_ff"], c["head_dim"]
    H, KV, r = c["n_heads"], c["n_kv_heads"], c["ffn_r"]
    shapes = {"embed": (V, d), "final_norm": (d,)}
    if not c["tie_embeddings"]:
        shapes["lm_head"] = (V, d)
    for i in range(c["n_layers"]):
        p = f"layers.{i}."
        shapes[p + "attn_norm"] = (d,)
        shapes[p + "ffn_norm"] = (d,)
        if c["post_norms"]:
            shapes[p + "post_attn_norm"] = (d,)
            shapes[p + "post_ffn_norm"] = (d,)
        shapes[p + "attn.wq"] = (H * dh, d)
        shapes[p + "attn.wk"] = (KV * dh, d)
        shapes[p + "attn.wv"] = (KV * dh, d)
        shapes[p + "attn.wo"] = (d, H * dh)
        if c["ffn_kind"] == "spark":
            shapes[p + "ffn.k1"] = (f, r)
            shapes[p + "ffn.k2"] = (f, d - r)
            shapes[p + "ffn.v"] = (f, d)
        else:
            shapes[p + "ffn.wg"] = (f, d)
            shapes[p + "ffn.wu"] = (f, d)
            shapes[p + "ffn.wd"] = (d, f)
    return shapes


def check_weight_shapes(c: dict, w: dict) -> None:
    exp = expected_shapes(c)
    assert set(exp) == set(w), (sorted(set(exp) ^ set(w)))
    for k, s in exp.items():
        assert tuple(w[k].shape) == s, (k, w[k].shape, s)


# ---------------------------------------------------------------------------
# Checkpoint I/O
# ---------------------------------------------------------------------------

def save_checkpoint(path: str, config: dict, weights: dict) -> None:
    from safetensors.numpy import save_file
    cfg = normalize_config(config)
    tensors = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32))
               for k, v in weights.items()}
    save_file(tensors, path, metadata={"spark_config": json.dumps(cfg, sort_keys=False)})


def load_checkpoint(path: str):
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as fh:
        meta = fh.metadata()
        cfg = json.loads(meta["spark_config"])
        weights = {k: fh.get_tensor(k) for k in fh.keys()}
    return cfg, weights


def load_golden(path: str) -> dict:
    from safetensors.numpy import load_file
    return load_file(path)


# ---------------------------------------------------------------------------
# Golden model definitions
# ---------------------------------------------------------------------------

def base_config(**kw) -> dict:
    cfg = dict(
        rope_theta=10000.0, norm_eps=1e-6, attn_logit_softcap=0.0,
        final_logit_softcap=0.0, sliding_window=0, tie_embeddings=True, post_norms=False,
        topk_cap_factor=2.0,
    )
    cfg.update(kw)
    if "embed_scale" not in cfg:
        cfg["embed_scale"] = math.sqrt(cfg["d_model"])
    if "query_pre_attn_scalar" not in cfg:
        cfg["query_pre_attn_scalar"] = float(cfg["head_dim"])
    return normalize_config(cfg)


def random_weights(c: dict, rng: np.random.Generator, embed_mean: float = 0.0,
                   q1_gain: float = 1.0) -> dict:
    """Gaussian weights with 1/sqrt(fan_in) scales; norms 1 +- 0.1. float32 values.

    Two optional statistics of a trained model (see ``TRAINED_STATS``), for Spark models
    whose selections should behave like a trained model's under int8 noise:

    - ``embed_mean`` in [0, 1): every embedding row becomes
      ``sqrt(1 - a^2) * row + a * m`` with one shared random direction ``m`` (|m| ~ |row|),
      so the embeddings (and the hidden states) are anisotropic, with
      |mean row| / rms row ~ a, as in trained language models;
    - ``q1_gain``: the part-1 (predictor) rows of every query head of ``attn.wq`` are
      multiplied by this gain, so the Spark-attention logits s1 have a trained model's
      spread instead of the near-uniform softmax of a 1/sqrt(fan_in) initialisation.

    Both are drawn / applied after every other weight, so defaults leave the random stream
    (and the tokens drawn after the weights) unchanged."""
    V, d, f, dh = c["vocab_size"], c["d_model"], c["d_ff"], c["head_dim"]
    H, KV, r, k = c["n_heads"], c["n_kv_heads"], c["ffn_r"], c["ffn_k"]

    def normal(shape, std):
        return rng.standard_normal(shape) * std

    def norm_w():
        return 1.0 + 0.1 * rng.standard_normal(d)

    w = {}
    # embed rows ~ N(0, 1/d) so that E[tok] * sqrt(d) has unit-scale entries
    w["embed"] = normal((V, d), 1.0 / math.sqrt(d))
    w["final_norm"] = norm_w()
    if not c["tie_embeddings"]:
        w["lm_head"] = normal((V, d), 1.0 / math.sqrt(d))
    for i in range(c["n_layers"]):
        p = f"layers.{i}."
        w[p + "attn_norm"] = norm_w()
        w[p + "ffn_norm"] = norm_w()
        if c["post_norms"]:
            w[p + "post_attn_norm"] = norm_w()
            w[p + "post_ffn_norm"] = norm_w()
        w[p + "attn.wq"] = normal((H * dh, d), 1.0 / math.sqrt(d))
        w[p + "attn.wk"] = normal((KV * dh, d), 1.0 / math.sqrt(d))
        w[p + "attn.wv"] = normal((KV * dh, d), 1.0 / math.sqrt(d))
        w[p + "attn.wo"] = normal((d, H * dh), 1.0 / math.sqrt(H * dh))
        if c["ffn_kind"] == "spark":
            w[p + "ffn.k1"] = normal((f, r), 1.0 / math.sqrt(r))
            w[p + "ffn.k2"] = normal((f, d - r), 1.0 / math.sqrt(d - r))
            w[p + "ffn.v"] = normal((f, d), 1.0 / math.sqrt(k))
        else:
            w[p + "ffn.wg"] = normal((f, d), 1.0 / math.sqrt(d))
            w[p + "ffn.wu"] = normal((f, d), 1.0 / math.sqrt(d))
            w[p + "ffn.wd"] = normal((d, f), 1.0 / math.sqrt(min(f, 4 * k)))
    if embed_mean > 0.0:
        m = normal(d, 1.0 / math.sqrt(d))
        w["embed"] = math.sqrt(1.0 - embed_mean ** 2) * w["embed"] + embed_mean * m[None, :]
    if q1_gain != 1.0:
        assert c["attn_kind"] == "spark"
        ra = c["attn_r"]
        for i in range(c["n_layers"]):
            wq = w[f"layers.{i}.attn.wq"]
            for j in range(H):
                wq[j * dh:j * dh + ra, :] *= q1_gain
    return w


# Statistics of the trained demo model (models/demo_spark.safetensors, 4 layers, d = 160)
# that random 1/sqrt(fan_in) weights lack and that decide how a Spark model's top-k
# selections react to int8 noise; the random Spark models emulate them with
# ``random_weights(..., embed_mean, q1_gain)``. Measured on the demo model (embedding
# table; attention over the first 128 tokens of the prompts + greedy continuations of
# models/expected_f32.json):
# - embedding anisotropy |mean row| / rms row = 0.33 (isotropic random rows: ~0). A shared
#   direction makes the value vectors a query mixes partly coherent, so a key entering or
#   leaving the active set moves the head's output less;
# - Spark-attention logit spread: std of s1 over the visible keys 2.7 (random model: ~0.6),
#   so the softmax is peaked and the least-weighted selected key (the one at the
#   threshold) carries 0.34% of the weight on average, against 4-20% with near-uniform
#   random attention. A key that int8 noise moves across the threshold then barely changes
#   the output, as in a trained model.
# Gain 2.5 gives s1 std 1.2-1.6 on the golden models (attn_r 6-8, soft-cap 3 on one).
TRAINED_STATS = {"embed_mean": 0.35, "q1_gain": 2.5}


def to_f32(w: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}


def model_spark_basic(seed=1050):
    c = base_config(vocab_size=64, d_model=48, n_layers=2, n_heads=4, n_kv_heads=4,
                    head_dim=16, d_ff=192, ffn_kind="spark", ffn_r=16, ffn_k=16,
                    attn_kind="spark", attn_r=8, attn_k=16, max_seq_len=96)
    rng = np.random.default_rng(seed)
    w = to_f32(random_weights(c, rng, **TRAINED_STATS))
    tokens = rng.integers(0, c["vocab_size"], size=80)
    return c, w, tokens


def model_spark_gqa_window(seed=2049):
    c = base_config(vocab_size=80, d_model=64, n_layers=3, n_heads=4, n_kv_heads=2,
                    head_dim=16, d_ff=256, ffn_kind="spark", ffn_r=24, ffn_k=20,
                    attn_kind="spark", attn_r=6, attn_k=32, max_seq_len=128,
                    query_pre_attn_scalar=12.0, attn_logit_softcap=3.0,
                    final_logit_softcap=6.0, sliding_window=64, tie_embeddings=False,
                    post_norms=True, topk_cap_factor=1.5)
    rng = np.random.default_rng(seed)
    w = to_f32(random_weights(c, rng, **TRAINED_STATS))
    tokens = rng.integers(0, c["vocab_size"], size=128)
    return c, w, tokens


def model_dense_geglu(seed=3003):
    c = base_config(vocab_size=72, d_model=48, n_layers=2, n_heads=4, n_kv_heads=2,
                    head_dim=12, d_ff=96, ffn_kind="geglu", ffn_r=0, ffn_k=96,
                    attn_kind="dense", attn_r=0, attn_k=256, max_seq_len=48,
                    attn_logit_softcap=4.0, final_logit_softcap=8.0, sliding_window=10,
                    post_norms=True)
    rng = np.random.default_rng(seed)
    w = to_f32(random_weights(c, rng))
    tokens = rng.integers(0, c["vocab_size"], size=40)
    return c, w, tokens


def model_geglu_topk(seed=4039):
    c = base_config(vocab_size=64, d_model=40, n_layers=2, n_heads=4, n_kv_heads=1,
                    head_dim=10, d_ff=120, ffn_kind="geglu", ffn_r=0, ffn_k=12,
                    attn_kind="dense", attn_r=0, attn_k=256, max_seq_len=40,
                    tie_embeddings=False)
    rng = np.random.default_rng(seed)
    w = to_f32(random_weights(c, rng))
    tokens = rng.integers(0, c["vocab_size"], size=36)
    return c, w, tokens


def model_spark_overflow(seed=5047):
    """Weights crafted so the bounded top-k rules fire on real layers.

    - every embedding row gets a common component on coordinate 0, so h[0] is large
      and positive at layer 0 (h1 = h[:r] contains it);
    - layer 0 predictor K1: 20% of the rows carry a positive weight on coordinate 0 (a
      second mode of the score distribution above theta), in two tiers: cap = ceil(1.0 *
      16) = 16 rows with +1.6 and the other 22 with +1.0. About 30 rows pass theta for
      k = 16 -> FFN overflow on every position; the cap largest are the first tier, and
      the tier gap puts the cap-th / (cap+1)-th boundary far from the rounding noise of
      an int8 implementation (an overflow swaps two neurons with large t, a full-size
      change of the layer's output, unlike a flip at theta where t ~ 0);
    - layer 1 predictor K1 = 0: all scores equal, sigma = 0, nothing passes ->
      FFN underflow on every position; also head 0's query rows of part 1 are zero,
      so its s1 are all 0 -> attention underflow whenever n > ka;
    - layer 2 is plain Gaussian with cap factor 1.0 -> natural overflows (FFN and
      attention).

    No ``TRAINED_STATS``: the crafted coordinate-0 component already makes the
    embeddings strongly anisotropic.
    """
    c = base_config(vocab_size=64, d_model=48, n_layers=3, n_heads=2, n_kv_heads=1,
                    head_dim=16, d_ff=192, ffn_kind="spark", ffn_r=16, ffn_k=16,
                    attn_kind="spark", attn_r=8, attn_k=12, max_seq_len=80,
                    topk_cap_factor=1.0)
    rng = np.random.default_rng(seed)
    w = random_weights(c, rng)
    d, f, r, dh = c["d_model"], c["d_ff"], c["ffn_r"], c["head_dim"]
    w["embed"][:, 0] = 4.0 / math.sqrt(d)
    k1 = rng.standard_normal((f, r)) * (0.3 / math.sqrt(r))
    cap = math.ceil(c["topk_cap_factor"] * c["ffn_k"])
    mode = rng.permutation(f)[: f // 5]
    k1[mode[:cap], 0] += 1.6
    k1[mode[cap:], 0] += 1.0
    w["layers.0.ffn.k1"] = k1
    w["layers.1.ffn.k1"] = np.zeros((f, r))
    ra = c["attn_r"]
    w["layers.1.attn.wq"][0:ra, :] = 0.0  # head 0, part 1
    w = to_f32(w)
    tokens = rng.integers(0, c["vocab_size"], size=80)
    return c, w, tokens


# Seeds: each model's default seed is the one, among 60 consecutive candidates starting
# at 1001 / 2001 / 3003 / 4004 / 5005, with the largest minimum top-k decision margin
# (distance of any score from theta, or of the cap-th from the (cap+1)-th score in an
# overflow, in units of sigma), so a float32 consumer rarely flips a selection. The
# search is reproducible with `python train/reference.py --search-seeds 60`; it was rerun
# when the three Spark models got their current shapes (spark_basic 1050, spark_gqa_window
# 2049, spark_overflow 5047; minimum margins 2.9e-4, 7.8e-5, 2.0e-4 sigma). Only the
# margin ranks seeds: no int8 result took part in the choice.
MODELS = {
    "spark_basic": model_spark_basic,
    "spark_gqa_window": model_spark_gqa_window,
    "dense_geglu": model_dense_geglu,
    "geglu_topk": model_geglu_topk,
    "spark_overflow": model_spark_overflow,
}


# ---------------------------------------------------------------------------
# Golden output
# ---------------------------------------------------------------------------

def golden_tensors(tokens, tr: Trace) -> dict:
    g = {"tokens": np.asarray(tokens, dtype=np.int32),
         "logits": tr.logits.astype(np.float32)}
    for i in range(tr.n_layers):
        p = f"layers.{i}."
        g[p + "ffn_theta"] = tr.ffn_theta[i].astype(np.float32)
        g[p + "ffn_active"] = tr.ffn_active[i].astype(np.uint8)
        g[p + "ffn_events"] = tr.ffn_events[i].astype(np.int32)
        g[p + "attn_active"] = tr.attn_active[i].astype(np.uint8)
        g[p + "attn_events"] = tr.attn_events[i].astype(np.int32)
    return {k: np.ascontiguousarray(v) for k, v in g.items()}


def summarize(c: dict, tr: Trace) -> dict:
    L = tr.n_layers
    layers = []
    for i in range(L):
        fe, ae = tr.ffn_events[i], tr.attn_events[i]
        # attention active counts relative to visible counts
        act = tr.attn_active[i].astype(np.int64).sum(axis=2)  # [T, H]
        layers.append({
            "ffn_overflow": int((fe == EVENT_OVERFLOW).sum()),
            "ffn_underflow": int((fe == EVENT_UNDERFLOW).sum()),
            "ffn_active_fraction_mean": float(tr.ffn_active[i].mean()),
            "ffn_active_count_mean": float(tr.ffn_active[i].sum(axis=1).mean()),
            "attn_overflow": int((ae == EVENT_OVERFLOW).sum()),
            "attn_underflow": int((ae == EVENT_UNDERFLOW).sum()),
            "attn_active_count_mean": float(act.mean()),
        })
    lg = tr.logits
    return {
        "config": c,
        "T": tr.T,
        "ffn_overflow": sum(l["ffn_overflow"] for l in layers),
        "ffn_underflow": sum(l["ffn_underflow"] for l in layers),
        "attn_overflow": sum(l["attn_overflow"] for l in layers),
        "attn_underflow": sum(l["attn_underflow"] for l in layers),
        "attn_query_heads_with_n_gt_ka": tr.attn_selected_positions,
        "attn_query_heads_with_all_visible": tr.attn_all_positions,
        "min_ffn_decision_margin_sigmas": (None if math.isinf(tr.ffn_margin)
                                           else tr.ffn_margin),
        "min_attn_decision_margin_sigmas": (None if math.isinf(tr.attn_margin)
                                            else tr.attn_margin),
        "logits_std_mean": float(lg.std(axis=1).mean()),
        "logits_absmax": float(np.abs(lg).max()),
        "layers": layers,
    }


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read())
    return h.hexdigest()


def generate(out: str, verbose: bool = True) -> dict:
    from safetensors.numpy import save_file
    os.makedirs(out, exist_ok=True)
    manifest = {
        "generator": "train/reference.py (float64 numpy reference, SPEC sections 3-6)",
        "regenerate": "python train/reference.py --out tests/golden",
        "event_codes": {"0": "none", "1": "overflow", "2": "underflow"},
        "models": {},
    }
    total = 0
    for name, fn in MODELS.items():
        c, w, tokens = fn()
        ck = os.path.join(out, f"{name}.safetensors")
        gp = os.path.join(out, f"{name}.golden.safetensors")
        save_checkpoint(ck, c, w)
        # run from the stored checkpoint so the golden matches the file exactly
        c2, w2 = load_checkpoint(ck)
        tr = Model(c2, w2).forward(tokens)
        save_file(golden_tensors(tokens, tr), gp)
        s = summarize(c2, tr)
        s["checkpoint"] = os.path.basename(ck)
        s["golden"] = os.path.basename(gp)
        s["checkpoint_sha256"] = sha256(ck)
        s["golden_sha256"] = sha256(gp)
        manifest["models"][name] = s
        total += os.path.getsize(ck) + os.path.getsize(gp)
        if verbose:
            print(f"{name}: T={s['T']} ffn overflow={s['ffn_overflow']} "
                  f"underflow={s['ffn_underflow']} | attn overflow={s['attn_overflow']} "
                  f"underflow={s['attn_underflow']} n>ka={s['attn_query_heads_with_n_gt_ka']} "
                  f"n<=ka/dense={s['attn_query_heads_with_all_visible']} | "
                  f"ffn active/layer={[round(l['ffn_active_count_mean'], 2) for l in s['layers']]} "
                  f"| min margins ffn={s['min_ffn_decision_margin_sigmas']} "
                  f"attn={s['min_attn_decision_margin_sigmas']} "
                  f"| logits std={s['logits_std_mean']:.3f} absmax={s['logits_absmax']:.3f}")
    mp = os.path.join(out, "manifest.json")
    with open(mp, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=False)
        fh.write("\n")
    total += os.path.getsize(mp)
    if verbose:
        print(f"total size of golden files: {total} bytes ({total / 1e6:.3f} MB)")
    return manifest


SEARCH_BASES = {"spark_basic": 1001, "spark_gqa_window": 2001, "dense_geglu": 3003,
                "geglu_topk": 4004, "spark_overflow": 5005}


def search_seeds(count: int) -> None:
    """Print, per model, the candidate seeds ranked by minimum decision margin."""
    for name, fn in MODELS.items():
        ranked = []
        for seed in range(SEARCH_BASES[name], SEARCH_BASES[name] + count):
            c, w, tokens = fn(seed)
            tr = Model(c, w).forward(tokens)
            ranked.append((min(tr.ffn_margin, tr.attn_margin), seed))
        ranked.sort(key=lambda x: (-x[0], x[1]))
        print(name, [(s, m) for m, s in ranked[:5]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/golden", help="output directory")
    ap.add_argument("--search-seeds", type=int, default=0, metavar="N",
                    help="only rank N candidate seeds per model by decision margin")
    args = ap.parse_args(argv)
    if args.search_seeds:
        search_seeds(args.search_seeds)
        return 0
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
