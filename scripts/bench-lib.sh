# Helpers of the benchmark scripts (scripts/bench-replication.sh, scripts/bench-failover.sh):
# starting and stopping servers, free ports, waiting, small statistics, and the two three-node
# clusters both compare. Sourced, not run. The sourcing script sets, before calling anything:
#   BENCH_NAME     its name, for messages
#   LOGDIR, WORK   where server logs and data dirs go
#   KEEP           1 to keep WORK on exit
#   TANDEM_BIN     the tandem binary
#   READY_TIMEOUT  seconds for a server or a cluster to be ready
#   SECRET         the cluster secret of Tandem clusters
# and installs `trap cleanup EXIT`, so that every server started through here is stopped on exit.

PIDS=()        # every server process this script started and has not yet stopped

cleanup() {
  local pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  PIDS=()
  if [ "$KEEP" = 1 ]; then echo "kept data dirs in $WORK"; else rm -rf "$WORK"; fi
}

forget_pid() {
  local pid=$1 p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Stops a server gently (TERM, then KILL after 10 s).
stop_server() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  forget_pid "$pid"
}

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_server "$pid"; done
}

# A free TCP port P on loopback such that P+10000 is free too (Tandem's cluster port).
USED_PORTS=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 10000))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if [ -z "$(ss -Htan "( sport = :$p or sport = :$((p + 10000)) )" 2>/dev/null)" ]; then
      USED_PORTS+="$p "
      echo "$p"
      return 0
    fi
  done
  echo "${BENCH_NAME:-bench}: no free port found" >&2
  return 1
}

fresh_dir() { local d="$WORK/$1"; rm -rf "$d"; mkdir -p "$d"; echo "$d"; }

# start_redis NAME PORT DIR [extra redis-server flags...] -> STARTED_PID. Explicit flags, so that
# no redis.conf on the machine changes what is measured. repl-diskless-sync-delay 0: Redis 7's
# default (5 s) would hold every full sync back by five seconds waiting for more replicas.
start_redis() {
  local name=$1 port=$2 dir=$3; shift 3
  echo "--- $(date +%T) start redis: port $port dir $dir $*" >>"$LOGDIR/$name.log"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --daemonize no --protected-mode no --logfile '' --dbfilename dump.rdb \
    --repl-diskless-sync-delay 0 "$@" >>"$LOGDIR/$name.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

# start_tandem NAME PORT DIR [extra tandem server flags...] -> STARTED_PID.
start_tandem() {
  local name=$1 port=$2 dir=$3; shift 3
  echo "--- $(date +%T) start tandem: port $port dir $dir $*" >>"$LOGDIR/$name.log"
  "$TANDEM_BIN" server --port "$port" --data-dir "$dir" "$@" >>"$LOGDIR/$name.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

show_log_tail() { echo "    last lines of $LOGDIR/$1.log:" >&2; tail -n "${2:-15}" "$LOGDIR/$1.log" | sed 's/^/      /' >&2; }

# wait_ping NAME PORT PID: until `redis-cli PING` answers PONG.
wait_ping() {
  local name=$1 port=$2 pid=$3 deadline=$((SECONDS + READY_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "  ERROR: $name (pid $pid) exited while starting" >&2
      show_log_tail "$name"
      return 1
    fi
    [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "  ERROR: $name did not answer PING within ${READY_TIMEOUT}s" >&2
  show_log_tail "$name"
  return 1
}

# info PORT FIELD: one field of `INFO replication` (empty when absent or unreachable).
info() { redis-cli -p "$1" INFO replication 2>/dev/null | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2; exit }'; }

# wait_for DESC TIMEOUT_S COMMAND...: polls COMMAND every 50 ms until it succeeds.
wait_for() {
  local desc=$1 timeout=$2 deadline; shift 2
  deadline=$((SECONDS + timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$@" && return 0
    sleep 0.05
  done
  echo "  ERROR: timed out after ${timeout}s waiting for $desc" >&2
  return 1
}

median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) exit 1; if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f%%", (hi > 0) ? 100 * (hi - lo) / hi : 0 }'; }
fmt0() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
ms_since() { awk -v d=$(($(date +%s%N) - $1)) 'BEGIN { printf "%.3f", d / 1e9 }'; }
judge() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { if (r == "nan" || r == "") { print "ERROR"; exit } ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "PASS" : "MISS" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "nan" }'; }

# field RESULT-LINE KEY -> value
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2; exit }'; }

# start_tandem_cluster PREFIX [extra flags for every voter...]: three voters; sets T_PORTS
# (client ports of nodes 1..3), T_PRIMARY (the primary's client port), T_NAMES and T_PIDS, and
# for restarting a voter with its own flags: T_MEMBERS (the --initial-cluster value) and T_FLAGS
# (the extra flags). Voter i's data dir is $WORK/PREFIX-i.
start_tandem_cluster() {
  local prefix=$1 i p members="" deadline primary_id; shift
  T_PORTS=() T_NAMES=() T_PIDS=() T_FLAGS=("$@")
  for i in 1 2 3; do
    p=$(free_port) || return 1
    T_PORTS+=("$p")
    members+="${members:+,}$i=127.0.0.1:$((p + 10000))"
  done
  T_MEMBERS=$members
  for i in 1 2 3; do
    T_NAMES+=("$prefix-$i")
    start_tandem "$prefix-$i" "${T_PORTS[i-1]}" "$(fresh_dir "$prefix-$i")" --cluster-port "$((T_PORTS[i-1] + 10000))" \
      --node-id "$i" --initial-cluster "$members" --cluster-secret "$SECRET" "$@" || return 1
    T_PIDS+=("$STARTED_PID")
  done
  for i in 1 2 3; do
    wait_ping "$prefix-$i" "${T_PORTS[i-1]}" "${T_PIDS[i-1]}" || return 1
  done
  T_PRIMARY="" deadline=$((SECONDS + READY_TIMEOUT))
  while [ -z "$T_PRIMARY" ] && [ "$SECONDS" -lt "$deadline" ]; do
    for p in "${T_PORTS[@]}"; do
      [ "$(info "$p" tandem_role)" = primary ] && T_PRIMARY=$p
    done
    [ -n "$T_PRIMARY" ] || sleep 0.1
  done
  [ -n "$T_PRIMARY" ] || { echo "  ERROR: no Tandem primary after ${READY_TIMEOUT}s" >&2; show_log_tail "$prefix-1"; return 1; }
  primary_id=$(info "$T_PRIMARY" tandem_node_id)
  for p in "${T_PORTS[@]}"; do
    wait_for "voter :$p to follow primary $primary_id" "$READY_TIMEOUT" \
      eval "[ \"\$(info $p tandem_primary_id)\" = $primary_id ]" || return 1
  done
  # Every member online as the primary sees it, and a write goes through.
  wait_for "all three voters online" "$READY_TIMEOUT" \
    eval "[ \"\$(redis-cli -p $T_PRIMARY INFO replication | tr -d '\r' | grep -c '^tandem_member.*state=online')\" = 3 ]" || return 1
  [ "$(redis-cli -p "$T_PRIMARY" SET bench:ready 1)" = OK ] || { echo "  ERROR: a first SET on the Tandem primary failed" >&2; return 1; }
  echo "  tandem: 3 voters on ports ${T_PORTS[*]}, primary :$T_PRIMARY (node $primary_id)"
}

# start_redis_cluster PREFIX APPENDFSYNC: a primary and two replicas, AOF on all three; sets
# R_PORTS (primary first) and R_PRIMARY.
start_redis_cluster() {
  local prefix=$1 fsync=$2 i p
  R_PORTS=() R_PIDS=()
  for i in 1 2 3; do p=$(free_port) || return 1; R_PORTS+=("$p"); done
  R_PRIMARY=${R_PORTS[0]}
  start_redis "$prefix-1" "$R_PRIMARY" "$(fresh_dir "$prefix-1")" --appendonly yes --appendfsync "$fsync" || return 1
  wait_ping "$prefix-1" "$R_PRIMARY" "$STARTED_PID" || return 1
  R_PIDS+=("$STARTED_PID")
  for i in 2 3; do
    start_redis "$prefix-$i" "${R_PORTS[i-1]}" "$(fresh_dir "$prefix-$i")" --appendonly yes --appendfsync "$fsync" \
      --replicaof 127.0.0.1 "$R_PRIMARY" || return 1
    wait_ping "$prefix-$i" "${R_PORTS[i-1]}" "$STARTED_PID" || return 1
    R_PIDS+=("$STARTED_PID")
  done
  for i in 2 3; do
    wait_for "redis replica :${R_PORTS[i-1]} link up" "$READY_TIMEOUT" \
      eval "[ \"\$(info ${R_PORTS[i-1]} master_link_status)\" = up ]" || return 1
  done
  wait_for "redis primary to see 2 replicas" "$READY_TIMEOUT" eval "[ \"\$(info $R_PRIMARY connected_slaves)\" = 2 ]" || return 1
  echo "  redis: primary :$R_PRIMARY, replicas :${R_PORTS[1]} :${R_PORTS[2]}, appendonly yes appendfsync $fsync"
}
