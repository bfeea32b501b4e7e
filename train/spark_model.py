#!/usr/bin/env python3
"""PyTorch training model for Spark Transformers (SPEC sections 3-6).

Implements exactly the math of ``train/reference.py`` (the float64 numpy reference), in a
batched, differentiable form suitable for training:

* ``StatTopK``      statistical top-k (mean / population std over the last dim, masked
                    entries excluded, z = Phi^-1(1 - k/n) in float64, soft threshold).
* ``SparkFFN``      K1 [f, r], K2 [f, d-r], V [f, d]; y = sum_i gelu(t_i) (K2_i . h2) V_i,
                    computed densely-masked (gelu(0) = 0, so entries outside the active set
                    contribute exactly nothing: same result as the sparse gather).
* ``GeGLUFFN``      wg, wu [f, d], wd [d, f]; optional stat-top-k on the gate.
* ``SparkAttention``split RoPE, predictor scores s1 (soft-capped), top-ka over the visible
                    keys of each query row, softmax over the selection times
                    softplus(c q2.k2), no renormalisation.
* ``DenseAttention``RoPE over the whole head, softmax.
* ``SparkLM``       Gemma-2-style decoder (GQA, sliding window on even layers, RMSNorm with
                    the weight as the multiplier, embed_scale, tied embeddings, optional post
                    norms and logit soft-caps).

Bounded-capacity rules (SPEC section 6). Training uses the soft threshold directly, as the
paper does: every entry above theta is active. Two rules of the runtime are applied as follows:

* underflow (nothing passes: keep the single largest, lowest index on ties, with t = 0) is
  applied ALWAYS, in training too. For the FFN it changes nothing numerically
  (gelu(0) = 0); for attention it keeps the softmax over a non-empty set (no NaN).
* overflow (more than cap = min(n, ceil(topk_cap_factor * k)) pass: keep the cap largest,
  lower index first on ties) is applied only when ``bounded`` is on, which by default
  means eval mode (``model.eval()``): exactly the runtime/reference semantics. In training
  mode all passing entries stay active. ``SparkLM.bounded`` = True/False forces it.

Gradients flow through mu and sigma (theta is a differentiable function of the scores) and
through the soft threshold; the attention selection itself is a hard mask (as causal masks).

The module parameter names equal the checkpoint tensor names (``embed``, ``final_norm``,
``lm_head``, ``layers.{i}.attn_norm``, ``layers.{i}.attn.wq``, ``layers.{i}.ffn.k1``, ...), so
``model.state_dict()`` is the checkpoint (see ``train/export.py``).
"""

from __future__ import annotations

import json
import math
from statistics import NormalDist
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def _f32(v: float) -> float:
    import struct
    return struct.unpack("<f", struct.pack("<f", float(v)))[0]


def normalize_config(cfg: dict) -> dict:
    """Same normalisation as reference.py: exactly the SPEC field names, float fields
    rounded to f32-representable values, ints as ints, booleans as booleans.
    ``embed_scale`` / ``query_pre_attn_scalar`` may be given as the string ``"sqrt_d"`` /
    ``"head_dim"`` (resolved here)."""
    cfg = dict(cfg)
    if cfg.get("embed_scale") == "sqrt_d":
        cfg["embed_scale"] = math.sqrt(cfg["d_model"])
    if cfg.get("query_pre_attn_scalar") == "head_dim":
        cfg["query_pre_attn_scalar"] = float(cfg["head_dim"])
    out = {}
    for k in CONFIG_FIELDS:
        if k not in cfg:
            raise KeyError(f"config field {k!r} missing")
        v = cfg[k]
        if k in FLOAT_FIELDS:
            out[k] = _f32(float(v))
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
    assert c["ffn_kind"] in ("spark", "geglu"), c["ffn_kind"]
    assert c["attn_kind"] in ("spark", "dense"), c["attn_kind"]
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

_GELU_C = math.sqrt(2.0 / math.pi)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (identical to F.gelu(approximate='tanh'))."""
    return F.gelu(x, approximate="tanh")


def softplus(x: torch.Tensor) -> torch.Tensor:
    """ln(1 + e^x) with x > 20 -> x (torch's threshold rule is exactly that)."""
    return F.softplus(x, beta=1.0, threshold=20.0)


def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return cap * torch.tanh(x / cap) if cap > 0.0 else x


def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * w  (w is the multiplier itself)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * w


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return rmsnorm(x, self.weight, self.eps)


def rope_tables(T: int, width: int, theta: float, dtype, device):
    """cos/sin [T, width/2] for rotate-half RoPE: freq_i = theta^(-2i/width), angle = p*freq_i.
    Computed in float64, then cast."""
    half = width // 2
    i = torch.arange(half, dtype=torch.float64)
    freq = theta ** (-2.0 * i / width)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).to(dtype=dtype, device=device), torch.sin(ang).to(dtype=dtype, device=device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., T, w]; (x_i, x_{i+w/2}) -> (x_i cos - x_{i+w/2} sin, x_{i+w/2} cos + x_i sin)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


# ---------------------------------------------------------------------------
# Statistical top-k (SPEC section 6)
# ---------------------------------------------------------------------------

_Z_CACHE: dict = {}


def z_table(k: int, n_max: int) -> torch.Tensor:
    """float64 tensor z[n] = Phi^-1(1 - k/n) for n in [0, n_max]; NaN where k >= n."""
    key = (k, n_max)
    if key not in _Z_CACHE:
        nd = NormalDist()
        vals = [nd.inv_cdf(1.0 - k / n) if n > k else float("nan") for n in range(n_max + 1)]
        _Z_CACHE[key] = torch.tensor(vals, dtype=torch.float64)
    return _Z_CACHE[key]


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """sqrt with a finite gradient at 0 (the value at 0 is exactly 0)."""
    pos = v > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, v, torch.ones_like(v))), torch.zeros_like(v))


class StatTopK(nn.Module):
    """Statistical top-k over the last dim.

    forward(x, mask=None, bounded=False) -> (t, active, theta, event)

    * ``mask`` (bool, broadcastable to x): entries taking part (e.g. visible keys); the
      statistics use those entries only, n = their count per row. Default: all entries.
    * Rows with k >= n are the identity: t = x (on the masked entries), all active, no shift,
      theta = NaN.
    * Else mu, sigma (population) over the n entries, theta = mu + Phi^-1(1 - k/n) sigma,
      active = x > theta, t = relu(x - theta) on the active set and 0 elsewhere.
    * Underflow (nothing active): the single largest entry (lowest index on ties) becomes
      active with t = 0 (always applied).
    * ``bounded``: overflow rule, cap = min(n, ceil(cap_factor * k)); when more than cap pass,
      keep the cap largest (lower index first on ties), t = 0 elsewhere.
    * event: per row, 0 none / 1 overflow (bounded only) / 2 underflow.
    """

    def __init__(self, k: int, cap_factor: float = 2.0):
        super().__init__()
        self.k = int(k)
        self.cap_factor = float(cap_factor)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, bounded: bool = False):
        return stat_topk(x, self.k, mask, self.cap_factor, bounded)


def stat_topk(x: torch.Tensor, k: int, mask: Optional[torch.Tensor] = None,
              cap_factor: float = 2.0, bounded: bool = False):
    N = x.shape[-1]
    if mask is None:
        if k >= N:  # identity, all rows
            ones = torch.ones_like(x, dtype=torch.bool)
            return x, ones, torch.full(x.shape[:-1], float("nan"), dtype=x.dtype, device=x.device), \
                torch.zeros(x.shape[:-1], dtype=torch.int32, device=x.device)
        mask = torch.ones_like(x, dtype=torch.bool)
    else:
        mask = mask.expand_as(x)
    n = mask.sum(dim=-1)                                    # [...] int64
    zt = z_table(k, N).to(device=x.device)
    z = zt[n].to(x.dtype)                                   # NaN where k >= n
    identity = n <= k
    mf = mask.to(x.dtype)
    nf = n.clamp_min(1).to(x.dtype)
    xm = torch.where(mask, x, torch.zeros_like(x))
    mu = xm.sum(dim=-1) / nf
    dev = torch.where(mask, x - mu.unsqueeze(-1), torch.zeros_like(x))
    sigma = _safe_sqrt((dev * dev * mf).sum(dim=-1) / nf)
    theta = mu + torch.where(identity, torch.zeros_like(z), z) * sigma
    passed = (x > theta.unsqueeze(-1)) & mask
    count = passed.sum(dim=-1)
    event = torch.zeros(x.shape[:-1], dtype=torch.int32, device=x.device)
    active = passed
    if bounded:
        cap = torch.minimum(n, torch.full_like(n, math.ceil(cap_factor * k)))
        over = (count > cap) & ~identity
        if bool(over.any()):
            neg_inf = torch.full_like(x, float("-inf"))
            xs = torch.where(mask, x, neg_inf).detach()
            order = torch.sort(xs, dim=-1, descending=True, stable=True).indices
            rank = torch.empty_like(order)
            rank.scatter_(-1, order, torch.arange(N, device=x.device).expand_as(order))
            keep = rank < cap.unsqueeze(-1)
            active = torch.where(over.unsqueeze(-1), passed & keep, passed)
            event = torch.where(over, torch.full_like(event, EVENT_OVERFLOW), event)
    under = (count == 0) & ~identity
    t = torch.where(active, x - theta.unsqueeze(-1), torch.zeros_like(x))
    if bool(under.any()):
        xs = torch.where(mask, x, torch.full_like(x, float("-inf"))).detach()
        # first maximum = lowest index on ties
        idx = torch.argmax(xs, dim=-1, keepdim=True)
        one = torch.zeros_like(mask).scatter_(-1, idx, True)
        active = torch.where(under.unsqueeze(-1), one, active)
        event = torch.where(under, torch.full_like(event, EVENT_UNDERFLOW), event)
        # t stays 0 on the underflow rows (x - theta <= 0 there; force exact 0)
        t = torch.where(under.unsqueeze(-1), torch.zeros_like(t), t)
    # identity rows: every masked entry active, no shift
    idm = identity.unsqueeze(-1)
    active = torch.where(idm, mask, active)
    t = torch.where(idm, torch.where(mask, x, torch.zeros_like(x)), t)
    theta = torch.where(identity, torch.full_like(theta, float("nan")), theta)
    return t, active, theta, event


# ---------------------------------------------------------------------------
# FFN (SPEC section 4)
# ---------------------------------------------------------------------------

class SparkFFN(nn.Module):
    def __init__(self, d: int, f: int, r: int, k: int, cap_factor: float):
        super().__init__()
        self.d, self.f, self.r, self.k = d, f, r, k
        self.k1 = nn.Parameter(torch.empty(f, r))
        self.k2 = nn.Parameter(torch.empty(f, d - r))
        self.v = nn.Parameter(torch.empty(f, d))
        self.topk = StatTopK(k, cap_factor)

    def forward(self, h, bounded: bool = False, stats: Optional[dict] = None):
        h1, h2 = h[..., :self.r], h[..., self.r:]
        s = F.linear(h1, self.k1)                       # [.., f] predictor
        t, active, theta, event = self.topk(s, None, bounded)
        a = gelu(t)                                     # 0 outside the active set
        u = F.linear(h2, self.k2)
        y = (a * u) @ self.v                            # densely masked sum_i a_i u_i V_i
        if stats is not None:
            stats["ffn_active"].append(active.detach())
            stats["ffn_events"].append(event.detach())
        return y


class GeGLUFFN(nn.Module):
    def __init__(self, d: int, f: int, k: int, cap_factor: float):
        super().__init__()
        self.d, self.f, self.k = d, f, k
        self.wg = nn.Parameter(torch.empty(f, d))
        self.wu = nn.Parameter(torch.empty(f, d))
        self.wd = nn.Parameter(torch.empty(d, f))
        self.topk = StatTopK(k, cap_factor)

    def forward(self, h, bounded: bool = False, stats: Optional[dict] = None):
        g = F.linear(h, self.wg)
        u = F.linear(h, self.wu)
        if self.k < self.f:
            t, active, _, event = self.topk(g, None, bounded)
            act = gelu(t)
        else:
            act = gelu(g)
            active = torch.ones_like(g, dtype=torch.bool)
            event = torch.zeros(g.shape[:-1], dtype=torch.int32, device=g.device)
        if stats is not None:
            stats["ffn_active"].append(active.detach())
            stats["ffn_events"].append(event.detach())
        return F.linear(act * u, self.wd)


# ---------------------------------------------------------------------------
# Attention (SPEC section 5)
# ---------------------------------------------------------------------------

def visible_mask(T: int, window: int, device) -> torch.Tensor:
    """[T, T] bool: query p sees key j iff j <= p and (window == 0 or j >= p - window + 1)."""
    p = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    m = j <= p
    if window > 0:
        m = m & (j >= p - window + 1)
    return m


class _AttnBase(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        d, H, KV, dh = c["d_model"], c["n_heads"], c["n_kv_heads"], c["head_dim"]
        self.d, self.H, self.KV, self.dh = d, H, KV, dh
        self.group = H // KV
        self.scale = c["query_pre_attn_scalar"] ** -0.5
        self.softcap = c["attn_logit_softcap"]
        self.rope_theta = c["rope_theta"]
        self.wq = nn.Parameter(torch.empty(H * dh, d))
        self.wk = nn.Parameter(torch.empty(KV * dh, d))
        self.wv = nn.Parameter(torch.empty(KV * dh, d))
        self.wo = nn.Parameter(torch.empty(d, H * dh))

    def qkv(self, h):
        B, T, _ = h.shape
        q = F.linear(h, self.wq).view(B, T, self.H, self.dh).transpose(1, 2)    # [B,H,T,dh]
        k = F.linear(h, self.wk).view(B, T, self.KV, self.dh).transpose(1, 2)   # [B,KV,T,dh]
        v = F.linear(h, self.wv).view(B, T, self.KV, self.dh).transpose(1, 2)
        return q, k, v

    def expand_kv(self, x):
        # query head j uses kv head j // group
        return x.repeat_interleave(self.group, dim=1) if self.group > 1 else x

    def out(self, o):
        B, H, T, dh = o.shape
        return F.linear(o.transpose(1, 2).reshape(B, T, H * dh), self.wo)


class DenseAttention(_AttnBase):
    def forward(self, h, vis, bounded: bool = False, stats: Optional[dict] = None):
        T = h.shape[1]
        q, k, v = self.qkv(h)
        cos, sin = rope_tables(T, self.dh, self.rope_theta, h.dtype, h.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = self.expand_kv(k), self.expand_kv(v)
        s = softcap(self.scale * (q @ k.transpose(-1, -2)), self.softcap)
        s = s.masked_fill(~vis, float("-inf"))
        w = torch.softmax(s, dim=-1)
        if stats is not None:
            stats["attn_active"].append(vis.expand_as(s).detach())
            stats["attn_events"].append(torch.zeros(s.shape[:-1], dtype=torch.int32))
        return self.out(w @ v)


class SparkAttention(_AttnBase):
    def __init__(self, c: dict):
        super().__init__(c)
        self.ra = c["attn_r"]
        self.ka = c["attn_k"]
        self.topk = StatTopK(self.ka, c["topk_cap_factor"])

    def forward(self, h, vis, bounded: bool = False, stats: Optional[dict] = None):
        T = h.shape[1]
        ra, dh = self.ra, self.dh
        q, k, v = self.qkv(h)
        c1, s1_ = rope_tables(T, ra, self.rope_theta, h.dtype, h.device)
        c2, s2_ = rope_tables(T, dh - ra, self.rope_theta, h.dtype, h.device)
        q1, q2 = apply_rope(q[..., :ra], c1, s1_), apply_rope(q[..., ra:], c2, s2_)
        k1, k2 = apply_rope(k[..., :ra], c1, s1_), apply_rope(k[..., ra:], c2, s2_)
        k1, k2, v = self.expand_kv(k1), self.expand_kv(k2), self.expand_kv(v)
        s1 = softcap(self.scale * (q1 @ k1.transpose(-1, -2)), self.softcap)   # [B,H,T,T]
        # top-ka over the visible keys of each query row (statistics over visible only;
        # rows with n <= ka select every visible key)
        _, active, _, event = self.topk(s1, vis, bounded)
        w = torch.softmax(s1.masked_fill(~active, float("-inf")), dim=-1)
        g = softplus(self.scale * (q2 @ k2.transpose(-1, -2)))
        if stats is not None:
            stats["attn_active"].append(active.detach())
            stats["attn_events"].append(event.detach())
        return self.out((w * g) @ v)


# ---------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, c: dict, i: int):
        super().__init__()
        d, eps = c["d_model"], c["norm_eps"]
        self.eps = eps
        self.local = c["sliding_window"] > 0 and i % 2 == 0
        self.attn_norm = nn.Parameter(torch.ones(d))
        self.ffn_norm = nn.Parameter(torch.ones(d))
        self.post_norms = c["post_norms"]
        if self.post_norms:
            self.post_attn_norm = nn.Parameter(torch.ones(d))
            self.post_ffn_norm = nn.Parameter(torch.ones(d))
        self.attn = SparkAttention(c) if c["attn_kind"] == "spark" else DenseAttention(c)
        if c["ffn_kind"] == "spark":
            self.ffn = SparkFFN(d, c["d_ff"], c["ffn_r"], c["ffn_k"], c["topk_cap_factor"])
        else:
            self.ffn = GeGLUFFN(d, c["d_ff"], c["ffn_k"], c["topk_cap_factor"])

    def forward(self, x, vis_global, vis_local, bounded, stats):
        vis = vis_local if self.local else vis_global
        a = self.attn(rmsnorm(x, self.attn_norm, self.eps), vis, bounded, stats)
        if self.post_norms:
            a = rmsnorm(a, self.post_attn_norm, self.eps)
        x = x + a
        m = self.ffn(rmsnorm(x, self.ffn_norm, self.eps), bounded, stats)
        if self.post_norms:
            m = rmsnorm(m, self.post_ffn_norm, self.eps)
        return x + m


class SparkLM(nn.Module):
    """Gemma-2-style decoder. forward(tokens [B, T] int64) -> logits [B, T, V].

    ``bounded``: None (default) = bounded-capacity overflow rule on in eval mode only;
    True / False forces it."""

    def __init__(self, config: dict, bounded: Optional[bool] = None):
        super().__init__()
        c = normalize_config(config)
        self.config = c
        self.bounded = bounded
        V, d = c["vocab_size"], c["d_model"]
        self.embed = nn.Parameter(torch.empty(V, d))
        self.final_norm = nn.Parameter(torch.ones(d))
        if not c["tie_embeddings"]:
            self.lm_head = nn.Parameter(torch.empty(V, d))
        self.layers = nn.ModuleList([Block(c, i) for i in range(c["n_layers"])])
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None):
        """Gaussian init with std 1/sqrt(fan_in); output projections (wo, ffn.v, ffn.wd)
        additionally / sqrt(2 n_layers); embedding rows N(0, 1/d) (so E[tok] * sqrt(d) has
        unit-scale entries); norm weights 1."""
        c = self.config
        L = c["n_layers"]
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)
                continue
            fan_in = p.shape[1]
            std = 1.0 / math.sqrt(fan_in)
            if name.endswith(("attn.wo", "ffn.v", "ffn.wd")):
                std /= math.sqrt(2.0 * L)
            p.normal_(0.0, std, generator=generator)

    def use_bounded(self) -> bool:
        return (not self.training) if self.bounded is None else bool(self.bounded)

    def forward(self, tokens: torch.Tensor, stats: Optional[dict] = None) -> torch.Tensor:
        c = self.config
        B, T = tokens.shape
        assert T <= c["max_seq_len"], (T, c["max_seq_len"])
        bounded = self.use_bounded()
        x = F.embedding(tokens, self.embed) * c["embed_scale"]
        vis_g = visible_mask(T, 0, tokens.device)
        vis_l = visible_mask(T, c["sliding_window"], tokens.device)
        for blk in self.layers:
            x = blk(x, vis_g, vis_l, bounded, stats)
        xf = rmsnorm(x, self.final_norm, c["norm_eps"])
        head = self.embed if c["tie_embeddings"] else self.lm_head
        return softcap(F.linear(xf, head), c["final_logit_softcap"])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate_greedy(self, prompt: list, n_new: int) -> list:
        """Greedy continuation (full recompute per step; the context is cropped to the last
        max_seq_len tokens if it grows beyond it)."""
        ids = list(prompt)
        for _ in range(n_new):
            ctx = ids[-self.config["max_seq_len"]:]
            logits = self(torch.tensor([ctx], dtype=torch.long))
            ids.append(int(torch.argmax(logits[0, -1]).item()))
        return ids[len(prompt):]


def new_stats() -> dict:
    return {"ffn_active": [], "ffn_events": [], "attn_active": [], "attn_events": []}


def load_checkpoint(path: str, bounded: Optional[bool] = None, dtype=torch.float32) -> SparkLM:
    """Load a safetensors checkpoint with ``spark_config`` metadata (reference.py / export.py
    format) into a SparkLM."""
    from safetensors import safe_open
    with safe_open(path, framework="pt") as fh:
        cfg = json.loads(fh.metadata()["spark_config"])
        sd = {k: fh.get_tensor(k) for k in fh.keys()}
    model = SparkLM(cfg, bounded=bounded).to(dtype)
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True)
    assert not missing and not unexpected
    return model


def count_params(config: dict) -> dict:
    """Parameter count by part, from the config alone."""
    c = normalize_config(config)
    V, d, f, dh = c["vocab_size"], c["d_model"], c["d_ff"], c["head_dim"]
    H, KV, L = c["n_heads"], c["n_kv_heads"], c["n_layers"]
    embed = V * d + (0 if c["tie_embeddings"] else V * d)
    norms = d + L * d * (4 if c["post_norms"] else 2)
    attn = L * (H * dh * d + 2 * KV * dh * d + d * H * dh)
    ffn = L * (2 * d * f if c["ffn_kind"] == "spark" else 3 * d * f)
    return {"embed": embed, "norms": norms, "attn": attn, "ffn": ffn,
            "total": embed + norms + attn + ffn}
