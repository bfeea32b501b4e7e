#!/usr/bin/env bash
# Run one fuzz target (cargo fuzz, libFuzzer, nightly) for a bounded time.
#   fuzz/run.sh <target> <seconds> [extra libFuzzer flags...]
# Targets: loader loader_structured tokenizer convert ffi (fuzz/fuzz_targets/).
# Starts from fuzz/corpus/<target> (committed; new inputs are added there unless
# SPARK_FUZZ_SCRATCH=1) plus seeds made
# from the repository's larger files in target/fuzz-seeds/<target> (not committed). A
# crash leaves its input in fuzz/artifacts/<target>/; once fixed, copy it to
# fuzz/regressions/<target>/, which cargo test replays (fuzz/entry/tests/replay.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
t=$1
secs=$2
shift 2
seeds="target/fuzz-seeds/$t"
# SPARK_FUZZ_SCRATCH=1 (test.sh): work on a copy, leaving fuzz/corpus as committed.
corpus="fuzz/corpus/$t"
if [ "${SPARK_FUZZ_SCRATCH:-0}" = 1 ]; then
  corpus="target/fuzz-corpus/$t"
  rm -rf "$corpus" && mkdir -p "$corpus" && cp -r "fuzz/corpus/$t/." "$corpus/"
fi
rm -rf "$seeds" && mkdir -p "$seeds" "$corpus"
prefixed() { # mode-byte file out
  { printf "\\x$(printf %02x "$1")"; cat "$2"; } >"$3"
}
max_len=65536
case "$t" in
  loader) cp models/demo.spark "$seeds/demo.spark"; max_len=131072 ;;
  tokenizer) head -c 4000 models/README.md >"$seeds/readme.txt"; head -c 4000 models/tokenizer.json >"$seeds/tokenizer.json" ;;
  convert)
    for f in tests/golden/*.safetensors; do prefixed 2 "$f" "$seeds/$(basename "$f")"; done
    prefixed 3 tests/hf/tiny-gemma2/model.safetensors "$seeds/hf_model.safetensors"
    prefixed 1 tests/hf/tiny-gemma2/config.json "$seeds/hf_config.json"
    max_len=600000 ;;
esac
exec cargo +nightly fuzz run -O "$t" "$corpus" "$seeds" -- \
  -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 "$@"
