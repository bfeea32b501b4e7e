#!/usr/bin/env python3
"""Checks of train/reference.py against brute-force, independently written formulations.

Plain asserts, no pytest needed:  python train/test_reference.py
(pytest also collects the test_* functions.)
"""

from __future__ import annotations

import cmath
import hashlib
import json
import math
import os
import sys
import tempfile
from statistics import NormalDist

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference as R  # noqa: E402

GOLDEN_DIR = os.path.join(os.path.dirname(HERE), "tests", "golden")


# ---------------------------------------------------------------------------
# Independent brute-force formulations (pure Python / different numpy route)
# ---------------------------------------------------------------------------

def bf_topk(x, k, cap_factor):
    """Statistical top-k by plain Python loops, math.fsum statistics, explicit sorting."""
    x = [float(v) for v in x]
    n = len(x)
    if k >= n:
        return set(range(n)), list(x), float("nan"), 0
    mu = math.fsum(x) / n
    sigma = math.sqrt(math.fsum((v - mu) ** 2 for v in x) / n)
    theta = mu + NormalDist().inv_cdf(1.0 - k / n) * sigma
    passed = [i for i in range(n) if x[i] > theta]
    cap = min(n, math.ceil(cap_factor * k))
    event = 0
    if len(passed) > cap:
        passed = sorted(passed, key=lambda i: (-x[i], i))[:cap]
        event = 1
    t = [0.0] * n
    if not passed:
        best = min(range(n), key=lambda i: (-x[i], i))
        return {best}, t, theta, 2
    for i in passed:
        t[i] = x[i] - theta
    return set(passed), t, theta, event


def bf_gelu_exact(x):
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def bf_rope(vec, pos, theta, split):
    """RoPE through complex multiplication: pair (x_i, x_{i+w/2}) as x_i + j x_{i+w/2}."""
    vec = list(vec)
    parts = [vec] if split == 0 else [vec[:split], vec[split:]]
    out = []
    for part in parts:
        w = len(part)
        half = w // 2
        re, im = [0.0] * half, [0.0] * half
        for i in range(half):
            zc = complex(part[i], part[i + half]) * cmath.exp(1j * pos * theta ** (-2.0 * i / w))
            re[i], im[i] = zc.real, zc.imag
        out.extend(re + im)
    return np.array(out)


def bf_softplus(x):
    return x if x > 20.0 else math.log(1.0 + math.exp(x))


def parallel_forward(cfg, w, tokens):
    """Whole-sequence forward with causal/window masks (no KV cache), an independent
    formulation of the decode loop in reference.Model. Returns (logits, ffn_active,
    attn_active, ffn_events, attn_events)."""
    c = R.normalize_config(cfg)
    w = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    T = len(tokens)
    d, L, H, KV, dh = c["d_model"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["head_dim"]
    eps = c["norm_eps"]
    sc = 1.0 / math.sqrt(c["query_pre_attn_scalar"])
    split = c["attn_r"] if c["attn_kind"] == "spark" else 0

    def norm_rows(X, g):
        return X / np.sqrt((X ** 2).sum(axis=1, keepdims=True) / X.shape[1] + eps) * g

    def cap_fn(s, cap):
        return cap * np.tanh(s / cap) if cap > 0 else s

    def gelu_tanh(v):
        return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v * v * v)))

    X = w["embed"][np.asarray(tokens)] * c["embed_scale"]
    ffn_active, attn_active, ffn_ev, attn_ev = [], [], [], []
    for i in range(L):
        p = f"layers.{i}."
        Hn = norm_rows(X, w[p + "attn_norm"])
        Q = (Hn @ w[p + "attn.wq"].T).reshape(T, H, dh)
        K = (Hn @ w[p + "attn.wk"].T).reshape(T, KV, dh)
        Vv = (Hn @ w[p + "attn.wv"].T).reshape(T, KV, dh)
        Q = np.stack([np.stack([bf_rope(Q[t, j], t, c["rope_theta"], split) for j in range(H)])
                      for t in range(T)])
        K = np.stack([np.stack([bf_rope(K[t, j], t, c["rope_theta"], split) for j in range(KV)])
                      for t in range(T)])
        pos = np.arange(T)
        vis = pos[None, :] <= pos[:, None]
        if c["sliding_window"] > 0 and i % 2 == 0:
            vis &= pos[None, :] > pos[:, None] - c["sliding_window"]
        O = np.zeros((T, H, dh))
        act = np.zeros((T, H, T), dtype=np.uint8)
        aev = np.zeros((T, H), dtype=np.int32)
        for j in range(H):
            kv = j * KV // H
            if c["attn_kind"] == "dense":
                S = cap_fn(sc * Q[:, j] @ K[:, kv].T, c["attn_logit_softcap"])
                S = np.where(vis, S, -np.inf)
                P = np.exp(S - S.max(axis=1, keepdims=True))
                P /= P.sum(axis=1, keepdims=True)
                O[:, j] = P @ Vv[:, kv]
                act[:, j] = vis
            else:
                ra = c["attn_r"]
                S1 = cap_fn(sc * Q[:, j, :ra] @ K[:, kv, :ra].T, c["attn_logit_softcap"])
                G = sc * Q[:, j, ra:] @ K[:, kv, ra:].T
                for t in range(T):
                    cols = np.nonzero(vis[t])[0]
                    sel, _, _, ev = bf_topk(S1[t, cols], c["attn_k"], c["topk_cap_factor"])
                    keep = cols[sorted(sel)]
                    e = np.exp(S1[t, keep] - S1[t, keep].max())
                    wts = e / e.sum()
                    g = np.array([bf_softplus(v) for v in G[t, keep]])
                    O[t, j] = (wts * g) @ Vv[keep, kv]
                    act[t, j, keep] = 1
                    aev[t, j] = ev
        A = O.reshape(T, H * dh) @ w[p + "attn.wo"].T
        if c["post_norms"]:
            A = norm_rows(A, w[p + "post_attn_norm"])
        X = X + A
        Hn = norm_rows(X, w[p + "ffn_norm"])
        f = c["d_ff"]
        fa = np.zeros((T, f), dtype=np.uint8)
        fev = np.zeros(T, dtype=np.int32)
        if c["ffn_kind"] == "spark":
            r = c["ffn_r"]
            Sc = Hn[:, :r] @ w[p + "ffn.k1"].T          # [T, f]
            U = Hn[:, r:] @ w[p + "ffn.k2"].T           # [T, f]
            coef = np.zeros((T, f))
            for t in range(T):
                sel, tt, _, ev = bf_topk(Sc[t], c["ffn_k"], c["topk_cap_factor"])
                for n_ in sel:
                    coef[t, n_] = gelu_tanh(np.float64(tt[n_])) * U[t, n_]
                    fa[t, n_] = 1
                fev[t] = ev
            M = coef @ w[p + "ffn.v"]
        else:
            G = Hn @ w[p + "ffn.wg"].T
            U = Hn @ w[p + "ffn.wu"].T
            A_ = np.zeros((T, f))
            for t in range(T):
                sel, tt, _, ev = bf_topk(G[t], c["ffn_k"], c["topk_cap_factor"])
                for n_ in sel:
                    A_[t, n_] = gelu_tanh(np.float64(tt[n_]))
                    fa[t, n_] = 1
                fev[t] = ev
            M = (A_ * U) @ w[p + "ffn.wd"].T
        if c["post_norms"]:
            M = norm_rows(M, w[p + "post_ffn_norm"])
        X = X + M
        ffn_active.append(fa)
        attn_active.append(act)
        ffn_ev.append(fev)
        attn_ev.append(aev)
    Xf = norm_rows(X, w["final_norm"])
    head = w["embed"] if c["tie_embeddings"] else w["lm_head"]
    logits = cap_fn(Xf @ head.T, c["final_logit_softcap"])
    return logits, ffn_active, attn_active, ffn_ev, attn_ev


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_quantiles_match_spec():
    assert abs(R.stat_quantile(8, 100) - 1.4050716) < 1e-7
    assert abs(R.stat_quantile(5, 100) - 1.6448536) < 1e-7
    for n, z in [(512, 0.0), (1024, 0.6744898), (2048, 1.1503494), (4096, 1.5341205),
                 (8192, 1.8627319)]:
        assert abs(R.stat_quantile(256, n) - z) < 1e-7, (n, R.stat_quantile(256, n))


def test_topk_gaussian_count():
    rng = np.random.default_rng(7)
    for n, k in [(200_000, 16_000), (100_000, 5_000), (50_000, 25_000)]:
        x = rng.standard_normal(n) * 3.0 + 1.5
        tk = R.stat_topk(x, k, cap_factor=2.0)
        cnt = int(tk.active.sum())
        assert abs(cnt - k) < 0.03 * k, (n, k, cnt)
        assert tk.event == 0
        assert np.all(tk.t[tk.active] > 0) and np.all(tk.t[~tk.active] == 0)
        assert np.allclose(tk.t[tk.active], x[tk.active] - tk.theta, rtol=0, atol=0)


def test_topk_identity():
    x = np.array([3.0, -1.0, 0.5, 0.5])
    for k in (4, 5, 100):
        tk = R.stat_topk(x, k, 2.0)
        assert tk.active.all() and np.array_equal(tk.t, x) and math.isnan(tk.theta)
        assert tk.event == 0


def test_topk_against_bruteforce():
    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(2, 60))
        k = int(rng.integers(1, n + 2))
        capf = [1.0, 1.5, 2.0, 3.0][trial % 4]
        kind = trial % 5
        if kind == 0:
            x = rng.standard_normal(n)
        elif kind == 1:   # heavy ties
            x = rng.integers(-2, 3, size=n).astype(float)
        elif kind == 2:   # bimodal: many pass
            x = np.where(rng.random(n) < 0.4, 5.0, 0.0) + 0.01 * rng.standard_normal(n)
        elif kind == 3:   # constant: sigma = 0
            x = np.full(n, float(rng.integers(-3, 4)))
        else:             # exponential heavy tail
            x = rng.exponential(size=n) ** 3
        tk = R.stat_topk(x, k, capf)
        sel, t, theta, ev = bf_topk(x, k, capf)
        assert set(np.nonzero(tk.active)[0].tolist()) == sel, (trial, x, k, capf)
        assert tk.event == ev, (trial, tk.event, ev)
        assert np.allclose(tk.t, t, rtol=1e-12, atol=1e-12)
        if k < n:
            assert abs(tk.theta - theta) <= 1e-12 * (1 + abs(theta))
            assert tk.active.sum() <= min(n, math.ceil(capf * k))


def test_topk_bounded_rules_explicit():
    # overflow with ties: cap = 2; three equal largest -> the two lowest indices
    x = np.array([0.0, 7.0, 0.0, 7.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    tk = R.stat_topk(x, 1, 2.0)
    assert tk.event == R.EVENT_OVERFLOW
    assert np.nonzero(tk.active)[0].tolist() == [1, 3]
    # underflow: constant scores -> single entry at index 0, t = 0
    tk = R.stat_topk(np.full(9, 2.5), 3, 2.0)
    assert tk.event == R.EVENT_UNDERFLOW
    assert np.nonzero(tk.active)[0].tolist() == [0] and np.all(tk.t == 0)
    assert tk.theta == 2.5
    # cap clipped to n
    x = np.array([1.0, 1.0, 1.0, 0.0])
    tk = R.stat_topk(x, 3, 2.0)  # z = Phi^-1(0.25) < 0: theta below the 1.0s
    assert tk.event == 0 and tk.active.tolist() == [True, True, True, False]


def test_elementwise():
    for v in np.linspace(-6, 6, 49):
        assert abs(float(R.gelu(v)) - bf_gelu_exact(v)) < 1e-3
        assert abs(float(R.softplus(v)) - bf_softplus(v)) < 1e-12
    assert float(R.softplus(20.5)) == 20.5 and float(R.softplus(1000.0)) == 1000.0
    assert abs(float(R.softplus(20.0)) - math.log1p(math.exp(20.0))) < 1e-15
    assert float(R.gelu(0.0)) == 0.0
    x = np.array([1.0, -2.0, 3.0, 0.5])
    w = np.array([1.1, 0.9, 1.0, 1.2])
    ref = [x[i] / math.sqrt(sum(v * v for v in x) / 4 + 1e-6) * w[i] for i in range(4)]
    assert np.allclose(R.rmsnorm(x, w, 1e-6), ref, rtol=1e-14)
    assert np.allclose(R.softcap(np.array([0.1, 100.0]), 5.0), [5 * math.tanh(0.02), 5 * math.tanh(20)])
    assert np.array_equal(R.softcap(np.array([0.1, 100.0]), 0.0), [0.1, 100.0])


def test_rope():
    rng = np.random.default_rng(3)
    for dh, split in [(16, 0), (16, 8), (12, 4), (10, 0), (16, 6)]:
        for pos in (0, 1, 5, 37):
            v = rng.standard_normal(dh)
            r = R.rope_head(v, pos, 10000.0, split)
            assert np.allclose(r, bf_rope(v, pos, 10000.0, split), atol=1e-12)
            assert abs(np.linalg.norm(r) - np.linalg.norm(v)) < 1e-12
            if split:
                assert abs(np.linalg.norm(r[:split]) - np.linalg.norm(v[:split])) < 1e-12
            if pos == 0:
                assert np.array_equal(r, v)
        # relative position: <rope(q,p), rope(k,p')> depends on p - p' only
        q, k = rng.standard_normal(dh), rng.standard_normal(dh)
        a = R.rope_head(q, 9, 10000.0, split) @ R.rope_head(k, 4, 10000.0, split)
        b = R.rope_head(q, 25, 10000.0, split) @ R.rope_head(k, 20, 10000.0, split)
        assert abs(a - b) < 1e-12
    # rotate-half pairing, first frequency is 1 rad/position
    v = np.zeros(8)
    v[0] = 1.0
    r = R.rope_part(v, 1, 10000.0)
    assert np.allclose(r, [math.cos(1), 0, 0, 0, math.sin(1), 0, 0, 0])


def test_spark_attention_reduces_to_dense():
    rng = np.random.default_rng(5)
    n, dh, ra = 9, 12, 4
    c = 12 ** -0.5
    K, V = rng.standard_normal((n, dh)), rng.standard_normal((n, dh))
    q = rng.standard_normal(dh)
    q[ra:] = 0.0  # softplus(0) = ln 2 for every key
    for cap in (0.0, 2.0):
        o_s, act, ev, _ = R.attend_spark(q, K, V, c, cap, ra, ka=n, cap_factor=2.0)
        o_d, _, _, _ = R.attend_dense(q, K, V, c, cap)
        assert act.all() and ev == 0
        assert np.allclose(o_s, math.log(2.0) * o_d, atol=1e-13)
    # saturated softplus branch: g_j = c q2.k2 exactly
    q2 = q.copy()
    q2[ra:] = 0.0
    K2 = K.copy()
    K2[:, ra:] = 0.0
    K2[:, ra] = 500.0
    q2[ra] = 1.0
    o_s, _, _, _ = R.attend_spark(q2, K2, V, c, 0.0, ra, ka=n, cap_factor=2.0)
    s1 = c * K2[:, :ra] @ q2[:ra]
    wts = np.exp(s1 - s1.max()) / np.exp(s1 - s1.max()).sum()
    assert np.allclose(o_s, (wts * (c * 500.0)) @ V, atol=1e-12)
    # n > ka: brute force selection, softmax over S only, no renormalisation
    q = rng.standard_normal(dh)
    for ka in (1, 3, 5):
        o_s, act, ev, _ = R.attend_spark(q, K, V, c, 0.0, ra, ka=ka, cap_factor=2.0)
        s1 = c * K[:, :ra] @ q[:ra]
        sel, _, _, bev = bf_topk(s1, ka, 2.0)
        sel = sorted(sel)
        assert np.nonzero(act)[0].tolist() == sel and ev == bev
        e = [math.exp(s1[j]) for j in sel]
        ref = sum(e[m] / sum(e) * bf_softplus(c * float(q[ra:] @ K[j, ra:])) * V[j]
                  for m, j in enumerate(sel))
        assert np.allclose(o_s, ref, atol=1e-12)


def test_ffn_matrix_formulas():
    rng = np.random.default_rng(9)
    d, f, r, k = 24, 64, 8, 6
    h = rng.standard_normal(d)
    Wg, Wu, Wd = rng.standard_normal((f, d)), rng.standard_normal((f, d)), rng.standard_normal((d, f))
    y, tk = R.ffn_geglu(h, Wg, Wu, Wd, f, 2.0)
    g = Wg @ h
    ge = np.array([0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in g])
    assert np.allclose(y, Wd @ (ge * (Wu @ h)), atol=1e-11) and tk.active.all()
    # gate top-k: masked matrix formula
    y, tk = R.ffn_geglu(h, Wg, Wu, Wd, k, 2.0)
    sel, t, _, _ = bf_topk(g, k, 2.0)
    mask = np.array([i in sel for i in range(f)], dtype=float)
    act = mask * np.array([0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in t])
    assert np.allclose(y, Wd @ (act * (Wu @ h)), atol=1e-11)
    # spark FFN: V^T (mask * gelu(t) * (K2 h2)) as one dense product
    K1, K2, V = rng.standard_normal((f, r)), rng.standard_normal((f, d - r)), rng.standard_normal((f, d))
    y, tk = R.ffn_spark(h, K1, K2, V, k, 2.0)
    sel, t, _, _ = bf_topk(K1 @ h[:r], k, 2.0)
    mask = np.array([i in sel for i in range(f)], dtype=float)
    act = mask * np.array([bf_gelu_tanh(v) for v in t])
    assert np.allclose(y, V.T @ (act * (K2 @ h[r:])), atol=1e-11)


def bf_gelu_tanh(v):
    return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))


def test_models_decode_equals_parallel():
    for name, fn in R.MODELS.items():
        cfg, w, tokens = fn()
        tr = R.Model(cfg, w).forward(tokens)
        logits, fa, aa, fe, ae = parallel_forward(cfg, w, tokens)
        assert np.allclose(tr.logits, logits, rtol=0, atol=1e-9), (name, np.abs(tr.logits - logits).max())
        for i in range(cfg["n_layers"]):
            assert np.array_equal(tr.ffn_active[i], fa[i]), (name, i)
            assert np.array_equal(tr.attn_active[i], aa[i]), (name, i)
            assert np.array_equal(tr.ffn_events[i], fe[i]), (name, i)
            assert np.array_equal(tr.attn_events[i], ae[i]), (name, i)


def test_causality():
    cfg, w, tokens = R.model_spark_gqa_window()
    m = R.Model(cfg, w)
    a = m.forward(tokens).logits
    t2 = tokens.copy()
    t2[30:] = (t2[30:] + 7) % cfg["vocab_size"]
    b = m.forward(t2).logits
    assert np.array_equal(a[:30], b[:30])
    assert not np.allclose(a[30:], b[30:])


def test_overflow_model_exercises_rules():
    cfg, w, tokens = R.model_spark_overflow()
    tr = R.Model(cfg, w).forward(tokens)
    c = R.normalize_config(cfg)
    fe = np.stack(tr.ffn_events)
    ae = np.stack(tr.attn_events)
    assert (fe == 1).sum() > 0 and (fe == 2).sum() > 0
    assert (ae == 1).sum() > 0 and (ae == 2).sum() > 0
    assert tr.attn_selected_positions > 0 and tr.attn_all_positions > 0
    cap_f = math.ceil(c["topk_cap_factor"] * c["ffn_k"])
    cap_a = math.ceil(c["topk_cap_factor"] * c["attn_k"])
    for i in range(c["n_layers"]):
        cnt = tr.ffn_active[i].sum(axis=1)
        assert cnt.max() <= cap_f
        assert np.all(cnt[tr.ffn_events[i] == 2] == 1)
        acnt = tr.attn_active[i].sum(axis=2)
        T = len(tokens)
        for p in range(T):
            nvis = p + 1
            if nvis > c["attn_k"]:
                assert np.all(acnt[p] <= cap_a)
            else:
                assert np.all(acnt[p] == nvis)


def _hashes(d):
    out = {}
    for fn in sorted(os.listdir(d)):
        with open(os.path.join(d, fn), "rb") as fh:
            out[fn] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _same_summary(a, b, path="manifest"):
    """`a == b` for parsed JSON, floats within 1e-12 relative, or absolute below 1 (the
    manifest's summary statistics are numpy reductions whose last bits depend on the CPU's
    SIMD path: an AVX2-only machine and an AVX-512 one differ in the 16th digit, and the
    decision margins are differences of such sums)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), path
        assert abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1.0), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _same_summary(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same_summary(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_generation_deterministic_and_committed_files_current():
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        R.generate(a, verbose=False)
        R.generate(b, verbose=False)
        ha, hb = _hashes(a), _hashes(b)
        assert ha == hb
        if os.path.isdir(GOLDEN_DIR) and os.listdir(GOLDEN_DIR):
            # The checkpoints and golden tensors byte for byte (their hashes are also in
            # the manifest); the manifest's statistics to the last few bits.
            hg = _hashes(GOLDEN_DIR)
            stale = "tests/golden is stale: run python train/reference.py --out tests/golden"
            assert hg.keys() == ha.keys(), stale
            for fn in ha:
                if fn != "manifest.json":
                    assert hg[fn] == ha[fn], f"{stale} ({fn} differs)"
            with open(os.path.join(a, "manifest.json")) as fa, open(os.path.join(GOLDEN_DIR, "manifest.json")) as fg:
                try:
                    _same_summary(json.load(fg), json.load(fa))
                except AssertionError as e:
                    raise AssertionError(f"{stale} ({e})") from None


def test_golden_files_format():
    if not os.path.isdir(GOLDEN_DIR):
        return
    with open(os.path.join(GOLDEN_DIR, "manifest.json")) as fh:
        manifest = json.load(fh)
    total = 0
    for name in R.MODELS:
        ck = os.path.join(GOLDEN_DIR, f"{name}.safetensors")
        gp = os.path.join(GOLDEN_DIR, f"{name}.golden.safetensors")
        total += os.path.getsize(ck) + os.path.getsize(gp)
        cfg, w = R.load_checkpoint(ck)
        assert list(cfg) == list(R.CONFIG_FIELDS)
        assert isinstance(cfg["tie_embeddings"], bool) and isinstance(cfg["post_norms"], bool)
        for k in R.FLOAT_FIELDS:
            assert isinstance(cfg[k], float) and float(np.float32(cfg[k])) == cfg[k]
        assert all(v.dtype == np.float32 for v in w.values())
        R.check_weight_shapes(R.normalize_config(cfg), w)
        g = R.load_golden(gp)
        T, Vv, L, H, f = (len(g["tokens"]), cfg["vocab_size"], cfg["n_layers"],
                          cfg["n_heads"], cfg["d_ff"])
        exp = {"tokens": ((T,), np.int32), "logits": ((T, Vv), np.float32)}
        for i in range(L):
            p = f"layers.{i}."
            exp[p + "ffn_theta"] = ((T,), np.float32)
            exp[p + "ffn_active"] = ((T, f), np.uint8)
            exp[p + "ffn_events"] = ((T,), np.int32)
            exp[p + "attn_active"] = ((T, H, T), np.uint8)
            exp[p + "attn_events"] = ((T, H), np.int32)
        assert set(g) == set(exp), (name, sorted(set(g) ^ set(exp)))
        for k, (shape, dt) in exp.items():
            assert g[k].shape == shape and g[k].dtype == dt, (name, k, g[k].shape, g[k].dtype)
        assert T <= cfg["max_seq_len"]
        tr = R.Model(cfg, w).forward(g["tokens"])
        assert np.array_equal(tr.logits.astype(np.float32), g["logits"])
        # dense identity case: theta NaN
        if cfg["ffn_k"] >= f:
            assert np.all(np.isnan(g["layers.0.ffn_theta"]))
        assert name in manifest["models"]
        # logits are not degenerate
        assert g["logits"].std(axis=1).min() > 0.3
    total += os.path.getsize(os.path.join(GOLDEN_DIR, "manifest.json"))
    assert total < 3_000_000, total


def main() -> int:
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok    {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print(f"FAIL  {name}: {e!r}")
    print(f"{len(tests) - failed}/{len(tests)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
