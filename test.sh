#!/usr/bin/env bash
# The project's one test command (README, CI). Installs what is missing, then runs
# formatting, lints, the whole workspace test suite and the no_std builds.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components and targets"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
NO_STD_TARGETS="thumbv7em-none-eabihf thumbv6m-none-eabi"
for t in $NO_STD_TARGETS; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "no_std builds (no allocator, no std)"
for t in $NO_STD_TARGETS; do
  cargo build -p spark-hal -p spark-core --target "$t" --release
done

echo
echo "test.sh: all checks passed"
