#!/usr/bin/env bash
# Integrity benchmarks (issue 5): what checksum verification on every read and the background
# scrubber cost, as GET throughput of a Tandem node against the same build with the feature off,
# on the same machine, with the same load from the same load generator (crates/loadgen).
#
#   scripts/bench-integrity.sh               full run (~4 minutes after the build, most of it
#                                            loading 1M keys into three servers)
#   scripts/bench-integrity.sh --quick       smoke run: short runs, 20k keys
#   scripts/bench-integrity.sh --only 2      one benchmark
#   scripts/bench-integrity.sh --reps 7      alternating runs per server (default 5, --quick 2)
#   scripts/bench-integrity.sh --keep        keep the temporary data dirs (their path is printed)
#   scripts/bench-integrity.sh --no-build    use the existing target/release binaries
#
#   1  GET of 100-byte values, 50 clients, random keys: verification on every read (the default)
#      / the same server started with --bench-unverified-reads, a hidden flag for benchmarks
#      only (GET returns the stored bytes without checking them)                 target >= 0.95
#   2  the same GETs with the scrubber at its default rate (10000 keys/s, 32 MiB/s; 1M keys
#      keep it busy through every run) / with --scrub-keys-per-sec 0            target >= 0.95
#
# Three single-node servers hold the same keys: verified (scrubber off), unverified (scrubber
# off), verified (scrubber on). Runs alternate between the two servers of a pair, and the server
# not being measured is paused (SIGSTOP) meanwhile, so it takes no CPU; its scrubber included.
#
# Output: a summary table on stdout, the same as markdown in target/bench-integrity-summary.md;
# load generator output and server logs under target/bench-logs/integrity-<timestamp>/. Exit
# status: 0 when every figure was measured (met or not), 1 when some could not be, 2 on bad usage
# or a failed build.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

# ---------------------------------------------------------------------------------------------
# Options
QUICK=0 ONLY="" REPS="" KEEP=0 BUILD=1
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --only) ONLY=${2:-}; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    --reps) REPS=${2:-}; shift 2 ;;
    --reps=*) REPS=${1#--reps=}; shift ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-integrity.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-2}
  RUN_SECS=2            # measured seconds of one run (after the warm-up)
  KEYS=20000            # keys preloaded and read (the scrubber then finishes a pass in 2 s)
else
  REPS=${REPS:-5}
  RUN_SECS=5
  KEYS=1000000
fi
case "$REPS" in ''|*[!0-9]*) echo "bench-integrity.sh: --reps needs a number" >&2; exit 2 ;; esac
[ "$REPS" -ge 1 ] || { echo "bench-integrity.sh: --reps must be >= 1" >&2; exit 2; }

CLIENTS=50
VALUE_SIZE=100
WARMUP_SECS=0.5
READY_TIMEOUT=60         # seconds for a server to be ready
RUN_TIMEOUT=600          # seconds; a load generator run (the preload included) that takes longer fails
SECRET=""                # single nodes: no cluster

want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

for tool in redis-cli python3 timeout ss cargo awk; do
  command -v "$tool" >/dev/null || { echo "bench-integrity.sh: '$tool' not found (apt-get install redis-tools)" >&2; exit 2; }
done

TANDEM_BIN="$ROOT/target/release/tandem"
LOADGEN="$ROOT/target/release/tandem-loadgen"
if [ "$BUILD" = 1 ]; then
  echo "==> cargo build --release -p tandem -p tandem-loadgen"
  cargo build --release -p tandem -p tandem-loadgen || { echo "bench-integrity.sh: the release build failed" >&2; exit 2; }
fi
for b in "$TANDEM_BIN" "$LOADGEN"; do
  [ -x "$b" ] || { echo "bench-integrity.sh: $b is not an executable (build it or drop --no-build)" >&2; exit 2; }
done

# ---------------------------------------------------------------------------------------------
# Work dirs, logs, cleanup
STAMP=$(date +%Y%m%d-%H%M%S)
LOGDIR="$ROOT/target/bench-logs/integrity-$STAMP"
mkdir -p "$LOGDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench-integrity.XXXXXX")
SUMMARY_TSV="$LOGDIR/summary.tsv"
: >"$SUMMARY_TSV"
ERRORS=0

# Process, port, wait and statistics helpers, shared with the other benchmark scripts.
BENCH_NAME=bench-integrity.sh
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
# A paused server would ignore the TERM of cleanup for its whole grace period: resume first.
resume_all() { local p; for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; done; }
trap 'resume_all; cleanup' EXIT
trap 'echo; echo "bench-integrity.sh: interrupted" >&2; exit 130' INT TERM

add_row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SUMMARY_TSV"; }

# lg NAME LOADGEN-ARGS...: one load generator run; its output goes to the log, its RESULT line
# to stdout. Fails (and shows the errors) when the run had any error.
lg() {
  local name=$1 out rc; shift
  out=$(timeout --foreground -k 5 "$RUN_TIMEOUT" "$LOADGEN" "$@" 2>&1)
  rc=$?
  { echo "# $(date +%T) $name: tandem-loadgen $* (rc $rc)"; echo "$out"; } >>"$LOGDIR/loadgen.log"
  if [ "$rc" != 0 ]; then
    echo "  ERROR: tandem-loadgen against $name exited $rc: tandem-loadgen $*" >&2
    grep -v '^RESULT' <<<"$out" | tail -n 14 | sed 's/^/    /' >&2
    return 1
  fi
  grep '^RESULT' <<<"$out" | tail -n 1
}

# integrity_field PORT FIELD: one field of `INFO integrity`.
integrity_field() { redis-cli -p "$1" INFO integrity 2>/dev/null | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2; exit }'; }

# ---------------------------------------------------------------------------------------------
# Servers: NAME -> port and pid

declare -A PORT_OF PID_OF

# start_node NAME [flags...]: a single node with KEYS keys of VALUE_SIZE bytes, ready.
start_node() {
  local name=$1 p out; shift
  p=$(free_port) || return 1
  start_tandem "$name" "$p" "$(fresh_dir "$name")" --appendfsync everysec "$@" || return 1
  wait_ping "$name" "$p" "$STARTED_PID" || return 1
  PORT_OF[$name]=$p PID_OF[$name]=$STARTED_PID
  out=$(lg "$name-load" -p "$p" --mode load --keys "$KEYS" -d "$VALUE_SIZE" -c 4 --pipeline 64) || return 1
  echo "  $name on :$p ($*): loaded $KEYS keys at $(field "$out" keys_per_sec) keys/s; dbsize $(redis-cli -p "$p" DBSIZE)"
}

pause() { kill -STOP "${PID_OF[$1]}"; }
resume() { kill -CONT "${PID_OF[$1]}"; }

# get_run NAME -> OUT (the RESULT line) and SCRUBBED (keys its scrubber verified during the run).
get_run() {
  local name=$1 port=${PORT_OF[$1]} k0 k1
  k0=$(integrity_field "$port" scrub_keys_checked)
  OUT=$(lg "$name" -p "$port" -c "$CLIENTS" -r "$KEYS" --mode get --warmup "$WARMUP_SECS" --duration "$RUN_SECS") || return 1
  k1=$(integrity_field "$port" scrub_keys_checked)
  SCRUBBED=$((k1 - k0))
}

# pair ID LABEL BASE OTHER TARGET: REPS alternating GET runs (BASE first, the other server paused
# meanwhile), one discarded warm-up run each first; ratio = OTHER / BASE.
pair() {
  local id=$1 label=$2 base=$3 other=$4 target=$5 i a=() b=() sa=() sb=() ma mb r
  resume "$base"; resume "$other"
  pause "$other"; lg "$base(warm-up)" -p "${PORT_OF[$base]}" -c "$CLIENTS" -r "$KEYS" --mode get --duration 1 >/dev/null || { resume "$other"; return 1; }
  resume "$other"; pause "$base"
  lg "$other(warm-up)" -p "${PORT_OF[$other]}" -c "$CLIENTS" -r "$KEYS" --mode get --duration 1 >/dev/null || { resume "$base"; return 1; }
  resume "$base"
  echo "  load average: $(loadavg)"
  for i in $(seq "$REPS"); do
    pause "$other"
    get_run "$base" || { resume "$other"; return 1; }
    resume "$other"
    a+=("$(field "$OUT" ops_per_sec)") sa+=("$SCRUBBED")
    printf '  run %s/%s: %s %s GET/s (p50 %s p99 %s ms; scrubbed %s keys)' "$i" "$REPS" "$base" "${a[-1]}" \
      "$(field "$OUT" p50_ms)" "$(field "$OUT" p99_ms)" "${sa[-1]}"
    pause "$base"
    get_run "$other" || { resume "$base"; return 1; }
    resume "$base"
    b+=("$(field "$OUT" ops_per_sec)") sb+=("$SCRUBBED")
    printf ' | %s %s GET/s (p50 %s p99 %s ms; scrubbed %s keys)\n' "$other" "${b[-1]}" \
      "$(field "$OUT" p50_ms)" "$(field "$OUT" p99_ms)" "${sb[-1]}"
  done
  ma=$(printf '%s\n' "${a[@]}" | median) mb=$(printf '%s\n' "${b[@]}" | median)
  r=$(ratio "$ma" "$mb")
  printf '  => %s: median %s %s GET/s, %s %s GET/s, ratio %s (target >= %s): %s\n' "$label" \
    "$base" "$(fmt0 "$ma")" "$other" "$(fmt0 "$mb")" "$r" "$target" "$(judge "$r" ">=" "$target")"
  printf '     noise: spread %s %s, %s %s; keys scrubbed per run, median: %s %s, %s %s\n' \
    "$base" "$(printf '%s\n' "${a[@]}" | spread)" "$other" "$(printf '%s\n' "${b[@]}" | spread)" \
    "$base" "$(printf '%s\n' "${sa[@]}" | median)" "$other" "$(printf '%s\n' "${sb[@]}" | median)"
  add_row "$id" "$label" "$(fmt0 "$ma") GET/s" "$(fmt0 "$mb") GET/s" "$r" ">= $target" "$(judge "$r" ">=" "$target")"
}

bench_verify() {
  pair 1 "GET 100 B: verified / unverified reads" unverified verified 0.95
}

bench_scrub() {
  local port=${PORT_OF[scrubbing]}
  [ "$(integrity_field "$port" scrub_enabled)" = 1 ] || { echo "  ERROR: the scrubbing server reports scrub_enabled:$(integrity_field "$port" scrub_enabled)" >&2; return 1; }
  pair 2 "GET 100 B: scrubber at its default rate / off" verified scrubbing 0.95
  echo "     scrubbing server: $(integrity_field "$port" scrub_passes_completed) full passes, $(integrity_field "$port" scrub_keys_checked) keys verified, $(integrity_field "$port" scrub_faults_found) faults"
}

run_benchmark() {
  local id=$1 label=$2 fn=$3
  echo
  echo "==> [$id] $label    ($(date +%T))"
  if ! "$fn"; then
    ERRORS=$((ERRORS + 1))
    echo "  [$id] could not be measured"
    grep -q "^$id" "$SUMMARY_TSV" || add_row "$id" "$label" "-" "-" "-" "" "ERROR"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Run

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$( [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && echo ' (with uncommitted changes)')"
  echo "tandem: $("$TANDEM_BIN" --version 2>/dev/null | head -n 1)"
  echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full), $REPS alternating runs per server, ${RUN_SECS}s per run, $CLIENTS clients, $KEYS keys of $VALUE_SIZE B"
  echo "load average at start: $(loadavg)"
} >"$LOGDIR/meta.txt"
sed 's/^/  /' "$LOGDIR/meta.txt"
echo "  logs: $LOGDIR"
echo "  data: $WORK"

echo
echo "==> setting up: single nodes, $KEYS keys each    ($(date +%T))"
SETUP=0
start_node verified --scrub-keys-per-sec 0 || SETUP=1
if want 1 && [ "$SETUP" = 0 ]; then
  start_node unverified --scrub-keys-per-sec 0 --bench-unverified-reads || SETUP=1
  grep -q 'bench-unverified-reads' "$LOGDIR/unverified.log" \
    || { echo "  ERROR: the unverified server did not log that it skips verification" >&2; SETUP=1; }
fi
if want 2 && [ "$SETUP" = 0 ]; then
  start_node scrubbing || SETUP=1
fi
if [ "$SETUP" = 0 ]; then
  want 1 && run_benchmark 1 "GET with verification on every read" bench_verify
  want 2 && run_benchmark 2 "GET while the scrubber runs" bench_scrub
else
  ERRORS=$((ERRORS + 1))
  for id in 1 2; do want $id && add_row "$id" "(setup failed)" "-" "-" "-" "" "ERROR"; done
fi
resume_all
stop_all

echo "load average at end: $(loadavg)" >>"$LOGDIR/meta.txt"
if grep -q -E 'panicked|ERROR' "$LOGDIR"/*.log 2>/dev/null; then
  echo
  echo "Tandem log lines with ERROR or a panic (first 20):"
  grep -H -E 'panicked|ERROR' "$LOGDIR"/*.log | grep -v loadgen.log | head -n 20 | sed "s|$LOGDIR/||; s/^/  /"
fi

MD="$ROOT/target/bench-integrity-summary.md"
python3 "$ROOT/scripts/bench/table.py" "$SUMMARY_TSV" "$LOGDIR/meta.txt" "$MD" \
  "feature off" "feature on" \
  "Summary (ratio = feature on / feature off, GET throughput, medians of alternating runs)" \
  "Ratio = feature on / feature off (GET throughput, medians of alternating runs)."
cp "$MD" "$LOGDIR/"
echo "markdown: target/bench-integrity-summary.md"
[ "$ERRORS" = 0 ]
