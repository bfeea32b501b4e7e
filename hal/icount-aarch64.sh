#!/usr/bin/env bash
# Executed instructions per multiply-accumulate of the aarch64 kernels under QEMU user
# mode: scalar oracle, `Neon` (widening multiply, as on a Cortex-A53) and `NeonDot`
# (`sdot`), 64 rows of 256 / 512 / 1024 columns, as `firmware/kernel-test` measures the
# Cortex-M backends.
#
# How: `hal/examples/icount.rs` runs under `qemu-aarch64` with one guest instruction per
# translation block and an execution log (`-d exec,nochain`), so every executed instruction
# is one `Trace` line. The count with REPS = 2 minus the count with REPS = 1 is one call.
# These are instruction counts, not cycles or seconds (QEMU has no timing model), and they
# are deterministic run to run. Prerequisites as for `test.sh` (rustup target
# aarch64-unknown-linux-gnu, qemu-user, gcc-aarch64-linux-gnu). Exits non-zero unless, for
# `gemv`, `NeonDot` executes fewer instructions than `Neon` and `Neon` fewer than the
# oracle (a dot-product path that silently fell back would show up here).
#
# Usage: hal/icount-aarch64.sh [COLS...]   (default: 256 512 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- 256 512 1024

CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  cargo build --quiet --release -p spark-hal --example icount --target aarch64-unknown-linux-gnu
bin=target/aarch64-unknown-linux-gnu/release/examples/icount

# QEMU 8.1 renamed -singlestep to -one-insn-per-tb.
if qemu-aarch64 -h | grep -q -- '-one-insn-per-tb'; then step=-one-insn-per-tb; else step=-singlestep; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# count CPU BACKEND KERNEL COLS REPS: instructions the whole process executes.
count() {
  timeout 300 qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$1" "$step" -d exec,nochain -D "$log" \
    "$bin" "$2" "$3" "$4" "$5" >/dev/null
  grep -c '^Trace' "$log"
}

# per_mac CPU BACKEND KERNEL COLS: instructions per MAC of one call, 3 decimals.
per_mac() {
  local one two macs
  one=$(count "$1" "$2" "$3" "$4" 1)
  two=$(count "$1" "$2" "$3" "$4" 2)
  if [ "$3" = dot ]; then macs=$4; else macs=$((64 * $4)); fi
  awk -v d=$((two - one)) -v m="$macs" 'BEGIN { printf "%.3f", d / m }'
}

printf '%-12s %6s %10s %10s %10s %14s\n' kernel cols scalar neon neon-sdot 'scalar/sdot'
for cols in "$@"; do
  for kernel in gemv gemv_rows gemv_t_rows dot; do
    s=$(per_mac max scalar "$kernel" "$cols")
    n=$(per_mac cortex-a53 neon "$kernel" "$cols")
    d=$(per_mac max neon-sdot "$kernel" "$cols")
    r=$(awk -v a="$s" -v b="$d" 'BEGIN { printf "%.1fx", a / b }')
    printf '%-12s %6s %10s %10s %10s %14s\n' "$kernel" "$cols" "$s" "$n" "$d" "$r"
    if [ "$kernel" = gemv ] && ! awk -v s="$s" -v n="$n" -v d="$d" 'BEGIN { exit !(d < n && n < s) }'; then
      echo "icount: gemv at $cols columns is not neon-sdot < neon < scalar" >&2
      exit 1
    fi
  done
done
