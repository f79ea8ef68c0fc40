"""redis-py's Sentinel support against Tandem nodes (driven by tests/sentinel.rs).

Usage: sentinel_failover.py PORT[,PORT...]

Phase 1: find the primary and a replica through the nodes' SENTINEL commands, write through the
primary, read it back through a replica; print "PRIMARY <port>" and wait for a line on stdin
(the Rust test kills the primary with kill -9, then writes "KILLED").
Phase 2: keep writing through the same master_for() client until a write succeeds on the new
primary (within 20 s), and check the first write survived. Exit 0 on success; any failed check
raises, which exits non-zero with a traceback.
"""

import sys
import time

import redis
from redis.sentinel import Sentinel

NAME = "mymaster"


def main() -> None:
    ports = [int(p) for p in sys.argv[1].split(",")]
    sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=2.0)

    host, port = sentinel.discover_master(NAME)
    assert host == "127.0.0.1" and port in ports, (host, port)
    replicas = sentinel.discover_slaves(NAME)
    assert len(replicas) == len(ports) - 1, replicas
    assert (host, port) not in replicas, replicas

    primary = sentinel.master_for(NAME, socket_timeout=2.0)
    replica = sentinel.slave_for(NAME, socket_timeout=2.0)
    assert primary.set("py:before", "1")
    # Every replica holds it before it is read back from one.
    assert primary.execute_command("WAIT", len(ports) - 1, 5000) == len(ports) - 1
    assert replica.get("py:before") == b"1"
    assert primary.execute_command("ROLE")[0] == b"master"

    print(f"PRIMARY {port}", flush=True)
    line = sys.stdin.readline().strip()
    assert line == "KILLED", line

    killed_at = time.monotonic()
    deadline = killed_at + 20.0
    attempts = 0
    while True:
        attempts += 1
        try:
            primary.set("py:after", "2")
            break
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"no write succeeded within 20 s after the kill: {e!r}")
            time.sleep(0.05)
    took = time.monotonic() - killed_at
    new_host, new_port = sentinel.discover_master(NAME)
    assert new_port != port, (new_port, port)
    assert primary.get("py:before") == b"1"
    assert primary.get("py:after") == b"2"
    print(f"NEW-PRIMARY {new_port} after {took:.2f} s, {attempts} attempts", flush=True)


if __name__ == "__main__":
    main()
