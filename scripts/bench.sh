#!/usr/bin/env bash
# Single-node benchmarks: Tandem against Redis 7 on the same machine, with the same load.
#
#   scripts/bench.sh                 full run (~6 minutes after the build)
#   scripts/bench.sh --quick         smoke run: short runs, 100k keys for memory/restart (~1 minute)
#   scripts/bench.sh --only 1,2,6    run only some benchmarks (numbers as in the table below)
#   scripts/bench.sh --reps 9        alternating repetitions per server (default 7, --quick 3)
#   scripts/bench.sh --keep          keep the temporary data dirs (their path is printed)
#   scripts/bench.sh --no-build      do not run cargo build (use the existing target/release/tandem)
#   scripts/bench.sh --nice -10      run servers and clients at this nice value (negative needs root):
#                                    less noise from builds running beside it, which it slows down
#   TANDEM_BIN=path scripts/bench.sh use another binary, skip the build. To prove the harness with
#                                    Redis on both sides: TANDEM_BIN=scripts/bench/fake-tandem.sh
#
# Every throughput figure is a RATIO of medians measured side by side: both servers run at once
# on their own port and fresh data dir, and redis-benchmark is run against them alternately
# (redis, tandem, redis, tandem, ...) so that noise from other work on the machine hits both.
#
#   1  GET, 50 clients, no pipelining, 100-byte values        tandem/redis >= 0.9
#   2  GET, 50 clients, -P 16                                  tandem/redis >= 0.8
#   3  SET, appendfsync always (Redis AOF always)              tandem/redis >= 1.0
#   4  SET, appendfsync everysec (Redis AOF everysec)          tandem/redis >= 0.6
#   5  SET and GET of 1 KiB values, Tandem sha256 / Tandem xxh3-64  >= 0.9 each
#   6  VmRSS with 1,000,000 keys of 100-byte values            tandem/redis <= 1.8
#   7  restart after kill -9 with 1,000,000 keys, until a GET answers correctly: <= 5 s
#      (without and with a SAVE first; Redis restarting from an RDB of the same data beside it)
#
# Output: a summary table on stdout, the same as markdown in target/bench-summary.md, every raw
# redis-benchmark line and server log under target/bench-logs/<timestamp>/.
# Exit status: 0 when every figure was measured (whether it passed or not), 1 when some could not
# be measured (server failed to start, a run failed), 2 on bad usage or a failed build.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
HELPERS="$ROOT/scripts/bench"

# ---------------------------------------------------------------------------------------------
# Options
QUICK=0 ONLY="" REPS="" KEEP=0 BUILD=1 NICE=""
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --only) ONLY=${2:-}; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    --reps) REPS=${2:-}; shift 2 ;;
    --reps=*) REPS=${1#--reps=}; shift ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --nice) NICE=${2:-}; shift 2 ;;
    --nice=*) NICE=${1#--nice=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-3}
  RUN_SECS=0.7          # aimed length of one measured redis-benchmark run (for the slower server)
  BIG_KEYS=100000       # keys for the memory and restart benchmarks (the targets assume 1M)
else
  REPS=${REPS:-7}
  RUN_SECS=3
  BIG_KEYS=1000000
fi
case "$REPS" in ''|*[!0-9]*) echo "bench.sh: --reps needs a number" >&2; exit 2 ;; esac
[ "$REPS" -ge 1 ] || { echo "bench.sh: --reps must be >= 1" >&2; exit 2; }

CLIENTS=50            # redis-benchmark -c
KEYSPACE=100000       # redis-benchmark -r, and the number of keys preloaded for GET benchmarks
BENCH_TIMEOUT=300     # seconds; a redis-benchmark run that takes longer is killed and counted failed
READY_TIMEOUT=120     # seconds for a server to answer PING (or, on restart, the GET)
LOAD_TIMEOUT=900      # seconds for redis-cli --pipe to load a data set

want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

for tool in redis-server redis-cli redis-benchmark python3 timeout ss; do
  command -v "$tool" >/dev/null || { echo "bench.sh: '$tool' not found (apt-get install redis-server redis-tools)" >&2; exit 2; }
done

# ---------------------------------------------------------------------------------------------
# The Tandem binary
if [ -n "${TANDEM_BIN:-}" ]; then
  case "$TANDEM_BIN" in /*) ;; *) TANDEM_BIN="$ROOT/$TANDEM_BIN" ;; esac
  echo "==> using TANDEM_BIN=$TANDEM_BIN (no build)"
else
  TANDEM_BIN="$ROOT/target/release/tandem"
  if [ "$BUILD" = 1 ]; then
    echo "==> cargo build --release -p tandem"
    if ! cargo build --release -p tandem; then
      echo "bench.sh: the release build failed" >&2
      exit 2
    fi
  fi
fi
[ -x "$TANDEM_BIN" ] || { echo "bench.sh: $TANDEM_BIN is not an executable" >&2; exit 2; }

# After the build, so that the build itself runs at the normal priority. Everything started from
# here on (servers, redis-benchmark, redis-cli) inherits it.
if [ -n "$NICE" ]; then
  renice -n "$NICE" -p $$ >/dev/null || { echo "bench.sh: renice -n $NICE failed" >&2; exit 2; }
fi

# ---------------------------------------------------------------------------------------------
# Work dirs, logs, cleanup
STAMP=$(date +%Y%m%d-%H%M%S)
LOGDIR="$ROOT/target/bench-logs/$STAMP"
mkdir -p "$LOGDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench.XXXXXX")
SUMMARY_TSV="$LOGDIR/summary.tsv"
: >"$SUMMARY_TSV"
if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then
  echo "WARNING: $WORK is on tmpfs: fsync costs nothing there, benchmarks 3 and 4 mean little." >&2
  echo "         Set TMPDIR to a directory on a real disk." >&2
fi

PIDS=()        # every server process this script started and has not yet stopped
ERRORS=0

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
trap cleanup EXIT
trap 'echo; echo "bench.sh: interrupted" >&2; exit 130' INT TERM

forget_pid() {
  local pid=$1 p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Stops a server gently (TERM, then KILL after 10 s), or at once with `stop_server PID kill`.
stop_server() {
  local pid=$1 how=${2:-term}
  [ -n "$pid" ] || return 0
  if [ "$how" = kill ]; then
    kill -KILL "$pid" 2>/dev/null
  else
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  forget_pid "$pid"
}

# A free TCP port P on loopback such that P+10000 is free too (Tandem's default cluster port).
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
  echo "bench.sh: no free port found" >&2
  return 1
}

fresh_dir() { local d="$WORK/$1"; rm -rf "$d"; mkdir -p "$d"; echo "$d"; }

# start_redis NAME PORT DIR [extra redis-server flags...]; sets STARTED_PID.
# Explicit flags, so that no redis.conf on the machine changes what is measured.
start_redis() {
  local name=$1 port=$2 dir=$3; shift 3
  echo "--- $(date +%T) start redis: port $port dir $dir $*" >>"$LOGDIR/$name.log"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --daemonize no --protected-mode no --logfile '' --dbfilename dump.rdb "$@" \
    >>"$LOGDIR/$name.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

# start_tandem NAME PORT DIR [extra tandem server flags...]; sets STARTED_PID.
start_tandem() {
  local name=$1 port=$2 dir=$3; shift 3
  echo "--- $(date +%T) start tandem: port $port dir $dir $*" >>"$LOGDIR/$name.log"
  "$TANDEM_BIN" server --port "$port" --data-dir "$dir" "$@" >>"$LOGDIR/$name.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

# wait_ready NAME PORT PID: until `redis-cli PING` answers PONG.
wait_ready() {
  local name=$1 port=$2 pid=$3 deadline=$((SECONDS + READY_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "  ERROR: $name (pid $pid) exited while starting; last lines of $LOGDIR/$name.log:" >&2
      tail -n 15 "$LOGDIR/$name.log" | sed 's/^/    /' >&2
      return 1
    fi
    [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "  ERROR: $name did not answer PING within ${READY_TIMEOUT}s" >&2
  return 1
}

# A server of either kind: start_server KIND NAME PORT DIR [flags...] -> STARTED_PID, waits ready.
start_server() {
  local kind=$1; shift
  "start_$kind" "$@" || return 1
  wait_ready "$1" "$2" "$STARTED_PID"
}

# Preload: gen_file COUNT VALUE_SIZE -> path of a cached RESP file of SET commands.
gen_file() {
  local f="$WORK/sets-$1x$2.resp"
  if [ ! -s "$f" ]; then
    python3 "$HELPERS/gen_resp.py" --count "$1" --value-size "$2" >"$f.tmp" && mv "$f.tmp" "$f" || return 1
  fi
  echo "$f"
}
expected_value() { python3 "$HELPERS/gen_resp.py" --value-of "$1" --value-size "$2"; }
key_of() { printf 'key:%012d' "$1"; }

# load NAME PORT FILE COUNT: pipes the file in, checks every reply and the key count.
load() {
  local name=$1 port=$2 file=$3 count=$4 out n
  out=$(timeout --foreground -k 5 "$LOAD_TIMEOUT" redis-cli -p "$port" --pipe <"$file" 2>&1)
  echo "--- $(date +%T) load $file: $out" >>"$LOGDIR/$name.log"
  if ! grep -q "errors: 0, replies: $count" <<<"$out"; then
    echo "  ERROR: loading $name: $(tail -n 2 <<<"$out" | tr '\n' ' ')" >&2
    return 1
  fi
  n=$(redis-cli -p "$port" DBSIZE 2>/dev/null)
  if [ "$n" != "$count" ]; then
    echo "  WARNING: $name DBSIZE says '$n' after loading $count keys" >&2
  fi
  return 0
}

median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) exit 1; if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f%%", (hi > 0) ? 100 * (hi - lo) / hi : 0 }'; }
fmt_rps() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# rb NAME PORT [redis-benchmark args...]: one run; prints "TEST RPS" per test, fails on any error.
rb() {
  local name=$1 port=$2 out rc; shift 2
  out=$(timeout --foreground -k 5 "$BENCH_TIMEOUT" \
        redis-benchmark -h 127.0.0.1 -p "$port" "$@" --csv 2>>"$LOGDIR/redis-benchmark.stderr")
  rc=$?
  { echo "# $(date +%T) $name: redis-benchmark -p $port $* --csv (rc $rc)"; echo "$out"; } >>"$LOGDIR/redis-benchmark.csv"
  [ "$rc" = 0 ] || { echo "  ERROR: redis-benchmark against $name exited $rc (see $LOGDIR/redis-benchmark.stderr)" >&2; return 1; }
  # CSV: "test","rps","avg_latency_ms",...; skip the header and anything that is not a result.
  out=$(awk -F, '{ gsub(/"/, ""); if ($1 != "test" && $2 ~ /^[0-9.]+$/ && $2 > 0) print $1, $2 }' <<<"$out")
  [ -n "$out" ] || { echo "  ERROR: no result from redis-benchmark against $name" >&2; return 1; }
  echo "$out"
}

# add_row ID LABEL A B UNIT RATIO TARGET RESULT -- one line of the summary.
add_row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SUMMARY_TSV"; }

# judge RATIO OP LIMIT -> PASS/FAIL
judge() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "PASS" : "FAIL" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "nan" }'; }


# compare ID NAME_A PORT_A NAME_B PORT_B CAL_N OP TARGET LABEL -- redis-benchmark args...
#
# One warm-up run on each server with CAL_N requests measures their speed; the measured runs then
# use n = RUN_SECS x (the slower server's speed) for both, so each run lasts a few seconds whatever
# the machine, and both get identical parameters. Then REPS alternating runs (A, B, A, B, ...), the
# median per server and test, and one summary row per test with the ratio B/A.
compare() {
  local id=$1 na=$2 pa=$3 nb=$4 pb=$5 cal=$6 op=$7 target=$8 label=$9; shift 10
  local args=("$@") out n slowest i t v line_a
  local -A runs_a=() runs_b=()
  local tests=()
  echo "  load average: $(loadavg)"
  out=$(rb "$na" "$pa" -n "$cal" "${args[@]}") || return 1
  out+=$'\n'$(rb "$nb" "$pb" -n "$cal" "${args[@]}") || return 1
  slowest=$(awk '{ print $2 }' <<<"$out" | sort -g | head -n 1)
  n=$(awk -v s="$slowest" -v t="$RUN_SECS" 'BEGIN { n = s * t; if (n < 2000) n = 2000; if (n > 50000000) n = 50000000;
        m = 10 ^ int(log(n) / log(10)); printf "%d", int(n / m * 10 + 0.5) * m / 10 }')
  echo "  warm-up ($cal requests): $(awk '{ printf "%s %.0f  ", $1, $2 }' <<<"$out")-> n=$n per measured run"
  for i in $(seq "$REPS"); do
    out=$(rb "$na" "$pa" -n "$n" "${args[@]}") || return 1
    while read -r t v; do
      [ -n "${runs_a[$t]+x}" ] || tests+=("$t")
      runs_a[$t]+="$v "
    done <<<"$out"
    line_a=$(awk '{ printf "%s %.0f  ", $1, $2 }' <<<"$out")
    out=$(rb "$nb" "$pb" -n "$n" "${args[@]}") || return 1
    while read -r t v; do runs_b[$t]+="$v "; done <<<"$out"
    echo "  run $i/$REPS: $na: ${line_a}| $nb: $(awk '{ printf "%s %.0f  ", $1, $2 }' <<<"$out")"
  done
  local k=0 rid rlabel ma mb r verdict letters=abcdefgh
  for t in "${tests[@]}"; do
    [ -n "${runs_b[$t]:-}" ] || continue
    ma=$(tr ' ' '\n' <<<"${runs_a[$t]}" | grep . | median)
    mb=$(tr ' ' '\n' <<<"${runs_b[$t]}" | grep . | median)
    r=$(ratio "$ma" "$mb")
    verdict=$(judge "$r" "$op" "$target")
    rid=$id rlabel=$label
    if [ "${#tests[@]}" -gt 1 ]; then rid="$id${letters:k:1}" rlabel="$label $t"; fi
    k=$((k + 1))
    add_row "$rid" "$rlabel" "$(fmt_rps "$ma")" "$(fmt_rps "$mb")" "ops/s" "$r" "$op $target" "$verdict"
    printf '  => %s: median %s %s ops/s, %s %s ops/s, ratio %s (target %s %s): %s\n' \
      "$rlabel" "$na" "$(fmt_rps "$ma")" "$nb" "$(fmt_rps "$mb")" "$r" "$op" "$target" "$verdict"
    # For judging the noise (not used for the verdict): the spread of each server's runs, the
    # median of the ratios of adjacent runs, and the ratio of the best runs (interference from
    # other work on the machine only ever slows a run down).
    local la lb pr
    la=$(tr ' ' '\n' <<<"${runs_a[$t]}" | grep .) lb=$(tr ' ' '\n' <<<"${runs_b[$t]}" | grep .)
    pr=$(paste -d' ' <(echo "$la") <(echo "$lb") | awk '{ print $2 / $1 }' | median)
    printf '     noise: spread %s %s, %s %s; median of paired ratios %.3f; best-run ratio %s\n' \
      "$na" "$(spread <<<"$la")" "$nb" "$(spread <<<"$lb")" "$pr" \
      "$(ratio "$(sort -g <<<"$la" | tail -n 1)" "$(sort -g <<<"$lb" | tail -n 1)")"
  done
}

# run_benchmark ID LABEL FUNCTION: runs it; on failure records an ERROR row. Stops every server
# the benchmark left running.
run_benchmark() {
  local id=$1 label=$2 fn=$3 before=" ${PIDS[*]} " pid
  echo
  echo "==> [$id] $label    ($(date +%T))"
  if ! "$fn"; then
    ERRORS=$((ERRORS + 1))
    echo "  [$id] could not be measured"
    grep -q "^$id" "$SUMMARY_TSV" || add_row "$id" "$label" "-" "-" "" "-" "" "ERROR"
  fi
  for pid in "${PIDS[@]}"; do
    [[ "$before" == *" $pid "* ]] || stop_server "$pid"
  done
}

# ---------------------------------------------------------------------------------------------
# The benchmarks. Each starts its own servers on fresh data dirs; run_benchmark stops them.

# pair_with_keys ID SIZE [tandem flags...]: Redis (no persistence) and Tandem, each with the same
# KEYSPACE keys of SIZE-byte values loaded. Sets PORT_R and PORT_T.
pair_with_keys() {
  local id=$1 size=$2 file; shift 2
  PORT_R=$(free_port) && PORT_T=$(free_port) || return 1
  start_server redis redis "$PORT_R" "$(fresh_dir "$id-redis")" || return 1
  start_server tandem tandem "$PORT_T" "$(fresh_dir "$id-tandem")" "$@" || return 1
  file=$(gen_file "$KEYSPACE" "$size") || return 1
  load redis "$PORT_R" "$file" "$KEYSPACE" && load tandem "$PORT_T" "$file" "$KEYSPACE"
}

bench_get() {
  pair_with_keys 1 100 || return 1
  compare 1 redis "$PORT_R" tandem "$PORT_T" 50000 ">=" 0.9 "GET, 50 clients, 100 B" -- \
    -t get -c "$CLIENTS" -d 100 -r "$KEYSPACE"
}

bench_get_pipelined() {
  pair_with_keys 2 100 || return 1
  compare 2 redis "$PORT_R" tandem "$PORT_T" 300000 ">=" 0.8 "GET, 50 clients, -P 16" -- \
    -t get -c "$CLIENTS" -d 100 -r "$KEYSPACE" -P 16
}

# bench_set_fsync POLICY ID TARGET CAL_N: Redis with its AOF and Tandem with the same fsync policy.
bench_set_fsync() {
  local policy=$1 id=$2 target=$3 cal=$4
  PORT_R=$(free_port) && PORT_T=$(free_port) || return 1
  start_server redis redis "$PORT_R" "$(fresh_dir "$id-redis")" --appendonly yes --appendfsync "$policy" || return 1
  start_server tandem tandem "$PORT_T" "$(fresh_dir "$id-tandem")" --appendfsync "$policy" || return 1
  compare "$id" redis "$PORT_R" tandem "$PORT_T" "$cal" ">=" "$target" "SET, appendfsync $policy" -- \
    -t set -c "$CLIENTS" -d 100 -r "$KEYSPACE"
}
bench_set_always() { bench_set_fsync always 3 1.0 5000; }
bench_set_everysec() { bench_set_fsync everysec 4 0.6 50000; }

# Tandem against Tandem. Both use appendfsync everysec: with `always` every SET waits for an
# fsync, which would hide the cost of the digest that this benchmark is about.
bench_checksum() {
  local pa pb file
  pa=$(free_port) && pb=$(free_port) || return 1
  start_server tandem tandem-xxh3 "$pa" "$(fresh_dir 5-xxh3)" --checksum-algorithm xxh3-64 --appendfsync everysec || return 1
  start_server tandem tandem-sha256 "$pb" "$(fresh_dir 5-sha256)" --appendfsync everysec || return 1
  file=$(gen_file "$KEYSPACE" 1024) || return 1
  load tandem-xxh3 "$pa" "$file" "$KEYSPACE" && load tandem-sha256 "$pb" "$file" "$KEYSPACE" || return 1
  compare 5 tandem-xxh3 "$pa" tandem-sha256 "$pb" 30000 ">=" 0.9 "1 KiB, sha256 / xxh3-64:" -- \
    -t set,get -c "$CLIENTS" -d 1024 -r "$KEYSPACE"
}

vmrss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
# Median of three VmRSS samples a second apart (a snapshot or the allocator may be settling).
settled_rss() {
  local pid=$1 s=()
  for _ in 1 2 3; do sleep 1; s+=("$(vmrss_kib "$pid")"); done
  printf '%s\n' "${s[@]}" | grep . | median
}
# VmRSS split into anonymous memory, file pages (e.g. mapped log segments) and shared memory.
rss_parts() { awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# timed_start KIND NAME PORT DIR KEY EXPECTED [flags...]: starts a server and sets ELAPSED to the
# seconds from exec until `GET KEY` returns EXPECTED; sets STARTED_PID.
timed_start() {
  local kind=$1 name=$2 port=$3 dir=$4 key=$5 expected=$6 t0 v deadline; shift 6
  ELAPSED=""
  t0=$(date +%s%N)
  "start_$kind" "$name" "$port" "$dir" "$@"
  deadline=$((SECONDS + READY_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    # Not listening yet, LOADING, or not the value yet: poll again (every ~15 ms).
    v=$(redis-cli -p "$port" GET "$key" 2>/dev/null)
    if [ "$v" = "$expected" ]; then
      ELAPSED=$(awk -v d=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.3f", d / 1e9 }')
      return 0
    fi
    kill -0 "$STARTED_PID" 2>/dev/null || { echo "  ERROR: $name exited during restart (see $LOGDIR/$name.log)" >&2; return 1; }
    sleep 0.01
  done
  echo "  ERROR: $name did not return the right value for $key within ${READY_TIMEOUT}s (last: ${v:0:60})" >&2
  return 1
}

# Benchmarks 6 and 7 share their data: the 1M keys loaded for the memory figure are then used for
# the restarts.
bench_big() {
  local file rr rt r note="" t0 key expected i
  local rp tp rdir tdir rpid tpid
  [ "$BIG_KEYS" = 1000000 ] || note=" (quick: $BIG_KEYS keys)"
  file=$(gen_file "$BIG_KEYS" 100) || return 1
  rp=$(free_port) && tp=$(free_port) || return 1
  rdir=$(fresh_dir 6-redis) tdir=$(fresh_dir 6-tandem)
  start_server redis redis-big "$rp" "$rdir" || return 1
  rpid=$STARTED_PID
  start_server tandem tandem-big "$tp" "$tdir" || return 1
  tpid=$STARTED_PID

  # --- 6: memory
  t0=$(date +%s%N)
  load redis-big "$rp" "$file" "$BIG_KEYS" || return 1
  echo "  loaded $BIG_KEYS keys into redis in $(awk -v d=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", d / 1e9 }') s"
  t0=$(date +%s%N)
  load tandem-big "$tp" "$file" "$BIG_KEYS" || return 1
  echo "  loaded $BIG_KEYS keys into tandem in $(awk -v d=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", d / 1e9 }') s"
  rr=$(settled_rss "$rpid") && rt=$(settled_rss "$tpid") || return 1
  r=$(ratio "$rr" "$rt")
  echo "  redis INFO used_memory: $(redis-cli -p "$rp" INFO memory | awk -F: '/^used_memory_human/ { print $2 }' | tr -d '\r')"
  echo "  redis  $(rss_parts "$rpid")"
  echo "  tandem $(rss_parts "$tpid")"
  echo "  => VmRSS: redis $(mib "$rr"), tandem $(mib "$rt"), ratio $r (target <= 1.8): $(judge "$r" "<=" 1.8)"
  if want 6; then
    add_row 6 "VmRSS, $BIG_KEYS keys x 100 B" "$(mib "$rr")" "$(mib "$rt")" "" "$r" "<= 1.8" "$(judge "$r" "<=" 1.8)"
  fi
  want 7 || return 0

  # --- 7: restarts after kill -9, timed from exec until the last key loaded reads back right.
  key=$(key_of $((BIG_KEYS - 1)))
  expected=$(expected_value $((BIG_KEYS - 1)) 100)
  [ "$(redis-cli -p "$rp" SAVE)" = OK ] || { echo "  ERROR: redis SAVE failed" >&2; return 1; }
  # Reference: Redis with its AOF (appendfsync always), the like-for-like of Tandem's log replay.
  local ap adir apid
  ap=$(free_port) || return 1
  adir=$(fresh_dir 7-redis-aof)
  start_server redis redis-aof "$ap" "$adir" --appendonly yes --appendfsync always || return 1
  apid=$STARTED_PID
  load redis-aof "$ap" "$file" "$BIG_KEYS" || return 1

  local rdb=() aof=() tlog=() tsnap=()
  echo "  restart after kill -9 until GET $key is right:  redis RDB | redis AOF | tandem, no SAVE"
  for i in $(seq "$REPS"); do
    stop_server "$rpid" kill
    timed_start redis redis-big "$rp" "$rdir" "$key" "$expected" || return 1
    rpid=$STARTED_PID rdb+=("$ELAPSED")
    stop_server "$apid" kill
    timed_start redis redis-aof "$ap" "$adir" "$key" "$expected" --appendonly yes --appendfsync always || return 1
    apid=$STARTED_PID aof+=("$ELAPSED")
    stop_server "$tpid" kill
    timed_start tandem tandem-big "$tp" "$tdir" "$key" "$expected" || return 1
    tpid=$STARTED_PID tlog+=("$ELAPSED")
    echo "  run $i/$REPS: ${rdb[-1]} s | ${aof[-1]} s | ${tlog[-1]} s"
  done
  stop_server "$apid"

  local saved
  saved=$(timeout --foreground 600 redis-cli -p "$tp" SAVE 2>&1)
  [ "$saved" = OK ] || { echo "  ERROR: tandem SAVE answered: $saved" >&2; return 1; }
  echo "  tandem SAVE: OK.  restart after kill -9:  tandem, after SAVE"
  for i in $(seq "$REPS"); do
    stop_server "$tpid" kill
    timed_start tandem tandem-big "$tp" "$tdir" "$key" "$expected" || return 1
    tpid=$STARTED_PID tsnap+=("$ELAPSED")
    echo "  run $i/$REPS: ${tsnap[-1]} s"
  done

  local m_rdb m_aof m_log m_snap
  m_rdb=$(printf '%s\n' "${rdb[@]}" | median)
  m_aof=$(printf '%s\n' "${aof[@]}" | median)
  m_log=$(printf '%s\n' "${tlog[@]}" | median)
  m_snap=$(printf '%s\n' "${tsnap[@]}" | median)
  echo "  => median restart: redis RDB $m_rdb s, redis AOF $m_aof s, tandem no SAVE $m_log s, tandem after SAVE $m_snap s (target <= 5 s)"
  add_row 7a "restart, no SAVE (redis: from RDB)$note" "$m_rdb s" "$m_log s" "" "$(ratio "$m_rdb" "$m_log")" "tandem <= 5 s" "$(judge "$m_log" "<=" 5)"
  add_row 7b "restart after SAVE (redis: from RDB)$note" "$m_rdb s" "$m_snap s" "" "$(ratio "$m_rdb" "$m_snap")" "tandem <= 5 s" "$(judge "$m_snap" "<=" 5)"
  add_row 7c "restart, redis from AOF always (reference)$note" "$m_aof s" "-" "" "-" "-" "info"
}

# ---------------------------------------------------------------------------------------------
# Run

TANDEM_VERSION=$("$TANDEM_BIN" --version 2>/dev/null | head -n 1)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$( [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && echo ' (with uncommitted changes)')"
  echo "tandem: ${TANDEM_BIN#"$ROOT"/}${TANDEM_VERSION:+ ($TANDEM_VERSION)}"
  echo "redis: $(redis-server --version | awk '{ print $3 }' | sed 's/v=//')"
  echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full), $REPS alternating runs per server, ~${RUN_SECS}s per run, $CLIENTS clients, keyspace $KEYSPACE, nice $(ps -o ni= -p $$ | tr -d ' ')"
  echo "load average at start: $(loadavg)"
} >"$LOGDIR/meta.txt"
sed 's/^/  /' "$LOGDIR/meta.txt"
echo "  logs: $LOGDIR"
echo "  data: $WORK"

want 1 && run_benchmark 1 "GET, 50 clients, no pipelining" bench_get
want 2 && run_benchmark 2 "GET, 50 clients, -P 16" bench_get_pipelined
want 3 && run_benchmark 3 "SET, appendfsync always" bench_set_always
want 4 && run_benchmark 4 "SET, appendfsync everysec" bench_set_everysec
want 5 && run_benchmark 5 "SET+GET 1 KiB, sha256 vs xxh3-64 (Tandem vs Tandem)" bench_checksum
if want 6 || want 7; then
  run_benchmark "$(want 6 && echo 6)$(want 6 && want 7 && echo +)$(want 7 && echo 7)" \
    "memory and restart, $BIG_KEYS keys" bench_big
fi

echo "  load average at end: $(loadavg)" | tee -a "$LOGDIR/meta.txt"
mkdir -p "$ROOT/target"
python3 "$HELPERS/summary.py" "$SUMMARY_TSV" "$LOGDIR/meta.txt" "$ROOT/target/bench-summary.md"
cp "$ROOT/target/bench-summary.md" "$LOGDIR/"
echo
echo "markdown: target/bench-summary.md"
[ "$ERRORS" = 0 ]
