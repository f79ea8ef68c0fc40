#!/usr/bin/env python3
"""Renders the rows scripts/bench.sh collected: an aligned table on stdout, markdown to a file.

    summary.py SUMMARY_TSV META_TXT OUT_MD

SUMMARY_TSV has one row per figure: id, label, baseline, tandem, unit, ratio, target, result.
The baseline is Redis, except for benchmark 5 where it is Tandem with xxh3-64.
"""
import sys

HEAD = ["#", "benchmark", "redis (baseline)", "tandem", "ratio", "target", "result"]


def rows(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            rid, label, a, b, unit, ratio, target, result = (line.split("\t") + [""] * 8)[:8]
            if unit and a not in ("-", ""):
                a = f"{a} {unit}"
            if unit and b not in ("-", ""):
                b = f"{b} {unit}"
            out.append([rid, label, a, b, ratio, target, result])
    return out


def main():
    tsv, meta, md = sys.argv[1:4]
    table = rows(tsv)
    with open(meta, encoding="utf-8") as f:
        meta_lines = [l.rstrip("\n").strip() for l in f if l.strip()]

    widths = [max(len(r[i]) for r in [HEAD] + table) for i in range(len(HEAD))]
    print()
    print("Summary (ratio = tandem / baseline; baseline = redis, except 5: tandem with xxh3-64)")
    print("  ".join(h.ljust(w) for h, w in zip(HEAD, widths)))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    counts = {k: sum(1 for r in table if r[6] == k) for k in ("PASS", "FAIL", "ERROR")}
    print(f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['ERROR']} not measured")

    def esc(c):
        return c.replace("|", "\\|")

    with open(md, "w", encoding="utf-8") as f:
        f.write("| " + " | ".join(HEAD) + " |\n")
        f.write("|" + "|".join("---" for _ in HEAD) + "|\n")
        for r in table:
            cells = [esc(c) for c in r]
            if cells[6] in ("PASS", "FAIL", "ERROR"):
                cells[6] = f"**{cells[6]}**"
            f.write("| " + " | ".join(cells) + " |\n")
        f.write("\nRatio = tandem / baseline. Baseline = Redis, except benchmark 5 (Tandem with xxh3-64). "
                "Throughput: median of alternating runs.\n\n")
        for l in meta_lines:
            f.write(f"- {l}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
