#!/usr/bin/env bash
# Replication benchmarks (issue 3): a Tandem cluster against Redis 7 with replicas, on the same
# machine, with the same load from the same load generator (crates/loadgen, `tandem-loadgen`).
#
#   scripts/bench-replication.sh               full run (~5 minutes after the build)
#   scripts/bench-replication.sh --quick       smoke run: short runs, 100k keys for benchmark 4
#   scripts/bench-replication.sh --only 1,4    some benchmarks (3 needs 1 for the maximum rate)
#   scripts/bench-replication.sh --reps 7      alternating runs per server (default 5, --quick 2)
#   scripts/bench-replication.sh --keep        keep the temporary data dirs (their path is printed)
#   scripts/bench-replication.sh --no-build    use the existing target/release binaries
#
#   1a  SET throughput, 50 clients, 100 B values, random keys: Tandem, 3 voters, plain SET
#       (majority-durable, appendfsync always) / Redis primary + 2 replicas, AOF always on all,
#       each SET followed by WAIT 1 0                                          target >= 1.0
#   1b  the same Tandem / Redis plain SET, AOF everysec on all, no WAIT        target >= 0.4
#   2   GET throughput, 50 clients, keys preloaded: a Tandem read replica / a Redis replica
#                                                                              target >= 0.9
#   3   replica apply lag at half of Tandem's maximum write rate (from 1a): every 20th SET,
#       time from its reply to WAITPOS of its POSITION answering on the read replica
#                                                                              target p99 <= 20 ms
#   4   bootstrap of a new replica from a snapshot, 1M keys of 100 B: time from exec until it has
#       applied the primary's last index and serves the last key; Redis: until
#       master_link_status:up and DBSIZE matches. Ratio = Redis time / Tandem time  target >= 2.0
#
# Output: a summary table on stdout (target, measured ratio, PASS/MISS), the same as markdown in
# target/bench-replication-summary.md; every load generator output and server log under
# target/bench-logs/repl-<timestamp>/. Exit status: 0 when every figure was measured (met or
# not), 1 when some could not be (a server did not start, a run had errors), 2 on bad usage or a
# failed build.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

# ---------------------------------------------------------------------------------------------
# Options
QUICK=0 ONLY="" REPS="" KEEP=0 BUILD=1
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
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
    *) echo "bench-replication.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-2}
  RUN_SECS=2            # measured seconds of one throughput run (after a 0.5 s warm-up)
  LAG_SECS=4            # measured seconds of one lag run
  BIG_KEYS=100000       # keys for benchmark 4 (the target assumes 1M)
else
  REPS=${REPS:-5}
  RUN_SECS=5
  LAG_SECS=15
  BIG_KEYS=1000000
fi
case "$REPS" in ''|*[!0-9]*) echo "bench-replication.sh: --reps needs a number" >&2; exit 2 ;; esac
[ "$REPS" -ge 1 ] || { echo "bench-replication.sh: --reps must be >= 1" >&2; exit 2; }

CLIENTS=50               # connections of every throughput and lag run
KEYSPACE=100000          # keys drawn from by SET and GET; preloaded before the GET benchmark
VALUE_SIZE=100
WARMUP_SECS=0.5          # load before measuring, inside every run
LAG_SAMPLE_EVERY=20      # benchmark 3: one SET in this many is followed to the replica
SECRET="bench-replication-secret"
READY_TIMEOUT=60         # seconds for a server or a cluster to be ready
SYNC_TIMEOUT=600         # seconds for a new replica to finish its initial sync (benchmark 4)
RUN_TIMEOUT=300          # seconds; a load generator run that takes longer is killed and failed

want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

for tool in redis-server redis-cli python3 timeout ss cargo awk; do
  command -v "$tool" >/dev/null || { echo "bench-replication.sh: '$tool' not found (apt-get install redis-server redis-tools)" >&2; exit 2; }
done

TANDEM_BIN="$ROOT/target/release/tandem"
LOADGEN="$ROOT/target/release/tandem-loadgen"
if [ "$BUILD" = 1 ]; then
  echo "==> cargo build --release -p tandem -p tandem-loadgen"
  cargo build --release -p tandem -p tandem-loadgen || { echo "bench-replication.sh: the release build failed" >&2; exit 2; }
fi
for b in "$TANDEM_BIN" "$LOADGEN"; do
  [ -x "$b" ] || { echo "bench-replication.sh: $b is not an executable (build it or drop --no-build)" >&2; exit 2; }
done

# ---------------------------------------------------------------------------------------------
# Work dirs, logs, cleanup
STAMP=$(date +%Y%m%d-%H%M%S)
LOGDIR="$ROOT/target/bench-logs/repl-$STAMP"
mkdir -p "$LOGDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench-repl.XXXXXX")
SUMMARY_TSV="$LOGDIR/summary.tsv"
: >"$SUMMARY_TSV"
if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then
  echo "WARNING: $WORK is on tmpfs: fsync costs nothing there, benchmark 1 means little." >&2
  echo "         Set TMPDIR to a directory on a real disk." >&2
fi

ERRORS=0

# Process, port, wait and statistics helpers and the cluster starters, shared with
# scripts/bench-failover.sh.
BENCH_NAME=bench-replication.sh
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
trap cleanup EXIT
trap 'echo; echo "bench-replication.sh: interrupted" >&2; exit 130' INT TERM

# add_row ID LABEL REDIS TANDEM RATIO TARGET RESULT -- one line of the summary.
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

# report_pair ID LABEL NAME_REDIS NAME_TANDEM OP TARGET: the redis and tandem runs are in the
# arrays RUNS_<NAME>; adds the summary row and prints the noise figures.
report_pair() {
  local id=$1 label=$2 op=$5 target=$6 mr mt r verdict pr
  local -n ra="RUNS_$3" ta="RUNS_$4" rc="CPU_$3" tc="CPU_$4"
  mr=$(printf '%s\n' "${ra[@]}" | median) mt=$(printf '%s\n' "${ta[@]}" | median)
  r=$(ratio "$mr" "$mt")
  verdict=$(judge "$r" "$op" "$target")
  pr=$(paste -d' ' <(printf '%s\n' "${ra[@]}") <(printf '%s\n' "${ta[@]}") | awk '{ print $2 / $1 }' | median)
  add_row "$id" "$label" "$(fmt0 "$mr") ops/s" "$(fmt0 "$mt") ops/s" "$r" "$op $target" "$verdict"
  printf '  => %s: median redis %s ops/s, tandem %s ops/s, ratio %s (target %s %s): %s\n' \
    "$label" "$(fmt0 "$mr")" "$(fmt0 "$mt")" "$r" "$op" "$target" "$verdict"
  printf '     noise: spread redis %s, tandem %s; median of paired ratios %.3f; best-run ratio %s\n' \
    "$(printf '%s\n' "${ra[@]}" | spread)" "$(printf '%s\n' "${ta[@]}" | spread)" "$pr" \
    "$(ratio "$(printf '%s\n' "${ra[@]}" | sort -g | tail -n 1)" "$(printf '%s\n' "${ta[@]}" | sort -g | tail -n 1)")"
  printf '     server CPU per operation (all processes of the cluster), median: redis %s us, tandem %s us\n' \
    "$(printf '%s\n' "${rc[@]}" | median)" "$(printf '%s\n' "${tc[@]}" | median)"
}

# cpu_ticks PID...: user + system CPU ticks the processes have used so far.
cpu_ticks() { local p t=0 v; for p in "$@"; do v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null); t=$((t + ${v:-0})); done; echo "$t"; }
CLK_TCK=$(getconf CLK_TCK)

# measured NAME "loadgen args" "server pids": one measured run; sets OUT (the RESULT line) and
# CPU_US (server CPU per operation over every process in the pids, in microseconds).
measured() {
  local c0 c1 pids
  read -r -a pids <<<"$3"
  c0=$(cpu_ticks "${pids[@]}")
  OUT=$(lg "$1" $2 --warmup "$WARMUP_SECS" --duration "$RUN_SECS") || return 1
  c1=$(cpu_ticks "${pids[@]}")
  CPU_US=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$(field "$OUT" all_ops)" 'BEGIN { printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0 }')
}

# run_lg_pair NAME_REDIS NAME_TANDEM "redis args" "tandem args" "redis pids" "tandem pids": REPS
# alternating runs (redis first), ops/s appended to RUNS_<name> and server CPU per operation to
# CPU_<name>; one warm-up run each first, discarded.
run_lg_pair() {
  local an=$1 bn=$2 i out_a out_b
  local -n aa="RUNS_$1" bb="RUNS_$2" ca="CPU_$1" cb="CPU_$2"
  lg "$an(warm-up)" $3 --duration 1 >/dev/null || return 1
  lg "$bn(warm-up)" $4 --duration 1 >/dev/null || return 1
  for i in $(seq "$REPS"); do
    measured "$an" "$3" "$5" || return 1
    out_a=$OUT ca+=("$CPU_US")
    measured "$bn" "$4" "$6" || return 1
    out_b=$OUT cb+=("$CPU_US")
    aa+=("$(field "$out_a" ops_per_sec)") bb+=("$(field "$out_b" ops_per_sec)")
    printf '  run %s/%s: %s %s ops/s (p50 %s p99 %s p99.9 %s ms; %s us CPU/op) | %s %s ops/s (p50 %s p99 %s p99.9 %s ms; %s us CPU/op); client CPU %s%% %s%%\n' \
      "$i" "$REPS" "$an" "${aa[-1]}" "$(field "$out_a" p50_ms)" "$(field "$out_a" p99_ms)" "$(field "$out_a" p999_ms)" "${ca[-1]}" \
      "$bn" "${bb[-1]}" "$(field "$out_b" p50_ms)" "$(field "$out_b" p99_ms)" "$(field "$out_b" p999_ms)" "${cb[-1]}" \
      "$(field "$out_a" client_cpu_pct)" "$(field "$out_b" client_cpu_pct)"
  done
}

# ---------------------------------------------------------------------------------------------
# Clusters (start_tandem_cluster and start_redis_cluster are in scripts/bench-lib.sh)

# start_tandem_replica NAME NODE_ID PORT -> STARTED_PID; joins the cluster of T_PRIMARY (does not wait).
start_tandem_replica() {
  start_tandem "$1" "$3" "$(fresh_dir "$1")" --cluster-port "$(($3 + 10000))" --node-id "$2" \
    --cluster-secret "$SECRET" --join "127.0.0.1:$T_PRIMARY"
}
replica_up() { [ "$(info "$1" tandem_role)" = read-replica ] && [ "$(info "$1" master_link_status)" = up ]; }
# replica_synced PORT INDEX: a read replica, link up, INDEX applied (one INFO call).
replica_synced() {
  redis-cli -p "$1" INFO replication 2>/dev/null | tr -d '\r' | awk -F: -v want="$2" '
    $1 == "tandem_role" { role = $2 } $1 == "master_link_status" { link = $2 } $1 == "tandem_applied_index" { applied = $2 }
    END { exit !(role == "read-replica" && link == "up" && applied + 0 >= want + 0) }'
}

# phases KIND LOG T0_NS: where a new replica's time went, from the timestamps of its log lines
# (best effort: skips a line it does not find). Tandem logs RFC 3339 UTC timestamps; Redis logs
# "pid:role DD Mon YYYY HH:MM:SS.mmm" in local time.
phases() {
  local kind=$1 log=$2 t0=$3 what pat ts out="" steps
  if [ "$kind" = tandem ]; then
    steps=("up:ready to accept connections" "joined:joined cluster" "snapshot from:receiving snapshot"
           "received+verified:received snapshot" "installed:Done install complete snapshot")
  else
    steps=("up:Ready to accept connections" "sync from:MASTER <-> REPLICA sync started"
           "received:sync: Flushing old data" "loaded:sync: Finished with success")
  fi
  for what in "${steps[@]}"; do
    pat=${what#*:}
    if [ "$kind" = tandem ]; then
      ts=$(grep -m1 -F "$pat" "$log" | awk '{ print $1 }')
    else
      ts=$(grep -m1 -F "$pat" "$log" | awk '{ print $2, $3, $4, $5 }')
    fi
    [ -n "$ts" ] || continue
    ts=$(date -d "$ts" +%s%N 2>/dev/null) || continue
    out+="${what%%:*} $(awk -v d=$((ts - t0)) 'BEGIN { printf "%.3f", d / 1e9 }') s, "
  done
  echo "${out%, }"
}


# ---------------------------------------------------------------------------------------------
# Benchmarks

RUNS_redis_wait=() RUNS_tandem_1a=() RUNS_redis_everysec=() RUNS_tandem_1b=()
RUNS_redis_get=() RUNS_tandem_get=()
CPU_redis_wait=() CPU_tandem_1a=() CPU_redis_everysec=() CPU_tandem_1b=() CPU_redis_get=() CPU_tandem_get=()
TANDEM_MAX_RATE=""

# Cluster A (benchmarks 1-3): Tandem 3 voters with the defaults (appendfsync always), later a
# read replica; Redis primary + 2 replicas with AOF always (1a), then everysec (1b, 2).
setup_main() {
  start_tandem_cluster tandem --appendfsync always || return 1
  start_redis_cluster redis always || return 1
}

bench_writes() {
  local common="-c $CLIENTS -r $KEYSPACE -d $VALUE_SIZE --mode"
  echo "  load average: $(loadavg)"
  echo "  1a: redis SET + WAIT 1 0 (AOF always) | tandem SET (3 voters, appendfsync always)"
  run_lg_pair redis_wait tandem_1a \
    "-p $R_PRIMARY $common set-wait --wait-replicas 1 --wait-timeout-ms 0" \
    "-p $T_PRIMARY $common set" "${R_PIDS[*]}" "${T_PIDS[*]}" || return 1
  report_pair 1a "SET, 3 copies, durable (redis: AOF always + WAIT 1 0)" redis_wait tandem_1a ">=" 1.0
  TANDEM_MAX_RATE=$(printf '%s\n' "${RUNS_tandem_1a[@]}" | median)

  local p
  for p in "${R_PORTS[@]}"; do
    [ "$(redis-cli -p "$p" CONFIG SET appendfsync everysec)" = OK ] || { echo "  ERROR: CONFIG SET appendfsync on redis :$p" >&2; return 1; }
  done
  echo "  1b: redis SET (AOF everysec, no WAIT) | tandem SET (3 voters, appendfsync always)"
  run_lg_pair redis_everysec tandem_1b \
    "-p $R_PRIMARY $common set" \
    "-p $T_PRIMARY $common set" "${R_PIDS[*]}" "${T_PIDS[*]}" || return 1
  report_pair 1b "SET: tandem durable / redis AOF everysec, no WAIT" redis_everysec tandem_1b ">=" 0.4
}

T_REPLICA=""
add_main_replica() {
  local p
  p=$(free_port) || return 1
  start_tandem_replica tandem-replica 4 "$p" || return 1
  wait_ping tandem-replica "$p" "$STARTED_PID" || return 1
  wait_for "the tandem read replica to be up" "$READY_TIMEOUT" replica_up "$p" || { show_log_tail tandem-replica; return 1; }
  T_REPLICA=$p T_REPLICA_PID=$STARTED_PID
  echo "  tandem read replica (node 4) on :$T_REPLICA"
}

# Keys key:0..KEYSPACE-1 on both primaries, then until both replicas have everything.
bench_reads() {
  local out idx off
  [ -n "$T_REPLICA" ] || add_main_replica || return 1
  out=$(lg redis-load -p "$R_PRIMARY" --mode load --keys "$KEYSPACE" -d "$VALUE_SIZE" -c 4 --pipeline 64) || return 1
  out=$(lg tandem-load -p "$T_PRIMARY" --mode load --keys "$KEYSPACE" -d "$VALUE_SIZE" -c 4 --pipeline 64) || return 1
  idx=$(info "$T_PRIMARY" tandem_last_log_index)
  out=$(redis-cli -p "$T_REPLICA" WAITPOS "$idx" 30000 2>&1)
  [[ "$out" =~ ^[0-9]+$ ]] || { echo "  ERROR: WAITPOS $idx on the tandem replica answered: $out" >&2; return 1; }
  off=$(info "$R_PRIMARY" master_repl_offset)
  wait_for "the redis replica to reach offset $off" 60 eval "[ \"\$(info ${R_PORTS[1]} slave_repl_offset)\" -ge $off ]" || return 1
  echo "  preloaded $KEYSPACE keys; dbsize: redis replica $(redis-cli -p "${R_PORTS[1]}" DBSIZE), tandem replica $(redis-cli -p "$T_REPLICA" DBSIZE)"
  echo "  load average: $(loadavg)"
  run_lg_pair redis_get tandem_get \
    "-p ${R_PORTS[1]} -c $CLIENTS -r $KEYSPACE --mode get" \
    "-p $T_REPLICA -c $CLIENTS -r $KEYSPACE --mode get" "${R_PIDS[1]}" "$T_REPLICA_PID" || return 1
  report_pair 2 "GET on a replica" redis_get tandem_get ">=" 0.9
}

bench_lag() {
  local rate i out runs=() p50s=() p90s=() p99s=() maxs=() rates=() m99
  if [ -z "$TANDEM_MAX_RATE" ]; then
    echo "  ERROR: benchmark 3 needs benchmark 1a's maximum Tandem write rate (run --only 1,3)" >&2
    return 1
  fi
  [ -n "$T_REPLICA" ] || add_main_replica || return 1
  rate=$(fmt0 "$(awk -v m="$TANDEM_MAX_RATE" 'BEGIN { print m / 2 }')")
  echo "  max rate (1a median) $(fmt0 "$TANDEM_MAX_RATE") SET/s -> paced to $rate SET/s, $CLIENTS clients; every ${LAG_SAMPLE_EVERY}th SET followed to the replica"
  for i in $(seq "$REPS"); do
    out=$(lg tandem-lag -p "$T_PRIMARY" --mode lag --replica "127.0.0.1:$T_REPLICA" --rate "$rate" -c "$CLIENTS" \
      -r "$KEYSPACE" -d "$VALUE_SIZE" --sample-every "$LAG_SAMPLE_EVERY" --waitpos-timeout-ms 5000 \
      --warmup 1 --duration "$LAG_SECS") || return 1
    p50s+=("$(field "$out" lag_p50_ms)") p90s+=("$(field "$out" lag_p90_ms)") p99s+=("$(field "$out" lag_p99_ms)")
    maxs+=("$(field "$out" lag_max_ms)") rates+=("$(field "$out" ops_per_sec)")
    printf '  run %s/%s: %s SET/s achieved (SET p50 %s p99 %s ms); lag over %s samples, ms: p50 %s p90 %s p99 %s max %s (POSITION round trip p50 %s ms)\n' \
      "$i" "$REPS" "${rates[-1]}" "$(field "$out" p50_ms)" "$(field "$out" p99_ms)" "$(field "$out" lag_samples)" \
      "${p50s[-1]}" "${p90s[-1]}" "${p99s[-1]}" "${maxs[-1]}" "$(field "$out" position_rtt_p50_ms)"
    if awk -v a="${rates[-1]}" -v t="$rate" 'BEGIN { exit !(a < 0.95 * t) }'; then
      echo "  WARNING: the achieved rate is more than 5% below the paced rate" >&2
    fi
  done
  m99=$(printf '%s\n' "${p99s[@]}" | median)
  echo "  => lag, median over runs, ms: p50 $(printf '%s\n' "${p50s[@]}" | median) p90 $(printf '%s\n' "${p90s[@]}" | median) p99 $m99 max $(printf '%s\n' "${maxs[@]}" | median) (target p99 <= 20 ms): $(judge "$m99" "<=" 20)"
  echo "     p99 of each run: ${p99s[*]}"
  add_row 3 "replica apply lag p99 at $rate SET/s (half of max)" "-" \
    "p50 $(printf '%s\n' "${p50s[@]}" | median) / p90 $(printf '%s\n' "${p90s[@]}" | median) / p99 $m99 / max $(printf '%s\n' "${maxs[@]}" | median) ms" \
    "-" "p99 <= 20 ms" "$(judge "$m99" "<=" 20)"
}

# Benchmark 4 on fresh servers: a Tandem cluster whose log is purged right behind every snapshot,
# and a Redis primary; BIG_KEYS keys on each; then new replicas, timed, alternately.
bench_bootstrap() {
  local out rp last_key expected tl purged i p t0 el name rdb_bytes snap_bytes id r_name r_t0
  local r_times=() t_times=() t_bytes=() t_sync=()
  start_tandem_cluster tboot --snapshot-entries 100000 --log-retention-entries 0 --log-retention-bytes 0 --log-retention-ms 0 || return 1
  rp=$(free_port) || return 1
  start_redis rboot-1 "$rp" "$(fresh_dir rboot-1)" || return 1
  wait_ping rboot-1 "$rp" "$STARTED_PID" || return 1

  out=$(lg rboot-load -p "$rp" --mode load --keys "$BIG_KEYS" -d "$VALUE_SIZE" -c 4 --pipeline 64) || return 1
  echo "  loaded $BIG_KEYS keys into redis: $(field "$out" keys_per_sec) keys/s"
  out=$(lg tboot-load -p "$T_PRIMARY" --mode load --keys "$BIG_KEYS" -d "$VALUE_SIZE" -c 4 --pipeline 64) || return 1
  echo "  loaded $BIG_KEYS keys into tandem: $(field "$out" keys_per_sec) keys/s"
  [ "$(redis-cli -p "$T_PRIMARY" DBSIZE)" -ge "$BIG_KEYS" ] || { echo "  ERROR: tandem DBSIZE after the load: $(redis-cli -p "$T_PRIMARY" DBSIZE)" >&2; return 1; }

  out=$(timeout 300 redis-cli -p "$T_PRIMARY" SAVE 2>&1)
  [ "$out" = OK ] || { echo "  ERROR: tandem SAVE answered: $out" >&2; return 1; }
  wait_for "the tandem primary to purge its log (tandem_purged_index > 0)" 60 \
    eval "[ \"\$(info $T_PRIMARY tandem_purged_index)\" -gt 0 ] 2>/dev/null" || { show_log_tail tboot-1; return 1; }
  tl=$(info "$T_PRIMARY" tandem_last_log_index) purged=$(info "$T_PRIMARY" tandem_purged_index)
  echo "  tandem primary: last log index $tl, snapshot index $(info "$T_PRIMARY" tandem_snapshot_index), purged index $purged"
  # For the MB/s of Redis's transfer: the size of an RDB of the same data (the sync itself is diskless).
  [ "$(timeout 300 redis-cli -p "$rp" SAVE)" = OK ] || { echo "  ERROR: redis SAVE failed" >&2; return 1; }
  rdb_bytes=$(stat -c %s "$WORK/rboot-1/dump.rdb")

  last_key=$(printf 'key:%012d' $((BIG_KEYS - 1)))
  expected=$(python3 "$ROOT/scripts/bench/gen_resp.py" --value-of $((BIG_KEYS - 1)) --value-size "$VALUE_SIZE")
  echo "  load average: $(loadavg)"
  echo "  new replica until in sync and serving:  redis (until link up + DBSIZE $BIG_KEYS) | tandem (until applied $tl + GET $last_key right)"
  for i in $(seq "$REPS"); do
    # --- Redis
    p=$(free_port) || return 1
    name=rboot-replica-$i
    t0=$(date +%s%N)
    start_redis "$name" "$p" "$(fresh_dir "$name")" --replicaof 127.0.0.1 "$rp" || return 1
    el=""
    while [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt "$SYNC_TIMEOUT" ]; do
      # The cheap check first, so that polling costs one redis-cli call while the sync runs.
      if [ "$(redis-cli -p "$p" DBSIZE 2>/dev/null)" = "$BIG_KEYS" ] && [ "$(info "$p" master_link_status)" = up ]; then
        el=$(ms_since "$t0"); break
      fi
      kill -0 "$STARTED_PID" 2>/dev/null || { echo "  ERROR: $name exited" >&2; show_log_tail "$name"; return 1; }
      sleep 0.01
    done
    [ -n "$el" ] || { echo "  ERROR: $name not in sync after ${SYNC_TIMEOUT}s" >&2; show_log_tail "$name"; return 1; }
    [ "$(redis-cli -p "$p" GET "$last_key")" = "$expected" ] || { echo "  ERROR: $name returns a wrong value for $last_key" >&2; return 1; }
    r_times+=("$el") r_name=$name r_t0=$t0
    stop_server "$STARTED_PID"

    # --- Tandem
    p=$(free_port) || return 1
    id=$((10 + i)) name=tboot-replica-$i
    t0=$(date +%s%N)
    start_tandem_replica "$name" "$id" "$p" || return 1
    el=""
    while [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt "$SYNC_TIMEOUT" ]; do
      if [ "$(redis-cli -p "$p" GET "$last_key" 2>/dev/null)" = "$expected" ] && replica_synced "$p" "$tl"; then
        el=$(ms_since "$t0"); break
      fi
      kill -0 "$STARTED_PID" 2>/dev/null || { echo "  ERROR: $name exited" >&2; show_log_tail "$name"; return 1; }
      sleep 0.01
    done
    [ -n "$el" ] || { echo "  ERROR: $name not in sync after ${SYNC_TIMEOUT}s" >&2; show_log_tail "$name" 30; return 1; }
    t_times+=("$el")
    snap_bytes=$(info "$p" tandem_sync_total_bytes)
    t_sync+=("$(info "$p" tandem_sync_completed)") t_bytes+=("$snap_bytes")
    out=$(redis-cli -p "$p" DBSIZE)
    printf '  run %s/%s: redis %s s | tandem %s s (snapshot transfers completed: %s, %s bytes; DBSIZE %s)\n' \
      "$i" "$REPS" "${r_times[-1]}" "${t_times[-1]}" "${t_sync[-1]}" "$snap_bytes" "$out"
    echo "           from exec, redis: $(phases redis "$LOGDIR/$r_name.log" "$r_t0")"
    echo "                     tandem: $(phases tandem "$LOGDIR/$name.log" "$t0")"
    [ "$out" -ge "$BIG_KEYS" ] 2>/dev/null || { echo "  ERROR: $name DBSIZE $out < $BIG_KEYS" >&2; return 1; }
    if [ "${t_sync[-1]}" = 0 ]; then
      echo "  WARNING: $name completed no snapshot transfer: it caught up from the log, the log was not purged as intended" >&2
    fi
    # Remove it from the cluster before stopping it, so the primary is not left replicating to a dead member.
    out=$(timeout 30 "$TANDEM_BIN" cluster --node "127.0.0.1:$T_PRIMARY" remove "$id" 2>&1) \
      || echo "  WARNING: tandem cluster remove $id: $out" >&2
    echo "--- $(date +%T) tandem cluster remove $id: $out" >>"$LOGDIR/$name.log"
    stop_server "$STARTED_PID"
  done

  local mr mt r mb_data kps_r kps_t
  mr=$(printf '%s\n' "${r_times[@]}" | median) mt=$(printf '%s\n' "${t_times[@]}" | median)
  r=$(ratio "$mt" "$mr")
  mb_data=$(awk -v n="$BIG_KEYS" -v d="$VALUE_SIZE" 'BEGIN { print n * (16 + d) / 1e6 }')
  kps_r=$(awk -v n="$BIG_KEYS" -v t="$mr" 'BEGIN { printf "%.0f", n / t }')
  kps_t=$(awk -v n="$BIG_KEYS" -v t="$mt" 'BEGIN { printf "%.0f", n / t }')
  snap_bytes=$(printf '%s\n' "${t_bytes[@]}" | median)
  echo "  => median: redis $mr s = $kps_r keys/s, $(awk -v b="$mb_data" -v t="$mr" 'BEGIN { printf "%.1f", b / t }') MB/s of keys+values, $(awk -v b="$rdb_bytes" -v t="$mr" 'BEGIN { printf "%.1f", b / t / 1e6 }') MB/s of RDB ($rdb_bytes bytes)"
  echo "             tandem $mt s = $kps_t keys/s, $(awk -v b="$mb_data" -v t="$mt" 'BEGIN { printf "%.1f", b / t }') MB/s of keys+values, $(awk -v b="$snap_bytes" -v t="$mt" 'BEGIN { printf "%.1f", b / t / 1e6 }') MB/s of snapshot ($snap_bytes bytes)"
  echo "     ratio (redis time / tandem time) $r (target >= 2.0): $(judge "$r" ">=" 2.0); runs: redis ${r_times[*]} | tandem ${t_times[*]}"
  local note=""
  [ "$BIG_KEYS" = 1000000 ] || note=" (quick: $BIG_KEYS keys)"
  add_row 4 "new replica from a snapshot, $BIG_KEYS keys x $VALUE_SIZE B$note" \
    "$mr s ($kps_r keys/s, $(awk -v b="$mb_data" -v t="$mr" 'BEGIN { printf "%.0f", b / t }') MB/s)" \
    "$mt s ($kps_t keys/s, $(awk -v b="$mb_data" -v t="$mt" 'BEGIN { printf "%.0f", b / t }') MB/s)" \
    "$r" ">= 2.0" "$(judge "$r" ">=" 2.0)"
}

# run_benchmark ID LABEL FUNCTION: on failure records an ERROR row.
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
  [ -z "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] || echo "uncommitted: $(git -C "$ROOT" status --porcelain 2>/dev/null | awk '{ print $2 }' | head -n 8 | tr '\n' ' ')"
  echo "tandem: $("$TANDEM_BIN" --version 2>/dev/null | head -n 1); redis: $(redis-server --version | awk '{ print $3 }' | sed 's/v=//')"
  echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full), $REPS alternating runs per server, ${RUN_SECS}s per throughput run, ${LAG_SECS}s per lag run, $CLIENTS clients, keyspace $KEYSPACE, values $VALUE_SIZE B"
  echo "load average at start: $(loadavg)"
} >"$LOGDIR/meta.txt"
sed 's/^/  /' "$LOGDIR/meta.txt"
echo "  logs: $LOGDIR"
echo "  data: $WORK"

if want 1 || want 2 || want 3; then
  echo
  echo "==> setting up: Tandem 3 voters (appendfsync always) and Redis primary + 2 replicas (AOF always)    ($(date +%T))"
  if setup_main; then
    want 1 && run_benchmark 1 "write throughput, 3 copies" bench_writes
    want 2 && run_benchmark 2 "GET throughput on a replica" bench_reads
    want 3 && run_benchmark 3 "replica apply lag at half the maximum write rate" bench_lag
  else
    ERRORS=$((ERRORS + 1))
    for id in 1 2 3; do want $id && add_row "$id" "(cluster setup failed)" "-" "-" "-" "" "ERROR"; done
  fi
  stop_all
fi
want 4 && run_benchmark 4 "new replica bootstrapped from a snapshot, $BIG_KEYS keys" bench_bootstrap
stop_all

echo "load average at end: $(loadavg)" >>"$LOGDIR/meta.txt"
echo
echo "  load average at end: $(loadavg)"

# Anything alarming in Tandem's logs is printed: a panic or an error line is a finding in itself,
# and warnings (with the transport's dropped connections) are counted, most frequent first.
if grep -q -E 'panicked|ERROR' "$LOGDIR"/t*.log 2>/dev/null; then
  echo
  echo "Tandem log lines with ERROR or a panic (first 20):"
  grep -H -E 'panicked|ERROR' "$LOGDIR"/t*.log | head -n 20 | sed "s|$LOGDIR/||; s/^/  /"
fi
if grep -q -E ' WARN |presumed dead' "$LOGDIR"/t*.log 2>/dev/null; then
  echo
  echo "Tandem warnings and dropped peer connections (count, message without timestamp and details):"
  grep -h -E ' WARN |presumed dead' "$LOGDIR"/t*.log | cut -d' ' -f2- | sed -E 's/(peer=)[0-9.:]+/\1.../; s/^(.{0,150}).*/\1/' \
    | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/  /'
  echo "  per log: $(grep -c -E ' WARN |presumed dead' "$LOGDIR"/t*.log | grep -v ':0$' | sed "s|$LOGDIR/||" | tr '\n' ' ')"
fi

# Summary: aligned on stdout, markdown in target/bench-replication-summary.md.
MD="$ROOT/target/bench-replication-summary.md"
python3 "$ROOT/scripts/bench/table.py" "$SUMMARY_TSV" "$LOGDIR/meta.txt" "$MD" \
  "redis" "tandem" \
  "Summary (ratio = tandem / redis for throughput; redis time / tandem time for 4)" \
  "Ratio = tandem / redis (throughput, medians of alternating runs); for 4, redis time / tandem time."
cp "$MD" "$LOGDIR/"
echo "markdown: target/bench-replication-summary.md"
[ "$ERRORS" = 0 ]
