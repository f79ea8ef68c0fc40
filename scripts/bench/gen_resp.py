#!/usr/bin/env python3
"""Writes a stream of RESP `SET` commands for `redis-cli --pipe` (used by scripts/bench.sh).

Keys are `key:%012d` for 0 <= i < COUNT: exactly the keys `redis-benchmark -r COUNT` draws from
(it expands `__rand_int__` to a 12-digit number below the keyspace length), so a preload with this
file makes every GET of a `redis-benchmark -t get -r COUNT` run a hit.

Values are VALUE_SIZE bytes, printable, different for every key and deterministic:
`--value-of I` prints the value that key I gets, so a test can check that a GET returns it.

    gen_resp.py --count 1000000 --value-size 100 > sets.resp
    gen_resp.py --value-of 999999 --value-size 100
"""
import argparse
import sys

# A fixed printable filler (no spaces or quotes, so it survives shell and redis-cli intact).
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def filler(size: int) -> bytes:
    out = bytearray()
    x = 0x2545F491
    while len(out) < size:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(_ALPHABET[(x >> 16) % len(_ALPHABET)])
    return bytes(out)


def key(i: int) -> bytes:
    return b"key:%012d" % i


def value(i: int, size: int, fill: bytes) -> bytes:
    head = b"v%012d:" % i
    return (head + fill)[:size]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=0, help="number of keys (SET commands)")
    ap.add_argument("--value-size", type=int, default=100, help="bytes per value")
    ap.add_argument("--value-of", type=int, default=None, metavar="I", help="print the value of key I and exit")
    args = ap.parse_args()
    fill = filler(args.value_size)

    if args.value_of is not None:
        sys.stdout.buffer.write(value(args.value_of, args.value_size, fill))
        return 0

    out = sys.stdout.buffer
    vlen = b"$%d\r\n" % args.value_size
    chunk = []
    for i in range(args.count):
        k = key(i)
        chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s%s\r\n" % (len(k), k, vlen, value(i, args.value_size, fill)))
        if len(chunk) == 10000:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
