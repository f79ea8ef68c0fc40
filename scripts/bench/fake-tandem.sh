#!/usr/bin/env bash
# A stand-in for `target/release/tandem` that runs redis-server instead, so that scripts/bench.sh
# can be exercised before Tandem builds (or to check the harness: Redis against "Redis" should give
# ratios near 1.0):
#
#   TANDEM_BIN=scripts/bench/fake-tandem.sh scripts/bench.sh --quick
#
# Accepts the `tandem server` flags bench.sh uses and maps them to Redis equivalents: Tandem always
# logs writes, so this runs Redis with its AOF on (appendfsync as given, default `always` like
# Tandem). `--checksum-algorithm` has no Redis equivalent and is ignored. It `exec`s, so the PID
# bench.sh sees (for VmRSS and kill -9) is the redis-server itself.
set -euo pipefail
[ "${1:-}" = server ] || { echo "fake-tandem: only 'server' is supported" >&2; exit 2; }
shift
port=6379 dir=./data fsync=always bind=127.0.0.1
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --data-dir) dir=$2; shift 2 ;;
    --appendfsync) fsync=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --checksum-algorithm|--cluster-port|--node-id) shift 2 ;;
    *) echo "fake-tandem: unsupported flag $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"
exec redis-server --port "$port" --bind "$bind" --dir "$dir" --save '' \
  --appendonly yes --appendfsync "$fsync" --daemonize no --protected-mode no --logfile ''
