#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 30) and exits non-zero if any
# target crashes, panics, leaks, times out or allocates more than the malloc limit.
#
#   scripts/fuzz.sh [SECONDS]
#
# Works with stable Rust: cargo-fuzz needs nightly-only compiler flags (-Zsanitizer), which
# RUSTC_BOOTSTRAP=1 unlocks on a stable toolchain. Installs cargo-fuzz if it is missing; needs a
# C++ compiler for libFuzzer (Debian: apt-get install build-essential).
#
# Environment:
#   FUZZ_TARGETS    targets to run (default: every target in fuzz/Cargo.toml)
#   FUZZ_SANITIZER  address (default) or none (faster, catches fewer bugs)
#
# A crash leaves its input in fuzz/artifacts/TARGET/; replay it with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-...)
# New interesting inputs accumulate in fuzz/corpus/TARGET/ (git-ignored; cache it in CI).
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS]   (SECONDS: a positive whole number, default 30)" >&2
    exit 2
fi

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if ! command -v c++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
    echo "fuzz.sh: libFuzzer needs a C++ compiler (Debian: apt-get install build-essential)" >&2
    exit 2
fi

sanitizer="${FUZZ_SANITIZER:-address}"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

# Build first, so SECONDS is spent fuzzing and a build failure is reported as one.
cargo fuzz build --sanitizer "$sanitizer"

failed=()
for target in $targets; do
    echo "fuzz.sh: running $target for ${seconds}s" >&2
    mkdir -p "corpus/$target"
    seed_dirs=()
    [ -d "seeds/$target" ] && seed_dirs+=("seeds/$target")
    # -malloc_limit_mb: the parsers must never allocate from a length they have not received
    # the bytes for, and fuzz inputs are small, so any big allocation is a bug.
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "${seed_dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 \
        -dict=resp.dict -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: all targets ran ${seconds}s without a failure" >&2
