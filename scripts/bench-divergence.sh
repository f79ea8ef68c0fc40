#!/usr/bin/env bash
# Divergence benchmarks (issue 5, part B): what keeping the keyspace digest costs writes, and how
# fast `tandem cluster verify` finds and repairs one diverged key among many.
#
#   scripts/bench-divergence.sh               full run (~4 minutes after the build)
#   scripts/bench-divergence.sh --quick       smoke run: short runs, 100k keys for benchmark 3
#   scripts/bench-divergence.sh --only 1,3    some benchmarks
#   scripts/bench-divergence.sh --reps 7      alternating runs per variant (default 5, --quick 2)
#   scripts/bench-divergence.sh --keep        keep the temporary data dirs (their path is printed)
#   scripts/bench-divergence.sh --no-build    use the existing target/release binaries (or
#                                             TANDEM_BIN and LOADGEN from the environment)
#
#   1  SET throughput, 3 voters (appendfsync always), 50 clients, 100 B values, random keys:
#      keyspace digest kept / not kept (--bench-no-keyspace-digest)       target >= 0.97
#   2  the same on one node with --appendfsync no, where the rest of a write costs least and
#      the digest's share is largest                                      target >= 0.97
#   3  3 voters + 1 read replica holding 1M keys of 100 B: DEBUG DIVERGE one key on the replica,
#      then `tandem cluster verify`; time from the injection until verify has exited with the
#      key repaired (result:repaired, the replica serves the right value)  target <= 5 s
#
# Output: a summary table on stdout, the same as markdown in target/bench-divergence-summary.md;
# load generator output and server logs under target/bench-logs/div-<timestamp>/. Exit status: 0
# when every figure was measured (met or not), 1 when some could not be, 2 on bad usage or a
# failed build.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

# ---------------------------------------------------------------------------------------------
# Options
QUICK=0 ONLY="" REPS="" KEEP=0 BUILD=1
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
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
    *) echo "bench-divergence.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-2}
  RUN_SECS=2            # measured seconds of one throughput run (after the warm-up)
  BIG_KEYS=100000       # keys for benchmark 3 (the target assumes 1M)
else
  REPS=${REPS:-5}
  RUN_SECS=5
  BIG_KEYS=1000000
fi
case "$REPS" in ''|*[!0-9]*) echo "bench-divergence.sh: --reps needs a number" >&2; exit 2 ;; esac
[ "$REPS" -ge 1 ] || { echo "bench-divergence.sh: --reps must be >= 1" >&2; exit 2; }

CLIENTS=50               # connections of every throughput run
KEYSPACE=100000          # keys drawn from by SET
VALUE_SIZE=100
WARMUP_SECS=0.5          # load before measuring, inside every run
SECRET="bench-divergence-secret"
READY_TIMEOUT=60         # seconds for a server or a cluster to be ready
RUN_TIMEOUT=300          # seconds; a load generator run that takes longer is killed and failed
VERIFY_TIMEOUT=120       # seconds; a `tandem cluster verify` that takes longer is a failure

want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

for tool in redis-cli timeout ss cargo awk; do
  command -v "$tool" >/dev/null || { echo "bench-divergence.sh: '$tool' not found (apt-get install redis-tools)" >&2; exit 2; }
done

# The binaries measured; TANDEM_BIN and LOADGEN may name others (with --no-build), e.g. debug
# builds to check this script itself.
TANDEM_BIN=${TANDEM_BIN:-"$ROOT/target/release/tandem"}
LOADGEN=${LOADGEN:-"$ROOT/target/release/tandem-loadgen"}
if [ "$BUILD" = 1 ]; then
  echo "==> cargo build --release -p tandem -p tandem-loadgen"
  cargo build --release -p tandem -p tandem-loadgen || { echo "bench-divergence.sh: the release build failed" >&2; exit 2; }
fi
for b in "$TANDEM_BIN" "$LOADGEN"; do
  [ -x "$b" ] || { echo "bench-divergence.sh: $b is not an executable (build it or drop --no-build)" >&2; exit 2; }
done

# ---------------------------------------------------------------------------------------------
# Work dirs, logs, cleanup
STAMP=$(date +%Y%m%d-%H%M%S)
LOGDIR="$ROOT/target/bench-logs/div-$STAMP"
mkdir -p "$LOGDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench-div.XXXXXX")
SUMMARY_TSV="$LOGDIR/summary.tsv"
: >"$SUMMARY_TSV"
if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then
  echo "WARNING: $WORK is on tmpfs: fsync costs nothing there, benchmark 1 means less." >&2
fi

ERRORS=0
BENCH_NAME=bench-divergence.sh
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
# A paused server would ignore the TERM of cleanup for its whole grace period: resume first.
resume_all() { local p; for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; done; }
trap 'resume_all; cleanup' EXIT
trap 'echo; echo "bench-divergence.sh: interrupted" >&2; exit 130' INT TERM

add_row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SUMMARY_TSV"; }

# lg NAME LOADGEN-ARGS...: one load generator run; its RESULT line to stdout.
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

cpu_ticks() { local p t=0 v; for p in "$@"; do v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null); t=$((t + ${v:-0})); done; echo "$t"; }
CLK_TCK=$(getconf CLK_TCK)

# set_pair ID LABEL "pids with digest" PORT_WITH "pids without" PORT_WITHOUT [pause]: REPS
# alternating SET runs (the order flips every run), one discarded warm-up each; ratio = median with / median
# without. With `pause`, the variant not being measured is stopped (SIGSTOP) meanwhile so it
# takes no CPU (single nodes only: a paused cluster would hold elections when resumed).
set_pair() {
  local id=$1 label=$2 pw=$4 po=$6 pause=${7:-} i out c0 c1 on=() off=() cpu_on=() cpu_off=() mw mo r
  local -a pids_w pids_o
  read -r -a pids_w <<<"$3"
  read -r -a pids_o <<<"$5"
  stop_variant() { [ "$pause" = pause ] && kill -STOP "$@"; true; }
  cont_variant() { [ "$pause" = pause ] && kill -CONT "$@"; true; }
  local common="-c $CLIENTS -r $KEYSPACE -d $VALUE_SIZE --mode set"
  stop_variant "${pids_w[@]}"
  lg "$id-off(warm-up)" -p "$po" $common --duration 1 >/dev/null || return 1
  cont_variant "${pids_w[@]}"; stop_variant "${pids_o[@]}"
  lg "$id-on(warm-up)" -p "$pw" $common --duration 1 >/dev/null || return 1
  cont_variant "${pids_o[@]}"
  # One measured run of a variant, the other one paused (with `pause`) meanwhile.
  measure_off() {
    stop_variant "${pids_w[@]}"
    c0=$(cpu_ticks "${pids_o[@]}")
    out=$(lg "$id-off" -p "$po" $common --warmup "$WARMUP_SECS" --duration "$RUN_SECS") || return 1
    c1=$(cpu_ticks "${pids_o[@]}")
    cont_variant "${pids_w[@]}"
    off+=("$(field "$out" ops_per_sec)")
    cpu_off+=("$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$(field "$out" all_ops)" 'BEGIN { printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0 }')")
  }
  measure_on() {
    stop_variant "${pids_o[@]}"
    c0=$(cpu_ticks "${pids_w[@]}")
    out=$(lg "$id-on" -p "$pw" $common --warmup "$WARMUP_SECS" --duration "$RUN_SECS") || return 1
    c1=$(cpu_ticks "${pids_w[@]}")
    cont_variant "${pids_o[@]}"
    on+=("$(field "$out" ops_per_sec)")
    cpu_on+=("$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$(field "$out" all_ops)" 'BEGIN { printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0 }')")
  }
  for i in $(seq "$REPS"); do
    # The order alternates (off-on, on-off, ...): throughput drifts as the data grows, and a
    # fixed order would hand the drift to whichever variant always runs second.
    if [ $((i % 2)) = 1 ]; then
      measure_off || return 1; measure_on || return 1
    else
      measure_on || return 1; measure_off || return 1
    fi
    printf '  run %s/%s: without digest %s ops/s (%s us CPU/op) | with digest %s ops/s (%s us CPU/op)\n' \
      "$i" "$REPS" "${off[-1]}" "${cpu_off[-1]}" "${on[-1]}" "${cpu_on[-1]}"
  done
  mo=$(printf '%s\n' "${off[@]}" | median) mw=$(printf '%s\n' "${on[@]}" | median)
  r=$(ratio "$mo" "$mw")
  add_row "$id" "$label" "$(fmt0 "$mo") ops/s" "$(fmt0 "$mw") ops/s" "$r" ">= 0.97" "$(judge "$r" ">=" 0.97)"
  printf '  => %s: median without %s ops/s, with %s ops/s, ratio %s (target >= 0.97): %s\n' \
    "$label" "$(fmt0 "$mo")" "$(fmt0 "$mw")" "$r" "$(judge "$r" ">=" 0.97)"
  printf '     noise: spread without %s, with %s; server CPU per op, median: without %s us, with %s us\n' \
    "$(printf '%s\n' "${off[@]}" | spread)" "$(printf '%s\n' "${on[@]}" | spread)" \
    "$(printf '%s\n' "${cpu_off[@]}" | median)" "$(printf '%s\n' "${cpu_on[@]}" | median)"
}

# ---------------------------------------------------------------------------------------------
# Benchmarks

# 1: two 3-voter clusters side by side, alike but for the digest.
bench_cluster_set() {
  local on_ports on_pids on_primary
  start_tandem_cluster with --appendfsync always --verify-interval-ms 0 || return 1
  on_pids="${T_PIDS[*]}" on_primary=$T_PRIMARY on_ports="${T_PORTS[*]}"
  start_tandem_cluster without --appendfsync always --verify-interval-ms 0 --bench-no-keyspace-digest || return 1
  echo "  load average: $(loadavg)"
  set_pair 1 "SET, 3 voters, with / without the keyspace digest" "$on_pids" "$on_primary" "${T_PIDS[*]}" "$T_PRIMARY" || return 1
  stop_all
}

# 2: two single nodes, appendfsync no.
bench_node_set() {
  local pw po pid_w pid_o
  pw=$(free_port) && po=$(free_port) || return 1
  start_tandem node-with "$pw" "$(fresh_dir node-with)" --cluster-port "$((pw + 10000))" --appendfsync no --verify-interval-ms 0 || return 1
  pid_w=$STARTED_PID
  start_tandem node-without "$po" "$(fresh_dir node-without)" --cluster-port "$((po + 10000))" --appendfsync no --verify-interval-ms 0 \
    --bench-no-keyspace-digest || return 1
  pid_o=$STARTED_PID
  wait_ping node-with "$pw" "$pid_w" && wait_ping node-without "$po" "$pid_o" || return 1
  echo "  load average: $(loadavg)"
  set_pair 2 "SET, one node, appendfsync no, with / without the digest" "$pid_w" "$pw" "$pid_o" "$po" pause || return 1
  stop_all
}

# 3: 3 voters + a read replica with BIG_KEYS keys; REPS trials of inject + verify.
bench_detect_repair() {
  local rp out idx i key want t0 secs times=() repl
  start_tandem_cluster det --verify-interval-ms 0 --enable-debug-commands || return 1
  rp=$(free_port) || return 1
  start_tandem det-replica "$rp" "$(fresh_dir det-replica)" --cluster-port "$((rp + 10000))" --node-id 4 \
    --cluster-secret "$SECRET" --join "127.0.0.1:$T_PRIMARY" --verify-interval-ms 0 --enable-debug-commands || return 1
  wait_ping det-replica "$rp" "$STARTED_PID" || return 1
  wait_for "the read replica to be up" "$READY_TIMEOUT" eval "[ \"\$(info $rp tandem_role)\" = read-replica ]" || return 1
  out=$(lg det-load -p "$T_PRIMARY" --mode load --keys "$BIG_KEYS" -d "$VALUE_SIZE" -c 4 --pipeline 64) || return 1
  echo "  loaded $BIG_KEYS keys: $(field "$out" keys_per_sec) keys/s"
  idx=$(info "$T_PRIMARY" tandem_last_log_index)
  for repl in "${T_PORTS[@]}" "$rp"; do
    out=$(redis-cli -p "$repl" WAITPOS "$idx" 60000 2>&1)
    [[ "$out" =~ ^[0-9]+$ ]] || { echo "  ERROR: WAITPOS $idx on :$repl answered: $out" >&2; return 1; }
  done
  out=$("$TANDEM_BIN" cluster verify --node "127.0.0.1:$T_PRIMARY" 2>&1) || { echo "  ERROR: the clean cluster does not verify:" >&2; echo "$out" | sed 's/^/    /' >&2; return 1; }
  echo "  clean cluster: verify $(grep '^duration_ms:' <<<"$out" | cut -d: -f2) ms, members $(grep '^members_agreeing:' <<<"$out" | cut -d: -f2) agree"
  for i in $(seq "$REPS"); do
    key=$(printf 'key:%012d' $(( (i * 7919) % BIG_KEYS )))
    want=$(redis-cli -p "$T_PRIMARY" GET "$key")
    t0=$(date +%s%N)
    [ "$(redis-cli -p "$rp" DEBUG DIVERGE "$key" "diverged-$i")" = 1 ] || { echo "  ERROR: DEBUG DIVERGE $key on the replica failed" >&2; return 1; }
    out=$(timeout "$VERIFY_TIMEOUT" "$TANDEM_BIN" cluster verify --node "127.0.0.1:$T_PRIMARY" 2>&1)
    local rc=$?
    secs=$(ms_since "$t0")
    { echo "# $(date +%T) trial $i: $key, rc $rc, ${secs}s"; echo "$out"; } >>"$LOGDIR/verify.log"
    if [ "$rc" != 0 ] || ! grep -q '^result:repaired' <<<"$out" || ! grep -q "^key_0:'$key' members=4 action=repaired" <<<"$out"; then
      echo "  ERROR: trial $i: verify exited $rc without repairing $key:" >&2; echo "$out" | sed 's/^/    /' >&2; return 1
    fi
    [ "$(redis-cli -p "$rp" GET "$key")" = "$want" ] || { echo "  ERROR: trial $i: the replica still serves a wrong $key" >&2; return 1; }
    times+=("$secs")
    printf '  trial %s/%s: %s diverged on node 4 -> repaired in %s s (verify itself: %s ms; buckets %s; %s)\n' \
      "$i" "$REPS" "$key" "$secs" "$(grep '^duration_ms:' <<<"$out" | cut -d: -f2)" \
      "$(grep '^buckets_differing:' <<<"$out" | cut -d: -f2)" "$(grep '^member_4:' <<<"$out" | cut -d: -f2-)"
  done
  local m note=""
  m=$(printf '%s\n' "${times[@]}" | median)
  [ "$BIG_KEYS" = 1000000 ] || note=" (quick: $BIG_KEYS keys)"
  add_row 3 "one diverged key among $BIG_KEYS: injected -> verify found and repaired it$note" "-" "$m s" "-" "<= 5 s" "$(judge "$m" "<=" 5)"
  echo "  => median $m s over ${#times[@]} trials (max $(printf '%s\n' "${times[@]}" | sort -g | tail -n 1) s), target <= 5 s: $(judge "$m" "<=" 5)"
  stop_all
}

run() {
  local id=$1 what=$2; shift 2
  want "$id" || return 0
  echo
  echo "==> $id: $what"
  if ! "$@"; then
    echo "  benchmark $id could not be measured" >&2
    resume_all
    add_row "$id" "$what" "-" "-" "-" "-" "ERROR"
    ERRORS=$((ERRORS + 1))
    stop_all
  fi
}

run 1 "SET throughput, 3 voters, with and without the keyspace digest" bench_cluster_set
run 2 "SET throughput, one node, appendfsync no, with and without the digest" bench_node_set
run 3 "one diverged key among $BIG_KEYS: detection and repair by tandem cluster verify" bench_detect_repair

# ---------------------------------------------------------------------------------------------
# Summary
SUMMARY_MD="$ROOT/target/bench-divergence-summary.md"
{
  echo "| # | benchmark | without digest | with digest / measured | ratio | target | result |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$SUMMARY_TSV"
} >"$SUMMARY_MD"
echo
echo "==> summary ($(date +%F\ %T), $(nproc) CPUs, load average $(loadavg); logs in $LOGDIR)"
column -t -s $'\t' "$SUMMARY_TSV"
echo "(markdown: $SUMMARY_MD)"
[ "$ERRORS" = 0 ]
