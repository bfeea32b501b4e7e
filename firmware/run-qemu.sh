#!/usr/bin/env bash
# Builds the firmware (firmware/app) for every QEMU board and runs it under qemu-system-arm
# with a timeout, greedy and sampled (temperature 0.8, top-p 0.9, seed 5); each run's JSON
# line must have the token ids and logits digest of `spark-sim generate --json` for the
# same model, prompt and settings, or the script fails. The greedy builds also carry the
# dense twin (feature compare-dense: instructions per token, Spark vs dense, same run) and
# the models/expected_int8.json check (feature expected-int8: the committed continuations
# bit for bit). It also builds mps2-an385 (the ARMv6-M build) and mps2-an386 with the
# test-only feature force-panic and requires each run to exit through semihosting with
# status 1 within the timeout (no hang). Then it checks that a model too big for mps2-an386
# fails the build.
#
# `mps3-an547-mve` is the M55 board built with the feature mve (the Helium kernels,
# Native = Mve), run and checked like the others.
#
#   firmware/run-qemu.sh                 # all five boards and mps3-an547-mve
#   firmware/run-qemu.sh mps2-an505 ...  # some of them
#
# Environment: SPARK_SIM (the spark-sim binary; default target/release/spark-sim, else
# target/debug/spark-sim, else built), SPARK_PROMPT / SPARK_TOKENS (the run), QEMU_TIMEOUT
# (seconds per run, default 300), CARGO_TARGET_DIR. Logs and ELFs: $OUT (default
# target/firmware-runs). A summary table (instructions per token) goes to
# $OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$SECONDS
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/app"
OUT="${OUT:-${CARGO_TARGET_DIR:-$ROOT/target}/firmware-runs}"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-300}"
export SPARK_PROMPT="${SPARK_PROMPT:-Once upon a time}"
export SPARK_TOKENS="${SPARK_TOKENS:-64}"
mkdir -p "$OUT"

SIM="${SPARK_SIM:-}"
if [ -z "$SIM" ]; then
  for c in target/release/spark-sim target/debug/spark-sim; do [ -x "$c" ] && SIM=$c && break; done
fi
if [ -z "$SIM" ]; then cargo build -q -p spark-sim && SIM=target/debug/spark-sim; fi

# The dense twin (not committed as a .spark file), replaced only when it changed.
DENSE="${CARGO_TARGET_DIR:-$ROOT/target}/demo_dense.spark"
"$SIM" convert models/demo_dense.safetensors -o "$DENSE.new" >/dev/null
if cmp -s "$DENSE.new" "$DENSE"; then rm "$DENSE.new"; else mv "$DENSE.new" "$DENSE"; fi
export SPARK_DENSE_MODEL="$DENSE"

# board configuration -> board (a `-mve` configuration is its board with the feature mve)
board_of() { echo "${1%-mve}"; }
features_of() { case $1 in *-mve) echo "${1%-mve},mve" ;; *) echo "$1" ;; esac; }
# board -> target and qemu -cpu (the board table is firmware/boards/src/lib.rs)
target_of() {
  case $(board_of "$1") in
    mps2-an385) echo thumbv6m-none-eabi ;; mps2-an386 | mps2-an500) echo thumbv7em-none-eabihf ;;
    mps2-an505 | mps3-an547) echo thumbv8m.main-none-eabihf ;; *) echo "unknown board $1" >&2; return 1 ;;
  esac
}
cpu_of() {
  case $(board_of "$1") in
    mps2-an385) echo cortex-m3 ;; mps2-an386) echo cortex-m4 ;; mps2-an500) echo cortex-m7 ;;
    mps2-an505) echo cortex-m33 ;; mps3-an547) echo cortex-m55 ;;
  esac
}

BOARDS=()
REAL=()
for b in "$@"; do
  case $b in pico2 | nucleo-h743zi) REAL+=("$b") ;; *) BOARDS+=("$b") ;; esac
done
if [ $# -eq 0 ]; then
  BOARDS=(mps2-an385 mps2-an386 mps2-an500 mps2-an505 mps3-an547 mps3-an547-mve)
  REAL=(pico2 nucleo-h743zi)
fi

# build_run board config features [env...]: build, run under QEMU, log in $OUT/board-config.log
build_run() {
  local board=$1 cfg=$2 features=$3
  shift 3
  local target
  target=$(target_of "$board")
  if ! (cd firmware/app && env "$@" cargo build -q --release --target "$target" --target-dir "$TARGET_DIR" \
    --no-default-features --features "$(features_of "$board")$features" >"$OUT/$board-$cfg.build.log" 2>&1); then
    cat "$OUT/$board-$cfg.build.log"
    echo "$board $cfg: the build failed"
    return 1
  fi
  local elf="$OUT/$board-$cfg.elf"
  cp "$TARGET_DIR/$target/release/spark-app" "$elf"
  local rc=0
  timeout "$QEMU_TIMEOUT" qemu-system-arm -machine "$(board_of "$board")" -cpu "$(cpu_of "$board")" -nographic \
    -icount shift=0 -semihosting-config enable=on,target=native -kernel "$elf" >"$OUT/$board-$cfg.log" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    cat "$OUT/$board-$cfg.log"
    echo "$board $cfg: QEMU exit status $rc (124: the ${QEMU_TIMEOUT} s timeout)"
    return 1
  fi
}

# same label sim-json log: the log's JSON line against spark-sim's
same() {
  python3 - "$@" <<'PY'
import json, sys
label, sim, log = sys.argv[1], json.loads(sys.argv[2]), open(sys.argv[3]).read().splitlines()
lines = [l for l in log if l.startswith('{"prompt"')]
if len(lines) != 1:
    print(f"{label}: expected one JSON line, found {len(lines)}"); sys.exit(1)
fw = json.loads(lines[0])
ok = fw["token_ids"] == sim["token_ids"] and fw["logits_digest"] == sim["logits_digest"] and fw["tokens"] == len(fw["token_ids"])
print(f"{label}: {fw['tokens']} tokens, digest {fw['logits_digest']} (spark-sim {sim['logits_digest']}): " + ("equal" if ok else "DIFFERENT"))
sys.exit(0 if ok else 1)
PY
}

SIM_GREEDY=$("$SIM" generate --model models/demo.spark --prompt "$SPARK_PROMPT" -n "$SPARK_TOKENS" --json)
SIM_SAMPLED=$("$SIM" generate --model models/demo.spark --prompt "$SPARK_PROMPT" -n "$SPARK_TOKENS" --json \
  --temperature 0.8 --top-p 0.9 --seed 5)

fails=0
printf '| board | vectors + .text | .rodata | .spark_model | .data | .bss | of which arena | stack high-water |\n|---|---|---|---|---|---|---|---|\n' >"$OUT/memory.md"
printf '| board | core | kernels | Spark instr/token | dense twin instr/token | dense / Spark | FFN layer 0: spark_ffn | geglu_ffn | dense / Spark | stack high-water |\n|---|---|---|---|---|---|---|---|---|---|\n' >"$OUT/summary.md"
for b in ${BOARDS[@]+"${BOARDS[@]}"}; do
  echo "== $b ($(target_of "$b"), -cpu $(cpu_of "$b"))"
  if build_run "$b" greedy ",compare-dense,expected-int8" SPARK_TEMPERATURE=0; then
    same "$b greedy" "$SIM_GREEDY" "$OUT/$b-greedy.log" || fails=$((fails + 1))
    grep -E '^(compare-dense|expected_int8.json|instructions per token:|stack high-water)' "$OUT/$b-greedy.log"
    grep -q '^spark-app: done' "$OUT/$b-greedy.log" || { echo "$b greedy: the firmware's own checks failed"; fails=$((fails + 1)); }
    python3 - "$b" "$OUT/$b-greedy.log" >>"$OUT/summary.md" <<'PY'
import re, sys
b, t = sys.argv[1], open(sys.argv[2]).read()
m = re.search(r"Spark (\d+) instructions/token, dense twin (\d+) instructions/token; dense / Spark = ([\d.]+)", t)
k = re.search(r"^spark-app: board \S+ \((.*)\), kernels (\S+)", t, re.M)
s = re.search(r"stack high-water: (\d+) bytes", t)
f = re.search(r"spark_ffn .*? (\d+) instructions/call.*geglu_ffn .*? (\d+) instructions/call.*dense / Spark = ([\d.]+)", t)
print(f"| {b} | {k.group(1)} | {k.group(2)} | {int(m.group(1)):,} | {int(m.group(2)):,} | {m.group(3)} "
      f"| {int(f.group(1)):,} | {int(f.group(2)):,} | {f.group(3)} | {int(s.group(1)):,} B |")
PY
  else
    fails=$((fails + 1))
  fi
  if build_run "$b" sampled "" SPARK_TEMPERATURE=0.8 SPARK_TOP_P=0.9 SPARK_SEED=5; then
    same "$b sampled" "$SIM_SAMPLED" "$OUT/$b-sampled.log" || fails=$((fails + 1))
    # Memory of the default image (one model, no extra feature): sections, arena, stack.
    python3 - "$b" "$OUT/$b-sampled.elf" "$OUT/$b-sampled.log" >>"$OUT/memory.md" <<'PY'
import re, subprocess, sys
b, elf, log = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
sec = {}
for l in subprocess.run(["size", "-A", elf], capture_output=True, text=True, check=True).stdout.splitlines():
    f = l.split()
    if len(f) == 3 and f[0].startswith("."):
        sec[f[0]] = int(f[1])
arena = int(re.search(r"arena: static (\d+) bytes", log).group(1))
stack = int(re.search(r"stack high-water: (\d+) bytes", log).group(1))
code = sec.get(".vector_table", 0) + sec.get(".text", 0)
print(f"| {b} | {code:,} | {sec.get('.rodata', 0):,} | {sec.get('.spark_model', 0):,} | {sec.get('.data', 0):,} | {sec.get('.bss', 0):,} | {arena:,} | {stack:,} |")
PY
  else
    fails=$((fails + 1))
  fi
done
cat "$OUT/summary.md"
echo "memory of the default image (bytes; sampled build, one model):"
cat "$OUT/memory.md"

# runtime-model (the model read at run time through semihosting into the heap) on M4 and
# M33: the run must equal spark-sim's; a truncated and a corrupted file must print the
# typed error and exit with status 1 (no panic, no fault).
head -c 700000 models/demo.spark >"$OUT/truncated.spark"
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2] ^= 0x55; open(sys.argv[2], "wb").write(b)' \
  models/demo.spark "$OUT/corrupted.spark"
for b in ${BOARDS[@]+"${BOARDS[@]}"}; do
  case $b in mps2-an386 | mps2-an505) ;; *) continue ;; esac
  echo "== $b runtime-model"
  if build_run "$b" runtime ",runtime-model" SPARK_TEMPERATURE=0; then
    same "$b runtime-model" "$SIM_GREEDY" "$OUT/$b-runtime.log" || fails=$((fails + 1))
    grep -E '^arena:' "$OUT/$b-runtime.log"
    for bad in truncated corrupted; do
      rc=0
      timeout "$QEMU_TIMEOUT" qemu-system-arm -machine "$b" -cpu "$(cpu_of "$b")" -nographic -icount shift=0 \
        -semihosting-config "enable=on,target=native,arg=spark-app,arg=$OUT/$bad.spark" -kernel "$OUT/$b-runtime.elf" \
        >"$OUT/$b-runtime-$bad.log" 2>&1 || rc=$?
      if [ $rc -eq 1 ] && grep -q "invalid model" "$OUT/$b-runtime-$bad.log" && ! grep -qE "PANIC|HardFault" "$OUT/$b-runtime-$bad.log"; then
        echo "$b runtime-model, $bad file: exit status 1, $(grep 'invalid model' "$OUT/$b-runtime-$bad.log")"
      else
        cat "$OUT/$b-runtime-$bad.log"; echo "$b runtime-model, $bad file: exit status $rc, expected 1 with the typed error"
        fails=$((fails + 1))
      fi
    done
  else
    fails=$((fails + 1))
  fi
done

# A forced panic (test-only feature force-panic: panics right after start) must exit QEMU
# through semihosting with status 1 within the timeout, on the M4 and the ARMv6-M build.
for b in ${BOARDS[@]+"${BOARDS[@]}"}; do
  case $b in mps2-an385 | mps2-an386) ;; *) continue ;; esac
  echo "== $b force-panic"
  rc=0
  (cd firmware/app && cargo build -q --release --target "$(target_of "$b")" --target-dir "$TARGET_DIR" \
    --no-default-features --features "$b,force-panic" >"$OUT/$b-panic.build.log" 2>&1) || rc=$?
  if [ $rc -ne 0 ]; then
    cat "$OUT/$b-panic.build.log"; echo "$b force-panic: the build failed"; fails=$((fails + 1)); continue
  fi
  cp "$TARGET_DIR/$(target_of "$b")/release/spark-app" "$OUT/$b-panic.elf"
  PANIC_TIMEOUT=60
  timeout "$PANIC_TIMEOUT" qemu-system-arm -machine "$b" -cpu "$(cpu_of "$b")" -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native -kernel "$OUT/$b-panic.elf" >"$OUT/$b-panic.log" 2>&1 || rc=$?
  if [ $rc -eq 1 ] && grep -q "^spark-app: PANIC" "$OUT/$b-panic.log" &&
    grep -q "forced by the force-panic feature" "$OUT/$b-panic.log"; then
    echo "$b force-panic: exit status 1, $(grep -A1 'PANIC' "$OUT/$b-panic.log" | tr '\n' ' ')"
  else
    cat "$OUT/$b-panic.log"
    echo "$b force-panic: exit status $rc, expected 1 with the panic message (124: the $PANIC_TIMEOUT s timeout, a hang)"
    fails=$((fails + 1))
  fi
done

# The real boards: built (the default one-model image, default settings), not run here;
# their memory report from the ELF, and the Pico 2's UF2 written and checked.
real_target() { case $1 in pico2) echo thumbv8m.main-none-eabihf ;; nucleo-h743zi) echo thumbv7em-none-eabihf ;; esac; }
printf '| board | vectors + boot block + .text | .rodata | .spark_model | .data | .bss | of which arena |\n|---|---|---|---|---|---|---|\n' >"$OUT/memory-real.md"
for b in ${REAL[@]+"${REAL[@]}"}; do
  t=$(real_target "$b")
  echo "== $b ($t, built only)"
  if ! (cd firmware/app && cargo build -q --release --target "$t" --target-dir "$TARGET_DIR" \
    --no-default-features --features "$b" >"$OUT/$b.build.log" 2>&1); then
    cat "$OUT/$b.build.log"; echo "$b: the build failed"; fails=$((fails + 1)); continue
  fi
  cp "$TARGET_DIR/$t/release/spark-app" "$OUT/$b.elf"
  python3 - "$b" "$OUT/$b.elf" >>"$OUT/memory-real.md" <<'PY'
import subprocess, sys
b, elf = sys.argv[1], sys.argv[2]
sec = {}
for l in subprocess.run(["size", "-A", elf], capture_output=True, text=True, check=True).stdout.splitlines():
    f = l.split()
    if len(f) == 3 and f[0].startswith("."):
        sec[f[0]] = int(f[1])
arena = 0
for l in subprocess.run(["nm", "-S", "-C", elf], capture_output=True, text=True, check=True).stdout.splitlines():
    f = l.split()
    if len(f) == 4 and f[3] == "spark_app::ARENA":
        arena = int(f[1], 16)
code = sec.get(".vector_table", 0) + sec.get(".start_block", 0) + sec.get(".text", 0)
print(f"| {b} | {code:,} | {sec.get('.rodata', 0):,} | {sec.get('.spark_model', 0):,} | {sec.get('.data', 0):,} | {sec.get('.bss', 0):,} | {arena:,} |")
PY
  tail -1 "$OUT/memory-real.md"
  if [ "$b" = pico2 ]; then
    firmware/elf2uf2.py "$OUT/pico2.elf" "$OUT/pico2.uf2" && firmware/elf2uf2.py --check "$OUT/pico2.elf" "$OUT/pico2.uf2" ||
      { echo "pico2: the UF2 conversion failed"; fails=$((fails + 1)); }
  fi
done

# A model too big for the board fails the build, with the budget lines of `spark-sim plan`.
echo "== a model too big for mps2-an386 must fail the build"
# (the demo checkpoint converted with an 8192-token context: its session arena is 5.8 MiB,
# more than the board's 4 MiB of RAM)
BIG="$OUT/too-big.spark"
"$SIM" convert models/demo_spark.safetensors -o "$BIG" --tokenizer models/tokenizer.json --max-seq 8192 >/dev/null
if [ ${#BOARDS[@]} -eq 0 ]; then
  echo "(skipped: no QEMU board selected)"
elif (cd firmware/app && SPARK_MODEL="$BIG" cargo build -q --release --target thumbv7em-none-eabihf \
  --target-dir "$TARGET_DIR" >"$OUT/too-big.log" 2>&1); then
  echo "the build of a too-big model succeeded"; fails=$((fails + 1))
elif grep -q "does not fit mps2-an386" "$OUT/too-big.log" && grep -q "TOO BIG" "$OUT/too-big.log"; then
  grep -E "does not fit|^\s*(RAM|flash|fix) " "$OUT/too-big.log" | sed 's/^ *//'
else
  cat "$OUT/too-big.log"; echo "the too-big build failed without the budget message"; fails=$((fails + 1))
fi

echo "firmware/run-qemu.sh: $((SECONDS - T0)) s, $fails failure(s)"
[ $fails -eq 0 ]
