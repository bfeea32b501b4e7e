#!/usr/bin/env bash
# DistributedDataParallel smoke test on CPU: train/train.py under torchrun with 2 processes
# (gloo backend), a tiny config, 6 steps. Checks that
#  - both ranks finish and report the same (all-reduced) training loss, validation loss and
#    parameter checksum (DDP keeps the replicas equal);
#  - an interrupted run (--stop-after 3) continued with --resume ends bit-identical to the
#    uninterrupted run (same checksum and loss).
#   usage: train/test_ddp.sh   runs with `python3` on PATH (e.g. an activated virtual
#          environment with train/requirements-train.txt); PYTHON=/path/to/python picks another
#          interpreter, TORCHRUN=/path/to/torchrun another launcher (default: PYTHON -m
#          torch.distributed.run, i.e. the torchrun of that interpreter).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PY="${PYTHON:-python3}"
if [ -n "${TORCHRUN:-}" ]; then LAUNCH=("$TORCHRUN"); else LAUNCH=("$PY" -m torch.distributed.run); fi
"$PY" -c 'import torch' 2>/dev/null || {
    echo "test_ddp.sh: $PY cannot import torch (pip install -r train/requirements-train.txt, or set PYTHON)" >&2
    exit 1
}
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cd "$REPO"
[ -f train/out/train.txt ] || "$PY" train/prepare_corpus.py >/dev/null
TOK=models/tokenizer.json
[ -f "$TOK" ] || { echo "missing $TOK (train it with train/bpe.py)"; exit 1; }
common=(--config train/configs/tiny_ddp.json --tokenizer "$TOK" --batch-size 4 --threads 1
        --eval-every 2 --ckpt-every 2 --log-every 1 --no-progress --eval-batch 16 --steps 6)
run() {  # run <log> <args...>
    local log="$1"; shift
    OMP_NUM_THREADS=1 "${LAUNCH[@]}" --standalone --nproc_per_node=2 train/train.py "${common[@]}" "$@" \
        >"$OUT/$log.log" 2>&1 || { cat "$OUT/$log.log"; exit 1; }
}
run full --out "$OUT/full"
run part1 --out "$OUT/part" --stop-after 3
run part2 --out "$OUT/part" --resume
"$PY" - "$OUT" <<'PYEOF'
import re, sys
out = sys.argv[1]
def finals(log):
    f = {}
    for l in open(f"{out}/{log}.log"):
        m = re.search(r"\[rank (\d)\] final: step (\d+) loss_avg (\S+) val_loss (\S+) param_checksum (\S+)", l)
        if m:
            f[int(m.group(1))] = m.groups()[1:]
    assert set(f) == {0, 1}, (log, f)
    assert f[0] == f[1], ("ranks disagree", log, f)
    return f[0]
full, part = finals("full"), finals("part2")
print(f"uninterrupted: both ranks step {full[0]} loss {full[1]} val {full[2]} checksum {full[3]}")
print(f"stop+resume  : both ranks step {part[0]} loss {part[1]} val {part[2]} checksum {part[3]}")
assert "stopped at step 3" in open(f"{out}/part1.log").read()
assert "resumed from" in open(f"{out}/part2.log").read()
assert full[0] == part[0] == "6"
assert full[3] == part[3], "resumed run differs from the uninterrupted run"
assert full[2] == part[2] and full[1] == part[1]
print("DDP test OK")
PYEOF
