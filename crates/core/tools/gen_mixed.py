#!/usr/bin/env python3
"""Generates tests/golden/mixed.redis: random interleavings of the data commands over a few
keys, for tools/golden.py to record from redis-server 7.0. Avoids replies that depend on the
clock (no relative deadlines compared with GT/LT; TTL and EXPIRETIME compared by class only;
absolute times are either long past or in 2100)."""
import random

random.seed(7)
KEYS = ["k0", "k1", "k2", "k3", "n0", "n1"]
VALUES = ["0", "1", "-7", "42", "9223372036854775806", "3.5", "-0.25", "1e3", "abc", "",
          "hello world", "0x10", "007"]
FUTURE_S = 4102444800  # 2100-01-01

def k(): return random.choice(KEYS)
def v():
    x = random.choice(VALUES)
    return '""' if x == "" else ('"%s"' % x if " " in x else x)
def n(): return str(random.choice([-3, -1, 0, 1, 2, 5, 17, 100, 9223372036854775807]))
def at_s(): return str(random.choice([1, 500, FUTURE_S, FUTURE_S + 100, FUTURE_S + 50]))

def cmd():
    c = random.randrange(40)
    if c == 0: return "SET %s %s" % (k(), v())
    if c == 1: return "SET %s %s %s" % (k(), v(), random.choice(["NX", "XX", "GET", "KEEPTTL", "NX GET", "XX GET", "KEEPTTL GET", "EX 1000", "PX 1000000", "EXAT %s" % at_s(), "PXAT 1", "XX KEEPTTL"]))
    if c == 2: return "GET %s" % k()
    if c == 3: return "MGET %s %s %s" % (k(), k(), k())
    if c == 4: return "MSET %s %s %s %s" % (k(), v(), k(), v())
    if c == 5: return "MSETNX %s %s %s %s" % (k(), v(), k(), v())
    if c == 6: return "GETSET %s %s" % (k(), v())
    if c == 7: return "GETDEL %s" % k()
    if c == 8: return "GETEX %s %s" % (k(), random.choice(["", "PERSIST", "EX 1000", "EXAT %s" % at_s(), "PXAT 5"]))
    if c == 9: return "APPEND %s %s" % (k(), v())
    if c == 10: return "STRLEN %s" % k()
    if c in (11, 12): return "INCR %s" % k()
    if c == 13: return "DECR %s" % k()
    if c == 14: return "INCRBY %s %s" % (k(), n())
    if c == 15: return "DECRBY %s %s" % (k(), n())
    if c == 16: return "INCRBYFLOAT %s %s" % (k(), random.choice(["0.1", "-1.5", "3", "1e2", "abc", "-0.3333"]))
    if c == 17: return "GETRANGE %s %s %s" % (k(), n(), n())
    if c == 18: return "SETRANGE %s %s %s" % (k(), random.choice(["0", "1", "3", "10"]), v())
    if c == 19: return "DEL %s %s" % (k(), k())
    if c == 20: return "EXISTS %s %s" % (k(), k())
    if c == 21: return "TYPE %s" % k()
    if c == 22: return "EXPIRE %s %s" % (k(), random.choice(["1000", "-1", "0", "5000"]))
    if c == 23: return "EXPIREAT %s %s %s" % (k(), at_s(), random.choice(["", "NX", "XX", "GT", "LT", "XX GT", "XX LT"]))
    if c == 24: return "PEXPIREAT %s %s000 %s" % (k(), at_s(), random.choice(["", "NX", "XX", "GT", "LT"]))
    if c == 25: return "PERSIST %s" % k()
    if c == 26: return "%% TTL %s" % k()
    if c == 27: return "%% EXPIRETIME %s" % k()
    if c == 28: return "%% PEXPIRETIME %s" % k()
    if c == 29: return "RENAME %s %s" % (k(), k())
    if c == 30: return "RENAMENX %s %s" % (k(), k())
    if c == 31: return "~ KEYS *"
    if c == 32: return "~ KEYS %s" % random.choice(["k*", "n?", "[kn][01]", "*1"])
    # Not DBSIZE: Redis keeps a key SET with a past EXAT/PXAT until its expiry cycle runs;
    # Tandem deletes it at once, so the counts differ for up to ~100 ms.
    if c == 33: return "EXISTS %s" % k()
    if c == 34: return "SETNX %s %s" % (k(), v())
    if c == 35: return "SETEX %s %s %s" % (k(), random.choice(["1000", "0", "-1"]), v())
    if c == 36: return "~ SCAN 0 COUNT 1000 MATCH %s" % random.choice(["*", "k*", "n*"])
    if c == 37: return "UNLINK %s" % k()
    if c == 38: return "SUBSTR %s 0 %s" % (k(), n())
    return "PSETEX %s %s %s" % (k(), random.choice(["1000000", "0"]), v())

lines = ["# Random interleavings of the data commands (tools/gen_mixed.py, seed 7)."]
for i in range(3000):
    if i % 300 == 0:
        lines.append("FLUSHALL")
    lines.append(cmd().rstrip())
open("tests/golden/mixed.redis", "w").write("\n".join(lines) + "\n")
