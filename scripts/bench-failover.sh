#!/usr/bin/env bash
# Failover benchmarks (issue 4): a Tandem cluster against Redis 7 with Sentinel, on the same
# machine, with the same writers (crates/loadgen, `tandem-loadgen --mode failover|switchover`).
#
#   scripts/bench-failover.sh                 full run (~12 minutes after the build)
#   scripts/bench-failover.sh --quick         smoke run: 2 trials per part, 1 with down-after 30000
#   scripts/bench-failover.sh --only 1,4      some parts (numbers below)
#   scripts/bench-failover.sh --trials 10     trials per part (default 10; --quick 2)
#   scripts/bench-failover.sh --slow-trials 3 trials of part 3 (default 3; --quick 1)
#   scripts/bench-failover.sh --keep          keep the temporary data dirs (their path is printed)
#   scripts/bench-failover.sh --no-build      use the existing target/release binaries
#
#   1  Tandem, 3 voters: kill -9 of the primary. Failover time = from the kill to the first write
#      acknowledged by another node           target p50 <= 1.5 s, max <= 3 s, 0 lost in every trial
#   2  Redis primary + 2 replicas (AOF everysec) + 3 Sentinels, down-after-milliseconds 1000:
#      kill -9 of the primary                 reported beside 1 (ratio = Redis p50 / Tandem p50)
#   3  the same with Sentinel's default down-after-milliseconds 30000
#   4  Tandem planned switchover: FAILOVER on the primary. Unavailability = the longest gap
#      between acknowledged writes            target p50 <= 300 ms, 0 lost
#   5  Redis planned switchover: FAILOVER on the primary (a group without Sentinel)
#   6  Redis planned switchover: SENTINEL FAILOVER (the group of 2 and 3)
#
# Every trial: 8 writers paced to 4000 writes/s in total, unique keys, 500 ms per-request timeout;
# after the event the killed node is restarted and the cluster waited for until whole again, then
# every acknowledged key is read back from the primary (see crates/loadgen/src/failover.rs).
# Output: a summary table on stdout, the same as markdown in target/bench-failover-summary.md,
# every trial's load generator output and every server log under
# target/bench-logs/failover-<timestamp>/. Exit status: 0 when every part was measured (targets
# met or not), 1 when one could not be, 2 on bad usage or a failed build.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

# ---------------------------------------------------------------------------------------------
# Options
QUICK=0 ONLY="" TRIALS="" SLOW_TRIALS="" KEEP=0 BUILD=1
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --only) ONLY=${2:-}; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    --trials) TRIALS=${2:-}; shift 2 ;;
    --trials=*) TRIALS=${1#--trials=}; shift ;;
    --slow-trials) SLOW_TRIALS=${2:-}; shift 2 ;;
    --slow-trials=*) SLOW_TRIALS=${1#--slow-trials=}; shift ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-failover.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  TRIALS=${TRIALS:-2} SLOW_TRIALS=${SLOW_TRIALS:-1}
else
  TRIALS=${TRIALS:-10} SLOW_TRIALS=${SLOW_TRIALS:-3}
fi
for n in "$TRIALS" "$SLOW_TRIALS"; do
  case "$n" in ''|*[!0-9]*|0) echo "bench-failover.sh: --trials and --slow-trials need a number >= 1" >&2; exit 2 ;; esac
done

WRITERS=8                # writer connections of every trial
RATE=4000                # writes per second over all writers: the same offered load on both systems
VALUE_SIZE=100
WARMUP=2                 # seconds of writes before the event
AFTER=1                  # seconds of writes after the first one acknowledged by the new primary
SETTLE=1                 # seconds between "the cluster is whole again" and the read-back
REQUEST_TIMEOUT_MS=500   # a write without a reply within this is not acknowledged
MAX_WAIT=30              # seconds for a new primary after the event (parts 1, 2, 4-6)
MAX_WAIT_SLOW=90         # the same for part 3 (down-after-milliseconds 30000)
SENTINEL_DOWN_AFTER_MS=1000
SENTINEL_FAILOVER_TIMEOUT_MS=10000  # Sentinel's default is 180000; with 10 s a stuck failover is retried sooner
MASTER_NAME=mymaster
SECRET="bench-failover-secret"
READY_TIMEOUT=60         # seconds for a server or a cluster to be ready, or whole again after a trial

want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

for tool in redis-server redis-cli python3 timeout ss cargo awk; do
  command -v "$tool" >/dev/null || { echo "bench-failover.sh: '$tool' not found (apt-get install redis-server redis-tools)" >&2; exit 2; }
done
# Sentinel: redis-sentinel where installed, otherwise `redis-server CONF --sentinel` (the same
# program; the configuration file must come first).
if command -v redis-sentinel >/dev/null; then SENTINEL_BIN=redis-sentinel SENTINEL_FLAGS=(); else SENTINEL_BIN=redis-server SENTINEL_FLAGS=(--sentinel); fi

TANDEM_BIN="$ROOT/target/release/tandem"
LOADGEN="$ROOT/target/release/tandem-loadgen"
if [ "$BUILD" = 1 ]; then
  echo "==> cargo build --release -p tandem -p tandem-loadgen"
  cargo build --release -p tandem -p tandem-loadgen || { echo "bench-failover.sh: the release build failed" >&2; exit 2; }
fi
for b in "$TANDEM_BIN" "$LOADGEN"; do
  [ -x "$b" ] || { echo "bench-failover.sh: $b is not an executable (build it or drop --no-build)" >&2; exit 2; }
done

# ---------------------------------------------------------------------------------------------
# Work dirs, logs, cleanup
STAMP=$(date +%Y%m%d-%H%M%S)
LOGDIR="$ROOT/target/bench-logs/failover-$STAMP"
mkdir -p "$LOGDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench-failover.XXXXXX")
TRIALS_TSV="$LOGDIR/trials.tsv"     # one line per trial: part, trial, figures (see record_trial)
NOTES_TSV="$LOGDIR/notes.tsv"       # one line per part that could not be measured: part, why
: >"$TRIALS_TSV"
: >"$NOTES_TSV"
if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then
  echo "WARNING: $WORK is on tmpfs: fsync costs nothing there, the figures mean less." >&2
  echo "         Set TMPDIR to a directory on a real disk." >&2
fi

ERRORS=0
BENCH_NAME=bench-failover.sh
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
LG_PID=""
stop_loadgen() { [ -n "$LG_PID" ] && kill -TERM "$LG_PID" 2>/dev/null && wait "$LG_PID" 2>/dev/null; LG_PID=""; }
trap 'stop_loadgen; cleanup' EXIT
trap 'echo; echo "bench-failover.sh: interrupted" >&2; exit 130' INT TERM

# Servers are killed on purpose here: `disown` keeps bash from printing "Killed" for each one (they
# stay in PIDS, and cleanup stops them by their pid).
quiet_jobs() { disown -a 2>/dev/null; }

# Polls every 100 ms, not 50: a redis-cli every 50 ms is CPU that the cluster under test
# competes with on a small machine, and the figures are taken by the load generator, not here.
poll() {
  local desc=$1 timeout=$2 deadline; shift 2
  deadline=$((SECONDS + timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$@" && return 0
    if [ -n "$LG_PID" ] && ! kill -0 "$LG_PID" 2>/dev/null; then
      echo "  ERROR: the load generator ended while waiting for $desc" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "  ERROR: timed out after ${timeout}s waiting for $desc" >&2
  return 1
}

# ---------------------------------------------------------------------------------------------
# Tandem

# The index (0..2) of the voter that is primary, or nothing.
tandem_primary_index() {
  local i
  for i in 0 1 2; do
    [ "$(info "${T_PORTS[i]}" tandem_role)" = primary ] && { echo "$i"; return 0; }
  done
  return 1
}

# tandem_new_primary OLD_INDEX: another voter is primary.
tandem_new_primary() { local i; i=$(tandem_primary_index) && [ "$i" != "$1" ]; }

# Whole: one primary that sees three members online, each at most a few entries behind, and every
# voter following it.
tandem_whole() {
  local i id p
  i=$(tandem_primary_index) || return 1
  p=${T_PORTS[i]}
  id=$(info "$p" tandem_node_id)
  redis-cli -p "$p" INFO replication 2>/dev/null | tr -d '\r' | awk '
    /^tandem_member/ {
      n++; st = ""; lag = ""
      if (match($0, /state=[a-z_-]*/)) st = substr($0, RSTART + 6, RLENGTH - 6)
      if (match($0, /lag_entries=[0-9]*/)) lag = substr($0, RSTART + 12, RLENGTH - 12)
      if (st == "online" && lag != "" && lag + 0 <= 10) ok++
    }
    END { exit !(n == 3 && ok == 3) }' || return 1
  for p in "${T_PORTS[@]}"; do
    [ "$(info "$p" tandem_primary_id)" = "$id" ] || return 1
  done
}

# tandem_restart I: voter I (0..2) again, with its data dir and flags.
tandem_restart() {
  local i=$1 p=${T_PORTS[$1]}
  start_tandem "${T_NAMES[i]}" "$p" "$WORK/${T_NAMES[i]}" --cluster-port "$((p + 10000))" \
    --node-id "$((i + 1))" --initial-cluster "$T_MEMBERS" --cluster-secret "$SECRET" "${T_FLAGS[@]}"
  T_PIDS[i]=$STARTED_PID
  disown "$STARTED_PID"
}

tandem_nodes() { local p out=""; for p in "${T_PORTS[@]}"; do out+="${out:+,}127.0.0.1:$p"; done; echo "$out"; }

# ---------------------------------------------------------------------------------------------
# Redis and Sentinel

# The port of the node that ROLE calls master, when exactly one does.
redis_only_master() {
  local p m="" n=0
  for p in "${R_PORTS[@]}"; do
    if [ "$(redis-cli -p "$p" ROLE 2>/dev/null | head -n 1)" = master ]; then m=$p n=$((n + 1)); fi
  done
  [ "$n" = 1 ] && echo "$m"
}

# sentinel_master PORT: the port of the primary this sentinel names.
sentinel_master() { redis-cli -p "$1" SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | tail -n 1; }

# All sentinels name the same primary, and it is not OLD (optional): prints its port.
sentinels_agree() {
  local s m first=""
  for s in "${S_PORTS[@]}"; do
    m=$(sentinel_master "$s")
    [ -n "$m" ] || return 1
    [ -z "$first" ] && first=$m
    [ "$m" = "$first" ] || return 1
  done
  [ "$first" != "${1:-}" ] && echo "$first"
}

# sentinel_field SENTINEL_PORT FIELD: one field of SENTINEL MASTER.
sentinel_field() { redis-cli -p "$1" SENTINEL master "$MASTER_NAME" 2>/dev/null | awk -v f="$2" 'NR % 2 == 1 { k = $0; next } k == f { print; exit }'; }

# Whole: every sentinel names the same primary; it is the only node calling itself master and
# has two replicas online; every sentinel sees it as a plain master (no failover in progress),
# two replicas that are not down, and the two other sentinels.
redis_whole() {
  local m s
  m=$(sentinels_agree) || return 1
  [ "$(redis_only_master)" = "$m" ] || return 1
  [ "$(redis-cli -p "$m" INFO replication 2>/dev/null | tr -d '\r' | grep -c '^slave[0-9]*:.*state=online')" = 2 ] || return 1
  for s in "${S_PORTS[@]}"; do
    [ "$(sentinel_field "$s" flags)" = master ] || return 1
    [ "$(sentinel_field "$s" num-other-sentinels)" = 2 ] || return 1
    [ "$(redis-cli -p "$s" SENTINEL replicas "$MASTER_NAME" 2>/dev/null | awk 'p { print; p = 0 } $0 == "flags" { p = 1 }' | grep -cx slave)" = 2 ] || return 1
  done
}

# Without Sentinel (part 5): one node calls itself master and the other two have their link up
# (after FAILOVERs the replicas may be chained: Redis's FAILOVER does not move the third node).
redis_plain_whole() {
  local p m
  m=$(redis_only_master) || return 1
  for p in "${R_PORTS[@]}"; do
    [ "$p" = "$m" ] && continue
    [ "$(info "$p" master_link_status)" = up ] || return 1
  done
  [ "$(info "$m" master_failover_state)" = no-failover ]
}

redis_index_of() { local i; for i in 0 1 2; do [ "${R_PORTS[i]}" = "$1" ] && { echo "$i"; return 0; }; done; return 1; }

# redis_restart I MASTER_PORT: node I (0..2) again, with its data dir, as a replica of the primary
# of the moment (what its configuration file would say after Sentinel's rewrite; started from flags
# here, it has none).
redis_restart() {
  local i=$1
  start_redis "$R_PREFIX-$((i + 1))" "${R_PORTS[i]}" "$WORK/$R_PREFIX-$((i + 1))" --appendonly yes --appendfsync everysec \
    --replicaof 127.0.0.1 "$2"
  R_PIDS[i]=$STARTED_PID
  disown "$STARTED_PID"
}

# start_sentinels: three, monitoring R_PRIMARY with quorum 2; sets S_PORTS. Their configuration
# files are in WORK (Sentinel rewrites them).
start_sentinels() {
  local i p dir
  S_PORTS=() S_PIDS=()
  for i in 1 2 3; do
    p=$(free_port) || return 1
    S_PORTS+=("$p")
    dir=$(fresh_dir "sentinel-$i")
    cat >"$dir/sentinel.conf" <<EOF
port $p
bind 127.0.0.1
protected-mode no
daemonize no
dir $dir
logfile ""
sentinel monitor $MASTER_NAME 127.0.0.1 $R_PRIMARY 2
sentinel down-after-milliseconds $MASTER_NAME $SENTINEL_DOWN_AFTER_MS
sentinel failover-timeout $MASTER_NAME $SENTINEL_FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $MASTER_NAME 1
EOF
    echo "--- $(date +%T) start sentinel: port $p" >>"$LOGDIR/sentinel-$i.log"
    "$SENTINEL_BIN" "$dir/sentinel.conf" "${SENTINEL_FLAGS[@]}" >>"$LOGDIR/sentinel-$i.log" 2>&1 &
    PIDS+=("$!") S_PIDS+=("$!")
  done
  for i in 1 2 3; do
    wait_ping "sentinel-$i" "${S_PORTS[i-1]}" "${S_PIDS[i-1]}" || return 1
  done
  # Sentinels find each other and the replicas through the primary (hello messages every 2 s).
  poll "the sentinels to see the primary, its 2 replicas and each other" "$READY_TIMEOUT" redis_whole || return 1
  echo "  sentinels on ports ${S_PORTS[*]}: down-after-milliseconds $SENTINEL_DOWN_AFTER_MS, failover-timeout $SENTINEL_FAILOVER_TIMEOUT_MS, quorum 2"
}

set_down_after() {
  local s
  for s in "${S_PORTS[@]}"; do
    [ "$(redis-cli -p "$s" SENTINEL SET "$MASTER_NAME" down-after-milliseconds "$1")" = OK ] || { echo "  ERROR: SENTINEL SET down-after-milliseconds on :$s" >&2; return 1; }
  done
  SENTINEL_DOWN_AFTER_MS=$1
  echo "  sentinels: down-after-milliseconds $1"
}

# ---------------------------------------------------------------------------------------------
# Trials

# record_trial PART TRIAL RESULT-LINE: appends the trial's figures to TRIALS_TSV:
# part, trial, event-to-first-write ms, longest gap ms, acknowledged, lost, old, new primary.
record_trial() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(field "$3" failover_ms)" "$(field "$3" gap_max_ms)" \
    "$(field "$3" acked)" "$(field "$3" lost)" "$(field "$3" old_primary)" "$(field "$3" new_primary)" >>"$TRIALS_TSV"
}

# trial PART K MODE EVENT-CMD RECOVER MAX_WAIT [loadgen discovery flags...]: one trial. The load
# generator runs in the background, does the event itself after the warm-up and, once its load
# has stopped, waits for the flag file before reading back; meanwhile RECOVER (a function, given
# MAX_WAIT) waits for the new primary, restarts what was killed and waits until the cluster is
# whole again. Prints one line; fails when the trial could not be measured.
trial() {
  local part=$1 k=$2 mode=$3 cmd=$4 recover=$5 max_wait=$6; shift 6
  local flag="$WORK/settled-$part-$k" out="$LOGDIR/loadgen-$part-$k.log" event_flag rc rc_recover result
  [ "$mode" = failover ] && event_flag=--kill-cmd || event_flag=--switch-cmd
  rm -f "$flag"
  echo "# $(date +%T) part $part trial $k: $mode, event: $cmd" >"$out"
  timeout -k 5 $((WARMUP + max_wait + READY_TIMEOUT + 120)) "$LOADGEN" --mode "$mode" "$@" \
    --trial "$((part * 1000 + k))" -c "$WRITERS" --rate "$RATE" -d "$VALUE_SIZE" \
    --warmup "$WARMUP" --after "$AFTER" --settle "$SETTLE" --max-wait "$max_wait" \
    --request-timeout-ms "$REQUEST_TIMEOUT_MS" "$event_flag" "$cmd" \
    --settle-cmd "while [ ! -e '$flag' ]; do sleep 0.05; done" >>"$out" 2>&1 &
  LG_PID=$!
  "$recover" "$max_wait"
  rc_recover=$?
  touch "$flag"
  wait "$LG_PID"
  rc=$?
  LG_PID=""
  result=$(grep '^RESULT' "$out" | tail -n 1)
  if [ "$rc" != 0 ] || [ "$rc_recover" != 0 ] || [ -z "$result" ]; then
    echo "  trial $k: NOT MEASURED (load generator exit $rc, recovery $([ "$rc_recover" = 0 ] && echo ok || echo failed)); $out:" >&2
    grep -v '^#' "$out" | tail -n 12 | sed 's/^/    /' >&2
    [ -n "$result" ] && [ "$(field "$result" event_failed)" = 1 ] && return 3
    return 1
  fi
  record_trial "$part" "$k" "$result"
  printf '  trial %s: %s -> %s: first write on the new primary after %s ms, longest gap %s ms; acknowledged %s, lost %s\n' \
    "$k" "$(field "$result" old_primary)" "$(field "$result" new_primary)" "$(field "$result" failover_ms)" \
    "$(field "$result" gap_max_ms)" "$(field "$result" acked)" "$(field "$result" lost)"
  local lost_line
  lost_line=$(grep 'read back' "$out" | grep -v ': 0 lost' || true)
  [ -z "$lost_line" ] || echo "    $lost_line"
}

# --- Tandem kill -9 (part 1) and FAILOVER (part 4)

T_OLD=""   # index of the voter the trial started with as primary
recover_tandem_kill() {
  local max_wait=$1 pid=${T_PIDS[T_OLD]}
  poll "a new tandem primary" "$((WARMUP + max_wait))" tandem_new_primary "$T_OLD" || return 1
  # The load generator killed it: start it again with its data dir.
  forget_pid "$pid"
  tandem_restart "$T_OLD"
  poll "tandem to be whole again (3 members online and caught up)" "$READY_TIMEOUT" tandem_whole || { show_log_tail "${T_NAMES[T_OLD]}"; return 1; }
}

recover_tandem_switch() {
  poll "a new tandem primary" "$((WARMUP + $1))" tandem_new_primary "$T_OLD" || return 1
  poll "tandem to be whole again" "$READY_TIMEOUT" tandem_whole
}

part_tandem_kill() {
  local k
  for k in $(seq "$TRIALS"); do
    poll "tandem to be whole" "$READY_TIMEOUT" tandem_whole || return 1
    T_OLD=$(tandem_primary_index) || return 1
    trial 1 "$k" failover "kill -9 ${T_PIDS[T_OLD]}" recover_tandem_kill "$MAX_WAIT" \
      --discover nodes --nodes "$(tandem_nodes)" || return 1
  done
}

# FAILOVER is new: a build without it says so and the part is skipped, not failed.
tandem_failover_supported() {
  local out
  out=$(redis-cli -p "$1" FAILOVER ABORT 2>&1)
  if grep -qiE 'not served|unknown command' <<<"$out"; then
    echo "  FAILOVER not supported by this build (FAILOVER ABORT answered: $out)"
    echo -e "4\tFAILOVER not supported by this build" >>"$NOTES_TSV"
    return 1
  fi
}

part_tandem_switch() {
  local k rc
  poll "tandem to be whole" "$READY_TIMEOUT" tandem_whole || return 1
  tandem_failover_supported "${T_PORTS[$(tandem_primary_index)]}" || return 0
  for k in $(seq "$TRIALS"); do
    poll "tandem to be whole" "$READY_TIMEOUT" tandem_whole || return 1
    T_OLD=$(tandem_primary_index) || return 1
    trial 4 "$k" switchover "redis-cli -p ${T_PORTS[T_OLD]} FAILOVER" recover_tandem_switch "$MAX_WAIT" \
      --discover nodes --nodes "$(tandem_nodes)"
    rc=$?
    if [ "$rc" = 3 ]; then
      echo "  FAILOVER failed on this build (see above): part 4 not measured"
      echo -e "4\tFAILOVER failed: $(grep -m1 'event command failed' "$LOGDIR/loadgen-4-$k.log" | cut -c1-200)" >>"$NOTES_TSV"
      return 1
    fi
    [ "$rc" = 0 ] || return 1
  done
}

# --- Redis FAILOVER without Sentinel (part 5)

R_OLD=""   # port of the primary the trial started with
redis_plain_new_primary() { local m; m=$(redis_only_master) && [ "$m" != "$R_OLD" ]; }
recover_redis_plain_switch() {
  poll "a new redis primary" "$((WARMUP + $1))" redis_plain_new_primary || return 1
  poll "redis to be whole again" "$READY_TIMEOUT" redis_plain_whole
}

part_redis_plain_switch() {
  local k
  for k in $(seq "$TRIALS"); do
    poll "redis to be whole" "$READY_TIMEOUT" redis_plain_whole || return 1
    R_OLD=$(redis_only_master) || return 1
    trial 5 "$k" switchover "redis-cli -p $R_OLD FAILOVER" recover_redis_plain_switch "$MAX_WAIT" \
      --discover nodes --nodes "127.0.0.1:${R_PORTS[0]},127.0.0.1:${R_PORTS[1]},127.0.0.1:${R_PORTS[2]}" || return 1
  done
}

# --- Redis with Sentinel: kill -9 (parts 2 and 3), SENTINEL FAILOVER (part 6)

sentinels_moved() { sentinels_agree "$R_OLD" >/dev/null; }
recover_redis_kill() {
  local max_wait=$1 i pid new
  i=$(redis_index_of "$R_OLD") || return 1
  pid=${R_PIDS[i]}
  poll "the sentinels to name a new primary" "$((WARMUP + max_wait))" sentinels_moved || return 1
  new=$(sentinels_agree "$R_OLD") || return 1
  forget_pid "$pid"
  redis_restart "$i" "$new"
  poll "redis and the sentinels to be whole again" "$READY_TIMEOUT" redis_whole
}

recover_redis_sentinel_switch() {
  poll "the sentinels to name a new primary" "$((WARMUP + $1))" sentinels_moved || return 1
  poll "redis and the sentinels to be whole again" "$READY_TIMEOUT" redis_whole
}

sentinel_list() { local s out=""; for s in "${S_PORTS[@]}"; do out+="${out:+,}127.0.0.1:$s"; done; echo "$out"; }

# redis_kill_trials PART N MAX_WAIT
redis_kill_trials() {
  local part=$1 n=$2 max_wait=$3 k i
  for k in $(seq "$n"); do
    poll "redis and the sentinels to be whole" "$READY_TIMEOUT" redis_whole || return 1
    R_OLD=$(sentinels_agree) || return 1
    i=$(redis_index_of "$R_OLD") || return 1
    trial "$part" "$k" failover "kill -9 ${R_PIDS[i]}" recover_redis_kill "$max_wait" \
      --discover sentinel --sentinels "$(sentinel_list)" --master-name "$MASTER_NAME" || return 1
  done
}

part_redis_kill_fast() { set_down_after 1000 && redis_kill_trials 2 "$TRIALS" "$MAX_WAIT"; }
part_redis_kill_slow() { set_down_after 30000 && redis_kill_trials 3 "$SLOW_TRIALS" "$MAX_WAIT_SLOW"; }

part_redis_sentinel_switch() {
  local k
  for k in $(seq "$TRIALS"); do
    poll "redis and the sentinels to be whole" "$READY_TIMEOUT" redis_whole || return 1
    R_OLD=$(sentinels_agree) || return 1
    trial 6 "$k" switchover "redis-cli -p ${S_PORTS[0]} SENTINEL FAILOVER $MASTER_NAME" recover_redis_sentinel_switch "$MAX_WAIT" \
      --discover sentinel --sentinels "$(sentinel_list)" --master-name "$MASTER_NAME" || return 1
  done
}

# run_part ID LABEL FUNCTION: on failure notes the part as not measured.
run_part() {
  local id=$1 label=$2 fn=$3
  echo
  echo "==> [$id] $label    ($(date +%T), load average $(loadavg))"
  if ! "$fn"; then
    ERRORS=$((ERRORS + 1))
    echo "  [$id] could not be measured (fully)"
    grep -q "^$id"$'\t' "$NOTES_TSV" || echo -e "$id\tnot measured: see the output above and $LOGDIR" >>"$NOTES_TSV"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Run

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$( [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && echo ' (with uncommitted changes in the tree)')"
  echo "tandem: $("$TANDEM_BIN" --version 2>/dev/null | head -n 1); redis: $(redis-server --version | awk '{ print $3 }' | sed 's/v=//')"
  echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full), $TRIALS trials per part, $SLOW_TRIALS with down-after 30000; $WRITERS writers at $RATE writes/s in total, ${VALUE_SIZE} B values, ${REQUEST_TIMEOUT_MS} ms request timeout, ${WARMUP} s warm-up"
  echo "tandem: 3 voters, default flags (appendfsync always, election timeout 400 ms, heartbeat 100 ms); redis: primary + 2 replicas, appendonly yes, appendfsync everysec; 3 sentinels, quorum 2, failover-timeout $SENTINEL_FAILOVER_TIMEOUT_MS ms"
  echo "load average at start: $(loadavg)"
} >"$LOGDIR/meta.txt"
sed 's/^/  /' "$LOGDIR/meta.txt"
echo "  logs: $LOGDIR"
echo "  data: $WORK"

if want 1 || want 4; then
  echo
  echo "==> setting up: Tandem, 3 voters    ($(date +%T))"
  if start_tandem_cluster tandem && quiet_jobs; then
    want 1 && run_part 1 "Tandem: kill -9 of the primary, $TRIALS trials" part_tandem_kill
    want 4 && run_part 4 "Tandem: FAILOVER (planned switchover), $TRIALS trials" part_tandem_switch
  else
    ERRORS=$((ERRORS + 1))
    for id in 1 4; do want $id && echo -e "$id\tcluster setup failed" >>"$NOTES_TSV"; done
  fi
  stop_all
fi

if want 5; then
  echo
  echo "==> setting up: Redis primary + 2 replicas, no Sentinel    ($(date +%T))"
  R_PREFIX=redis-plain
  if start_redis_cluster "$R_PREFIX" everysec && quiet_jobs; then
    run_part 5 "Redis: FAILOVER (planned switchover, no Sentinel), $TRIALS trials" part_redis_plain_switch
  else
    ERRORS=$((ERRORS + 1)); echo -e "5\tcluster setup failed" >>"$NOTES_TSV"
  fi
  stop_all
fi

if want 2 || want 3 || want 6; then
  echo
  echo "==> setting up: Redis primary + 2 replicas and 3 Sentinels    ($(date +%T))"
  R_PREFIX=redis
  if start_redis_cluster "$R_PREFIX" everysec && start_sentinels && quiet_jobs; then
    want 2 && run_part 2 "Redis + Sentinel (down-after-milliseconds 1000): kill -9 of the primary, $TRIALS trials" part_redis_kill_fast
    want 6 && run_part 6 "Redis + Sentinel: SENTINEL FAILOVER (planned switchover), $TRIALS trials" part_redis_sentinel_switch
    want 3 && run_part 3 "Redis + Sentinel (down-after-milliseconds 30000, the default): kill -9 of the primary, $SLOW_TRIALS trials" part_redis_kill_slow
  else
    ERRORS=$((ERRORS + 1))
    for id in 2 3 6; do want $id && echo -e "$id\tcluster setup failed" >>"$NOTES_TSV"; done
  fi
  stop_all
fi

echo "load average at end: $(loadavg)" >>"$LOGDIR/meta.txt"
echo
echo "  load average at end: $(loadavg)"

# Anything alarming in Tandem's logs (panics, error lines), how many elections there were, and
# whether Sentinel failed over more often than it was asked to (a second failover right after
# the first: with down-after-milliseconds 1000 a busy new primary can look down).
if grep -q -E 'panicked|ERROR' "$LOGDIR"/tandem-*.log 2>/dev/null; then
  echo
  echo "Tandem log lines with ERROR or a panic (first 20):"
  grep -H -E 'panicked|ERROR' "$LOGDIR"/tandem-*.log | head -n 20 | sed "s|$LOGDIR/||; s/^/  /"
fi
if ls "$LOGDIR"/tandem-*.log >/dev/null 2>&1; then
  echo
  echo "Tandem: $(grep -h -c 'election timeout expired' "$LOGDIR"/tandem-*.log | awk '{ n += $1 } END { print n + 0 }') elections started (\"election timeout expired\" in the logs) for $(awk -F'\t' '$1 == 1' "$TRIALS_TSV" | wc -l) kill trials (more than one per kill: split or repeated votes)"
fi
if [ -s "$LOGDIR/sentinel-1.log" ]; then
  echo "Sentinel: $(grep -c '+switch-master' "$LOGDIR/sentinel-1.log") changes of primary (+switch-master in sentinel 1's log) for $(awk -F'\t' '$1 == 2 || $1 == 3 || $1 == 6' "$TRIALS_TSV" | wc -l) trials"
fi

# Summary: aligned on stdout, markdown in target/bench-failover-summary.md.
MD="$ROOT/target/bench-failover-summary.md"
python3 - "$TRIALS_TSV" "$NOTES_TSV" "$LOGDIR/meta.txt" "$MD" <<'EOF'
import sys
trials_tsv, notes_tsv, meta, md = sys.argv[1:5]
PARTS = {
    1: ("Tandem, 3 voters: kill -9", "failover"),
    2: ("Redis + Sentinel, down-after 1000: kill -9", "failover"),
    3: ("Redis + Sentinel, down-after 30000: kill -9", "failover"),
    4: ("Tandem: FAILOVER", "switchover"),
    5: ("Redis: FAILOVER (no Sentinel)", "switchover"),
    6: ("Redis + Sentinel: SENTINEL FAILOVER", "switchover"),
}
trials = {}
for line in open(trials_tsv, encoding="utf-8"):
    f = line.rstrip("\n").split("\t")
    if len(f) < 8:
        continue
    part, k, fo, gap, acked, lost = int(f[0]), int(f[1]), f[2], f[3], f[4], f[5]
    trials.setdefault(part, []).append((k, float(fo) if fo not in ("", "none") else None,
                                        float(gap) if gap else None, int(acked or 0),
                                        int(lost) if lost.isdigit() else None))
notes = {}
for line in open(notes_tsv, encoding="utf-8"):
    f = line.rstrip("\n").split("\t", 1)
    if len(f) == 2:
        notes[int(f[0])] = f[1]

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return None if n == 0 else (xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2)

def s(ms):
    return "-" if ms is None else f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"

stats = {}
for part, rows in trials.items():
    fo = [r[1] for r in rows if r[1] is not None]
    gap = [r[2] for r in rows if r[2] is not None]
    lost = [r[4] for r in rows]
    stats[part] = dict(n=len(rows), fo_p50=median(fo), fo_max=max(fo) if fo else None,
                       gap_p50=median(gap), gap_max=max(gap) if gap else None,
                       lost=lost, lost_total=sum(l for l in lost if l is not None),
                       lost_known=all(l is not None for l in lost),
                       acked=sum(r[3] for r in rows))

def verdict(ok):
    return "PASS" if ok else "MISS"

head = ["#", "system", "trials", "to new primary p50 / max", "longest gap p50 / max", "lost per trial", "lost total", "acked total", "target", "result"]
table = []
for part, (label, kind) in PARTS.items():
    st = stats.get(part)
    if st is None:
        if part in notes:
            table.append([str(part), label, "0", "-", "-", "-", "-", "-", "", notes[part]])
        continue
    # Judged: for a kill, the time from the kill to the first write on the new primary; for a
    # switchover, the longest gap between acknowledged writes (the write unavailability).
    p50, mx = (st["fo_p50"], st["fo_max"]) if kind == "failover" else (st["gap_p50"], st["gap_max"])
    target, result = "", ""
    zero_lost = st["lost_known"] and st["lost_total"] == 0
    if part == 1:
        target = "p50 <= 1.5 s, max <= 3 s, 0 lost"
        result = "p50 %s, max %s, lost %s" % (verdict(p50 is not None and p50 <= 1500),
                                              verdict(mx is not None and mx <= 3000), verdict(zero_lost))
    elif part == 4:
        target = "p50 <= 300 ms, 0 lost"
        result = "p50 %s, lost %s" % (verdict(p50 is not None and p50 <= 300), verdict(zero_lost))
    if part in notes:
        result = (result + "; " if result else "") + notes[part]
    lost_s = " ".join("?" if l is None else str(l) for l in st["lost"])
    table.append([str(part), label, str(st["n"]), f'{s(st["fo_p50"])} / {s(st["fo_max"])}',
                  f'{s(st["gap_p50"])} / {s(st["gap_max"])}', lost_s, str(st["lost_total"]),
                  str(st["acked"]), target, result])

ratios = []
def ratio(a, b, key, what):
    if a in stats and b in stats:
        x, y = stats[a][key], stats[b][key]
        if x and y:
            ratios.append(f"{what}: {y / x:.2f}x ({s(y)} / {s(x)})")
ratio(1, 2, "fo_p50", "kill -9, to new primary p50, Redis+Sentinel (1000) / Tandem")
ratio(1, 3, "fo_p50", "kill -9, to new primary p50, Redis+Sentinel (30000) / Tandem")
ratio(4, 5, "gap_p50", "switchover, longest gap p50, Redis FAILOVER / Tandem FAILOVER")
# SENTINEL FAILOVER does not stop the old primary: its writes never pause (the gap is small) but
# are lost; the time to the new primary is the comparable figure.
ratio(4, 6, "fo_p50", "switchover, to new primary p50, SENTINEL FAILOVER / Tandem FAILOVER")

w = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]
print("\nSummary. to new primary: from the kill, or the start of the switch command, to the first write acknowledged by")
print("another node (judged for 1-3); longest gap: between two acknowledged writes, the write unavailability (judged for 4-6);")
print("lost: acknowledged writes missing or wrong when read back once the cluster is whole again.")
print("  ".join(h.ljust(x) for h, x in zip(head, w)))
print("  ".join("-" * x for x in w))
for r in table:
    print("  ".join(c.ljust(x) for c, x in zip(r, w)))
if ratios:
    print("\nRatios (how many times longer Redis took):")
    for r in ratios:
        print("  " + r)
with open(md, "w", encoding="utf-8") as f:
    f.write("| " + " | ".join(head) + " |\n|" + "|".join("---" for _ in head) + "|\n")
    for r in table:
        c = [x.replace("|", "\\|") for x in r]
        for v in ("PASS", "MISS"):
            c[9] = c[9].replace(v, f"**{v}**")
        f.write("| " + " | ".join(c) + " |\n")
    f.write("\nto new primary: from the kill, or the start of the switch command, to the first write acknowledged by another node "
            "(judged for 1-3); longest gap: between two acknowledged writes, the write unavailability (judged for 4-6); "
            "lost: acknowledged writes missing or wrong when read back once the cluster is whole again.\n\n")
    for r in ratios:
        f.write(f"- {r}\n")
    f.write("\n")
    for l in open(meta, encoding="utf-8"):
        if l.strip():
            f.write(f"- {l.strip()}\n")
EOF
cp "$MD" "$LOGDIR/"
echo "markdown: target/bench-failover-summary.md"
[ "$ERRORS" = 0 ]
