#!/usr/bin/env python3
"""Train a SparkLM (Spark or dense twin) on the prepared corpus.

Single process:
    python train/train.py --config train/configs/demo_spark.json --out train/out/demo_spark \\
        --steps 3000 --batch-size 16 --threads 1
Distributed (DistributedDataParallel; gloo on CPU, nccl on GPU):
    torchrun --nproc_per_node=2 train/train.py --config ... --out ...
Resume from <out>/ckpt.pt:
    python train/train.py ... --resume

Data: train/out/{train,val}.txt (prepare_corpus.py; documents separated by \\f), tokenized with
--tokenizer (bpe.py JSON); each document becomes <bos> ids <eos>, the documents are
concatenated into one stream. Training batches are random windows of seq_len + 1 tokens;
the window offsets of step s on rank r come from numpy default_rng([seed, r, s]) (so a
resumed run sees the same batches). Validation: every non-overlapping window of the
validation stream (stride seq_len), loss averaged over all predicted tokens, computed in
eval mode (bounded-capacity top-k rules on, i.e. the inference semantics).

Optimizer: AdamW (betas 0.9/0.95, weight decay on matrices only), linear warmup then cosine
decay to min_lr_ratio * lr, global-norm gradient clipping. Writes <out>/ckpt.pt every
--ckpt-every steps and at the end, <out>/log.jsonl, <out>/final.json (validation loss,
perplexity, sparsity statistics, wall time) and <out>/model.safetensors (export format).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spark_model as SM  # noqa: E402
from bpe import BPE, _merge_array, SEP  # noqa: E402


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def encode_docs(tok: BPE, docs) -> np.ndarray:
    """<bos> ids <eos> per document, concatenated (one vectorised pass over all documents)."""
    parts = []
    for d in docs:
        parts.append(np.frombuffer(d.encode("utf-8"), dtype=np.uint8).astype(np.int64))
        parts.append(np.array([SEP], dtype=np.int64))
    arr = np.concatenate(parts)
    for a, b, r in tok.merges:
        arr = _merge_array(arr, a, b, r)
    out = []
    start = 0
    for i in np.flatnonzero(arr == SEP):
        out.append(np.array([tok.bos_id], dtype=np.int64))
        out.append(arr[start:i])
        out.append(np.array([tok.eos_id], dtype=np.int64))
        start = i + 1
    return np.concatenate(out).astype(np.int32)


def load_stream(data_dir: str, split: str, tok_path: str, tok: BPE) -> np.ndarray:
    txt_path = os.path.join(data_dir, f"{split}.txt")
    h = hashlib.sha256(open(tok_path, "rb").read() + open(txt_path, "rb").read()).hexdigest()[:16]
    cache = os.path.join(data_dir, f"{split}.{h}.npy")
    if os.path.exists(cache):
        return np.load(cache)
    docs = [d for d in open(txt_path, encoding="utf-8").read().split("\f") if d]
    ids = encode_docs(tok, docs)
    tmp = cache + f".{os.getpid()}.tmp.npy"
    np.save(tmp, ids)
    os.replace(tmp, cache)
    return ids


def train_batch(stream: np.ndarray, B: int, T: int, seed: int, rank: int, step: int):
    rng = np.random.default_rng([seed, rank, step])
    starts = rng.integers(0, stream.shape[0] - T - 1, size=B)
    x = np.stack([stream[s:s + T + 1] for s in starts]).astype(np.int64)
    x = torch.from_numpy(x)
    return x[:, :-1], x[:, 1:]


def val_windows(stream: np.ndarray, T: int) -> torch.Tensor:
    n = (stream.shape[0] - 1) // T
    x = np.stack([stream[i * T:i * T + T + 1] for i in range(n)]).astype(np.int64)
    return torch.from_numpy(x)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: SM.SparkLM, windows: torch.Tensor, device, batch: int, rank: int = 0,
             world: int = 1, collect_stats: bool = False):
    """Returns (sum of token NLL, token count, stats summary or None), summed over ranks."""
    was_training = model.training
    model.eval()
    c = model.config
    tot = torch.zeros(2, dtype=torch.float64)
    L, H = c["n_layers"], c["n_heads"]
    acc = None
    if collect_stats:
        acc = {"ffn_active": torch.zeros(L, dtype=torch.float64),
               "ffn_rows": torch.zeros(L, dtype=torch.float64),
               "ffn_over": torch.zeros(L, dtype=torch.float64),
               "ffn_under": torch.zeros(L, dtype=torch.float64),
               "attn_active_sel": torch.zeros(L, dtype=torch.float64),
               "attn_visible_sel": torch.zeros(L, dtype=torch.float64),
               "attn_rows_sel": torch.zeros(L, dtype=torch.float64),
               "attn_over": torch.zeros(L, dtype=torch.float64),
               "attn_under": torch.zeros(L, dtype=torch.float64)}
    idx = list(range(rank, windows.shape[0], world))
    for i in range(0, len(idx), batch):
        w = windows[idx[i:i + batch]].to(device)
        stats = SM.new_stats() if collect_stats else None
        logits = model(w[:, :-1], stats=stats)
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                              reduction="sum")
        tot[0] += float(nll)
        tot[1] += w[:, 1:].numel()
        if collect_stats:
            T = w.shape[1] - 1
            for l in range(L):
                fa, fe = stats["ffn_active"][l], stats["ffn_events"][l]
                acc["ffn_active"][l] += fa.sum().item()
                acc["ffn_rows"][l] += fe.numel()
                acc["ffn_over"][l] += (fe == 1).sum().item()
                acc["ffn_under"][l] += (fe == 2).sum().item()
                aa, ae = stats["attn_active"][l], stats["attn_events"][l]  # [B,H,T,T], [B,H,T]
                local = c["sliding_window"] > 0 and l % 2 == 0
                vis = SM.visible_mask(T, c["sliding_window"] if local else 0, aa.device)
                n = vis.sum(-1)                                  # [T]
                sel = (n > c["attn_k"]) if c["attn_kind"] == "spark" else torch.zeros_like(n, dtype=torch.bool)
                if bool(sel.any()):
                    acc["attn_active_sel"][l] += aa[:, :, sel, :].sum().item()
                    acc["attn_visible_sel"][l] += float(n[sel].sum().item() * aa.shape[0] * aa.shape[1])
                    acc["attn_rows_sel"][l] += float(sel.sum().item() * aa.shape[0] * aa.shape[1])
                acc["attn_over"][l] += (ae == 1).sum().item()
                acc["attn_under"][l] += (ae == 2).sum().item()
    if world > 1:
        dist.all_reduce(tot)
        if acc is not None:
            for v in acc.values():
                dist.all_reduce(v)
    model.train(was_training)
    summary = None
    if acc is not None:
        f = c["d_ff"]
        summary = {
            "ffn_active_fraction_per_layer": [float(a / max(r, 1) / f) for a, r in
                                              zip(acc["ffn_active"], acc["ffn_rows"])],
            "ffn_overflow_rate_per_layer": [float(o / max(r, 1)) for o, r in zip(acc["ffn_over"], acc["ffn_rows"])],
            "ffn_underflow_rate_per_layer": [float(u / max(r, 1)) for u, r in zip(acc["ffn_under"], acc["ffn_rows"])],
            "attn_mean_active_keys_when_n_gt_ka_per_layer": [
                (float(a / r) if r > 0 else None) for a, r in zip(acc["attn_active_sel"], acc["attn_rows_sel"])],
            "attn_mean_visible_keys_when_n_gt_ka_per_layer": [
                (float(v / r) if r > 0 else None) for v, r in zip(acc["attn_visible_sel"], acc["attn_rows_sel"])],
            "attn_overflow_rate_per_layer": [float(o / max(r, 1)) for o, r in zip(acc["attn_over"], acc["attn_rows_sel"])],
            "attn_underflow_rate_per_layer": [float(u / max(r, 1)) for u, r in zip(acc["attn_under"], acc["attn_rows_sel"])],
        }
    return float(tot[0]), int(tot[1]), summary


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    prog = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * prog))


def param_checksum(model) -> float:
    return float(sum(p.detach().double().sum().item() for p in model.parameters()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="model config JSON (SPEC field names)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--data", default=os.path.join(HERE, "out"), help="dir with train.txt / val.txt")
    ap.add_argument("--tokenizer", default=None, help="tokenizer JSON (default <repo>/models/tokenizer.json)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16, help="sequences per step per process")
    ap.add_argument("--seq-len", type=int, default=0, help="default: max_seq_len")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/ckpt.pt")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop this invocation after N steps (checkpoint written; continue with --resume)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-final-eval", action="store_true")
    args = ap.parse_args(argv)

    # --- distributed setup ---
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device if args.device != "cuda" else f"cuda:{local_rank}")
    if world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    master = rank == 0

    repo = os.path.dirname(HERE)
    tok_path = args.tokenizer or os.path.join(repo, "models", "tokenizer.json")
    with open(args.config) as fh:
        cfg = SM.normalize_config(json.load(fh))
    tok = BPE.load(tok_path)
    assert tok.vocab_size == cfg["vocab_size"], (tok.vocab_size, cfg["vocab_size"])
    T = args.seq_len or cfg["max_seq_len"]
    assert T <= cfg["max_seq_len"]
    os.makedirs(args.out, exist_ok=True)

    if master:
        train_ids = load_stream(args.data, "train", tok_path, tok)
        val_ids = load_stream(args.data, "val", tok_path, tok)
    if world > 1:
        dist.barrier()
    if not master:
        train_ids = load_stream(args.data, "train", tok_path, tok)
        val_ids = load_stream(args.data, "val", tok_path, tok)
    vwin = val_windows(val_ids, T)

    # --- model / optimizer ---
    model = SM.SparkLM(cfg)       # initialised on the CPU from the seed, same on every rank
    model.reset_parameters(generator=torch.Generator().manual_seed(args.seed))
    model = model.to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    start_step = 0
    elapsed_before = 0.0
    resumed_loss_avg = None
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        assert ck["config"] == cfg, "config differs from the checkpoint's"
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start_step = ck["step"]
        elapsed_before = ck.get("elapsed_s", 0.0)
        resumed_loss_avg = ck.get("loss_avg")
        if master:
            print(f"resumed from {ckpt_path} at step {start_step}")
    elif args.resume and master:
        print(f"--resume: no {ckpt_path}, starting from scratch")
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    n_params = model.num_params()
    if master:
        print(f"model: {n_params} params {SM.count_params(cfg)}; train tokens {train_ids.shape[0]}, "
              f"val tokens {val_ids.shape[0]} ({vwin.shape[0]} windows of {T}); world {world}; "
              f"device {device}; threads {args.threads}")
        with open(os.path.join(args.out, "config.json"), "w") as fh:
            json.dump(cfg, fh, indent=1)

    def save_ckpt(step, elapsed):
        if not master:
            return
        ck = {"config": cfg, "model": model.state_dict(), "optimizer": opt.state_dict(),
              "step": step, "elapsed_s": elapsed, "loss_avg": loss_avg, "args": vars(args)}
        tmp = ckpt_path + ".tmp"
        torch.save(ck, tmp)
        os.replace(tmp, ckpt_path)

    log = open(os.path.join(args.out, "log.jsonl"), "a") if master else None
    bar = None
    if master and not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=args.steps, initial=start_step, dynamic_ncols=True, mininterval=2.0)
    model.train()
    t0 = time.time()
    t_last, tok_last = t0, 0
    toks_per_step = args.batch_size * T * world
    loss_avg = resumed_loss_avg
    step = start_step
    end_step = args.steps if not args.stop_after else min(args.steps, start_step + args.stop_after)
    for step in range(start_step, end_step):
        for grp in opt.param_groups:
            grp["lr"] = args.lr * lr_factor(step, args.warmup, args.steps, args.min_lr_ratio)
        x, y = train_batch(train_ids, args.batch_size, T, args.seed, rank, step)
        x, y = x.to(device), y.to(device)
        logits = ddp(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        lval = loss.detach().clone()
        if world > 1:
            dist.all_reduce(lval)
            lval /= world
        lval = float(lval)
        loss_avg = lval if loss_avg is None else 0.98 * loss_avg + 0.02 * lval
        tok_last += toks_per_step
        done = step + 1
        if master and (done % args.log_every == 0 or done == args.steps):
            now = time.time()
            tps = tok_last / max(now - t_last, 1e-9)
            t_last, tok_last = now, 0
            rec = {"step": done, "loss": lval, "loss_avg": loss_avg, "lr": opt.param_groups[0]["lr"],
                   "grad_norm": float(gnorm), "tok_per_s": tps, "elapsed_s": elapsed_before + now - t0}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{loss_avg:.3f}", tok_s=f"{tps:.0f}")
            elif done % (args.log_every * 10) == 0 or done == args.steps:
                print(json.dumps(rec), flush=True)
        if bar is not None:
            bar.update(1)
        if args.eval_every and done % args.eval_every == 0 and done != args.steps:
            s, n, _ = evaluate(model, vwin, device, args.eval_batch, rank, world)
            if master:
                rec = {"step": done, "val_loss": s / n, "val_ppl": math.exp(s / n),
                       "elapsed_s": elapsed_before + time.time() - t0}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                msg = f"step {done}: val loss {s / n:.4f} ppl {math.exp(s / n):.2f}"
                (bar.write(msg) if bar is not None else print(msg, flush=True))
        if args.ckpt_every and done % args.ckpt_every == 0 and done != args.steps:
            save_ckpt(done, elapsed_before + time.time() - t0)
    if bar is not None:
        bar.close()
    train_s = elapsed_before + time.time() - t0
    final_step = max(step + 1, start_step) if end_step > start_step else start_step
    save_ckpt(final_step, train_s)
    if final_step < args.steps:
        if master:
            print(f"stopped at step {final_step} of {args.steps}; continue with --resume")
        if world > 1:
            dist.barrier()
            dist.destroy_process_group()
        return 0

    result = {"step": final_step, "train_wall_s": train_s, "params": n_params,
              "param_checksum": param_checksum(model), "last_train_loss": loss_avg,
              "world": world, "threads": args.threads, "device": str(device),
              "tokens_seen": final_step * toks_per_step}
    if not args.no_final_eval:
        te = time.time()
        s, n, summ = evaluate(model, vwin, device, args.eval_batch, rank, world, collect_stats=True)
        result.update({"val_loss": s / n, "val_ppl": math.exp(s / n), "val_tokens": n,
                       "eval_wall_s": time.time() - te, "sparsity": summ})
    if master:
        import export
        export.save_model(model, os.path.join(args.out, "model.safetensors"))
        with open(os.path.join(args.out, "final.json"), "w") as fh:
            json.dump(result, fh, indent=1)
        log.write(json.dumps({"final": result}) + "\n")
        log.close()
    print(f"[rank {rank}] final: step {final_step} loss_avg {loss_avg} "
          f"val_loss {result.get('val_loss')} param_checksum {result['param_checksum']:.10e}",
          flush=True)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
