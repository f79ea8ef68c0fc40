#!/usr/bin/env python3
"""Records redis-server's replies to the scripts in tests/golden/*.redis into *.golden.

Usage (redis-server 7.0 listening on port 7777, e.g.
`redis-server --port 7777 --save '' --appendonly no --daemonize yes`):

    python3 tools/golden.py tests/golden/*.redis

Script syntax, one command per line:
    SET k "two words"      tokens: bare words, or "..." with \\" \\\\ \\xNN \\r \\n \\t escapes
    ~ KEYS *               `~` compares arrays as unordered (sorted, recursively)
    % TTL k                `%` compares an integer reply by class only: -2, -1, 0 or + (for
                           times that depend on the recording clock)
    !sleep 150             wait 150 ms (the Rust replay advances its clock instead)
    # comment
Each script starts from FLUSHALL. The .golden file repeats every line and, for commands, the
reply on the next line, rendered as tests/golden.rs renders Tandem's frames.
"""
import socket, sys, time

class Null: pass
class NullArray: pass

class Conn:
    def __init__(self, port=7777):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
    def cmd(self, args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.read()
    def read(self):
        line = self.f.readline()[:-2]
        t, rest = line[:1], line[1:]
        if t == b"+": return ("simple", rest)
        if t == b"-": return ("error", rest)
        if t == b":": return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0: return Null
            return self.f.read(n + 2)[:-2]
        if t == b"*":
            n = int(rest)
            if n < 0: return NullArray
            return [self.read() for _ in range(n)]
        raise ValueError(line)

def escape(b):
    out = []
    for c in b:
        ch = chr(c)
        if ch == '"': out.append('\\"')
        elif ch == "\\": out.append("\\\\")
        elif 0x20 <= c <= 0x7e: out.append(ch)
        else: out.append("\\x%02x" % c)
    return '"' + "".join(out) + '"'

def render(r, unordered, classify=False):
    if classify and isinstance(r, int): return ":%s" % (r if r <= 0 else "+")
    if r is Null: return "nil"
    if r is NullArray: return "nilarray"
    if isinstance(r, int): return ":%d" % r
    if isinstance(r, bytes): return escape(r)
    if isinstance(r, tuple):
        kind, text = r
        return ("+" if kind == "simple" else "-") + text.decode("latin1")
    items = [render(x, unordered) for x in r]
    if unordered: items.sort()
    return "[" + ", ".join(items) + "]"

def tokens(line):
    out, i, n = [], 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1; continue
        if line[i] == '"':
            i += 1; tok = bytearray()
            while line[i] != '"':
                c = line[i]
                if c == "\\":
                    e = line[i + 1]
                    if e == "x":
                        tok.append(int(line[i + 2:i + 4], 16)); i += 4; continue
                    tok.append({"n": 10, "r": 13, "t": 9}.get(e, ord(e))); i += 2; continue
                tok.append(ord(c)); i += 1
            out.append(bytes(tok)); i += 1
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            out.append(line[i:j].encode()); i = j
    return out

def main(paths):
    for path in paths:
        c = Conn()
        c.cmd([b"FLUSHALL"])
        out = []
        for raw in open(path, encoding="utf-8").read().splitlines():
            line = raw.strip()
            out.append(line)
            if not line or line.startswith("#"):
                continue
            if line.startswith("!sleep "):
                time.sleep(int(line.split()[1]) / 1000.0)
                continue
            unordered = line.startswith("~ ")
            classify = line.startswith("% ")
            args = tokens(line[2:] if unordered or classify else line)
            out.append("=> " + render(c.cmd(args), unordered, classify))
        target = path.rsplit(".", 1)[0] + ".golden"
        open(target, "w", encoding="utf-8").write("\n".join(out) + "\n")
        print("wrote", target)

if __name__ == "__main__":
    main(sys.argv[1:])
