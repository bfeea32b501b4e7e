#!/usr/bin/env bash
# The project's one test command (README, CI). Installs what is missing, then runs
# formatting, lints, the whole workspace test suite (crate tests and the cross-crate tests
# of tests/), the Python reference's tests, the no_std builds and the cross-target runs.
set -euo pipefail
cd "$(dirname "$0")"

# Each step prints the minutes and seconds since the start (where the time goes, in CI logs).
step() { printf '\n==> [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# Disk: a clean run builds about a dozen target directories (host, Miri, fuzz, MSRV, armv7,
# aarch64, three firmware projects). Where the disk is short (under 20 GiB free at the
# start, or SPARK_TEST_PRUNE=1), each step's own build directory is removed once the step
# has passed, so the run needs the host build plus the largest step rather than the sum;
# SPARK_TEST_PRUNE=0 keeps them all (faster reruns). Incremental compilation is off: a
# test run does not reuse it, and it doubles the workspace crates' footprint.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
free_gib=$(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }')
if [ -z "${SPARK_TEST_PRUNE:-}" ]; then
  if [ "$free_gib" -lt 20 ]; then SPARK_TEST_PRUNE=1; else SPARK_TEST_PRUNE=0; fi
fi
echo "disk: ${free_gib} GiB free; SPARK_TEST_PRUNE=$SPARK_TEST_PRUNE"
prune() { # build directories a finished step no longer needs
  if [ "$SPARK_TEST_PRUNE" = 1 ]; then
    rm -rf "$@"
    echo "pruned $*; disk: $(df -Pk . | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }') GiB free"
  fi
}

step "toolchain components and targets"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
NO_STD_TARGETS="thumbv7em-none-eabihf thumbv6m-none-eabi"
for t in $NO_STD_TARGETS; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

step "cargo fmt --check"
cargo fmt --all --check

# Every `unsafe` block carries a `// SAFETY:` comment directly above it.
step "cargo clippy (with clippy::undocumented_unsafe_blocks)"
cargo clippy --workspace --all-targets -- -D warnings -W clippy::undocumented_unsafe_blocks

step "cargo test --workspace"
cargo test --workspace

step "determinism across threads: spark-sim generate --threads 1-4, same token ids and logits digest"
for t in 1 2 3 4; do
  cargo run -q -p spark-sim -- generate --prompt "Once upon a time" -n 64 --json --threads "$t" |
    python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["logits_digest"], d["token_ids"])'
done | sort -u | awk 'END { if (NR != 1) { print "thread counts disagree"; exit 1 } print "1-4 threads: one result" }'

# ---------------------------------------------------------------------------------------
# Reliability (docs/RELIABILITY.md). `cargo test --workspace` above already replayed every
# committed fuzz input (fuzz/corpus, fuzz/regressions) on stable (fuzz/entry/tests) and ran
# the soak, adversarial top-k and value-limit tests. With the nightly toolchain: Miri over
# spark-hal (scalar kernels, arena), spark-core (top-k, unit tests) and a tiny model's
# load and session; and every fuzz target for a short bounded time.
# ---------------------------------------------------------------------------------------
REL_T0=$SECONDS
# The nightly toolchain is installed when missing (Miri and cargo-fuzz need it); set
# SPARK_NO_NIGHTLY=1 to skip this section on a machine that must not fetch it.
if [ -z "${SPARK_NO_NIGHTLY:-}" ] && ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if rustup toolchain list | grep -q '^nightly'; then
  step "Miri (cargo +nightly miri test): spark-hal scalar kernels and arena, spark-core, a tiny model"
  rustup +nightly component list --installed 2>/dev/null | grep -q '^miri' || rustup component add miri rust-src --toolchain nightly
  cargo +nightly miri setup -q
  # Deterministic floats: Miri otherwise perturbs float results and NaN payloads, which
  # the bit-exact comparisons would report. Reduced profile: the scalar oracle is safe
  # code, so its long elementwise and mask loops and the table-driven suites (every edge
  # length, extreme and random case: about 15 minutes under Miri) run natively above;
  # Miri runs the arena, the named values, the fixtures and the proptests at 4 cases.
  export MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-disable-isolation -Zmiri-deterministic-floats"
  cargo +nightly miri test -q -p spark-hal --features force-scalar --test arena --test scalar -- \
    --skip elementwise_f32_kernels --skip above_masks_f32_kernel --skip max_length_rows \
    --skip edge_lengths_all_kernels --skip extreme_values --skip random_table_cases --skip prop_table_random_case
  # soft-float: libm without inline assembly, which Miri cannot run (same bits).
  # (core's exec module, safe integer chunking with millions of products in its tests, runs
  # natively above)
  cargo +nightly miri test -q -p spark-core --features soft-float --lib --test topk_adversarial -- --skip exec::
  cargo +nightly miri test -q -p spark-tests --features spark-core/soft-float --test miri
  # The same on a 32-bit target (usize = u32): the address-space limits of the loader.
  cargo +nightly miri test -q --target i686-unknown-linux-gnu -p spark-tests --features spark-core/soft-float \
    --test miri sizes_beyond_the_address_space_are_refused
  unset MIRIFLAGS
  echo "Miri: $((SECONDS - REL_T0)) s"
  prune "${CARGO_TARGET_DIR:-target}/miri"

  FUZZ_SECS=${SPARK_FUZZ_SECS:-30}
  step "fuzz targets (cargo fuzz, libFuzzer): ${FUZZ_SECS} s each"
  if ! command -v cargo-fuzz >/dev/null; then
    # a few minutes once (then cached in ~/.cargo/bin)
    cargo install --locked cargo-fuzz@0.13.2
  fi
  FUZZ_T0=$SECONDS
  for t in loader loader_structured tokenizer convert ffi; do
    SPARK_FUZZ_SCRATCH=1 fuzz/run.sh "$t" "$FUZZ_SECS" >"target/fuzz-$t.log" 2>&1 ||
      { tail -n 40 "target/fuzz-$t.log"; echo "fuzz target $t failed: input in fuzz/artifacts/$t/"; exit 1; }
    grep -E '^(stat::number_of_executed_units|Done)' "target/fuzz-$t.log" | tr '\n' ' '
    echo "<- $t"
  done
  echo "fuzz: $((SECONDS - FUZZ_T0)) s"
  prune fuzz/target "${CARGO_TARGET_DIR:-target}/fuzz-corpus"
else
  step "Miri and fuzz targets"
  echo "skipped: SPARK_NO_NIGHTLY is set"
fi
echo "reliability section: $((SECONDS - REL_T0)) s"

step "cargo doc --workspace --no-deps (no warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# The workspace's rust-version (Cargo.toml) is checked with that very toolchain, so the
# number cannot drift from the truth.
MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
step "MSRV: cargo +$MSRV check --workspace --all-targets"
rustup toolchain list | grep -q "^$MSRV-" || rustup toolchain install "$MSRV" --profile minimal
CARGO_TARGET_DIR=target/msrv cargo "+$MSRV" check --workspace --all-targets
prune target/msrv

# ---------------------------------------------------------------------------------------
# The Python side the golden files come from: train/reference.py writes tests/golden/ and
# train/bpe.py trains the tokenizer. Their tests run in a virtual environment made from
# train/requirements-reference.txt (numpy, safetensors), kept in train/.venv and made again
# when that file changes. The PyTorch tests need torch (large, not installed here): they run
# when the system python3 imports it.
# ---------------------------------------------------------------------------------------
PY_VENV=train/.venv
PY_REQ=train/requirements-reference.txt
step "Python virtual environment $PY_VENV from $PY_REQ"
py_req_hash=$(sha256sum "$PY_REQ" | cut -d' ' -f1)
if [ -x "$PY_VENV/bin/python" ] && [ "$(cat "$PY_VENV/requirements.sha256" 2>/dev/null)" = "$py_req_hash" ]; then
  echo "reusing $PY_VENV ($PY_REQ unchanged)"
else
  rm -rf "$PY_VENV"
  python3 -m venv "$PY_VENV"
  "$PY_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$PY_REQ"
  # (written last, so an interrupted install is redone on the next run)
  echo "$py_req_hash" >"$PY_VENV/requirements.sha256"
fi

step "train/test_reference.py: the numpy reference, and tests/golden/ is current"
"$PY_VENV/bin/python" train/test_reference.py
step "train/test_bpe.py: the byte-level BPE trainer"
"$PY_VENV/bin/python" train/test_bpe.py
if python3 -c "import torch" 2>/dev/null; then
  step "train/test_spark_model.py: the PyTorch model against tests/golden/ and tests/hf/"
  python3 train/test_spark_model.py
  step "train/test_ddp.sh: 2-process DDP on CPU, stop + resume"
  PYTHON="$(command -v python3)" train/test_ddp.sh
else
  step "PyTorch tests (train/test_spark_model.py, train/test_ddp.sh)"
  echo "skipped: torch not importable by python3"
fi

step "no_std builds (no allocator, no std)"
for t in $NO_STD_TARGETS; do
  cargo build -p spark-hal -p spark-core --target "$t" --release
done

# ---------------------------------------------------------------------------------------
# Kernels (spark-hal ISA backends) on every target they run on: x86-64 natively (above),
# aarch64 NEON / sdot under qemu-user, Cortex-M4 / M33 DSP under qemu-system-arm.
# ---------------------------------------------------------------------------------------

step "kernel targets and emulators"
for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf thumbv8m.main-none-eabihf; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done
need_pkgs=""
command -v qemu-aarch64 >/dev/null || need_pkgs="$need_pkgs qemu-user"
command -v qemu-system-arm >/dev/null || need_pkgs="$need_pkgs qemu-system-arm"
command -v aarch64-linux-gnu-gcc >/dev/null || need_pkgs="$need_pkgs gcc-aarch64-linux-gnu"
[ -e /usr/aarch64-linux-gnu/lib/libc.so ] || need_pkgs="$need_pkgs libc6-dev-arm64-cross"
command -v arm-linux-gnueabihf-gcc >/dev/null || need_pkgs="$need_pkgs gcc-arm-linux-gnueabihf"
[ -e /usr/arm-linux-gnueabihf/lib/libc.so ] || need_pkgs="$need_pkgs libc6-dev-armhf-cross"
if [ -n "$need_pkgs" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null
fi

step "spark-hal: no_std x86-64 builds (scalar, and AVX2 enabled at compile time)"
cargo clippy -p spark-hal -- -D warnings
RUSTFLAGS="-C target-feature=+avx2" cargo clippy -p spark-hal --target-dir target/avx2-check -- -D warnings
prune target/avx2-check

step "spark-hal: force-scalar A/B switch (Native = Scalar)"
cargo test -p spark-hal --features force-scalar --test backends

step "spark-hal: clippy for aarch64 and Cortex-M"
cargo clippy -p spark-hal --all-targets --target aarch64-unknown-linux-gnu -- -D warnings
# (lib only: no dev-dependencies, so no `std` feature: the no_std selection paths)
for t in aarch64-unknown-linux-gnu thumbv7em-none-eabihf thumbv8m.main-none-eabihf thumbv6m-none-eabi; do
  cargo clippy -p spark-hal --target "$t" -- -D warnings
done
# the Helium backend (feature mve, cfg(spark_mve): Native = Mve)
cargo clippy -p spark-hal --target thumbv8m.main-none-eabihf --features mve -- -D warnings

# The linker and runner are set per command, not in a global cargo config, so host builds
# are unaffected. `-cpu max` has dotprod (NeonDot runs); `-cpu cortex-a53` has not (NeonDot
# is skipped and arm::Auto must fall back to Neon).
aarch64_cargo() { # cpu cargo-subcommand args...
  local cpu=$1 sub=$2
  shift 2
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu $cpu" \
    cargo "$sub" --target aarch64-unknown-linux-gnu "$@"
}
aarch64_test() {
  aarch64_cargo "$1" test -p spark-hal
}
step "spark-hal tests on aarch64 under qemu-aarch64 -cpu max (NEON + sdot)"
aarch64_test max
step "spark-hal tests on aarch64 under qemu-aarch64 -cpu cortex-a53 (NEON, no dotprod)"
aarch64_test cortex-a53
# spark-core's own tests on aarch64 (statistical top-k, sampler, tokenizer). The
# elementwise functions of spark_hal::math are tested in the spark-hal steps above.
step "spark-core tests on aarch64 under qemu-aarch64 -cpu max"
aarch64_cargo max test -p spark-core --lib --tests

# A 32-bit target (usize = u32) under qemu-arm: spark-core's tests, the loader and format
# tests (every corruption, the address-space limits of tests/miri.rs, now on a real 32-bit
# build rather than only Miri's i686), the extreme-value forward passes, and every
# committed fuzz input replayed (fuzz/entry): the arena and offset arithmetic must refuse,
# not wrap, where usize has 32 bits.
# (`--tests` applies to both packages: every test of the workspace's tests/ runs too, the
# loader, extreme values and whole models on a 32-bit target. Reduced profile: the
# soak's longest test and the thread counts, which run natively above and on aarch64
# below, are skipped here: about 4 of this step's 12 minutes under qemu-arm.)
step "32-bit: spark-core and the workspace tests (loader, extreme values, whole models), fuzz replays, on armv7 under qemu-arm"
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf" \
  cargo test -q --target armv7-unknown-linux-gnueabihf -p spark-core --lib --tests -p spark-tests -- \
    --skip soak_to_max_seq_len_reset_repeat --skip bundled_model_is_the_committed_output_with_1_to_4_threads \
    --skip golden_models_decode_identically_with_1_to_4_threads
# (release with overflow checks and debug assertions: the debug build replays too slowly
# under QEMU)
CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf" \
  cargo test -q --release --target armv7-unknown-linux-gnueabihf -p spark-fuzz-entry --test replay 2>&1 |
  grep -v -e '/corpus/' -e '/regressions/'
prune "${CARGO_TARGET_DIR:-target}/armv7-unknown-linux-gnueabihf"

# Cross-target determinism: the bundled model on aarch64 (NEON + sdot, and NEON without
# dotprod) must reproduce the token ids and the logits digest that the x86 scalar
# backend recorded in models/expected_int8.json, bit for bit (tests/demo_model.rs).
aarch64_demo() {
  aarch64_cargo "$1" test -p spark-tests --test demo_model -- bundled_int8 --nocapture
}
step "determinism: bundled model on aarch64 under qemu-aarch64 -cpu max (NEON + sdot)"
aarch64_demo max
step "determinism: bundled model on aarch64 under qemu-aarch64 -cpu cortex-a53 (NEON, no dotprod)"
aarch64_demo cortex-a53
THREADS_T0=$SECONDS
step "determinism across threads: bundled and golden models with 1-4 threads on aarch64 under qemu-aarch64 -cpu max"
aarch64_cargo max test -p spark-tests --test threads -- --nocapture
echo "aarch64 threads: $((SECONDS - THREADS_T0)) s"

# Executed instructions per MAC of the aarch64 kernels (docs/PERFORMANCE.md, "Kernels"):
# fails unless NeonDot's gemv executes fewer instructions than Neon's, and Neon's fewer
# than the oracle's.
step "aarch64 kernels: executed instructions per MAC under qemu-aarch64 (rows of 1024)"
hal/icount-aarch64.sh 1024
prune "${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu"

# firmware/kernel-test is its own cargo project (own .cargo/config.toml with the QEMU
# runners); its build output goes under the workspace target directory. It runs
# spark-hal's shared kernel cases (spark_hal::testing, the table kernel_suite! runs on the
# host) with the DSP kernels against the scalar oracle on four QEMU boards (boards are
# cargo features; memory maps and clocks from firmware/boards, runtime from
# firmware/common): M4 and M7 run thumbv7em images, M33 and M55 thumbv8m.main images;
# with the feature mve the M55 image also checks the Helium kernels (and fails if MVE
# gemv_i8 / gemv_rows_i8 exceed 0.40 / 0.45 instructions per MAC).
FW_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/kernel-test"
FW_KT_T0=$SECONDS
step "Cortex-M kernel test (firmware/kernel-test): fmt and clippy (mps2-an386; mps3-an547; mps3-an547 with mve)"
(cd firmware/kernel-test && cargo fmt --check &&
  cargo clippy -q --release --target-dir "$FW_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv8m.main-none-eabihf --no-default-features --features mps3-an547 \
    --target-dir "$FW_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv8m.main-none-eabihf --no-default-features --features mps3-an547,mve \
    --target-dir "$FW_TARGET_DIR" -- -D warnings)

kernel_qemu() { # board target cpu [features]
  (cd firmware/kernel-test && cargo build -q --release --target "$2" --target-dir "$FW_TARGET_DIR" \
    --no-default-features --features "$1${4:+,$4}")
  timeout 300 qemu-system-arm -machine "$1" -cpu "$3" -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native \
    -kernel "$FW_TARGET_DIR/$2/release/spark-kernel-test"
}
step "Cortex-M4 DSP kernels: spark-hal's cases under qemu-system-arm -machine mps2-an386"
kernel_qemu mps2-an386 thumbv7em-none-eabihf cortex-m4
step "Cortex-M7 DSP kernels: spark-hal's cases under qemu-system-arm -machine mps2-an500"
kernel_qemu mps2-an500 thumbv7em-none-eabihf cortex-m7
step "Cortex-M33 DSP kernels: spark-hal's cases under qemu-system-arm -machine mps2-an505"
kernel_qemu mps2-an505 thumbv8m.main-none-eabihf cortex-m33
step "Cortex-M55 DSP kernels: spark-hal's cases under qemu-system-arm -machine mps3-an547"
kernel_qemu mps3-an547 thumbv8m.main-none-eabihf cortex-m55
step "Cortex-M55 Helium (MVE) kernels and DSP kernels: spark-hal's cases under qemu-system-arm -machine mps3-an547 (feature mve)"
kernel_qemu mps3-an547 thumbv8m.main-none-eabihf cortex-m55 mve
echo "firmware/kernel-test section: $((SECONDS - FW_KT_T0)) s"
prune "$FW_TARGET_DIR"

# firmware/app: the firmware a user flashes (own cargo project like kernel-test): boards
# are cargo features, the board table and memory maps live in firmware/boards (shared with
# `spark-sim plan`). firmware/run-qemu.sh builds it for the five QEMU boards (Cortex-M3
# running the ARMv6-M build, M4, M7, M33, M55) and the M55 with the Helium kernels
# (mps3-an547-mve: feature mve), runs each greedy and sampled under QEMU
# with a timeout and compares every JSON line with `spark-sim generate --json` (dev-profile
# spark-sim, built by the workspace tests); the greedy runs also count the dense twin's
# instructions per token and check models/expected_int8.json bit for bit; a model too big
# for mps2-an386 must fail the build; the real-board images (Pico 2 with its UF2,
# Nucleo-H743ZI) are built, not run.
FW_APP_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/app"
FW_APP_T0=$SECONDS
step "spark-core / spark-hal with the defmt feature (thumbv7em-none-eabihf)"
cargo build -q -p spark-core --features defmt --target thumbv7em-none-eabihf
step "Cortex-M firmware (firmware/app): fmt and clippy (mps2-an386; mps2-an385 ARMv6-M with force-panic; mps3-an547 with expected-int8 and compare-dense, with and without mve; pico2; nucleo-h743zi)"
# (the compare-dense configuration needs the dense twin: converted as run-qemu.sh does it,
# replaced only when it changed)
FW_DENSE="${CARGO_TARGET_DIR:-$PWD/target}/demo_dense.spark"
"${CARGO_TARGET_DIR:-target}/debug/spark-sim" convert models/demo_dense.safetensors -o "$FW_DENSE.new" >/dev/null
if cmp -s "$FW_DENSE.new" "$FW_DENSE"; then rm "$FW_DENSE.new"; else mv "$FW_DENSE.new" "$FW_DENSE"; fi
(cd firmware/app && export SPARK_DENSE_MODEL="$FW_DENSE" && cargo fmt --check &&
  cargo clippy -q --release --target-dir "$FW_APP_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv6m-none-eabi --no-default-features --features mps2-an385,force-panic \
    --target-dir "$FW_APP_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv8m.main-none-eabihf --no-default-features \
    --features mps3-an547,expected-int8,compare-dense --target-dir "$FW_APP_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv8m.main-none-eabihf --no-default-features \
    --features mps3-an547,mve,expected-int8,compare-dense --target-dir "$FW_APP_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv8m.main-none-eabihf --no-default-features --features pico2 \
    --target-dir "$FW_APP_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv7em-none-eabihf --no-default-features --features nucleo-h743zi \
    --target-dir "$FW_APP_TARGET_DIR" -- -D warnings &&
  cargo clippy -q --release --target thumbv8m.main-none-eabihf --no-default-features \
    --features mps2-an505,runtime-model --target-dir "$FW_APP_TARGET_DIR" -- -D warnings)
step "firmware/run-qemu.sh: five QEMU boards and mps3-an547 with mve (Helium), greedy and sampled, JSON lines equal to spark-sim generate --json; Pico 2 and Nucleo-H743ZI images built (+ UF2)"
SPARK_SIM="${CARGO_TARGET_DIR:-target}/debug/spark-sim" firmware/run-qemu.sh
echo "firmware/app section: $((SECONDS - FW_APP_T0)) s"
prune "$FW_APP_TARGET_DIR"

# firmware/ffi: the C API (libspark.a + spark.h), its own cargo project like firmware/app.
# C programs link it on the host (tests plain and under ASan+UBSan, the example) and on a
# Cortex-M4 (C firmware under QEMU); their JSON lines must equal spark-sim's token ids and
# logits digest. cbindgen is pinned so the committed header compares byte for byte.
FFI_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/ffi"
FFI_C="$FFI_TARGET_DIR/c"
FFI_T0=$SECONDS
step "C API (firmware/ffi): cbindgen, arm-none-eabi-gcc with newlib, cmake"
command -v cbindgen >/dev/null || cargo install --locked cbindgen@0.29.4
if ! command -v arm-none-eabi-gcc >/dev/null || [ ! -d /usr/lib/arm-none-eabi/newlib ] ||
  ! command -v cmake >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi cmake >/dev/null
fi
step "C API: fmt, clippy, cargo doc (no warnings), Rust unit tests, host libspark.a, and the committed spark.h equals cbindgen's output"
(cd firmware/ffi && cargo fmt --check &&
  cargo clippy --release --target-dir "$FFI_TARGET_DIR" -- -D warnings -W clippy::undocumented_unsafe_blocks &&
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --target-dir "$FFI_TARGET_DIR" &&
  cargo clippy --lib --tests --target-dir "$FFI_TARGET_DIR" -- -D warnings -W clippy::undocumented_unsafe_blocks &&
  cargo test --lib --target-dir "$FFI_TARGET_DIR" &&
  cargo build --release --target-dir "$FFI_TARGET_DIR")
mkdir -p "$FFI_C"
cbindgen -q --config firmware/ffi/cbindgen.toml --crate spark-ffi --output "$FFI_C/spark.h" firmware/ffi
diff -u firmware/ffi/include/spark.h "$FFI_C/spark.h" ||
  { echo "firmware/ffi/include/spark.h is stale: regenerate it with cbindgen (firmware/ffi/README.md)"; exit 1; }

ffi_sim() { cargo run -q -p spark-sim -- generate --model models/demo.spark --prompt "Once upon a time" -n 64 --json "$@"; }
ffi_same() { # label, spark-sim JSON, C JSON line: token_ids and logits_digest must be equal
  python3 - "$@" <<'EOF'
import json, sys
label, sim, c = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ok = sim["token_ids"] == c["token_ids"] and sim["logits_digest"] == c["logits_digest"] and c["tokens"] == len(c["token_ids"])
print(f"{label}: {len(c['token_ids'])} tokens, digest {c['logits_digest']} (spark-sim {sim['logits_digest']}):", "equal" if ok else "DIFFERENT")
sys.exit(0 if ok else 1)
EOF
}
FFI_GREEDY="$(ffi_sim)"
FFI_SAMPLED="$(ffi_sim --temperature 0.8 --top-p 0.9 --seed 5)"
FFI_DIGEST="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["logits_digest"])' "$FFI_GREEDY")"

step "C API: host C tests (firmware/ffi/tests), plain and under -fsanitize=address,undefined"
make -s -C firmware/ffi/examples/host OUT="$FFI_C/host" SPARK_LIB="$FFI_TARGET_DIR/release/libspark.a"
"$FFI_C/host/test_api" models/demo.spark "$FFI_DIGEST"
"$FFI_C/host/test_api_asan" models/demo.spark "$FFI_DIGEST"

step "C API: host C example vs spark-sim generate --json (greedy; temperature 0.8, top-p 0.9, seed 5)"
ffi_same "host greedy" "$FFI_GREEDY" \
  "$("$FFI_C/host/generate" models/demo.spark --prompt "Once upon a time" -n 64 --json)"
ffi_same "host sampled" "$FFI_SAMPLED" \
  "$("$FFI_C/host/generate" models/demo.spark --prompt "Once upon a time" -n 64 --json \
    --temperature 0.8 --top-p 0.9 --seed 5)"

step "C API: README.md's example, built by its host command with only spark.h, libspark.a and the model"
rm -rf "$FFI_C/readme" && mkdir -p "$FFI_C/readme"
cp firmware/ffi/include/spark.h "$FFI_TARGET_DIR/release/libspark.a" models/demo.spark "$FFI_C/readme/"
python3 - firmware/ffi/README.md "$FFI_C/readme" <<'EOF'
import re, sys
blocks = re.findall(r"```(\w+)\n(.*?)```", open(sys.argv[1]).read(), re.S)
get = lambda lang: [b for l, b in blocks if l == lang][0]
open(sys.argv[2] + "/example.c", "w").write(get("c"))
open(sys.argv[2] + "/model.S", "w").write(get("asm"))
gcc = next(l for l in get("sh").splitlines() if l.startswith("gcc "))
open(sys.argv[2] + "/build.sh", "w").write("set -e\n" + gcc + "\n")
EOF
(cd "$FFI_C/readme" && bash build.sh && ./example >out.txt)
diff <(sed '$d' "$FFI_C/readme/out.txt") \
  <(cargo run -q -p spark-sim -- generate --model models/demo.spark --prompt "Once upon a time" -n 64 \
    --temperature 0.8 --top-p 0.9 --seed 5 2>/dev/null)
echo "README example: the same text as spark-sim generate"

step "C API: Cortex-M4 C firmware (firmware/ffi/examples/cortex-m) under qemu-system-arm -machine mps2-an386"
(cd firmware/ffi && cargo build --release --target thumbv7em-none-eabihf --no-default-features \
  --features panic-handler --target-dir "$FFI_TARGET_DIR")
make -s -B -C firmware/ffi/examples/cortex-m OUT="$FFI_C/m4" MODEL="$PWD/models/demo.spark" \
  SPARK_LIB="$FFI_TARGET_DIR/thumbv7em-none-eabihf/release/libspark.a" \
  SPARK_ARENA_BYTES="$("$FFI_C/host/generate" models/demo.spark --arena-size)"
FFI_FW="$(timeout 120 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
  -semihosting-config enable=on,target=native -kernel "$FFI_C/m4/spark-c-firmware.elf")"
ffi_same "Cortex-M4 greedy" "$FFI_GREEDY" "$(sed -n 1p <<<"$FFI_FW")"
ffi_same "Cortex-M4 sampled" "$FFI_SAMPLED" "$(sed -n 2p <<<"$FFI_FW")"
echo "libspark.a in the Cortex-M4 image: $(python3 firmware/ffi/examples/cortex-m/lib-size.py "$FFI_C/m4/spark-c-firmware.map")"

step "C API: the CMake builds (imported target spark::spark) give the same programs' output"
cmake -S firmware/ffi/examples/host -B "$FFI_C/cmake-host" -DSPARK_LIB="$FFI_TARGET_DIR/release/libspark.a" >/dev/null
cmake --build "$FFI_C/cmake-host" --target generate >/dev/null
ffi_same "host greedy (CMake)" "$FFI_GREEDY" \
  "$("$FFI_C/cmake-host/generate" models/demo.spark --prompt "Once upon a time" -n 64 --json)"
cmake -S firmware/ffi/examples/cortex-m -B "$FFI_C/cmake-m4" \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/firmware/ffi/examples/cortex-m/arm-none-eabi-cortex-m4.cmake" \
  -DMODEL="$PWD/models/demo.spark" -DSPARK_LIB="$FFI_TARGET_DIR/thumbv7em-none-eabihf/release/libspark.a" \
  -DSPARK_ARENA_BYTES="$("$FFI_C/host/generate" models/demo.spark --arena-size)" >/dev/null
cmake --build "$FFI_C/cmake-m4" >/dev/null
FFI_FW_CMAKE="$(timeout 120 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
  -semihosting-config enable=on,target=native -kernel "$FFI_C/cmake-m4/spark-c-firmware.elf")"
ffi_same "Cortex-M4 greedy (CMake)" "$FFI_GREEDY" "$(sed -n 1p <<<"$FFI_FW_CMAKE")"

step "C API: static libraries for aarch64 Linux and thumbv8m.main (Cortex-M33)"
(cd firmware/ffi && cargo build --release --target aarch64-unknown-linux-gnu --target-dir "$FFI_TARGET_DIR" &&
  cargo build --release --target thumbv8m.main-none-eabihf --no-default-features --features panic-handler \
    --target-dir "$FFI_TARGET_DIR")
aarch64-linux-gnu-gcc -std=c11 -O2 -Wall -Wextra -Werror -Ifirmware/ffi/include -Ifirmware/ffi/examples \
  firmware/ffi/tests/test_api.c firmware/ffi/examples/spark_demo.c \
  "$FFI_TARGET_DIR/aarch64-unknown-linux-gnu/release/libspark.a" -lpthread -lm -ldl -o "$FFI_C/test_api_aarch64"
timeout 300 qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu "$FFI_C/test_api_aarch64" models/demo.spark "$FFI_DIGEST"
echo "C API section: $((SECONDS - FFI_T0)) s"

echo
echo "test.sh: all checks passed in $((SECONDS / 60)) min $((SECONDS % 60)) s"
