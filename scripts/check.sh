#!/usr/bin/env bash
# The one entry point for every check: formatting, lints (warnings denied), all tests, a brief
# fuzz run of the parsers and decoders. CI (.ci/run) calls exactly this.
#
#   scripts/check.sh            everything
#   FUZZ_SECONDS=0 scripts/check.sh   skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

step "doc tests"
cargo test --workspace --doc

if [ "${FUZZ_SECONDS:-30}" != "0" ]; then
  step "fuzz the RESP parsers, the log decoders, the snapshot reader and the transport frames for ${FUZZ_SECONDS:-30}s per target"
  ./scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi

step "all checks passed"
